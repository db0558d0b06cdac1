//! OpenAI-compatible endpoints (`POST <base>/chat/completions`: OpenRouter, LiteLLM, vLLM, Ollama,
//! internal gateways), behind the egress guard.
//!
//! The client's request passes through with its `model` renamed to the endpoint's, once every
//! top-level field was found in the allow-list ([`FieldAllowList`]: OpenAI's chat completions
//! fields, the data file `openai_fields.toml`, plus the endpoint's `extra_fields`); a field
//! outside it is refused with a 400 naming it, never passed on with the operator's key. Answers and
//! streams are relayed byte for byte, read only for their usage. To account usage on a stream the
//! call asks for `stream_options.include_usage`; when the client had not, the usage-only chunk is
//! left out of the relay so the client sees what it asked for. The key (configured, or the
//! request's `x-byollm-endpoint-key`) is sent as a bearer token for this call only; errors never
//! carry it or the URL.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use super::buffered::BufferedAnswer;
use super::direct::{DirectClient, DirectError, DirectRequest, Limits};
use super::egress::{EgressError, EgressPolicy};
use super::sse::{SseEvent, SseReader};
use crate::error::{ApiError, ErrorKind};
use crate::secret::{self, Secret};

/// The header a `per_request` endpoint's URL comes in.
const HEADER_ENDPOINT_URL: &str = "x-byollm-endpoint-url";
/// Largest error body read.
const MAX_ERROR_BYTES: usize = 64 * 1024;
/// Most fields an object byollm reads of the client's body may have (the request's top level and
/// `stream_options`). OpenAI's chat request has about 40; endpoints add a few of their own. The
/// cap bounds what parsing costs: each field is a map entry and a copy of its value's text.
const MAX_FIELDS: usize = 256;
/// Longest endpoint error message passed on, in characters.
const MAX_MESSAGE_CHARS: usize = 512;
/// Most refused field names an error lists (and the longest name it quotes, in characters): the
/// names are the caller's own, bounded before they are echoed.
const MAX_NAMED_FIELDS: usize = 8;
const MAX_NAMED_FIELD_CHARS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldTable {
    fields: Vec<String>,
}

/// OpenAI's chat completions request fields, from the data file.
static OPENAI_FIELDS: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
    match toml::from_str::<FieldTable>(include_str!("openai_fields.toml")) {
        Ok(table) => table.fields.into_iter().collect(),
        // Compiled-in data the unit tests parse; should it ever break, nothing passes (fail closed).
        Err(error) => {
            tracing::error!(%error, "src/upstream/openai_fields.toml is invalid; refusing every field");
            BTreeSet::new()
        }
    }
});

/// The top-level request fields an endpoint takes: OpenAI's chat completions fields
/// (`openai_fields.toml`) and the endpoint's own `extra_fields`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldAllowList {
    extra: BTreeSet<String>,
}

impl FieldAllowList {
    /// OpenAI's fields and `extra` (names the configuration validated).
    pub fn new(extra: impl IntoIterator<Item = String>) -> FieldAllowList {
        FieldAllowList { extra: extra.into_iter().collect() }
    }

    pub fn allows(&self, field: &str) -> bool {
        OPENAI_FIELDS.contains(field) || self.extra.contains(field)
    }

    /// OpenAI's chat completions request fields, as the data file lists them.
    pub fn openai_fields() -> impl Iterator<Item = &'static str> {
        OPENAI_FIELDS.iter().map(String::as_str)
    }
}

/// The request body for the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedBody {
    pub body: Bytes,
    pub stream: bool,
    /// The client asked for the usage chunk itself.
    pub client_wants_usage: bool,
}

