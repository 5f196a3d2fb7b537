package llm

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"github.com/anthropics/anthropic-sdk-go/packages/param"

	"github.com/parleyhq/parley/domain"
)

// anthropicClient returns an Anthropic SDK client for the endpoint. The
// SDK's own retries are off (Complete retries) and so are its environment
// defaults: a tenant's provider must never pick up the server's
// ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL. The SDK is v1 on purpose: it
// speaks API version 2023-06-01, and v2's 2026-10-21 refuses temperature
// and top_p, which Parley offers (TestCompleteEachProvider pins it).
func (c *Client) anthropicClient(ep domain.Endpoint) anthropic.Client {
	opts := []option.RequestOption{
		option.WithoutEnvironmentDefaults(),
		option.WithHTTPClient(c.http),
		option.WithMaxRetries(0),
		option.WithAPIKey(ep.APIKey.Reveal()),
	}
	if ep.BaseURL != "" {
		opts = append(opts, option.WithBaseURL(anthropicBase(ep.BaseURL)))
	}
	return anthropic.NewClient(opts...)
}

// anthropicBase accepts a base URL with or without the /v1 the SDK adds
// itself, so "https://api.anthropic.com" and ".../v1" both work.
func anthropicBase(u string) string {
	u = strings.TrimRight(u, "/")
	return strings.TrimSuffix(u, "/v1") + "/"
}

// anthropicParams maps a domain request to the Messages API, with the
// message list as Anthropic gets it (see anthropicMessages) when that is
// not the request's, else nil. System messages become the system
// parameter, the rest keep their order. Tools map to tools (parameters
// become input_schema) and toolChoice to tool_choice (required is
// Anthropic's "any"); an assistant message's tool calls become tool_use
// blocks, and tool messages tool_result blocks of a user message,
// consecutive ones in the same message.
func anthropicParams(req domain.LLMRequest) (anthropic.MessageNewParams, []domain.LLMMessage, error) {
	p := anthropic.MessageNewParams{
		Model:         anthropic.Model(req.Model),
		MaxTokens:     DefaultAnthropicMaxTokens,
		StopSequences: req.Stop,
	}
	anthropicSampling(&p, req)
	anthropicThinking(&p, req.Thinking, req.MaxTokens != nil)
	if ttl := req.Endpoint.PromptCache; ttl != "" {
		// Anthropic's automatic caching: the prompt is cached up to its
		// last block, so the next turn of a conversation, the same prefix
		// and one turn more, reads the history from the cache (at a tenth
		// of the input price; writing costs 1.25× it for 5m, 2× for 1h).
		p.CacheControl = anthropic.CacheControlEphemeralParam{TTL: anthropic.CacheControlEphemeralTTL(ttl)}
	}
	if f := req.ResponseFormat; enforcedFormat(f) {
		p.OutputConfig.Format = param.Override[anthropic.JSONOutputFormatParam](
			json.RawMessage(`{"type":"json_schema","schema":` + string(f.Schema) + `}`))
	}
	msgs, changed := anthropicMessages(req)
	p.System, p.Messages = anthropicTurns(msgs)
	if len(p.Messages) == 0 {
		return p, nil, noTurn()
	}
	if n := len(p.System); n > 0 && p.CacheControl.TTL != "" {
		// And up to the system prompt: Anthropic keeps a prefix only at a
		// breakpoint, so without this one the tools, the system prompt
		// and its documents, which every conversation of a chat and every
		// stateless call with the same sources share, were written anew
		// by each first turn and never read. Equal TTLs, so their order
		// stands; two of the four breakpoints a request may have.
		p.System[n-1].CacheControl = p.CacheControl
	}
	if p.Messages[len(p.Messages)-1].Role == anthropic.MessageParamRoleAssistant {
		if err := prefillError(req); err != nil {
			return p, nil, err
		}
	}
	p.Tools, p.ToolChoice = anthropicToolParams(req, msgs)
	if !changed {
		msgs = nil
	}
	return p, msgs, nil
}

// anthropicSampling sets p's max_tokens when req sets one, its
// temperature, top_p and effort.
func anthropicSampling(p *anthropic.MessageNewParams, req domain.LLMRequest) {
	if req.MaxTokens != nil {
		p.MaxTokens = int64(*req.MaxTokens)
	}
	if req.Temperature != nil {
		p.Temperature = anthropic.Float(*req.Temperature)
	}
	if req.TopP != nil {
		p.TopP = anthropic.Float(*req.TopP)
	}
	if e := req.ReasoningEffort; e != "" {
		p.OutputConfig.Effort = anthropic.OutputConfigEffort(e)
	}
}

