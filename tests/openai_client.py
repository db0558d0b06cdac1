"""Drives a byollm gateway with the official OpenAI Python SDK.

Usage: OPENAI_API_KEY=<session key> python3 tests/openai_client.py http://127.0.0.1:PORT
       OPENAI_API_KEY=<session key> python3 tests/openai_client.py http://127.0.0.1:PORT --matrix model-a,model-b,...
       OPENAI_API_KEY=<session key> python3 tests/openai_client.py http://127.0.0.1:PORT --agent MODEL TURNS

Run by tests/openai_sdk.rs, which queues the fake Bedrock's replies in exactly the order of the
calls below that reach Bedrock (marked "bedrock" in STEPS) before starting this script. Every step
prints one line; any failed check raises, so the exit status is non-zero.

Besides reading the SDK's objects, every response and chunk is re-validated against the SDK's
pydantic types (the SDK itself only constructs them, without validating field types).
"""

import asyncio
import json
import os
import sys

import openai
from openai import AsyncOpenAI, OpenAI
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

MODEL = "claude-haiku-4-5"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
    },
}
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp_c": {"type": "integer"}},
    "required": ["city", "temp_c"],
    "additionalProperties": False,
}


class Weather(BaseModel):
    city: str
    temp_c: int


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def strict_completion(completion, model=MODEL):
    """Re-validates a non-streamed answer field by field."""
    check(isinstance(completion, ChatCompletion), f"not a ChatCompletion: {type(completion)}")
    ChatCompletion.model_validate(completion.to_dict())
    check(completion.object == "chat.completion", completion.object)
    check(completion.id.startswith("chatcmpl-"), completion.id)
    check(completion.model == model, completion.model)
    check(isinstance(completion.created, int) and completion.created > 0, completion.created)
    check(len(completion.choices) == 1 and completion.choices[0].index == 0, completion.choices)
    check(completion.choices[0].message.role == "assistant", completion.choices[0].message.role)
    usage = completion.usage
    check(usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, usage)
    return completion.choices[0]


def strict_chunks(chunks, include_usage, model=MODEL):
    """Re-validates streamed chunks; returns (choices' deltas, finish reasons, usage chunk)."""
    check(chunks, "no chunks")
    for chunk in chunks:
        check(isinstance(chunk, ChatCompletionChunk), f"not a chunk: {type(chunk)}")
        ChatCompletionChunk.model_validate(chunk.to_dict())
        check(chunk.object == "chat.completion.chunk", chunk.object)
        check(chunk.id == chunks[0].id and chunk.id.startswith("chatcmpl-"), chunk.id)
        check(chunk.model == model and chunk.created == chunks[0].created, chunk)
    first = chunks[0].choices[0].delta
    check(first.role == "assistant", f"first delta has no role: {first}")
    usage_chunk = None
    if include_usage:
        usage_chunk = chunks[-1]
        check(usage_chunk.choices == [], f"usage chunk has choices: {usage_chunk}")
        check(usage_chunk.usage is not None, "usage chunk has no usage")
        check(all(c.usage is None for c in chunks[:-1]), "usage before the last chunk")
        chunks = chunks[:-1]
    else:
        check(all(c.usage is None for c in chunks), "usage without include_usage")
    check(all(len(c.choices) == 1 and c.choices[0].index == 0 for c in chunks), "one choice per chunk")
    deltas = [c.choices[0].delta for c in chunks]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason]
    return deltas, finishes, usage_chunk


def text_of(deltas):
    return "".join(d.content or "" for d in deltas)


def assemble_tool_calls(deltas):
    """The usual client loop: tool call fragments keyed by index."""
    calls = {}
    for delta in deltas:
        for fragment in delta.tool_calls or []:
            call = calls.setdefault(fragment.index, {"id": None, "name": None, "arguments": ""})
            if fragment.id:
                check(call["id"] is None, f"id sent twice for index {fragment.index}")
                check(fragment.type == "function", fragment)
                call["id"] = fragment.id
            if fragment.function and fragment.function.name:
                call["name"] = fragment.function.name
            if fragment.function and fragment.function.arguments:
                call["arguments"] += fragment.function.arguments
    check(sorted(calls) == list(range(len(calls))), f"tool call indexes are not dense: {sorted(calls)}")
    return [calls[i] for i in range(len(calls))]


