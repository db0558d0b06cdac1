//! The OpenAI ⇄ Anthropic-on-Bedrock adapter: wire types and the pure conversions between them.
//!
//! Owns: [`openai`] and [`anthropic`] wire types (serde only), [`bounded`] (parsing a client's body
//! at a cost bounded by its size), [`request`] (OpenAI chat request → `InvokeModel` body, split by
//! concern), [`response`] (Anthropic `message` → `chat.completion`, served models → `/v1/models`
//! objects) and [`stream`] (Anthropic stream events → `chat.completion.chunk` SSE lines).
//!
//! The conversions must never do I/O (HTTP, AWS SDK, clock, environment), know credentials, pick
//! the Bedrock model id (routing does; the body has no `model` and no `stream` field), fetch
//! anything a client points at, or decide anything by a model's name: every per-model rule comes
//! from the model catalog ([`crate::models`]). I/O lives in [`crate::upstream`] (the Bedrock
//! Runtime client) and [`routes`] (the HTTP edge).
//!
//! # Choices where the two APIs differ
//!
//! Requests:
//! - Unknown top-level or message fields → 400 naming the field (refused before their value is
//!   read). Refused with a 400 naming the param: `n > 1`, `logprobs: true`, `top_logprobs > 0`,
//!   `audio`, non-text `modalities`, non-zero `presence_penalty` / `frequency_penalty`, non-empty
//!   `logit_bias`, `prediction`, `web_search_options`, the deprecated `functions` /
//!   `function_call`, `input_audio` and `file` parts, non-`function` tools. Ignored as harmless
//!   (skipped without being built): `seed` (OpenAI itself only tries), `service_tier`, `store`,
//!   `metadata`, `prompt_cache_key`, `prompt_cache_retention`, `verbosity`,
//!   `stream_options.include_obfuscation`, message `name`, image `detail`, message `annotations`
//!   and `parsed` (the SDKs' parse helpers put it on the messages they hand back).
//! - Bounded parsing: lists are capped while parsing (10,000 messages, 1,000 parts a message, 512
//!   tools, 16 stop sequences, 256 tool calls or thinking blocks a message, 100,000 list items in
//!   all), tool-call arguments at 4 MiB; tool schemas and arguments stay raw JSON text.
//! - Leading `system` and `developer` messages become the system prompt. Later ones become
//!   `{"role": "system"}` turns on models whose catalog entry has `system_turns`, where Anthropic's
//!   placement rule allows (right after a user turn; last, or followed by an assistant turn):
//!   appending an instruction there keeps the cached prompt prefix. Elsewhere they are appended to
//!   the system prompt in order.
//! - Consecutive same-role turns are merged; `tool` messages become `tool_result` blocks at the
//!   front of the following user turn. A conversation that does not start with a user turn gets a
//!   placeholder user turn ([`request::PLACEHOLDER_USER_TURN`]). Whitespace-only text is dropped
//!   (Anthropic refuses empty text blocks) and a final assistant (prefill) turn is right-trimmed,
//!   and refused (400 naming it) on models that take no prefill, and while the model thinks unless
//!   it starts with its thinking block.
//! - Every assistant tool call must be answered by a `tool` message before the next user or
//!   assistant message, and every `tool_call_id` must name a call of the preceding assistant
//!   message (OpenAI's rule, and Anthropic's). Tool call ids with characters Anthropic refuses
//!   have them replaced by `_`, identically on both sides.
//! - Images: only `data:` URLs of jpeg, png, gif or webp, decoded size ≤ 3.75 MB (Bedrock's limit,
//!   counted as 3 750 000 bytes); the media type is taken from the image bytes. `http(s)` URLs are
//!   refused (no network fetch); models without image input refuse them.
//! - `max_completion_tokens` wins over `max_tokens`; absent → the model's catalog default (at least
//!   16384 when an adaptive model thinks); above the model's output limit → lowered to it.
//! - Sampling: `temperature` above 1 is refused (Anthropic's range is 0–1) rather than silently
//!   scaled. Per the catalog: "defaults only" models refuse `temperature`, `top_p` and `top_k`
//!   (values equal to the model's defaults are dropped); "temperature xor top_p" models refuse the
//!   two together. While a model thinks: `temperature` 1 or unset (dropped), `top_p` 0.95–1, no
//!   `top_k`. Each refusal is a 400 naming the parameter and the model, unless the model's
//!   `drop_unsupported_params` is set (then dropped, logged at debug).
//! - `stop`: empty strings dropped; whitespace-only ones refused (Anthropic does).
//! - Reasoning (`reasoning_effort`: `none minimal low medium high xhigh`, and Anthropic's `max`):
//!   budget models → `thinking: {type: enabled, budget_tokens}` from the catalog's `[budget_tokens]`
//!   (`none` → no thinking, `max` refused); adaptive models → `thinking: {type: adaptive}` plus
//!   `output_config.effort` (`minimal` → the lowest effort; a level the model lacks → 400 naming it
//!   and the model); `none` → no thinking where the model thinks only when asked, `thinking:
//!   disabled` where it may be switched off, otherwise the lowest effort. `display: summarized` is
//!   sent where the model omits thinking text by default, so `reasoning_content` has text.
//!   Anthropic's own `thinking` object wins over `reasoning_effort`; `output_config.effort` must
//!   agree with it; both are checked against the model. Budget `max_tokens` is raised by the
//!   budget when it would not exceed it (within the model's limit; then the budget shrinks to ¾ of
//!   `max_tokens`). With thinking off (`disabled`, or absent where the model thinks only when
//!   asked), an effort above the catalog's `efforts_without_thinking` is a 400 naming it and the
//!   model. Thinking is silently turned off when the last assistant turn has tool calls but no
//!   thinking blocks, as Anthropic would refuse that continuation (on models that think only when
//!   asked), and the effort lowered to one the model takes without thinking. The catalog's
//!   `reasoning_usage_beta` is sent while the model thinks, so usage reports thinking tokens.
//! - Tool choice: a forced choice (`required`, a named function) is refused (400) on a model that
//!   thinks on the request or never takes one; a model that thinks by default but may stop is sent
//!   `thinking: disabled` for it when the client did not ask for reasoning (and its effort, if
//!   any, is one the model takes without thinking).
//! - `response_format`: `json_schema` → native structured output (`output_config.format`) on models
//!   with `structured_outputs`; elsewhere, and for `json_object`, a tool named after the schema
//!   (`json_object` → [`request::JSON_OBJECT_TOOL`] with `{"type":"object"}`), forced with
//!   `tool_choice: tool` where a forced choice is allowed, `any` with usable client tools (call a
//!   tool or answer), `auto` where no forced choice is allowed (the tool's description asks for it).
//!   Responses turn that call back into `content` text, with `finish_reason: stop` when it was the
//!   only call. Schemas must describe an object. Anthropic's own `output_config.format` is accepted
//!   on models that have it.
//! - Tools: `strict: true` is kept on models with strict tool use (dropped elsewhere: the SDKs set
//!   it on every parsed tool); in a stream, `eager_input_streaming: true` on each tool (or the
//!   fine-grained tool streaming beta on older models) so arguments arrive as generated.
//! - `anthropic_beta` (extension, a list): each value must be one the model accepts (catalog
//!   `betas`), else 400 naming the refused ones; forwarded once each in the body.
//! - `user` (else `safety_identifier`) → `metadata.user_id` (≤ 256 characters).
//! - `cache_control` (`{"type":"ephemeral"}`, optional `ttl` `5m`/`1h`) is accepted on content
//!   parts, on a message (applied to its last block) and on tools; at most 4 in the body sent,
//!   counted as sent (a part's and its message's on the same block are one, one on dropped text
//!   none), the 400 naming the first past the limit.
//! - Thinking round trip: an assistant message may carry `thinking_blocks` (LiteLLM's convention:
//!   `[{"type":"thinking","thinking","signature"} | {"type":"redacted_thinking","data"}]`), or
//!   `reasoning_content` plus `reasoning_signature` for one block; they are sent first in that
//!   assistant turn, unchanged. `reasoning_content` without a signature is dropped.
//! - Extensions accepted: `top_k`, `thinking`, `output_config`, `anthropic_beta`, `cache_control`,
//!   `reasoning_signature`, `thinking_blocks`.
//!
//! Responses: text blocks are concatenated into `content`; thinking goes to `reasoning_content`
//! and `thinking_blocks` (with signatures); thinking tokens (when Bedrock reports them) to
//! `usage.completion_tokens_details.reasoning_tokens`; finish reasons and usage as in [`response`];
//! streamed signatures arrive as a complete block, numbered by `index`, in `delta.thinking_blocks`
//! (see [`stream`]).

pub mod messages;
pub mod request;
pub mod response;
pub mod stream;
