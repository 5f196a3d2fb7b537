// End-to-end test of Parley's TypeScript client in a real browser: headless
// Chromium (the system's, driven by playwright-core; no browser is
// downloaded) opens a page at another origin than Parley's, which loads
// clients/typescript/dist as ES modules, and the calls below run in that
// page, under the browser's CORS rules, as a web app's would.
//
//   PARLEY_BASE_URL        Parley's REST base, e.g. http://127.0.0.1:8080/api/v1
//   PARLEY_MCP_URL         Parley's MCP endpoint, e.g. http://127.0.0.1:8080/mcp
//   PARLEY_API_KEY         a key that may run completions in both chats
//   PARLEY_CHAT_ID         a chat
//   PARLEY_LIMITED_CHAT_ID a chat of a project that takes one request a minute
//   PARLEY_ALLOWED_PAGE    the test page at an origin PARLEY_ALLOWED_ORIGINS lists
//                          (http://app.parley.test:PORT/)
//   PARLEY_DENIED_PAGE     the same page at an origin it does not list
//                          (http://evil.parley.test:PORT/)
//   PARLEY_UPSTREAM_REQUESTS_URL  answers how many requests the provider got so far
//   PARLEY_CHROMIUM        optional: Chromium's path (/usr/bin/chromium)
//
// The provider is Parley's fake upstream (llm/llmtest): replies are "echo: "
// plus the last user message. Chromium resolves app.parley.test and
// evil.parley.test to 127.0.0.1 and nothing else (--host-resolver-rules),
// uses no proxy, and so reaches only loopback.
//
// Self-contained: PARLEY_BROWSER_E2E=1 go test ./rest -run TestBrowser
// (it serves the page and starts Parley with the allowed origin).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const env = process.env;
const REQUIRED = ['PARLEY_BASE_URL', 'PARLEY_MCP_URL', 'PARLEY_API_KEY', 'PARLEY_CHAT_ID', 'PARLEY_LIMITED_CHAT_ID',
  'PARLEY_ALLOWED_PAGE', 'PARLEY_DENIED_PAGE', 'PARLEY_UPSTREAM_REQUESTS_URL'];
const missing = REQUIRED.filter((name) => !env[name]);
if (missing.length > 0) {
  throw new Error(`${missing.join(', ')} not set: run these tests with PARLEY_BROWSER_E2E=1 go test ./rest -run TestBrowser`);
}
const BASE_URL = env.PARLEY_BASE_URL;
const MCP_URL = env.PARLEY_MCP_URL;
const API_KEY = env.PARLEY_API_KEY;
const CHAT = env.PARLEY_CHAT_ID;
const LIMITED_CHAT = env.PARLEY_LIMITED_CHAT_ID;
const ALLOWED = new URL(env.PARLEY_ALLOWED_PAGE);
const DENIED = new URL(env.PARLEY_DENIED_PAGE);

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: env.PARLEY_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-proxy-server',
      `--host-resolver-rules=MAP ${ALLOWED.hostname} 127.0.0.1, MAP ${DENIED.hostname} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1`,
    ],
  });
});

after(async () => {
  await browser?.close();
});

// open loads the test page at url in a fresh context, closed when the test
// t ends, and waits for the client's modules; the page's console errors go
// to stderr, to read when a test fails.
async function open(t, url) {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`[${new URL(url).hostname}] ${m.text()}`);
  });
  page.on('pageerror', (err) => console.error(`[${new URL(url).hostname}] ${err}`));
  await page.goto(url.toString());
  await page.waitForFunction(() => window.parley !== undefined, undefined, { timeout: 10_000 });
  assert.equal(await page.evaluate(() => location.origin), url.origin, 'the page is not at the origin it was opened at');
  return page;
}

// upstreamRequests is how many requests the provider got so far.
async function upstreamRequests() {
  const res = await fetch(env.PARLEY_UPSTREAM_REQUESTS_URL);
  assert.equal(res.status, 200);
  return Number(await res.text());
}

// args are what the page's functions take: page.evaluate passes one value.
const args = { baseUrl: BASE_URL, mcpUrl: MCP_URL, apiKey: API_KEY, chat: CHAT, limitedChat: LIMITED_CHAT };

test('from an allowed origin, complete and stream run per chat and continue the conversation', async (t) => {
  const page = await open(t, ALLOWED);
  const got = await page.evaluate(async ({ baseUrl, apiKey, chat }) => {
    const client = new window.parley.ParleyClient({ baseUrl, apiKey });
    const first = await client.complete({ chatId: chat, messages: [{ role: 'user', content: 'Hello from the browser' }] });
    const chunks = [];
    for await (const chunk of client.stream({ chatId: chat, conversationId: first.conversationId,
      messages: [{ role: 'user', content: 'And again from the browser' }] })) {
      chunks.push(chunk);
    }
    return { first, chunks };
  }, args);

  const { first, chunks } = got;
  assert.equal(first.object, 'chat.completion');
  assert.ok(typeof first.id === 'string' && first.id.length > 0, `id ${first.id}`);
  assert.match(first.messageId, /^msg_/);
  assert.match(first.conversationId, /^cnv_/);
  assert.equal(first.choices[0].message.content, 'echo: Hello from the browser');

  assert.ok(chunks.length > 3, `got ${chunks.length} chunks`);
  assert.equal(chunks[0].object, 'chat.completion.chunk');
  assert.ok(typeof chunks[0].id === 'string' && chunks[0].id.length > 0, `id ${chunks[0].id}`);
  assert.match(chunks[0].messageId, /^msg_/);
  assert.notEqual(chunks[0].messageId, first.messageId);
  assert.equal(chunks[0].conversationId, first.conversationId);
  assert.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'echo: And again from the browser');
  assert.ok(chunks[chunks.length - 1].usage.completion_tokens > 0);

  // Parley kept both turns in the one conversation.
  const res = await fetch(`${BASE_URL}/conversations/${first.conversationId}`, { headers: { Authorization: `Bearer ${API_KEY}` } });
  assert.equal(res.status, 200);
  const stored = await res.json();
  assert.deepEqual(stored.messages.map((m) => m.content),
    ['Hello from the browser', 'echo: Hello from the browser', 'And again from the browser', 'echo: And again from the browser']);
});

