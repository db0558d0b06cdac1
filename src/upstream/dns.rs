//! Name resolution for the endpoints behind the egress guard: one asynchronous resolver per
//! process, a bounded cache of answers and failures, and caps on the lookups outstanding at once.
//!
//! The resolver is hickory-resolver over plain UDP and TCP on the tokio runtime: the system's
//! configuration (`/etc/resolv.conf`, `/etc/hosts`) unless `[egress] nameservers` names the servers.
//! A lookup that does not answer costs a socket and a timer until [`RESOLVE_TIMEOUT`], never a
//! thread: `getaddrinfo` on tokio's blocking pool did, and the thread outlived the timeout.
//!
//! Every name has one entry: an answer (its addresses until the DNS TTL runs out, clamped to
//! [`POSITIVE_TTL`]), a failure (no such name: its negative TTL clamped to [`NEGATIVE_TTL`]; no
//! answer or a server failure: [`FAILURE_TTL`]), or a lookup under way that every caller asking
//! for that name waits on, so a flood for one dead name costs one query. At most [`MAX_NAMES`]
//! entries; the soonest to expire make room.
//!
//! A new lookup takes a slot: at most `max_lookups` at once, at most `max_lookups_per_team` for one
//! team. A lookup without a free slot is refused at once ([`LookupError::TeamBusy`],
//! [`LookupError::GatewayBusy`]) and the refusal is not cached, so a team that used up its share is
//! refused while other teams' lookups go on.
//!
//! Must never: block a thread, wait for a slot, keep a refusal for being busy, judge addresses (the
//! egress guard does), or put a host name or an address in an error or a log line.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use foldhash::HashMap;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::time::Instant;

use crate::config::EgressConfig;

/// Longest a lookup may take, all servers and retries included.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one query waits for a server before the next try.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds on how long an answer is kept: at least the minimum, so a zero TTL does not send every
/// request to the DNS; at most the maximum, so a moved endpoint is followed within minutes.
pub const POSITIVE_TTL: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(300));
/// Bounds on how long "no such name" is kept (the zone's negative TTL, RFC 2308).
pub const NEGATIVE_TTL: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));
/// How long a lookup that timed out or failed is kept: short, but a flood for a dead name meets
/// the kept failure instead of a new query.
pub const FAILURE_TTL: Duration = Duration::from_secs(5);
/// Most names kept (answers, failures and lookups under way together).
pub const MAX_NAMES: usize = 8192;
/// The longest host name DNS carries (RFC 1035: 255 octets on the wire, 253 as text).
const MAX_NAME_LEN: usize = 253;

/// Why a lookup gave no addresses. Holds no host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    /// The name does not exist or has no address.
    NotFound,
    /// The DNS servers failed or could not be reached.
    Failed,
    /// No answer within [`RESOLVE_TIMEOUT`].
    Timeout,
    /// The caller's team has `max_lookups_per_team` lookups under way.
    TeamBusy,
    /// The gateway has `max_lookups` lookups under way.
    GatewayBusy,
}

/// What one DNS query found, before caching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Found {
        addresses: Vec<IpAddr>,
        ttl: Duration,
    },
    /// No such name, or no address for it; the zone's negative TTL when it sent one.
    NotFound {
        negative_ttl: Option<Duration>,
    },
    Failed,
}

/// The query behind the cache: hickory in production, a script in tests.
pub type Query = Arc<dyn Fn(&str) -> BoxFuture<'static, Answer> + Send + Sync>;

type Outcome = Result<Arc<[IpAddr]>, LookupError>;
type Pending = Shared<Pin<Box<dyn Future<Output = Outcome> + Send>>>;

enum Entry {
    /// A lookup under way; its task stores the outcome when it ends.
    Pending(Pending),
    Done {
        outcome: Outcome,
        expires: Instant,
    },
}

#[derive(Default)]
struct State {
    names: HashMap<Box<str>, Entry>,
    running: usize,
    per_team: HashMap<Arc<str>, usize>,
}

