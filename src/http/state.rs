//! What every handler of `byollm serve` shares: cheap handles built once at start.
//!
//! Depends on the core and on the chat surface's own state type ([`ChatState`]); never on a router.

use std::sync::Arc;

use crate::adapter::routes::{ChatState, CredentialSource};
use crate::auth::Callers;
use crate::broker::Broker;
use crate::broker::cache::{Clock, SystemClock};
use crate::broker::sts::{SdkSts, StsExchange};
use crate::config::Config;
use crate::issuer::Issuer;
use crate::metrics::Metrics;
use crate::upstream::BedrockClient;

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
    /// State for `serve`: STS through the AWS SDK, the system clock.
    pub fn new(config: Config, issuer: Issuer) -> AppState {
        let sts = SdkSts::new(&config.sts.region, config.sts.endpoint_url.as_deref());
        AppState::with_parts(config, issuer, Arc::new(sts), Arc::new(SystemClock))
    }

    /// State with an injected STS and clock, for tests.
    pub fn with_parts(config: Config, issuer: Issuer, sts: Arc<dyn StsExchange>, clock: Arc<dyn Clock>) -> AppState {
        let config = Arc::new(config);
        let issuer = Arc::new(issuer);
        let metrics = Arc::new(Metrics::default());
        let broker = Arc::new(Broker::new(config.clone(), issuer.clone(), sts, clock.clone(), metrics.clone()));
        let callers = Arc::new(Callers::new(&config.callers));
        let chat = ChatState {
            config: config.clone(),
            callers: callers.clone(),
            metrics: metrics.clone(),
            bedrock: Arc::new(BedrockClient::new(config.bedrock.endpoint_url.clone())),
            source: CredentialSource::Broker(broker.clone()),
        };
        let body_budget = BodyBudget::new(config.server.max_body_bytes_in_flight);
        AppState { callers, config, issuer, metrics, broker, chat, body_budget, clock }
    }
}
