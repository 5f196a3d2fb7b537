import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { ParleyClient } from './client.js';
import { ParleyError } from './errors.js';
import type { ChatCompletionChunk, CompletionRequest, RequestMessage, Usage } from './types.js';

/** A message of the conversation as the hook shows it. */
export interface Message {
  /** A local id, the same from the message's first render to its last: a key for React. */
  id: string;
  role: 'user' | 'assistant' | 'system';
  content: string;
  createdAt: Date;
  /** True while the reply is still arriving. */
  isStreaming?: boolean;
  /** A reply's id in the conversation Parley keeps (msg_…), once its first chunk named it. */
  messageId?: string;
  /** A reply's tokens, once it ended (the stream's last chunk). */
  usage?: Usage;
  /** A reasoning model's thinking before its reply, as it arrives (where the provider shows it). */
  reasoning?: string;
  /**
   * Why a reply ended, once it did: "stop", "length" (maxTokens cut it short), "tool_calls", …,
   * or "client_disconnect" for one stopped (stopStream), as Parley stores it.
   */
  finishReason?: string;
  /**
   * A user's message whose turn failed before Parley stored any of it (the
   * error says why): shown, but not part of the conversation, so a stateless
   * chat's next message does not send it.
   */
  failed?: boolean;
}

export interface UseAIChatOptions {
  /** A client; or baseUrl and apiKey to make one. */
  client?: ParleyClient;
  baseUrl?: string;
  apiKey?: string;
  /**
   * Per chat (the usual way): the chat's provider, model and system message
   * answer, and Parley keeps the conversation, whose id is sessionId; each
   * message sends only itself.
   */
  chatId?: string;
  /**
   * Stateless, when there is no chatId: this AI provider answers, Parley
   * keeps nothing, and each message sends the whole history; sessionId stays
   * null.
   */
  aiProviderId?: string;
  /**
   * Continue this conversation (a sessionId of before) instead of starting one.
   * Set later, or changed, it starts afresh on that conversation, as another
   * chatId does (the hook shows none of its earlier messages).
   */
  initialSessionId?: string;
  model?: string;
  /** The system message of each call: per chat, it replaces the chat's for that call. */
  systemPrompt?: string;
  temperature?: number;
  maxTokens?: number;
  /**
   * The project's documents each message sends as context (seed 001's
   * project knowledge), by id ([{id: 'doc_…'}]) or by name: a chat names
   * none of its own, so every message sends these (the conversation keeps
   * the messages, not the documents).
   */
  dataSources?: Array<{ id: string }>;
  names?: string[];
  /** Each piece of the reply's text as it arrives. */
  onChunk?: (chunk: string) => void;
  /** The reply whole, once it ended, the conversation it was stored in, and the reply's message (usage, finishReason). */
  onComplete?: (content: string, sessionId: string | null, message: Message) => void;
  onError?: (error: Error) => void;
}

export interface UseAIChat {
  messages: Message[];
  isStreaming: boolean;
  /** The conversation the next message continues (per chat), or null. */
  sessionId: string | null;
  error: Error | null;
  /**
   * Sends a user message and streams the reply; rejects only when a reply is streaming already.
   * Sent right after stopStream, it waits for the stopped reply to end and continues its turn
   * (and rejects, sending nothing, if the chat is cleared, changed or left meanwhile).
   */
  sendMessage: (content: string) => Promise<void>;
  /** Stops the reply; per chat, Parley keeps the turn as far as it went. */
  stopStream: () => void;
  /** Forgets the messages and the conversation; the next message starts a new one. */
  clearMessages: () => void;
}

let localIds = 0;
function localId(): string {
  return `local_${Date.now().toString(36)}_${(localIds++).toString(36)}`;
}

/**
 * useAIChat is seed 001's React hook over Parley's streamed completions: it
 * keeps the messages, streams each reply into the last one, and continues
 * the conversation Parley stored (sessionId is its conversationId).
 */