impl State {
    /// Make room for one more name: drop expired entries, then the one expiring first. Lookups
    /// under way are never dropped (there are at most `max_lookups` of them, fewer than the room).
    fn make_room(&mut self, now: Instant) {
        if self.names.len() < MAX_NAMES {
            return;
        }
        self.names.retain(|_, entry| !matches!(entry, Entry::Done { expires, .. } if *expires <= now));
        while self.names.len() >= MAX_NAMES {
            let soonest = self
                .names
                .iter()
                .filter_map(|(name, entry)| match entry {
                    Entry::Done { expires, .. } => Some((*expires, name)),
                    Entry::Pending(_) => None,
                })
                .min_by_key(|(expires, _)| *expires)
                .map(|(_, name)| name.clone());
            match soonest {
                Some(name) => self.names.remove(&name),
                None => return,
            };
        }
    }
}

/// The slot of one lookup under way, given back when the lookup ends (or its task is dropped).
struct Slot {
    state: Arc<Mutex<State>>,
    team: Option<Arc<str>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        state.running = state.running.saturating_sub(1);
        if let Some(team) = &self.team
            && let Some(count) = state.per_team.get_mut(team)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.per_team.remove(team);
            }
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The process's resolver, cache and lookup caps. Cheap to share behind an `Arc`.
pub struct Dns {
    query: Query,
    max_lookups: usize,
    max_lookups_per_team: usize,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("max_lookups", &self.max_lookups)
            .field("max_lookups_per_team", &self.max_lookups_per_team)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// The resolver `[egress]` describes (start-up: reads `/etc/resolv.conf` and `/etc/hosts`).
    /// When the system's configuration cannot be read, says so once and fails every lookup of a
    /// name (addresses written as such still work): a gateway that serves only Bedrock needs none.
    pub fn from_config(config: &EgressConfig) -> Dns {
        let query = match hickory(config.nameservers.as_deref()) {
            Ok(resolver) => hickory_query(resolver),
            Err(error) => {
                tracing::warn!(%error, "cannot read the system's DNS configuration: endpoints named by a host name will fail; set [egress] nameservers");
                let failed: Query = Arc::new(|_: &str| async { Answer::Failed }.boxed());
                failed
            }
        };
        Dns::with_query(query, config.max_lookups, config.max_lookups_per_team)
    }

