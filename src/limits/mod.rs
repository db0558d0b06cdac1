//! Limits and spend control per team, agent of a team, caller key and principal: requests per
//! minute, input and output tokens per minute, concurrent requests and streams, token budgets and
//! USD budgets per UTC day and month (the policy: [`policy`], `[limits]`, hot-reloaded with
//! `[routing]`), counted in this process or in Redis shared by every replica ([`store`],
//! [`redis`]; while Redis does not answer, `on_store_error` decides: this replica's own counters,
//! with the spend counted meanwhile added to Redis when it answers again, or a 503).
//!
//! The one rule, applied once per request by the dispatch (`crate::dispatch::exchange`):
//! 1. [`Limits::admit`], before any STS or upstream call: the request rates and concurrent
//!    requests of every scope the call falls in, all taken or none.
//! 2. [`Limits::reserve`], once the model and the request's size are known: token rates and
//!    budgets admit while their window has room, reserving an estimate (input: the body's bytes /
//!    4; output: `max_tokens`); a stream takes a stream slot.
//! 3. [`Limits::settle`], when the request's audit record is written (a stream's when it ends or
//!    its client leaves): the estimates corrected to the actual usage (Bedrock's counting: cache
//!    reads do not count against token limits, cache writes do; `prices.toml` `[counting]`), the
//!    spend added from the price table, slots released.
//!
//! A refusal is a 429 ([`Refusal::error`]; `insufficient_quota` for budgets) with `Retry-After`;
//! the room left is reported on every answer ([`View`], [`headers`]). A gateway limit is never a
//! failover class: the refusal ends the request before any route is tried.
//!
//! Must never: know HTTP beyond header names and values, see prompt text (sizes only), or count
//! anything in local mode (`byollm local` has no run, so no scope).

pub mod headers;
pub mod key;
pub mod policy;
pub mod redis;
pub mod store;
pub mod usage;
pub mod windows;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::LocalKey;

use arc_swap::ArcSwap;
use http::StatusCode;

use crate::error::{ApiError, ErrorKind};
use crate::models::prices::{Price, Tokens, Usd, prices};
use crate::observe::metrics::Metrics;
use crate::wire::usage::Usage;

pub use headers::{Naming, headers};
use key::{Key, ScopeKey};
pub use policy::{LimitSet, LimitsPolicy, OnStoreError};
use store::{Adjust, Check, LocalStore, Outcome, Room, Store, StoreError};
pub use usage::{BudgetRoom, UsageLine, UsageReport, cost, tokens};

/// Output tokens reserved for a request that names no `max_tokens`.
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 4096;
/// Bytes of a request body per input token reserved: an over-estimate for text in JSON.
pub const BYTES_PER_TOKEN_ESTIMATE: u64 = 4;

/// One kind of limit, as the policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    RequestsPerMinute,
    InputTokensPerMinute,
    OutputTokensPerMinute,
    ConcurrentRequests,
    ConcurrentStreams,
    TokensPerDay,
    TokensPerMonth,
    UsdPerDay,
    UsdPerMonth,
}

impl Limit {
    pub const ALL: [Limit; 9] = [
        Limit::RequestsPerMinute,
        Limit::InputTokensPerMinute,
        Limit::OutputTokensPerMinute,
        Limit::ConcurrentRequests,
        Limit::ConcurrentStreams,
        Limit::TokensPerDay,
        Limit::TokensPerMonth,
        Limit::UsdPerDay,
        Limit::UsdPerMonth,
    ];

