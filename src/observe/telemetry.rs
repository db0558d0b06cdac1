//! OpenTelemetry traces, opt-in: with the cargo feature `otel` and `[telemetry] otlp_endpoint`,
//! one span per model request (chat completions, Messages API, native routes), made from the
//! request's finished audit record and exported over OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`.
//!
//! A span carries the audit line's fields as attributes ([`span_attributes`]: who asked, the
//! public model, the route that served and its upstream model id, status, usage, cost, time to first
//! byte), each attempt as an event, its start and end from the record's times, and an error status
//! for a 5xx. The audit record has no field that could hold prompt or completion text, keys,
//! tokens, credentials or upstream URLs, so no span can carry them either.
//!
//! Export runs on the OpenTelemetry SDK's batch thread; its HTTP calls go through byollm's own
//! hyper + rustls client ([`crate::upstream::client`]) on the server's runtime, so there is one
//! TLS stack. A slow or absent collector costs a request nothing: spans wait in the SDK's bounded
//! queue (2048; `OTEL_BSP_*` tune it) and are dropped when it is full.
//!
//! Must never: block a request, or put anything in a span that the audit record does not hold.

use std::sync::Arc;

use crate::config::TelemetryConfig;
use crate::observe::audit::{AuditRecord, RecordObserver};

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Float(f64),
}

/// The span's name: the operation and the public model (`chat_completions claude-sonnet-4-5`).
pub fn span_name(record: &AuditRecord) -> String {
    match &record.model {
        Some(model) => format!("{} {model}", record.operation),
        None => record.operation.to_owned(),
    }
}

/// The audit record's fields as span attributes, named after OpenTelemetry's semantic conventions
/// where one exists (`gen_ai.*`, `http.response.status_code`, `error.type`), else `byollm.*`.
/// Absent fields are left out.
pub fn span_attributes(record: &AuditRecord) -> Vec<(&'static str, AttributeValue)> {
    use AttributeValue::{Bool, Int, Str};
    let mut out = Vec::with_capacity(24);
    let mut text = |key: &'static str, value: &Option<String>| {
        if let Some(value) = value {
            out.push((key, Str(value.clone())));
        }
    };
    text("byollm.caller", &record.caller);
    text("byollm.team", &record.team);
    text("byollm.actor", &record.actor);
    text("byollm.principal", &record.principal);
    text("byollm.agent", &record.agent);
    text("byollm.run", &record.run);
    text("gen_ai.request.model", &record.model);
    text("byollm.route", &record.route);
    text("byollm.upstream_model", &record.upstream_model);
    text("gen_ai.response.id", &record.id);
    let count = |value: Option<u64>| value.map(|v| Int(i64::try_from(v).unwrap_or(i64::MAX)));
    let usage = &record.usage;
    for (key, value) in [
        ("gen_ai.usage.input_tokens", usage.input_tokens),
        ("gen_ai.usage.output_tokens", usage.output_tokens),
        ("byollm.usage.cache_read_input_tokens", usage.cache_read_input_tokens),
        ("byollm.usage.cache_creation_input_tokens", usage.cache_creation_input_tokens),
        ("byollm.usage.reasoning_tokens", usage.reasoning_tokens),
        ("byollm.ttfb_ms", record.ttfb_ms),
    ] {
        if let Some(value) = count(value) {
            out.push((key, value));
        }
    }
    out.push(("byollm.surface", Str(record.surface.to_owned())));
    out.push(("gen_ai.operation.name", Str(record.operation.to_owned())));
    out.push(("byollm.stream", Bool(record.stream)));
    out.push(("http.response.status_code", Int(i64::from(record.status))));
    out.push(("byollm.attempts", Int(i64::try_from(record.attempts.len()).unwrap_or(i64::MAX))));
    if let Some(error) = record.error {
        out.push(("error.type", Str(error.to_owned())));
    }
    if let Some(cost) = record.cost_usd {
        out.push(("byollm.cost_usd", AttributeValue::Float(cost.as_f64())));
    }
    out
}

/// The attributes of one attempt's event (`attempt`).
pub fn attempt_attributes(attempt: &crate::observe::audit::AttemptRecord) -> Vec<(&'static str, AttributeValue)> {
    use AttributeValue::{Int, Str};
    let mut out = vec![
        ("byollm.route", Str(attempt.route.clone())),
        ("byollm.upstream_model", Str(attempt.upstream_model.clone())),
        ("byollm.result", Str(attempt.result.to_owned())),
    ];
    if let Some(status) = attempt.status {
        out.push(("http.response.status_code", Int(i64::from(status))));
    }
    if let Some(code) = attempt.code {
        out.push(("error.type", Str(code.to_owned())));
    }
    out
}

