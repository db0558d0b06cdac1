"""boto3 `bedrock-runtime` against byollm over HTTPS with a Bedrock API key (`AWS_BEARER_TOKEN_BEDROCK`),
run by tests/bedrock_clients.rs. Usage: boto3_client.py <https base url> <model id>.

The environment carries AWS_BEARER_TOKEN_BEDROCK (the byollm key), AWS_CA_BUNDLE (the gateway's
self-signed certificate) and AWS_REGION. Calls run in a fixed order; the Rust side queues one fake
Bedrock reply per call that reaches Bedrock. Exits non-zero on the first surprise.
"""

import json
import os
import sys

import boto3
import botocore
from botocore.config import Config

url, model = sys.argv[1], sys.argv[2]
# A cloud run names itself in x-byollm-* headers (given here as BYOLLM_HEADER_<NAME> variables).
headers = {}
for name in ("x-byollm-actor", "x-byollm-principal", "x-byollm-run-id"):
    value = os.environ.get("BYOLLM_HEADER_" + name[len("x-byollm-"):].upper().replace("-", "_"))
    if value:
        headers[name] = value


def client():
    made = boto3.client("bedrock-runtime", endpoint_url=url, config=Config(retries={"total_max_attempts": 1}))

    def add_headers(request, **_):
        for name, value in headers.items():
            request.headers[name] = value

    made.meta.events.register("before-sign.bedrock-runtime.*", add_headers)
    return made


def step(name):
    print("ok", name, flush=True)


runtime = client()
body = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say hello."}],
}

# 1. InvokeModel
answer = runtime.invoke_model(modelId=model, body=json.dumps(body))
message = json.loads(answer["body"].read())
assert message["content"][0]["text"] == "Hello from boto3.", message
assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"] == "21", answer
step("invoke_model")

# 2. InvokeModelWithResponseStream
stream = runtime.invoke_model_with_response_stream(modelId=model, body=json.dumps(body))
events = [json.loads(part["chunk"]["bytes"]) for part in stream["body"]]
text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
assert text == "Streamed by boto3.", events
assert events[-1]["type"] == "message_stop", events
step("invoke_model_with_response_stream")

# 3. Converse
conversation = [{"role": "user", "content": [{"text": "Say hello."}]}]
answer = runtime.converse(modelId=model, messages=conversation, inferenceConfig={"maxTokens": 64})
assert answer["output"]["message"]["content"][0]["text"] == "Conversed.", answer
assert answer["usage"]["inputTokens"] == 7, answer
step("converse")

# 4. ConverseStream
stream = runtime.converse_stream(modelId=model, messages=conversation, inferenceConfig={"maxTokens": 64})
events = list(stream["stream"])
text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
assert text == "Conversed in pieces.", events
assert events[-1]["metadata"]["usage"]["outputTokens"] == 3, events
step("converse_stream")

# 5. CountTokens (byollm counts on the foundation model behind the configured profile)
counted = runtime.count_tokens(modelId=model, input={"invokeModel": {"body": json.dumps(body).encode()}})
assert counted["inputTokens"] > 0, counted
step("count_tokens")

# 6. A model outside the configuration is refused by byollm, before any Bedrock call.
try:
    runtime.invoke_model(modelId="us.anthropic.claude-opus-4-1-20250805-v1:0", body=json.dumps(body))
    raise AssertionError("an unconfigured model was served")
except botocore.exceptions.ClientError as error:
    assert error.response["Error"]["Code"] == "AccessDeniedException", error.response
    assert "claude-opus-4-1-20250805-v1:0" in error.response["Error"]["Message"], error.response
step("unconfigured_model_refused")

# 7. Bedrock's own errors reach the client unchanged (the fake throttles this one).
try:
    runtime.invoke_model(modelId=model, body=json.dumps(body))
    raise AssertionError("the throttle was not relayed")
except botocore.exceptions.ClientError as error:
    assert error.response["Error"]["Code"] == "ThrottlingException", error.response
    assert error.response["Error"]["Message"] == "Too many requests, please wait before trying again.", error.response
step("bedrock_error_relayed")

# 8. SigV4 (AWS credentials instead of the key) is refused with a message that says what to do.
signed = boto3.client(
    "bedrock-runtime",
    endpoint_url=url,
    aws_access_key_id="AKIDEXAMPLE",
    aws_secret_access_key="not-a-real-secret",
    config=Config(retries={"total_max_attempts": 1}, signature_version="v4"),
)
try:
    signed.invoke_model(modelId=model, body=json.dumps(body))
    raise AssertionError("a SigV4 request was served")
except botocore.exceptions.ClientError as error:
    assert error.response["Error"]["Code"] == "UnrecognizedClientException", error.response
    assert "bearer token" in error.response["Error"]["Message"], error.response
step("sigv4_refused")

print("all ok", flush=True)