    /// A cache and caps in front of `query` (tests script the DNS this way).
    pub fn with_query(query: Query, max_lookups: usize, max_lookups_per_team: usize) -> Dns {
        Dns {
            query,
            max_lookups: max_lookups.max(1),
            max_lookups_per_team: max_lookups_per_team.max(1),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// The addresses of `host` (a name, not an address). `team` is whose request needs it; `None`
    /// (local mode, or a caller with no team) counts against the global cap only.
    pub async fn lookup(&self, host: &str, team: Option<&Arc<str>>) -> Result<Arc<[IpAddr]>, LookupError> {
        if host.is_empty() || host.len() > MAX_NAME_LEN {
            return Err(LookupError::NotFound);
        }
        let name: Box<str> = host.to_ascii_lowercase().into_boxed_str();
        let pending = {
            let mut state = lock(&self.state);
            let now = Instant::now();
            match state.names.get(&name) {
                Some(Entry::Done { outcome, expires }) if *expires > now => return outcome.clone(),
                Some(Entry::Pending(pending)) => pending.clone(),
                _ => {
                    let slot = self.take_slot(&mut state, team)?;
                    let pending = self.start(name.clone(), slot);
                    state.make_room(now);
                    state.names.insert(name, Entry::Pending(pending.clone()));
                    pending
                }
            }
        };
        pending.await
    }

    fn take_slot(&self, state: &mut State, team: Option<&Arc<str>>) -> Result<Slot, LookupError> {
        if let Some(team) = team
            && state.per_team.get(team).copied().unwrap_or(0) >= self.max_lookups_per_team
        {
            return Err(LookupError::TeamBusy);
        }
        if state.running >= self.max_lookups {
            return Err(LookupError::GatewayBusy);
        }
        state.running += 1;
        if let Some(team) = team {
            *state.per_team.entry(team.clone()).or_insert(0) += 1;
        }
        Ok(Slot { state: self.state.clone(), team: team.cloned() })
    }

    /// Run the query in a task of its own, so the answer is kept even when the caller that asked
    /// first has gone; the task holds the slot until it ends.
    fn start(&self, name: Box<str>, slot: Slot) -> Pending {
        let query = (self.query)(&name);
        let state = self.state.clone();
        let task = tokio::spawn(async move {
            let (outcome, ttl) = match tokio::time::timeout(RESOLVE_TIMEOUT, query).await {
                Err(_) => (Err(LookupError::Timeout), FAILURE_TTL),
                Ok(Answer::Failed) => (Err(LookupError::Failed), FAILURE_TTL),
                Ok(Answer::NotFound { negative_ttl }) => {
                    let ttl = negative_ttl.unwrap_or(NEGATIVE_TTL.0).clamp(NEGATIVE_TTL.0, NEGATIVE_TTL.1);
                    (Err(LookupError::NotFound), ttl)
                }
                Ok(Answer::Found { addresses, .. }) if addresses.is_empty() => {
                    (Err(LookupError::NotFound), NEGATIVE_TTL.0)
                }
                Ok(Answer::Found { addresses, ttl }) => {
                    (Ok(Arc::from(addresses)), ttl.clamp(POSITIVE_TTL.0, POSITIVE_TTL.1))
                }
            };
            {
                let mut state = lock(&state);
                let now = Instant::now();
                if !state.names.contains_key(&name) {
                    state.make_room(now);
                }
                state.names.insert(name, Entry::Done { outcome: outcome.clone(), expires: now + ttl });
            }
            drop(slot);
            outcome
        });
        let waited: Pin<Box<dyn Future<Output = Outcome> + Send>> =
            Box::pin(task.map(|joined| joined.unwrap_or(Err(LookupError::Failed))));
        waited.shared()
    }

    /// Lookups under way now (for tests and metrics).
    pub fn running(&self) -> usize {
        lock(&self.state).running
    }

    /// Names kept now, lookups under way included.
    pub fn cached_names(&self) -> usize {
        lock(&self.state).names.len()
    }
}

/// A hickory resolver: `nameservers` over UDP then TCP, else the system's configuration.
fn hickory(nameservers: Option<&[SocketAddr]>) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match nameservers {
        Some(servers) => {
            let servers = servers
                .iter()
                .map(|server| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = server.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = server.port();
                    NameServerConfig::new(server.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        }
        None => TokioResolver::builder(provider).map_err(|error| error.to_string())?,
    };
    let options = builder.options_mut();
    options.timeout = QUERY_TIMEOUT;
    options.attempts = 2;
    // Both families, as getaddrinfo did: the guard judges every address a name has.
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.use_hosts_file = ResolveHosts::Auto;
    // [`Dns`] keeps the answers (with its own TTL bounds); hickory keeps none of its own.
    options.cache_size = 0;
    builder.build().map_err(|error| error.to_string())
}

fn hickory_query(resolver: TokioResolver) -> Query {
    Arc::new(move |name: &str| {
        let resolver = resolver.clone();
        let name = name.to_owned();
        async move {
            match resolver.lookup_ip(name.as_str()).await {
                Ok(lookup) => {
                    let ttl = lookup.valid_until().saturating_duration_since(std::time::Instant::now());
                    Answer::Found { addresses: lookup.iter().collect(), ttl }
                }
                Err(error) if error.is_no_records_found() => {
                    let negative_ttl = match &error {
                        hickory_resolver::net::NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(
                            records,
                        )) => records.negative_ttl.map(|ttl| Duration::from_secs(u64::from(ttl))),
                        _ => None,
                    };
                    Answer::NotFound { negative_ttl }
                }
                Err(_) => Answer::Failed,
            }
        }
        .boxed()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scripted DNS: every query is counted and answered by `answer` after `delay` (`None`: never).
    fn scripted(
        delay: Option<Duration>,
        answer: impl Fn(&str) -> Answer + Send + Sync + 'static,
    ) -> (Query, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let answer = Arc::new(answer);
        let query: Query = Arc::new(move |name: &str| {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            let name = name.to_owned();
            async move {
                match delay {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => std::future::pending::<()>().await,
                }
                answer(&name)
            }
            .boxed()
        });
        (query, calls)
    }

    fn found(ttl: Duration) -> Answer {
        Answer::Found { addresses: vec![IpAddr::from([93, 184, 216, 34])], ttl }
    }

    fn team(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_for_one_name_costs_one_query() {
        let (query, calls) = scripted(Some(Duration::from_millis(200)), |_| found(Duration::from_secs(60)));
        let dns = Arc::new(Dns::with_query(query, 2, 1));
        let b = team("b");
        let lookups: Vec<_> = (0..500)
            .map(|i| {
                let (dns, b) = (dns.clone(), b.clone());
                // Case does not make another name.
                let host = if i % 2 == 0 { "API.example.com" } else { "api.example.com" };
                tokio::spawn(async move { dns.lookup(host, Some(&b)).await })
            })
            .collect();
        for lookup in lookups {
            assert_eq!(lookup.await.unwrap().unwrap().as_ref(), [IpAddr::from([93, 184, 216, 34])]);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one query for 500 lookups, one slot of one");
        assert_eq!(dns.running(), 0, "the slot is given back");
        tokio::time::advance(Duration::from_secs(59)).await;
        dns.lookup("api.example.com", Some(&b)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "kept for its TTL");
        tokio::time::advance(Duration::from_secs(2)).await;
        dns.lookup("api.example.com", Some(&b)).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "asked again once the TTL ran out");
    }

    /// How long `answer` is kept: the first moment (in whole seconds) a lookup queries again.
    async fn kept_for(answer: Answer) -> u64 {
        let (query, calls) = scripted(Some(Duration::ZERO), move |_| answer.clone());
        let dns = Dns::with_query(query, 4, 4);
        let _ = dns.lookup("name.example", None).await;
        for second in 1..=400 {
            tokio::time::advance(Duration::from_secs(1)).await;
            let _ = dns.lookup("name.example", None).await;
            if calls.load(Ordering::SeqCst) > 1 {
                return second;
            }
        }
        u64::MAX
    }

    #[tokio::test(start_paused = true)]
    async fn answers_and_failures_are_kept_for_their_clamped_ttl() {
        assert_eq!(kept_for(found(Duration::from_secs(60))).await, 60);
        assert_eq!(kept_for(found(Duration::ZERO)).await, POSITIVE_TTL.0.as_secs(), "a zero TTL is raised");
        assert_eq!(kept_for(found(Duration::from_secs(86_400))).await, POSITIVE_TTL.1.as_secs(), "a day is cut");
        let no_such = |ttl: Option<u64>| Answer::NotFound { negative_ttl: ttl.map(Duration::from_secs) };
        assert_eq!(kept_for(no_such(Some(10))).await, 10);
        assert_eq!(kept_for(no_such(Some(3600))).await, NEGATIVE_TTL.1.as_secs());
        assert_eq!(kept_for(no_such(None)).await, NEGATIVE_TTL.0.as_secs());
        assert_eq!(kept_for(Answer::Failed).await, FAILURE_TTL.as_secs());
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_that_never_answers_times_out_and_the_failure_is_kept() {
        let (query, calls) = scripted(None, |_| Answer::Failed);
        let dns = Arc::new(Dns::with_query(query, 4, 4));
        let started = Instant::now();
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let dns = dns.clone();
                tokio::spawn(async move { dns.lookup("dead.example", None).await })
            })
            .collect();
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Err(LookupError::Timeout));
        }
        let waited = started.elapsed();
        assert!(waited >= RESOLVE_TIMEOUT && waited < RESOLVE_TIMEOUT + Duration::from_secs(1), "{waited:?}");
        assert_eq!(dns.running(), 0);
        // The failure is answered at once while it is kept, without a query.
        assert_eq!(dns.lookup("dead.example", None).await, Err(LookupError::Timeout));
        assert_eq!(started.elapsed(), waited);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_team_over_its_share_is_refused_and_other_teams_are_not() {
        let (query, calls) = scripted(None, |_| Answer::Failed);
        let dns = Arc::new(Dns::with_query(query, 4, 2));
        let (a, b, c) = (team("a"), team("b"), team("c"));
        let start = |host: &'static str, owner: &Arc<str>| {
            let (dns, owner) = (dns.clone(), owner.clone());
            tokio::spawn(async move { dns.lookup(host, Some(&owner)).await })
        };
        let settle = |running: usize| {
            let dns = dns.clone();
            async move {
                for _ in 0..1000 {
                    if dns.running() == running {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
                panic!("{} lookups under way, not {running}", dns.running());
            }
        };
        let b1 = start("b1.example", &b);
        let b2 = start("b2.example", &b);
        settle(2).await;
        // Team b's share is used up: refused at once, whatever the name.
        assert_eq!(dns.lookup("b3.example", Some(&b)).await, Err(LookupError::TeamBusy));
        // Waiting on a lookup already under way takes no slot.
        let joined = start("b1.example", &b);
        // Other teams still look up.
        let a1 = start("a1.example", &a);
        let c1 = start("c1.example", &c);
        settle(4).await;
        // The gateway's cap: refused for everyone now, b's refusal still its own.
        assert_eq!(dns.lookup("a2.example", Some(&a)).await, Err(LookupError::GatewayBusy));
        assert_eq!(dns.lookup("x.example", None).await, Err(LookupError::GatewayBusy));
        assert_eq!(dns.lookup("b3.example", Some(&b)).await, Err(LookupError::TeamBusy));
        for lookup in [b1, b2, joined, a1, c1] {
            assert_eq!(lookup.await.unwrap(), Err(LookupError::Timeout));
        }
        assert_eq!((dns.running(), calls.load(Ordering::SeqCst)), (0, 4));
        // A refusal for being busy was not kept: the name is looked up now.
        let b3 = start("b3.example", &b);
        settle(1).await;
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(b3.await.unwrap(), Err(LookupError::Timeout));
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_holds_at_most_max_names() {
        let (query, calls) = scripted(Some(Duration::ZERO), |_| found(Duration::from_secs(300)));
        let dns = Dns::with_query(query, 4, 4);
        for i in 0..MAX_NAMES + 500 {
            dns.lookup(&format!("n{i}.example"), None).await.unwrap();
        }
        assert_eq!(dns.cached_names(), MAX_NAMES);
        assert_eq!(calls.load(Ordering::SeqCst), MAX_NAMES + 500);
        // The newest names are kept.
        dns.lookup(&format!("n{}.example", MAX_NAMES + 499), None).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), MAX_NAMES + 500);
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(dns.lookup(&long, None).await, Err(LookupError::NotFound));
        assert_eq!(calls.load(Ordering::SeqCst), MAX_NAMES + 500, "an over-long name is never asked");
    }

    /// A DNS server on loopback: `up.example` has one A record (TTL 42) and no AAAA; every other
    /// name does not exist (negative TTL 7 from the zone's SOA).
    async fn answering_dns() -> SocketAddr {
        use hickory_resolver::proto::op::{Message, ResponseCode};
        use hickory_resolver::proto::rr::rdata::{A, SOA};
        use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = [0u8; 1500];
            while let Ok((size, from)) = socket.recv_from(&mut buffer).await {
                let Ok(query) = Message::from_vec(&buffer[..size]) else { continue };
                let Some(question) = query.queries.first().cloned() else { continue };
                let mut response = Message::response(query.metadata.id, query.metadata.op_code);
                response.metadata.recursion_desired = query.metadata.recursion_desired;
                response.metadata.recursion_available = true;
                response.add_query(question.clone());
                let known = question.name().to_ascii().eq_ignore_ascii_case("up.example.");
                if known && question.query_type() == RecordType::A {
                    response.add_answer(Record::from_rdata(
                        question.name().clone(),
                        42,
                        RData::A(A::new(93, 184, 216, 34)),
                    ));
                } else {
                    if !known {
                        response.metadata.response_code = ResponseCode::NXDomain;
                    }
                    let zone = Name::from_ascii("example.").unwrap();
                    let soa = SOA::new(
                        Name::from_ascii("ns.example.").unwrap(),
                        Name::from_ascii("admin.example.").unwrap(),
                        1,
                        3600,
                        600,
                        86_400,
                        7,
                    );
                    response.add_authority(Record::from_rdata(zone, 3600, RData::SOA(soa)));
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), from).await;
            }
        });
        address
    }

    #[tokio::test]
    async fn hickory_asks_the_configured_server_and_reads_ttls_and_negative_answers() {
        let server = answering_dns().await;
        let query = hickory_query(hickory(Some(&[server])).unwrap());
        match query("up.example").await {
            Answer::Found { addresses, ttl } => {
                assert_eq!(addresses, [IpAddr::from([93, 184, 216, 34])]);
                assert!(ttl > Duration::from_secs(40) && ttl <= Duration::from_secs(42), "{ttl:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(query("gone.example").await, Answer::NotFound { negative_ttl: Some(Duration::from_secs(7)) });
        // The same through the cache, as the gateway builds it from [egress].
        let config = EgressConfig { nameservers: Some(vec![server]), ..EgressConfig::default() };
        let dns = Dns::from_config(&config);
        assert_eq!(dns.lookup("UP.example", None).await.unwrap().as_ref(), [IpAddr::from([93, 184, 216, 34])]);
        assert_eq!(dns.lookup("gone.example", None).await, Err(LookupError::NotFound));
    }
}
