package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Tool is a function the model may call (OpenAI's tools[].function).
type Tool struct {
	Type        string // "function", the only kind there is
	Name        string
	Description string
	Parameters  []byte // a JSON Schema object, as sent; nil for none
	Strict      bool
}

// ToolChoiceMode says whether the model may, must or must not call a tool.
type ToolChoiceMode string

const (
	ToolChoiceAuto     ToolChoiceMode = "auto"     // the model decides
	ToolChoiceNone     ToolChoiceMode = "none"     // no tool call
	ToolChoiceRequired ToolChoiceMode = "required" // at least one tool call
	ToolChoiceFunction ToolChoiceMode = "function" // a call of the tool named Name
)

// ToolChoice is OpenAI's tool_choice: a mode, or the one function to call.
type ToolChoice struct {
	Mode ToolChoiceMode
	Name string // ToolChoiceFunction only
}

// ResponseFormatType is the shape the reply must take.
type ResponseFormatType string

const (
	ResponseText       ResponseFormatType = "text"
	ResponseJSONObject ResponseFormatType = "json_object" // JSON mode
	ResponseJSONSchema ResponseFormatType = "json_schema" // structured output
)

// ResponseFormat is OpenAI's response_format. Name, Description, Schema
// and Strict belong to ResponseJSONSchema.
type ResponseFormat struct {
	Type        ResponseFormatType
	Name        string
	Description string
	Schema      []byte // a JSON Schema object, as sent
	Strict      bool
}

// ToolCall is a call of a tool by the model: in a reply, in an assistant
// message sent back, and stored with the conversation. Arguments is the
// JSON text the model wrote, kept as is (it may not even be valid JSON).
type ToolCall struct {
	ID        string
	Type      string // "function"
	Name      string
	Arguments string
	// ExtraContent is the JSON object an OpenAI-compatible provider sent
	// beside the call as extra_content, nil for none: Gemini's thought
	// signature, which Gemini 3 refuses a continuation without. It goes
	// back with the call, as it came, to openai-compatible providers only.
	// (omitempty: a request without it hashes as before; see requestHash.)
	ExtraContent []byte `json:",omitempty"`
}

// ToolCallDelta is one streamed piece of a tool call, in OpenAI's shape:
// the first piece of the call at Index carries ID and Name, the later ones
// only more Arguments to append.
type ToolCallDelta struct {
	Index        int
	ID           string
	Name         string
	Arguments    string
	ExtraContent []byte // see ToolCall; with the piece that brought it
}

// Delta is one streamed piece of a reply: text, tool call pieces, or both;
// or a piece of a refusal (see LLMResult).
type Delta struct {
	Content string
	Refusal string
	// Reasoning is a piece of the model's thinking, shown apart from the
	// reply (see LLMResult.Reasoning).
	Reasoning string
	ToolCalls []ToolCallDelta
	// Model is the model the provider says is answering, when it said
	// ("gpt-4o-2024-08-06" for "gpt-4o"): the stream's chunks name it, as
	// a whole response does.
	Model string
	// More is set when the next delta had already arrived with this one
	// and follows at once: a writer may hold this one and send both in one
	// write. It is never set on a delta after which the call waits for the
	// upstream.
	More bool
}

// split is d as OpenAI's streams send it: its text, refusal and reasoning
// in one delta, then each tool call in one of its own. The OpenAI SDKs'
// stream accumulators take a call as finished when the next chunk begins,
// and read one call a chunk: Ollama sends calls made together in one
// chunk, and an idempotent replay has the whole reply at once. A delta of
// no call, or of one call and nothing else, is itself.
func (d Delta) split() []Delta {
	text := d.Content != "" || d.Refusal != "" || d.Reasoning != ""
	if len(d.ToolCalls) == 0 || len(d.ToolCalls) == 1 && !text {
		return []Delta{d}
	}
	out := make([]Delta, 0, 1+len(d.ToolCalls))
	if text {
		head := d
		head.ToolCalls, head.More = nil, true
		out = append(out, head)
	}
	for i, c := range d.ToolCalls {
		out = append(out, Delta{ToolCalls: []ToolCallDelta{c}, Model: d.Model, More: d.More || i < len(d.ToolCalls)-1})
	}
	return out
}

// Tool limits, as OpenAI sets them.
const (
	maxTools         = 128
	maxToolCalls     = 128
	maxToolCallIDLen = 256
	// maxCallNameLen bounds the name of a function a message's tool call
	// calls, which, unlike a tool's declared name, need not be one a
	// tool may have.
	maxCallNameLen = 256
	// MaxExtraContent bounds a tool call's extra_content, sent or received:
	// a Gemini thought signature is a few kilobytes of base64.
	MaxExtraContent = 1 << 20
)

// ToolNamePattern is what OpenAI accepts as a function or schema name.
const ToolNamePattern = `^[a-zA-Z0-9_-]{1,64}$`

var toolNamePattern = regexp.MustCompile(ToolNamePattern)

// checkToolName validates a function or schema name.
func checkToolName(field, name string) error {
	if !toolNamePattern.MatchString(name) {
		return Invalidf(field, "%s must be 1 to 64 letters, digits, underscores or dashes (got %q)", field, name)
	}
	return nil
}

// checkSchema validates a JSON Schema value: a JSON object.
func checkSchema(field string, schema []byte, required bool) error {
	s := bytes.TrimSpace(schema)
	if len(s) == 0 || string(s) == "null" {
		if required {
			return Invalidf(field, "%s is required: a JSON Schema object", field)
		}
		return nil
	}
	if s[0] != '{' || !json.Valid(s) {
		return Invalidf(field, "%s must be a JSON Schema object such as {\"type\": \"object\", \"properties\": {...}}", field)
	}
	return nil
}

// validateTools checks tools, toolChoice and responseFormat.
func (p *CompletionParams) validateTools() error {
	if len(p.Tools) > maxTools {
		return Invalidf("tools", "tools has %d entries; the limit is %d", len(p.Tools), maxTools)
	}
	names := make(map[string]bool, len(p.Tools))
	for i, t := range p.Tools {
		if t.Type != "function" {
			return Invalidf(fmt.Sprintf("tools[%d].type", i), "tools[%d].type must be \"function\"", i)
		}
		field := fmt.Sprintf("tools[%d].function.name", i)
		if err := checkToolName(field, t.Name); err != nil {
			return err
		}
		if names[t.Name] {
			return Invalidf(field, "%s: another tool is already named %q; tool names must be unique", field, t.Name)
		}
		names[t.Name] = true
		if err := checkText(fmt.Sprintf("tools[%d].function.description", i), t.Description, false, maxTextLen); err != nil {
			return err
		}
		if err := checkSchema(fmt.Sprintf("tools[%d].function.parameters", i), t.Parameters, false); err != nil {
			return err
		}
	}
	if c := p.ToolChoice; c != nil {
		switch c.Mode {
		case ToolChoiceAuto, ToolChoiceNone, ToolChoiceRequired:
		case ToolChoiceFunction:
			if !names[c.Name] {
				return Invalidf("toolChoice", "toolChoice names the function %q, which is not among tools", c.Name)
			}
		default:
			return Invalidf("toolChoice", "toolChoice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}")
		}
		if len(p.Tools) == 0 {
			return Invalidf("toolChoice", "toolChoice needs tools; send tools or leave toolChoice out")
		}
	}
	if f := p.ResponseFormat; f != nil {
		switch f.Type {
		case ResponseText, ResponseJSONObject:
			if f.Schema != nil || f.Name != "" {
				return Invalidf("responseFormat.jsonSchema", "responseFormat.jsonSchema goes only with type \"json_schema\"")
			}
		case ResponseJSONSchema:
			if f.Name == "" && f.Schema == nil && f.Description == "" {
				return Invalidf("responseFormat.jsonSchema", "responseFormat.jsonSchema is required with type \"json_schema\": {\"name\": \"...\", \"schema\": {...}}")
			}
			if err := checkToolName("responseFormat.jsonSchema.name", f.Name); err != nil {
				return err
			}
			if err := checkText("responseFormat.jsonSchema.description", f.Description, false, maxTextLen); err != nil {
				return err
			}
			if err := checkSchema("responseFormat.jsonSchema.schema", f.Schema, true); err != nil {
				return err
			}
		default:
			return Invalidf("responseFormat.type", "responseFormat.type must be \"text\", \"json_object\" or \"json_schema\"")
		}
	}
	return nil
}

// validateToolCalls checks the tool calls of the assistant message at index i.
func validateToolCalls(i int, calls []ToolCall) error {
	if len(calls) > maxToolCalls {
		return Invalidf(fmt.Sprintf("messages[%d].toolCalls", i), "messages[%d].toolCalls has %d entries; the limit is %d", i, len(calls), maxToolCalls)
	}
	for j, c := range calls {
		at := fmt.Sprintf("messages[%d].toolCalls[%d]", i, j)
		if err := checkToolCallID(at+".id", c.ID); err != nil {
			return err
		}
		if c.Type != "function" {
			return Invalidf(at+".type", "%s.type must be \"function\"", at)
		}
		// Not checkToolName: a call is sent back as the reply gave it, and
		// an upstream's model may call a name no tool could be declared
		// with (open models call "repo_browser.search"), or none.
		if err := checkText(at+".function.name", c.Name, false, maxCallNameLen); err != nil {
			return err
		}
		if err := checkText(at+".function.arguments", c.Arguments, false, maxDocumentBytes); err != nil {
			return err
		}
		if err := checkExtraContent(at+".extra_content", c.ExtraContent); err != nil {
			return err
		}
	}
	return nil
}

// AnthropicExtra is the member of a tool call's extra_content in which an
// Anthropic provider's reply carries the thinking that led to its calls,
// to be sent back with them.
const AnthropicExtra = "anthropic"

// ReasoningExtra is the member of a tool call's extra_content in which an
// OpenAI-wire reply that called tools carries its reasoning_content, which
// DeepSeek's thinking mode requires back with the calls.
const ReasoningExtra = "reasoning_content"

// ReasoningNamedExtra is ReasoningExtra for a reply whose thinking came
// as "reasoning" (OpenRouter, Groq, Ollama, vLLM since 0.11): it goes
// back under that name, as the provider that sent it may refuse
// reasoning_content (Groq and Cerebras do).
const ReasoningNamedExtra = "reasoning"

// ReasoningDetailsExtra is the member of a tool call's extra_content in
// which an OpenAI-wire reply that called tools carries its
// reasoning_details, OpenRouter's structured reasoning (with the
// encrypted thought signatures Gemini requires back with the calls, and
// Claude's signed thinking), as the provider sent them, to go back as the
// message's reasoning_details.
const ReasoningDetailsExtra = "reasoning_details"

// ExtraReasoning is the reasoning a tool call's extra_content carries,
// under either name; "" when none.
func ExtraReasoning(extra []byte) string {
	if s := ExtraString(extra, ReasoningExtra); s != "" {
		return s
	}
	return ExtraString(extra, ReasoningNamedExtra)
}

// ExtraWithoutReasoning is extra without the reasoning it carries under
// either name, and without its reasoning_details.
func ExtraWithoutReasoning(extra []byte) []byte {
	return ExtraWithout(ExtraWithout(ExtraWithout(extra, ReasoningExtra), ReasoningNamedExtra), ReasoningDetailsExtra)
}

// ExtraWith returns extra, a tool call's extra_content (nil or a JSON
// object), with its member name set to value; extra itself when the
// result would be past MaxExtraContent or extra is no JSON object.
func ExtraWith(extra []byte, name string, value any) []byte {
	members := map[string]json.RawMessage{}
	if len(extra) > 0 && json.Unmarshal(extra, &members) != nil {
		return extra
	}
	v, err := asItCame(value)
	if err != nil {
		return extra
	}
	members[name] = v
	out, err := asItCame(members)
	if err != nil || len(out) > MaxExtraContent {
		return extra
	}
	return out
}

// asItCame is v as JSON, its text's < > & as they are (json.Marshal would
// write each as six bytes): extra_content's members are a provider's, to
// go back as it sent them.
func asItCame(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ExtraString returns the string member name of extra, a tool call's
// extra_content; "" when it has none.
func ExtraString(extra []byte, name string) string {
	var s string
	if json.Unmarshal(ExtraMember(extra, name), &s) != nil {
		return ""
	}
	return s
}

// ExtraMember returns the member name of extra, a tool call's
// extra_content, as JSON; nil when it has none (or null).
func ExtraMember(extra []byte, name string) json.RawMessage {
	if len(extra) == 0 || !bytes.Contains(extra, []byte(`"`+name+`"`)) {
		return nil
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(extra, &members) != nil {
		return nil
	}
	if v := members[name]; len(v) > 0 && string(v) != "null" {
		return v
	}
	return nil
}

// ExtraWithout returns extra, a tool call's extra_content, without its
// member name; nil when nothing else is left, extra itself when it has no
// such member or is no JSON object.
func ExtraWithout(extra []byte, name string) []byte {
	if len(extra) == 0 || !bytes.Contains(extra, []byte(`"`+name+`"`)) {
		return extra
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(extra, &members) != nil {
		return extra
	}
	if _, ok := members[name]; !ok {
		return extra
	}
	delete(members, name)
	if len(members) == 0 {
		return nil
	}
	out, err := asItCame(members)
	if err != nil {
		return nil
	}
	return out
}

// checkExtraContent checks a tool call's extra_content: none, or a JSON
// object of at most MaxExtraContent bytes, sent back to the provider as
// it is.
func checkExtraContent(field string, v []byte) error {
	v = bytes.TrimSpace(v)
	switch {
	case len(v) == 0:
		return nil
	case len(v) > MaxExtraContent:
		return Invalidf(field, "%s is %d bytes; the limit is %d", field, len(v), MaxExtraContent)
	case v[0] != '{' || !json.Valid(v):
		return Invalidf(field, "%s must be a JSON object, as the reply's tool call carried it", field)
	}
	return nil
}

func checkToolCallID(field, id string) error {
	if id == "" {
		return Invalidf(field, "%s is required: the id of the tool call", field)
	}
	return checkText(field, id, true, maxToolCallIDLen)
}

// toolCallTracker follows which tool calls await a result: those of the
// last assistant message, until each is answered by a tool message. The
// OpenAI and Anthropic APIs both refuse a request in which another
// message comes first; Parley refuses it before the call, naming the
// message and the calls.
type toolCallTracker struct {
	pending []string // the ids not yet answered, in the order called
	by      int      // the request's index of the message that called them; -1: the stored history's
}

// see records the message at index i of the request (-1: of the stored
// history). It reports false for a tool message that answers no pending
// tool call.
func (t *toolCallTracker) see(i int, role MessageRole, calls []ToolCall, toolCallID string) bool {
	switch role {
	case RoleTool:
		j := slices.Index(t.pending, toolCallID)
		if j < 0 {
			return false
		}
		t.pending = slices.Delete(t.pending, j, j+1)
	case RoleAssistant:
		t.pending, t.by = t.pending[:0], i
		for _, c := range calls {
			t.pending = append(t.pending, c.ID)
		}
	case RoleSystem:
	default:
		t.pending = t.pending[:0]
	}
	return true
}

// unanswered refuses the request when tool calls still await a result at
// the request's message i, which is not a tool message, or (i < 0) at the
// request's end: what the provider would refuse, said before the call.
func (t *toolCallTracker) unanswered(i int, conversationID string) error {
	if len(t.pending) == 0 {
		return nil
	}
	ids := `"` + strings.Join(t.pending, `", "`) + `"`
	caller := fmt.Sprintf("messages[%d]", t.by)
	if t.by < 0 {
		caller = "conversation " + conversationID + "'s last reply"
	}
	field, where := "messages", "after it"
	if i >= 0 {
		field, where = fmt.Sprintf("messages[%d]", i), fmt.Sprintf("after it, before messages[%d]", i)
	}
	return Invalidf(field, "%s called tools that no tool message answers: %s; send a tool message (role \"tool\", toolCallId, content) "+
		"for each call %s", caller, ids, where)
}
