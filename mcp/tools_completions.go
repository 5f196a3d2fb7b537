package mcp

import (
	"context"
	"fmt"
	"strings"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
)

// messageArg is one message of a completion: content or documentId, not
// both; an assistant message may carry toolCalls, a tool message answers
// one by toolCallId.
type messageArg struct {
	Role       string        `json:"role" enum:"system,user,assistant,tool" desc:"Author of the message. At most one system message, which replaces the default system message for this call. A tool message is a tool's result."`
	Content    *string       `json:"content,omitempty" desc:"Text of the message. Send content or documentId, not both; optional for an assistant message with toolCalls, required for a tool message."`
	DocumentID string        `json:"documentId,omitempty" desc:"Id of a document of the same project (doc_...) whose content becomes the message's text."`
	ToolCalls  []toolCallArg `json:"toolCalls,omitempty" desc:"Assistant messages only: the tool calls the model made, as a reply's toolCalls returned them."`
	ToolCallID string        `json:"toolCallId,omitempty" desc:"Tool messages only: the id of the tool call this is the result of."`
}

// toolCallArg is a tool call in OpenAI's shape, in arguments and results.
type toolCallArg struct {
	ID       string          `json:"id" desc:"Id of the tool call; a tool message answers it by toolCallId."`
	Type     string          `json:"type" enum:"function" desc:"Always function."`
	Function toolCallFuncArg `json:"function" desc:"The function called."`
}

type toolCallFuncArg struct {
	Name      string `json:"name" desc:"Name of the function."`
	Arguments string `json:"arguments" desc:"The arguments as the model wrote them: JSON text, to be parsed (it may be invalid)."`
}

// toolArg is an OpenAI tool: a function the model may call.
type toolArg struct {
	Type     string      `json:"type" enum:"function" desc:"Always function."`
	Function functionArg `json:"function" desc:"The function."`
}

type functionArg struct {
	Name        string  `json:"name" desc:"Name of the function: 1 to 64 letters, digits, underscores or dashes."`
	Description string  `json:"description,omitempty" desc:"What the function does, for the model to decide when to call it."`
	Parameters  rawJSON `json:"parameters,omitempty" desc:"The function's arguments as a JSON Schema object; omit for none."`
	Strict      bool    `json:"strict,omitempty" desc:"Ask the provider to make the arguments follow the schema exactly (OpenAI structured outputs)."`
}

// responseFormatArg is OpenAI's response_format, camelCased.
type responseFormatArg struct {
	Type       string         `json:"type" enum:"text,json_object,json_schema" desc:"text (the default), json_object (JSON mode) or json_schema (structured output)."`
	JSONSchema *jsonSchemaArg `json:"jsonSchema,omitempty" desc:"With type json_schema: the schema the reply must follow."`
}

type jsonSchemaArg struct {
	Name        string  `json:"name" desc:"Name of the schema: 1 to 64 letters, digits, underscores or dashes."`
	Description string  `json:"description,omitempty" desc:"What the reply is."`
	Schema      rawJSON `json:"schema" desc:"The JSON Schema object the reply must follow."`
	Strict      bool    `json:"strict,omitempty" desc:"Ask the provider to follow the schema exactly (OpenAI structured outputs)."`
}

// completionArgs are the optional fields both completion tools take.
type completionArgs struct {
	Messages       []messageArg       `json:"messages" min:"1" desc:"The new messages of this turn, in order; must not be empty."`
	Model          string             `json:"model,omitempty" desc:"Model for this call; overrides the chat's model and the provider's defaultModel."`
	Temperature    *float64           `json:"temperature,omitempty" min:"0" max:"2" desc:"Sampling temperature, 0 to 2."`
	MaxTokens      *int               `json:"maxTokens,omitempty" min:"1" desc:"Upper bound on the reply's tokens; a positive integer."`
	TopP           *float64           `json:"topP,omitempty" min:"0" max:"1" desc:"Nucleus sampling probability mass, 0 to 1."`
	Stop           stopList           `json:"stop,omitempty" desc:"A stop sequence or up to 4 of them."`
	Tools          []toolArg          `json:"tools,omitempty" max:"128" desc:"Functions the model may call (OpenAI's tools); a reply that calls them has toolCalls and finishReason tool_calls."`
	ToolChoice     *toolChoice        `json:"toolChoice,omitempty" desc:"Whether the model may (auto), must (required) or must not (none) call a tool, or the one function it must call."`
	ResponseFormat *responseFormatArg `json:"responseFormat,omitempty" desc:"The reply's format: text, JSON mode or a JSON schema. Anthropic providers get it as a system prompt instruction."`
	Debug          bool               `json:"debug,omitempty" desc:"Add a debug object: resolved provider and model, the messages sent upstream (secrets redacted), timings."`
}

