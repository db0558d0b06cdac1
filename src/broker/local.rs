//! Interactive use: the person's own AWS CLI session (`aws login`, IAM Identity Center, profiles,
//! `credential_process`, static keys) through the standard credential chain.
//!
//! Credentials are re-resolved every refresh interval (15 minutes by default) and whenever they are
//! about to expire, so a 12-hour `aws login` session keeps working; when they lapse, every request
//! gets the same clear error naming the profile and the command that fixes it. Credentials are held
//! in memory only.
//!
//! Refreshing never blocks a request that valid credentials can answer: near expiry one background
//! task re-resolves them; with none, concurrent requests share one resolution. What a provider
//! says when it fails (a `credential_process` command's stderr among it) goes to the log and to
//! `byollm doctor`, never into a response or `/healthz`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, error::CredentialsError};
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use http::StatusCode;

use crate::aws::AwsCredentials;
use crate::error::{ApiError, ErrorKind};
use crate::secret::Secret;

/// Refresh at once when credentials expire within this.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How the profile signs in, for the re-authentication hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginKind {
    /// `aws login` (console credentials, `login_session` in the profile).
    AwsLogin,
    /// IAM Identity Center (`sso_session` or `sso_start_url`).
    Sso,
    /// Anything else (static keys, `credential_process`, environment).
    Other,
}

/// Where to find the person's AWS configuration. Resolved once at start-up.
#[derive(Debug, Clone, Default)]
pub struct LocalSource {
    pub profile: Option<String>,
    /// `AWS_CONFIG_FILE` (or `~/.aws/config`) and `AWS_SHARED_CREDENTIALS_FILE`, if set explicitly.
    pub config_file: Option<std::path::PathBuf>,
    pub credentials_file: Option<std::path::PathBuf>,
    pub refresh_interval: Duration,
}

impl LocalSource {
    /// A profile (`None`: `AWS_PROFILE`, else the default) with the AWS CLI's own files, as the
    /// environment names them (`AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`).
    pub fn from_env(profile: Option<String>, refresh_interval: Duration) -> LocalSource {
        LocalSource {
            profile,
            config_file: std::env::var_os("AWS_CONFIG_FILE").map(std::path::PathBuf::from),
            credentials_file: std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").map(std::path::PathBuf::from),
            refresh_interval,
        }
    }
}

#[derive(Debug, Clone)]
pub enum LocalState {
    NotYetLoaded,
    Ready { credentials: AwsCredentials, provider: String, loaded_at: SystemTime },
    Failed { error: LocalError },
}

/// Why no credentials are available; always carries the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalError {
    pub profile: String,
    pub expired: bool,
    /// What kind of failure, in words fit for a response (fixed texts, nothing from the provider).
    pub summary: &'static str,
    /// The provider's own account of it, for the log and `byollm doctor` only: it may quote what
    /// a `credential_process` command printed.
    pub detail: String,
    pub hint: String,
}

impl LocalError {
    /// The client-facing error: profile, summary and fix, never the provider's own words.
    pub fn to_api_error(&self) -> ApiError {
        let what = if self.expired { "has expired" } else { "has no usable AWS credentials" };
        let code = if self.expired { "aws_session_expired" } else { "aws_credentials_missing" };
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorKind::Authentication,
            code,
            format!(
                "the AWS session for profile {profile:?} {what} ({}): re-authenticate with `{}` (or renew the credentials profile {profile:?} is configured with); `byollm doctor --profile {profile}` shows the provider's own message",
                self.summary,
                self.hint,
                profile = self.profile,
            ),
        )
    }
}

pub struct LocalSession {
    source: LocalSource,
    provider: Option<SharedCredentialsProvider>,
    region: Option<String>,
    login: LoginKind,
    state: RwLock<LocalState>,
    /// One resolution at a time; `resolutions` counts finished ones, so callers that waited on
    /// one share its answer instead of resolving again.
    refresh: tokio::sync::Mutex<()>,
    resolutions: AtomicU64,
    /// A background refresh is under way.
    refreshing: AtomicBool,
}

impl std::fmt::Debug for LocalSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSession").field("profile", &self.profile_name()).finish_non_exhaustive()
    }
}

