//! Application wiring: the one place the pieces are put together, for `byollm serve` (the issuer,
//! the broker and the cloud credential source: [`cloud`]) and `byollm local` (the person's AWS
//! session: [`local`]) alike. The credential source is the only difference between the two; both
//! get their model path from [`dispatch`]. Background work (key, TLS and policy watchers, the one
//! SIGHUP listener, shutdown) is in [`tasks`].
//!
//! Must never: serve requests itself, or fall back silently: an invalid routing policy is an
//! error here ([`routing_policy`]).

pub mod tasks;

use std::sync::Arc;

use crate::api::{AppState, BodyBudget};
use crate::broker::Broker;
use crate::broker::cache::Clock;
use crate::broker::local::LocalSession;
use crate::broker::sts::StsExchange;
use crate::config::{Config, ConfigError};
use crate::dispatch::context::{CloudSource, SessionSource};
use crate::dispatch::{CredentialSource, Dispatch};
use crate::identity::auth::Callers;
use crate::issuer::Issuer;
use crate::limits::{Limits, LimitsPolicy};
use crate::observe::audit::{Audit, AuditSink, RecordObserver, StdoutSink};
use crate::observe::metrics::Metrics;
use crate::routing::policy::ProcessSecrets;
use crate::routing::{Mode, Routing, RoutingPolicy};
use crate::upstream::BedrockClient;
use crate::upstream::buffered::AnswerBudget;
use crate::upstream::direct::DirectClient;

/// The routing policy of a loaded configuration, its problems reported like the config's own.
pub fn routing_policy(config: &Config, mode: Mode) -> Result<RoutingPolicy, ConfigError> {
    RoutingPolicy::from_config(config, mode, &ProcessSecrets)
        .map_err(|errors| ConfigError { source: "the [routing] section".to_owned(), errors })
}

/// The limits policy of a loaded configuration against its routing policy, its problems reported
/// like the config's own.
pub fn limits_policy(config: &Config, routing: &RoutingPolicy) -> Result<LimitsPolicy, ConfigError> {
    LimitsPolicy::from_config(config, routing, &ProcessSecrets)
        .map_err(|errors| ConfigError { source: "the [limits] section".to_owned(), errors })
}

/// What every model request's path is built from, in either mode.
pub struct Wiring {
    pub config: Arc<Config>,
    pub routing: RoutingPolicy,
    /// The gateway's limits (`byollm serve`); `None`: none (prices only), as in local mode.
    pub limits: Option<LimitsPolicy>,
    pub metrics: Arc<Metrics>,
    /// Where audit lines go (standard output, except in tests).
    pub sink: Arc<dyn AuditSink>,
    /// What else sees every finished audit record (OpenTelemetry spans, when on).
    pub observers: Vec<Arc<dyn RecordObserver>>,
}

impl Wiring {
    /// Audit lines to standard output, no other observer.
    pub fn new(config: Arc<Config>, routing: RoutingPolicy) -> Wiring {
        Wiring {
            config,
            routing,
            limits: None,
            metrics: Arc::new(Metrics::default()),
            sink: Arc::new(StdoutSink::start()),
            observers: Vec::new(),
        }
    }
}

/// The model path over `source`: the one place a [`Dispatch`] is built.
pub fn dispatch(wiring: Wiring, source: Arc<dyn CredentialSource>) -> Arc<Dispatch> {
    let Wiring { config, routing, limits, metrics, sink, observers } = wiring;
    let limits = limits.unwrap_or_else(|| LimitsPolicy::none(&config));
    routing.admit_labels(&metrics);
    metrics
        .admit_teams(config.teams.iter().map(|t| t.uid.as_str()).chain(config.callers.iter().map(|c| c.team.as_str())));
    // Every upstream answer read whole (Bedrock, the Anthropic API, endpoints) shares one budget.
    let answers = AnswerBudget::new(config.server.max_answer_bytes_in_flight);
    let mut audit = Audit::new(sink, metrics.clone());
    for observer in observers {
        audit.add_observer(observer);
    }
    Arc::new(Dispatch {
        routing: Arc::new(Routing::new(routing)),
        bedrock: Arc::new(BedrockClient::new(config.bedrock.endpoint_url.clone()).with_answer_budget(answers.clone())),
        direct: Arc::new(DirectClient::new(&config.egress, answers)),
        audit,
        limits: Arc::new(Limits::new(limits, metrics.clone())),
        metrics,
        source,
        config,
    })
}

/// `byollm serve`: the issuer, the broker (STS through `sts`, time from `clock`), the callers'
/// keys, and the model path over cloud runs' credentials.
pub fn cloud(wiring: Wiring, issuer: Issuer, sts: Arc<dyn StsExchange>, clock: Arc<dyn Clock>) -> AppState {
    let config = wiring.config.clone();
    let metrics = wiring.metrics.clone();
    // Credentials leave this gateway: say at start which scopes' session policies are not exact.
    crate::broker::session_policy::log_scopes(&config, &wiring.routing);
    let issuer = Arc::new(issuer);
    let broker = Arc::new(Broker::new(config.clone(), issuer.clone(), sts, clock.clone(), metrics.clone()));
    let callers = Arc::new(Callers::new(&config.callers));
    let source = CloudSource { config: config.clone(), callers: callers.clone(), broker: broker.clone() };
    let dispatch = dispatch(wiring, Arc::new(source));
    let body_budget = BodyBudget::new(config.server.max_body_bytes_in_flight);
    AppState { config, issuer, callers, metrics, broker, dispatch, body_budget, clock }
}

/// `byollm local`: the model path over the person's own session, in `region`.
pub fn local(wiring: Wiring, session: Arc<LocalSession>, region: String) -> Arc<Dispatch> {
    dispatch(wiring, Arc::new(SessionSource { session, region }))
}
