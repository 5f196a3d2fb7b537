package domain

import (
	"fmt"
	"slices"
	"strings"
)

// InputMessage is one message of a completion request: Content or
// DocumentID, never both; except that an assistant message with ToolCalls
// or a Refusal may leave out its content, and a tool message (the result
// of the tool call ToolCallID) has Content.
type InputMessage struct {
	Role       MessageRole
	Content    *string
	DocumentID string
	// Refusal (assistant only) is a reply's refusal, sent back. Left out
	// of requestHash's JSON when empty, as fields added later must be,
	// so that a key stored before it came is replayed after.
	Refusal    string     `json:",omitempty"`
	ToolCalls  []ToolCall // assistant only
	ToolCallID string     // tool only
}

// CompletionParams are the fields both completion endpoints take.
type CompletionParams struct {
	Messages    []InputMessage
	Model       string
	Temperature *float64
	MaxTokens   *int
	TopP        *float64
	Stop        []string
	Debug       bool
	// ReasoningEffort is how hard a reasoning model thinks (one of
	// ReasoningEfforts); "" leaves it to the provider. Left out of the
	// idempotency digest when empty, so that requests stored before it
	// existed still match (requestHash).
	ReasoningEffort string `json:",omitempty"`
	// DataSources (document ids) and Names (document names) are documents
	// of the project sent as context for this call (seed 000's data
	// sources), after the system message; left out of the idempotency
	// digest when empty, as ReasoningEffort is.
	DataSources []string `json:",omitempty"`
	Names       []string `json:",omitempty"`
	// Seed, FrequencyPenalty and PresencePenalty are OpenAI's sampling
	// parameters, which Anthropic does not take (validateFor refuses a
	// seed, and a penalty other than 0, which does nothing);
	// ParallelToolCalls false asks for one tool call a reply at most
	// (Anthropic's disable_parallel_tool_use). Left out of the idempotency
	// digest when unset, as ReasoningEffort is.
	Seed              *int     `json:",omitempty"`
	FrequencyPenalty  *float64 `json:",omitempty"`
	PresencePenalty   *float64 `json:",omitempty"`
	ParallelToolCalls *bool    `json:",omitempty"`
	// Thinking turns Anthropic's extended thinking on or off; nil leaves
	// it to the model (most think only when asked). Left out of the
	// idempotency digest when nil.
	Thinking *Thinking `json:",omitempty"`
	// Tools the model may call, whether it must, and the reply's format.
	Tools          []Tool
	ToolChoice     *ToolChoice
	ResponseFormat *ResponseFormat
}

// Thinking is an Anthropic model's extended thinking: Type is one of
// ThinkingEnabled (BudgetTokens, at least MinThinkingBudget, bounds it),
// ThinkingAdaptive (the model decides) and ThinkingDisabled. Display,
// with either of the first two, is ThinkingSummarized or ThinkingOmitted,
// or "" for the model's default.
type Thinking struct {
	Type         string
	BudgetTokens int    `json:",omitempty"`
	Display      string `json:",omitempty"`
}

const (
	ThinkingEnabled  = "enabled"
	ThinkingAdaptive = "adaptive"
	ThinkingDisabled = "disabled"
	// Whether the reply shows its thinking: summarized, or only signed.
	ThinkingSummarized = "summarized"
	ThinkingOmitted    = "omitted"
	// MinThinkingBudget is Anthropic's least budget_tokens.
	MinThinkingBudget = 1024
)

// thinks reports whether p turns thinking on.
func (p *CompletionParams) thinks() bool {
	return p.Thinking != nil && p.Thinking.Type != ThinkingDisabled
}

// ReasoningEfforts are the values of reasoningEffort: OpenAI's
// reasoning_effort (none to xhigh) and Anthropic's output_config.effort
// (low to max; validateFor refuses the others). Which a model takes is the
// provider's to say: one it does not is its 400, passed on (or go-openai's
// own refusal, see llm's openAILocal). The API's schemas list them too (the
// enum tag of wire.CompletionFields.ReasoningEffort).
var ReasoningEfforts = []string{"none", "minimal", "low", "medium", "high", "xhigh", "max"}

