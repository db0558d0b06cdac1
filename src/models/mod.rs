//! The model catalog: what byollm knows about each Claude model on Bedrock, and the per-model rules
//! every surface applies (the chat adapter today, the Messages API and native routes later).
//!
//! Owns: `catalog.toml` (compiled in: ids, profiles, limits, thinking, effort, sampling, betas,
//! lifecycle, each entry with its sources), its loader, matching a configured Bedrock id (base id,
//! cross-region profile id or ARN) to its entry, resolving a `[models."<name>"]` config entry into a
//! [`ModelConfig`] (catalog rules plus the operator's overrides), and looking served models up by
//! public name or by a Bedrock id taken from a URL path. The rule checks themselves are in
//! [`rules`]; the price table (`prices.toml`) and its loader in [`prices`].
//!
//! Must never: do I/O, decide routing or authorization, or test model ids by substring. Facts about
//! models live in `catalog.toml`; code only reads them. Depends on nothing internal but
//! [`crate::error`].

pub mod messages;
pub mod prices;
pub mod rules;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

pub use rules::{ReasoningLevel, ReasoningPlan, Sampling, ThinkingOut, ThinkingRequest};

/// The catalog source, compiled in.
const CATALOG_TOML: &str = include_str!("catalog.toml");

/// How a model thinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThinkingMode {
    /// No extended thinking.
    None,
    /// `thinking: {type: "enabled", budget_tokens}` only.
    Budget,
    /// `thinking: {type: "adaptive"}` with effort; budget thinking still accepted (deprecated).
    Adaptive,
    /// Adaptive thinking only: `enabled` is refused.
    AdaptiveOnly,
}

/// Whether the model thinks when a request has no `thinking` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ThinkingDefault {
    Off,
    On,
}

/// `thinking.display` of adaptive thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Display {
    /// Thinking text comes back (summarized on the newest models).
    Summarized,
    /// Thinking blocks come back with their signature but no text.
    Omitted,
}

/// `output_config.effort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effort {
    Low,
    Medium,
    High,
    Xhigh,
    Max,
}

impl Effort {
    pub const ALL: [Effort; 5] = [Effort::Low, Effort::Medium, Effort::High, Effort::Xhigh, Effort::Max];

    pub fn as_str(self) -> &'static str {
        match self {
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::Xhigh => "xhigh",
            Effort::Max => "max",
        }
    }

    pub fn parse(value: &str) -> Option<Effort> {
        Effort::ALL.into_iter().find(|effort| effort.as_str() == value)
    }
}

impl fmt::Display for Effort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which sampling parameters a model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplingRule {
    /// `temperature`, `top_p` and `top_k`, in any combination.
    Free,
    /// `temperature` or `top_p`, not both.
    Exclusive,
    /// Only the values in [`ModelRules::sampling_defaults`] (which are then not sent), or nothing.
    DefaultsOnly,
}

/// The sampling values a `defaults_only` model accepts.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
}

/// How tool-call arguments can stream as the model writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolStreaming {
    /// `eager_input_streaming: true` on each tool (generally available).
    Eager,
    /// The `fine-grained-tool-streaming-2025-05-14` beta.
    Beta,
    /// Arguments arrive as Bedrock buffers them.
    None,
}

/// The beta that turns fine-grained tool streaming on for [`ToolStreaming::Beta`] models.
pub const TOOL_STREAMING_BETA: &str = "fine-grained-tool-streaming-2025-05-14";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    Text,
    Image,
}

/// How long a prompt cache entry lives after its last use (`cache_control.ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
pub enum CacheTtl {
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    OneHour,
}

impl CacheTtl {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheTtl::FiveMinutes => "5m",
            CacheTtl::OneHour => "1h",
        }
    }

    pub fn parse(value: &str) -> Option<CacheTtl> {
        [CacheTtl::FiveMinutes, CacheTtl::OneHour].into_iter().find(|ttl| ttl.as_str() == value)
    }
}

/// Prompt caching on a model: the shortest prompt prefix a breakpoint caches, and the TTLs its
/// `cache_control` takes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PromptCacheRule {
    pub min_tokens: u32,
    pub ttls: Vec<CacheTtl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleStatus {
    Active,
    Legacy,
    Deprecated,
}

impl LifecycleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStatus::Active => "active",
            LifecycleStatus::Legacy => "legacy",
            LifecycleStatus::Deprecated => "deprecated",
        }
    }
}

