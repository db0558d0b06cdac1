// Drives a byollm gateway with the official OpenAI Node SDK.
//
// Usage: node tests/openai_client.mjs http://127.0.0.1:PORT
//
// The SDK is installed in tests/node (`npm ci --prefix tests/node`). Run by tests/openai_sdk.rs,
// which queues the fake Bedrock's replies in exactly the order of the calls below that reach
// Bedrock (marked "bedrock") before starting this script. Every step prints one line; a failed
// check throws, so the exit status is non-zero.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(new URL('./node/package.json', import.meta.url));
const sdk = require('openai');
const OpenAI = sdk.OpenAI ?? sdk.default;
const { APIError, BadRequestError, NotFoundError, RateLimitError } = sdk;
const sdkVersion = JSON.parse(readFileSync(join(dirname(require.resolve('openai')), 'package.json'), 'utf8')).version;

const MODEL = 'claude-haiku-4-5';
const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Current weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
];
const WEATHER_SCHEMA = {
  type: 'object',
  properties: { city: { type: 'string' }, temp_c: { type: 'integer' } },
  required: ['city', 'temp_c'],
  additionalProperties: false,
};

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${typeof message === 'string' ? message : JSON.stringify(message)}`);
}

function equal(actual, expected) {
  check(JSON.stringify(actual) === JSON.stringify(expected), `${JSON.stringify(actual)} != ${JSON.stringify(expected)}`);
}

const user = (text) => [
  { role: 'system', content: 'be brief' },
  { role: 'user', content: text },
];

function checkCompletion(completion) {
  equal(completion.object, 'chat.completion');
  check(completion.id.startsWith('chatcmpl-'), completion.id);
  equal(completion.model, MODEL);
  check(Number.isInteger(completion.created), completion);
  equal(completion.choices.length, 1);
  equal(completion.choices[0].message.role, 'assistant');
  const usage = completion.usage;
  equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
  return completion.choices[0];
}

async function collect(stream, includeUsage) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  check(chunks.length > 0, 'no chunks');
  for (const chunk of chunks) {
    equal(chunk.object, 'chat.completion.chunk');
    equal(chunk.id, chunks[0].id);
    equal(chunk.model, MODEL);
  }
  equal(chunks[0].choices[0].delta.role, 'assistant');
  let usage = null;
  let body = chunks;
  if (includeUsage) {
    const last = chunks[chunks.length - 1];
    equal(last.choices, []);
    check(last.usage, 'no usage in the last chunk');
    usage = last.usage;
    body = chunks.slice(0, -1);
  }
  check(body.every((c) => c.choices.length === 1 && c.usage == null), 'one choice and no usage per chunk');
  const deltas = body.map((c) => c.choices[0].delta);
  const finishes = body.map((c) => c.choices[0].finish_reason).filter(Boolean);
  const text = deltas.map((d) => d.content ?? '').join('');
  return { deltas, finishes, usage, text };
}

function assembleToolCalls(deltas) {
  const calls = [];
  for (const delta of deltas) {
    for (const fragment of delta.tool_calls ?? []) {
      const call = (calls[fragment.index] ??= { id: null, name: null, arguments: '' });
      if (fragment.id) call.id = fragment.id;
      if (fragment.function?.name) call.name = fragment.function.name;
      if (fragment.function?.arguments) call.arguments += fragment.function.arguments;
    }
  }
  return calls;
}

async function expectError(cls, promise) {
  try {
    await promise;
  } catch (error) {
    check(error instanceof cls, `expected ${cls.name}, got ${error?.constructor?.name}: ${error}`);
    return error;
  }
  throw new Error(`expected ${cls.name}, got no error`);
}

const baseURL = process.argv[2].replace(/\/$/, '').replace(/(\/v1)?$/, '/v1');
// No retries: every call consumes exactly one scripted reply.
const client = new OpenAI({ baseURL, apiKey: process.env.OPENAI_API_KEY, maxRetries: 0, timeout: 30_000 });
const state = {};

const steps = [
  // Keep in this order: tests/openai_sdk.rs queues one fake Bedrock reply per "bedrock" step.
  ['non_stream_text', 'bedrock', async () => {
    const completion = await client.chat.completions.create({ model: MODEL, messages: user('hi'), max_tokens: 100 });
    const choice = checkCompletion(completion);
    equal(choice.message.content, 'Hello there');
    equal(choice.finish_reason, 'stop');
    equal([completion.usage.prompt_tokens, completion.usage.completion_tokens], [20, 5]);
    return choice.message.content;
  }],
  ['stream_text', 'bedrock', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL, messages: user('count'), stream: true, stream_options: { include_usage: true },
    });
    const { finishes, usage, text } = await collect(stream, true);
    equal(text, 'One two three');
    equal(finishes, ['stop']);
    equal([usage.prompt_tokens, usage.completion_tokens], [9, 3]);
    return text;
  }],
  ['tools_non_stream', 'bedrock', async () => {
    const messages = user('weather in Paris?');
    const completion = await client.chat.completions.create({ model: MODEL, messages, tools: TOOLS });
    const choice = checkCompletion(completion);
    equal(choice.finish_reason, 'tool_calls');
    const call = choice.message.tool_calls[0];
    equal([call.id, call.type, call.function.name], ['toolu_1', 'function', 'get_weather']);
    equal(JSON.parse(call.function.arguments), { city: 'Paris' });
    state.toolTurn = [...messages, choice.message];
    return `${call.function.name}(${call.function.arguments})`;
  }],
  ['tools_stream', 'bedrock', async () => {
    // The SDK's stream helper accumulates the chunks into a final completion.
    const streamHelper = client.chat.completions.stream ? client.chat.completions : client.beta.chat.completions;
    const runner = streamHelper.stream({ model: MODEL, messages: user('both?'), tools: TOOLS, tool_choice: 'required' });
    const final = await runner.finalChatCompletion();
    const calls = final.choices[0].message.tool_calls;
    equal(calls.map((c) => [c.id, c.function.name]), [['toolu_2', 'get_weather'], ['toolu_3', 'get_time']]);
    equal(JSON.parse(calls[0].function.arguments), { city: 'Paris' });
    equal(JSON.parse(calls[1].function.arguments), { tz: 'CET' });
    equal(final.choices[0].finish_reason, 'tool_calls');
    return calls.map((c) => `${c.function.name}(${c.function.arguments})`).join(', ');
  }],
  ['tool_results', 'bedrock', async () => {
    const messages = [...state.toolTurn, { role: 'tool', tool_call_id: 'toolu_1', content: 'sunny, 21C' }];
    const stream = await client.chat.completions.create({ model: MODEL, messages, tools: TOOLS, stream: true });
    const { finishes, text } = await collect(stream, false);
    equal(text, 'It is sunny.');
    equal(finishes, ['stop']);
    return text;
  }],
  ['run_tools', 'bedrock x2', async () => {
    // The SDK's own agent loop: calls the function, sends its messages back, returns the answer.
    const helpers = client.chat.completions.runTools ? client.chat.completions : client.beta.chat.completions;
    const runner = helpers.runTools({
      model: MODEL,
      messages: user('weather in Paris?'),
      tools: [{
        type: 'function',
        function: {
          name: 'get_weather',
          parameters: TOOLS[0].function.parameters,
          parse: JSON.parse,
          function: async ({ city }) => `sunny in ${city}`,
        },
      }],
    });
    const content = await runner.finalContent();
    equal(content, 'Sunny in Paris.');
    const toolMessages = runner.messages.filter((m) => m.role === 'tool').map((m) => m.content);
    equal(toolMessages, ['sunny in Paris']);
    return content;
  }],
  ['json_schema', 'bedrock', async () => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: user('weather as json'),
      response_format: { type: 'json_schema', json_schema: { name: 'weather', schema: WEATHER_SCHEMA, strict: true } },
    });
    const choice = checkCompletion(completion);
    equal(choice.finish_reason, 'stop');
    equal(JSON.parse(choice.message.content), { city: 'Paris', temp_c: 21 });
    return choice.message.content;
  }],
  ['models_list', 'local', async () => {
    const ids = [];
    for await (const model of client.models.list()) {
      equal(model.object, 'model');
      ids.push(model.id);
    }
    check(ids.includes(MODEL), ids);
    return ids.join(', ');
  }],
  ['unknown_model', 'local', async () => {
    const error = await expectError(NotFoundError, client.chat.completions.create({ model: 'gpt-4o', messages: user('hi') }));
    equal([error.status, error.code, error.param], [404, 'model_not_found', 'model']);
    return `NotFoundError ${error.code}`;
  }],
  ['bad_request', 'local', async () => {
    const error = await expectError(BadRequestError, client.chat.completions.create({ model: MODEL, messages: user('hi'), n: 2 }));
    equal([error.status, error.param, error.type], [400, 'n', 'invalid_request_error']);
    return `BadRequestError param=${error.param}`;
  }],
  ['rate_limited', 'bedrock', async () => {
    const error = await expectError(RateLimitError, client.chat.completions.create({ model: MODEL, messages: user('hi') }));
    // Headers (v5+) or a plain object (v4).
    const retryAfter = typeof error.headers?.get === 'function' ? error.headers.get('retry-after') : error.headers?.['retry-after'];
    check(/^\d+$/.test(retryAfter ?? ''), `retry-after ${retryAfter}`);
    return `RateLimitError retry-after=${retryAfter}`;
  }],
  ['error_mid_stream', 'bedrock', async () => {
    const stream = await client.chat.completions.create({ model: MODEL, messages: user('hi'), stream: true });
    let text = '';
    const error = await expectError(APIError, (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    })());
    equal(text, 'ab');
    equal(error.error?.code, 'bedrock_error');
    return `${error.constructor.name} ${error.error.code} after ${JSON.stringify(text)}`;
  }],
];

console.log(`openai (node) ${sdkVersion} against ${baseURL}`);
for (const [name, , run] of steps) {
  try {
    console.log(`ok ${name}: ${await run()}`);
  } catch (error) {
    console.log(`FAIL ${name}: ${error?.stack ?? error}`);
    process.exit(1);
  }
}
console.log(`all ${steps.length} steps passed`);
