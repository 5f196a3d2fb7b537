package llmtest

import (
	"encoding/json"
	"fmt"
)

// anthropicStop maps the reply's finish reason to a stop_reason.
func (r reply) anthropicStop() string {
	switch r.finishReason {
	case "":
		return "end_turn"
	case "length":
		return "max_tokens"
	}
	return r.finishReason
}

// anthropicJSON answers a Messages API message object.
func (x *exchange) anthropicJSON(r reply) {
	body, _ := json.Marshal(map[string]any{
		"id":            fmt.Sprintf("msg_fake_%d", x.req.N),
		"type":          "message",
		"role":          "assistant",
		"model":         r.model,
		"content":       []any{map[string]any{"type": "text", "text": x.padded(r)}},
		"stop_reason":   r.anthropicStop(),
		"stop_sequence": nil,
		"usage":         map[string]any{"input_tokens": r.usage.PromptTokens, "output_tokens": r.usage.CompletionTokens},
	})
	x.writeJSON(body)
}

// anthropicStream answers the Messages API event sequence: message_start,
// content_block_start, ping, one content_block_delta (text_delta) per
// delta, content_block_stop, message_delta (stop_reason and usage) and
// message_stop.
func (x *exchange) anthropicStream(r reply) {
	if !x.startStream() {
		return
	}
	ok := x.event("message_start", map[string]any{"type": "message_start", "message": map[string]any{
		"id": fmt.Sprintf("msg_fake_%d", x.req.N), "type": "message", "role": "assistant", "model": r.model,
		"content": []any{}, "stop_reason": nil, "stop_sequence": nil,
		"usage": map[string]any{"input_tokens": r.usage.PromptTokens, "output_tokens": 1},
	}}) &&
		x.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}}) &&
		x.event("ping", map[string]any{"type": "ping"})
	if !ok {
		return
	}
	for _, d := range x.deltasBeforeFault(r.deltas) {
		if !x.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": d}}) {
			return
		}
	}
	if !x.streamFault(func() {
		x.event("error", map[string]any{"type": "error", "error": map[string]any{"type": "overloaded_error", "message": "Overloaded"}})
	}) {
		return
	}
	_ = x.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0}) &&
		x.event("message_delta", map[string]any{"type": "message_delta",
			"delta": map[string]any{"stop_reason": r.anthropicStop(), "stop_sequence": nil},
			"usage": map[string]any{"output_tokens": r.usage.CompletionTokens}}) &&
		x.event("message_stop", map[string]any{"type": "message_stop"})
}
