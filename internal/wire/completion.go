package wire

import (
	"time"

	"github.com/parleyhq/parley/domain"
)

// The request fields both completion endpoints take, shared by REST bodies
// and MCP tool arguments so that the two read them the same way. The desc,
// enum, min and max tags feed the MCP tool schemas; REST ignores them.

// Message is one message of a completion: content or documentId, not
// both; an assistant message may carry toolCalls or a refusal, a tool
// message answers a tool call by toolCallId.
type Message struct {
	Role       string     `json:"role" enum:"system,user,assistant,tool" desc:"Author of the message. At most one system message, which replaces the default system message for this call. A tool message is a tool's result."`
	Content    *Content   `json:"content,omitempty" desc:"Text of the message: a string, or an array of text parts ({\"type\": \"text\", \"text\": ...}) joined with newlines. Send content or documentId, not both; optional for an assistant message with toolCalls or a refusal, required for a tool message."`
	DocumentID string     `json:"documentId,omitempty" desc:"Id of a document of the same project (doc_...) whose content becomes the message's text."`
	Refusal    string     `json:"refusal,omitempty" desc:"Assistant messages only: a reply's refusal (the model declined to answer), sent back as the reply had it."`
	ToolCalls  []ToolCall `json:"toolCalls,omitempty" desc:"Assistant messages only: the tool calls the model made, as a reply's toolCalls returned them."`
	ToolCallID string     `json:"toolCallId,omitempty" desc:"Tool messages only: the id of the tool call this is the result of."`
}

// ToolCall is a tool call in OpenAI's shape, in arguments and results.
type ToolCall struct {
	ID           string           `json:"id" desc:"Id of the tool call; a tool message answers it by toolCallId."`
	Type         string           `json:"type" enum:"function" desc:"Always function."`
	Function     ToolCallFunction `json:"function" desc:"The function called."`
	ExtraContent RawJSON          `json:"extra_content,omitempty" desc:"What the provider sent beside the call, as it sent it (Gemini's thought signature; in the first call's, an Anthropic model's thinking before the calls, under anthropic, or a reasoning model's reasoning, under reasoning_content), which it needs back to continue: send it back with the call. Only OpenAI-compatible and Anthropic providers send it."`
}

// ToolCallFunction is the function a ToolCall calls, with its arguments.
type ToolCallFunction struct {
	Name      string `json:"name" desc:"Name of the function."`
	Arguments string `json:"arguments" desc:"The arguments as the model wrote them: JSON text, to be parsed (it may be invalid)."`
}

// Tool is an OpenAI tool: a function the model may call.
type Tool struct {
	Type     string   `json:"type" enum:"function" desc:"Always function."`
	Function Function `json:"function" desc:"The function."`
}

// Function is a Tool's function: its name, what it does and its
// parameters' schema.
type Function struct {
	Name        string  `json:"name" pattern:"^[a-zA-Z0-9_-]{1,64}$" desc:"Name of the function: 1 to 64 letters, digits, underscores or dashes."`
	Description string  `json:"description,omitempty" desc:"What the function does, for the model to decide when to call it."`
	Parameters  RawJSON `json:"parameters,omitempty" desc:"The function's arguments as a JSON Schema object; omit for none."`
	Strict      bool    `json:"strict,omitempty" desc:"Ask the provider to make the arguments follow the schema exactly (OpenAI structured outputs)."`
}

// ResponseFormat is OpenAI's response_format, camelCased.
type ResponseFormat struct {
	Type       string      `json:"type" enum:"text,json_object,json_schema" desc:"text (the default), json_object (JSON mode) or json_schema (structured output)."`
	JSONSchema *JSONSchema `json:"jsonSchema,omitempty" desc:"With type json_schema: the schema the reply must follow."`
}

// JSONSchema is a ResponseFormat's schema, OpenAI's json_schema.
type JSONSchema struct {
	Name        string  `json:"name" pattern:"^[a-zA-Z0-9_-]{1,64}$" desc:"Name of the schema: 1 to 64 letters, digits, underscores or dashes."`
	Description string  `json:"description,omitempty" desc:"What the reply is."`
	Schema      RawJSON `json:"schema" desc:"The JSON Schema object the reply must follow."`
	Strict      bool    `json:"strict,omitempty" desc:"Ask the provider to follow the schema exactly (OpenAI structured outputs)."`
}

// Thinking turns an Anthropic model's extended thinking on or off.
type Thinking struct {
	Type         string `json:"type" jsonschema:"required" enum:"enabled,adaptive,disabled" desc:"enabled: the model thinks up to budgetTokens before it answers; adaptive: it decides how much (the newest models, with reasoningEffort as its guide); disabled: it does not."`
	BudgetTokens *int   `json:"budgetTokens,omitempty" min:"1024" desc:"With type enabled, required: the most tokens the model may think in, at least 1024, less than maxTokens (which bounds thinking and reply together; without maxTokens, 4096 more than the budget is sent)."`
	Display      string `json:"display,omitempty" enum:",summarized,omitted" desc:"With type enabled or adaptive: summarized returns the thinking (as reasoning_content), omitted only its signature; unset, the model's default (the newest Claude models omit it)."`
}

