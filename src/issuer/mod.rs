//! The OIDC issuer: the key set in force, minting RS256 tokens for a [`ScopedPrincipal`], and the
//! discovery and JWKS documents AWS STS fetches to verify them.
//!
//! Documents are rendered once per key reload, so serving them copies bytes. The issuer never
//! decides who may mint what (that is `auth`), and never logs a token.

pub mod keys;
pub mod signing;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::Serialize;

use crate::config::{Config, IssuerConfig, MAX_TOKEN_LIFETIME};
use crate::identity::authz::{AuthorizedRun, validate_run_id};
use crate::principal::ScopedPrincipal;
use crate::secret::Secret;
use keys::{KeyDir, KeyError, KeyPolicy, LoadedKeys};

/// Claims we add to identify a run. They land in the customer's CloudTrail, so they are
/// restricted to identifiers (no names, no e-mail addresses, no free text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunClaims {
    pub agent: Option<String>,
    pub run_id: Option<String>,
    /// Also mint the run as AWS session tags and a source identity (the team's `session_tags`).
    pub session_tags: bool,
}

impl From<&AuthorizedRun> for RunClaims {
    fn from(run: &AuthorizedRun) -> RunClaims {
        RunClaims { agent: run.agent.clone(), run_id: run.run_id.clone(), session_tags: run.session_tags }
    }
}

/// The claim AWS STS reads session tags from.
pub const TAGS_CLAIM: &str = "https://aws.amazon.com/tags";
/// The claim AWS STS reads the source identity from.
pub const SOURCE_IDENTITY_CLAIM: &str = "https://aws.amazon.com/source_identity";

/// `https://aws.amazon.com/tags` as AWS reads it for `AssumeRoleWithWebIdentity`: each tag's value
/// a one-element array, every tag transitive (it follows role chaining).
#[derive(Debug, Serialize)]
struct SessionTags<'a> {
    principal_tags: BTreeMap<&'static str, [&'a str; 1]>,
    transitive_tag_keys: Vec<&'static str>,
}

impl<'a> SessionTags<'a> {
    fn new(principal: &'a ScopedPrincipal, run: &'a RunClaims) -> SessionTags<'a> {
        let tags: Vec<(&'static str, &'a str)> = [
            Some(("team", principal.team_uid.as_str())),
            Some(("actor", principal.actor.as_str())),
            Some(("principal", principal.principal_uid.as_str())),
            run.agent.as_deref().map(|agent| ("agent", agent)),
            run.run_id.as_deref().map(|run_id| ("run", run_id)),
        ]
        .into_iter()
        .flatten()
        .collect();
        SessionTags {
            transitive_tag_keys: tags.iter().map(|(key, _)| *key).collect(),
            principal_tags: tags.into_iter().map(|(key, value)| (key, [value])).collect(),
        }
    }
}

/// The source identity of a principal's sessions (`[\w+=,.@-]{2,64}`, fixed for the principal so
/// CloudTrail ties every role it reaches back to it): `<team>.<principal>.<hash>`, uids cut to 20
/// and 28 characters, the hash over the whole subject so cutting never merges two principals.
pub fn source_identity(principal: &ScopedPrincipal) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, principal.to_string().as_bytes());
    let hash = crate::identity::auth::hex(&digest.as_ref()[..5]);
    let team: String = principal.team_uid.as_str().chars().take(20).collect();
    let uid: String = principal.principal_uid.as_str().chars().take(28).collect();
    format!("{team}.{uid}.{hash}")
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
    #[serde(rename = "https://aws.amazon.com/tags", skip_serializing_if = "Option::is_none")]
    tags: Option<SessionTags<'a>>,
    #[serde(rename = "https://aws.amazon.com/source_identity", skip_serializing_if = "Option::is_none")]
    source_identity: Option<String>,
}

/// The names in `claims_supported`.
pub const CLAIMS_SUPPORTED: &[&str] =
    &["iss", "sub", "aud", "iat", "nbf", "exp", "jti", "agent", "run_id", TAGS_CLAIM, SOURCE_IDENTITY_CLAIM];

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
    Lifetime { requested: u64, max: u64 },
    Claim { name: &'static str, message: String },
    Signing,
}