def user(text):
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


# ------------------------------------------------------------------------------------------------
# Steps. Each returns a short summary for its output line.


def non_stream_text(client):
    completion = client.chat.completions.create(
        model=MODEL,
        messages=user("hi"),
        max_tokens=100,
        temperature=0.5,
        stop=["END"],
        seed=7,
        user="someone",
        stream=False,
    )
    choice = strict_completion(completion)
    check(choice.message.content == "Hello there", choice.message.content)
    check(choice.finish_reason == "stop", choice.finish_reason)
    check(choice.message.tool_calls is None, choice.message.tool_calls)
    check((completion.usage.prompt_tokens, completion.usage.completion_tokens) == (20, 5), completion.usage)
    return choice.message.content


def stream_text(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=user("count"), stream=True, stream_options={"include_usage": True}
    )
    deltas, finishes, usage_chunk = strict_chunks(list(stream), include_usage=True)
    check(text_of(deltas) == "One two three", text_of(deltas))
    check(finishes == ["stop"], finishes)
    usage = usage_chunk.usage
    check((usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 3, 12), usage)
    return text_of(deltas)


def stream_text_without_usage(client):
    with client.chat.completions.create(model=MODEL, messages=user("count"), stream=True) as stream:
        chunks = list(stream)
    deltas, finishes, _ = strict_chunks(chunks, include_usage=False)
    check(text_of(deltas) == "a b", text_of(deltas))
    check(finishes == ["stop"], finishes)
    return text_of(deltas)


def tools_non_stream(client, state):
    messages = user("weather in Paris?")
    completion = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="auto", parallel_tool_calls=True
    )
    choice = strict_completion(completion)
    check(choice.finish_reason == "tool_calls", choice.finish_reason)
    calls = choice.message.tool_calls
    check(calls is not None and len(calls) == 1, calls)
    check((calls[0].id, calls[0].type, calls[0].function.name) == ("toolu_1", "function", "get_weather"), calls)
    check(json.loads(calls[0].function.arguments) == {"city": "Paris"}, calls[0].function.arguments)
    check(choice.message.content == "Let me check.", choice.message.content)
    state["tool_turn"] = messages + [choice.message]
    return f"{calls[0].function.name}({calls[0].function.arguments})"


def tools_stream(client, state):
    messages = user("weather and time in Paris?")
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice="required",
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas, finishes, _ = strict_chunks(list(stream), include_usage=True)
    calls = assemble_tool_calls(deltas)
    check([(c["id"], c["name"]) for c in calls] == [("toolu_2", "get_weather"), ("toolu_3", "get_time")], calls)
    check(json.loads(calls[0]["arguments"]) == {"city": "Paris"}, calls[0])
    check(json.loads(calls[1]["arguments"]) == {"tz": "CET"}, calls[1])
    check(finishes == ["tool_calls"], finishes)
    state["stream_tool_turn"] = messages + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls
            ],
        }
    ]
    return ", ".join(f"{c['name']}({c['arguments']})" for c in calls)


def tool_results_non_stream(client, state):
    # The SDK's own message object is sent back as is (what most agent loops do).
    messages = state["tool_turn"] + [{"role": "tool", "tool_call_id": "toolu_1", "content": "sunny, 21C"}]
    completion = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL])
    choice = strict_completion(completion)
    check(choice.message.content == "It is sunny.", choice.message.content)
    return choice.message.content


def tool_results_stream(client, state):
    messages = state["stream_tool_turn"] + [
        {"role": "tool", "tool_call_id": "toolu_2", "content": "sunny, 21C"},
        {"role": "tool", "tool_call_id": "toolu_3", "content": [{"type": "text", "text": "14:00"}]},
        {"role": "user", "content": [{"type": "text", "text": "and so?"}]},
    ]
    stream = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL, TIME_TOOL], stream=True
    )
    deltas, finishes, _ = strict_chunks(list(stream), include_usage=False)
    check(text_of(deltas) == "Sunny at two.", text_of(deltas))
    check(finishes == ["stop"], finishes)
    return text_of(deltas)