export function useAIChat(options: UseAIChatOptions): UseAIChat {
  const { baseUrl, apiKey } = options;
  const client = useMemo(
    () => options.client ?? new ParleyClient({ baseUrl: baseUrl ?? '', apiKey: apiKey ?? '' }),
    [options.client, baseUrl, apiKey],
  );
  const [messages, setMessages] = useState<Message[]>([]);
  const [isStreaming, setStreaming] = useState(false);
  // Stateless, there is no session: initialSessionId waits for a chatId.
  const [sessionId, setSessionId] = useState<string | null>(options.chatId ? (options.initialSessionId ?? null) : null);
  const [error, setError] = useState<Error | null>(null);

  // What a send reads without waiting for a render: the latest options, the
  // history, the session, and the running stream.
  const latest = useRef(options);
  latest.current = options;
  const history = useRef<Message[]>([]);
  const session = useRef<string | null>(sessionId);
  const running = useRef<AbortController | null>(null);
  // The running send's end: a send made right after stopStream waits for
  // it, as the stopped turn is the conversation it continues.
  const settled = useRef<Promise<void>>(Promise.resolve());
  // Set by stopStream: the next send may find Parley still storing the
  // stopped turn, and tries again while it does.
  const stoppedOne = useRef(false);
  // Counts the clears (clearMessages, another chat or provider, leaving):
  // a send waiting for a stopped reply sends nothing once one came.
  const cleared = useRef(0);

  const show = useCallback((next: Message[]) => {
    history.current = next;
    setMessages(next);
  }, []);

  const stopStream = useCallback(() => {
    if (running.current) {
      stoppedOne.current = true;
      running.current.abort();
    }
  }, []);

  const clearMessages = useCallback(() => {
    cleared.current++;
    stoppedOne.current = false;
    running.current?.abort();
    running.current = null;
    session.current = null;
    show([]);
    setSessionId(null);
    setError(null);
    setStreaming(false);
  }, [show]);

  // Unmounting stops the reply: nobody is there to read it. Not at once:
  // StrictMode unmounts and mounts again at once, and a message sent
  // from a mount effect must go on.
  const mounted = useRef(false);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
      setTimeout(() => {
        if (!mounted.current) {
          cleared.current++;
          running.current?.abort(); // whichever runs then, a send that waited for a stopped one too
        }
      }, 0);
    };
  }, []);

  // Another chat or provider is another conversation: start anew; so is
  // an initialSessionId set to another conversation than the one under way
  // (read from storage after the first render, or a conversation picked),
  // which the next message continues. One set to the session under way is
  // the app keeping it (from onComplete), and changes nothing.
  const target = useRef([options.chatId, options.aiProviderId, options.initialSessionId]);
  useEffect(() => {
    const [chat, provider, initial] = target.current;
    const wanted = options.initialSessionId;
    target.current = [options.chatId, options.aiProviderId, wanted];
    const another = chat !== options.chatId || provider !== options.aiProviderId;
    const picked = wanted && wanted !== initial; // not the one another chat was given
    // A chatId that came after the first render (fetched, or from the
    // route) is the chat initialSessionId was set for.
    const late = chat === undefined && options.chatId !== undefined && wanted;
    if (another || (picked && wanted !== session.current)) {
      clearMessages();
      if ((picked || late) && options.chatId) {
        session.current = wanted;
        setSessionId(wanted);
      }
    }
  }, [options.chatId, options.aiProviderId, options.initialSessionId, clearMessages]);

  const sendMessage = useCallback(
    async (content: string) => {
      const o = latest.current; // the options of the render that sent
      const generation = cleared.current;
      const stopped = running.current?.signal.aborted ?? false;
      if (running.current && !stopped) throw new Error('a reply is still streaming: stop it or wait for it first');
      const afterStop = stopped || stoppedOne.current;
      stoppedOne.current = false;
      if (stopped) await settled.current;
      if (cleared.current !== generation) {
        throw new Error('the chat was cleared, changed or left while the message waited for the stopped reply; it was not sent');
      }
      if (running.current) throw new Error('a reply is still streaming: stop it or wait for it first');
      const controller = new AbortController();
      running.current = controller;
      const user: Message = { id: localId(), role: 'user', content, createdAt: new Date() };
      const before = history.current;
      let reply: Message = { id: localId(), role: 'assistant', content: '', createdAt: new Date(), isStreaming: true };
      show([...before, user, reply]);
      setError(null);
      setStreaming(true);

      // A system message in messages replaces the chat's for this call
      // only, on either endpoint.
      const messages: RequestMessage[] = o.systemPrompt ? [{ role: 'system', content: o.systemPrompt }] : [];
      const request: CompletionRequest = { model: o.model, temperature: o.temperature, maxTokens: o.maxTokens, messages };
      if (o.dataSources?.length) request.dataSources = o.dataSources;
      if (o.names?.length) request.names = o.names;
      if (o.chatId) {
        request.chatId = o.chatId;
        if (session.current) request.conversationId = session.current;
      } else {
        request.aiProviderId = o.aiProviderId;
        messages.push(...before.filter((m) => m.content !== '' && !m.failed).map(toRequest));
      }
      messages.push({ role: 'user', content });

      // Per chat, the first chunk names the conversation; it is the session
      // once Parley stores the turn: at the end, or when the stream ended
      // otherwise than by an error event after it began (stopped, the
      // connection cut, an onChunk that threw), as far as it went. A send
      // that clearMessages ended (running.current is no longer its
      // controller) changes nothing after. The callbacks are the latest
      // render's, called when they are due.
      let conversationId: string | undefined;
      let started = false;
      const ours = () => running.current === controller;
      const update = (patch: Partial<Message>) => {
        const prev = reply;
        reply = { ...reply, ...patch };
        if (ours()) show(history.current.map((m) => (m === prev ? reply : m)));
      };
      const drop = () => {
        if (ours()) show(history.current.filter((m) => m !== reply).map((m) => (m === user ? { ...m, failed: true } : m)));
      };
      const keep = () => {
        if (ours() && conversationId && o.chatId) {
          session.current = conversationId;
          setSessionId(conversationId);
        }
      };
      const send = async () => {
        let completed = false;
        let failure: Error | undefined;
        try {
          for await (const chunk of streamAfterStop(client, request, controller.signal, afterStop)) {
            started = true;
            if (chunk.conversationId) conversationId = chunk.conversationId;
            if (chunk.messageId && reply.messageId !== chunk.messageId) update({ messageId: chunk.messageId });
            if (chunk.usage) update({ usage: chunk.usage });
            const finish = chunk.choices[0]?.finish_reason;
            if (finish) update({ finishReason: finish });
            const thought = chunk.choices[0]?.delta.reasoning_content;
            if (thought) update({ reasoning: (reply.reasoning ?? '') + thought });
            const text = chunk.choices[0]?.delta.content ?? chunk.choices[0]?.delta.refusal;
            if (text) {
              update({ content: reply.content + text });
              latest.current.onChunk?.(text);
            }
          }
          update({ isStreaming: false });
          keep();
          completed = true;
        } catch (err) {
          const errorEvent = err instanceof ParleyError && err.status === 200;
          if (started && !errorEvent) {
            // What arrived stays, and the turn Parley kept continues:
            // stopped, it ended as Parley stores it.
            update(controller.signal.aborted && !reply.finishReason
              ? { isStreaming: false, finishReason: 'client_disconnect' }
              : { isStreaming: false });
            keep();
          } else {
            // Parley stored none of the turn, so the hook keeps no reply.
            drop();
          }
          if (!controller.signal.aborted) failure = err instanceof Error ? err : new Error(String(err));
        }
        if (!ours()) return;
        // Ended: the stream is let go of before the callbacks, so that
        // they may send (a "continue" after finishReason "length", a retry).
        running.current = null;
        setStreaming(false);
        if (failure) {
          setError(failure);
          latest.current.onError?.(failure);
        } else if (completed) {
          latest.current.onComplete?.(reply.content, session.current, reply);
        }
      };
      const done = send();
      settled.current = done.catch(() => {});
      await done;
    },
    [client, show],
  );

  return { messages, isStreaming, sessionId, error, sendMessage, stopStream, clearMessages };
}

/**
 * streamAfterStop is client.stream, but for a send made right after a stop:
 * until Parley has stored the stopped turn (moments after the connection
 * closed), continuing its conversation is a 409 conflict, sent before
 * anything goes upstream, so such a send tries again for up to 1.5 s.
 */
async function* streamAfterStop(
  client: ParleyClient,
  request: CompletionRequest,
  signal: AbortSignal,
  afterStop: boolean,
): AsyncGenerator<ChatCompletionChunk> {
  for (let wait = 50; ; wait *= 2) {
    const chunks = client.stream(request, { signal });
    let first: IteratorResult<ChatCompletionChunk>;
    try {
      first = await chunks.next();
    } catch (err) {
      const conflict = err instanceof ParleyError && err.status === 409;
      if (afterStop && conflict && wait <= 800 && !signal.aborted) {
        await new Promise((resolve) => setTimeout(resolve, wait));
        continue;
      }
      throw err;
    }
    if (first.done) return;
    yield first.value;
    yield* chunks;
    return;
  }
}

function toRequest(m: Message): RequestMessage {
  return { role: m.role, content: m.content };
}
