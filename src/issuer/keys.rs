//! The signing key set on disk and in memory.
//!
//! A key directory holds `keyset.json` (each key's kid, state and timestamps) and one
//! `<kid>.pem` per key (PKCS#8, mode 0600). States: **next** is published but does not sign yet,
//! **active** signs, **retired** stays published until every token it signed has expired plus a
//! grace period. The kid is the RFC 7638 JWK thumbprint of the public key.
//!
//! Private key bytes never leave this module except inside [`SigningKey`], whose `Debug` is
//! redacted. All RSA work goes through aws-lc-rs.

use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::config::MAX_TOKEN_LIFETIME;

pub const MANIFEST: &str = "keyset.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Next,
    Active,
    Retired,
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        })
    }
}

/// One key's entry in `keyset.json`. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub kid: String,
    pub state: KeyState,
    pub bits: u32,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub keys: Vec<KeyEntry>,
}

/// Everything that can go wrong with keys. Messages name the file, never its contents.
#[derive(Debug)]
pub enum KeyError {
    Io { path: PathBuf, error: std::io::Error },
    Missing { dir: PathBuf },
    Manifest { path: PathBuf, message: String },
    Mode { path: PathBuf, mode: u32 },
    BadKey { path: PathBuf, message: String },
    Crypto(&'static str),
    Rotate(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Io { path, error } => write!(f, "cannot access {}: {error}", path.display()),
            KeyError::Missing { dir } => {
                write!(f, "no key set in {}: run `byollm keys generate --dir {}` first", dir.display(), dir.display())
            }
            KeyError::Manifest { path, message } => write!(f, "{} is not a valid key set: {message}", path.display()),
            KeyError::Mode { path, mode } => write!(
                f,
                "{} has mode {mode:04o}; a private key must not be accessible to other users (chmod 600, or 0440 for a group-mounted Secret)",
                path.display()
            ),
            KeyError::BadKey { path, message } => write!(f, "{}: {message}", path.display()),
            KeyError::Crypto(what) => write!(f, "key operation failed: {what}"),
            KeyError::Rotate(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for KeyError {}

/// A private key ready to sign. `Debug` shows only the kid.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub encoding_key: jsonwebtoken::EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// A public key as served in the JWKS: exactly the members strict verifiers want.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub n: String,
    pub e: String,
}

impl Jwk {
    fn from_components(n: &[u8], e: &[u8]) -> Jwk {
        let n = URL_SAFE_NO_PAD.encode(strip_leading_zeros(n));
        let e = URL_SAFE_NO_PAD.encode(strip_leading_zeros(e));
        let kid = thumbprint(&n, &e);
        Jwk { kty: "RSA".into(), kid, use_: "sig".into(), alg: "RS256".into(), n, e }
    }
}

/// RFC 7638 thumbprint: SHA-256 of the required members in lexicographic order, base64url.
pub fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len().saturating_sub(1));
    &bytes[first..]
}

/// A generated key: its PKCS#8 PEM and public JWK.
struct NewKey {
    pem: String,
    jwk: Jwk,
}

fn generate_key(bits: u32) -> Result<NewKey, KeyError> {
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        _ => return Err(KeyError::Rotate(format!("unsupported key size {bits}; use 2048, 3072 or 4096"))),
    };
    let key = RsaKeyPair::generate(size).map_err(|_| KeyError::Crypto("generate RSA key"))?;
    let der = key.as_der().map_err(|_| KeyError::Crypto("encode PKCS#8"))?;
    let components = RsaPublicKeyComponents::<Vec<u8>>::from(key.public_key());
    Ok(NewKey { pem: pkcs8_pem(der.as_ref()), jwk: Jwk::from_components(&components.n, &components.e) })
}

