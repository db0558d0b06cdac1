//! One function per section of the configuration file, each reading its section with the one
//! [`Section`] reader and returning its validated part of [`Config`]. Cross-section rules (an
//! issuer URL that depends on `dev`, a caller that mints tokens for a team without session tags)
//! are checked where both parts are at hand.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use toml::Value;

use super::reader::Section;
use super::*;
use crate::aws::{RoleArn, validate_region};
use crate::principal::{ActorType, Uid};

pub(super) fn server(root: &mut Section<'_>) -> ServerConfig {
    let mut server = root.section("server");
    let listen = server.take_parsed("listen", |s: String| s.parse::<SocketAddr>().map_err(|e| e.to_string()));
    let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let public_listen = server.take_parsed("public_listen", |s: String| {
        s.parse::<SocketAddr>().map_err(|e| format!("{e}; use host:port like 0.0.0.0:8443"))
    });
    let max_body_bytes = server.take_ranged("max_body_bytes", 1024, 100 << 20).unwrap_or(20 << 20) as usize;
    let request_timeout = server.take_secs("request_timeout_secs", 1, 3600).unwrap_or(Duration::from_secs(900));
    let header_read_timeout = server.take_secs("header_read_timeout_secs", 1, 300).unwrap_or(Duration::from_secs(30));
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
    let min_body_bytes_per_sec =
        server.take_ranged("min_body_bytes_per_sec", 0, 1 << 30).map_or(DEFAULT_MIN_BODY_BYTES_PER_SEC, |v| v as usize);
    let body_rate_window = server.take_secs("body_rate_window_secs", 1, 60).unwrap_or(Duration::from_secs(5));
    let max_answer_bytes_in_flight = server
        .take_ranged("max_answer_bytes_in_flight", 1 << 20, 16 << 30)
        .map_or(DEFAULT_ANSWER_BYTES_IN_FLIGHT, |v| v as usize);
    let max_connections = server.take_ranged("max_connections", 1, 1_000_000).unwrap_or(4096) as usize;
    let public_max_connections = server.take_ranged("public_max_connections", 1, 1_000_000).unwrap_or(1024) as usize;
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
    ServerConfig {
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
    }
}

/// `[issuer]`; without a URL (dev mode only) the internal listener's.
pub(super) fn issuer(root: &mut Section<'_>, dev: bool, listen: SocketAddr) -> IssuerConfig {
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
                    "required unless dev = true: set the public https URL AWS will fetch /.well-known/* from".into(),
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
    let token_lifetime =
        issuer.take_secs("token_lifetime_secs", 60, MAX_TOKEN_LIFETIME.as_secs()).unwrap_or(Duration::from_secs(300));
    issuer.finish();
    IssuerConfig { url, host_path, audience, token_lifetime }
}

pub(super) fn keys(root: &mut Section<'_>) -> KeysConfig {
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
    KeysConfig { dir, rsa_bits, reload_interval, jwks_max_age, min_next_age, retired_grace, max_published }
}

/// `[[callers]]`: names and keys unique.
pub(super) fn callers(root: &mut Section<'_>) -> Vec<CallerConfig> {
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
        let allow_no_agent =
            caller.take::<bool>("allow_no_agent").unwrap_or_else(|| agents.as_ref().is_none_or(|list| list.is_empty()));
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
    callers
}

/// `[[teams]]` (uids unique), then the rule between callers and teams: a caller limited to some
/// agents mints tokens only for a team whose roles IAM tells apart (session tags).
pub(super) fn teams(root: &mut Section<'_>, callers: &[CallerConfig]) -> Vec<TeamConfig> {
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
    teams
}

pub(super) fn sts(root: &mut Section<'_>) -> StsConfig {
    let mut sts = root.section("sts");
    let sts_region = sts.take_parsed("region", validate_region).unwrap_or_else(|| "us-east-1".into());
    let sts_endpoint = sts.take_parsed("endpoint_url", validate_endpoint_url);
    let duration = sts.take_secs("duration_secs", 900, 43_200).unwrap_or(Duration::from_secs(3600));
    let session_policy = sts.take::<bool>("session_policy").unwrap_or(true);
    sts.finish();
    StsConfig { region: sts_region, endpoint_url: sts_endpoint, duration, session_policy }
}

/// `[bedrock]`; its region defaults to STS's.
pub(super) fn bedrock(root: &mut Section<'_>, sts_region: &str) -> BedrockConfig {
    let mut bedrock = root.section("bedrock");
    let bedrock_region = bedrock.take_parsed("region", validate_region).unwrap_or_else(|| sts_region.to_owned());
    let bedrock_endpoint = bedrock.take_parsed("endpoint_url", validate_endpoint_url);
    bedrock.finish();
    BedrockConfig { region: bedrock_region, endpoint_url: bedrock_endpoint }
}

/// `[models]` through the catalog (the built-in list without one); unknown ids add a warning.
pub(super) fn models(root: &mut Section<'_>, warnings: &mut Vec<String>) -> BTreeMap<String, ModelConfig> {
    match root.table.remove("models") {
        None => crate::models::default_models(),
        Some(Value::Table(models)) => {
            let mut out = BTreeMap::new();
            for (name, value) in models {
                let path = format!("models.{name}");
                let Value::Table(table) = value else {
                    root.error_at(path, "must be a table like { id = \"global.anthropic...\" }".into());
                    continue;
                };
                let mut model = root.nested(path, table);
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
    }
}

pub(super) fn local(root: &mut Section<'_>) -> LocalConfig {
    let mut local = root.section("local");
    let profile = local.take::<String>("profile");
    let refresh_interval = local.take_secs("refresh_interval_secs", 10, 3600).unwrap_or(Duration::from_secs(900));
    local.finish();
    LocalConfig { profile, refresh_interval }
}

/// A section kept raw for the module that validates it (`[routing]`: `crate::routing`).
pub(super) fn raw(root: &mut Section<'_>, key: &str) -> Option<toml::Table> {
    match root.table.remove(key) {
        None => None,
        Some(Value::Table(table)) => Some(table),
        Some(_) => {
            root.error_at(key.to_owned(), format!("must be a table ([{key}])"));
            None
        }
    }
}

pub(super) fn telemetry(root: &mut Section<'_>) -> TelemetryConfig {
    let mut telemetry = root.section("telemetry");
    let otlp_endpoint = telemetry.take_parsed("otlp_endpoint", validate_otlp_endpoint);
    let service_name =
        telemetry.take_parsed("service_name", validate_service_name).unwrap_or_else(|| "byollm".to_owned());
    let export_timeout = telemetry.take_secs("export_timeout_secs", 1, 60).unwrap_or(Duration::from_secs(10));
    telemetry.finish();
    TelemetryConfig { otlp_endpoint, service_name, export_timeout }
}

pub(super) fn egress(root: &mut Section<'_>) -> EgressConfig {
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
            format!(
                "{max_lookups_per_team} is more than egress.max_lookups ({max_lookups}): one team could take every slot"
            ),
        );
    }
    egress.finish();
    EgressConfig { nameservers, max_lookups, max_lookups_per_team }
}

/// Check an issuer URL; return it without its scheme (`host[:port][/path]`).
pub(super) fn validate_issuer_url(raw: &str, dev: bool) -> Result<String, String> {
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
