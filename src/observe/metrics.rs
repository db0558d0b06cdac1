//! Prometheus metrics, kept with `prometheus-client` (the Prometheus project's Rust client) and
//! rendered as OpenMetrics text on `/metrics`.
//!
//! Owns: the outcome counters every part of the gateway increments ([`Counter`], one label from a
//! fixed set), and the per-request series fed from the audit record ([`Metrics::observe`]):
//! duration and time-to-first-byte histograms, token counters by model and route, route
//! attempts, the prompt cache's share of the prompt by team and model (tokens read, written and
//! uncached, and the hit ratio), and the in-flight gauge; and requests refused for fields their
//! OpenAI-compatible endpoint does not take, by endpoint ([`Metrics::count_refused_fields`]).
//!
//! Labels never carry principals, runs, keys, URLs or anything a caller chooses freely. Model and route labels
//! come from the configuration (the routing policy names them), team labels from `[[teams]]` and
//! the callers' teams ([`Metrics::admit_teams`]); all are capped all the same
//! ([`BoundedLabel`]): anything else reads `unknown`, so a label can never leak a secret or grow
//! without bound.
//!
//! A request finds its series without a lock: a counter's fixed series are kept at construction,
//! a family's are kept by their labels' addresses once seen ([`Series`]), and the admitted label
//! names are read through an `ArcSwap`.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use foldhash::{HashMap, HashSet};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::observe::audit::{AuditRecord, RecordObserver};
use crate::upstream::openai_compat::OpenAiFailure;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A label set: every name and value is `&'static str` (fixed values, or a [`BoundedLabel`]'s kept
/// ones), so looking a series up per request copies pointers and allocates nothing.
///
/// It hashes as one number (its content hashed with foldhash): a family's map hashes with std's
/// SipHash, which prometheus-client does not let us choose, and SipHash over every name and value
/// cost about 500 instructions per lookup, some twenty lookups per request. Label values come
/// from bounded, configured sets, so a fixed seed is safe.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Labels<const N: usize>([(&'static str, &'static str); N]);

impl<const N: usize> Hash for Labels<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(foldhash::fast::FixedState::default().hash_one(self.0));
    }
}

impl<const N: usize> EncodeLabelSet for Labels<N> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }
}

/// The most series of one family whose handles [`Series`] keeps (a family has at most the
/// product of its labels' bounds; past this, lookups go to the family itself).
const SERIES_KEPT_MAX: usize = 4096;

/// Where a label set's strings are: a [`Series`] key. Every label is a `&'static str` from a
/// bounded set, so equal addresses are the same label; equal text at two addresses is two keys for
/// the one series the family gives both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Address<const N: usize>([[usize; 4]; N]);

impl<const N: usize> Hash for Address<N> {
    /// The values' addresses and lengths, mixed into one number (a family's names are the same in
    /// every key, so they are compared but not hashed).
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mixed = self.0.iter().fold(0u64, |mixed, [_, _, value, len]| {
            (mixed.rotate_left(17) ^ *value as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ *len as u64
        });
        state.write_u64(mixed);
    }
}

impl<const N: usize> Address<N> {
    fn of(labels: &Labels<N>) -> Address<N> {
        Address(
            labels.0.map(|(name, value)| [name.as_ptr() as usize, name.len(), value.as_ptr() as usize, value.len()]),
        )
    }
}

/// A family, with the handles of the series requests have used kept by their labels' addresses.
/// A request finds its series by hashing a few numbers, without a lock: the family's own lookup
/// takes a read lock (a write to a cache line every core shares) and compares every label's text.
/// Handles are added the first time a series is seen (the kept map is copied and swapped whole,
/// at most [`SERIES_KEPT_MAX`] times).
struct Series<const N: usize, M, C = fn() -> M> {
    family: Family<Labels<N>, M, C>,
    kept: ArcSwap<HashMap<Address<N>, M>>,
    adding: Mutex<()>,
}

impl<const N: usize, M: Clone + Default> Default for Series<N, M> {
    fn default() -> Self {
        Series::of(Family::default())
    }
}

impl<const N: usize, M: Clone, C: MetricConstructor<M> + Clone> Series<N, M, C> {
    fn of(family: Family<Labels<N>, M, C>) -> Self {
        Series { family, kept: ArcSwap::default(), adding: Mutex::new(()) }
    }

    /// Apply `update` to the series of `labels` (made, at zero, if it is new).
    fn with<R>(&self, labels: Labels<N>, update: impl FnOnce(&M) -> R) -> R {
        let address = Address::of(&labels);
        if let Some(metric) = self.kept.load().get(&address) {
            return update(metric);
        }
        let metric = self.family.get_or_create(&labels).clone();
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let kept = self.kept.load();
        if kept.len() < SERIES_KEPT_MAX && !kept.contains_key(&address) {
            let mut more = HashMap::clone(&kept);
            more.insert(address, metric.clone());
            self.kept.store(Arc::new(more));
        }
        update(&metric)
    }
}

