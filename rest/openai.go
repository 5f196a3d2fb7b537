package rest

import (
	"errors"
	"fmt"
	"slices"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

// OpenAI's SDKs, and the libraries built on them, post a completion to
// {baseURL}/chat/completions with OpenAI's own spelling of its fields
// (max_tokens, tool_calls, ...). Both completion endpoints answer at that
// path too (routes in server.go) and take OpenAI's spelling of the fields
// Parley has beside its camelCase one, so that an SDK given Parley's base
// URL works with its own parameters: …/api/v1 for the stateless endpoint
// (with aiProviderId in the body), …/api/v1/chats/{chatId} per chat. A
// field sent in both spellings is refused: which one was meant is not
// Parley's to guess. MCP's tools take the camelCase spelling only.

// openAIOnly are OpenAI's completion parameters that Parley does not take:
// a request that sends one is told so, rather than that it is unknown.
var openAIOnly = map[string]bool{
	"logit_bias": true, "logprobs": true, "top_logprobs": true, "user": true, "store": true, "metadata": true,
	"service_tier": true, "modalities": true, "audio": true, "prediction": true, "web_search_options": true,
	"safety_identifier": true, "prompt_cache_key": true, "verbosity": true, "functions": true, "function_call": true,
}

// seedFields are the fields by which seeds 000 and 001 send a completion
// and Parley takes under another name or not at all, with what to send
// instead (a stateless completion's sessionId is keepsNoConversation's).
var seedFields = map[string]string{
	"sessionId": "send conversationId instead, the one the conversation's first completion answered (in its body, or its stream's first chunk)",
	"systemPrompt": "send a message of role system first in messages instead, which replaces the chat's systemMessage for this call " +
		"(stateless: systemMessage does too)",
	"projectId": "a completion runs in its chat's project (stateless: in the project of the AI provider named by aiProviderId instead)",
	"provider": "a completion runs on its chat's AI provider (stateless: name one by aiProviderId instead; " +
		"GET /api/v1/ai-providers?projectId=... lists a project's)",
	// MCP's tools take it as an argument; REST, as a header.
	"idempotencyKey": "send it as the Idempotency-Key header instead (a per-chat completion's; a stateless one stores no turn to repeat)",
}

// perChatFields are the fields a stateless completion (or MCP's per-chat
// tool) takes that a per-chat one takes from its path and chat, with
// what to send instead.
var perChatFields = map[string]string{
	"aiProviderId": "a per-chat completion runs on its chat's AI provider; change the chat's with PATCH /api/v1/chats/{chatId}, " +
		"or send a stateless completion (POST /api/v1/chat/completions)",
	"systemMessage": "send a message of role system first in messages instead, which replaces the chat's systemMessage for this call",
	"chatId":        "the chat is the one in the path",
}

// bindCompletion is bind for a completion request.
func (s *Server) bindCompletion(c *echo.Context, v any) error {
	err := s.bind(c, v)
	if de, ok := errors.AsType[*domain.Error](err); ok && de.Kind == domain.Invalid {
		f, _ := de.Details["field"].(string)
		if openAIOnly[f] {
			return domain.Invalidf(f, "%s is an OpenAI parameter that Parley does not take; leave it out", f)
		}
		if fix, ok := seedFields[f]; ok { // none of them is a field here
			return domain.Invalidf(f, "%s is not taken here: %s", f, fix)
		}
		if _, perChat := v.(*chatCompletionRequest); perChat && perChatFields[f] != "" {
			return domain.Invalidf(f, "%s is not taken here: %s", f, perChatFields[f])
		}
	}
	return err
}

// openAIFields are OpenAI's spellings of the completion fields that have
// another name in Parley.
type openAIFields struct {
	MaxTokens           *int                  `json:"max_tokens,omitempty" min:"1" desc:"OpenAI's spelling of maxTokens; send one of maxTokens, max_tokens and max_completion_tokens."`
	MaxCompletionTokens *int                  `json:"max_completion_tokens,omitempty" min:"1" desc:"OpenAI's newer name for maxTokens; send one of maxTokens, max_tokens and max_completion_tokens."`
	TopP                *float64              `json:"top_p,omitempty" min:"0" max:"1" desc:"OpenAI's spelling of topP; send one of them."`
	ToolChoice          *wire.ToolChoice      `json:"tool_choice,omitempty" desc:"OpenAI's spelling of toolChoice; send one of them."`
	ResponseFormat      *openAIResponseFormat `json:"response_format,omitempty" desc:"OpenAI's spelling of responseFormat, its schema under json_schema; send one of them."`
	ReasoningEffort     string                `json:"reasoning_effort,omitempty" enum:",none,minimal,low,medium,high,xhigh,max" desc:"OpenAI's spelling of reasoningEffort; send one of them."`
	FrequencyPenalty    *float64              `json:"frequency_penalty,omitempty" min:"-2" max:"2" desc:"OpenAI's spelling of frequencyPenalty; send one of them."`
	PresencePenalty     *float64              `json:"presence_penalty,omitempty" min:"-2" max:"2" desc:"OpenAI's spelling of presencePenalty; send one of them."`
	ParallelToolCalls   *bool                 `json:"parallel_tool_calls,omitempty" desc:"OpenAI's spelling of parallelToolCalls; send one of them."`
	N                   *int                  `json:"n,omitempty" min:"1" max:"1" desc:"How many choices to generate: Parley answers one, so 1 or left out."`
	StreamOptions       *streamOptions        `json:"stream_options,omitempty" desc:"Taken for OpenAI's SDKs and ignored: a stream's last chunk before [DONE] always carries usage, and chunks are never obfuscated."`
}

// openAIResponseFormat is OpenAI's response_format.
type openAIResponseFormat struct {
	Type       string           `json:"type" jsonschema:"required" enum:"text,json_object,json_schema" desc:"text (the default), json_object (JSON mode) or json_schema (structured output)."`
	JSONSchema *wire.JSONSchema `json:"json_schema,omitempty" desc:"With type json_schema: the schema the reply must follow."`
}

// streamOptions is OpenAI's stream_options, which Parley's streams do not
// need: they always end with usage and never obfuscate.
type streamOptions struct {
	IncludeUsage       *bool `json:"include_usage,omitempty" desc:"Ignored: usage always comes."`
	IncludeObfuscation *bool `json:"include_obfuscation,omitempty" desc:"Ignored: chunks are never obfuscated."`
}

// message is a completion's message as REST takes it: OpenAI's spelling of
// its tool fields too, OpenAI's developer role (its system role's name for
// reasoning models, which LangChain sends them), and the name LangChain
// gives a tool message.
type message struct {
	wire.Message
	Role             string          `json:"role" enum:"system,developer,user,assistant,tool" desc:"Author of the message. At most one system (or developer: OpenAI's name for it) message, which replaces the default system message for this call. A tool message is a tool's result."`
	OpenAIToolCalls  []wire.ToolCall `json:"tool_calls,omitempty" desc:"OpenAI's spelling of toolCalls; send one of them."`
	OpenAIToolCallID string          `json:"tool_call_id,omitempty" desc:"OpenAI's spelling of toolCallId; send one of them."`
	Name             string          `json:"name,omitempty" desc:"Tool messages only, and not sent on: the tool's name, which the call answered names already. Parley sends no participant names."`
	ReasoningContent string          `json:"reasoning_content,omitempty" desc:"Assistant messages only: a reply's reasoning as Parley returned it, which clients that keep the reply as it came send back. With toolCalls it goes back with them (DeepSeek's thinking mode requires it); otherwise it is dropped."`
}

// thinking is an Anthropic model's extended thinking as REST takes it: with
// budget_tokens beside budgetTokens, Anthropic's spelling, which clients of
// Anthropic's own OpenAI-compatible endpoint send in an OpenAI SDK's extra
// body ({"thinking": {"type": "enabled", "budget_tokens": 2048}}).
type thinking struct {
	wire.Thinking
	BudgetTokensAnthropic *int `json:"budget_tokens,omitempty" min:"1024" desc:"Anthropic's spelling of budgetTokens; send one of them."`
}

// spellings are the other spellings a request sent (OpenAI's, or
// Anthropic's for its own fields), by Parley's name of each field: a field
// the domain refuses is named as the request sent it.
type spellings map[string]spelling

// spelling is a field's name as a request sent it, and whose name it is.
type spelling struct{ name, whose string }

// asSent names in err, the domain's refusal of a request's field before it
// ran, the field as the request spelt it: "max_tokens (OpenAI's spelling of
// maxTokens): maxTokens must be a positive integer". Other errors, and
// those of a completion that ran (domain.AdmittedError), are err.
func (sp spellings) asSent(err error) error {
	de, ok := err.(*domain.Error)
	if !ok || de.Kind != domain.Invalid {
		return err
	}
	field, _ := de.Details["field"].(string)
	alias, ok := sp[field]
	if !ok {
		return err
	}
	return domain.Invalidf(alias.name, "%s (%s spelling of %s): %s", alias.name, alias.whose, field, de.Message)
}

// ToDomain returns the domain's parameters of a completion request, each
// field taken from whichever spelling was sent. It takes the place of
// wire.CompletionFields.ToDomain, which would read neither REST's messages
// nor OpenAI's spellings: a handler cannot call that one by mistake.
func (f *completionFields) ToDomain() (domain.CompletionParams, error) {
	c := f.CompletionFields
	f.sent = spellings{}
	c.Messages = make([]wire.Message, len(f.Messages))
	for i, m := range f.Messages {
		at := func(field string) string { return fmt.Sprintf("messages[%d].%s", i, field) }
		m.Message.Role = m.Role
		if m.Role == "developer" {
			m.Message.Role = string(domain.RoleSystem)
		}
		if m.Name != "" && m.Role != string(domain.RoleTool) {
			return domain.CompletionParams{}, domain.Invalidf(at("name"), "%s: Parley sends no participant names; leave name out (a tool message may carry its tool's name)", at("name"))
		}
		if m.ReasoningContent != "" && m.Role != string(domain.RoleAssistant) {
			return domain.CompletionParams{}, domain.Invalidf(at("reasoning_content"), "%s: only an assistant message, a reply, has reasoning; leave it out", at("reasoning_content"))
		}
		if m.OpenAIToolCalls != nil {
			if m.ToolCalls != nil {
				return domain.CompletionParams{}, bothSpellings(at("toolCalls"), at("tool_calls"))
			}
			m.ToolCalls = m.OpenAIToolCalls
			f.sent[at("toolCalls")] = spelling{at("tool_calls"), openAIs}
		}
		if m.OpenAIToolCallID != "" { // else either does nothing: no names to format
			if err := either(f.sent, &m.ToolCallID, at("toolCallId"), m.OpenAIToolCallID, at("tool_call_id")); err != nil {
				return domain.CompletionParams{}, err
			}
		}
		if m.ReasoningContent != "" && len(m.ToolCalls) > 0 && domain.ExtraReasoning(m.ToolCalls[0].ExtraContent) == "" {
			// A reply that called tools goes back with its reasoning, in
			// the calls as the reply's carried it (DeepSeek's thinking
			// mode requires it); another reply's is dropped.
			m.ToolCalls = slices.Clone(m.ToolCalls)
			m.ToolCalls[0].ExtraContent = domain.ExtraWith(m.ToolCalls[0].ExtraContent, domain.ReasoningExtra, m.ReasoningContent)
		}
		c.Messages[i] = m.Message
	}
	o := f.openAIFields
	var rf *wire.ResponseFormat
	if o.ResponseFormat != nil {
		rf = &wire.ResponseFormat{Type: o.ResponseFormat.Type, JSONSchema: o.ResponseFormat.JSONSchema}
	}
	if err := either(f.sent, &c.MaxTokens, "maxTokens", o.MaxTokens, "max_tokens"); err != nil {
		return domain.CompletionParams{}, err
	}
	maxTokens := "maxTokens"
	if o.MaxTokens != nil {
		maxTokens = "max_tokens"
	}
	if err := either(f.sent, &c.MaxTokens, maxTokens, o.MaxCompletionTokens, "max_completion_tokens"); err != nil {
		return domain.CompletionParams{}, err
	}
	if err := either(f.sent, &c.TopP, "topP", o.TopP, "top_p"); err != nil {
		return domain.CompletionParams{}, err
	}
	if err := either(f.sent, &c.ToolChoice, "toolChoice", o.ToolChoice, "tool_choice"); err != nil {
		return domain.CompletionParams{}, err
	}
	if err := either(f.sent, &c.ResponseFormat, "responseFormat", rf, "response_format"); err != nil {
		return domain.CompletionParams{}, err
	}
	if err := either(f.sent, &c.ReasoningEffort, "reasoningEffort", o.ReasoningEffort, "reasoning_effort"); err != nil {
		return domain.CompletionParams{}, err
	}
	if err := either(f.sent, &c.FrequencyPenalty, "frequencyPenalty", o.FrequencyPenalty, "frequency_penalty"); err != nil {
		return domain.CompletionParams{}, err
	}
	if err := either(f.sent, &c.PresencePenalty, "presencePenalty", o.PresencePenalty, "presence_penalty"); err != nil {
		return domain.CompletionParams{}, err
	}
	if err := either(f.sent, &c.ParallelToolCalls, "parallelToolCalls", o.ParallelToolCalls, "parallel_tool_calls"); err != nil {
		return domain.CompletionParams{}, err
	}
	if t := f.Thinking; t != nil {
		w := t.Thinking
		if err := eitherOf(anthropics, f.sent, &w.BudgetTokens, "thinking.budgetTokens", t.BudgetTokensAnthropic, "thinking.budget_tokens"); err != nil {
			return domain.CompletionParams{}, err
		}
		c.Thinking = &w
	}
	if o.N != nil && *o.N != 1 {
		return domain.CompletionParams{}, domain.Invalidf("n", "n is %d; Parley answers one choice, so send 1 or leave n out", *o.N)
	}
	return c.ToDomain(), nil
}

// Whose spelling a field's other name is, as asSent's refusals say it.
const (
	openAIs    = "OpenAI's"
	anthropics = "Anthropic's"
)

// either sets *field, named name, to alias, OpenAI's spelling of it named
// aliasName, when alias was sent, and records it in sent; both sent is a
// 400 naming aliasName.
func either[T comparable](sent spellings, field *T, name string, alias T, aliasName string) error {
	return eitherOf(openAIs, sent, field, name, alias, aliasName)
}

// eitherOf is either for a spelling that is whose.
func eitherOf[T comparable](whose string, sent spellings, field *T, name string, alias T, aliasName string) error {
	var none T
	if alias == none {
		return nil
	}
	if *field != none {
		return bothSpellings(name, aliasName)
	}
	*field = alias
	sent[name] = spelling{aliasName, whose}
	return nil
}

func bothSpellings(name, alias string) error {
	return domain.Invalidf(alias, "%s and %s are one field in two spellings; send one of them", name, alias)
}
