//! Serving a router on one listener: HTTP/1.1 with a header read timeout, a cap on open
//! connections, and graceful shutdown.
//!
//! A small accept loop instead of `axum::serve`, for the header timeout (against clients that
//! trickle headers), the connection cap (past it, new connections wait in the kernel's backlog
//! until one closes) and closing keep-alive connections gracefully on shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::Semaphore;

/// Per-listener limits.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Serve HTTP/1.1 on `listener` until `shutdown` turns true, then let open requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ListenerLimits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
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
        let service = TowerToHyperService::new(app.clone());
        let mut stop = shutdown.clone();
        let header_read_timeout = limits.header_read_timeout;
        connections.spawn(async move {
            let _slot = slot;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        // The sender is gone: nobody can ask for a shutdown any more.
        std::future::pending::<()>().await;
    }
}