/// Where a model is in Bedrock's lifecycle; dates as `YYYY-MM-DD`, where known.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    pub status: LifecycleStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eol_not_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eol: Option<String>,
}

/// Everything a conversion needs to know about one model. Catalog fields, overridable per model in
/// config under the same names (see `catalog.toml` for what each means).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRules {
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub default_max_tokens: u32,
    pub thinking: ThinkingMode,
    pub thinking_default: ThinkingDefault,
    pub thinking_disable: bool,
    pub thinking_display: Display,
    pub efforts: Vec<Effort>,
    /// The efforts accepted while the model does not think on a request (thinking `disabled`, or
    /// absent where it is off by default); absent: every one of `efforts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efforts_without_thinking: Option<Vec<Effort>>,
    pub sampling: SamplingRule,
    #[serde(default)]
    pub sampling_defaults: SamplingDefaults,
    pub system_turns: bool,
    pub structured_outputs: bool,
    pub strict_tools: bool,
    pub forced_tool_choice: bool,
    pub prefill: bool,
    pub tool_streaming: ToolStreaming,
    pub betas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_usage_beta: Option<String>,
    pub input_modalities: Vec<Modality>,
    /// Prompt caching; `None`: the model caches nothing (no breakpoint is placed for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache: Option<PromptCacheRule>,
    /// Config only (false in the catalog): drop sampling parameters the model refuses instead of
    /// answering 400.
    #[serde(default)]
    pub drop_unsupported_params: bool,
}

impl ModelRules {
    /// Whether the model can think at all.
    pub fn reasons(&self) -> bool {
        self.thinking != ThinkingMode::None
    }

    pub fn accepts_images(&self) -> bool {
        self.input_modalities.contains(&Modality::Image)
    }

    /// Problems that make these rules unusable, each as `field: message`.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_output_tokens == 0 || self.context_window == 0 {
            problems.push("max_output_tokens / context_window: must be at least 1".to_owned());
        }
        if self.default_max_tokens == 0 || self.default_max_tokens > self.max_output_tokens {
            problems.push(format!(
                "default_max_tokens: must be between 1 and max_output_tokens ({})",
                self.max_output_tokens
            ));
        }
        if self.thinking == ThinkingMode::None && self.thinking_default == ThinkingDefault::On {
            problems.push("thinking_default: \"on\" needs a thinking mode other than \"none\"".to_owned());
        }
        for (name, value) in
            [("temperature", self.sampling_defaults.temperature), ("top_p", self.sampling_defaults.top_p)]
        {
            if value.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
                problems.push(format!("sampling_defaults.{name}: must be between 0 and 1"));
            }
        }
        let mut efforts = self.efforts.clone();
        efforts.sort();
        efforts.dedup();
        if efforts != self.efforts {
            problems.push("efforts: list each level once, lowest first (low medium high xhigh max)".to_owned());
        }
        if let Some(without) = &self.efforts_without_thinking {
            let mut sorted = without.clone();
            sorted.sort();
            sorted.dedup();
            if sorted != *without || without.iter().any(|effort| !self.efforts.contains(effort)) {
                problems.push(
                    "efforts_without_thinking: list each level once, lowest first, each one of efforts".to_owned(),
                );
            }
        }
        if let Some(cache) = &self.prompt_cache {
            let mut ttls = cache.ttls.clone();
            ttls.sort();
            ttls.dedup();
            if !(1..=1_000_000).contains(&cache.min_tokens) {
                problems.push("prompt_cache.min_tokens: must be between 1 and 1000000".to_owned());
            }
            if ttls != cache.ttls || !ttls.contains(&CacheTtl::FiveMinutes) {
                problems
                    .push("prompt_cache.ttls: list \"5m\" and optionally \"1h\", each once, in that order".to_owned());
            }
        }
        problems
    }
}

/// One `[[model]]` of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    /// The catalog name (`claude-opus-5-5`), what `family = "..."` in config refers to.
    pub family: String,
    pub display_name: String,
    /// The foundation-model id, `anthropic.claude-…`.
    pub base_id: String,
    /// Cross-region profile prefixes the model is known to have (`global`, `us`, ...).
    pub profiles: Vec<String>,
    pub lifecycle: Lifecycle,
    /// Where the facts come from.
    pub source: String,
    /// Conflicts between sources and the reading taken.
    pub note: Option<String>,
    pub rules: ModelRules,
}

