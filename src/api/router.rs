//! Router assembly: which routes each listener serves, the layers around them (body limits, the
//! body budget, local mode's guard), health, readiness and metrics.
//!
//! The public router serves only `/.well-known/*`: it is the only part that must face the
//! internet, so AWS can fetch the discovery document and the JWKS. Depends on every surface's
//! `routes.rs`; nothing depends on it but `main` and tests.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use super::errors::{self, Shape};
use super::extract::{BodyBudget, close_if_body_unread};
use super::state::AppState;
use super::{bedrock, chat, credentials, messages, models, tokens, usage};
use crate::dispatch::Dispatch;
use crate::dispatch::context::Readiness;
use crate::error::{ApiError, ErrorKind};
use crate::identity::auth::{AuthError, SessionKey};
use crate::issuer::unix_now;

/// Routes AWS must reach: discovery and JWKS.
fn well_known() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(tokens::openid_configuration))
        .route("/.well-known/jwks.json", get(tokens::jwks))
}

/// The internal listener: everything.
pub fn router(state: AppState) -> Router {
    let limit = state.config.server.max_body_bytes;
    let budget = state.body_budget.clone();
    well_known()
        .route("/v1/tokens", post(tokens::mint_token))
        .route("/v1/credentials", post(credentials::process_credentials))
        .route("/v1/credentials/container", get(credentials::container_credentials))
        .route("/v1/runs/{run_id}", axum::routing::delete(credentials::end_run))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{model}", get(models::retrieve_model))
        .route("/v1/usage", get(usage::usage))
        .merge(model_surfaces())
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(budget))
        .layer(axum::middleware::from_fn(close_if_body_unread))
        .with_state(state)
}

/// The Bedrock-native routes (`/model/{id}/…`, `/inference-profiles…`) and the Anthropic Messages
/// API (`/v1/messages*`), on the internal listener and in `byollm local` alike.
fn model_surfaces<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Dispatch>: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/model/{model}/{operation}", post(bedrock::model_operation))
        .route("/inference-profiles", get(models::list_inference_profiles))
        .route("/inference-profiles/{profile}", get(models::get_inference_profile))
        .route("/v1/messages", post(messages::create_message))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
}

/// A refusal in the shape of the API the path belongs to.
pub fn error_for_path(path: &str, error: ApiError) -> Response {
    errors::render(Shape::of_path(path), &error)
}

/// `byollm local`: the chat API signed with the person's own AWS session; no issuer, no broker.
///
/// Nothing but the person's own programs may spend their session: every request but `/healthz`
/// must present the session key (`Authorization: Bearer` or `x-api-key`); requests a browser sends
/// on a web page's behalf (they carry `Origin`) are refused, and so are requests for a host name
/// other than loopback (DNS rebinding) while listening on loopback.
pub fn local_router(dispatch: Arc<Dispatch>, loopback: bool, key: Arc<SessionKey>) -> Router {
    let limit = dispatch.config.server.max_body_bytes;
    let budget = BodyBudget::new(dispatch.config.server.max_body_bytes_in_flight);
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{model}", get(models::retrieve_model))
        .merge(model_surfaces())
        .route("/healthz", get(local_healthz))
        .route("/metrics", get(local_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(Extension(budget))
        .layer(axum::middleware::from_fn_with_state(LocalGuard { loopback, key }, local_guard))
        .layer(axum::middleware::from_fn(close_if_body_unread))
        .with_state(dispatch)
}

#[derive(Clone)]
struct LocalGuard {
    loopback: bool,
    key: Arc<SessionKey>,
}

async fn local_guard(State(guard): State<LocalGuard>, request: Request, next: axum::middleware::Next) -> Response {
    let loopback = guard.loopback;
    let path = request.uri().path();
    if request.headers().contains_key(header::ORIGIN) {
        return error_for_path(
            path,
            ApiError::forbidden(
                "browser_request_refused",
                "local mode refuses requests sent by web pages (they carry an Origin header)",
            ),
        );
    }
    if loopback {
        let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !is_loopback_host(host) {
            return error_for_path(
                path,
                ApiError::forbidden(
                    "host_not_allowed",
                    "local mode answers only requests addressed to 127.0.0.1, localhost or [::1]",
                ),
            );
        }
    }
    if path != "/healthz"
        && let Err(error) = guard.key.check(request.headers())
    {
        let error = match error {
            AuthError::MissingKey => ApiError::unauthenticated(
                "missing_api_key",
                "local mode needs its session key: send it as 'Authorization: Bearer <key>' or 'x-api-key'; byollm local printed it and wrote it to its key file",
            ),
            AuthError::UnknownKey => ApiError::unauthenticated(
                "invalid_api_key",
                "that is not this session's key: byollm local makes a new one each time it starts (see its key file)",
            ),
            other => ApiError::from(other),
        };
        return error_for_path(path, error);
    }
    next.run(request).await
}

/// `127.0.0.1:8080`, `localhost`, `[::1]:8080`, …
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host
            .rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn local_healthz(State(dispatch): State<Arc<Dispatch>>) -> Response {
    let status = match dispatch.source.readiness() {
        Readiness::Failed(error) => {
            let mut response = errors::openai(&error);
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return response;
        }
        Readiness::Ready => "ok",
        Readiness::Starting => "starting",
    };
    axum::Json(serde_json::json!({"status": status})).into_response()
}

async fn local_metrics(State(dispatch): State<Arc<Dispatch>>) -> Response {
    ([(header::CONTENT_TYPE, crate::observe::metrics::CONTENT_TYPE)], dispatch.metrics.render()).into_response()
}

/// The public listener: only `/.well-known/*`.
pub fn public_router(state: AppState) -> Router {
    well_known().fallback(not_found).method_not_allowed_fallback(method_not_allowed).with_state(state)
}

/// Readiness: ready while the key set has been re-read successfully within a token lifetime (a
/// replica that cannot reload may sign with a key the others retired, or miss a rotation).
async fn healthz(State(state): State<AppState>) -> Response {
    let keys = state.issuer.keys();
    let now =
        state.clock.now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_else(|_| unix_now());
    let since = now.saturating_sub(state.issuer.last_loaded());
    let limit = state.config.issuer.token_lifetime.as_secs();
    if since > limit {
        let body = serde_json::json!({
            "status": "stale_keys",
            "active_kid": keys.keys.signing.kid,
            "message": format!("the key set has not been reloaded for {since}s (more than issuer.token_lifetime_secs, {limit}s); check keys.dir and the log"),
        });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    axum::Json(serde_json::json!({"status": "ok", "active_kid": keys.keys.signing.kid})).into_response()
}

/// Liveness: the process answers.
async fn livez() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, crate::observe::metrics::CONTENT_TYPE)], state.metrics.render()).into_response()
}

async fn not_found() -> Response {
    errors::openai(&ApiError::not_found(
        "unknown_route",
        "no such route; see the README for the endpoints byollm serves",
    ))
}

async fn method_not_allowed() -> Response {
    errors::openai(&ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::InvalidRequest,
        "method_not_allowed",
        "method not allowed on this route",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["127.0.0.1:8080", "127.0.0.1", "localhost:1", "LOCALHOST", "[::1]:8080", "[::1]", "127.1.2.3:9"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["", "evil.example", "evil.example:8080", "10.0.0.1:8080", "localhost.evil.example", "[::2]:80"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