impl LocalSession {
    /// Build the standard credential chain for the chosen profile.
    pub async fn new(source: LocalSource) -> LocalSession {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &source.profile {
            loader = loader.profile_name(profile);
        }
        if source.config_file.is_some() || source.credentials_file.is_some() {
            let mut files = EnvConfigFiles::builder();
            if let Some(path) = &source.config_file {
                files = files.with_file(EnvConfigFileKind::Config, path);
            }
            if let Some(path) = &source.credentials_file {
                files = files.with_file(EnvConfigFileKind::Credentials, path);
            }
            loader = loader.profile_files(files.build());
        }
        let config = loader.load().await;
        let provider = config.credentials_provider();
        let region = config.region().map(|r| r.to_string());
        let login = detect_login_kind(&source);
        LocalSession {
            source,
            provider,
            region,
            login,
            state: RwLock::new(LocalState::NotYetLoaded),
            refresh: tokio::sync::Mutex::new(()),
            resolutions: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
        }
    }

    /// The region the profile (or `AWS_REGION`) names, if any.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    pub fn profile_name(&self) -> String {
        self.source.profile.clone().unwrap_or_else(|| "default".into())
    }

    pub fn hint(&self) -> String {
        let profile = self.profile_name();
        let flag = if profile == "default" { String::new() } else { format!(" --profile {profile}") };
        match self.login {
            LoginKind::AwsLogin => format!("aws login{flag}"),
            LoginKind::Sso => format!("aws sso login{flag}"),
            LoginKind::Other => format!("aws login{flag}"),
        }
    }

    pub fn state(&self) -> LocalState {
        match self.state.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_state(&self, state: LocalState) {
        match self.state.write() {
            Ok(mut guard) => *guard = state,
            Err(poisoned) => *poisoned.into_inner() = state,
        }
    }

    /// Re-resolve credentials through the chain now (after any resolution already under way).
    pub async fn refresh(&self) -> Result<AwsCredentials, LocalError> {
        let _flight = self.refresh.lock().await;
        self.resolve().await
    }

    /// One resolution; the caller holds `refresh`.
    async fn resolve(&self) -> Result<AwsCredentials, LocalError> {
        let result = match &self.provider {
            Some(provider) => provider.provide_credentials().await,
            None => Err(CredentialsError::not_loaded("no AWS credential provider is configured")),
        };
        let state = match result {
            Ok(credentials) => {
                let expired = credentials.expiry().is_some_and(|exp| exp <= SystemTime::now());
                if expired {
                    let detail = "the credentials the profile returned are already expired";
                    LocalState::Failed {
                        error: self.error(true, "the credentials it returned are expired", detail.into()),
                    }
                } else {
                    LocalState::Ready {
                        credentials: AwsCredentials {
                            access_key_id: credentials.access_key_id().to_owned(),
                            secret_access_key: Secret::new(credentials.secret_access_key()),
                            session_token: credentials.session_token().map(Secret::new),
                            expiration: credentials.expiry(),
                        },
                        provider: provider_label(&credentials),
                        loaded_at: SystemTime::now(),
                    }
                }
            }
            Err(error) => {
                let detail = describe(&error);
                let expired = detail.to_ascii_lowercase().contains("expired");
                LocalState::Failed { error: self.error(expired, summarize(&error), detail) }
            }
        };
        match &state {
            LocalState::Ready { provider, credentials, .. } => {
                tracing::info!(profile = %self.profile_name(), source = %provider, expires = ?credentials.expiration.map(super::rfc3339), "local AWS credentials refreshed");
            }
            LocalState::Failed { error } => {
                tracing::warn!(profile = %error.profile, expired = error.expired, detail = %without_stderr(&error.detail), "local AWS credentials unavailable");
            }
            LocalState::NotYetLoaded => {}
        }
        // A failed background refresh leaves credentials that are still valid in place.
        let keep = matches!(&state, LocalState::Failed { .. })
            && matches!(self.state(), LocalState::Ready { credentials, .. } if valid(&credentials, Duration::ZERO));
        if !keep {
            self.set_state(state.clone());
        }
        self.resolutions.fetch_add(1, Ordering::SeqCst);
        match state {
            LocalState::Ready { credentials, .. } => Ok(credentials),
            LocalState::Failed { error } => Err(error),
            LocalState::NotYetLoaded => Err(self.error(false, "not loaded", "not loaded".into())),
        }
    }

    fn error(&self, expired: bool, summary: &'static str, detail: String) -> LocalError {
        LocalError { profile: self.profile_name(), expired, summary, detail, hint: self.hint() }
    }

    /// Credentials for a request. Valid ones are returned at once; when they are about to expire
    /// one background task re-resolves them. With none, concurrent callers share one resolution.
    pub async fn credentials(self: &Arc<Self>) -> Result<AwsCredentials, LocalError> {
        if let LocalState::Ready { credentials, .. } = self.state()
            && valid(&credentials, Duration::ZERO)
        {
            if !valid(&credentials, EXPIRY_MARGIN) && !self.refreshing.swap(true, Ordering::SeqCst) {
                let session = self.clone();
                tokio::spawn(async move {
                    let _ = session.refresh().await;
                    session.refreshing.store(false, Ordering::SeqCst);
                });
            }
            return Ok(credentials);
        }
        let seen = self.resolutions.load(Ordering::SeqCst);
        let _flight = self.refresh.lock().await;
        if self.resolutions.load(Ordering::SeqCst) != seen {
            // A resolution finished while this caller waited: its answer is this caller's too.
            return match self.state() {
                LocalState::Ready { credentials, .. } => Ok(credentials),
                LocalState::Failed { error } => Err(error),
                LocalState::NotYetLoaded => Err(self.error(false, "not loaded", "not loaded".into())),
            };
        }
        self.resolve().await
    }

    /// Refresh every interval, and earlier when the credentials are about to expire.
    pub fn spawn_refresher(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let _ = self.refresh().await;
                let mut wait = self.source.refresh_interval;
                if let LocalState::Ready { credentials: AwsCredentials { expiration: Some(exp), .. }, .. } =
                    self.state()
                {
                    let until_margin =
                        exp.duration_since(SystemTime::now() + EXPIRY_MARGIN).unwrap_or(Duration::from_secs(5));
                    wait = wait.min(until_margin.max(Duration::from_secs(5)));
                }
                tokio::time::sleep(wait).await;
            }
        })
    }
}

