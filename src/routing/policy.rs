//! The `[routing]` section read into a validated [`RoutingPolicy`]: every bad field reported by its
//! path at once, secret references (`api_key_env`, `api_key_file`) resolved to in-memory secrets.
//!
//! The section is validated against the rest of a running configuration (its models, teams and
//! agents), so a hot reload can swap the policy alone.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use toml::{Table, Value};

use super::failover::FailoverSettings;
use super::{AnthropicRoute, BedrockRoute, OpenAiRoute, Route, Upstream};
use crate::aws::RoleArn;
use crate::config::reader::Section;
use crate::config::{Config, FieldError};
use crate::models::CacheTtl;
use crate::principal::Uid;
use crate::secret::Secret;
use crate::upstream::egress::{self, EgressPolicy};
use crate::upstream::openai_compat::FieldAllowList;

/// Most routes one model may list.
pub const MAX_ROUTES: usize = 8;

/// Default base URL of the Anthropic API.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

/// Default `max_response_bytes` of the Anthropic API and of configured endpoints.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 << 20;
/// Default `max_response_bytes` of a `per_request` endpoint: the caller chooses where it points, so
/// what it may make the gateway read (and buffer) is smaller by default. A chat completion is
/// rarely above 1 MiB.
pub const PER_REQUEST_MAX_RESPONSE_BYTES: u64 = 8 << 20;
const _: () = assert!(PER_REQUEST_MAX_RESPONSE_BYTES < DEFAULT_MAX_RESPONSE_BYTES);
/// Most names an endpoint's `extra_fields` may list.
pub const MAX_EXTRA_FIELDS: usize = 64;

/// How the gateway runs, which decides what an upstream address may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `byollm serve`: hosted for many teams.
    Hosted,
    /// `byollm local`: on the person's own machine.
    Local,
}

/// How to reach one upstream over HTTP: where, with which key, within which limits.
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    /// `None` for an endpoint whose URL each request names (`per_request = true`).
    pub base_url: Option<url::Url>,
    /// The configured key; `None`: the request's header carries it (or the upstream needs none).
    pub key: Option<Secret>,
    pub allow_http: bool,
    /// Loopback and private addresses allowed (an internal gateway the operator vouches for);
    /// metadata and link-local addresses never are.
    pub allow_private_network: bool,
    pub connect_timeout: Duration,
    /// Longest a whole answer (a stream included) may take.
    pub timeout: Duration,
    pub max_response_bytes: u64,
}

impl HttpUpstream {
    /// The egress policy this upstream's connections obey.
    pub fn egress(&self, mode: Mode) -> EgressPolicy {
        match mode {
            Mode::Local => EgressPolicy::Local,
            Mode::Hosted if self.allow_private_network => EgressPolicy::Private { allow_http: self.allow_http },
            Mode::Hosted => EgressPolicy::Hosted { allow_http: self.allow_http },
        }
    }
}

/// A named OpenAI-compatible endpoint (`[routing.endpoints.<name>]`).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub http: HttpUpstream,
    /// The URL and key come from the request's `x-byollm-endpoint-url` / `x-byollm-endpoint-key`.
    pub per_request: bool,
    /// Models only this endpoint serves (public name = the endpoint's model name).
    pub models: Vec<String>,
    /// The top-level request fields passed on: OpenAI's chat completions fields and the
    /// endpoint's `extra_fields`; a request with any other is refused.
    pub fields: FieldAllowList,
}

/// Whether byollm places prompt-cache breakpoints for clients that place none
/// (`prompt_cache = "auto" | "off"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptCache {
    Auto,
    Off,
}

/// Prompt caching when no layer says otherwise: on, five minutes. A cache write costs 1.25 times
/// the input price and a read a tenth, so a prefix used twice within five minutes already costs
/// less (README "Prompt caching" has the arithmetic).
pub const DEFAULT_PROMPT_CACHE: PromptCache = PromptCache::Auto;
pub const DEFAULT_PROMPT_CACHE_TTL: CacheTtl = CacheTtl::FiveMinutes;

/// The prompt-cache settings of a layer, or of one model in it; `None`: the next layer decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheSettings {
    pub mode: Option<PromptCache>,
    pub ttl: Option<CacheTtl>,
}

