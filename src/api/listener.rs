//! Serving a router on one listener: HTTP/1.1 (over TLS when the listener has a certificate) with
//! a header read timeout, a cap on open connections, and graceful shutdown.
//!
//! A small accept loop instead of `axum::serve`, for the header timeout (against clients that
//! trickle headers), the connection cap (past it, new connections wait in the kernel's backlog
//! until one closes) and closing keep-alive connections gracefully on shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::Semaphore;

use crate::api::tls::ReloadingTls;

/// Per-listener limits.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Serve HTTP/1.1 on `listener` until `shutdown` turns true, then let open requests finish. With
/// `tls`, every connection is HTTPS (the certificate in force when it connects), and the header
/// read timeout bounds the handshake too.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ListenerLimits,
    tls: Option<Arc<ReloadingTls>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::TokioIo;
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // A free slot first: at the cap, nothing more is accepted until a connection closes.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = shutdown.clone();
        let tls = tls.clone();
        let header_read_timeout = limits.header_read_timeout;
        connections.spawn(async move {
            let _slot = slot;
            let Some(tls) = tls else {
                return serve_connection(TokioIo::new(stream), app, header_read_timeout, stop).await;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            match tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), app, header_read_timeout, stop).await,
                Ok(Err(error)) => tracing::debug!(%error, "tls handshake failed"),
                Err(_) => tracing::debug!("tls handshake not finished within server.header_read_timeout_secs"),
            }
        });
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// One connection, plain or TLS, until it closes or the server shuts down.
async fn serve_connection<I>(
    io: I,
    app: Router,
    header_read_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use hyper_util::rt::TokioTimer;
    use hyper_util::service::TowerToHyperService;
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(io, TowerToHyperService::new(app));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        // The sender is gone: nobody can ask for a shutdown any more.
        std::future::pending::<()>().await;
    }
}
