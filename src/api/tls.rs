//! TLS for the listeners: a certificate chain and private key read from PEM files (rustls with
//! the aws-lc-rs provider), re-read when either file changes, so a renewed certificate (cert-manager,
//! a mounted Secret) is picked up without a restart.
//!
//! A failed reload keeps the certificate in force and says why; the private key is never logged.
//! Only HTTP/1.1 is offered (ALPN), which is what the listeners serve.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::config::TlsFiles;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Largest PEM file read (a chain of a few certificates is a few KiB).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Why the TLS files could not be used. Never holds key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The server TLS configuration in force, replaced when the files change.
pub struct ReloadingTls {
    files: TlsFiles,
    state: RwLock<(Arc<ServerConfig>, Stamp)>,
}

/// Modification times and sizes of the two files, to notice a change.
type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |path: &Path| std::fs::metadata(path).map(|m| (m.modified().ok(), m.len())).unwrap_or((None, 0));
    [one(&files.cert), one(&files.key)]
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| TlsError(format!("cannot read the {what} file {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TlsError(format!("cannot read the {what} file {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError(format!("the {what} file {} is larger than 1 MiB", path.display())));
    }
    Ok(bytes)
}

/// Build a server configuration from the PEM files.
pub fn load(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let cert_pem = read_pem(&files.cert, "certificate")?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError(format!("{} is not a PEM certificate chain", files.cert.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!("{} holds no CERTIFICATE block", files.cert.display())));
    }
    let key_pem = read_pem(&files.key, "private key")?;
    // The parser's error could quote the file; say only which file failed.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
        TlsError(format!("{} holds no PKCS#8, PKCS#1 or SEC1 private key in PEM form", files.key.display()))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("tls set-up failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            TlsError(format!("the certificate and key in {} do not form a usable pair: {e}", files.key.display()))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl ReloadingTls {
    /// Load the files now; start-up fails if they are unusable.
    pub fn new(files: TlsFiles) -> Result<ReloadingTls, TlsError> {
        let before = stamp(&files);
        let config = Arc::new(load(&files)?);
        Ok(ReloadingTls { files, state: RwLock::new((config, before)) })
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.state.read() {
            Ok(state) => state.0.clone(),
            Err(poisoned) => poisoned.into_inner().0.clone(),
        }
    }

    /// Re-read the files if either changed. `Ok(true)` when a new certificate is in force; on error
    /// the previous one stays.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.files);
        let unchanged = match self.state.read() {
            Ok(state) => state.1 == now,
            Err(poisoned) => poisoned.into_inner().1 == now,
        };
        if unchanged {
            return Ok(false);
        }
        let loaded = load(&self.files);
        let mut state = match self.state.write() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Remember the stamp even on failure: a broken file is reported once, not every tick.
        state.1 = now;
        let config = loaded?;
        state.0 = Arc::new(config);
        Ok(true)
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        TlsFiles { cert, key }
    }

    #[test]
    fn loads_a_pair_and_reloads_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "localhost");
        let tls = ReloadingTls::new(files.clone()).unwrap();
        let first = tls.current();
        assert_eq!(first.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert_eq!(tls.reload_if_changed(), Ok(false));
        assert!(Arc::ptr_eq(&first, &tls.current()));

        // A renewed certificate (different size or time) replaces the configuration.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_pair(dir.path(), "gateway.internal.example");
        assert_eq!(tls.reload_if_changed(), Ok(true));
        assert!(!Arc::ptr_eq(&first, &tls.current()));
    }

    #[test]
    fn a_broken_reload_keeps_the_certificate_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "localhost");
        let tls = ReloadingTls::new(files.clone()).unwrap();
        let before = tls.current();
        std::fs::write(&files.key, "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
            .unwrap();
        let error = tls.reload_if_changed().unwrap_err();
        assert!(error.to_string().contains("tls.key"), "{error}");
        assert!(Arc::ptr_eq(&before, &tls.current()));
        // Reported once, not on every tick.
        assert_eq!(tls.reload_if_changed(), Ok(false));
    }

    #[test]
    fn refuses_missing_empty_and_mismatched_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsFiles { cert: dir.path().join("none.crt"), key: dir.path().join("none.key") };
        assert!(load(&missing).unwrap_err().to_string().contains("cannot read the certificate file"));

        let files = write_pair(dir.path(), "localhost");
        std::fs::write(&files.cert, "").unwrap();
        assert!(load(&files).unwrap_err().to_string().contains("no CERTIFICATE"));

        let other = tempfile::tempdir().unwrap();
        let a = write_pair(dir.path(), "a.example");
        let b = write_pair(other.path(), "b.example");
        let mixed = TlsFiles { cert: a.cert, key: b.key };
        let error = load(&mixed).unwrap_err().to_string();
        assert!(error.contains("do not form a usable pair"), "{error}");
        assert!(!error.contains("PRIVATE KEY"), "{error}");
    }
}