    /// The policy's field name (also the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::RequestsPerMinute => "requests_per_minute",
            Limit::InputTokensPerMinute => "input_tokens_per_minute",
            Limit::OutputTokensPerMinute => "output_tokens_per_minute",
            Limit::ConcurrentRequests => "concurrent_requests",
            Limit::ConcurrentStreams => "concurrent_streams",
            Limit::TokensPerDay => "tokens_per_day",
            Limit::TokensPerMonth => "tokens_per_month",
            Limit::UsdPerDay => "usd_per_day",
            Limit::UsdPerMonth => "usd_per_month",
        }
    }

    /// A budget (refused as `insufficient_quota`), not a rate.
    pub fn is_budget(self) -> bool {
        matches!(self, Limit::TokensPerDay | Limit::TokensPerMonth | Limit::UsdPerDay | Limit::UsdPerMonth)
    }

    /// Counted in USD (nano-USD in the store), not tokens.
    pub fn is_usd(self) -> bool {
        matches!(self, Limit::UsdPerDay | Limit::UsdPerMonth)
    }

    /// The store key's prefix. A rate's key names its limit per minute too ([`key::Key`]): a
    /// rate's state is a time that means something only at one limit, so a reloaded limit starts
    /// a fresh count.
    fn key_kind(self) -> &'static str {
        match self {
            Limit::RequestsPerMinute => "rpm",
            Limit::InputTokensPerMinute => "itpm",
            Limit::OutputTokensPerMinute => "otpm",
            Limit::ConcurrentRequests => "creq",
            Limit::ConcurrentStreams => "cstr",
            Limit::TokensPerDay => "tokd",
            Limit::TokensPerMonth => "tokm",
            Limit::UsdPerDay => "usdd",
            Limit::UsdPerMonth => "usdm",
        }
    }
}

/// Who a request is for, as far as limits go (cloud runs; local mode has none).
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub team: &'a str,
    pub agent: Option<&'a str>,
    pub caller: Option<&'a str>,
    /// `actor:principal`.
    pub actor: &'a str,
    pub principal: &'a str,
}

/// One scope a request falls in, with its effective limits.
#[derive(Debug, Clone)]
struct Scope {
    key: ScopeKey,
    set: LimitSet,
}

fn scopes(policy: &LimitsPolicy, who: Who<'_>) -> Vec<Scope> {
    let mut scopes = Vec::with_capacity(4);
    let team = policy.team(who.team);
    if !team.is_empty() {
        scopes.push(Scope { key: ScopeKey::team(who.team), set: team });
    }
    if let Some(agent) = who.agent
        && let Some(set) = policy.teams.get(who.team).and_then(|t| t.agents.get(agent))
        && !set.is_empty()
    {
        scopes.push(Scope { key: ScopeKey::agent(who.team, agent), set: *set });
    }
    if let Some(caller) = who.caller
        && let Some(set) = policy.callers.get(caller)
        && !set.is_empty()
    {
        scopes.push(Scope { key: ScopeKey::caller(caller), set: *set });
    }
    let principal = policy.principal(who.team);
    if !principal.is_empty() {
        scopes.push(Scope { key: ScopeKey::principal(who.team, who.actor, who.principal), set: principal });
    }
    scopes
}

/// The room left in the tightest limit of each kind a client is told about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct View {
    pub requests: Option<Room>,
    pub input_tokens: Option<Room>,
    pub output_tokens: Option<Room>,
}

impl View {
    fn note(&mut self, limit: Limit, room: Room) {
        let slot = match limit {
            Limit::RequestsPerMinute => &mut self.requests,
            Limit::InputTokensPerMinute => &mut self.input_tokens,
            Limit::OutputTokensPerMinute => &mut self.output_tokens,
            _ => return,
        };
        if slot.is_none_or(|kept| room.remaining() < kept.remaining()) {
            *slot = Some(room);
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == View::default()
    }
}

/// A refused request: the error for the client and what the client is told about its room.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    pub view: View,
}

/// What the request reserved of one counter, corrected when it settles.
#[derive(Debug, Clone)]
struct Reserved {
    limit: Limit,
    key: Key,
    /// The counter's limit.
    ceiling: u64,
    amount: u64,
    /// Used after the reservation (the estimate included).
    used: u64,
    ttl_secs: u64,
    /// Index into the admission's scopes.
    scope: usize,
}

/// What a request holds from admission until it settles: its scopes, slots, reservations.
#[derive(Debug)]
pub struct Admission {
    policy: Arc<LimitsPolicy>,
    scopes: Vec<Scope>,
    /// Slot keys held.
    held: Vec<Key>,
    reserved: Vec<Reserved>,
    pub view: View,
    /// Counted in this process's counters because the shared store did not answer.
    local: bool,
    /// The request's lease on shared concurrency slots.
    lease: String,
    /// Token or spend limits apply: [`Limits::reserve`] needs an estimate.
    needs_estimate: bool,
}

impl Admission {
    /// A token or spend limit applies, so the request's size must be estimated.
    pub fn needs_estimate(&self) -> bool {
        self.needs_estimate
    }
}

