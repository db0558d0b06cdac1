//! Server-sent events read from an upstream answer, one event at a time, each bounded in size.
//!
//! Both direct upstreams stream this way: the Anthropic API (`event: <type>` + `data: <json>`) and
//! OpenAI-compatible servers (`data: <json>` ... `data: [DONE]`). An event keeps its raw bytes so a
//! relay can pass it on unchanged.

use bytes::{Bytes, BytesMut};

use super::direct::{BoundedBody, DirectError};

/// Largest single event accepted (a tool call's arguments arrive in many small events).
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub name: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: Bytes,
    /// The event as received, with its terminating blank line (`\n\n`).
    pub raw: Bytes,
}

/// Splits a byte stream into events.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: BytesMut,
    /// Where the search for a blank line resumes (earlier bytes hold none).
    scanned: usize,
}

impl SseParser {
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next complete event, or `None` until more bytes arrive. Comment-only and empty blocks
    /// are skipped.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, DirectError> {
        loop {
            let from = self.scanned.saturating_sub(3);
            let Some((end, delimiter)) = find_blank_line(&self.buffer[from..]).map(|(at, len)| (from + at, len)) else {
                if self.buffer.len() > MAX_EVENT_BYTES {
                    return Err(DirectError::TooLarge);
                }
                self.scanned = self.buffer.len();
                return Ok(None);
            };
            self.scanned = 0;
            if end > MAX_EVENT_BYTES {
                return Err(DirectError::TooLarge);
            }
            let block = self.buffer.split_to(end + delimiter).freeze();
            if let Some(event) = parse_block(&block[..end], block.clone()) {
                return Ok(Some(event));
            }
        }
    }

    /// Bytes left that do not end an event.
    pub fn has_partial(&self) -> bool {
        self.buffer.iter().any(|b| !b.is_ascii_whitespace())
    }
}

/// The position of the first blank line and the length of its delimiter.
fn find_blank_line(buffer: &[u8]) -> Option<(usize, usize)> {
    let mut index = 0;
    while index + 1 < buffer.len() {
        match (buffer[index], buffer[index + 1]) {
            (b'\n', b'\n') => return Some((index, 2)),
            (b'\r', b'\n') if buffer.get(index + 2..index + 4) == Some(b"\r\n") => return Some((index, 4)),
            _ => index += 1,
        }
    }
    None
}

fn parse_block(block: &[u8], raw: Bytes) -> Option<SseEvent> {
    let mut name = None;
    let mut data = BytesMut::new();
    let mut has_data = false;
    for line in block.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b':' {
            continue;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => name = Some(String::from_utf8_lossy(value).into_owned()),
            b"data" => {
                if has_data {
                    data.extend_from_slice(b"\n");
                }
                data.extend_from_slice(value);
                has_data = true;
            }
            _ => {}
        }
    }
    (has_data || name.is_some()).then(|| SseEvent { name, data: data.freeze(), raw })
}

/// Events read from an upstream body.
#[derive(Debug)]
pub struct SseReader {
    body: BoundedBody,
    parser: SseParser,
    ended: bool,
}

impl SseReader {
    pub fn new(body: BoundedBody) -> SseReader {
        SseReader { body, parser: SseParser::default(), ended: false }
    }

    /// The next event; `None` at the end of the body. A body that ends inside an event is cut.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, DirectError> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(Some(event));
            }
            if self.ended {
                return if self.parser.has_partial() { Err(DirectError::Cut) } else { Ok(None) };
            }
            match self.body.chunk().await? {
                Some(chunk) => self.parser.push(&chunk),
                None => self.ended = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&str]) -> Vec<(Option<String>, String)> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk.as_bytes());
            while let Some(event) = parser.next_event().unwrap() {
                out.push((event.name, String::from_utf8(event.data.to_vec()).unwrap()));
            }
        }
        out
    }

    #[test]
    fn splits_events_across_chunks_and_line_endings() {
        type Events = Vec<(Option<String>, String)>;
        let cases: Vec<(Vec<&str>, Events)> = vec![
            (
                vec!["event: message_start\ndata: {\"a\":1}\n\n", "event: ping\ndata: {}\n\n"],
                vec![(Some("message_start".into()), "{\"a\":1}".into()), (Some("ping".into()), "{}".into())],
            ),
            (vec!["data: one\n", "\ndata: [DO", "NE]\n\n"], vec![(None, "one".into()), (None, "[DONE]".into())]),
            (vec!["data: x\r\n\r\n"], vec![(None, "x".into())]),
            (vec![": keep-alive\n\n", "data:no-space\n\n"], vec![(None, "no-space".into())]),
            (vec!["data: a\ndata: b\n\n"], vec![(None, "a\nb".into())]),
        ];
        for (chunks, expected) in cases {
            assert_eq!(events(&chunks), expected, "{chunks:?}");
        }
    }

    #[test]
    fn raw_bytes_are_kept_for_relaying() {
        let mut parser = SseParser::default();
        parser.push(b"data: {\"id\":1}\n\ndata: [DONE]\n\n");
        assert_eq!(parser.next_event().unwrap().unwrap().raw, Bytes::from_static(b"data: {\"id\":1}\n\n"));
        assert_eq!(parser.next_event().unwrap().unwrap().raw, Bytes::from_static(b"data: [DONE]\n\n"));
        assert!(!parser.has_partial());
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut parser = SseParser::default();
        parser.push(b"data: ");
        parser.push(&vec![b'x'; MAX_EVENT_BYTES + 1]);
        assert_eq!(parser.next_event().unwrap_err(), DirectError::TooLarge);
    }
}