// anthropicThinking sets p's thinking as t asks (nil for unset), and its
// max_tokens the thinking needs when the request set none (maxTokensSet).
func anthropicThinking(p *anthropic.MessageNewParams, t *domain.Thinking, maxTokensSet bool) {
	if t == nil {
		return
	}
	switch t.Type {
	case domain.ThinkingEnabled:
		// An extra field, not p.Thinking, with the same JSON: for
		// models that also take adaptive thinking the SDK writes a
		// deprecation line of its own to the process's stderr on every
		// call with p.Thinking enabled (thinking_warn.go), breaking
		// PARLEY_LOG_FORMAT=json; "enabled" is the client's choice.
		on := anthropic.ThinkingConfigParamOfEnabled(int64(t.BudgetTokens))
		on.OfEnabled.Display = anthropic.ThinkingConfigEnabledDisplay(t.Display)
		p.SetExtraFields(map[string]any{"thinking": on})
		if !maxTokensSet {
			p.MaxTokens += int64(t.BudgetTokens) // the budget, and the default for the reply
		}
	case domain.ThinkingAdaptive:
		p.Thinking = anthropic.ThinkingConfigParamUnion{OfAdaptive: &anthropic.ThinkingConfigAdaptiveParam{
			Display: anthropic.ThinkingConfigAdaptiveDisplay(t.Display)}}
		if !maxTokensSet {
			p.MaxTokens = DefaultAnthropicAdaptiveMaxTokens
		}
	case domain.ThinkingDisabled:
		p.Thinking = anthropic.ThinkingConfigParamUnion{OfDisabled: &anthropic.ThinkingConfigDisabledParam{}}
	}
}

// anthropicTurns is msgs as the system parameter and the messages: the
// system messages' texts, and the others in their order, consecutive
// tool results in one user message.
func anthropicTurns(msgs []domain.LLMMessage) ([]anthropic.TextBlockParam, []anthropic.MessageParam) {
	var system []anthropic.TextBlockParam
	var turns []anthropic.MessageParam
	var results []anthropic.ContentBlockParamUnion // tool results for the next user message
	for _, m := range msgs {
		if m.Role != domain.RoleTool && len(results) > 0 {
			turns = append(turns, anthropic.NewUserMessage(results...))
			results = nil
		}
		switch m.Role {
		case domain.RoleSystem:
			system = append(system, anthropic.TextBlockParam{Text: m.Content})
		case domain.RoleAssistant:
			turns = append(turns, anthropicAssistantTurn(m))
		case domain.RoleTool:
			r := anthropic.ToolResultBlockParam{ToolUseID: anthropicToolID(m.ToolCallID)}
			if m.Content != "" {
				r.Content = []anthropic.ToolResultBlockParamContentUnion{{OfText: &anthropic.TextBlockParam{Text: m.Content}}}
			}
			results = append(results, anthropic.ContentBlockParamUnion{OfToolResult: &r})
		default:
			turns = append(turns, anthropic.NewUserMessage(anthropic.NewTextBlock(m.Content)))
		}
	}
	if len(results) > 0 {
		turns = append(turns, anthropic.NewUserMessage(results...))
	}
	return system, turns
}

// anthropicAssistantTurn is an assistant message: its thinking, text and
// tool calls as blocks.
func anthropicAssistantTurn(m domain.LLMMessage) anthropic.MessageParam {
	// The thinking that came before the calls, first, as Anthropic
	// requires of the turn a tool result answers.
	blocks := thinkingBlocks(m.ToolCalls)
	if m.Content != "" {
		blocks = append(blocks, anthropic.NewTextBlock(m.Content))
	}
	for _, c := range m.ToolCalls {
		blocks = append(blocks, anthropic.NewToolUseBlock(anthropicToolID(c.ID), toolInput(c), anthropicToolName(c.Name)))
	}
	return anthropic.NewAssistantMessage(blocks...)
}

// anthropicToolParams is req's tools and tool choice as Anthropic's tools
// and tool_choice, for msgs, the message list as Anthropic gets it.
func anthropicToolParams(req domain.LLMRequest, msgs []domain.LLMMessage) ([]anthropic.ToolUnionParam, anthropic.ToolChoiceUnionParam) {
	if len(req.Tools) > 0 {
		return anthropicTools(req.Tools), anthropicToolChoice(req.ToolChoice, req.ParallelToolCalls)
	}
	// Anthropic refuses tool_use and tool_result blocks in a request
	// that defines no tools, where OpenAI-wire providers take a history
	// of calls without them: the tools it called are defined, by name
	// alone, and none may be called.
	if tools := calledToolsDeclared(msgs); len(tools) > 0 {
		return tools, anthropicToolChoice(&domain.ToolChoice{Mode: domain.ToolChoiceNone}, nil)
	}
	return nil, anthropicToolChoice(req.ToolChoice, req.ParallelToolCalls)
}

// anthropicTools is the request's tools as Anthropic's, nil for none.
func anthropicTools(tools []domain.Tool) []anthropic.ToolUnionParam {
	var out []anthropic.ToolUnionParam
	for _, t := range tools {
		tp := anthropic.ToolParam{Name: t.Name, InputSchema: param.Override[anthropic.ToolInputSchemaParam](anthropicInputSchema(t.Parameters))}
		if t.Description != "" {
			tp.Description = anthropic.String(t.Description)
		}
		if t.Strict {
			tp.Strict = anthropic.Bool(true)
		}
		out = append(out, anthropic.ToolUnionParam{OfTool: &tp})
	}
	return out
}

