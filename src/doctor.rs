//! `byollm doctor`: what credentials a person's profile or a team's configuration yields, and why
//! not, without printing any secret.
//!
//! [`local_report`] resolves a profile through the same chain as local mode and reports which
//! provider answered, the access key id masked to its last four characters, and when the
//! credentials expire. [`team_report`] authorizes the run through [`crate::authz`] like any entry
//! point, then mints a token and asks STS for credentials through the broker, so failures carry the
//! broker's classified code and the piece of AWS set-up to check. Neither ever holds a token or
//! secret in the report. It uses the core (config, authz, broker), never the HTTP edge.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::auth::Caller;
use crate::authz::{Purpose, RunRequest, authorize, permits};
use crate::broker::local::{LocalSession, LocalSource, LocalState};
use crate::broker::rfc3339;
use crate::broker::sts::AwsCredentials;
use crate::broker::{Broker, BrokerError};
use crate::error::ApiError;
use crate::principal::{ScopedPrincipal, Uid};

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
        }
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
        write!(f, "  {:<18} {}", "result:", if self.ok { "OK" } else { "FAILED" })
    }
}

/// Check a person's AWS profile the way local mode uses it.
pub async fn local_report(source: LocalSource) -> DoctorReport {
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
pub async fn team_report(broker: &Broker, team: &Uid, request: RunRequest) -> DoctorReport {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_the_last_four() {
        assert_eq!(mask_access_key("ASIAABCDEFGHIJKLWXYZ"), "****WXYZ");
        assert_eq!(mask_access_key("SHORT"), "****");
        assert_eq!(human_duration(Duration::from_secs(7260)), "2h 1m");
        assert_eq!(human_duration(Duration::from_secs(250)), "4m 10s");
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
