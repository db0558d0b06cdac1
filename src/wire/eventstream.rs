//! The `application/vnd.amazon.eventstream` frame decoder.
//!
//! A frame is `total length (u32) | headers length (u32) | prelude CRC32 | headers | payload |
//! message CRC32`, big-endian. [`FrameDecoder`] takes the bytes as they arrive, in pieces of any
//! size, and hands out whole frames that borrow from its buffer: the prelude and message CRCs are
//! checked and the headers parsed before a frame is handed out, so a frame's accessors cannot
//! fail. The decoder copies what it is given and never changes it, so a relay can forward the
//! original bytes untouched and decode a copy on the side (for usage metrics).
//!
//! Memory is bounded: a frame longer than [`MAX_FRAME_LEN`] (the event-stream limit of 16 MiB) is
//! an error before any of it is buffered beyond the prelude.

use bytes::{Buf, BytesMut};

/// Longest frame accepted: the event-stream format's own limit (16 MiB).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
/// Longest header section accepted: the format's limit (128 KiB).
pub const MAX_HEADERS_LEN: usize = 128 * 1024;

const PRELUDE_LEN: usize = 12;
const CRC_LEN: usize = 4;
const MIN_FRAME_LEN: usize = PRELUDE_LEN + CRC_LEN;

/// Why a byte sequence is not a valid event stream. The stream cannot be resynchronised after one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The prelude's CRC32 does not match its 8 bytes.
    PreludeChecksum,
    /// The message CRC32 does not match the frame.
    MessageChecksum,
    /// The frame's declared length is below the minimum or above [`MAX_FRAME_LEN`].
    Length(u32),
    /// The header section is malformed (bad length, unknown value type, non-UTF-8 name).
    Headers,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::PreludeChecksum => f.write_str("event-stream prelude checksum mismatch"),
            FrameError::MessageChecksum => f.write_str("event-stream message checksum mismatch"),
            FrameError::Length(len) => write!(f, "event-stream frame length {len} out of range"),
            FrameError::Headers => f.write_str("malformed event-stream headers"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A header value, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    Bool(bool),
    Byte(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Bytes(&'a [u8]),
    String(&'a str),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid(u128),
}

/// One decoded frame, borrowing from the decoder.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    headers: &'a [u8],
    payload: &'a [u8],
    message_type: Option<&'a str>,
    event_type: Option<&'a str>,
    exception_type: Option<&'a str>,
}

impl<'a> Frame<'a> {
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// `:message-type`: `event`, `exception` or `error`.
    pub fn message_type(&self) -> Option<&'a str> {
        self.message_type
    }

    /// `:event-type`, e.g. `chunk`.
    pub fn event_type(&self) -> Option<&'a str> {
        self.event_type
    }

    /// `:exception-type`, e.g. `throttlingException`.
    pub fn exception_type(&self) -> Option<&'a str> {
        self.exception_type
    }

    /// Every header in order (already validated when the frame was decoded).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, HeaderValue<'a>)> + 'a {
        let mut rest = self.headers;
        std::iter::from_fn(move || {
            let (name, value, tail) = parse_header(rest).ok()??;
            rest = tail;
            Some((name, value))
        })
    }

    /// The first header named `name`, if it is a string.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.headers().find(|(n, _)| *n == name).and_then(|(_, value)| match value {
            HeaderValue::String(s) => Some(s),
            _ => None,
        })
    }
}

