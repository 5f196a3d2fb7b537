package llm

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	openai "github.com/sashabaranov/go-openai"

	"github.com/parleyhq/parley/domain"
)

// DefaultAzureAPIVersion is the api-version sent to Azure OpenAI when the
// provider names none: the first GA version that streams usage.
const DefaultAzureAPIVersion = "2024-10-21"

// openAIClient returns a go-openai client for the endpoint.
func (c *Client) openAIClient(ep domain.Endpoint) *openai.Client {
	var cfg openai.ClientConfig
	if ep.Type == domain.ProviderAzureOpenAI && !domain.AzureV1(ep.BaseURL) {
		cfg = openai.DefaultAzureConfig(ep.APIKey.Reveal(), ep.BaseURL)
		cfg.APIVersion = ep.APIVersion
		if cfg.APIVersion == "" {
			cfg.APIVersion = DefaultAzureAPIVersion
		}
		// The model of an Azure call is the deployment name, as is.
		cfg.AzureModelMapperFunc = func(model string) string { return model }
	} else {
		// OpenAI's wire, and Azure's v1 API, which speaks it: the key as a
		// bearer token, the deployment name as the body's model.
		cfg = openai.DefaultConfig(ep.APIKey.Reveal())
		if ep.BaseURL != "" {
			cfg.BaseURL = ep.BaseURL
		}
	}
	cfg.HTTPClient = c.http
	return openai.NewClientWithConfig(cfg)
}

// emptyMessagesLimit is how many lines in a row that are not data lines
// a stream may send (see dataLines). go-openai's limit, 300, fails healthy
// streams of aggregators that send SSE comments while a model thinks
// (OpenRouter's ": OPENROUTER PROCESSING", two lines with the blank one).
// Parley's own caps bound what that limit guarded: dataLines keeps the
// non-data lines of a whole stream, and lineCapReader fails the stream
// once their bytes pass MaxResponseBytes; of a blank line it keeps
// nothing. What is left is a last guard against an upstream that sends
// nothing but blank lines.
const emptyMessagesLimit = 1 << 20

// openAIRequest maps a domain request to go-openai's, and returns the
// fields its struct cannot carry faithfully (see setJSONFields): the
// sampling parameters (omitempty would drop a temperature or penalty of 0,
// and go-openai would refuse a penalty for a reasoning model itself, where
// the provider's own 400 should answer), parallel_tool_calls, and
// the token limit, as max_completion_tokens when completionTokens says so
// (see completionTokens) and max_tokens otherwise. Unless reasoning is
// false, tool calls go back with their reasoning (see explicitContent).
func openAIRequest(req domain.LLMRequest, stream, completionTokens, reasoning bool) (openai.ChatCompletionRequest, map[string]any) {
	out := openai.ChatCompletionRequest{
		Model:    req.Model,
		Messages: make([]openai.ChatCompletionMessage, 0, len(req.Messages)),
		Stop:     req.Stop,
		Stream:   stream,
		// reasoning_effort, omitted when empty; seed when nil.
		ReasoningEffort: req.ReasoningEffort,
		Seed:            req.Seed,
	}
	for _, m := range req.Messages {
		om := openai.ChatCompletionMessage{Role: string(m.Role), Content: m.Content, Refusal: m.Refusal, ToolCallID: m.ToolCallID}
		for _, c := range m.ToolCalls {
			om.ToolCalls = append(om.ToolCalls, openai.ToolCall{ID: c.ID, Type: openai.ToolTypeFunction,
				Function: openai.FunctionCall{Name: c.Name, Arguments: c.Arguments}})
		}
		out.Messages = append(out.Messages, om)
	}
	for _, t := range req.Tools {
		out.Tools = append(out.Tools, openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{
			Name: t.Name, Description: t.Description, Strict: t.Strict, Parameters: schemaOrEmpty(t.Parameters)}})
	}
	out.ToolChoice = openAIToolChoice(req.ToolChoice)
	if f := req.ResponseFormat; f != nil {
		out.ResponseFormat = &openai.ChatCompletionResponseFormat{Type: openai.ChatCompletionResponseFormatType(f.Type)}
		if f.Type == domain.ResponseJSONSchema {
			out.ResponseFormat.JSONSchema = &openai.ChatCompletionResponseFormatJSONSchema{
				Name: f.Name, Description: f.Description, Schema: json.RawMessage(f.Schema), Strict: f.Strict}
		}
	}
	if stream {
		out.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	}
	set := map[string]any{}
	if msgs := explicitContent(req.Messages, req.Endpoint.Type == domain.ProviderOpenAICompatible, reasoning); msgs != nil {
		set["messages"] = msgs
	}
	if req.Temperature != nil {
		set["temperature"] = *req.Temperature
	}
	if req.TopP != nil {
		set["top_p"] = *req.TopP
	}
	if req.FrequencyPenalty != nil {
		set["frequency_penalty"] = *req.FrequencyPenalty
	}
	if req.PresencePenalty != nil {
		set["presence_penalty"] = *req.PresencePenalty
	}
	if req.ParallelToolCalls != nil {
		set["parallel_tool_calls"] = *req.ParallelToolCalls
	}
	if req.MaxTokens != nil {
		if completionTokens {
			set["max_completion_tokens"] = *req.MaxTokens
		} else {
			set["max_tokens"] = *req.MaxTokens
		}
	}
	return out, set
}

