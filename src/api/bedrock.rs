//! HTTP edge of the Bedrock-native routes: `POST /model/{modelId}/{operation}` relayed to
//! Bedrock Runtime, and `GET /inference-profiles[/{id}]` answered from the configuration.
//!
//! A call is authenticated by the byollm API key as a bearer token (a SigV4 signature is refused
//! with a message saying so), its run named in `x-byollm-*` headers and authorized by
//! [`crate::identity::authz`] (local mode: the session key, checked by the local guard). The model in the
//! path must be one this gateway serves ([`crate::dispatch::target::bedrock_target`]), else 403 naming it,
//! before any STS or Bedrock call; its routes come from the routing policy
//! ([`crate::routing::Routing::start_on`], Bedrock routes only: each with its profile, region and
//! role). The body (bounded, one JSON object) is forwarded byte for byte, signed with the route's
//! credentials (the run's role, or the route's; local mode: the person's session); a route that
//! fails before answering (the classes of `routing/failures.toml`) hands the same bytes to the
//! next. Bedrock's status, relayed headers and body come back unchanged, event-stream frames
//! included, with `x-byollm-route`, pulled only as fast as the client reads and dropped when it
//! leaves; when one route was tried, its error is relayed as Bedrock sent it, when several were,
//! one error lists them. byollm's own refusals use Bedrock's error shape: `{"message"}` with
//! `x-amzn-ErrorType`. Every call leaves one audit line, its usage read from copies of the frames.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::api::ApiBody;
use crate::api::chat::{CallContext, ChatState, CredentialSource, context};
use crate::dispatch::routed::{self, AuditGuard, record_attempts};
use crate::dispatch::target::{BedrockTarget, ModelRef, bedrock_target};
use crate::error::ApiError;
use crate::observe::metrics::Metrics;
use crate::routing::failover::class_of_bedrock;
use crate::routing::{AttemptOutcome, BedrockRoute, FailureClass, Surface, Upstream};
use crate::upstream::bedrock::STREAM_IDLE_TIMEOUT;
use crate::upstream::{RawRequest, RawResponse, model_path};
use crate::wire::bedrock::{
    Operation, Usage, UsageMeter, check_body, error_body, error_type, forwarded_headers, is_relayed_header,
};

/// Paths whose refusals take Bedrock's error shape.
pub fn is_native_path(path: &str) -> bool {
    path.starts_with("/model/") || path == "/inference-profiles" || path.starts_with("/inference-profiles/")
}

/// A refusal of byollm's own, as Bedrock words one: `{"message": ...}` with `x-amzn-ErrorType`
/// (and `Retry-After` when the client should come back).
pub fn error_response(error: &ApiError) -> Response {
    let mut response = (error.status, error_body(error)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("x-amzn-errortype", HeaderValue::from_static(error_type(error.status)));
    if let Some(seconds) = error.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// `/model/{modelId}/{operation}` split on the raw (percent-encoded) path.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/model/")?;
    let (model, operation) = rest.rsplit_once('/')?;
    (!model.is_empty() && !model.contains('/')).then_some((model, operation))
}

/// `POST /model/{modelId}/{operation}`.
pub async fn model_operation(State(chat): State<ChatState>, uri: Uri, headers: HeaderMap, body: ApiBody) -> Response {
    let started = Instant::now();
    let Some((segment, operation)) = split_path(uri.path()) else {
        return unknown_operation(uri.path());
    };
    let Some(operation) = Operation::parse(operation) else {
        return unknown_operation(operation);
    };
    let mut audit = AuditGuard::new(&chat, "native");
    if let Some(record) = audit.record() {
        record.operation = operation.path_segment();
        record.stream = operation.streams();
    }
    let limit = chat.config.server.request_timeout;
    let result =
        routed::within_request_timeout(limit, relay(&chat, segment, operation, &headers, body, &mut audit)).await;
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            let model: String = segment.chars().take(128).collect();
            tracing::info!(
                status = error.status.as_u16(),
                code = error.code,
                operation = operation.path_segment(),
                %model,
                "native call refused"
            );
            audit.finish(error.status.as_u16(), Some(error.code));
            error_response(&error)
        }
    };
    chat.metrics.native_requests.inc(crate::observe::metrics::outcome(response.status().as_u16()));
    tracing::debug!(
        status = response.status().as_u16(),
        operation = operation.path_segment(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "native call answered"
    );
    response
}

