//! A string that must never be printed: API keys, JWTs, AWS secret keys and session tokens.
//!
//! `Debug` and `Display` print `[redacted]`; the value is reachable only through [`Secret::expose`],
//! so every place that reveals a secret is greppable. [`redact_then_cut`] is the one rule for
//! passing on text an upstream wrote (an error message) that may quote a key.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call only where it goes onto the wire or into a signature.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

/// What replaces a secret in text passed on.
pub const REDACTED: &str = "[redacted]";
/// Shortest piece of a secret, left at the end of a text, that is still redacted.
const MIN_PREFIX_CHARS: usize = 8;

/// `text` with every copy of each of `secrets` replaced, and any start of one (8+ characters) the
/// text ends with (an upstream that cut its own message mid-key), then cut to `max_chars`
/// characters. Redacting first means no cut can leave part of a key behind.
pub fn redact_then_cut(text: &str, secrets: &[&str], max_chars: usize) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if text.contains(secret) {
            text = text.replace(secret, REDACTED);
        }
        // The longest start of the secret the text ends with, if long enough to matter.
        let mut starts = (MIN_PREFIX_CHARS..secret.len()).rev().filter_map(|n| secret.get(..n));
        if let Some(start) = starts.find(|start| text.ends_with(start)) {
            text.truncate(text.len() - start.len());
            text.push_str(REDACTED);
        }
    }
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => {
            text.truncate(at);
            text
        }
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("AKIAsupersecret");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "AKIAsupersecret");
    }

    const KEY: &str = "sk-or-v1-0123456789abcdef0123456789abcdef";

    #[test]
    fn a_key_straddling_the_cut_is_redacted_whole() {
        // The key starts 20 characters before the cut: cutting first would leave 20 of its
        // characters; redacting first leaves none.
        let text = format!("{}{KEY} was refused", "x".repeat(492));
        let out = redact_then_cut(&text, &[KEY], 512);
        assert_eq!(out.chars().count(), 512);
        assert_eq!(out, format!("{}{REDACTED} was refus", "x".repeat(492)));
        // Ending one character short of its end, as an upstream that cut it would.
        let text = format!("{}{}", "y".repeat(600), &KEY[..KEY.len() - 1]);
        let out = redact_then_cut(&text, &[KEY], 512);
        assert!(!out.contains("sk-or-v1-0123"), "{out}");
        assert_eq!(out.chars().count(), 512);
        let whole = redact_then_cut(&format!("key {}", &KEY[..KEY.len() - 1]), &[KEY], 512);
        assert_eq!(whole, format!("key {REDACTED}"));
    }

    #[test]
    fn every_copy_and_every_secret_is_redacted_short_starts_are_left() {
        let url = "https://gw.internal/v1";
        let text = format!("{KEY} at {url}: {KEY} again, see {}", &url[..6]);
        let out = redact_then_cut(&text, &[KEY, url, ""], 512);
        assert_eq!(out, format!("{REDACTED} at {REDACTED}: {REDACTED} again, see https:"));
        // Fewer than 8 characters of a key at the end is not a key.
        assert_eq!(redact_then_cut("ends with sk-or-v", &[KEY], 512), "ends with sk-or-v");
        assert_eq!(redact_then_cut("ends with sk-or-v1", &[KEY], 512), format!("ends with {REDACTED}"));
        // Cut by characters, never inside one.
        assert_eq!(redact_then_cut("ééé", &[], 2), "éé");
    }
}