fn pkcs8_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + 80);
    pem.push_str("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

fn pem_to_der(path: &Path, pem: &str) -> Result<Vec<u8>, KeyError> {
    let bad = |message: &str| KeyError::BadKey { path: path.to_owned(), message: message.to_owned() };
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PRIVATE KEY-----")
        .and_then(|rest| rest.strip_suffix("-----END PRIVATE KEY-----"))
        .ok_or_else(|| bad("not a PKCS#8 PEM private key (BEGIN PRIVATE KEY)"))?;
    let compact: String = body.split_whitespace().collect();
    STANDARD.decode(compact).map_err(|_| bad("PEM body is not valid base64"))
}

/// Read one key file: check its mode, parse it, compute its JWK.
fn read_key(path: &Path) -> Result<(SigningKey, Jwk), KeyError> {
    check_private_mode(path)?;
    let pem = std::fs::read_to_string(path).map_err(|error| KeyError::Io { path: path.to_owned(), error })?;
    let der = pem_to_der(path, &pem)?;
    let key = RsaKeyPair::from_pkcs8(&der)
        .map_err(|_| KeyError::BadKey { path: path.to_owned(), message: "not a valid RSA private key".into() })?;
    let components = RsaPublicKeyComponents::<Vec<u8>>::from(key.public_key());
    let jwk = Jwk::from_components(&components.n, &components.e);
    let encoding_key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|_| KeyError::BadKey { path: path.to_owned(), message: "cannot be used for RS256 signing".into() })?;
    Ok((SigningKey { kid: jwk.kid.clone(), encoding_key }, jwk))
}

