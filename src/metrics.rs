//! Prometheus counters, rendered as text on `/metrics`.
//!
//! Labels come from small fixed sets (outcome classes), never from uids, keys or anything a
//! caller chooses, so a label can never leak a secret or grow without bound.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter with one label whose values are fixed at construction.
#[derive(Debug)]
pub struct Counter {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    values: Vec<(&'static str, AtomicU64)>,
}

impl Counter {
    pub fn new(name: &'static str, help: &'static str, label: &'static str, values: &[&'static str]) -> Counter {
        Counter { name, help, label, values: values.iter().map(|v| (*v, AtomicU64::new(0))).collect() }
    }

    /// Count one event; a label value outside the fixed set counts as `other`.
    pub fn inc(&self, value: &str) {
        let slot =
            self.values.iter().find(|(v, _)| *v == value).or_else(|| self.values.iter().find(|(v, _)| *v == "other"));
        if let Some((_, count)) = slot {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count `n` at once (token counters).
    pub fn add(&self, value: &str, n: u64) {
        let slot =
            self.values.iter().find(|(v, _)| *v == value).or_else(|| self.values.iter().find(|(v, _)| *v == "other"));
        if let Some((_, count)) = slot {
            count.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self, value: &str) -> u64 {
        self.values.iter().find(|(v, _)| *v == value).map_or(0, |(_, c)| c.load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        for (value, count) in &self.values {
            let _ = writeln!(out, "{}{{{}=\"{}\"}} {}", self.name, self.label, value, count.load(Ordering::Relaxed));
        }
    }
}

/// Every counter the gateway keeps.
#[derive(Debug)]
pub struct Metrics {
    pub tokens_minted: Counter,
    pub jwks_requests: Counter,
    pub key_reloads: Counter,
    pub sts_calls: Counter,
    pub credential_cache: Counter,
    pub credential_refreshes: Counter,
    pub chat_requests: Counter,
    /// Bedrock-native routes (`/model/{id}/…`) and the Messages API (`/v1/messages*`).
    pub native_requests: Counter,
    pub messages_requests: Counter,
    /// Tokens Bedrock reported on the native routes and the Messages API, by kind.
    pub model_tokens: Counter,
}

/// Kinds of [`Metrics::model_tokens`].
pub const TOKEN_KINDS: &[&str] = &["input", "output", "cache_read", "cache_write", "other"];

/// Outcome classes shared by request counters.
pub const OUTCOMES: &[&str] = &[
    "ok",
    "bad_request",
    "unauthenticated",
    "forbidden",
    "not_found",
    "throttled",
    "upstream_error",
    "error",
    "other",
];

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            tokens_minted: Counter::new("byollm_tokens_minted_total", "Tokens minted, by result.", "result", OUTCOMES),
            jwks_requests: Counter::new(
                "byollm_discovery_requests_total",
                "Discovery and JWKS requests, by document and result.",
                "document",
                &["openid_configuration", "jwks", "jwks_not_modified", "other"],
            ),
            key_reloads: Counter::new(
                "byollm_key_reloads_total",
                "Key set reloads, by result.",
                "result",
                &["changed", "unchanged", "error", "other"],
            ),
            sts_calls: Counter::new(
                "byollm_sts_calls_total",
                "AssumeRoleWithWebIdentity calls, by outcome class.",
                "outcome",
                &[
                    "ok",
                    "trust_policy_mismatch",
                    "oidc_provider_missing",
                    "oidc_audience_mismatch",
                    "invalid_token",
                    "issuer_unreachable",
                    "token_expired",
                    "invalid_parameters",
                    "region_disabled",
                    "refused",
                    "throttled",
                    "upstream_error",
                    "other",
                ],
            ),
            credential_cache: Counter::new(
                "byollm_credential_cache_total",
                "Credential cache lookups.",
                "result",
                &["hit", "miss", "stale_served", "backoff", "other"],
            ),
            credential_refreshes: Counter::new(
                "byollm_credential_refreshes_total",
                "Credential refreshes, by result.",
                "result",
                &["ok", "error", "other"],
            ),
            chat_requests: Counter::new(
                "byollm_chat_requests_total",
                "Chat completion requests, by result.",
                "result",
                OUTCOMES,
            ),
            native_requests: Counter::new(
                "byollm_native_requests_total",
                "Bedrock-native requests (/model/{id}/...), by result.",
                "result",
                OUTCOMES,
            ),
            messages_requests: Counter::new(
                "byollm_messages_requests_total",
                "Anthropic Messages API requests, by result.",
                "result",
                OUTCOMES,
            ),
            model_tokens: Counter::new(
                "byollm_model_tokens_total",
                "Tokens Bedrock reported on the native routes and the Messages API, by kind.",
                "kind",
                TOKEN_KINDS,
            ),
        }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for counter in [
            &self.tokens_minted,
            &self.jwks_requests,
            &self.key_reloads,
            &self.sts_calls,
            &self.credential_cache,
            &self.credential_refreshes,
            &self.chat_requests,
            &self.native_requests,
            &self.messages_requests,
            &self.model_tokens,
        ] {
            counter.render(&mut out);
        }
        out
    }
}

/// The outcome class of an HTTP status, for counters.
pub fn outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        429 => "throttled",
        400..=499 => "bad_request",
        502..=504 => "upstream_error",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders_fixed_labels_only() {
        let metrics = Metrics::default();
        metrics.tokens_minted.inc("ok");
        metrics.tokens_minted.inc("scoped_principal:acme/user:alice");
        assert_eq!(metrics.tokens_minted.get("ok"), 1);
        assert_eq!(metrics.tokens_minted.get("other"), 1);
        let text = metrics.render();
        assert!(text.contains("byollm_tokens_minted_total{result=\"ok\"} 1"));
        assert!(!text.contains("alice"));
        assert_eq!(outcome(403), "forbidden");
        assert_eq!(outcome(503), "upstream_error");
    }
}
