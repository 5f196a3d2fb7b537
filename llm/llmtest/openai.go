package llmtest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

func (r reply) openAIFinish() string {
	if r.finishReason == "" {
		return "stop"
	}
	return r.finishReason
}

func (r reply) openAIUsage() map[string]any {
	u := map[string]any{
		"prompt_tokens":     r.usage.PromptTokens,
		"completion_tokens": r.usage.CompletionTokens,
		"total_tokens":      r.usage.PromptTokens + r.usage.CompletionTokens,
	}
	if r.usage.CachedTokens > 0 || r.usage.ReasoningTokens > 0 {
		u["prompt_tokens_details"] = map[string]any{"cached_tokens": r.usage.CachedTokens}
		u["completion_tokens_details"] = map[string]any{"reasoning_tokens": r.usage.ReasoningTokens}
	}
	return u
}

// reasoningField is the name an OpenAI-wire reply gives its reasoning:
// reasoning_content, or reasoning (Behavior.ReasoningNamed).
func (r reply) reasoningField() string {
	if r.reasoningNamed {
		return "reasoning"
	}
	return "reasoning_content"
}

// openAIMessage is the message of a chat.completion: content null when
// there is only tool calls or a refusal; the reasoning under
// reasoningField, or with contentParts a thinking part before the text's.
func (r reply) openAIMessage(text string) map[string]any {
	msg := map[string]any{"role": "assistant", "content": text}
	if r.refusal != "" {
		msg["refusal"] = r.refusal
		if text == "" {
			msg["content"] = nil
		}
	}
	switch {
	case r.contentParts:
		var parts []any
		if r.reasoning != "" {
			parts = append(parts, thinkingPart(r.reasoning))
		}
		msg["content"] = append(parts, textPart(text))
	case r.reasoning != "":
		msg[r.reasoningField()] = r.reasoning
	}
	if len(r.toolCalls) == 0 {
		return msg
	}
	if d := r.details(); d != nil {
		msg["reasoning_details"] = d
	}
	if text == "" {
		msg["content"] = nil
	}
	var calls []any
	for _, c := range r.toolCalls {
		call := map[string]any{"id": c.ID, "type": "function", "function": map[string]any{"name": c.Name, "arguments": c.Arguments}}
		if c.Extra != "" {
			call["extra_content"] = json.RawMessage(c.Extra)
		}
		calls = append(calls, call)
	}
	msg["tool_calls"] = calls
	return msg
}

// textPart and thinkingPart are the typed content parts of Mistral's
// reasoning models.
func textPart(text string) map[string]any { return map[string]any{"type": "text", "text": text} }

func thinkingPart(text string) map[string]any {
	return map[string]any{"type": "thinking", "thinking": []any{textPart(text)}}
}

// openAIJSON answers a chat.completion object.
func (x *exchange) openAIJSON(r reply) {
	body, _ := json.Marshal(map[string]any{
		"id":      fmt.Sprintf("chatcmpl-fake-%d", x.req.N),
		"object":  "chat.completion",
		"created": time.Now().Unix(),
		"model":   r.model,
		"choices": []any{map[string]any{
			"index":         0,
			"message":       r.openAIMessage(x.padded(r)),
			"finish_reason": r.openAIFinish(),
		}},
		"usage": r.openAIUsage(),
	})
	x.writeJSON(body)
}

// openAIStream answers chat.completion.chunk events: the role, one chunk
// per delta, the finish reason, the usage when stream_options.include_usage
// asks for it (or, with NoStreamOptions, unasked), then [DONE].
func (x *exchange) openAIStream(r reply) {
	id, created := fmt.Sprintf("chatcmpl-fake-%d", x.req.N), time.Now().Unix()
	chunk := func(delta map[string]any, finish any) map[string]any {
		return map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": r.model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		}
	}
	if !x.startStream() || !x.event("", chunk(map[string]any{"role": "assistant", "content": ""}, nil)) {
		return
	}
	for _, d := range r.reasoningPieces() {
		delta := map[string]any{"content": nil, r.reasoningField(): d}
		if r.contentParts {
			delta = map[string]any{"content": []any{thinkingPart(d)}}
		}
		if r.signature != "" && len(r.toolCalls) > 0 {
			delta["reasoning_details"] = []any{textDetail(d)}
		}
		if !x.event("", chunk(delta, nil)) {
			return
		}
	}
	for _, d := range r.refusalPieces() {
		if !x.event("", chunk(map[string]any{"content": nil, "refusal": d}, nil)) {
			return
		}
	}
	for _, d := range x.deltasBeforeFault(r.deltas) {
		var content any = d
		if r.contentParts {
			content = []any{textPart(d)}
		}
		if !x.event("", chunk(map[string]any{"content": content}, nil)) {
			return
		}
	}
	if !x.streamFault(func() {
		if x.b.Fault == FaultErrorChunk {
			c := chunk(map[string]any{"content": ""}, "error")
			c["error"] = map[string]any{"code": 502, "message": "Provider disconnected unexpectedly"}
			_ = x.event("", c) && x.event("", "[DONE]")
			return
		}
		x.event("", map[string]any{"error": map[string]any{"message": "The server had an error while streaming", "type": "server_error"}})
	}) {
		return
	}
	if x.b.ToolCallsInOneChunk && len(r.toolCalls) > 0 {
		var calls []any
		for i, c := range r.toolCalls {
			calls = append(calls, map[string]any{"index": i, "id": c.ID, "type": "function",
				"function": map[string]any{"name": c.Name, "arguments": c.Arguments}})
		}
		if !x.event("", chunk(map[string]any{"content": nil, "tool_calls": calls}, nil)) {
			return
		}
	}
	for i, c := range r.toolCalls {
		if x.b.ToolCallsInOneChunk {
			break
		}
		if x.b.ToolIndexZero {
			i = 0
		}
		call := func(fn map[string]any) map[string]any {
			return map[string]any{"content": nil, "tool_calls": []any{map[string]any{"index": i, "function": fn}}}
		}
		first := call(map[string]any{"name": c.Name, "arguments": ""})
		tc := first["tool_calls"].([]any)[0].(map[string]any)
		tc["id"], tc["type"] = c.ID, "function"
		if c.Extra != "" {
			tc["extra_content"] = json.RawMessage(c.Extra)
		}
		if i == 0 && r.signature != "" {
			first["reasoning_details"] = []any{r.encryptedDetail()}
		}
		if !x.event("", chunk(first, nil)) {
			return
		}
		for _, p := range r.pieces(c.Arguments) {
			if !x.event("", chunk(call(map[string]any{"arguments": p}), nil)) {
				return
			}
		}
	}
	if !x.event("", chunk(map[string]any{}, r.openAIFinish())) {
		return
	}
	if so, _ := x.req.Body["stream_options"].(map[string]any); so["include_usage"] == true || x.b.NoStreamOptions {
		if !x.event("", map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": r.model,
			"choices": []any{}, "usage": r.openAIUsage(),
		}) {
			return
		}
	}
	x.event("", "[DONE]")
}

