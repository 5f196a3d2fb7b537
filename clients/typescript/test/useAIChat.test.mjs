// useAIChat rendered by React in jsdom, against a running Parley: see env.mjs.
import 'global-jsdom/register';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StrictMode, createElement, useEffect } from 'react';
import { act, render as renderElement, renderHook, waitFor, cleanup } from '@testing-library/react';
import { ParleyClient, ParleyError } from '../dist/index.js';
import { useAIChat } from '../dist/react.js';
import { API_KEY, BASE_URL, CHAT, OTHER_CHAT, PROVIDER, client, conversation, storedTurn } from './env.mjs';

globalThis.IS_REACT_ACT_ENVIRONMENT = true;

function render(options) {
  const calls = { chunks: [], completed: [], errors: [] };
  const view = renderHook((props) =>
    useAIChat({
      client,
      onChunk: (c) => calls.chunks.push(c),
      onComplete: (content, sessionId, message) => {
        calls.completed.push([content, sessionId]);
        calls.replies = [...(calls.replies ?? []), message];
      },
      onError: (e) => calls.errors.push(e),
      ...options,
      ...props,
    }),
  );
  return { view, calls, chat: () => view.result.current };
}

const shown = (messages) => messages.map((m) => [m.role, m.content]);

// hanging sends a message whose reply streams until it is stopped, and
// returns the send (in an object, or awaiting would wait for its end)
// once text of it arrived.
async function hanging(chat) {
  let sent;
  act(() => {
    sent = chat().sendMessage('HANG until stopped');
  });
  await waitFor(() => assert.ok(chat().messages[1]?.content.length > 0, 'text arrived'));
  return { sent };
}

test('dataSources and names send the project\'s documents with every message', async (t) => {
  t.after(cleanup);
  const { chat } = render({ chatId: CHAT, names: ['handbook'] });
  await act(() => chat().sendMessage('KNOWLEDGE by name'));
  await act(() => chat().sendMessage('KNOWLEDGE again'));
  assert.equal(chat().error, null);
  assert.equal(chat().messages[3].content, 'echo: KNOWLEDGE again');
  // The Go side of the test reads the upstream's requests for the document.
});

test('per chat: replies stream in, and the next message continues the conversation', async (t) => {
  t.after(cleanup);
  const { calls, chat } = render({ chatId: CHAT, systemPrompt: 'You are brief.' });
  assert.equal(chat().sessionId, null);
  await act(() => chat().sendMessage('How is authentication handled?'));
  assert.equal(chat().error, null);
  assert.deepEqual(shown(chat().messages), [['user', 'How is authentication handled?'], ['assistant', 'echo: How is authentication handled?']]);
  assert.equal(chat().isStreaming, false);
  assert.equal(chat().error, null);
  const sessionId = chat().sessionId;
  assert.match(sessionId, /^cnv_/);
  const reply = chat().messages[1];
  assert.equal(reply.isStreaming, false);
  assert.match(reply.id, /^local_/);
  assert.match(reply.messageId, /^msg_/);
  assert.equal(reply.finishReason, 'stop');
  assert.ok(reply.usage.total_tokens > 0, `usage ${JSON.stringify(reply.usage)}`);
  assert.deepEqual(calls.replies, [reply], 'onComplete gets the reply, with its usage');
  assert.ok(chat().messages[1].createdAt instanceof Date);
  assert.ok(calls.chunks.length > 1, `onChunk called ${calls.chunks.length} times`);
  assert.equal(calls.chunks.join(''), 'echo: How is authentication handled?');
  assert.deepEqual(calls.completed, [['echo: How is authentication handled?', sessionId]]);

  await act(() => chat().sendMessage('And authorization?'));
  assert.equal(chat().sessionId, sessionId);
  assert.equal(chat().messages.length, 4);
  const stored = await conversation(sessionId);
  assert.deepEqual(stored.messages.map((m) => m.content), [
    'How is authentication handled?', 'echo: How is authentication handled?', 'And authorization?', 'echo: And authorization?',
  ]);
});