/// Why a body or a call failed. Holds no key and no URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenAiFailure {
    /// The client's body is not what a chat completion request looks like.
    Body(&'static str),
    /// The body carries top-level fields the endpoint does not take: the first few names (each
    /// cut short), and how many there were in all.
    Fields {
        names: Vec<String>,
        count: usize,
    },
    Transport(DirectError),
    /// The guard refused the URL the request named (`x-byollm-endpoint-url`) or the addresses its
    /// host resolves to: the request's own fault.
    RequestUrlRefused(EgressError),
    /// The endpoint answered an error status; `message` is its own, with the key scrubbed.
    Api {
        status: u16,
        code: Option<String>,
        message: String,
        retry_after: Option<u64>,
    },
}

impl fmt::Display for OpenAiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenAiFailure::Body(what) => f.write_str(what),
            OpenAiFailure::Fields { count, .. } => {
                write!(f, "the body carries {count} field(s) the endpoint does not take")
            }
            OpenAiFailure::Transport(error) => write!(f, "{error}"),
            OpenAiFailure::RequestUrlRefused(error) => write!(f, "{HEADER_ENDPOINT_URL}: {error}"),
            OpenAiFailure::Api { status, message, .. } => write!(f, "the endpoint answered {status}: {message}"),
        }
    }
}

impl OpenAiFailure {
    /// The error for the client. `endpoint` is the endpoint's configured name; `key_from_request`:
    /// the key came in `x-byollm-endpoint-key`.
    pub fn to_api_error(&self, endpoint: &str, model: &str, key_from_request: bool) -> ApiError {
        let upstream = format!("endpoint {endpoint:?}");
        let (status, code, message, retry_after) = match self {
            OpenAiFailure::Body(what) => return ApiError::invalid_request("body", "invalid_body", *what),
            OpenAiFailure::Fields { names, count } => {
                let listed: Vec<String> = names.iter().map(|name| format!("{name:?}")).collect();
                let more = count.saturating_sub(names.len());
                let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                return ApiError::invalid_request(
                    names.first().cloned().unwrap_or_default(),
                    "field_not_allowed",
                    format!(
                        "{upstream} does not take the field(s) {}{more}: it takes the fields of OpenAI's chat completions API and those its operator allows (routing.endpoints.{endpoint}.extra_fields)",
                        listed.join(", ")
                    ),
                );
            }
            OpenAiFailure::Transport(error) => return error.to_api_error(&upstream),
            OpenAiFailure::RequestUrlRefused(_) => {
                return ApiError::forbidden("egress_refused", self.to_string()).with_param(HEADER_ENDPOINT_URL);
            }
            OpenAiFailure::Api { status, code, message, retry_after } => (*status, code, message, *retry_after),
        };
        let code_note = code.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default();
        match status {
            429 => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::RateLimit,
                "endpoint_rate_limited",
                format!(
                    "{upstream} is rate limiting requests to {model}; retry after a short wait ({message}){code_note}"
                ),
            )
            .with_retry_after(retry_after.unwrap_or(2)),
            401 | 403 if key_from_request => ApiError::invalid_request(
                "x-byollm-endpoint-key",
                "endpoint_key_refused",
                format!("{upstream} refused the key in x-byollm-endpoint-key"),
            ),
            401 | 403 => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::Upstream,
                "endpoint_key_refused",
                format!("{upstream} refused the gateway's key: the operator must replace it"),
            ),
            402 => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                ErrorKind::Billing,
                "endpoint_billing",
                format!("{upstream} cannot charge this request ({message})"),
            ),
            404 => ApiError::not_found(
                "endpoint_model_not_found",
                format!("{upstream} does not serve {model} ({message}){code_note}"),
            ),
            500..=599 => ApiError::new(
                StatusCode::BAD_GATEWAY,
                ErrorKind::Upstream,
                "endpoint_error",
                format!("{upstream} failed with {status} ({message})"),
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidRequest,
                "endpoint_invalid_request",
                format!("{upstream} refused the request: {message}{code_note}"),
            ),
        }
    }
}

/// The fields of a JSON object, each value kept as its raw text; at most [`MAX_FIELDS`], refused
/// while parsing beyond that.
struct Fields(BTreeMap<String, Box<RawValue>>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;

        impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
            type Value = Fields;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a JSON object of at most {MAX_FIELDS} fields")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if fields.len() == MAX_FIELDS {
                        return Err(serde::de::Error::custom(format_args!("more than {MAX_FIELDS} fields")));
                    }
                    fields.insert(key, map.next_value()?);
                }
                Ok(Fields(fields))
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}