/// The compiled-in catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub models: Vec<CatalogEntry>,
    /// Rules for an id that matches no entry.
    pub unknown: ModelRules,
    /// `reasoning_effort` → `thinking.budget_tokens` on budget models.
    pub budget_tokens: BTreeMap<ReasoningLevel, u32>,
    /// Public name → Bedrock id, served when the config has no `[models]`.
    pub defaults: Vec<(String, String)>,
}

/// The catalog, parsed once. The file is part of the binary and checked by the tests, so a parse
/// failure is a build defect and stops the process at start-up.
pub fn catalog() -> &'static Catalog {
    static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
        Catalog::parse(CATALOG_TOML).unwrap_or_else(|error| panic!("src/models/catalog.toml: {error}"))
    });
    &CATALOG
}

/// Meta fields of a `[[model]]` entry; every other key is a rule.
const ENTRY_FIELDS: [&str; 7] = ["family", "display_name", "base_id", "profiles", "lifecycle", "source", "note"];

impl Catalog {
    /// Parses catalog text; every problem is reported with the entry it is in.
    pub fn parse(text: &str) -> Result<Catalog, String> {
        let mut root: toml::Table = text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
        let unknown = match root.remove("unknown") {
            Some(toml::Value::Table(table)) => rules_from_table(table).map_err(|e| format!("[unknown]: {e}"))?,
            _ => return Err("[unknown] is required".into()),
        };
        let budget_tokens = match root.remove("budget_tokens") {
            Some(toml::Value::Table(table)) => {
                let mut out = BTreeMap::new();
                for (key, value) in table {
                    let level =
                        ReasoningLevel::parse(&key).ok_or_else(|| format!("[budget_tokens]: unknown level {key}"))?;
                    let tokens = value
                        .as_integer()
                        .and_then(|v| u32::try_from(v).ok())
                        .filter(|v| *v >= rules::MIN_THINKING_BUDGET)
                        .ok_or_else(|| format!("[budget_tokens].{key}: must be an integer of at least 1024"))?;
                    out.insert(level, tokens);
                }
                out
            }
            _ => return Err("[budget_tokens] is required".into()),
        };
        let mut models = Vec::new();
        for (index, item) in take_array(&mut root, "model")?.into_iter().enumerate() {
            let toml::Value::Table(mut table) = item else { return Err(format!("model[{index}] is not a table")) };
            let mut text_field = |key: &str| match table.remove(key) {
                Some(toml::Value::String(value)) => Ok(Some(value)),
                None => Ok(None),
                Some(_) => Err(format!("model[{index}].{key} must be a string")),
            };
            let family = text_field("family")?.ok_or_else(|| format!("model[{index}].family is required"))?;
            let at = |key: &str| format!("model {family:?}: {key}");
            let display_name = text_field("display_name")?.ok_or_else(|| at("display_name is required"))?;
            let base_id = text_field("base_id")?.ok_or_else(|| at("base_id is required"))?;
            let source =
                text_field("source")?.ok_or_else(|| at("source is required: name where the facts come from"))?;
            let note = text_field("note")?;
            let profiles: Vec<String> = table
                .remove("profiles")
                .ok_or_else(|| at("profiles is required"))?
                .try_into()
                .map_err(|e| at(&format!("profiles: {e}")))?;
            let lifecycle: Lifecycle = table
                .remove("lifecycle")
                .ok_or_else(|| at("lifecycle is required"))?
                .try_into()
                .map_err(|e| at(&format!("lifecycle: {e}")))?;
            debug_assert!(ENTRY_FIELDS.iter().all(|key| !table.contains_key(*key)));
            let rules = rules_from_table(table).map_err(|e| at(&e))?;
            if crate::aws::validate_model_id(&base_id).is_err()
                || base_id.starts_with("arn:")
                || crate::aws::split_model_id(&base_id).0.is_some()
            {
                return Err(at("base_id must be a foundation-model id like anthropic.claude-…"));
            }
            models.push(CatalogEntry { family, display_name, base_id, profiles, lifecycle, source, note, rules });
        }
        for (i, entry) in models.iter().enumerate() {
            if models[..i].iter().any(|other| other.family == entry.family || other.base_id == entry.base_id) {
                return Err(format!("model {:?}: family and base_id must be unique", entry.family));
            }
        }
        let mut defaults = Vec::new();
        for (index, item) in take_array(&mut root, "default")?.into_iter().enumerate() {
            let table = item.as_table().ok_or_else(|| format!("default[{index}] is not a table"))?;
            let field = |key: &str| {
                table
                    .get(key)
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| format!("default[{index}].{key} is required"))
            };
            if let Some(key) = table.keys().find(|key| !matches!(key.as_str(), "name" | "id")) {
                return Err(format!("default[{index}]: unknown key {key}"));
            }
            defaults.push((field("name")?, field("id")?));
        }
        if let Some(key) = root.keys().next() {
            return Err(format!("unknown top-level key {key}"));
        }
        Ok(Catalog { models, unknown, budget_tokens, defaults })
    }

    pub fn by_family(&self, family: &str) -> Option<&CatalogEntry> {
        self.models.iter().find(|entry| entry.family == family)
    }

    /// The entry a Bedrock id names: a base id, a cross-region profile id (`us.anthropic.…`), or the
    /// ARN of a foundation model or system-defined inference profile. Exact matches only.
    pub fn match_id(&self, id: &str) -> IdMatch<'_> {
        match crate::aws::split_model_id(id) {
            (_, None) => IdMatch::Opaque,
            (profile, Some(base)) => match self.models.iter().find(|entry| entry.base_id == base) {
                Some(entry) => IdMatch::Entry { entry, profile },
                None => IdMatch::Unknown,
            },
        }
    }

    pub fn families(&self) -> Vec<&str> {
        self.models.iter().map(|entry| entry.family.as_str()).collect()
    }
}

