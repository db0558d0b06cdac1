//! Pure conversions between the APIs byollm serves and the body Bedrock takes: the OpenAI chat
//! request onto Anthropic's `InvokeModel` body ([`request`], split by concern), Anthropic's
//! `message` back to a `chat.completion` and served models to `/v1/models` objects ([`response`]),
//! Anthropic stream events to `chat.completion.chunk` lines ([`stream`]), and the Messages API's
//! rules ([`messages`]). The choices where the APIs differ are specified in `docs/CONVERSION.md`.
//!
//! Must never: do I/O (HTTP, AWS SDK, clock, environment), know credentials or axum, pick the
//! Bedrock model id (routing does; the body has no `model` and no `stream` field), fetch anything a
//! client points at, or decide anything by a model's name: every per-model rule comes from the
//! model catalog ([`crate::models`]).

pub mod messages;
pub mod request;
pub mod response;
pub mod stream;