func (a completionArgs) toDomain() domain.CompletionParams {
	msgs := make([]domain.InputMessage, len(a.Messages))
	for i, m := range a.Messages {
		msgs[i] = domain.InputMessage{Role: domain.MessageRole(m.Role), Content: m.Content, DocumentID: m.DocumentID,
			ToolCalls: toDomainToolCalls(m.ToolCalls), ToolCallID: m.ToolCallID}
	}
	p := domain.CompletionParams{Messages: msgs, Model: a.Model, Temperature: a.Temperature, MaxTokens: a.MaxTokens,
		TopP: a.TopP, Stop: a.Stop, Debug: a.Debug}
	for _, t := range a.Tools {
		p.Tools = append(p.Tools, domain.Tool{Type: t.Type, Name: t.Function.Name, Description: t.Function.Description,
			Parameters: t.Function.Parameters, Strict: t.Function.Strict})
	}
	if c := a.ToolChoice; c != nil {
		p.ToolChoice = &domain.ToolChoice{Mode: domain.ToolChoiceMode(c.Mode), Name: c.Name}
	}
	if r := a.ResponseFormat; r != nil {
		p.ResponseFormat = &domain.ResponseFormat{Type: domain.ResponseFormatType(r.Type)}
		if s := r.JSONSchema; s != nil {
			p.ResponseFormat.Name, p.ResponseFormat.Description = s.Name, s.Description
			p.ResponseFormat.Schema, p.ResponseFormat.Strict = s.Schema, s.Strict
			if p.ResponseFormat.Schema == nil {
				p.ResponseFormat.Schema = []byte{} // jsonSchema was sent: let domain see it
			}
		}
	}
	return p
}

func toDomainToolCalls(calls []toolCallArg) []domain.ToolCall {
	if len(calls) == 0 {
		return nil
	}
	out := make([]domain.ToolCall, len(calls))
	for i, c := range calls {
		out[i] = domain.ToolCall{ID: c.ID, Type: c.Type, Name: c.Function.Name, Arguments: c.Function.Arguments}
	}
	return out
}

func toToolCallArgs(calls []domain.ToolCall) []toolCallArg {
	if len(calls) == 0 {
		return nil
	}
	out := make([]toolCallArg, len(calls))
	for i, c := range calls {
		out[i] = toolCallArg{ID: c.ID, Type: "function", Function: toolCallFuncArg{Name: c.Name, Arguments: c.Arguments}}
	}
	return out
}

type statelessCompletionArgs struct {
	AIProviderID  string `json:"aiProviderId" desc:"Id of the AI provider to call (aip_...); you need the editor role in its project."`
	SystemMessage string `json:"systemMessage,omitempty" desc:"System prompt for this call."`
	completionArgs
}

type chatCompletionArgs struct {
	ChatID         string `json:"chatId" desc:"Id of the chat whose provider, system message and model to use (cht_...)."`
	ConversationID string `json:"conversationId,omitempty" desc:"Continue this conversation of the chat (cnv_...): its history goes upstream before messages. Omit to start a new one."`
	completionArgs
}

// completionOut is a finished completion.
type completionOut struct {
	Content        string        `json:"content" desc:"The whole reply's text; empty when the model only called tools."`
	ToolCalls      []toolCallArg `json:"toolCalls,omitempty" desc:"The tools the model called (finishReason tool_calls): run them and continue with an assistant message carrying these toolCalls and a tool message per call."`
	ConversationID string        `json:"conversationId,omitempty" desc:"The conversation the turn was stored in (per-chat completions); pass it to continue."`
	MessageID      string        `json:"messageId" desc:"Id of the reply (msg_...); for stateless completions it names the usage record."`
	Model          string        `json:"model" desc:"The model that answered."`
	FinishReason   string        `json:"finishReason" desc:"Why the reply ended: stop, length, tool_calls, content_filter, ..."`
	Usage          usageOut      `json:"usage" desc:"Tokens of this completion."`
	Debug          *debugOut     `json:"debug,omitempty" desc:"How the completion was resolved; only when debug was true."`
}

