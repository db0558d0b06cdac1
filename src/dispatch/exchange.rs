//! The request wrapper every model request goes through ([`Dispatch::serve`]): the request
//! timeout, the audit record (one line per request, written when the answer is complete, when the
//! request failed, or when the client went away), the in-flight gauge, the per-API request
//! counter and the log line; and the gateway's limits ([`crate::limits`]), checked once here:
//! admitted when the surface has identified the call ([`Exchange::admit`]), reserved before the
//! first route is tried ([`Exchange::reserve`], from `first_answer`), settled with the answer's
//! usage and cost when the record is written (a stream's when it ends or its client leaves), and
//! the room left written into every answer's headers.

use std::future::Future;
use std::time::{Duration, Instant};

use http::StatusCode;

use std::sync::Arc;

use super::Dispatch;
use super::context::Call;
use super::reply::Reply;
use crate::error::{ApiError, ErrorKind};
use crate::limits::{Admission, Estimate, Limits, Naming, View};
use crate::models::prices::Price;
use crate::observe::audit::{AttemptRecord, Audit, AuditRecord, Usage};
use crate::observe::metrics::{Counter, InFlight, Metrics, outcome};
use crate::routing::{Attempt, Route, Upstream};

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

    /// The rate-limit headers this API's clients read.
    fn naming(self) -> Option<Naming> {
        match self {
            Api::Chat => Some(Naming::OpenAi),
            Api::Messages => Some(Naming::Anthropic),
            // Bedrock's own API has no rate-limit headers: a refusal says Retry-After only.
            Api::Native => None,
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
    /// The room left in the request's limits, for its answer's headers.
    view: View,
}

struct Inner {
    audit: Audit,
    record: AuditRecord,
    started: Instant,
    _in_flight: InFlight,
    limits: Arc<Limits>,
    /// What the request holds of its limits until it settles.
    admission: Option<Admission>,
    /// The price of the route that served.
    price: Option<Price>,
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
            limits: dispatch.limits.clone(),
            admission: None,
            price: None,
        };
        Exchange { inner: Some(inner), view: View::default() }
    }

    /// The record while the request is served (`None` once written).
    pub fn record(&mut self) -> Option<&mut AuditRecord> {
        self.inner.as_mut().map(|inner| &mut inner.record)
    }

    /// The run the request is for, into the record; then its request rates and concurrent
    /// requests ([`Limits::admit`]), before any STS or upstream call. A refusal is the request's
    /// error (429, or 503 when the limits cannot be checked under `on_store_error = "deny"`).
    pub async fn admit(&mut self, call: &Call) -> Result<(), ApiError> {
        let Some(inner) = self.inner.as_mut() else { return Ok(()) };
        call.describe(&mut inner.record);
        let Some(who) = call.who() else { return Ok(()) };
        let limits = inner.limits.clone();
        match limits.admit(who).await {
            Ok(admission) => {
                if let Some(admission) = &admission {
                    self.view = admission.view;
                }
                inner.admission = admission;
                Ok(())
            }
            Err(refusal) => {
                self.view = refusal.view;
                Err(refusal.error)
            }
        }
    }

    /// The price of `model` served by `upstream`, in the limits policy in force.
    pub fn price_of(&self, model: &str, upstream: &Upstream) -> Option<Price> {
        self.inner.as_ref().and_then(|inner| inner.limits.price(model, upstream))
    }

    /// Token rates, budgets and the stream slot ([`Limits::reserve`]) for a request expected to
    /// use `estimate` (made only when a token or spend limit applies), priced at `price`.
    pub async fn reserve(&mut self, estimate: impl FnOnce() -> Estimate, price: Option<Price>) -> Result<(), ApiError> {
        let Some(inner) = self.inner.as_mut() else { return Ok(()) };
        let Some(admission) = inner.admission.as_mut().filter(|a| a.needs_estimate()) else { return Ok(()) };
        let stream = inner.record.stream;
        match inner.limits.clone().reserve(admission, estimate(), price, stream).await {
            Ok(()) => {
                self.view = admission.view;
                Ok(())
            }
            Err(refusal) => {
                self.view = refusal.view;
                Err(refusal.error)
            }
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
        Exchange { inner: self.inner.take(), view: self.view }
    }

    /// Write the line now (`error`: the request's error code, unless one is recorded already).
    pub fn finish(&mut self, status: u16, error: Option<&'static str>) {
        if let Some(mut inner) = self.inner.take() {
            inner.record.status = status;
            inner.record.error = inner.record.error.or(error);
            inner.record.duration_ms = inner.started.elapsed().as_millis() as u64;
            let cost = inner.price.map(|price| crate::limits::cost(price, &inner.record.usage));
            inner.record.cost_usd = cost;
            if let Some(admission) = inner.admission.take() {
                inner.record.budget_alerts = inner.limits.settle(admission, &inner.record.usage, cost).alerts;
            }
            let record = &inner.record;
            if let Some(team) = &record.team
                && (status < 400 || record.usage != Usage::default())
            {
                inner.limits.record_usage(team, record.agent.as_deref(), record.model.as_deref(), &record.usage, cost);
            }
            inner.audit.emit(&inner.record);
        }
    }

    /// The attempts (and the route that served) into the record.
    pub fn record_attempts(&mut self, attempts: &[Attempt], served: Option<&Route>) {
        if let (Some(route), Some(inner)) = (served, self.inner.as_mut()) {
            inner.price = inner.record.model.as_deref().and_then(|model| inner.limits.price(model, &route.upstream));
        }
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
        let mut result = within_request_timeout(self.config.server.request_timeout, serve(&mut exchange)).await;
        // The room left in the request's limits, on every answer, in the API's own names.
        if !exchange.view.is_empty()
            && let Some(naming) = api.naming()
        {
            let headers = crate::limits::headers(&exchange.view, naming, crate::issuer::unix_now());
            match &mut result {
                Ok(reply) => reply.headers.extend(headers.into_iter().map(|(name, value)| (Some(name), value))),
                Err(error) => error.headers.get_or_insert_default().extend(headers),
            }
        }
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
