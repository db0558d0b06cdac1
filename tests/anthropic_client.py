"""The official Anthropic Python SDK against byollm, run by tests/anthropic_sdk.rs.
Usage: anthropic_client.py <base url>. BYOLLM_KEY holds the API key; the run's identity goes in
x-byollm-* default headers. Calls run in a fixed order (the Rust side queues one fake Bedrock reply
per call that reaches Bedrock); exits non-zero on the first surprise.
"""

import os
import sys

import anthropic
from anthropic import Anthropic, AnthropicBedrock

url = sys.argv[1]
key = os.environ["BYOLLM_KEY"]
identity = {"x-byollm-actor": "service_account", "x-byollm-principal": "ci-bot", "x-byollm-run-id": "run-sdk"}


def step(name):
    print("ok", name, flush=True)


client = Anthropic(base_url=url, api_key=key, default_headers=identity, max_retries=0)

# 1. messages.create
message = client.messages.create(model="haiku", max_tokens=64, messages=[{"role": "user", "content": "Say hello."}])
assert message.content[0].text == "Hello from the SDK.", message
assert message.usage.input_tokens == 13, message
step("create")

# 2. messages.stream, with a beta header the SDK adds (Bedrock's betas kept, others dropped)
with client.messages.stream(
    model="haiku",
    max_tokens=64,
    messages=[{"role": "user", "content": "Count."}],
    extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14,files-api-2025-04-14"},
) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert text == "One two three", text
assert final.stop_reason == "end_turn", final
step("stream")

# 3. count_tokens
counted = client.messages.count_tokens(model="haiku", messages=[{"role": "user", "content": "one two three"}])
assert counted.input_tokens > 0, counted
step("count_tokens")

# 4. models.list in Anthropic's shape
models = [m.id for m in client.models.list()]
assert models == ["haiku", "opus"], models
step("models")

# 5. An unknown model: Anthropic's not_found error
try:
    client.messages.create(model="gpt-4o", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model was served")
except anthropic.NotFoundError as error:
    assert error.body["error"]["type"] == "not_found_error", error.body
step("unknown_model")

# 6. Bedrock throttles: Anthropic's rate_limit_error
try:
    client.messages.create(model="haiku", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("the throttle was not reported")
except anthropic.RateLimitError as error:
    assert error.body["type"] == "error" and error.body["error"]["type"] == "rate_limit_error", error.body
step("throttled")

# 7. An error inside the stream arrives as an SSE error event the SDK raises
try:
    with client.messages.stream(model="haiku", max_tokens=64, messages=[{"role": "user", "content": "x"}]) as stream:
        for _ in stream.text_stream:
            pass
    raise AssertionError("the mid-stream error was not raised")
except anthropic.APIStatusError as error:
    assert "error" in str(error).lower(), error
step("error_mid_stream")

# 8. AnthropicBedrock with the byollm key as a Bedrock API key (Authorization: Bearer)
bedrock = AnthropicBedrock(base_url=url, api_key=key, aws_region="us-east-1", default_headers=identity, max_retries=0)
message = bedrock.messages.create(
    model="us.anthropic.claude-opus-4-7", max_tokens=64, messages=[{"role": "user", "content": "Hi."}]
)
assert message.content[0].text == "Bedrock client.", message
step("bedrock_create")

# 9. AnthropicBedrock streaming (InvokeModelWithResponseStream, event-stream frames relayed)
with bedrock.messages.stream(
    model="us.anthropic.claude-opus-4-7", max_tokens=64, messages=[{"role": "user", "content": "Hi."}]
) as stream:
    text = "".join(stream.text_stream)
assert text == "Bedrock stream", text
step("bedrock_stream")

print("all ok", flush=True)