// details are the reasoning_details of a reply that calls tools with a
// thought signature (Behavior.ThoughtSignature), as a whole reply gives
// them; nil without one.
func (r reply) details() []any {
	if r.signature == "" || len(r.toolCalls) == 0 {
		return nil
	}
	var out []any
	if r.reasoning != "" {
		out = append(out, textDetail(r.reasoning))
	}
	return append(out, r.encryptedDetail())
}

func textDetail(text string) map[string]any {
	return map[string]any{"type": "reasoning.text", "text": text, "index": 0, "format": "google-gemini-v1"}
}

func (r reply) encryptedDetail() map[string]any {
	return map[string]any{"type": "reasoning.encrypted", "data": r.signature, "id": r.toolCalls[0].ID, "index": 1, "format": "google-gemini-v1"}
}

// detailsBackRefusal is OpenRouter's refusal, for Gemini, of a request
// with an assistant message that called tools without the
// reasoning_details its reply gave (see Behavior.DetailsBack); "" when
// there is none.
func detailsBackRefusal(body map[string]any) string {
	msgs, _ := body["messages"].([]any)
	for _, m := range msgs {
		mm, _ := m.(map[string]any)
		calls, _ := mm["tool_calls"].([]any)
		if mm["role"] != "assistant" || len(calls) == 0 {
			continue
		}
		ids := map[any]bool{}
		for _, c := range calls {
			cm, _ := c.(map[string]any)
			ids[cm["id"]] = true
		}
		details, _ := mm["reasoning_details"].([]any)
		signed := false
		var last map[string]any
		for _, d := range details {
			dm, _ := d.(map[string]any)
			if last != nil && dm["type"] == last["type"] && dm["index"] == last["index"] {
				return "reasoning_details: detail pieces must be joined as the model produced them"
			}
			last = dm
			if data, _ := dm["data"].(string); dm["type"] == "reasoning.encrypted" && data != "" && ids[dm["id"]] {
				signed = true
			}
		}
		if !signed {
			return "Gemini models require OpenRouter reasoning details to be preserved in each request. " +
				"Function call is missing a thought_signature"
		}
	}
	return ""
}

// nineCharIDsRefusal is Mistral's refusal of a request with a tool call
// id that is not nine letters and digits; "" when there is none.
func nineCharIDsRefusal(body map[string]any) string {
	nine := regexp.MustCompile(`^[a-zA-Z0-9]{9}$`)
	msgs, _ := body["messages"].([]any)
	for _, m := range msgs {
		mm, _ := m.(map[string]any)
		ids := []any{}
		if id, ok := mm["tool_call_id"]; ok {
			ids = append(ids, id)
		}
		calls, _ := mm["tool_calls"].([]any)
		for _, c := range calls {
			cm, _ := c.(map[string]any)
			ids = append(ids, cm["id"])
		}
		for _, id := range ids {
			if s, _ := id.(string); !nine.MatchString(s) {
				return fmt.Sprintf("Tool call id was %v but must be a-z, A-Z, 0-9, with a length of 9.", id)
			}
		}
	}
	return ""
}

// reasoningBackRefusal is DeepSeek's thinking mode's refusal of a request
// with an assistant message that called tools without its
// reasoning_content; "" when there is none.
func reasoningBackRefusal(body map[string]any) string {
	msgs, _ := body["messages"].([]any)
	for _, m := range msgs {
		mm, _ := m.(map[string]any)
		calls, _ := mm["tool_calls"].([]any)
		if r, _ := mm["reasoning_content"].(string); mm["role"] == "assistant" && len(calls) > 0 && r == "" {
			return "The reasoning_content in the thinking mode must be passed back to the API."
		}
	}
	return ""
}
