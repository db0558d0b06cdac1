//! Wire types: what the OpenAI, Anthropic and Bedrock APIs send and expect, as serde types (and the
//! Bedrock-native operations' facts), with the bounded readers that parse a client's body at a cost
//! bounded by its size ([`bounded`]).
//!
//! Must never: do I/O, convert between APIs (that is [`crate::convert`]) or know axum.

pub mod anthropic;
pub mod bedrock;
pub mod bounded;
pub mod eventstream;
pub mod openai;
pub mod usage;
