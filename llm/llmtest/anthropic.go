package llmtest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// anthropicTextRefusal is the Messages API's refusal of a request with a
// text block it does not take, "" when there is none: an empty text (a
// block, or a message's content as a string), or a content (the system
// parameter, a message's, a tool_result's) whose text blocks hold nothing
// but whitespace. A whitespace block beside one with other characters is
// taken, as the API takes it. And a last message, the assistant's, whose
// last text ends with whitespace (a prefill must not).
func anthropicTextRefusal(body map[string]any) string {
	if msg := textBlocksRefusal("system", body["system"]); msg != "" {
		return msg
	}
	msgs, _ := body["messages"].([]any)
	if n := len(msgs); n > 0 {
		last, _ := msgs[n-1].(map[string]any)
		blocks, _ := last["content"].([]any)
		if len(blocks) > 0 && last["role"] == "assistant" {
			b, _ := blocks[len(blocks)-1].(map[string]any)
			if text, _ := b["text"].(string); b["type"] == "text" && strings.TrimRightFunc(text, unicode.IsSpace) != text {
				return "messages: final assistant content cannot end with trailing whitespace"
			}
		}
	}
	for _, m := range msgs {
		mm, _ := m.(map[string]any)
		if msg := textBlocksRefusal("messages", mm["content"]); msg != "" {
			return msg
		}
		blocks, _ := mm["content"].([]any)
		for _, b := range blocks {
			if bm, _ := b.(map[string]any); bm["type"] == "tool_result" {
				if msg := textBlocksRefusal("messages", bm["content"]); msg != "" {
					return msg
				}
			}
		}
	}
	return ""
}

// anthropicToolsRefusal is the message with which Anthropic refuses a
// request's tool blocks, "" when it takes them: a tool_use id or a
// tool_result's tool_use_id outside ^[a-zA-Z0-9_-]+$ (other providers'
// ids, as Kimi's "functions.weather:0", are), a tool block in a request
// that defines no tools, and a tool_result whose call is not in the
// message before it; and a tool's name, or a tool_use block's, outside
// ^[a-zA-Z0-9_-]{1,128}$ (open models call "repo_browser.search"), a
// tool_use block whose input is no JSON object (OpenAI's arguments are
// any text), and a tool's input_schema without "type" (OpenAI takes {}).
func anthropicToolsRefusal(body map[string]any) string {
	msgs, _ := body["messages"].([]any)
	tools, _ := body["tools"].([]any)
	for i, tl := range tools {
		tm, _ := tl.(map[string]any)
		if name, _ := tm["name"].(string); !validToolName(name) {
			return fmt.Sprintf("tools.%d.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'", i)
		}
		if schema, _ := tm["input_schema"].(map[string]any); schema["type"] == nil {
			return fmt.Sprintf("tools.%d.custom.input_schema.type: Field required", i)
		}
	}
	var calls, prev []string // the tool_use ids of this message and the one before
	for i, m := range msgs {
		prev, calls = calls, nil
		blocks, _ := m.(map[string]any)["content"].([]any)
		for j, b := range blocks {
			bm, _ := b.(map[string]any)
			var field string
			switch bm["type"] {
			case "tool_use":
				field = "id"
			case "tool_result":
				field = "tool_use_id"
			default:
				continue
			}
			if len(tools) == 0 {
				return "Requests which include `tool_use` or `tool_result` blocks must define tools."
			}
			if name, _ := bm["name"].(string); field == "id" && !validToolName(name) {
				return fmt.Sprintf("messages.%d.content.%d.tool_use.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'", i, j)
			}
			if _, ok := bm["input"].(map[string]any); field == "id" && !ok {
				return fmt.Sprintf("messages.%d.content.%d.tool_use.input: Input should be a valid dictionary", i, j)
			}
			id, _ := bm[field].(string)
			if !validToolID(id) {
				return fmt.Sprintf("messages.%d.content.%d.%s.%s: String should match pattern '^[a-zA-Z0-9_-]+$'", i, j, bm["type"], field)
			}
			if field == "id" {
				calls = append(calls, id)
			} else if !slices.Contains(prev, id) {
				return fmt.Sprintf("messages.%d.content.%d: unexpected `tool_use_id` found in `tool_result` blocks: %s. "+
					"Each `tool_result` block must have a corresponding `tool_use` block in the previous message.", i, j, id)
			}
		}
	}
	return ""
}

func validToolName(name string) bool { return len(name) <= 128 && validToolID(name) }

func validToolID(id string) bool {
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return id != ""
}

// textBlocksRefusal checks one content value: a string, or a list of blocks.
func textBlocksRefusal(field string, content any) string {
	var texts []string
	switch c := content.(type) {
	case string:
		texts = []string{c}
	case []any:
		for _, b := range c {
			if bm, _ := b.(map[string]any); bm["type"] == "text" {
				t, _ := bm["text"].(string)
				texts = append(texts, t)
			}
		}
	}
	blank := len(texts) > 0
	for _, t := range texts {
		if t == "" {
			return field + ": text content blocks must be non-empty"
		}
		blank = blank && strings.TrimSpace(t) == ""
	}
	if blank {
		return field + ": text content blocks must contain non-whitespace text"
	}
	return ""
}

