//! In-memory cache of temporary credentials with single flight and refresh ahead of expiry.
//!
//! Keyed by (role, subject, session name, run). Concurrent requests for one key wait on one fetch;
//! credentials are reused until their refresh point (75% of their lifetime, and never later than
//! five minutes before expiry); when a refresh fails, the last good credentials keep serving until
//! they truly expire. Nothing here ever touches the disk.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use super::sts::AwsCredentials;
use crate::config::RoleArn;
use crate::principal::ScopedPrincipal;

/// Never refresh later than this before expiry.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Stop serving stale credentials this long before they expire, so a caller can still use them.
pub const STALE_CUTOFF: Duration = Duration::from_secs(30);
/// Upper bound on cached entries; the oldest expired ones go first.
pub const MAX_ENTRIES: usize = 50_000;

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
    Hit,
    Fetched,
    /// The refresh failed; the previous credentials are still valid and were returned.
    Stale,
}

struct Entry<E> {
    current: RwLock<Option<Arc<CachedCredentials>>>,
    refresh: tokio::sync::Mutex<()>,
    /// How many fetches failed, and the last failure: callers that waited on a fetch that failed
    /// share its answer instead of calling STS again one after another.
    failure: Mutex<(u64, Option<E>)>,
}

impl<E> Default for Entry<E> {
    fn default() -> Self {
        Entry { current: RwLock::new(None), refresh: tokio::sync::Mutex::new(()), failure: Mutex::new((0, None)) }
    }
}

impl<E: Clone> Entry<E> {
    fn failures(&self) -> u64 {
        self.failure.lock().map(|f| f.0).unwrap_or_default()
    }

    /// The last failure, if one happened after the caller saw `seen` failures.
    fn failure_since(&self, seen: u64) -> Option<E> {
        let failure = self.failure.lock().ok()?;
        if failure.0 > seen { failure.1.clone() } else { None }
    }

    fn record_failure(&self, error: &E) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.0 += 1;
            failure.1 = Some(error.clone());
        }
    }

    fn current(&self) -> Option<Arc<CachedCredentials>> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, value: Arc<CachedCredentials>) {
        match self.current.write() {
            Ok(mut guard) => *guard = Some(value),
            Err(poisoned) => *poisoned.into_inner() = Some(value),
        }
    }
}

/// The cache; `E` is the error a fetch can fail with.
pub struct CredentialCache<E> {
    entries: Mutex<HashMap<CacheKey, Arc<Entry<E>>>>,
    clock: Arc<dyn Clock>,
}

impl<E: Clone> CredentialCache<E> {
    pub fn new(clock: Arc<dyn Clock>) -> CredentialCache<E> {
        CredentialCache { entries: Mutex::new(HashMap::new()), clock }
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn entry(&self, key: &CacheKey) -> Arc<Entry<E>> {
        let mut entries = match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(entry) = entries.get(key) {
            return entry.clone();
        }
        if entries.len() >= MAX_ENTRIES {
            // Keep entries with usable credentials and entries someone is fetching right now.
            let now = self.clock.now();
            entries.retain(|_, e| Arc::strong_count(e) > 1 || e.current().is_some_and(|c| c.usable_at(now)));
        }
        entries.entry(key.clone()).or_default().clone()
    }

    /// Return fresh credentials for `key`, calling `fetch` at most once across concurrent callers.
    /// When the fetch fails and `keep_last_good(error)` says the failure is passing, the previous
    /// credentials are returned while they are still valid; a permanent refusal (say, the customer
    /// removed the trust) is returned at once.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        key: &CacheKey,
        fetch: F,
        keep_last_good: impl FnOnce(&E) -> bool,
    ) -> Result<(Arc<CachedCredentials>, Outcome), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CachedCredentials, E>>,
    {
        let entry = self.entry(key);
        if let Some(current) = entry.current()
            && self.clock.now() < current.refresh_at
        {
            return Ok((current, Outcome::Hit));
        }
        let seen = entry.failures();
        let _flight = entry.refresh.lock().await;
        let previous = entry.current();
        if let Some(current) = &previous
            && self.clock.now() < current.refresh_at
        {
            return Ok((current.clone(), Outcome::Hit));
        }
        let error = match entry.failure_since(seen) {
            // The fetch this caller waited for failed: share its answer.
            Some(error) => error,
            None => match fetch().await {
                Ok(fresh) => {
                    let fresh = Arc::new(fresh);
                    entry.store(fresh.clone());
                    return Ok((fresh, Outcome::Fetched));
                }
                Err(error) => {
                    entry.record_failure(&error);
                    error
                }
            },
        };
        match previous {
            Some(previous) if previous.usable_at(self.clock.now()) && keep_last_good(&error) => {
                Ok((previous, Outcome::Stale))
            }
            _ => Err(error),
        }
    }

    /// Drop the entries of run `run_id` that `allowed` accepts; returns how many were dropped.
    pub fn evict_run(&self, run_id: &str, allowed: impl Fn(&CacheKey) -> bool) -> usize {
        let mut entries = match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = entries.len();
        entries.retain(|key, _| !(key.run_id.as_deref() == Some(run_id) && allowed(key)));
        before - entries.len()
    }