// wireMessage is a message of the chat completions API with its content
// present wherever the API requires one: go-openai leaves out an empty
// content (omitempty), and the API refuses a user, system or tool message
// without content, and an assistant message with neither content nor
// tool calls. An assistant message that only calls tools goes as
// go-openai sends it, without content; one that declined goes with an
// empty content beside its refusal (only OpenAI and Azure get refusals:
// see refusalsAsText). Its tool calls carry their extra_content, which
// go-openai's cannot.
type wireMessage struct {
	Role             string          `json:"role"`
	Content          *string         `json:"content,omitempty"`
	Refusal          string          `json:"refusal,omitempty"`
	ReasoningContent string          `json:"reasoning_content,omitempty"` // see withReasoningExtra
	Reasoning        string          `json:"reasoning,omitempty"`         // the same, named as the provider sent it
	ReasoningDetails json.RawMessage `json:"reasoning_details,omitempty"` // OpenRouter's, as it sent them (reasoningDetails)
	ToolCalls        []wireToolCall  `json:"tool_calls,omitempty"`
	ToolCallID       string          `json:"tool_call_id,omitempty"`
}

type wireToolCall struct {
	openai.ToolCall
	ExtraContent json.RawMessage `json:"extra_content,omitempty"`
}

// explicitContent returns the messages as wireMessages when go-openai
// cannot send them right: with an empty content it would leave out where
// the API requires one (an empty tool result, a stored reply that came
// back empty, an empty user message), and, with extras, with tool calls
// whose extra_content (Gemini's thought signature) must go back. nil when
// go-openai's are right as they are, which is the common case. Only
// openai-compatible providers get extras (OpenAI's API may refuse a field
// it does not know), and never Anthropic's thinking (see openAIExtra);
// with reasoning, the reasoning of calls goes back as the message's, under
// the name their reply gave it, with its reasoning_details.
func explicitContent(msgs []domain.LLMMessage, extras, reasoning bool) []wireMessage {
	if !slices.ContainsFunc(msgs, func(m domain.LLMMessage) bool {
		return m.Content == "" && len(m.ToolCalls) == 0 ||
			extras && slices.ContainsFunc(m.ToolCalls, func(c domain.ToolCall) bool { return len(c.ExtraContent) > 0 })
	}) {
		return nil
	}
	out := make([]wireMessage, len(msgs))
	for i, m := range msgs {
		wm := wireMessage{Role: string(m.Role), Refusal: m.Refusal, ToolCallID: m.ToolCallID}
		if extras && reasoning && len(m.ToolCalls) > 0 {
			extra := m.ToolCalls[0].ExtraContent
			wm.ReasoningContent = domain.ExtraString(extra, domain.ReasoningExtra)
			if wm.ReasoningContent == "" {
				wm.Reasoning = domain.ExtraString(extra, domain.ReasoningNamedExtra)
			}
			wm.ReasoningDetails = domain.ExtraMember(extra, domain.ReasoningDetailsExtra)
		}
		if m.Content != "" || len(m.ToolCalls) == 0 {
			wm.Content = &msgs[i].Content
		}
		for _, c := range m.ToolCalls {
			wc := wireToolCall{ToolCall: openai.ToolCall{ID: c.ID, Type: openai.ToolTypeFunction,
				Function: openai.FunctionCall{Name: c.Name, Arguments: c.Arguments}}}
			if extras {
				wc.ExtraContent = openAIExtra(c.ExtraContent)
			}
			wm.ToolCalls = append(wm.ToolCalls, wc)
		}
		out[i] = wm
	}
	return out
}

// openAIExtra is a call's extra_content as an OpenAI-wire provider gets
// it: without the thinking an Anthropic provider's reply carries in it
// (thinkingExtra), which another vendor has no use for and should not
// read (a chat's provider can change between a call and its result), and
// without the reasoning an OpenAI-wire reply's carries, which goes back
// as the message's reasoning_content or reasoning; nil when nothing else
// is left.
func openAIExtra(extra []byte) json.RawMessage {
	return domain.ExtraWithoutReasoning(domain.ExtraWithout(extra, domain.AnthropicExtra))
}

// completionTokens says whether an OpenAI-wire request names its token
// limit max_completion_tokens, which OpenAI's reasoning models require
// (they refuse max_tokens), rather than max_tokens, the only name many
// OpenAI-compatible servers and Azure's GA api-versions know: for OpenAI
// itself and Azure's v1 API, which speak OpenAI's current API, and for
// any endpoint once it refused max_tokens asking for it (Azure's
// reasoning deployments on a dated preview api-version).
func completionTokens(cs *callSpec) bool {
	ep := cs.req.Endpoint
	return ep.Type == domain.ProviderOpenAI || ep.Type == domain.ProviderAzureOpenAI && domain.AzureV1(ep.BaseURL) ||
		cs.completionTokens
}

// callOpenAI makes one attempt against an OpenAI-wire endpoint: a request
// refused for a parameter the endpoint does not take as sent
// (stream_options, max_tokens) is sent again once without it, and later
// attempts of the call go without it too.
func (c *Client) callOpenAI(ctx context.Context, ex *exchange, cs *callSpec) (*domain.LLMResult, error) {
	compatible := cs.req.Endpoint.Type == domain.ProviderOpenAICompatible
	if compatible {
		// The reasoning before tool calls, for the calls that came back
		// without it (see thoughts), once: cs is this call's for good.
		cs.req.Messages = c.thoughts.restore(cs.req.Caller, cs.req.Endpoint.APIKey, domain.ReasoningExtra, cs.req.Messages, time.Now())
	}
	for {
		res, err := c.callOpenAIOnce(ctx, ex, cs)
		switch {
		case err == nil:
			if compatible {
				c.thoughts.remember(cs.req.Caller, cs.req.Endpoint.APIKey, domain.ReasoningExtra, res, time.Now())
			}
			return res, nil
		case cs.onDelta != nil && !cs.noStreamOptions && refusedStreamOptions(ex, err):
			cs.noStreamOptions = true
		case cs.req.MaxTokens != nil && !completionTokens(cs) && refusedMaxTokens(ex, err):
			cs.completionTokens = true
		case compatible && !cs.noReasoning && sendsReasoning(cs.req.Messages) && refusedReasoning(ex, err):
			cs.noReasoning = true
		case !cs.nineCharIDs && refusedToolCallIDs(ex, err):
			cs.nineCharIDs = true
			cs.req.Messages = withNineCharIDs(cs.req.Messages)
		default:
			return res, err
		}
	}
}

