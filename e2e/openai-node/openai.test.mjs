// End-to-end test of Parley's completions with the official `openai` npm
// client: the client encodes the requests, and its JSON and SSE parsers
// read every response, chunk and error Parley sends.
//
//   PARLEY_BASE_URL        Parley's REST base, e.g. http://127.0.0.1:8080/api/v1
//   PARLEY_API_KEY         a key that may use the provider and run completions in the chat
//   PARLEY_AI_PROVIDER_ID  the AI provider of the stateless completions
//   PARLEY_CHAT_ID         the chat of the per-chat completions
//   PARLEY_MODEL           optional: the model to ask for (else the provider's default)
//   PARLEY_ANTHROPIC_AI_PROVIDER_ID optional: an anthropic provider; its
//                          completions must read exactly as the OpenAI-wire ones
//   PARLEY_FAKE_UPSTREAM=1 optional: the provider is Parley's fake upstream
//                          (llm/llmtest), so replies are "echo: " plus the last
//                          user message, a user message that starts with
//                          "FAULT stream-error" fails mid-stream, one that starts
//                          with "SLOW" waits longer than Parley's keep-alive
//                          interval before each event (so the stream opens with
//                          keep-alive comments), and one that
//                          starts with "TOOLS" is answered with two tool calls
//                          (weather {"city":"Paris"} and clock {}) after "Checking.",
//                          and one that starts with "REFUSE" is refused with HTTP 400
//                          and the message "max_tokens is too large", and one that
//                          starts with "DECLINE" is declined by the model: its
//                          reply is the refusal FAKE_REFUSAL, content null; a
//                          request that ends with tool results is answered
//                          FAKE_AFTER_TOOLS; a request with Anthropic's
//                          thinking on thinks FAKE_THOUGHT first
//
// Against a running server: cd e2e/openai-node && npm ci && PARLEY_BASE_URL=... npm test
// Self-contained (SQLite, fake upstream): PARLEY_OPENAI_E2E=1 go test ./rest -run TestOpenAINodeClient
//
// Paths: the SDK's chat.completions.create posts to `${baseURL}/chat/completions`,
// which Parley serves beside its own paths: the stateless completions with
// the base URL …/api/v1 (aiProviderId in the body, which the SDK sends as
// given), a chat's with …/api/v1/chats/{chatId}; models.list gets
// `${baseURL}/models` (the stateless one with aiProviderId as a query
// parameter). So every call here is the SDK's own method with nothing
// overridden but the base URL.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { APIError, AuthenticationError, BadRequestError, NotFoundError } from 'openai';
import { VERSION } from 'openai/version';

const env = process.env;
const REQUIRED = ['PARLEY_BASE_URL', 'PARLEY_API_KEY', 'PARLEY_AI_PROVIDER_ID', 'PARLEY_CHAT_ID'];
const missing = REQUIRED.filter((name) => !env[name]);
const skip = missing.length > 0 && `${missing.join(', ')} not set`;
const FAKE = env.PARLEY_FAKE_UPSTREAM === '1';

// Retries off: a test sees exactly what Parley answered.
const client = skip ? null : new OpenAI({ baseURL: env.PARLEY_BASE_URL, apiKey: env.PARLEY_API_KEY, maxRetries: 0, timeout: 60_000 });
// chat runs the per-chat completions: the chat is its base URL.
const chatClient = skip ? null : new OpenAI({ baseURL: `${env.PARLEY_BASE_URL}/chats/${env.PARLEY_CHAT_ID}`, apiKey: env.PARLEY_API_KEY, maxRetries: 0, timeout: 60_000 });

// statelessBody is Parley's stateless request: only the fields it knows.
function statelessBody(content, extra = {}) {
  const body = { aiProviderId: env.PARLEY_AI_PROVIDER_ID, messages: [{ role: 'user', content }], ...extra };
  if (env.PARLEY_MODEL) body.model = env.PARLEY_MODEL;
  return body;
}

// The providers the provider-blind tests run through.
const PROVIDERS = [['an OpenAI-wire provider', () => env.PARLEY_AI_PROVIDER_ID]];
if (env.PARLEY_ANTHROPIC_AI_PROVIDER_ID) PROVIDERS.push(['an Anthropic provider', () => env.PARLEY_ANTHROPIC_AI_PROVIDER_ID]);

