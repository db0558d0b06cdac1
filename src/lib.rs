//! byollm: an OIDC issuer, AWS credential broker and the model APIs in front of Claude on Bedrock
//! (and the upstreams a routing policy names) in one library.
//! `main.rs` is a thin CLI over it; tests and examples use it directly.

pub mod api;
pub mod app;
pub mod aws;
pub mod bedrock_iam;
pub mod broker;
pub mod cli;
pub mod config;
pub mod convert;
pub mod dispatch;
pub mod error;
pub mod identity;
pub mod issuer;
pub mod limits;
pub mod models;
pub mod observe;
pub mod ops;
pub mod principal;
pub mod routing;
pub mod secret;
pub mod upstream;
pub mod wire;

pub use api::{AppState, public_router, router};