/// What [`Catalog::match_id`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum IdMatch<'a> {
    /// A catalog model, through a cross-region profile when `profile` is set.
    Entry { entry: &'a CatalogEntry, profile: Option<String> },
    /// An application inference profile (or another ARN) that does not say which model it wraps.
    Opaque,
    /// A model id the catalog does not know.
    Unknown,
}

fn take_array(root: &mut toml::Table, key: &str) -> Result<Vec<toml::Value>, String> {
    match root.remove(key) {
        Some(toml::Value::Array(items)) => Ok(items),
        None => Ok(Vec::new()),
        Some(_) => Err(format!("{key} must be an array of tables ([[{key}]])")),
    }
}

fn rules_from_table(table: toml::Table) -> Result<ModelRules, String> {
    let rules: ModelRules =
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.message().to_owned())?;
    match rules.problems().into_iter().next() {
        Some(problem) => Err(problem),
        None => Ok(rules),
    }
}

/// A configured model: what `[models."<name>"]` resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Bedrock model id, inference profile id, or application inference profile ARN: what is invoked.
    pub id: String,
    /// The catalog entry whose rules apply; `None` when the id matched none (conservative rules).
    pub family: Option<String>,
    pub rules: ModelRules,
}

impl ModelConfig {
    /// The catalog entry of this model, if any.
    pub fn entry(&self) -> Option<&'static CatalogEntry> {
        self.family.as_deref().and_then(|family| catalog().by_family(family))
    }
}

/// A resolved model and the warning it deserves, if any.
pub type Resolved = (ModelConfig, Option<String>);
/// A problem with one field of a `[models."<name>"]` entry: (field, message); an empty field is the
/// entry itself.
pub type FieldProblem = (String, String);

