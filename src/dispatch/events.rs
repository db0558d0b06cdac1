//! Anthropic stream events from whichever upstream produced them: Bedrock's
//! `InvokeModelWithResponseStream` (decoded from event-stream frames) or the Anthropic API (SSE).
//! Pulled one event at a time, as the client reads.

use bytes::Bytes;

use crate::error::ApiError;
use crate::upstream::EventStream;
use crate::upstream::anthropic::AnthropicEvents;

pub enum Events {
    Bedrock {
        events: EventStream,
        model_id: String,
    },
    /// `current`: the last event read, which [`Events::next`] lends out.
    Anthropic {
        events: AnthropicEvents,
        model: String,
        key_from_request: bool,
        current: Bytes,
    },
}

impl Events {
    pub fn anthropic(events: AnthropicEvents, model: String, key_from_request: bool) -> Events {
        Events::Anthropic { events, model, key_from_request, current: Bytes::new() }
    }

    /// The next event's JSON, borrowed until the next call (a Bedrock event is decoded in place);
    /// `None` at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<&[u8]>, ApiError> {
        match self {
            Events::Bedrock { events, model_id } => match events.next_event().await {
                Ok(event) => Ok(event),
                Err(failure) => {
                    tracing::warn!(code = %failure.code, "bedrock stream failed mid-way");
                    Err(failure.to_api_error("bedrock:InvokeModelWithResponseStream", model_id))
                }
            },
            Events::Anthropic { events, model, key_from_request, current } => match events.next_event().await {
                Ok(Some(event)) => {
                    *current = event;
                    Ok(Some(current))
                }
                Ok(None) => Ok(None),
                Err(failure) => {
                    tracing::warn!("the anthropic api stream failed mid-way");
                    Err(failure.to_api_error(model, *key_from_request))
                }
            },
        }
    }

    /// The upstream, as an incomplete answer names it.
    pub fn upstream_name(&self) -> &'static str {
        match self {
            Events::Bedrock { .. } => "the Bedrock stream",
            Events::Anthropic { .. } => "the Anthropic API stream",
        }
    }
}
