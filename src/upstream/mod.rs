//! Upstream calls: Bedrock Runtime over signed HTTP requests.
//!
//! Owns: the pooled HTTP client ([`client`]: hyper + rustls/aws-lc-rs, connect timeout), endpoint
//! resolution per region ([`endpoint`]), SigV4 signing as the AWS SDK signs ([`signer`]), the
//! Bedrock client with its raw call and typed `InvokeModel` helpers ([`bedrock`]), the
//! event-stream frame decoder ([`eventstream`]) and Bedrock's failures mapped to the one error
//! body ([`error`]), and the egress guard for endpoints named by admins or requests ([`egress`]).
//!
//! Must never: pick a model or credentials (callers pass them), log credentials, bodies or
//! completions, retry on its own, or read more of a stream than its consumer asked for.
//! Depends only on `broker::sts::AwsCredentials`, `error` and `secret`.

pub mod bedrock;
pub mod client;
pub mod egress;
pub mod endpoint;
pub mod error;
pub mod eventstream;
pub mod signer;

pub use bedrock::{BedrockClient, EventStream, RawRequest, RawResponse, model_path};
pub use error::BedrockFailure;