/// One layer of policy: the defaults, a team, or an agent.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub provider_only: Option<bool>,
    /// The models this layer may use; `None`: what the layer above allows.
    pub models: Option<BTreeSet<String>>,
    /// Ordered routes per public model.
    pub routes: BTreeMap<String, Vec<Route>>,
    /// `prompt_cache`, `prompt_cache_ttl`.
    pub cache: CacheSettings,
    /// The same per public model (`per_model."<model>"`), before the layer's own.
    pub model_cache: BTreeMap<String, CacheSettings>,
}

#[derive(Debug, Clone, Default)]
pub struct TeamPolicy {
    pub layer: Layer,
    pub agents: BTreeMap<String, Layer>,
}

/// The validated routing policy.
#[derive(Debug, Clone)]
pub struct RoutingPolicy {
    pub mode: Mode,
    pub anthropic: HttpUpstream,
    pub endpoints: BTreeMap<String, Endpoint>,
    pub default: Layer,
    pub teams: BTreeMap<String, TeamPolicy>,
    pub failover: FailoverSettings,
    /// Public model name → Bedrock id, from `[models]`.
    pub bedrock_models: BTreeMap<String, String>,
    /// Public model name → the endpoint that alone serves it.
    pub endpoint_models: BTreeMap<String, String>,
}

/// Where secret references are looked up.
pub trait SecretSource {
    fn env(&self, name: &str) -> Option<String>;
    fn file(&self, path: &std::path::Path) -> std::io::Result<String>;
}

/// The process environment and the file system (start-up and reloads).
pub struct ProcessSecrets;

