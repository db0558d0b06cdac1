//! Configuration: a TOML file (every field defaulted) plus `BYOLLM_<SECTION>__<FIELD>` environment
//! overrides, read in two stages: raw TOML values, then a validated [`Config`].
//!
//! Every bad field is reported at once, by its path (`issuer.url`, `callers[1].key_sha256`), so an
//! operator fixes a file in one pass. Unknown fields are errors. This module reads no process state
//! itself: callers hand it the file path and the environment pairs, so tests use plain vectors.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::aws::{RoleArn, validate_region};
pub use crate::models::ModelConfig;
use crate::principal::{ActorType, Uid};

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
        let mut root = Section { path: String::new(), table, errors: &errors };
        let dev = root.take::<bool>("dev").unwrap_or(false);

        let mut server = root.section("server");
        let listen = server.take_parsed("listen", |s: String| s.parse::<SocketAddr>().map_err(|e| e.to_string()));
        let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let public_listen = server.take_parsed("public_listen", |s: String| {
            s.parse::<SocketAddr>().map_err(|e| format!("{e}; use host:port like 0.0.0.0:8443"))
        });
        let max_body_bytes = server.take_ranged("max_body_bytes", 1024, 100 << 20).unwrap_or(20 << 20) as usize;
        let request_timeout = server.take_secs("request_timeout_secs", 1, 3600).unwrap_or(Duration::from_secs(900));
        let header_read_timeout =
            server.take_secs("header_read_timeout_secs", 1, 300).unwrap_or(Duration::from_secs(30));
        let body_read_timeout = server.take_secs("body_read_timeout_secs", 1, 600).unwrap_or(Duration::from_secs(60));
        let max_body_bytes_in_flight = server
            .take_ranged("max_body_bytes_in_flight", 1024, 4 << 30)
            .map(|v| v as usize)
            .unwrap_or(DEFAULT_BODY_BYTES_IN_FLIGHT.max(max_body_bytes));
        if max_body_bytes_in_flight < max_body_bytes {
            let path = server.child("max_body_bytes_in_flight");
            server.error_at(
                path,
                "must be at least server.max_body_bytes, or no maximum-size body could ever be read".into(),
            );
        }
        // Each share lies between one maximum-size body and the budget that holds it.
        let mut share = |key: &str, within: &str, max: usize, default: usize| -> usize {
            let Some(value) = server.take_ranged(key, 1024, 4 << 30).map(|v| v as usize) else {
                return default.clamp(max_body_bytes, max.max(max_body_bytes));
            };
            if value < max_body_bytes || value > max {
                let path = server.child(key);
                server.error_at(
                    path,
                    format!("must lie between server.max_body_bytes ({max_body_bytes}) and server.{within} ({max})"),
                );
            }
            value
        };
        let max_body_bytes_in_flight_per_team = share(
            "max_body_bytes_in_flight_per_team",
            "max_body_bytes_in_flight",
            max_body_bytes_in_flight,
            max_body_bytes_in_flight / 2,
        );
        let max_body_bytes_in_flight_per_caller = share(
            "max_body_bytes_in_flight_per_caller",
            "max_body_bytes_in_flight_per_team",
            max_body_bytes_in_flight_per_team,
            max_body_bytes_in_flight_per_team / 2,
        );
        let body_first_byte_timeout =
            server.take_secs("body_first_byte_timeout_secs", 1, 600).unwrap_or(Duration::from_secs(10));
        let min_body_bytes_per_sec = server
            .take_ranged("min_body_bytes_per_sec", 0, 1 << 30)
            .map_or(DEFAULT_MIN_BODY_BYTES_PER_SEC, |v| v as usize);
        let body_rate_window = server.take_secs("body_rate_window_secs", 1, 60).unwrap_or(Duration::from_secs(5));
        let max_answer_bytes_in_flight = server
            .take_ranged("max_answer_bytes_in_flight", 1 << 20, 16 << 30)
            .map_or(DEFAULT_ANSWER_BYTES_IN_FLIGHT, |v| v as usize);
        let max_connections = server.take_ranged("max_connections", 1, 1_000_000).unwrap_or(4096) as usize;
        let public_max_connections =
            server.take_ranged("public_max_connections", 1, 1_000_000).unwrap_or(1024) as usize;
        let tls_cert = server.take::<PathBuf>("tls_cert_file");
        let tls_key = server.take::<PathBuf>("tls_key_file");
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (cert, _) => {
                let (present, missing) =
                    if cert.is_some() { ("tls_cert_file", "tls_key_file") } else { ("tls_key_file", "tls_cert_file") };
                let path = server.child(missing);
                server.error_at(path, format!("set it too: {present} is set, and TLS needs both files (or neither)"));
                None
            }
        };
        server.finish();

        let mut issuer = root.section("issuer");
        let url = issuer.take::<String>("url");
        let issuer_path = issuer.child("url");
        let (url, host_path) = match url {
            Some(url) => match validate_issuer_url(&url, dev) {
                Ok(host_path) => (url, host_path),
                Err(message) => {
                    issuer.error_at(issuer_path, message);
                    (url, String::new())
                }
            },
            None => {
                let url = format!("http://{listen}");
                if !dev {
                    issuer.error_at(
                        issuer_path,
                        "required unless dev = true: set the public https URL AWS will fetch /.well-known/* from"
                            .into(),
                    );
                }
                let host_path = url.trim_start_matches("http://").to_owned();
                (url, host_path)
            }
        };
        let audience = issuer
            .take_parsed("audience", |s: String| {
                if s.is_empty() || s.chars().any(char::is_whitespace) || s.len() > 255 {
                    Err("must be 1-255 characters without whitespace".into())
                } else {
                    Ok(s)
                }
            })
            .unwrap_or_else(|| "sts.amazonaws.com".into());
        let token_lifetime = issuer
            .take_secs("token_lifetime_secs", 60, MAX_TOKEN_LIFETIME.as_secs())
            .unwrap_or(Duration::from_secs(300));
        issuer.finish();

        let mut keys = root.section("keys");
        let dir = keys.take::<PathBuf>("dir").unwrap_or_else(|| PathBuf::from("jwks"));
        let rsa_bits = keys
            .take_parsed("rsa_bits", |bits: u32| {
                if matches!(bits, 2048 | 3072 | 4096) { Ok(bits) } else { Err("must be 2048, 3072 or 4096".into()) }
            })
            .unwrap_or(2048);
        let reload_interval = keys.take_secs("reload_interval_secs", 1, 3600).unwrap_or(Duration::from_secs(10));
        let jwks_max_age = keys.take_secs("jwks_max_age_secs", 0, 86_400).unwrap_or(Duration::from_secs(300));
        let min_next_age = keys.take_secs("min_next_age_secs", 0, 30 * 86_400).unwrap_or(Duration::from_secs(3600));
        let retired_grace = keys.take_secs("retired_grace_secs", 0, 86_400).unwrap_or(Duration::from_secs(300));
        let max_published = keys.take_ranged("max_published", 3, 50).unwrap_or(8) as usize;
        if retired_grace < reload_interval {
            let path = keys.child("retired_grace_secs");
            keys.error_at(
                path,
                format!(
                    "{}s is shorter than keys.reload_interval_secs ({}s): a replica that has not reloaded yet still signs with a retired key",
                    retired_grace.as_secs(),
                    reload_interval.as_secs()
                ),
            );
        }
        if !min_next_age.is_zero() && jwks_max_age * 2 > min_next_age {
            let path = keys.child("jwks_max_age_secs");
            keys.error_at(
                path,
                format!(
                    "{}s is too close to keys.min_next_age_secs ({}s): keep it at most half, so verifiers see a next key before it signs",
                    jwks_max_age.as_secs(),
                    min_next_age.as_secs()
                ),
            );
        }
        keys.finish();

        let callers = root.array("callers", |caller| {
            let name = caller.take_required::<String>("name");
            let key_sha256 = caller.take_required_parsed("key_sha256", |s: String| parse_sha256_hex(&s));
            let team = caller.take_required_parsed("team", |s: String| Uid::parse(&s).map_err(|e| e.to_string()));
            let actors = caller
                .take_parsed("actors", |list: Vec<String>| {
                    if list.is_empty() {
                        return Err("must list at least one of \"user\", \"service_account\"".into());
                    }
                    list.iter().map(|a| a.parse::<ActorType>().map_err(|e| e.to_string())).collect()
                })
                .unwrap_or_else(|| ActorType::ALL.to_vec());
            let principals = caller
                .take_parsed("principals", |list: Vec<String>| {
                    if list.is_empty() {
                        return Err("must list principal uids, or [\"*\"] for any".into());
                    }
                    if list.iter().any(|p| p == "*") {
                        return Ok(None);
                    }
                    list.iter()
                        .map(|p| Uid::parse(p).map_err(|e| format!("{p:?}: {e}")))
                        .collect::<Result<_, _>>()
                        .map(Some)
                })
                .unwrap_or(None);
            let agents = caller
                .take_parsed("agents", |list: Vec<String>| {
                    // An empty list means: no named agent at all.
                    if list.iter().any(|a| a == "*") {
                        return Ok(None);
                    }
                    for agent in &list {
                        Uid::parse(agent).map_err(|e| format!("{agent:?}: {e}"))?;
                    }
                    Ok(Some(list))
                })
                .unwrap_or(None);
            let allow_no_agent = caller
                .take::<bool>("allow_no_agent")
                .unwrap_or_else(|| agents.as_ref().is_none_or(|list| list.is_empty()));
            if !allow_no_agent && agents.as_ref().is_some_and(|list| list.is_empty()) {
                let path = caller.child("allow_no_agent");
                caller.error_at(
                    path,
                    "false with agents = [] allows nothing: list agents or allow running without one".into(),
                );
            }
            let mint_tokens = caller.take::<bool>("mint_tokens").unwrap_or(false);
            Some(CallerConfig {
                name: name?,
                key_sha256: key_sha256?,
                team: team?,
                actors,
                principals,
                agents,
                allow_no_agent,
                mint_tokens,
            })
        });
        let mut seen_callers = HashSet::new();
        let mut seen_keys = HashSet::new();
        for (index, caller) in callers.iter().enumerate() {
            if !seen_callers.insert(caller.name.clone()) {
                root.error_at(format!("callers[{index}].name"), format!("duplicate caller name {:?}", caller.name));
            }
            if !seen_keys.insert(caller.key_sha256) {
                root.error_at(format!("callers[{index}].key_sha256"), "the same API key is configured twice".into());
            }
        }

        let teams = root.array("teams", |team| {
            let uid = team.take_required_parsed("uid", |s: String| Uid::parse(&s).map_err(|e| e.to_string()));
            let role_arn = team.take_parsed("role_arn", |s: String| RoleArn::parse(&s));
            let region = team.take_parsed("region", validate_region);
            let agents = team.array("agents", |agent| {
                let name = agent.take_required_parsed("name", |s: String| {
                    Uid::parse(&s).map(|_| s).map_err(|e| format!("agent name: {e}"))
                });
                let role_arn = agent.take_required_parsed("role_arn", |s: String| RoleArn::parse(&s));
                Some(AgentConfig { name: name?, role_arn: role_arn? })
            });
            let session_tags = team.take::<bool>("session_tags").unwrap_or(false);
            Some(TeamConfig { uid: uid?, role_arn, region, agents, session_tags })
        });
        let mut seen_teams = HashSet::new();
        for (index, team) in teams.iter().enumerate() {
            if !seen_teams.insert(team.uid.clone()) {
                root.error_at(format!("teams[{index}].uid"), format!("duplicate team {:?}", team.uid.as_str()));
            }
        }
        // A token handed to an agent-restricted caller is only as narrow as IAM makes it: without
        // session tags every role of the team trusts `scoped_principal:<team>/*`, so such a token
        // would also assume the other agents' roles (and the team's).
        for (index, caller) in callers.iter().enumerate() {
            let restricted = caller.agents.is_some() || !caller.allow_no_agent;
            let tagged = teams.iter().any(|team| team.uid == caller.team && team.session_tags);
            if caller.mint_tokens && restricted && !tagged {
                root.error_at(
                    format!("callers[{index}].mint_tokens"),
                    format!(
                        "caller {:?} is limited to some agents, but team {:?} mints no session tags, so every role of the team would accept its tokens: set session_tags = true on [[teams]] uid = {:?} (and apply the tagged trust policies), or leave mint_tokens off",
                        caller.name,
                        caller.team.as_str(),
                        caller.team.as_str()
                    ),
                );
            }
        }

        let mut sts = root.section("sts");
        let sts_region = sts.take_parsed("region", validate_region).unwrap_or_else(|| "us-east-1".into());
        let sts_endpoint = sts.take_parsed("endpoint_url", validate_endpoint_url);
        let duration = sts.take_secs("duration_secs", 900, 43_200).unwrap_or(Duration::from_secs(3600));
        let session_policy = sts.take::<bool>("session_policy").unwrap_or(true);
        sts.finish();

        let mut bedrock = root.section("bedrock");
        let bedrock_region = bedrock.take_parsed("region", validate_region).unwrap_or_else(|| sts_region.clone());
        let bedrock_endpoint = bedrock.take_parsed("endpoint_url", validate_endpoint_url);
        bedrock.finish();

        let mut warnings = Vec::new();
        let models = match root.table.remove("models") {
            None => crate::models::default_models(),
            Some(Value::Table(models)) => {
                let mut out = BTreeMap::new();
                for (name, value) in models {
                    let path = format!("models.{name}");
                    let Value::Table(table) = value else {
                        root.error_at(path, "must be a table like { id = \"global.anthropic...\" }".into());
                        continue;
                    };
                    let mut model = Section { path, table, errors: &errors };
                    let id = model.take_required::<String>("id");
                    let family = model.take::<String>("family");
                    let overrides = std::mem::take(&mut model.table);
                    let Some(id) = id else { continue };
                    match crate::models::resolve(&name, &id, family.as_deref(), overrides) {
                        Ok((resolved, warning)) => {
                            warnings.extend(warning);
                            out.insert(name, resolved);
                        }
                        Err(problems) => {
                            for (field, message) in problems {
                                let path = if field.is_empty() { model.path.clone() } else { model.child(&field) };
                                model.error_at(path, message);
                            }
                        }
                    }
                }
                out
            }
            Some(_) => {
                root.error_at("models".into(), "must be a table of public model names".into());
                BTreeMap::new()
            }
        };

        let mut local = root.section("local");
        let profile = local.take::<String>("profile");
        let refresh_interval = local.take_secs("refresh_interval_secs", 10, 3600).unwrap_or(Duration::from_secs(900));
        local.finish();

        // Validated by `crate::routing` against the models and teams above; kept raw here.
        let routing = match root.table.remove("routing") {
            None => None,
            Some(Value::Table(routing)) => Some(routing),
            Some(_) => {
                root.error_at("routing".into(), "must be a table ([routing])".into());
                None
            }
        };

        let mut telemetry = root.section("telemetry");
        let otlp_endpoint = telemetry.take_parsed("otlp_endpoint", validate_otlp_endpoint);
        let service_name =
            telemetry.take_parsed("service_name", validate_service_name).unwrap_or_else(|| "byollm".to_owned());
        let export_timeout = telemetry.take_secs("export_timeout_secs", 1, 60).unwrap_or(Duration::from_secs(10));
        telemetry.finish();

        let mut egress = root.section("egress");
        let defaults = EgressConfig::default();
        let nameservers = egress.take_parsed("nameservers", parse_nameservers);
        let max_lookups = egress.take_ranged("max_lookups", 1, 4096).map_or(defaults.max_lookups, |v| v as usize);
        let max_lookups_per_team = egress
            .take_ranged("max_lookups_per_team", 1, 4096)
            .map_or(defaults.max_lookups_per_team.min(max_lookups), |v| v as usize);
        if max_lookups_per_team > max_lookups {
            let path = egress.child("max_lookups_per_team");
            egress.error_at(
                path,
                format!("{max_lookups_per_team} is more than egress.max_lookups ({max_lookups}): one team could take every slot"),
            );
        }
        egress.finish();

        root.finish();
        let errors = errors.into_inner();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Config {
            dev,
            server: ServerConfig {
                listen,
                public_listen,
                max_body_bytes,
                request_timeout,
                header_read_timeout,
                body_read_timeout,
                max_body_bytes_in_flight,
                max_body_bytes_in_flight_per_team,
                max_body_bytes_in_flight_per_caller,
                body_first_byte_timeout,
                min_body_bytes_per_sec,
                body_rate_window,
                max_answer_bytes_in_flight,
                max_connections,
                public_max_connections,
                tls,
            },
            issuer: IssuerConfig { url, host_path, audience, token_lifetime },
            keys: KeysConfig {
                dir,
                rsa_bits,
                reload_interval,
                jwks_max_age,
                min_next_age,
                retired_grace,
                max_published,
            },
            callers,
            teams,
            sts: StsConfig { region: sts_region, endpoint_url: sts_endpoint, duration, session_policy },
            bedrock: BedrockConfig { region: bedrock_region, endpoint_url: bedrock_endpoint },
            models,
            local: LocalConfig { profile, refresh_interval },
            warnings,
            routing,
            telemetry: TelemetryConfig { otlp_endpoint, service_name, export_timeout },
            egress: EgressConfig { nameservers, max_lookups, max_lookups_per_team },
        })
    }

    pub fn team(&self, uid: &Uid) -> Option<&TeamConfig> {
        self.teams.iter().find(|team| &team.uid == uid)
    }
}

