//! `byollm serve`: the gateway (issuer, broker, model APIs) on its listeners.

use std::sync::Arc;

use clap::Args;

use super::{ConfigArgs, Failure, config_env, load_config, runtime};
use crate::app::tasks::{self, Hangups};
use crate::app::{self, Wiring};
use crate::broker::cache::SystemClock;
use crate::broker::sts::SdkSts;
use crate::issuer::Issuer;
use crate::observe::audit::RecordObserver;
use crate::observe::telemetry::Telemetry;
use crate::routing::Mode;
use crate::routing::reload::PolicyReloader;

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Development mode: allow an http:// issuer URL on loopback.
    #[arg(long)]
    pub dev: bool,
}

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let reload = args.config.config.clone().map(|path| (path, config_env(args.dev)));
    let config = load_config(&args.config, args.dev)?;
    let routing = app::routing_policy(&config, Mode::Hosted).map_err(Failure::Config)?;
    let limits = app::limits_policy(&config, &routing).map_err(Failure::Config)?;
    runtime()?.block_on(async move {
        if config.dev {
            tracing::warn!(
                issuer = %config.issuer.url,
                "DEV MODE: http issuer on loopback; AWS STS cannot reach it. Do not use in production"
            );
        }
        let issuer = Issuer::open(&config)?;
        let tls = tasks::load_tls(&config)?;
        let telemetry = Telemetry::start(&config.telemetry)?;
        let sts = SdkSts::new(&config.sts.region, config.sts.endpoint_url.as_deref());
        let mut wiring = Wiring::new(Arc::new(config), routing);
        let audit_sink = wiring.sink.clone();
        wiring.limits = Some(limits);
        if let Some(telemetry) = &telemetry {
            wiring.observers.push(telemetry.clone() as Arc<dyn RecordObserver>);
        }
        let state = app::cloud(wiring, issuer, Arc::new(sts), Arc::new(SystemClock));
        let config = state.config.clone();
        let hangups = Hangups::listen();
        if let Some((path, env)) = reload {
            let reloader = PolicyReloader::new(path, env, config.clone(), Mode::Hosted);
            let routing = state.dispatch.routing.clone();
            let limits = Some(state.dispatch.limits.clone());
            tokio::spawn(tasks::watch_routing(reloader, routing, limits, state.metrics.clone(), hangups.clone(), true));
        }
        let server = &config.server;
        let internal = bind(server.listen).await?;
        let public = match server.public_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        tokio::spawn(tasks::watch_keys(
            state.issuer.clone(),
            state.broker.clone(),
            state.metrics.clone(),
            config.keys.reload_interval,
            tls.clone(),
            hangups,
        ));
        let shutdown = tasks::shutdown_signal();
        tracing::info!(
            internal = %internal.local_addr()?,
            public = ?public.as_ref().and_then(|l| l.local_addr().ok()),
            issuer = %config.issuer.url,
            tls = tls.is_some(),
            "byollm ready"
        );
        let limits = |max_connections| crate::api::ListenerLimits {
            header_read_timeout: server.header_read_timeout,
            max_connections,
        };
        let internal_server = crate::api::serve(
            internal,
            crate::api::router(state.clone()),
            limits(server.max_connections),
            tls.clone(),
            shutdown.clone(),
        );
        match public {
            Some(public) => {
                let router = crate::api::public_router(state);
                let public_server =
                    crate::api::serve(public, router, limits(server.public_max_connections), tls, shutdown);
                tokio::join!(internal_server, public_server);
            }
            None => internal_server.await,
        }
        // The audit lines of the last requests are written before the process ends.
        audit_sink.flush(std::time::Duration::from_secs(5));
        if let Some(telemetry) = telemetry {
            telemetry.shutdown().await;
        }
        Ok(())
    })
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| Failure::Other(format!("cannot listen on {addr}: {e}")))
}