/// A counter with one label whose values are fixed at construction.
#[derive(Debug)]
pub struct Counter {
    name: &'static str,
    help: &'static str,
    values: Vec<&'static str>,
    /// The series of each value, in `values`' order.
    series: Vec<PromCounter>,
    family: Family<Labels<1>, PromCounter>,
}

impl Counter {
    /// `name` ends in `_total`, as the series are exposed.
    pub fn new(name: &'static str, help: &'static str, label: &'static str, values: &[&'static str]) -> Counter {
        let family = Family::<Labels<1>, PromCounter>::default();
        // Every fixed value is exposed from the start, at zero; its series is kept, so counting
        // takes no lock.
        let series = values.iter().map(|value| family.get_or_create(&Labels([(label, *value)])).clone()).collect();
        Counter { name, help, values: values.to_vec(), series, family }
    }

    fn slot(&self, value: &str) -> Option<&PromCounter> {
        let index =
            self.values.iter().position(|v| *v == value).or_else(|| self.values.iter().position(|v| *v == "other"))?;
        self.series.get(index)
    }

    /// Count one event; a label value outside the fixed set counts as `other`.
    pub fn inc(&self, value: &str) {
        if let Some(series) = self.slot(value) {
            series.inc();
        }
    }

    /// Count `n` at once (token counters).
    pub fn add(&self, value: &str, n: u64) {
        if let Some(series) = self.slot(value) {
            series.inc_by(n);
        }
    }

    pub fn get(&self, value: &str) -> u64 {
        self.values.iter().position(|v| *v == value).map_or(0, |index| self.series[index].get())
    }

    fn register(&self, registry: &mut Registry) {
        // prometheus-client appends `_total` to counters itself.
        let name = self.name.strip_suffix("_total").unwrap_or(self.name);
        registry.register(name, self.help, self.family.clone());
    }
}

/// A label whose values come from the configuration only: names admitted at start and on each
/// policy reload ([`Metrics::admit`]) are kept, anything else a request carries (a model name a
/// client invented) reads `unknown`, so no caller can add a series. At most `max` names are
/// admitted (later ones read `other`).
///
/// An admitted name is stored once for the life of the process (leaked: at most `max` strings,
/// which the set would hold for as long anyway), so the label handed out is a `&'static str` and a
/// request's lookups allocate nothing.
#[derive(Debug)]
pub struct BoundedLabel {
    /// Read by every request without a lock; replaced whole when names are admitted.
    admitted: ArcSwap<HashSet<&'static str>>,
    adding: Mutex<()>,
    max: usize,
}

impl BoundedLabel {
    pub fn new(max: usize) -> BoundedLabel {
        BoundedLabel { admitted: ArcSwap::default(), adding: Mutex::new(()), max }
    }

    /// Admit configured names (again: admitting is idempotent).
    pub fn admit<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let mut admitted = HashSet::clone(&self.admitted.load());
        for name in names {
            if !admitted.contains(name) && admitted.len() < self.max {
                admitted.insert(Box::leak(name.to_owned().into_boxed_str()));
            }
        }
        self.admitted.store(Arc::new(admitted));
    }

    /// The label for `value`: itself when admitted, else `unknown`.
    pub fn value(&self, value: &str) -> &'static str {
        self.admitted.load().get(value).copied().unwrap_or("unknown")
    }
}

/// Most distinct model labels and route labels exposed.
pub const MAX_MODEL_LABELS: usize = 256;
pub const MAX_ROUTE_LABELS: usize = 64;
pub const MAX_ENDPOINT_LABELS: usize = 64;
pub const MAX_TEAM_LABELS: usize = 256;

/// Kinds of `byollm_prompt_cache_tokens_total`: the parts of a prompt.
pub const PROMPT_CACHE_KINDS: [&str; 3] = ["cache_read", "cache_write", "uncached"];