test('isStreaming while the reply arrives; stopStream keeps what came, and Parley keeps the turn', async (t) => {
  t.after(cleanup);
  const { calls, chat } = render({ chatId: CHAT });
  const { sent } = await hanging(chat);
  assert.equal(chat().isStreaming, true);
  assert.equal(chat().messages[1].isStreaming, true);
  // Named by Parley from the first chunk, the reply keeps its local id:
  // React's key for it does not change, nor remount it.
  const id = chat().messages[1].id;
  assert.match(id, /^local_/);
  assert.match(chat().messages[1].messageId, /^msg_/);
  await assert.rejects(chat().sendMessage('too soon'), /still streaming/);
  await act(async () => {
    chat().stopStream();
    await sent;
  });
  assert.equal(chat().isStreaming, false);
  assert.equal(chat().error, null);
  assert.equal(chat().messages.length, 2);
  assert.equal(chat().messages[1].id, id);
  const partial = chat().messages[1].content;
  assert.equal(chat().messages[1].isStreaming, false);
  assert.equal(chat().messages[1].finishReason, 'client_disconnect', 'stopped, as Parley stores it');
  assert.deepEqual(calls.completed, []);
  assert.deepEqual(calls.errors, []);
  const sessionId = chat().sessionId;
  assert.match(sessionId, /^cnv_/, 'the stopped turn is the session');

  // The next message continues the stopped turn, once Parley stored it.
  let stored;
  await waitFor(async () => {
    stored = await conversation(sessionId);
  });
  assert.equal(stored.messages[1].finishReason, 'client_disconnect');
  assert.ok(stored.messages[1].content.startsWith(partial));
  await act(() => chat().sendMessage('go on'));
  assert.equal(chat().sessionId, sessionId);
  assert.deepEqual((await conversation(sessionId)).messages.map((m) => m.content).slice(2), ['go on', 'echo: go on']);
});

test('a message sent in the same tick as stopStream continues the stopped turn', async (t) => {
  t.after(cleanup);
  const { calls, chat } = render({ chatId: CHAT });
  const { sent } = await hanging(chat);
  await act(async () => {
    chat().stopStream();
    await Promise.all([sent, chat().sendMessage('go on')]);
  });
  assert.equal(chat().error, null);
  assert.deepEqual(calls.errors, []);
  const sessionId = chat().sessionId;
  assert.match(sessionId, /^cnv_/);
  assert.deepEqual(shown(chat().messages).slice(2), [['user', 'go on'], ['assistant', 'echo: go on']]);
  const stored = await conversation(sessionId);
  assert.equal(stored.messages[1].finishReason, 'client_disconnect');
  assert.deepEqual(stored.messages.map((m) => m.content).slice(2), ['go on', 'echo: go on']);
});

// lateClose is a fetch whose connections close 300 ms after their abort,
// as a slow network's do, while the reader sees the abort at once; it
// counts the 409s Parley answered, and keeps each request's URL and signal.
function lateClose() {
  const seen = { conflicts: 0, requests: [] };
  const lateFetch = async (url, init) => {
    const outer = init.signal;
    seen.requests.push({ url, signal: outer });
    const inner = new AbortController();
    outer?.addEventListener('abort', () => setTimeout(() => inner.abort(), 300), { once: true });
    const res = await fetch(url, { ...init, signal: inner.signal });
    if (res.status === 409) seen.conflicts++;
    if (!res.body) return res;
    const reader = res.body.getReader();
    const aborted = new Promise((_, reject) => outer?.addEventListener('abort', () => reject(outer.reason), { once: true }));
    aborted.catch(() => {});
    const body = new ReadableStream({
      async pull(controller) {
        try {
          const { done, value } = await Promise.race([reader.read(), aborted]);
          if (done) controller.close();
          else controller.enqueue(value);
        } catch (err) {
          controller.error(err);
        }
      },
    });
    return new Response(body, { status: res.status, headers: res.headers });
  };
  return { seen, client: new ParleyClient({ baseUrl: BASE_URL, apiKey: API_KEY, fetch: lateFetch }) };
}

test('a message sent while the stopped connection still closes continues the stopped turn', async (t) => {
  t.after(cleanup);
  // In the same tick as stopStream, or once the stopped send ended.
  for (const after of ['stop', 'stopped send']) {
    const late = lateClose();
    const { calls, chat } = render({ chatId: CHAT, client: late.client });
    const { sent } = await hanging(chat);
    await act(async () => {
      chat().stopStream();
      if (after === 'stop') await Promise.all([sent, chat().sendMessage('go on')]);
      else await sent.then(() => chat().sendMessage('go on'));
    });
    assert.ok(late.seen.conflicts > 0, `${after}: Parley was still answering the stopped turn`);
    assert.deepEqual(calls.errors, [], after);
    assert.deepEqual(shown(chat().messages).slice(2), [['user', 'go on'], ['assistant', 'echo: go on']], after);
    const stored = await conversation(chat().sessionId);
    assert.deepEqual(stored.messages.map((m) => m.content).slice(2), ['go on', 'echo: go on'], after);
    cleanup();
  }
});

