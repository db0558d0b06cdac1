//! HTTP assembly: application state, the internal and public routers, the JSON extractor whose
//! rejections speak the one error body, health and metrics.
//!
//! The public router serves only `/.well-known/*`: it is the only part that must face the
//! internet, so AWS can fetch the discovery document and the JWKS.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::adapter::messages_routes;
use crate::adapter::routes::{self as chat_routes, ChatState, CredentialSource};
use crate::auth::{AuthError, Callers, SessionKey};
use crate::authz::{self, FieldSource, RunRequest};
use crate::broker::cache::{Clock, SystemClock};
use crate::broker::sts::{SdkSts, StsExchange};
use crate::broker::{Broker, routes as broker_routes};
use crate::config::Config;
use crate::error::ApiError;
use crate::issuer::{Issuer, routes as issuer_routes};
use crate::metrics::Metrics;
use crate::native::routes as native_routes;
use crate::upstream::BedrockClient;

/// Cheap handles shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub issuer: Arc<Issuer>,
    pub callers: Arc<Callers>,
    pub metrics: Arc<Metrics>,
    pub broker: Arc<Broker>,
    pub chat: ChatState,
}

impl axum::extract::FromRef<AppState> for ChatState {
    fn from_ref(state: &AppState) -> ChatState {
        state.chat.clone()
    }
}

impl AppState {
    /// State for `serve`: STS through the AWS SDK, the system clock.
    pub fn new(config: Config, issuer: Issuer) -> AppState {
        let sts = SdkSts::new(&config.sts.region, config.sts.endpoint_url.as_deref());
        AppState::with_parts(config, issuer, Arc::new(sts), Arc::new(SystemClock))
    }

    /// State with an injected STS and clock, for tests.
    pub fn with_parts(config: Config, issuer: Issuer, sts: Arc<dyn StsExchange>, clock: Arc<dyn Clock>) -> AppState {
        let config = Arc::new(config);
        let issuer = Arc::new(issuer);
        let metrics = Arc::new(Metrics::default());
        let broker = Arc::new(Broker::new(config.clone(), issuer.clone(), sts, clock, metrics.clone()));
        let callers = Arc::new(Callers::new(&config.callers));
        let chat = ChatState {
            config: config.clone(),
            callers: callers.clone(),
            metrics: metrics.clone(),
            bedrock: Arc::new(BedrockClient::new(config.bedrock.endpoint_url.clone())),
            source: CredentialSource::Broker(broker.clone()),
        };
        AppState { callers, config, issuer, metrics, broker, chat }
    }
}

/// Serve HTTP/1.1 on `listener` until `shutdown` turns true, then let open requests finish. With
/// `tls`, every connection is HTTPS (the certificate in force when it connects).
///
/// A small accept loop instead of `axum::serve` so that connections get a header read timeout
/// (`server.header_read_timeout_secs`, against clients that trickle headers; with TLS it bounds
/// the handshake too) and keep-alive connections are closed gracefully on shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: std::time::Duration,
    tls: Option<Arc<crate::tls::ReloadingTls>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::TokioIo;
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = shutdown.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(TokioIo::new(stream), app, header_read_timeout, stop).await;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            match tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), app, header_read_timeout, stop).await,
                Ok(Err(error)) => tracing::debug!(%error, "tls handshake failed"),
                Err(_) => tracing::debug!("tls handshake not finished within server.header_read_timeout_secs"),
            }
        });
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// One connection, plain or TLS, until it closes or the server shuts down.
async fn serve_connection<I>(
    io: I,
    app: Router,
    header_read_timeout: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use hyper_util::rt::TokioTimer;
    use hyper_util::service::TowerToHyperService;
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(io, TowerToHyperService::new(app));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        // The sender is gone: nobody can ask for a shutdown any more.
        std::future::pending::<()>().await;
    }
}

/// Routes AWS must reach: discovery and JWKS.
fn well_known() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(issuer_routes::openid_configuration))
        .route("/.well-known/jwks.json", get(issuer_routes::jwks))
}