/// Check an issuer URL; return it without its scheme (`host[:port][/path]`).
fn validate_issuer_url(raw: &str, dev: bool) -> Result<String, String> {
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if raw.ends_with('/') {
        return Err(format!(
            "remove the trailing slash: tokens carry the issuer byte for byte and AWS compares it with the provider URL ({:?})",
            raw.trim_end_matches('/')
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a query, fragment or user info".into());
    }
    let host = url.host_str().ok_or("must have a host")?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback =
                host == "localhost" || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !(dev && loopback) {
                return Err("must be https:// (http:// is allowed only on loopback with dev = true)".into());
            }
        }
        other => return Err(format!("scheme {other:?} is not allowed; use https://")),
    }
    let scheme_len = url.scheme().len() + 3;
    Ok(raw[scheme_len..].to_owned())
}

fn validate_endpoint_url(raw: String) -> Result<String, String> {
    let url = url::Url::parse(&raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http(s) URL with a host".into());
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// The OTLP/HTTP collector: an http(s) base URL with a host and nothing that could carry a
/// secret (user info, query); refused in a build without the `otel` feature.
/// `[egress] nameservers`: 1 to 8 DNS servers, each an IP address with an optional port (53).
fn parse_nameservers(list: Vec<String>) -> Result<Vec<SocketAddr>, String> {
    if list.is_empty() || list.len() > 8 {
        return Err("must list 1 to 8 DNS servers (leave it out to use /etc/resolv.conf)".into());
    }
    list.iter()
        .map(|entry| {
            entry.parse::<SocketAddr>().or_else(|_| entry.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53))).map_err(
                |_| {
                    format!(
                        "{entry:?} is not an IP address with an optional port, like \"10.0.0.2\" or \"127.0.0.1:5353\""
                    )
                },
            )
        })
        .collect()
}

