//! HTTP edge of the broker: credentials for a run, as `credential_process` JSON
//! (`POST /v1/credentials`) or through the AWS container-credentials protocol
//! (`GET /v1/credentials/container?...`), and run-end eviction (`DELETE /v1/runs/{run_id}`).
//!
//! Every route authenticates the caller and asks [`crate::identity::authz::authorize`] before any
//! STS call; run eviction drops only what that caller could have been authorized for. Credentials
//! handed out carry the session policy of the Bedrock routes the run's routing allows
//! ([`crate::broker::session_policy`]).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::api::{ApiJson, AppState, BodyOwner};
use crate::broker::cache::CachedCredentials;
use crate::broker::rfc3339;
use crate::broker::session_policy::scope_routes;
use crate::error::ApiError;
use crate::identity::authz::{FieldSource, Purpose, RunRequest, authorize, permits, validate_run_id};

/// Which run wants credentials. `team` defaults to the caller's team; `actor` and `principal` may
/// be left out by a caller bound to a single principal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRequest {
    pub team: Option<String>,
    pub actor: Option<String>,
    pub principal: Option<String>,
    pub agent: Option<String>,
    pub run_id: Option<String>,
}

impl From<CredentialsRequest> for RunRequest {
    fn from(request: CredentialsRequest) -> RunRequest {
        RunRequest {
            team: request.team,
            actor: request.actor,
            principal: request.principal,
            agent: request.agent,
            run_id: request.run_id,
            source: FieldSource::Fields,
        }
    }
}

/// The `credential_process` output format.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessCredentials<'a> {
    version: u8,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    session_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
}

/// The container-credentials (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) format.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerCredentials<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
    role_arn: &'a str,
}

/// Where a credentials request's fields come from: a JSON body (read only after authentication)
/// or the query string.
pub enum RequestSource {
    Body(ApiJson<CredentialsRequest>),
    Query(Result<CredentialsRequest, ApiError>),
}

/// Authenticate, authorize and fetch: shared by every credentials route.
pub async fn credentials_for(
    state: &AppState,
    headers: &HeaderMap,
    source: RequestSource,
) -> Result<std::sync::Arc<CachedCredentials>, ApiError> {
    let caller = state.callers.authenticate(headers)?;
    let request = match source {
        RequestSource::Body(body) => body.read(&state.config.server, BodyOwner::of(&caller)).await?,
        RequestSource::Query(query) => query?,
    };
    let run = authorize(&state.config, &caller, &RunRequest::from(request), Purpose::Run)?;
    // What leaves the gateway escapes its limits: a team may be barred from it.
    state.dispatch.limits.may_export(run.principal.team_uid.as_str())?;
    // These credentials leave the gateway: scoped to what the run's routing (in force now) allows
    // on Bedrock.
    let team = run.principal.team_uid.as_str();
    let routes = scope_routes(&state.config, &state.dispatch.routing.policy(), team, run.agent.as_deref());
    state.broker.exported_credentials(&run, &routes).await.map_err(|e| e.to_api_error(&state.config))
}

pub async fn process_credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: ApiJson<CredentialsRequest>,
) -> Response {
    match credentials_for(&state, &headers, RequestSource::Body(body)).await {
        Ok(cached) => {
            let credentials = &cached.credentials;
            let response = axum::Json(ProcessCredentials {
                version: 1,
                access_key_id: &credentials.access_key_id,
                secret_access_key: credentials.secret_access_key.expose(),
                session_token: credentials.session_token.as_ref().map(|t| t.expose()).unwrap_or_default(),
                expiration: credentials.expiration.map(rfc3339),
            })
            .into_response();
            crate::api::no_store(response)
        }
        Err(error) => super::errors::openai(&error),
    }
}

pub async fn container_credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CredentialsRequest>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let request = query.map(|q| q.0).map_err(|e| {
        ApiError::invalid_request(
            "",
            "invalid_query",
            format!("query must carry actor and principal (and optionally team, agent, run_id): {e}"),
        )
    });
    match credentials_for(&state, &headers, RequestSource::Query(request)).await {
        Ok(cached) => {
            let credentials = &cached.credentials;
            let response = axum::Json(ContainerCredentials {
                access_key_id: &credentials.access_key_id,
                secret_access_key: credentials.secret_access_key.expose(),
                token: credentials.session_token.as_ref().map(|t| t.expose()).unwrap_or_default(),
                expiration: credentials.expiration.map(rfc3339),
                role_arn: cached.role.as_str(),
            })
            .into_response();
            crate::api::no_store(response)
        }
        Err(error) => super::errors::openai(&error),
    }
}

pub async fn end_run(State(state): State<AppState>, headers: HeaderMap, Path(run_id): Path<String>) -> Response {
    let caller = match state.callers.authenticate(&headers) {
        Ok(caller) => caller,
        Err(error) => return super::errors::openai(&ApiError::from(error)),
    };
    if let Err(message) = validate_run_id(&run_id) {
        return super::errors::openai(&ApiError::invalid_request(
            "run_id",
            "invalid_run_field",
            format!("run_id: {message}"),
        ));
    }
    let evicted = state.broker.end_run(&run_id, |principal, agent| permits(&caller, principal, agent).is_ok());
    tracing::info!(caller = %caller.name, evicted, "run ended; its credentials were dropped");
    axum::Json(serde_json::json!({"run_id": run_id, "evicted": evicted})).into_response()
}
