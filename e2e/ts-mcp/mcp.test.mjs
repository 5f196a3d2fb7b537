// End-to-end test of Parley's MCP tools with the official TypeScript SDK
// client, against a running server and a built binary.
//
//   PARLEY_MCP_URL    streamable HTTP endpoint, e.g. http://127.0.0.1:8080/mcp
//   PARLEY_SSE_URL    the older HTTP+SSE transport's stream, e.g. http://127.0.0.1:8080/sse
//   PARLEY_API_KEY    a key of a user who may create chats and run completions
//   PARLEY_BIN        the parley binary, for `parley mcp` over stdio; it gets
//                     this process's environment (PARLEY_DATABASE_URL, ...)
//   PARLEY_PROJECT_ID, PARLEY_AI_PROVIDER_ID
//                     optional: which project and provider to use; by default
//                     the first provider the key can see
//
// A transport whose variables are missing is skipped, saying so.
// Run against a server: cd e2e/ts-mcp && npm ci && PARLEY_MCP_URL=... npm test
// Or self-contained (seeded SQLite, fake upstream, freshly built binary):
//   (cd e2e/ts-mcp && npm ci) && PARLEY_TS_E2E=1 go test ./mcp -run TestTypeScriptSDK

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

const { PARLEY_MCP_URL, PARLEY_SSE_URL, PARLEY_API_KEY, PARLEY_BIN } = process.env;

const SEED_TOOLS = [
  'create-chat', 'list-chats', 'get-chat', 'delete-chat',
  'create-chat-completion', 'create-chat-completion-for-chat',
];

function connectHTTP() {
  const transport = new StreamableHTTPClientTransport(new URL(PARLEY_MCP_URL), {
    requestInit: { headers: { Authorization: `Bearer ${PARLEY_API_KEY}` } },
  });
  return connect(transport);
}

// connectSSE opens the older HTTP+SSE transport: the key goes with the
// stream's GET and with every POST to the endpoint its first event names.
function connectSSE() {
  const transport = new SSEClientTransport(new URL(PARLEY_SSE_URL), {
    requestInit: { headers: { Authorization: `Bearer ${PARLEY_API_KEY}` } },
  });
  return connect(transport);
}

function connectStdio() {
  const env = { ...process.env };
  const transport = new StdioClientTransport({ command: PARLEY_BIN, args: ['mcp'], env, stderr: 'inherit' });
  return connect(transport);
}