fn validate_otlp_endpoint(raw: String) -> Result<url::Url, String> {
    if !cfg!(feature = "otel") {
        return Err(
            "this byollm was built without OpenTelemetry: build it with `--features otel`, or remove [telemetry]"
                .into(),
        );
    }
    let url = url::Url::parse(&raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http(s) URL with a host, like http://otel-collector:4318".into());
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(
            "must not contain user info, a query or a fragment (set headers with OTEL_EXPORTER_OTLP_HEADERS)".into()
        );
    }
    Ok(url)
}

/// `service.name`: 1-64 visible ASCII characters.
fn validate_service_name(raw: String) -> Result<String, String> {
    if raw.is_empty() || raw.len() > 64 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 1-64 visible ASCII characters".into());
    }
    Ok(raw)
}

fn parse_sha256_hex(raw: &str) -> Result<[u8; 32], String> {
    let message =
        || "must be 64 hex characters: the SHA-256 of the API key (byollm callers hash-key prints it)".to_owned();
    if raw.len() != 64 {
        return Err(message());
    }
    let mut out = [0u8; 32];
    for (index, pair) in raw.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).map_err(|_| message())?;
        out[index] = u8::from_str_radix(text, 16).map_err(|_| message())?;
    }
    Ok(out)
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

/// One TOML table being read, with the shared list of errors.
struct Section<'a> {
    path: String,
    table: Table,
    errors: &'a RefCell<Vec<FieldError>>,
}