// DataSource names a document to send as context.
type DataSource struct {
	ID string `json:"id" desc:"A document id (doc_...)."`
}

// CompletionFields are the optional fields both completion tools take.
type CompletionFields struct {
	Messages          []Message       `json:"messages" min:"1" max:"1000" desc:"The messages of this turn, in order; at least one. Stateless: the conversation so far and the new message. Per chat with conversationId: only the new messages, which follow the stored history (messages repeated here would be stored again)."`
	Model             string          `json:"model,omitempty" max:"200" desc:"Model for this call; overrides the chat's model and the provider's defaultModel."`
	Temperature       *float64        `json:"temperature,omitempty" min:"0" max:"2" desc:"Sampling temperature, 0 to 2."`
	MaxTokens         *int            `json:"maxTokens,omitempty" min:"1" desc:"Upper bound on the reply's tokens; a positive integer. Anthropic requires one: without it, 4096 is sent (with thinking enabled, 4096 more than its budget; adaptive, 16000)."`
	TopP              *float64        `json:"topP,omitempty" min:"0" max:"1" desc:"Nucleus sampling probability mass, 0 to 1."`
	Stop              StopList        `json:"stop,omitempty" desc:"A stop sequence or up to 4 of them."`
	DataSources       []DataSource    `json:"dataSources,omitempty" max:"32" desc:"Documents of the project (the chat's, or stateless the AI provider's) to send as context, by id: [{\"id\": \"doc_...\"}]. Their content goes upstream after the system message, each in a <document id=... name=...> element, for this call only (a continuation names them again to keep them); reading them needs documents:GetDocument. With names, at most 32."`
	Names             []string        `json:"names,omitempty" max:"32" desc:"Documents of the project to send as context, by name, as dataSources does by id; a name that no document, or several, of the project has is refused."`
	ReasoningEffort   string          `json:"reasoningEffort,omitempty" enum:",none,minimal,low,medium,high,xhigh,max" desc:"How hard a reasoning model thinks before it answers: OpenAI's reasoning_effort (none, minimal, low, medium, high, xhigh) or Anthropic's effort (low, medium, high, xhigh, max). Which values a model takes, and whether it takes any, is the provider's to say: a model that refuses one fails the call with the provider's message. Omit it (or send an empty string) for the provider's default."`
	Seed              *int            `json:"seed,omitempty" desc:"Ask the model to sample deterministically, as far as it can, for the same seed and request (OpenAI's; an Anthropic provider takes none)."`
	FrequencyPenalty  *float64        `json:"frequencyPenalty,omitempty" min:"-2" max:"2" desc:"-2 to 2: positive values make tokens less likely the more often they appeared so far (OpenAI's; an Anthropic provider takes only 0, which does nothing)."`
	PresencePenalty   *float64        `json:"presencePenalty,omitempty" min:"-2" max:"2" desc:"-2 to 2: positive values make tokens that appeared so far less likely (OpenAI's; an Anthropic provider takes only 0, which does nothing)."`
	ParallelToolCalls *bool           `json:"parallelToolCalls,omitempty" desc:"With tools: false allows the model one tool call a reply at most (OpenAI's parallel_tool_calls, Anthropic's disable_parallel_tool_use); true, or left out, several."`
	Thinking          *Thinking       `json:"thinking,omitempty" desc:"Anthropic providers only: the model's extended thinking, shown as the reply's reasoning. With it on, temperature may only be 1 and topP 0.95 to 1, and with type enabled toolChoice auto or none. A reply that calls tools carries its thinking in the first call's extra_content: send the calls back as they are (per chat, the stored turn does), and thinking again with the tool results."`
	Tools             []Tool          `json:"tools,omitempty" max:"128" desc:"Functions the model may call (OpenAI's tools); a reply that calls them has toolCalls and finishReason tool_calls. Not stored with a conversation: send them with every call that should let the model call them, the tool results' too."`
	ToolChoice        *ToolChoice     `json:"toolChoice,omitempty" desc:"Whether the model may (auto), must (required) or must not (none) call a tool, or the one function it must call."`
	ResponseFormat    *ResponseFormat `json:"responseFormat,omitempty" desc:"The reply's format: text, JSON mode or a JSON schema. Anthropic providers get it as a system prompt instruction."`
	Debug             bool            `json:"debug,omitempty" desc:"Add a debug object to the result (streamed: to the last chunk before [DONE]): the resolved provider and model, the messages exactly as sent upstream with anything that looks like a secret redacted (best effort), and timings in milliseconds. It needs the right to read the chat (chats:GetChat) or, stateless, the AI provider (aiProviders:GetAIProvider), and, continuing a conversation, that conversation (conversations:GetConversation); else the request is refused as forbidden before anything goes upstream. A completion that fails once it ran (the AI provider failed or refused it, or its turn was not stored) carries it too: over REST as the error envelope's error.debug (streamed: in the error event too), over MCP as a second text of the error result, {\"debug\": {...}}."`
}