/// Every metric the gateway keeps.
pub struct Metrics {
    pub tokens_minted: Counter,
    pub jwks_requests: Counter,
    pub key_reloads: Counter,
    pub sts_calls: Counter,
    pub credential_cache: Counter,
    pub credential_refreshes: Counter,
    pub chat_requests: Counter,
    /// Bedrock-native routes (`/model/{id}/…`) and the Messages API (`/v1/messages*`).
    pub native_requests: Counter,
    pub messages_requests: Counter,
    /// Tokens Bedrock reported on the native routes and the Messages API, by kind.
    pub model_tokens: Counter,
    pub policy_reloads: Counter,
    pub audit_dropped: Counter,
    /// Requests refused by a gateway limit (`[limits]`), by limit.
    pub limit_refusals: Counter,
    /// Calls to the shared limits store (Redis) that failed, by operation.
    pub limit_store_errors: Counter,
    in_flight: Series<1, Gauge>,
    duration: Series<4, Histogram, fn() -> Histogram>,
    first_byte: Series<3, Histogram, fn() -> Histogram>,
    tokens: Series<3, PromCounter>,
    attempts: Series<3, PromCounter>,
    refused_fields: Series<1, PromCounter>,
    /// Tokens and spend by team and model; the room left in each team's budgets (`[limits]`).
    team_tokens: Series<3, PromCounter>,
    team_spend: Series<2, PromCounter<f64, AtomicU64>>,
    budget_remaining: Series<2, Gauge<f64, AtomicU64>>,
    prompt_cache_tokens: Series<3, PromCounter>,
    cache_hit_ratio: Series<2, Gauge<f64, AtomicU64>>,
    models: BoundedLabel,
    teams: BoundedLabel,
    routes: BoundedLabel,
    endpoints: BoundedLabel,
    registry: Registry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Outcome classes shared by request counters.
pub const OUTCOMES: &[&str] = &[
    "ok",
    "bad_request",
    "unauthenticated",
    "forbidden",
    "not_found",
    "throttled",
    "upstream_error",
    "error",
    "other",
];

/// The surfaces requests come in through.
pub const SURFACES: &[&str] = &["chat", "messages", "native", "other"];

/// The limits of `[limits]` (`crate::limits::Limit`), as refusal labels.
pub const LIMITS: &[&str] = &[
    "requests_per_minute",
    "input_tokens_per_minute",
    "output_tokens_per_minute",
    "concurrent_requests",
    "concurrent_streams",
    "tokens_per_day",
    "tokens_per_month",
    "usd_per_day",
    "usd_per_month",
    "other",
];

/// Kinds of [`Metrics::model_tokens`].
pub const TOKEN_KINDS: &[&str] = &["input", "output", "cache_read", "cache_write", "other"];

/// Token kinds of `byollm_tokens_total` (per model and route, from the audit record).
pub const REQUEST_TOKEN_KINDS: [&str; 5] = ["input", "output", "cache_read", "cache_write", "reasoning"];

fn duration_histogram() -> Histogram {
    Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0])
}

