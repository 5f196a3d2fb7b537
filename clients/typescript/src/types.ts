// The wire types of Parley's completions: OpenAI's chat.completion and
// chat.completion.chunk, plus Parley's own fields (messageId,
// conversationId, debug). Only what a client reads is typed; the rest of
// an answer is there at run time all the same.

/** A message sent in a completion request. */
export interface RequestMessage {
  /** developer is OpenAI's name for system, taken as it. */
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  /** The text. A message naming a document has documentId instead. */
  content?: string | null;
  /** A document of the chat's project, sent whole as the message's text. */
  documentId?: string;
  toolCallId?: string;
  toolCalls?: ToolCall[];
  /** An assistant reply in which the model declined, sent back as it came. */
  refusal?: string | null;
}

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
  /** What the provider sent beside the call (a thought signature, thinking): send it back as it came. */
  extra_content?: unknown;
}

/** The request of a completion, stateless (aiProviderId) or per chat (chatId). */
export interface CompletionRequest {
  /** Per chat: the chat whose provider, model and system message answer, and which stores the turn. */
  chatId?: string;
  /** Stateless: the AI provider that answers; nothing is stored. */
  aiProviderId?: string;
  /** Per chat: the conversation to continue (the conversationId of an earlier answer). */
  conversationId?: string;
  messages: RequestMessage[];
  model?: string;
  /** Stateless only: the system message. Per chat, a system message in messages replaces the chat's for one call. */
  systemMessage?: string;
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  stop?: string | string[];
  seed?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
  parallelToolCalls?: boolean;
  /** Anthropic's extended thinking. */
  thinking?: { type: 'enabled' | 'adaptive' | 'disabled'; budgetTokens?: number; display?: 'summarized' | 'omitted' };
  /** The project's documents to send as context, by id ([{id: 'doc_…'}]) or by name. */
  dataSources?: Array<{ id: string }>;
  names?: string[];
  reasoningEffort?: 'none' | 'minimal' | 'low' | 'medium' | 'high' | 'xhigh' | 'max';
  tools?: unknown[];
  toolChoice?: unknown;
  responseFormat?: unknown;
  debug?: boolean;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number; cache_write_tokens?: number };
  completion_tokens_details?: { reasoning_tokens?: number };
  /** Parley counted some of it: the provider gave no count. */
  estimated?: boolean;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string | null; refusal?: string | null; tool_calls?: ToolCall[] };
    finish_reason: string | null;
  }>;
  usage: Usage;
  messageId: string;
  /** Per chat: the conversation the turn was stored in; send it back to continue. */
  conversationId?: string;
  debug?: Record<string, unknown>;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: {
      role?: 'assistant';
      content?: string | null;
      refusal?: string | null;
      /** A reasoning model's thinking, as OpenAI-wire reasoning servers name it. */
      reasoning_content?: string | null;
      tool_calls?: Array<{ index: number; id?: string; type?: 'function'; function?: { name?: string; arguments?: string } }>;
    };
    finish_reason: string | null;
  }>;
  /** The last chunk before [DONE] carries usage, with choices []. */
  usage?: Usage | null;
  /** The first chunk carries messageId and, per chat, conversationId. */
  messageId?: string;
  conversationId?: string;
  debug?: Record<string, unknown>;
}
