//! Counters in Redis, shared by every replica (`[limits] redis_url`): the same three kinds as the
//! in-process store ([`super::store`]), each acquisition and each correction one Lua script, so
//! Redis applies it atomically (all counters of a request, or none). Rates are GCRA times with an
//! expiry of their minute; concurrency slots are sorted sets of leases with an expiry score (a
//! replica that dies without releasing frees its slots after [`LEASE_TTL`], and a live one renews
//! the leases it holds); sums expire with their window.
//!
//! The client is `redis`'s connection manager (reconnects on its own; rustls for `rediss://`);
//! every call is bounded by `redis_timeout_ms`. Must never: log the password (it is set on the
//! connection, never put in a URL), or block a request longer than the timeout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, Script};

use super::now_us;
use super::policy::StoreSettings;
use super::store::{Adjust, Check, Key, Outcome, Room, Store, StoreError, interval_us};

/// How long a concurrency slot is held without renewal (a replica renews its own every third of
/// it).
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// Both scripts read the time from Redis (`TIME`), so every replica's requests are timed by one
/// clock: a replica whose clock is behind cannot take room another's counted as spent.
///
/// KEYS: the counters. ARGV: (unused), the lease, the lease's expiry (µs), then four per key:
/// kind (`r` rate, `s` slots, `m` sum), limit, cost, and `whole` (rates) or the TTL in seconds
/// (sums). Returns `{0, used...}` when every counter had room (and took it), else
/// `{index, used, retry_after}` (µs for rates, seconds for sums) for the first that had none.
const ACQUIRE: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local lease = ARGV[2]
local lease_expiry = tonumber(ARGV[3])
local minute = 60000000
local used = {}
local apply = {}
for i = 1, #KEYS do
  local base = 3 + (i - 1) * 4
  local kind = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local cost = tonumber(ARGV[base + 3])
  local extra = tonumber(ARGV[base + 4])
  if kind == 'r' then
    local interval = math.max(1, math.floor(minute / limit))
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    local start = math.max(tat, now)
    local busy = start - now
    local need = 1
    if extra == 1 then need = math.max(cost, 1) end
    if busy + need * interval > minute then
      return {i, busy, busy + need * interval - minute}
    end
    apply[i] = start + cost * interval
    used[i] = apply[i] - now
  elseif kind == 's' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    local held = redis.call('ZCARD', KEYS[i])
    if held >= limit then
      return {i, held, 1}
    end
    used[i] = held + 1
  else
    local value = tonumber(redis.call('GET', KEYS[i]) or '0')
    if value >= limit then
      return {i, value, extra}
    end
    used[i] = value + cost
  end
end
for i = 1, #KEYS do
  local base = 3 + (i - 1) * 4
  local kind = ARGV[base + 1]
  if kind == 'r' then
    redis.call('SET', KEYS[i], string.format('%d', apply[i]), 'PX', math.floor((apply[i] - now) / 1000) + 1000)
  elseif kind == 's' then
    redis.call('ZADD', KEYS[i], lease_expiry, lease)
    redis.call('PEXPIREAT', KEYS[i], math.floor(lease_expiry / 1000) + 1000)
  else
    redis.call('INCRBY', KEYS[i], ARGV[base + 3])
    if redis.call('TTL', KEYS[i]) < 0 then
      redis.call('EXPIRE', KEYS[i], ARGV[base + 4])
    end
  end
end
local out = {0}
for i = 1, #KEYS do out[i + 1] = used[i] end
return out
"#;

/// KEYS: the counters. ARGV: (unused), the lease, then three per key: kind (`r` rate correction,
/// `m` sum correction, `x` release), and two numbers (rates: limit, delta; sums: delta, TTL).
const ADJUST: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local lease = ARGV[2]
local minute = 60000000
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 3
  local kind = ARGV[base + 1]
  if kind == 'r' then
    local interval = math.max(1, math.floor(minute / tonumber(ARGV[base + 2])))
    local delta = tonumber(ARGV[base + 3])
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if delta >= 0 then
      tat = math.max(tat, now) + delta * interval
    else
      tat = math.max(now, tat + delta * interval)
    end
    redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
  elseif kind == 'm' then
    redis.call('INCRBY', KEYS[i], ARGV[base + 2])
    if redis.call('TTL', KEYS[i]) < 0 then
      redis.call('EXPIRE', KEYS[i], ARGV[base + 3])
    end
  else
    redis.call('ZREM', KEYS[i], lease)
  end
end
return 0
"#;