// cacheControlRefusal is Anthropic's answer to a request whose cache
// breakpoints it refuses: a cache_control that is not ephemeral with a
// TTL of 5m or 1h, more than four breakpoints (the top-level one, for
// automatic caching, counts), or a 1h breakpoint after a 5m one in the
// prompt's order (tools, system, messages, then the automatic one).
func cacheControlRefusal(body map[string]any) string {
	var ttls []string
	for _, where := range [][]map[string]any{blocks(body["tools"]), blocks(body["system"]), messageBlocks(body)} {
		for _, b := range where {
			if v, ok := b["cache_control"]; ok {
				ttls = append(ttls, cacheTTL(v))
			}
		}
	}
	if v, ok := body["cache_control"]; ok {
		ttls = append(ttls, cacheTTL(v))
	}
	if len(ttls) > 4 {
		return fmt.Sprintf("A maximum of 4 blocks with cache_control may be provided. Found %d.", len(ttls))
	}
	for i, ttl := range ttls {
		switch {
		case ttl == "type":
			return "cache_control.type: Input should be 'ephemeral'"
		case ttl == "ttl":
			return "cache_control.ttl: Input should be '5m' or '1h'"
		case ttl == "1h" && slices.Contains(ttls[:i], "5m"):
			return "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block"
		}
	}
	return ""
}

// cacheTTL is a cache_control's TTL ("5m" when it names none), or "type"
// or "ttl" when that field is not one Anthropic takes.
func cacheTTL(v any) string {
	cc, _ := v.(map[string]any)
	if cc["type"] != "ephemeral" {
		return "type"
	}
	switch ttl := cc["ttl"]; ttl {
	case nil:
		return "5m"
	case "5m", "1h":
		return ttl.(string)
	}
	return "ttl"
}

