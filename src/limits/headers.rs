//! The rate-limit headers of an answer, in OpenAI's or Anthropic's names.

use http::{HeaderName, HeaderValue};

use super::View;

/// Whose header names a surface uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (OpenAI's).
    OpenAi,
    /// `anthropic-ratelimit-{requests,input-tokens,output-tokens}-{limit,remaining,reset}`.
    Anthropic,
}

/// The rate-limit headers of `view` in `naming`; `now` (seconds since the epoch) dates
/// Anthropic's RFC 3339 reset times.
pub fn headers(view: &View, naming: Naming, now_secs: u64) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let mut put = |name: String, value: String| {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            out.push((name, value));
        }
    };
    match naming {
        Naming::OpenAi => {
            let tokens = view.input_tokens.or(view.output_tokens);
            for (kind, room) in [("requests", view.requests), ("tokens", tokens)] {
                let Some(room) = room else { continue };
                put(format!("x-ratelimit-limit-{kind}"), room.limit.to_string());
                put(format!("x-ratelimit-remaining-{kind}"), room.remaining().to_string());
                put(format!("x-ratelimit-reset-{kind}"), format!("{}s", room.reset_secs));
            }
        }
        Naming::Anthropic => {
            for (kind, room) in [
                ("requests", view.requests),
                ("input-tokens", view.input_tokens),
                ("output-tokens", view.output_tokens),
            ] {
                let Some(room) = room else { continue };
                let reset = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now_secs + room.reset_secs);
                put(format!("anthropic-ratelimit-{kind}-limit"), room.limit.to_string());
                put(format!("anthropic-ratelimit-{kind}-remaining"), room.remaining().to_string());
                put(format!("anthropic-ratelimit-{kind}-reset"), crate::broker::rfc3339(reset));
            }
        }
    }
    out
}
