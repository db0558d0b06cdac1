//! The OpenAI ⇄ Anthropic-on-Bedrock adapter: wire types and pure conversions.
//!
//! TODO: full doc
pub mod anthropic;
pub mod openai;
pub mod request;
pub mod response;
pub mod stream;
