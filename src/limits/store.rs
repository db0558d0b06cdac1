//! Where limit counters live: the [`Store`] trait and its in-process implementation
//! ([`LocalStore`]); the Redis one, shared by replicas, is in [`super::redis`].
//!
//! Three kinds of counter, each named by a [`Key`] the caller builds:
//! - a rate per minute ([`Check::Rate`]): GCRA (the generic cell rate algorithm), one
//!   "theoretical arrival time" per key; a limit of N per minute admits a burst of N, then one
//!   every 60/N s. Token rates reserve an estimate and are settled with the actual count.
//! - concurrency slots ([`Check::Slots`]): held from admission until the request's audit record
//!   is written (a stream's when it ends).
//! - a windowed sum ([`Check::Sum`]): tokens or nano-USD within a UTC calendar day or month (the
//!   key names the window; it expires after it).
//!
//! An acquisition checks every counter it names and takes room in all of them, or in none: a
//! request refused by its agent's limit spends nothing of its team's. Must never: decide which
//! limits apply (that is [`super::Limits`]) or know HTTP.

use std::sync::Mutex;

use foldhash::HashMap;
use futures_util::future::BoxFuture;

pub use super::key::Key;
use super::now_us;
use super::windows::Window;

/// One minute, the window of every rate, in microseconds.
pub const MINUTE_US: u64 = 60_000_000;

/// One counter to check and take room in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// `cost` units of a rate of `limit` per minute. `whole`: admitted only if all of `cost`
    /// fits (requests); else while there is room for one more unit (token estimates).
    Rate { key: Key, limit: u64, cost: u64, whole: bool },
    /// One of `limit` slots.
    Slots { key: Key, limit: u64 },
    /// `cost` more of a sum of at most `limit` (admitted while below it), kept `ttl_secs`.
    Sum { key: Key, limit: u64, cost: u64, ttl_secs: u64 },
}

impl Check {
    pub fn key(&self) -> &Key {
        match self {
            Check::Rate { key, .. } | Check::Slots { key, .. } | Check::Sum { key, .. } => key,
        }
    }
}

/// A counter after an acquisition: its limit, what is used, and in how many seconds it is whole
/// again (rates), or its window ends (sums).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Room {
    pub limit: u64,
    pub used: u64,
    pub reset_secs: u64,
}

impl Room {
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// What an acquisition came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Room taken in every counter; `rooms[i]` is `checks[i]`'s.
    Admitted { rooms: Vec<Room> },
    /// `checks[index]` had no room; nothing was taken. Come back in `retry_after_secs`.
    Refused { index: usize, room: Room, retry_after_secs: u64 },
}

/// A correction made once a request is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adjust {
    /// The estimate reserved in a rate was off by `delta` units (negative: gives room back).
    Rate { key: Key, limit: u64, delta: i64 },
    /// The estimate added to a sum was off by `delta`.
    Sum { key: Key, delta: i64, ttl_secs: u64 },
    /// A slot is free again.
    Release { key: Key },
}

/// The store could not be asked (Redis down, slow or refusing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

/// Where counters live.
pub trait Store: Send + Sync {
    /// Check `checks` at `now_us` (microseconds since the epoch) and take room in all or none;
    /// slots are taken for `lease` (one per request).
    fn acquire<'a>(
        &'a self,
        checks: &'a [Check],
        now_us: u64,
        lease: &'a str,
    ) -> BoxFuture<'a, Result<Outcome, StoreError>>;
    /// Apply corrections, and release `lease`'s slots.
    fn adjust<'a>(
        &'a self,
        adjustments: &'a [Adjust],
        now_us: u64,
        lease: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Current values of sums (`None`: no such key), for `/v1/usage`.
    fn sums<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<Option<u64>>, StoreError>>;
    /// Add `delta` to counters of a hash (usage by agent, model and kind), kept `ttl_secs`.
    fn add_usage<'a>(
        &'a self,
        key: &'a str,
        fields: &'a [(String, u64)],
        ttl_secs: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Every field of a usage hash.
    fn usage<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<(String, u64)>, StoreError>>;
}

