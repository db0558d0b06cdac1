//! byollm: an OIDC issuer, AWS credential broker and OpenAI-to-Bedrock adapter in one library.
//! `main.rs` is a thin CLI over it; tests and examples use it directly.

pub mod adapter;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod aws_setup;
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
