//! Upstream calls: Bedrock Runtime over signed HTTP requests, and the egress guard in front of
//! the endpoints an admin or a request names (direct Anthropic API, OpenAI-compatible servers).
//!
//! Owns: the pooled HTTP client ([`client`]: hyper + rustls/aws-lc-rs, connect timeout), endpoint
//! resolution per region ([`endpoint`]), SigV4 signing as the AWS SDK signs ([`signer`]), the
//! Bedrock client with its raw call and typed `InvokeModel` helpers ([`bedrock`]), the
//! event-stream frames decoded by [`crate::wire::eventstream`], Bedrock's failures mapped to the one error
//! body ([`error`]), the egress guard for endpoints named by admins or requests ([`egress`]) and
//! the pinned, bounded client for those endpoints ([`direct`]), the direct Anthropic API
//! ([`anthropic`]) and OpenAI-compatible endpoints ([`openai_compat`]), both streaming
//! server-sent events ([`sse`]).
//!
//! Must never: pick a model or credentials (callers pass them), log credentials, bodies or
//! completions, retry on its own, or read more of a stream than its consumer asked for.
//! Depends only on `aws` (credentials), `error` and `secret`.

pub mod anthropic;
pub mod bedrock;
pub mod client;
pub mod direct;
pub mod dns;
pub mod egress;
pub mod endpoint;
pub mod error;
pub mod openai_compat;
pub mod signer;
pub mod sse;

pub use bedrock::{BedrockClient, EventStream, RawRequest, RawResponse, model_path};
pub use error::BedrockFailure;