/// What a request is expected to use, reserved before the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Estimate {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Estimate {
    /// From a request body: its size, and its top-level `max_tokens` (else
    /// [`DEFAULT_OUTPUT_ESTIMATE`]).
    pub fn of_body(body: &[u8]) -> Estimate {
        #[derive(serde::Deserialize)]
        struct Peek {
            max_tokens: Option<u64>,
            max_completion_tokens: Option<u64>,
        }
        let max_tokens =
            serde_json::from_slice::<Peek>(body).ok().and_then(|peek| peek.max_tokens.or(peek.max_completion_tokens));
        Estimate::of_size(body.len(), max_tokens)
    }

    /// From a body's size and the `max_tokens` it asks for (else [`DEFAULT_OUTPUT_ESTIMATE`]).
    pub fn of_size(body_bytes: usize, max_tokens: Option<u64>) -> Estimate {
        Estimate {
            input_tokens: (body_bytes as u64).div_ceil(BYTES_PER_TOKEN_ESTIMATE),
            output_tokens: max_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE),
        }
    }
}

/// What settling a request found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// Budgets at or past the alert fraction after this request (`usd_per_day`, ...).
    pub alerts: Vec<&'static str>,
}

/// A vector an admission fills and empties again, kept by each thread for its next request: a
/// reservation's counters (up to 28 of them) take a few kilobytes, past the allocator's
/// per-thread cache, so a new one per request cost a slow allocation and cold memory. A request
/// that finds its thread's vector taken (another request between its awaits) makes its own.
struct Reused<T: 'static>(&'static LocalKey<RefCell<Vec<T>>>);

/// The most elements a kept vector holds room for (a bigger one is dropped).
const REUSED_MAX: usize = 64;

impl<T> Reused<T> {
    fn take(&self, capacity: usize) -> Vec<T> {
        let mut kept = self.0.with_borrow_mut(std::mem::take);
        kept.reserve(capacity);
        kept
    }

    fn give(&self, mut vector: Vec<T>) {
        vector.clear();
        if vector.capacity() <= REUSED_MAX {
            self.0.with_borrow_mut(|kept| {
                if vector.capacity() > kept.capacity() {
                    *kept = vector;
                }
            });
        }
    }
}

thread_local! {
    static CHECK_VECTOR: RefCell<Vec<Check>> = const { RefCell::new(Vec::new()) };
    static TAG_VECTOR: RefCell<Vec<(usize, Limit, u64, u64)>> = const { RefCell::new(Vec::new()) };
    static RESERVED_VECTOR: RefCell<Vec<Reserved>> = const { RefCell::new(Vec::new()) };
    static ADJUSTMENT_VECTOR: RefCell<Vec<Adjust>> = const { RefCell::new(Vec::new()) };
}

static CHECKS: Reused<Check> = Reused(&CHECK_VECTOR);
static TAGS: Reused<(usize, Limit, u64, u64)> = Reused(&TAG_VECTOR);
static RESERVED: Reused<Reserved> = Reused(&RESERVED_VECTOR);
static ADJUSTMENTS: Reused<Adjust> = Reused(&ADJUSTMENT_VECTOR);

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The limits in force and where their counters live, shared by every request.
pub struct Limits {
    policy: ArcSwap<LimitsPolicy>,
    /// This process's counters: the store without Redis, and the fallback while Redis is away.
    local: Arc<LocalStore>,
    /// Redis, shared by replicas, when configured.
    shared: Option<Arc<dyn Store>>,
    /// Until when (µs) the shared store is not asked after it failed: requests meanwhile do not
    /// wait for its timeout.
    shared_down_until: AtomicU64,
    /// Spend and token-budget counts made on this replica while the shared store was away, added
    /// to it when it answers again.
    unsynced: Mutex<Vec<Adjust>>,
    metrics: Arc<Metrics>,
}

/// How long the shared store is left alone after a failure.
const STORE_RETRY_US: u64 = 1_000_000;

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