impl SecretSource for ProcessSecrets {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn file(&self, path: &std::path::Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Secrets from a map (tests; `Config::load`'s environment pairs).
pub struct MapSecrets(pub BTreeMap<String, String>);

impl SecretSource for MapSecrets {
    fn env(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn file(&self, path: &std::path::Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Every reference resolves to a placeholder: for commands that read only which models and Bedrock
/// routes the policy allows (`aws-setup`, `doctor`), where no key is ever used and the operator's
/// shell need not hold them. Never for serving.
pub struct PlaceholderSecrets;

impl SecretSource for PlaceholderSecrets {
    fn env(&self, _name: &str) -> Option<String> {
        Some("placeholder".into())
    }

    fn file(&self, _path: &std::path::Path) -> std::io::Result<String> {
        Ok("placeholder".into())
    }
}

impl RoutingPolicy {
    /// The policy of `config.routing`, validated against `config`'s models, teams and agents.
    pub fn from_config(
        config: &Config,
        mode: Mode,
        secrets: &dyn SecretSource,
    ) -> Result<RoutingPolicy, Vec<FieldError>> {
        Self::from_section(config.routing.as_ref(), config, mode, secrets)
    }

    /// The policy of `section` (a `[routing]` table, possibly from a newer file), validated against
    /// the models, teams and agents of `config`.
    pub fn from_section(
        section: Option<&Table>,
        config: &Config,
        mode: Mode,
        secrets: &dyn SecretSource,
    ) -> Result<RoutingPolicy, Vec<FieldError>> {
        let errors = RefCell::new(Vec::new());
        let reader = Reader { errors: &errors, secrets, mode };
        let mut root = Section::root("routing", section.cloned().unwrap_or_default(), &errors);
        let policy = reader.policy(&mut root, config);
        root.finish();
        let errors = errors.into_inner();
        if errors.is_empty() { Ok(policy) } else { Err(errors) }
    }

    /// The policy of a configuration with no `[routing]` section: one Bedrock route per model.
    /// Start-up only.
    pub fn builtin(config: &Config, mode: Mode) -> RoutingPolicy {
        Self::from_section(None, config, mode, &ProcessSecrets)
            .expect("an empty routing section has no field to get wrong")
    }

    /// Every public model name the gateway knows: `[models]` and endpoint-only models.
    pub fn known_models(&self) -> impl Iterator<Item = &str> {
        self.bedrock_models.keys().chain(self.endpoint_models.keys()).map(String::as_str)
    }

    /// Every route label a request can be served by (`bedrock`, `anthropic`, `openai:<endpoint>`,
    /// with `#2`… for repeats), in every scope: the metrics' route label values.
    pub fn route_labels(&self) -> BTreeSet<String> {
        let mut labels: BTreeSet<String> = ["bedrock".to_owned()].into();
        labels.extend(self.endpoints.keys().map(|name| format!("openai:{name}")));
        let layers = std::iter::once(&self.default)
            .chain(self.teams.values().flat_map(|team| std::iter::once(&team.layer).chain(team.agents.values())));
        for layer in layers {
            labels.extend(layer.routes.values().flatten().map(|route| route.label.clone()));
        }
        labels
    }

    /// Let the metrics use this policy's names as label values (models, routes, endpoints).
    pub fn admit_labels(&self, metrics: &crate::observe::metrics::Metrics) {
        let routes = self.route_labels();
        metrics.admit(
            self.known_models(),
            routes.iter().map(String::as_str),
            self.endpoints.keys().map(String::as_str),
        );
    }
}

/// The policy's reader: the one configuration reader ([`Section`]) plus what `[routing]` needs to
/// resolve (secret references, the mode's egress rules).
struct Reader<'a> {
    errors: &'a RefCell<Vec<FieldError>>,
    secrets: &'a dyn SecretSource,
    mode: Mode,
}

type Node<'a> = Section<'a>;

/// A TOML key under a path that is not a table being read (as [`Section::child`] writes it).
fn key_path(parent: &str, key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { format!("{parent}.{key}") } else { format!("{parent}.{key:?}") }
}

impl Reader<'_> {
    fn error(&self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.borrow_mut().push(FieldError { path: path.into(), message: message.into() });
    }

    fn policy(&self, root: &mut Node, config: &Config) -> RoutingPolicy {
        let failover = self.failover(root);
        let anthropic = match root.table_at("anthropic") {
            Some(mut node) => {
                let http = self.http_upstream(&mut node, Some(ANTHROPIC_BASE_URL), false, config);
                node.finish();
                http
            }
            None => self.http_upstream(
                &mut Section::root("routing.anthropic", Table::new(), self.errors),
                Some(ANTHROPIC_BASE_URL),
                false,
                config,
            ),
        };
        let bedrock_models: BTreeMap<String, String> =
            config.models.iter().map(|(name, model)| (name.clone(), model.id.clone())).collect();

        let mut endpoints = BTreeMap::new();
        let mut endpoint_models = BTreeMap::new();
        for (name, mut node) in root.children("endpoints") {
            if !valid_name(&name) {
                self.error(node.path.clone(), "endpoint names use letters, digits, '-' and '_' (at most 64)");
            }
            let per_request = node.take::<bool>("per_request").unwrap_or(false);
            let http = self.http_upstream(&mut node, None, per_request, config);
            let fields = self.extra_fields(&mut node);
            let models = node.take::<Vec<String>>("models").unwrap_or_default();
            let models_path = node.child("models");
            for model in &models {
                if !valid_model_name(model) {
                    self.error(
                        models_path.clone(),
                        format!("{model:?} is not a model name (1-128 printable characters)"),
                    );
                } else if bedrock_models.contains_key(model) {
                    self.error(
                        models_path.clone(),
                        format!("{model:?} is already a [models] entry; route it with routes instead"),
                    );
                } else if let Some(other) = endpoint_models.insert(model.clone(), name.clone()) {
                    self.error(models_path.clone(), format!("{model:?} is already served by endpoint {other:?}"));
                }
            }
            node.finish();
            endpoints.insert(name, Endpoint { http, per_request, models, fields });
        }

        let known = Known { bedrock_models: &bedrock_models, endpoint_models: &endpoint_models, endpoints: &endpoints };
        let default = match root.table_at("default") {
            Some(mut node) => {
                let layer = self.layer(&mut node, &known, None);
                node.finish();
                layer
            }
            None => Layer::default(),
        };

        let mut teams = BTreeMap::new();
        for (uid, mut node) in root.children("teams") {
            let team_known = match Uid::parse(&uid) {
                Err(error) => {
                    self.error(node.path.clone(), format!("{uid:?} is not a team uid: {error}"));
                    false
                }
                Ok(parsed) => {
                    let exists =
                        config.teams.iter().any(|t| t.uid == parsed) || config.callers.iter().any(|c| c.team == parsed);
                    if !exists {
                        self.error(
                            node.path.clone(),
                            format!("team {uid:?} is neither in [[teams]] nor the team of a caller"),
                        );
                    }
                    exists
                }
            };
            let layer = self.layer(&mut node, &known, Some(&default));
            let mut agents = BTreeMap::new();
            for (agent, mut agent_node) in node.children("agents") {
                let configured = config
                    .teams
                    .iter()
                    .find(|t| t.uid.as_str() == uid)
                    .is_some_and(|t| t.agents.iter().any(|a| a.name == agent));
                if team_known && !configured {
                    self.error(
                        agent_node.path.clone(),
                        format!("agent {agent:?} is not in [[teams.agents]] of team {uid:?}"),
                    );
                }
                let agent_layer = self.layer(&mut agent_node, &known, Some(&layer));
                if agent_layer.provider_only.is_some() {
                    self.error(agent_node.child("provider_only"), "is a team setting; set it on the team");
                }
                if let (Some(agent_models), Some(team_models)) =
                    (&agent_layer.models, effective_models(&layer, &default))
                {
                    for model in agent_models.difference(team_models) {
                        self.error(agent_node.child("models"), format!("{model:?} is not among the team's models"));
                    }
                }
                agent_node.finish();
                agents.insert(agent, agent_layer);
            }
            node.finish();
            teams.insert(uid, TeamPolicy { layer, agents });
        }

        let policy = RoutingPolicy {
            mode: self.mode,
            anthropic,
            endpoints,
            default,
            teams,
            failover,
            bedrock_models,
            endpoint_models,
        };
        self.check_reachable(&policy);
        policy
    }

    fn failover(&self, root: &mut Node) -> FailoverSettings {
        let defaults = FailoverSettings::default();
        let mut node =
            root.table_at("failover").unwrap_or_else(|| Section::root("routing.failover", Table::new(), self.errors));
        let skip_after = node.take_ranged("skip_after_failures", 1, 100).map_or(defaults.skip_after, |n| n as u32);
        let skip_base = node.take_ranged("skip_secs", 1, 3600).map_or(defaults.skip_base, Duration::from_secs);
        let skip_max = node.take_ranged("skip_max_secs", 1, 3600).map_or(defaults.skip_max, Duration::from_secs);
        if skip_max < skip_base {
            self.error(node.child("skip_max_secs"), "must be at least skip_secs");
        }
        node.finish();
        FailoverSettings { skip_after, skip_base, skip_max, ..defaults }
    }

    fn http_upstream(
        &self,
        node: &mut Node,
        default_url: Option<&str>,
        per_request: bool,
        config: &Config,
    ) -> HttpUpstream {
        let allow_http = node.take::<bool>("allow_http").unwrap_or(false);
        let allow_private_network = node.take::<bool>("allow_private_network").unwrap_or(false);
        let url_path = node.child("base_url");
        let raw_url = node.take::<String>("base_url");
        let base_url = match (raw_url, default_url, per_request) {
            (Some(_), _, true) => {
                self.error(url_path, "leave base_url out of a per_request endpoint: each request names its URL");
                None
            }
            (None, _, true) => None,
            (None, None, false) => {
                self.error(url_path, "is required (or set per_request = true to take it from each request)");
                None
            }
            (raw, default, false) => {
                let raw = raw.or(default.map(str::to_owned)).unwrap_or_default();
                let probe = HttpUpstream {
                    base_url: None,
                    key: None,
                    allow_http,
                    allow_private_network,
                    connect_timeout: Duration::ZERO,
                    timeout: Duration::ZERO,
                    max_response_bytes: 0,
                };
                match check_base_url(&raw, probe.egress(self.mode)) {
                    Ok(url) => Some(url),
                    Err(message) => {
                        self.error(url_path, message);
                        None
                    }
                }
            }
        };
        if per_request {
            // The configured key would go to whatever URL a request names: refused outright.
            for field in ["api_key_env", "api_key_file"] {
                if node.table.remove(field).is_some() {
                    self.error(
                        node.child(field),
                        "leave the key out of a per_request endpoint: it would be sent to whatever URL a request names; each request sends its own in x-byollm-endpoint-key",
                    );
                }
            }
        }
        let key = self.secret(node);
        let connect_timeout =
            node.take_ranged("connect_timeout_secs", 1, 60).map_or(Duration::from_secs(5), Duration::from_secs);
        let timeout = node.take_ranged("timeout_secs", 1, 3600).map_or(Duration::from_secs(600), Duration::from_secs);
        // A non-streamed answer is buffered whole, within server.max_answer_bytes_in_flight.
        let budget = config.server.max_answer_bytes_in_flight as u64;
        let default_max = if per_request { PER_REQUEST_MAX_RESPONSE_BYTES } else { DEFAULT_MAX_RESPONSE_BYTES };
        let max_response_bytes = match node.take_ranged("max_response_bytes", 1024, 1 << 30) {
            Some(set) if set > budget => {
                self.error(
                    node.child("max_response_bytes"),
                    format!(
                        "{set} is more than server.max_answer_bytes_in_flight ({budget}): an answer that size could never be buffered"
                    ),
                );
                budget
            }
            Some(set) => set,
            None => default_max.min(budget),
        };
        HttpUpstream { base_url, key, allow_http, allow_private_network, connect_timeout, timeout, max_response_bytes }
    }

    /// `extra_fields`: top-level request fields the endpoint takes beyond OpenAI's own.
    fn extra_fields(&self, node: &mut Node) -> FieldAllowList {
        let path = node.child("extra_fields");
        let Some(names) = node.take::<Vec<String>>("extra_fields") else { return FieldAllowList::default() };
        if names.len() > MAX_EXTRA_FIELDS {
            self.error(path, format!("lists {} fields; at most {MAX_EXTRA_FIELDS}", names.len()));
            return FieldAllowList::default();
        }
        let mut valid = Vec::with_capacity(names.len());
        for (index, name) in names.into_iter().enumerate() {
            let field_name = !name.is_empty()
                && name.len() <= 64
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if field_name {
                valid.push(name);
            } else {
                self.error(
                    format!("{path}[{index}]"),
                    format!("{name:?} is not a field name (1-64 letters, digits, '_' and '-')"),
                );
            }
        }
        FieldAllowList::new(valid)
    }

    fn secret(&self, node: &mut Node) -> Option<Secret> {
        let env_path = node.child("api_key_env");
        let file_path = node.child("api_key_file");
        let env = node.take::<String>("api_key_env");
        let file = node.take::<PathBuf>("api_key_file");
        let (value, path) = match (env, file) {
            (Some(_), Some(_)) => {
                self.error(file_path, "set api_key_env or api_key_file, not both");
                return None;
            }
            (None, None) => return None,
            (Some(name), None) => match self.secrets.env(&name) {
                Some(value) => (value, env_path),
                None => {
                    self.error(env_path, format!("environment variable {name:?} is not set"));
                    return None;
                }
            },
            (None, Some(path)) => match self.secrets.file(&path) {
                Ok(value) => (value, file_path),
                Err(error) => {
                    self.error(file_path, format!("cannot read {}: {}", path.display(), error.kind()));
                    return None;
                }
            },
        };
        let value = value.trim();
        if value.is_empty() || value.len() > 4096 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            // Never quote the value: it is a secret.
            self.error(path, "the key must be 1-4096 visible ASCII characters");
            return None;
        }
        Some(Secret::new(value))
    }

    /// `prompt_cache` and `prompt_cache_ttl` of a layer or of one model in it.
    fn cache_settings(&self, node: &mut Node) -> CacheSettings {
        let mode = node.take_parsed("prompt_cache", |value: String| match value.as_str() {
            "auto" => Ok(PromptCache::Auto),
            "off" => Ok(PromptCache::Off),
            _ => Err(format!("{value:?} is not a prompt_cache setting: use \"auto\" or \"off\"")),
        });
        let ttl = node.take_parsed("prompt_cache_ttl", |value: String| {
            CacheTtl::parse(&value).ok_or_else(|| format!("{value:?} is not a cache ttl: use \"5m\" or \"1h\""))
        });
        CacheSettings { mode, ttl }
    }

    /// `per_model."<model>"`: settings for one model, each a configured model.
    fn model_cache(&self, node: &mut Node, known: &Known) -> BTreeMap<String, CacheSettings> {
        let mut out = BTreeMap::new();
        for (model, mut model_node) in node.children("per_model") {
            if !known.is_model(&model) {
                self.error(
                    model_node.path.clone(),
                    format!("{model:?} is not a configured model ([models] or an endpoint's models)"),
                );
            }
            let settings = self.cache_settings(&mut model_node);
            model_node.finish();
            out.insert(model, settings);
        }
        out
    }

    /// A layer: `provider_only`, `models`, `routes`, the prompt-cache settings.
    fn layer(&self, node: &mut Node, known: &Known, parent: Option<&Layer>) -> Layer {
        let provider_only = node.take::<bool>("provider_only");
        let cache = self.cache_settings(node);
        let model_cache = self.model_cache(node, known);
        let models_path = node.child("models");
        let models = node.take::<Vec<String>>("models").map(|list| {
            let mut set = BTreeSet::new();
            for model in list {
                if !known.is_model(&model) {
                    self.error(
                        models_path.clone(),
                        format!("{model:?} is not a configured model ([models] or an endpoint's models)"),
                    );
                }
                set.insert(model);
            }
            set
        });
        let mut routes = BTreeMap::new();
        if let Some(mut routes_node) = node.table_at("routes") {
            for (model, value) in std::mem::take(&mut routes_node.table) {
                let path = routes_node.child(&model);
                if !known.is_model(&model) {
                    self.error(
                        path.clone(),
                        format!("{model:?} is not a configured model ([models] or an endpoint's models)"),
                    );
                    continue;
                }
                let allowed = models.as_ref().or(parent.and_then(|p| p.models.as_ref()));
                if allowed.is_some_and(|set| !set.contains(&model)) {
                    self.error(path.clone(), format!("{model:?} has routes but is not in this layer's models"));
                }
                if let Some(list) = self.route_list(&path, value, &model, known) {
                    routes.insert(model, list);
                }
            }
        }
        Layer { provider_only, models, routes, cache, model_cache }
    }

    fn route_list(&self, path: &str, value: Value, model: &str, known: &Known) -> Option<Vec<Route>> {
        let Value::Array(items) = value else {
            self.error(path, "must be a list of routes like [{ bedrock = {} }, { anthropic = {} }]");
            return None;
        };
        if items.is_empty() || items.len() > MAX_ROUTES {
            self.error(path, format!("must list 1 to {MAX_ROUTES} routes"));
            return None;
        }
        let mut routes = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}[{index}]");
            let Value::Table(table) = item else {
                self.error(item_path, "must be a table with one of bedrock, anthropic, openai");
                continue;
            };
            if table.len() != 1 {
                self.error(item_path, "must have exactly one of bedrock, anthropic, openai");
                continue;
            }
            let Some((kind, body)) = table.into_iter().next() else { continue };
            let body_path = key_path(&item_path, &kind);
            let Value::Table(body) = body else {
                self.error(body_path, "must be a table (use {} for the defaults)");
                continue;
            };
            let mut node = Section::root(&body_path, body, self.errors);
            let upstream = match kind.as_str() {
                "bedrock" => self.bedrock_route(&mut node, model, known),
                "anthropic" => self.anthropic_route(&mut node, model, known),
                "openai" => self.openai_route(&mut node, model, known),
                other => {
                    self.error(item_path, format!("unknown route kind {other:?}; use bedrock, anthropic or openai"));
                    node.table.clear();
                    None
                }
            };
            node.finish();
            if let Some(upstream) = upstream {
                routes.push(upstream);
            }
        }
        // Labels name routes in headers, logs and metrics: unique within a list.
        let mut labelled = Vec::with_capacity(routes.len());
        for upstream in routes {
            let base = upstream.kind_label();
            let taken = labelled
                .iter()
                .filter(|r: &&Route| r.label == base || r.label.starts_with(&format!("{base}#")))
                .count();
            let label = if taken == 0 { base } else { format!("{base}#{}", taken + 1) };
            labelled.push(Route { label, upstream });
        }
        Some(labelled)
    }

    fn bedrock_route(&self, node: &mut Node, model: &str, known: &Known) -> Option<Upstream> {
        let profile_path = node.child("profile");
        let profile = node.take::<String>("profile");
        if let Some(profile) = &profile
            && let Err(message) = crate::aws::validate_model_id(profile)
        {
            self.error(profile_path.clone(), message);
        }
        let region = node
            .take::<String>("region")
            .and_then(|r| crate::aws::validate_region(r).map_err(|m| self.error(node.child("region"), m)).ok());
        let role = node
            .take::<String>("role")
            .and_then(|r| RoleArn::parse(&r).map_err(|m| self.error(node.child("role"), m)).ok());
        let Some(configured) = known.bedrock_models.get(model) else {
            self.error(
                node.path.clone(),
                format!("{model:?} is not a [models] entry; a bedrock route needs its rules (add it to [models])"),
            );
            return None;
        };
        let model_id = profile.unwrap_or_else(|| configured.clone());
        Some(Upstream::Bedrock(BedrockRoute { model_id, region, role }))
    }

    fn anthropic_route(&self, node: &mut Node, model: &str, known: &Known) -> Option<Upstream> {
        let name = node.take::<String>("model").unwrap_or_else(|| model.to_owned());
        if !valid_model_name(&name) {
            self.error(node.child("model"), "must be an Anthropic model id like claude-sonnet-4-5-20250929");
            return None;
        }
        if !known.bedrock_models.contains_key(model) {
            self.error(
                node.path.clone(),
                format!("{model:?} is not a [models] entry; an anthropic route needs its rules"),
            );
            return None;
        }
        Some(Upstream::Anthropic(AnthropicRoute { model: name }))
    }

    fn openai_route(&self, node: &mut Node, model: &str, known: &Known) -> Option<Upstream> {
        let endpoint_path = node.child("endpoint");
        let Some(endpoint) = node.take::<String>("endpoint") else {
            self.error(endpoint_path, "is required: the name of a [routing.endpoints.<name>] table");
            return None;
        };
        if !known.endpoints.contains_key(&endpoint) {
            self.error(endpoint_path, format!("no endpoint {endpoint:?} in [routing.endpoints]"));
            return None;
        }
        let name = node.take::<String>("model").unwrap_or_else(|| model.to_owned());
        if !valid_model_name(&name) {
            self.error(node.child("model"), "must be the endpoint's model name (1-128 printable characters)");
            return None;
        }
        Some(Upstream::OpenAi(OpenAiRoute { endpoint, model: name }))
    }

    /// Every model a layer names (in `models` or `routes`) must keep a route once provider-only
    /// dropped the others; models it allows only implicitly are simply not offered.
    fn check_reachable(&self, policy: &RoutingPolicy) {
        let mut scopes: Vec<(String, &Layer, Option<&str>, Option<&str>)> =
            vec![("routing.default".into(), &policy.default, None, None)];
        for (uid, team) in &policy.teams {
            let team_path = key_path("routing.teams", uid);
            for (agent, layer) in &team.agents {
                scopes.push((key_path(&key_path(&team_path, "agents"), agent), layer, Some(uid), Some(agent)));
            }
            scopes.push((team_path, &team.layer, Some(uid), None));
        }
        for (path, layer, team, agent) in scopes {
            let scope = super::RouteScope { team, agent };
            let named: BTreeSet<&String> = layer.models.iter().flatten().chain(layer.routes.keys()).collect();
            for model in named {
                if let Err(super::RouteError::NoRoute { .. }) = policy.resolve(scope, model) {
                    self.error(
                        key_path(&key_path(&path, "routes"), model),
                        "provider_only leaves no route: add a bedrock route or take the model out of models",
                    );
                }
            }
        }
    }
}

/// What routes may refer to.
struct Known<'a> {
    bedrock_models: &'a BTreeMap<String, String>,
    endpoint_models: &'a BTreeMap<String, String>,
    endpoints: &'a BTreeMap<String, Endpoint>,
}

impl Known<'_> {
    fn is_model(&self, name: &str) -> bool {
        self.bedrock_models.contains_key(name) || self.endpoint_models.contains_key(name)
    }
}

fn effective_models<'a>(layer: &'a Layer, default: &'a Layer) -> Option<&'a BTreeSet<String>> {
    layer.models.as_ref().or(default.models.as_ref())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Model names travel in bodies, headers and metric labels: printable, no whitespace, bounded.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic())
}

/// A base URL's form and, for literal addresses, the address; host names are checked when the
/// connection is made.
fn check_base_url(raw: &str, policy: EgressPolicy) -> Result<url::Url, String> {
    let url = egress::check_url(raw, policy).map_err(|e| e.to_string())?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or fragment".into());
    }
    Ok(url)
}
