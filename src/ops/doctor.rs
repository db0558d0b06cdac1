//! `byollm doctor`: what credentials a person's profile or a team's configuration yields, and why
//! not, without printing any secret.
//!
//! [`local_report`] resolves a profile through the same chain as local mode and reports which
//! provider answered, the access key id masked to its last four characters, and when the
//! credentials expire. [`team_report`] authorizes the run through [`crate::identity::authz`] like any entry
//! point, then mints a token and asks STS for credentials through the broker, so failures carry the
//! broker's classified code and the piece of AWS set-up to check; it also says how credentials
//! exported for that run would be scoped ([`exported_scope`]), loudly when not exactly. Neither ever holds a token or
//! secret in the report. It uses the core (config, authz, broker), never the HTTP edge.
//!
//! With `--model`, either then makes one minimal real call to that model ([`check_model`]: the
//! body is built by the chat adapter under the model's catalog rules, `max_tokens` 1) and explains
//! the usual first-use failures: model access not enabled, AWS Marketplace subscription missing,
//! IAM or organization policy, an inference profile Bedrock does not offer from this region.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::aws::AwsCredentials;
use crate::aws::RoleArn;
use crate::bedrock_iam::Form;
use crate::broker::local::{LocalSession, LocalSource, LocalState};
use crate::broker::rfc3339;
use crate::broker::session_policy;
use crate::broker::{Broker, BrokerError};
use crate::config::Config;
use crate::error::ApiError;
use crate::identity::auth::Caller;
use crate::identity::authz::{AuthorizedRun, Purpose, RunRequest, authorize, permits};
use crate::models::ModelConfig;
use crate::principal::{ScopedPrincipal, Uid};
use crate::routing::policy::PlaceholderSecrets;
use crate::routing::{Mode, RoutingPolicy};
use crate::upstream::{BedrockClient, BedrockFailure};

/// The run id the doctor's STS calls carry, so they are recognisable in CloudTrail.
pub const DOCTOR_RUN_ID: &str = "byollm-doctor";

/// Why the check failed: the same code and message a client of the gateway would get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// The command that fixes it, when there is one (`aws login --profile work`).
    pub hint: Option<String>,
}

impl From<ApiError> for DoctorError {
    fn from(error: ApiError) -> DoctorError {
        DoctorError { status: error.status.as_u16(), code: error.code.to_owned(), message: error.message, hint: None }
    }
}

/// What the doctor found. `Display` renders it for people; the fields are for programs and tests.
#[derive(Debug, Clone)]
pub struct DoctorReport {
    pub ok: bool,
    /// What was checked: `profile "work"` or `team "acme" as scoped_principal:acme/user:alice`.
    pub target: String,
    /// Where credentials came from: the provider that answered, or `AWS STS AssumeRoleWithWebIdentity`.
    pub source: Option<String>,
    /// `(label, value)` lines describing the set-up that was used (issuer, role, region, ...).
    pub details: Vec<(&'static str, String)>,
    /// The access key id masked to its last four characters.
    pub access_key: Option<String>,
    pub expires_at: Option<SystemTime>,
    pub checked_at: SystemTime,
    pub error: Option<DoctorError>,
    /// The model call, when one was asked for.
    pub model: Option<ModelCheck>,
}

/// A model to call once the credentials are there.
#[derive(Clone, Copy)]
pub struct ModelProbe<'a> {
    /// The model's public name.
    pub name: &'a str,
    pub model: &'a ModelConfig,
    pub bedrock: &'a BedrockClient,
}

/// What one minimal call to a model showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCheck {
    pub name: String,
    pub id: String,
    pub region: String,
    /// The model answered (or only throttled: access works).
    pub ok: bool,
    /// What went wrong, for programs (`model_access_not_enabled`, `marketplace_subscription_missing`, ...).
    pub code: Option<&'static str>,
    /// What went wrong, for people.
    pub explanation: Option<String>,
    /// What to do about it.
    pub fix: Option<String>,
    /// Bedrock's own words (no secrets: Bedrock does not echo credentials).
    pub bedrock_said: Option<String>,
}

