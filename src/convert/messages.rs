//! The Anthropic Messages API onto Bedrock's `InvokeModel` body, and Bedrock's stream events back
//! as Anthropic's SSE: pure conversions for `/v1/messages` and `/v1/messages/count_tokens`.
//!
//! A request is parsed at a bounded cost: the large fields (`messages`, `system`, `tools`,
//! `stop_sequences`, `metadata`, `output_config`, `context_management`) are kept as raw JSON text
//! (one copy, no tree), the message list is read once more for its roles and the last message's
//! first block, keeping nothing per message (at most [`MAX_MESSAGES`]), and only the small fields
//! the model rules adjust (`max_tokens`, sampling, `thinking`, `tool_choice`) become values. Unknown fields are refused by name, as Anthropic does.
//!
//! The body sent to Bedrock is the request's own fields, with: no `model` and no `stream` (the
//! model goes in the path); `anthropic_version: "bedrock-2023-05-31"`; the `anthropic-beta`
//! header's betas that the model accepts (catalog) as `anthropic_beta`, others dropped (they name
//! Anthropic-API features such as `claude-code-20250219` that Bedrock refuses); `service_tier`
//! dropped (Anthropic's own capacity tiers); `container` and `mcp_servers` refused (not on
//! Bedrock). The model rules ([`crate::models::messages::check_messages_body`]) apply as on the chat
//! API: `max_tokens` capped or defaulted, refused thinking, effort, sampling and system turns are a
//! 400 naming the field.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::marker::PhantomData;

use bytes::{BufMut, BytesMut};
use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::models::ModelRules;
use crate::models::messages::Turns;

/// Most messages one request may carry (Anthropic's documented limit).
pub const MAX_MESSAGES: usize = 100_000;
/// Most betas taken from one `anthropic-beta` header.
const MAX_BETAS: usize = 64;
/// Longest JSON text of a field the model rules read as a value (`max_tokens`, sampling,
/// `thinking`, `tool_choice`, `output_config.effort`): each is a number or a small object, and a
/// value tree costs many times its text, so a larger one is refused before it is built.
const MAX_RULE_FIELD: usize = 4096;

/// A Messages request as parsed: raw where large, values where the rules need them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesRequest<'a> {
    pub model: String,
    #[serde(borrow)]
    messages: &'a RawValue,
    #[serde(default, borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(default, borrow)]
    system: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tools: Option<&'a RawValue>,
    #[serde(default, borrow)]
    tool_choice: Option<&'a RawValue>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default, borrow)]
    temperature: Option<&'a RawValue>,
    #[serde(default, borrow)]
    top_p: Option<&'a RawValue>,
    #[serde(default, borrow)]
    top_k: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stop_sequences: Option<&'a RawValue>,
    #[serde(default, borrow)]
    metadata: Option<&'a RawValue>,
    #[serde(default, borrow)]
    thinking: Option<&'a RawValue>,
    #[serde(default, borrow)]
    output_config: Option<&'a RawValue>,
    #[serde(default, borrow)]
    context_management: Option<&'a RawValue>,
    /// Anthropic's capacity tiers: accepted and dropped.
    #[serde(default, rename = "service_tier")]
    _service_tier: Option<IgnoredAny>,
    #[serde(default)]
    container: Option<IgnoredAny>,
    #[serde(default)]
    mcp_servers: Option<IgnoredAny>,
}

/// The message list read for its [`Turns`] only, one message at a time: nothing per message is
/// kept (a value per message cost 25 times the list's text), and at most [`MAX_MESSAGES`].
struct TurnsProbe(Turns);

impl<'de> Deserialize<'de> for TurnsProbe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;

        impl<'de> Visitor<'de> for ListVisitor {
            type Value = TurnsProbe;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {MAX_MESSAGES} messages")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TurnsProbe, A::Error> {
                let mut turns = Turns::default();
                while let Some(message) = seq.next_element::<MessageProbe<'de>>()? {
                    if turns.count == MAX_MESSAGES {
                        return Err(de::Error::custom(format_args!(
                            "too many items: at most {MAX_MESSAGES} are accepted here"
                        )));
                    }
                    turns.push(&message.role, message.content.0.as_deref());
                }
                Ok(TurnsProbe(turns))
            }
        }

        deserializer.deserialize_seq(ListVisitor)
    }
}

