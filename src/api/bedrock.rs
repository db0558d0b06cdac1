//! Bedrock's own routes: `POST /model/{modelId}/{operation}` relayed to Bedrock Runtime
//! (`invoke`, `invoke-with-response-stream`, `count-tokens`, `converse`, `converse-stream`), for
//! Claude Code in Bedrock mode, `AnthropicBedrock` and the AWS SDKs. (`/inference-profiles` is in
//! [`super::models`].)
//!
//! A call is authenticated by the byollm API key as a bearer token (a SigV4 signature is refused
//! with a message saying so), its run named in `x-byollm-*` headers (local mode: the session key,
//! checked by the local guard). The model in the path must be one this gateway serves
//! ([`crate::dispatch::target::bedrock_target`]), else 403 naming it, before any STS or Bedrock
//! call. The body (bounded, one JSON object) is forwarded byte for byte over the model's Bedrock
//! routes, re-signed for each ([`crate::dispatch`]). Bedrock's status, relayed headers and body
//! come back unchanged, event-stream frames included, with `x-byollm-route`, pulled only as fast
//! as the client reads; when one route was tried, its refusal is relayed as Bedrock sent it, when
//! several were, one error lists them. byollm's own refusals use Bedrock's error shape.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::Response;

use super::errors::{self, Shape};
use super::extract::{ApiBody, BodyOwner};
use crate::dispatch::attempt::{Answer, Payload, Request, attempt};
use crate::dispatch::failover::{Unanswered, first_answer, relay_refusal};
use crate::dispatch::relay;
use crate::dispatch::reply::ReplyBody;
use crate::dispatch::target::{ModelRef, bedrock_target};
use crate::dispatch::{Api, Dispatch, Exchange, Reply};
use crate::error::ApiError;
use crate::routing::{Route, Surface, Upstream};
use crate::wire::bedrock::{Operation, check_body, forwarded_headers, is_relayed_header};

/// `/model/{modelId}/{operation}` split on the raw (percent-encoded) path.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/model/")?;
    let (model, operation) = rest.rsplit_once('/')?;
    (!model.is_empty() && !model.contains('/')).then_some((model, operation))
}

/// `POST /model/{modelId}/{operation}`.
pub async fn model_operation(
    State(dispatch): State<Arc<Dispatch>>,
    uri: Uri,
    headers: HeaderMap,
    body: ApiBody,
) -> Response {
    let Some((segment, operation)) = split_path(uri.path()) else {
        return unknown_operation(uri.path());
    };
    let Some(operation) = Operation::parse(operation) else {
        return unknown_operation(operation);
    };
    let result = dispatch
        .serve(Api::Native, operation.path_segment(), async |exchange| {
            call(&dispatch, segment, operation, &headers, body, exchange).await
        })
        .await;
    errors::respond(Shape::Bedrock, result)
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
    let mut response = errors::render(Shape::Bedrock, &error);
    response.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static("UnknownOperationException"));
    response
}

async fn call(
    dispatch: &Dispatch,
    segment: &str,
    operation: Operation,
    headers: &HeaderMap,
    body: ApiBody,
    exchange: &mut Exchange,
) -> Result<Reply, ApiError> {
    if let Some(record) = exchange.record() {
        record.stream = operation.streams();
    }
    let call = dispatch.source.call(headers)?;
    exchange.admit(&call).await?;
    let target = bedrock_target(&dispatch.config, &call.region, ModelRef::PathSegment(segment)).map_err(|refused| {
        let model: String = segment.chars().take(128).collect();
        tracing::info!(%model, operation = operation.path_segment(), "native call names a model not served here");
        let message = match refused.wider {
            Some(wider) => format!(
                "model {:?} is served here only as {wider:?}, which may run the request outside the geography {:?} names; name {wider:?}, or ask the gateway's admin to configure a profile of the same or a narrower geography",
                refused.requested, refused.requested
            ),
            None => format!(
                "model {:?} is not one this caller may use through byollm; ask the gateway's admin to configure it under [models], or use a configured model (GET /v1/models lists them)",
                refused.requested
            ),
        };
        ApiError::forbidden("model_not_allowed", message)
    })?;
    if let Some(record) = exchange.record() {
        record.model = Some(target.name.to_owned());
    }
    let mut failover = dispatch.routing.start_on(call.scope(), target.name, Surface::BedrockOnly)?;
    let wider =
        |route: &Route| matches!(&route.upstream, Upstream::Bedrock(bedrock) if !target.allows(&bedrock.model_id));
    if !failover.set_aside(wider, "its profile may run the request outside the geography of the model id named") {
        return Err(ApiError::forbidden(
            "model_not_allowed",
            format!(
                "every route of {:?} here may run the request outside the geography of the model id named; name the configured model ({:?}), or ask the gateway's admin for a route of the same or a narrower geography",
                target.name, target.name
            ),
        ));
    }
    // Keeps its share of the body budget until Bedrock has the bytes.
    let body = body.read(&dispatch.config.server, BodyOwner::of_call(&call)).await?;
    check_body(&body)?;
    let forwarded = forwarded_headers(headers);
    let payload = Payload::Bedrock { operation, model: target.model, headers: &forwarded, body: &body.bytes };
    let request = &Request { call: &call, headers, payload };
    let served = first_answer(&mut failover, exchange, request, |policy, route| async move {
        let result = attempt(dispatch, request, &policy, &route).await;
        (route, result)
    })
    .await;
    let (route, answer) = match served {
        Ok((route, Answer::Raw(answer))) => (route, answer),
        Ok(_) => return Err(ApiError::internal("a converted answer reached the native routes")),
        // Bedrock's own words reach the client unchanged.
        Err(Unanswered { refusal: Some(refusal), .. }) => return Ok(relay_refusal(exchange, *refusal)),
        Err(Unanswered { error, refusal: None }) => return Err(error),
    };
    let mut relayed = HeaderMap::with_capacity(answer.headers.len() + 2);
    for (name, value) in &answer.headers {
        if is_relayed_header(name) {
            relayed.append(name.clone(), value.clone());
        }
    }
    if operation.streams() {
        relayed.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    let status = answer.status;
    let body = ReplyBody::Stream(relay::raw(answer, operation, exchange.take()));
    Ok(Reply { status, headers: relayed, body }.with_route(&route))
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
}