/// `****WXYZ`: enough to match a key in CloudTrail or the console, not enough to be one.
pub fn mask_access_key(access_key_id: &str) -> String {
    let chars: Vec<char> = access_key_id.chars().collect();
    if chars.len() <= 8 {
        return "****".into();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("****{tail}")
}

/// `1h 59m`, `4m 10s`, `12s`.
pub fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, (secs % 3600) / 60),
    }
}

impl DoctorReport {
    fn new(target: String) -> DoctorReport {
        DoctorReport {
            ok: false,
            target,
            source: None,
            details: Vec::new(),
            access_key: None,
            expires_at: None,
            checked_at: SystemTime::now(),
            error: None,
            model: None,
        }
    }

    /// Whether the credentials, and the model if one was checked, worked.
    pub fn passed(&self) -> bool {
        self.ok && self.model.as_ref().is_none_or(|model| model.ok)
    }

    fn succeed(&mut self, credentials: &AwsCredentials) {
        self.ok = true;
        self.access_key = Some(mask_access_key(&credentials.access_key_id));
        self.expires_at = credentials.expiration;
    }

    fn fail(&mut self, error: DoctorError) {
        self.ok = false;
        self.error = Some(error);
    }

    /// Time left until the credentials expire, as of the check.
    pub fn time_left(&self) -> Option<Duration> {
        self.expires_at.map(|exp| exp.duration_since(self.checked_at).unwrap_or_default())
    }
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "byollm doctor: {}", self.target)?;
        for (label, value) in &self.details {
            writeln!(f, "  {:<18} {value}", format!("{label}:"))?;
        }
        if let Some(source) = &self.source {
            writeln!(f, "  {:<18} {source}", "credential source:")?;
        }
        if let Some(key) = &self.access_key {
            writeln!(f, "  {:<18} {key}", "access key id:")?;
        }
        match (self.expires_at, self.time_left()) {
            (Some(at), Some(left)) => {
                writeln!(f, "  {:<18} {} (in {})", "expires:", rfc3339(at), human_duration(left))?
            }
            _ if self.ok => writeln!(f, "  {:<18} never (long-term keys)", "expires:")?,
            _ => {}
        }
        if let Some(error) = &self.error {
            writeln!(f, "  {:<18} {} (HTTP {})", "error:", error.code, error.status)?;
            writeln!(f, "  {:<18} {}", "", error.message)?;
            if let Some(hint) = &error.hint {
                writeln!(f, "  {:<18} {hint}", "fix:")?;
            }
        }
        if let Some(model) = &self.model {
            writeln!(f, "  {:<18} {} ({} in {})", "model:", model.name, model.id, model.region)?;
            match (&model.code, &model.explanation) {
                (None, _) => writeln!(f, "  {:<18} answered", "model call:")?,
                (Some(code), explanation) => {
                    writeln!(f, "  {:<18} {code}", "model call:")?;
                    if let Some(explanation) = explanation {
                        writeln!(f, "  {:<18} {explanation}", "")?;
                    }
                }
            }
            if let Some(said) = &model.bedrock_said {
                writeln!(f, "  {:<18} {said}", "bedrock said:")?;
            }
            if let Some(fix) = &model.fix {
                writeln!(f, "  {:<18} {fix}", "fix:")?;
            }
        }
        write!(f, "  {:<18} {}", "result:", if self.passed() { "OK" } else { "FAILED" })
    }
}