def json_schema_non_stream(client):
    completion = client.chat.completions.create(
        model=MODEL,
        messages=user("weather as json"),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True},
        },
    )
    choice = strict_completion(completion)
    check(choice.finish_reason == "stop", choice.finish_reason)
    check(choice.message.tool_calls is None, choice.message.tool_calls)
    check(json.loads(choice.message.content) == {"city": "Paris", "temp_c": 21}, choice.message.content)
    return choice.message.content


def json_schema_stream(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=user("weather as json"),
        response_format={"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA}},
        stream=True,
    )
    deltas, finishes, _ = strict_chunks(list(stream), include_usage=False)
    check(all(not d.tool_calls for d in deltas), "response_format answer leaked as tool calls")
    check(json.loads(text_of(deltas)) == {"city": "Oslo", "temp_c": 3}, text_of(deltas))
    check(finishes == ["stop"], finishes)
    return text_of(deltas)


def parse_helper(client):
    completions = client.chat.completions
    parse = getattr(completions, "parse", None) or client.beta.chat.completions.parse
    completion = parse(model=MODEL, messages=user("weather as json"), response_format=Weather)
    message = completion.choices[0].message
    check(message.parsed == Weather(city="Rome", temp_c=25), message.parsed)
    return repr(message.parsed)


class GetWeather(BaseModel):
    city: str


def parse_helper_tools(client):
    # Strict tools from pydantic models, parsed arguments, then the parsed message sent back.
    completions = client.chat.completions
    parse = getattr(completions, "parse", None) or client.beta.chat.completions.parse
    messages = user("weather in Bern?")
    tools = [openai.pydantic_function_tool(GetWeather)]
    completion = parse(model=MODEL, messages=messages, tools=tools)
    message = completion.choices[0].message
    check(completion.choices[0].finish_reason == "tool_calls", completion.choices[0].finish_reason)
    call = message.tool_calls[0]
    check(call.function.parsed_arguments == GetWeather(city="Bern"), call.function)
    messages += [message, {"role": "tool", "tool_call_id": call.id, "content": "snow"}]
    answer = parse(model=MODEL, messages=messages, tools=tools)
    check(answer.choices[0].message.content == "Snow in Bern.", answer.choices[0].message)
    return f"{call.function.parsed_arguments!r} -> {answer.choices[0].message.content}"


def stream_helper(client):
    completions = client.chat.completions
    stream_helper = getattr(completions, "stream", None) or client.beta.chat.completions.stream
    with stream_helper(model=MODEL, messages=user("weather as json"), response_format=Weather) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    check("content.done" in kinds, kinds)
    check(final.choices[0].message.parsed == Weather(city="Lima", temp_c=18), final.choices[0].message)
    check(final.choices[0].finish_reason == "stop", final.choices[0].finish_reason)
    return repr(final.choices[0].message.parsed)


def reasoning_non_stream(client):
    completion = client.chat.completions.create(model=MODEL, messages=user("think"), reasoning_effort="low")
    choice = strict_completion(completion)
    check(choice.message.content == "42", choice.message.content)
    reasoning = getattr(choice.message, "reasoning_content", None)
    check(reasoning == "Consider this.", f"reasoning_content: {reasoning!r}")
    return f"{reasoning!r} -> {choice.message.content}"


def reasoning_stream(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=user("think"),
        reasoning_effort="medium",
        stream=True,
        stream_options={"include_usage": True},
    )
    deltas, finishes, _ = strict_chunks(list(stream), include_usage=True)
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    check(reasoning == "Hmm, yes.", f"reasoning: {reasoning!r}")
    check(text_of(deltas) == "7", text_of(deltas))
    check(finishes == ["stop"], finishes)
    return f"{reasoning!r} -> {text_of(deltas)}"


def reasoning_stream_helper(client, state):
    completions = client.chat.completions
    stream_helper = getattr(completions, "stream", None) or client.beta.chat.completions.stream
    messages = user("think twice")
    with stream_helper(model=MODEL, messages=messages, reasoning_effort="low") as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    message = final.choices[0].message
    check(message.content == "8", message.content)
    check(getattr(message, "reasoning_content", None) == "One. Two.", message)
    blocks = getattr(message, "thinking_blocks", None)
    check([b.get("signature") for b in blocks or []] == ["sig-3", "sig-4"], f"thinking_blocks: {blocks}")
    state["reasoning_turn"] = messages + [message, {"role": "user", "content": "and?"}]
    return f"{len(blocks)} thinking blocks -> {message.content}"


def reasoning_round_trip(client, state):
    # The stream helper's final message, thinking blocks included, goes back as it is.
    completion = client.chat.completions.create(model=MODEL, messages=state["reasoning_turn"], reasoning_effort="low")
    check(strict_completion(completion).message.content == "9", completion)
    return completion.choices[0].message.content


def raw_response(client):
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=user("hi"))
    check(raw.status_code == 200, raw.status_code)
    check(raw.headers.get("content-type", "").startswith("application/json"), raw.headers)
    body = json.loads(raw.text)
    check(body["choices"][0]["message"]["content"] == "raw", body)
    strict_completion(raw.parse())
    return raw.headers["content-type"]


