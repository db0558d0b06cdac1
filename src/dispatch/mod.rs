//! The one path every model request takes, whichever API it came in through (chat completions,
//! the Messages API and its `count_tokens`, Bedrock's own operations):
//!
//! ```text
//! Dispatch::serve (exchange.rs: timeout, audit record, in-flight, counter, log line, limits)
//!   └─ source.call(headers)       context.rs: who, for which run (CredentialSource: cloud | local)
//!   └─ exchange.admit(&call)      request rates, concurrent requests (crate::limits), once
//!   └─ routing.start_on(…)        the routes (crate::routing)
//!   └─ first_answer(…)            failover.rs: token and spend reservation, then routes in turn
//!        └─ attempt(…)            attempt.rs: one attempt per route kind; credentials per route
//!   └─ relay::{events, passthrough, raw}   relay.rs: streams that finish the audit record
//! ```
//!
//! A rule every model request must pass is written here, once. The surfaces (`crate::api`) parse
//! their wire format, choose a [`attempt::Payload`] and render answers; they make no upstream call,
//! run no failover loop and finish no audit record of their own.
//!
//! Must never: know axum or an API's error shape (answers are [`reply::Reply`]s, errors
//! [`crate::error::ApiError`]s the edge renders), or see prompt text beyond what a conversion
//! reads.

pub mod attempt;
pub mod context;
pub mod events;
pub mod exchange;
pub mod failover;
pub mod relay;
pub mod reply;
pub mod target;

use std::sync::Arc;

use http::HeaderMap;

use crate::config::Config;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::observe::audit::Audit;
use crate::observe::metrics::Metrics;
use crate::routing::{Routing, Surface};
use crate::upstream::BedrockClient;
use crate::upstream::direct::DirectClient;

pub use context::{Call, CredentialSource, Listing};
pub use exchange::{Api, Exchange};
pub use reply::{Reply, ReplyBody};

/// What every model request needs, built once at start.
pub struct Dispatch {
    pub config: Arc<Config>,
    /// The routing policy in force and the routes' failure state.
    pub routing: Arc<Routing>,
    pub bedrock: Arc<BedrockClient>,
    /// The client for the direct Anthropic API and OpenAI-compatible endpoints.
    pub direct: Arc<DirectClient>,
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    /// Whose credentials sign Bedrock calls: cloud runs or the person's own session.
    pub source: Arc<dyn CredentialSource>,
    /// The gateway's limits and where they are counted.
    pub limits: Arc<Limits>,
}

impl Dispatch {
    /// The models a caller may use through `surface` (the routing policy's for its team and the
    /// agent it names, one it may act as), with whose listing it is. Both shapes of
    /// `GET /v1/models` and `/inference-profiles` list these.
    pub fn allowed_models(&self, headers: &HeaderMap, surface: Surface) -> Result<(Listing, Vec<String>), ApiError> {
        let listing = self.source.listing(headers)?;
        let models = self.routing.policy().allowed_models_on(listing.scope(), surface);
        Ok((listing, models))
    }
}
