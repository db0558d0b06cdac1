//! The OpenAI ⇄ Anthropic-on-Bedrock adapter: wire types and the pure conversions between them.
//!
//! Owns: [`openai`] and [`anthropic`] wire types (serde only), [`request`] (OpenAI chat request →
//! `InvokeModel` body), [`response`] (Anthropic `message` → `chat.completion`) and [`stream`]
//! (Anthropic stream events → `chat.completion.chunk` SSE lines).
//!
//! The conversions must never do I/O (HTTP, AWS SDK, clock, environment), know credentials, pick
//! the Bedrock model id (routing does; the body has no `model` and no `stream` field), or fetch
//! anything a client points at. I/O lives in [`crate::upstream`] (the Bedrock Runtime client) and
//! [`routes`] (the HTTP edge).
//!
//! # Choices where the two APIs differ
//!
//! Requests:
//! - Unknown top-level or message fields → 400 naming the field. Refused with a 400 naming the
//!   param: `n > 1`, `logprobs: true`, `top_logprobs > 0`, `audio`, non-text `modalities`, non-zero
//!   `presence_penalty` / `frequency_penalty`, non-empty `logit_bias`, `prediction`,
//!   `web_search_options`, the deprecated `functions` / `function_call`, `input_audio` and `file`
//!   parts, non-`function` tools. Ignored as harmless: `seed` (OpenAI itself only tries),
//!   `service_tier`, `store`, `metadata`, `prompt_cache_key`, `prompt_cache_retention`,
//!   `verbosity`, `stream_options.include_obfuscation`, message `name`, image `detail`, message
//!   `annotations` and `parsed` (the SDKs' parse helpers put it on the messages they hand back).
//! - `system` and `developer` messages become `system` blocks wherever they appear; ones in the
//!   middle of the conversation are appended to the system prompt in order (Anthropic has one).
//! - Consecutive same-role turns are merged; `tool` messages become `tool_result` blocks at the
//!   front of the following user turn. A conversation that does not start with a user turn gets a
//!   placeholder user turn ([`request::PLACEHOLDER_USER_TURN`]). Whitespace-only text is dropped
//!   (Anthropic refuses empty text blocks) and a final assistant (prefill) turn is right-trimmed.
//! - Every assistant tool call must be answered by a `tool` message before the next user or
//!   assistant message, and every `tool_call_id` must name a call of the preceding assistant
//!   message (OpenAI's rule, and Anthropic's). Tool call ids with characters Anthropic refuses
//!   have them replaced by `_`, identically on both sides.
//! - Images: only `data:` URLs of jpeg, png, gif or webp, decoded size ≤ 3.75 MB (Bedrock's limit,
//!   counted as 3 750 000 bytes); the media type is taken from the image bytes. `http(s)` URLs are
//!   refused (no network fetch).
//! - `max_completion_tokens` wins over `max_tokens`; absent → the model default; above the model's
//!   output limit → lowered to it.
//! - `temperature` above 1 is refused (Anthropic's range is 0–1) rather than silently scaled.
//!   Models flagged `exclusive_sampling` refuse `temperature` with `top_p`.
//! - `stop`: empty strings dropped; whitespace-only ones refused (Anthropic does).
//! - `reasoning_effort`: `none`/`minimal` → no thinking, `low` 1024, `medium` 4096, `high` 16384,
//!   `xhigh` 32768 budget tokens; Anthropic's own `thinking` object is accepted too. `max_tokens`
//!   is raised by the budget when it would not exceed it (within the model's limit; then the budget
//!   shrinks to ¾ of `max_tokens`). With thinking: `temperature` must be absent or 1 (dropped),
//!   `top_p` within 0.95–1, no `top_k`, no forced tool choice (400). Thinking is silently turned
//!   off when the last assistant turn has tool calls but no thinking blocks, as Anthropic would
//!   refuse that continuation.
//! - `response_format`: `json_schema` becomes a tool named after the schema (`json_object` → a tool
//!   named [`request::JSON_OBJECT_TOOL`] with `{"type":"object"}`), forced with `tool_choice:
//!   tool`; with usable client tools the choice becomes `any` (call a tool or answer); with
//!   thinking it stays `auto`. Responses turn that call back into `content` text, with
//!   `finish_reason: stop` when it was the only call. Schemas must describe an object.
//! - `user` (else `safety_identifier`) → `metadata.user_id` (≤ 256 characters).
//! - `cache_control` (`{"type":"ephemeral"}`, optional `ttl` `5m`/`1h`) is accepted on content
//!   parts, on a message (applied to its last block) and on tools, at most 4 in all.
//! - Thinking round trip: an assistant message may carry `thinking_blocks` (LiteLLM's convention:
//!   `[{"type":"thinking","thinking","signature"} | {"type":"redacted_thinking","data"}]`), or
//!   `reasoning_content` plus `reasoning_signature` for one block; they are sent first in that
//!   assistant turn, unchanged. `reasoning_content` without a signature is dropped.
//! - Extensions accepted: `top_k`, `thinking`, `cache_control`, `reasoning_signature`,
//!   `thinking_blocks`.
//!
//! Responses: text blocks are concatenated into `content`; thinking goes to `reasoning_content`
//! and `thinking_blocks` (with signatures); finish reasons and usage as in [`response`]; streamed
//! signatures arrive as a complete block, numbered by `index`, in `delta.thinking_blocks` (see
//! [`stream`]).

pub mod anthropic;
pub mod bounded;
pub mod messages;
pub mod messages_routes;
pub mod openai;
pub mod request;
pub mod response;
pub mod routes;
pub mod stream;
