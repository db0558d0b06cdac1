//! The process-wide budget of upstream-answer bytes held in memory
//! (`server.max_answer_bytes_in_flight`), and the buffer a non-streamed answer is read into.
//!
//! A non-streamed answer (the Anthropic API's message, an OpenAI-compatible endpoint's completion,
//! Bedrock's `InvokeModel` answer, an error body of a direct endpoint) is read whole before it is
//! converted or relayed. Each takes its share of the [`AnswerBudget`] as its bytes arrive (never on
//! a length the upstream declares) and keeps it until the [`BufferedAnswer`] is dropped: the bytes
//! stay charged while the caller converts them, and while a relayed answer is sent (the answer is a
//! response body handing out its bytes in slices, so it lives until the last one was taken). When
//! the budget has no room the read stops at once with [`BufferError::Busy`] (503 `server_busy`
//! with `Retry-After`, see [`busy_error`]): waiting while holding part of an answer would only let
//! every reader hold a part.
//!
//! Must never: wait for room, read a body itself (the clients push what they read into an
//! [`AnswerBuffer`]), or let bytes be held without their charge.

use std::convert::Infallible;
use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{ApiError, ErrorKind};

/// The budget counts KiB (a semaphore's permits are `u32`).
const KIB: usize = 1024;
/// Smallest first allocation of a buffer.
const MIN_CAPACITY: usize = 8 * KIB;
/// Largest slice a relayed answer hands out at once: the HTTP server asks for the next one only
/// when it has written the previous ones, so the answer (and its charge) lives until the end.
const SLICE_BYTES: usize = 64 * KIB;

/// Why an answer could not be buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferError {
    /// Larger than the call's limit (or than the whole budget).
    TooLarge,
    /// The budget has no room for it now.
    Busy,
}

/// The error for an answer the budget had no room for; `upstream` names it as the configuration
/// does (`the Anthropic API`, `endpoint "openrouter"`, `Bedrock`).
pub fn busy_error(upstream: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal,
        "server_busy",
        format!(
            "{upstream}: the gateway is holding as many upstream answers as server.max_answer_bytes_in_flight allows; retry shortly"
        ),
    )
    .with_retry_after(1)
}

/// The budget of answer bytes all buffered answers together may hold. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct AnswerBudget {
    semaphore: Arc<Semaphore>,
    total_kib: usize,
}

impl AnswerBudget {
    pub fn new(bytes: usize) -> AnswerBudget {
        let total_kib = bytes.div_ceil(KIB).clamp(1, u32::MAX as usize).min(Semaphore::MAX_PERMITS);
        AnswerBudget { semaphore: Arc::new(Semaphore::new(total_kib)), total_kib }
    }

    /// Bytes free right now (in whole KiB).
    pub fn available_bytes(&self) -> usize {
        self.semaphore.available_permits() * KIB
    }

    /// Start buffering one answer of at most `limit` bytes (and never more than the whole budget).
    /// Takes its first KiB now, so a call whose answer could not be held is not made at all.
    pub fn start(&self, limit: usize) -> Result<AnswerBuffer, BufferError> {
        let charge = self.semaphore.clone().try_acquire_owned().map_err(|_| BufferError::Busy)?;
        Ok(AnswerBuffer {
            bytes: Vec::new(),
            segments: Vec::new(),
            len: 0,
            limit: limit.min(self.total_kib * KIB),
            expected: None,
            charge,
            semaphore: self.semaphore.clone(),
        })
    }
}

