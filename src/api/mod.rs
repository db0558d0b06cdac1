//! The HTTP edge, one way: [`state`] (what handlers share) and [`extract`] (API keys, identity
//! headers, bounded bodies) depend on the core only; each surface's `routes.rs` depends on them;
//! [`router`] assembles the routes; [`listener`] serves a router with connection limits and
//! timeouts. Nothing in the core, and nothing in `state` or `extract`, depends on a router or a
//! `routes.rs`.
//!
//! axum lives here and in the `routes.rs` files only.

pub mod bedrock;
pub mod chat;
pub mod credentials;
pub mod extract;
pub mod listener;
pub mod messages;
pub mod router;
pub mod state;
pub mod tls;
pub mod tokens;

pub use extract::{ApiBody, ApiJson, BodyBudget, BodyOwner, no_store, run_request_from_headers};
pub use listener::{ListenerLimits, serve};
pub use router::{local_router, public_router, router};
pub use state::AppState;
