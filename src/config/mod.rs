//! Configuration: a TOML file (every field defaulted) plus `BYOLLM_<SECTION>__<FIELD>` environment
//! overrides, read in two stages: raw TOML values, then a validated [`Config`].
//!
//! Every bad field is reported at once, by its path (`issuer.url`, `callers[1].key_sha256`), so an
//! operator fixes a file in one pass. Unknown fields are errors. This module reads no process state
//! itself: callers hand it the file path and the environment pairs, so tests use plain vectors.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use crate::aws::RoleArn;
pub mod reader;
mod sections;

pub use crate::models::ModelConfig;
use crate::principal::{ActorType, Uid};
use reader::Section;

/// Prefix of environment overrides: `BYOLLM_ISSUER__URL=https://…` sets `issuer.url`.
pub const ENV_PREFIX: &str = "BYOLLM_";
/// Environment variables with the prefix that are not config overrides.
const ENV_NOT_CONFIG: &[&str] = &["BYOLLM_LOG", "BYOLLM_CONFIG", "BYOLLM_API_KEY"];

/// Longest token lifetime we ever sign.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Default budget of request-body bytes held at once by all requests together.
pub const DEFAULT_BODY_BYTES_IN_FLIGHT: usize = 64 << 20;
/// Default least rate of a request body: 64 KiB/s (a 20 MiB body within the 60 s read timeout
/// needs 341 KiB/s anyway).
pub const DEFAULT_MIN_BODY_BYTES_PER_SEC: usize = 64 << 10;
/// Default budget of upstream-answer bytes buffered at once (non-streamed answers read whole): two
/// answers of the largest default size (64 MiB), and a bound on what a burst of large answers
/// costs (see `upstream::buffered`).
pub const DEFAULT_ANSWER_BYTES_IN_FLIGHT: usize = 128 << 20;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Development mode: allows an `http://` issuer on loopback, and says so loudly.
    pub dev: bool,
    pub server: ServerConfig,
    pub issuer: IssuerConfig,
    pub keys: KeysConfig,
    pub callers: Vec<CallerConfig>,
    pub teams: Vec<TeamConfig>,
    pub sts: StsConfig,
    pub bedrock: BedrockConfig,
    /// Public model name → Bedrock model or inference profile, with the rules that apply to it
    /// (catalog entry plus overrides; see [`crate::models`]).
    pub models: BTreeMap<String, ModelConfig>,
    pub local: LocalConfig,
    /// Things worth an operator's attention that do not stop the start (a model id the catalog
    /// does not know, ...); logged at start-up.
    pub warnings: Vec<String>,
    /// The raw `[routing]` section (hot-reloadable policy), validated by [`crate::routing`].
    pub routing: Option<Table>,
    /// The raw `[limits]` section (hot-reloadable with `[routing]`), validated by [`crate::limits`].
    pub limits: Option<Table>,
    pub telemetry: TelemetryConfig,
    pub egress: EgressConfig,
}

/// Name resolution for the endpoints the egress guard lets through (`[egress]`): which DNS
/// servers, and how many lookups may be outstanding at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressConfig {
    /// DNS servers to ask instead of `/etc/resolv.conf`'s (`"10.0.0.2"`, `"127.0.0.1:5353"`); `None`:
    /// the system's configuration.
    pub nameservers: Option<Vec<SocketAddr>>,
    /// Lookups outstanding at once, all teams together; more are refused (503, `Retry-After`).
    pub max_lookups: usize,
    /// Lookups outstanding at once for one team; more are refused (429, `Retry-After`).
    pub max_lookups_per_team: usize,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig { nameservers: None, max_lookups: 64, max_lookups_per_team: 16 }
    }
}