// callOpenAIOnce sends the request once, as cs's flags say.
func (c *Client) callOpenAIOnce(ctx context.Context, ex *exchange, cs *callSpec) (*domain.LLMResult, error) {
	cli := c.openAIClient(cs.req.Endpoint)
	oreq, set := openAIRequest(cs.req, cs.onDelta != nil, completionTokens(cs), !cs.noReasoning)
	ex.jsonSet = set
	if cs.onDelta != nil {
		if cs.noStreamOptions {
			oreq.StreamOptions = nil
		}
		return c.openAIStream(ctx, ex, cs, cli, oreq)
	}
	resp, err := cli.CreateChatCompletion(ctx, oreq)
	if err != nil {
		return nil, openAILocal(cs.req, err)
	}
	res := &domain.LLMResult{Model: upstreamModel(resp.Model, cs.req.Endpoint.APIKey.Reveal()), Usage: openAIUsage(resp.Usage, keptCacheHits(ex)), FirstByte: firstByte(ex, cs.start)}
	if len(resp.Choices) == 0 {
		if err := inBandError(ex.bodyHead()); inBandStatus(err) != 0 {
			return res, err // a 4xx named in the body: that refusal, as its status would say
		}
		if msg := sanitize(bodyMessage(ex.bodyHead()), cs.req.Endpoint.APIKey.Reveal(), 200); msg != "" {
			return res, domain.Errorf(domain.Upstream, "the AI provider answered with an error instead of a reply: %s", msg)
		}
		return res, domain.Errorf(domain.Upstream, "the AI provider answered with no choices")
	}
	ch := resp.Choices[0]
	finish, ok := openAIFinish(string(ch.FinishReason))
	// An error beside a finish reason that would end the reply well is
	// still an error, as in a stream.
	if msg := replyError(ex); !ok || msg != "" {
		if msg := sanitize(msg, cs.req.Endpoint.APIKey.Reveal(), 200); msg != "" {
			return res, domain.Errorf(domain.Upstream, "the AI provider reported an error instead of finishing the reply: %s", msg)
		}
		return res, domain.Errorf(domain.Upstream, "the AI provider reported an error instead of finishing the reply")
	}
	res.Content, res.Refusal, res.FinishReason = ch.Message.Content, ch.Message.Refusal, finish
	res.Reasoning = ch.Message.ReasoningContent
	reasoningMember := domain.ReasoningExtra
	if res.Reasoning == "" {
		res.Reasoning, reasoningMember = wholeReplyReasoning(ex), domain.ReasoningNamedExtra
	}
	if res.Content == "" {
		res.Content = multiContentText(ch.Message.MultiContent)
	}
	extras := wholeReplyExtras(ex, len(ch.Message.ToolCalls))
	for i, c := range ch.Message.ToolCalls {
		// A call without an id gets one, as in a stream, so that the
		// caller can answer it with a tool message.
		id := c.ID
		if id == "" {
			id = newToolCallID()
		}
		res.ToolCalls = append(res.ToolCalls, domain.ToolCall{ID: id, Type: "function", Name: c.Function.Name, Arguments: c.Function.Arguments,
			ExtraContent: extras[i]})
	}
	withReasoningExtra(res.ToolCalls, reasoningMember, res.Reasoning)
	withReasoningDetails(res.ToolCalls, wholeReplyReasoningDetails(ex))
	res.FinishReason = wholeReplyFinish(res.FinishReason, res.ToolCalls)
	return res, nil
}

// withReasoningExtra puts a reply's reasoning in its first call's
// extra_content when it called tools, under member, the name the reply
// gave it (domain.ReasoningExtra or domain.ReasoningNamedExtra): DeepSeek's
// thinking mode requires it back with them, and the calls keep it
// wherever they go, the stored turn and a client's history (explicitContent
// sends it back as the message's, under that name).
func withReasoningExtra(calls []domain.ToolCall, member, reasoning string) {
	if len(calls) > 0 && reasoning != "" {
		calls[0].ExtraContent = domain.ExtraWith(calls[0].ExtraContent, member, reasoning)
	}
}

