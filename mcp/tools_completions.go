package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

// The completion arguments are the REST fields, from package wire.
type (
	completionArgs = wire.CompletionFields
	toolCallArg    = wire.ToolCall
)

type statelessCompletionArgs struct {
	AIProviderID  string `json:"aiProviderId" desc:"Id of the AI provider to call (aip_...); you need the editor role in its project."`
	SystemMessage string `json:"systemMessage,omitempty" max:"1048576" desc:"System prompt for this call; a system message in messages replaces it."`
	completionArgs
}

// explainArgError says, of a stateless call refused for a conversationId
// or a maxHistoryMessages (which the per-chat tool takes), where a
// conversation is continued.
func (statelessCompletionArgs) explainArgError(err error) error {
	if f, _ := domain.DetailsOf(err)["field"].(string); (f == "conversationId" || f == "maxHistoryMessages") && domain.KindOf(err) == domain.Invalid {
		return domain.Invalidf(f, "create-chat-completion keeps no conversation, so it takes no %s; to continue one, "+
			"call create-chat-completion-for-chat with a chat (create-chat makes one) and the conversationId of its first result", f)
	}
	return err
}

type chatCompletionArgs struct {
	ChatID             string `json:"chatId" desc:"Id of the chat whose provider, system message and model to use (cht_...)."`
	ConversationID     string `json:"conversationId,omitempty" desc:"Continue this conversation of the chat (cnv_...): its history goes upstream before messages. Only messages are stored with it: send again what this call needs of the rest (model, a system message, dataSources, tools...). Omit to start a new one."`
	MaxHistoryMessages *int   `json:"maxHistoryMessages,omitempty" min:"0" max:"32768" desc:"With conversationId (ignored without, but for its range): send at most this many of the conversation's latest stored messages upstream (every message counts: user, assistant, tool results), less tool results at the start whose call is left out; a history cut before a reply opens with a user message saying earlier messages are left out. 0 sends none. Omit to send the whole history. The conversation keeps every message: a long one whose history no longer fits the model's context window goes on this way (the error says how many messages it holds). Not stored: send it with every call that needs it."`
	IdempotencyKey     string `json:"idempotencyKey,omitempty" max:"255" pattern:"^[!-~]*$" desc:"A key of your own naming this request (up to 255 visible ASCII characters, such as a UUID). If the call's result was lost, call again with the same key and arguments: you get the turn stored for it (replayed: true) instead of a second turn. A call cancelled or timed out while its reply streamed keeps its key with the reply as far as it went (finishReason client_disconnect), which is what calling again returns: to get the rest, continue the conversation with a new key. The same key with other arguments is refused. An empty string is no key."`
	completionArgs
}

// completionOut is a finished completion.
type completionOut struct {
	Content        string        `json:"content" desc:"The whole reply's text; empty when the model only called tools."`
	Refusal        string        `json:"refusal,omitempty" desc:"Why the model declined to answer, in place of content (OpenAI, with structured outputs)."`
	Reasoning      string        `json:"reasoning,omitempty" desc:"The model's thinking before its reply, where the provider shows it (reasoning models); not part of content, not in the text result, and not stored with the conversation (Anthropic's thinking before tool calls is, in the first call's extra_content, to be sent back with the calls)."`
	ToolCalls      []toolCallArg `json:"toolCalls,omitempty" desc:"The tools the model called (finishReason tool_calls): run them and continue. Per chat: call again with this conversationId, only a tool message (role tool, toolCallId, content) per call, and tools again (tools, toolChoice and responseFormat are not stored); the reply is stored already. Stateless: send the history again, then an assistant message carrying these toolCalls as they are (extra_content too), then a tool message per call."`
	ConversationID string        `json:"conversationId,omitempty" desc:"The conversation the turn was stored in (per-chat completions); pass it to continue."`
	MessageID      string        `json:"messageId" desc:"Id of the reply (msg_...); for stateless completions it names the usage record."`
	Model          string        `json:"model" desc:"The model that answered."`
	FinishReason   string        `json:"finishReason" desc:"Why the reply ended: stop, length, tool_calls, content_filter, ..."`
	Usage          usageOut      `json:"usage" desc:"Tokens of this completion."`
	Debug          *wire.Debug   `json:"debug,omitempty" desc:"How the completion was resolved; only when debug was true."`
	Replayed       bool          `json:"replayed,omitempty" desc:"True when this is the turn an earlier call with the same idempotencyKey stored, returned again: nothing ran upstream, and usage is the earlier call's."`
}

func toCompletionOut(c *domain.Completion) completionOut {
	out := completionOut{Content: c.Content, Refusal: c.Refusal, Reasoning: c.Reasoning, ToolCalls: wire.ToolCallsOf(c.ToolCalls), ConversationID: c.ConversationID,
		MessageID: c.MessageID, Model: c.Model, FinishReason: c.FinishReason, Usage: toUsageOut(c.Usage), Debug: wire.DebugOf(c.Debug),
		Replayed: c.Replayed}
	return out
}