test('a message waiting for a stopped reply is not sent once the chat changes or the hook unmounts', async (t) => {
  t.after(cleanup);
  for (const leave of ['chat', 'unmount']) {
    const late = lateClose();
    const { view, chat } = render({ chatId: CHAT, client: late.client });
    const { sent } = await hanging(chat);
    let next;
    act(() => {
      chat().stopStream();
      next = chat().sendMessage('HANG after the stop');
      next.catch(() => {});
      if (leave === 'chat') view.rerender({ chatId: OTHER_CHAT });
      else view.unmount();
    });
    await act(async () => {
      await sent;
      await next.catch(() => {});
    });
    if (leave === 'chat') await assert.rejects(next, /cleared, changed or left/);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Unmounted, the waiting send may have begun before the unmount's
    // timer came: then that stopped it.
    assert.ok(late.seen.requests.every((r) => !r.url.includes(OTHER_CHAT)), `${leave}: a request went to the other chat`);
    assert.ok(late.seen.requests.every((r) => r.signal.aborted), `${leave}: a request outlived the hook`);
    cleanup();
  }
});

test('an error is shown and the failed reply dropped; the session stays', async (t) => {
  t.after(cleanup);
  const { calls, chat } = render({ chatId: CHAT });
  await act(() => chat().sendMessage('first'));
  const sessionId = chat().sessionId;
  await act(() => chat().sendMessage('FAULT in the middle'));
  assert.ok(chat().error instanceof ParleyError);
  assert.equal(chat().error.code, 'upstream_error');
  assert.deepEqual(calls.errors, [chat().error]);
  assert.deepEqual(shown(chat().messages), [['user', 'first'], ['assistant', 'echo: first'], ['user', 'FAULT in the middle']]);
  assert.equal(chat().messages[2].failed, true, 'the failed turn\'s message is marked: Parley stored none of it');
  assert.equal(chat().messages[0].failed, undefined);
  assert.equal(chat().isStreaming, false);
  assert.equal(chat().sessionId, sessionId);
  // Parley stored none of the failed turn, and the next one continues.
  await act(() => chat().sendMessage('again'));
  assert.equal(chat().error, null);
  assert.deepEqual((await conversation(sessionId)).messages.map((m) => m.content), ['first', 'echo: first', 'again', 'echo: again']);
});

test('a refused request is an error before any reply', async (t) => {
  t.after(cleanup);
  const { chat } = render({ chatId: CHAT, temperature: 9 });
  await act(() => chat().sendMessage('hi'));
  assert.equal(chat().error.status, 400);
  assert.equal(chat().error.details.field, 'temperature');
  assert.deepEqual(shown(chat().messages), [['user', 'hi']]);
  assert.equal(chat().sessionId, null);
});

test('clearMessages forgets the conversation: the next message starts another', async (t) => {
  t.after(cleanup);
  const { chat } = render({ chatId: CHAT });
  await act(() => chat().sendMessage('remember me'));
  const first = chat().sessionId;
  act(() => chat().clearMessages());
  assert.deepEqual(chat().messages, []);
  assert.equal(chat().sessionId, null);
  await act(() => chat().sendMessage('who am I?'));
  assert.match(chat().sessionId, /^cnv_/);
  assert.notEqual(chat().sessionId, first);
});

test('clearMessages during a reply stops it and shows nothing of it', async (t) => {
  t.after(cleanup);
  const { chat } = render({ chatId: CHAT });
  let sent;
  act(() => {
    sent = chat().sendMessage('HANG then clear');
  });
  await waitFor(() => assert.ok(chat().messages[1]?.content.length > 0));
  await act(async () => {
    chat().clearMessages();
    await sent;
  });
  assert.deepEqual(chat().messages, []);
  assert.equal(chat().sessionId, null);
  assert.equal(chat().isStreaming, false);
});

test('initialSessionId continues a conversation of before', async (t) => {
  t.after(cleanup);
  const earlier = await client.complete({ chatId: CHAT, messages: [{ role: 'user', content: 'earlier' }] });
  const { chat } = render({ chatId: CHAT, initialSessionId: earlier.conversationId });
  await act(() => chat().sendMessage('later'));
  assert.equal(chat().sessionId, earlier.conversationId);
  assert.deepEqual((await conversation(earlier.conversationId)).messages.map((m) => m.content), ['earlier', 'echo: earlier', 'later', 'echo: later']);
});