/// Incremental decoder: [`FrameDecoder::push`] bytes, then take frames with
/// [`FrameDecoder::next_frame`] until it returns `None`.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
    /// Bytes of the last frame handed out, dropped from `buf` on the next call.
    consumed: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Appends received bytes (a copy; the caller's bytes are left as they are).
    pub fn push(&mut self, data: &[u8]) {
        self.release();
        self.buf.extend_from_slice(data);
    }

    /// Whether bytes of an unfinished frame are waiting (at the end of a stream: it was cut).
    pub fn has_partial_frame(&self) -> bool {
        self.buf.len() > self.consumed
    }

    fn release(&mut self) {
        if self.consumed > 0 {
            self.buf.advance(self.consumed);
            self.consumed = 0;
        }
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed. After an error every call
    /// fails again: an event stream cannot be resynchronised.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        self.release();
        match check_frame(&self.buf) {
            Ok(Some(len)) => {
                self.consumed = len;
                parse_frame(&self.buf[..len]).map(Some).inspect_err(|error| self.failed = Some(*error))
            }
            Ok(None) => Ok(None),
            Err(error) => {
                self.failed = Some(error);
                Err(error)
            }
        }
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The length of the whole frame at the start of `buf` once all of it is there (prelude and
/// message checksums verified), `None` while bytes are missing.
fn check_frame(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < PRELUDE_LEN {
        return Ok(None);
    }
    let total = be_u32(&buf[0..4]);
    if crc32fast::hash(&buf[0..8]) != be_u32(&buf[8..12]) {
        return Err(FrameError::PreludeChecksum);
    }
    let len = total as usize;
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len) {
        return Err(FrameError::Length(total));
    }
    let headers_len = be_u32(&buf[4..8]) as usize;
    if headers_len > MAX_HEADERS_LEN || headers_len > len - MIN_FRAME_LEN {
        return Err(FrameError::Headers);
    }
    if buf.len() < len {
        return Ok(None);
    }
    if crc32fast::hash(&buf[..len - CRC_LEN]) != be_u32(&buf[len - CRC_LEN..len]) {
        return Err(FrameError::MessageChecksum);
    }
    Ok(Some(len))
}

/// Splits a checksum-verified frame into headers and payload, validating every header.
fn parse_frame(frame: &[u8]) -> Result<Frame<'_>, FrameError> {
    let headers_len = be_u32(&frame[4..8]) as usize;
    let headers = &frame[PRELUDE_LEN..PRELUDE_LEN + headers_len];
    let payload = &frame[PRELUDE_LEN + headers_len..frame.len() - CRC_LEN];
    let mut parsed = Frame { headers, payload, message_type: None, event_type: None, exception_type: None };
    let mut rest = headers;
    while let Some((name, value, tail)) = parse_raw_header(rest)? {
        rest = tail;
        if let RawValue::String(value) = value {
            let slot = match name {
                b":message-type" => &mut parsed.message_type,
                b":event-type" => &mut parsed.event_type,
                b":exception-type" => &mut parsed.exception_type,
                _ => continue,
            };
            *slot = Some(std::str::from_utf8(value).map_err(|_| FrameError::Headers)?);
        }
    }
    Ok(parsed)
}

/// UTF-8, checked cheaply for the ASCII that event-stream headers almost always are.
fn is_utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

/// One header from the front of `bytes`, as [`HeaderValue`]s: `None` at the end.
#[allow(clippy::type_complexity)]
fn parse_header(bytes: &[u8]) -> Result<Option<(&str, HeaderValue<'_>, &[u8])>, FrameError> {
    let Some((name, value, rest)) = parse_raw_header(bytes)? else { return Ok(None) };
    let text = |bytes| std::str::from_utf8(bytes).map_err(|_| FrameError::Headers);
    let value = match value {
        RawValue::String(value) => HeaderValue::String(text(value)?),
        RawValue::Other(value) => value,
    };
    Ok(Some((text(name)?, value, rest)))
}

/// A header value as read: a string's bytes (checked to be UTF-8), or any other value.
enum RawValue<'a> {
    String(&'a [u8]),
    Other(HeaderValue<'a>),
}

/// One header from the front of `bytes`, every part checked, its name and string value left as
/// bytes (a frame's decoding turns into `&str` only the values it reads: `str::from_utf8` cost
/// about 120 instructions per call on these short strings, six calls per frame).
#[allow(clippy::type_complexity)]
fn parse_raw_header(bytes: &[u8]) -> Result<Option<(&[u8], RawValue<'_>, &[u8])>, FrameError> {
    let Some((&name_len, rest)) = bytes.split_first() else {
        return Ok(None);
    };
    let name_len = name_len as usize;
    if name_len == 0 || rest.len() < name_len + 1 {
        return Err(FrameError::Headers);
    }
    let name = &rest[..name_len];
    if !is_utf8(name) {
        return Err(FrameError::Headers);
    }
    let kind = rest[name_len];
    let rest = &rest[name_len + 1..];
    let fixed = |n: usize| rest.get(..n).map(|value| (value, &rest[n..])).ok_or(FrameError::Headers);
    let (value, rest) = match kind {
        0 => (HeaderValue::Bool(true), rest),
        1 => (HeaderValue::Bool(false), rest),
        2 => {
            let (v, r) = fixed(1)?;
            (HeaderValue::Byte(v[0] as i8), r)
        }
        3 => {
            let (v, r) = fixed(2)?;
            (HeaderValue::Int16(i16::from_be_bytes([v[0], v[1]])), r)
        }
        4 => {
            let (v, r) = fixed(4)?;
            (HeaderValue::Int32(i32::from_be_bytes([v[0], v[1], v[2], v[3]])), r)
        }
        5 | 8 => {
            let (v, r) = fixed(8)?;
            let mut raw = [0u8; 8];
            raw.copy_from_slice(v);
            let n = i64::from_be_bytes(raw);
            (if kind == 5 { HeaderValue::Int64(n) } else { HeaderValue::Timestamp(n) }, r)
        }
        6 | 7 => {
            let (len, r) = fixed(2)?;
            let len = u16::from_be_bytes([len[0], len[1]]) as usize;
            let value = r.get(..len).ok_or(FrameError::Headers)?;
            let value = if kind == 6 {
                HeaderValue::Bytes(value)
            } else if is_utf8(value) {
                return Ok(Some((name, RawValue::String(value), &r[len..])));
            } else {
                return Err(FrameError::Headers);
            };
            (value, &r[len..])
        }
        9 => {
            let (v, r) = fixed(16)?;
            let mut raw = [0u8; 16];
            raw.copy_from_slice(v);
            (HeaderValue::Uuid(u128::from_be_bytes(raw)), r)
        }
        _ => return Err(FrameError::Headers),
    };
    Ok(Some((name, RawValue::Other(value), rest)))
}

#[cfg(test)]
mod tests {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue as SdkValue, Message};

    use super::*;

    /// A frame written by the AWS SDK's own encoder (independent of the decoder under test).
    fn sdk_frame(headers: Vec<Header>, payload: &[u8]) -> Vec<u8> {
        let mut message = Message::new(payload.to_vec());
        for header in headers {
            message = message.add_header(header);
        }
        let mut out = Vec::new();
        write_message_to(&message, &mut out).unwrap();
        out
    }

    fn chunk(payload: &str) -> Vec<u8> {
        sdk_frame(
            vec![
                Header::new(":event-type", SdkValue::String("chunk".into())),
                Header::new(":content-type", SdkValue::String("application/json".into())),
                Header::new(":message-type", SdkValue::String("event".into())),
            ],
            payload.as_bytes(),
        )
    }

    fn drain(decoder: &mut FrameDecoder) -> Vec<(Option<String>, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            out.push((frame.event_type().map(str::to_owned), frame.payload().to_vec()));
        }
        out
    }

    #[test]
    fn frames_split_at_every_byte_boundary_decode_the_same() {
        let mut stream = chunk("{\"bytes\":\"eyJ0eXBlIjoicGluZyJ9\"}");
        stream.extend(chunk(""));
        stream.extend(chunk(&"x".repeat(5000)));
        for piece in [1, 2, 3, 7, 12, 13, 100, stream.len()] {
            let mut decoder = FrameDecoder::new();
            let mut got = Vec::new();
            for part in stream.chunks(piece) {
                decoder.push(part);
                got.extend(drain(&mut decoder));
            }
            assert!(!decoder.has_partial_frame(), "piece {piece}");
            let payloads: Vec<usize> = got.iter().map(|(_, p)| p.len()).collect();
            assert_eq!(payloads, [32, 0, 5000], "piece {piece}");
            assert!(got.iter().all(|(kind, _)| kind.as_deref() == Some("chunk")));
        }
    }

    #[test]
    fn every_header_type_is_read() {
        let frame = sdk_frame(
            vec![
                Header::new("t", SdkValue::Bool(true)),
                Header::new("f", SdkValue::Bool(false)),
                Header::new("b", SdkValue::Byte(-3)),
                Header::new("i16", SdkValue::Int16(-300)),
                Header::new("i32", SdkValue::Int32(70000)),
                Header::new("i64", SdkValue::Int64(-5_000_000_000)),
                Header::new("bytes", SdkValue::ByteArray(vec![1u8, 2, 3].into())),
                Header::new(":exception-type", SdkValue::String("throttlingException".into())),
                Header::new(":message-type", SdkValue::String("exception".into())),
                Header::new("ts", SdkValue::Timestamp(aws_smithy_types::DateTime::from_millis(1_700_000_000_123))),
                Header::new("uuid", SdkValue::Uuid(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)),
            ],
            b"{\"message\":\"slow down\"}",
        );
        let mut decoder = FrameDecoder::new();
        decoder.push(&frame);
        let frame = decoder.next_frame().unwrap().unwrap();
        assert_eq!(frame.message_type(), Some("exception"));
        assert_eq!(frame.exception_type(), Some("throttlingException"));
        assert_eq!(frame.event_type(), None);
        assert_eq!(frame.header_str(":exception-type"), Some("throttlingException"));
        assert_eq!(frame.header_str("t"), None, "not a string");
        let headers: Vec<(&str, HeaderValue<'_>)> = frame.headers().collect();
        assert_eq!(
            headers,
            [
                ("t", HeaderValue::Bool(true)),
                ("f", HeaderValue::Bool(false)),
                ("b", HeaderValue::Byte(-3)),
                ("i16", HeaderValue::Int16(-300)),
                ("i32", HeaderValue::Int32(70000)),
                ("i64", HeaderValue::Int64(-5_000_000_000)),
                ("bytes", HeaderValue::Bytes(&[1, 2, 3])),
                (":exception-type", HeaderValue::String("throttlingException")),
                (":message-type", HeaderValue::String("exception")),
                ("ts", HeaderValue::Timestamp(1_700_000_000_123)),
                ("uuid", HeaderValue::Uuid(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)),
            ]
        );
        assert_eq!(frame.payload(), b"{\"message\":\"slow down\"}");
    }

    #[test]
    fn corrupted_frames_are_refused_and_the_decoder_stays_failed() {
        let good = chunk("{\"bytes\":\"e30=\"}");
        // Every single-bit flip anywhere in the frame is caught by one of the two checksums (or
        // the length checks they guard).
        for at in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[at] ^= 1 << bit;
                let mut decoder = FrameDecoder::new();
                decoder.push(&bad);
                decoder.push(&[0u8; 64]);
                assert!(decoder.next_frame().is_err(), "flip of bit {bit} at byte {at} went unnoticed");
                assert!(decoder.next_frame().is_err(), "a failed decoder stays failed");
            }
        }
    }

    /// A frame around raw header bytes, checksums right (so only the headers can be refused).
    fn raw_frame(headers: &[u8], payload: &[u8]) -> Vec<u8> {
        let total = (PRELUDE_LEN + headers.len() + payload.len() + CRC_LEN) as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
        out.extend_from_slice(headers);
        out.extend_from_slice(payload);
        out.extend_from_slice(&crc32fast::hash(&out).to_be_bytes());
        out
    }

    /// One string header, written by hand: name length, name, type 7, value length, value.
    fn string_header(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = vec![name.len() as u8];
        out.extend_from_slice(name);
        out.push(7);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn header_names_and_string_values_must_be_utf8_ascii_or_not() {
        let decode = |headers: Vec<u8>| {
            let mut decoder = FrameDecoder::new();
            decoder.push(&raw_frame(&headers, b"{}"));
            decoder.next_frame().map(|frame| frame.map(|f| (f.event_type().map(str::to_owned), f.headers().count())))
        };
        let mut good = string_header(b":event-type", b"chunk");
        good.extend(string_header("x-caf\u{e9}".as_bytes(), "d\u{e9}j\u{e0} vu".as_bytes()));
        assert_eq!(decode(good), Ok(Some((Some("chunk".to_owned()), 2))), "non-ASCII UTF-8 is read");
        for bad in
            [string_header(b"x-\xff", b"v"), string_header(b":event-type", b"ch\xffnk"), string_header(b"x", b"\xc3")]
        {
            assert_eq!(decode(bad), Err(FrameError::Headers));
        }
    }

    #[test]
    fn oversized_and_undersized_lengths_are_refused_from_the_prelude() {
        for total in [0u32, 15, (MAX_FRAME_LEN + 1) as u32, u32::MAX] {
            let mut prelude = Vec::new();
            prelude.extend_from_slice(&total.to_be_bytes());
            prelude.extend_from_slice(&0u32.to_be_bytes());
            let crc = crc32fast::hash(&prelude);
            prelude.extend_from_slice(&crc.to_be_bytes());
            let mut decoder = FrameDecoder::new();
            decoder.push(&prelude);
            assert_eq!(decoder.next_frame().unwrap_err(), FrameError::Length(total));
        }
    }

    #[test]
    fn a_truncated_stream_leaves_a_partial_frame() {
        let frame = chunk("{}");
        let mut decoder = FrameDecoder::new();
        decoder.push(&frame[..frame.len() - 1]);
        assert!(decoder.next_frame().unwrap().is_none());
        assert!(decoder.has_partial_frame());
        decoder.push(&frame[frame.len() - 1..]);
        assert!(decoder.next_frame().unwrap().is_some());
        assert!(decoder.next_frame().unwrap().is_none());
        assert!(!decoder.has_partial_frame());
    }
}