#[cfg(unix)]
fn check_private_mode(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(|error| KeyError::Io { path: path.to_owned(), error })?;
    let mode = metadata.permissions().mode() & 0o7777;
    // Owner read/write; group read is tolerated because Kubernetes mounts Secrets that way for a
    // non-root user (fsGroup, mode 0440). Anything for others, or group write, is refused.
    if mode & 0o037 != 0 {
        return Err(KeyError::Mode { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// Write a file atomically (temp file + rename) with the given mode.
fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let io = |error| KeyError::Io { path: path.to_owned(), error };
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The key directory: manifest reads and writes, and the operations `byollm keys` offers.
pub struct KeyDir {
    dir: PathBuf,
}

/// Parameters of retention and publication.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    pub retired_grace: Duration,
    pub max_published: usize,
    pub min_next_age: Duration,
}

impl KeyPolicy {
    pub fn from_config(keys: &crate::config::KeysConfig) -> KeyPolicy {
        KeyPolicy {
            retired_grace: keys.retired_grace,
            max_published: keys.max_published,
            min_next_age: keys.min_next_age,
        }
    }

    /// When a key retired at `retired_at` stops being published: after the longest token it can
    /// have signed has expired, plus the grace period.
    pub fn retired_until(&self, retired_at: u64) -> u64 {
        retired_at + MAX_TOKEN_LIFETIME.as_secs() + self.retired_grace.as_secs()
    }
}

impl KeyDir {
    pub fn new(dir: impl Into<PathBuf>) -> KeyDir {
        KeyDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    pub fn key_path(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.pem"))
    }

    pub fn exists(&self) -> bool {
        self.manifest_path().exists()
    }

    pub fn read_manifest(&self) -> Result<Manifest, KeyError> {
        let path = self.manifest_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing { dir: self.dir.clone() });
            }
            Err(error) => return Err(KeyError::Io { path, error }),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| KeyError::Manifest { path: path.clone(), message: e.to_string() })?;
        validate_manifest(&manifest).map_err(|message| KeyError::Manifest { path, message })?;
        Ok(manifest)
    }

    fn write_manifest(&self, manifest: &Manifest) -> Result<(), KeyError> {
        let mut text = serde_json::to_vec_pretty(manifest).map_err(|_| KeyError::Crypto("serialise manifest"))?;
        text.push(b'\n');
        write_atomic(&self.manifest_path(), &text, 0o644)
    }

    fn create_key(&self, bits: u32, state: KeyState, now: u64) -> Result<KeyEntry, KeyError> {
        let key = generate_key(bits)?;
        write_atomic(&self.key_path(&key.jwk.kid), key.pem.as_bytes(), 0o600)?;
        let activated_at = (state == KeyState::Active).then_some(now);
        Ok(KeyEntry { kid: key.jwk.kid, state, bits, created_at: now, activated_at, retired_at: None })
    }

    /// Create a key set (an active and a next key), or add a next key to one that has none.
    pub fn generate(&self, bits: u32, now: u64) -> Result<Manifest, KeyError> {
        std::fs::create_dir_all(&self.dir).map_err(|error| KeyError::Io { path: self.dir.clone(), error })?;
        let mut manifest = match self.read_manifest() {
            Ok(manifest) => manifest,
            Err(KeyError::Missing { .. }) => Manifest { version: 1, keys: Vec::new() },
            Err(error) => return Err(error),
        };
        if !manifest.keys.iter().any(|k| k.state == KeyState::Active) {
            manifest.keys.push(self.create_key(bits, KeyState::Active, now)?);
        }
        if manifest.keys.iter().any(|k| k.state == KeyState::Next) {
            return Err(KeyError::Rotate(format!(
                "{} already has a next key; use `byollm keys rotate` to promote it",
                self.dir.display()
            )));
        }
        manifest.keys.push(self.create_key(bits, KeyState::Next, now)?);
        self.write_manifest(&manifest)?;
        Ok(manifest)
    }

    /// Promote next → active, active → retired, create a new next key, and delete retired keys
    /// whose tokens have all expired.
    pub fn rotate(&self, bits: u32, now: u64, policy: &KeyPolicy, force: bool) -> Result<Manifest, KeyError> {
        let mut manifest = self.read_manifest()?;
        let next = manifest
            .keys
            .iter()
            .position(|k| k.state == KeyState::Next)
            .ok_or_else(|| KeyError::Rotate("no next key to promote; run `byollm keys generate` first".into()))?;
        let published_for = now.saturating_sub(manifest.keys[next].created_at);
        if !force && published_for < policy.min_next_age.as_secs() {
            return Err(KeyError::Rotate(format!(
                "the next key {} has been published for {published_for}s, less than keys.min_next_age_secs ({}s): verifiers may not have fetched it yet; wait, or pass --force",
                manifest.keys[next].kid,
                policy.min_next_age.as_secs()
            )));
        }
        for key in &mut manifest.keys {
            if key.state == KeyState::Active {
                key.state = KeyState::Retired;
                key.retired_at = Some(now);
            }
        }
        let promoted = &mut manifest.keys[next];
        promoted.state = KeyState::Active;
        promoted.activated_at = Some(now);
        manifest.keys.push(self.create_key(bits, KeyState::Next, now)?);
        let expired: Vec<String> = manifest
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Retired && k.retired_at.is_some_and(|at| policy.retired_until(at) <= now))
            .map(|k| k.kid.clone())
            .collect();
        manifest.keys.retain(|k| !expired.contains(&k.kid));
        self.write_manifest(&manifest)?;
        for kid in expired {
            let path = self.key_path(&kid);
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(kid, %error, "could not delete an expired retired key file");
            }
        }
        Ok(manifest)
    }

    /// Find `kid` in the manifest. Only kids listed there are ever turned into file names, so a
    /// kid typed on the command line cannot name a file outside the key directory.
    fn position(&self, manifest: &Manifest, kid: &str) -> Result<usize, KeyError> {
        manifest.keys.iter().position(|k| k.kid == kid).ok_or_else(|| {
            KeyError::Rotate(format!(
                "no key {kid:?} in {}; `byollm keys list --dir {}` shows the kids",
                self.dir.display(),
                self.dir.display()
            ))
        })
    }

    /// Write `manifest`, then delete the private key files of `dropped`. The manifest goes first so
    /// a failure in between leaves an unused file behind, never a manifest naming a missing file.
    fn commit_without(&self, manifest: &Manifest, dropped: &[String]) -> Result<(), KeyError> {
        self.write_manifest(manifest)?;
        for kid in dropped {
            let path = self.key_path(kid);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(KeyError::Io { path, error }),
            }
        }
        Ok(())
    }

    /// Routine removal of a key that no token needs any more: a **retired** key once every token
    /// it signed has expired (`KeyPolicy::retired_until`; earlier only with `force`), or the
    /// **next** key (it has signed nothing). The active key is refused: rotate it first, or
    /// [`KeyDir::revoke`] it when it is compromised.
    pub fn remove(&self, kid: &str, now: u64, policy: &KeyPolicy, force: bool) -> Result<Manifest, KeyError> {
        let mut manifest = self.read_manifest()?;
        let index = self.position(&manifest, kid)?;
        let entry = &manifest.keys[index];
        match entry.state {
            KeyState::Active => {
                return Err(KeyError::Rotate(format!(
                    "{kid} is the active key and signs every new token; run `byollm keys rotate` to retire it first, or `byollm keys revoke {kid}` if it is compromised"
                )));
            }
            KeyState::Retired => {
                let until = policy.retired_until(entry.retired_at.unwrap_or(entry.created_at));
                if now < until && !force {
                    return Err(KeyError::Rotate(format!(
                        "{kid} may still have signed tokens in flight for {}s (until the longest token lifetime plus keys.retired_grace_secs has passed); wait, or pass --force to stop publishing it now",
                        until - now
                    )));
                }
            }
            KeyState::Next => {}
        }
        manifest.keys.remove(index);
        self.commit_without(&manifest, &[kid.to_owned()])?;
        Ok(manifest)
    }

    /// Emergency removal of a key that must no longer be trusted: it leaves the set (so the JWKS
    /// stops publishing it) and its private key file is deleted, whatever its state and age.
    /// Revoking the **active** key promotes the next key at once (no `min_next_age` wait) and
    /// creates a new next key; it is refused when there is no next key, because nothing could sign.
    /// Revoking the **next** key creates a new one in its place.
    pub fn revoke(&self, kid: &str, bits: u32, now: u64) -> Result<Revoked, KeyError> {
        let mut manifest = self.read_manifest()?;
        let index = self.position(&manifest, kid)?;
        let state = manifest.keys[index].state;
        let mut promoted = None;
        if state == KeyState::Active {
            let next = manifest.keys.iter().position(|k| k.state == KeyState::Next).ok_or_else(|| {
                KeyError::Rotate(format!(
                    "{kid} is the only key that can sign (there is no next key to take over); generate a fresh key set in a new directory instead (`byollm keys generate --dir NEW`) and replace the whole set"
                ))
            })?;
            let next = &mut manifest.keys[next];
            next.state = KeyState::Active;
            next.activated_at = Some(now);
            promoted = Some(next.kid.clone());
        }
        manifest.keys.remove(index);
        let new_next = if state == KeyState::Retired {
            None
        } else {
            let key = self.create_key(bits, KeyState::Next, now)?;
            let created = key.kid.clone();
            manifest.keys.push(key);
            Some(created)
        };
        self.commit_without(&manifest, &[kid.to_owned()])?;
        Ok(Revoked { state, promoted, new_next, manifest })
    }

    /// Load what the issuer needs at `now`: the active signing key and the published JWKs.
    pub fn load(&self, now: u64, policy: &KeyPolicy) -> Result<LoadedKeys, KeyError> {
        let manifest = self.read_manifest()?;
        let mut signing = None;
        let mut published = Vec::new();
        // Active first, then next, then retired newest first: the order we keep when bounding.
        let mut entries: Vec<&KeyEntry> = manifest.keys.iter().collect();
        entries.sort_by_key(|k| {
            let rank = match k.state {
                KeyState::Active => 0,
                KeyState::Next => 1,
                KeyState::Retired => 2,
            };
            (rank, std::cmp::Reverse(k.retired_at.unwrap_or(k.created_at)))
        });
        for entry in entries {
            if entry.state == KeyState::Retired && entry.retired_at.is_some_and(|at| policy.retired_until(at) <= now) {
                continue;
            }
            if published.len() >= policy.max_published {
                tracing::warn!(kid = %entry.kid, max = policy.max_published, "key set exceeds keys.max_published; not publishing older retired keys");
                continue;
            }
            let path = self.key_path(&entry.kid);
            let (key, jwk) = read_key(&path)?;
            if jwk.kid != entry.kid {
                return Err(KeyError::Manifest {
                    path: self.manifest_path(),
                    message: format!(
                        "{} holds a key whose thumbprint is {}, not {}",
                        path.display(),
                        jwk.kid,
                        entry.kid
                    ),
                });
            }
            if entry.state == KeyState::Active {
                signing = Some(key);
            }
            published.push(PublishedKey { state: entry.state, jwk });
        }
        let signing = signing
            .ok_or_else(|| KeyError::Manifest { path: self.manifest_path(), message: "has no active key".into() })?;
        Ok(LoadedKeys { signing, published })
    }
}