fn first_byte_histogram() -> Histogram {
    Histogram::new([0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Metrics {
            tokens_minted: Counter::new("byollm_tokens_minted_total", "Tokens minted, by result.", "result", OUTCOMES),
            jwks_requests: Counter::new(
                "byollm_discovery_requests_total",
                "Discovery and JWKS requests, by document and result.",
                "document",
                &["openid_configuration", "jwks", "jwks_not_modified", "other"],
            ),
            key_reloads: Counter::new(
                "byollm_key_reloads_total",
                "Key set reloads, by result.",
                "result",
                &["changed", "unchanged", "error", "other"],
            ),
            sts_calls: Counter::new(
                "byollm_sts_calls_total",
                "AssumeRoleWithWebIdentity calls, by outcome class.",
                "outcome",
                &[
                    "ok",
                    "trust_policy_mismatch",
                    "oidc_provider_missing",
                    "oidc_audience_mismatch",
                    "invalid_token",
                    "issuer_unreachable",
                    "token_expired",
                    "invalid_parameters",
                    "region_disabled",
                    "refused",
                    "throttled",
                    "upstream_error",
                    "other",
                ],
            ),
            credential_cache: Counter::new(
                "byollm_credential_cache_total",
                "Credential cache lookups.",
                "result",
                &["hit", "miss", "stale_served", "backoff", "other"],
            ),
            credential_refreshes: Counter::new(
                "byollm_credential_refreshes_total",
                "Credential refreshes, by result.",
                "result",
                &["ok", "error", "other"],
            ),
            chat_requests: Counter::new(
                "byollm_chat_requests_total",
                "Chat completion requests, by result.",
                "result",
                OUTCOMES,
            ),
            native_requests: Counter::new(
                "byollm_native_requests_total",
                "Bedrock-native requests (/model/{id}/...), by result.",
                "result",
                OUTCOMES,
            ),
            messages_requests: Counter::new(
                "byollm_messages_requests_total",
                "Anthropic Messages API requests, by result.",
                "result",
                OUTCOMES,
            ),
            model_tokens: Counter::new(
                "byollm_model_tokens_total",
                "Tokens Bedrock reported on the native routes and the Messages API, by kind.",
                "kind",
                TOKEN_KINDS,
            ),
            policy_reloads: Counter::new(
                "byollm_routing_reloads_total",
                "Routing policy reloads, by result.",
                "result",
                &["changed", "unchanged", "error", "other"],
            ),
            audit_dropped: Counter::new(
                "byollm_audit_lines_dropped_total",
                "Audit lines dropped because the writer fell behind.",
                "reason",
                &["backlog", "other"],
            ),
            limit_refusals: Counter::new(
                "byollm_limit_refusals_total",
                "Requests refused by a gateway limit ([limits]), by limit.",
                "limit",
                LIMITS,
            ),
            limit_store_errors: Counter::new(
                "byollm_limit_store_errors_total",
                "Calls to the shared limits store (Redis) that failed, by operation; under on_store_error = \"allow\" the replica counted on its own meanwhile.",
                "operation",
                &["acquire", "settle", "usage", "other"],
            ),
            in_flight: Series::default(),
            duration: Series::of(Family::new_with_constructor(duration_histogram)),
            first_byte: Series::of(Family::new_with_constructor(first_byte_histogram)),
            tokens: Series::default(),
            attempts: Series::default(),
            refused_fields: Series::default(),
            team_tokens: Series::default(),
            team_spend: Series::default(),
            budget_remaining: Series::default(),
            prompt_cache_tokens: Series::default(),
            cache_hit_ratio: Series::default(),
            models: BoundedLabel::new(MAX_MODEL_LABELS),
            teams: BoundedLabel::new(MAX_TEAM_LABELS),
            routes: BoundedLabel::new(MAX_ROUTE_LABELS),
            endpoints: BoundedLabel::new(MAX_ENDPOINT_LABELS),
            registry: Registry::default(),
        };
        let mut registry = Registry::default();
        for counter in [
            &metrics.tokens_minted,
            &metrics.jwks_requests,
            &metrics.key_reloads,
            &metrics.sts_calls,
            &metrics.credential_cache,
            &metrics.credential_refreshes,
            &metrics.chat_requests,
            &metrics.native_requests,
            &metrics.messages_requests,
            &metrics.model_tokens,
            &metrics.policy_reloads,
            &metrics.audit_dropped,
            &metrics.limit_refusals,
            &metrics.limit_store_errors,
        ] {
            counter.register(&mut registry);
        }
        for surface in SURFACES {
            metrics.in_flight.with(Labels([("surface", *surface)]), |_| ());
        }
        registry.register(
            "byollm_requests_in_flight",
            "Model requests being answered, by surface.",
            metrics.in_flight.family.clone(),
        );
        registry.register(
            "byollm_request_duration_seconds",
            "Time from request to the end of the answer (streams included), by surface, model, route and outcome.",
            metrics.duration.family.clone(),
        );
        registry.register(
            "byollm_time_to_first_byte_seconds",
            "Time from request to the first byte of a successful answer, by surface, model and route.",
            metrics.first_byte.family.clone(),
        );
        registry.register(
            "byollm_tokens",
            "Tokens reported by the upstream, by model, route and kind (input, output, cache_read, cache_write, reasoning).",
            metrics.tokens.family.clone(),
        );
        registry.register(
            "byollm_route_attempts",
            "Upstream attempts, by model, route and result (served, skipped, or the failure class).",
            metrics.attempts.family.clone(),
        );
        registry.register(
            "byollm_endpoint_fields_refused",
            "Requests refused before any call for top-level fields outside OpenAI's chat completions API and the endpoint's extra_fields, by endpoint.",
            metrics.refused_fields.family.clone(),
        );
        registry.register(
            "byollm_team_tokens",
            "Tokens of answered requests, by team, model and kind (input, output, cache_read, cache_write).",
            metrics.team_tokens.family.clone(),
        );
        registry.register(
            "byollm_team_spend_usd",
            "What answered requests cost in USD (the price table or [limits.prices]), by team and model; unpriced answers add nothing.",
            metrics.team_spend.family.clone(),
        );
        registry.register(
            "byollm_team_budget_remaining",
            "Room left in a team's budget after its latest answered request (USD for usd_per_*, tokens for tokens_per_*), by team and limit.",
            metrics.budget_remaining.family.clone(),
        );
        registry.register(
            "byollm_prompt_cache_tokens",
            "Prompt tokens of Claude routes (Bedrock, the Anthropic API), by team, model and kind: cache_read, cache_write, uncached.",
            metrics.prompt_cache_tokens.family.clone(),
        );
        registry.register(
            "byollm_prompt_cache_hit_ratio",
            "Share of the prompt tokens of Claude routes read from the prompt cache since start, by team and model.",
            metrics.cache_hit_ratio.family.clone(),
        );
        metrics.registry = registry;
        metrics
    }
}

fn surface_label(surface: &str) -> &'static str {
    SURFACES.iter().find(|s| **s == surface).copied().unwrap_or("other")
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight {
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Metrics {
    /// The label values the configuration names: public models, route labels, endpoints. Called
    /// at start and whenever a routing policy is put in force.
    pub fn admit<'a>(
        &self,
        models: impl IntoIterator<Item = &'a str>,
        routes: impl IntoIterator<Item = &'a str>,
        endpoints: impl IntoIterator<Item = &'a str>,
    ) {
        self.models.admit(models);
        self.routes.admit(routes);
        self.endpoints.admit(endpoints);
    }

    /// The team names the configuration gives (`[[teams]]`, the callers' teams): the only values
    /// of the `team` label. Called at start (teams change only with a restart).
    pub fn admit_teams<'a>(&self, teams: impl IntoIterator<Item = &'a str>) {
        self.teams.admit(teams);
    }

    /// The room left in a team's budget `limit` (one of [`LIMITS`]), in its unit.
    pub fn set_budget_remaining(&self, team: &str, limit: &'static str, remaining: f64) {
        let limit = LIMITS.iter().find(|l| **l == limit).copied().unwrap_or("other");
        self.budget_remaining
            .with(Labels([("team", self.teams.value(team)), ("limit", limit)]), |gauge| gauge.set(remaining));
    }

    /// Count a model request as in flight until the guard is dropped (after its stream ended).
    pub fn in_flight(&self, surface: &str) -> InFlight {
        let gauge = self.in_flight.with(Labels([("surface", surface_label(surface))]), Gauge::clone);
        gauge.inc();
        InFlight { gauge }
    }

    /// Feed the per-request series from a finished request's audit record.
    fn observe_record(&self, record: &AuditRecord) {
        let surface = surface_label(record.surface);
        let model = record.model.as_deref().map_or("none", |m| self.models.value(m));
        let route = record.route.as_deref().map_or("none", |r| self.routes.value(r));
        let labels =
            Labels([("surface", surface), ("model", model), ("route", route), ("outcome", outcome(record.status))]);
        self.duration.with(labels, |series| series.observe(record.duration_ms as f64 / 1000.0));
        if let Some(ttfb) = record.ttfb_ms {
            let labels = Labels([("surface", surface), ("model", model), ("route", route)]);
            self.first_byte.with(labels, |series| series.observe(ttfb as f64 / 1000.0));
        }
        let usage = &record.usage;
        let counts = [
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens,
            usage.reasoning_tokens,
        ];
        // `byollm_model_tokens_total`: the tokens Bedrock reported on the APIs that relay its
        // answers (the Messages API and the native routes), by kind.
        if matches!(record.surface, "messages" | "native") {
            for (kind, count) in TOKEN_KINDS.iter().zip(&counts[..4]) {
                if let Some(count) = count {
                    self.model_tokens.add(kind, *count);
                }
            }
        }
        for (kind, count) in REQUEST_TOKEN_KINDS.iter().zip(counts) {
            if let Some(count) = count.filter(|c| *c > 0) {
                let labels = Labels([("model", model), ("route", route), ("kind", *kind)]);
                self.tokens.with(labels, |series| series.inc_by(count));
            }
        }
        for attempt in &record.attempts {
            let labels =
                Labels([("model", model), ("route", self.routes.value(&attempt.route)), ("result", attempt.result)]);
            self.attempts.with(labels, |series| series.inc());
        }
        if let Some(team) = record.team.as_deref() {
            let team = self.teams.value(team);
            for (kind, count) in REQUEST_TOKEN_KINDS[..4].iter().zip(counts) {
                if let Some(count) = count.filter(|c| *c > 0) {
                    self.team_tokens.with(Labels([("team", team), ("model", model), ("kind", *kind)]), |series| {
                        series.inc_by(count)
                    });
                }
            }
            if let Some(cost) = record.cost_usd.filter(|c| c.0 > 0) {
                self.team_spend.with(Labels([("team", team), ("model", model)]), |series| series.inc_by(cost.as_f64()));
            }
        }
        self.observe_prompt_cache(record, model);
    }

    /// The prompt cache's part of a Claude route's prompt, by team and model, and the hit ratio
    /// since start. Routes to OpenAI-compatible endpoints (labelled `openai:<endpoint>`) are left
    /// out: their prompt tokens include the cached ones, and their caching is theirs.
    fn observe_prompt_cache(&self, record: &AuditRecord, model: &'static str) {
        let usage = &record.usage;
        let Some(route) = record.route.as_deref() else { return };
        if route.starts_with("openai:")
            || (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens)
                == (None, None, None)
        {
            return;
        }
        // No team: local mode (`(none)` is no uid: uids are letters, digits, `_` and `-`).
        let team = record.team.as_deref().map_or("(none)", |team| self.teams.value(team));
        let parts = [usage.cache_read_input_tokens, usage.cache_creation_input_tokens, usage.input_tokens];
        let mut totals = [0u64; 3];
        for ((kind, count), total) in PROMPT_CACHE_KINDS.iter().zip(parts).zip(&mut totals) {
            *total =
                self.prompt_cache_tokens.with(Labels([("team", team), ("model", model), ("kind", *kind)]), |series| {
                    series.inc_by(count.unwrap_or(0));
                    series.get()
                });
        }
        let prompt: u64 = totals.iter().sum();
        if prompt > 0 {
            self.cache_hit_ratio.with(Labels([("team", team), ("model", model)]), |series| {
                series.set(totals[0] as f64 / prompt as f64)
            });
        }
    }

    /// Count a request an OpenAI-compatible route refused for its fields (any other failure is not
    /// counted). Labelled by the endpoint's configured name, never by a field a caller made up.
    pub fn count_refused_fields(&self, endpoint: &str, failure: &OpenAiFailure) {
        if let OpenAiFailure::Fields { .. } = failure {
            self.refused_fields.with(Labels([("endpoint", self.endpoints.value(endpoint))]), |series| series.inc());
        }
    }

    /// The OpenMetrics text of every series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        if encode(&mut out, &self.registry).is_err() {
            tracing::warn!("metrics could not be rendered");
        }
        out
    }
}