def models_list(client):
    models = list(client.models.list())
    ids = [m.id for m in models]
    check(MODEL in ids, ids)
    for model in models:
        Model.model_validate(model.to_dict())
        check(model.object == "model", model)
    return ", ".join(ids)


def models_retrieve(client):
    try:
        model = client.models.retrieve(MODEL)
    except openai.NotFoundError as error:
        # GET /v1/models/{model} needs its route in src/http.rs (adapter::routes::retrieve_model).
        check(error.code == "unknown_route", error.body)
        return "NOT ROUTED: GET /v1/models/{model} answers unknown_route"
    Model.model_validate(model.to_dict())
    check((model.id, model.object) == (MODEL, "model"), model)
    facts = model.to_dict()
    check(facts.get("context_window") == 200000 and facts.get("max_output_tokens") == 64000, facts)
    check(facts.get("reasoning", {}).get("thinking") == "budget" and facts.get("vision") is True, facts)
    try:
        client.models.retrieve("gpt-4o")
    except openai.NotFoundError as error:
        check(error.code == "model_not_found", error.body)
        return f"{model.id}; gpt-4o: NotFoundError {error.code}"
    raise AssertionError("no NotFoundError for an unknown model")


def unknown_model(client):
    try:
        client.chat.completions.create(model="gpt-4o", messages=user("hi"))
    except openai.NotFoundError as error:
        check(error.status_code == 404, error.status_code)
        check(error.code == "model_not_found" and error.param == "model", error.body)
        return f"NotFoundError {error.code}"
    raise AssertionError("no NotFoundError")


def unknown_model_stream(client):
    try:
        client.chat.completions.create(model="gpt-4o", messages=user("hi"), stream=True)
    except openai.NotFoundError as error:
        return f"NotFoundError {error.code}"
    raise AssertionError("no NotFoundError")


def bad_request(client):
    try:
        client.chat.completions.create(model=MODEL, messages=user("hi"), n=2)
    except openai.BadRequestError as error:
        check(error.status_code == 400 and error.param == "n", error.body)
        check(error.type == "invalid_request_error", error.type)
        return f"BadRequestError param={error.param}"
    raise AssertionError("no BadRequestError")


def rate_limited(client):
    try:
        client.chat.completions.create(model=MODEL, messages=user("hi"))
    except openai.RateLimitError as error:
        check(error.status_code == 429, error.status_code)
        retry_after = error.response.headers.get("retry-after")
        check(retry_after is not None and retry_after.isdigit(), f"retry-after: {retry_after!r}")
        return f"RateLimitError retry-after={retry_after}"
    raise AssertionError("no RateLimitError")


def rate_limited_stream(client):
    try:
        client.chat.completions.create(model=MODEL, messages=user("hi"), stream=True)
    except openai.RateLimitError as error:
        check(error.response.headers.get("retry-after") is not None, error.response.headers)
        return f"RateLimitError {error.code}"
    raise AssertionError("no RateLimitError")


def error_mid_stream(client):
    stream = client.chat.completions.create(model=MODEL, messages=user("hi"), stream=True)
    received = []
    try:
        for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    except openai.APIError as error:
        check("".join(received) == "ab", f"text before the error: {received}")
        check(isinstance(error.body, dict) and error.body.get("code") == "bedrock_error", error.body)
        check(error.message, "empty error message")
        return f"{type(error).__name__} {error.body['code']} after {''.join(received)!r}"
    raise AssertionError("the stream ended without an error")