/// Only what the rules read of a message: its role and its first content block's type.
#[derive(Deserialize)]
struct MessageProbe<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(default, borrow)]
    content: FirstBlock<'a>,
}

/// The `type` of a content list's first block (`None` for a string content); the rest skipped.
#[derive(Default)]
struct FirstBlock<'a>(Option<Cow<'a, str>>);

#[derive(Deserialize)]
struct BlockType<'a> {
    #[serde(default, borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for FirstBlock<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for ContentVisitor<'a> {
            type Value = FirstBlock<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of content blocks")
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(FirstBlock(None))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(FirstBlock(None))
            }

            // Other shapes are Bedrock's to refuse, as before this probe existed.
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(FirstBlock(None))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(FirstBlock(None))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(FirstBlock(None))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(FirstBlock(None))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(FirstBlock(None))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element::<BlockType<'a>>()?.and_then(|block| block.kind);
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstBlock(first))
            }
        }

        deserializer.deserialize_any(ContentVisitor(PhantomData))
    }
}

/// Only what the rules read of `output_config`: whether `effort` and `format` are given.
#[derive(Deserialize)]
struct OutputConfigProbe<'a> {
    #[serde(default, borrow)]
    effort: Option<&'a RawValue>,
    #[serde(default)]
    format: Option<IgnoredAny>,
}

fn invalid_json(error: serde_json::Error) -> ApiError {
    ApiError::invalid_request("", "invalid_json", format!("request body is not a valid Messages request: {error}"))
}

/// Parses a `/v1/messages` (or `count_tokens`) body.
pub fn parse(body: &[u8]) -> Result<MessagesRequest<'_>, ApiError> {
    let request: MessagesRequest<'_> = serde_json::from_slice(body).map_err(invalid_json)?;
    if request.container.is_some() || request.mcp_servers.is_some() {
        let field = if request.container.is_some() { "container" } else { "mcp_servers" };
        return Err(ApiError::invalid_request(
            field,
            "unsupported_parameter",
            format!("{field} is an Anthropic API feature Bedrock does not offer"),
        ));
    }
    Ok(request)
}

/// A field the model rules read, as a value (`None` when absent or `null`); refused when its
/// text is over [`MAX_RULE_FIELD`] bytes, before any tree is built.
fn rule_field(field: &str, raw: Option<&RawValue>) -> Result<Option<Value>, ApiError> {
    let Some(raw) = raw.map(RawValue::get).filter(|raw| *raw != "null") else {
        return Ok(None);
    };
    if raw.len() > MAX_RULE_FIELD {
        return Err(ApiError::invalid_request(
            field,
            "invalid_value",
            format!("{field} is {} bytes of JSON; at most {MAX_RULE_FIELD} are accepted", raw.len()),
        ));
    }
    serde_json::from_str(raw)
        .map(Some)
        .map_err(|e| ApiError::invalid_request(field, "invalid_value", format!("{field} is not valid JSON: {e}")))
}

/// The betas of an `anthropic-beta` header (comma-separated, possibly repeated headers).
pub fn header_betas<'h>(values: impl Iterator<Item = &'h str>) -> Vec<&'h str> {
    values.flat_map(|v| v.split(',')).map(str::trim).filter(|b| !b.is_empty()).take(MAX_BETAS).collect()
}

/// An `InvokeModel` body, and the `max_tokens` it asks for (the output the limits reserve).
pub struct BedrockBody {
    pub bytes: Vec<u8>,
    pub max_tokens: Option<u64>,
}