/// The span exporter in force, or nothing (feature off, or no endpoint configured).
pub struct Telemetry {
    #[cfg(feature = "otel")]
    exporter: otel::Exporter,
}

impl Telemetry {
    /// Start exporting when `config` names a collector (start-up, on the server's runtime).
    pub fn start(config: &TelemetryConfig) -> Result<Option<Arc<Telemetry>>, String> {
        let Some(endpoint) = &config.otlp_endpoint else { return Ok(None) };
        #[cfg(feature = "otel")]
        {
            let exporter = otel::Exporter::start(endpoint, config)?;
            tracing::info!(service = %config.service_name, "opentelemetry traces on: one span per model request");
            Ok(Some(Arc::new(Telemetry { exporter })))
        }
        #[cfg(not(feature = "otel"))]
        {
            let _ = endpoint;
            Err("telemetry.otlp_endpoint: this byollm was built without OpenTelemetry (--features otel)".into())
        }
    }

    /// Export what is queued and stop (shutdown); waits at most the export timeout.
    pub async fn shutdown(self: Arc<Self>) {
        #[cfg(feature = "otel")]
        {
            let telemetry = self.clone();
            let _ = tokio::task::spawn_blocking(move || telemetry.exporter.shutdown()).await;
        }
    }
}

impl RecordObserver for Telemetry {
    fn observe(&self, record: &AuditRecord) {
        #[cfg(feature = "otel")]
        self.exporter.record(record);
        #[cfg(not(feature = "otel"))]
        let _ = record;
    }
}

