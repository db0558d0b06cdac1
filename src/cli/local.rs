//! `byollm local`: the model APIs on this machine, signed with the person's own AWS session.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::{ConfigArgs, Failure, config_env, load_config, runtime};
use crate::app::tasks::{self, Hangups};
use crate::app::{self, Wiring};
use crate::broker::local::{LocalSession, LocalSource};
use crate::identity::auth::SessionKey;
use crate::observe::audit::RecordObserver;
use crate::observe::telemetry::Telemetry;
use crate::routing::Mode;
use crate::routing::reload::PolicyReloader;

#[derive(Args)]
pub struct LocalArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// AWS profile to use (default: AWS_PROFILE, else the default profile).
    #[arg(long, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// Port to listen on, on 127.0.0.1 (default 8080). server.listen from a config is ignored.
    #[arg(long, conflicts_with = "listen")]
    pub port: Option<u16>,
    /// Listen on this exact address instead; beyond loopback anyone who reaches it and holds
    /// the session key can use your AWS session.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Where to write the session key (default: $XDG_RUNTIME_DIR/byollm/local-<port>.key,
    /// else ~/.byollm/local-<port>.key), readable by you only.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Bedrock region (default: the profile's region, else bedrock.region).
    #[arg(long)]
    pub region: Option<String>,
}

pub fn run(args: LocalArgs) -> Result<(), Failure> {
    let reload = args.config.config.clone().map(|path| (path, config_env(true)));
    let config = load_config(&args.config, true)?;
    let routing = app::routing_policy(&config, Mode::Local).map_err(Failure::Config)?;
    // Loopback unless --listen says otherwise explicitly: a shared config's server.listen
    // (0.0.0.0 in the Kubernetes one) never applies here.
    let listen = args.listen.unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], args.port.unwrap_or(8080))));
    runtime()?.block_on(async move {
        let source = LocalSource::from_env(args.profile.or(config.local.profile.clone()), config.local.refresh_interval);
        let tls = tasks::load_tls(&config)?;
        let session = Arc::new(LocalSession::new(source).await);
        let region =
            args.region.or_else(|| session.region().map(str::to_owned)).unwrap_or(config.bedrock.region.clone());
        if !listen.ip().is_loopback() {
            tracing::warn!(%listen, "local mode listening beyond loopback: anyone who reaches this address and holds the session key can use your AWS session");
        }
        let _refresher = session.clone().spawn_refresher();
        let telemetry = Telemetry::start(&config.telemetry)?;
        let mut wiring = Wiring::new(Arc::new(config), routing);
        let audit_sink = wiring.sink.clone();
        if let Some(telemetry) = &telemetry {
            wiring.observers.push(telemetry.clone() as Arc<dyn RecordObserver>);
        }
        let dispatch = app::local(wiring, session.clone(), region.clone());
        let config = dispatch.config.clone();
        let hangups = Hangups::listen();
        if let Some((path, env)) = reload {
            let reloader = PolicyReloader::new(path, env, config.clone(), Mode::Local);
            let metrics = dispatch.metrics.clone();
            tokio::spawn(tasks::watch_routing(reloader, dispatch.routing.clone(), None, metrics, hangups.clone(), false));
        }
        let listener =
            tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let bound = listener.local_addr()?;
        // A key per session, required on every request; written where only this user can read it.
        let key = Arc::new(SessionKey::generate().map_err(|e| e.message)?);
        let key_path = args
            .key_file
            .or_else(|| {
                let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| p.is_dir());
                let home = std::env::var_os("HOME").map(PathBuf::from);
                SessionKey::default_path(runtime.as_deref(), home.as_deref(), bound.port())
            })
            .ok_or("no place for the session key: set HOME or pass --key-file")?;
        key.write_file(&key_path)
            .map_err(|e| format!("cannot write the session key to {}: {e}", key_path.display()))?;
        println!("session key (send as the API key; new each start): {}", key.expose());
        println!("written to {} (readable by you only)", key_path.display());
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("  export OPENAI_API_KEY=$(cat {}) OPENAI_BASE_URL={scheme}://{bound}/v1", key_path.display());
        tracing::info!(
            listen = %bound,
            profile = %session.profile_name(),
            %region,
            key_file = %key_path.display(),
            tls = tls.is_some(),
            "byollm ready (local mode): point OpenAI clients at {scheme}://{bound}/v1 with the session key"
        );
        if let Some(tls) = tls.clone() {
            tokio::spawn(tasks::watch_tls(tls, config.keys.reload_interval, hangups));
        }
        let shutdown = tasks::shutdown_signal();
        let limits = crate::api::ListenerLimits {
            header_read_timeout: config.server.header_read_timeout,
            max_connections: config.server.max_connections,
        };
        let router = crate::api::local_router(dispatch, listen.ip().is_loopback(), key);
        crate::api::serve(listener, router, limits, tls, shutdown).await;
        // The audit lines of the last requests are written before the process ends.
        audit_sink.flush(std::time::Duration::from_secs(5));
        if let Some(telemetry) = telemetry {
            telemetry.shutdown().await;
        }
        // The key dies with the session.
        let _ = std::fs::remove_file(&key_path);
        Ok(())
    })
}