// calledToolsDeclared is the tools msgs' calls called as tools declared
// by name alone, which say they cannot be called now; nil for none.
func calledToolsDeclared(msgs []domain.LLMMessage) []anthropic.ToolUnionParam {
	var out []anthropic.ToolUnionParam
	for _, name := range calledTools(msgs) {
		out = append(out, anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{Name: name,
			Description: anthropic.String("Called earlier in this conversation; not available now."),
			InputSchema: param.Override[anthropic.ToolInputSchemaParam](json.RawMessage(`{"type":"object"}`))}})
	}
	return out
}

// anthropicToolChoice is c as tool_choice, the zero value (Anthropic's
// default) for none. parallel false is disable_parallel_tool_use, which
// each tool_choice but none carries (auto, Anthropic's default, when
// none was chosen).
func anthropicToolChoice(c *domain.ToolChoice, parallel *bool) anthropic.ToolChoiceUnionParam {
	var serial param.Opt[bool]
	if parallel != nil && !*parallel {
		serial = anthropic.Bool(true)
		if c == nil {
			c = &domain.ToolChoice{Mode: domain.ToolChoiceAuto}
		}
	}
	if c == nil {
		return anthropic.ToolChoiceUnionParam{}
	}
	switch c.Mode {
	case domain.ToolChoiceAuto:
		return anthropic.ToolChoiceUnionParam{OfAuto: &anthropic.ToolChoiceAutoParam{DisableParallelToolUse: serial}}
	case domain.ToolChoiceRequired:
		return anthropic.ToolChoiceUnionParam{OfAny: &anthropic.ToolChoiceAnyParam{DisableParallelToolUse: serial}}
	case domain.ToolChoiceNone:
		none := anthropic.NewToolChoiceNoneParam()
		return anthropic.ToolChoiceUnionParam{OfNone: &none}
	case domain.ToolChoiceFunction:
		return anthropic.ToolChoiceUnionParam{OfTool: &anthropic.ToolChoiceToolParam{Name: c.Name, DisableParallelToolUse: serial}}
	}
	return anthropic.ToolChoiceUnionParam{}
}