// Completion parameter limits.
const (
	// MaxDataSources caps the documents a request names as context, by id
	// and by name together.
	MaxDataSources   = 32
	maxStopSequences = 4
	// MaxMessages caps a request's messages. MaxDataSources and it are
	// exported for the schemas' tags, which a test holds to them.
	MaxMessages = 1000
	// maxTurnBytes caps the text of a request's messages once documentIds
	// are resolved: a body of a few KiB naming a 4 MiB document a thousand
	// times would otherwise send, and store, 4 GiB.
	maxTurnBytes = 2 * maxDocumentBytes
	// maxHistoryBytes caps the text of a conversation that may be
	// continued: each continuation sends, and holds in memory, the whole
	// history, and GET answers it whole.
	maxHistoryBytes = 4 * maxTurnBytes
	// messageOverhead is what each message counts toward maxHistoryBytes
	// besides its text: its row, its part of GET's answer and of each
	// continuation's memory. Text alone let a conversation of empty
	// messages (a thousand a request) grow without bound; so it holds at
	// most 32,768 messages.
	messageOverhead = 1 << 10
	// MaxHistoryMessages bounds maxHistoryMessages: the most messages a
	// conversation that may be continued holds.
	MaxHistoryMessages = maxHistoryBytes / messageOverhead
)