/// The internal listener: everything.
pub fn router(state: AppState) -> Router {
    let limit = state.config.server.max_body_bytes;
    well_known()
        .route("/v1/tokens", post(issuer_routes::mint_token))
        .route("/v1/credentials", post(broker_routes::process_credentials))
        .route("/v1/credentials/container", get(broker_routes::container_credentials))
        .route("/v1/runs/{run_id}", axum::routing::delete(broker_routes::end_run))
        .route("/v1/chat/completions", post(chat_routes::chat_completions))
        .route("/v1/models", get(chat_routes::list_models))
        .route("/v1/models/{model}", get(chat_routes::retrieve_model))
        .merge(model_surfaces())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The Bedrock-native routes (`/model/{id}/…`, `/inference-profiles…`) and the Anthropic Messages
/// API (`/v1/messages*`), on the internal listener and in `byollm local` alike.
fn model_surfaces<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ChatState: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/model/{model}/{operation}", post(native_routes::model_operation))
        .route("/inference-profiles", get(native_routes::list_inference_profiles))
        .route("/inference-profiles/{profile}", get(native_routes::get_inference_profile))
        .route("/v1/messages", post(messages_routes::create_message))
        .route("/v1/messages/count_tokens", post(messages_routes::count_tokens))
}

/// A refusal in the shape of the surface the path belongs to: Bedrock's for `/model/*` and
/// `/inference-profiles*`, Anthropic's for `/v1/messages*`, else the one OpenAI-style body.
pub fn error_for_path(path: &str, error: ApiError) -> Response {
    if native_routes::is_native_path(path) { native_routes::error_response(&error) } else { error.into_response() }
}

/// `byollm local`: the chat API signed with the person's own AWS session; no issuer, no broker.
///
/// Nothing but the person's own programs may spend their session: every request but `/healthz`
/// must present the session key (`Authorization: Bearer` or `x-api-key`); requests a browser sends
/// on a web page's behalf (they carry `Origin`) are refused, and so are requests for a host name
/// other than loopback (DNS rebinding) while listening on loopback.
pub fn local_router(chat: ChatState, loopback: bool, key: Arc<SessionKey>) -> Router {
    let limit = chat.config.server.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat_routes::chat_completions))
        .route("/v1/models", get(chat_routes::list_models))
        .route("/v1/models/{model}", get(chat_routes::retrieve_model))
        .merge(model_surfaces())
        .route("/healthz", get(local_healthz))
        .route("/metrics", get(local_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(LocalGuard { loopback, key }, local_guard))
        .with_state(chat)
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

async fn local_healthz(State(chat): State<ChatState>) -> Response {
    let status = match &chat.source {
        CredentialSource::Local { session, .. } => match session.state() {
            crate::broker::local::LocalState::Failed { error } => {
                return (StatusCode::SERVICE_UNAVAILABLE, error.to_api_error()).into_response();
            }
            crate::broker::local::LocalState::Ready { .. } => "ok",
            crate::broker::local::LocalState::NotYetLoaded => "starting",
        },
        CredentialSource::Broker(_) => "ok",
    };
    axum::Json(serde_json::json!({"status": status})).into_response()
}

async fn local_metrics(State(chat): State<ChatState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], chat.metrics.render()).into_response()
}

/// The public listener: only `/.well-known/*`.
pub fn public_router(state: AppState) -> Router {
    well_known().fallback(not_found).method_not_allowed_fallback(method_not_allowed).with_state(state)
}

/// Mark a response that carries a secret as never to be cached.
pub fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    response
}

