//! What byollm tells its operators about the requests it serves: the audit trail (one JSON line
//! per model request, [`audit`]), the Prometheus metrics ([`metrics`], fed from the same record)
//! and OpenTelemetry spans ([`telemetry`], opt-in).
//!
//! Must never: hold prompt or completion text, keys, tokens or credentials, or block a request.
//! `audit` knows what a finished record feeds only as [`audit::RecordObserver`]s; `metrics` is one.

pub mod audit;
pub mod metrics;
pub mod telemetry;
