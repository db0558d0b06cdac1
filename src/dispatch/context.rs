//! Who a model request is for, and whose AWS credentials sign its calls: the one difference
//! between `byollm serve` (a cloud run's assumed-role credentials from the broker) and `byollm
//! local` (the person's own AWS session), as the [`CredentialSource`] trait. Handlers never
//! branch on the mode.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::HeaderMap;

use crate::aws::{AwsCredentials, RoleArn};
use crate::broker::Broker;
use crate::broker::local::{LocalError, LocalSession, LocalState};
use crate::config::Config;
use crate::error::ApiError;
use crate::identity::auth::Callers;
use crate::identity::authz::{AuthorizedRun, Purpose, authorize, authorize_listing, run_request_from_headers};
use crate::observe::audit::AuditRecord;
use crate::routing::RouteScope;
use crate::upstream::BedrockFailure;

/// The run a model request is for, as its credential source authorized it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The cloud run (principal, agent, run id, role, region); `None` in local mode.
    pub run: Option<AuthorizedRun>,
    /// The caller's name (its API key's), for the audit line.
    pub caller: Option<String>,
    /// The Bedrock region of a call whose route names none.
    pub region: String,
}

impl Call {
    /// Whose routing policy applies: the run's team and agent; local mode uses the defaults.
    pub fn scope(&self) -> RouteScope<'_> {
        match &self.run {
            Some(run) => RouteScope { team: Some(run.principal.team_uid.as_str()), agent: run.agent.as_deref() },
            None => RouteScope::default(),
        }
    }

    /// The run's team, as the upstream clients count per-team work (DNS lookups); `None` in local
    /// mode.
    pub fn team(&self) -> Option<Arc<str>> {
        self.run.as_ref().map(|run| Arc::from(run.principal.team_uid.as_str()))
    }

    /// Who the gateway's limits count this call against; `None` in local mode (no limits).
    pub fn who(&self) -> Option<crate::limits::Who<'_>> {
        let run = self.run.as_ref()?;
        Some(crate::limits::Who {
            team: run.principal.team_uid.as_str(),
            agent: run.agent.as_deref(),
            caller: self.caller.as_deref(),
            actor: run.principal.actor.as_str(),
            principal: run.principal.principal_uid.as_str(),
        })
    }

    /// Who asked, for the audit line.
    pub fn describe(&self, record: &mut AuditRecord) {
        if let Some(run) = &self.run {
            record.caller = self.caller.clone();
            record.team = Some(run.principal.team_uid.to_string());
            record.actor = Some(run.principal.actor.as_str().to_owned());
            record.principal = Some(run.principal.principal_uid.to_string());
            record.agent = run.agent.clone();
            record.run = run.run_id.clone();
        }
    }
}

/// Whose model list a request sees: the team and agent whose policy applies (none: the defaults),
/// and the region whose inference profiles it is shown.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub team: Option<String>,
    pub agent: Option<String>,
    pub region: String,
}

impl Listing {
    pub fn scope(&self) -> RouteScope<'_> {
        RouteScope { team: self.team.as_deref(), agent: self.agent.as_deref() }
    }
}

/// How ready the source is to sign calls (`/healthz` in local mode).
#[derive(Debug)]
pub enum Readiness {
    Ready,
    Starting,
    Failed(ApiError),
}

/// Whose AWS credentials sign Bedrock calls, and how a request names its run.
pub trait CredentialSource: Send + Sync {
    /// The run a request is for. Cloud: the API key, then the run identity in the `x-byollm-*`
    /// headers through [`authorize`]. Local: the session key was checked by the local guard.
    fn call(&self, headers: &HeaderMap) -> Result<Call, ApiError>;

    /// Whose models a listing request sees ([`authorize_listing`] in the cloud).
    fn listing(&self, headers: &HeaderMap) -> Result<Listing, ApiError>;

