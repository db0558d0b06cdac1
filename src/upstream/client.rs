//! The pooled HTTP client under every upstream call: hyper-util's client over hyper-rustls
//! (rustls with aws-lc-rs, the platform's root certificates, HTTP/1.1, keep-alive).
//!
//! Timeouts: connecting (TCP) is cut at [`CONNECT_TIMEOUT`]; nothing here limits how long an
//! answer takes (the caller's request timeout does) or how long a stream may stay open.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// TCP connect limit, as the AWS SDK client was configured before.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections are closed after this (the AWS SDK's default).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// TCP keep-alive probes on upstream connections (long, silent streams stay open through NATs).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The platform's root certificates, loaded once per process (it takes milliseconds).
static ROOTS: LazyLock<Arc<rustls::RootCertStore>> = LazyLock::new(|| {
    let loaded = rustls_native_certs::load_native_certs();
    if !loaded.errors.is_empty() {
        tracing::warn!(errors = loaded.errors.len(), "some platform root certificates could not be read");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::warn!(ignored, "no usable platform root certificates: HTTPS calls to Bedrock will fail");
    }
    Arc::new(roots)
});

/// The TLS settings of every upstream client: rustls with aws-lc-rs, the platform's roots.
pub fn tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // Start-up only: fails just if aws-lc-rs offered no TLS version at all (a build problem).
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs provides TLS 1.2 and 1.3")
        .with_root_certificates(ROOTS.clone())
        .with_no_client_auth()
}

/// A new pooled client (start-up). Cheap to clone; clones share the pool.
pub fn http_client() -> HttpClient {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    tcp.set_keepalive(Some(TCP_KEEPALIVE));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config())
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector)
}
