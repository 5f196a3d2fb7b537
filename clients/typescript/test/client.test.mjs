// ParleyClient against a running Parley: see env.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ParleyClient, ParleyError } from '../dist/index.js';
import { ADMIN_KEY, API_KEY, BASE_URL, CHAT, LIMITED_CHAT, PROVIDER, client, conversation, storedTurn } from './env.mjs';

async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

const text = (chunks) => chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');

test('complete per chat stores the turn and names its conversation', async () => {
  const res = await client.complete({ chatId: CHAT, messages: [{ role: 'user', content: 'Hello there' }] });
  assert.equal(res.object, 'chat.completion');
  assert.equal(res.choices[0].message.content, 'echo: Hello there');
  assert.equal(res.choices[0].finish_reason, 'stop');
  assert.match(res.conversationId, /^cnv_/);
  assert.match(res.messageId, /^msg_/);
  assert.ok(res.usage.total_tokens > 0);
  const stored = await conversation(res.conversationId);
  assert.deepEqual(stored.messages.map((m) => [m.role, m.content]), [['user', 'Hello there'], ['assistant', 'echo: Hello there']]);
});

test('complete stateless answers with the provider and stores nothing', async () => {
  const res = await client.complete({ aiProviderId: PROVIDER, messages: [{ role: 'user', content: 'stateless hi' }], temperature: 0.2, maxTokens: 50 });
  assert.equal(res.choices[0].message.content, 'echo: stateless hi');
  assert.equal(res.conversationId, undefined);
});

test('stream yields OpenAI chunks, and conversationId continues the conversation', async () => {
  const first = await collect(client.stream({ chatId: CHAT, messages: [{ role: 'user', content: 'one two three' }] }));
  assert.ok(first.length > 3, `got ${first.length} chunks`);
  assert.equal(first[0].object, 'chat.completion.chunk');
  assert.equal(text(first), 'echo: one two three');
  const conversationId = first[0].conversationId;
  assert.match(conversationId, /^cnv_/);
  assert.match(first[0].messageId, /^msg_/);
  const last = first[first.length - 1];
  assert.deepEqual(last.choices, []);
  assert.ok(last.usage.completion_tokens > 0);

  const second = await collect(client.stream({ chatId: CHAT, conversationId, messages: [{ role: 'user', content: 'four' }] }));
  assert.equal(text(second), 'echo: four');
  assert.equal(second[0].conversationId, conversationId);
  const stored = await conversation(conversationId);
  assert.deepEqual(stored.messages.map((m) => m.content), ['one two three', 'echo: one two three', 'four', 'echo: four']);
});

test('stream reads past keep-alive comments', async () => {
  const chunks = await collect(client.stream({ aiProviderId: PROVIDER, messages: [{ role: 'user', content: 'SLOW and steady' }] }));
  assert.equal(text(chunks), 'echo: SLOW and steady');
});

test('an error before the stream is a ParleyError with the envelope', async () => {
  await assert.rejects(collect(client.stream({ chatId: CHAT, messages: [{ role: 'user', content: 'hi' }], temperature: 7 })), (err) => {
    assert.ok(err instanceof ParleyError);
    assert.equal(err.status, 400);
    assert.equal(err.code, 'invalid_request');
    assert.equal(err.details.field, 'temperature');
    return true;
  });
  await assert.rejects(client.complete({ chatId: 'cht_00000000000000000000000000', messages: [{ role: 'user', content: 'hi' }] }), {
    name: 'ParleyError', status: 404, code: 'not_found',
  });
  const stranger = new ParleyClient({ baseUrl: BASE_URL, apiKey: 'pk_not-a-key' });
  await assert.rejects(stranger.complete({ chatId: CHAT, messages: [{ role: 'user', content: 'hi' }] }), (err) => {
    assert.equal(err.status, 401);
    assert.equal(err.code, 'unauthenticated');
    assert.ok(!err.message.includes('pk_not-a-key'), err.message);
    return true;
  });
});

test('an error event in the stream is thrown after the chunks before it', async () => {
  const seen = [];
  await assert.rejects(
    (async () => {
      for await (const chunk of client.stream({ chatId: CHAT, messages: [{ role: 'user', content: 'FAULT midway' }] })) seen.push(chunk);
    })(),
    (err) => {
      assert.ok(err instanceof ParleyError);
      assert.equal(err.status, 200);
      assert.equal(err.code, 'upstream_error');
      return true;
    },
  );
  assert.ok(text(seen).length > 0, 'the deltas before the error arrived');
});

