//! What every handler of `byollm serve` shares: cheap handles built once at start (by
//! `crate::app::cloud`). The model surfaces take the [`Dispatch`] alone (`byollm local` serves
//! them with nothing else).

use std::sync::Arc;

use crate::broker::Broker;
use crate::broker::cache::Clock;
use crate::config::Config;
use crate::dispatch::Dispatch;
use crate::identity::auth::Callers;
use crate::issuer::Issuer;
use crate::observe::metrics::Metrics;

use super::extract::BodyBudget;

/// Cheap handles shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub issuer: Arc<Issuer>,
    pub callers: Arc<Callers>,
    pub metrics: Arc<Metrics>,
    pub broker: Arc<Broker>,
    /// The model surfaces' one path.
    pub dispatch: Arc<Dispatch>,
    /// The process-wide budget of request-body bytes in flight.
    pub body_budget: BodyBudget,
    /// The time, for readiness (injected in tests).
    pub clock: Arc<dyn Clock>,
}

impl axum::extract::FromRef<AppState> for Arc<Dispatch> {
    fn from_ref(state: &AppState) -> Arc<Dispatch> {
        state.dispatch.clone()
    }
}
