//! The request wrapper every model request goes through ([`Dispatch::serve`]): the request
//! timeout, the audit record (one line per request, written when the answer is complete, when the
//! request failed, or when the client went away), the in-flight gauge, the per-API request
//! counter and the log line.

use std::future::Future;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::Dispatch;
use super::context::Call;
use super::reply::Reply;
use crate::error::{ApiError, ErrorKind};
use crate::observe::audit::{AttemptRecord, Audit, AuditRecord, Usage};
use crate::observe::metrics::{Counter, InFlight, Metrics, outcome};
use crate::routing::{Attempt, Route};

/// The API a model request came in through: its audit `surface`, in-flight gauge and counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI chat completions.
    Chat,
    /// The Anthropic Messages API (and its `count_tokens`).
    Messages,
    /// Bedrock's own operations, relayed.
    Native,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Messages => "messages",
            Api::Native => "native",
        }
    }

    fn counter(self, metrics: &Metrics) -> &Counter {
        match self {
            Api::Chat => &metrics.chat_requests,
            Api::Messages => &metrics.messages_requests,
            Api::Native => &metrics.native_requests,
        }
    }
}

/// One model request, from its arrival to its audit line. A streamed answer takes it over
/// ([`Exchange::take`]) and finishes it when the stream ends.
pub struct Exchange {
    inner: Option<Inner>,
}

struct Inner {
    audit: Audit,
    record: AuditRecord,
    started: Instant,
    _in_flight: InFlight,
}

impl Exchange {
    fn start(dispatch: &Dispatch, api: Api, operation: &'static str) -> Exchange {
        let mut record = AuditRecord::start(api.name());
        if !operation.is_empty() {
            record.operation = operation;
        }
        let inner = Inner {
            audit: dispatch.audit.clone(),
            record,
            started: Instant::now(),
            _in_flight: dispatch.metrics.in_flight(api.name()),
        };
        Exchange { inner: Some(inner) }
    }

    /// The record while the request is served (`None` once written).
    pub fn record(&mut self) -> Option<&mut AuditRecord> {
        self.inner.as_mut().map(|inner| &mut inner.record)
    }

    /// The run the request is for, into the record.
    pub fn describe(&mut self, call: &Call) {
        if let Some(record) = self.record() {
            call.describe(record);
        }
    }

    pub fn set_usage(&mut self, usage: Usage) {
        if let Some(record) = self.record() {
            record.usage = usage;
        }
    }

    /// The first byte of the answer goes out now.
    pub fn first_byte(&mut self) {
        if let Some(inner) = &mut self.inner
            && inner.record.ttfb_ms.is_none()
        {
            inner.record.ttfb_ms = Some(inner.started.elapsed().as_millis() as u64);
        }
    }

    /// Hand the request on to what finishes it later (a stream's relay).
    pub fn take(&mut self) -> Exchange {
        Exchange { inner: self.inner.take() }
    }

    /// Write the line now (`error`: the request's error code, unless one is recorded already).
    pub fn finish(&mut self, status: u16, error: Option<&'static str>) {
        if let Some(mut inner) = self.inner.take() {
            inner.record.status = status;
            inner.record.error = inner.record.error.or(error);
            inner.record.duration_ms = inner.started.elapsed().as_millis() as u64;
            inner.audit.emit(&inner.record);
        }
    }

    /// The attempts (and the route that served) into the record.
    pub fn record_attempts(&mut self, attempts: &[Attempt], served: Option<&Route>) {
        let Some(record) = self.record() else { return };
        record.attempts = attempts
            .iter()
            .map(|attempt| {
                let (result, status, code) = attempt.outcome.summary();
                AttemptRecord {
                    route: attempt.route.clone(),
                    upstream_model: attempt.upstream_model.clone(),
                    result,
                    status,
                    code,
                }
            })
            .collect();
        if let Some(route) = served {
            record.route = Some(route.label.clone());
            record.upstream_model = Some(route.upstream.upstream_model().to_owned());
        }
    }
}

impl Drop for Exchange {
    /// Not finished: the client went away (status 499) or a stream broke off.
    fn drop(&mut self) {
        let status = self.inner.as_ref().map_or(0, |i| i.record.status);
        self.finish(if status == 0 { 499 } else { status }, Some("client_closed"));
    }
}

impl Dispatch {
    /// Serve one model request: `serve` runs within `server.request_timeout` (past it, a 504);
    /// a refusal finishes the audit record with its status and code, a complete answer with its
    /// status; a streamed answer's relay finishes it when the stream ends. Counts the request by
    /// its outcome and logs it.
    pub async fn serve(
        &self,
        api: Api,
        operation: &'static str,
        serve: impl AsyncFnOnce(&mut Exchange) -> Result<Reply, ApiError>,
    ) -> Result<Reply, ApiError> {
        let started = Instant::now();
        let mut exchange = Exchange::start(self, api, operation);
        let result = within_request_timeout(self.config.server.request_timeout, serve(&mut exchange)).await;
        let status = match &result {
            Ok(reply) => {
                exchange.first_byte();
                exchange.finish(reply.status.as_u16(), None);
                reply.status.as_u16()
            }
            Err(error) => {
                let operation = exchange.record().map_or(operation, |record| record.operation);
                tracing::info!(
                    api = api.name(),
                    operation,
                    status = error.status.as_u16(),
                    code = error.code,
                    "model request refused"
                );
                exchange.finish(error.status.as_u16(), Some(error.code));
                error.status.as_u16()
            }
        };
        api.counter(&self.metrics).inc(outcome(status));
        tracing::debug!(
            api = api.name(),
            status,
            elapsed_us = started.elapsed().as_micros() as u64,
            "model request answered"
        );
        result
    }
}

/// Run `serve` within `limit`; past it, the 504 every surface answers with.
///
/// `serve` is boxed here, before the handler's own future is built: it holds the whole request
/// (routing, conversion, the upstream call) and is several KiB, and axum and hyper move the
/// handler's future after it is made; moving a pointer is cheaper than copying it each time
/// (about 17 k instructions per chat request, measured with callgrind).
pub fn within_request_timeout<T>(
    limit: Duration,
    serve: impl Future<Output = Result<T, ApiError>>,
) -> impl Future<Output = Result<T, ApiError>> {
    let serve = Box::pin(serve);
    async move {
        tokio::time::timeout(limit, serve).await.unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::Upstream,
                "request_timeout",
                format!("no answer started within server.request_timeout_secs ({}s)", limit.as_secs()),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_not_started_within_the_request_timeout_is_a_504_naming_the_setting() {
        let limit = Duration::from_millis(10);
        let error = within_request_timeout(limit, std::future::pending::<Result<(), ApiError>>()).await.unwrap_err();
        assert_eq!((error.status, error.code), (StatusCode::GATEWAY_TIMEOUT, "request_timeout"));
        assert!(error.message.contains("server.request_timeout_secs"), "{}", error.message);
        assert_eq!(within_request_timeout(limit, async { Ok::<_, ApiError>(7) }).await.unwrap(), 7);
    }
}
