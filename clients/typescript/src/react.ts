// @parley/client/react: seed 001's useAIChat hook over ParleyClient.
export { useAIChat } from './useAIChat.js';
export type { Message, UseAIChat, UseAIChatOptions } from './useAIChat.js';
