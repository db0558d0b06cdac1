//! The `[limits]` section read into a validated [`LimitsPolicy`]: every bad field reported by its
//! path at once, validated against the rest of the configuration (its teams, agents and callers)
//! and against the routing policy in force (a USD budget over a scope that may use a model without
//! a price cannot be evaluated: refused, never ignored). Read at start and on every reload, beside
//! `[routing]`.
//!
//! Must never: count anything or do I/O beyond reading a password file it names.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use toml::Table;

use crate::config::reader::Section;
use crate::config::{Config, FieldError};
use crate::models::prices::{Endpoint, Price, prices};
use crate::principal::Uid;
use crate::routing::policy::SecretSource;
use crate::routing::{RouteScope, RoutingPolicy, Upstream};
use crate::secret::Secret;

/// Highest per-minute limit (a GCRA interval of 1 µs per unit).
pub const MAX_PER_MINUTE: u64 = 60_000_000;
/// Highest concurrency limit.
pub const MAX_CONCURRENT: u64 = 1_000_000;
/// Highest token budget.
pub const MAX_TOKEN_BUDGET: u64 = 1 << 50;
/// Highest USD budget.
pub const MAX_USD: f64 = 1e9;
/// Nano-USD in one USD: spend is counted in whole nano-USD.
pub const NANOS_PER_USD: f64 = 1e9;

/// One scope's limits; `None`: no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitSet {
    pub requests_per_minute: Option<u64>,
    pub input_tokens_per_minute: Option<u64>,
    pub output_tokens_per_minute: Option<u64>,
    pub concurrent_requests: Option<u64>,
    pub concurrent_streams: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub tokens_per_month: Option<u64>,
    /// Nano-USD.
    pub usd_per_day: Option<u64>,
    /// Nano-USD.
    pub usd_per_month: Option<u64>,
}

impl LimitSet {
    /// These limits, each one this set leaves out taken from `base`.
    pub fn over(self, base: LimitSet) -> LimitSet {
        LimitSet {
            requests_per_minute: self.requests_per_minute.or(base.requests_per_minute),
            input_tokens_per_minute: self.input_tokens_per_minute.or(base.input_tokens_per_minute),
            output_tokens_per_minute: self.output_tokens_per_minute.or(base.output_tokens_per_minute),
            concurrent_requests: self.concurrent_requests.or(base.concurrent_requests),
            concurrent_streams: self.concurrent_streams.or(base.concurrent_streams),
            tokens_per_day: self.tokens_per_day.or(base.tokens_per_day),
            tokens_per_month: self.tokens_per_month.or(base.tokens_per_month),
            usd_per_day: self.usd_per_day.or(base.usd_per_day),
            usd_per_month: self.usd_per_month.or(base.usd_per_month),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == LimitSet::default()
    }

    /// A spend budget is set.
    pub fn has_usd(&self) -> bool {
        self.usd_per_day.is_some() || self.usd_per_month.is_some()
    }

    /// A budget of any kind is set.
    pub fn has_budget(&self) -> bool {
        self.has_usd() || self.tokens_per_day.is_some() || self.tokens_per_month.is_some()
    }
}

/// What a replica does when the shared store (Redis) does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// Keep serving on this replica's own counters (warned, counted), back to the shared ones when
    /// the store answers again.
    Allow,
    /// Refuse every request a limit applies to (503) until the store answers again.
    Deny,
}

/// Where counters live: this process, or Redis shared by every replica. Read at start only (a
/// change needs a restart).
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `redis://` or `rediss://` (TLS); `None`: the in-process store.
    pub redis_url: Option<url::Url>,
    /// From `redis_password_file` or `redis_password_env`, never from the URL.
    pub password: Option<Secret>,
    pub on_store_error: OnStoreError,
    /// Prefix of every Redis key (several gateways may share one Redis).
    pub key_prefix: String,
    /// Longest one store call may take before it counts as an error.
    pub timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            redis_url: None,
            password: None,
            on_store_error: OnStoreError::Allow,
            key_prefix: "byollm:".into(),
            timeout: Duration::from_millis(250),
        }
    }
}