fn raw(text: String) -> Result<Box<RawValue>, OpenAiFailure> {
    RawValue::from_string(text).map_err(|_| OpenAiFailure::Body("the request body could not be encoded"))
}

/// The client's body with `model` renamed, and `stream_options.include_usage` on for streams; a
/// top-level field `allowed` does not list is refused. Only the top level (and `stream_options`)
/// is parsed; the rest passes through as raw JSON.
pub fn prepare_body(client_body: &[u8], model: &str, allowed: &FieldAllowList) -> Result<PreparedBody, OpenAiFailure> {
    let Fields(mut fields) = serde_json::from_slice(client_body)
        .map_err(|_| OpenAiFailure::Body("the request body must be a JSON object of at most 256 fields"))?;
    let mut refused = fields.keys().filter(|name| !allowed.allows(name)).peekable();
    if refused.peek().is_some() {
        let mut names = Vec::new();
        let mut count = 0;
        for name in refused {
            count += 1;
            if names.len() < MAX_NAMED_FIELDS {
                names.push(name.chars().take(MAX_NAMED_FIELD_CHARS).collect());
            }
        }
        return Err(OpenAiFailure::Fields { names, count });
    }
    let stream = match fields.get("stream") {
        None => false,
        Some(value) => match value.get() {
            "true" => true,
            "false" | "null" => false,
            _ => return Err(OpenAiFailure::Body("stream must be true or false")),
        },
    };
    fields.insert("model".into(), raw(serde_json::to_string(model).map_err(|_| OpenAiFailure::Body("model"))?)?);
    let mut client_wants_usage = false;
    if stream {
        let mut options = match fields.get("stream_options") {
            Some(value) if value.get() != "null" => {
                serde_json::from_str::<Fields>(value.get())
                    .map_err(|_| OpenAiFailure::Body("stream_options must be an object of at most 256 fields"))?
                    .0
            }
            _ => BTreeMap::new(),
        };
        client_wants_usage = options.get("include_usage").is_some_and(|v| v.get() == "true");
        options.insert("include_usage".into(), raw("true".into())?);
        let options = serde_json::to_string(&options).map_err(|_| OpenAiFailure::Body("stream_options"))?;
        fields.insert("stream_options".into(), raw(options)?);
    }
    // The body is the client's, give or take `model` and `stream_options`: sized once.
    let mut body = Vec::with_capacity(client_body.len() + model.len() + 64);
    serde_json::to_writer(&mut body, &fields)
        .map_err(|_| OpenAiFailure::Body("the request body could not be encoded"))?;
    Ok(PreparedBody { body: Bytes::from(body), stream, client_wants_usage })
}

/// Token counts as the endpoint reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct UsageWire {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

/// The parts of a completion or chunk read for accounting; everything else is skipped unbuilt.
#[derive(Deserialize)]
struct Accounting {
    usage: Option<UsageWire>,
    choices: Option<Vec<IgnoredAny>>,
}

impl From<UsageWire> for TokenUsage {
    fn from(wire: UsageWire) -> TokenUsage {
        TokenUsage {
            prompt_tokens: wire.prompt_tokens,
            completion_tokens: wire.completion_tokens,
            cached_tokens: wire.prompt_tokens_details.and_then(|d| d.cached_tokens),
            reasoning_tokens: wire.completion_tokens_details.and_then(|d| d.reasoning_tokens),
        }
    }
}

impl From<TokenUsage> for crate::wire::usage::Usage {
    /// OpenAI's `prompt_tokens` include the cached ones; they are reported as the endpoint said.
    fn from(usage: TokenUsage) -> crate::wire::usage::Usage {
        crate::wire::usage::Usage {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            cache_read_input_tokens: usage.cached_tokens,
            cache_creation_input_tokens: None,
            reasoning_tokens: usage.reasoning_tokens,
        }
    }
}