// wholeReplyExtras returns the extra_content of each of the n tool calls
// of a whole reply (nil for a call without one), which go-openai's types
// have no field for: read from the body, kept for the purpose when the
// request offered tools (exchange.keepBody; no tool call comes without),
// and only when it holds the name.
func wholeReplyExtras(ex *exchange, n int) [][]byte {
	out := make([][]byte, n)
	if n == 0 || ex.body == nil || !ex.body.holds("extra_content") {
		return out
	}
	var reply struct {
		Choices []struct {
			Message struct {
				ToolCalls []struct {
					ExtraContent jsontext.Value `json:"extra_content"`
				} `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	if jsonv2.Unmarshal(ex.body.all, &reply, lenient) != nil || len(reply.Choices) == 0 {
		return out
	}
	for i, c := range reply.Choices[0].Message.ToolCalls {
		if i < n {
			out[i] = extraContent(c.ExtraContent)
		}
	}
	return out
}

// wholeReplyReasoning is the thinking of a whole reply that names it
// reasoning (OpenRouter, Ollama, vLLM since 0.11), which go-openai's types
// have no field for (see keptChoice).
func wholeReplyReasoning(ex *exchange) string {
	c := keptChoice[struct {
		Message struct {
			Reasoning string `json:"reasoning"`
		} `json:"message"`
	}](ex, "reasoning")
	return c.Message.Reasoning
}

// choiceError is the message of the error a whole reply's choice carries
// when it failed once begun (OpenRouter's choices[0].error, beside
// finish_reason "error"); "" when there is none (see keptChoice).
func choiceError(ex *exchange) string {
	c := keptChoice[struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}](ex, "error")
	return c.Error.Message
}

// replyError is the message of the error a whole reply carries beside its
// choices, its first choice's (choiceError) or its own; "" when there is
// none or the body was not kept (see keptChoice).
func replyError(ex *exchange) string {
	if msg := choiceError(ex); msg != "" || ex.body == nil || !ex.body.holds("error") {
		return msg
	}
	return bodyMessage(ex.body.all)
}

// keptChoice decodes, as a C, the first choice of a whole reply's body,
// kept for the purpose from openai-compatible providers and openai ones at
// another base URL (exchange.keepBody), for what go-openai's types drop; only when the
// body holds member's name, else (or when it has no choice) a zero C.
func keptChoice[C any](ex *exchange, member string) C {
	var zero C
	if ex.body == nil || !ex.body.holds(member) {
		return zero // before reply, which escapes to the heap
	}
	var reply struct {
		Choices []C `json:"choices"`
	}
	if jsonv2.Unmarshal(ex.body.all, &reply, lenient) != nil || len(reply.Choices) == 0 {
		return zero
	}
	return reply.Choices[0]
}

// refusedStreamOptions says whether the upstream refused a stream's
// request because of stream_options, which not every OpenAI-wire server
// knows: Mistral's API answers 422 (extra_forbidden), Azure before
// api-version 2024-09-01-preview 400 ("Unrecognized request argument
// supplied: stream_options"). Asked again without it, such a server
// streams its usage unasked or none, which the domain then estimates.
func refusedStreamOptions(ex *exchange, err error) bool {
	status, _, _ := ex.response()
	return (status == http.StatusBadRequest || status == http.StatusUnprocessableEntity) && strings.Contains(err.Error(), "stream_options")
}

// sendsReasoning says whether msgs send reasoning back with tool calls
// (see explicitContent).
func sendsReasoning(msgs []domain.LLMMessage) bool {
	return slices.ContainsFunc(msgs, func(m domain.LLMMessage) bool {
		return len(m.ToolCalls) > 0 && (domain.ExtraReasoning(m.ToolCalls[0].ExtraContent) != "" ||
			domain.ExtraMember(m.ToolCalls[0].ExtraContent, domain.ReasoningDetailsExtra) != nil)
	})
}

// refusedReasoning says whether the upstream refused a request because
// an assistant message carried reasoning: Groq and Cerebras refuse
// reasoning_content ("property 'reasoning_content' is unsupported"), Groq's
// models that do not reason refuse reasoning too, and a chat whose
// provider changed sends the reasoning of another's replies. Asked again
// without it, the model loses the thinking before its calls, which only
// DeepSeek's thinking mode requires.
func refusedReasoning(ex *exchange, err error) bool {
	status, _, _ := ex.response()
	msg := err.Error()
	return (status == http.StatusBadRequest || status == http.StatusUnprocessableEntity) &&
		(strings.Contains(msg, "reasoning_content") || strings.Contains(msg, "'reasoning'") || strings.Contains(msg, "reasoning_details") ||
			strings.Contains(msg, "reasoning is not supported"))
}

// refusedToolCallIDs says whether the upstream refused a request because
// of a tool call id that is not nine letters and digits: Mistral's API, and
// vLLM serving Mistral's models, answer 400 "Tool call id was call_… but
// must be a-z, A-Z, 0-9, with a length of 9." to the ids of a history
// another provider answered (OpenAI's call_…, Anthropic's toolu_…).
func refusedToolCallIDs(ex *exchange, err error) bool {
	status, _, _ := ex.response()
	msg := err.Error()
	return (status == http.StatusBadRequest || status == http.StatusUnprocessableEntity) &&
		strings.Contains(msg, "Tool call id") && strings.Contains(msg, "length of 9")
}

// withNineCharIDs returns msgs with each tool call id, a call's and a tool
// message's, as nineCharID makes it: a call and its result, made from the
// same id, still match. The stored ids stay as they came.
func withNineCharIDs(msgs []domain.LLMMessage) []domain.LLMMessage {
	out := slices.Clone(msgs)
	for i, m := range out {
		if m.ToolCallID != "" {
			out[i].ToolCallID = nineCharID(m.ToolCallID)
		}
		if len(m.ToolCalls) > 0 {
			calls := slices.Clone(m.ToolCalls)
			for j := range calls {
				calls[j].ID = nineCharID(calls[j].ID)
			}
			out[i].ToolCalls = calls
		}
	}
	return out
}

// nineCharID is id as nine letters and digits: itself when it is, else
// nine drawn from its SHA-256 (62^9 ids: two of a history's never meet).
func nineCharID(id string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	if len(id) == 9 && strings.Trim(id, alphabet) == "" {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	out := make([]byte, 9)
	for i := range out {
		out[i] = alphabet[int(sum[i])%len(alphabet)]
	}
	return string(out)
}

// refusedMaxTokens says whether the upstream refused a request because
// it named its token limit max_tokens: Azure's reasoning deployments
// answer 400, "Unsupported parameter: 'max_tokens' is not supported with
// this model. Use 'max_completion_tokens' instead."
func refusedMaxTokens(ex *exchange, err error) bool {
	status, _, _ := ex.response()
	msg := err.Error()
	return status == http.StatusBadRequest && strings.Contains(msg, "max_tokens") && strings.Contains(msg, "max_completion_tokens")
}

// multiContentText is the text of a content that came as a list of typed
// parts (Mistral's reasoning models send their thinking as a part before
// the text): its text parts, as rawText reads a streamed one.
func multiContentText(parts []openai.ChatMessagePart) string {
	var b strings.Builder
	for _, p := range parts {
		if p.Type == openai.ChatMessagePartTypeText {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// openAIFinish is the finish reason of an OpenAI-wire reply as OpenAI's
// clients know it, as anthropicFinish maps Anthropic's: OpenAI's own
// values as they are, another server's nearest one (Mistral's
// model_length, the context window reached, is length), and a value
// nobody documents stop, for clients that type finish_reason as an enum
// fail on a value outside it. ok is false when the value says the reply
// failed once begun, which is an upstream error, not a reply that
// finished: "error", with which OpenRouter (beside an error object in the
// same chunk) and other OpenAI-compatible servers end one, DeepSeek's
// insufficient_system_resource ("the request is interrupted"), and vLLM's
// and SGLang's abort (the engine dropped the request: shutdown, scale-down,
// an abort call), after which they still send [DONE]. "" stays
// "": no finish reason came.
func openAIFinish(reason string) (finish string, ok bool) {
	switch reason {
	case "", "stop", "length", "tool_calls", "content_filter", "function_call":
		return reason, true
	case "model_length":
		return "length", true
	case "error", "insufficient_system_resource", "abort":
		return "", false
	}
	return "stop", true
}

// wholeReplyFinish is the finish reason of a reply that arrived whole
// (not streamed): the provider's, or, when it gave none (some
// OpenAI-compatible servers leave finish_reason out; Anthropic's
// stop_reason may be null), the one OpenAI gives a complete reply, rather
// than "", which is no finish_reason a client knows.
func wholeReplyFinish(reason string, calls []domain.ToolCall) string {
	switch {
	case reason != "":
		return reason
	case len(calls) > 0:
		return "tool_calls"
	}
	return "stop"
}

// emptySchema is the parameters of a tool declared without any: OpenAI
// reads an absent schema as an empty parameter list, and this says so
// explicitly (go-openai would send null).
var emptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

func schemaOrEmpty(schema []byte) json.RawMessage {
	if len(schema) == 0 {
		return emptySchema
	}
	return json.RawMessage(schema)
}

// openAIStream streams one attempt, handing each delta to onDelta: text,
// refusal, and tool call pieces renumbered 0, 1, ... in the order the calls
// began.
func (c *Client) openAIStream(ctx context.Context, ex *exchange, cs *callSpec, cli *openai.Client, oreq openai.ChatCompletionRequest) (_ *domain.LLMResult, err error) {
	stream, err := cli.CreateChatCompletionStream(ctx, oreq)
	if err != nil {
		return nil, openAILocal(cs.req, err)
	}
	defer stream.Close()
	lines := newDataLines(ex.lines)
	s := &openAIStreamState{ex: ex, cs: cs, res: &domain.LLMResult{}, maxBytes: c.cfg.MaxResponseBytes,
		reasoningMember: domain.ReasoningExtra, out: coalescer{onDelta: cs.onDelta, lines: ex.lines}}
	res := s.res
	defer func() { err = s.finish(err) }()
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := s.out.wait(); err != nil {
			return res, err
		}
		raw, err := lines.next()
		if errors.Is(err, io.EOF) {
			ex.markReplied()
			if err := s.flush(); err != nil {
				return res, err
			}
			break
		}
		if err != nil {
			return res, err
		}
		s.out.returned++
		if err := s.chunk(raw); err != nil {
			return res, err
		}
	}
	if res.FirstByte == 0 {
		res.FirstByte = firstByte(ex, cs.start)
	}
	if res.FinishReason == "" {
		return res, streamEnd(ex, cs.req.Endpoint.APIKey.Reveal())
	}
	return res, nil
}

// openAIStreamState is one streamed OpenAI-wire reply as it comes: the
// text, refusal and reasoning so far, each with its joiner, which holds a
// character split between two chunks; the tool calls and reasoning details
// so far; and the coalescer, which holds deltas for the caller.
type openAIStreamState struct {
	ex       *exchange
	cs       *callSpec
	res      *domain.LLMResult
	maxBytes int64

	content, refusal, reasoning strings.Builder
	text, thought, refused      utf8Joiner
	calls                       toolCalls
	details                     reasoningDetails
	reasoningMember             string // the name the reasoning came by (see withReasoningExtra)
	out                         coalescer
}

// chunk reads one data line: the model, the usage, choice 0's piece, and
// an error in band, which ends the stream.
func (s *openAIStreamState) chunk(raw []byte) error {
	var chunk openAIChunk
	if err := jsonv2.Unmarshal(raw, &chunk, lenient); err != nil {
		return fmt.Errorf("decode a stream chunk: %w", err)
	}
	res := s.res
	if chunk.Model != "" && chunk.Model != res.Model {
		res.Model = upstreamModel(chunk.Model, s.cs.req.Endpoint.APIKey.Reveal())
	}
	if chunk.Usage != nil {
		res.Usage = openAIUsage(chunk.Usage.Usage, chunk.Usage.PromptCacheHitTokens)
	}
	failed := len(chunk.Error) > 0 && chunk.Error.Kind() != 'n'
	for i := range chunk.Choices {
		ch := &chunk.Choices[i]
		if ch.Index != 0 {
			continue
		}
		if err := s.emit(s.choice(ch)); err != nil {
			return err
		}
		if ch.FinishReason != "" {
			var ok bool
			res.FinishReason, ok = openAIFinish(ch.FinishReason)
			failed = failed || !ok // an error with a finish reason is still an error
		}
	}
	if failed {
		// An error line (data: {"error": ...}), OpenAI's form, or an
		// error chunk, OpenRouter's: the upstream's message as go-openai's
		// APIError carries it (see upstreamMessage).
		return inBandError(raw)
	}
	return nil
}

// choice is the delta of a choice's piece: its text, refusal and reasoning
// through their joiners, and its tool call pieces.
func (s *openAIStreamState) choice(ch *openAIChoice) domain.Delta {
	d := domain.Delta{Content: s.text.next(string(ch.Delta.Content)), Model: s.res.Model}
	if ch.Delta.Refusal != "" || s.refused.held != "" {
		d.Refusal = s.refused.next(string(ch.Delta.Refusal))
	}
	if ch.Delta.ReasoningContent == "" && ch.Delta.Reasoning != "" {
		s.reasoningMember = domain.ReasoningNamedExtra
	}
	if r := cmp.Or(ch.Delta.ReasoningContent, ch.Delta.Reasoning); r != "" || s.thought.held != "" {
		d.Reasoning = s.thought.next(string(r))
	}
	s.details.add(ch.Delta.ReasoningDetails)
	for i := range ch.Delta.ToolCalls {
		d.ToolCalls = append(d.ToolCalls, s.toolCallPiece(&ch.Delta.ToolCalls[i], d.Reasoning))
	}
	return d
}

// toolCallPiece is the delta of a tool call's piece. The first call's first
// piece also carries the reasoning so far, with pending, this choice's
// piece of it not yet written, as an Anthropic stream's thinking does: the
// openai npm client's stream helpers keep only the last piece of
// reasoning_content. The call's own gets the whole reasoning when the
// reply ends (finish). So do the reasoning_details so far; those that come
// later are only in the stored reply's.
func (s *openAIStreamState) toolCallPiece(tc *openAIToolCallPiece, pending string) domain.ToolCallDelta {
	td := s.calls.add(tc.Index, tc.ID, tc.Function.Name, string(tc.Function.Arguments))
	s.calls.keepExtra(&td, tc.ExtraContent)
	if td.Index != 0 || td.ID == "" {
		return td
	}
	if r := s.reasoning.String() + pending; r != "" {
		td.ExtraContent = domain.ExtraWith(td.ExtraContent, s.reasoningMember, r)
	}
	if rd := s.details.json(); rd != nil {
		td.ExtraContent = domain.ExtraWith(td.ExtraContent, domain.ReasoningDetailsExtra, json.RawMessage(rd))
	}
	return td
}

// emit hands d on when it holds anything, counting it toward the reply's
// bound and noting the first byte.
func (s *openAIStreamState) emit(d domain.Delta) error {
	if d.Content == "" && d.Refusal == "" && d.Reasoning == "" && len(d.ToolCalls) == 0 {
		return nil
	}
	if err := s.ex.addReply(d, s.maxBytes); err != nil {
		return err
	}
	if s.res.FirstByte == 0 {
		s.res.FirstByte = time.Since(s.cs.start)
	}
	s.write(d)
	return s.out.add(d)
}

// flush hands on what the joiners and tool calls still hold once the
// stream has ended.
func (s *openAIStreamState) flush() error {
	d := domain.Delta{Reasoning: s.thought.flush(), Content: s.text.flush(), Refusal: s.refused.flush(), ToolCalls: s.calls.flush(), Model: s.res.Model}
	if d.Content == "" && d.Reasoning == "" && d.Refusal == "" && len(d.ToolCalls) == 0 {
		return nil
	}
	s.write(d)
	return s.out.add(d)
}

// write adds d's texts to the reply's.
func (s *openAIStreamState) write(d domain.Delta) {
	s.content.WriteString(d.Content)
	s.refusal.WriteString(d.Refusal)
	s.reasoning.WriteString(d.Reasoning)
}

// finish sets the result's parts from what came, whatever ended the
// stream, and lets a delta still held go on before the call ends, unless
// it was the caller that failed (err, a deltaError): it returns err, or
// when err is nil, the release's.
func (s *openAIStreamState) finish(err error) error {
	r := s.res
	r.Content, r.Refusal, r.ToolCalls = s.content.String(), s.refusal.String(), s.calls.result()
	r.Reasoning = s.reasoning.String()
	withReasoningExtra(r.ToolCalls, s.reasoningMember, r.Reasoning)
	withReasoningDetails(r.ToolCalls, s.details.json())
	if de := (*deltaError)(nil); !errors.As(err, &de) {
		if rerr := s.out.release(false); rerr != nil && err == nil {
			return rerr
		}
	}
	return err
}

// dataLines reads an OpenAI-wire stream as go-openai's RecvRaw does, and
// in its place: next returns each data line's payload, io.EOF at
// "data: [DONE]", and at the body's end an error the lines that were not
// data lines spell (a server that answered the stream with a JSON error
// body). RecvRaw matches and rewrites every line with three regular
// expressions, about a fifth of what a stream costs Parley beyond a
// JSON completion, and the more so the more events a reply has
// (docs/benchmarks.md). go-openai still makes the request and reads an
// HTTP error's body.
type dataLines struct {
	r     *bufio.Reader
	long  []byte // a line longer than r's buffer, joined
	other []byte // the lines that were not data lines, as go-openai keeps them
	done  bool   // [DONE] came
}

func newDataLines(body io.Reader) *dataLines {
	return &dataLines{r: bufio.NewReader(body)}
}

// next returns the next data line's payload, the spaces around it
// trimmed, valid until the following call. Lines that are not data lines
// (blank lines, comments, event names) are skipped, more than
// emptyMessagesLimit of them in a row is ErrTooManyEmptyStreamMessages,
// as go-openai has it, and the body's lineCapReader bounds their bytes.
func (d *dataLines) next() ([]byte, error) {
	if d.done {
		return nil, io.EOF
	}
	for empty := 0; ; empty++ {
		if empty > emptyMessagesLimit {
			return nil, openai.ErrTooManyEmptyStreamMessages
		}
		line, err := d.readLine()
		if err != nil {
			var body openai.ErrorResponse
			if len(d.other) > 0 && json.Unmarshal(d.other, &body) == nil && body.Error != nil {
				return nil, fmt.Errorf("error, %w", body.Error)
			}
			return nil, err
		}
		line = bytes.TrimSpace(line)
		payload, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			d.other = append(d.other, line...)
			continue
		}
		payload = bytes.TrimLeft(payload, " \t\r\n\f") // RE2's \s, as go-openai's ^data:\s*
		if string(payload) == "[DONE]" {
			d.done = true
			return nil, io.EOF
		}
		return payload, nil
	}
}

// readLine returns the next whole line, without allocating unless it is
// longer than the reader's buffer. A last line with no newline is not
// whole: the body's error is returned, as go-openai does.
func (d *dataLines) readLine() ([]byte, error) {
	line, err := d.r.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return line, err
	}
	d.long = append(d.long[:0], line...)
	for err == bufio.ErrBufferFull {
		line, err = d.r.ReadSlice('\n')
		d.long = append(d.long, line...)
	}
	return d.long, err
}

// coalescer hands a stream's deltas on, and holds one whose successor has
// already arrived, so that it goes on with More set (see domain.Delta).
// An upstream often sends many deltas in one packet (a fast model, or a
// gateway that fell behind under load); written one by one, each would
// cost the client a write and a packet. dataLines returns one data line
// at a time, and the stream's body reader counts the whole data lines
// read from the upstream: while it has counted more than were returned,
// the next one is in memory and holding a delta for it waits on nothing.
// The Anthropic SDK skips some events, so its count would not match, and
// its deltas go on one by one.
type coalescer struct {
	onDelta  func(domain.Delta) error
	lines    *lineCapReader // nil: hold nothing
	returned int            // data lines dataLines returned
	held     domain.Delta
	holding  bool
}

// buffered says whether the next data line has already been read.
func (c *coalescer) buffered() bool {
	return c.lines != nil && c.lines.dataLines > c.returned
}

// add hands d on, or holds it while the next data line is in memory; a
// delta it held goes on first, with More set.
func (c *coalescer) add(d domain.Delta) error {
	if err := c.release(true); err != nil {
		return err
	}
	if c.buffered() {
		c.held, c.holding = d, true
		return nil
	}
	return c.call(d)
}

// wait is called before reading a line: a held delta goes on before a read that
// may wait for the upstream.
func (c *coalescer) wait() error {
	if c.buffered() {
		return nil
	}
	return c.release(false)
}

// release hands the held delta on, if any, with More as given.
func (c *coalescer) release(more bool) error {
	if !c.holding {
		return nil
	}
	d := c.held
	c.held, c.holding = domain.Delta{}, false
	d.More = more
	return c.call(d)
}

func (c *coalescer) call(d domain.Delta) error {
	if err := c.onDelta(d); err != nil {
		return &deltaError{err: err}
	}
	return nil
}

// openAIChunk is the part of a chat.completion.chunk Parley reads, with
// the error OpenRouter puts beside the choices when a reply fails once
// begun (see openAIFinish). Chunks are decoded from dataLines' payloads
// into this, not into the SDK's ChatCompletionStreamResponse: a stream has
// a chunk per token or so, and decoding each into the SDK's full struct
// with encoding/json was the largest cost a stream added over a plain
// proxy.
type openAIChunk struct {
	Model   string         `json:"model"`
	Choices []openAIChoice `json:"choices"`
	Usage   *wireUsage     `json:"usage"`
	Error   jsontext.Value `json:"error"`
}

// openAIChoice is one choice of a chunk: its piece of the reply.
type openAIChoice struct {
	Index int `json:"index"`
	Delta struct {
		Content rawText `json:"content"` // see utf8Joiner, as the other texts
		Refusal rawText `json:"refusal"`
		// ReasoningContent is the model's thinking (DeepSeek, llama.cpp,
		// LM Studio, vLLM before 0.11); Reasoning the same under the name
		// OpenRouter, Ollama and vLLM since give it (vLLM sent both for a
		// while: one is read).
		ReasoningContent rawText `json:"reasoning_content"`
		Reasoning        rawText `json:"reasoning"`
		// ReasoningDetails are pieces of OpenRouter's structured
		// reasoning (see reasoningDetails).
		ReasoningDetails []jsontext.Value      `json:"reasoning_details"`
		ToolCalls        []openAIToolCallPiece `json:"tool_calls"`
	} `json:"delta"`
	FinishReason string `json:"finish_reason"`
}

// openAIToolCallPiece is a piece of a tool call in a chunk: the first
// carries its id and name, the others more of its arguments.
type openAIToolCallPiece struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Function struct {
		Name      string  `json:"name"`
		Arguments rawText `json:"arguments"`
	} `json:"function"`
	ExtraContent jsontext.Value `json:"extra_content"` // Gemini's thought signature
}

// wireUsage is an OpenAI-wire reply's usage, with DeepSeek's count of
// cached prompt tokens, which it gives in place of OpenAI's
// prompt_tokens_details.
type wireUsage struct {
	openai.Usage         `json:",inline"`
	PromptCacheHitTokens int64 `json:"prompt_cache_hit_tokens"`
}

// keptCacheHits reads DeepSeek's prompt_cache_hit_tokens from a whole
// reply's body, kept from openai-compatible providers and openai ones at
// another base URL (exchange.keepBody), which go-openai's Usage drops: 0
// without it.
func keptCacheHits(ex *exchange) int64 {
	if ex.body == nil || !ex.body.holds("prompt_cache_hit_tokens") {
		return 0 // before reply, which escapes to the heap
	}
	var reply struct {
		Usage struct {
			PromptCacheHitTokens int64 `json:"prompt_cache_hit_tokens"`
		} `json:"usage"`
	}
	if jsonv2.Unmarshal(ex.body.all, &reply, lenient) != nil {
		return 0
	}
	return reply.Usage.PromptCacheHitTokens
}

// openAIToolChoice is c as go-openai's tool_choice: nil for none.
func openAIToolChoice(c *domain.ToolChoice) any {
	switch {
	case c == nil:
		return nil
	case c.Mode == domain.ToolChoiceFunction:
		return openai.ToolChoice{Type: openai.ToolTypeFunction, Function: openai.ToolFunction{Name: c.Name}}
	}
	return string(c.Mode)
}

// lenient decodes what upstreams send as encoding/json would: invalid UTF-8
// becomes U+FFFD (in the text of a delta, once utf8Joiner found it cannot
// be joined) and a repeated name takes the last value, rather than failing
// a stream that is otherwise fine.
var lenient = jsonv2.JoinOptions(jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true))

// openAILocal maps go-openai's own refusals, made before any request: a
// model it knows takes no chat completions, one of OpenAI's it knows takes
// tools only through the Responses API while it reasons (GPT-6), which
// Parley does not speak, and one takes no such reasoning effort. All are
// the caller's to fix; as a 502 they would say the provider failed, which
// was never asked.
func openAILocal(req domain.LLMRequest, err error) error {
	switch {
	case errors.Is(err, openai.ErrChatCompletionInvalidModel):
		return domain.Invalidf("model", "model %q cannot be used for chat completions; choose a chat model (the request's model, the chat's, or the provider's defaultModel)", req.Model)
	case errors.Is(err, openai.ErrReasoningToolsRequireResponses):
		return domain.Invalidf("tools", "model %q takes tools only through OpenAI's Responses API while it reasons, which Parley does not speak; leave tools and toolChoice out, send reasoningEffort none where the model takes it, or choose another model", req.Model)
	case errors.Is(err, openai.ErrReasoningEffortUnsupported):
		return domain.Invalidf("reasoningEffort", "model %q does not take reasoningEffort %q; send another, or leave it out", req.Model, req.ReasoningEffort)
	}
	return err
}

// openAIUsage is an OpenAI-wire reply's usage, cacheHits DeepSeek's
// prompt_cache_hit_tokens (0 where there is none), the cached tokens
// where prompt_tokens_details gives none. OpenAI counts reasoning
// tokens within completion_tokens; xAI counts them beside it (its total is
// prompt + completion + reasoning, and it bills them as output), so there
// they are added to the completion's.
func openAIUsage(u openai.Usage, cacheHits int64) domain.Usage {
	completion := int64(u.CompletionTokens)
	if d := u.CompletionTokensDetails; d != nil && d.ReasoningTokens > 0 &&
		int64(u.PromptTokens)+completion+int64(d.ReasoningTokens) == int64(u.TotalTokens) {
		completion += int64(d.ReasoningTokens)
	}
	out := reportedUsage(int64(u.PromptTokens), completion, int64(u.TotalTokens))
	cached := cacheHits
	if d := u.PromptTokensDetails; d != nil && d.CachedTokens > 0 {
		cached = int64(d.CachedTokens)
	}
	out.CachedTokens = min(boundTokens(cached), out.PromptTokens)
	if d := u.CompletionTokensDetails; d != nil {
		out.ReasoningTokens = min(boundTokens(int64(d.ReasoningTokens)), out.CompletionTokens)
	}
	return out
}

// maxReportedTokens bounds each token count a provider reports, so that
// the two counts and their sum fit in 32 bits. No model reads or writes
// anywhere near 2³⁰ tokens in a call; a provider that says it did (a bug,
// or a hostile OpenAI-compatible server) must not make its turn
// unstorable, as it would on PostgreSQL, which keeps a message's counts in
// integer columns, after the call was paid for.
const maxReportedTokens = math.MaxInt32 / 2

// reportedUsage is a provider's token counts, each between 0 and
// maxReportedTokens; a total of 0 is the sum of the others.
func reportedUsage(prompt, completion, total int64) domain.Usage {
	if total == 0 {
		total = prompt + completion
	}
	return domain.Usage{PromptTokens: boundTokens(prompt), CompletionTokens: boundTokens(completion), TotalTokens: boundTokens(total)}
}

// boundTokens is n between 0 and maxReportedTokens.
func boundTokens(n int64) int { return int(min(max(n, 0), maxReportedTokens)) }