/// One team's own limits (`[limits.teams.<uid>]`), its agents' and its principals'.
#[derive(Debug, Clone, Default)]
pub struct TeamLimits {
    pub limits: LimitSet,
    /// `[limits.teams.<uid>.agents.<name>]`.
    pub agents: BTreeMap<String, LimitSet>,
    /// `[limits.teams.<uid>.each_principal]`, over the defaults' `each_principal`.
    pub each_principal: LimitSet,
    /// May the team's callers export credentials (`/v1/credentials*`)? `None`: the default's.
    pub credentials: Option<bool>,
}

/// The validated `[limits]` policy.
#[derive(Debug, Clone, Default)]
pub struct LimitsPolicy {
    /// `[limits.default]`: every team's, each team counted apart.
    pub default: LimitSet,
    /// `[limits.default.each_principal]`: every principal's, each counted apart.
    pub each_principal: LimitSet,
    pub teams: BTreeMap<String, TeamLimits>,
    /// `[limits.callers.<name>]`: per caller key.
    pub callers: BTreeMap<String, LimitSet>,
    /// `[limits] credentials`: whether credentials may be exported (default true).
    pub credentials: bool,
    /// `[limits.prices."<public model>"]`: prices overriding (or added to) the table.
    pub prices: BTreeMap<String, Price>,
    /// Public model name → catalog family (from `[models]`), for the table's prices.
    pub families: BTreeMap<String, String>,
    /// Fraction of a budget past which a warning is logged and the audit line says so.
    pub alert_at: f64,
    pub store: StoreSettings,
}

impl LimitsPolicy {
    /// No limits at all (local mode, no `[limits]`), with the table's prices.
    pub fn none(config: &Config) -> LimitsPolicy {
        LimitsPolicy { credentials: true, alert_at: 0.8, families: families(config), ..LimitsPolicy::default() }
    }

    /// The effective limits of team `team` (defaults, then the team's own).
    pub fn team(&self, team: &str) -> LimitSet {
        match self.teams.get(team) {
            Some(limits) => limits.limits.over(self.default),
            None => self.default,
        }
    }

    /// The effective per-principal limits within `team`.
    pub fn principal(&self, team: &str) -> LimitSet {
        match self.teams.get(team) {
            Some(limits) => limits.each_principal.over(self.each_principal),
            None => self.each_principal,
        }
    }

    /// May `team` export credentials?
    pub fn may_export(&self, team: &str) -> bool {
        self.teams.get(team).and_then(|t| t.credentials).unwrap_or(self.credentials)
    }

    /// No limit of any kind is configured.
    pub fn is_empty(&self) -> bool {
        self.default.is_empty()
            && self.each_principal.is_empty()
            && self.callers.values().all(LimitSet::is_empty)
            && self.teams.values().all(|t| {
                t.limits.is_empty() && t.each_principal.is_empty() && t.agents.values().all(LimitSet::is_empty)
            })
    }

    /// The price of `model` (a public name) served by `upstream`: the config's override, else the
    /// table's for the model's catalog family (Bedrock: by its profile; the Anthropic API: the
    /// global price); `None`: unpriced.
    pub fn price(&self, model: &str, upstream: &Upstream) -> Option<Price> {
        if let Some(price) = self.prices.get(model) {
            return Some(*price);
        }
        let family = self.families.get(model)?;
        match upstream {
            Upstream::Bedrock(route) => prices().price(family, Endpoint::of_bedrock_id(&route.model_id)),
            Upstream::Anthropic(_) => prices().price(family, Endpoint::Global),
            Upstream::OpenAi(_) => None,
        }
    }

