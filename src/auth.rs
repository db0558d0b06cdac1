//! Who is calling: an API key (sent as `Authorization: Bearer <key>` or a bare `Authorization:
//! <key>`, as the AWS container-credentials protocol does) is hashed with SHA-256 and looked up
//! among the configured callers. Each caller is bound to one team, to actor types, and optionally
//! to lists of principal uids and agents; [`crate::authz::authorize`] enforces that binding.
//!
//! Keys are never stored or logged; only their hashes are compared.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;

use crate::config::CallerConfig;
use crate::error::ApiError;
use crate::principal::{ActorType, Uid};

/// An authenticated caller and what it is bound to. What it may do with that binding is decided
/// in one place, [`crate::authz`].
#[derive(Debug)]
pub struct Caller {
    pub name: String,
    pub team: Uid,
    pub actors: Vec<ActorType>,
    /// `None`: any principal uid of the allowed actor types.
    pub principals: Option<Vec<Uid>>,
    /// `None`: any agent its team configures.
    pub agents: Option<Vec<String>>,
    /// May run without an agent, under the team's own role.
    pub allow_no_agent: bool,
    /// May have tokens signed for it (`POST /v1/tokens`).
    pub mint_tokens: bool,
}

impl Caller {
    /// The operator at the command line (`byollm token mint`, `byollm doctor`): holds the key
    /// files, so may act for any principal and agent of `team`. Still goes through
    /// [`crate::authz::authorize`], so uids, agents and run ids are checked the same way.
    pub fn operator(team: Uid) -> Caller {
        Caller {
            name: "operator (command line)".into(),
            team,
            actors: ActorType::ALL.to_vec(),
            principals: None,
            agents: None,
            allow_no_agent: true,
            mint_tokens: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    MissingKey,
    UnknownKey,
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
                    allow_no_agent: c.allow_no_agent,
                    mint_tokens: c.mint_tokens,
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
            allow_no_agent: false,
            mint_tokens: false,
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
}