/// The `InvokeModel` body for `request` on a model named `name` with `rules`, given the betas of
/// the `anthropic-beta` header. `for_counting`: a `count_tokens` request (no `max_tokens` needed).
pub fn to_bedrock_body(
    request: &MessagesRequest<'_>,
    name: &str,
    rules: &ModelRules,
    betas: &[&str],
) -> Result<BedrockBody, ApiError> {
    // What the rules see: small values, and proxies for the raw parts they only inspect.
    let TurnsProbe(turns) = serde_json::from_str(request.messages.get()).map_err(|e| {
        ApiError::invalid_request("messages", "invalid_value", format!("messages must be a list of messages: {e}"))
    })?;
    let mut checked = Map::new();
    for (key, raw) in [
        ("max_tokens", request.max_tokens),
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("top_k", request.top_k),
        ("thinking", request.thinking),
        ("tool_choice", request.tool_choice),
    ] {
        if let Some(value) = rule_field(key, raw)? {
            checked.insert(key.to_owned(), value);
        }
    }
    if let Some(raw) = request.output_config {
        let probe: OutputConfigProbe<'_> = serde_json::from_str(raw.get()).map_err(|e| {
            ApiError::invalid_request("output_config", "invalid_value", format!("output_config must be an object: {e}"))
        })?;
        let mut proxy = Map::new();
        if let Some(effort) = rule_field("output_config.effort", probe.effort)? {
            proxy.insert("effort".into(), effort);
        }
        if probe.format.is_some() {
            proxy.insert("format".into(), Value::Bool(true));
        }
        checked.insert("output_config".into(), Value::Object(proxy));
    }
    let accepted: Vec<&str> = betas.iter().copied().filter(|beta| rules.betas.iter().any(|b| b == beta)).collect();
    if accepted.len() < betas.len() {
        tracing::debug!(
            dropped = betas.len() - accepted.len(),
            "anthropic-beta values the model does not take on Bedrock dropped"
        );
    }
    if !accepted.is_empty() {
        checked.insert("anthropic_beta".into(), Value::from(accepted.clone()));
    }
    crate::models::messages::check_messages_body(name, rules, &mut checked, &turns)?;

    let mut out = Vec::with_capacity(request.messages.get().len() + 512);
    out.extend_from_slice(b"{\"anthropic_version\":\"bedrock-2023-05-31\"");
    let field = |out: &mut Vec<u8>, key: &str, raw: &str| {
        out.push(b',');
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        out.extend_from_slice(raw.as_bytes());
    };
    field(&mut out, "messages", request.messages.get());
    for (key, raw) in [
        ("system", request.system),
        ("tools", request.tools),
        ("stop_sequences", request.stop_sequences),
        ("metadata", request.metadata),
        ("output_config", request.output_config),
        ("context_management", request.context_management),
    ] {
        if let Some(raw) = raw {
            field(&mut out, key, raw.get());
        }
    }
    // The rules' adjusted values (max_tokens set, refused sampling dropped, thinking turned off).
    for key in ["max_tokens", "temperature", "top_p", "top_k", "thinking", "tool_choice", "anthropic_beta"] {
        if let Some(value) = checked.get(key) {
            let text = serde_json::to_string(value).map_err(|_| ApiError::internal("could not encode the request"))?;
            field(&mut out, key, &text);
        }
    }
    out.push(b'}');
    Ok(BedrockBody { bytes: out, max_tokens: checked.get("max_tokens").and_then(Value::as_u64) })
}

/// One SSE event: `event: <type>` and the event's JSON as `data:`. The type is read from the
/// event's `"type"`. Returns true for `message_stop` (the answer is complete).
pub fn write_sse_event(event: &[u8], out: &mut BytesMut) -> bool {
    #[derive(Deserialize)]
    struct Kind<'a> {
        #[serde(borrow, rename = "type")]
        kind: std::borrow::Cow<'a, str>,
    }
    let kind = serde_json::from_slice::<Kind<'_>>(event).map(|k| k.kind.into_owned()).unwrap_or_default();
    let _ = write!(Writer(out), "event: {kind}\ndata: ");
    out.put_slice(event);
    out.put_slice(b"\n\n");
    kind == "message_stop"
}

/// The keep-alive Anthropic sends while the model is silent.
pub const PING: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

