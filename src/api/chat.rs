//! HTTP edge of the adapter: `POST /v1/chat/completions` (streamed as SSE or not, served through
//! the routing policy by [`crate::dispatch::routed`]) and `GET /v1/models` (the models the caller's policy
//! allows).
//!
//! A cloud run authenticates with its API key and names its principal in headers
//! (`x-byollm-actor`, `x-byollm-principal`, optional `x-byollm-team`, `x-byollm-agent`,
//! `x-byollm-run-id`), which [`crate::identity::authz::authorize`] checks; the broker's credentials for that
//! run sign the Bedrock call. In local mode
//! the person's own AWS session signs it. Streams are pulled from Bedrock only as fast as the
//! client reads, and dropped the moment the client goes away.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::api::{ApiBody, BodyOwner, run_request_from_headers};
use crate::aws::RoleArn;
use crate::broker::Broker;
use crate::broker::local::LocalSession;
use crate::config::Config;
use crate::convert::response::model_object;
use crate::dispatch::routed::{self, AuditGuard};
use crate::error::ApiError;
use crate::identity::auth::Callers;
use crate::identity::authz::{AuthorizedRun, Purpose, authorize};
use crate::observe::audit::Audit;
use crate::observe::metrics::Metrics;
use crate::routing::{RouteScope, Routing, Surface};
use crate::upstream::direct::DirectClient;
use crate::upstream::{BedrockClient, BedrockFailure};
use crate::wire::openai::{ModelList, ModelObject, ModelReasoning};

/// Whose AWS credentials sign Bedrock calls.
#[derive(Clone)]
pub enum CredentialSource {
    /// Cloud runs: per-run assumed-role credentials from the broker.
    Broker(Arc<Broker>),
    /// Interactive: the person's own AWS session, in `region`.
    Local { session: Arc<LocalSession>, region: String },
}

/// What the chat routes need.
#[derive(Clone)]
pub struct ChatState {
    pub config: Arc<Config>,
    pub callers: Arc<Callers>,
    pub metrics: Arc<Metrics>,
    pub bedrock: Arc<BedrockClient>,
    pub source: CredentialSource,
    /// The routing policy in force and the routes' failure state.
    pub routing: Arc<Routing>,
    /// The client for the direct Anthropic API and OpenAI-compatible endpoints.
    pub direct: Arc<DirectClient>,
    pub audit: Audit,
}

/// Credentials and region for one call. Authentication happens here, before the body is read.
/// Shared by every surface that calls Bedrock (chat, Messages API, native routes).
pub enum CallContext {
    Broker { broker: Arc<Broker>, run: AuthorizedRun, caller: String },
    Local { session: Arc<LocalSession>, region: String },
}

/// A cloud run: the caller's API key, then the run identity from the `x-byollm-*` headers through
/// [`authorize`]. Local mode authenticates in its own layer (the session key).
pub fn context(state: &ChatState, headers: &HeaderMap) -> Result<CallContext, ApiError> {
    match &state.source {
        CredentialSource::Broker(broker) => {
            let caller = state.callers.authenticate(headers)?;
            let request = run_request_from_headers(headers)?;
            let run = authorize(&state.config, &caller, &request, Purpose::Run)?;
            Ok(CallContext::Broker { broker: broker.clone(), run, caller: caller.name.clone() })
        }
        CredentialSource::Local { session, region } => {
            Ok(CallContext::Local { session: session.clone(), region: region.clone() })
        }
    }
}

impl CallContext {
    /// The Bedrock region of the call: the run's team's, or the person's session's.
    pub fn region(&self) -> &str {
        match self {
            CallContext::Broker { run, .. } => &run.region,
            CallContext::Local { region, .. } => region,
        }
    }

    /// Credentials and region for the run as it is (the Messages API and native routes).
    pub async fn credentials(&self, config: &Config) -> Result<(crate::aws::AwsCredentials, &str), ApiError> {
        match self {
            CallContext::Broker { broker, run, .. } => {
                let cached = broker.credentials(run).await.map_err(|e| e.to_api_error(config))?;
                Ok((cached.credentials.clone(), &run.region))
            }
            CallContext::Local { session, region } => {
                let credentials = session.credentials().await.map_err(|e| e.to_api_error())?;
                Ok((credentials, region))
            }
        }
    }

    /// Credentials and region for a Bedrock route: the run's role and region unless the route
    /// names its own (a role override is assumed with the same web identity, so the role must
    /// trust the team's principals too). Local mode uses the person's session in any case.
    pub async fn credentials_for(
        &self,
        config: &Config,
        role: Option<&RoleArn>,
        region: Option<&str>,
    ) -> Result<(crate::aws::AwsCredentials, String), ApiError> {
        match self {
            CallContext::Broker { broker, run, .. } => {
                let mut run = run.clone();
                if let Some(role) = role {
                    run.role = Some(role.clone());
                }
                if let Some(region) = region {
                    run.region = region.to_owned();
                }
                let cached = broker.credentials(&run).await.map_err(|e| e.to_api_error(config))?;
                Ok((cached.credentials.clone(), run.region))
            }
            CallContext::Local { session, region: own } => {
                let credentials = session.credentials().await.map_err(|e| e.to_api_error())?;
                Ok((credentials, region.unwrap_or(own).to_owned()))
            }
        }
    }