/// The usage of a `chat.completion` JSON body, if it reports one.
pub fn usage_of(body: &[u8]) -> Option<TokenUsage> {
    serde_json::from_slice::<Accounting>(body).ok()?.usage.map(TokenUsage::from)
}

/// An answer that started.
#[derive(Debug)]
pub enum OpenAiAnswer {
    /// The `chat.completion` JSON, read whole, relayed as is (charged to the answer budget until
    /// dropped).
    Completion {
        body: BufferedAnswer,
        usage: Option<TokenUsage>,
    },
    Stream(OpenAiStream),
}

/// A streamed answer, relayed event by event.
#[derive(Debug)]
pub struct OpenAiStream {
    sse: SseReader,
    tracker: UsageTracker,
}

impl OpenAiStream {
    /// The next event's bytes, as received; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, DirectError> {
        loop {
            let Some(event) = self.sse.next().await? else { return Ok(None) };
            if self.tracker.account(&event) {
                continue;
            }
            return Ok(Some(event.raw));
        }
    }

    pub fn usage(&self) -> Option<TokenUsage> {
        self.tracker.usage
    }

    /// `[DONE]` arrived.
    pub fn finished(&self) -> bool {
        self.tracker.finished
    }
}

/// Reads usage from stream events and says which event to leave out.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageTracker {
    client_wants_usage: bool,
    usage: Option<TokenUsage>,
    finished: bool,
}

impl UsageTracker {
    pub fn new(client_wants_usage: bool) -> UsageTracker {
        UsageTracker { client_wants_usage, ..UsageTracker::default() }
    }

    /// Read the event's usage; true when the event is the usage-only chunk the client did not ask
    /// for.
    pub fn account(&mut self, event: &SseEvent) -> bool {
        if event.data.as_ref() == b"[DONE]" {
            self.finished = true;
            return false;
        }
        let Ok(accounting) = serde_json::from_slice::<Accounting>(&event.data) else { return false };
        let Some(usage) = accounting.usage else { return false };
        self.usage = Some(usage.into());
        !self.client_wants_usage && accounting.choices.is_some_and(|c| c.is_empty())
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: ErrorCode,
}

/// An error's `code` when it is a string or a number; any other value is skipped unbuilt (an
/// endpoint a request names could send a list of a million small values there).
#[derive(Default)]
struct ErrorCode(Option<String>);

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;

        impl<'de> serde::de::Visitor<'de> for CodeVisitor {
            type Value = ErrorCode;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an error code")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<ErrorCode, E> {
                Ok(ErrorCode(Some(value.to_owned())))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<ErrorCode, E> {
                Ok(ErrorCode(Some(value.to_string())))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<ErrorCode, E> {
                Ok(ErrorCode(Some(value.to_string())))
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<ErrorCode, E> {
                Ok(ErrorCode(Some(value.to_string())))
            }

            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<ErrorCode, E> {
                Ok(ErrorCode(None))
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<ErrorCode, E> {
                Ok(ErrorCode(None))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ErrorCode, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ErrorCode(None))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ErrorCode, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ErrorCode(None))
            }
        }

        deserializer.deserialize_any(CodeVisitor)
    }
}

/// Read an error answer. The endpoint's message is kept (it tells the client what to fix) with any
/// copy of the key or the URL scrubbed; a refused key gets our own words.
pub fn failure_from_body(status: u16, headers: &HeaderMap, body: &[u8], secrets: &[&str]) -> OpenAiFailure {
    let retry_after = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let (message, code) = match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(envelope) => (envelope.error.message, envelope.error.code.0),
        Err(_) => (format!("HTTP {status}"), None),
    };
    let message = if status == 401 || status == 403 {
        "the endpoint refused the key".to_owned()
    } else {
        secret::redact_then_cut(&message, secrets, MAX_MESSAGE_CHARS)
    };
    let code = code.filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    OpenAiFailure::Api { status, code, message, retry_after }
}

