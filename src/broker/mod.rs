//! The credential broker: temporary AWS credentials for a cloud run (web identity) or for a person
//! on their laptop (their own AWS CLI session, in [`local`]).
//!
//! For a run it resolves the role (the named agent's, else the team's), mints a token for the run's
//! principal with the issuer, calls STS `AssumeRoleWithWebIdentity`, and caches the result in memory
//! for the run. It never writes credentials anywhere and never logs them; errors name the piece of
//! AWS set-up to check. It uses the issuer's minting API only.

pub mod cache;
pub mod local;
pub mod session_policy;
pub mod sts;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;

use crate::aws::RoleArn;
use crate::config::Config;
use crate::error::{ApiError, ErrorKind};
use crate::identity::authz::AuthorizedRun;
use crate::issuer::{Issuer, MintError, RunClaims};
use crate::observe::metrics::Metrics;
use crate::principal::ScopedPrincipal;
use cache::{CacheKey, CachedCredentials, Clock, CredentialCache, Outcome};
use sts::{AssumeRequest, StsErrorClass, StsExchange, StsFailure, classify};

/// Everything the broker can fail with.
#[derive(Debug, Clone)]
pub enum BrokerError {
    NoRole {
        team: String,
    },
    /// No session policy can scope the credentials a run would export.
    SessionPolicy {
        team: String,
        agent: Option<String>,
        error: session_policy::PolicyError,
    },
    Mint(String),
    Sts {
        class: StsErrorClass,
        failure: StsFailure,
        role: RoleArn,
        subject: String,
    },
}

