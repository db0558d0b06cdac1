//! Who a token speaks for: `scoped_principal:<team-uid>/<actor-type>:<principal-uid>`.
//!
//! This module owns the one rule that keeps teams apart in customers' trust policies
//! (`StringLike <host>:sub = scoped_principal:<team-uid>/*`): a uid is 1–128 characters of
//! `[A-Za-z0-9_-]`, so no uid can contain `/`, `:`, `*`, `?` or whitespace and no `sub` can match
//! another team's pattern. It depends on nothing else in the crate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The prefix of every `sub` we sign.
pub const SUBJECT_PREFIX: &str = "scoped_principal:";
/// Longest uid accepted, in characters (all ASCII, so also bytes).
pub const MAX_UID_LEN: usize = 128;

/// A validated team or principal uid.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Uid(String);

/// As the string it is (`"team-b"`): messages quote uids with `{:?}`, and must never read
/// `Uid("team-b")`.
impl std::fmt::Debug for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl Uid {
    pub fn parse(value: &str) -> Result<Uid, PrincipalError> {
        if value.is_empty() {
            return Err(PrincipalError::EmptyUid);
        }
        if value.len() > MAX_UID_LEN {
            return Err(PrincipalError::UidTooLong { len: value.chars().count() });
        }
        if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
            return Err(PrincipalError::UidCharacter { found: bad });
        }
        Ok(Uid(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Uid {
    type Err = PrincipalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uid::parse(s)
    }
}

impl<'de> Deserialize<'de> for Uid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Uid::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// What kind of identity acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    User,
    ServiceAccount,
}

impl ActorType {
    pub const ALL: [ActorType; 2] = [ActorType::User, ActorType::ServiceAccount];

    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "user",
            ActorType::ServiceAccount => "service_account",
        }
    }
}

impl fmt::Display for ActorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActorType {
    type Err = PrincipalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(ActorType::User),
            "service_account" => Ok(ActorType::ServiceAccount),
            _ => Err(PrincipalError::UnknownActor),
        }
    }
}

/// A principal inside one team: the `sub` of every token we mint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopedPrincipal {
    pub team_uid: Uid,
    pub actor: ActorType,
    pub principal_uid: Uid,
}

impl ScopedPrincipal {
    pub fn new(team_uid: Uid, actor: ActorType, principal_uid: Uid) -> Self {
        ScopedPrincipal { team_uid, actor, principal_uid }
    }

    /// Parse `scoped_principal:<team-uid>/<actor-type>:<principal-uid>`.
    pub fn parse(subject: &str) -> Result<ScopedPrincipal, PrincipalError> {
        let rest = subject.strip_prefix(SUBJECT_PREFIX).ok_or(PrincipalError::Prefix)?;
        let (team, rest) = rest.split_once('/').ok_or(PrincipalError::Shape)?;
        let (actor, principal) = rest.split_once(':').ok_or(PrincipalError::Shape)?;
        Ok(ScopedPrincipal {
            team_uid: Uid::parse(team)?,
            actor: actor.parse()?,
            principal_uid: Uid::parse(principal)?,
        })
    }

    /// The `StringLike` pattern a customer's trust policy uses to admit every principal of a team.
    pub fn team_pattern(team_uid: &Uid) -> String {
        format!("{SUBJECT_PREFIX}{team_uid}/*")
    }
}

impl fmt::Display for ScopedPrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SUBJECT_PREFIX}{}/{}:{}", self.team_uid, self.actor, self.principal_uid)
    }
}

impl FromStr for ScopedPrincipal {
    type Err = PrincipalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScopedPrincipal::parse(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalError {
    EmptyUid,
    UidTooLong { len: usize },
    UidCharacter { found: char },
    UnknownActor,
    Prefix,
    Shape,
}

impl fmt::Display for PrincipalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrincipalError::EmptyUid => {
                write!(f, "uid is empty; use 1-{MAX_UID_LEN} characters of A-Z, a-z, 0-9, _ and -")
            }
            PrincipalError::UidTooLong { len } => {
                write!(f, "uid is {len} characters long; the limit is {MAX_UID_LEN}")
            }
            PrincipalError::UidCharacter { found } => write!(
                f,
                "uid contains {found:?}; only A-Z, a-z, 0-9, _ and - are allowed (characters like / : * ? would let a subject match another team's trust policy)"
            ),
            PrincipalError::UnknownActor => f.write_str("actor type must be \"user\" or \"service_account\""),
            PrincipalError::Prefix => write!(f, "subject must start with {SUBJECT_PREFIX:?}"),
            PrincipalError::Shape => {
                f.write_str("subject must look like scoped_principal:<team-uid>/<actor-type>:<principal-uid>")
            }
        }
    }
}

impl std::error::Error for PrincipalError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_in_a_message_reads_as_a_quoted_string() {
        let uid = Uid::parse("team-b").unwrap();
        assert_eq!(format!("team {uid:?}"), "team \"team-b\"");
    }

    #[test]
    fn round_trips_both_actor_types() {
        for subject in ["scoped_principal:team-1/user:alice_01", "scoped_principal:T/service_account:svc-9"] {
            let principal = ScopedPrincipal::parse(subject).unwrap();
            assert_eq!(principal.to_string(), subject);
        }
    }

    #[test]
    fn rejects_uids_that_could_escape_a_team_pattern() {
        let too_long = "a".repeat(MAX_UID_LEN + 1);
        let cases: &[(&str, PrincipalError)] = &[
            ("", PrincipalError::EmptyUid),
            ("abc/evil", PrincipalError::UidCharacter { found: '/' }),
            ("a:b", PrincipalError::UidCharacter { found: ':' }),
            ("a*", PrincipalError::UidCharacter { found: '*' }),
            ("a?", PrincipalError::UidCharacter { found: '?' }),
            ("a b", PrincipalError::UidCharacter { found: ' ' }),
            ("a\n", PrincipalError::UidCharacter { found: '\n' }),
            ("é", PrincipalError::UidCharacter { found: 'é' }),
            ("a.b", PrincipalError::UidCharacter { found: '.' }),
            (&too_long, PrincipalError::UidTooLong { len: 129 }),
        ];
        for (input, expected) in cases {
            assert_eq!(Uid::parse(input).as_ref(), Err(expected), "input {input:?}");
        }
        assert!(Uid::parse(&"a".repeat(MAX_UID_LEN)).is_ok());
    }

    #[test]
    fn rejects_malformed_subjects() {
        for subject in [
            "team/user:alice",
            "scoped_principal:team",
            "scoped_principal:team/user",
            "scoped_principal:team/robot:alice",
            "scoped_principal:a/b/user:alice",
            "scoped_principal:team/user:alice:x",
        ] {
            assert!(ScopedPrincipal::parse(subject).is_err(), "{subject} should be rejected");
        }
    }

    #[test]
    fn team_pattern_matches_only_that_team() {
        let team = Uid::parse("abc").unwrap();
        assert_eq!(ScopedPrincipal::team_pattern(&team), "scoped_principal:abc/*");
    }
}