/// Credentials that will still be valid `margin` from now (no expiry: always).
fn valid(credentials: &AwsCredentials, margin: Duration) -> bool {
    credentials.expiration.is_none_or(|exp| SystemTime::now() + margin < exp)
}

/// A provider's message without what a `credential_process` command wrote to stderr (which may
/// hold anything), for the log.
pub fn without_stderr(detail: &str) -> String {
    match detail.find("Stderr:") {
        Some(at) => format!("{}Stderr: [not logged; run the command yourself to see it]", &detail[..at]),
        None => detail.to_owned(),
    }
}

/// The kind of a provider failure, in fixed words: what a response may say about it.
fn summarize(error: &CredentialsError) -> &'static str {
    match error {
        CredentialsError::CredentialsNotLoaded(_) => "no credentials were found for it",
        CredentialsError::ProviderTimedOut(_) => "its credential provider timed out",
        CredentialsError::InvalidConfiguration(_) => "its configuration is invalid",
        CredentialsError::ProviderError(_) => "its credential provider failed",
        _ => "its credential provider failed unexpectedly",
    }
}

fn provider_label(credentials: &aws_credential_types::Credentials) -> String {
    // The chain reports which provider produced the credentials in their Debug form.
    let debug = format!("{credentials:?}");
    debug.split("provider_name: \"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("unknown").to_owned()
}

/// A provider error in one line, without the credentials (errors never contain them).
fn describe(error: &CredentialsError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let part = inner.to_string();
        // Wrapping errors often repeat their source's text; say each thing once.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// Read the profile's section of the AWS config file to tell how it signs in.
fn detect_login_kind(source: &LocalSource) -> LoginKind {
    let Some(path) = source
        .config_file
        .clone()
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::PathBuf::from(home).join(".aws").join("config")))
    else {
        return LoginKind::Other;
    };
    let Ok(text) = std::fs::read_to_string(path) else { return LoginKind::Other };
    let profile = source.profile.clone().unwrap_or_else(|| "default".into());
    login_kind_from_config(&text, &profile)
}

pub fn login_kind_from_config(text: &str, profile: &str) -> LoginKind {
    let mut in_section = false;
    let mut kind = LoginKind::Other;
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = header.trim();
            let name = name.strip_prefix("profile ").map(str::trim).unwrap_or(name);
            in_section = name == profile;
            continue;
        }
        if !in_section {
            continue;
        }
        let key = line.split('=').next().unwrap_or_default().trim();
        match key {
            "login_session" => return LoginKind::AwsLogin,
            "sso_session" | "sso_start_url" => kind = LoginKind::Sso,
            _ => {}
        }
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_kind_from_profile_sections() {
        let config = "[default]\nregion = us-east-1\nlogin_session = arn:aws:iam::123456789012:user/me\n\n[profile work]\nsso_session = corp\nsso_account_id = 1\n[profile keys]\ncredential_process = /bin/true\n";
        assert_eq!(login_kind_from_config(config, "default"), LoginKind::AwsLogin);
        assert_eq!(login_kind_from_config(config, "work"), LoginKind::Sso);
        assert_eq!(login_kind_from_config(config, "keys"), LoginKind::Other);
        assert_eq!(login_kind_from_config(config, "missing"), LoginKind::Other);
    }
}
