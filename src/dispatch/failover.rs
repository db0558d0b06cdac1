//! The one failover loop: a request's routes tried in turn ([`first_answer`]) until one answers,
//! only before the first byte of an answer; a failure the request caused ends it at once; the
//! attempts go into the audit record on every exit. A Bedrock refusal travels with its failure
//! ([`Refusal`]) so the native routes can relay Bedrock's own words when one route was tried.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::attempt::{Payload, Request};
use super::exchange::Exchange;
use super::reply::{Reply, ReplyBody};
use crate::error::ApiError;
use crate::limits::Estimate;
use crate::routing::{AttemptOutcome, Failover, FailureClass, Route, RoutingPolicy};
use crate::wire::bedrock::{Operation, is_relayed_header};

/// Bedrock's refusal of one call, read whole (it is small) so it can be relayed unchanged.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// byollm's reading of it (`bedrock_throttled`, ...), for the audit line.
    pub code: &'static str,
}

/// A failed attempt: how failover classes it, the error for the client, and Bedrock's own
/// refusal when Bedrock answered one.
#[derive(Debug)]
pub struct Failure {
    pub class: FailureClass,
    pub error: ApiError,
    pub refusal: Option<Box<Refusal>>,
}

impl Failure {
    pub fn new(class: FailureClass, error: ApiError) -> Failure {
        Failure { class, error, refusal: None }
    }
}

/// No route answered: the error for the client, and Bedrock's refusal when it is the one to relay
/// (the request's own fault, or the only route tried).
#[derive(Debug)]
pub struct Unanswered {
    pub error: ApiError,
    pub refusal: Option<Box<Refusal>>,
}

impl From<Unanswered> for ApiError {
    fn from(unanswered: Unanswered) -> ApiError {
        unanswered.error
    }
}

/// Drives `failover` until a route answers: first the request's token and spend limits reserve
/// what it is expected to use ([`reserve`]; a refusal ends it, it is never a failover class),
/// then `attempt` runs on each route in turn (with the policy the request started with) and hands
/// the route back with its result.
pub async fn first_answer<T, F>(
    failover: &mut Failover<'_>,
    exchange: &mut Exchange,
    request: &Request<'_>,
    mut attempt: impl FnMut(Arc<RoutingPolicy>, Route) -> F,
) -> Result<(Route, T), Unanswered>
where
    F: Future<Output = (Route, Result<T, Failure>)>,
{
    if let Err(error) = reserve(failover, exchange, &request.payload).await {
        return Err(Unanswered { error, refusal: None });
    }
    let policy = failover.policy.clone();
    let mut last_refusal = None;
    while let Some(route) = failover.next_route() {
        let (route, result) = attempt(policy.clone(), route).await;
        match result {
            Ok(answer) => {
                failover.served(&route);
                exchange.record_attempts(failover.attempts(), Some(&route));
                return Ok((route, answer));
            }
            Err(Failure { class, error, refusal }) => {
                if let Some(stop) = failover.failed(&route, class, error) {
                    exchange.record_attempts(failover.attempts(), None);
                    return Err(Unanswered { error: stop, refusal });
                }
                last_refusal = refusal;
            }
        }
    }
    let error = failover.exhausted();
    exchange.record_attempts(failover.attempts(), None);
    let tried = failover.attempts().iter().filter(|a| matches!(a.outcome, AttemptOutcome::Failed { .. })).count();
    Err(Unanswered { error, refusal: if tried == 1 { last_refusal } else { None } })
}

/// The request's token rates, budgets and stream slot, before any route is tried: an estimate from
/// its body (size and `max_tokens`), priced at its first route. Counting tokens reserves nothing.
/// The chat and Messages surfaces have read `max_tokens` already; a relayed Bedrock body is read
/// for it here.
async fn reserve(failover: &Failover<'_>, exchange: &mut Exchange, payload: &Payload<'_>) -> Result<(), ApiError> {
    let estimate = || match payload {
        Payload::Bedrock { body, .. } => Estimate::of_body(body),
        Payload::Model { invoke, openai, max_tokens, .. } => {
            Estimate::of_size(invoke.or(*openai).map_or(0, |b| b.len()), *max_tokens)
        }
    };
    if let Payload::Bedrock { operation: Operation::CountTokens, .. } = payload {
        return Ok(());
    }
    let price = failover.pending().next().and_then(|route| exchange.price_of(failover.model(), &route.upstream));
    exchange.reserve(estimate, price).await
}

/// Bedrock's refusal as the answer, as Bedrock sent it (status, its `x-amzn-*` headers, body);
/// the audit record keeps byollm's reading of it.
pub fn relay_refusal(exchange: &mut Exchange, refusal: Refusal) -> Reply {
    if let Some(record) = exchange.record() {
        record.error = Some(refusal.code);
    }
    let mut headers = HeaderMap::with_capacity(4);
    for (name, value) in &refusal.headers {
        if is_relayed_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    Reply { status: refusal.status, headers, body: ReplyBody::Full(refusal.body) }
}