test('initialSessionId set after the first render, or to another conversation, is continued', async (t) => {
  t.after(cleanup);
  const earlier = await client.complete({ chatId: CHAT, messages: [{ role: 'user', content: 'earlier' }] });
  const { view, chat } = render({ chatId: CHAT }); // the id read from storage after mount
  view.rerender({ initialSessionId: earlier.conversationId });
  await waitFor(() => assert.equal(chat().sessionId, earlier.conversationId));
  await act(() => chat().sendMessage('later'));
  assert.equal(chat().error, null);
  assert.equal(chat().sessionId, earlier.conversationId);
  assert.deepEqual((await conversation(earlier.conversationId)).messages.map((m) => m.content), ['earlier', 'echo: earlier', 'later', 'echo: later']);
  // The app keeping the session it was told of (onComplete) changes nothing.
  view.rerender({ initialSessionId: chat().sessionId });
  assert.equal(chat().messages.length, 2);
  // Another conversation picked: the hook starts afresh on it.
  const other = await client.complete({ chatId: CHAT, messages: [{ role: 'user', content: 'other' }] });
  view.rerender({ initialSessionId: other.conversationId });
  await waitFor(() => assert.equal(chat().sessionId, other.conversationId));
  assert.deepEqual(chat().messages, []);
  await act(() => chat().sendMessage('more'));
  assert.deepEqual((await conversation(other.conversationId)).messages.map((m) => m.content), ['other', 'echo: other', 'more', 'echo: more']);
});

test('a chatId that arrives after the first render continues initialSessionId', async (t) => {
  t.after(cleanup);
  const earlier = await client.complete({ chatId: CHAT, messages: [{ role: 'user', content: 'earlier' }] });
  // The stored id read at once, the chat fetched later.
  const { view, chat } = render({ initialSessionId: earlier.conversationId });
  assert.equal(chat().sessionId, null, 'no session without a chat');
  view.rerender({ chatId: CHAT });
  await waitFor(() => assert.equal(chat().sessionId, earlier.conversationId));
  await act(() => chat().sendMessage('later'));
  assert.equal(chat().error, null);
  assert.deepEqual((await conversation(earlier.conversationId)).messages.map((m) => m.content), ['earlier', 'echo: earlier', 'later', 'echo: later']);
});

test('onComplete and onError may send the next message', async (t) => {
  t.after(cleanup);
  let api;
  const sent = [];
  const { chat } = render({
    chatId: CHAT,
    onComplete: (content) => {
      if (content === 'echo: first') sent.push(api().sendMessage('continue'));
    },
    onError: () => sent.push(api().sendMessage('retry')),
  });
  api = chat;
  await act(async () => {
    await chat().sendMessage('first');
    await Promise.all(sent);
  });
  assert.deepEqual(shown(chat().messages).slice(2), [['user', 'continue'], ['assistant', 'echo: continue']]);
  await act(async () => {
    await chat().sendMessage('FAULT in the middle');
    await Promise.all(sent);
  });
  assert.equal(sent.length, 2);
  assert.deepEqual(shown(chat().messages).slice(-2), [['user', 'retry'], ['assistant', 'echo: retry']]);
  assert.equal(chat().error, null, 'the retry cleared the error');
});

test('a reply\'s thinking is shown apart from its text', async (t) => {
  t.after(cleanup);
  const { chat, calls } = render({ chatId: CHAT });
  await act(() => chat().sendMessage('THINK first'));
  assert.equal(chat().messages[1].reasoning, 'let me think');
  assert.equal(chat().messages[1].content, 'echo: THINK first');
  assert.equal(calls.chunks.join(''), 'echo: THINK first', 'onChunk gets the text only');
});

test('stateless: a failed turn\'s message is not sent again', async (t) => {
  t.after(cleanup);
  const bodies = [];
  const spy = new ParleyClient({ baseUrl: BASE_URL, apiKey: API_KEY, fetch: (url, init) => { bodies.push(JSON.parse(init.body)); return fetch(url, init); } });
  const { chat } = render({ client: spy, aiProviderId: PROVIDER, model: 'ts-model' });
  await act(() => chat().sendMessage('STATELESS one'));
  await act(() => chat().sendMessage('FAULT stateless'));
  assert.ok(chat().error instanceof ParleyError);
  await act(() => chat().sendMessage('STATELESS retry'));
  assert.equal(chat().error, null);
  assert.deepEqual(bodies.at(-1).messages.map((m) => `${m.role}:${m.content}`), ['user:STATELESS one', 'assistant:echo: STATELESS one', 'user:STATELESS retry']);
});