def cut_stream(client):
    stream = client.chat.completions.create(
        model=MODEL, messages=user("hi"), stream=True, stream_options={"include_usage": True}
    )
    try:
        for _ in stream:
            pass
    except openai.APIError as error:
        check(error.body.get("code") == "upstream_stream_cut", error.body)
        return f"{type(error).__name__} {error.body['code']}"
    raise AssertionError("the cut stream ended without an error")


def async_stream(base_url):
    async def run():
        client = AsyncOpenAI(base_url=base_url, api_key=os.environ["OPENAI_API_KEY"], max_retries=0, timeout=30)
        stream = await client.chat.completions.create(
            model=MODEL, messages=user("hi"), stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        completion = await client.chat.completions.create(model=MODEL, messages=user("hi"))
        await client.close()
        return chunks, completion

    chunks, completion = asyncio.run(run())
    deltas, finishes, _ = strict_chunks(chunks, include_usage=True)
    check(text_of(deltas) == "async stream", text_of(deltas))
    check(finishes == ["stop"], finishes)
    check(strict_completion(completion).message.content == "async", completion)
    return f"{text_of(deltas)} / {completion.choices[0].message.content}"


def model_matrix(client, models):
    """For each model: a plain answer, a reasoning_effort "high" answer, a streamed tool call, and
    temperature 0.2 (an answer or a 400). Prints one `MATRIX {json}` line per model with what the
    SDK saw; tests/openai_sdk.rs judges them against its own expectations and the Bedrock bodies."""
    for name in models:
        seen = {"model": name}
        completion = client.chat.completions.create(model=name, messages=user("hi"))
        seen["plain"] = strict_completion(completion, name).message.content

        completion = client.chat.completions.create(model=name, messages=user("think"), reasoning_effort="high")
        message = strict_completion(completion, name).message
        seen["reasoning"] = getattr(message, "reasoning_content", None)
        seen["answer"] = message.content
        details = completion.usage.completion_tokens_details
        seen["reasoning_tokens"] = details.reasoning_tokens if details else None

        stream = client.chat.completions.create(
            model=name, messages=user("weather in Paris?"), tools=[WEATHER_TOOL], stream=True
        )
        deltas, finishes, _ = strict_chunks(list(stream), include_usage=False, model=name)
        seen["tool_calls"] = [{"name": c["name"], "arguments": c["arguments"]} for c in assemble_tool_calls(deltas)]
        seen["tool_finish"] = finishes

        try:
            completion = client.chat.completions.create(model=name, messages=user("hi"), temperature=0.2)
            seen["temperature"] = {"answer": strict_completion(completion, name).message.content}
        except openai.BadRequestError as error:
            seen["temperature"] = {"status": error.status_code, "param": error.param, "message": error.message}
        print("MATRIX " + json.dumps(seen), flush=True)


def agent_conversation(client, model, turns):
    """An agent loop of `turns` tool-using turns, as agents write it: a long system prompt and the
    same tools every turn, the SDK's own message object appended after a plain answer, the
    assembled one after a stream (every other turn, with usage), then each tool call's result.
    Prints one `AGENT {json}` line per turn with the usage the SDK parsed (tests/prompt_cache.rs
    holds it against the fake Bedrock's prompt-cache accounting)."""
    system = "You are the records agent. Follow these rules.\n" + "".join(
        f"Rule {rule}: check the ledger entry {rule} against the archive before you answer.\n" for rule in range(200)
    )
    tools = [WEATHER_TOOL, TIME_TOOL]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Reconcile the ledger for March."}]
    for turn in range(turns):
        stream = turn % 2 == 1
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model=model, messages=messages, tools=tools, stream=True, stream_options={"include_usage": True}
                )
            )
            deltas, finishes, usage_chunk = strict_chunks(chunks, include_usage=True, model=model)
            calls = assemble_tool_calls(deltas)
            usage = usage_chunk.usage
            content = text_of(deltas) or None
            messages.append(
                {
                    "role": "assistant",
                    "content": content,
                    "tool_calls": [
                        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                        for c in calls
                    ],
                }
            )
        else:
            completion = client.chat.completions.create(model=model, messages=messages, tools=tools)
            choice = strict_completion(completion, model)
            finishes = [choice.finish_reason]
            calls = [{"id": c.id, "name": c.function.name} for c in choice.message.tool_calls or []]
            usage = completion.usage
            messages.append(choice.message)
        check(finishes == ["tool_calls"] and calls, f"turn {turn}: {finishes} {calls}")
        for call in calls:
            result = f"{call['name']}: entry {turn} balanced"
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        details = usage.prompt_tokens_details
        check(details is not None and details.cached_tokens is not None, f"turn {turn}: no cached_tokens in {usage}")
        seen = {
            "turn": turn,
            "stream": stream,
            "prompt_tokens": usage.prompt_tokens,
            "cached_tokens": details.cached_tokens,
            "cache_write_tokens": details.cache_write_tokens,
            "tool_calls": len(calls),
        }
        print("AGENT " + json.dumps(seen), flush=True)