const TOOLS = [
  { type: 'function', function: { name: 'weather', description: 'Current weather in a city.', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } },
  { type: 'function', function: { name: 'clock' } },
];
const FAKE_TOOL_CALLS = [
  { id: 'call_paris', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } },
  { id: 'call_now', type: 'function', function: { name: 'clock', arguments: '{}' } },
];

// FAKE_AFTER_TOOLS is the fake model's reply to a request that ends with
// tool results.
const FAKE_AFTER_TOOLS = 'It is 18C in Paris at noon.';

// FAKE_THOUGHT is the fake model's thinking when a request turns
// Anthropic's thinking on.
const FAKE_THOUGHT = 'I should call the tools.';

// FAKE_REFUSAL is the fake model's refusal of a prompt starting "DECLINE".
const FAKE_REFUSAL = "I'm sorry, I can't help with that.";

function assertReply(text, prompt) {
  if (FAKE) assert.equal(text, `echo: ${prompt}`);
  else assert.ok(text.length > 0, 'empty reply');
}

function assertUsage(usage, where) {
  assert.ok(usage, `${where} has no usage`);
  assert.ok(usage.prompt_tokens > 0, `${where}: prompt_tokens = ${usage.prompt_tokens}`);
  assert.ok(usage.completion_tokens > 0, `${where}: completion_tokens = ${usage.completion_tokens}`);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens, `${where}: total_tokens`);
}

// assertCompletion checks a chat.completion object; model is the one asked
// for, if any.
function assertCompletion(c, prompt, model) {
  assert.equal(c.object, 'chat.completion');
  assert.match(c.id, /^msg_/);
  assert.equal(c.messageId, c.id, 'messageId is not the completion id');
  assert.equal(typeof c.created, 'number');
  assert.ok(c.model, 'no model');
  if (FAKE && model) assert.equal(c.model, model);
  assert.equal(c.choices.length, 1);
  assert.equal(c.choices[0].index, 0);
  assert.equal(c.choices[0].message.role, 'assistant');
  assert.equal(c.choices[0].finish_reason, 'stop');
  assertReply(c.choices[0].message.content, prompt);
  assertUsage(c.usage, 'the completion');
}