// completionText is the reply, then a line with what a caller needs to go on.
func completionText(c completionOut) string {
	var b strings.Builder
	b.WriteString(c.Content)
	if c.Refusal != "" {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "refusal: %s", c.Refusal)
	}
	for _, tc := range c.ToolCalls {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		b.WriteString(toolCallLine(tc))
	}
	b.WriteString("\n\n[")
	if c.ConversationID != "" {
		fmt.Fprintf(&b, "conversationId %s, ", c.ConversationID)
	}
	fmt.Fprintf(&b, "messageId %s, model %s, finishReason %s, tokens %d prompt + %d completion = %d",
		c.MessageID, c.Model, c.FinishReason, c.Usage.PromptTokens, c.Usage.CompletionTokens, c.Usage.TotalTokens)
	if c.Replayed {
		b.WriteString(", replayed: stored by an earlier call with this idempotencyKey")
		if c.FinishReason == domain.FinishStopped {
			b.WriteString(", which was cancelled before the reply ended, so the reply is partial: continue the conversation with a new idempotencyKey for the rest")
		}
	}
	b.WriteString("]")
	if c.Debug != nil {
		// As a failed call's second text has it: a client that hands the
		// model only the text would drop the structured content's.
		if j, err := json.Marshal(map[string]any{"debug": c.Debug}); err == nil {
			b.WriteString("\n")
			b.Write(j)
		}
	}
	return b.String()
}

// toolCallLine is a tool call as a result's text shows it: what a model
// needs to run it and, stateless, to send it back (its extra_content).
func toolCallLine(tc toolCallArg) string {
	line := fmt.Sprintf("tool call %s: %s(%s)", tc.ID, tc.Function.Name, tc.Function.Arguments)
	// The model's thinking (Anthropic's, an OpenAI-wire reply's
	// reasoning_content), which may run to a megabyte, stays out of the
	// text a model reads, as the result's reasoning does: the structured
	// result has it.
	extra := domain.ExtraWithoutReasoning(domain.ExtraWithout(tc.ExtraContent, domain.AnthropicExtra))
	if len(extra) > 0 {
		line += " extra_content " + string(extra)
	}
	if !bytes.Equal(extra, tc.ExtraContent) {
		line += " (with the model's thinking in the structured result's extra_content)"
	}
	return line
}

// completionHints: a completion spends tokens and stores a turn (so it is
// neither read-only nor idempotent) and reaches an outside AI provider.
var completionHints = hints{openWorld: true}

const progressNote = " When the call carries a progress token, each delta of the reply is also sent as a notifications/progress " +
	"whose message is the delta's text and whose progress counts the deltas; the result still holds the whole reply."

func createChatCompletion(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[statelessCompletionArgs, completionOut]("create-chat-completion", "Run a stateless chat completion",
			"Run a one-off chat completion with the AI provider named in the call: no chat and no stored conversation, only a usage record. "+
				"Needs permission to use the provider (editor role in its project)."+progressNote, completionHints),
		handle(d, func(ctx context.Context, req mcpgo.CallToolRequest, in statelessCompletionArgs) (completionOut, error) {
			em := newProgressEmitter(ctx, req, d)
			defer em.end(ctx) // before the result goes back; a panic too closes the stream
			c, err := d.svcs.Completions.Stateless(ctx, domain.StatelessCompletion{AIProviderID: in.AIProviderID,
				SystemMessage: in.SystemMessage, CompletionParams: in.ToDomain()}, em.emitter())
			if err != nil {
				return completionOut{}, err
			}
			return toCompletionOut(c), nil
		}, completionText)
}

func createChatCompletionForChat(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[chatCompletionArgs, completionOut]("create-chat-completion-for-chat", "Run a chat completion for a chat",
			"Run a completion with a chat's AI provider, system message and model, and store the turn in a conversation: "+
				"a new one, or the one named by conversationId, whose history goes upstream first. Needs the editor role."+progressNote, completionHints),
		handle(d, func(ctx context.Context, req mcpgo.CallToolRequest, in chatCompletionArgs) (completionOut, error) {
			em := newProgressEmitter(ctx, req, d)
			defer em.end(ctx)
			c, err := d.svcs.Completions.ForChat(ctx, domain.ChatCompletion{ChatID: in.ChatID,
				ConversationID: in.ConversationID, IdempotencyKey: in.IdempotencyKey, MaxHistoryMessages: in.MaxHistoryMessages,
				CompletionParams: in.ToDomain()}, em.emitter())
			if err != nil {
				return completionOut{}, err
			}
			return toCompletionOut(c), nil
		}, completionText)
}