async fn healthz(State(state): State<AppState>) -> Response {
    let keys = state.issuer.keys();
    axum::Json(serde_json::json!({"status": "ok", "active_kid": keys.keys.signing.kid})).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("unknown_route", "no such route; see the README for the endpoints byollm serves")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// The run identity a request carries in `x-byollm-*` headers, as sent: a header that is absent is
/// `None`; one that is present is taken as it is (an empty value then fails [`crate::authz`]'s
/// checks with a 400, never counting as absent). A value that is not visible ASCII, or a header
/// sent twice, is refused here.
pub fn run_request_from_headers(headers: &axum::http::HeaderMap) -> Result<RunRequest, ApiError> {
    let read = |name: &'static str| -> Result<Option<String>, ApiError> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else { return Ok(None) };
        if values.next().is_some() {
            return Err(ApiError::invalid_request(name, "duplicate_header", format!("send {name} once")));
        }
        let text = value
            .to_str()
            .map_err(|_| ApiError::invalid_request(name, "invalid_header", format!("{name} must be visible ASCII")))?;
        Ok(Some(text.trim().to_owned()))
    };
    Ok(RunRequest {
        team: read(authz::HEADER_TEAM)?,
        actor: read(authz::HEADER_ACTOR)?,
        principal: read(authz::HEADER_PRINCIPAL)?,
        agent: read(authz::HEADER_AGENT)?,
        run_id: read(authz::HEADER_RUN_ID)?,
        source: FieldSource::Headers,
    })
}

/// A JSON body that is not read until the handler asks, so handlers authenticate first and an
/// unauthenticated client never gets the server to buffer its body.
pub struct ApiJson<T> {
    body: axum::body::Body,
    json: bool,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> ApiJson<T> {
    /// Read (at most `server.max_body_bytes`, within `server.body_read_timeout_secs`) and parse.
    pub async fn read(self, server: &crate::config::ServerConfig) -> Result<T, ApiError> {
        if !self.json {
            return Err(ApiError::invalid_request("", "invalid_content_type", "send the body as application/json"));
        }
        let bytes = read_body(self.body, server).await?;
        serde_json::from_slice::<T>(&bytes).map_err(|e| {
            ApiError::invalid_request(
                "",
                "invalid_json",
                format!("request body is not valid JSON for this endpoint: {e}"),
            )
        })
    }
}

impl<S: Send + Sync, T> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/json") || v.contains("+json"));
        Ok(ApiJson { body: request.into_body(), json, _type: std::marker::PhantomData })
    }
}

/// Read a whole body, bounded in size (`server.max_body_bytes`) and in time
/// (`server.body_read_timeout_secs`).
pub async fn read_body(body: axum::body::Body, server: &crate::config::ServerConfig) -> Result<Bytes, ApiError> {
    let timeout = server.body_read_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, server.max_body_bytes)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            while let Some(current) = source {
                if current.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "invalid_request_error",
                        "body_too_large",
                        "request body is larger than server.max_body_bytes",
                    ));
                }
                source = current.source();
            }
            Err(ApiError::invalid_request("", "unreadable_body", "could not read the request body"))
        }
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "body_timeout",
            format!("the request body did not arrive within server.body_read_timeout_secs ({}s)", timeout.as_secs()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_present_but_empty_are_not_absent() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-byollm-actor", "user".parse().unwrap());
        headers.insert("x-byollm-principal", " alice ".parse().unwrap());
        headers.insert("x-byollm-agent", "".parse().unwrap());
        let request = run_request_from_headers(&headers).unwrap();
        assert_eq!(request.principal.as_deref(), Some("alice"));
        assert_eq!(request.agent.as_deref(), Some(""), "an empty header is a value for authz to refuse");
        assert_eq!((request.team, request.run_id, request.source), (None, None, FieldSource::Headers));

        headers.insert("x-byollm-run-id", axum::http::HeaderValue::from_bytes(b"r\xff").unwrap());
        assert_eq!(run_request_from_headers(&headers).unwrap_err().code, "invalid_header");
        headers.remove("x-byollm-run-id");
        headers.append("x-byollm-team", "a".parse().unwrap());
        headers.append("x-byollm-team", "b".parse().unwrap());
        assert_eq!(run_request_from_headers(&headers).unwrap_err().code, "duplicate_header");
    }

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
