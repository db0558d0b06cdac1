//! Who is calling: an API key (sent as `Authorization: Bearer <key>` or a bare `Authorization:
//! <key>`, as the AWS container-credentials protocol does) is hashed with SHA-256 and looked up
//! among the configured callers. Each caller is bound to one team, to actor types, and optionally
//! to lists of principal uids and agents; [`crate::identity::authz::authorize`] enforces that binding.
//!
//! Keys are never stored or logged; only their hashes are compared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderMap;

use crate::config::CallerConfig;
use crate::error::ApiError;
use crate::principal::{ActorType, Uid};

/// An authenticated caller and what it is bound to. What it may do with that binding is decided
/// in one place, [`crate::identity::authz`].
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
    /// [`crate::identity::authz::authorize`], so uids, agents and run ids are checked the same way.
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
    /// The request is signed with AWS SigV4 (an AWS SDK holding AWS credentials): byollm signs
    /// Bedrock calls itself and takes its API key as a bearer token instead.
    SigV4,
}

/// What an AWS SigV4 `Authorization` header starts with.
const SIGV4_SCHEME: &str = "AWS4-HMAC-SHA256";

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        match error {
            AuthError::MissingKey => {
                ApiError::unauthenticated("missing_api_key", "no API key: send it as 'Authorization: Bearer <key>'")
            }
            AuthError::UnknownKey => {
                ApiError::unauthenticated("invalid_api_key", "the API key is not valid for this gateway")
            }
            AuthError::SigV4 => ApiError::unauthenticated(
                "sigv4_not_accepted",
                "byollm does not take AWS SigV4 signatures: it signs Bedrock calls itself. Send the byollm API key as a bearer token instead (AWS SDKs: AWS_BEARER_TOKEN_BEDROCK=<key> over https; Claude Code: CLAUDE_CODE_SKIP_BEDROCK_AUTH=1 and ANTHROPIC_AUTH_TOKEN=<key>)",
            ),
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

/// Lower-case hex, two digits a byte (one allocation; no `format!` per byte).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 15) as usize] as char);
    }
    out
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
        let key = presented_key(headers)?;
        self.by_hash.get(&hash_key(key)).cloned().ok_or(AuthError::UnknownKey)
    }
}

/// The API key a request presents: `Authorization: Bearer <key>` (OpenAI clients), a bare
/// `Authorization: <key>` (the AWS container-credentials protocol) or `x-api-key: <key>`
/// (Anthropic clients).
/// A SigV4 `Authorization` header is refused by name ([`AuthError::SigV4`]), never compared as a key.
pub fn presented_key(headers: &HeaderMap) -> Result<&str, AuthError> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    if let Some(value) = header(http::header::AUTHORIZATION.as_str()) {
        return match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => Ok(rest.trim()),
            Some((scheme, _)) if scheme == SIGV4_SCHEME => Err(AuthError::SigV4),
            _ => Ok(value),
        };
    }
    header("x-api-key").ok_or(AuthError::MissingKey)
}

/// The per-session key of `byollm local`: generated at start, printed, written to a file only the
/// user can read, and required on every request, so no other local user or process spends the
/// person's AWS session. Only its hash is compared.
pub struct SessionKey {
    key: crate::secret::Secret,
    hash: [u8; 32],
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

impl SessionKey {
    pub fn generate() -> Result<SessionKey, ApiError> {
        let key = generate_key()?;
        Ok(SessionKey { hash: hash_key(&key), key: crate::secret::Secret::new(key) })
    }

    /// The key itself, to print and write once.
    pub fn expose(&self) -> &str {
        self.key.expose()
    }

    /// Does the request present this key?
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let presented = presented_key(headers)?;
        if hash_key(presented) == self.hash { Ok(()) } else { Err(AuthError::UnknownKey) }
    }

    /// Where the key goes by default: `$XDG_RUNTIME_DIR/byollm/local-<port>.key` (a per-user
    /// directory only the user can enter), else `$HOME/.byollm/local-<port>.key`.
    pub fn default_path(xdg_runtime_dir: Option<&Path>, home: Option<&Path>, port: u16) -> Option<PathBuf> {
        let dir = match (xdg_runtime_dir, home) {
            (Some(runtime), _) => runtime.join("byollm"),
            (None, Some(home)) => home.join(".byollm"),
            (None, None) => return None,
        };
        Some(dir.join(format!("local-{port}.key")))
    }

    /// Write the key to `path`, readable by the user only (0600, its directory 0700), replacing
    /// any earlier file.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
            if dir.file_name().is_some_and(|name| name == "byollm" || name == ".byollm") {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        match std::fs::remove_file(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        file.write_all(self.expose().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        assert_eq!(hex(&[]), "");
    }

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
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn the_session_key_is_required_and_written_for_the_user_only() {
        use std::os::unix::fs::PermissionsExt;
        let key = SessionKey::generate().unwrap();
        assert!(key.expose().starts_with("byollm_") && !format!("{key:?}").contains(key.expose()));
        let with = |name: &str, value: String| {
            let mut headers = HeaderMap::new();
            headers.insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
            key.check(&headers)
        };
        assert_eq!(with("authorization", format!("Bearer {}", key.expose())), Ok(()));
        assert_eq!(with("x-api-key", key.expose().to_owned()), Ok(()));
        assert_eq!(with("authorization", "Bearer local".into()), Err(AuthError::UnknownKey));
        assert_eq!(key.check(&HeaderMap::new()), Err(AuthError::MissingKey));

        let home = tempfile::tempdir().unwrap();
        let path = SessionKey::default_path(None, Some(home.path()), 8080).unwrap();
        assert_eq!(path, home.path().join(".byollm/local-8080.key"));
        let runtime = SessionKey::default_path(Some(Path::new("/run/user/1000")), Some(home.path()), 9);
        assert_eq!(runtime.unwrap(), Path::new("/run/user/1000/byollm/local-9.key"));
        std::fs::create_dir(home.path().join(".byollm")).unwrap();
        std::fs::set_permissions(home.path().join(".byollm"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(&path, "an older session's key").unwrap();
        key.write_file(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), key.expose());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700));
    }

    #[test]
    fn authenticates_bearer_and_bare_keys() {
        let callers = callers();
        assert_eq!(callers.authenticate(&headers("Bearer k1")).unwrap().name, "worker");
        assert_eq!(callers.authenticate(&headers("k1")).unwrap().name, "worker");
        let mut anthropic = HeaderMap::new();
        anthropic.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(callers.authenticate(&anthropic).unwrap().name, "worker");
        assert_eq!(callers.authenticate(&HeaderMap::new()).unwrap_err(), AuthError::MissingKey);
        assert_eq!(callers.authenticate(&headers("Bearer k2")).unwrap_err(), AuthError::UnknownKey);
        let signed = "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(callers.authenticate(&headers(signed)).unwrap_err(), AuthError::SigV4);
        let message = ApiError::from(AuthError::SigV4).message;
        assert!(message.contains("bearer token") && message.contains("AWS_BEARER_TOKEN_BEDROCK"), "{message}");
    }
}