func (p *CompletionParams) validate() error {
	if len(p.Messages) == 0 {
		return Invalidf("messages", "messages must not be empty; send at least one {\"role\": \"user\", \"content\": \"...\"}")
	}
	if len(p.Messages) > MaxMessages {
		return Invalidf("messages", "messages has %d entries; the limit is %d", len(p.Messages), MaxMessages)
	}
	systems := 0
	for i, m := range p.Messages {
		switch m.Role {
		case RoleSystem:
			systems++
		case RoleUser, RoleAssistant, RoleTool:
		default:
			return Invalidf(fmt.Sprintf("messages[%d].role", i), "messages[%d].role must be system, user, assistant or tool", i)
		}
		if len(m.ToolCalls) > 0 && m.Role != RoleAssistant {
			return Invalidf(fmt.Sprintf("messages[%d].toolCalls", i), "messages[%d].toolCalls belongs only to assistant messages", i)
		}
		if m.ToolCallID != "" && m.Role != RoleTool {
			return Invalidf(fmt.Sprintf("messages[%d].toolCallId", i), "messages[%d].toolCallId belongs only to tool messages", i)
		}
		if m.Refusal != "" {
			field := fmt.Sprintf("messages[%d].refusal", i)
			if m.Role != RoleAssistant {
				return Invalidf(field, "%s belongs only to assistant messages", field)
			}
			if m.DocumentID != "" {
				return Invalidf(fmt.Sprintf("messages[%d].documentId", i), "messages[%d] has a refusal; it may have content but no documentId", i)
			}
			if err := checkText(field, m.Refusal, false, maxDocumentBytes); err != nil {
				return err
			}
		}
		switch {
		case m.Role == RoleTool:
			if err := checkToolCallID(fmt.Sprintf("messages[%d].toolCallId", i), m.ToolCallID); err != nil {
				return err
			}
			if m.Content == nil || m.DocumentID != "" {
				return Invalidf(fmt.Sprintf("messages[%d].content", i), "messages[%d] is a tool message: send the tool's result as content (and no documentId)", i)
			}
		case len(m.ToolCalls) > 0:
			if err := validateToolCalls(i, m.ToolCalls); err != nil {
				return err
			}
			if m.DocumentID != "" {
				return Invalidf(fmt.Sprintf("messages[%d].documentId", i), "messages[%d] has toolCalls; it may have content but no documentId", i)
			}
		case m.Refusal != "": // a reply that declined: content optional, documentId refused above
		case (m.Content == nil) == (m.DocumentID == ""):
			return Invalidf(fmt.Sprintf("messages[%d]", i), "messages[%d] must have either content or documentId, not both and not neither", i)
		}
		// The field is named only once the check failed: formatting the
		// name of every message's content cost more than checking it.
		if m.Content != nil && checkText("content", *m.Content, false, maxDocumentBytes) != nil {
			return checkText(fmt.Sprintf("messages[%d].content", i), *m.Content, false, maxDocumentBytes)
		}
	}
	if systems > 1 {
		return Invalidf("messages", "messages has %d system messages; send at most one (it replaces the default system message for this call)", systems)
	}
	// A blank model is none, as a chat's is: the chat's or the provider's
	// goes instead.
	p.Model = strings.TrimSpace(p.Model)
	if err := checkModel("model", p.Model, false); err != nil {
		return err
	}
	if t := p.Temperature; t != nil && (*t < 0 || *t > 2) {
		return Invalidf("temperature", "temperature must be between 0 and 2")
	}
	if t := p.TopP; t != nil && (*t < 0 || *t > 1) {
		return Invalidf("topP", "topP must be between 0 and 1")
	}
	if n := p.MaxTokens; n != nil && *n < 1 {
		return Invalidf("maxTokens", "maxTokens must be a positive integer")
	}
	if f := p.FrequencyPenalty; f != nil && (*f < -2 || *f > 2) {
		return Invalidf("frequencyPenalty", "frequencyPenalty must be between -2 and 2")
	}
	if f := p.PresencePenalty; f != nil && (*f < -2 || *f > 2) {
		return Invalidf("presencePenalty", "presencePenalty must be between -2 and 2")
	}
	if p.ParallelToolCalls != nil && len(p.Tools) == 0 {
		return Invalidf("parallelToolCalls", "parallelToolCalls says how the model may call tools; send it with tools, or leave it out")
	}
	if n := len(p.DataSources) + len(p.Names); n > MaxDataSources {
		// Named as the first source past the bound, in the order they
		// are read: dataSources, then names.
		field := fmt.Sprintf("dataSources[%d].id", MaxDataSources)
		if len(p.DataSources) <= MaxDataSources {
			field = fmt.Sprintf("names[%d]", MaxDataSources-len(p.DataSources))
		}
		return Invalidf(field, "dataSources and names name %d documents; send at most %d", n, MaxDataSources)
	}
	for i, id := range p.DataSources {
		if err := checkRef(fmt.Sprintf("dataSources[%d].id", i), PrefixDocument, id); err != nil {
			return err
		}
	}
	for i := range p.Names {
		p.Names[i] = trimRequired(p.Names[i]) // blank: said so, not "missing"
		if err := checkText(fmt.Sprintf("names[%d]", i), p.Names[i], true, maxNameLen); err != nil {
			return err
		}
	}
	if e := p.ReasoningEffort; e != "" && !slices.Contains(ReasoningEfforts, e) {
		return Invalidf("reasoningEffort", "reasoningEffort must be one of %s", strings.Join(ReasoningEfforts, ", "))
	}
	if err := p.validateThinking(); err != nil {
		return err
	}
	if len(p.Stop) > maxStopSequences {
		return Invalidf("stop", "stop has %d sequences; send at most %d", len(p.Stop), maxStopSequences)
	}
	for _, s := range p.Stop {
		if s == "" {
			return Invalidf("stop", "stop sequences must not be empty")
		}
	}
	return p.validateTools()
}