// collect reads a stream to its end through the SDK's parser (which
// throws on a chunk that is not JSON and on an error event) and checks that
// each chunk is an OpenAI chat.completion.chunk.
async function collect(stream) {
  const chunks = [];
  let text = '';
  for await (const chunk of stream) {
    const n = chunks.length;
    assert.equal(chunk.object, 'chat.completion.chunk', `chunk ${n}: ${JSON.stringify(chunk)}`);
    assert.equal(typeof chunk.id, 'string');
    assert.equal(typeof chunk.created, 'number');
    assert.equal(typeof chunk.model, 'string');
    assert.ok(Array.isArray(chunk.choices), `chunk ${n} has no choices array`);
    if (n > 0) assert.equal(chunk.id, chunks[0].id, `chunk ${n} changed the id`);
    for (const choice of chunk.choices) {
      assert.equal(choice.index, 0);
      assert.equal(typeof choice.delta, 'object');
      if (choice.delta.content != null) text += choice.delta.content;
    }
    chunks.push(chunk);
  }
  assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`);
  const first = chunks[0];
  const last = chunks[chunks.length - 1];
  assert.match(first.messageId ?? '', /^msg_/, `the first chunk carries no messageId: ${JSON.stringify(first)}`);
  assert.equal(first.id, first.messageId);
  assert.equal(first.choices[0]?.delta.role, 'assistant');
  const finishes = chunks.flatMap((c) => c.choices.map((ch) => ch.finish_reason)).filter((r) => r != null);
  assert.deepEqual(finishes, ['stop'], 'want exactly one finish_reason, "stop"');
  assertUsage(last.usage, 'the last chunk');
  for (const c of chunks.slice(0, -1)) assert.equal(c.usage ?? undefined, undefined, 'usage before the last chunk');
  return { chunks, first, last, text };
}

// assertDebug checks a debug object (debug: true): the provider, the
// model, the messages sent upstream ending with the prompt, with secrets
// redacted, and sane timings in milliseconds.
function assertDebug(debug, prompt, where) {
  assert.ok(debug, `${where} has no debug`);
  assert.match(debug.provider?.id ?? '', /^aip_/, `${where}: debug.provider ${JSON.stringify(debug.provider)}`);
  assert.equal(typeof debug.model, 'string');
  const last = debug.messages[debug.messages.length - 1];
  assert.deepEqual({ role: last.role, content: last.content }, { role: 'user', content: prompt.replace('hunter2', '[redacted]') });
  assert.ok(!JSON.stringify(debug).includes('hunter2'), `${where}: debug shows the password`);
  const { queueMs, firstByteMs, totalMs } = debug.timings;
  assert.ok(queueMs >= 0 && firstByteMs >= 0 && totalMs > 0 && queueMs + firstByteMs <= totalMs, `${where}: debug.timings ${JSON.stringify(debug.timings)}`);
}

test('openai npm client', { skip }, async (t) => {
  t.diagnostic(`openai ${VERSION} on Node ${process.version}`);
  await t.test('stateless, not streamed: chat.completions.create', async () => {
    const prompt = 'Hello from the openai SDK';
    const { data, response, request_id } = await client.chat.completions.create(statelessBody(prompt)).withResponse();
    assert.equal(response.status, 200);
    assert.ok(request_id, 'no X-Request-Id');
    assertCompletion(data, prompt, env.PARLEY_MODEL);
    assert.equal(data.conversationId, undefined, 'a stateless completion has a conversationId');
  });

  await t.test('stateless, streamed: chat.completions.create with stream: true', async () => {
    const prompt = 'one two three four five six';
    const stream = await client.chat.completions.create(statelessBody(prompt, { stream: true }));
    const { first, text } = await collect(stream);
    assertReply(text, prompt);
    assert.equal(first.conversationId, undefined, 'a stateless stream has a conversationId');
  });

  await t.test("stateless, streamed: the SDK's chat.completions.stream helper accumulates the chunks", async () => {
    const prompt = 'accumulate these words';
    const runner = client.chat.completions.stream(statelessBody(prompt));
    const deltas = [];
    runner.on('content', (delta) => deltas.push(delta));
    const final = await runner.finalChatCompletion();
    assertReply(final.choices[0].message.content, prompt);
    assert.equal(deltas.join(''), final.choices[0].message.content);
    assert.equal(final.choices[0].finish_reason, 'stop');
    assert.equal(final.choices[0].message.role, 'assistant');
    assert.match(final.id, /^msg_/);
  });

  for (const [name, provider] of PROVIDERS.slice(1)) {
    await t.test(`stateless through ${name}: the same chat.completion and chunks`, async () => {
      const prompt = 'which provider answered';
      const c = await client.chat.completions.create(statelessBody(prompt, { aiProviderId: provider() }));
      assertCompletion(c, prompt, env.PARLEY_MODEL);
      const stream = await client.chat.completions.create(statelessBody(prompt, { aiProviderId: provider(), stream: true }));
      const { text } = await collect(stream);
      assertReply(text, prompt);
    });
  }

  for (const [name, provider] of PROVIDERS) {
    await t.test(`tool calls through ${name}: in the message, and as deltas the SDK accumulates`, { skip: !FAKE && 'needs PARLEY_FAKE_UPSTREAM=1' }, async () => {
      const body = statelessBody('TOOLS weather in Paris?', { aiProviderId: provider(), tools: TOOLS });
      const c = await client.chat.completions.create(body);
      assert.equal(c.choices[0].finish_reason, 'tool_calls');
      assert.equal(c.choices[0].message.content, 'Checking.');
      assert.deepEqual(c.choices[0].message.tool_calls, FAKE_TOOL_CALLS);

      const runner = client.chat.completions.stream(body);
      const final = await runner.finalChatCompletion();
      assert.equal(final.choices[0].finish_reason, 'tool_calls');
      assert.equal(final.choices[0].message.content, 'Checking.');
      assert.deepEqual(
        final.choices[0].message.tool_calls.map(({ id, type, function: f }) => ({ id, type, function: { name: f.name, arguments: f.arguments } })),
        FAKE_TOOL_CALLS,
      );
    });
  }

  for (const [name, provider] of PROVIDERS) {
    await t.test(`runTools through ${name}: the SDK's own tool loop, its calls' results sent back as it sends them`, { skip: !FAKE && 'needs PARLEY_FAKE_UPSTREAM=1' }, async () => {
      const called = [];
      const runner = client.chat.completions.runTools({
        ...statelessBody('TOOLS weather in Paris?', { aiProviderId: provider() }),
        tools: [
          { type: 'function', function: { ...TOOLS[0].function, parse: JSON.parse, function: ({ city }) => { called.push(`weather ${city}`); return '18C'; } } },
          { type: 'function', function: { name: 'clock', parameters: { type: 'object', properties: {} }, function: () => { called.push('clock'); return 'noon'; } } },
        ],
      });
      // The fake answers tool results with FAKE_AFTER_TOOLS.
      assert.equal(await runner.finalContent(), FAKE_AFTER_TOOLS);
      assert.deepEqual(called.sort(), ['clock', 'weather Paris']); // run at once, in either order
      const sent = runner.messages.map((m) => m.role);
      assert.deepEqual(sent, ['user', 'assistant', 'tool', 'tool', 'assistant']);
    });
  }

  await t.test('runTools with Anthropic\'s thinking: reasoning_content apart, the signed thinking back with the calls', { skip: (!FAKE || !env.PARLEY_ANTHROPIC_AI_PROVIDER_ID) && 'needs PARLEY_FAKE_UPSTREAM=1 and an Anthropic provider' }, async () => {
    // thinking in Anthropic's spelling, as its OpenAI-compatible endpoint
    // takes it. Anthropic refuses tool results whose calls come back
    // without the thinking before them (the fake too). runTools sends the
    // assistant message back rebuilt from the fields the SDK knows, without
    // extra_content: Parley sends the calls with the thinking it remembers
    // of them.
    const runner = client.chat.completions.runTools({
      ...statelessBody('TOOLS weather in Paris?', { aiProviderId: env.PARLEY_ANTHROPIC_AI_PROVIDER_ID }),
      thinking: { type: 'enabled', budget_tokens: 2048 },
      tools: [
        { type: 'function', function: { ...TOOLS[0].function, parse: JSON.parse, function: () => '18C' } },
        { type: 'function', function: { name: 'clock', parameters: { type: 'object', properties: {} }, function: () => 'noon' } },
      ],
    });
    assert.equal(await runner.finalContent(), FAKE_AFTER_TOOLS);
    const [, calling, , , answer] = runner.messages;
    assert.equal(calling.reasoning_content, FAKE_THOUGHT, JSON.stringify(calling));
    assert.equal(calling.tool_calls[0].extra_content?.anthropic?.thinking?.[0]?.thinking, FAKE_THOUGHT, JSON.stringify(calling.tool_calls[0]));
    assert.equal(answer.reasoning_content, FAKE_THOUGHT);
  });

  await t.test("the SDK's own parameters: max_tokens, top_p, stream_options, response_format", async () => {
    // The Go side checks what reached the upstream (the prompt starts "SPELLING").
    const prompt = 'SPELLING the fields as the SDK does';
    const stream = await client.chat.completions.create(statelessBody(prompt, {
      max_tokens: 42, top_p: 0.5, stream: true, stream_options: { include_usage: true }, response_format: { type: 'text' },
    }));
    const { text } = await collect(stream);
    assertReply(text, prompt);
  });

  await t.test('stateless, streamed after a quiet start: keep-alive comments before the first chunk', { skip: !FAKE && 'needs PARLEY_FAKE_UPSTREAM=1' }, async () => {
    const prompt = 'SLOW thinking first';
    const stream = await client.chat.completions.create(statelessBody(prompt, { stream: true }));
    const { text } = await collect(stream);
    assertReply(text, prompt);
  });

  let conversationId;
  await t.test('per chat, streamed: chat.completions.create at the chat\'s base URL', async () => {
    const prompt = 'stream in a chat please';
    const stream = await chatClient.chat.completions.create({ messages: [{ role: 'user', content: prompt }], stream: true });
    const { first, text } = await collect(stream);
    assertReply(text, prompt);
    assert.match(first.conversationId ?? '', /^cnv_/, `the first chunk carries no conversationId: ${JSON.stringify(first)}`);
    conversationId = first.conversationId;
  });

  await t.test('per chat, not streamed: chat.completions.create continues the conversation', async () => {
    assert.ok(conversationId, 'the streamed per-chat test did not run');
    const prompt = 'and continue it';
    const c = await chatClient.chat.completions.create({ conversationId, messages: [{ role: 'user', content: prompt }] });
    assertCompletion(c, prompt);
    assert.equal(c.conversationId, conversationId);
  });

  await t.test('per chat, streamed: a continuation names its conversation in the first chunk', async () => {
    const prompt = 'a third turn';
    const stream = await chatClient.chat.completions.create({ conversationId, messages: [{ role: 'user', content: prompt }], stream: true });
    const { first, text } = await collect(stream);
    assertReply(text, prompt);
    assert.equal(first.conversationId, conversationId);
  });

  await t.test('per chat, an Idempotency-Key sent again: the stored turn, as JSON and as a stream the SDK parses', async () => {
    const prompt = 'say this once';
    const headers = { 'Idempotency-Key': `e2e-${Date.now()}-${Math.random()}` };
    const body = { messages: [{ role: 'user', content: prompt }] }; // a conversation of its own
    const first = await chatClient.chat.completions.create(body, { headers }).withResponse();
    assertCompletion(first.data, prompt);
    assert.match(first.data.conversationId, /^cnv_/);
    assert.equal(first.response.headers.get('idempotent-replayed'), null);
    const again = await chatClient.chat.completions.create(body, { headers }).withResponse();
    assert.equal(again.response.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(again.data, first.data);
    const { first: chunk, last, text } = await collect(await chatClient.chat.completions.create({ ...body, stream: true }, { headers }));
    assert.equal(text, first.data.choices[0].message.content);
    assert.equal(chunk.id, first.data.id);
    assert.equal(chunk.conversationId, first.data.conversationId);
    assert.deepEqual(last.usage, first.data.usage);
  });

  await t.test('a model that declines: message.refusal, which the stream helper accumulates and the conversation keeps', { skip: !FAKE && 'needs PARLEY_FAKE_UPSTREAM=1' }, async () => {
    const prompt = 'DECLINE share a secret';
    const c = await client.chat.completions.create(statelessBody(prompt));
    assert.equal(c.choices[0].message.refusal, FAKE_REFUSAL);
    assert.equal(c.choices[0].message.content, null);

    const runner = client.chat.completions.stream(statelessBody(prompt));
    const deltas = [];
    runner.on('refusal.delta', ({ delta }) => deltas.push(delta));
    const final = await runner.finalChatCompletion();
    assert.equal(final.choices[0].message.refusal, FAKE_REFUSAL);
    assert.equal(deltas.join(''), FAKE_REFUSAL);

    const turn = await chatClient.chat.completions.create({ messages: [{ role: 'user', content: prompt }] });
    assert.equal(turn.choices[0].message.refusal, FAKE_REFUSAL);
    const conv = await client.get(`/conversations/${turn.conversationId}`);
    assert.deepEqual(conv.messages.map((m) => [m.role, m.content, m.refusal]), [['user', prompt, undefined], ['assistant', '', FAKE_REFUSAL]]);
    // Sent back in the client's own history, as the SDK's types allow.
    const history = [{ role: 'user', content: prompt }, { role: 'assistant', refusal: FAKE_REFUSAL }, { role: 'user', content: 'then a joke' }];
    const next = await client.chat.completions.create(statelessBody('then a joke', { messages: history }));
    assertReply(next.choices[0].message.content, 'then a joke');
  });

  await t.test('per chat, streamed: stopping the stream keeps the turn as far as it went, and the next message continues it', { skip: !FAKE && 'needs PARLEY_FAKE_UPSTREAM=1' }, async () => {
    const prompt = 'HANG after a few words';
    const stream = await chatClient.chat.completions.create({ conversationId, messages: [{ role: 'user', content: prompt }], stream: true });
    let seen = '';
    for await (const chunk of stream) {
      for (const choice of chunk.choices) seen += choice.delta.content ?? '';
      if (seen !== '') break;
    }
    stream.controller.abort(); // a chat UI's "stop generating"
    assert.ok(`echo: ${prompt}`.startsWith(seen), `text before the stop: ${JSON.stringify(seen)}`);

    // Parley stores the turn once the upstream call has ended.
    let last;
    for (let i = 0; i < 100; i++) {
      const conv = await client.get(`/conversations/${conversationId}`);
      if (conv.messages.length === 8) { last = conv.messages[7]; break; }
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(last, 'the stopped turn was not stored');
    assert.equal(last.role, 'assistant');
    assert.equal(last.finishReason, 'client_disconnect');
    assert.ok(last.content.startsWith(seen) && `echo: ${prompt}`.startsWith(last.content), `stored reply: ${JSON.stringify(last.content)}`);

    const next = 'go on';
    const c = await chatClient.chat.completions.create({ conversationId, messages: [{ role: 'user', content: next }] });
    assertCompletion(c, next);
    assert.equal(c.conversationId, conversationId);
  });

  await t.test('debug: true, stateless and per chat: a debug object, in a stream\'s last chunk, read by the SDK', async () => {
    const prompt = 'debug me, password=hunter2';
    const c = await client.chat.completions.create(statelessBody(prompt, { debug: true }));
    assertCompletion(c, prompt, env.PARLEY_MODEL);
    assertDebug(c.debug, prompt, 'the completion');

    const stream = await client.chat.completions.create(statelessBody(prompt, { debug: true, stream: true }));
    const { chunks, last, text } = await collect(stream);
    assertReply(text, prompt);
    assertDebug(last.debug, prompt, 'the last chunk');
    for (const c of chunks.slice(0, -1)) assert.equal(c.debug, undefined, 'debug before the last chunk');

    // A continuation: debug shows the conversation's history before the prompt.
    assert.ok(conversationId, 'the streamed per-chat test did not run');
    const turn = await chatClient.chat.completions.create({ conversationId, messages: [{ role: 'user', content: prompt }], debug: true, stream: true });
    const chat = await collect(turn);
    assertDebug(chat.last.debug, prompt, 'the per-chat last chunk');
    assert.ok(chat.last.debug.messages.some((m) => m.content === 'stream in a chat please'), 'debug lacks the conversation\'s history');
  });

  await t.test('a bad request throws a BadRequestError carrying Parley\'s envelope', async () => {
    const cases = [
      { body: statelessBody('x', { messages: [] }), field: 'messages' },
      // A parameter of the SDK's that Parley does not take is refused by name,
      // as is one field sent in both spellings, the SDK's and Parley's.
      { body: statelessBody('x', { logit_bias: { 50256: -100 } }), field: 'logit_bias' },
      { body: statelessBody('x', { max_tokens: 5, maxTokens: 5 }), field: 'max_tokens' },
      { body: statelessBody('x', { stream: true, temperature: 7 }), field: 'temperature' },
    ];
    for (const { body, field } of cases) {
      await assert.rejects(client.chat.completions.create(body), (err) => {
        assert.ok(err instanceof BadRequestError, `${field}: ${err}`);
        assert.ok(err instanceof APIError);
        assert.equal(err.status, 400);
        assert.equal(err.code, 'invalid_request');
        assert.equal(err.error.code, 'invalid_request');
        assert.equal(err.error.details?.field, field);
        assert.ok(err.error.message.length > 0);
        assert.equal(err.message, `400 ${err.error.message}`);
        assert.ok(err.requestID, 'the error has no request id');
        return true;
      });
    }
    await assert.rejects(chatClient.chat.completions.create({ messages: [{ role: 'user' }], stream: true }), (err) => {
      assert.ok(err instanceof BadRequestError, String(err));
      assert.equal(err.error.details?.field, 'messages[0]');
      return true;
    });
  });

  await t.test('a request the provider refuses is a BadRequestError, which the SDK does not retry', { skip: !FAKE && 'needs PARLEY_FAKE_UPSTREAM=1' }, async () => {
    // The SDK's default retries (2, for 408, 409, 429 and 5xx): were the
    // refusal a 502, the provider would be sent it three times. The Go
    // side counts the upstream's requests. With debug: true, the error
    // shows what went upstream, where the SDK exposes it.
    const retrying = new OpenAI({ baseURL: env.PARLEY_BASE_URL, apiKey: env.PARLEY_API_KEY });
    for (const stream of [false, true]) {
      const prompt = `REFUSE stream=${stream}`;
      await assert.rejects(retrying.chat.completions.create(statelessBody(prompt, { stream, debug: true })), (err) => {
        assert.ok(err instanceof BadRequestError, String(err));
        assert.equal(err.status, 400);
        assert.equal(err.error.code, 'invalid_request');
        assert.equal(err.error.details?.upstreamStatus, 400);
        assert.match(err.error.message, /HTTP 400\): max_tokens is too large/);
        assertDebug(err.error.debug, prompt, `the refusal (stream ${stream})`);
        return true;
      });
    }
  });

  await t.test('models.list at either base URL: the provider\'s models, through the SDK\'s page', async () => {
    // The stateless base URL needs the provider, as a query parameter.
    const lists = [
      ['stateless', await client.models.list({ query: { aiProviderId: env.PARLEY_AI_PROVIDER_ID } })],
      ['per chat', await chatClient.models.list()],
    ];
    for (const [where, page] of lists) {
      const ids = [];
      for await (const model of page) {
        assert.equal(model.object, 'model', `${where}: ${JSON.stringify(model)}`);
        assert.equal(typeof model.created, 'number', `${where}: created`);
        assert.equal(typeof model.owned_by, 'string', `${where}: owned_by`);
        ids.push(model.id);
      }
      assert.ok(ids.length > 0, `${where}: no models`);
      if (FAKE) assert.deepEqual(ids, ['fake-small', 'fake-large'], where);
      assert.equal(page.hasNextPage(), false, `${where}: the list comes whole`);
    }
    await assert.rejects(client.models.list(), (err) => {
      assert.ok(err instanceof BadRequestError, String(err));
      assert.equal(err.error.details?.field, 'aiProviderId');
      return true;
    });
  });

  await t.test('models.retrieve at either base URL: one model of the list, or a NotFoundError', async () => {
    const [first] = (await chatClient.models.list()).data;
    for (const [where, model] of [
      ['stateless', await client.models.retrieve(first.id, { query: { aiProviderId: env.PARLEY_AI_PROVIDER_ID } })],
      ['per chat', await chatClient.models.retrieve(first.id)],
    ]) {
      assert.equal(model.id, first.id, where);
      assert.equal(model.object, 'model', where);
    }
    await assert.rejects(chatClient.models.retrieve('no-such/model'), (err) => {
      assert.ok(err instanceof NotFoundError, String(err));
      assert.match(err.error.message, /lists no model "no-such\/model"/);
      return true;
    });
  });

  await t.test('a wrong key throws an AuthenticationError', async () => {
    const stranger = new OpenAI({ baseURL: env.PARLEY_BASE_URL, apiKey: 'pk_not_a_key', maxRetries: 0 });
    await assert.rejects(stranger.chat.completions.create(statelessBody('x')), (err) => {
      assert.ok(err instanceof AuthenticationError, String(err));
      assert.equal(err.status, 401);
      assert.equal(err.error.code, 'unauthenticated');
      return true;
    });
  });

  await t.test('an upstream failure mid-stream surfaces as an APIError from the iterator', { skip: !FAKE && 'needs PARLEY_FAKE_UPSTREAM=1' }, async () => {
    const prompt = 'FAULT stream-error after two words';
    const stream = await client.chat.completions.create(statelessBody(prompt, { stream: true, debug: true }));
    const seen = [];
    await assert.rejects(
      (async () => {
        for await (const chunk of stream) seen.push(chunk);
      })(),
      (err) => {
        assert.ok(err instanceof APIError, String(err));
        assert.equal(err.error?.code, 'upstream_error', JSON.stringify(err.error));
        assert.ok(err.error.message.length > 0);
        assertDebug(err.error.debug, prompt, 'the error event');
        return true;
      },
    );
    assert.match(seen[0]?.messageId ?? '', /^msg_/, 'the stream did not start before the error');
    const text = seen.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? '')).join('');
    assert.equal(text, 'echo: FAULT ', 'the deltas before the fault did not arrive');
  });
});