/// One minimal real call to `probe`'s model with `credentials` in `region`: the chat adapter
/// builds the body under the model's rules (`max_tokens` 1), so the call is one Bedrock accepts
/// from a client of the gateway; a failure is explained ([`explain_model_failure`]).
pub async fn check_model(probe: ModelProbe<'_>, region: &str, credentials: &AwsCredentials) -> ModelCheck {
    use crate::convert::request::{Target, parse_request, to_anthropic};
    let mut check = ModelCheck {
        name: probe.name.to_owned(),
        id: probe.model.id.clone(),
        region: region.to_owned(),
        ok: false,
        code: None,
        explanation: None,
        fix: None,
        bedrock_said: None,
    };
    let request = br#"{"model": "doctor", "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}"#;
    let body = parse_request(request).and_then(|request| {
        let prepared = to_anthropic(&request, Target { name: probe.name, rules: &probe.model.rules })?;
        serde_json::to_vec(&prepared.body).map_err(|_| ApiError::internal("could not encode the request"))
    });
    let body = match body {
        Ok(body) => body,
        Err(error) => {
            check.code = Some("invalid_model_rules");
            check.explanation = Some(error.message);
            return check;
        }
    };
    match probe.bedrock.invoke(region, &probe.model.id, body.into(), credentials).await {
        Ok(_) => check.ok = true,
        Err(failure) => {
            let explained = explain_model_failure(&failure, probe.model, region);
            check.ok = explained.code == "throttled";
            check.code = Some(explained.code);
            check.explanation = Some(explained.explanation);
            check.fix = explained.fix;
            check.bedrock_said = Some(format!("{}: {}", failure.code, failure.message));
        }
    }
    check
}

/// A Bedrock failure of a first call, in the terms of what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub code: &'static str,
    pub explanation: String,
    pub fix: Option<String>,
}

/// Sorts the usual first-use failures by Bedrock's exception and wording: model access not
/// enabled, AWS Marketplace subscription missing, IAM or organization policy, inference profile
/// not offered from this region, model needing an inference profile, model not available.
pub fn explain_model_failure(failure: &BedrockFailure, model: &ModelConfig, region: &str) -> Explained {
    let id = &model.id;
    let said = failure.message.to_ascii_lowercase();
    let code = failure.code.to_ascii_lowercase();
    let profiles = model.entry().map(|entry| entry.profiles.join(", ")).unwrap_or_else(|| "unknown".into());
    let explained =
        |code: &'static str, explanation: String, fix: String| Explained { code, explanation, fix: Some(fix) };
    match code.as_str() {
        "accessdeniedexception" if said.contains("aws-marketplace") || said.contains("marketplace subscription") => explained(
            "marketplace_subscription_missing",
            "the account is not subscribed to this model in AWS Marketplace yet: Bedrock subscribes it on a first call made by an identity allowed aws-marketplace:ViewSubscriptions and aws-marketplace:Subscribe, and this role is not".into(),
            "have an account administrator invoke the model once (or open it in the Bedrock console's model catalog) so the account subscribes, then retry after a few minutes; granting those two actions to this role also works, but keeps a one-time right standing".into(),
        ),
        "accessdeniedexception" if said.contains("explicit deny") => explained(
            "denied_by_organization_policy",
            format!("an explicit deny (a service control policy or permission boundary) blocks {id}"),
            "ask the organization's administrator to allow bedrock:InvokeModel* for this model in every destination region of its inference profile".into(),
        ),
        "accessdeniedexception" if said.contains("not authorized to perform") => explained(
            "iam_permission_missing",
            format!("the role may not invoke {id}"),
            "grant bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream on the inference profile ARN and its foundation-model ARNs (byollm aws-setup prints the policy)".into(),
        ),
        "accessdeniedexception" => explained(
            "model_access_not_enabled",
            format!("the account has no access to {id} yet"),
            format!("enable access to the model in the Amazon Bedrock console (model access / model catalog) in {region}, then retry"),
        ),
        "validationexception" if said.contains("model identifier is invalid") => explained(
            "profile_not_in_region",
            format!("Bedrock does not offer {id} from {region}"),
            format!("use an inference profile available from {region}: global., or the prefix of its geography (us., eu., jp., au., apac.); this model's known profiles: {profiles}"),
        ),
        "validationexception" if said.contains("on-demand throughput") => explained(
            "inference_profile_required",
            format!("{id} can only be invoked through an inference profile"),
            format!("configure a cross-region profile id instead, e.g. global.{}", crate::aws::split_model_id(id).1.unwrap_or(id)),
        ),
        "resourcenotfoundexception" => explained(
            "model_not_available",
            format!("{id} is not available in {region} for this account, or has reached its end of life"),
            format!("check the model's lifecycle (byollm models) and pick a profile offered in {region} (known profiles: {profiles})"),
        ),
        "throttlingexception" | "servicequotaexceededexception" => Explained {
            code: "throttled",
            explanation: "Bedrock throttled the call: access works, the quota is busy".into(),
            fix: None,
        },
        _ if failure.is_credential_problem() => explained(
            "credentials_rejected",
            "Bedrock refused the credentials".into(),
            "check the session (byollm doctor without --model shows it)".into(),
        ),
        _ => Explained { code: "bedrock_error", explanation: format!("Bedrock refused the call ({})", failure.code), fix: None },
    }
}