    /// The `[limits]` of `config` against the routing policy `routing`.
    pub fn from_config(
        config: &Config,
        routing: &RoutingPolicy,
        secrets: &dyn SecretSource,
    ) -> Result<LimitsPolicy, Vec<FieldError>> {
        Self::from_section(config.limits.as_ref(), config, routing, secrets)
    }

    /// The policy of `section` (a `[limits]` table, possibly from a newer file), validated against
    /// `config`'s teams, agents and callers and `routing`'s models.
    pub fn from_section(
        section: Option<&Table>,
        config: &Config,
        routing: &RoutingPolicy,
        secrets: &dyn SecretSource,
    ) -> Result<LimitsPolicy, Vec<FieldError>> {
        let errors = RefCell::new(Vec::new());
        let mut root = Section::root("limits", section.cloned().unwrap_or_default(), &errors);
        let policy = read(&mut root, config, routing, secrets);
        root.finish();
        let errors = errors.into_inner();
        if errors.is_empty() { Ok(policy) } else { Err(errors) }
    }
}

fn families(config: &Config) -> BTreeMap<String, String> {
    config.models.iter().filter_map(|(name, model)| model.family.clone().map(|family| (name.clone(), family))).collect()
}

fn read(root: &mut Section<'_>, config: &Config, routing: &RoutingPolicy, secrets: &dyn SecretSource) -> LimitsPolicy {
    let store = store_settings(root, secrets);
    let credentials = root.take::<bool>("credentials").unwrap_or(true);
    let alert_at = root
        .take_parsed("alert_at_fraction", |value: f64| {
            if value > 0.0 && value <= 1.0 { Ok(value) } else { Err("must lie in (0, 1]".to_owned()) }
        })
        .unwrap_or(0.8);
    let mut prices = BTreeMap::new();
    for (model, mut node) in root.children("prices") {
        let price = read_price(&mut node);
        node.finish();
        if !routing.known_models().any(|known| known == model) {
            root.error(node_path(root, "prices", &model), format!("{model:?} is not a model this gateway serves"));
        }
        if let Some(price) = price {
            prices.insert(model, price);
        }
    }
    let (default, each_principal) = match root.table_at("default") {
        Some(mut node) => {
            let set = limit_set(&mut node);
            let each = node.table_at("each_principal").map(|mut each| {
                let set = limit_set(&mut each);
                each.finish();
                set
            });
            node.finish();
            (set, each.unwrap_or_default())
        }
        None => (LimitSet::default(), LimitSet::default()),
    };
    let known_teams: BTreeSet<&str> =
        config.teams.iter().map(|t| t.uid.as_str()).chain(config.callers.iter().map(|c| c.team.as_str())).collect();
    let mut teams = BTreeMap::new();
    for (uid, mut node) in root.children("teams") {
        match Uid::parse(&uid) {
            Err(error) => node.error(node.path.clone(), format!("{uid:?} is not a team uid: {error}")),
            Ok(_) if !known_teams.contains(uid.as_str()) => {
                node.error(node.path.clone(), format!("team {uid:?} is neither in [[teams]] nor the team of a caller"))
            }
            Ok(_) => {}
        }
        let limits = limit_set(&mut node);
        let credentials = node.take::<bool>("credentials");
        let each_principal = match node.table_at("each_principal") {
            Some(mut each) => {
                let set = limit_set(&mut each);
                each.finish();
                set
            }
            None => LimitSet::default(),
        };
        let mut agents = BTreeMap::new();
        for (agent, mut agent_node) in node.children("agents") {
            let configured = config
                .teams
                .iter()
                .find(|t| t.uid.as_str() == uid)
                .is_some_and(|t| t.agents.iter().any(|a| a.name == agent));
            if !configured {
                agent_node.error(
                    agent_node.path.clone(),
                    format!("agent {agent:?} is not in [[teams.agents]] of team {uid:?}"),
                );
            }
            let set = limit_set(&mut agent_node);
            agent_node.finish();
            agents.insert(agent, set);
        }
        node.finish();
        teams.insert(uid, TeamLimits { limits, agents, each_principal, credentials });
    }
    let mut callers = BTreeMap::new();
    for (name, mut node) in root.children("callers") {
        if !config.callers.iter().any(|c| c.name == name) {
            node.error(node.path.clone(), format!("caller {name:?} is not in [[callers]]"));
        }
        let set = limit_set(&mut node);
        node.finish();
        callers.insert(name, set);
    }
    let policy = LimitsPolicy {
        default,
        each_principal,
        teams,
        callers,
        credentials,
        prices,
        families: families(config),
        alert_at,
        store,
    };
    check_priced(root, &policy, config, routing);
    policy
}