// blocks is v as a list of JSON objects: a tools or system list, or a
// message's content (none when it is a string).
func blocks(v any) []map[string]any {
	l, _ := v.([]any)
	out := make([]map[string]any, 0, len(l))
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// messageBlocks is every content block of the request's messages, in order.
func messageBlocks(body map[string]any) []map[string]any {
	var out []map[string]any
	for _, m := range blocks(body["messages"]) {
		out = append(out, blocks(m["content"])...)
	}
	return out
}

// anthropicStop maps the reply's finish reason to a stop_reason.
func (r reply) anthropicStop() string {
	switch r.finishReason {
	case "":
		return "end_turn"
	case "length":
		return "max_tokens"
	case "tool_calls":
		return "tool_use"
	}
	return r.finishReason
}

// anthropicStopDetails is stop_details: for a refusal, its category and
// explanation (null when the reply has no refusal), else null.
func (r reply) anthropicStopDetails() any {
	if r.finishReason != "refusal" {
		return nil
	}
	var explanation any
	if r.refusal != "" {
		explanation = r.refusal
	}
	return map[string]any{"type": "refusal", "category": "cyber", "explanation": explanation}
}

// anthropicContent is the content of a message: a thinking block when
// there is reasoning, a text block (left out when empty and there are tool
// calls), then a tool_use block per call.
func (r reply) anthropicContent(text string) []any {
	var out []any
	if r.reasoning != "" {
		text := r.reasoning
		if r.hideThinking {
			text = ""
		}
		out = append(out, map[string]any{"type": "thinking", "thinking": text, "signature": fakeSignature})
	}
	if r.redacted != "" {
		out = append(out, map[string]any{"type": "redacted_thinking", "data": r.redacted})
	}
	if text != "" || len(r.toolCalls) == 0 {
		out = append(out, map[string]any{"type": "text", "text": text})
	}
	for _, c := range r.toolCalls {
		out = append(out, map[string]any{"type": "tool_use", "id": c.ID, "name": c.Name, "input": toolInput(c.Arguments)})
	}
	return out
}

// fakeSignature stands for the signature of a thinking block.
const fakeSignature = "ErUBCkYIAxgCIkDfake"

// toolInput is a call's arguments as a tool_use input.
func toolInput(args string) json.RawMessage {
	if args == "" {
		return json.RawMessage(`{}`)
	}
	return json.RawMessage(args)
}

// anthropicJSON answers a Messages API message object.
func (x *exchange) anthropicJSON(r reply) {
	body, _ := json.Marshal(map[string]any{
		"id":            fmt.Sprintf("msg_fake_%d", x.req.N),
		"type":          "message",
		"role":          "assistant",
		"model":         r.model,
		"content":       r.anthropicContent(x.padded(r)),
		"stop_reason":   r.anthropicStop(),
		"stop_details":  r.anthropicStopDetails(),
		"stop_sequence": nil,
		"usage":         r.usage.anthropic(r.usage.CompletionTokens),
	})
	x.writeJSON(body)
}

// anthropicStream answers the Messages API event sequence: message_start,
// ping, with reasoning a thinking block (content_block_start, a
// thinking_delta per word, a signature_delta, content_block_stop), the text
// block (content_block_start, one text_delta per delta,
// content_block_stop), then per tool call a content_block_start
// (tool_use), its input_json_delta pieces and a content_block_stop, then
// message_delta (stop_reason and usage) and message_stop. With tool calls
// and no text the text block is left out.
func (x *exchange) anthropicStream(r reply) {
	if !x.startStream() {
		return
	}
	hasText := len(r.deltas) > 0 || len(r.toolCalls) == 0
	index := 0 // of the next content block
	ok := x.event("message_start", map[string]any{"type": "message_start", "message": map[string]any{
		"id": fmt.Sprintf("msg_fake_%d", x.req.N), "type": "message", "role": "assistant", "model": r.model,
		"content": []any{}, "stop_reason": nil, "stop_sequence": nil,
		"usage": r.usage.anthropic(1),
	}})
	// A ping follows the first content block's start, as the API sends it.
	pinged := false
	start := func(block map[string]any) bool {
		ok := x.event("content_block_start", map[string]any{"type": "content_block_start", "index": index, "content_block": block})
		if !pinged {
			pinged, ok = true, ok && x.event("ping", map[string]any{"type": "ping"})
		}
		return ok
	}
	if ok && r.reasoning != "" {
		ok = start(map[string]any{"type": "thinking", "thinking": "", "signature": ""})
		for _, p := range r.reasoningPieces() {
			if r.hideThinking {
				break
			}
			ok = ok && x.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": index, "delta": map[string]any{"type": "thinking_delta", "thinking": p}})
		}
		ok = ok && x.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": index, "delta": map[string]any{"type": "signature_delta", "signature": fakeSignature}}) &&
			x.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": index})
		index++
	}
	if ok && r.redacted != "" {
		ok = start(map[string]any{"type": "redacted_thinking", "data": r.redacted}) &&
			x.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": index})
		index++
	}
	if ok && hasText {
		ok = start(map[string]any{"type": "text", "text": ""})
	}
	if ok && !pinged {
		ok = x.event("ping", map[string]any{"type": "ping"})
	}
	if !ok {
		return
	}
	for _, d := range x.deltasBeforeFault(r.deltas) {
		if !x.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": index, "delta": map[string]any{"type": "text_delta", "text": d}}) {
			return
		}
	}
	if !x.streamFault(func() {
		x.event("error", map[string]any{"type": "error", "error": map[string]any{"type": "overloaded_error", "message": "Overloaded"}})
	}) {
		return
	}
	if hasText {
		if !x.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": index}) {
			return
		}
		index++
	}
	for _, c := range r.toolCalls {
		if !x.event("content_block_start", map[string]any{"type": "content_block_start", "index": index,
			"content_block": map[string]any{"type": "tool_use", "id": c.ID, "name": c.Name, "input": map[string]any{}}}) {
			return
		}
		for _, p := range r.pieces(c.Arguments) {
			if !x.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": index,
				"delta": map[string]any{"type": "input_json_delta", "partial_json": p}}) {
				return
			}
		}
		if !x.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": index}) {
			return
		}
		index++
	}
	delta := map[string]any{"output_tokens": r.usage.CompletionTokens}
	if d := r.usage.anthropicOutputDetails(); d != nil {
		delta["output_tokens_details"] = d
	}
	_ = x.event("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": r.anthropicStop(), "stop_details": r.anthropicStopDetails(), "stop_sequence": nil},
		"usage": delta}) &&
		x.event("message_stop", map[string]any{"type": "message_stop"})
}

// thinkingRefusal is the Messages API's refusal of a request with thinking
// on whose last assistant message calls tools without the thinking that
// led to the calls before them, or with a thinking block whose signature
// is not the one the fake gave (the API checks signatures); "" when it
// takes the request.
func thinkingRefusal(body map[string]any) string {
	t, _ := body["thinking"].(map[string]any)
	if t["type"] != "enabled" && t["type"] != "adaptive" {
		return ""
	}
	msgs, _ := body["messages"].([]any)
	for i := len(msgs) - 1; i >= 0; i-- {
		m, _ := msgs[i].(map[string]any)
		if m["role"] != "assistant" {
			continue
		}
		blocks, _ := m["content"].([]any)
		calls := false
		for j, b := range blocks {
			bm, _ := b.(map[string]any)
			switch bm["type"] {
			case "thinking":
				if bm["signature"] != fakeSignature {
					return fmt.Sprintf("messages.%d.content.%d: Invalid `signature` in `thinking` block", i, j)
				}
			case "tool_use":
				calls = true
			}
		}
		if !calls {
			return ""
		}
		if first, _ := blocks[0].(map[string]any); first["type"] != "thinking" && first["type"] != "redacted_thinking" {
			return fmt.Sprintf("messages.%d.content.0.type: Expected `thinking` or `redacted_thinking`, but found `%v`. "+
				"When `thinking` is enabled, a final `assistant` message must start with a thinking block", i, first["type"])
		}
		return ""
	}
	return ""
}