impl Limits {
    /// The limits of `policy`, counted in Redis when it names one (connected in the background;
    /// call at start, within the runtime), else in this process.
    pub fn new(policy: LimitsPolicy, metrics: Arc<Metrics>) -> Limits {
        let shared: Option<Arc<dyn Store>> = match &policy.store.redis_url {
            None => None,
            Some(_) => match redis::RedisStore::start(&policy.store) {
                Ok(store) => Some(store),
                Err(error) => {
                    // Validated with the policy; should it still fail, every request sees it.
                    tracing::error!(%error, "limits store not started");
                    Some(Arc::new(Unavailable(error)))
                }
            },
        };
        Limits {
            policy: ArcSwap::from_pointee(policy),
            local: Arc::new(LocalStore::new()),
            shared,
            shared_down_until: AtomicU64::new(0),
            unsynced: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<LimitsPolicy> {
        self.policy.load_full()
    }

    /// Put a new policy in force (its store settings take effect at the next start only).
    pub fn replace(&self, policy: LimitsPolicy) {
        self.policy.store(Arc::new(policy));
    }

    /// May `team` export credentials (`/v1/credentials*`)? A refusal names the setting.
    pub fn may_export(&self, team: &str) -> Result<(), ApiError> {
        if self.policy.load().may_export(team) {
            return Ok(());
        }
        Err(ApiError::forbidden(
            "credential_export_disabled",
            format!(
                "team {team:?} may not export credentials: its spend is limited through the gateway ([limits.teams.{team:?}] credentials = false)"
            ),
        ))
    }

    /// The price of `model` served by `upstream` in the policy in force.
    pub fn price(&self, model: &str, upstream: &crate::routing::Upstream) -> Option<Price> {
        self.policy.load().price(model, upstream)
    }

    /// Acquire `checks` (tagged `tags`) in the shared store, or this process's while it does not
    /// answer (`on_store_error = "allow"`); `Err` with the 503 under `"deny"`.
    async fn acquire(&self, policy: &LimitsPolicy, checks: &[Check], lease: &str) -> Result<(Outcome, bool), ApiError> {
        let now = now_us();
        if let Some(shared) = &self.shared {
            let down = now < self.shared_down_until.load(Ordering::Relaxed);
            let result = if down {
                Err(StoreError("unavailable (retried shortly)".into()))
            } else {
                shared.acquire(checks, now, lease).await
            };
            match result {
                Ok(outcome) => {
                    self.resync(shared.as_ref(), now).await;
                    return Ok((outcome, false));
                }
                Err(StoreError(error)) => {
                    if !down {
                        self.shared_down_until.store(now + STORE_RETRY_US, Ordering::Relaxed);
                    }
                    self.metrics.limit_store_errors.inc("acquire");
                    if policy.store.on_store_error == OnStoreError::Deny {
                        tracing::warn!(%error, "limits store unavailable: refusing (on_store_error = \"deny\")");
                        return Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            ErrorKind::Internal,
                            "limits_unavailable",
                            "the gateway cannot check its limits right now (its counter store does not answer); retry shortly",
                        )
                        .with_retry_after(1));
                    }
                    tracing::warn!(%error, "limits store unavailable: counting on this replica's own counters (on_store_error = \"allow\")");
                }
            }
        }
        let outcome = self.local.acquire_now(checks, now);
        if self.shared.is_some()
            && let Outcome::Admitted { .. } = outcome
        {
            // Budgets spent here are added to the shared counters when they answer again.
            let mut unsynced = self.unsynced.lock().unwrap_or_else(|p| p.into_inner());
            for check in checks {
                if let Check::Sum { key, cost, ttl_secs, .. } = check {
                    unsynced.push(Adjust::Sum { key: key.clone(), delta: *cost as i64, ttl_secs: *ttl_secs });
                }
            }
        }
        Ok((outcome, self.shared.is_some()))
    }

    /// Add what was counted on this replica while the shared store was away.
    async fn resync(&self, shared: &dyn Store, now: u64) {
        let pending = {
            let mut unsynced = self.unsynced.lock().unwrap_or_else(|p| p.into_inner());
            if unsynced.is_empty() {
                return;
            }
            std::mem::take(&mut *unsynced)
        };
        match shared.adjust(&pending, now, "-").await {
            Ok(()) => {
                tracing::info!(counters = pending.len(), "limits store answers again: local budget counts added to it")
            }
            Err(_) => self.unsynced.lock().unwrap_or_else(|p| p.into_inner()).extend(pending),
        }
    }