    /// Whose policy applies: the run's team and agent; local mode uses the defaults.
    pub fn scope(&self) -> RouteScope<'_> {
        match self {
            CallContext::Broker { run, .. } => {
                RouteScope { team: Some(run.principal.team_uid.as_str()), agent: run.agent.as_deref() }
            }
            CallContext::Local { .. } => RouteScope::default(),
        }
    }

    /// Whose share of the body budget the request's body is charged to.
    pub fn body_owner(&self) -> BodyOwner {
        match self {
            CallContext::Broker { run, caller, .. } => BodyOwner::caller(run.principal.team_uid.as_str(), caller),
            CallContext::Local { .. } => BodyOwner::local(),
        }
    }

    /// Who asked, for the audit line.
    pub fn describe(&self, record: &mut crate::observe::audit::AuditRecord) {
        if let CallContext::Broker { run, caller, .. } = self {
            record.caller = Some(caller.clone());
            record.team = Some(run.principal.team_uid.to_string());
            record.actor = Some(run.principal.actor.as_str().to_owned());
            record.principal = Some(run.principal.principal_uid.to_string());
            record.agent = run.agent.clone();
            record.run = run.run_id.clone();
        }
    }

    /// Map a Bedrock failure; in local mode, rejected credentials mean the session lapsed.
    pub fn bedrock_error(&self, failure: &BedrockFailure, action: &str, model_id: &str) -> ApiError {
        if let CallContext::Local { session, .. } = self
            && failure.is_credential_problem()
        {
            return crate::broker::local::LocalError {
                profile: session.profile_name(),
                expired: true,
                summary: "Bedrock refused its credentials",
                detail: format!("Bedrock answered {}", failure.code),
                hint: session.hint(),
            }
            .to_api_error();
        }
        failure.to_api_error(action, model_id)
    }
}

/// The models the caller may use through `surface`: the routing policy's for its team (and the
/// agent it names, one it may act as: [`crate::identity::authz::authorize_listing`]). Both shapes of
/// `GET /v1/models` and `/inference-profiles` list these.
pub fn allowed_models(state: &ChatState, headers: &HeaderMap, surface: Surface) -> Result<Vec<String>, ApiError> {
    let policy = state.routing.policy();
    match &state.source {
        CredentialSource::Broker(_) => {
            let caller = state.callers.authenticate(headers)?;
            let agent = crate::identity::authz::authorize_listing(&caller, &run_request_from_headers(headers)?)?;
            let scope = RouteScope { team: Some(caller.team.as_str()), agent: agent.as_deref() };
            Ok(policy.allowed_models_on(scope, surface))
        }
        CredentialSource::Local { .. } => Ok(policy.allowed_models_on(RouteScope::default(), surface)),
    }
}

/// The surface a model list is for: Anthropic's shape lists what the Messages API serves.
fn listing_surface(anthropic: bool) -> Surface {
    if anthropic { Surface::Messages } else { Surface::Chat }
}

pub async fn list_models(State(state): State<ChatState>, headers: HeaderMap) -> Response {
    let anthropic = crate::api::messages::wants_anthropic_shape(&headers);
    match allowed_models(&state, &headers, listing_surface(anthropic)) {
        Err(error) if anthropic => crate::api::messages::error_response(&error),
        Ok(models) if anthropic => crate::api::messages::anthropic_model_list(&state, &models),
        Ok(models) => {
            let data = models.iter().map(|name| model_entry(&state, name)).collect();
            axum::Json(ModelList::new(data)).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// A model's list entry: from its catalog rules when it is a `[models]` entry, else (a model only
/// an OpenAI-compatible endpoint serves) its name alone.
fn model_entry(state: &ChatState, name: &str) -> ModelObject {
    match crate::models::find_by_name(&state.config.models, name) {
        Some((name, model)) => model_object(name, model),
        None => ModelObject {
            id: name.to_owned(),
            object: "model",
            created: 0,
            owned_by: "byollm".to_owned(),
            display_name: None,
            family: None,
            context_window: 0,
            max_output_tokens: 0,
            reasoning: ModelReasoning { supported: false, thinking: "none", always_on: false, efforts: Vec::new() },
            vision: false,
            lifecycle: None,
        },
    }
}

/// `GET /v1/models/{model}` (the SDKs' `models.retrieve`): one entry of the list, or 404.
pub async fn retrieve_model(State(state): State<ChatState>, headers: HeaderMap, Path(model): Path<String>) -> Response {
    let anthropic = crate::api::messages::wants_anthropic_shape(&headers);
    let found = allowed_models(&state, &headers, listing_surface(anthropic)).and_then(|allowed| {
        allowed.into_iter().find(|name| *name == model).ok_or_else(|| {
            ApiError::not_found(
                "model_not_found",
                format!("model {model:?} is not served here; GET /v1/models lists the models you may use"),
            )
            .with_param("model")
        })
    });
    match found {
        Ok(name) if anthropic => {
            axum::Json(crate::api::messages::anthropic_model_object(&state, &name)).into_response()
        }
        Ok(name) => axum::Json(model_entry(&state, &name)).into_response(),
        Err(error) if anthropic => crate::api::messages::error_response(&error),
        Err(error) => error.into_response(),
    }
}

pub async fn chat_completions(State(state): State<ChatState>, headers: HeaderMap, body: ApiBody) -> Response {
    let started = Instant::now();
    let limit = state.config.server.request_timeout;
    let mut audit = AuditGuard::new(&state, "chat");
    let result = routed::within_request_timeout(limit, routed::chat(&state, &headers, body, &mut audit)).await;
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(status = error.status.as_u16(), code = error.code, "chat completion refused");
            audit.finish(error.status.as_u16(), Some(error.code));
            error.into_response()
        }
    };
    state.metrics.chat_requests.inc(crate::observe::metrics::outcome(response.status().as_u16()));
    tracing::debug!(
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "chat completion answered"
    );
    response
}

pub(crate) fn completion_id() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    format!("chatcmpl-{}", crate::identity::auth::hex(&bytes))
}
