//! A running gateway's background work: one SIGHUP listener fanned out to every watcher
//! ([`Hangups`]), the key set and TLS files re-read on SIGHUP and on a timer ([`watch_keys`],
//! [`watch_tls`]), the routing policy put in force when the config file changes
//! ([`watch_routing`]), and the signal that starts a graceful shutdown ([`shutdown_signal`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::tls::ReloadingTls;
use crate::broker::Broker;
use crate::broker::session_policy;
use crate::config::Config;
use crate::issuer::{Issuer, unix_now};
use crate::limits::{Limits, LimitsPolicy};
use crate::observe::metrics::Metrics;
use crate::routing::Routing;
use crate::routing::policy::ProcessSecrets;
use crate::routing::reload::{PolicyReloader, ReloadOutcome};

/// SIGHUP, fanned out: one signal listener for the process, and a receiver per watcher that wakes
/// on every hangup.
#[derive(Clone)]
pub struct Hangups(watch::Receiver<u64>);

impl Hangups {
    /// Start listening for SIGHUP (once per process).
    pub fn listen() -> Hangups {
        let (sender, receiver) = watch::channel(0u64);
        #[cfg(unix)]
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reloads happen on their timers only");
                return;
            };
            while hangup.recv().await.is_some() {
                sender.send_modify(|count| *count += 1);
            }
        });
        #[cfg(not(unix))]
        drop(sender);
        Hangups(receiver)
    }

    /// The next SIGHUP (never, if there is no listener).
    pub async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A receiver that turns true when the process is asked to stop (Ctrl-C or SIGTERM).
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    shutdown
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The listeners' certificate and key (`server.tls_cert_file`, `server.tls_key_file`), loaded now:
/// unusable files stop the start.
pub fn load_tls(config: &Config) -> Result<Option<Arc<ReloadingTls>>, String> {
    match &config.server.tls {
        Some(files) => {
            let tls = ReloadingTls::new(files.clone())
                .map_err(|e| format!("server.tls_cert_file / server.tls_key_file: {e}"))?;
            Ok(Some(Arc::new(tls)))
        }
        None => Ok(None),
    }
}

/// Re-read the TLS files if they changed; a broken pair keeps the certificate in force.
async fn reload_tls(tls: &Arc<ReloadingTls>) {
    let tls = tls.clone();
    match tokio::task::spawn_blocking(move || tls.reload_if_changed()).await {
        Ok(Ok(true)) => tracing::info!("tls certificate reloaded"),
        Ok(Ok(false)) | Err(_) => {}
        Ok(Err(error)) => tracing::error!(%error, "tls reload failed; keeping the certificate in force"),
    }
}

/// Wait for the next tick of `ticker` or the next SIGHUP; true for a SIGHUP.
async fn tick_or_hangup(ticker: &mut tokio::time::Interval, hangups: &mut Hangups) -> bool {
    tokio::select! {
        _ = ticker.tick() => false,
        _ = hangups.next() => true,
    }
}

/// `byollm local`: re-read the TLS files every `interval` and on SIGHUP.
pub async fn watch_tls(tls: Arc<ReloadingTls>, interval: Duration, mut hangups: Hangups) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tick_or_hangup(&mut ticker, &mut hangups).await;
        reload_tls(&tls).await;
    }
}

/// `byollm serve`: reload the key set (and the TLS files) on SIGHUP and every `interval` (which
/// also retires keys on time), and drop expired credentials from the broker's cache.
pub async fn watch_keys(
    issuer: Arc<Issuer>,
    broker: Arc<Broker>,
    metrics: Arc<Metrics>,
    interval: Duration,
    tls: Option<Arc<ReloadingTls>>,
    mut hangups: Hangups,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        if tick_or_hangup(&mut ticker, &mut hangups).await {
            tracing::info!("SIGHUP: reloading the key set");
        }
        if let Some(tls) = &tls {
            reload_tls(tls).await;
        }
        let purged = broker.purge_expired();
        if purged > 0 {
            tracing::debug!(purged, "dropped expired credentials from the cache");
        }
        let issuer = issuer.clone();
        match tokio::task::spawn_blocking(move || issuer.reload(unix_now())).await {
            Ok(Ok(true)) => metrics.key_reloads.inc("changed"),
            Ok(Ok(false)) => metrics.key_reloads.inc("unchanged"),
            Ok(Err(error)) => {
                metrics.key_reloads.inc("error");
                tracing::error!(%error, "key set reload failed; keeping the keys in force");
            }
            Err(_) => metrics.key_reloads.inc("error"),
        }
    }
}

/// Put a new routing policy in force when the config file changes (polled every 2 s) or on
/// SIGHUP (which also re-reads the key files the policy names), and with it the `[limits]` policy
/// (`limits`, in `byollm serve`): both validate or neither changes. `exports`: credentials leave
/// this gateway (`byollm serve`), so each scope's session policy is checked anew.
pub async fn watch_routing(
    mut reloader: PolicyReloader,
    routing: Arc<Routing>,
    limits: Option<Arc<Limits>>,
    metrics: Arc<Metrics>,
    mut hangups: Hangups,
    exports: bool,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        let forced = tick_or_hangup(&mut tick, &mut hangups).await;
        let mut new_limits = None;
        let outcome = reloader.check_with(&routing, forced, |config, policy| {
            if limits.is_some() {
                new_limits = Some(LimitsPolicy::from_config(config, policy, &ProcessSecrets)?);
            }
            Ok(())
        });
        match outcome {
            ReloadOutcome::Unchanged => {}
            ReloadOutcome::Replaced { restart_needed } => {
                metrics.policy_reloads.inc("changed");
                if let (Some(limits), Some(policy)) = (&limits, new_limits) {
                    limits.replace(policy);
                }
                tracing::info!("routing policy reloaded, and [limits] with it");
                routing.policy().admit_labels(&metrics);
                if exports {
                    session_policy::log_scopes(reloader.config(), &routing.policy());
                }
                if !restart_needed.is_empty() {
                    tracing::warn!(
                        sections = %restart_needed.join(", "),
                        "the config file changed outside [routing]: those changes take effect only after a restart"
                    );
                }
            }
            ReloadOutcome::Invalid(error) => {
                metrics.policy_reloads.inc("error");
                tracing::error!("routing policy not reloaded (nor [limits]), the ones in force stay: {error}");
            }
        }
    }
}