impl RecordObserver for Metrics {
    fn observe(&self, record: &AuditRecord) {
        self.observe_record(record);
    }

    fn line_dropped(&self, _record: &AuditRecord) {
        self.audit_dropped.inc("backlog");
    }
}

/// The outcome class of an HTTP status, for counters.
pub fn outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        429 => "throttled",
        400..=499 => "bad_request",
        502..=504 => "upstream_error",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::audit::{AttemptRecord, Usage};

    #[test]
    fn equal_label_sets_are_one_series_wherever_their_strings_live() {
        let family = Family::<Labels<2>, PromCounter>::default();
        let team: &'static str = String::leak("acme".to_owned());
        family.get_or_create(&Labels([("team", "acme"), ("kind", "input")])).inc();
        family.get_or_create(&Labels([("team", team), ("kind", "input")])).inc();
        family.get_or_create(&Labels([("team", team), ("kind", "output")])).inc();
        assert_eq!(family.get_or_create(&Labels([("team", "acme"), ("kind", "input")])).get(), 2);
        let mut registry = Registry::default();
        registry.register("t", "test", family);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains("t_total{team=\"acme\",kind=\"input\"} 2"), "{text}");
        assert!(text.contains("t_total{team=\"acme\",kind=\"output\"} 1"), "{text}");
    }

    #[test]
    fn kept_handles_count_in_the_familys_series_and_lookups_past_the_bound_still_count() {
        let series = Series::<2, PromCounter>::default();
        let team: &'static str = String::leak("acme".to_owned());
        series.with(Labels([("team", "acme"), ("kind", "input")]), |c| c.inc());
        // The same text at another address: another key, the same series.
        series.with(Labels([("team", team), ("kind", "input")]), |c| c.inc());
        // Found among the kept handles this time.
        series.with(Labels([("team", "acme"), ("kind", "input")]), |c| c.inc());
        assert_eq!(series.kept.load().len(), 2);
        for _ in 0..SERIES_KEPT_MAX {
            let team: &'static str = String::leak("acme".to_owned());
            series.with(Labels([("team", team), ("kind", "input")]), |c| c.inc());
        }
        assert_eq!(series.kept.load().len(), SERIES_KEPT_MAX, "no more handles kept past the bound");
        let mut registry = Registry::default();
        registry.register("t", "test", series.family.clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let expected = format!("t_total{{team=\"acme\",kind=\"input\"}} {}", 3 + SERIES_KEPT_MAX);
        assert!(text.contains(&expected), "{text}");
    }

    #[test]
    fn counts_and_renders_fixed_labels_only() {
        let metrics = Metrics::default();
        metrics.tokens_minted.inc("ok");
        metrics.tokens_minted.inc("scoped_principal:acme/user:alice");
        assert_eq!(metrics.tokens_minted.get("ok"), 1);
        assert_eq!(metrics.tokens_minted.get("other"), 1);
        let text = metrics.render();
        assert!(text.contains("byollm_tokens_minted_total{result=\"ok\"} 1"), "{text}");
        assert!(text.contains("byollm_chat_requests_total{result=\"forbidden\"} 0"), "{text}");
        assert!(text.contains("# TYPE byollm_tokens_minted counter"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert!(!text.contains("alice"));
        assert_eq!(outcome(403), "forbidden");
        assert_eq!(outcome(503), "upstream_error");
    }

    fn record(model: &str, route: &str) -> AuditRecord {
        AuditRecord {
            surface: "chat",
            model: Some(model.into()),
            route: Some(route.into()),
            status: 200,
            duration_ms: 1500,
            ttfb_ms: Some(200),
            usage: Usage {
                input_tokens: Some(12),
                output_tokens: Some(7),
                cache_read_input_tokens: Some(3),
                cache_creation_input_tokens: Some(0),
                reasoning_tokens: None,
            },
            attempts: vec![
                AttemptRecord {
                    route: "bedrock".into(),
                    upstream_model: "m".into(),
                    result: "throttled",
                    status: Some(429),
                    code: None,
                },
                AttemptRecord {
                    route: route.into(),
                    upstream_model: "m".into(),
                    result: "served",
                    status: Some(200),
                    code: None,
                },
            ],
            ..AuditRecord::default()
        }
    }

    #[test]
    fn requests_feed_histograms_token_counters_and_attempts() {
        let metrics = Metrics::default();
        metrics.admit(["claude-sonnet-4-5"], ["anthropic", "bedrock"], []);
        {
            let _guard = metrics.in_flight("chat");
            assert!(metrics.render().contains("byollm_requests_in_flight{surface=\"chat\"} 1"));
        }
        assert!(metrics.render().contains("byollm_requests_in_flight{surface=\"chat\"} 0"));
        metrics.observe(&record("claude-sonnet-4-5", "anthropic"));
        metrics.observe(&record("claude-sonnet-4-5", "anthropic"));
        let text = metrics.render();
        for line in [
            "byollm_tokens_total{model=\"claude-sonnet-4-5\",route=\"anthropic\",kind=\"input\"} 24",
            "byollm_tokens_total{model=\"claude-sonnet-4-5\",route=\"anthropic\",kind=\"output\"} 14",
            "byollm_tokens_total{model=\"claude-sonnet-4-5\",route=\"anthropic\",kind=\"cache_read\"} 6",
            "byollm_route_attempts_total{model=\"claude-sonnet-4-5\",route=\"bedrock\",result=\"throttled\"} 2",
            "byollm_route_attempts_total{model=\"claude-sonnet-4-5\",route=\"anthropic\",result=\"served\"} 2",
            "byollm_request_duration_seconds_count{surface=\"chat\",model=\"claude-sonnet-4-5\",route=\"anthropic\",outcome=\"ok\"} 2",
            "byollm_request_duration_seconds_bucket{le=\"2.5\",surface=\"chat\",model=\"claude-sonnet-4-5\",route=\"anthropic\",outcome=\"ok\"} 2",
            "byollm_time_to_first_byte_seconds_sum{surface=\"chat\",model=\"claude-sonnet-4-5\",route=\"anthropic\"} 0.4",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("byollm_tokens_total{model=\"claude-sonnet-4-5\",route=\"anthropic\",kind=\"cache_write\"}"),
            "zero counts add no series"
        );
    }

    #[test]
    fn the_prompt_cache_hit_ratio_is_kept_by_team_and_model_for_claude_routes() {
        let metrics = Metrics::default();
        metrics.admit(["claude-sonnet-4-5"], ["bedrock", "anthropic", "openai:openrouter"], ["openrouter"]);
        metrics.admit_teams(["acme", "other"]);
        let cached = |team: Option<&str>, route: &str, read: u64, write: u64, input: u64| AuditRecord {
            team: team.map(str::to_owned),
            usage: Usage {
                input_tokens: Some(input),
                cache_read_input_tokens: Some(read),
                cache_creation_input_tokens: Some(write),
                ..Usage::default()
            },
            ..record("claude-sonnet-4-5", route)
        };
        metrics.observe(&cached(Some("acme"), "bedrock", 0, 3000, 100));
        metrics.observe(&cached(Some("acme"), "anthropic", 3000, 200, 100));
        metrics.observe(&cached(Some("other"), "bedrock", 50, 0, 50));
        metrics.observe(&cached(None, "bedrock", 30, 10, 60));
        // An OpenAI-compatible endpoint's prompt tokens include its cached ones: left out.
        metrics.observe(&cached(Some("acme"), "openai:openrouter", 9000, 0, 9000));
        let text = metrics.render();
        for line in [
            "byollm_prompt_cache_tokens_total{team=\"acme\",model=\"claude-sonnet-4-5\",kind=\"cache_read\"} 3000",
            "byollm_prompt_cache_tokens_total{team=\"acme\",model=\"claude-sonnet-4-5\",kind=\"cache_write\"} 3200",
            "byollm_prompt_cache_tokens_total{team=\"acme\",model=\"claude-sonnet-4-5\",kind=\"uncached\"} 200",
            // 3000 read of 6400 prompt tokens.
            "byollm_prompt_cache_hit_ratio{team=\"acme\",model=\"claude-sonnet-4-5\"} 0.46875",
            "byollm_prompt_cache_hit_ratio{team=\"other\",model=\"claude-sonnet-4-5\"} 0.5",
            "byollm_prompt_cache_hit_ratio{team=\"(none)\",model=\"claude-sonnet-4-5\"} 0.3",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        // A team the configuration does not name (a uid a request carried) is no label.
        for index in 0..300 {
            metrics.observe(&cached(Some(&format!("team-{index}")), "bedrock", 1, 0, 1));
        }
        let text = metrics.render();
        assert!(!text.contains("team-"), "{text}");
        assert!(text.contains("byollm_prompt_cache_hit_ratio{team=\"unknown\",model=\"claude-sonnet-4-5\"} 0.5"));
    }

    #[test]
    fn refused_fields_are_counted_by_endpoint_never_by_field() {
        let metrics = Metrics::default();
        metrics.admit([], [], ["openrouter"]);
        let refused = OpenAiFailure::Fields { names: vec!["models".into(), "x-secret-sk-123".into()], count: 2 };
        metrics.count_refused_fields("openrouter", &refused);
        metrics.count_refused_fields("openrouter", &refused);
        metrics.count_refused_fields("openrouter", &OpenAiFailure::Body("not JSON"));
        let text = metrics.render();
        assert!(text.contains("byollm_endpoint_fields_refused_total{endpoint=\"openrouter\"} 2"), "{text}");
        assert!(!text.contains("\"models\"") && !text.contains("sk-123"), "{text}");
    }

    #[test]
    fn spend_and_tokens_by_configured_team_and_model_and_budget_room() {
        let metrics = Metrics::default();
        metrics.admit(["claude-sonnet-4-5"], ["bedrock"], []);
        metrics.admit_teams(["acme"]);
        let mut answered = record("claude-sonnet-4-5", "bedrock");
        answered.team = Some("acme".into());
        answered.usage.cache_read_input_tokens = Some(40);
        answered.cost_usd = Some(crate::observe::audit::Usd(2_500_000));
        metrics.observe(&answered);
        metrics.observe(&answered);
        answered.team = Some("made-up-team".into());
        metrics.observe(&answered);
        metrics.set_budget_remaining("acme", "usd_per_day", 4.5);
        metrics.set_budget_remaining("acme", "not-a-limit", 1.0);
        let text = metrics.render();
        assert!(
            text.contains("byollm_team_spend_usd_total{team=\"acme\",model=\"claude-sonnet-4-5\"} 0.005"),
            "{text}"
        );
        assert!(text.contains("byollm_team_spend_usd_total{team=\"unknown\",model=\"claude-sonnet-4-5\"} 0.0025"));
        assert!(
            text.contains("byollm_team_tokens_total{team=\"acme\",model=\"claude-sonnet-4-5\",kind=\"cache_read\"} 80")
        );
        assert!(text.contains("byollm_team_budget_remaining{team=\"acme\",limit=\"usd_per_day\"} 4.5"));
        assert!(text.contains("byollm_team_budget_remaining{team=\"acme\",limit=\"other\"} 1.0"));
        assert!(!text.contains("made-up-team"));
    }

    #[test]
    fn only_configured_names_become_labels() {
        let metrics = Metrics::default();
        metrics.admit(["claude-sonnet-4-5"], ["bedrock", "anthropic"], ["openrouter"]);
        for index in 0..300 {
            metrics.observe(&record(&format!("junk-{index}"), "bedrock"));
        }
        metrics.observe(&record("claude-sonnet-4-5", "anthropic"));
        let text = metrics.render();
        assert!(!text.contains("junk-"), "{text}");
        assert!(text.contains("model=\"unknown\""));
        assert!(text.contains("model=\"claude-sonnet-4-5\""));
        let label = BoundedLabel::new(2);
        label.admit(["a", "b", "c"]);
        label.admit(["a"]);
        assert_eq!(
            [label.value("a"), label.value("b"), label.value("c"), label.value("zz")],
            ["a", "b", "unknown", "unknown"]
        );
    }
}
