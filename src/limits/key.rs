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
use std::sync::{Arc, LazyLock, RwLock};

use super::Limit;
use super::windows::Window;

/// The seed of scope hashes, random per process: names come from callers (principals), so their
/// hashes must not be predictable.
static SEED: LazyLock<foldhash::fast::RandomState> = LazyLock::new(foldhash::fast::RandomState::default);

/// A scope's name and its hash, worked out once per request: every counter of the scope hashes
/// as this number and its kind, not by reading the name again.
#[derive(Debug, Clone)]
struct Scope {
    name: Arc<str>,
    hash: u64,
}

/// How many scope names are kept for reuse. Names come from callers (principals), so the table is
/// bounded: past it, a new name is built per request, as if there were no table.
pub const INTERNED_MAX: usize = 16_384;

/// Scope names seen, by name.
static INTERNED: LazyLock<RwLock<foldhash::HashMap<Arc<str>, Scope>>> = LazyLock::new(Default::default);

thread_local! {
    /// Where a scope's name is written to look it up.
    static NAME: RefCell<String> = const { RefCell::new(String::new()) };
}

impl Scope {
    /// The scope named by `parts` joined: the interned one, else a new one (interned while there is room).
    fn named(parts: &[&str]) -> Scope {
        NAME.with_borrow_mut(|name| {
            name.clear();
            parts.iter().for_each(|part| name.push_str(part));
            let found = INTERNED.read().unwrap_or_else(|p| p.into_inner()).get(name.as_str()).cloned();
            if let Some(scope) = found {
                return scope;
            }
            let scope = Scope { name: Arc::from(name.as_str()), hash: SEED.hash_one(name.as_str()) };
            let mut interned = INTERNED.write().unwrap_or_else(|p| p.into_inner());
            if interned.len() < INTERNED_MAX {
                return interned.entry(scope.name.clone()).or_insert(scope).clone();
            }
            scope
        })
    }
}

impl PartialEq for Scope {
    fn eq(&self, other: &Scope) -> bool {
        Arc::ptr_eq(&self.name, &other.name) || (self.hash == other.hash && self.name == other.name)
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
        assert!(Arc::ptr_eq(&first.key.name, &again.key.name), "the second request reuses the first's name");
        // Past the table's bound a name is built anew: it must still be the same counter.
        let fresh = Scope { name: Arc::from("p:acme/user:u-7"), hash: SEED.hash_one("p:acme/user:u-7") };
        let built = ScopeKey { key: fresh, ..first.clone() };
        assert!(!Arc::ptr_eq(&first.key.name, &built.key.name));
        assert_eq!(first.slots(Limit::ConcurrentStreams), built.slots(Limit::ConcurrentStreams));
        assert_ne!(
            first.slots(Limit::ConcurrentStreams),
            ScopeKey::principal("acme", "user", "u-8").slots(Limit::ConcurrentStreams)
        );
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