fn unknown_operation(what: &str) -> Response {
    let operations: Vec<&str> = Operation::ALL.iter().map(|op| op.path_segment()).collect();
    let error = ApiError::not_found(
        "unknown_operation",
        format!(
            "{} is not a Bedrock Runtime model operation byollm relays; use /model/<model id>/{{{}}}",
            what.chars().take(128).collect::<String>(),
            operations.join(",")
        ),
    );
    let mut response = error_response(&error);
    response.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static("UnknownOperationException"));
    response
}

/// Bedrock's refusal of one route, read whole (it is small) so it can be relayed unchanged.
struct Refusal {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// byollm's reading of it, for the audit line and for an error listing attempts.
    error: ApiError,
}

/// What one route gave before the first byte of an answer.
enum Outcome {
    /// Bedrock accepted the call: status 2xx, body unread.
    Answered(RawResponse),
    /// Bedrock refused it (its error is relayed as it is if no other route serves).
    Refused(FailureClass, Refusal),
    /// No answer from Bedrock (credentials, connection): byollm's own error.
    Failed(FailureClass, ApiError),
}

/// Largest Bedrock error body read (Bedrock's are a few hundred bytes).
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// One route: the route's credentials, the body's bytes re-signed, up to Bedrock's status.
async fn call_route(
    chat: &ChatState,
    context: &CallContext,
    target: &BedrockTarget<'_>,
    route: &BedrockRoute,
    operation: Operation,
    headers: &HeaderMap,
    body: Bytes,
) -> Outcome {
    let (credentials, region) =
        match context.credentials_for(&chat.config, route.role.as_ref(), route.region.as_deref()).await {
            Ok(found) => found,
            Err(error) => return Outcome::Failed(FailureClass::Credentials, error),
        };
    let model_id = match operation {
        Operation::CountTokens => crate::dispatch::target::foundation_model_id(target.model, &route.model_id),
        _ => &route.model_id,
    };
    let path = model_path(model_id, operation.path_segment());
    let request = RawRequest {
        region: &region,
        method: Method::POST,
        path_and_query: &path,
        headers: forwarded_headers(headers),
        body,
    };
    let answer = match chat.bedrock.send(request, &credentials).await {
        Ok(answer) => answer,
        Err(failure) => {
            let error = context.bedrock_error(&failure, operation.iam_action(), model_id);
            return Outcome::Failed(class_of_bedrock(&failure, error.status.as_u16()), error);
        }
    };
    if answer.status.is_success() {
        return Outcome::Answered(answer);
    }
    let body = match http_body_util::Limited::new(answer.body, MAX_ERROR_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let failure = crate::upstream::error::failure_from_response(&answer.headers, &body);
    let error = context.bedrock_error(&failure, operation.iam_action(), model_id);
    let class = class_of_bedrock(&failure, answer.status.as_u16());
    tracing::info!(status = answer.status.as_u16(), code = %failure.code, model = target.name, route = %route.model_id, "bedrock refused a native call");
    Outcome::Refused(class, Refusal { status: answer.status, headers: answer.headers, body, error })
}

/// Bedrock's own refusal, relayed as it came.
fn relay_refusal(refusal: Refusal) -> Response {
    let mut response = Response::new(Body::from(refusal.body));
    *response.status_mut() = refusal.status;
    let relayed = response.headers_mut();
    for (name, value) in &refusal.headers {
        if is_relayed_header(name) {
            relayed.append(name.clone(), value.clone());
        }
    }
    response
}

async fn relay(
    chat: &ChatState,
    segment: &str,
    operation: Operation,
    headers: &HeaderMap,
    body: ApiBody,
    audit: &mut AuditGuard,
) -> Result<Response, ApiError> {
    let context = context(chat, headers)?;
    if let Some(record) = audit.record() {
        context.describe(record);
    }
    let target = bedrock_target(&chat.config, context.region(), ModelRef::PathSegment(segment)).map_err(|refused| {
        ApiError::forbidden(
            "model_not_allowed",
            format!(
                "model {:?} is not one this caller may use through byollm; ask the gateway's admin to configure it under [models], or use a configured model (GET /v1/models lists them)",
                refused.requested
            ),
        )
    })?;
    if let Some(record) = audit.record() {
        record.model = Some(target.name.to_owned());
    }
    let mut failover = chat.routing.start_on(context.scope(), target.name, Surface::BedrockOnly)?;
    let body = body.read(&chat.config.server, context.body_owner()).await?;
    check_body(&body)?;
    let mut served = None;
    let mut last_refusal = None;
    while let Some(route) = failover.next_route() {
        let Upstream::Bedrock(bedrock) = &route.upstream else {
            // Set aside by `start_on`; never reached.
            continue;
        };
        // `body` keeps its share of the body budget until Bedrock has the bytes.
        match call_route(chat, &context, &target, bedrock, operation, headers, body.bytes.clone()).await {
            Outcome::Answered(answer) => {
                failover.served(&route);
                served = Some((route, answer));
                break;
            }
            Outcome::Failed(class, error) => {
                last_refusal = None;
                if let Some(stop) = failover.failed(&route, class, error) {
                    record_attempts(audit, failover.attempts(), None);
                    return Err(stop);
                }
            }
            Outcome::Refused(class, refusal) => {
                let stop = failover.failed(&route, class, refusal.error.clone());
                if stop.is_some() {
                    // The request's own fault: Bedrock's words reach the client unchanged.
                    record_attempts(audit, failover.attempts(), None);
                    audit.finish(refusal.status.as_u16(), Some(refusal.error.code));
                    return Ok(relay_refusal(refusal));
                }
                last_refusal = Some(refusal);
            }
        }
    }
    drop(body);
    let Some((route, answer)) = served else {
        let error = failover.exhausted();
        record_attempts(audit, failover.attempts(), None);
        let tried = failover.attempts().iter().filter(|a| matches!(a.outcome, AttemptOutcome::Failed { .. })).count();
        return match last_refusal {
            // One route tried and Bedrock refused it: its answer as Bedrock gave it.
            Some(refusal) if tried == 1 => {
                audit.finish(refusal.status.as_u16(), Some(refusal.error.code));
                Ok(relay_refusal(refusal))
            }
            _ => Err(error),
        };
    };
    record_attempts(audit, failover.attempts(), Some(&route));
    let meter = Metering {
        meter: Some(UsageMeter::new(operation, &answer.headers)),
        metrics: chat.metrics.clone(),
        audit: audit.take(),
    };
    let mut response = Response::new(relayed_body(answer.body, meter));
    *response.status_mut() = answer.status;
    let relayed = response.headers_mut();
    for (name, value) in &answer.headers {
        if is_relayed_header(name) {
            relayed.append(name.clone(), value.clone());
        }
    }
    if operation.streams() {
        relayed.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    crate::api::messages::set_route_header(&mut response, &route);
    Ok(response)
}

/// Usage of one relayed answer, and the request's audit line: written when the body ends, breaks,
/// or the client leaves (status 499 then), with the usage seen so far.
struct Metering {
    meter: Option<UsageMeter>,
    metrics: Arc<Metrics>,
    audit: AuditGuard,
}

impl Metering {
    fn first_byte(&mut self) {
        self.audit.first_byte();
    }

    /// The body ended (`error`: how it broke, if it did).
    fn finish(&mut self, error: Option<&'static str>) {
        self.record_usage();
        self.audit.finish(200, error);
    }

    fn record_usage(&mut self) {
        let Some(meter) = self.meter.take() else { return };
        let usage: Usage = meter.finish();
        record_usage(&self.metrics, &usage);
        if let Some(record) = self.audit.record() {
            record.usage = crate::api::messages::audit_usage(&usage);
        }
    }
}

impl Drop for Metering {
    fn drop(&mut self) {
        self.record_usage();
    }
}

/// Adds a request's usage to the token counters.
pub fn record_usage(metrics: &Metrics, usage: &Usage) {
    for (kind, count) in [
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
        ("cache_read", usage.cache_read_input_tokens),
        ("cache_write", usage.cache_creation_input_tokens),
    ] {
        if let Some(count) = count {
            metrics.model_tokens.add(kind, count);
        }
    }
}

struct RelayState {
    body: hyper::body::Incoming,
    metering: Metering,
    done: bool,
}

/// Bedrock's body, passed on frame by frame as the client reads: nothing is read ahead, nothing
/// is changed. A silence longer than [`STREAM_IDLE_TIMEOUT`] (no shorter than Bedrock's own)
/// or a broken upstream ends the body with an error, so the client sees a cut, never a clean end.
fn relayed_body(body: hyper::body::Incoming, metering: Metering) -> Body {
    let state = RelayState { body, metering, done: false };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        loop {
            let frame = match tokio::time::timeout(STREAM_IDLE_TIMEOUT, state.body.frame()).await {
                Ok(frame) => frame,
                Err(_) => {
                    tracing::warn!("bedrock sent nothing for 5 minutes; the relayed answer is cut");
                    state.metering.finish(Some("upstream_idle_timeout"));
                    state.done = true;
                    return Some((Err(std::io::Error::other("bedrock went silent")), state));
                }
            };
            match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if let Some(meter) = state.metering.meter.as_mut() {
                        meter.observe(&data);
                    }
                    state.metering.first_byte();
                    return Some((Ok::<Bytes, std::io::Error>(data), state));
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "bedrock answer broke mid-way");
                    state.metering.finish(Some("upstream_stream_cut"));
                    state.done = true;
                    return Some((Err(std::io::Error::other("bedrock answer broke")), state));
                }
                None => {
                    state.metering.finish(None);
                    return None;
                }
            }
        }
    });
    Body::from_stream(stream)
}

