import { ParleyError, retryAfter } from './errors.js';
import { events } from './sse.js';
import type { ChatCompletion, ChatCompletionChunk, CompletionRequest } from './types.js';

export interface ParleyClientOptions {
  /** Parley's REST base, e.g. http://127.0.0.1:8080/api/v1. */
  baseUrl: string;
  /**
   * An API key (pk_…), sent as a bearer token; leave it out where a proxy
   * in front of Parley adds it (a public page must not hold one).
   */
  apiKey?: string;
  /** The fetch to use; the global one by default. */
  fetch?: typeof fetch;
}

export interface CallOptions {
  /** Aborting stops the call; a stream stopped once text arrived keeps its turn as far as it went. */
  signal?: AbortSignal;
  /** Per chat: a key of yours naming the request, so that sending it again is answered with the stored turn. */
  idempotencyKey?: string;
}

/**
 * ParleyClient runs Parley's completions: stateless (aiProviderId) or per
 * chat (chatId, continuing conversationId), as one JSON answer (complete)
 * or as a stream of OpenAI chunks (stream).
 */
export class ParleyClient {
  readonly baseUrl: string;
  readonly #apiKey: string | undefined;
  readonly #fetch: typeof fetch;

  constructor(options: ParleyClientOptions) {
    if (!options.baseUrl) throw new TypeError('ParleyClient: baseUrl is required');
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.#apiKey = options.apiKey;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** complete runs a completion and returns the whole answer. */
  async complete(request: CompletionRequest, options: CallOptions = {}): Promise<ChatCompletion> {
    const res = await this.#post(request, false, options);
    try {
      return (await res.json()) as ChatCompletion;
    } catch (err) {
      if (options.signal?.aborted) throw err;
      throw new ParleyError(0, { error: { code: 'network', message: `the answer could not be read: ${(err as Error).message}` } });
    }
  }

  /**
   * stream runs a completion and yields its chunks as they arrive. The first
   * carries messageId and, per chat, conversationId; the last carries usage.
   * An error event after the stream began is thrown as a ParleyError (status
   * 200), after which Parley stored none of the turn; a connection cut
   * before [DONE] as one with status 0 and code "network", after which, as
   * after an abort, Parley stored the turn as far as it went. Breaking out
   * of the loop, or aborting options.signal, closes the connection, which
   * stops the provider's generation.
   */
  async *stream(request: CompletionRequest, options: CallOptions = {}): AsyncGenerator<ChatCompletionChunk> {
    const res = await this.#post(request, true, options);
    if (res.body === null) throw new ParleyError(res.status, undefined);
    try {
      for await (const data of events(res.body)) {
        const chunk = parseChunk(data);
        if ('error' in chunk) throw new ParleyError(200, chunk);
        yield chunk;
      }
    } catch (err) {
      // An abort with a reason of its own (AbortSignal.timeout(),
      // abort(reason)) fails the body's read with that reason, which is
      // not named AbortError: rethrown as the abort, as before the headers.
      if (options.signal?.aborted && err instanceof ParleyError && err.status === 0) throw options.signal.reason;
      throw err;
    }
  }

  async #post(request: CompletionRequest, stream: boolean, options: CallOptions): Promise<Response> {
    const { chatId, ...body } = request;
    let path: string;
    if (chatId) {
      path = `/chats/${encodeURIComponent(chatId)}/completions`;
    } else if (request.aiProviderId) {
      path = '/chats/completions';
    } else {
      throw new TypeError('a completion needs a chatId (per chat) or an aiProviderId (stateless)');
    }
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      Accept: stream ? 'text/event-stream' : 'application/json',
    };
    if (this.#apiKey) headers.Authorization = `Bearer ${this.#apiKey}`;
    if (options.idempotencyKey) headers['Idempotency-Key'] = options.idempotencyKey;
    let res: Response;
    try {
      res = await this.#fetch(this.baseUrl + path, {
        method: 'POST',
        headers,
        body: JSON.stringify({ ...body, stream }),
        signal: options.signal,
      });
    } catch (err) {
      if (options.signal?.aborted) throw err;
      throw new ParleyError(0, { error: { code: 'network', message: `cannot reach Parley: ${(err as Error).message}` } });
    }
    if (!res.ok) {
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      throw new ParleyError(res.status, parsed, retryAfter(res.headers));
    }
    return res;
  }
}

/**
 * parseChunk reads one event's data. Parley sends JSON only: data that is
 * none was changed on its way (a proxy's page in place of the stream), a
 * network error like a cut, not a SyntaxError the caller cannot tell apart.
 */
function parseChunk(data: string): ChatCompletionChunk | { error: unknown } {
  try {
    return JSON.parse(data) as ChatCompletionChunk | { error: unknown };
  } catch {
    const head = data.length > 80 ? `${data.slice(0, 80)}…` : data;
    throw new ParleyError(0, { error: { code: 'network', message: `the stream held data that is no JSON (${JSON.stringify(head)}): something between here and Parley changed it` } });
  }
}