// anthropicInputSchema is a tool's parameters as Anthropic's input_schema,
// which must say "type": OpenAI takes a schema without one ({}, or only
// "properties"), as a tool without arguments is often declared, where
// Anthropic refuses the request (input_schema.type: Field required). A
// tool's arguments are an object, so that is the type added.
func anthropicInputSchema(schema []byte) json.RawMessage {
	s := bytes.TrimSpace(schema)
	if len(s) == 0 {
		return emptySchema
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(s, &top) != nil {
		return s // the domain checked it is an object; as sent
	}
	if t, ok := top["type"]; ok && string(t) != "null" {
		return s
	}
	if len(top) == 0 {
		return emptySchema
	}
	top["type"] = json.RawMessage(`"object"`) // in place of a null one too
	out, err := json.Marshal(top)
	if err != nil {
		return s
	}
	return out
}

// calledTools is the names of the tools msgs' calls called, each once, in
// the order first called.
func calledTools(msgs []domain.LLMMessage) []string {
	var names []string
	for _, m := range msgs {
		for _, c := range m.ToolCalls {
			if name := anthropicToolName(c.Name); !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	return names
}

// anthropicToolName is name, a function a history's tool call called, as
// a tool_use block's name and a tool's, which Anthropic takes only of
// ^[a-zA-Z0-9_-]{1,128}$, and a call another provider's model made need
// not be (open models call "repo_browser.search"; a call may name none).
// Such a name is made as anthropicToolID makes an id, within 128 bytes; a
// name a tool may be declared with stays as it is.
func anthropicToolName(name string) string {
	if name == "" {
		name = "unnamed"
	}
	out := anthropicToolID(name)
	if len(out) > 128 {
		sum := sha256.Sum256([]byte(name))
		out = out[:119] + "_" + hex.EncodeToString(sum[:4])
	}
	return out
}

// anthropicToolID is id as a tool_use block's id and a tool_result's
// tool_use_id, which Anthropic takes only of ^[a-zA-Z0-9_-]+$, and other
// providers' ids need not be (Kimi K2's "functions.weather:0"). Such an id
// has each other byte made "_" and a hash of it added, so that two ids
// that differ stay apart; a call and its result, written from the same
// id, still match. The stored ids stay as they came.
func anthropicToolID(id string) string {
	valid := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	i := 0
	for i < len(id) && valid(id[i]) {
		i++
	}
	if i == len(id) && id != "" {
		return id
	}
	b := []byte(id)
	for j := i; j < len(b); j++ {
		if !valid(b[j]) {
			b[j] = '_'
		}
	}
	sum := sha256.Sum256([]byte(id))
	return string(b) + "_" + hex.EncodeToString(sum[:4])
}

// anthropicMessages is the request's message list as Anthropic gets it,
// and whether that differs from the request's.
//
// Anthropic refuses a text block that is empty or only whitespace, which
// OpenAI-wire providers take: such a text goes as none, and a message
// left with no text and no tool call is left out (a stored reply that
// came back empty, or as "\n\n", must not break every continuation of its
// conversation); Anthropic joins the turns of one role that then meet. A
// tool result keeps its place, without content. A last message that is a
// reply for the model to continue (a prefill) goes without the whitespace
// it ends with, which Anthropic refuses there ("final assistant content
// cannot end with trailing whitespace"); the model writes the space.
//
// Anthropic has no response_format. A strict JSON schema becomes its
// structured output (output_config.format, see anthropicParams), which
// the API enforces, as OpenAI's does; JSON mode and a JSON schema that is
// not strict are asked for in the system prompt (see formatInstruction),
// which the model follows but the API does not enforce. The instruction
// is a system message after the request's.
func anthropicMessages(req domain.LLMRequest) ([]domain.LLMMessage, bool) {
	out := make([]domain.LLMMessage, 0, len(req.Messages)+1)
	changed := false
	at := 0 // after the last system message
	var refusedCalls []string
	for i, m := range req.Messages {
		if m.Role == domain.RoleAssistant && m.Refusal != "" {
			// A refused turn goes as none, its reply and the user's
			// messages it answered, and the results of any calls it made:
			// Anthropic refuses every request that still holds it ("reset
			// the conversation context"), and a conversation could not go
			// on.
			for len(out) > at && out[len(out)-1].Role == domain.RoleUser {
				out = out[:len(out)-1]
			}
			for _, c := range m.ToolCalls {
				refusedCalls = append(refusedCalls, c.ID)
			}
			changed = true
			continue
		}
		if m.Role == domain.RoleTool && slices.Contains(refusedCalls, m.ToolCallID) {
			changed = true
			continue
		}
		if m.Content != "" && strings.TrimSpace(m.Content) == "" {
			m.Content, changed = "", true
		}
		if i == len(req.Messages)-1 && m.Role == domain.RoleAssistant && len(m.ToolCalls) == 0 {
			if t := strings.TrimRightFunc(m.Content, unicode.IsSpace); t != m.Content {
				m.Content, changed = t, true
			}
		}
		if m.Content == "" && len(m.ToolCalls) == 0 && m.Role != domain.RoleTool {
			changed = true
			continue
		}
		out = append(out, m)
		if m.Role == domain.RoleSystem {
			at = len(out)
		}
	}
	if text := formatInstruction(req.ResponseFormat); text != "" {
		out = slices.Insert(out, at, domain.LLMMessage{Role: domain.RoleSystem, Content: text})
		changed = true
	}
	return out, changed
}

// toolInput is a tool call's arguments as a tool_use block's input, which
// Anthropic requires to be a JSON object; no arguments are {}. Arguments
// that are no JSON object (a model's call cut short or malformed, which
// OpenAI's wire takes as any text) go as their text under
// "_unparsed_arguments": refusing them would stop for good a conversation
// whose stored reply made such a call, as nothing a caller sends can change
// its history, while the call's result, after it, says what went wrong.
func toolInput(c domain.ToolCall) json.RawMessage {
	args := bytes.TrimSpace([]byte(c.Arguments))
	switch {
	case len(args) == 0:
		return json.RawMessage(`{}`)
	case args[0] == '{' && json.Valid(args):
		return json.RawMessage(args)
	}
	wrapped, _ := json.Marshal(map[string]string{"_unparsed_arguments": c.Arguments}) // a string cannot fail
	return wrapped
}

// enforcedFormat reports whether f goes to Anthropic as its structured
// output: a strict JSON schema. A model without structured outputs
// refuses it (a 400 passed on as the provider's), as OpenAI's do, rather
// than be asked in words for what strict promises.
func enforcedFormat(f *domain.ResponseFormat) bool {
	return f != nil && f.Type == domain.ResponseJSONSchema && f.Strict
}

// formatInstruction is the system prompt text that stands in for
// response_format with Anthropic, which has no such parameter: "" for
// plain text and for a format the API enforces (enforcedFormat), else an
// instruction to answer with only a JSON object (and, for json_schema,
// one that follows the schema).
func formatInstruction(f *domain.ResponseFormat) string {
	if f == nil || enforcedFormat(f) {
		return ""
	}
	switch f.Type {
	case domain.ResponseJSONObject:
		return "Respond with only a JSON object: no other text, no Markdown code fence."
	case domain.ResponseJSONSchema:
		var b strings.Builder
		b.WriteString("Respond with only a JSON object that conforms to the JSON schema below: no other text, no Markdown code fence.")
		if f.Description != "" {
			b.WriteString(" The object is " + f.Name + ": " + f.Description)
		}
		b.WriteString("\n\n")
		b.Write(f.Schema)
		return b.String()
	}
	return ""
}

// callAnthropic makes one attempt against the Anthropic Messages API.
func (c *Client) callAnthropic(ctx context.Context, ex *exchange, cs *callSpec) (*domain.LLMResult, error) {
	cli := c.anthropicClient(cs.req.Endpoint)
	req := cs.req
	// Models that think unasked (thinking unset) require their thinking
	// back as ones asked to: only "disabled" leaves the memory unread.
	if t := req.Thinking; t == nil || t.Type != domain.ThinkingDisabled {
		req.Messages = c.thoughts.restore(req.Caller, req.Endpoint.APIKey, domain.AnthropicExtra, req.Messages, time.Now())
	}
	params, sent, err := anthropicParams(req)
	if err != nil {
		return nil, err
	}
	if sent == nil && len(req.Messages) > 0 && &req.Messages[0] != &cs.req.Messages[0] {
		sent = req.Messages // debug shows the thinking restored
	}
	var res *domain.LLMResult
	if cs.onDelta != nil {
		res, err = c.anthropicStream(ctx, ex, cs, cli, params)
	} else {
		res, err = c.anthropicMessage(ctx, ex, cs, cli, params)
	}
	if err == nil {
		c.thoughts.remember(req.Caller, req.Endpoint.APIKey, domain.AnthropicExtra, res, time.Now())
	}
	if res == nil && sent != nil {
		res = &domain.LLMResult{} // a failed call's debug shows what went up too
	}
	if res != nil {
		res.Sent = sent
	}
	return res, err
}

// anthropicMessage makes one attempt without streaming.
func (c *Client) anthropicMessage(ctx context.Context, ex *exchange, cs *callSpec, cli anthropic.Client, params anthropic.MessageNewParams) (*domain.LLMResult, error) {
	// A request timeout of our own keeps the SDK from refusing large
	// max_tokens without streaming; ctx and the first-byte timeout govern.
	msg, err := cli.Messages.New(ctx, params, option.WithRequestTimeout(time.Hour))
	if err != nil {
		return nil, err
	}
	if msg.StopReason == "" && len(msg.Content) == 0 {
		// An error object sent with status 200 (as some gateways answer a
		// failure) decodes as a message with nothing in it: say its error.
		if m := sanitize(bodyMessage(ex.bodyHead()), cs.req.Endpoint.APIKey.Reveal(), 200); m != "" {
			return nil, domain.Errorf(domain.Upstream, "the AI provider answered with an error instead of a reply: %s", m)
		}
		return nil, domain.Errorf(domain.Upstream, "the AI provider answered with an empty message")
	}
	res := &domain.LLMResult{
		Model:        upstreamModel(string(msg.Model), cs.req.Endpoint.APIKey.Reveal()),
		FinishReason: anthropicFinish(string(msg.StopReason)),
		FirstByte:    firstByte(ex, cs.start),
	}
	var content, reasoning strings.Builder
	var thinking []thinkingBlock
	for i, b := range msg.Content {
		switch b.Type {
		case "text":
			content.WriteString(b.Text)
		case "thinking":
			reasoning.WriteString(b.Thinking)
			thinking = append(thinking, thinkingBlock{Type: b.Type, Thinking: b.Thinking, Signature: b.Signature})
		case "redacted_thinking":
			thinking = append(thinking, thinkingBlock{Type: b.Type, Data: b.Data})
		case "tool_use":
			args := compactJSON(b.Input)
			if args == "{}" && i == len(msg.Content)-1 && cutOff(msg.StopReason) {
				args = "" // cut before its first property, as a stream shows it (anthropicStream)
			}
			res.ToolCalls = append(res.ToolCalls, domain.ToolCall{ID: b.ID, Type: "function", Name: b.Name, Arguments: args})
		}
	}
	res.Content, res.Reasoning = content.String(), reasoning.String()
	res.Refusal = refusalOf(msg.StopReason, msg.StopDetails)
	withThinking(res.ToolCalls, thinking)
	res.FinishReason = wholeReplyFinish(res.FinishReason, res.ToolCalls)
	u := msg.Usage
	res.Usage = anthropicUsage(u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens, u.OutputTokens,
		u.OutputTokensDetails.ThinkingTokens)
	return res, nil
}

// anthropicStream streams one attempt, mapping the Messages API's events
// to deltas: message_start carries the model and input tokens,
// content_block_delta the text (and a thinking block's the reasoning), content_block_start of a tool_use block
// begins a tool call (id and name) and its input_json_delta pieces are
// the arguments, message_delta carries the stop reason and the cumulative
// output tokens. anthropicStreamState has a method for each.
func (c *Client) anthropicStream(ctx context.Context, ex *exchange, cs *callSpec, cli anthropic.Client, params anthropic.MessageNewParams) (*domain.LLMResult, error) {
	stream := cli.Messages.NewStreaming(ctx, params)
	defer stream.Close()

	res := &domain.LLMResult{}
	reply := anthropicReply{ex: ex, cs: cs, res: res, maxBytes: c.cfg.MaxResponseBytes}
	s := anthropicStreamState{anthropicReply: &reply,
		thoughts: map[int64]int{}, texts: map[int64]*strings.Builder{}, tools: map[int64]int{},
		joiners: map[int64]*utf8Joiner{}, kinds: map[int64]string{}, noInput: -1}
	defer s.finish()
	for stream.Next() {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		ev := stream.Current()
		if err := s.event(&ev); err != nil {
			return res, err
		}
	}
	if err := stream.Err(); err != nil {
		if res.FirstByte == 0 && anthropicServerFault(err) {
			err = &faultBeforeReply{err: err}
		}
		return res, err
	}
	ex.markReplied()
	if res.FirstByte == 0 {
		res.FirstByte = firstByte(ex, cs.start)
	}
	if res.FinishReason == "" {
		return res, streamEnd(ex, cs.req.Endpoint.APIKey.Reveal())
	}
	return res, nil
}

// anthropicReply is the reply a stream has given so far, and where its
// deltas go.
type anthropicReply struct {
	ex       *exchange
	cs       *callSpec
	res      *domain.LLMResult
	maxBytes int64 // Config.MaxResponseBytes

	content, reasoning strings.Builder
	calls              toolCalls
	// The thinking blocks so far: the first tool call carries them (see
	// thinkingExtra), passed on with its first piece, and in the result
	// all of them.
	thinking []thinkingBlock
}

// anthropicStreamState is what anthropicStream keeps while it reads one
// attempt's events: the reply, and what each content block's pieces
// need. Each kind of event has its method.
type anthropicStreamState struct {
	// The reply is a variable of its own, so that the maps below stay on
	// the stack: escape analysis takes a struct's fields as one, and the
	// reply's parts go to the heap (in the result, to the caller).
	*anthropicReply
	// Where each content block index's thinking block is among the
	// reply's thinking.
	thoughts map[int64]int
	texts    map[int64]*strings.Builder // of the thinking blocks not yet stopped
	tools    map[int64]int              // content block index → our tool call index
	// A block's pieces may split a character between them (an upstream of
	// a project's own may): each block's are joined again (utf8Joiner),
	// its last piece's held bytes flushed when it stops.
	joiners map[int64]*utf8Joiner
	kinds   map[int64]string // each block's type
	// A tool_use block that ended without input is a call without
	// arguments ({}), or one the reply was cut off in before its first
	// property (the input streams a whole property at a time): which, only
	// the stop reason tells. Its {} waits for the next block or the stop
	// reason.
	noInput int64 // the block, or -1
	// The usage, field by field: message_start counts the input,
	// message_delta the output and, again, whatever input it reports.
	input, cacheWrite, cacheRead, output, thinkingTokens int64
}

// event handles one event of the stream. The others (ping, message_stop)
// carry nothing the result keeps.
func (s *anthropicStreamState) event(ev *anthropic.MessageStreamEventUnion) error {
	switch ev.Type {
	case "message_start":
		s.messageStart(ev)
	case "content_block_start":
		return s.blockStart(ev)
	case "content_block_delta":
		return s.blockDelta(ev)
	case "content_block_stop":
		return s.blockStop(ev)
	case "message_delta":
		return s.messageDelta(ev)
	}
	return nil
}

// messageStart takes the model that answers and the input tokens.
func (s *anthropicStreamState) messageStart(ev *anthropic.MessageStreamEventUnion) {
	s.res.Model = upstreamModel(string(ev.Message.Model), s.cs.req.Endpoint.APIKey.Reveal())
	// Its output_tokens is a placeholder (1), sent before the
	// reply: only message_delta counts the reply. Without that
	// count the domain estimates the reply rather than record 1.
	u := ev.Message.Usage
	s.input, s.cacheWrite, s.cacheRead = u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens
	s.res.Usage = s.usage()
}

// blockStart begins a content block: a thinking block is kept for the
// first tool call, and a tool_use block begins a tool call, passed on
// with its id and name.
func (s *anthropicStreamState) blockStart(ev *anthropic.MessageStreamEventUnion) error {
	if err := s.sayNoInput(); err != nil {
		return err
	}
	s.kinds[ev.Index] = ev.ContentBlock.Type
	switch ev.ContentBlock.Type {
	case "thinking", "redacted_thinking":
		s.thoughts[ev.Index], s.texts[ev.Index] = len(s.thinking), &strings.Builder{}
		s.thinking = append(s.thinking, thinkingBlock{Type: ev.ContentBlock.Type, Data: ev.ContentBlock.Data})
	case "tool_use":
		key := int(ev.Index)
		d := s.calls.add(&key, ev.ContentBlock.ID, ev.ContentBlock.Name, "")
		s.tools[ev.Index] = d.Index
		if d.Index == 0 {
			s.calls.keepExtra(&d, thinkingContent(s.thinking))
		}
		return s.emit(domain.Delta{ToolCalls: []domain.ToolCallDelta{d}})
	}
	return nil
}

// blockDelta passes on a piece of a block: text, reasoning or a tool
// call's arguments. A thinking block's signature is kept, not passed on.
func (s *anthropicStreamState) blockDelta(ev *anthropic.MessageStreamEventUnion) error {
	var d domain.Delta
	switch {
	case ev.Delta.Type == "text_delta" && ev.Delta.Text != "":
		if d.Content = s.join(ev.Index, ev.Delta.Text); d.Content == "" {
			return nil // the start of a character, held
		}
	case ev.Delta.Type == "thinking_delta" && ev.Delta.Thinking != "":
		if b, ok := s.texts[ev.Index]; ok {
			b.WriteString(ev.Delta.Thinking) // as sent: its signature signs it
		}
		if d.Reasoning = s.join(ev.Index, ev.Delta.Thinking); d.Reasoning == "" {
			return nil
		}
	case ev.Delta.Type == "signature_delta":
		if i, ok := s.thoughts[ev.Index]; ok {
			s.thinking[i].Signature += ev.Delta.Signature
		}
		return nil
	case ev.Delta.Type == "input_json_delta" && ev.Delta.PartialJSON != "":
		if _, ok := s.tools[ev.Index]; !ok {
			return nil
		}
		args := s.join(ev.Index, ev.Delta.PartialJSON)
		if args == "" {
			return nil
		}
		key := int(ev.Index)
		d.ToolCalls = []domain.ToolCallDelta{s.calls.add(&key, "", "", args)}
	default:
		return nil
	}
	return s.emit(d)
}

// blockStop ends a block: the bytes its joiner held are passed on, a
// thinking block's text is kept whole, and a tool call without input
// waits to be told (see noInput).
func (s *anthropicStreamState) blockStop(ev *anthropic.MessageStreamEventUnion) error {
	if j := s.joiners[ev.Index]; j != nil {
		delete(s.joiners, ev.Index)
		if rest := j.flush(); rest != "" {
			if err := s.emit(s.piece(ev.Index, rest)); err != nil {
				return err
			}
		}
	}
	if b, ok := s.texts[ev.Index]; ok {
		s.thinking[s.thoughts[ev.Index]].Thinking = b.String()
		delete(s.texts, ev.Index)
	}
	if i, ok := s.tools[ev.Index]; ok && s.calls.arguments(i) == "" {
		s.noInput = ev.Index
	}
	return nil
}

// messageDelta takes the stop reason, which settles a call without input
// (see noInput) and may be a refusal, passed on, and the usage.
func (s *anthropicStreamState) messageDelta(ev *anthropic.MessageStreamEventUnion) error {
	if ev.Delta.StopReason != "" {
		s.res.FinishReason = anthropicFinish(string(ev.Delta.StopReason))
		if cutOff(ev.Delta.StopReason) {
			s.noInput = -1 // cut: its arguments stay empty, and the turn is stored without it
		} else if err := s.sayNoInput(); err != nil {
			return err
		}
		if r := refusalOf(ev.Delta.StopReason, ev.Delta.StopDetails); r != "" {
			if err := s.emit(domain.Delta{Refusal: r}); err != nil {
				return err
			}
		}
	}
	// Each count it gives replaces message_start's; one it leaves
	// out (as gateways that pass on only some do) keeps it.
	u := ev.Usage
	s.input, s.cacheWrite = cmp.Or(u.InputTokens, s.input), cmp.Or(u.CacheCreationInputTokens, s.cacheWrite)
	s.cacheRead, s.output = cmp.Or(u.CacheReadInputTokens, s.cacheRead), cmp.Or(u.OutputTokens, s.output)
	s.thinkingTokens = cmp.Or(u.OutputTokensDetails.ThinkingTokens, s.thinkingTokens)
	s.res.Usage = s.usage()
	return nil
}

// usage is the usage the events so far reported.
func (s *anthropicStreamState) usage() domain.Usage {
	return anthropicUsage(s.input, s.cacheWrite, s.cacheRead, s.output, s.thinkingTokens)
}

// emit passes d on to the caller, with the model message_start named,
// once the reply's cap allows it, and adds it to the result.
func (r *anthropicReply) emit(d domain.Delta) error {
	if err := r.ex.addReply(d, r.maxBytes); err != nil {
		return err
	}
	if r.res.FirstByte == 0 {
		r.res.FirstByte = time.Since(r.cs.start)
	}
	r.content.WriteString(d.Content)
	r.reasoning.WriteString(d.Reasoning)
	r.res.Refusal += d.Refusal
	d.Model = r.res.Model // from message_start
	if err := r.cs.onDelta(d); err != nil {
		return &deltaError{err: err}
	}
	return nil
}

// join is block i's next piece, with a character the pieces split
// joined again: "" while a character's start is held (see joiners).
func (s *anthropicStreamState) join(i int64, piece string) string {
	j := s.joiners[i]
	if j == nil {
		j = &utf8Joiner{}
		s.joiners[i] = j
	}
	return j.next(piece)
}

// piece is the delta of block i's text: its content, reasoning or
// tool call arguments, as its kind says.
func (s *anthropicStreamState) piece(i int64, text string) domain.Delta {
	switch s.kinds[i] {
	case "thinking":
		return domain.Delta{Reasoning: text}
	case "tool_use":
		key := int(i)
		return domain.Delta{ToolCalls: []domain.ToolCallDelta{s.calls.add(&key, "", "", text)}}
	}
	return domain.Delta{Content: text}
}

// sayNoInput passes on the {} of the tool call that waits for it (see
// noInput), if one does: what came next shows the reply went on past it.
func (s *anthropicStreamState) sayNoInput() error {
	if s.noInput < 0 {
		return nil
	}
	key := int(s.noInput)
	s.noInput = -1
	return s.emit(domain.Delta{ToolCalls: []domain.ToolCallDelta{s.calls.add(&key, "", "", "{}")}})
}

// finish puts the reply so far in the result, however the stream ended:
// its text, reasoning and tool calls, the first carrying the thinking,
// with the text of any thinking block not yet stopped.
func (s *anthropicStreamState) finish() {
	s.res.Content, s.res.Reasoning, s.res.ToolCalls = s.content.String(), s.reasoning.String(), s.calls.result()
	for i, b := range s.texts {
		s.thinking[s.thoughts[i]].Thinking = b.String()
	}
	withThinking(s.res.ToolCalls, s.thinking)
}

// anthropicServerFault reports whether err is an error event by which the
// Messages API reports a fault of its own in a stream it had answered
// 200: overloaded_error (what a 529 says of a call not streamed),
// api_error (a 500) or timeout_error (a 504). Anthropic sends
// overloaded_error so, in place of the reply, when it is busy.
func anthropicServerFault(err error) bool {
	var ae *anthropic.Error
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Type() {
	case anthropic.ErrorTypeOverloadedError, anthropic.ErrorTypeAPIError, anthropic.ErrorTypeTimeoutError:
		return true
	}
	return false
}

// compactJSON is a tool_use input as the arguments of a tool call: its
// JSON, compacted; {} when there is none.
func compactJSON(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "{}"
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

// anthropicFinish maps a stop_reason to the OpenAI finish_reason Parley
// speaks. A reason Anthropic adds later is "stop": OpenAI clients that
// type finish_reason as an enum (async-openai, openai-java) fail on a
// value outside it, and a response must not tell which provider answered.
// None stays none: the caller tells a cut-off reply by it.
func anthropicFinish(stop string) string {
	switch stop {
	case "":
		return ""
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return "stop" // end_turn, stop_sequence, pause_turn, and any other
}

// refusalOf is the refusal of a reply that stopped for stop with details:
// Anthropic's explanation, or a sentence of Parley's when it gives none,
// so that the reply says why it stopped and its turn is known as refused
// (see anthropicMessages); "" when the model did not refuse.
func refusalOf(stop anthropic.StopReason, details anthropic.RefusalStopDetails) string {
	if stop != "refusal" {
		return ""
	}
	return cmp.Or(details.Explanation, "The model declined to go on with this request.")
}

// cutOff reports whether a reply that stopped for stop was cut off midway:
// at the token limit or the context window, or where the model refused to
// go on. A tool call being written then has arguments that stopped short,
// or none yet.
func cutOff(stop anthropic.StopReason) bool {
	switch anthropicFinish(string(stop)) {
	case "length", "content_filter":
		return true
	}
	return false
}

// anthropicUsage maps Anthropic's usage to Parley's: the prompt counts
// every input token, cached, written to the cache or neither, as OpenAI's
// prompt_tokens does, and those read from the cache are its cached tokens,
// as OpenAI's are; those written to it are its cache-write tokens. The
// reply's thinking tokens (output_tokens_details) are its reasoning tokens.
func anthropicUsage(input, cacheWrite, cacheRead, output, thinking int64) domain.Usage {
	u := reportedUsage(input+cacheWrite+cacheRead, output, input+cacheWrite+cacheRead+output)
	u.CachedTokens = min(boundTokens(cacheRead), u.PromptTokens)
	u.CacheWriteTokens = min(boundTokens(cacheWrite), u.PromptTokens-u.CachedTokens)
	u.ReasoningTokens = min(boundTokens(thinking), u.CompletionTokens)
	return u
}

// A reply's thinking, with the signature Anthropic checks when it comes
// back, must be sent back before the tool calls it led to once their
// results answer them (the API refuses the turn without it while thinking
// is on). It rides in the first call's extra_content, which the calls
// keep wherever they go (the stored turn, a client's history), under
// "anthropic", as Gemini's thought signature does under "google":
// {"anthropic": {"thinking": [blocks as Anthropic sent them]}}.
type thinkingExtra struct {
	Anthropic struct {
		Thinking []thinkingBlock `json:"thinking"`
	} `json:"anthropic"`
}

// thinkingBlock is a thinking or redacted_thinking block.
type thinkingBlock struct {
	Type      string `json:"type"`
	Thinking  string `json:"thinking,omitempty"`
	Signature string `json:"signature,omitempty"`
	Data      string `json:"data,omitempty"` // redacted_thinking
}

// withThinking sets the extra_content of calls' first call to blocks, when
// there are both and it fits what a call may carry back.
func withThinking(calls []domain.ToolCall, blocks []thinkingBlock) {
	if extra := thinkingContent(blocks); len(calls) > 0 && extra != nil {
		calls[0].ExtraContent = extra
	}
}

// thinkingContent is blocks as a call's extra_content, nil for none or
// when over domain.MaxExtraContent.
func thinkingContent(blocks []thinkingBlock) []byte {
	if len(blocks) == 0 {
		return nil
	}
	var x thinkingExtra
	x.Anthropic.Thinking = blocks
	return domain.ExtraWith(nil, domain.AnthropicExtra, x.Anthropic)
}

// thinkingBlocks returns the thinking that calls' first one carries back,
// as blocks of an assistant message.
func thinkingBlocks(calls []domain.ToolCall) []anthropic.ContentBlockParamUnion {
	if len(calls) == 0 || !bytes.Contains(calls[0].ExtraContent, []byte(`"anthropic"`)) {
		return nil
	}
	var x thinkingExtra
	if json.Unmarshal(calls[0].ExtraContent, &x) != nil {
		return nil
	}
	var out []anthropic.ContentBlockParamUnion
	for _, b := range x.Anthropic.Thinking {
		switch b.Type {
		case "thinking":
			out = append(out, anthropic.NewThinkingBlock(b.Signature, b.Thinking))
		case "redacted_thinking":
			out = append(out, anthropic.NewRedactedThinkingBlock(b.Data))
		}
	}
	return out
}
