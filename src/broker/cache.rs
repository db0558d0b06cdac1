//! In-memory cache of temporary credentials that never makes a caller wait while it holds valid
//! credentials.
//!
//! Keyed by everything the STS call depends on (role, principal, agent, run, session tags, session
//! policy). Rules:
//! - credentials are reused until their refresh point (75% of their lifetime, and never later than
//!   five minutes before expiry); past it, callers still get them at once while ONE background
//!   task refreshes;
//! - with no usable credentials, concurrent callers wait on one fetch and share its answer;
//! - a failed fetch backs the entry off (1 s, doubling to 30 s): until then callers get its error,
//!   or the still-valid credentials, with no new STS round; a passing failure keeps the last good
//!   credentials serving until 30 s before they expire, a permanent refusal drops them at once;
//! - the number of entries has hard caps, so one team cannot push out another's credentials: the
//!   cache holds 50,000 entries, a team at most 50,000 / min(configured teams, 5) of them (so
//!   10,000 with five teams or more), and a team at its cap makes room among its own entries; when
//!   the whole cache is full (more than five teams), the teams holding the most entries give some
//!   up, down to a common level, never the small ones first. Either way, entries without usable
//!   credentials go first, then the least recently used, down to 90% of the cap (so eviction runs
//!   once per tenth of the cap, not on every insert).
//!
//! Entries are grouped by team, then by run, so ending a run (`DELETE /v1/runs/{run_id}`) looks at
//! that run's entries only, and the periodic purge holds the lock for one team at a time. Nothing
//! here ever touches the disk; the clock is injected for tests.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use foldhash::HashMap;

use crate::aws::AwsCredentials;
use crate::aws::RoleArn;
use crate::principal::{ScopedPrincipal, Uid};

/// Never refresh later than this before expiry.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Stop serving stale credentials this long before they expire, so a caller can still use them.
pub const STALE_CUTOFF: Duration = Duration::from_secs(30);
/// Default upper bound on cached entries.
pub const MAX_ENTRIES: usize = 50_000;
/// A team may hold at least this fraction (1/n) of the cache's entries, more when fewer teams are
/// configured.
pub const TEAM_SHARE: usize = 5;
/// Backoff after the first failed fetch of an entry; doubles per failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The time, injectable for tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// What tells two runs' credentials apart: everything the STS call depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub role: RoleArn,
    pub principal: ScopedPrincipal,
    pub agent: Option<String>,
    pub run_id: Option<String>,
    pub session_tags: bool,
    /// SHA-256 of the session policy credentials that leave the gateway are assumed with; `None`
    /// for the gateway's own (and with `sts.session_policy = false`).
    pub session_policy: Option<[u8; 32]>,
}

/// Credentials as cached, with when to refresh them.
#[derive(Debug)]
pub struct CachedCredentials {
    pub credentials: AwsCredentials,
    pub obtained_at: SystemTime,
    pub refresh_at: SystemTime,
    pub role: RoleArn,
}

impl CachedCredentials {
    pub fn new(credentials: AwsCredentials, role: RoleArn, now: SystemTime, requested: Duration) -> Self {
        let expires = credentials.expiration.unwrap_or(now + requested);
        let lifetime = expires.duration_since(now).unwrap_or_default();
        let at_75 = now + lifetime.mul_f64(0.75);
        let before_margin = expires.checked_sub(REFRESH_MARGIN).unwrap_or(now);
        let refresh_at = at_75.min(before_margin).max(now);
        CachedCredentials { credentials, obtained_at: now, refresh_at, role }
    }

    fn usable_at(&self, now: SystemTime) -> bool {
        self.credentials.expiration.is_none_or(|exp| now + STALE_CUTOFF < exp)
    }
}

/// How a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Fresh cached credentials (a background refresh may have been started).
    Hit,
    /// Obtained by a fetch this caller waited for.
    Fetched,
    /// The last refresh failed; the previous credentials are still valid and were returned.
    Stale,
    /// The entry is backing off after a failure: its error, without a new STS round.
    BackedOff,
}

/// The answer to one lookup: credentials or the error, and how it was reached.
#[derive(Debug)]
pub struct Answer<E> {
    pub result: Result<Arc<CachedCredentials>, E>,
    pub outcome: Outcome,
}

