//! The OIDC issuer: the key set in force, minting RS256 tokens for a [`ScopedPrincipal`], and the
//! discovery and JWKS documents AWS STS fetches to verify them.
//!
//! Documents are rendered once per key reload, so serving them copies bytes. The issuer never
//! decides who may mint what (that is `auth`), and never logs a token.

pub mod keys;
pub mod routes;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::Serialize;

use crate::config::{Config, IssuerConfig, MAX_TOKEN_LIFETIME};
use crate::principal::ScopedPrincipal;
use crate::secret::Secret;
use keys::{KeyDir, KeyError, KeyPolicy, LoadedKeys};

/// Claims we add to identify a run. They land in the customer's CloudTrail, so they are
/// restricted to identifiers (no names, no e-mail addresses, no free text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunClaims {
    pub agent: Option<String>,
    pub run_id: Option<String>,
}

/// Every claim we sign, as it appears in the token.
#[derive(Debug, Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<&'a str>,
}

/// The names in `claims_supported`.
pub const CLAIMS_SUPPORTED: &[&str] = &["iss", "sub", "aud", "iat", "nbf", "exp", "jti", "agent", "run_id"];

/// A freshly signed token.
#[derive(Debug, Clone)]
pub struct MintedToken {
    pub token: Secret,
    pub subject: String,
    pub kid: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

#[derive(Debug)]
pub enum MintError {
    Lifetime { requested: u64 },
    Claim { name: &'static str, message: String },
    Signing,
}

impl std::fmt::Display for MintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MintError::Lifetime { requested } => write!(
                f,
                "lifetime_secs {requested} is out of range: use 60..={} seconds",
                MAX_TOKEN_LIFETIME.as_secs()
            ),
            MintError::Claim { name, message } => write!(f, "{name}: {message}"),
            MintError::Signing => f.write_str("signing failed"),
        }
    }
}

impl std::error::Error for MintError {}

/// A rendered document with its validator.
#[derive(Debug, Clone)]
pub struct Document {
    pub body: Bytes,
    pub etag: String,
}

impl Document {
    fn render(value: &impl Serialize) -> Document {
        let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let etag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]));
        Document { body, etag }
    }
}

/// What the issuer serves and signs with right now; replaced whole on reload.
#[derive(Debug)]
pub struct KeysInForce {
    pub keys: LoadedKeys,
    pub jwks: Document,
}

pub struct Issuer {
    config: IssuerConfig,
    key_dir: KeyDir,
    policy: KeyPolicy,
    discovery: Document,
    current: RwLock<Arc<KeysInForce>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("url", &self.config.url).finish_non_exhaustive()
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[derive(Serialize)]
struct JwksDocument<'a> {
    keys: Vec<&'a keys::Jwk>,
}

#[derive(Serialize)]
struct DiscoveryDocument<'a> {
    issuer: &'a str,
    jwks_uri: String,
    response_types_supported: [&'static str; 1],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: [&'static str; 1],
    claims_supported: &'static [&'static str],
}

impl Issuer {
    /// Load the key set from `keys.dir`. In dev mode an empty directory gets a fresh key set.
    pub fn open(config: &Config) -> Result<Issuer, KeyError> {
        let key_dir = KeyDir::new(&config.keys.dir);
        let policy = KeyPolicy::from_config(&config.keys);
        if config.dev && !key_dir.exists() {
            key_dir.generate(config.keys.rsa_bits, unix_now())?;
            tracing::warn!(dir = %key_dir.path().display(), "dev mode: generated a new signing key set on first run");
        }
        let keys = key_dir.load(unix_now(), &policy)?;
        let discovery = Document::render(&DiscoveryDocument {
            issuer: &config.issuer.url,
            jwks_uri: config.issuer.jwks_uri(),
            response_types_supported: ["id_token"],
            subject_types_supported: ["public"],
            id_token_signing_alg_values_supported: ["RS256"],
            claims_supported: CLAIMS_SUPPORTED,
        });
        let current = RwLock::new(Arc::new(Self::in_force(keys)));
        Ok(Issuer { config: config.issuer.clone(), key_dir, policy, discovery, current, rng: SystemRandom::new() })
    }

    fn in_force(keys: LoadedKeys) -> KeysInForce {
        let jwks = Document::render(&JwksDocument { keys: keys.published.iter().map(|k| &k.jwk).collect() });
        KeysInForce { keys, jwks }
    }

    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    pub fn discovery(&self) -> &Document {
        &self.discovery
    }

    pub fn keys(&self) -> Arc<KeysInForce> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-read the key directory as of `now`. On error the keys in force stay. Returns whether
    /// anything served or signed changed.
    pub fn reload(&self, now: u64) -> Result<bool, KeyError> {
        let loaded = self.key_dir.load(now, &self.policy)?;
        let next = Self::in_force(loaded);
        let previous = self.keys();
        if previous.jwks.etag == next.jwks.etag && previous.keys.signing.kid == next.keys.signing.kid {
            return Ok(false);
        }
        tracing::info!(
            active = %next.keys.signing.kid,
            published = next.keys.published.len(),
            "key set reloaded"
        );
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
        Ok(true)
    }

