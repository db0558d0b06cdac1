//! The names of limit counters: the kind of limit, the scope it counts for (`t:<team>`,
//! `a:<team>/<agent>`, `c:<caller>`, `p:<team>/<actor>:<principal>`) and, for rates, the limit per
//! minute they run at or, for sums, their window. Built from a scope's name shared by every
//! counter of the request, so naming 27 counters allocates nothing; shown as the store key
//! (`rpm:600:t:acme`, `creq:t:acme`, `usdd:t:acme:2026-12-07`) where a string is needed (Redis).
//!
//! Scope names are interned (up to [`INTERNED_MAX`] of them): a request of a scope seen before
//! builds its key without allocating, and the counters' maps compare it by pointer.

use std::cell::RefCell;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use super::Limit;
use super::windows::Window;

/// The seed of scope hashes, random per process: names come from callers (principals), so their
/// hashes must not be predictable.
static SEED: LazyLock<foldhash::fast::RandomState> = LazyLock::new(foldhash::fast::RandomState::default);

/// A scope's name and its hash, worked out once (per process for an interned name): every counter
/// of the scope hashes as this number and its kind, not by reading the name again.
#[derive(Debug, Clone)]
struct Scope {
    name: Name,
    hash: u64,
}

/// A scope's name: kept for the life of the process (interned), or built for one request once
/// the table is full. Copying an interned name touches no shared reference count, so requests of
/// one team on different threads do not contend for it.
#[derive(Debug, Clone)]
enum Name {
    Interned(&'static str),
    Built(Arc<str>),
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Name::Interned(name) => name,
            Name::Built(name) => name,
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

/// How many scope names are kept for the life of the process (at most a few MiB, plus each
/// thread's copy of up to 1,024 of them). Names come from
/// callers (principals), so the table is bounded: past it, a new name is built per request, as if
/// there were no table.
pub const INTERNED_MAX: usize = 16_384;

/// Scope names kept, with their hashes.
static INTERNED: LazyLock<RwLock<foldhash::HashMap<&'static str, u64>>> = LazyLock::new(Default::default);

/// Set once the table holds [`INTERNED_MAX`] names: new names are then built without taking its
/// write lock.
static FULL: AtomicBool = AtomicBool::new(false);

/// How many names each thread keeps in front of the shared table (cleared when full).
const SEEN_MAX: usize = 1024;

thread_local! {
    /// Where a scope's name is written to look it up.
    static NAME: RefCell<String> = const { RefCell::new(String::new()) };
    /// This thread's copy of the names it has looked up, so that a request takes no shared lock.
    static SEEN: RefCell<foldhash::HashMap<&'static str, u64>> = RefCell::new(Default::default());
}

impl Scope {
    /// The scope named by `parts` joined: the interned one, else a new one (interned while there
    /// is room).
    fn named(parts: &[&str]) -> Scope {
        NAME.with_borrow_mut(|name| {
            name.clear();
            parts.iter().for_each(|part| name.push_str(part));
            if let Some(found) = SEEN.with_borrow(|seen| seen.get_key_value(name.as_str()).map(|(n, h)| (*n, *h))) {
                return Scope { name: Name::Interned(found.0), hash: found.1 };
            }
            let found =
                INTERNED.read().unwrap_or_else(|p| p.into_inner()).get_key_value(name.as_str()).map(|(n, h)| (*n, *h));
            let (interned, hash) = match found {
                Some(found) => found,
                None if FULL.load(Ordering::Relaxed) => {
                    return Scope { name: Name::Built(Arc::from(name.as_str())), hash: SEED.hash_one(name.as_str()) };
                }
                None => {
                    let hash = SEED.hash_one(name.as_str());
                    let mut table = INTERNED.write().unwrap_or_else(|p| p.into_inner());
                    if let Some((interned, hash)) = table.get_key_value(name.as_str()) {
                        (*interned, *hash)
                    } else if table.len() < INTERNED_MAX {
                        // Kept for the life of the process, within the table's bound.
                        let interned: &'static str = Box::leak(name.as_str().into());
                        table.insert(interned, hash);
                        (interned, hash)
                    } else {
                        FULL.store(true, Ordering::Relaxed);
                        return Scope { name: Name::Built(Arc::from(name.as_str())), hash };
                    }
                }
            };
            SEEN.with_borrow_mut(|seen| {
                if seen.len() >= SEEN_MAX {
                    seen.clear();
                }
                seen.insert(interned, hash);
            });
            Scope { name: Name::Interned(interned), hash }
        })
    }
}

impl PartialEq for Scope {
    fn eq(&self, other: &Scope) -> bool {
        let same = match (&self.name, &other.name) {
            (Name::Interned(a), Name::Interned(b)) => std::ptr::eq(*a, *b),
            _ => false,
        };
        same || (self.hash == other.hash && *self.name == *other.name)
    }
}

impl Eq for Scope {}

impl Hash for Scope {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The key of one scope's counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeKey {
    key: Scope,
    kind: ScopeKind,
    /// The length of the team's name in `key` after its two-character prefix (agents and
    /// principals: what follows the team is after one `/`).
    team_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ScopeKind {
    Team,
    Agent,
    Caller,
    Principal,
}

impl ScopeKey {
    pub fn team(team: &str) -> ScopeKey {
        ScopeKey { key: Scope::named(&["t:", team]), kind: ScopeKind::Team, team_len: team.len() }
    }

    pub fn agent(team: &str, agent: &str) -> ScopeKey {
        ScopeKey { key: Scope::named(&["a:", team, "/", agent]), kind: ScopeKind::Agent, team_len: team.len() }
    }

    pub fn caller(caller: &str) -> ScopeKey {
        ScopeKey { key: Scope::named(&["c:", caller]), kind: ScopeKind::Caller, team_len: 0 }
    }

    /// The person or service account `actor:principal` of a run of `team`.
    pub fn principal(team: &str, actor: &str, principal: &str) -> ScopeKey {
        ScopeKey {
            key: Scope::named(&["p:", team, "/", actor, ":", principal]),
            kind: ScopeKind::Principal,
            team_len: team.len(),
        }
    }

    /// The team, for a team's scope (budgets are reported per team in metrics).
    pub fn team_name(&self) -> Option<&str> {
        (self.kind == ScopeKind::Team).then(|| &self.key.name[2..])
    }

    /// `team "acme"`, `agent "reviewer" of team "acme"`, ...: for messages.
    pub fn describe(&self) -> String {
        let key = &self.key.name;
        let team = &key[2..2 + self.team_len];
        let rest = key.get(3 + self.team_len..).unwrap_or_default();
        match self.kind {
            ScopeKind::Team => format!("team {team:?}"),
            ScopeKind::Agent => format!("agent {rest:?} of team {team:?}"),
            ScopeKind::Caller => format!("caller {:?}", &key[2..]),
            ScopeKind::Principal => format!("principal {rest:?} of team {team:?}"),
        }
    }

    /// A rate of `limit`'s kind running at `per_minute`: a new limit starts a new counter.
    pub fn rate(&self, limit: Limit, per_minute: u64) -> Key {
        Key { limit, scope: self.key.clone(), tag: Tag::PerMinute(per_minute) }
    }

    /// Concurrency slots.
    pub fn slots(&self, limit: Limit) -> Key {
        Key { limit, scope: self.key.clone(), tag: Tag::Plain }
    }

    /// A sum within `window`.
    pub fn sum(&self, limit: Limit, window: Window) -> Key {
        Key { limit, scope: self.key.clone(), tag: Tag::Window(window) }
    }
}

/// The name of one counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    limit: Limit,
    scope: Scope,
    tag: Tag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tag {
    Plain,
    PerMinute(u64),
    Window(Window),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.limit.key_kind();
        match self.tag {
            Tag::Plain => write!(f, "{kind}:{}", self.scope.name),
            Tag::PerMinute(per_minute) => write!(f, "{kind}:{per_minute}:{}", self.scope.name),
            Tag::Window(window) => write!(f, "{kind}:{}:{window}", self.scope.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::windows::Windows;

    #[test]
    fn keys_show_as_the_store_names_them() {
        let team = ScopeKey::team("acme");
        let day = Windows::at(1_796_662_800).day().0;
        assert_eq!(team.rate(Limit::RequestsPerMinute, 600).to_string(), "rpm:600:t:acme");
        assert_eq!(team.slots(Limit::ConcurrentRequests).to_string(), "creq:t:acme");
        assert_eq!(team.sum(Limit::UsdPerDay, day).to_string(), "usdd:t:acme:2026-12-07");
        let principal = ScopeKey::principal("acme", "user", "u-1");
        assert_eq!(principal.slots(Limit::ConcurrentStreams).to_string(), "cstr:p:acme/user:u-1");
        assert_ne!(team.rate(Limit::RequestsPerMinute, 600), team.rate(Limit::RequestsPerMinute, 601));
    }

    #[test]
    fn a_scope_seen_before_is_the_same_name_and_an_uninterned_one_still_equals_it() {
        let (first, again) = (ScopeKey::principal("acme", "user", "u-7"), ScopeKey::principal("acme", "user", "u-7"));
        let interned = |key: &ScopeKey| match key.key.name {
            Name::Interned(name) => name as *const str,
            Name::Built(_) => panic!("not interned"),
        };
        assert!(std::ptr::eq(interned(&first), interned(&again)), "the second request reuses the first's name");
        // Another thread finds the same name in the shared table.
        let other =
            std::thread::spawn(move || interned(&ScopeKey::principal("acme", "user", "u-7")) as *const u8 as usize)
                .join()
                .unwrap();
        assert_eq!(other, interned(&first) as *const u8 as usize, "one name for every thread");
        // Past the table's bound a name is built anew: it must still be the same counter.
        let fresh = Scope { name: Name::Built(Arc::from("p:acme/user:u-7")), hash: first.key.hash };
        let built = ScopeKey { key: fresh, ..first.clone() };
        assert_eq!(first.slots(Limit::ConcurrentStreams), built.slots(Limit::ConcurrentStreams));
        assert_eq!(built.slots(Limit::ConcurrentStreams), first.slots(Limit::ConcurrentStreams));
        let other_principal = ScopeKey::principal("acme", "user", "u-8");
        assert_ne!(first.slots(Limit::ConcurrentStreams), other_principal.slots(Limit::ConcurrentStreams));
        assert_eq!(built.slots(Limit::ConcurrentStreams).to_string(), "cstr:p:acme/user:u-7");
    }

    #[test]
    fn scopes_describe_themselves_and_only_a_teams_scope_names_a_team() {
        assert_eq!(ScopeKey::team("a/b").describe(), "team \"a/b\"");
        assert_eq!(ScopeKey::agent("a/b", "rev").describe(), "agent \"rev\" of team \"a/b\"");
        assert_eq!(ScopeKey::caller("ci").describe(), "caller \"ci\"");
        assert_eq!(ScopeKey::principal("acme", "user", "u-1").describe(), "principal \"user:u-1\" of team \"acme\"");
        assert_eq!(ScopeKey::team("acme").team_name(), Some("acme"));
        assert_eq!(ScopeKey::agent("acme", "rev").team_name(), None);
    }
}
