//! What every handler of `byollm serve` shares: cheap handles built once at start.
//!
//! Depends on the core and on the chat surface's own state type ([`ChatState`]); never on a router.

use std::sync::Arc;

use crate::adapter::routes::{ChatState, CredentialSource};
use crate::audit::{Audit, StdoutSink};
use crate::auth::Callers;
use crate::broker::Broker;
use crate::broker::cache::{Clock, SystemClock};
use crate::broker::sts::{SdkSts, StsExchange};
use crate::config::Config;
use crate::issuer::Issuer;
use crate::metrics::Metrics;
use crate::routing::policy::ProcessSecrets;
use crate::routing::{Mode, Routing, RoutingPolicy};
use crate::upstream::BedrockClient;
use crate::upstream::direct::DirectClient;

use super::extract::BodyBudget;

/// Cheap handles shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub issuer: Arc<Issuer>,
    pub callers: Arc<Callers>,
    pub metrics: Arc<Metrics>,
    pub broker: Arc<Broker>,
    pub chat: ChatState,
    /// The process-wide budget of request-body bytes in flight.
    pub body_budget: BodyBudget,
    /// The time, for readiness (injected in tests).
    pub clock: Arc<dyn Clock>,
}

impl axum::extract::FromRef<AppState> for ChatState {
    fn from_ref(state: &AppState) -> ChatState {
        state.chat.clone()
    }
}

impl AppState {
    /// State for `serve`: STS through the AWS SDK, the system clock, the validated routing policy.
    pub fn new(config: Config, issuer: Issuer, routing: RoutingPolicy) -> AppState {
        let sts = SdkSts::new(&config.sts.region, config.sts.endpoint_url.as_deref());
        AppState::with_routing(config, issuer, Arc::new(sts), Arc::new(SystemClock), routing)
    }

    /// State with an injected STS and clock, for tests; the routing policy from the config (the
    /// built-in one, with each problem logged, if it does not validate).
    pub fn with_parts(config: Config, issuer: Issuer, sts: Arc<dyn StsExchange>, clock: Arc<dyn Clock>) -> AppState {
        let routing = RoutingPolicy::from_config(&config, Mode::Hosted, &ProcessSecrets).unwrap_or_else(|errors| {
            for error in errors {
                tracing::error!(path = %error.path, "{}", error.message);
            }
            RoutingPolicy::builtin(&config, Mode::Hosted)
        });
        AppState::with_routing(config, issuer, sts, clock, routing)
    }

    pub fn with_routing(
        config: Config,
        issuer: Issuer,
        sts: Arc<dyn StsExchange>,
        clock: Arc<dyn Clock>,
        routing: RoutingPolicy,
    ) -> AppState {
        let config = Arc::new(config);
        let issuer = Arc::new(issuer);
        let metrics = Arc::new(Metrics::default());
        let broker = Arc::new(Broker::new(config.clone(), issuer.clone(), sts, clock.clone(), metrics.clone()));
        crate::broker::session_policy::log_scopes(&config, &routing);
        let callers = Arc::new(Callers::new(&config.callers));
        let chat = ChatState {
            config: config.clone(),
            callers: callers.clone(),
            metrics: metrics.clone(),
            bedrock: Arc::new(BedrockClient::new(config.bedrock.endpoint_url.clone())),
            source: CredentialSource::Broker(broker.clone()),
            routing: Arc::new(Routing::new(routing)),
            direct: Arc::new(DirectClient::new()),
            audit: Audit::new(Arc::new(StdoutSink::start()), metrics.clone()),
        };
        let body_budget = BodyBudget::new(config.server.max_body_bytes_in_flight);
        AppState { callers, config, issuer, metrics, broker, chat, body_budget, clock }
    }
}
