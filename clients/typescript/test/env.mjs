// The Parley the tests run against, set up by the Go test that starts it
// (rest: TestTypeScriptClient) on SQLite with the fake upstream
// (llm/llmtest), whose reply is "echo: " plus the last user message, in
// word deltas. A user message starting "FAULT" fails after two deltas,
// one starting "HANG" stops after two deltas until the client goes away,
// one starting "SLOW" waits longer than Parley's keep-alive interval
// before each event, and one starting "THINK" streams the thinking "let me
// think" (reasoning_content) before the reply.
//
//   PARLEY_BASE_URL        Parley's REST base, e.g. http://127.0.0.1:8080/api/v1
//   PARLEY_API_KEY         a key that may run completions in the chat and with the provider
//   PARLEY_AI_PROVIDER_ID  the provider of the stateless completions
//   PARLEY_CHAT_ID         the chat of the per-chat completions
//   PARLEY_OTHER_CHAT_ID   another chat of the same project
//   PARLEY_LIMITED_CHAT_ID a chat of a project that takes one request a minute
//   PARLEY_ADMIN_KEY       a key that may use the limited chat
import { ParleyClient } from '../dist/index.js';

const env = process.env;
const REQUIRED = ['PARLEY_BASE_URL', 'PARLEY_API_KEY', 'PARLEY_AI_PROVIDER_ID', 'PARLEY_CHAT_ID', 'PARLEY_OTHER_CHAT_ID', 'PARLEY_LIMITED_CHAT_ID', 'PARLEY_ADMIN_KEY'];
const missing = REQUIRED.filter((name) => !env[name]);
if (missing.length > 0) {
  throw new Error(`${missing.join(', ')} not set: run these tests with PARLEY_TS_CLIENT_E2E=1 go test ./rest -run TestTypeScriptClient`);
}

export const BASE_URL = env.PARLEY_BASE_URL;
export const API_KEY = env.PARLEY_API_KEY;
export const PROVIDER = env.PARLEY_AI_PROVIDER_ID;
export const CHAT = env.PARLEY_CHAT_ID;
export const OTHER_CHAT = env.PARLEY_OTHER_CHAT_ID;
export const LIMITED_CHAT = env.PARLEY_LIMITED_CHAT_ID;
export const ADMIN_KEY = env.PARLEY_ADMIN_KEY;
export const client = new ParleyClient({ baseUrl: BASE_URL, apiKey: API_KEY });

// conversation reads a stored conversation with its messages, as the REST API has it.
export async function conversation(id) {
  const res = await fetch(`${BASE_URL}/conversations/${id}`, { headers: { Authorization: `Bearer ${API_KEY}` } });
  if (!res.ok) throw new Error(`GET conversation ${id}: HTTP ${res.status} ${await res.text()}`);
  return res.json();
}

// storedTurn waits for Parley to store a turn whose stream the client
// left (it stores it once it sees the client go), and returns the
// conversation.
export async function storedTurn(id) {
  for (let i = 0; i < 100; i++) {
    const c = await conversation(id).catch(() => undefined);
    if (c) return c;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`conversation ${id} was never stored`);
}
