// End-to-end test of the README's recipes for two client libraries built
// on OpenAI's Chat Completions wire: the Vercel AI SDK (ai with
// @ai-sdk/openai-compatible) and LangChain (@langchain/openai). Each runs
// its own request encoding and response parsing against Parley, stateless
// and per chat, streamed and not, and continues a conversation the way the
// README says to read its conversationId.
//
//   PARLEY_BASE_URL        Parley's REST base, e.g. http://127.0.0.1:8080/api/v1
//   PARLEY_API_KEY         a key that may use the provider and run completions in the chat
//   PARLEY_AI_PROVIDER_ID  the AI provider of the stateless completions
//   PARLEY_CHAT_ID         the chat of the per-chat completions
//
// The provider is Parley's fake upstream (llm/llmtest): a reply is "echo: "
// and the last user message.
//
// Self-contained (SQLite, fake upstream): PARLEY_AILIBS_E2E=1 go test ./rest -run TestAILibraries

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateText, streamText, APICallError } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { ChatOpenAI } from '@langchain/openai';

const env = process.env;
const REQUIRED = ['PARLEY_BASE_URL', 'PARLEY_API_KEY', 'PARLEY_AI_PROVIDER_ID', 'PARLEY_CHAT_ID'];
const missing = REQUIRED.filter((name) => !env[name]);
const skip = missing.length > 0 && `${missing.join(', ')} not set`;
const PARLEY = env.PARLEY_BASE_URL;
const apiKey = env.PARLEY_API_KEY;
const chatId = env.PARLEY_CHAT_ID;
const aiProviderId = env.PARLEY_AI_PROVIDER_ID;

// contents are the texts of a stored conversation's messages, read over REST.
async function contents(conversationId) {
  const res = await fetch(`${PARLEY}/conversations/${conversationId}`, { headers: { Authorization: `Bearer ${apiKey}` } });
  assert.equal(res.status, 200, `GET conversation ${conversationId}`);
  return (await res.json()).messages.map((m) => m.content);
}

// The README's AI SDK provider of a chat, with the metadata extractor that
// reads the conversationId.
function chatProvider(id = chatId) {
  return createOpenAICompatible({ name: 'parley', baseURL: `${PARLEY}/chats/${id}`, apiKey,
    metadataExtractor: {
      extractMetadata: async ({ parsedBody }) => ({ parley: { conversationId: parsedBody.conversationId } }),
      createStreamExtractor: () => { let id; return { processChunk: (c) => { id ??= c?.conversationId; },
        buildMetadata: () => ({ parley: { conversationId: id } }) }; },
    } });
}

test('AI SDK: stateless generateText and streamText with the provider in providerOptions', { skip }, async () => {
  const parley = createOpenAICompatible({ name: 'parley', baseURL: PARLEY, apiKey, includeUsage: true });
  const providerOptions = { parley: { aiProviderId } };
  const r = await generateText({ model: parley(''), prompt: 'Hello', providerOptions, maxRetries: 0 });
  assert.equal(r.text, 'echo: Hello');
  assert.ok(r.usage.inputTokens > 0 && r.usage.outputTokens > 0, `usage ${JSON.stringify(r.usage)}`);
  assert.equal(r.finishReason, 'stop');

  const s = streamText({ model: parley(''), prompt: 'Stream', providerOptions, maxRetries: 0 });
  let text = '';
  for await (const piece of s.textStream) text += piece;
  assert.equal(text, 'echo: Stream');
  assert.ok((await s.usage).outputTokens > 0);
});

test('AI SDK: per chat, continuing a conversation as the README reads its conversationId', { skip }, async () => {
  const parley = chatProvider();
  const first = await generateText({ model: parley(''), prompt: 'Hello', maxRetries: 0 });
  const conversationId = first.providerMetadata.parley.conversationId;
  assert.match(conversationId, /^cnv_/);
  const second = await generateText({ model: parley(''), prompt: 'And then?', providerOptions: { parley: { conversationId } }, maxRetries: 0 });
  assert.equal(second.text, 'echo: And then?');
  assert.equal(second.providerMetadata.parley.conversationId, conversationId);

  const s = streamText({ model: parley(''), prompt: 'Go on', providerOptions: { parley: { conversationId } }, maxRetries: 0 });
  let text = '';
  for await (const piece of s.textStream) text += piece;
  assert.equal(text, 'echo: Go on');
  assert.equal((await s.providerMetadata).parley.conversationId, conversationId);
  assert.deepEqual(await contents(conversationId), ['Hello', 'echo: Hello', 'And then?', 'echo: And then?', 'Go on', 'echo: Go on']);
});

test('AI SDK: a chat that does not exist is an APICallError with Parley\'s 404', { skip }, async () => {
  const parley = chatProvider('cht_00000000000000000000000000');
  await assert.rejects(generateText({ model: parley(''), prompt: 'Hello', maxRetries: 0 }), (err) => {
    assert.ok(APICallError.isInstance(err), `${err}`);
    assert.equal(err.statusCode, 404);
    assert.match(err.responseBody, /not_found/);
    return true;
  });
});

test('LangChain: stateless invoke and stream with the provider in modelKwargs', { skip }, async () => {
  const chat = new ChatOpenAI({ apiKey, model: '', maxRetries: 0, configuration: { baseURL: PARLEY }, modelKwargs: { aiProviderId } });
  const r = await chat.invoke('Hello');
  assert.equal(r.content, 'echo: Hello');
  assert.ok(r.usage_metadata.input_tokens > 0 && r.usage_metadata.output_tokens > 0, `usage ${JSON.stringify(r.usage_metadata)}`);
  let text = '';
  for await (const chunk of await chat.stream('Stream')) text += chunk.content;
  assert.equal(text, 'echo: Stream');
});

test('LangChain: per chat, continuing a conversation as the README reads its conversationId', { skip }, async () => {
  const chat = new ChatOpenAI({ apiKey, model: '', maxRetries: 0, __includeRawResponse: true, configuration: { baseURL: `${PARLEY}/chats/${chatId}` } });
  const id = (await chat.invoke('Hello')).additional_kwargs.__raw_response.conversationId;
  assert.match(id, /^cnv_/);
  const r = await new ChatOpenAI({ apiKey, model: '', maxRetries: 0, modelKwargs: { conversationId: id }, configuration: { baseURL: `${PARLEY}/chats/${chatId}` } }).invoke('And then?');
  assert.equal(r.content, 'echo: And then?');
  assert.deepEqual(await contents(id), ['Hello', 'echo: Hello', 'And then?', 'echo: And then?']);
});