fn node_path(root: &Section<'_>, table: &str, key: &str) -> String {
    let parent = root.child(table);
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { format!("{parent}.{key}") } else { format!("{parent}.{key:?}") }
}

/// The limit fields of one scope.
fn limit_set(node: &mut Section<'_>) -> LimitSet {
    let usd = |node: &mut Section<'_>, key: &str| {
        node.take_parsed(key, |value: f64| {
            if value.is_finite() && value > 0.0 && value <= MAX_USD {
                Ok((value * NANOS_PER_USD).round() as u64)
            } else {
                Err(format!("must be a number of USD above 0 and at most {MAX_USD}"))
            }
        })
    };
    LimitSet {
        requests_per_minute: node.take_ranged("requests_per_minute", 1, MAX_PER_MINUTE),
        input_tokens_per_minute: node.take_ranged("input_tokens_per_minute", 1, MAX_PER_MINUTE),
        output_tokens_per_minute: node.take_ranged("output_tokens_per_minute", 1, MAX_PER_MINUTE),
        concurrent_requests: node.take_ranged("concurrent_requests", 1, MAX_CONCURRENT),
        concurrent_streams: node.take_ranged("concurrent_streams", 1, MAX_CONCURRENT),
        tokens_per_day: node.take_ranged("tokens_per_day", 1, MAX_TOKEN_BUDGET),
        tokens_per_month: node.take_ranged("tokens_per_month", 1, MAX_TOKEN_BUDGET),
        usd_per_day: usd(node, "usd_per_day"),
        usd_per_month: usd(node, "usd_per_month"),
    }
}

/// `[limits.prices."<model>"]`: all five figures, USD per million tokens.
fn read_price(node: &mut Section<'_>) -> Option<Price> {
    let mut figure = |key: &str| node.take_required::<f64>(key);
    let price = Price {
        input: figure("input")?,
        output: figure("output")?,
        cache_write_5m: figure("cache_write_5m")?,
        cache_write_1h: figure("cache_write_1h")?,
        cache_read: figure("cache_read")?,
    };
    match price.check() {
        Ok(()) => Some(price),
        Err(message) => {
            node.error(node.path.clone(), message);
            None
        }
    }
}