// ToDomain converts the fields to the domain's completion parameters.
func (a CompletionFields) ToDomain() domain.CompletionParams {
	msgs := make([]domain.InputMessage, len(a.Messages))
	for i, m := range a.Messages {
		msgs[i] = domain.InputMessage{Role: domain.MessageRole(m.Role), Content: (*string)(m.Content), DocumentID: m.DocumentID,
			Refusal: m.Refusal, ToolCalls: toDomainToolCalls(m.ToolCalls), ToolCallID: m.ToolCallID}
	}
	p := domain.CompletionParams{Messages: msgs, Model: a.Model, Temperature: a.Temperature, MaxTokens: a.MaxTokens,
		TopP: a.TopP, Stop: a.Stop, ReasoningEffort: a.ReasoningEffort, Names: a.Names, Debug: a.Debug,
		Seed: a.Seed, FrequencyPenalty: a.FrequencyPenalty, PresencePenalty: a.PresencePenalty, ParallelToolCalls: a.ParallelToolCalls}
	if t := a.Thinking; t != nil {
		p.Thinking = &domain.Thinking{Type: t.Type, Display: t.Display}
		if t.BudgetTokens != nil {
			p.Thinking.BudgetTokens = *t.BudgetTokens
		}
	}
	for _, d := range a.DataSources {
		p.DataSources = append(p.DataSources, d.ID)
	}
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

func toDomainToolCalls(calls []ToolCall) []domain.ToolCall {
	if len(calls) == 0 {
		return nil
	}
	out := make([]domain.ToolCall, len(calls))
	for i, c := range calls {
		out[i] = domain.ToolCall{ID: c.ID, Type: c.Type, Name: c.Function.Name, Arguments: c.Function.Arguments,
			ExtraContent: c.ExtraContent}
	}
	return out
}

// ToolCallsOf converts the domain's tool calls to the wire shape.
func ToolCallsOf(calls []domain.ToolCall) []ToolCall {
	if len(calls) == 0 {
		return nil
	}
	out := make([]ToolCall, len(calls))
	for i, c := range calls {
		out[i] = ToolCall{ID: c.ID, Type: "function", Function: ToolCallFunction{Name: c.Name, Arguments: c.Arguments},
			ExtraContent: c.ExtraContent}
	}
	return out
}

// Debug is how a completion was resolved (request field debug: true), in
// a REST response or stream's last chunk and an MCP tool's result alike.
type Debug struct {
	Provider DebugProvider  `json:"provider" desc:"The AI provider called."`
	Model    string         `json:"model" desc:"The model Parley chose and sent (the completion's model is the one the provider says answered)."`
	Messages []DebugMessage `json:"messages" desc:"Exactly what went upstream, in order: the system message, the conversation's history, the request's messages; anything that looks like a secret redacted."`
	Timings  DebugTimings   `json:"timings" desc:"Where the time went, in milliseconds."`
}

// DebugProvider is the AI provider a Debug's completion called.
type DebugProvider struct {
	ID   string `json:"id" desc:"AI provider id."`
	Name string `json:"name" desc:"AI provider name."`
	Type string `json:"type" desc:"AI provider type."`
}

// DebugMessage is a message as it went upstream.
type DebugMessage struct {
	Role       string     `json:"role" desc:"Author of the message."`
	Content    string     `json:"content" desc:"Text sent, secrets redacted."`
	Refusal    string     `json:"refusal,omitempty" desc:"The refusal of an assistant message that declined, as sent (OpenAI's refusal; other providers get it as the text), secrets redacted."`
	ToolCalls  []ToolCall `json:"toolCalls,omitempty" desc:"Tool calls of an assistant message, arguments redacted."`
	ToolCallID string     `json:"toolCallId,omitempty" desc:"The tool call a tool message answers."`
}

// DebugTimings is where a Debug's completion spent its time.
type DebugTimings struct {
	QueueMs     float64 `json:"queueMs" desc:"Milliseconds from the request to the upstream call (lookups, permissions, limits)."`
	FirstByteMs float64 `json:"firstByteMs" desc:"Milliseconds from the upstream call to its first byte (a stream's first delta), retries included; 0 when none came."`
	TotalMs     float64 `json:"totalMs" desc:"Milliseconds from the request to the reply's end (or the failure); at least queueMs + firstByteMs."`
}

// DebugOf converts the domain's debug; nil stays nil.
func DebugOf(d *domain.Debug) *Debug {
	if d == nil {
		return nil
	}
	out := &Debug{
		Provider: DebugProvider{ID: d.ProviderID, Name: d.ProviderName, Type: string(d.ProviderType)},
		Model:    d.Model,
		Messages: make([]DebugMessage, len(d.Messages)),
		Timings:  DebugTimings{QueueMs: ms(d.QueueTime), FirstByteMs: ms(d.FirstByte), TotalMs: ms(d.Total)},
	}
	for i, m := range d.Messages {
		out.Messages[i] = DebugMessage{Role: string(m.Role), Content: m.Content, Refusal: m.Refusal, ToolCalls: ToolCallsOf(m.ToolCalls), ToolCallID: m.ToolCallID}
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