/// Retries for transient STS failures: attempts and the first backoff (doubling, with jitter).
const STS_ATTEMPTS: u32 = 3;
const STS_FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The error code of a request AWS STS throttled (429, after the broker's retries).
pub const STS_THROTTLED: &str = "sts_throttled";
/// The error code of a request for which AWS STS was unavailable or unreachable (503, after the
/// broker's retries): an outage of STS, not of the role or the route.
pub const STS_UNAVAILABLE: &str = "sts_unavailable";

pub struct Broker {
    core: Arc<Core>,
    cache: CredentialCache<BrokerError>,
    /// Session policies of exported credentials, built once per distinct list of routes.
    policies: session_policy::PolicyCache,
}

/// What a fetch needs, shared with the tasks that refresh in the background.
struct Core {
    config: Arc<Config>,
    issuer: Arc<Issuer>,
    sts: Arc<dyn StsExchange>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Broker {
    pub fn new(
        config: Arc<Config>,
        issuer: Arc<Issuer>,
        sts: Arc<dyn StsExchange>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Broker {
        let cache = CredentialCache::new(clock.clone(), config.teams.len());
        let policies = session_policy::PolicyCache::default();
        Broker { core: Arc::new(Core { config, issuer, sts, clock, metrics }), cache, policies }
    }

    pub fn config(&self) -> &Config {
        &self.core.config
    }

    pub fn issuer(&self) -> &Arc<Issuer> {
        &self.core.issuer
    }

    /// Credentials for a run [`crate::identity::authz::authorize`] allowed, used by the gateway itself (to
    /// sign the run's Bedrock calls): cached ones at once while they are valid (a refresh, when
    /// due, runs in the background), else from STS.
    pub async fn credentials(&self, run: &AuthorizedRun) -> Result<Arc<CachedCredentials>, BrokerError> {
        self.lookup(run, None).await
    }

    /// Credentials for a run that are handed to the caller (`/v1/credentials*`): assumed with the
    /// session policy of `routes`, the Bedrock routes the run's routing allows
    /// ([`session_policy::scope_routes`]), unless `sts.session_policy = false`. Cached per
    /// distinct policy, so a routing change that changes the run's models changes its credentials.
    pub async fn exported_credentials(
        &self,
        run: &AuthorizedRun,
        routes: &[session_policy::ScopeRoute],
    ) -> Result<Arc<CachedCredentials>, BrokerError> {
        if !self.core.config.sts.session_policy {
            return self.lookup(run, None).await;
        }
        let role = run.role.as_ref().ok_or_else(|| BrokerError::NoRole { team: run.principal.team_uid.to_string() })?;
        let targets = session_policy::targets(routes, &run.region, role.account_id());
        let policy = self.policies.get_or_build(targets).map_err(|error| BrokerError::SessionPolicy {
            team: run.principal.team_uid.to_string(),
            agent: run.agent.clone(),
            error,
        })?;
        self.lookup(run, Some(policy)).await
    }

    async fn lookup(
        &self,
        run: &AuthorizedRun,
        policy: Option<session_policy::SessionPolicy>,
    ) -> Result<Arc<CachedCredentials>, BrokerError> {
        let role = run.role.clone().ok_or_else(|| BrokerError::NoRole { team: run.principal.team_uid.to_string() })?;
        let key = CacheKey {
            role: role.clone(),
            principal: run.principal.clone(),
            agent: run.agent.clone(),
            run_id: run.run_id.clone(),
            session_tags: run.session_tags,
            session_policy: policy.as_ref().map(|p| p.digest),
        };
        let passing = |error: &BrokerError| match error {
            BrokerError::Sts { class, .. } => class.is_transient(),
            BrokerError::Mint(_) => true,
            BrokerError::NoRole { .. } | BrokerError::SessionPolicy { .. } => false,
        };
        let (core, run) = (self.core.clone(), run.clone());
        let document = policy.map(|p| p.document);
        let answer = self.cache.get_or_fetch(&key, move || core.refresh(run, role, document), passing).await;
        let label = match answer.outcome {
            Outcome::Hit => "hit",
            Outcome::Fetched => "miss",
            Outcome::Stale => "stale_served",
            Outcome::BackedOff => "backoff",
        };
        self.core.metrics.credential_cache.inc(label);
        answer.result
    }

    /// Forget the cached credentials of run `run_id` whose principal and agent `may_end` allows
    /// (the caller's binding, [`crate::identity::authz::permits`]); returns how many were dropped.
    pub fn end_run(&self, run_id: &str, may_end: impl Fn(&ScopedPrincipal, Option<&str>) -> bool) -> usize {
        self.cache.evict_run(run_id, |key| may_end(&key.principal, key.agent.as_deref()))
    }

    pub fn purge_expired(&self) -> usize {
        self.cache.purge_expired()
    }
}

impl Core {
    /// One fetch of a run's credentials (with its retries), counted and logged; runs on its own
    /// task, in the background when cached credentials are still valid.
    async fn refresh(
        self: Arc<Self>,
        run: AuthorizedRun,
        role: RoleArn,
        policy: Option<Arc<str>>,
    ) -> Result<CachedCredentials, BrokerError> {
        let result = self.assume(&run, &role, policy.as_deref()).await;
        match &result {
            Ok(_) => self.metrics.credential_refreshes.inc("ok"),
            Err(error) => {
                self.metrics.credential_refreshes.inc("error");
                if let BrokerError::Sts { class, .. } = error
                    && class.is_transient()
                {
                    tracing::warn!(role = %role, "credential refresh failed; the entry backs off, and its last good credentials (if any) serve until they expire");
                }
            }
        }
        result
    }

    async fn assume(
        &self,
        identity: &AuthorizedRun,
        role: &RoleArn,
        policy: Option<&str>,
    ) -> Result<CachedCredentials, BrokerError> {
        let duration = self.config.sts.duration;
        let session_name = session_name(identity);
        let run = RunClaims::from(identity);
        let mut backoff = STS_FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let minted = crate::issuer::mint_off_thread(&self.issuer, identity.principal.clone(), None, run.clone())
                .await
                .map_err(|e: MintError| BrokerError::Mint(e.to_string()))?;
            let request = AssumeRequest {
                role_arn: role.clone(),
                session_name: session_name.clone(),
                token: minted.token,
                duration,
                policy: policy.map(str::to_owned),
            };
            match self.sts.assume_role_with_web_identity(request).await {
                Ok(credentials) => {
                    self.metrics.sts_calls.inc("ok");
                    tracing::info!(role = %role, session = %session_name, attempt, "assumed role with web identity");
                    return Ok(CachedCredentials::new(credentials, role.clone(), self.clock.now(), duration));
                }
                Err(failure) => {
                    let class = classify(&failure);
                    self.metrics.sts_calls.inc(class.label());
                    tracing::warn!(role = %role, code = %failure.code, class = class.label(), attempt, "AssumeRoleWithWebIdentity failed");
                    if !class.is_transient() || attempt >= STS_ATTEMPTS {
                        return Err(BrokerError::Sts {
                            class,
                            failure,
                            role: role.clone(),
                            subject: identity.principal.to_string(),
                        });
                    }
                }
            }
            tokio::time::sleep(jitter(backoff)).await;
            backoff *= 2;
            attempt += 1;
        }
    }
}

/// An RFC 3339 UTC timestamp (`2026-11-23T12:00:00Z`), as AWS tools expect `Expiration`.
pub fn rfc3339(time: SystemTime) -> String {
    aws_smithy_types::DateTime::from(time).fmt(aws_smithy_types::date_time::Format::DateTime).unwrap_or_default()
}

fn jitter(base: Duration) -> Duration {
    use aws_lc_rs::rand::SecureRandom;
    let mut byte = [0u8; 1];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut byte);
    base + base.mul_f64(f64::from(byte[0]) / 512.0)
}

/// A deterministic `RoleSessionName` (`[\w+=,.@-]`, 2–64 characters) that shows in CloudTrail
/// which principal and run acted: `<principal>.<run>.<hash>`, where the hash covers the full
/// subject, agent and run so truncation never merges two identities.
pub fn session_name(identity: &AuthorizedRun) -> String {
    let digest_input = format!(
        "{}\n{}\n{}",
        identity.principal,
        identity.agent.as_deref().unwrap_or(""),
        identity.run_id.as_deref().unwrap_or("")
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, digest_input.as_bytes());
    let hash = crate::identity::auth::hex(&digest.as_ref()[..5]);
    let principal: String = identity.principal.principal_uid.as_str().chars().take(24).collect();
    let run: String = identity.run_id.as_deref().unwrap_or("norun").chars().take(24).collect();
    format!("{principal}.{run}.{hash}")
}

impl BrokerError {
    fn issuer_hint(config: &Config) -> String {
        format!(
            "issuer {} (IAM condition keys {host}:sub and {host}:aud)",
            config.issuer.url,
            host = config.issuer.host_path
        )
    }

    /// The client-facing error; needs the config to name what to check.
    pub fn to_api_error(&self, config: &Config) -> ApiError {
        match self {
            BrokerError::NoRole { team } => ApiError::forbidden(
                "no_bedrock_role",
                format!(
                    "no Bedrock role configured for team {team:?}: set teams.role_arn (or teams.agents.role_arn) to the role created with `byollm aws-setup`"
                ),
            ),
            BrokerError::SessionPolicy { team, agent, error } => {
                let who = match agent {
                    Some(agent) => format!("agent {agent:?} of team {team:?}"),
                    None => format!("team {team:?}"),
                };
                let (status, code) = match error {
                    session_policy::PolicyError::NoModels => (StatusCode::FORBIDDEN, "no_bedrock_model"),
                    session_policy::PolicyError::Model(_) => (StatusCode::FAILED_DEPENDENCY, "session_policy_model_id"),
                    session_policy::PolicyError::TooLong { .. } => {
                        (StatusCode::FAILED_DEPENDENCY, "session_policy_too_long")
                    }
                };
                let kind = if status == StatusCode::FORBIDDEN { ErrorKind::Permission } else { ErrorKind::Upstream };
                ApiError::new(
                    status,
                    kind,
                    code,
                    format!(
                        "credentials for {who} cannot be exported scoped to its models: {error}; the operator can {}",
                        error.fix()
                    ),
                )
            }
            BrokerError::Mint(message) => ApiError::internal(format!("could not mint a token: {message}")),
            BrokerError::Sts { class, failure, role, subject } => {
                let aws = if failure.message.is_empty() {
                    failure.code.clone()
                } else {
                    format!("{}: {}", failure.code, failure.message)
                };
                let account = role.account_id();
                let issuer = Self::issuer_hint(config);
                let team = subject.split(['/', ':']).nth(1).unwrap_or_default();
                let (status, code, message) = match class {
                    StsErrorClass::TrustPolicyMismatch => (
                        StatusCode::FORBIDDEN,
                        "sts_trust_policy_mismatch",
                        format!(
                            "AWS refused to let {subject} assume {role}: check the role's trust policy allows sts:AssumeRoleWithWebIdentity for the OIDC provider of {issuer}, with {host}:aud = {aud} and {host}:sub like scoped_principal:{team}/* (AWS said: {aws})",
                            host = config.issuer.host_path,
                            aud = config.issuer.audience,
                        ),
                    ),
                    StsErrorClass::OidcProviderMissing => (
                        StatusCode::FAILED_DEPENDENCY,
                        "sts_oidc_provider_missing",
                        format!(
                            "account {account} has no IAM OIDC identity provider for {}: create one with audience {} (`byollm aws-setup` prints it) (AWS said: {aws})",
                            config.issuer.url, config.issuer.audience
                        ),
                    ),
                    StsErrorClass::AudienceMismatch => (
                        StatusCode::FAILED_DEPENDENCY,
                        "sts_oidc_audience_mismatch",
                        format!(
                            "the IAM OIDC provider for {} in account {account} does not list audience {}: add it as a client ID (AWS said: {aws})",
                            config.issuer.url, config.issuer.audience
                        ),
                    ),
                    StsErrorClass::IssuerUnreachable => (
                        StatusCode::BAD_GATEWAY,
                        "sts_issuer_unreachable",
                        format!(
                            "AWS STS could not fetch {url}/.well-known/openid-configuration or its JWKS: the issuer must be reachable from the internet over https with a publicly trusted certificate (AWS said: {aws})",
                            url = config.issuer.url
                        ),
                    ),
                    StsErrorClass::TokenExpired => (
                        StatusCode::BAD_GATEWAY,
                        "sts_token_expired",
                        format!("AWS STS saw our token as expired: check this gateway's clock (AWS said: {aws})"),
                    ),
                    StsErrorClass::InvalidToken => (
                        StatusCode::FAILED_DEPENDENCY,
                        "sts_invalid_identity_token",
                        format!("AWS STS rejected the token for {issuer} (AWS said: {aws})"),
                    ),
                    StsErrorClass::InvalidParameters => (
                        StatusCode::FAILED_DEPENDENCY,
                        "sts_invalid_parameters",
                        format!(
                            "AWS STS rejected the request for {role}: check the role ARN exists and its MaxSessionDuration is at least sts.duration_secs ({}s) (AWS said: {aws})",
                            config.sts.duration.as_secs()
                        ),
                    ),
                    StsErrorClass::RegionDisabled => (
                        StatusCode::FAILED_DEPENDENCY,
                        "sts_region_disabled",
                        format!(
                            "STS is not activated in region {} for account {account}: activate it in the IAM account settings or change sts.region (AWS said: {aws})",
                            config.sts.region
                        ),
                    ),
                    StsErrorClass::Refused => (
                        StatusCode::FAILED_DEPENDENCY,
                        "sts_request_refused",
                        format!(
                            "AWS STS refused the request for {role} with an error byollm does not know; check the role, its trust policy and the account's STS settings (AWS said: {aws})"
                        ),
                    ),
                    StsErrorClass::Throttled => {
                        return ApiError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            ErrorKind::RateLimit,
                            STS_THROTTLED,
                            format!("AWS STS is throttling requests; retry shortly (AWS said: {aws})"),
                        )
                        .with_retry_after(2);
                    }
                    StsErrorClass::Unavailable => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        STS_UNAVAILABLE,
                        format!("AWS STS is unavailable or unreachable from the gateway (AWS said: {aws})"),
                    ),
                };
                let kind = if status == StatusCode::FORBIDDEN { ErrorKind::Permission } else { ErrorKind::Upstream };
                ApiError::new(status, kind, code, message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{ActorType, Uid};

    fn identity(principal: &str, run: Option<&str>) -> AuthorizedRun {
        AuthorizedRun {
            principal: ScopedPrincipal::new(
                Uid::parse("acme").unwrap(),
                ActorType::User,
                Uid::parse(principal).unwrap(),
            ),
            agent: None,
            run_id: run.map(str::to_owned),
            role: None,
            region: "us-east-1".into(),
            session_tags: false,
        }
    }

    #[test]
    fn session_names_are_valid_deterministic_and_distinct() {
        let long = "p".repeat(128);
        let run = "r".repeat(128);
        for identity in [identity("a", None), identity(&long, Some(&run)), identity("x-y_z", Some("run.1"))] {
            let name = session_name(&identity);
            assert!((2..=64).contains(&name.len()), "{name}");
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b)), "{name}");
            assert_eq!(name, session_name(&identity));
        }
        assert_ne!(
            session_name(&identity(&long, Some("a"))),
            session_name(&identity(&(long.clone() + "x")[1..], Some("a")))
        );
        assert_ne!(session_name(&identity("a", Some("1"))), session_name(&identity("a", Some("2"))));
    }
}