fn validate_manifest(manifest: &Manifest) -> Result<(), String> {
    if manifest.version != 1 {
        return Err(format!("unsupported version {}", manifest.version));
    }
    let mut kids = HashSet::new();
    for key in &manifest.keys {
        let kid_ok =
            !key.kid.is_empty() && key.kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !kid_ok {
            return Err(format!("kid {:?} is not a base64url thumbprint", key.kid));
        }
        if !kids.insert(&key.kid) {
            return Err(format!("kid {} appears twice", key.kid));
        }
    }
    let count = |state| manifest.keys.iter().filter(|k| k.state == state).count();
    if count(KeyState::Active) > 1 || count(KeyState::Next) > 1 {
        return Err("has more than one active or next key".into());
    }
    Ok(())
}

/// What [`KeyDir::revoke`] did.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The state the revoked key was in.
    pub state: KeyState,
    /// The next key that became active, when the active key was revoked.
    pub promoted: Option<String>,
    /// The next key created to replace the revoked active or next key.
    pub new_next: Option<String>,
    pub manifest: Manifest,
}

#[derive(Debug, Clone)]
pub struct PublishedKey {
    pub state: KeyState,
    pub jwk: Jwk,
}

/// The keys in force: one signing key and every published public key.
#[derive(Debug, Clone)]
pub struct LoadedKeys {
    pub signing: SigningKey,
    pub published: Vec<PublishedKey>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> KeyPolicy {
        KeyPolicy { retired_grace: Duration::from_secs(300), max_published: 8, min_next_age: Duration::from_secs(3600) }
    }

