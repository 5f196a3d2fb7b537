package mcp

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/internal/wire"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/store"
)

// TestCompletionToolCalls drives tools, toolChoice and responseFormat
// through the completion tools over a real client session.
func TestCompletionToolCalls(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		editor := e.connect(overHTTP, "editor", Options{})
		var chat chatOut
		editor.ok(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID, "name": "tools"}, &chat)

		tools := []obj{{"type": "function", "function": obj{"name": "weather", "description": "Current weather.",
			"parameters": obj{"type": "object", "properties": obj{"city": obj{"type": "string"}}}}}}
		calls := []llmtest.ToolCall{{ID: "call_1", Name: "weather", Arguments: `{"city":"Oslo"}`}}
		want := []toolCallArg{{ID: "call_1", Type: "function", Function: wire.ToolCallFunction{Name: "weather", Arguments: `{"city":"Oslo"}`}}}

		for _, token := range []any{nil, "tok-tools"} {
			e.upstream.Enqueue(llmtest.Behavior{ToolCalls: calls, ArgPiece: 3})
			res, err := editor.callErr(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("weather in Oslo?"),
				"tools": tools, "toolChoice": "auto", "responseFormat": obj{"type": "json_object"}, "parallelToolCalls": false, "seed": -2}, token)
			must(t, err)
			if res.IsError {
				t.Fatalf("error result: %s", text(res))
			}
			var out completionOut
			decode(t, res, &out)
			if !reflect.DeepEqual(out.ToolCalls, want) || out.FinishReason != "tool_calls" || out.Content != "" {
				t.Fatalf("stream %v: result = %+v, want the tool call", token != nil, out)
			}
			if !strings.Contains(text(res), `tool call call_1: weather({"city":"Oslo"})`) {
				t.Errorf("text %q does not show the tool call", text(res))
			}
			body := e.upstream.Last().Body
			if got, _ := json.Marshal(body["tools"]); !strings.Contains(string(got), `"name":"weather"`) ||
				body["tool_choice"] != "auto" || body["response_format"].(map[string]any)["type"] != "json_object" {
				t.Errorf("upstream tools %s, tool_choice %v, response_format %v", got, body["tool_choice"], body["response_format"])
			}
			if body["parallel_tool_calls"] != false || body["seed"] != -2.0 {
				t.Errorf("upstream parallel_tool_calls %v, seed %v; want false, -2", body["parallel_tool_calls"], body["seed"])
			}

			// The tool's result continues the conversation.
			var next completionOut
			editor.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "conversationId": out.ConversationID,
				"messages": []obj{{"role": "tool", "toolCallId": "call_1", "content": "-3C"}}}, &next)
			msgs := e.upstream.Last().Messages
			if n := len(msgs); n != 3 || !reflect.DeepEqual(msgs[1].ToolCalls, calls) || msgs[2].Role != "tool" || msgs[2].ToolCallID != "call_1" || msgs[2].Content != "-3C" {
				t.Errorf("upstream messages = %+v", msgs)
			}
			var conv conversationOut
			editor.ok(t, "get-conversation", obj{"conversationId": out.ConversationID}, &conv)
			if len(conv.Messages) != 4 || !reflect.DeepEqual(conv.Messages[1].ToolCalls, want) || conv.Messages[2].ToolCallID != "call_1" {
				t.Errorf("stored messages = %+v", conv.Messages)
			}
		}

		editor.fails(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("x"), "tools": tools,
			"toolChoice": obj{"type": "function", "function": obj{"name": "clock"}}}, "invalid_request")
		msg := editor.fails(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("x"),
			"tools": []obj{{"type": "function", "function": obj{"name": "bad name"}}}}, "invalid_request")
		if !strings.Contains(msg, "tools[0].function.name") {
			t.Errorf("error %q does not name tools[0].function.name", msg)
		}
	})
}

// TestCompletionRefusal: a refusal (OpenAI's message.refusal, streamed
// delta.refusal, with structured outputs) comes back in the result beside
// an empty content.
func TestCompletionRefusal(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	editor := e.connect(overHTTP, "editor", Options{})
	const refusal = "I'm sorry, I can't help with that."
	whole := `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,` +
		`"message":{"role":"assistant","content":null,"refusal":"` + refusal + `"},"finish_reason":"stop"}]}`
	streamed := `data: {"model":"m","choices":[{"index":0,"delta":{"role":"assistant","refusal":""},"finish_reason":null}]}` + "\n\n" +
		`data: {"model":"m","choices":[{"index":0,"delta":{"refusal":"I'm sorry, "},"finish_reason":null}]}` + "\n\n" +
		`data: {"model":"m","choices":[{"index":0,"delta":{"refusal":"I can't help with that."},"finish_reason":null}]}` + "\n\n" +
		`data: {"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n"
	for _, tc := range []struct {
		name  string
		token any
		up    llmtest.Behavior
	}{
		{"whole", nil, llmtest.Behavior{Body: whole}},
		{"streamed", "tok-refusal", llmtest.Behavior{Body: streamed, Header: http.Header{"Content-Type": {"text/event-stream"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.upstream.Enqueue(tc.up)
			res, err := editor.callErr(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("x")}, tc.token)
			must(t, err)
			if res.IsError {
				t.Fatalf("error result: %s", text(res))
			}
			var out completionOut
			decode(t, res, &out)
			if out.Refusal != refusal || out.Content != "" {
				t.Errorf("result = %+v, want refusal %q and no content", out, refusal)
			}
			if !strings.Contains(text(res), "refusal: "+refusal) {
				t.Errorf("text %q does not show the refusal", text(res))
			}
		})
	}
}