test('stateless: each message sends the history, and there is no session', async (t) => {
  t.after(cleanup);
  // TestTypeScriptClient checks that the upstream got the whole history
  // with "STATELESS two".
  const { chat } = render({ aiProviderId: PROVIDER, model: 'ts-model' });
  await act(() => chat().sendMessage('STATELESS one'));
  await act(() => chat().sendMessage('STATELESS two'));
  assert.deepEqual(shown(chat().messages), [
    ['user', 'STATELESS one'], ['assistant', 'echo: STATELESS one'], ['user', 'STATELESS two'], ['assistant', 'echo: STATELESS two'],
  ]);
  assert.equal(chat().sessionId, null);
});

test('unmounting stops the reply, which Parley keeps as far as it went', async (t) => {
  t.after(cleanup);
  const { view, chat } = render({ chatId: CHAT });
  act(() => {
    chat().sendMessage('HANG then unmount').catch(() => {});
  });
  await waitFor(() => assert.ok(chat().messages[1]?.content.length > 0));
  const reply = chat().messages[1].messageId; // in the conversation Parley keeps
  view.unmount();
  const convs = await fetchConversationOf(reply);
  assert.equal(convs.messages[1].finishReason, 'client_disconnect');
});

// fetchConversationOf finds the stored conversation whose reply is messageId.
async function fetchConversationOf(messageId) {
  for (let i = 0; i < 100; i++) {
    const res = await fetch(`${process.env.PARLEY_BASE_URL}/conversations?chatId=${CHAT}&limit=100`, { headers: { Authorization: `Bearer ${process.env.PARLEY_API_KEY}` } });
    for (const c of (await res.json()).data) {
      const full = await conversation(c.id);
      if (full.messages.some((m) => m.id === messageId)) return full;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no stored conversation has ${messageId}`);
}

test('under StrictMode a message sent from a mount effect gets its reply', async (t) => {
  t.after(cleanup);
  let chat;
  function Chat() {
    chat = useAIChat({ client, chatId: CHAT });
    useEffect(() => {
      chat.sendMessage('strict hello').catch(() => {}); // StrictMode's second run is refused: one is streaming
    }, []);
    return null;
  }
  renderElement(createElement(StrictMode, null, createElement(Chat)));
  await waitFor(() => assert.equal(chat.messages[1]?.content, 'echo: strict hello'));
  await waitFor(() => assert.equal(chat.isStreaming, false));
  assert.equal(chat.messages.length, 2);
  assert.match(chat.sessionId, /^cnv_/);
});

test('another chatId starts another conversation', async (t) => {
  t.after(cleanup);
  const { view, chat } = render({ chatId: CHAT });
  await act(() => chat().sendMessage('in the first chat'));
  const first = chat().sessionId;
  view.rerender({ chatId: OTHER_CHAT });
  await waitFor(() => assert.equal(chat().sessionId, null));
  assert.deepEqual(chat().messages, []);
  await act(() => chat().sendMessage('in the other chat'));
  assert.equal(chat().error, null);
  assert.match(chat().sessionId, /^cnv_/);
  assert.notEqual(chat().sessionId, first);
  assert.equal((await conversation(chat().sessionId)).chatId, OTHER_CHAT);
});

test('an onChunk that throws ends the stream; the hook keeps the turn Parley keeps', async (t) => {
  t.after(cleanup);
  const boom = new Error('the page failed');
  const { chat } = render({ chatId: CHAT, onChunk: () => { throw boom; } });
  await act(() => chat().sendMessage('HANG while the page breaks'));
  assert.equal(chat().error, boom);
  const sessionId = chat().sessionId;
  assert.match(sessionId, /^cnv_/, 'the turn Parley stored is the session');
  const stored = await storedTurn(sessionId);
  assert.equal(stored.messages[1].finishReason, 'client_disconnect');
  // Parley keeps what the provider had sent when it saw the client go,
  // which may be more than the page saw.
  assert.ok(stored.messages[1].content.startsWith(chat().messages[1].content));
});

test('the latest callbacks are called, not those of the render that sent', async (t) => {
  t.after(cleanup);
  const early = [];
  const late = [];
  const { view, chat } = render({ chatId: CHAT, onChunk: (c) => early.push(c) });
  let sent;
  act(() => {
    sent = chat().sendMessage('SLOW callbacks change');
  });
  await waitFor(() => assert.ok(early.length > 0));
  view.rerender({ onChunk: (c) => late.push(c) });
  await act(() => sent);
  assert.ok(late.length > 0, 'the new onChunk got the later pieces');
  assert.equal(early.join('') + late.join(''), 'echo: SLOW callbacks change');
});