/// Check a person's AWS profile the way local mode uses it.
pub async fn local_report(source: LocalSource) -> DoctorReport {
    local_model_report(source, None, None).await
}

/// [`local_report`], then one call to `model` with the profile's credentials ([`check_model`]) in
/// the profile's region, else `region`.
pub async fn local_model_report(
    source: LocalSource,
    region: Option<String>,
    model: Option<ModelProbe<'_>>,
) -> DoctorReport {
    let profile = source.profile.clone().unwrap_or_else(|| "default".into());
    let mut report = DoctorReport::new(format!("profile {profile:?}"));
    if let Some(path) = &source.config_file {
        report.details.push(("config file", path.display().to_string()));
    }
    if let Some(path) = &source.credentials_file {
        report.details.push(("credentials file", path.display().to_string()));
    }
    let session = LocalSession::new(source).await;
    report.checked_at = SystemTime::now();
    match session.refresh().await {
        Ok(credentials) => {
            if let LocalState::Ready { provider, .. } = session.state() {
                report.source = Some(provider);
            }
            report.succeed(&credentials);
            if let Some(probe) = model {
                let region = session.region().map(str::to_owned).or(region).unwrap_or_else(|| "us-east-1".into());
                report.model = Some(check_model(probe, &region, &credentials).await);
            }
        }
        Err(error) => {
            // The doctor runs on the person's own terminal: it shows the provider's own words.
            report.details.push(("provider said", error.detail.clone()));
            let mut doctor = DoctorError::from(error.to_api_error());
            doctor.hint = Some(error.hint.clone());
            report.fail(doctor);
        }
    }
    report
}

/// Check that a team's configuration gets credentials from STS for the principal (and agent)
/// `request` names: the run is authorized as the operator's ([`Caller::operator`], bound to
/// `team`) through [`authorize`], so uids and agents are checked as for any caller; then a token is
/// minted and STS called through the broker, bypassing its cache. The run id is [`DOCTOR_RUN_ID`].
/// With `model`, one call to it follows with the credentials obtained ([`check_model`]) in the
/// run's region.
pub async fn team_report(
    broker: &Broker,
    team: &Uid,
    request: RunRequest,
    model: Option<ModelProbe<'_>>,
) -> DoctorReport {
    let config = broker.config();
    let agent_note = request.agent.as_deref().map(|a| format!(" (agent {a})")).unwrap_or_default();
    let who = match (&request.actor, &request.principal) {
        (Some(actor), Some(principal)) => format!(" as {actor}:{principal}"),
        _ => String::new(),
    };
    let mut report = DoctorReport::new(format!("team {:?}{who}{agent_note}", team.as_str()));
    let kid = broker.issuer().keys().keys.signing.kid.clone();
    report
        .details
        .push(("issuer", format!("{} (audience {}, signing key {kid})", config.issuer.url, config.issuer.audience)));
    let sts = config.sts.endpoint_url.clone().unwrap_or_else(|| format!("regional endpoint in {}", config.sts.region));
    report.details.push(("sts", sts));
    let operator = Caller::operator(team.clone());
    let request = RunRequest { run_id: Some(DOCTOR_RUN_ID.into()), ..request };
    let run = match authorize(config, &operator, &request, Purpose::Run) {
        Ok(run) => run,
        Err(error) => {
            report.fail(ApiError::from(error).into());
            return report;
        }
    };
    report.target = format!("team {:?} as {}{agent_note}", team.as_str(), run.principal);
    match &run.role {
        Some(role) => report.details.push(("role", role.to_string())),
        None => {
            report.fail(BrokerError::NoRole { team: team.to_string() }.to_api_error(config).into());
            return report;
        }
    }
    if run.session_tags {
        report.details.push(("session tags", "on (the trust policy must allow sts:TagSession)".into()));
    }
    if let Some(role) = &run.role {
        report.details.push(("session policy", exported_scope(config, &run, role)));
    }
    if !config.issuer.url.starts_with("https://") && config.sts.endpoint_url.is_none() {
        report.details.push(("note", "the issuer is not https: AWS STS cannot fetch its keys (dev mode)".into()));
    }
    let ours = |principal: &ScopedPrincipal, agent: Option<&str>| permits(&operator, principal, agent).is_ok();
    broker.end_run(DOCTOR_RUN_ID, ours);
    report.checked_at = SystemTime::now();
    let result = broker.credentials(&run).await;
    broker.end_run(DOCTOR_RUN_ID, ours);
    match result {
        Ok(cached) => {
            report.source = Some("AWS STS AssumeRoleWithWebIdentity (accepted the web identity token)".into());
            report.succeed(&cached.credentials);
            if let Some(probe) = model {
                report.model = Some(check_model(probe, &run.region, &cached.credentials).await);
            }
        }
        Err(error) => {
            let reached_sts = matches!(error, BrokerError::Sts { .. });
            if reached_sts {
                report.source = Some("AWS STS AssumeRoleWithWebIdentity (refused)".into());
            }
            report.fail(error.to_api_error(config).into());
        }
    }
    report
}