    /// Drop entries whose credentials can no longer be used, and entries whose only fetch failed
    /// (unless a fetch for them is under way).
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        let mut entries = match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let before = entries.len();
        entries.retain(|_, e| match e.current() {
            Some(current) => current.usable_at(now),
            None => e.refresh.try_lock().is_err(),
        });
        before - entries.len()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    #[tokio::test]
    async fn callers_waiting_on_a_failed_fetch_share_its_failure() {
        let clock = Arc::new(ManualClock::default());
        let cache = Arc::new(CredentialCache::<&'static str>::new(clock.clone()));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(
                        &key("f"),
                        || async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Err::<CachedCredentials, _>("throttled")
                        },
                        |_| true,
                    )
                    .await
                    .map(|_| ())
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), Err("throttled"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "16 callers, one failing fetch");
        // A later caller tries again.
        let again = cache
            .get_or_fetch(&key("f"), || async { Ok::<_, &str>(credentials(clock.now(), 3600, 1)) }, |_| true)
            .await;
        assert!(again.is_ok());
    }

    /// A clock tests move by hand (seconds since the epoch).
    #[derive(Default)]
    struct ManualClock(AtomicU64);

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

    #[test]
    fn refresh_point_is_75_percent_and_never_within_five_minutes() {
        let now = SystemTime::UNIX_EPOCH;
        let hour = credentials(now, 3600, 0);
        assert_eq!(hour.refresh_at, now + Duration::from_secs(2700));
        let fifteen = credentials(now, 900, 0);
        assert_eq!(fifteen.refresh_at, now + Duration::from_secs(600));
        let short = credentials(now, 60, 0);
        assert_eq!(short.refresh_at, now);
    }

    #[tokio::test]
    async fn single_flight_refresh_and_last_good() {
        let clock = Arc::new(ManualClock::default());
        let cache = Arc::new(CredentialCache::new(clock.clone()));
        let calls = Arc::new(AtomicUsize::new(0));

        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (cache, calls, clock) = (cache.clone(), calls.clone(), clock.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(
                        &key("r1"),
                        || async {
                            let id = calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok::<_, ()>(credentials(clock.now(), 3600, id))
                        },
                        |_| true,
                    )
                    .await
                    .unwrap()
                    .0
                    .credentials
                    .access_key_id
                    .clone()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), "ASIA0");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "32 concurrent callers, one fetch");

        // Before the refresh point: a hit. After it: a new fetch.
        clock.0.store(2699, Ordering::SeqCst);
        let (_, outcome) =
            cache.get_or_fetch(&key("r1"), || async { Err::<CachedCredentials, ()>(()) }, |_| true).await.unwrap();
        assert_eq!(outcome, Outcome::Hit);
        clock.0.store(2700, Ordering::SeqCst);
        let (stale, outcome) =
            cache.get_or_fetch(&key("r1"), || async { Err::<CachedCredentials, ()>(()) }, |_| true).await.unwrap();
        assert_eq!(outcome, Outcome::Stale, "refresh failed, last good served");
        assert_eq!(stale.credentials.access_key_id, "ASIA0");
        let refused = cache.get_or_fetch(&key("r1"), || async { Err::<CachedCredentials, ()>(()) }, |_| false).await;
        assert!(refused.is_err(), "a permanent refusal is not papered over with old credentials");
        clock.0.store(3600 - 10, Ordering::SeqCst);
        assert!(cache.get_or_fetch(&key("r1"), || async { Err::<CachedCredentials, ()>(()) }, |_| true).await.is_err());
        let (fresh, outcome) = cache
            .get_or_fetch(&key("r1"), || async { Ok::<_, ()>(credentials(clock.now(), 3600, 7)) }, |_| true)
            .await
            .unwrap();
        assert_eq!((outcome, fresh.credentials.access_key_id.as_str()), (Outcome::Fetched, "ASIA7"));
    }

    #[tokio::test]
    async fn run_eviction_drops_only_that_run_of_that_team() {
        let clock = Arc::new(ManualClock::default());
        let cache = CredentialCache::new(clock.clone());
        for run in ["r1", "r2"] {
            cache
                .get_or_fetch(&key(run), || async { Ok::<_, ()>(credentials(clock.now(), 3600, 0)) }, |_| true)
                .await
                .unwrap();
        }
        assert_eq!(cache.evict_run("r1", |key| key.principal.team_uid.as_str() == "other"), 0);
        assert_eq!(cache.evict_run("r1", |key| key.principal.team_uid.as_str() == "acme"), 1);
        assert_eq!(cache.len(), 1);
        clock.0.store(3600, Ordering::SeqCst);
        assert_eq!(cache.purge_expired(), 1);
        assert!(cache.is_empty());

        // A key whose fetch failed leaves nothing behind after a purge.
        assert!(cache.get_or_fetch(&key("r3"), || async { Err::<CachedCredentials, ()>(()) }, |_| true).await.is_err());
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.purge_expired(), 1);
        assert!(cache.is_empty());
    }
}