test('from an allowed origin, a 429 carries its Retry-After to the page', async (t) => {
  const page = await open(t, ALLOWED);
  const got = await page.evaluate(async ({ baseUrl, apiKey, limitedChat }) => {
    const client = new window.parley.ParleyClient({ baseUrl, apiKey });
    const request = { chatId: limitedChat, messages: [{ role: 'user', content: 'limited from the browser' }] };
    const first = await client.complete(request);
    try {
      await client.complete(request);
      return { first, second: 'answered' };
    } catch (err) {
      return {
        first,
        second: { isParleyError: err instanceof window.parley.ParleyError, status: err.status, code: err.code, retryAfter: err.retryAfter, message: err.message },
      };
    }
  }, args);
  assert.equal(got.first.choices[0].message.content, 'echo: limited from the browser');
  assert.notEqual(got.second, 'answered', 'the second request of the minute was answered');
  assert.ok(got.second.isParleyError, got.second.message);
  assert.equal(got.second.status, 429);
  assert.equal(got.second.code, 'rate_limited');
  assert.ok(got.second.retryAfter > 0 && got.second.retryAfter <= 60, `retryAfter ${got.second.retryAfter}: Retry-After not readable by the page?`);
});

test('from an allowed origin, fetch reads X-Request-Id', async (t) => {
  const page = await open(t, ALLOWED);
  const got = await page.evaluate(async ({ baseUrl, apiKey, chat }) => {
    const headers = { Authorization: `Bearer ${apiKey}` };
    const made = await fetch(`${baseUrl}/chats/${chat}`, { headers });
    const sent = await fetch(`${baseUrl}/chats/${chat}`, { headers: { ...headers, 'X-Request-Id': 'browser-e2e-0001' } });
    return { status: made.status, made: made.headers.get('x-request-id'), sentStatus: sent.status, sent: sent.headers.get('x-request-id') };
  }, args);
  assert.equal(got.status, 200);
  assert.ok(got.made, `X-Request-Id read as ${got.made}`);
  assert.equal(got.sentStatus, 200);
  assert.equal(got.sent, 'browser-e2e-0001');
});

test('from an origin Parley does not allow, the call fails as a network error and reaches no provider', async (t) => {
  const page = await open(t, DENIED);
  const before = await upstreamRequests();
  const got = await page.evaluate(async ({ baseUrl, apiKey, chat }) => {
    const client = new window.parley.ParleyClient({ baseUrl, apiKey });
    const describe = (err) => ({ isParleyError: err instanceof window.parley.ParleyError, status: err.status, code: err.code, message: err.message });
    const out = {};
    try {
      out.complete = await client.complete({ chatId: chat, messages: [{ role: 'user', content: 'complete from evil.parley.test' }] });
    } catch (err) {
      out.complete = describe(err);
    }
    try {
      for await (const chunk of client.stream({ chatId: chat, messages: [{ role: 'user', content: 'stream from evil.parley.test' }] })) {
        out.stream = chunk;
      }
    } catch (err) {
      out.stream = describe(err);
    }
    try {
      const res = await fetch(`${baseUrl}/chats/${chat}`, { headers: { Authorization: `Bearer ${apiKey}` } });
      out.fetch = { status: res.status };
    } catch (err) {
      out.fetch = { error: err.name };
    }
    return out;
  }, args);
  assert.equal(await upstreamRequests(), before, `the provider got requests from the page Parley does not allow: ${JSON.stringify(got)}`);
  for (const call of ['complete', 'stream']) {
    assert.deepEqual({ ...got[call], message: undefined }, { isParleyError: true, status: 0, code: 'network', message: undefined },
      `${call} from ${DENIED.origin}: ${JSON.stringify(got[call])}`);
  }
  assert.deepEqual(got.fetch, { error: 'TypeError' });
});

// initialize is MCP's first request, as a page's plain fetch sends it; it
// returns the status, the session id the page could read, and the body.
async function initialize(page) {
  return page.evaluate(async ({ mcpUrl, apiKey }) => {
    try {
      const res = await fetch(mcpUrl, {
        method: 'POST',
        headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize',
          params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'parley-browser-e2e', version: '1.0.0' } } }),
      });
      return { status: res.status, session: res.headers.get('mcp-session-id'), body: await res.text() };
    } catch (err) {
      return { error: err.name };
    }
  }, args);
}

test('from an allowed origin, MCP initialize hands the page its Mcp-Session-Id', async (t) => {
  const got = await initialize(await open(t, ALLOWED));
  assert.equal(got.status, 200, JSON.stringify(got));
  assert.ok(got.session, `Mcp-Session-Id read as ${got.session}`);
  // A JSON answer, or an event stream whose data is the answer.
  const text = got.body.trimStart().startsWith('{') ? got.body : got.body.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).join('');
  const message = JSON.parse(text);
  assert.equal(message.id, 1);
  assert.ok(message.result?.serverInfo?.name, got.body);
});

test('from an origin Parley does not allow, MCP initialize is kept from the page', async (t) => {
  assert.deepEqual(await initialize(await open(t, DENIED)), { error: 'TypeError' });
});
