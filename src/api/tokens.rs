//! HTTP edge of the issuer: discovery, JWKS, and `POST /v1/tokens`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::api::{ApiJson, AppState, BodyOwner};
use crate::error::ApiError;
use crate::identity::authz::{FieldSource, Purpose, RunRequest, authorize};
use crate::issuer::{Document, MintError, RunClaims};

pub async fn openid_configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    state.metrics.jwks_requests.inc("openid_configuration");
    let max_age = state.config.keys.jwks_max_age.as_secs();
    document_response(state.issuer.discovery(), max_age, &headers)
}

pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let keys = state.issuer.keys();
    let response = document_response(&keys.jwks, state.config.keys.jwks_max_age.as_secs(), &headers);
    let label = if response.status() == StatusCode::NOT_MODIFIED { "jwks_not_modified" } else { "jwks" };
    state.metrics.jwks_requests.inc(label);
    response
}

fn document_response(document: &Document, max_age: u64, request: &HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&document.etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .unwrap_or(HeaderValue::from_static("public, max-age=300"));
    let matches = request.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').map(|tag| tag.trim()).any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == document.etag || tag == "*"
        })
    });
    if matches {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        document.body.clone(),
    )
        .into_response()
}

/// Body of `POST /v1/tokens`. `team` defaults to the caller's own team; `actor` and `principal`
/// may be left out by a caller bound to a single principal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub team: Option<String>,
    pub actor: Option<String>,
    pub principal: Option<String>,
    pub lifetime_secs: Option<u64>,
    pub agent: Option<String>,
    pub run_id: Option<String>,
}

/// Holds a token: no `Debug`.
#[derive(Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub token_type: &'static str,
    pub subject: String,
    pub kid: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub expires_in: u64,
}

pub async fn mint_token(State(state): State<AppState>, headers: HeaderMap, body: ApiJson<TokenRequest>) -> Response {
    let result = mint(&state, &headers, body).await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(error) => error.status,
    };
    state.metrics.tokens_minted.inc(crate::observe::metrics::outcome(status.as_u16()));
    match result {
        Ok(body) => crate::api::no_store(axum::Json(body).into_response()),
        Err(error) => super::errors::openai(&error),
    }
}

async fn mint(state: &AppState, headers: &HeaderMap, body: ApiJson<TokenRequest>) -> Result<TokenResponse, ApiError> {
    let caller = state.callers.authenticate(headers)?;
    let request = body.read(&state.config.server, BodyOwner::of(&caller)).await?;
    let run_request = RunRequest {
        team: request.team,
        actor: request.actor,
        principal: request.principal,
        agent: request.agent,
        run_id: request.run_id,
        source: FieldSource::Fields,
    };
    let run = authorize(&state.config, &caller, &run_request, Purpose::Token)?;
    let lifetime = request.lifetime_secs.map(Duration::from_secs);
    let minted = crate::issuer::mint_off_thread(&state.issuer, run.principal.clone(), lifetime, RunClaims::from(&run))
        .await
        .map_err(mint_error)?;
    tracing::info!(caller = %caller.name, kid = %minted.kid, expires_at = minted.expires_at, "token minted");
    Ok(TokenResponse {
        expires_in: minted.expires_at - minted.issued_at,
        token: minted.token.expose().to_owned(),
        token_type: "urn:ietf:params:oauth:token-type:jwt",
        subject: minted.subject,
        kid: minted.kid,
        issued_at: minted.issued_at,
        expires_at: minted.expires_at,
    })
}

pub fn mint_error(error: MintError) -> ApiError {
    match error {
        MintError::Lifetime { .. } => ApiError::invalid_request("lifetime_secs", "invalid_lifetime", error.to_string()),
        MintError::Claim { name, .. } => ApiError::invalid_request(name, "invalid_run_field", error.to_string()),
        MintError::Signing => ApiError::internal("token signing failed"),
    }
}