    /// Credentials and region for one Bedrock call: the run's role and region unless the route
    /// names its own (a role override is assumed with the same web identity, so the role must
    /// trust the team's principals too). Local mode uses the person's session in any case.
    fn credentials<'a>(
        &'a self,
        call: &'a Call,
        role: Option<&'a RoleArn>,
        region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(AwsCredentials, String), ApiError>>;

    /// A Bedrock failure as the client's error.
    fn bedrock_error(&self, failure: &BedrockFailure, action: &str, model_id: &str) -> ApiError {
        failure.to_api_error(action, model_id)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Ready
    }
}

/// Cloud runs: per-run assumed-role credentials from the broker, for callers with an API key.
pub struct CloudSource {
    pub config: Arc<Config>,
    pub callers: Arc<Callers>,
    pub broker: Arc<Broker>,
}

impl CredentialSource for CloudSource {
    fn call(&self, headers: &HeaderMap) -> Result<Call, ApiError> {
        let caller = self.callers.authenticate(headers)?;
        let request = run_request_from_headers(headers)?;
        let run = authorize(&self.config, &caller, &request, Purpose::Run)?;
        Ok(Call { region: run.region.clone(), run: Some(run), caller: Some(caller.name.clone()) })
    }

    fn listing(&self, headers: &HeaderMap) -> Result<Listing, ApiError> {
        let caller = self.callers.authenticate(headers)?;
        let agent = authorize_listing(&caller, &run_request_from_headers(headers)?)?;
        let region = self
            .config
            .team(&caller.team)
            .and_then(|team| team.region.clone())
            .unwrap_or_else(|| self.config.bedrock.region.clone());
        Ok(Listing { team: Some(caller.team.to_string()), agent, region })
    }

    fn credentials<'a>(
        &'a self,
        call: &'a Call,
        role: Option<&'a RoleArn>,
        region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(AwsCredentials, String), ApiError>> {
        Box::pin(async move {
            let Some(run) = &call.run else {
                return Err(ApiError::internal("a cloud call without a run"));
            };
            let mut run = run.clone();
            if let Some(role) = role {
                run.role = Some(role.clone());
            }
            if let Some(region) = region {
                run.region = region.to_owned();
            }
            let cached = self.broker.credentials(&run).await.map_err(|e| e.to_api_error(&self.config))?;
            Ok((cached.credentials.clone(), run.region))
        })
    }
}

/// `byollm local`: the person's own AWS session, in `region`.
pub struct SessionSource {
    pub session: Arc<LocalSession>,
    pub region: String,
}

impl CredentialSource for SessionSource {
    fn call(&self, _headers: &HeaderMap) -> Result<Call, ApiError> {
        Ok(Call { run: None, caller: None, region: self.region.clone() })
    }

    fn listing(&self, _headers: &HeaderMap) -> Result<Listing, ApiError> {
        Ok(Listing { team: None, agent: None, region: self.region.clone() })
    }

    fn credentials<'a>(
        &'a self,
        _call: &'a Call,
        _role: Option<&'a RoleArn>,
        region: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(AwsCredentials, String), ApiError>> {
        Box::pin(async move {
            let credentials = self.session.credentials().await.map_err(|e| e.to_api_error())?;
            Ok((credentials, region.unwrap_or(&self.region).to_owned()))
        })
    }

    /// Rejected credentials mean the session lapsed: say how to renew it.
    fn bedrock_error(&self, failure: &BedrockFailure, action: &str, model_id: &str) -> ApiError {
        if !failure.is_credential_problem() {
            return failure.to_api_error(action, model_id);
        }
        LocalError {
            profile: self.session.profile_name(),
            expired: true,
            summary: "Bedrock refused its credentials",
            detail: format!("Bedrock answered {}", failure.code),
            hint: self.session.hint(),
        }
        .to_api_error()
    }

    fn readiness(&self) -> Readiness {
        match self.session.state() {
            LocalState::Failed { error } => Readiness::Failed(error.to_api_error()),
            LocalState::Ready { .. } => Readiness::Ready,
            LocalState::NotYetLoaded => Readiness::Starting,
        }
    }
}
