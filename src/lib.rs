//! byollm: an OIDC issuer, AWS credential broker and OpenAI-to-Bedrock adapter in one library.
//! `main.rs` is a thin CLI over it; tests and examples use it directly.

pub mod aws_setup;
pub mod error;
pub mod principal;