/// What `/v1/credentials` would hand this run: credentials scoped to the models its routing allows
/// (exactly, or by model-family wildcards), unscoped ones, or a refusal; loud when not exact.
pub fn exported_scope(config: &Config, run: &AuthorizedRun, role: &RoleArn) -> String {
    if !config.sts.session_policy {
        return "WARNING: off (sts.session_policy = false): /v1/credentials hands out every permission of the role"
            .into();
    }
    let routing = match RoutingPolicy::from_config(config, Mode::Hosted, &PlaceholderSecrets) {
        Ok(routing) => routing,
        Err(errors) => return format!("WARNING: the [routing] section does not validate ({} problems)", errors.len()),
    };
    let team = run.principal.team_uid.as_str();
    let routes = session_policy::scope_routes(config, &routing, team, run.agent.as_deref());
    let models: BTreeSet<&str> = routes.iter().map(|r| r.model.as_str()).collect();
    let models = models.into_iter().collect::<Vec<_>>().join(", ");
    match session_policy::build(&session_policy::targets(&routes, &run.region, role.account_id())) {
        Ok(policy) if policy.form == Form::Exact => format!("{} for {models}", policy.describe()),
        Ok(policy) => format!("WARNING: {} for {models}", policy.describe()),
        Err(error) => format!("WARNING: /v1/credentials refuses this run: {error}; {}", error.fix()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_scope_is_reported_and_loud_when_not_exact() {
        let config = |extra: &str| {
            Config::from_toml(&format!(
                "dev = true\n{extra}\n[[teams]]\nuid = \"acme\"\nregion = \"us-east-1\"\nrole_arn = \"arn:aws:iam::111111111111:role/r\"\n[[teams.agents]]\nname = \"one\"\nrole_arn = \"arn:aws:iam::111111111111:role/one\"\n[models.sonnet]\nid = \"global.anthropic.claude-sonnet-4-5-20250929-v1:0\"\n[models.opus]\nid = \"global.anthropic.claude-opus-4-7\"\n[routing.teams.acme.agents.one]\nmodels = [\"opus\"]\n"
            ))
            .unwrap()
        };
        let run = |agent: Option<&str>| AuthorizedRun {
            principal: ScopedPrincipal::parse("scoped_principal:acme/user:a").unwrap(),
            agent: agent.map(str::to_owned),
            run_id: None,
            role: None,
            region: "us-east-1".into(),
            session_tags: false,
        };
        let role = RoleArn::parse("arn:aws:iam::111111111111:role/r").unwrap();
        let on = config("");
        assert_eq!(exported_scope(&on, &run(Some("one")), &role).split(" (").next(), Some("exact"));
        assert!(exported_scope(&on, &run(Some("one")), &role).ends_with("for opus"));
        assert!(exported_scope(&on, &run(None), &role).ends_with("for opus, sonnet"));
        let off = config("[sts]\nsession_policy = false");
        assert!(exported_scope(&off, &run(None), &role).starts_with("WARNING: off"));
        let none = Config::from_toml(&format!(
            "{}\n[routing.teams.acme]\nmodels = []\n",
            "dev = true\n[[teams]]\nuid = \"acme\"\nrole_arn = \"arn:aws:iam::111111111111:role/r\""
        ))
        .unwrap();
        let refused = exported_scope(&none, &run(None), &role);
        assert!(refused.starts_with("WARNING: /v1/credentials refuses"), "{refused}");
    }

    #[test]
    fn masks_all_but_the_last_four() {
        assert_eq!(mask_access_key("ASIAABCDEFGHIJKLWXYZ"), "****WXYZ");
        assert_eq!(mask_access_key("SHORT"), "****");
        assert_eq!(human_duration(Duration::from_secs(7260)), "2h 1m");
        assert_eq!(human_duration(Duration::from_secs(250)), "4m 10s");
    }

    #[test]
    fn first_use_failures_are_explained() {
        let models = crate::models::default_models();
        let opus = &models["claude-opus-5-5"];
        let cases = [
            (
                "AccessDeniedException",
                "Model access is denied due to IAM user or service role is not authorized to perform the required AWS Marketplace actions (aws-marketplace:ViewSubscriptions, aws-marketplace:Subscribe) to enable access to this model.",
                "marketplace_subscription_missing",
            ),
            (
                "AccessDeniedException",
                "You don't have access to the model with the specified model ID.",
                "model_access_not_enabled",
            ),
            (
                "AccessDeniedException",
                "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1:1:inference-profile/global.anthropic.claude-opus-5-5 because no identity-based policy allows the bedrock:InvokeModel action",
                "iam_permission_missing",
            ),
            (
                "AccessDeniedException",
                "User: x is not authorized to perform: bedrock:InvokeModel on resource: y with an explicit deny in a service control policy",
                "denied_by_organization_policy",
            ),
            ("ValidationException", "The provided model identifier is invalid.", "profile_not_in_region"),
            (
                "ValidationException",
                "Invocation of model ID anthropic.claude-opus-5-5 with on-demand throughput isn’t supported. Retry your request with the ID or ARN of an inference profile that contains this model.",
                "inference_profile_required",
            ),
            ("ResourceNotFoundException", "Model not found.", "model_not_available"),
            ("ThrottlingException", "Too many requests", "throttled"),
            ("ExpiredTokenException", "The security token included in the request is expired", "credentials_rejected"),
            ("InternalServerException", "boom", "bedrock_error"),
        ];
        for (code, message, expected) in cases {
            let failure = BedrockFailure { code: code.into(), message: message.into() };
            let explained = explain_model_failure(&failure, opus, "eu-west-1");
            assert_eq!(explained.code, expected, "{code}: {message}");
            assert!(!explained.explanation.ends_with('.'), "{expected}");
        }
        let failure = BedrockFailure {
            code: "ValidationException".into(),
            message: "The provided model identifier is invalid.".into(),
        };
        let fix = explain_model_failure(&failure, opus, "eu-west-1").fix.unwrap();
        assert!(fix.contains("eu-west-1") && fix.contains("global, us, jp"), "{fix}");
    }

    #[test]
    fn display_never_prints_more_than_the_masked_key() {
        let mut report = DoctorReport::new("profile \"work\"".into());
        report.succeed(&AwsCredentials {
            access_key_id: "ASIAABCDEFGHIJKLWXYZ".into(),
            secret_access_key: crate::secret::Secret::new("very-secret-value"),
            session_token: Some(crate::secret::Secret::new("session-token-value")),
            expiration: Some(report.checked_at + Duration::from_secs(3600)),
        });
        let text = report.to_string();
        assert!(text.contains("****WXYZ") && text.contains("(in 1h 0m)") && text.ends_with("OK"), "{text}");
        assert!(!text.contains("ASIAABCD") && !text.contains("secret") && !text.contains("token-value"));
    }
}
