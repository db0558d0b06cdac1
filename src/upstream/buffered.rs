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
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

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
        "api_error",
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
            limit: limit.min(self.total_kib * KIB),
            expected: None,
            charge,
            semaphore: self.semaphore.clone(),
        })
    }
}

/// An answer being read: its bytes so far, charged to the budget.
#[derive(Debug)]
pub struct AnswerBuffer {
    bytes: Vec<u8>,
    limit: usize,
    /// The length the upstream declared: the buffer never grows past it (nor is charged for it).
    expected: Option<usize>,
    /// KiB held: at least the bytes so far.
    charge: OwnedSemaphorePermit,
    semaphore: Arc<Semaphore>,
}

impl AnswerBuffer {
    /// The length the upstream declared (`Content-Length`): more than the limit fails now, before
    /// a byte is read; otherwise it only caps how far the buffer's capacity grows.
    pub fn expect(&mut self, declared: Option<u64>) -> Result<(), BufferError> {
        let Some(declared) = declared else { return Ok(()) };
        let declared = usize::try_from(declared).map_err(|_| BufferError::TooLarge)?;
        if declared > self.limit {
            return Err(BufferError::TooLarge);
        }
        self.expected = Some(declared);
        Ok(())
    }

    /// Append `data`, charging the budget for it first.
    pub fn push(&mut self, data: &[u8]) -> Result<(), BufferError> {
        let len = self.bytes.len().checked_add(data.len()).ok_or(BufferError::TooLarge)?;
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
        if len > self.bytes.capacity() {
            // Doubling, but never past the declared length or the limit: a large answer ends in
            // one allocation of its own size, which pages in only as it is written.
            let ceiling = self.expected.filter(|e| *e >= len).unwrap_or(self.limit);
            let target = (self.bytes.capacity() * 2).max(MIN_CAPACITY).min(ceiling).max(len);
            self.bytes.reserve_exact(target - self.bytes.len());
        }
        self.bytes.extend_from_slice(data);
        Ok(())
    }

    /// Bytes buffered so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The whole answer, still charged.
    pub fn finish(self) -> BufferedAnswer {
        BufferedAnswer { bytes: Bytes::from(self.bytes), _charge: self.charge }
    }
}

/// A whole answer and its share of the budget, given back when this is dropped. Reads as `[u8]`;
/// as an HTTP body it relays the bytes unchanged.
#[derive(Debug)]
pub struct BufferedAnswer {
    bytes: Bytes,
    _charge: OwnedSemaphorePermit,
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
        let answer = buffer.finish();
        assert_eq!(answer.len(), 10 * KIB + 1);
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
    fn capacity_stops_at_the_declared_length() {
        let budget = AnswerBudget::new(64 << 20);
        let mut buffer = budget.start(64 << 20).unwrap();
        let declared = 3 * 1024 * 1024 + 17;
        buffer.expect(Some(declared as u64)).unwrap();
        let chunk = vec![7u8; 64 * KIB];
        while buffer.len() + chunk.len() <= declared {
            buffer.push(&chunk).unwrap();
        }
        buffer.push(&chunk[..declared - buffer.len()]).unwrap();
        assert_eq!(buffer.bytes.capacity(), declared, "one allocation of the answer's own size at the end");
    }

    #[tokio::test]
    async fn as_a_body_the_answer_relays_its_bytes_and_keeps_its_charge_until_dropped() {
        let budget = AnswerBudget::new(1 << 20);
        let mut buffer = budget.start(1 << 20).unwrap();
        let text: Vec<u8> = (0..200 * KIB).map(|i| (i % 251) as u8).collect();
        buffer.push(&text).unwrap();
        let mut answer = buffer.finish();
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