test('aborting a stream stops it; Parley keeps the turn as far as it went', async () => {
  const controller = new AbortController();
  let conversationId;
  let got = '';
  await assert.rejects(
    (async () => {
      for await (const chunk of client.stream({ chatId: CHAT, messages: [{ role: 'user', content: 'HANG on a moment' }] }, { signal: controller.signal })) {
        conversationId ??= chunk.conversationId;
        got += chunk.choices[0]?.delta.content ?? '';
        if (got.length > 0) controller.abort();
      }
    })(),
    { name: 'AbortError' },
  );
  const reply = (await storedTurn(conversationId)).messages[1];
  assert.equal(reply.finishReason, 'client_disconnect');
  assert.ok(reply.content.startsWith(got), `stored ${JSON.stringify(reply.content)}, the client saw ${JSON.stringify(got)}`);
});

test('an abort with a reason of its own rethrows that reason, also after the headers', async () => {
  const reason = new Error('the app gave up');
  const controller = new AbortController();
  await assert.rejects(
    (async () => {
      for await (const chunk of client.stream({ chatId: CHAT, messages: [{ role: 'user', content: 'HANG on a moment' }] }, { signal: controller.signal })) {
        if (chunk.choices[0]?.delta.content) controller.abort(reason);
      }
    })(),
    (err) => err === reason,
  );
});

test('the same Idempotency-Key is answered with the stored turn', async () => {
  const key = `ts-client-${Date.now()}`;
  const request = { chatId: CHAT, messages: [{ role: 'user', content: 'only once' }] };
  const first = await client.complete(request, { idempotencyKey: key });
  const again = await client.complete(request, { idempotencyKey: key });
  assert.equal(again.id, first.id);
  assert.equal(again.conversationId, first.conversationId);
  const streamed = await collect(client.stream(request, { idempotencyKey: key }));
  assert.equal(streamed[0].id, first.id);
  assert.equal(text(streamed), 'echo: only once');
});

test('a request without chatId or aiProviderId is refused before sending', async () => {
  await assert.rejects(client.complete({ messages: [{ role: 'user', content: 'hi' }] }), TypeError);
  assert.throws(() => new ParleyClient({ apiKey: API_KEY }), TypeError);
});

test('without an apiKey no Authorization is sent (a proxy in front of Parley adds it)', async () => {
  const sent = [];
  const keyless = new ParleyClient({ baseUrl: BASE_URL, fetch: (url, init) => { sent.push(init.headers); return fetch(url, init); } });
  await assert.rejects(keyless.complete({ chatId: CHAT, messages: [{ role: 'user', content: 'hi' }] }), (err) => err instanceof ParleyError && err.status === 401);
  assert.equal(sent.length, 1);
  assert.equal(sent[0].Authorization, undefined);
});

test('leaving the loop closes the connection, as an abort does', async () => {
  let conversationId;
  for await (const chunk of client.stream({ chatId: CHAT, messages: [{ role: 'user', content: 'HANG and break' }] })) {
    conversationId ??= chunk.conversationId;
    if (chunk.choices[0]?.delta.content) break;
  }
  // Parley saw the client go: it stored the turn as far as it went.
  assert.equal((await storedTurn(conversationId)).messages[1].finishReason, 'client_disconnect');
});

test('a 429 carries Retry-After as retryAfter', async () => {
  const limited = new ParleyClient({ baseUrl: BASE_URL, apiKey: ADMIN_KEY });
  const request = { chatId: LIMITED_CHAT, messages: [{ role: 'user', content: 'hi' }] };
  await limited.complete(request);
  await assert.rejects(limited.complete(request), (err) => {
    assert.ok(err instanceof ParleyError);
    assert.equal(err.status, 429);
    assert.equal(err.code, 'rate_limited');
    assert.ok(err.retryAfter > 0 && err.retryAfter <= 60, `retryAfter ${err.retryAfter}`);
    return true;
  });
});

test('Parley unreachable is a ParleyError with status 0', async () => {
  const nowhere = new ParleyClient({ baseUrl: 'http://127.0.0.1:1/api/v1', apiKey: 'pk_x' });
  await assert.rejects(nowhere.complete({ chatId: CHAT, messages: [{ role: 'user', content: 'hi' }] }), { name: 'ParleyError', status: 0, code: 'network' });
});

test('a data line that is no JSON is a network ParleyError, not a SyntaxError', async () => {
  const body = 'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: <html>gateway</html>\n\n';
  const mangled = new ParleyClient({ baseUrl: BASE_URL, fetch: async () => new Response(body, { headers: { 'Content-Type': 'text/event-stream' } }) });
  const seen = [];
  await assert.rejects(async () => {
    for await (const chunk of mangled.stream({ chatId: CHAT, messages: [{ role: 'user', content: 'hi' }] })) seen.push(chunk);
  }, (err) => {
    assert.ok(err instanceof ParleyError, `got ${err}`);
    assert.equal(err.code, 'network');
    assert.match(err.message, /no JSON \("<html>gateway<\/html>"\)/);
    return true;
  });
  assert.equal(seen.length, 1);
});