    /// Step 1: the request rates and concurrent requests of every scope of `who`. `Ok(None)`: no
    /// limit applies.
    pub async fn admit(&self, who: Who<'_>) -> Result<Option<Admission>, Refusal> {
        let policy = self.policy();
        let scopes = scopes(&policy, who);
        if scopes.is_empty() {
            return Ok(None);
        }
        let mut checks = Vec::with_capacity(scopes.len() * 2);
        let mut tags = Vec::with_capacity(scopes.len() * 2);
        let mut needs_estimate = false;
        for (index, scope) in scopes.iter().enumerate() {
            let set = &scope.set;
            if let Some(limit) = set.requests_per_minute {
                checks.push(Check::Rate {
                    key: scope.key.rate(Limit::RequestsPerMinute, limit),
                    limit,
                    cost: 1,
                    whole: true,
                });
                tags.push((index, Limit::RequestsPerMinute));
            }
            if let Some(limit) = set.concurrent_requests {
                checks.push(Check::Slots { key: scope.key.slots(Limit::ConcurrentRequests), limit });
                tags.push((index, Limit::ConcurrentRequests));
            }
            needs_estimate |= set.input_tokens_per_minute.is_some()
                || set.output_tokens_per_minute.is_some()
                || set.has_budget()
                || set.concurrent_streams.is_some();
        }
        let mut admission = Admission {
            policy: policy.clone(),
            held: Vec::with_capacity(scopes.len() * 2),
            scopes,
            reserved: Vec::new(),
            view: View::default(),
            local: false,
            lease: if self.shared.is_some() { redis::lease_id() } else { String::new() },
            needs_estimate,
        };
        if checks.is_empty() {
            return Ok(Some(admission));
        }
        let (outcome, local) = self
            .acquire(&policy, &checks, &admission.lease)
            .await
            .map_err(|error| Refusal { error, view: View::default() })?;
        admission.local = local;
        match outcome {
            Outcome::Admitted { rooms } => {
                for ((check, (_, limit)), room) in checks.into_iter().zip(tags).zip(rooms) {
                    admission.view.note(limit, room);
                    if let Check::Slots { key, .. } = check {
                        admission.held.push(key);
                    }
                }
                Ok(Some(admission))
            }
            Outcome::Refused { index, room, retry_after_secs } => {
                let (scope, limit) = tags[index];
                let mut view = admission.view;
                view.note(limit, room);
                Err(self.refuse(&admission.scopes[scope], limit, room, retry_after_secs, view))
            }
        }
    }

    /// Step 2: token rates, budgets and the stream slot, for a request expected to use
    /// `estimate`, priced at `price` (the first route's), streamed or not.
    pub async fn reserve(
        &self,
        admission: &mut Admission,
        estimate: Estimate,
        price: Option<Price>,
        stream: bool,
    ) -> Result<(), Refusal> {
        if !admission.needs_estimate {
            return Ok(());
        }
        let now = now_us();
        let window = windows::Windows::at(now / 1_000_000);
        let tokens = estimate.input_tokens.saturating_add(estimate.output_tokens);
        let usd = price.map_or(0, |p| {
            p.cost_nanos(Tokens { input: estimate.input_tokens, output: estimate.output_tokens, ..Tokens::default() })
        });
        // At most seven counters per scope: two token rates, four budgets and the stream slots.
        let mut checks = CHECKS.take(admission.scopes.len() * 7);
        let mut tags = TAGS.take(admission.scopes.len() * 7);
        for (index, scope) in admission.scopes.iter().enumerate() {
            let set = &scope.set;
            let rate = |limit: Limit, ceiling: u64, cost: u64| Check::Rate {
                key: scope.key.rate(limit, ceiling),
                limit: ceiling,
                cost,
                whole: false,
            };
            let sum = |limit: Limit, ceiling: u64, cost: u64, (window, ttl): (windows::Window, u64)| Check::Sum {
                key: scope.key.sum(limit, window),
                limit: ceiling,
                cost,
                ttl_secs: ttl,
            };
            for (limit, ceiling, cost) in [
                (Limit::InputTokensPerMinute, set.input_tokens_per_minute, estimate.input_tokens),
                (Limit::OutputTokensPerMinute, set.output_tokens_per_minute, estimate.output_tokens),
            ] {
                if let Some(ceiling) = ceiling {
                    checks.push(rate(limit, ceiling, cost));
                    tags.push((index, limit, ceiling, cost));
                }
            }
            for (limit, ceiling, cost, win) in [
                (Limit::TokensPerDay, set.tokens_per_day, tokens, window.day()),
                (Limit::TokensPerMonth, set.tokens_per_month, tokens, window.month()),
                (Limit::UsdPerDay, set.usd_per_day, usd, window.day()),
                (Limit::UsdPerMonth, set.usd_per_month, usd, window.month()),
            ] {
                if let Some(ceiling) = ceiling {
                    checks.push(sum(limit, ceiling, cost, win));
                    tags.push((index, limit, ceiling, cost));
                }
            }
            if stream && let Some(ceiling) = set.concurrent_streams {
                checks.push(Check::Slots { key: scope.key.slots(Limit::ConcurrentStreams), limit: ceiling });
                tags.push((index, Limit::ConcurrentStreams, ceiling, 1));
            }
        }
        if checks.is_empty() {
            CHECKS.give(checks);
            TAGS.give(tags);
            return Ok(());
        }
        let result = self.reserve_checks(admission, &mut checks, &mut tags).await;
        CHECKS.give(checks);
        TAGS.give(tags);
        result
    }