/// Redis, shared by replicas.
pub struct RedisStore {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    acquire: Script,
    adjust: Script,
    /// Slots this replica holds, by key and lease: renewed until released.
    held: Mutex<HashMap<(Key, String), ()>>,
}

impl RedisStore {
    /// A store for `settings` (its URL set): connects lazily, reconnects on its own, and renews
    /// this replica's leases in the background. Call within the runtime.
    pub fn start(settings: &StoreSettings) -> Result<std::sync::Arc<RedisStore>, String> {
        let url = settings.redis_url.clone().ok_or("no redis_url")?;
        let mut info = url.into_connection_info().map_err(|e| format!("limits.redis_url: {e}"))?;
        if let Some(password) = &settings.password {
            let redis = info.redis_settings().clone().set_password(password.expose());
            info = info.set_redis_settings(redis);
        }
        let client = redis::Client::open(info).map_err(|e| format!("limits.redis_url: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|e| format!("limits.redis_url: {e}"))?;
        let store = std::sync::Arc::new(RedisStore {
            connection,
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            acquire: Script::new(ACQUIRE),
            adjust: Script::new(ADJUST),
            held: Mutex::new(HashMap::new()),
        });
        let renewing = std::sync::Arc::downgrade(&store);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEASE_TTL / 3);
            loop {
                tick.tick().await;
                let Some(store) = renewing.upgrade() else { return };
                store.renew().await;
            }
        });
        Ok(store)
    }

    fn key(&self, key: &(impl std::fmt::Display + ?Sized)) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Renew every lease this replica holds.
    async fn renew(&self) {
        let held: Vec<(Key, String)> = self.held.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        if held.is_empty() {
            return;
        }
        let expiry = now_us() + LEASE_TTL.as_micros() as u64;
        let mut pipe = redis::pipe();
        for (key, lease) in &held {
            pipe.cmd("ZADD").arg(self.key(key)).arg("XX").arg(expiry).arg(lease).ignore();
        }
        let mut connection = self.connection.clone();
        let _ = tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut connection)).await;
    }

    async fn run<T: redis::FromRedisValue>(&self, invocation: redis::ScriptInvocation<'_>) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, invocation.invoke_async::<T>(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError(format!("redis: {}", error.kind_name()))),
            Err(_) => Err(StoreError(format!("redis: no answer within {} ms", self.timeout.as_millis()))),
        }
    }
}

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for redis::RedisError {
    /// The error's kind only: its text could quote the server's words.
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind())
    }
}

/// The room of a rate with `busy_us` of its minute taken.
fn rate_room(limit: u64, busy_us: u64) -> Room {
    Room { limit, used: busy_us.div_ceil(interval_us(limit)), reset_secs: busy_us.div_ceil(1_000_000) }
}

/// The lease id of one admission (unique per acquisition).
pub fn lease_id() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    crate::identity::auth::hex(&bytes)
}

impl RedisStore {
    /// [`Store::acquire`] for the slots of lease `lease`.
    pub async fn acquire_leased(&self, checks: &[Check], now: u64, lease: &str) -> Result<Outcome, StoreError> {
        let mut invocation = self.acquire.prepare_invoke();
        let expiry = now + LEASE_TTL.as_micros() as u64;
        invocation.arg(now).arg(lease).arg(expiry);
        for check in checks {
            invocation.key(self.key(check.key()));
            match check {
                Check::Rate { limit, cost, whole, .. } => {
                    invocation.arg("r").arg(*limit).arg(*cost).arg(u8::from(*whole))
                }
                Check::Slots { limit, .. } => invocation.arg("s").arg(*limit).arg(1).arg(0),
                Check::Sum { limit, cost, ttl_secs, .. } => invocation.arg("m").arg(*limit).arg(*cost).arg(*ttl_secs),
            };
        }
        let answer: Vec<i64> = self.run(invocation).await?;
        let number = |i: usize| answer.get(i).copied().unwrap_or(0).max(0) as u64;
        let index = number(0) as usize;
        if index == 0 {
            let mut rooms = Vec::with_capacity(checks.len());
            for (i, check) in checks.iter().enumerate() {
                let used = number(i + 1);
                rooms.push(match check {
                    Check::Rate { limit, .. } => rate_room(*limit, used),
                    Check::Slots { key, limit } => {
                        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert((key.clone(), lease.to_owned()), ());
                        Room { limit: *limit, used, reset_secs: 0 }
                    }
                    Check::Sum { limit, ttl_secs, .. } => Room { limit: *limit, used, reset_secs: *ttl_secs },
                });
            }
            return Ok(Outcome::Admitted { rooms });
        }
        let Some(check) = checks.get(index - 1) else {
            return Err(StoreError("redis: an answer naming no counter".into()));
        };
        let (used, retry) = (number(1), number(2));
        let (room, retry_after_secs) = match check {
            Check::Rate { limit, .. } => (rate_room(*limit, used), retry.div_ceil(1_000_000).max(1)),
            Check::Slots { limit, .. } => (Room { limit: *limit, used, reset_secs: 0 }, 1),
            Check::Sum { limit, ttl_secs, .. } => (Room { limit: *limit, used, reset_secs: *ttl_secs }, retry.max(1)),
        };
        Ok(Outcome::Refused { index: index - 1, room, retry_after_secs })
    }

