//! Upstream calls: Bedrock Runtime over signed HTTP requests, and the egress guard in front of
//! the endpoints an admin or a request names (direct Anthropic API, OpenAI-compatible servers).
//!
//! Owns: the pooled HTTP client ([`client`]: hyper + rustls/aws-lc-rs, connect timeout), endpoint
//! resolution per region ([`endpoint`]), SigV4 signing as the AWS SDK signs ([`signer`]), the
//! Bedrock client with its raw call and typed `InvokeModel` helpers ([`bedrock`]), the
//! event-stream frames decoded by [`crate::wire::eventstream`], Bedrock's failures mapped to the one error
//! body ([`error`]), the egress guard for endpoints named by admins or requests ([`egress`]) and
//! the pinned, bounded client for those endpoints ([`direct`]), the direct Anthropic API
//! ([`anthropic`]) and OpenAI-compatible endpoints ([`openai_compat`], with the allow-list of
//! request fields), both streaming server-sent events ([`sse`]), and the process-wide budget every
//! answer read whole is charged to ([`buffered`]).
//!
//! Must never: pick a model or credentials (callers pass them), log credentials, bodies or
//! completions, retry on its own, read more of a stream than its consumer asked for, or hold a
//! whole answer outside the answer budget.
//! Depends only on `aws` (credentials), `wire`, `error`, `secret` and `config`'s defaults.

pub mod anthropic;
pub mod bedrock;
pub mod buffered;
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