/// What an entry knows; only ever locked briefly, never across an `.await`.
struct State<E> {
    current: Option<Arc<CachedCredentials>>,
    in_flight: bool,
    failures: u32,
    /// No new fetch before this, after a failure.
    retry_at: Option<SystemTime>,
    last_error: Option<E>,
}

struct Entry<E> {
    state: Mutex<State<E>>,
    /// Bumped when a fetch finishes; callers waiting on it watch this.
    done: tokio::sync::watch::Sender<u64>,
    /// When the entry was last asked for (the cache's own tick), for LRU eviction.
    last_used: AtomicU64,
}

impl<E> Entry<E> {
    fn new(tick: u64) -> Entry<E> {
        Entry {
            state: Mutex::new(State { current: None, in_flight: false, failures: 0, retry_at: None, last_error: None }),
            done: tokio::sync::watch::channel(0).0,
            last_used: AtomicU64::new(tick),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<E>> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Holds usable credentials, or has a fetch under way: worth keeping.
    fn live(&self, now: SystemTime) -> bool {
        let state = self.state();
        state.in_flight || state.current.as_ref().is_some_and(|c| c.usable_at(now))
    }
}

/// One run's entries (one per role, principal, agent, ... the run used).
type Bucket<E> = HashMap<CacheKey, Arc<Entry<E>>>;

/// One team's entries, by run id (`None`: entries without a run id).
struct Team<E> {
    runs: HashMap<Option<String>, Bucket<E>>,
    len: usize,
}

impl<E> Default for Team<E> {
    fn default() -> Team<E> {
        Team { runs: HashMap::default(), len: 0 }
    }
}

impl<E> Team<E> {
    fn get(&self, key: &CacheKey) -> Option<&Arc<Entry<E>>> {
        self.runs.get(&key.run_id).and_then(|bucket| bucket.get(key))
    }

    /// Keeps the entries `keep` accepts; returns how many were dropped.
    fn retain(&mut self, mut keep: impl FnMut(&CacheKey, &Entry<E>) -> bool) -> usize {
        let before = self.len;
        self.runs.retain(|_, bucket| {
            bucket.retain(|key, entry| keep(key, entry));
            !bucket.is_empty()
        });
        self.len = self.runs.values().map(HashMap::len).sum();
        before - self.len
    }

    /// Drops entries with nothing worth keeping, then the least recently used, down to `target`;
    /// returns how many were dropped.
    fn shrink_to(&mut self, now: SystemTime, target: usize) -> usize {
        let mut dropped = self.retain(|_, entry| entry.live(now));
        if self.len > target {
            let mut ages: Vec<u64> =
                self.runs.values().flat_map(HashMap::values).map(|e| e.last_used.load(Ordering::Relaxed)).collect();
            let cut = self.len - target;
            ages.select_nth_unstable(cut - 1);
            let oldest_kept = ages[cut - 1];
            let mut to_drop = cut;
            dropped += self.retain(|_, entry| {
                if to_drop > 0 && entry.last_used.load(Ordering::Relaxed) <= oldest_kept {
                    to_drop -= 1;
                    false
                } else {
                    true
                }
            });
        }
        dropped
    }
}

/// Every entry, by team; `len` counts them all.
struct Store<E> {
    teams: HashMap<Uid, Team<E>>,
    len: usize,
}

/// The cache; `E` is the error a fetch can fail with.
pub struct CredentialCache<E> {
    store: Mutex<Store<E>>,
    clock: Arc<dyn Clock>,
    max_entries: usize,
    max_team_entries: usize,
    tick: AtomicU64,
}

fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// Where eviction stops: 90% of a cap, less the entry about to be added.
fn low_water(cap: usize) -> usize {
    cap - cap / 10 - 1
}

impl<E: Clone + Send + Sync + 'static> CredentialCache<E> {
    /// The cache of a gateway serving `teams` configured teams: [`MAX_ENTRIES`] entries, of which
    /// a team may hold `MAX_ENTRIES / min(teams, TEAM_SHARE)`.
    pub fn new(clock: Arc<dyn Clock>, teams: usize) -> CredentialCache<E> {
        CredentialCache::with_limits(clock, MAX_ENTRIES, MAX_ENTRIES / teams.clamp(1, TEAM_SHARE))
    }

    /// A cache holding at most `max_entries` entries, and at most a [`TEAM_SHARE`]th of them per
    /// team.
    pub fn with_capacity(clock: Arc<dyn Clock>, max_entries: usize) -> CredentialCache<E> {
        CredentialCache::with_limits(clock, max_entries, max_entries / TEAM_SHARE)
    }

    /// A cache holding at most `max_entries` entries, at most `max_team_entries` of them per team.
    pub fn with_limits(clock: Arc<dyn Clock>, max_entries: usize, max_team_entries: usize) -> CredentialCache<E> {
        let max_entries = max_entries.max(1);
        CredentialCache {
            store: Mutex::new(Store { teams: HashMap::default(), len: 0 }),
            clock,
            max_entries,
            max_team_entries: max_team_entries.clamp(1, max_entries),
            tick: AtomicU64::new(0),
        }
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn store(&self) -> MutexGuard<'_, Store<E>> {
        match self.store.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn entry(&self, key: &CacheKey) -> Arc<Entry<E>> {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut store = self.store();
        let Store { teams, len } = &mut *store;
        let team_uid = &key.principal.team_uid;
        if let Some(entry) = teams.get(team_uid).and_then(|team| team.get(key)) {
            entry.last_used.store(tick, Ordering::Relaxed);
            return entry.clone();
        }
        let now = self.clock.now();
        if let Some(team) = teams.get_mut(team_uid)
            && team.len >= self.max_team_entries
        {
            // The team makes room among its own entries.
            *len -= team.shrink_to(now, low_water(self.max_team_entries));
        }
        if *len >= self.max_entries {
            *len -= make_room(teams, now, low_water(self.max_entries));
        }
        let entry = Arc::new(Entry::new(tick));
        let team = teams.entry(team_uid.clone()).or_default();
        team.runs.entry(key.run_id.clone()).or_default().insert(key.clone(), entry.clone());
        team.len += 1;
        *len += 1;
        entry
    }

    /// Credentials for `key`. While cached credentials are valid they are returned at once (past
    /// their refresh point, one background task fetches new ones); otherwise callers share one
    /// fetch. `fetch` builds that fetch (run on its own task); `keep_last_good(error)` says whether
    /// a failure is passing, so the previous credentials may keep serving while they are valid.
    pub async fn get_or_fetch<F, Fut>(&self, key: &CacheKey, fetch: F, keep_last_good: fn(&E) -> bool) -> Answer<E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CachedCredentials, E>> + Send + 'static,
    {
        let entry = self.entry(key);
        let mut fetch = Some(fetch);
        let mut waited = false;
        loop {
            let mut done = entry.done.subscribe();
            {
                let now = self.clock.now();
                let mut state = entry.state();
                let may_fetch = !state.in_flight && state.retry_at.is_none_or(|at| now >= at);
                let usable = state.current.clone().filter(|c| c.usable_at(now));
                // After waiting on a fetch that succeeded, its credentials are the answer even if
                // they are short-lived.
                let fetched =
                    state.current.clone().filter(|_| waited && !state.in_flight && state.last_error.is_none());
                if let Some(current) = usable.or(fetched) {
                    if now >= current.refresh_at
                        && may_fetch
                        && let Some(fetch) = fetch.take()
                    {
                        state.in_flight = true;
                        self.spawn_fetch(entry.clone(), fetch(), keep_last_good);
                    }
                    let outcome = match (state.last_error.is_some(), waited) {
                        (true, _) => Outcome::Stale,
                        (false, true) => Outcome::Fetched,
                        (false, false) => Outcome::Hit,
                    };
                    return Answer { result: Ok(current), outcome };
                }
                if !state.in_flight {
                    if let Some(error) = &state.last_error
                        && (waited || !may_fetch)
                    {
                        // The fetch this caller waited for failed, or the entry is backing off:
                        // its answer, without a new STS round.
                        let outcome = if waited { Outcome::Fetched } else { Outcome::BackedOff };
                        return Answer { result: Err(error.clone()), outcome };
                    }
                    match fetch.take() {
                        Some(fetch) => {
                            state.in_flight = true;
                            self.spawn_fetch(entry.clone(), fetch(), keep_last_good);
                        }
                        // Cannot happen: this caller's own fetch ended either way above.
                        None => continue,
                    }
                }
            }
            waited = true;
            // The sender lives as long as the entry, which this caller holds.
            let _ = done.changed().await;
        }
    }

    /// Run one fetch on its own task, so a caller that stops waiting never cancels it, and record
    /// its result in the entry.
    fn spawn_fetch<Fut>(&self, entry: Arc<Entry<E>>, fetch: Fut, keep_last_good: fn(&E) -> bool)
    where
        Fut: Future<Output = Result<CachedCredentials, E>> + Send + 'static,
    {
        let clock = self.clock.clone();
        tokio::spawn(async move {
            let result = fetch.await;
            {
                let mut state = entry.state();
                state.in_flight = false;
                match result {
                    Ok(fresh) => {
                        state.current = Some(Arc::new(fresh));
                        state.failures = 0;
                        state.retry_at = None;
                        state.last_error = None;
                    }
                    Err(error) => {
                        state.failures = state.failures.saturating_add(1);
                        state.retry_at = Some(clock.now() + backoff(state.failures));
                        if !keep_last_good(&error) {
                            // A permanent refusal (say, the customer removed the trust) is not
                            // papered over with old credentials.
                            state.current = None;
                        }
                        state.last_error = Some(error);
                    }
                }
            }
            entry.done.send_modify(|generation| *generation += 1);
        });
    }

    /// Drop the entries of run `run_id` that `allowed` accepts; returns how many were dropped.
    /// Looks at that run's entries only.
    pub fn evict_run(&self, run_id: &str, allowed: impl Fn(&CacheKey) -> bool) -> usize {
        let run = Some(run_id.to_owned());
        let mut store = self.store();
        let Store { teams, len } = &mut *store;
        let mut dropped = 0;
        teams.retain(|_, team| {
            if let Some(bucket) = team.runs.get_mut(&run) {
                let before = bucket.len();
                bucket.retain(|key, _| !allowed(key));
                let gone = before - bucket.len();
                if bucket.is_empty() {
                    team.runs.remove(&run);
                }
                team.len -= gone;
                dropped += gone;
            }
            team.len > 0
        });
        *len -= dropped;
        dropped
    }

    /// Drop entries whose credentials can no longer be used and whose backoff has passed (unless a
    /// fetch for them is under way). Holds the lock for one team at a time.
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        let team_uids: Vec<Uid> = self.store().teams.keys().cloned().collect();
        let mut dropped = 0;
        for uid in team_uids {
            let mut store = self.store();
            let Store { teams, len } = &mut *store;
            let Some(team) = teams.get_mut(&uid) else { continue };
            let gone = team.retain(|_, entry| {
                let state = entry.state();
                state.in_flight
                    || state.current.as_ref().is_some_and(|c| c.usable_at(now))
                    || state.retry_at.is_some_and(|at| now < at)
            });
            if team.len == 0 {
                teams.remove(&uid);
            }
            *len -= gone;
            dropped += gone;
        }
        dropped
    }

    pub fn len(&self) -> usize {
        self.store().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn contains(&self, key: &CacheKey) -> bool {
        self.store().teams.get(&key.principal.team_uid).is_some_and(|team| team.get(key).is_some())
    }

    #[cfg(test)]
    fn team_len(&self, team: &str) -> usize {
        self.store().teams.iter().filter(|(uid, _)| uid.as_str() == team).map(|(_, team)| team.len).sum()
    }
}

/// The whole cache is full: drop every entry with nothing worth keeping, then cut the teams holding
/// the most entries down to a common level (the highest one that frees enough), oldest entries
/// first, so a team is only cut while it holds more than the others. Returns how many were dropped.
fn make_room<E>(teams: &mut HashMap<Uid, Team<E>>, now: SystemTime, target: usize) -> usize {
    let mut dropped: usize = teams.values_mut().map(|team| team.retain(|_, entry| entry.live(now))).sum();
    let total: usize = teams.values().map(|team| team.len).sum();
    if total > target {
        let needed = total - target;
        let excess = |level: usize| teams.values().map(|team| team.len.saturating_sub(level)).sum::<usize>();
        // The highest level whose excess frees `needed` entries (excess(0) = total > needed).
        let (mut low, mut high) = (0, teams.values().map(|team| team.len).max().unwrap_or(0));
        while low < high {
            let mid = (low + high).div_ceil(2);
            if excess(mid) >= needed { low = mid } else { high = mid - 1 }
        }
        for team in teams.values_mut().filter(|team| team.len > low) {
            dropped += team.shrink_to(now, low);
        }
    }
    teams.retain(|_, team| team.len > 0);
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::sync::atomic::AtomicUsize;

    /// A clock tests move by hand (seconds since the epoch).
    #[derive(Default)]
    struct ManualClock(AtomicU64);

    impl ManualClock {
        fn set(&self, secs: u64) {
            self.0.store(secs, Ordering::SeqCst);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }

    fn key(run: &str) -> CacheKey {
        CacheKey {
            role: RoleArn::parse("arn:aws:iam::123456789012:role/r").unwrap(),
            principal: ScopedPrincipal::parse("scoped_principal:acme/user:a").unwrap(),
            agent: None,
            run_id: Some(run.into()),
            session_tags: false,
            session_policy: None,
        }
    }

    fn credentials(now: SystemTime, lifetime: u64, id: usize) -> CachedCredentials {
        let credentials = AwsCredentials {
            access_key_id: format!("ASIA{id}"),
            secret_access_key: Secret::new("s"),
            session_token: Some(Secret::new("t")),
            expiration: Some(now + Duration::from_secs(lifetime)),
        };
        CachedCredentials::new(
            credentials,
            RoleArn::parse("arn:aws:iam::123456789012:role/r").unwrap(),
            now,
            Duration::from_secs(lifetime),
        )
    }

    type Cache = Arc<CredentialCache<&'static str>>;

    struct Fixture {
        clock: Arc<ManualClock>,
        cache: Cache,
        calls: Arc<AtomicUsize>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let clock = Arc::new(ManualClock::default());
            Fixture { cache: Arc::new(CredentialCache::new(clock.clone(), 1)), clock, calls: Arc::default() }
        }

        /// One lookup whose fetch (if run) takes `delay` and answers `result` (Ok: hour-long
        /// credentials numbered by the call count).
        async fn get(
            &self,
            run: &str,
            delay: u64,
            result: Result<(), &'static str>,
        ) -> (Result<String, &'static str>, Outcome) {
            let (calls, clock) = (self.calls.clone(), self.clock.clone());
            let answer = self
                .cache
                .get_or_fetch(
                    &key(run),
                    move || {
                        let id = calls.fetch_add(1, Ordering::SeqCst);
                        async move {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                            result.map(|_| credentials(clock.now(), 3600, id))
                        }
                    },
                    |error| *error == "throttled",
                )
                .await;
            (answer.result.map(|c| c.credentials.access_key_id.clone()), answer.outcome)
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn refresh_point_is_75_percent_and_never_within_five_minutes() {
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(credentials(now, 3600, 0).refresh_at, now + Duration::from_secs(2700));
        assert_eq!(credentials(now, 900, 0).refresh_at, now + Duration::from_secs(600));
        assert_eq!(credentials(now, 60, 0).refresh_at, now);
        assert_eq!([1, 2, 3, 6, 7, 20].map(|n| backoff(n).as_secs()), [1, 2, 4, 30, 30, 30]);
    }

    #[tokio::test]
    async fn concurrent_callers_without_credentials_share_one_fetch() {
        let f = Arc::new(Fixture::new());
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let f = f.clone();
                tokio::spawn(async move { f.get("r1", 20, Ok(())).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), (Ok("ASIA0".into()), Outcome::Fetched));
        }
        assert_eq!(f.calls(), 1, "32 concurrent callers, one fetch");
        assert_eq!(f.get("r1", 0, Err("unused")).await, (Ok("ASIA0".into()), Outcome::Hit));
    }

    #[tokio::test]
    async fn past_the_refresh_point_callers_are_answered_at_once_while_one_task_refreshes() {
        let f = Arc::new(Fixture::new());
        f.get("r1", 0, Ok(())).await.0.unwrap();
        f.clock.set(2700);
        // A slow refresh (2 s): every caller meanwhile gets the cached credentials at once.
        let started = std::time::Instant::now();
        let mut answers = Vec::new();
        for _ in 0..20 {
            answers.push(f.get("r1", 2000, Ok(())).await);
        }
        assert!(started.elapsed() < Duration::from_millis(1500), "nobody waited on the refresh");
        assert!(answers.iter().all(|a| *a == (Ok("ASIA0".into()), Outcome::Hit)), "{answers:?}");
        assert_eq!(f.calls(), 2, "one background refresh for 20 callers");
        // Once it lands, its credentials are served.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert_eq!(f.get("r1", 0, Err("unused")).await, (Ok("ASIA1".into()), Outcome::Hit));
        assert_eq!(f.calls(), 2);
    }

    #[tokio::test]
    async fn a_failed_refresh_backs_off_instead_of_calling_sts_per_request() {
        let f = Fixture::new();
        f.get("r1", 0, Ok(())).await.0.unwrap();
        f.clock.set(2700);
        // A passing failure in the background: the last good credentials keep serving, marked
        // stale, and no caller starts another STS round while the entry backs off.
        assert_eq!(f.get("r1", 0, Err("throttled")).await, (Ok("ASIA0".into()), Outcome::Hit));
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..10 {
            assert_eq!(f.get("r1", 0, Err("throttled")).await, (Ok("ASIA0".into()), Outcome::Stale));
        }
        assert_eq!(f.calls(), 2, "one refresh attempt, then backoff");
        // After the backoff (1 s) the next caller starts one more attempt, in the background.
        f.clock.set(2701);
        assert_eq!(f.get("r1", 0, Err("throttled")).await.1, Outcome::Stale);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(f.calls(), 3);
        // The second failure backs off for 2 s.
        f.clock.set(2702);
        let _ = f.get("r1", 0, Err("throttled")).await;
        assert_eq!(f.calls(), 3);
        // A permanent refusal (the trust was removed) drops the credentials at once.
        f.clock.set(2703);
        let _ = f.get("r1", 0, Err("access_denied")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(f.get("r1", 0, Ok(())).await, (Err("access_denied"), Outcome::BackedOff));
        assert_eq!(f.calls(), 4);
    }

    #[tokio::test]
    async fn without_credentials_a_failure_is_shared_and_backed_off() {
        let f = Arc::new(Fixture::new());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let f = f.clone();
                tokio::spawn(async move { f.get("r1", 20, Err("throttled")).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), (Err("throttled"), Outcome::Fetched));
        }
        assert_eq!(f.calls(), 1, "16 callers, one failing fetch");
        // Within the backoff: the same error, no fetch.
        assert_eq!(f.get("r1", 0, Ok(())).await, (Err("throttled"), Outcome::BackedOff));
        assert_eq!(f.calls(), 1);
        // After it: a new fetch.
        f.clock.set(1);
        assert_eq!(f.get("r1", 0, Ok(())).await, (Ok("ASIA1".into()), Outcome::Fetched));
        // Credentials within 30 s of expiry are not handed out; the next fetch replaces them.
        f.clock.set(1 + 3600 - 20);
        assert_eq!(f.get("r1", 0, Ok(())).await, (Ok("ASIA2".into()), Outcome::Fetched));
    }

    #[tokio::test]
    async fn the_cache_has_a_hard_cap_and_evicts_the_least_recently_used() {
        let clock = Arc::new(ManualClock::default());
        let cache: CredentialCache<&'static str> = CredentialCache::with_limits(clock.clone(), 10, 10);
        for i in 0..10 {
            fill(&cache, &clock, key(&format!("r{i}"))).await;
        }
        // r0 was used last, so it survives the eviction of the oldest.
        fill(&cache, &clock, key("r0")).await;
        for i in 10..30 {
            fill(&cache, &clock, key(&format!("r{i}"))).await;
            assert!(cache.len() <= 10, "{} entries", cache.len());
        }
        assert!(cache.contains(&key("r29")) && !cache.contains(&key("r1")), "the newest stay, the oldest go");
    }

    #[test]
    fn a_team_may_hold_the_whole_cache_alone_and_a_fifth_of_it_among_many() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::default());
        let share = |teams| CredentialCache::<&'static str>::new(clock.clone(), teams).max_team_entries;
        assert_eq!([0, 1, 2, 5, 40].map(share), [50_000, 50_000, 25_000, 10_000, 10_000]);
    }

    fn team_key(team: &str, run: &str) -> CacheKey {
        CacheKey { principal: ScopedPrincipal::parse(&format!("scoped_principal:{team}/user:a")).unwrap(), ..key(run) }
    }

    async fn fill(cache: &CredentialCache<&'static str>, clock: &Arc<ManualClock>, key: CacheKey) {
        let clock = clock.clone();
        cache
            .get_or_fetch(&key, move || async move { Ok(credentials(clock.now(), 3600, 0)) }, |_| true)
            .await
            .result
            .unwrap();
    }

    #[tokio::test]
    async fn one_teams_churn_evicts_its_own_entries_not_other_teams() {
        let clock = Arc::new(ManualClock::default());
        // 50 entries in all, so at most 10 per team.
        let cache: CredentialCache<&'static str> = CredentialCache::with_capacity(clock.clone(), 50);
        for run in ["q1", "q2", "q3"] {
            fill(&cache, &clock, team_key("quiet", run)).await;
        }
        // A noisy team churns through 500 distinct runs (each one an STS call in production).
        for i in 0..500 {
            fill(&cache, &clock, team_key("noisy", &format!("n{i}"))).await;
            assert!(cache.team_len("noisy") <= 10, "{} entries for one team", cache.team_len("noisy"));
        }
        for run in ["q1", "q2", "q3"] {
            assert!(cache.contains(&team_key("quiet", run)), "quiet team's {run} was evicted");
        }
        assert!(cache.contains(&team_key("noisy", "n499")), "the newest entry of the noisy team stays");
    }

    #[tokio::test]
    async fn past_the_global_cap_the_largest_teams_give_up_entries_first() {
        let clock = Arc::new(ManualClock::default());
        let cache: CredentialCache<&'static str> = CredentialCache::with_capacity(clock.clone(), 50);
        for run in ["s1", "s2"] {
            fill(&cache, &clock, team_key("small", run)).await;
        }
        // Six teams of 10 (each at its own cap) overflow the cache's 50.
        for team in ["t1", "t2", "t3", "t4", "t5", "t6"] {
            for i in 0..10 {
                fill(&cache, &clock, team_key(team, &format!("r{i}"))).await;
                assert!(cache.len() <= 50, "{} entries", cache.len());
            }
        }
        assert!(cache.contains(&team_key("small", "s1")) && cache.contains(&team_key("small", "s2")));
    }

    #[tokio::test]
    async fn run_eviction_drops_only_what_it_is_allowed_to_and_purge_drops_the_dead() {
        let f = Fixture::new();
        for run in ["r1", "r2"] {
            f.get(run, 0, Ok(())).await.0.unwrap();
        }
        assert_eq!(f.cache.evict_run("r1", |key| key.principal.team_uid.as_str() == "other"), 0);
        assert_eq!(f.cache.evict_run("r1", |key| key.principal.team_uid.as_str() == "acme"), 1);
        assert_eq!(f.cache.len(), 1);
        // The same run id in another team is that team's: only its own caller may end it.
        fill(&f.cache, &f.clock, team_key("other", "r2")).await;
        assert_eq!(f.cache.evict_run("r2", |key| key.principal.team_uid.as_str() == "other"), 1);
        assert!(f.cache.contains(&key("r2")) && f.cache.team_len("other") == 0);
        f.clock.set(3600);
        assert_eq!(f.cache.purge_expired(), 1);
        assert!(f.cache.is_empty());
        // A failed entry stays while it backs off (its error is the answer), then goes.
        let _ = f.get("r3", 0, Err("throttled")).await;
        assert_eq!((f.cache.purge_expired(), f.cache.len()), (0, 1));
        f.clock.set(3601);
        assert_eq!(f.cache.purge_expired(), 1);
    }
}