    #[test]
    fn generate_creates_active_and_next_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let manifest = keys.generate(2048, 1000).unwrap();
        assert_eq!(manifest.keys.iter().map(|k| k.state).collect::<Vec<_>>(), [KeyState::Active, KeyState::Next]);
        for key in &manifest.keys {
            let path = keys.key_path(&key.kid);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            }
            let pem = std::fs::read_to_string(&path).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        }
        let loaded = keys.load(1000, &policy()).unwrap();
        assert_eq!(loaded.signing.kid, manifest.keys[0].kid);
        assert_eq!(loaded.published.len(), 2);
        assert!(!format!("{:?}", loaded.signing).contains("PRIVATE"));
        assert!(matches!(keys.generate(2048, 1001), Err(KeyError::Rotate(_))));
    }

    #[test]
    fn jwk_is_minimal_and_kid_is_the_thumbprint() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        keys.generate(2048, 0).unwrap();
        let loaded = keys.load(0, &policy()).unwrap();
        for key in loaded.published {
            let n = URL_SAFE_NO_PAD.decode(&key.jwk.n).unwrap();
            assert_eq!(n.len(), 256, "2048-bit modulus without a leading zero");
            assert_ne!(n[0], 0);
            assert_eq!(key.jwk.e, "AQAB");
            assert_eq!(key.jwk.kid, thumbprint(&key.jwk.n, &key.jwk.e));
            let json = serde_json::to_value(&key.jwk).unwrap();
            let mut members: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
            members.sort();
            assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"]);
        }
    }

    #[test]
    fn rfc7638_example_thumbprint() {
        // The example key of RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(thumbprint(n, "AQAB"), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(strip_leading_zeros(&[0, 0, 1, 2]), &[1, 2]);
        assert_eq!(strip_leading_zeros(&[0]), &[0]);
    }

    #[test]
    fn rotation_keeps_next_published_before_it_signs_and_retires_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let first = keys.generate(2048, 0).unwrap();
        let (old_active, old_next) = (first.keys[0].kid.clone(), first.keys[1].kid.clone());

        assert!(matches!(keys.rotate(2048, 10, &policy(), false), Err(KeyError::Rotate(_))), "next key too young");
        let rotated = keys.rotate(2048, 4000, &policy(), false).unwrap();
        let loaded = keys.load(4000, &policy()).unwrap();
        assert_eq!(loaded.signing.kid, old_next);
        let published: Vec<&str> = loaded.published.iter().map(|k| k.jwk.kid.as_str()).collect();
        assert!(published.contains(&old_active.as_str()), "retired key still published");
        let new_next = rotated.keys.iter().find(|k| k.state == KeyState::Next).unwrap();
        assert!(published.contains(&new_next.kid.as_str()));

        let until = policy().retired_until(4000);
        assert!(keys.load(until - 1, &policy()).unwrap().published.iter().any(|k| k.jwk.kid == old_active));
        assert!(!keys.load(until, &policy()).unwrap().published.iter().any(|k| k.jwk.kid == old_active));

        // A later rotation deletes the expired retired key's file.
        keys.rotate(2048, until + 1, &policy(), true).unwrap();
        assert!(!keys.key_path(&old_active).exists());
    }

    #[test]
    fn wrong_mode_and_garbage_are_refused_without_echoing_contents() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let manifest = keys.generate(2048, 0).unwrap();
        let path = keys.key_path(&manifest.keys[0].kid);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let error = keys.load(0, &policy()).unwrap_err().to_string();
            assert!(error.contains("chmod 600"), "{error}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        write_atomic(&path, b"-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n", 0o600)
            .unwrap();
        let error = keys.load(0, &policy()).unwrap_err().to_string();
        assert!(error.contains("base64") && !error.contains("not base64 at all"), "{error}");
        let empty = tempfile::tempdir().unwrap();
        assert!(KeyDir::new(empty.path()).load(0, &policy()).unwrap_err().to_string().contains("keys generate"));
    }

    fn published_kids(keys: &KeyDir, now: u64) -> Vec<String> {
        keys.load(now, &policy()).unwrap().published.into_iter().map(|k| k.jwk.kid).collect()
    }

    #[test]
    fn remove_refuses_the_active_key_and_retired_keys_still_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let first = keys.generate(2048, 0).unwrap();
        let (active, next) = (first.keys[0].kid.clone(), first.keys[1].kid.clone());

        let error = keys.remove(&active, 10, &policy(), true).unwrap_err().to_string();
        assert!(error.contains("keys rotate") && error.contains("keys revoke"), "{error}");
        assert!(keys.key_path(&active).exists(), "a refused remove deletes nothing");

        // Once rotated, the old active key is retired and in use until its tokens expire.
        keys.rotate(2048, 4000, &policy(), false).unwrap();
        let until = policy().retired_until(4000);
        let error = keys.remove(&active, until - 1, &policy(), false).unwrap_err().to_string();
        assert!(error.contains("--force") && error.contains("in flight"), "{error}");
        assert!(published_kids(&keys, until - 1).contains(&active));
        let manifest = keys.remove(&active, until, &policy(), false).unwrap();
        assert!(!manifest.keys.iter().any(|k| k.kid == active));
        assert!(!keys.key_path(&active).exists());
        assert!(!published_kids(&keys, until).contains(&active));
        assert_eq!(keys.load(until, &policy()).unwrap().signing.kid, next, "signing is unaffected");

        // --force removes a retired key early; a next key can always be removed.
        keys.rotate(2048, until + 4000, &policy(), false).unwrap();
        keys.remove(&next, until + 4001, &policy(), true).unwrap();
        let new_next =
            keys.read_manifest().unwrap().keys.iter().find(|k| k.state == KeyState::Next).unwrap().kid.clone();
        let manifest = keys.remove(&new_next, until + 4001, &policy(), false).unwrap();
        assert_eq!(manifest.keys.iter().map(|k| k.state).collect::<Vec<_>>(), [KeyState::Active]);
        assert!(!keys.key_path(&new_next).exists());
    }

    #[test]
    fn revoking_the_active_key_promotes_next_at_once_and_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let first = keys.generate(2048, 0).unwrap();
        let (active, next) = (first.keys[0].kid.clone(), first.keys[1].kid.clone());
        // The next key is only 10 s old: rotate would refuse, revoke does not wait.
        let revoked = keys.revoke(&active, 2048, 10).unwrap();
        assert_eq!(revoked.state, KeyState::Active);
        assert_eq!(revoked.promoted.as_deref(), Some(next.as_str()));
        let new_next = revoked.new_next.clone().unwrap();
        assert!(!keys.key_path(&active).exists(), "the private key is destroyed");
        let loaded = keys.load(10, &policy()).unwrap();
        assert_eq!(loaded.signing.kid, next);
        let published = published_kids(&keys, 10);
        assert!(!published.contains(&active), "a revoked key is not published");
        assert!(published.contains(&new_next));
        assert_eq!(keys.read_manifest().unwrap().keys.len(), 2);
    }

    #[test]
    fn revoke_refuses_to_leave_nothing_that_can_sign() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let first = keys.generate(2048, 0).unwrap();
        let (active, next) = (first.keys[0].kid.clone(), first.keys[1].kid.clone());
        keys.remove(&next, 1, &policy(), false).unwrap();
        let error = keys.revoke(&active, 2048, 2).unwrap_err().to_string();
        assert!(error.contains("only key that can sign") && error.contains("keys generate"), "{error}");
        assert!(keys.key_path(&active).exists());
        assert_eq!(keys.load(2, &policy()).unwrap().signing.kid, active);
    }

    #[test]
    fn revoking_next_or_retired_keys() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        let first = keys.generate(2048, 0).unwrap();
        let (active, next) = (first.keys[0].kid.clone(), first.keys[1].kid.clone());
        let revoked = keys.revoke(&next, 2048, 5).unwrap();
        assert_eq!(revoked.promoted, None);
        let replacement = revoked.new_next.unwrap();
        assert_ne!(replacement, next);
        assert!(!keys.key_path(&next).exists());
        assert_eq!(keys.load(5, &policy()).unwrap().signing.kid, active);

        keys.rotate(2048, 4000, &policy(), false).unwrap();
        // A retired key still inside its publication window goes at once, and nothing is created.
        let revoked = keys.revoke(&active, 2048, 4001).unwrap();
        assert_eq!((revoked.state, revoked.promoted, revoked.new_next), (KeyState::Retired, None, None));
        assert!(!published_kids(&keys, 4001).contains(&active));
        assert_eq!(keys.load(4001, &policy()).unwrap().signing.kid, replacement);
    }

    #[test]
    fn unknown_kids_are_refused_and_never_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path().join("set"));
        keys.generate(2048, 0).unwrap();
        std::fs::write(dir.path().join("victim.pem"), "x").unwrap();
        for kid in ["../victim", "nope", "", "../set/keyset"] {
            let error = keys.remove(kid, 0, &policy(), true).unwrap_err().to_string();
            assert!(error.contains("keys list"), "{error}");
            assert!(keys.revoke(kid, 2048, 0).is_err());
        }
        assert!(dir.path().join("victim.pem").exists());
        assert!(keys.exists());
    }

    #[test]
    fn publication_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(dir.path());
        keys.generate(2048, 0).unwrap();
        let tight = KeyPolicy { max_published: 3, ..policy() };
        for step in 1..=4 {
            keys.rotate(2048, step, &tight, true).unwrap();
        }
        let loaded = keys.load(5, &tight).unwrap();
        assert_eq!(loaded.published.len(), 3);
        assert_eq!(loaded.published[0].state, KeyState::Active);
        assert_eq!(loaded.published[1].state, KeyState::Next);
    }
}