/// An answer being read: its bytes so far, charged to the budget.
///
/// Laid out so that the memory it holds stays close to what it is charged for, whatever the
/// system allocator keeps of freed blocks. An answer of up to [`SMALL`] bytes lives in one small
/// block. A larger one lives in blocks of at least [`BLOCK`] bytes: glibc maps a block that large
/// straight from the system and gives it back when freed (a smaller freed block it keeps, and it
/// raises its mapping threshold after each one, up to 32 MiB), and only the pages written become
/// resident. An answer whose length was declared gets one block of that size (at least `BLOCK`,
/// [`AnswerBuffer::expect`]); one of unknown length fills `BLOCK`-sized segments, copied into one
/// block of its exact size at the end when it took more than one. Measured with 32 concurrent
/// 60 MiB answers of unknown length (README "Performance"): a doubling buffer peaked at 384 MiB
/// and kept 206 MiB resident after them; 1 MiB segments, 271 and 138 MiB.
pub struct AnswerBuffer {
    /// The whole answer when its length was declared; else the segment being filled.
    bytes: Vec<u8>,
    /// Filled segments of an answer whose length was not declared.
    segments: Vec<Vec<u8>>,
    /// Bytes buffered: in `segments` and `bytes`.
    len: usize,
    limit: usize,
    /// The length the upstream declared.
    expected: Option<usize>,
    /// KiB held: at least the bytes so far.
    charge: OwnedSemaphorePermit,
    semaphore: Arc<Semaphore>,
}

/// Largest answer kept in a small block (grown by doubling from [`MIN_CAPACITY`]).
const SMALL: usize = 64 * KIB;
/// Smallest block of a larger answer, and the segment size of one of unknown length: above glibc's
/// largest mapping threshold (32 MiB), so always mapped on its own and unmapped when freed.
const BLOCK: usize = 33 << 20;

impl AnswerBuffer {
    /// The length the upstream declared (`Content-Length`): more than the limit fails now, before
    /// a byte is read. Otherwise the buffer is allocated for it at once (at least [`BLOCK`] bytes
    /// beyond [`SMALL`]): address space only, its pages become resident as they are written, and
    /// the budget is charged for what was written. If the allocation is refused, the answer is
    /// gathered as if of unknown length.
    pub fn expect(&mut self, declared: Option<u64>) -> Result<(), BufferError> {
        let Some(declared) = declared else { return Ok(()) };
        let declared = usize::try_from(declared).map_err(|_| BufferError::TooLarge)?;
        if declared > self.limit {
            return Err(BufferError::TooLarge);
        }
        let size = if declared <= SMALL { declared } else { declared.max(BLOCK) };
        if self.len == 0 && self.bytes.try_reserve_exact(size).is_ok() {
            self.expected = Some(declared);
        }
        Ok(())
    }

    /// Append `data`, charging the budget for it first.
    pub fn push(&mut self, data: &[u8]) -> Result<(), BufferError> {
        let len = self.len.checked_add(data.len()).ok_or(BufferError::TooLarge)?;
        if len > self.limit {
            return Err(BufferError::TooLarge);
        }
        let kib = len.div_ceil(KIB).max(1);
        let held = self.charge.num_permits();
        if kib > held {
            let more = u32::try_from(kib - held).map_err(|_| BufferError::Busy)?;
            let permit = self.semaphore.clone().try_acquire_many_owned(more).map_err(|_| BufferError::Busy)?;
            self.charge.merge(permit);
        }
        self.len = len;
        if self.expected.is_some_and(|expected| len <= expected) {
            // Within the one allocation made for the declared length.
            self.bytes.extend_from_slice(data);
            return Ok(());
        }
        let mut rest = data;
        while !rest.is_empty() {
            if self.bytes.len() == self.bytes.capacity() {
                let capacity = self.bytes.capacity();
                if capacity >= BLOCK {
                    let mut segment = Vec::new();
                    segment.try_reserve_exact(BLOCK).map_err(|_| BufferError::Busy)?;
                    self.segments.push(std::mem::replace(&mut self.bytes, segment));
                } else if capacity >= SMALL {
                    self.bytes.try_reserve_exact(BLOCK - capacity).map_err(|_| BufferError::Busy)?;
                } else {
                    self.bytes.reserve_exact((capacity * 2).clamp(MIN_CAPACITY, SMALL) - capacity);
                }
            }
            let room = self.bytes.capacity() - self.bytes.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.bytes.extend_from_slice(now);
            rest = later;
        }
        Ok(())
    }