struct Writer<'a>(&'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(family: &str) -> ModelRules {
        crate::models::catalog().by_family(family).unwrap().rules.clone()
    }

    fn convert(body: &str, family: &str, betas: &[&str]) -> Result<Value, ApiError> {
        let request = parse(body.as_bytes())?;
        let out = to_bedrock_body(&request, "m", &rules(family), betas)?;
        let value: Value = serde_json::from_slice(&out.bytes).unwrap();
        assert_eq!(out.max_tokens, value["max_tokens"].as_u64(), "the max_tokens sent is the one reported");
        Ok(value)
    }

    #[test]
    fn a_messages_request_becomes_an_invoke_model_body() {
        let body = r#"{"model": "opus", "stream": true, "max_tokens": 1024, "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}], "metadata": {"user_id": "u1"}, "service_tier": "auto",
            "tools": [{"name": "t", "input_schema": {"type": "object"}}], "tool_choice": {"type": "auto"}}"#;
        let out =
            convert(body, "claude-opus-4-7", &["interleaved-thinking-2025-05-14", "claude-code-20250219"]).unwrap();
        assert_eq!(out["anthropic_version"], "bedrock-2023-05-31");
        assert_eq!(
            out["anthropic_beta"],
            serde_json::json!(["interleaved-thinking-2025-05-14"]),
            "Bedrock's betas only"
        );
        assert!(out.get("model").is_none() && out.get("stream").is_none() && out.get("service_tier").is_none());
        assert_eq!(out["max_tokens"], 1024);
        assert_eq!(out["system"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(out["messages"][0]["content"], "hi");
        assert_eq!(out["metadata"]["user_id"], "u1");
        assert_eq!(out["tools"][0]["name"], "t");
    }

    #[test]
    fn the_model_rules_apply_as_on_the_chat_api() {
        let out =
            convert(r#"{"model": "h", "messages": [{"role": "user", "content": "hi"}]}"#, "claude-haiku-4-5", &[])
                .unwrap();
        assert!(out["max_tokens"].as_u64().unwrap() > 0, "a default max_tokens: {out}");
        let too_many = convert(
            r#"{"model": "h", "max_tokens": 999999, "messages": [{"role": "user", "content": "hi"}]}"#,
            "claude-haiku-4-5",
            &[],
        )
        .unwrap();
        assert_eq!(too_many["max_tokens"], 64000, "capped at the model's limit");
        let refused = convert(
            r#"{"model": "o", "max_tokens": 10, "thinking": {"type": "enabled", "budget_tokens": 2000}, "messages": [{"role": "user", "content": "hi"}]}"#,
            "claude-opus-4-7",
            &[],
        )
        .unwrap_err();
        assert_eq!((refused.status.as_u16(), refused.param.as_deref()), (400, Some("thinking.type")), "{refused}");
        let unknown = convert(
            r#"{"model": "o", "max_tokens": 10, "messages": [], "frequency_penalty": 1}"#,
            "claude-opus-4-7",
            &[],
        )
        .unwrap_err();
        assert!(unknown.message.contains("frequency_penalty"), "{unknown}");
        let container =
            convert(r#"{"model": "o", "max_tokens": 10, "messages": [], "container": "c"}"#, "claude-opus-4-7", &[])
                .unwrap_err();
        assert_eq!(container.param.as_deref(), Some("container"));
    }

    /// The message list is read for its turns only (nothing kept per message), and still gives the
    /// rules each turn's role and the last turn's first block.
    #[test]
    fn the_turn_rules_see_roles_and_the_prefill_first_block() {
        let thinking = r#""max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 2000}"#;
        let prefill = format!(
            r#"{{"model": "s", {thinking}, "messages": [{{"role": "user", "content": "a"}},
                {{"role": "assistant", "content": [{{"type": "thinking", "thinking": "t", "signature": "s"}}, {{"type": "text", "text": "b"}}]}}]}}"#
        );
        let out = convert(&prefill, "claude-sonnet-4-5", &[]).unwrap();
        assert_eq!(out["messages"][1]["content"][0]["type"], "thinking", "a prefill after its thinking block: {out}");
        let bare = format!(
            r#"{{"model": "s", {thinking}, "messages": [{{"role": "user", "content": "a"}}, {{"role": "assistant", "content": "b"}}]}}"#
        );
        assert_eq!(convert(&bare, "claude-sonnet-4-5", &[]).unwrap_err().param.as_deref(), Some("messages[1]"));
        let system = r#"{"model": "s", "max_tokens": 10, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": {"x": [1]}}, {"role": "system", "content": "b"}]}"#;
        assert_eq!(convert(system, "claude-sonnet-5-5", &[]).unwrap_err().param.as_deref(), Some("messages[2].role"));
        let no_role = r#"{"model": "s", "max_tokens": 10, "messages": [{"content": "a"}]}"#;
        assert_eq!(convert(no_role, "claude-sonnet-5-5", &[]).unwrap_err().param.as_deref(), Some("messages"));
    }

    #[test]
    fn sse_events_errors_and_betas() {
        let mut out = BytesMut::new();
        assert!(!write_sse_event(br#"{"type":"content_block_delta","index":0}"#, &mut out));
        assert_eq!(&out[..], b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0}\n\n");
        assert!(write_sse_event(br#"{"type": "message_stop"}"#, &mut BytesMut::new()));
        assert_eq!(header_betas(["a, b", "c,,"].into_iter()), ["a", "b", "c"]);
    }
}
