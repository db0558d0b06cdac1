//! The one usage type: token counts of one answer as its upstream reported them. The audit
//! record, the metrics and the relays all carry this; the wire shapes of each API (Anthropic's
//! `usage`, OpenAI's `usage`, Bedrock's invocation metrics) convert into it where they are read.

use serde::Serialize;

use super::anthropic;

/// Token counts; `None`: not reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    /// Thinking tokens within `output_tokens`, where the upstream says.
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// Counts `other` reports replace these; the ones it leaves out stay.
    pub fn merge(&mut self, other: Usage) {
        self.input_tokens = other.input_tokens.or(self.input_tokens);
        self.output_tokens = other.output_tokens.or(self.output_tokens);
        self.cache_read_input_tokens = other.cache_read_input_tokens.or(self.cache_read_input_tokens);
        self.cache_creation_input_tokens = other.cache_creation_input_tokens.or(self.cache_creation_input_tokens);
        self.reasoning_tokens = other.reasoning_tokens.or(self.reasoning_tokens);
    }
}

impl From<&anthropic::Usage> for Usage {
    fn from(usage: &anthropic::Usage) -> Usage {
        Usage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_read_input_tokens: usage.cache_read_input_tokens,
            cache_creation_input_tokens: usage.cache_creation_input_tokens,
            reasoning_tokens: usage.output_tokens_details.and_then(|d| d.thinking_tokens),
        }
    }
}