/// The GCRA interval of one unit of a rate of `limit` per minute, in microseconds.
pub fn interval_us(limit: u64) -> u64 {
    (MINUTE_US / limit.max(1)).max(1)
}

/// Seconds, rounded up.
fn ceil_secs(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

/// One GCRA step on `tat` (the key's theoretical arrival time): the outcome and the new time.
pub fn gcra(tat: u64, now: u64, limit: u64, cost: u64, whole: bool) -> (Result<Room, (Room, u64)>, u64) {
    let interval = interval_us(limit);
    let start = tat.max(now);
    let used_us = start - now;
    let need = if whole { cost.max(1) } else { 1 };
    let room = |used_us: u64| Room {
        limit,
        used: used_us.div_ceil(interval).min(u64::MAX / 2),
        reset_secs: ceil_secs(used_us),
    };
    if used_us.saturating_add(need.saturating_mul(interval)) > MINUTE_US {
        let retry = used_us.saturating_add(need.saturating_mul(interval)) - MINUTE_US;
        return (Err((room(used_us), ceil_secs(retry).max(1))), tat);
    }
    let new_tat = start.saturating_add(cost.saturating_mul(interval));
    (Ok(room(new_tat - now)), new_tat)
}

/// A rate's time after a correction of `delta` units (never before `now`).
pub fn gcra_adjust(tat: u64, now: u64, limit: u64, delta: i64) -> u64 {
    let interval = interval_us(limit);
    let shift = delta.unsigned_abs().saturating_mul(interval);
    if delta >= 0 { tat.max(now).saturating_add(shift) } else { tat.saturating_sub(shift).max(now) }
}

#[derive(Default)]
struct Counters {
    /// Rate key → theoretical arrival time (µs).
    rates: HashMap<Key, u64>,
    slots: HashMap<Key, u64>,
    /// Sum key → (value, expiry µs).
    sums: HashMap<Key, (u64, u64)>,
    /// Usage hash key → (field → value, expiry µs).
    usage: HashMap<String, (HashMap<String, u64>, u64)>,
    /// Operations since expired entries were last dropped.
    since_purge: u32,
    /// Where usage keys and field names are written to look them up.
    scratch: [String; 2],
}

impl Counters {
    /// The usage hash `key`, made (kept until `expiry`) if there is none.
    fn usage_hash(&mut self, key: &str, expiry: u64) -> &mut HashMap<String, u64> {
        if !self.usage.contains_key(key) {
            self.usage.insert(key.to_owned(), (HashMap::default(), expiry));
        }
        &mut self.usage.get_mut(key).expect("inserted above").0
    }

    fn purge(&mut self, now: u64) {
        self.since_purge += 1;
        if self.since_purge < 4096 {
            return;
        }
        self.since_purge = 0;
        self.rates.retain(|_, tat| *tat > now);
        self.slots.retain(|_, held| *held > 0);
        self.sums.retain(|_, (_, expiry)| *expiry > now);
        self.usage.retain(|_, (_, expiry)| *expiry > now);
    }
}

/// Counters in this process: exact for one replica, and what each replica falls back to while the
/// shared store does not answer.
#[derive(Default)]
pub struct LocalStore {
    counters: Mutex<Counters>,
}

impl LocalStore {
    pub fn new() -> LocalStore {
        LocalStore::default()
    }

    /// [`Store::acquire`] without the future.
    pub fn acquire_now(&self, checks: &[Check], now: u64) -> Outcome {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters.purge(now);
        let mut rooms = Vec::with_capacity(checks.len());
        for (index, check) in checks.iter().enumerate() {
            match check {
                Check::Rate { key, limit, cost, whole } => {
                    let tat = counters.rates.get(key).copied().unwrap_or(0);
                    match gcra(tat, now, *limit, *cost, *whole) {
                        (Ok(room), _) => rooms.push(room),
                        (Err((room, retry_after_secs)), _) => {
                            return Outcome::Refused { index, room, retry_after_secs };
                        }
                    }
                }
                Check::Slots { key, limit } => {
                    let held = counters.slots.get(key).copied().unwrap_or(0);
                    if held >= *limit {
                        let room = Room { limit: *limit, used: held, reset_secs: 0 };
                        return Outcome::Refused { index, room, retry_after_secs: 1 };
                    }
                    rooms.push(Room { limit: *limit, used: held + 1, reset_secs: 0 });
                }
                Check::Sum { key, limit, cost, ttl_secs } => {
                    let value = counters.sums.get(key).filter(|(_, expiry)| *expiry > now).map_or(0, |(v, _)| *v);
                    if value >= *limit {
                        let room = Room { limit: *limit, used: value, reset_secs: *ttl_secs };
                        return Outcome::Refused { index, room, retry_after_secs: (*ttl_secs).max(1) };
                    }
                    rooms.push(Room { limit: *limit, used: value.saturating_add(*cost), reset_secs: *ttl_secs });
                }
            }
        }
        // Every counter had room: take it in all of them.
        // (A key already counted is found, not cloned and inserted again; a rate's step is worked
        // out again rather than kept from the first pass.)
        for check in checks {
            match check {
                Check::Rate { key, limit, cost, whole } => match counters.rates.get_mut(key) {
                    Some(tat) => {
                        let (step, new_tat) = gcra(*tat, now, *limit, *cost, *whole);
                        // The same step as the first pass: a key is named once per acquisition.
                        debug_assert!(step.is_ok(), "a counter named twice in one acquisition");
                        *tat = new_tat;
                    }
                    None => {
                        counters.rates.insert(key.clone(), gcra(0, now, *limit, *cost, *whole).1);
                    }
                },
                Check::Slots { key, .. } => match counters.slots.get_mut(key) {
                    Some(held) => *held += 1,
                    None => {
                        counters.slots.insert(key.clone(), 1);
                    }
                },
                Check::Sum { key, cost, ttl_secs, .. } => match counters.sums.get_mut(key) {
                    Some(entry) if entry.1 > now => entry.0 = entry.0.saturating_add(*cost),
                    Some(entry) => *entry = (*cost, expiry(now, *ttl_secs)),
                    None => {
                        counters.sums.insert(key.clone(), (*cost, expiry(now, *ttl_secs)));
                    }
                },
            }
        }
        Outcome::Admitted { rooms }
    }

    /// [`Store::adjust`] without the future.
    pub fn adjust_now(&self, adjustments: &[Adjust], now: u64) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        for adjustment in adjustments {
            match adjustment {
                Adjust::Rate { key, limit, delta } => match counters.rates.get_mut(key) {
                    Some(tat) => *tat = gcra_adjust(*tat, now, *limit, *delta),
                    None => {
                        counters.rates.insert(key.clone(), gcra_adjust(0, now, *limit, *delta));
                    }
                },
                Adjust::Sum { key, delta, ttl_secs } => match counters.sums.get_mut(key) {
                    Some(entry) => entry.0 = entry.0.saturating_add_signed(*delta),
                    None => {
                        counters.sums.insert(key.clone(), (0u64.saturating_add_signed(*delta), expiry(now, *ttl_secs)));
                    }
                },
                Adjust::Release { key } => {
                    if let Some(held) = counters.slots.get_mut(key) {
                        *held = held.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// Add one answer's `counts` (by kind: `requests`, `input`, ...) to `team`'s usage of `day`,
    /// on the line of `agent` and `model`: [`Store::add_usage`] with the key and field names
    /// written in a buffer kept for it, so a line seen before costs no allocation.
    #[allow(clippy::too_many_arguments)]
    pub fn add_usage_counts(
        &self,
        team: &str,
        day: Window,
        agent: &str,
        model: &str,
        counts: impl Iterator<Item = (&'static str, u64)>,
        ttl_secs: u64,
        now: u64,
    ) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let [mut name, mut field] = std::mem::take(&mut counters.scratch);
        name.clear();
        usage_key(&mut name, team, day);
        let hash = counters.usage_hash(&name, expiry(now, ttl_secs));
        for (kind, delta) in counts {
            field.clear();
            usage_field(&mut field, agent, model, kind);
            add_field(hash, &field, delta);
        }
        counters.scratch = [name, field];
    }

    /// [`Store::add_usage`] without the future.
    pub fn add_usage_now(&self, key: &str, fields: &[(String, u64)], ttl_secs: u64, now: u64) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let hash = counters.usage_hash(key, expiry(now, ttl_secs));
        for (field, delta) in fields {
            add_field(hash, field, *delta);
        }
    }
}

/// `ttl_secs` after `now` (µs).
fn expiry(now: u64, ttl_secs: u64) -> u64 {
    now.saturating_add(ttl_secs.saturating_mul(1_000_000))
}

/// Add `delta` to `field` of a usage hash (allocating its name only when it is new).
fn add_field(hash: &mut HashMap<String, u64>, field: &str, delta: u64) {
    match hash.get_mut(field) {
        Some(value) => *value = value.saturating_add(delta),
        None => {
            hash.insert(field.to_owned(), delta);
        }
    }
}

/// The key of `team`'s usage of `day`: `usage:<team>:<day>`, written to `out`.
pub fn usage_key(out: &mut String, team: &str, day: Window) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(out, "usage:{team}:{day}");
}

/// The field of one kind of count on an agent's line for a model: `<agent>\t<model>\t<kind>`
/// (`-` for the team's own runs or an unknown model), written to `out`.
pub fn usage_field(out: &mut String, agent: &str, model: &str, kind: &str) {
    for part in [agent, "\t", model, "\t", kind] {
        out.push_str(part);
    }
}

impl Store for LocalStore {
    /// Slots are counts here: a process that ends frees them all.
    fn acquire<'a>(
        &'a self,
        checks: &'a [Check],
        now_us: u64,
        _lease: &'a str,
    ) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        let outcome = self.acquire_now(checks, now_us);
        Box::pin(std::future::ready(Ok(outcome)))
    }

    fn adjust<'a>(
        &'a self,
        adjustments: &'a [Adjust],
        now_us: u64,
        _lease: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.adjust_now(adjustments, now_us);
        Box::pin(std::future::ready(Ok(())))
    }

    fn sums<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<Option<u64>>, StoreError>> {
        let now = now_us();
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let values = keys
            .iter()
            .map(|key| counters.sums.get(key).filter(|(_, expiry)| *expiry > now).map(|(v, _)| *v))
            .collect();
        Box::pin(std::future::ready(Ok(values)))
    }

    fn add_usage<'a>(
        &'a self,
        key: &'a str,
        fields: &'a [(String, u64)],
        ttl_secs: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.add_usage_now(key, fields, ttl_secs, now_us());
        Box::pin(std::future::ready(Ok(())))
    }

    fn usage<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<(String, u64)>, StoreError>> {
        let now = now_us();
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut fields: Vec<(String, u64)> = counters
            .usage
            .get(key)
            .filter(|(_, expiry)| *expiry > now)
            .map(|(hash, _)| hash.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        fields.sort();
        Box::pin(std::future::ready(Ok(fields)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limit;
    use crate::limits::key::ScopeKey;

    /// A counter named after `name` (the store does not read a key's kind).
    fn k(name: &str) -> Key {
        ScopeKey::team(name).slots(Limit::ConcurrentRequests)
    }

    const T0: u64 = 1_800_000_000_000_000;

    fn rate(key: &str, limit: u64) -> Check {
        Check::Rate { key: k(key), limit, cost: 1, whole: true }
    }

    #[test]
    fn a_rate_of_five_per_minute_admits_five_then_one_every_twelve_seconds() {
        let store = LocalStore::new();
        for n in 1..=5 {
            match store.acquire_now(&[rate("t", 5)], T0) {
                Outcome::Admitted { rooms } => assert_eq!(rooms[0].remaining(), 5 - n),
                other => panic!("{n}: {other:?}"),
            }
        }
        match store.acquire_now(&[rate("t", 5)], T0) {
            Outcome::Refused { index: 0, retry_after_secs, room } => {
                assert_eq!(retry_after_secs, 12);
                assert_eq!((room.remaining(), room.reset_secs), (0, 60));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(store.acquire_now(&[rate("t", 5)], T0 + 12_000_000), Outcome::Admitted { .. }));
        assert!(matches!(store.acquire_now(&[rate("other", 5)], T0), Outcome::Admitted { .. }), "keys apart");
    }

    #[test]
    fn one_refused_counter_takes_room_in_none() {
        let store = LocalStore::new();
        let checks = [rate("team", 10), Check::Slots { key: k("agent"), limit: 1 }];
        assert!(matches!(store.acquire_now(&checks, T0), Outcome::Admitted { .. }));
        assert!(matches!(store.acquire_now(&checks, T0), Outcome::Refused { index: 1, .. }));
        // The team's rate was not spent by the refused request: 9 more fit.
        for _ in 0..9 {
            assert!(matches!(store.acquire_now(&[rate("team", 10)], T0), Outcome::Admitted { .. }));
        }
        assert!(matches!(store.acquire_now(&[rate("team", 10)], T0), Outcome::Refused { .. }));
        store.adjust_now(&[Adjust::Release { key: k("agent") }], T0);
        assert!(matches!(store.acquire_now(&checks[1..], T0), Outcome::Admitted { .. }), "the slot is free again");
    }

    #[test]
    fn token_rates_admit_while_there_is_room_and_settle_to_the_actual_count() {
        let store = LocalStore::new();
        let reserve = |cost| [Check::Rate { key: k("in"), limit: 1000, cost, whole: false }];
        // An estimate larger than the limit is admitted while there is room...
        assert!(matches!(store.acquire_now(&reserve(5000), T0), Outcome::Admitted { .. }));
        // ...and blocks the next until settled.
        assert!(matches!(store.acquire_now(&reserve(1), T0), Outcome::Refused { .. }));
        // The answer used 100 tokens: 4900 go back.
        store.adjust_now(&[Adjust::Rate { key: k("in"), limit: 1000, delta: -4900 }], T0);
        match store.acquire_now(&reserve(1), T0) {
            Outcome::Admitted { rooms } => assert_eq!(rooms[0].used, 101),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sums_are_admitted_below_their_limit_and_settled() {
        let store = LocalStore::new();
        let check = |cost| [Check::Sum { key: k("usd:d"), limit: 100, cost, ttl_secs: 3600 }];
        assert!(matches!(store.acquire_now(&check(60), T0), Outcome::Admitted { .. }));
        assert!(matches!(store.acquire_now(&check(60), T0), Outcome::Admitted { .. }), "below the limit: admitted");
        store.adjust_now(&[Adjust::Sum { key: k("usd:d"), delta: -10, ttl_secs: 3600 }], T0);
        match store.acquire_now(&check(0), T0) {
            Outcome::Refused { retry_after_secs, room, .. } => assert_eq!((retry_after_secs, room.used), (3600, 110)),
            other => panic!("{other:?}"),
        }
        // The window's key expires with it.
        assert!(matches!(store.acquire_now(&check(1), T0 + 3_601_000_000), Outcome::Admitted { .. }));
    }

    #[test]
    fn usage_counts_and_usage_fields_add_to_the_same_lines() {
        let store = LocalStore::new();
        let day = crate::limits::windows::Windows::at(T0 / 1_000_000).day().0;
        let counts = [("requests", 1), ("input", 10), ("cache_read", 0), ("cost_nanos", 500)];
        let nonzero = || counts.into_iter().filter(|(_, count)| *count > 0);
        store.add_usage_counts("acme", day, "-", "claude", nonzero(), 60, T0);
        store.add_usage_counts("acme", day, "-", "claude", nonzero(), 60, T0);
        let mut key = String::new();
        usage_key(&mut key, "acme", day);
        assert!(key.starts_with("usage:acme:20"), "{key}");
        // What the shared store's fallback adds, under the names it writes.
        let mut field = String::new();
        usage_field(&mut field, "-", "claude", "requests");
        store.add_usage_now(&key, &[(field, 1)], 60, T0);
        let mut fields = store.counters.lock().unwrap().usage[&key].0.clone().into_iter().collect::<Vec<_>>();
        fields.sort();
        let expected = [("-\tclaude\tcost_nanos", 1000), ("-\tclaude\tinput", 20), ("-\tclaude\trequests", 3)];
        assert_eq!(fields, expected.map(|(f, v)| (f.to_owned(), v)));
    }
}