type debugOut struct {
	Provider debugProvider  `json:"provider" desc:"The AI provider called."`
	Model    string         `json:"model" desc:"The model called."`
	Messages []debugMessage `json:"messages" desc:"Exactly what went upstream, in order."`
	Timings  debugTimings   `json:"timings" desc:"Where the time went."`
}

type debugProvider struct {
	ID   string `json:"id" desc:"AI provider id."`
	Name string `json:"name" desc:"AI provider name."`
	Type string `json:"type" desc:"AI provider type."`
}

type debugMessage struct {
	Role       string        `json:"role" desc:"Author of the message."`
	Content    string        `json:"content" desc:"Text sent, secrets redacted."`
	ToolCalls  []toolCallArg `json:"toolCalls,omitempty" desc:"Tool calls of an assistant message, arguments redacted."`
	ToolCallID string        `json:"toolCallId,omitempty" desc:"The tool call a tool message answers."`
}

type debugTimings struct {
	QueueMs     float64 `json:"queueMs" desc:"Milliseconds from the request to the upstream call."`
	FirstByteMs float64 `json:"firstByteMs" desc:"Milliseconds from the upstream call to its first byte."`
	TotalMs     float64 `json:"totalMs" desc:"Milliseconds in all."`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func toCompletionOut(c *domain.Completion) completionOut {
	out := completionOut{Content: c.Content, ToolCalls: toToolCallArgs(c.ToolCalls), ConversationID: c.ConversationID, MessageID: c.MessageID, Model: c.Model,
		FinishReason: c.FinishReason, Usage: toUsageOut(c.Usage)}
	if d := c.Debug; d != nil {
		out.Debug = &debugOut{
			Provider: debugProvider{ID: d.ProviderID, Name: d.ProviderName, Type: string(d.ProviderType)},
			Model:    d.Model,
			Messages: make([]debugMessage, len(d.Messages)),
			Timings:  debugTimings{QueueMs: ms(d.QueueTime), FirstByteMs: ms(d.FirstByte), TotalMs: ms(d.Total)},
		}
		for i, m := range d.Messages {
			out.Debug.Messages[i] = debugMessage{Role: string(m.Role), Content: m.Content, ToolCalls: toToolCallArgs(m.ToolCalls), ToolCallID: m.ToolCallID}
		}
	}
	return out
}

// completionText is the reply, then a line with what a caller needs to go on.
func completionText(c completionOut) string {
	var b strings.Builder
	b.WriteString(c.Content)
	for _, tc := range c.ToolCalls {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "tool call %s: %s(%s)", tc.ID, tc.Function.Name, tc.Function.Arguments)
	}
	b.WriteString("\n\n[")
	if c.ConversationID != "" {
		fmt.Fprintf(&b, "conversationId %s, ", c.ConversationID)
	}
	fmt.Fprintf(&b, "messageId %s, model %s, finishReason %s, tokens %d prompt + %d completion = %d]",
		c.MessageID, c.Model, c.FinishReason, c.Usage.PromptTokens, c.Usage.CompletionTokens, c.Usage.TotalTokens)
	return b.String()
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
			c, err := d.svcs.Completions.Stateless(ctx, domain.StatelessCompletion{AIProviderID: in.AIProviderID,
				SystemMessage: in.SystemMessage, CompletionParams: in.toDomain()}, em.emitter())
			em.settle(ctx)
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
			c, err := d.svcs.Completions.ForChat(ctx, domain.ChatCompletion{ChatID: in.ChatID,
				ConversationID: in.ConversationID, CompletionParams: in.toDomain()}, em.emitter())
			em.settle(ctx)
			if err != nil {
				return completionOut{}, err
			}
			return toCompletionOut(c), nil
		}, completionText)
}