async function connect(transport) {
  const client = new Client({ name: 'parley-e2e', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

// call runs a tool that must succeed and returns its structured content.
async function call(client, name, args, options) {
  const res = await client.callTool({ name, arguments: args }, undefined, options);
  const text = (res.content ?? []).map((c) => c.text ?? '').join('\n');
  assert.ok(!res.isError, `${name} failed: ${text}`);
  assert.ok(res.structuredContent, `${name} returned no structured content`);
  assert.ok(text.length > 0, `${name} returned no text`);
  return res.structuredContent;
}

async function pickProvider(client) {
  if (process.env.PARLEY_AI_PROVIDER_ID) {
    const p = await call(client, 'get-ai-provider', { aiProviderId: process.env.PARLEY_AI_PROVIDER_ID });
    return { projectId: p.projectId, aiProviderId: p.id };
  }
  const args = process.env.PARLEY_PROJECT_ID ? { projectId: process.env.PARLEY_PROJECT_ID } : {};
  const providers = await call(client, 'list-ai-providers', args);
  assert.ok(providers.data.length > 0, 'no AI provider is visible to this key; seed one (see the header of this file)');
  const p = providers.data[0];
  assert.equal(p.apiKey, undefined, 'an AI provider carries its key');
  return { projectId: p.projectId, aiProviderId: p.id };
}

// chatLife lists the tools, creates a chat, runs a streamed completion,
// continues it, reads the conversation and deletes the chat.
async function chatLife(client, label) {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  for (const name of SEED_TOOLS) assert.ok(names.includes(name), `tools/list lacks ${name}`);
  for (const t of tools) {
    assert.equal(t.outputSchema?.type, 'object', `${t.name} has no object output schema`);
    for (const hint of ['readOnlyHint', 'destructiveHint', 'idempotentHint', 'openWorldHint']) {
      assert.equal(typeof t.annotations?.[hint], 'boolean', `${t.name} does not set ${hint}`);
    }
  }

  const { projectId, aiProviderId } = await pickProvider(client);
  const chat = await call(client, 'create-chat', {
    projectId, aiProviderId, name: `e2e ${label}`, systemMessage: 'You are a test double. Answer briefly.',
  });
  assert.match(chat.id, /^cht_/);
  assert.equal(chat.projectId, projectId);
  const got = await call(client, 'get-chat', { chatId: chat.id });
  assert.deepEqual(got, chat);

  try {
    const deltas = [];
    const first = await call(client, 'create-chat-completion-for-chat',
      { chatId: chat.id, messages: [{ role: 'user', content: 'Say hello.' }] },
      { onprogress: (p) => deltas.push(p), timeout: 60_000 });
    assert.ok(first.content.length > 0, 'empty reply');
    assert.match(first.conversationId, /^cnv_/);
    assert.match(first.messageId, /^msg_/);
    assert.ok(first.model && first.finishReason, 'model or finishReason missing');
    assert.ok(first.usage.totalTokens > 0, 'no usage');
    assert.ok(deltas.length > 0, 'no progress notification arrived');
    assert.equal(deltas.map((d) => d.message).join(''), first.content, 'the deltas do not add up to the reply');
    deltas.forEach((d, i) => assert.equal(d.progress, i + 1, 'progress does not count the deltas'));

    const second = await call(client, 'create-chat-completion-for-chat', {
      chatId: chat.id, conversationId: first.conversationId, messages: [{ role: 'user', content: 'Again.' }],
    });
    assert.equal(second.conversationId, first.conversationId);

    const conv = await call(client, 'get-conversation', { conversationId: first.conversationId });
    assert.equal(conv.chatId, chat.id);
    assert.deepEqual(conv.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);
    assert.equal(conv.messages[1].content, first.content);

    const bad = await client.callTool({ name: 'create-chat-completion-for-chat', arguments: { chatId: chat.id, messages: [] } });
    assert.ok(bad.isError, 'empty messages did not fail');
    assert.match(bad.content[0].text, /^invalid_request: /);
  } finally {
    const del = await call(client, 'delete-chat', { chatId: chat.id });
    assert.deepEqual(del, { id: chat.id, deleted: true });
  }
  const gone = await client.callTool({ name: 'get-chat', arguments: { chatId: chat.id } });
  assert.ok(gone.isError);
  assert.match(gone.content[0].text, /^not_found: /);
}

test('streamable HTTP', { skip: !(PARLEY_MCP_URL && PARLEY_API_KEY) && 'PARLEY_MCP_URL or PARLEY_API_KEY is not set' }, async (t) => {
  await t.test('a request without a key gets 401 with a challenge', async () => {
    const res = await fetch(PARLEY_MCP_URL, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /);
    const body = await res.json();
    assert.equal(body.error.code, 'unauthenticated');
  });
  await t.test('a chat from creation to deletion', async () => {
    const client = await connectHTTP();
    try {
      await chatLife(client, 'http');
    } finally {
      await client.close();
    }
  });
});

// PARLEY_MCP_QUIET_URL is a streamable HTTP endpoint whose keep-alive is
// shorter than the upstream takes to answer "take your time": the call's
// response opens as an event stream of keep-alive comments, and the answer
// follows as its event.
test('streamable HTTP: a quiet call kept alive', { skip: !(process.env.PARLEY_MCP_QUIET_URL && PARLEY_API_KEY) && 'PARLEY_MCP_QUIET_URL is not set' }, async () => {
  const transport = new StreamableHTTPClientTransport(new URL(process.env.PARLEY_MCP_QUIET_URL), {
    requestInit: { headers: { Authorization: `Bearer ${PARLEY_API_KEY}` } },
  });
  const client = await connect(transport);
  try {
    const { aiProviderId } = await pickProvider(client);
    const out = await call(client, 'create-chat-completion', { aiProviderId, messages: [{ role: 'user', content: 'take your time' }] });
    assert.match(out.content, /take your time/);
    assert.ok(out.usage.totalTokens > 0, 'no usage');
  } finally {
    await client.close();
  }
});

test('HTTP+SSE', { skip: !(PARLEY_SSE_URL && PARLEY_API_KEY) && 'PARLEY_SSE_URL or PARLEY_API_KEY is not set' }, async (t) => {
  await t.test('a stream without a key gets 401 with a challenge', async () => {
    const res = await fetch(PARLEY_SSE_URL, { headers: { Accept: 'text/event-stream' } });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /);
    const body = await res.json();
    assert.equal(body.error.code, 'unauthenticated');
  });
  await t.test('a chat from creation to deletion', async () => {
    const client = await connectSSE();
    try {
      await chatLife(client, 'sse');
    } finally {
      await client.close();
    }
  });
});

test('stdio', { skip: !PARLEY_BIN && 'PARLEY_BIN is not set' }, async () => {
  const client = await connectStdio();
  try {
    await chatLife(client, 'stdio');
  } finally {
    await client.close();
  }
});