    /// Sign a token for `principal`, valid from `now` for `lifetime` (default: configured).
    pub fn mint(
        &self,
        principal: &ScopedPrincipal,
        lifetime: Option<Duration>,
        run: &RunClaims,
        now: u64,
    ) -> Result<MintedToken, MintError> {
        let lifetime = lifetime.unwrap_or(self.config.token_lifetime);
        if lifetime < Duration::from_secs(60) || lifetime > MAX_TOKEN_LIFETIME {
            return Err(MintError::Lifetime { requested: lifetime.as_secs() });
        }
        for (name, value) in [("agent", &run.agent), ("run_id", &run.run_id)] {
            if let Some(value) = value {
                validate_run_claim(value).map_err(|message| MintError::Claim { name, message })?;
            }
        }
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).map_err(|_| MintError::Signing)?;
        let subject = principal.to_string();
        let claims = Claims {
            iss: &self.config.url,
            sub: subject.clone(),
            aud: &self.config.audience,
            iat: now,
            nbf: now,
            exp: now + lifetime.as_secs(),
            jti: URL_SAFE_NO_PAD.encode(jti),
            agent: run.agent.as_deref(),
            run_id: run.run_id.as_deref(),
        };
        let keys = self.keys();
        let signing = &keys.keys.signing;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(signing.kid.clone());
        header.typ = Some("JWT".into());
        let token = jsonwebtoken::encode(&header, &claims, &signing.encoding_key).map_err(|_| MintError::Signing)?;
        Ok(MintedToken {
            token: Secret::new(token),
            subject,
            kid: signing.kid.clone(),
            issued_at: now,
            expires_at: claims.exp,
        })
    }
}

/// [`Issuer::mint`] off the async worker threads: an RSA signature takes most of a millisecond,
/// which would otherwise stall every other request on that thread (JWKS fetches included).
pub async fn mint_off_thread(
    issuer: &Arc<Issuer>,
    principal: ScopedPrincipal,
    lifetime: Option<Duration>,
    run: RunClaims,
) -> Result<MintedToken, MintError> {
    let issuer = issuer.clone();
    tokio::task::spawn_blocking(move || issuer.mint(&principal, lifetime, &run, unix_now()))
        .await
        .unwrap_or(Err(MintError::Signing))
}

/// Run claims are identifiers: 1–128 characters of `[A-Za-z0-9._-]`.
pub fn validate_run_claim(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err("must be 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-' (it is recorded in the customer's CloudTrail)"
            .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::{ActorType, Uid};

    fn issuer(dir: &std::path::Path) -> Issuer {
        let config = Config::from_toml(&format!(
            "dev = true\n[issuer]\nurl = \"https://issuer.example.com\"\n[keys]\ndir = {:?}\n",
            dir.display().to_string()
        ))
        .unwrap();
        Issuer::open(&config).unwrap()
    }

    fn principal() -> ScopedPrincipal {
        ScopedPrincipal::new(Uid::parse("acme").unwrap(), ActorType::ServiceAccount, Uid::parse("svc-1").unwrap())
    }

    fn decode_part(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn token_has_exactly_the_claims_and_header_aws_expects() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        let run = RunClaims { agent: Some("reviewer".into()), run_id: Some("run-42".into()) };
        let minted = issuer.mint(&principal(), None, &run, 1_000_000).unwrap();
        let parts: Vec<&str> = minted.token.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = decode_part(parts[0]);
        assert_eq!(header, serde_json::json!({"alg": "RS256", "kid": minted.kid, "typ": "JWT"}));
        let claims = decode_part(parts[1]);
        assert_eq!(claims["iss"], "https://issuer.example.com");
        assert_eq!(claims["sub"], "scoped_principal:acme/service_account:svc-1");
        assert_eq!(claims["aud"], "sts.amazonaws.com");
        assert_eq!(claims["iat"], 1_000_000);
        assert_eq!(claims["nbf"], 1_000_000);
        assert_eq!(claims["exp"], 1_000_300);
        assert_eq!(claims["agent"], "reviewer");
        assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
        assert_eq!(minted.expires_at, 1_000_300);
    }

    #[test]
    fn lifetime_and_run_claims_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        for secs in [0, 59, 3601] {
            let result = issuer.mint(&principal(), Some(Duration::from_secs(secs)), &RunClaims::default(), 0);
            assert!(matches!(result, Err(MintError::Lifetime { .. })), "{secs}");
        }
        let bad = RunClaims { agent: Some("Jane Doe <jane@example.com>".into()), run_id: None };
        assert!(matches!(issuer.mint(&principal(), None, &bad, 0), Err(MintError::Claim { name: "agent", .. })));
    }

    #[test]
    fn documents_match_the_issuer() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        let discovery: serde_json::Value = serde_json::from_slice(&issuer.discovery().body).unwrap();
        assert_eq!(discovery["issuer"], "https://issuer.example.com");
        assert_eq!(discovery["jwks_uri"], "https://issuer.example.com/.well-known/jwks.json");
        assert_eq!(discovery["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
        let jwks: serde_json::Value = serde_json::from_slice(&issuer.keys().jwks.body).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert!(!issuer.reload(unix_now()).unwrap(), "nothing changed");
    }
}
