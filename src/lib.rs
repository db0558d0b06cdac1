//! byollm: an OIDC issuer, AWS credential broker and the model APIs in front of Claude on Bedrock
//! (and the upstreams a routing policy names) in one library.
//! `main.rs` is a thin CLI over it; tests and examples use it directly.

pub mod adapter;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod aws_setup;
pub mod bedrock_iam;
pub mod broker;
pub mod config;
pub mod doctor;
pub mod error;
pub mod http;
pub mod issuer;
pub mod metrics;
pub mod models;
pub mod native;
pub mod principal;
pub mod routing;
pub mod secret;
pub mod target;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use http::{AppState, public_router, router};