// validateThinking checks thinking, and what Anthropic refuses beside it:
// a temperature but 1, a topP under 0.95, and with a budget, a tool the
// model must call.
func (p *CompletionParams) validateThinking() error {
	t := p.Thinking
	if t == nil {
		return nil
	}
	switch t.Type {
	case ThinkingEnabled:
		if t.BudgetTokens < MinThinkingBudget {
			return Invalidf("thinking.budgetTokens", "thinking of type enabled needs budgetTokens, at least %d: the most tokens the model may think in", MinThinkingBudget)
		}
		if p.MaxTokens != nil && t.BudgetTokens >= *p.MaxTokens {
			return Invalidf("thinking.budgetTokens", "thinking.budgetTokens (%d) must be less than maxTokens (%d), which bounds thinking and reply together", t.BudgetTokens, *p.MaxTokens)
		}
	case ThinkingAdaptive, ThinkingDisabled:
		if t.BudgetTokens != 0 {
			return Invalidf("thinking.budgetTokens", "only thinking of type enabled takes budgetTokens; leave it out")
		}
	default:
		return Invalidf("thinking.type", "thinking.type must be enabled, adaptive or disabled")
	}
	switch {
	case t.Display != "" && t.Display != ThinkingSummarized && t.Display != ThinkingOmitted:
		return Invalidf("thinking.display", "thinking.display must be summarized or omitted, or left out for the model's default")
	case t.Display != "" && t.Type == ThinkingDisabled:
		return Invalidf("thinking.display", "thinking of type disabled shows nothing; leave display out")
	}
	if !p.thinks() {
		return nil
	}
	switch {
	case p.Temperature != nil && *p.Temperature != 1:
		return Invalidf("temperature", "with thinking on, temperature may only be 1 (Anthropic's rule); leave it out")
	case p.TopP != nil && *p.TopP < 0.95:
		return Invalidf("topP", "with thinking on, topP must be between 0.95 and 1 (Anthropic's rule); leave it out")
	case t.Type == ThinkingEnabled && p.ToolChoice != nil && p.ToolChoice.Mode != ToolChoiceAuto && p.ToolChoice.Mode != ToolChoiceNone:
		// Adaptive thinking takes one: the model then does not think.
		return Invalidf("toolChoice", "with thinking of type enabled, toolChoice may only be auto or none (Anthropic's rule); adaptive thinking takes a forced tool call")
	}
	return nil
}

// validateFor checks what only some providers refuse, so that the caller
// gets a 400 naming the field rather than the provider's refusal as a 502.
func (p *CompletionParams) validateFor(t ProviderType) error {
	if p.Thinking != nil && t != ProviderAnthropic {
		return Invalidf("thinking", "thinking is Anthropic's extended thinking, and this is an %s provider, whose reasoning models think as reasoningEffort says; leave thinking out", t)
	}
	if t == ProviderAnthropic && p.Temperature != nil && *p.Temperature > 1 {
		return Invalidf("temperature", "temperature must be between 0 and 1 with an Anthropic provider")
	}
	if t == ProviderAnthropic && (p.ReasoningEffort == "none" || p.ReasoningEffort == "minimal") {
		return Invalidf("reasoningEffort", "reasoningEffort %s is OpenAI's; an Anthropic provider takes low, medium, high, xhigh or max", p.ReasoningEffort)
	}
	if t == ProviderAnthropic {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"seed", p.Seed != nil},
			// A penalty of 0, OpenAI's default, does nothing: clients
			// that send the defaults (LangChain 0.3) lose nothing.
			{"frequencyPenalty", p.FrequencyPenalty != nil && *p.FrequencyPenalty != 0},
			{"presencePenalty", p.PresencePenalty != nil && *p.PresencePenalty != 0},
		} {
			if f.set {
				return Invalidf(f.name, "an Anthropic provider takes no %s (it is OpenAI's); leave it out", f.name)
			}
		}
		for _, s := range p.Stop {
			if strings.TrimSpace(s) == "" {
				return Invalidf("stop", "stop sequence %q is only whitespace, which an Anthropic provider refuses; send stop sequences with other characters", s)
			}
		}
	}
	return nil
}