    /// [`Limits::reserve`]'s acquisition of `checks` (tagged by `tags`), emptied as they are
    /// noted in `admission`.
    async fn reserve_checks(
        &self,
        admission: &mut Admission,
        checks: &mut Vec<Check>,
        tags: &mut Vec<(usize, Limit, u64, u64)>,
    ) -> Result<(), Refusal> {
        let policy = admission.policy.clone();
        let (outcome, local) = self
            .acquire(&policy, checks, &admission.lease)
            .await
            .map_err(|error| Refusal { error, view: admission.view })?;
        admission.local |= local;
        match outcome {
            Outcome::Admitted { rooms } => {
                if admission.reserved.capacity() == 0 {
                    admission.reserved = RESERVED.take(checks.len());
                }
                for ((check, (scope, limit, ceiling, amount)), room) in checks.drain(..).zip(tags.drain(..)).zip(rooms)
                {
                    admission.view.note(limit, room);
                    match check {
                        Check::Slots { key, .. } => admission.held.push(key),
                        Check::Rate { key, .. } => admission.reserved.push(Reserved {
                            limit,
                            key,
                            ceiling,
                            amount,
                            used: room.used,
                            ttl_secs: 0,
                            scope,
                        }),
                        Check::Sum { key, ttl_secs, .. } => admission.reserved.push(Reserved {
                            limit,
                            key,
                            ceiling,
                            amount,
                            used: room.used,
                            ttl_secs,
                            scope,
                        }),
                    }
                }
                Ok(())
            }
            Outcome::Refused { index, room, retry_after_secs } => {
                let (scope, limit, _, _) = tags[index];
                let mut view = admission.view;
                view.note(limit, room);
                Err(self.refuse(&admission.scopes[scope], limit, room, retry_after_secs, view))
            }
        }
    }