def main():
    base_url = sys.argv[1].rstrip("/")
    if not base_url.endswith("/v1"):
        base_url += "/v1"
    # No retries: every call consumes exactly one scripted reply.
    client = OpenAI(base_url=base_url, api_key=os.environ["OPENAI_API_KEY"], max_retries=0, timeout=30)
    if len(sys.argv) > 3 and sys.argv[2] == "--matrix":
        print(f"openai {openai.__version__} against {base_url}", flush=True)
        model_matrix(client, sys.argv[3].split(","))
        return
    if len(sys.argv) > 4 and sys.argv[2] == "--agent":
        print(f"openai {openai.__version__} against {base_url}", flush=True)
        agent_conversation(client, sys.argv[3], int(sys.argv[4]))
        return
    state = {}
    print(f"openai {openai.__version__} against {base_url}", flush=True)
    steps = [
        # Keep in this order: tests/openai_sdk.rs queues one fake Bedrock reply per "bedrock" step.
        ("non_stream_text", "bedrock", lambda: non_stream_text(client)),
        ("stream_text", "bedrock", lambda: stream_text(client)),
        ("stream_text_without_usage", "bedrock", lambda: stream_text_without_usage(client)),
        ("tools_non_stream", "bedrock", lambda: tools_non_stream(client, state)),
        ("tools_stream", "bedrock", lambda: tools_stream(client, state)),
        ("tool_results_non_stream", "bedrock", lambda: tool_results_non_stream(client, state)),
        ("tool_results_stream", "bedrock", lambda: tool_results_stream(client, state)),
        ("json_schema_non_stream", "bedrock", lambda: json_schema_non_stream(client)),
        ("json_schema_stream", "bedrock", lambda: json_schema_stream(client)),
        ("parse_helper", "bedrock", lambda: parse_helper(client)),
        ("parse_helper_tools", "bedrock x2", lambda: parse_helper_tools(client)),
        ("stream_helper", "bedrock", lambda: stream_helper(client)),
        ("reasoning_non_stream", "bedrock", lambda: reasoning_non_stream(client)),
        ("reasoning_stream", "bedrock", lambda: reasoning_stream(client)),
        ("reasoning_stream_helper", "bedrock", lambda: reasoning_stream_helper(client, state)),
        ("reasoning_round_trip", "bedrock", lambda: reasoning_round_trip(client, state)),
        ("raw_response", "bedrock", lambda: raw_response(client)),
        ("models_list", "local", lambda: models_list(client)),
        ("models_retrieve", "local", lambda: models_retrieve(client)),
        ("unknown_model", "local", lambda: unknown_model(client)),
        ("unknown_model_stream", "local", lambda: unknown_model_stream(client)),
        ("bad_request", "local", lambda: bad_request(client)),
        ("rate_limited", "bedrock", lambda: rate_limited(client)),
        ("rate_limited_stream", "bedrock", lambda: rate_limited_stream(client)),
        ("error_mid_stream", "bedrock", lambda: error_mid_stream(client)),
        ("cut_stream", "bedrock", lambda: cut_stream(client)),
        ("async_stream", "bedrock x2", lambda: async_stream(base_url)),
    ]
    for name, _, run in steps:
        try:
            summary = run()
        except Exception as error:
            print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)
            raise
        print(f"ok {name}: {summary}", flush=True)
    print(f"all {len(steps)} steps passed", flush=True)


if __name__ == "__main__":
    main()