/// OpenTelemetry traces (`[telemetry]`): off unless `otlp_endpoint` is set, and only in a build
/// with the `otel` feature.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to `/v1/traces`.
    pub otlp_endpoint: Option<url::Url>,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Longest one export may take.
    pub export_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Internal listener: `/v1/*`, `/healthz`, `/metrics` and `/.well-known/*`.
    pub listen: SocketAddr,
    /// Optional public listener serving only `/.well-known/*`.
    pub public_listen: Option<SocketAddr>,
    pub max_body_bytes: usize,
    /// Longest a request may take before its response starts; a stream then runs while Bedrock
    /// keeps sending (with an idle limit).
    pub request_timeout: Duration,
    /// Longest a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Longest a client may take to send its request body.
    pub body_read_timeout: Duration,
    /// Request-body bytes all requests together may hold at once; beyond it, 503 with `Retry-After`.
    pub max_body_bytes_in_flight: usize,
    /// Of those, what one team's requests may hold at once; beyond it, 429 with `Retry-After`.
    pub max_body_bytes_in_flight_per_team: usize,
    /// Of the team's, what the requests of one caller key may hold at once (429 beyond it).
    pub max_body_bytes_in_flight_per_caller: usize,
    /// Longest a body may take to send its first byte once the handler reads it.
    pub body_first_byte_timeout: Duration,
    /// Least a body must then deliver, per second, in every [`ServerConfig::body_rate_window`]
    /// (or what remains of it); 0: no minimum.
    pub min_body_bytes_per_sec: usize,
    pub body_rate_window: Duration,
    /// Upstream-answer bytes buffered at once (non-streamed answers of Bedrock, the Anthropic API
    /// and OpenAI-compatible endpoints); beyond it, the attempt fails with 503 and `Retry-After`.
    pub max_answer_bytes_in_flight: usize,
    /// Open connections the internal listener accepts at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Open connections the public listener accepts at once.
    pub public_max_connections: usize,
    /// `tls_cert_file` + `tls_key_file`: both listeners speak HTTPS only (re-read on change).
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Exactly the `iss` of every token and the `issuer` of the discovery document.
    pub url: String,
    /// The issuer URL without its scheme: what IAM condition keys are prefixed with.
    pub host_path: String,
    pub audience: String,
    pub token_lifetime: Duration,
}

impl IssuerConfig {
    pub fn jwks_uri(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }
}

#[derive(Debug, Clone)]
pub struct KeysConfig {
    pub dir: PathBuf,
    pub rsa_bits: u32,
    pub reload_interval: Duration,
    pub jwks_max_age: Duration,
    /// How long a next key must have been published before `keys rotate` promotes it.
    pub min_next_age: Duration,
    /// Extra time a retired key stays published after its last token expired.
    pub retired_grace: Duration,
    pub max_published: usize,
}

/// An API caller: a worker or service holding one API key, bound to one team.
#[derive(Clone)]
pub struct CallerConfig {
    pub name: String,
    /// SHA-256 of the API key; the key itself is never stored.
    pub key_sha256: [u8; 32],
    pub team: Uid,
    pub actors: Vec<ActorType>,
    /// `None`: any principal uid of the allowed actor types.
    pub principals: Option<Vec<Uid>>,
    /// Named agents (with their own roles) this caller may act as; `None`: any of its team's.
    pub agents: Option<Vec<String>>,
    /// May this caller run without naming an agent (under the team's own role)? Default: only when
    /// its agents are unrestricted or it lists none.
    pub allow_no_agent: bool,
    /// May this caller have tokens signed for it (`POST /v1/tokens`)? Default: no. A caller limited to
    /// some agents may only where its team has `session_tags` (else IAM cannot tell its agents apart).
    pub mint_tokens: bool,
}

impl fmt::Debug for CallerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerConfig")
            .field("name", &self.name)
            .field("team", &self.team)
            .field("actors", &self.actors)
            .field("principals", &self.principals)
            .field("agents", &self.agents)
            .field("allow_no_agent", &self.allow_no_agent)
            .field("mint_tokens", &self.mint_tokens)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct TeamConfig {
    pub uid: Uid,
    pub role_arn: Option<RoleArn>,
    /// Bedrock region for this team; `bedrock.region` when absent.
    pub region: Option<String>,
    pub agents: Vec<AgentConfig>,
    /// Mint session tags (team, actor, principal, agent, run) and a source identity into this
    /// team's tokens; its roles' trust policies must then allow `sts:TagSession` and
    /// `sts:SetSourceIdentity` (`byollm aws-setup` generates them so).
    pub session_tags: bool,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    pub role_arn: RoleArn,
}

#[derive(Debug, Clone)]
pub struct StsConfig {
    pub region: String,
    pub endpoint_url: Option<String>,
    pub duration: Duration,
    /// Credentials that leave the gateway (`/v1/credentials*`) are assumed with a session policy
    /// allowing only `bedrock:InvokeModel*` on what the run's routing allows on Bedrock
    /// ([`crate::broker::session_policy`]); `false` exports the role's own permissions.
    pub session_policy: bool,
}