/// The Bedrock region whose profiles a caller sees, and the models its routing policy lets it use
/// on these routes (cloud: an API key and the agent it names; local: the guard already checked
/// the session key).
fn profiles_scope(chat: &ChatState, headers: &HeaderMap) -> Result<(String, Vec<String>), ApiError> {
    let allowed = crate::api::chat::allowed_models(chat, headers, Surface::BedrockOnly)?;
    match &chat.source {
        CredentialSource::Broker(_) => {
            let caller = chat.callers.authenticate(headers)?;
            let team = chat.config.team(&caller.team);
            let region = team.and_then(|t| t.region.clone()).unwrap_or_else(|| chat.config.bedrock.region.clone());
            Ok((region, allowed))
        }
        CredentialSource::Local { region, .. } => Ok((region.clone(), allowed)),
    }
}

/// Most profiles in one page.
const MAX_PROFILE_PAGE: usize = 1000;

/// The query of `GET /inference-profiles`: these fields only, others skipped unbuilt (the query
/// is read before the caller is authenticated; a map of every pair cost 15 times its text).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ProfileQuery {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(rename = "maxResults")]
    pub max_results: Option<String>,
    #[serde(rename = "nextToken")]
    pub next_token: Option<String>,
}

/// `GET /inference-profiles?type=&maxResults=&nextToken=` (Bedrock's `ListInferenceProfiles`),
/// answered from `[models]`: the configured inference profiles. Claude Code calls it at start
/// without credentials; that call is refused (401) and Claude Code carries on.
pub async fn list_inference_profiles(
    State(chat): State<ChatState>,
    headers: HeaderMap,
    query: Result<Query<ProfileQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (region, allowed) = match profiles_scope(&chat, &headers) {
        Ok(scope) => scope,
        Err(error) => return error_response(&error),
    };
    let Ok(Query(query)) = query else {
        return error_response(&ApiError::invalid_request(
            "",
            "invalid_query",
            "the query takes type, maxResults and nextToken, each at most once",
        ));
    };
    let kind = query.kind.as_deref();
    if let Some(kind) = kind.filter(|kind| !crate::wire::bedrock::PROFILE_TYPES.contains(kind)) {
        return error_response(&ApiError::invalid_request(
            "type",
            "invalid_value",
            format!("type {kind:?} is not SYSTEM_DEFINED or APPLICATION"),
        ));
    }
    let page = match query.max_results.as_deref().map(str::parse::<usize>) {
        None => MAX_PROFILE_PAGE,
        Some(Ok(n)) if (1..=MAX_PROFILE_PAGE).contains(&n) => n,
        Some(_) => {
            return error_response(&ApiError::invalid_request(
                "maxResults",
                "invalid_value",
                "maxResults must be between 1 and 1000",
            ));
        }
    };
    let start = match query.next_token.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return error_response(&ApiError::invalid_request(
                "nextToken",
                "invalid_value",
                "nextToken is not one this gateway handed out",
            ));
        }
    };
    let all = crate::wire::bedrock::inference_profiles(&chat.config, &region, kind, &allowed);
    let end = start.saturating_add(page).min(all.len());
    let summaries = all.get(start.min(all.len())..end).unwrap_or_default();
    let mut body = serde_json::json!({ "inferenceProfileSummaries": summaries });
    if end < all.len() {
        body["nextToken"] = serde_json::Value::String(end.to_string());
    }
    axum::Json(body).into_response()
}

