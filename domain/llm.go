package domain

import (
	"context"
	"log/slog"
	"time"
)

// Secret holds a credential. It prints and logs as "[redacted]", so a
// secret that ends up in a format string or a log attribute does not leak.
type Secret string

func (Secret) String() string               { return "[redacted]" }
func (Secret) GoString() string             { return "[redacted]" }
func (Secret) LogValue() slog.Value         { return slog.StringValue("[redacted]") }
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Reveal returns the credential itself, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }

// Endpoint is a resolved AI provider: where to call and with which key.
type Endpoint struct {
	Type       ProviderType
	BaseURL    string // "" for the provider's public default
	APIKey     Secret
	APIVersion string // azure-openai
	// PromptCache asks Anthropic to cache each call's prompt for this long
	// (AIProvider.PromptCache); "" for none.
	PromptCache string
}

// LLMMessage is one message sent upstream.
type LLMMessage struct {
	Role       MessageRole
	Content    string
	Refusal    string     // assistant: the model declined (see LLMResult)
	ToolCalls  []ToolCall // assistant
	ToolCallID string     // tool
}

// LLMRequest is one completion call to an upstream model.
type LLMRequest struct {
	Endpoint    Endpoint
	Model       string
	Messages    []LLMMessage
	Temperature *float64
	MaxTokens   *int
	TopP        *float64
	Stop        []string
	// ReasoningEffort goes to OpenAI-wire providers as reasoning_effort, to
	// Anthropic as output_config.effort; "" for none.
	ReasoningEffort string
	// Seed, FrequencyPenalty and PresencePenalty go to OpenAI-wire
	// providers only (validateFor refuses a seed or a penalty other than 0
	// for the others), ParallelToolCalls to OpenAI-wire providers as
	// parallel_tool_calls and to Anthropic as disable_parallel_tool_use;
	// nil when not set.
	Seed              *int
	FrequencyPenalty  *float64
	PresencePenalty   *float64
	ParallelToolCalls *bool
	// Thinking goes to Anthropic as thinking (validateFor refuses it for
	// the others); nil when not set.
	Thinking *Thinking
	// Tools, ToolChoice and ResponseFormat are passed to OpenAI-wire
	// providers as they are and mapped for the others; nil when not set.
	Tools          []Tool
	ToolChoice     *ToolChoice
	ResponseFormat *ResponseFormat
	// Caller names whom the call is for: its AI provider and the caller
	// (an API key, else a user). What the adapter keeps of a call for the
	// calls that follow (the thinking behind tool calls) it keeps under
	// Caller, so that no other caller, of this project or another, finds
	// it; "" is a caller too.
	Caller string
}

// LLMResult is what the upstream answered.
type LLMResult struct {
	Content string
	Refusal string // why the model declined to answer, in place of content (OpenAI's)
	// Reasoning is the model's thinking before its reply, as the provider
	// shows it (OpenAI-wire reasoning_content, Anthropic's thinking
	// blocks): passed on to the client apart from the reply, and not
	// stored with it, but for a reply that calls tools, whose reasoning
	// rides in its first call's ExtraContent to go back upstream with the
	// calls (Anthropic's signed thinking, see llm's thinkingExtra; an
	// OpenAI-wire server's reasoning, see llm's withReasoningExtra).
	Reasoning    string
	ToolCalls    []ToolCall
	FinishReason string // OpenAI's: stop, length, tool_calls, content_filter
	Model        string // the model the upstream says answered
	Usage        Usage
	FirstByte    time.Duration // from the call to the first byte (stream: first delta)
	// Accepted says, of a call that failed, that the provider had
	// answered 2xx: it took the call, and may bill it, though no delta
	// came or the whole reply's body was lost.
	Accepted bool
	// NotTaken says, of a call that failed, that the provider took none
	// of it: its last attempt's request never went out whole (cancelled
	// while it waited for a connection, say), or was refused with an
	// error status and no other went out after it. There is nothing to
	// bill.
	NotTaken bool
	// Sent is the message list as the provider got it, when its adapter
	// changed the request's (Anthropic has no response_format: an
	// instruction joins the system prompt; it takes no blank text, which
	// is left out); nil when it is the request's. Debug shows it.
	Sent []LLMMessage
}

// LLM calls upstream models. The llm package implements it for every
// ProviderType.
type LLM interface {
	// Complete runs one completion. When onDelta is non-nil the call streams
	// and onDelta receives each delta in order, text and tool call pieces in
	// OpenAI's shape (see ToolCallDelta); an error from onDelta aborts the
	// call. The result always holds the whole reply, tool calls included;
	// with an error it may hold what is known of the failed call (a
	// partial reply, Accepted, Sent), or be nil. Errors carry
	// the kinds Upstream (the provider failed or rejected the call),
	// RateLimited (with RetryAfter), Timeout, Canceled and Invalid (the
	// provider type or base URL is unusable).
	Complete(ctx context.Context, req LLMRequest, onDelta func(Delta) error) (*LLMResult, error)
	// Check refuses (Invalid), without calling the provider, a request
	// that Complete would refuse before any call (what the provider type
	// cannot be sent). It runs before the request counts against limits.
	Check(req LLMRequest) error
	// Models lists the models the provider at e offers, in its order.
	// Errors carry the kinds Complete's do; Invalid too for a provider
	// type whose API lists no models a completion could name.
	Models(ctx context.Context, e Endpoint) ([]Model, error)
}

// Model is a model a provider offers.
type Model struct {
	ID string
	// Created is when the provider made it, zero when it does not say.
	Created time.Time
	// OwnedBy is the organization that owns it, as the provider says
	// (OpenAI's owned_by; "anthropic" for Anthropic's).
	OwnedBy string
}