fn store_settings(root: &mut Section<'_>, secrets: &dyn SecretSource) -> StoreSettings {
    let defaults = StoreSettings::default();
    let redis_url = root.take_parsed("redis_url", |raw: String| {
        let url = url::Url::parse(&raw).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "redis" | "rediss") || url.host_str().is_none() {
            return Err("must be redis://host[:port][/db] or rediss:// (TLS)".into());
        }
        if url.password().is_some() {
            // Never quote it back: it is a secret.
            return Err("must not carry a password: set redis_password_file or redis_password_env".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a query or fragment".into());
        }
        redis::IntoConnectionInfo::into_connection_info(url.clone()).map_err(|e| format!("{e}"))?;
        Ok(url)
    });
    let env_path = root.child("redis_password_env");
    let file_path = root.child("redis_password_file");
    let env = root.take::<String>("redis_password_env");
    let file = root.take::<PathBuf>("redis_password_file");
    let password = match (env, file) {
        (Some(_), Some(_)) => {
            root.error(file_path, "set redis_password_env or redis_password_file, not both");
            None
        }
        (None, None) => None,
        (Some(name), None) => match secrets.env(&name) {
            Some(value) => checked_password(root, env_path, value),
            None => {
                root.error(env_path, format!("environment variable {name:?} is not set"));
                None
            }
        },
        (None, Some(path)) => match secrets.file(&path) {
            Ok(value) => checked_password(root, file_path, value),
            Err(error) => {
                root.error(file_path, format!("cannot read {}: {}", path.display(), error.kind()));
                None
            }
        },
    };
    let on_store_error = root
        .take_parsed("on_store_error", |raw: String| match raw.as_str() {
            "allow" => Ok(OnStoreError::Allow),
            "deny" => Ok(OnStoreError::Deny),
            _ => Err("must be \"allow\" or \"deny\"".to_owned()),
        })
        .unwrap_or(defaults.on_store_error);
    let key_prefix = root
        .take_parsed("redis_key_prefix", |raw: String| {
            let ok = !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_graphic());
            if ok { Ok(raw) } else { Err("must be 1-64 visible ASCII characters".to_owned()) }
        })
        .unwrap_or(defaults.key_prefix);
    let timeout =
        root.take_ranged("redis_timeout_ms", 10, 10_000).map(Duration::from_millis).unwrap_or(defaults.timeout);
    if redis_url.is_none() && password.is_some() {
        root.error(root.child("redis_url"), "a Redis password is set, but no redis_url");
    }
    StoreSettings { redis_url, password, on_store_error, key_prefix, timeout }
}

fn checked_password(root: &Section<'_>, path: String, value: String) -> Option<Secret> {
    let value = value.trim();
    if value.is_empty() || value.len() > 4096 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        // Never quote the value: it is a secret.
        root.error(path, "the password must be 1-4096 visible ASCII characters");
        return None;
    }
    Some(Secret::new(value))
}

