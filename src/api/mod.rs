//! The HTTP edge, and the only part of byollm that knows axum: what handlers share ([`state`]),
//! what they read from a request ([`extract`]: identity, bounded bodies), one file per API
//! (chat completions [`chat`], the Messages API [`messages`], Bedrock's own routes [`bedrock`],
//! the model lists [`models`], credentials [`credentials`], tokens and discovery [`tokens`]),
//! each error shape rendered in one place ([`errors`]), and the routers and listeners that serve
//! them ([`router`], [`listener`], [`tls`]).
//!
//! Imports run one way: handlers → [`crate::dispatch`] and the core; nothing below the edge
//! imports it.

pub mod bedrock;
pub mod chat;
pub mod credentials;
pub mod errors;
pub mod extract;
pub mod listener;
pub mod messages;
pub mod models;
pub mod router;
pub mod state;
pub mod tls;
pub mod tokens;
pub mod usage;

pub use extract::{ApiBody, ApiJson, BodyBudget, BodyOwner, no_store};
pub use listener::{ListenerLimits, serve};
pub use router::{local_router, public_router, router};
pub use state::AppState;