#[derive(Debug, Clone)]
pub struct BedrockConfig {
    pub region: String,
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub profile: Option<String>,
    pub refresh_interval: Duration,
}

/// The certificate and key files of the listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

/// Everything wrong with a configuration, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        writeln!(f, "invalid configuration ({}): {count} problem{}", self.source, if count == 1 { "" } else { "s" })?;
        for error in &self.errors {
            writeln!(f, "  {}: {}", error.path, error.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Load from an optional file plus environment overrides. With no file, `dev` defaults to true.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let source = path.map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
        let fail = |path: &str, message: String| ConfigError {
            source: source.clone(),
            errors: vec![FieldError { path: path.to_owned(), message }],
        };
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| fail("(file)", format!("cannot read: {e}")))?;
                text.parse::<Table>().map_err(|e| fail("(file)", format!("not valid TOML: {e}")))?
            }
            None => {
                let mut table = Table::new();
                table.insert("dev".into(), Value::Boolean(true));
                table
            }
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        apply_env(&mut table, env.iter().cloned()).map_err(|(path, message)| fail(&path, message))?;
        let mut config = Config::from_table(table).map_err(|errors| ConfigError { source, errors })?;
        // The AWS SDKs' standard endpoint settings, when the config names none.
        let aws_env =
            |name: &str| env.iter().find(|(key, value)| key == name && !value.is_empty()).map(|(_, v)| v.clone());
        if config.sts.endpoint_url.is_none() {
            config.sts.endpoint_url = aws_env("AWS_ENDPOINT_URL_STS").or_else(|| aws_env("AWS_ENDPOINT_URL"));
        }
        if config.bedrock.endpoint_url.is_none() {
            config.bedrock.endpoint_url =
                aws_env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME").or_else(|| aws_env("AWS_ENDPOINT_URL"));
        }
        Ok(config)
    }

    /// Parse a TOML string (no environment): for tests and examples.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError {
            source: "inline".into(),
            errors: vec![FieldError { path: "(file)".into(), message }],
        };
        let table = text.parse::<Table>().map_err(|e| fail(format!("not valid TOML: {e}")))?;
        Config::from_table(table).map_err(|errors| ConfigError { source: "inline".into(), errors })
    }

    fn from_table(table: Table) -> Result<Config, Vec<FieldError>> {
        let errors = RefCell::new(Vec::new());
        let mut root = Section::root("", table, &errors);
        let dev = root.take::<bool>("dev").unwrap_or(false);
        let server = sections::server(&mut root);
        let issuer = sections::issuer(&mut root, dev, server.listen);
        let keys = sections::keys(&mut root);
        let callers = sections::callers(&mut root);
        let teams = sections::teams(&mut root, &callers);
        let sts = sections::sts(&mut root);
        let bedrock = sections::bedrock(&mut root, &sts.region);
        let mut warnings = Vec::new();
        let models = sections::models(&mut root, &mut warnings);
        let local = sections::local(&mut root);
        // Validated by `crate::routing` against the models and teams above; kept raw here.
        let routing = sections::raw(&mut root, "routing");
        let limits = sections::raw(&mut root, "limits");
        let telemetry = sections::telemetry(&mut root);
        let egress = sections::egress(&mut root);
        root.finish();
        let errors = errors.into_inner();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Config {
            dev,
            server,
            issuer,
            keys,
            callers,
            teams,
            sts,
            bedrock,
            models,
            local,
            warnings,
            routing,
            limits,
            telemetry,
            egress,
        })
    }

    pub fn team(&self, uid: &Uid) -> Option<&TeamConfig> {
        self.teams.iter().find(|team| &team.uid == uid)
    }
}

/// Apply `BYOLLM_A__B=value` as `a.b = value` (parsed as a TOML value, else taken as a string).
fn apply_env(table: &mut Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), (String, String)> {
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        if ENV_NOT_CONFIG.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let value = format!("v = {raw}")
            .parse::<Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| Value::String(raw.clone()));
        let (last, parents) = path.split_last().ok_or_else(|| (name.clone(), "empty path".to_owned()))?;
        let mut cursor = &mut *table;
        for part in parents {
            let entry = cursor.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
            cursor = match entry {
                Value::Table(next) => next,
                _ => return Err((format!("{name} ({})", path.join(".")), "is not a section".into())),
            };
        }
        cursor.insert(last.clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