impl std::fmt::Display for MintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MintError::Lifetime { requested, max } => write!(
                f,
                "lifetime_secs {requested} is out of range: use 60..={max} seconds (issuer.token_lifetime_secs caps it)"
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
    /// When the key directory was last read successfully (unix seconds, as passed to `reload`).
    last_loaded: std::sync::atomic::AtomicU64,
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
        let now = unix_now();
        let keys = key_dir.load(now, &policy)?;
        let discovery = Document::render(&DiscoveryDocument {
            issuer: &config.issuer.url,
            jwks_uri: config.issuer.jwks_uri(),
            response_types_supported: ["id_token"],
            subject_types_supported: ["public"],
            id_token_signing_alg_values_supported: ["RS256"],
            claims_supported: CLAIMS_SUPPORTED,
        });
        let current = RwLock::new(Arc::new(Self::in_force(keys)));
        Ok(Issuer {
            config: config.issuer.clone(),
            key_dir,
            policy,
            discovery,
            current,
            last_loaded: std::sync::atomic::AtomicU64::new(now),
            rng: SystemRandom::new(),
        })
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

    /// When the key directory was last read successfully (unix seconds): readiness fails when
    /// that is longer ago than a token lifetime.
    pub fn last_loaded(&self) -> u64 {
        self.last_loaded.load(std::sync::atomic::Ordering::Relaxed)
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
        self.last_loaded.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
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

    /// Sign a token for `principal`, valid from `now` for `lifetime` (default and maximum: the
    /// configured `issuer.token_lifetime_secs`).
    pub fn mint(
        &self,
        principal: &ScopedPrincipal,
        lifetime: Option<Duration>,
        run: &RunClaims,
        now: u64,
    ) -> Result<MintedToken, MintError> {
        let max = self.config.token_lifetime.min(MAX_TOKEN_LIFETIME);
        let lifetime = lifetime.unwrap_or(max);
        if lifetime < Duration::from_secs(60) || lifetime > max {
            return Err(MintError::Lifetime { requested: lifetime.as_secs(), max: max.as_secs() });
        }
        for (name, value) in [("agent", &run.agent), ("run_id", &run.run_id)] {
            if let Some(value) = value {
                validate_run_id(value).map_err(|message| MintError::Claim { name, message })?;
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
            tags: run.session_tags.then(|| SessionTags::new(principal, run)),
            source_identity: run.session_tags.then(|| source_identity(principal)),
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
/// which would otherwise stall every other request on that thread (JWKS fetches included). It runs
/// on the [`signing`] pool, never on tokio's blocking pool, where it would queue behind any other
/// blocking work.
pub async fn mint_off_thread(
    issuer: &Arc<Issuer>,
    principal: ScopedPrincipal,
    lifetime: Option<Duration>,
    run: RunClaims,
) -> Result<MintedToken, MintError> {
    let issuer = issuer.clone();
    signing::run(move || issuer.mint(&principal, lifetime, &run, unix_now())).await.unwrap_or(Err(MintError::Signing))
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
        let run = RunClaims { agent: Some("reviewer".into()), run_id: Some("run-42".into()), session_tags: false };
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
        assert!(claims.get(TAGS_CLAIM).is_none() && claims.get(SOURCE_IDENTITY_CLAIM).is_none());
    }

    #[test]
    fn session_tags_and_source_identity_are_minted_as_aws_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        let run = RunClaims { agent: Some("reviewer".into()), run_id: Some("run-42".into()), session_tags: true };
        let minted = issuer.mint(&principal(), None, &run, 1_000_000).unwrap();
        let claims = decode_part(minted.token.expose().split('.').nth(1).unwrap());
        assert_eq!(
            claims[TAGS_CLAIM],
            serde_json::json!({
                "principal_tags": {
                    "actor": ["service_account"], "agent": ["reviewer"], "principal": ["svc-1"],
                    "run": ["run-42"], "team": ["acme"],
                },
                "transitive_tag_keys": ["team", "actor", "principal", "agent", "run"],
            })
        );
        let source = claims[SOURCE_IDENTITY_CLAIM].as_str().unwrap();
        assert!(source.starts_with("acme.svc-1."), "{source}");
        // Without agent and run: only the tags that exist.
        let bare = RunClaims { session_tags: true, ..RunClaims::default() };
        let claims =
            decode_part(issuer.mint(&principal(), None, &bare, 0).unwrap().token.expose().split('.').nth(1).unwrap());
        assert_eq!(claims[TAGS_CLAIM]["transitive_tag_keys"], serde_json::json!(["team", "actor", "principal"]));
        assert!(claims[TAGS_CLAIM]["principal_tags"].get("agent").is_none());
    }

    #[test]
    fn source_identities_fit_aws_and_never_merge_two_principals() {
        let long = |c: &str| c.repeat(128);
        let make = |team: &str, actor, uid: &str| {
            ScopedPrincipal::new(Uid::parse(team).unwrap(), actor, Uid::parse(uid).unwrap())
        };
        let cases = [
            make("a", ActorType::User, "b"),
            make(&long("t"), ActorType::User, &long("p")),
            make(&long("t"), ActorType::ServiceAccount, &long("p")),
            make(&long("t"), ActorType::User, &(long("p")[1..].to_owned() + "q")),
        ];
        let names: Vec<String> = cases.iter().map(source_identity).collect();
        for name in &names {
            assert!((2..=64).contains(&name.len()), "{name}");
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b)), "{name}");
        }
        let distinct: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
    }

    #[test]
    fn lifetime_and_run_claims_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(dir.path());
        // The configured lifetime (300 s) is the cap, not only the default.
        for secs in [0, 59, 301, 3601] {
            let result = issuer.mint(&principal(), Some(Duration::from_secs(secs)), &RunClaims::default(), 0);
            assert!(matches!(result, Err(MintError::Lifetime { max: 300, .. })), "{secs}");
        }
        assert!(issuer.mint(&principal(), Some(Duration::from_secs(300)), &RunClaims::default(), 0).is_ok());
        let bad = RunClaims { agent: Some("Jane Doe <jane@example.com>".into()), ..RunClaims::default() };
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
