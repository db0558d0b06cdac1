//! Who is calling: an API key (sent as `Authorization: Bearer <key>` or a bare `Authorization:
//! <key>`, as the AWS container-credentials protocol does) is hashed with SHA-256 and looked up
//! among the configured callers. Each caller is bound to one team, to actor types, and optionally
//! to a list of principal uids; [`Caller::authorize`] enforces that binding.
//!
//! Keys are never stored or logged; only their hashes are compared.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;

use crate::config::CallerConfig;
use crate::error::ApiError;
use crate::principal::{ActorType, ScopedPrincipal, Uid};

#[derive(Debug)]
pub struct Caller {
    pub name: String,
    pub team: Uid,
    pub actors: Vec<ActorType>,
    pub principals: Option<Vec<Uid>>,
    pub agents: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    MissingKey,
    UnknownKey,
    OtherTeam { caller: String, team: Uid, requested: Uid },
    Actor { caller: String, actor: ActorType },
    Principal { caller: String, principal: Uid },
    Agent { caller: String, agent: String },
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        match error {
            AuthError::MissingKey => {
                ApiError::unauthenticated("missing_api_key", "no API key: send it as 'Authorization: Bearer <key>'")
            }
            AuthError::UnknownKey => {
                ApiError::unauthenticated("invalid_api_key", "the API key is not valid for this gateway")
            }
            AuthError::OtherTeam { caller, team, requested } => ApiError::forbidden(
                "team_not_allowed",
                format!("caller {caller:?} acts for team {team:?} only; it cannot act for team {requested:?}"),
            ),
            AuthError::Actor { caller, actor } => ApiError::forbidden(
                "actor_not_allowed",
                format!("caller {caller:?} may not act for {actor} principals; check callers.actors"),
            ),
            AuthError::Agent { caller, agent } => ApiError::forbidden(
                "agent_not_allowed",
                format!("caller {caller:?} may not act as agent {agent:?}; check callers.agents"),
            ),
            AuthError::Principal { caller, principal } => ApiError::forbidden(
                "principal_not_allowed",
                format!("caller {caller:?} may not act for principal {principal:?}; check callers.principals"),
            ),
        }
    }
}

impl Caller {
    /// May this caller obtain tokens or credentials for `principal`?
    pub fn authorize(&self, principal: &ScopedPrincipal) -> Result<(), AuthError> {
        if principal.team_uid != self.team {
            return Err(AuthError::OtherTeam {
                caller: self.name.clone(),
                team: self.team.clone(),
                requested: principal.team_uid.clone(),
            });
        }
        if !self.actors.contains(&principal.actor) {
            return Err(AuthError::Actor { caller: self.name.clone(), actor: principal.actor });
        }
        if let Some(allowed) = &self.principals
            && !allowed.contains(&principal.principal_uid)
        {
            return Err(AuthError::Principal { caller: self.name.clone(), principal: principal.principal_uid.clone() });
        }
        Ok(())
    }

    /// May this caller act as the named agent (which selects the agent's own role)?
    pub fn authorize_agent(&self, agent: Option<&str>) -> Result<(), AuthError> {
        match (agent, &self.agents) {
            (Some(agent), Some(allowed)) if !allowed.iter().any(|a| a == agent) => {
                Err(AuthError::Agent { caller: self.name.clone(), agent: agent.to_owned() })
            }
            _ => Ok(()),
        }
    }
}

/// The configured callers, indexed by the SHA-256 of their key.
#[derive(Debug, Default)]
pub struct Callers {
    by_hash: HashMap<[u8; 32], Arc<Caller>>,
}

/// SHA-256 of an API key: what the config stores.
pub fn hash_key(key: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random API key (`byollm_` + 32 random bytes, base64url).
pub fn generate_key() -> Result<String, ApiError> {
    use aws_lc_rs::rand::SecureRandom;
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| ApiError::internal("no randomness"))?;
    Ok(format!("byollm_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

impl Callers {
    pub fn new(configs: &[CallerConfig]) -> Callers {
        let by_hash = configs
            .iter()
            .map(|c| {
                let caller = Caller {
                    name: c.name.clone(),
                    team: c.team.clone(),
                    actors: c.actors.clone(),
                    principals: c.principals.clone(),
                    agents: c.agents.clone(),
                };
                (c.key_sha256, Arc::new(caller))
            })
            .collect();
        Callers { by_hash }
    }

    /// Find the caller from request headers.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Caller>, AuthError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(AuthError::MissingKey)?;
        let key = match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => value,
        };
        self.by_hash.get(&hash_key(key)).cloned().ok_or(AuthError::UnknownKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callers() -> Callers {
        Callers::new(&[CallerConfig {
            name: "worker".into(),
            key_sha256: hash_key("k1"),
            team: Uid::parse("acme").unwrap(),
            actors: vec![ActorType::ServiceAccount],
            principals: Some(vec![Uid::parse("svc-1").unwrap()]),
            agents: Some(vec!["reviewer".into()]),
        }])
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn authenticates_bearer_and_bare_keys() {
        let callers = callers();
        assert_eq!(callers.authenticate(&headers("Bearer k1")).unwrap().name, "worker");
        assert_eq!(callers.authenticate(&headers("k1")).unwrap().name, "worker");
        assert_eq!(callers.authenticate(&HeaderMap::new()).unwrap_err(), AuthError::MissingKey);
        assert_eq!(callers.authenticate(&headers("Bearer k2")).unwrap_err(), AuthError::UnknownKey);
    }

    #[test]
    fn authorizes_only_its_own_team_actor_and_principals() {
        let caller = callers().authenticate(&headers("Bearer k1")).unwrap();
        let check = |subject: &str| caller.authorize(&ScopedPrincipal::parse(subject).unwrap());
        assert_eq!(check("scoped_principal:acme/service_account:svc-1"), Ok(()));
        assert!(matches!(check("scoped_principal:other/service_account:svc-1"), Err(AuthError::OtherTeam { .. })));
        assert!(matches!(check("scoped_principal:acme/user:svc-1"), Err(AuthError::Actor { .. })));
        assert!(matches!(check("scoped_principal:acme/service_account:svc-2"), Err(AuthError::Principal { .. })));
        assert_eq!(caller.authorize_agent(Some("reviewer")), Ok(()));
        assert_eq!(caller.authorize_agent(None), Ok(()));
        assert!(matches!(caller.authorize_agent(Some("deployer")), Err(AuthError::Agent { .. })));
        let status = ApiError::from(check("scoped_principal:other/service_account:svc-1").unwrap_err()).status;
        assert_eq!(status, 403);
    }
}