    /// Bytes buffered so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole answer, still charged. An answer gathered in several segments is copied into one
    /// block (larger than a segment, so mapped too), each segment freed once copied (`Busy` if
    /// that block cannot be had).
    pub fn finish(mut self) -> Result<BufferedAnswer, BufferError> {
        if !self.segments.is_empty() {
            let mut whole = Vec::new();
            whole.try_reserve_exact(self.len).map_err(|_| BufferError::Busy)?;
            for segment in self.segments.drain(..) {
                whole.extend_from_slice(&segment);
            }
            whole.extend_from_slice(&self.bytes);
            self.bytes = whole;
        }
        Ok(BufferedAnswer { bytes: Bytes::from(self.bytes), _charge: self.charge })
    }
}

/// A whole answer and its share of the budget, given back when this is dropped. Reads as `[u8]`;
/// as an HTTP body it relays the bytes unchanged.
pub struct BufferedAnswer {
    bytes: Bytes,
    _charge: OwnedSemaphorePermit,
}

// A model's answer is never printed, only its size.
impl fmt::Debug for AnswerBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnswerBuffer").field("len", &self.len).field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl fmt::Debug for BufferedAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferedAnswer").field("len", &self.bytes.len()).finish_non_exhaustive()
    }
}

impl BufferedAnswer {
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl Deref for BufferedAnswer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl http_body::Body for BufferedAnswer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.bytes.is_empty() {
            return Poll::Ready(None);
        }
        // A slice shares the answer's allocation: no copy.
        let slice = this.bytes.split_to(this.bytes.len().min(SLICE_BYTES));
        Poll::Ready(Some(Ok(Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.bytes.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn bytes_are_charged_as_they_arrive_and_given_back_on_drop() {
        let budget = AnswerBudget::new(64 * KIB);
        let mut buffer = budget.start(1 << 20).unwrap();
        assert_eq!(budget.available_bytes(), 63 * KIB, "the first KiB is taken before the call");
        // A declared length reserves nothing.
        buffer.expect(Some(60 * KIB as u64)).unwrap();
        assert_eq!(budget.available_bytes(), 63 * KIB);
        buffer.push(&[b'a'; 10 * KIB]).unwrap();
        assert_eq!(budget.available_bytes(), 54 * KIB);
        buffer.push(&[b'b'; 1]).unwrap();
        assert_eq!(budget.available_bytes(), 53 * KIB, "a started KiB is a whole KiB");
        let answer = buffer.finish().unwrap();
        assert_eq!(answer.len(), 10 * KIB + 1);
        assert_eq!(format!("{answer:?}"), "BufferedAnswer { len: 10241, .. }", "never the answer itself");
        assert_eq!(budget.available_bytes(), 53 * KIB, "held while the answer is");
        drop(answer);
        assert_eq!(budget.available_bytes(), 64 * KIB);
    }

    #[test]
    fn no_room_is_busy_at_once_and_the_failed_reader_gives_its_share_back() {
        let budget = AnswerBudget::new(16 * KIB);
        let mut first = budget.start(1 << 20).unwrap();
        first.push(&[0; 14 * KIB]).unwrap();
        let mut second = budget.start(1 << 20).unwrap();
        assert_eq!(second.push(&[0; 8 * KIB]), Err(BufferError::Busy));
        assert_eq!(second.len(), 0, "nothing is buffered without its charge");
        second.push(&[0; KIB]).unwrap();
        let third = budget.start(1 << 20).unwrap();
        assert_eq!(budget.available_bytes(), 0);
        assert_eq!(budget.start(1 << 20).unwrap_err(), BufferError::Busy, "a call is not even started");
        drop((second, third));
        let mut fourth = budget.start(1 << 20).unwrap();
        fourth.push(&[0; 2 * KIB]).unwrap();
        assert_eq!(fourth.push(&[0; KIB]), Err(BufferError::Busy));
    }

    #[test]
    fn limits_hold_whatever_the_upstream_declares() {
        let budget = AnswerBudget::new(1 << 20);
        let mut buffer = budget.start(4 * KIB).unwrap();
        assert_eq!(buffer.expect(Some(5000)), Err(BufferError::TooLarge));
        let mut buffer = budget.start(4 * KIB).unwrap();
        buffer.expect(Some(100)).unwrap();
        // A declared length that lies low still stops at the limit, not at the declaration.
        buffer.push(&[0; 3000]).unwrap();
        assert_eq!(buffer.push(&[0; 2000]), Err(BufferError::TooLarge));
        // The limit is never more than the whole budget.
        let small = AnswerBudget::new(8 * KIB);
        let mut buffer = small.start(1 << 30).unwrap();
        assert_eq!(buffer.push(&[0; 9 * KIB]), Err(BufferError::TooLarge));
    }

    #[test]
    fn large_answers_live_in_blocks_the_allocator_maps_and_unmaps() {
        const TOTAL: usize = 256 << 20;
        let budget = AnswerBudget::new(TOTAL);
        let text: Vec<u8> = (0..2 * BLOCK + 12_345).map(|i| (i % 253) as u8).collect();
        let mut declared = budget.start(TOTAL).unwrap();
        declared.expect(Some(text.len() as u64)).unwrap();
        assert_eq!(declared.bytes.capacity(), text.len(), "allocated at once, charged nothing yet");
        assert_eq!(budget.available_bytes(), TOTAL - KIB);
        for chunk in text.chunks(64 * KIB) {
            declared.push(chunk).unwrap();
        }
        assert_eq!((declared.bytes.capacity(), declared.segments.len()), (text.len(), 0));

        let mut unknown = budget.start(TOTAL).unwrap();
        for chunk in text.chunks(100_000) {
            unknown.push(chunk).unwrap();
        }
        assert_eq!(unknown.len(), text.len());
        assert_eq!(unknown.segments.len(), 2);
        assert!(unknown.segments.iter().all(|s| s.len() == BLOCK && s.capacity() == BLOCK));
        assert_eq!(budget.available_bytes(), TOTAL - 2 * text.len().div_ceil(KIB) * KIB);
        let (declared, unknown) = (declared.finish().unwrap(), unknown.finish().unwrap());
        assert_eq!(&declared[..], &text[..]);
        assert_eq!(&unknown[..], &text[..]);
        drop((declared, unknown));
        assert_eq!(budget.available_bytes(), TOTAL);

        // Past SMALL, one block of BLOCK bytes (address space; pages in as written), kept as is.
        let mut middle = budget.start(TOTAL).unwrap();
        middle.push(&text[..100_000]).unwrap();
        assert_eq!((middle.bytes.capacity(), middle.segments.len()), (BLOCK, 0));
        let mut declared = budget.start(TOTAL).unwrap();
        declared.expect(Some(100_000)).unwrap();
        assert_eq!(declared.bytes.capacity(), BLOCK);
        // A small answer stays in a small block.
        let mut small = budget.start(TOTAL).unwrap();
        small.push(b"{}").unwrap();
        assert_eq!(small.bytes.capacity(), MIN_CAPACITY);
        assert_eq!(&small.finish().unwrap()[..], b"{}");
        let mut small = budget.start(TOTAL).unwrap();
        small.expect(Some(2)).unwrap();
        assert_eq!(small.bytes.capacity(), 2);
    }

    #[tokio::test]
    async fn as_a_body_the_answer_relays_its_bytes_and_keeps_its_charge_until_dropped() {
        let budget = AnswerBudget::new(1 << 20);
        let mut buffer = budget.start(1 << 20).unwrap();
        let text: Vec<u8> = (0..200 * KIB).map(|i| (i % 251) as u8).collect();
        buffer.push(&text).unwrap();
        let mut answer = buffer.finish().unwrap();
        assert_eq!(http_body::Body::size_hint(&answer).exact(), Some(text.len() as u64));
        let first = answer.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), SLICE_BYTES);
        assert_eq!(budget.available_bytes(), (1 << 20) - 200 * KIB, "charged while being sent");
        let mut relayed = first.to_vec();
        while let Some(frame) = answer.frame().await {
            relayed.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(relayed, text);
        drop(answer);
        assert_eq!(budget.available_bytes(), 1 << 20);
    }
}
