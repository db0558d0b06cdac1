//! Local fakes of the services byollm talks to, for integration tests. Nothing here reaches AWS,
//! Anthropic or any other provider.
//!
//! * [`fake_sts::FakeSts`]: STS `AssumeRoleWithWebIdentity` over the query protocol, verifying the web
//!   identity token the way AWS does (discovery + JWKS over HTTP, RS256, `exp`/`aud`, registered
//!   OIDC providers, per-role trust conditions) and answering with AWS's XML shapes.
//! * [`fake_bedrock::FakeBedrock`]: Bedrock Runtime `InvokeModel` / `InvokeModelWithResponseStream`,
//!   checking SigV4 against a [`CredentialStore`], validating Anthropic request bodies, and replying
//!   with scripted Anthropic messages, JSON errors or `application/vnd.amazon.eventstream` frames.
//! * [`fake_anthropic::FakeAnthropic`]: the Anthropic Messages API (`x-api-key`, `anthropic-version`,
//!   `anthropic-beta`, JSON or SSE, Anthropic's error shapes), for the direct Anthropic route.
//! * [`fake_openai::FakeOpenAi`]: an OpenAI-compatible chat completions server (bearer keys, JSON or
//!   SSE, OpenAI's error shapes, redirects and oversized answers on demand).
//! * [`prompt_cache::PromptCache`]: Claude's prompt cache (breakpoints, lookback, minimum size, TTL),
//!   which the fake Bedrock and the fake Anthropic API check every request against and, when asked,
//!   report their usage from.
//!
//! All bind `127.0.0.1:0`, run on the test's tokio runtime and stop when dropped. They never use
//! byollm's own code (its catalog, its signer, its IAM rules): each keeps its own tables.
//! [`CredentialStore`] is the shared handle through which credentials issued by the fake STS become
//! valid at the fake Bedrock.

pub mod fake_anthropic;
pub mod fake_bedrock;
pub mod fake_openai;
pub mod fake_sts;
pub mod prompt_cache;

pub use fake_anthropic::*;
pub use fake_bedrock::*;
pub use fake_openai::*;
pub use fake_sts::*;
pub use prompt_cache::{CacheAccount, PromptCache};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use tokio::task::JoinHandle;

/// One AWS credential known to the fakes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Present for temporary (STS-issued) credentials; requests must then carry `x-amz-security-token`.
    pub session_token: Option<String>,
    /// After this instant AWS answers `ExpiredTokenException`.
    pub expires_at: Option<SystemTime>,
}

impl StoredCredential {
    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|t| SystemTime::now() >= t)
    }
}

/// Shared, cloneable set of credentials the fake Bedrock accepts. The fake STS adds what it issues.
#[derive(Debug, Clone, Default)]
pub struct CredentialStore(Arc<Mutex<HashMap<String, StoredCredential>>>);

impl CredentialStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Long-term IAM user keys (no session token, never expire).
    pub fn add_static(&self, access_key_id: &str, secret_access_key: &str) {
        self.add(StoredCredential {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            expires_at: None,
        });
    }

    pub fn add(&self, credential: StoredCredential) {
        self.0.lock().unwrap().insert(credential.access_key_id.clone(), credential);
    }

    pub fn get(&self, access_key_id: &str) -> Option<StoredCredential> {
        self.0.lock().unwrap().get(access_key_id).cloned()
    }

    /// Make a key expire now (Bedrock then answers `ExpiredTokenException`).
    pub fn expire(&self, access_key_id: &str) {
        if let Some(c) = self.0.lock().unwrap().get_mut(access_key_id) {
            c.expires_at = Some(SystemTime::now() - Duration::from_secs(1));
        }
    }

    pub fn remove(&self, access_key_id: &str) {
        self.0.lock().unwrap().remove(access_key_id);
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A server task that is aborted when dropped.
pub struct ServerTask(JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serve `router` on `127.0.0.1:0`; returns its base URL and the task guard (aborts on drop).
pub async fn serve(router: axum::Router) -> (String, ServerTask) {
    let (listener, url) = bind().await;
    (url, serve_on(listener, router))
}

/// Bind `127.0.0.1:0`, for servers that must know their URL before building their router.
pub async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// Serves with `TCP_NODELAY`, as AWS's front ends answer: no Nagle pause between a response's
/// pieces (which tests on a paused clock would see as minutes).
pub fn serve_on(listener: tokio::net::TcpListener, router: axum::Router) -> ServerTask {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    ServerTask(tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    }))
}

/// `GET url` over HTTPS trusting only `root_pem` (a test's self-signed certificate); returns the
/// status and body. (hyper-rustls, as the gateway's own client; reqwest here speaks plain HTTP.)
pub async fn https_get(url: &str, root_pem: &str) -> Result<(u16, bytes::Bytes), String> {
    use http_body_util::BodyExt;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(connector);
    let uri: axum::http::Uri = url.parse().map_err(|e: axum::http::uri::InvalidUri| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).expect("system random");
    b
}

/// Random string over `alphabet`, `len` characters.
fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<64>() {
            // Rejection sampling keeps the distribution uniform.
            if (b as usize) < 256 - 256 % alphabet.len() && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64ISH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A UUID-shaped request id, as AWS puts in `x-amzn-RequestId` / `<RequestId>`.
fn request_id() -> String {
    let h: String = random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `2026-11-23T12:00:00Z`.
fn iso8601(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    aws_smithy_types::DateTime::from_secs(secs).fmt(aws_smithy_types::date_time::Format::DateTime).unwrap()
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-decoding; `plus_as_space` for `application/x-www-form-urlencoded`.
fn percent_decode(s: &str, plus_as_space: bool) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parse an `application/x-www-form-urlencoded` body.
fn parse_form(body: &str) -> Option<HashMap<String, String>> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

/// SigV4 `UriEncode`: everything except unreserved characters (and `/` when `keep_slash`) as `%XX`.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
