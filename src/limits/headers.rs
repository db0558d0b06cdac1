//! The rate-limit headers of an answer, in OpenAI's or Anthropic's names.

use http::{HeaderName, HeaderValue};

use super::View;
use super::store::Room;

/// Whose header names a surface uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (OpenAI's).
    OpenAi,
    /// `anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}`.
    Anthropic,
}

/// OpenAI's names, by kind (requests, tokens): limit, remaining, reset.
const OPENAI: [[HeaderName; 3]; 2] = [
    [
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("x-ratelimit-reset-requests"),
    ],
    [
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("x-ratelimit-reset-tokens"),
    ],
];

/// Anthropic's names, by kind (requests, input tokens, output tokens): limit, remaining, reset.
const ANTHROPIC: [[HeaderName; 3]; 3] = [
    [
        HeaderName::from_static("anthropic-ratelimit-requests-limit"),
        HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
        HeaderName::from_static("anthropic-ratelimit-requests-reset"),
    ],
    [
        HeaderName::from_static("anthropic-ratelimit-input-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-input-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-input-tokens-reset"),
    ],
    [
        HeaderName::from_static("anthropic-ratelimit-output-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-output-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-output-tokens-reset"),
    ],
];

/// The rate-limit headers of `view` in `naming`; `now` (seconds since the epoch) dates
/// Anthropic's RFC 3339 reset times.
pub fn headers(view: &View, naming: Naming, now_secs: u64) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(9);
    let mut put = |[limit, remaining, reset]: &[HeaderName; 3], room: Room, reset_value: String| {
        out.push((limit.clone(), HeaderValue::from(room.limit)));
        out.push((remaining.clone(), HeaderValue::from(room.remaining())));
        if let Ok(value) = HeaderValue::try_from(reset_value) {
            out.push((reset.clone(), value));
        }
    };
    match naming {
        Naming::OpenAi => {
            let tokens = view.input_tokens.or(view.output_tokens);
            for (names, room) in OPENAI.iter().zip([view.requests, tokens]) {
                let Some(room) = room else { continue };
                put(names, room, format!("{}s", room.reset_secs));
            }
        }
        Naming::Anthropic => {
            for (names, room) in ANTHROPIC.iter().zip([view.requests, view.input_tokens, view.output_tokens]) {
                let Some(room) = room else { continue };
                let reset = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now_secs + room.reset_secs);
                put(names, room, crate::broker::rfc3339(reset));
            }
        }
    }
    out
}