#[cfg(feature = "otel")]
mod otel {
    use std::future::Future;
    use std::pin::Pin;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, Limited};
    use opentelemetry::trace::{Span, SpanKind, Status, Tracer, TracerProvider};
    use opentelemetry::{KeyValue, Value};
    use opentelemetry_http::{HttpClient, HttpError, Request, Response};
    use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

    use super::{AttributeValue, attempt_attributes, span_attributes, span_name};
    use crate::config::TelemetryConfig;
    use crate::observe::audit::AuditRecord;

    /// Largest collector answer read (they are empty or tiny).
    const MAX_ANSWER_BYTES: usize = 64 * 1024;

    fn key_values(attributes: Vec<(&'static str, AttributeValue)>) -> Vec<KeyValue> {
        attributes
            .into_iter()
            .map(|(key, value)| {
                let value = match value {
                    AttributeValue::Str(text) => Value::from(text),
                    AttributeValue::Int(number) => Value::I64(number),
                    AttributeValue::Bool(flag) => Value::Bool(flag),
                    AttributeValue::Float(number) => Value::F64(number),
                };
                KeyValue::new(key, value)
            })
            .collect()
    }

    /// The OTLP exporter's HTTP client: byollm's pooled hyper + rustls client, driven on the
    /// server's runtime (the SDK's batch thread has none), with a total timeout.
    #[derive(Debug)]
    struct OtlpClient {
        runtime: tokio::runtime::Handle,
        timeout: Duration,
    }

    static CLIENT: std::sync::LazyLock<crate::upstream::client::HttpClient> =
        std::sync::LazyLock::new(crate::upstream::client::http_client);

    impl HttpClient for OtlpClient {
        fn send_bytes<'a, 'b>(
            &'a self,
            request: Request<Bytes>,
        ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
        where
            'a: 'b,
            Self: 'b,
        {
            let timeout = self.timeout;
            let task = self.runtime.spawn(async move {
                let (parts, body) = request.into_parts();
                let request = http::Request::from_parts(parts, Full::new(body));
                let response = tokio::time::timeout(timeout, CLIENT.request(request))
                    .await
                    .map_err(|_| HttpError::from("the collector did not answer in time"))??;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            });
            Box::pin(async move { task.await.map_err(HttpError::from)? })
        }
    }

    pub struct Exporter {
        provider: SdkTracerProvider,
        tracer: SdkTracer,
        timeout: Duration,
    }

    impl Exporter {
        pub fn start(endpoint: &url::Url, config: &TelemetryConfig) -> Result<Exporter, String> {
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|_| "telemetry must start on the server's runtime".to_owned())?;
            let traces = format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/'));
            let client = OtlpClient { runtime, timeout: config.export_timeout };
            let exporter = SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(traces)
                .with_timeout(config.export_timeout)
                .build()
                .map_err(|error| format!("telemetry: the OTLP exporter could not be built: {error}"))?;
            let resource = Resource::builder().with_service_name(config.service_name.clone()).build();
            let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
            let tracer = provider.tracer("byollm");
            Ok(Exporter { provider, tracer, timeout: config.export_timeout })
        }

        /// One finished request as one span (queued for the batch thread).
        pub fn record(&self, record: &AuditRecord) {
            let start = UNIX_EPOCH + Duration::from_millis(record.time_unix_ms);
            let end = start + Duration::from_millis(record.duration_ms);
            let mut span = self
                .tracer
                .span_builder(span_name(record))
                .with_kind(SpanKind::Server)
                .with_start_time(start)
                .with_attributes(key_values(span_attributes(record)))
                .start(&self.tracer);
            for attempt in &record.attempts {
                span.add_event_with_timestamp(
                    "attempt",
                    end.min(SystemTime::now()),
                    key_values(attempt_attributes(attempt)),
                );
            }
            if record.status >= 500 {
                span.set_status(Status::error(record.error.unwrap_or("error")));
            }
            span.end_with_timestamp(end);
        }

        /// Flush and stop (blocking).
        pub fn shutdown(&self) {
            if let Err(error) = self.provider.shutdown_with_timeout(self.timeout) {
                tracing::warn!(%error, "opentelemetry spans not all exported at shutdown");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::audit::{AttemptRecord, AuditRecord};

    #[test]
    fn a_span_holds_the_audit_lines_fields_and_nothing_else() {
        let mut record = AuditRecord::start("messages");
        record.caller = Some("acme-worker".into());
        record.team = Some("acme".into());
        record.model = Some("claude-sonnet-4-5".into());
        record.route = Some("anthropic".into());
        record.status = 200;
        record.usage.input_tokens = Some(31);
        record.ttfb_ms = Some(12);
        record.cost_usd = Some(crate::models::prices::Usd(195_000));
        record.attempts.push(AttemptRecord {
            route: "bedrock".into(),
            upstream_model: "global.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
            result: "throttled",
            status: Some(429),
            code: Some("bedrock_throttled"),
        });
        assert_eq!(span_name(&record), "messages claude-sonnet-4-5");
        let attributes = span_attributes(&record);
        let get = |key: &str| attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone());
        assert_eq!(get("byollm.team"), Some(AttributeValue::Str("acme".into())));
        assert_eq!(get("gen_ai.request.model"), Some(AttributeValue::Str("claude-sonnet-4-5".into())));
        assert_eq!(get("gen_ai.usage.input_tokens"), Some(AttributeValue::Int(31)));
        assert_eq!(get("http.response.status_code"), Some(AttributeValue::Int(200)));
        assert_eq!(get("byollm.attempts"), Some(AttributeValue::Int(1)));
        assert_eq!(get("gen_ai.usage.output_tokens"), None, "absent usage is left out");
        assert_eq!(get("error.type"), None);
        assert_eq!(get("byollm.cost_usd"), Some(AttributeValue::Float(0.000195)), "the audit line's cost");
        let event = attempt_attributes(&record.attempts[0]);
        assert!(event.contains(&("byollm.result", AttributeValue::Str("throttled".into()))));
        assert!(event.contains(&("error.type", AttributeValue::Str("bedrock_throttled".into()))));
        // One attribute per field the record holds a value in (7 set here, 5 always present).
        assert_eq!(attributes.len(), 12, "{attributes:?}");
    }

    #[test]
    fn the_endpoint_is_checked_and_needs_the_feature() {
        let load = |endpoint: &str| {
            crate::config::Config::from_toml(&format!("dev = true\n[telemetry]\notlp_endpoint = \"{endpoint}\"\n"))
                .map(|config| config.telemetry)
                .map_err(|error| error.errors.into_iter().map(|e| (e.path, e.message)).collect::<Vec<_>>())
        };
        if cfg!(feature = "otel") {
            let telemetry = load("http://127.0.0.1:4318").unwrap();
            assert_eq!(telemetry.otlp_endpoint.map(String::from).as_deref(), Some("http://127.0.0.1:4318/"));
            assert_eq!(telemetry.service_name, "byollm");
            for bad in
                ["ftp://collector", "http://user:secret@collector:4318", "http://collector:4318/?key=x", "collector"]
            {
                let errors = load(bad).unwrap_err();
                assert_eq!(errors[0].0, "telemetry.otlp_endpoint", "{bad}: {errors:?}");
                assert!(!errors[0].1.contains("secret"), "{errors:?}");
            }
        } else {
            let errors = load("http://127.0.0.1:4318").unwrap_err();
            assert_eq!(errors[0].0, "telemetry.otlp_endpoint");
            assert!(errors[0].1.contains("--features otel"), "{errors:?}");
        }
    }

    #[test]
    fn without_an_endpoint_nothing_starts() {
        let config = TelemetryConfig {
            otlp_endpoint: None,
            service_name: "byollm".into(),
            export_timeout: std::time::Duration::from_secs(1),
        };
        assert!(Telemetry::start(&config).unwrap().is_none());
    }
}