    fn refuse(&self, scope: &Scope, limit: Limit, room: Room, retry_after_secs: u64, view: View) -> Refusal {
        self.metrics.limit_refusals.inc(limit.as_str());
        let shown = match limit {
            Limit::UsdPerDay | Limit::UsdPerMonth => format!("{} USD", Usd(room.limit).as_f64()),
            _ => room.limit.to_string(),
        };
        let (kind, code, what) = if limit.is_budget() {
            (ErrorKind::Quota, "insufficient_quota", "budget is spent")
        } else {
            (ErrorKind::RateLimit, "rate_limit_exceeded", "limit is reached")
        };
        let name = scope.key.describe();
        let message =
            format!("{name}: the gateway's {} {what} ({shown}); retry in {retry_after_secs}s", limit.as_str());
        tracing::info!(scope = %name, limit = limit.as_str(), retry_after_secs, "request refused by a limit");
        let error =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, kind, code, message).with_retry_after(retry_after_secs.max(1));
        Refusal { error, view }
    }

    /// Step 3: correct the reservations to `usage` and `cost`, release the slots. Never waits: a
    /// shared store is told in the background.
    pub fn settle(&self, admission: Admission, usage: &Usage, cost: Option<Usd>) -> Settled {
        let counting = prices().counting;
        let input = usage.input_tokens.unwrap_or(0)
            + if counting.cache_write { usage.cache_creation_input_tokens.unwrap_or(0) } else { 0 }
            + if counting.cache_read { usage.cache_read_input_tokens.unwrap_or(0) } else { 0 };
        let output = usage.output_tokens.unwrap_or(0);
        let spent = cost.map_or(0, |c| c.0);
        let mut adjustments = ADJUSTMENTS.take(admission.reserved.len() + admission.held.len());
        let mut settled = Settled::default();
        let Admission { policy, scopes, held, mut reserved, local, lease, .. } = admission;
        for reserved in reserved.drain(..) {
            let actual = match reserved.limit {
                Limit::InputTokensPerMinute => input,
                Limit::OutputTokensPerMinute => output,
                Limit::TokensPerDay | Limit::TokensPerMonth => input + output,
                Limit::UsdPerDay | Limit::UsdPerMonth => spent,
                _ => continue,
            };
            let delta = actual as i64 - reserved.amount as i64;
            if reserved.limit.is_budget() {
                let before = reserved.used.saturating_sub(reserved.amount);
                let after = before.saturating_add(actual);
                if let Some(team) = scopes[reserved.scope].key.team_name() {
                    let room = reserved.ceiling.saturating_sub(after);
                    let room = if reserved.limit.is_usd() { Usd(room).as_f64() } else { room as f64 };
                    self.metrics.set_budget_remaining(team, reserved.limit.as_str(), room);
                }
                let threshold = (reserved.ceiling as f64 * policy.alert_at) as u64;
                if after >= threshold {
                    settled.alerts.push(reserved.limit.as_str());
                    if before < threshold {
                        tracing::warn!(
                            scope = %scopes[reserved.scope].key.describe(),
                            limit = reserved.limit.as_str(),
                            used_fraction = after as f64 / reserved.ceiling.max(1) as f64,
                            "a budget passed its alert fraction (limits.alert_at_fraction)"
                        );
                    }
                }
            }
            if delta == 0 {
                continue;
            }
            adjustments.push(match reserved.limit {
                Limit::InputTokensPerMinute | Limit::OutputTokensPerMinute => {
                    Adjust::Rate { key: reserved.key, limit: reserved.ceiling, delta }
                }
                _ => Adjust::Sum { key: reserved.key, delta, ttl_secs: reserved.ttl_secs },
            });
        }
        RESERVED.give(reserved);
        adjustments.extend(held.into_iter().map(|key| Adjust::Release { key }));
        settled.alerts.dedup();
        if adjustments.is_empty() {
            ADJUSTMENTS.give(adjustments);
            return settled;
        }
        let now = now_us();
        match (&self.shared, local) {
            (Some(shared), false) => {
                let shared = shared.clone();
                let metrics = self.metrics.clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if let Err(StoreError(error)) = shared.adjust(&adjustments, now, &lease).await {
                            // Slots lapse with their lease; a lost spend correction is logged.
                            metrics.limit_store_errors.inc("settle");
                            tracing::warn!(%error, "limits store unavailable: a settlement was not recorded");
                        }
                    });
                }
            }
            (Some(_), true) => {
                self.local.adjust_now(&adjustments, now);
                let mut unsynced = self.unsynced.lock().unwrap_or_else(|p| p.into_inner());
                unsynced.extend(adjustments.into_iter().filter(|a| matches!(a, Adjust::Sum { .. })));
            }
            (None, _) => {
                self.local.adjust_now(&adjustments, now);
                ADJUSTMENTS.give(adjustments);
            }
        }
        settled
    }
}

/// A shared store that could not be started: every call fails, so `on_store_error` decides.
struct Unavailable(String);

impl Store for Unavailable {
    fn acquire<'a>(
        &'a self,
        _: &'a [Check],
        _: u64,
        _: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError(self.0.clone()))))
    }
    fn adjust<'a>(
        &'a self,
        _: &'a [Adjust],
        _: u64,
        _: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(Err(StoreError(self.0.clone()))))
    }
    fn sums<'a>(&'a self, _: &'a [Key]) -> futures_util::future::BoxFuture<'a, Result<Vec<Option<u64>>, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError(self.0.clone()))))
    }
    fn add_usage<'a>(
        &'a self,
        _: &'a str,
        _: &'a [(String, u64)],
        _: u64,
    ) -> futures_util::future::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(std::future::ready(Err(StoreError(self.0.clone()))))
    }
    fn usage<'a>(&'a self, _: &'a str) -> futures_util::future::BoxFuture<'a, Result<Vec<(String, u64)>, StoreError>> {
        Box::pin(std::future::ready(Err(StoreError(self.0.clone()))))
    }
}

#[cfg(test)]
mod tests;
