package rest_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestMaxHistoryMessages continues a conversation sending only its latest
// messages: the upstream gets the last n stored ones, less tool results
// at the start, opened by domain.HistoryCutNote when they begin with a
// reply, then the new ones; the conversation keeps every message, each
// turn in its place; a window that would send a tool result without its
// call, a bound out of range, or the parameter on a stateless completion
// is a 400 before the upstream.
func TestMaxHistoryMessages(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		// started stores u1 a1 u2 a2 u3 a3 in a new conversation (the fake
		// echoes, so aN ends with uN).
		started := func() string {
			first := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("u1")}})
			conv := first["conversationId"].(string)
			for _, u := range []string{"u2", "u3"} {
				h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage(u)}})
			}
			return conv
		}
		sent := func() []string {
			var roles []string
			for _, m := range h.up.Last().Messages {
				text := m.Content
				if i := strings.LastIndex(text, "u"); i >= 0 && m.Role == "assistant" {
					text = text[i:] // the echo of uN
				}
				roles = append(roles, m.Role+":"+text)
			}
			return roles
		}
		for _, c := range []struct {
			max  int
			want string
		}{
			{100, "system:You are a test. user:u1 assistant:u1 user:u2 assistant:u2 user:u3 assistant:u3 user:new"},
			{6, "system:You are a test. user:u1 assistant:u1 user:u2 assistant:u2 user:u3 assistant:u3 user:new"},
			{4, "system:You are a test. user:u2 assistant:u2 user:u3 assistant:u3 user:new"},
			// The last three are a2 u3 a3: a user message says the start
			// is left out.
			{3, "system:You are a test. user:" + domain.HistoryCutNote + " assistant:u2 user:u3 assistant:u3 user:new"},
			{1, "system:You are a test. user:" + domain.HistoryCutNote + " assistant:u3 user:new"},
			{0, "system:You are a test. user:new"},
		} {
			t.Run(fmt.Sprint(c.max), func(t *testing.T) {
				conv := started()
				h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "maxHistoryMessages": c.max,
					"messages": []any{userMessage("new")}})
				if got := strings.Join(sent(), " "); got != c.want {
					t.Errorf("maxHistoryMessages %d sent\n%s\nwant\n%s", c.max, got, c.want)
				}
				// The turn is stored whole, after the others.
				msgs := h.must(200, "GET", "/api/v1/conversations/"+conv+"/messages", h.admin, nil)["data"].([]any)
				var got []string
				for _, m := range msgs {
					got = append(got, m.(map[string]any)["role"].(string))
				}
				if strings.Join(got, " ") != "user assistant user assistant user assistant user assistant" ||
					msgs[6].(map[string]any)["content"] != "new" {
					t.Errorf("the conversation holds %v; want its four turns in order, the last asking \"new\"", msgs)
				}
			})
		}
		conv := started()

		before := h.up.Count()
		for _, c := range []struct {
			path string
			body map[string]any
			says string
		}{
			{path, map[string]any{"conversationId": conv, "maxHistoryMessages": -1}, "from 0 to 32768"},
			{path, map[string]any{"conversationId": conv, "maxHistoryMessages": 32769}, "from 0 to 32768"},
			{path, map[string]any{"conversationId": conv, "maxHistoryMessages": "2"}, "maxHistoryMessages"},
			{"/api/v1/chats/completions", map[string]any{"aiProviderId": w.provider, "maxHistoryMessages": 2}, "keeps no conversation"},
		} {
			c.body["messages"] = []any{userMessage("x")}
			r := h.call("POST", c.path, h.admin, c.body)
			details, _ := r.JSON()["error"].(map[string]any)["details"].(map[string]any)
			if r.Status != 400 || details["field"] != "maxHistoryMessages" || !strings.Contains(r.ErrorMessage(), c.says) {
				t.Errorf("POST %s %v = %d %s; want 400 naming maxHistoryMessages, saying %q", c.path, c.body, r.Status, r.Body, c.says)
			}
		}

		// A reply that called a tool: its result may not go without the
		// call, which a window of none leaves out.
		h.up.Enqueue(llmtest.Behavior{ToolCalls: []llmtest.ToolCall{{ID: "call_1", Name: "lookup", Arguments: "{}"}}})
		tools := []any{map[string]any{"type": "function", "function": map[string]any{"name": "lookup"}}}
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("look it up")}, "tools": tools})
		result := []any{map[string]any{"role": "tool", "toolCallId": "call_1", "content": "42"}}
		r := h.call("POST", path, h.admin, map[string]any{"conversationId": conv, "maxHistoryMessages": 0, "messages": result, "tools": tools})
		if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "last reply, whose tool calls messages[0] answers; send 1 or more") {
			t.Errorf("a tool result without its call = %d %s; want 400", r.Status, r.Body)
		}
		// Nor after a system message, which is taken out of the turn.
		withSystem := append([]any{map[string]any{"role": "system", "content": "Be brief."}}, result...)
		r = h.call("POST", path, h.admin, map[string]any{"conversationId": conv, "maxHistoryMessages": 0, "messages": withSystem, "tools": tools})
		if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "last reply, whose tool calls messages[1] answers; send 1 or more") {
			t.Errorf("a tool result without its call, after a system message = %d %s; want 400", r.Status, r.Body)
		}
		// Nor may the call go unanswered.
		r = h.call("POST", path, h.admin, map[string]any{"conversationId": conv, "maxHistoryMessages": 0, "messages": []any{userMessage("never mind")}})
		if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "call_1") {
			t.Errorf("the last reply's call left unanswered = %d %s; want 400 naming it", r.Status, r.Body)
		}
		if h.up.Count() != before+1 {
			t.Errorf("refused requests reached the upstream: %d calls, want 1", h.up.Count()-before)
		}
		// One message back is the call: it goes with its result, the
		// history's start said to be left out.
		h.up.Enqueue(llmtest.Behavior{ToolCalls: []llmtest.ToolCall{{ID: "call_2", Name: "lookup", Arguments: "{}"}}})
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "maxHistoryMessages": 1, "messages": result, "tools": tools})
		if got := strings.Join(sent(), " "); got != "system:You are a test. user:"+domain.HistoryCutNote+" assistant: tool:42" {
			t.Errorf("maxHistoryMessages 1 with the tool's result sent %s", got)
		}
		// An agent's tool loop: the stored history ends call_2, its
		// result, and a reply. A window that begins at a result leaves it
		// out with its call.
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{
			map[string]any{"role": "tool", "toolCallId": "call_2", "content": "43"}}, "tools": tools})
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "maxHistoryMessages": 2, "messages": []any{userMessage("and?")}})
		if got := sent(); len(got) != 4 || got[1] != "user:"+domain.HistoryCutNote || !strings.HasPrefix(got[2], "assistant:") || got[3] != "user:and?" {
			t.Errorf("maxHistoryMessages 2 after a tool result sent %q; want the note, the last reply and the new message", got)
		}
	})
}

// TestMaxHistoryMessagesSchemaFollowsTheDomain: the OpenAPI document's
// bound of maxHistoryMessages, a struct tag, is the domain's.
func TestMaxHistoryMessagesSchemaFollowsTheDomain(t *testing.T) {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var found int
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if p, ok := v["maxHistoryMessages"].(map[string]any); ok {
				found++
				if p["maximum"] != float64(domain.MaxHistoryMessages) || p["minimum"] != 0.0 {
					t.Errorf("maxHistoryMessages' schema %v; want minimum 0, maximum %d", p, domain.MaxHistoryMessages)
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	if found == 0 {
		t.Error("the OpenAPI document has no maxHistoryMessages")
	}
}