/// Every USD budget must be evaluable: each model its scope may use has a price on every route.
fn check_priced(root: &Section<'_>, policy: &LimitsPolicy, config: &Config, routing: &RoutingPolicy) {
    let teams: BTreeSet<&str> =
        config.teams.iter().map(|t| t.uid.as_str()).chain(config.callers.iter().map(|c| c.team.as_str())).collect();
    let agents_of = |team: &str| -> Vec<Option<&str>> {
        let mut scopes = vec![None];
        if let Some(config) = config.teams.iter().find(|t| t.uid.as_str() == team) {
            scopes.extend(config.agents.iter().map(|a| Some(a.name.as_str())));
        }
        scopes
    };
    // The first unpriced (model, route) a set of scopes may use.
    let unpriced = |scopes: &[(&str, Option<&str>)]| -> Option<(String, String)> {
        for (team, agent) in scopes {
            let scope = RouteScope { team: Some(team), agent: *agent };
            for model in routing.allowed_models(scope) {
                let Ok(resolution) = routing.resolve(scope, &model) else { continue };
                for route in resolution.routes {
                    if policy.price(&model, &route.upstream).is_none() {
                        return Some((model, route.label));
                    }
                }
            }
        }
        None
    };
    let report = |path: String, found: (String, String)| {
        let (model, route) = found;
        root.error(
            path,
            format!(
                "a USD budget cannot be evaluated: model {model:?} (route {route:?}) has no price; add [limits.prices.{model:?}] (input, output, cache_write_5m, cache_write_1h, cache_read in USD per million tokens) or take the model out of the scope's routing"
            ),
        );
    };
    let field = |set: &LimitSet| if set.usd_per_day.is_some() { "usd_per_day" } else { "usd_per_month" };
    for team in &teams {
        let all: Vec<(&str, Option<&str>)> = agents_of(team).into_iter().map(|agent| (*team, agent)).collect();
        let team_set = policy.team(team);
        let principal_set = policy.principal(team);
        for (set, path) in [
            (
                team_set,
                policy.teams.get(*team).filter(|t| t.limits.has_usd()).map_or_else(
                    || format!("limits.default.{}", field(&team_set)),
                    |_| format!("{}.{}", node_path(root, "teams", team), field(&team_set)),
                ),
            ),
            (principal_set, format!("limits.each_principal.{} (team {team:?})", field(&principal_set))),
        ] {
            if set.has_usd()
                && let Some(found) = unpriced(&all)
            {
                report(path, found);
            }
        }
        if let Some(limits) = policy.teams.get(*team) {
            for (agent, set) in &limits.agents {
                if set.has_usd()
                    && let Some(found) = unpriced(&[(team, Some(agent.as_str()))])
                {
                    report(format!("{}.agents.{agent}.{}", node_path(root, "teams", team), field(set)), found);
                }
            }
        }
    }
    for (name, set) in &policy.callers {
        let Some(caller) = config.callers.iter().find(|c| &c.name == name) else { continue };
        let team = caller.team.as_str();
        let all: Vec<(&str, Option<&str>)> = agents_of(team).into_iter().map(|agent| (team, agent)).collect();
        if set.has_usd()
            && let Some(found) = unpriced(&all)
        {
            report(format!("{}.{}", node_path(root, "callers", name), field(set)), found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Mode;
    use crate::routing::policy::MapSecrets;

    const CALLERS: &str = r#"
dev = true
[[callers]]
name = "acme-worker"
key_sha256 = "0000000000000000000000000000000000000000000000000000000000000001"
team = "acme"
[[teams]]
uid = "acme"
role_arn = "arn:aws:iam::111111111111:role/acme"
agents = [{ name = "reviewer", role_arn = "arn:aws:iam::111111111111:role/reviewer" }]
[models.claude-haiku-4-5]
id = "global.anthropic.claude-haiku-4-5-20251001-v1:0"
"#;

    fn policy(extra: &str) -> Result<LimitsPolicy, Vec<FieldError>> {
        let config = Config::from_toml(&format!("{CALLERS}{extra}")).unwrap();
        let routing = RoutingPolicy::from_config(&config, Mode::Hosted, &MapSecrets(BTreeMap::new())).unwrap();
        let secrets = MapSecrets([("REDIS_PW".to_owned(), "s3cret-pw".to_owned())].into());
        LimitsPolicy::from_config(&config, &routing, &secrets)
    }

    fn paths(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn teams_agents_callers_and_principals_each_have_their_limits() {
        let policy = policy(
            r#"
[limits.default]
requests_per_minute = 100
usd_per_day = 50
[limits.default.each_principal]
concurrent_requests = 4
[limits.teams.acme]
requests_per_minute = 5
credentials = false
[limits.teams.acme.agents.reviewer]
concurrent_streams = 3
[limits.callers.acme-worker]
output_tokens_per_minute = 1000
"#,
        )
        .unwrap();
        let acme = policy.team("acme");
        assert_eq!(acme.requests_per_minute, Some(5), "the team's own limit over the default");
        assert_eq!(acme.usd_per_day, Some(50_000_000_000), "the default's budget, in nano-USD");
        assert_eq!(policy.team("other").requests_per_minute, Some(100));
        assert_eq!(policy.teams["acme"].agents["reviewer"].concurrent_streams, Some(3));
        assert_eq!(policy.callers["acme-worker"].output_tokens_per_minute, Some(1000));
        assert_eq!(policy.principal("acme").concurrent_requests, Some(4));
        assert!(!policy.may_export("acme") && policy.may_export("other"));
        assert!(!policy.is_empty());
        assert!(super::super::policy::LimitsPolicy::default().is_empty());
    }

    #[test]
    fn every_bad_field_is_reported_by_its_path() {
        let errors = policy(
            r#"
[limits]
redis_url = "redis://:hunter2@localhost:6379"
on_store_error = "maybe"
[limits.default]
requests_per_minute = 0
usd_per_day = -3
colour = "red"
[limits.teams.nobody]
requests_per_minute = 1
[limits.teams.acme.agents.ghost]
concurrent_streams = 1
[limits.callers.stranger]
requests_per_minute = 1
"#,
        )
        .unwrap_err();
        let text = format!("{errors:?}");
        assert!(!text.contains("hunter2"), "the password is never quoted: {text}");
        let paths = paths(errors);
        for path in [
            "limits.redis_url",
            "limits.on_store_error",
            "limits.default.requests_per_minute",
            "limits.default.usd_per_day",
            "limits.default.colour",
            "limits.teams.nobody",
            "limits.teams.acme.agents.ghost",
            "limits.callers.stranger",
        ] {
            assert!(paths.iter().any(|p| p == path), "{path} missing from {paths:?}");
        }
    }

    #[test]
    fn a_usd_budget_over_an_unpriced_model_is_refused_until_it_is_priced() {
        // An endpoint model has no price in the table.
        let endpoint = r#"
[routing.endpoints.local]
base_url = "https://llm.example.com/v1"
models = ["house-model"]
[limits.teams.acme]
usd_per_day = 10
"#;
        let errors = policy(endpoint).unwrap_err();
        assert_eq!(paths(errors.clone()), ["limits.teams.acme.usd_per_day"]);
        assert!(errors[0].message.contains("house-model"), "{}", errors[0].message);
        let priced = format!(
            "{endpoint}[limits.prices.house-model]\ninput = 1.0\noutput = 2.0\ncache_write_5m = 1.25\ncache_write_1h = 2.0\ncache_read = 0.1\n"
        );
        let policy = policy(&priced).unwrap();
        assert_eq!(policy.prices["house-model"].output, 2.0);
        // A token budget needs no price.
        assert!(super::tests::policy(&endpoint.replace("usd_per_day = 10", "tokens_per_day = 10")).is_ok());
    }

    #[test]
    fn the_redis_password_comes_from_a_file_or_the_environment() {
        let policy = policy(
            "[limits]\nredis_url = \"rediss://cache.internal:6380/2\"\nredis_password_env = \"REDIS_PW\"\non_store_error = \"deny\"\n",
        )
        .unwrap();
        assert_eq!(policy.store.redis_url.as_ref().unwrap().scheme(), "rediss");
        assert_eq!(policy.store.password.as_ref().unwrap().expose(), "s3cret-pw");
        assert_eq!(policy.store.on_store_error, OnStoreError::Deny);
        let errors = super::tests::policy("[limits]\nredis_url = \"redis://x\"\nredis_password_env = \"NOPE\"\n");
        assert_eq!(paths(errors.unwrap_err()), ["limits.redis_password_env"]);
    }

    #[test]
    fn a_price_comes_from_the_table_by_profile_or_from_an_override() {
        let policy = policy("").unwrap();
        let bedrock = |id: &str| {
            Upstream::Bedrock(crate::routing::BedrockRoute { model_id: id.into(), region: None, role: None })
        };
        let global = policy.price("claude-haiku-4-5", &bedrock("global.anthropic.claude-haiku-4-5-20251001-v1:0"));
        let regional = policy.price("claude-haiku-4-5", &bedrock("us.anthropic.claude-haiku-4-5-20251001-v1:0"));
        assert_eq!(global.unwrap().input, 1.0);
        assert!((regional.unwrap().input - 1.1).abs() < 1e-9);
        let anthropic = Upstream::Anthropic(crate::routing::AnthropicRoute { model: "claude-haiku-4-5".into() });
        assert_eq!(policy.price("claude-haiku-4-5", &anthropic).unwrap().input, 1.0);
        assert_eq!(policy.price("unknown", &anthropic), None);
    }
}