impl<'a> Section<'a> {
    fn child(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    fn error_at(&self, path: String, message: String) {
        self.errors.borrow_mut().push(FieldError { path, message });
    }

    fn take<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.table.remove(key)?;
        match value.try_into::<T>() {
            Ok(value) => Some(value),
            Err(error) => {
                self.error_at(self.child(key), error.to_string().trim().to_owned());
                None
            }
        }
    }

    fn take_parsed<R: DeserializeOwned, T>(
        &mut self,
        key: &str,
        check: impl FnOnce(R) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.take::<R>(key)?;
        match check(raw) {
            Ok(value) => Some(value),
            Err(message) => {
                self.error_at(self.child(key), message);
                None
            }
        }
    }

    fn take_required<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        if !self.table.contains_key(key) {
            self.error_at(self.child(key), "is required".into());
        }
        self.take(key)
    }

    fn take_required_parsed<R: DeserializeOwned, T>(
        &mut self,
        key: &str,
        check: impl FnOnce(R) -> Result<T, String>,
    ) -> Option<T> {
        if !self.table.contains_key(key) {
            self.error_at(self.child(key), "is required".into());
        }
        self.take_parsed(key, check)
    }

    fn take_ranged(&mut self, key: &str, min: u64, max: u64) -> Option<u64> {
        self.take_parsed(key, |value: u64| {
            if (min..=max).contains(&value) { Ok(value) } else { Err(format!("{value} is out of range {min}..={max}")) }
        })
    }

    fn take_secs(&mut self, key: &str, min: u64, max: u64) -> Option<Duration> {
        self.take_ranged(key, min, max).map(Duration::from_secs)
    }

    fn section(&mut self, key: &str) -> Section<'a> {
        let path = self.child(key);
        let table = match self.table.remove(key) {
            None => Table::new(),
            Some(Value::Table(table)) => table,
            Some(_) => {
                self.error_at(path.clone(), "must be a table".into());
                Table::new()
            }
        };
        Section { path, table, errors: self.errors }
    }

    /// Read an array of tables, one closure call each; entries with errors are left out.
    fn array<T>(&mut self, key: &str, mut read: impl FnMut(&mut Section<'a>) -> Option<T>) -> Vec<T> {
        let path = self.child(key);
        let items = match self.table.remove(key) {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.error_at(path, format!("must be an array of tables ([[{key}]])"));
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}[{index}]");
            let Value::Table(table) = item else {
                self.error_at(item_path, "must be a table".into());
                continue;
            };
            let mut section = Section { path: item_path, table, errors: self.errors };
            let value = read(&mut section);
            section.finish();
            out.extend(value);
        }
        out
    }

    /// Report every key nobody read.
    fn finish(self) {
        for key in self.table.keys() {
            self.error_at(self.child(key), "unknown field".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn errors_of(text: &str) -> Vec<(String, String)> {
        match Config::from_toml(text) {
            Ok(_) => Vec::new(),
            Err(error) => error.errors.into_iter().map(|e| (e.path, e.message)).collect(),
        }
    }

    #[test]
    fn empty_file_needs_an_issuer_url_unless_dev() {
        let errors = errors_of("");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "issuer.url");
        let config = Config::from_toml("dev = true").unwrap();
        assert_eq!(config.issuer.url, "http://127.0.0.1:8080");
        assert_eq!(config.issuer.audience, "sts.amazonaws.com");
        assert_eq!(config.issuer.token_lifetime, Duration::from_secs(300));
        assert_eq!(config.keys.dir, PathBuf::from("jwks"));
        assert!(config.models.contains_key("claude-opus-5-5"));
    }

    #[test]
    fn tls_takes_both_files_or_neither() {
        let errors = errors_of("dev = true\n[server]\ntls_cert_file = \"tls.crt\"");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "server.tls_key_file");
        assert!(errors[0].1.contains("tls_cert_file is set"), "{}", errors[0].1);
        let errors = errors_of("dev = true\n[server]\ntls_key_file = \"tls.key\"");
        assert_eq!(errors[0].0, "server.tls_cert_file");
        let config =
            Config::from_toml("dev = true\n[server]\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"").unwrap();
        let files = config.server.tls.unwrap();
        assert_eq!((files.cert, files.key), (PathBuf::from("c.pem"), PathBuf::from("k.pem")));
        assert!(Config::from_toml("dev = true").unwrap().server.tls.is_none());
    }

    #[test]
    fn no_file_means_dev_defaults() {
        let config = Config::load(None, Vec::new()).unwrap();
        assert!(config.dev);
        assert_eq!(config.issuer.host_path, "127.0.0.1:8080");
    }

    #[test]
    fn every_bad_field_is_reported_by_path() {
        let text = format!(
            r#"
            surprise = 1
            [server]
            listen = "nope"
            [issuer]
            url = "https://issuer.example.com/"
            token_lifetime_secs = 7200
            colour = "red"
            [keys]
            rsa_bits = 1024
            [[callers]]
            name = "w"
            key_sha256 = "abc"
            team = "a/b"
            actors = ["robot"]
            [[callers]]
            name = "ok"
            key_sha256 = "{HASH}"
            team = "acme"
            [[teams]]
            uid = "acme"
            role_arn = "arn:aws:iam::12345:role/x"
            [sts]
            duration_secs = 60
            [models.bad]
            id = "gpt 4"
            "#
        );
        let paths: Vec<String> = errors_of(&text).into_iter().map(|(path, _)| path).collect();
        for expected in [
            "server.listen",
            "issuer.url",
            "issuer.token_lifetime_secs",
            "issuer.colour",
            "keys.rsa_bits",
            "callers[0].key_sha256",
            "callers[0].team",
            "callers[0].actors",
            "teams[0].role_arn",
            "sts.duration_secs",
            "models.bad.id",
            "surprise",
        ] {
            assert!(paths.iter().any(|p| p == expected), "missing {expected} in {paths:?}");
        }
    }

    #[test]
    fn issuer_url_rules() {
        let cases = [
            ("https://issuer.example.com", false, Ok("issuer.example.com")),
            ("https://issuer.example.com/tenant", false, Ok("issuer.example.com/tenant")),
            ("http://127.0.0.1:9000", true, Ok("127.0.0.1:9000")),
            ("http://127.0.0.1:9000", false, Err("https")),
            ("http://example.com", true, Err("https")),
            ("https://issuer.example.com/", false, Err("trailing slash")),
            ("https://issuer.example.com?x=1", false, Err("query")),
            ("ftp://issuer.example.com", false, Err("scheme")),
        ];
        for (url, dev, expected) in cases {
            match (validate_issuer_url(url, dev), expected) {
                (Ok(host), Ok(want)) => assert_eq!(host, want),
                (Err(message), Err(want)) => assert!(message.contains(want), "{url}: {message}"),
                (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn env_overrides_fields_and_are_validated() {
        let env = vec![
            ("BYOLLM_ISSUER__URL".to_owned(), "https://id.example.com".to_owned()),
            ("BYOLLM_KEYS__RSA_BITS".to_owned(), "3072".to_owned()),
            ("BYOLLM_LOG".to_owned(), "debug".to_owned()),
            ("OTHER".to_owned(), "x".to_owned()),
        ];
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("byollm.toml");
        std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9999\"\n").unwrap();
        let config = Config::load(Some(&file), env).unwrap();
        assert_eq!(config.issuer.url, "https://id.example.com");
        assert_eq!(config.keys.rsa_bits, 3072);
        assert_eq!(config.server.listen.port(), 9999);

        let bad = vec![("BYOLLM_ISSUER__TOKEN_LIFETIME_SECS".to_owned(), "999999".to_owned())];
        let error = Config::load(Some(&file), bad).unwrap_err();
        assert_eq!(error.errors[0].path, "issuer.url");
        assert!(error.errors.iter().any(|e| e.path == "issuer.token_lifetime_secs"));
    }

    #[test]
    fn callers_teams_and_agents_parse() {
        let text = format!(
            r#"
            dev = true
            [[callers]]
            name = "worker"
            key_sha256 = "{HASH}"
            team = "acme"
            actors = ["service_account"]
            principals = ["svc-1", "svc-2"]
            agents = ["reviewer"]
            [[teams]]
            uid = "acme"
            role_arn = "arn:aws:iam::123456789012:role/path/byollm-acme"
            region = "eu-west-1"
            [[teams.agents]]
            name = "reviewer"
            role_arn = "arn:aws:iam::123456789012:role/reviewer"
            "#
        );
        let config = Config::from_toml(&text).unwrap();
        let caller = &config.callers[0];
        assert_eq!(caller.actors, vec![ActorType::ServiceAccount]);
        assert_eq!(caller.principals.as_ref().map(Vec::len), Some(2));
        assert_eq!(caller.agents.as_deref(), Some(&["reviewer".to_owned()][..]));
        assert!(!format!("{caller:?}").contains("key_sha256"));
        let team = config.team(&Uid::parse("acme").unwrap()).unwrap();
        let role = team.role_arn.as_ref().unwrap();
        assert_eq!(role.account_id(), "123456789012");
        assert_eq!(role.role_name(), "byollm-acme");
        assert_eq!(team.agents[0].role_arn.role_name(), "reviewer");
    }

    #[test]
    fn running_without_an_agent_is_off_for_agent_restricted_callers_unless_asked_for() {
        let caller = |extra: &str| {
            format!("dev = true\n[[callers]]\nname = \"w\"\nkey_sha256 = \"{HASH}\"\nteam = \"acme\"\n{extra}")
        };
        let config = |extra: &str| Config::from_toml(&caller(extra)).map(|c| c.callers[0].clone());
        let open = config("").unwrap();
        assert!(open.allow_no_agent && !open.mint_tokens, "unrestricted: may run under the team role, no tokens");
        assert!(config("agents = [\"*\"]").unwrap().allow_no_agent);
        assert!(config("agents = []").unwrap().allow_no_agent, "no agents at all: the team role is all it has");
        assert!(!config("agents = [\"reviewer\"]").unwrap().allow_no_agent, "an agent's worker stays its agent");
        assert!(config("agents = [\"reviewer\"]\nallow_no_agent = true").unwrap().allow_no_agent);
        assert!(config("mint_tokens = true").unwrap().mint_tokens);
        let errors = errors_of(&caller("agents = []\nallow_no_agent = false"));
        assert_eq!(errors[0].0, "callers[0].allow_no_agent");
    }

    #[test]
    fn an_agent_restricted_caller_may_mint_tokens_only_where_iam_tells_agents_apart() {
        // Without session tags every role of the team trusts scoped_principal:<team>/*: a token
        // minted for the caller's own agent would assume every other agent's role too.
        let config = |caller: &str, tags: bool| {
            format!(
                "dev = true\n[[callers]]\nname = \"w\"\nkey_sha256 = \"{HASH}\"\nteam = \"acme\"\nmint_tokens = true\n{caller}\n\
                 [[teams]]\nuid = \"acme\"\nsession_tags = {tags}\n"
            )
        };
        for restricted in ["agents = [\"reviewer\"]", "agents = []", "agents = [\"reviewer\"]\nallow_no_agent = true"] {
            let errors = errors_of(&config(restricted, false));
            assert_eq!(errors.len(), 1, "{restricted}: {errors:?}");
            assert_eq!(errors[0].0, "callers[0].mint_tokens", "{restricted}");
            assert!(errors[0].1.contains("session_tags = true"), "{}", errors[0].1);
            assert!(Config::from_toml(&config(restricted, true)).is_ok(), "{restricted} with session tags");
        }
        // Unrestricted callers may act for every role anyway; a team not configured has no tags.
        assert!(Config::from_toml(&config("", false)).is_ok());
        assert!(Config::from_toml(&config("agents = [\"*\"]", false)).is_ok());
        let unconfigured = format!(
            "dev = true\n[[callers]]\nname = \"w\"\nkey_sha256 = \"{HASH}\"\nteam = \"acme\"\nmint_tokens = true\nagents = [\"x\"]\n"
        );
        assert_eq!(errors_of(&unconfigured)[0].0, "callers[0].mint_tokens");
    }

    #[test]
    fn new_server_and_team_settings_have_safe_defaults() {
        let config = Config::from_toml("dev = true\n[[teams]]\nuid = \"acme\"\n").unwrap();
        assert!(!config.teams[0].session_tags);
        assert!(config.sts.session_policy);
        assert_eq!(config.server.max_body_bytes_in_flight, DEFAULT_BODY_BYTES_IN_FLIGHT);
        assert!(config.server.max_body_bytes_in_flight >= config.server.max_body_bytes);
        let errors = errors_of("dev = true\n[server]\nmax_body_bytes = 2048\nmax_body_bytes_in_flight = 1024\n");
        assert_eq!(errors[0].0, "server.max_body_bytes_in_flight");
        assert_eq!(config.server.max_answer_bytes_in_flight, DEFAULT_ANSWER_BYTES_IN_FLIGHT);
        let set = Config::from_toml("dev = true\n[server]\nmax_answer_bytes_in_flight = 33554432\n").unwrap();
        assert_eq!(set.server.max_answer_bytes_in_flight, 32 << 20);
        for bad in ["1024", "\"lots\"", "-1", "17179869185"] {
            let errors = errors_of(&format!("dev = true\n[server]\nmax_answer_bytes_in_flight = {bad}\n"));
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].0, "server.max_answer_bytes_in_flight", "{bad}");
        }
    }

    #[test]
    fn body_shares_default_to_halves_that_still_fit_a_maximum_size_body() {
        let server = Config::from_toml("dev = true\n").unwrap().server;
        assert_eq!(server.max_body_bytes_in_flight_per_team, DEFAULT_BODY_BYTES_IN_FLIGHT / 2);
        // Half the team's share would be 16 MiB: raised to one maximum-size body (20 MiB).
        assert_eq!(server.max_body_bytes_in_flight_per_caller, server.max_body_bytes);
        assert_eq!(server.body_first_byte_timeout, Duration::from_secs(10));
        assert_eq!((server.min_body_bytes_per_sec, server.body_rate_window), (64 << 10, Duration::from_secs(5)));
        // Derived from what is set.
        let server = Config::from_toml(
            "dev = true\n[server]\nmax_body_bytes = 1048576\nmax_body_bytes_in_flight = 16777216\nmin_body_bytes_per_sec = 0\n",
        )
        .unwrap()
        .server;
        assert_eq!(
            (server.max_body_bytes_in_flight_per_team, server.max_body_bytes_in_flight_per_caller),
            (8 << 20, 4 << 20)
        );
        assert_eq!(server.min_body_bytes_per_sec, 0, "0 turns the minimum rate off");
        // A share below one maximum-size body, or above the budget it is part of, is refused.
        for (setting, path) in [
            ("max_body_bytes_in_flight_per_team = 1048576", "server.max_body_bytes_in_flight_per_team"),
            ("max_body_bytes_in_flight_per_team = 134217728", "server.max_body_bytes_in_flight_per_team"),
            ("max_body_bytes_in_flight_per_caller = 2048", "server.max_body_bytes_in_flight_per_caller"),
            ("max_body_bytes_in_flight_per_caller = 41943040", "server.max_body_bytes_in_flight_per_caller"),
        ] {
            let errors = errors_of(&format!("dev = true\n[server]\n{setting}\n"));
            assert_eq!(errors.len(), 1, "{setting}: {errors:?}");
            assert_eq!(errors[0].0, path, "{setting}");
        }
        let server =
            Config::from_toml("dev = true\n[server]\nmax_body_bytes_in_flight_per_team = 41943040\n").unwrap().server;
        assert_eq!(server.max_body_bytes_in_flight_per_caller, 20 << 20);
    }

    #[test]
    fn role_arn_rules() {
        for good in ["arn:aws:iam::123456789012:role/a", "arn:aws-us-gov:iam::123456789012:role/p/a+b=c,d.e@f_g-h"] {
            assert!(RoleArn::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "arn:aws:iam::12345678901:role/a",
            "arn:aws:iam::123456789012:user/a",
            "arn:aws:sts::123456789012:role/a",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a b",
            "role/a",
        ] {
            assert!(RoleArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jwks_max_age_must_stay_well_below_the_prepublication_window() {
        let errors = errors_of("dev = true\n[keys]\njwks_max_age_secs = 3000\nmin_next_age_secs = 3600\n");
        assert_eq!(errors[0].0, "keys.jwks_max_age_secs");
    }

    #[test]
    fn egress_name_resolution_settings() {
        let config = Config::from_toml("dev = true").unwrap();
        assert_eq!(config.egress, EgressConfig::default());
        let config = Config::from_toml(
            "dev = true\n[egress]\nnameservers = [\"10.0.0.2\", \"127.0.0.1:5353\", \"[::1]:53\"]\nmax_lookups = 8\nmax_lookups_per_team = 2\n",
        )
        .unwrap();
        let expected: Vec<SocketAddr> =
            vec!["10.0.0.2:53".parse().unwrap(), "127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()];
        assert_eq!(config.egress.nameservers, Some(expected));
        assert_eq!((config.egress.max_lookups, config.egress.max_lookups_per_team), (8, 2));
        // A smaller global cap lowers the default team share with it.
        assert_eq!(
            Config::from_toml("dev = true\n[egress]\nmax_lookups = 4\n").unwrap().egress.max_lookups_per_team,
            4
        );
        let errors = errors_of(
            "dev = true\n[egress]\nnameservers = [\"dns.example.com\", \"10.0.0.2\"]\nmax_lookups = 0\nsurprise = 1\n",
        );
        let paths: Vec<&str> = errors.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(paths, ["egress.nameservers", "egress.max_lookups", "egress.surprise"], "{errors:?}");
        assert!(errors[0].1.contains("dns.example.com"), "{}", errors[0].1);
        assert_eq!(errors_of("dev = true\n[egress]\nnameservers = []\n")[0].0, "egress.nameservers");
        let errors = errors_of("dev = true\n[egress]\nmax_lookups = 8\nmax_lookups_per_team = 9\n");
        assert_eq!(errors[0].0, "egress.max_lookups_per_team");
    }
}