    /// [`Store::adjust`] for the slots of lease `lease`.
    pub async fn adjust_leased(&self, adjustments: &[Adjust], now: u64, lease: &str) -> Result<(), StoreError> {
        let mut invocation = self.adjust.prepare_invoke();
        invocation.arg(now).arg(lease);
        for adjustment in adjustments {
            match adjustment {
                Adjust::Rate { key, limit, delta } => invocation.key(self.key(key)).arg("r").arg(*limit).arg(*delta),
                Adjust::Sum { key, delta, ttl_secs } => {
                    invocation.key(self.key(key)).arg("m").arg(*delta).arg((*ttl_secs).max(1))
                }
                Adjust::Release { key } => {
                    self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&(key.clone(), lease.to_owned()));
                    invocation.key(self.key(key)).arg("x").arg(0).arg(0)
                }
            };
        }
        self.run::<i64>(invocation).await.map(|_| ())
    }

    /// Add `fields` to the hash `key`, kept `ttl_secs`.
    pub async fn add_usage(&self, key: &str, fields: &[(String, u64)], ttl_secs: u64) -> Result<(), StoreError> {
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (field, delta) in fields {
            pipe.cmd("HINCRBY").arg(&key).arg(field).arg(*delta).ignore();
        }
        pipe.cmd("EXPIRE").arg(&key).arg(ttl_secs).arg("NX").ignore();
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut connection)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(StoreError(format!("redis: {}", error.kind_name()))),
            Err(_) => Err(StoreError("redis: no answer in time".into())),
        }
    }

    /// Every field of the hash `key`.
    pub async fn usage(&self, key: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut connection = self.connection.clone();
        let command = redis::cmd("HGETALL").arg(self.key(key)).to_owned();
        match tokio::time::timeout(self.timeout, command.query_async::<Vec<(String, u64)>>(&mut connection)).await {
            Ok(Ok(mut fields)) => {
                fields.sort();
                Ok(fields)
            }
            Ok(Err(error)) => Err(StoreError(format!("redis: {}", error.kind_name()))),
            Err(_) => Err(StoreError("redis: no answer in time".into())),
        }
    }

    /// The values of sums (`None`: no such key).
    pub async fn sums(&self, keys: &[Key]) -> Result<Vec<Option<u64>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("MGET");
        for key in keys {
            command.arg(self.key(key));
        }
        match tokio::time::timeout(self.timeout, command.query_async::<Vec<Option<u64>>>(&mut connection)).await {
            Ok(Ok(values)) => Ok(values),
            Ok(Err(error)) => Err(StoreError(format!("redis: {}", error.kind_name()))),
            Err(_) => Err(StoreError("redis: no answer in time".into())),
        }
    }
}

impl Store for RedisStore {
    fn acquire<'a>(
        &'a self,
        checks: &'a [Check],
        now_us: u64,
        lease: &'a str,
    ) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(self.acquire_leased(checks, now_us, lease))
    }

    fn adjust<'a>(
        &'a self,
        adjustments: &'a [Adjust],
        now_us: u64,
        lease: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.adjust_leased(adjustments, now_us, lease))
    }

    fn sums<'a>(&'a self, keys: &'a [Key]) -> BoxFuture<'a, Result<Vec<Option<u64>>, StoreError>> {
        Box::pin(RedisStore::sums(self, keys))
    }

    fn add_usage<'a>(
        &'a self,
        key: &'a str,
        fields: &'a [(String, u64)],
        ttl_secs: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(RedisStore::add_usage(self, key, fields, ttl_secs))
    }

    fn usage<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<(String, u64)>, StoreError>> {
        Box::pin(RedisStore::usage(self, key))
    }
}