/// Resolves one `[models."<name>"]` entry: the catalog entry its id (or `family`) names, with every
/// rule in `overrides` (the entry's other keys) applied. `Ok` carries a warning when the id matches
/// no catalog entry or uses a profile the entry does not list.
pub fn resolve(
    name: &str,
    id: &str,
    family: Option<&str>,
    overrides: toml::Table,
) -> Result<Resolved, Vec<FieldProblem>> {
    let catalog = catalog();
    let mut errors = Vec::new();
    if let Err(message) = crate::aws::validate_model_id(id) {
        errors.push(("id".to_owned(), message));
    }
    let named = match family {
        Some(family) => match catalog.by_family(family) {
            Some(entry) => Some(entry),
            None => {
                errors.push((
                    "family".to_owned(),
                    format!(
                        "unknown model family {family:?}; `byollm models` lists them: {}",
                        catalog.families().join(", ")
                    ),
                ));
                None
            }
        },
        None => None,
    };
    let mut warning = None;
    let entry = match (catalog.match_id(id), named) {
        (IdMatch::Entry { entry, .. }, Some(named)) if entry.family != named.family => {
            errors.push((
                "family".to_owned(),
                format!("id {id:?} is {} ({}), not {}", entry.display_name, entry.family, named.family),
            ));
            None
        }
        (IdMatch::Entry { entry, profile }, _) => {
            if let Some(profile) = profile.filter(|p| !entry.profiles.contains(p)) {
                warning = Some(format!(
                    "model {name:?}: {} is not known to have a {profile:?} cross-region profile (known: {}); Bedrock may refuse {id}",
                    entry.display_name,
                    entry.profiles.join(", ")
                ));
            }
            Some(entry)
        }
        (_, Some(named)) => Some(named),
        (IdMatch::Opaque, None) => {
            warning = Some(format!(
                "model {name:?}: {id} does not say which model it serves; conservative rules apply until you set family = \"<catalog name>\" (byollm models lists them)"
            ));
            None
        }
        (IdMatch::Unknown, None) => {
            warning = Some(format!(
                "model {name:?}: {id} matches no catalog entry; conservative rules apply (no reasoning, default sampling only, {} output tokens): set family = \"<catalog name>\" or the rules themselves in its [models] entry",
                catalog.unknown.max_output_tokens
            ));
            None
        }
    };
    let base = entry.map_or(&catalog.unknown, |entry| &entry.rules);
    let rules = match apply_overrides(base, overrides) {
        Ok(rules) => Some(rules),
        Err(message) => {
            errors.push((String::new(), message));
            None
        }
    };
    match rules {
        Some(rules) if errors.is_empty() => {
            Ok((ModelConfig { id: id.to_owned(), family: entry.map(|e| e.family.clone()), rules }, warning))
        }
        _ => Err(errors),
    }
}

/// `base` with the keys of `overrides` replaced; unknown keys and wrong types are errors.
pub fn apply_overrides(base: &ModelRules, overrides: toml::Table) -> Result<ModelRules, String> {
    if overrides.is_empty() {
        return Ok(base.clone());
    }
    let mut table = toml::Table::try_from(base).map_err(|e| format!("internal: {e}"))?;
    for (key, value) in overrides {
        table.insert(key, value);
    }
    rules_from_table(table)
}

/// The models served when the config has no `[models]` section.
pub fn default_models() -> BTreeMap<String, ModelConfig> {
    let catalog = catalog();
    let mut out = BTreeMap::new();
    for (name, id) in &catalog.defaults {
        // Default ids are catalog ids, checked by the tests: they always resolve.
        if let Ok((model, _)) = resolve(name, id, None, toml::Table::new()) {
            out.insert(name.clone(), model);
        }
    }
    out
}

/// A served model by its public name.
pub fn find_by_name<'a>(models: &'a BTreeMap<String, ModelConfig>, name: &str) -> Option<(&'a str, &'a ModelConfig)> {
    models.get_key_value(name).map(|(name, model)| (name.as_str(), model))
}

/// A served model by a Bedrock id taken from a URL path (`/model/{id}/invoke`): percent-decoded,
/// then the model configured with exactly that id, else the first (by public name) configured model
/// of the same catalog entry that `fits(requested id, model)` (a client asking for
/// `us.anthropic.claude-opus-4-7` may be served by the model configured as
/// `us.anthropic.claude-opus-4-7-v1:0` or `anthropic.claude-opus-4-7`; the caller decides which
/// substitutes fit). `None` for a malformed or unserved id.
pub fn find_by_bedrock_id<'a>(
    models: &'a BTreeMap<String, ModelConfig>,
    path_segment: &str,
    fits: impl Fn(&str, &ModelConfig) -> bool,
) -> Option<(&'a str, &'a ModelConfig)> {
    let id = percent_decode(path_segment)?;
    if crate::aws::validate_model_id(&id).is_err() {
        return None;
    }
    if let Some(found) = models.iter().find(|(_, model)| model.id == id) {
        return Some((found.0.as_str(), found.1));
    }
    let IdMatch::Entry { entry, .. } = catalog().match_id(&id) else { return None };
    models
        .iter()
        .find(|(_, model)| model.family.as_deref() == Some(entry.family.as_str()) && fits(&id, model))
        .map(|(name, model)| (name.as_str(), model))
}

/// Strict `%XX` decoding; `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