/// One call.
#[derive(Debug)]
pub struct OpenAiCall<'a> {
    /// The endpoint's base URL (`…/v1`); `/chat/completions` is appended.
    pub base_url: &'a url::Url,
    pub key: Option<&'a Secret>,
    pub policy: EgressPolicy,
    pub limits: Limits,
    /// Whose request this is (the team uid), for the host lookup's share; `None` in local mode.
    pub team: Option<Arc<str>>,
    /// `base_url` came from the request's `x-byollm-endpoint-url`: a refusal of it is the request's
    /// ([`OpenAiFailure::RequestUrlRefused`], 403), not the endpoint's.
    pub url_from_request: bool,
    pub body: PreparedBody,
}

/// The `<base>/chat/completions` URL.
pub fn completions_url(base_url: &url::Url) -> url::Url {
    super::direct::endpoint_url(base_url, "/chat/completions")
}

/// Send one chat completion call; returns once the answer started.
pub async fn send(client: &DirectClient, call: OpenAiCall<'_>) -> Result<OpenAiAnswer, OpenAiFailure> {
    let url = completions_url(call.base_url);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let accept = if call.body.stream { "text/event-stream" } else { "application/json" };
    headers.insert(ACCEPT, HeaderValue::from_static(accept));
    if let Some(key) = call.key {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
            .map_err(|_| OpenAiFailure::Body("the endpoint key is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let stream = call.body.stream;
    let client_wants_usage = call.body.client_wants_usage;
    // A completion is read whole: its first KiB of the answer budget is taken before the call.
    let buffer = match stream {
        true => None,
        false => Some(client.start_answer(call.limits.max_response_bytes).map_err(OpenAiFailure::Transport)?),
    };
    let request = DirectRequest {
        url: &url,
        policy: call.policy,
        limits: call.limits,
        team: call.team,
        headers,
        body: call.body.body,
    };
    let url_from_request = call.url_from_request;
    let response = client.post(request).await.map_err(|error| match error {
        DirectError::Refused(refused) if url_from_request => OpenAiFailure::RequestUrlRefused(refused),
        error => OpenAiFailure::Transport(error),
    })?;
    if response.status != StatusCode::OK {
        drop(buffer);
        let status = response.status.as_u16();
        let headers = response.headers;
        let body = response.body.read_all(MAX_ERROR_BYTES).await.ok();
        let key = call.key.map(Secret::expose).unwrap_or_default();
        let body = body.as_deref().unwrap_or_default();
        return Err(failure_from_body(status, &headers, body, &[key, call.base_url.as_str()]));
    }
    match buffer {
        None => {
            let sse = SseReader::new(response.body);
            Ok(OpenAiAnswer::Stream(OpenAiStream { sse, tracker: UsageTracker::new(client_wants_usage) }))
        }
        // Streaming through would plug in here: a relay taking `response.body` as it arrives
        // (reading the usage as it passes) would need neither the buffer nor its budget.
        Some(buffer) => {
            let body = response.body.read_into(buffer).await.map_err(OpenAiFailure::Transport)?;
            let usage = usage_of(&body);
            Ok(OpenAiAnswer::Completion { body, usage })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::sse::SseParser;
    use serde_json::{Value, json};

    const OPENAI: FieldAllowList = FieldAllowList { extra: BTreeSet::new() };

    #[test]
    fn the_field_list_is_openais_chat_completions_request() {
        let fields: Vec<&str> = FieldAllowList::openai_fields().collect();
        assert_eq!(fields.len(), 35, "{fields:?}");
        for field in ["messages", "model", "stream", "stream_options", "tools", "max_completion_tokens", "user"] {
            assert!(OPENAI.allows(field), "{field}");
        }
        for field in ["models", "fallbacks", "route", "provider", "api_base", "transforms", ""] {
            assert!(!OPENAI.allows(field), "{field}");
        }
    }

    #[test]
    fn fields_outside_the_list_are_refused_by_name_unless_the_endpoint_allows_them() {
        let body = json!({
            "model": "glm", "messages": [{"role": "user", "content": "hi"}],
            "models": ["openai/gpt-5-pro"], "fallbacks": ["x"], "route": "fallback",
            "provider": {"order": ["x"]}, "api_base": "https://evil.example",
        })
        .to_string();
        let failure = prepare_body(body.as_bytes(), "z-ai/glm-4.6", &OPENAI).unwrap_err();
        let OpenAiFailure::Fields { names, count } = &failure else { panic!("{failure:?}") };
        assert_eq!(
            (names.clone(), *count),
            (["api_base", "fallbacks", "models", "provider", "route"].map(String::from).to_vec(), 5)
        );
        let error = failure.to_api_error("openrouter", "glm", false);
        assert_eq!(
            (error.status.as_u16(), error.code, error.param.as_deref()),
            (400, "field_not_allowed", Some("api_base"))
        );
        assert!(
            error.message.contains("\"models\"") && error.message.contains("routing.endpoints.openrouter.extra_fields")
        );

        // The endpoint allows two of them: the others are still refused.
        let some = FieldAllowList::new(["provider".to_owned(), "route".to_owned()]);
        let failure = prepare_body(body.as_bytes(), "z-ai/glm-4.6", &some).unwrap_err();
        assert!(matches!(&failure, OpenAiFailure::Fields { count: 3, .. }), "{failure:?}");
        let all = FieldAllowList::new(["provider", "route", "models", "fallbacks", "api_base"].map(str::to_owned));
        let prepared = prepare_body(body.as_bytes(), "z-ai/glm-4.6", &all).unwrap();
        let sent: Value = serde_json::from_slice(&prepared.body).unwrap();
        assert_eq!(sent["provider"], json!({"order": ["x"]}));
        assert_eq!(sent["model"], "z-ai/glm-4.6");
    }

    #[test]
    fn a_refusal_echoes_a_bounded_part_of_the_names() {
        let mut body = String::from("{\"model\":\"m\"");
        for i in 0..200 {
            body.push_str(&format!(",\"{}{i}\":1", "n".repeat(1000)));
        }
        body.push('}');
        let failure = prepare_body(body.as_bytes(), "m", &OPENAI).unwrap_err();
        let OpenAiFailure::Fields { names, count } = &failure else { panic!("{failure:?}") };
        assert_eq!((names.len(), *count), (MAX_NAMED_FIELDS, 200));
        assert!(names.iter().all(|n| n.chars().count() == MAX_NAMED_FIELD_CHARS));
        let error = failure.to_api_error("e", "m", false);
        assert!(error.message.len() < 1024 && error.message.contains("and 192 more"), "{}", error.message);
    }

    #[test]
    fn the_model_is_renamed_and_usage_asked_for_on_streams() {
        let client = json!({"model": "glm", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2});
        let prepared = prepare_body(client.to_string().as_bytes(), "z-ai/glm-4.6", &OPENAI).unwrap();
        assert!(!prepared.stream);
        let body: Value = serde_json::from_slice(&prepared.body).unwrap();
        assert_eq!(
            body,
            json!({"model": "z-ai/glm-4.6", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2})
        );

        let streamed =
            json!({"model": "glm", "messages": [], "stream": true, "stream_options": {"include_obfuscation": false}});
        let prepared = prepare_body(streamed.to_string().as_bytes(), "z-ai/glm-4.6", &OPENAI).unwrap();
        assert!(prepared.stream && !prepared.client_wants_usage);
        let body: Value = serde_json::from_slice(&prepared.body).unwrap();
        assert_eq!(body["stream_options"], json!({"include_obfuscation": false, "include_usage": true}));

        let asked = json!({"model": "glm", "messages": [], "stream": true, "stream_options": {"include_usage": true}});
        assert!(prepare_body(asked.to_string().as_bytes(), "x", &OPENAI).unwrap().client_wants_usage);
        for bad in [&b"[]"[..], br#"{"stream":"yes"}"#, br#"{"stream":true,"stream_options":3}"#] {
            assert!(prepare_body(bad, "x", &OPENAI).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn stream_of(text: &str, client_wants_usage: bool) -> (Vec<String>, Option<TokenUsage>, bool) {
        let mut parser = SseParser::default();
        parser.push(text.as_bytes());
        let mut tracker = UsageTracker::new(client_wants_usage);
        let mut out = Vec::new();
        while let Some(event) = parser.next_event().unwrap() {
            if !tracker.account(&event) {
                out.push(String::from_utf8(event.raw.to_vec()).unwrap());
            }
        }
        (out, tracker.usage, tracker.finished)
    }

    const STREAM: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":2},\"completion_tokens_details\":{\"reasoning_tokens\":1}}}\n\n\
data: [DONE]\n\n";

    #[test]
    fn streams_are_relayed_unchanged_and_their_usage_read() {
        let usage = Some(TokenUsage {
            prompt_tokens: Some(9),
            completion_tokens: Some(3),
            cached_tokens: Some(2),
            reasoning_tokens: Some(1),
        });
        let (events, read, finished) = stream_of(STREAM, true);
        assert_eq!(events.concat(), STREAM);
        assert_eq!((read, finished), (usage, true));
        let (events, read, _) = stream_of(STREAM, false);
        assert_eq!(events.len(), 2, "the usage chunk the client did not ask for is left out");
        assert!(!events.concat().contains("prompt_tokens"));
        assert_eq!(read, usage);
    }

    #[test]
    fn completion_usage_is_read_without_building_the_body() {
        let body = json!({"id": "x", "choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": 4, "completion_tokens": 1}});
        assert_eq!(
            usage_of(body.to_string().as_bytes()),
            Some(TokenUsage { prompt_tokens: Some(4), completion_tokens: Some(1), ..TokenUsage::default() })
        );
        assert_eq!(usage_of(b"{}"), None);
    }

    #[test]
    fn a_key_straddling_the_cut_is_redacted_before_it() {
        let key = "sk-or-v1-abcdef0123456789abcdef0123456789";
        let message = format!("{}{key} is not allowed", "m".repeat(500));
        let body = json!({"error": {"message": message}}).to_string();
        let failure = failure_from_body(400, &HeaderMap::new(), body.as_bytes(), &[key]);
        let OpenAiFailure::Api { message, .. } = &failure else { panic!("{failure:?}") };
        // Cut first, then redacted, 12 of the key's characters would have been left.
        assert!(!message.contains("sk-or-v1"), "{message}");
        assert!(message.ends_with("m[redacted] i"), "{message}");
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn errors_never_carry_the_key_or_url() {
        let key = "sk-or-v1-abcdef0123456789";
        let body = json!({"error": {"message": format!("bad model at https://gw.internal/v1 for {key}"), "type": "invalid_request_error", "code": "model_not_found"}});
        let failure =
            failure_from_body(404, &HeaderMap::new(), body.to_string().as_bytes(), &[key, "https://gw.internal/v1"]);
        let OpenAiFailure::Api { status, code, message, .. } = &failure else { panic!("{failure:?}") };
        assert_eq!((*status, code.as_deref()), (404, Some("model_not_found")));
        assert!(!message.contains(key) && !message.contains("gw.internal"), "{message}");
        let refused =
            json!({"error": {"message": "Incorrect API key provided: sk-or-v1-ab***", "code": "invalid_api_key"}});
        let failure = failure_from_body(401, &HeaderMap::new(), refused.to_string().as_bytes(), &[key]);
        assert!(!failure.to_string().contains("sk-or"), "{failure}");
    }

    #[test]
    fn the_completions_url_follows_the_base() {
        for (base, expected) in [
            ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1/chat/completions"),
            ("http://127.0.0.1:11434/v1/", "http://127.0.0.1:11434/v1/chat/completions"),
        ] {
            assert_eq!(completions_url(&url::Url::parse(base).unwrap()).as_str(), expected);
        }
    }
}