/// `GET /inference-profiles/{id or ARN}` (Bedrock's `GetInferenceProfile`), from `[models]`.
pub async fn get_inference_profile(
    State(chat): State<ChatState>,
    headers: HeaderMap,
    Path(profile): Path<String>,
) -> Response {
    let (region, allowed) = match profiles_scope(&chat, &headers) {
        Ok(scope) => scope,
        Err(error) => return error_response(&error),
    };
    let found = crate::wire::bedrock::inference_profiles(&chat.config, &region, None, &allowed)
        .into_iter()
        .find(|p| p.inference_profile_id == profile || p.inference_profile_arn == profile);
    match found {
        Some(summary) => axum::Json(summary).into_response(),
        None => error_response(&ApiError::not_found(
            "profile_not_found",
            format!(
                "inference profile {:?} is not served here; GET /inference-profiles lists the ones you may use",
                profile.chars().take(256).collect::<String>()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_on_the_raw_segment() {
        assert_eq!(split_path("/model/us.anthropic.x-v1%3A0/invoke"), Some(("us.anthropic.x-v1%3A0", "invoke")));
        assert_eq!(
            split_path("/model/arn%3Aaws%3Ab%2Fc/converse-stream"),
            Some(("arn%3Aaws%3Ab%2Fc", "converse-stream"))
        );
        assert_eq!(split_path("/model/a/b/invoke"), None);
        assert_eq!(split_path("/model//invoke"), None);
        assert_eq!(split_path("/model/invoke"), None);
    }

    #[tokio::test]
    async fn own_errors_speak_bedrock() {
        let error = ApiError::forbidden("model_not_allowed", "model \"x\" is not served").with_retry_after(3);
        let response = error_response(&error);
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()["x-amzn-errortype"], "AccessDeniedException");
        assert_eq!(response.headers()["retry-after"], "3");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({"message": "model \"x\" is not served"})
        );
        assert!(is_native_path("/model/x/invoke") && is_native_path("/inference-profiles"));
        assert!(!is_native_path("/v1/models") && !is_native_path("/inference-profilesx"));
    }
}
