package rest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

// upstreamMessages returns the roles and contents the fake upstream received last.
func upstreamMessages(t *testing.T, h *harness) []string {
	t.Helper()
	var out []string
	for _, m := range lastUpstreamBody(t, h)["messages"].([]any) {
		mm := m.(map[string]any)
		out = append(out, fmt.Sprintf("%s: %s", mm["role"], mm["content"]))
	}
	return out
}

func TestStatelessCompletion(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		got := h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{
			"aiProviderId": w.provider, "systemMessage": "Be brief.", "messages": []any{userMessage("Hello!")},
		})
		if got["object"] != "chat.completion" || got["model"] != "fake-default" {
			t.Errorf("object/model = %v/%v", got["object"], got["model"])
		}
		choice := got["choices"].([]any)[0].(map[string]any)
		msg := choice["message"].(map[string]any)
		if msg["role"] != "assistant" || msg["content"] != "echo: Hello!" || choice["finish_reason"] != "stop" {
			t.Errorf("choice = %v", choice)
		}
		usage := got["usage"].(map[string]any)
		if p, c, tot := usage["prompt_tokens"].(float64), usage["completion_tokens"].(float64), usage["total_tokens"].(float64); p <= 0 || c <= 0 || tot != p+c {
			t.Errorf("usage = %v", usage)
		}
		if id, _ := got["messageId"].(string); !strings.HasPrefix(id, "msg_") || got["id"] != id {
			t.Errorf("messageId = %v, id = %v", got["messageId"], got["id"])
		}
		if _, ok := got["conversationId"]; ok {
			t.Errorf("a stateless completion returned a conversationId: %v", got["conversationId"])
		}
		if auth := lastUpstreamHeader(t, h).Get("Authorization"); auth != "Bearer "+upstreamKey {
			t.Errorf("upstream Authorization = %q, want the decrypted provider key", auth)
		}
		if got, want := strings.Join(upstreamMessages(t, h), "|"), "system: Be brief.|user: Hello!"; got != want {
			t.Errorf("upstream messages = %q, want %q", got, want)
		}

		// A system message in messages replaces systemMessage; model overrides the default.
		h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{
			"aiProviderId": w.provider, "systemMessage": "Be brief.", "model": "other-model",
			"messages": []any{map[string]any{"role": "system", "content": "Be verbose."}, userMessage("Hi")},
		})
		if got, want := strings.Join(upstreamMessages(t, h), "|"), "system: Be verbose.|user: Hi"; got != want {
			t.Errorf("upstream messages = %q, want %q", got, want)
		}
		if m := lastUpstreamBody(t, h)["model"]; m != "other-model" {
			t.Errorf("upstream model = %v, want other-model", m)
		}
	})
}

// TestContentParts checks that a message's content may be OpenAI's array
// of text parts, as OpenAI-shaped clients send it: the parts' texts go
// upstream joined with newlines, and the stored turn keeps that text.
func TestContentParts(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		got := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"messages": []any{
				map[string]any{"role": "system", "content": []any{map[string]any{"type": "text", "text": "Be brief."}}},
				map[string]any{"role": "user", "content": []any{
					map[string]any{"type": "text", "text": "Hello"}, map[string]any{"type": "text", "text": "there!"}}},
			},
		})
		if got, want := strings.Join(upstreamMessages(t, h), "|"), "system: Be brief.|user: Hello\nthere!"; got != want {
			t.Errorf("upstream messages = %q, want %q", got, want)
		}
		msgs := h.must(200, "GET", "/api/v1/conversations/"+got["conversationId"].(string)+"/messages", h.admin, nil)["data"].([]any)
		if c := msgs[0].(map[string]any)["content"]; c != "Hello\nthere!" {
			t.Errorf("stored user message %q, want the parts' texts joined", c)
		}
	})
}

func TestChatCompletion(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		doc := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "faq", "content": "Refunds take 5 days."})["id"].(string)

		got := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"messages":    []any{userMessage("Summarise:"), map[string]any{"role": "user", "documentId": doc}},
			"temperature": 0.5, "maxTokens": 50, "topP": 0.9, "stop": "END",
		})
		conv, _ := got["conversationId"].(string)
		if !strings.HasPrefix(conv, "cnv_") {
			t.Fatalf("conversationId = %v", got["conversationId"])
		}
		if got, want := strings.Join(upstreamMessages(t, h), "|"), "system: You are a test.|user: Summarise:|user: Refunds take 5 days."; got != want {
			t.Errorf("upstream messages = %q, want %q", got, want)
		}
		body := lastUpstreamBody(t, h)
		if body["model"] != "fake-default" || body["temperature"] != 0.5 || body["max_tokens"] != 50.0 || body["top_p"] != 0.9 {
			t.Errorf("upstream params = model %v temperature %v max_tokens %v top_p %v", body["model"], body["temperature"], body["max_tokens"], body["top_p"])
		}
		if stop := fmt.Sprint(body["stop"]); stop != "[END]" {
			t.Errorf("upstream stop = %s, want [END]", stop)
		}

		// Continue: the history goes first; the request's system message
		// overrides the chat's for this call only; the chat's model wins
		// over the provider's default.
		h.must(200, "PATCH", "/api/v1/chats/"+w.chat, h.admin, map[string]any{"model": "chat-model"})
		h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"conversationId": conv,
			"messages":       []any{map[string]any{"role": "system", "content": "Override."}, userMessage("And?")},
		})
		want := "system: Override.|user: Summarise:|user: Refunds take 5 days.|assistant: echo: Refunds take 5 days.|user: And?"
		if got := strings.Join(upstreamMessages(t, h), "|"); got != want {
			t.Errorf("upstream messages = %q\nwant %q", got, want)
		}
		if m := lastUpstreamBody(t, h)["model"]; m != "chat-model" {
			t.Errorf("upstream model = %v, want the chat's", m)
		}
		if sm := h.must(200, "GET", "/api/v1/chats/"+w.chat, h.admin, nil)["systemMessage"]; sm != "You are a test." {
			t.Errorf("the override changed the chat's systemMessage to %v", sm)
		}

		cv := h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)
		var roles []string
		for _, m := range cv["messages"].([]any) {
			mm := m.(map[string]any)
			roles = append(roles, mm["role"].(string))
		}
		if got, want := strings.Join(roles, ","), "user,user,assistant,user,assistant"; got != want {
			t.Errorf("stored roles = %s, want %s", got, want)
		}
		last := cv["messages"].([]any)[4].(map[string]any)
		if last["content"] != "echo: And?" || last["usage"] == nil {
			t.Errorf("stored reply = %v", last)
		}
		list := h.must(200, "GET", "/api/v1/conversations?chatId="+w.chat, h.admin, nil)["data"].([]any)
		if len(list) != 1 || list[0].(map[string]any)["id"] != conv {
			t.Fatalf("conversations of the chat = %v", list)
		}
		// The list tells the conversation by its size and its first user
		// message, as the conversation itself does.
		for _, got := range []map[string]any{cv, list[0].(map[string]any)} {
			if got["messageCount"] != 5.0 || got["preview"] != "Summarise:" {
				t.Errorf("conversation %v: messageCount %v, preview %q; want 5, %q", got["id"], got["messageCount"], got["preview"], "Summarise:")
			}
		}

		// A conversation of another chat, continued from this one, is not
		// found there (DESIGN.md), with its chat named to a caller who may
		// read it (a plain 404 read as a conversation deleted), and plain
		// to one who may not.
		other := h.chat(h.admin, w.project, w.provider, nil)
		if r := h.call("POST", "/api/v1/chats/"+other+"/completions", h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("x")}}); r.Status != 404 ||
			r.ErrorField() != "conversationId" || !strings.Contains(r.ErrorMessage(), "belongs to chat "+w.chat) {
			t.Errorf("continuing another chat's conversation = %d %s, want 404 naming chat %s", r.Status, r.Body, w.chat)
		}
		elsewhere := h.world()
		bobID, bob := h.user("bob")
		h.setRole(h.admin, elsewhere.project, bobID, "editor")
		if r := h.call("POST", "/api/v1/chats/"+elsewhere.chat+"/completions", bob, map[string]any{"conversationId": conv, "messages": []any{userMessage("x")}}); r.Status != 404 ||
			strings.Contains(string(r.Body), w.chat) {
			t.Errorf("continuing a conversation of a project one is not in = %d %s, want 404 naming nothing", r.Status, r.Body)
		}
		h.must(200, "DELETE", "/api/v1/conversations/"+conv, h.admin, nil)
		if r := h.call("GET", "/api/v1/conversations/"+conv, h.admin, nil); r.Status != 404 {
			t.Errorf("GET deleted conversation = %d", r.Status)
		}
	})
}

func TestCompletionValidation(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		other := h.world()
		otherDoc := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": other.project, "name": "d", "content": "secret"})["id"].(string)
		hi := userMessage("hi")
		tests := []struct {
			name  string
			body  map[string]any
			field string
		}{
			{"no messages", map[string]any{"messages": []any{}}, "messages"},
			{"messages missing", map[string]any{}, "messages"},
			{"bad role", map[string]any{"messages": []any{map[string]any{"role": "robot", "content": "x"}}}, "messages[0].role"},
			{"content and documentId", map[string]any{"messages": []any{hi, map[string]any{"role": "user", "content": "x", "documentId": otherDoc}}}, "messages[1]"},
			{"neither content nor documentId", map[string]any{"messages": []any{map[string]any{"role": "user"}}}, "messages[0]"},
			{"two system messages", map[string]any{"messages": []any{map[string]any{"role": "system", "content": "a"}, map[string]any{"role": "system", "content": "b"}, hi}}, "messages"},
			{"document of another project", map[string]any{"messages": []any{hi, map[string]any{"role": "user", "documentId": otherDoc}}}, "messages[1].documentId"},
			{"missing document", map[string]any{"messages": []any{map[string]any{"role": "user", "documentId": "doc_00000000000000000000000000"}}}, "messages[0].documentId"},
			{"temperature too high", map[string]any{"messages": []any{hi}, "temperature": 2.5}, "temperature"},
			{"temperature negative", map[string]any{"messages": []any{hi}, "temperature": -0.1}, "temperature"},
			{"topP too high", map[string]any{"messages": []any{hi}, "topP": 1.5}, "topP"},
			{"maxTokens zero", map[string]any{"messages": []any{hi}, "maxTokens": 0}, "maxTokens"},
			{"maxTokens fractional", map[string]any{"messages": []any{hi}, "maxTokens": 1.5}, "maxTokens"},
			{"five stop sequences", map[string]any{"messages": []any{hi}, "stop": []string{"a", "b", "c", "d", "e"}}, "stop"},
			{"stop not a string", map[string]any{"messages": []any{hi}, "stop": 5}, "stop"},
			{"unknown field", map[string]any{"messages": []any{hi}, "temprature": 0.5}, "temprature"},
			{"unknown message field", map[string]any{"messages": []any{map[string]any{"role": "user", "content": "x", "name": "bob"}}}, "messages[0].name"},
			{"an image part", map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{
				map[string]any{"type": "text", "text": "what is this?"}, map[string]any{"type": "image_url", "image_url": map[string]any{"url": "https://example.com/a.png"}}}}}},
				"messages[0].content[1]"},
			{"a text part without text", map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "text"}}}}}, "messages[0].content[0]"},
			{"a text part with more", map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "x", "cache_control": map[string]any{}}}}}}, "messages[0].content[0]"},
			{"content a number", map[string]any{"messages": []any{map[string]any{"role": "user", "content": 5}}}, "messages[0].content"},
			{"NUL in a text part", map[string]any{"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "a\u0000b"}}}}}, "messages[0].content"},
			// PostgreSQL cannot store it; both databases refuse it up front.
			{"NUL in content", map[string]any{"messages": []any{hi, userMessage("a\u0000b")}}, "messages[1].content"},
			{"a line break in model", map[string]any{"messages": []any{hi}, "model": "gpt\n4"}, "model"},
			{"a zero-width space in model", map[string]any{"messages": []any{hi}, "model": "gpt\u200b4"}, "model"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h.refusedByBoth(t, w, tt.body, tt.field)
			})
		}
		if r := h.call("POST", "/api/v1/chats/completions", h.admin, map[string]any{"messages": []any{hi}}); r.Status != 400 {
			t.Errorf("stateless without aiProviderId = %d, want 400", r.Status)
		}
		if r := h.call("POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": "aip_00000000000000000000000000", "messages": []any{hi}}); r.Status != 404 {
			t.Errorf("stateless with a missing provider = %d, want 404", r.Status)
		}
		convs := h.must(200, "GET", "/api/v1/conversations?chatId="+w.chat, h.admin, nil)["data"].([]any)
		if len(convs) != 0 {
			t.Errorf("refused completions stored %d conversations", len(convs))
		}
	})
}

// A blank model is none, as a chat's is: the chat's or the provider's
// goes upstream, and into usage. It went up as it came, and usage reports
// grouped by model had groups of whitespace.
func TestCompletionBlankModelIsNone(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		body := map[string]any{"model": " \n\u00a0", "messages": []any{userMessage("hi")}}
		stateless := map[string]any{"aiProviderId": w.provider, "model": " \n\u00a0", "messages": []any{userMessage("hi")}}
		for path, body := range map[string]map[string]any{"/api/v1/chats/" + w.chat + "/completions": body, "/api/v1/chats/completions": stateless} {
			got := h.must(200, "POST", path, h.admin, body)
			if got["model"] != "fake-default" || h.up.Last().Model != "fake-default" {
				t.Errorf("POST %s with a blank model: answered %v, sent upstream %q; want the provider's fake-default", path, got["model"], h.up.Last().Model)
			}
		}
		for _, tc := range []struct{ method, path, field string }{
			{"POST", "/api/v1/chats", "model"},
			{"PATCH", "/api/v1/chats/" + w.chat, "model"},
			{"PATCH", "/api/v1/ai-providers/" + w.provider, "defaultModel"},
		} {
			body := map[string]any{tc.field: "gpt\t4"}
			if tc.method == "POST" {
				body["projectId"], body["name"], body["aiProviderId"] = w.project, "c", w.provider
			}
			if r := h.call(tc.method, tc.path, h.admin, body); r.Status != 400 || !strings.Contains(r.ErrorMessage(), "control or invisible formatting character (one is at character 4)") {
				t.Errorf("%s %s with a tab in %s = %d %s, want a 400 naming the character", tc.method, tc.path, tc.field, r.Status, r.ErrorMessage())
			}
		}
	})
}

// sseEvent is one data event of a stream: a JSON object, or [DONE].
type sseEvent struct {
	raw  string
	data map[string]any
}

// streamError reads a stream that must end with an error event and then
// [DONE], and returns that error with all the stream's events.
func streamError(t *testing.T, res *http.Response) (map[string]any, []sseEvent) {
	t.Helper()
	events := readSSE(t, res)
	n := len(events)
	if n < 3 || events[n-1].raw != "[DONE]" {
		t.Fatalf("stream = %v, want an error event then [DONE]", events)
	}
	e, _ := events[n-2].data["error"].(map[string]any)
	if e == nil {
		t.Fatalf("event before [DONE] = %s, want an error", events[n-2].raw)
	}
	return e, events
}

// readSSE reads a whole stream into its data events, checking the framing.
func readSSE(t *testing.T, res *http.Response) []sseEvent {
	t.Helper()
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type = %q, want text/event-stream", ct)
	}
	var events []sseEvent
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, ":") {
			continue
		}
		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line is not an SSE data line: %q", line)
		}
		ev := sseEvent{raw: payload}
		if payload != "[DONE]" {
			if err := json.Unmarshal([]byte(payload), &ev.data); err != nil {
				t.Fatalf("event is not JSON: %q", payload)
			}
		}
		events = append(events, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return events
}

// readSSEUntil reads a stream's data events until done holds for one,
// leaving the stream open, and returns the conversationId it named.
func readSSEUntil(t *testing.T, res *http.Response, done func(sseEvent) bool) (conversationID string) {
	t.Helper()
	for sc := bufio.NewScanner(res.Body); sc.Scan(); {
		payload, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || payload == "[DONE]" {
			continue
		}
		ev := sseEvent{raw: payload}
		if err := json.Unmarshal([]byte(payload), &ev.data); err != nil {
			t.Fatalf("chunk %q: %v", payload, err)
		}
		if id, ok := ev.data["conversationId"].(string); ok {
			conversationID = id
		}
		if done(ev) {
			return conversationID
		}
	}
	t.Fatal("the stream ended before the awaited event")
	return ""
}

// storedAfterStop waits for the conversation of a stream the client
// stopped, which the handler stores once the upstream call has ended, and
// returns its messages.
func storedAfterStop(t *testing.T, h *harness, conversationID string) []any {
	t.Helper()
	var r *response
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if r = h.call("GET", "/api/v1/conversations/"+conversationID, h.admin, nil); r.Status != 404 {
			break
		}
	}
	if r.Status != 200 {
		t.Fatalf("GET the stopped stream's conversation = %d %s", r.Status, r.Body)
	}
	return r.JSON()["messages"].([]any)
}

func stream(t *testing.T, h *harness, path string, body map[string]any) *http.Response {
	t.Helper()
	return streamCtx(t, h, context.Background(), path, body)
}

// streamCtx is stream under ctx, for a client that leaves early.
func streamCtx(t *testing.T, h *harness, ctx context.Context, path string, body map[string]any) *http.Response {
	t.Helper()
	return streamAs(t, h, ctx, h.admin, path, body)
}

// streamAs is streamCtx with another caller's key.
func streamAs(t *testing.T, h *harness, ctx context.Context, key, path string, body map[string]any) *http.Response {
	t.Helper()
	return streamWith(t, h, ctx, key, nil, path, body)
}

// streamWith is streamAs with more request headers.
func streamWith(t *testing.T, h *harness, ctx context.Context, key string, header http.Header, path string, body map[string]any) *http.Response {
	t.Helper()
	body["stream"] = true
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+path, bytes.NewReader(b))
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestStreamingCompletion(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		res := stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("one two three four")}, "debug": true})
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		events := readSSE(t, res)
		if len(events) < 4 || events[len(events)-1].raw != "[DONE]" {
			t.Fatalf("stream does not end with [DONE]: %v", events)
		}
		first := events[0].data
		conv, _ := first["conversationId"].(string)
		msgID, _ := first["messageId"].(string)
		if !strings.HasPrefix(conv, "cnv_") || !strings.HasPrefix(msgID, "msg_") {
			t.Fatalf("first chunk lacks ids: %v", first)
		}
		var text strings.Builder
		for _, ev := range events[:len(events)-1] {
			if ev.data["object"] != "chat.completion.chunk" {
				t.Fatalf("event is not a chat.completion.chunk: %s", ev.raw)
			}
			for _, c := range ev.data["choices"].([]any) {
				delta := c.(map[string]any)["delta"].(map[string]any)
				if s, ok := delta["content"].(string); ok {
					text.WriteString(s)
				}
			}
		}
		if got, want := text.String(), "echo: one two three four"; got != want {
			t.Errorf("streamed text = %q, want %q", got, want)
		}
		last := events[len(events)-2].data
		usage, _ := last["usage"].(map[string]any)
		if usage == nil || usage["total_tokens"].(float64) <= 0 {
			t.Errorf("last chunk before [DONE] lacks usage: %v", last)
		}
		if last["debug"] == nil {
			t.Errorf("debug: true but the last chunk has no debug: %v", last)
		}
		if strings.Contains(fmt.Sprint(events), upstreamKey) {
			t.Error("the stream contains the provider key")
		}
		if !lastUpstreamStreamed(t, h) {
			t.Error("the upstream was not asked to stream with include_usage")
		}

		// The turn is stored before [DONE]: a continuation right after sees it.
		cv := h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)
		msgs := cv["messages"].([]any)
		if len(msgs) != 2 || msgs[1].(map[string]any)["id"] != msgID || msgs[1].(map[string]any)["content"] != "echo: one two three four" {
			t.Errorf("stored conversation = %v", msgs)
		}
	})
}

func TestStreamingStatelessCompletion(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		res := stream(t, h, "/api/v1/chats/completions", map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("hi there")}})
		events := readSSE(t, res)
		if events[len(events)-1].raw != "[DONE]" {
			t.Fatal("no [DONE]")
		}
		if _, ok := events[0].data["conversationId"]; ok {
			t.Error("a stateless stream carries a conversationId")
		}
		if id, _ := events[0].data["messageId"].(string); !strings.HasPrefix(id, "msg_") {
			t.Errorf("first chunk messageId = %v", events[0].data["messageId"])
		}
	})
}

// TestStreamedTextChunks checks every text chunk of a stream, whose JSON
// is written by hand (see stream.Delta), against OpenAI's shape, with text
// that needs escaping; and that the turn stored is the text sent, on both
// databases (a NUL from the model, which PostgreSQL cannot store, is
// replaced in both).
func TestStreamedTextChunks(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		deltas := []string{`say "hi"`, "\n\ttab\\", "<b>&</b>", "\u2028é😀", "\x00\x1f"}
		sent := []string{`say "hi"`, "\n\ttab\\", "<b>&</b>", "\u2028é😀", "\ufffd\x1f"}
		h.up.Enqueue(llmtest.Behavior{Deltas: deltas})
		events := readSSE(t, stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("go")}, "model": `m-"1"`}))
		if n := len(events); n < 4 || events[n-2].data["usage"] == nil || events[n-1].raw != "[DONE]" {
			t.Fatalf("the stream does not end with usage and [DONE]: %v", events)
		}
		id := events[0].data["id"]
		var got []string
		for _, ev := range events[1 : len(events)-3] { // after the opening chunk; before the finish, usage and [DONE]
			want := map[string]any{
				"id": id, "object": "chat.completion.chunk", "created": events[0].data["created"], "model": `m-"1"`,
				"choices": []any{map[string]any{"index": float64(0), "delta": ev.data["choices"].([]any)[0].(map[string]any)["delta"], "finish_reason": nil}},
			}
			if !reflect.DeepEqual(ev.data, want) {
				t.Fatalf("chunk %s\nwant %v", ev.raw, want)
			}
			got = append(got, ev.data["choices"].([]any)[0].(map[string]any)["delta"].(map[string]any)["content"].(string))
		}
		if !reflect.DeepEqual(got, sent) {
			t.Errorf("deltas = %q; want %q", got, sent)
		}
		conv := h.must(200, "GET", "/api/v1/conversations/"+events[0].data["conversationId"].(string), h.admin, nil)
		if got, want := conv["messages"].([]any)[1].(map[string]any)["content"], strings.Join(sent, ""); got != want {
			t.Errorf("stored reply = %q; want what was sent, %q", got, want)
		}

		// The same for a reply that is not streamed.
		h.up.Enqueue(llmtest.Behavior{Reply: "a\x00b"})
		out := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("go")}})
		content := out["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"]
		conv = h.must(200, "GET", "/api/v1/conversations/"+out["conversationId"].(string), h.admin, nil)
		if stored := conv["messages"].([]any)[1].(map[string]any)["content"]; content != "a\ufffdb" || stored != content {
			t.Errorf("reply sent %q and stored %q; want both %q", content, stored, "a\ufffdb")
		}
	})
}

// TestStreamedSplitCharacter: a character an upstream split between two
// chunks, at a byte, is sent and stored whole.
func TestStreamedSplitCharacter(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		body := `data: {"model":"m","choices":[{"index":0,"delta":{"content":"a` + "\xe2\x82" + `"},"finish_reason":null}]}` + "\n\n" +
			`data: {"model":"m","choices":[{"index":0,"delta":{"content":"` + "\xac" + `b"},"finish_reason":null}]}` + "\n\n" +
			`data: {"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n"
		h.up.Enqueue(llmtest.Behavior{Body: body, Header: http.Header{"Content-Type": {"text/event-stream"}}})
		events := readSSE(t, stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("go")}}))
		var sent strings.Builder
		for _, ev := range events[:len(events)-1] { // before [DONE]
			for _, c := range ev.data["choices"].([]any) {
				if s, ok := c.(map[string]any)["delta"].(map[string]any)["content"].(string); ok {
					sent.WriteString(s)
				}
			}
		}
		if got, want := sent.String(), "a€b"; got != want {
			t.Errorf("streamed %q; want %q", got, want)
		}
		conv := h.must(200, "GET", "/api/v1/conversations/"+events[0].data["conversationId"].(string), h.admin, nil)
		if got, want := conv["messages"].([]any)[1].(map[string]any)["content"], "a€b"; got != want {
			t.Errorf("stored reply = %q; want %q", got, want)
		}
	})
}

// A conversation may be continued until its history passes 32 MiB: the
// next continuation is a 413 before the upstream, and stores nothing.
func TestLongConversationIsBounded(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		doc := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "big", "content": strings.Repeat("a", 4<<20)})["id"].(string)
		turn := []any{map[string]any{"role": "user", "documentId": doc}, map[string]any{"role": "user", "documentId": doc}} // 8 MiB
		path := "/api/v1/chats/" + w.chat + "/completions"
		conv := h.must(200, "POST", path, h.admin, map[string]any{"messages": turn})["conversationId"].(string)
		// Each stored turn is its two user messages and the reply; counting
		// them spares a GET of the conversation (up to 24 MiB) per turn,
		// which the race detector makes slow.
		for turns := 1; ; turns++ {
			before, stored := h.up.Count(), 3*turns
			r := h.call("POST", path, h.admin, map[string]any{"conversationId": conv, "messages": turn})
			if r.Status == 200 {
				if turns == 5 {
					t.Fatal("a conversation of 5 turns of 8 MiB was continued; want a 413 past 32 MiB")
				}
				continue
			}
			if r.Status != 413 || !strings.Contains(r.ErrorMessage(), "start a new conversation") || turns < 3 {
				t.Fatalf("continuing after %d turns of 8 MiB = %d %s, want 200 up to 32 MiB, then 413 saying to start a new one", turns, r.Status, r.ErrorMessage())
			}
			if n := h.up.Count() - before; n != 0 {
				t.Errorf("%d upstream calls, want none", n)
			}
			if got := len(h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)["messages"].([]any)); got != stored {
				t.Errorf("the refused continuation left %d messages, want the %d of the %d turns before it", got, stored, turns)
			}
			return
		}
	})
}

// A conversation of empty messages is bounded too: each message counts
// 1 KiB toward the 32 MiB beside its text. Counting text alone, a
// thousand empty messages a turn grew a conversation without bound (and
// with it GET's answer and every continuation's memory). The turns
// between the first and the last two are stored directly: through the
// API, each would send the whole history upstream.
func TestConversationOfEmptyMessagesIsBounded(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		turn := make([]any, 1000)
		for i := range turn {
			turn[i] = map[string]any{"role": "user", "content": ""}
		}
		path := "/api/v1/chats/" + w.chat + "/completions"
		id := h.must(200, "POST", path, h.admin, map[string]any{"messages": turn})["conversationId"].(string)
		ctx := context.Background()
		conv, err := h.app.Store.GetConversation(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		// A turn is 1,001 messages, 1,025,024 bytes and more as counted:
		// 32 turns are within 32 MiB, 33 past it.
		msgs := make([]domain.Message, 0, 31*1001)
		for seq := 1001; seq < 32*1001; seq++ {
			m := domain.Message{ID: domain.NewID(domain.PrefixMessage), ConversationID: id, Seq: seq, Role: domain.RoleUser, CreatedAt: conv.CreatedAt}
			if seq%1001 == 1000 {
				m.Role, m.Content = domain.RoleAssistant, "echo: "
			}
			msgs = append(msgs, m)
		}
		if err := h.app.Store.AppendTurn(ctx, conv, false, msgs); err != nil { // 31 turns at once
			t.Fatal(err)
		}
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": id, "messages": turn}) // the 33rd
		before := h.up.Count()
		r := h.call("POST", path, h.admin, map[string]any{"conversationId": id, "messages": turn})
		if want := "holds 33033 messages"; r.Status != 413 || !strings.Contains(r.ErrorMessage(), want) {
			t.Fatalf("continuing after 33 turns of 1,000 empty messages = %d %s, want 413 saying it %s", r.Status, r.ErrorMessage(), want)
		}
		if n := h.up.Count() - before; n != 0 {
			t.Errorf("%d upstream calls, want none", n)
		}
	})
}

// A message that names a document is stored with the text it sent: a
// later update or deletion of the document changes neither the stored
// conversation nor the history its continuation sends upstream, while a
// new reference sends the document as it is now.
func TestConversationKeepsTheDocumentTextItSent(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		doc := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "faq", "content": "Refunds take 5 days."})["id"].(string)
		path := "/api/v1/chats/" + w.chat + "/completions"
		conv := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{map[string]any{"role": "user", "documentId": doc}}})["conversationId"].(string)

		h.must(200, "PATCH", "/api/v1/documents/"+doc, h.admin, map[string]any{"content": "Refunds take 3 days."})
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{map[string]any{"role": "user", "documentId": doc}}})
		want := "system: You are a test.|user: Refunds take 5 days.|assistant: echo: Refunds take 5 days.|user: Refunds take 3 days."
		if got := strings.Join(upstreamMessages(t, h), "|"); got != want {
			t.Errorf("after an update, upstream messages = %q\nwant %q", got, want)
		}

		h.must(200, "DELETE", "/api/v1/documents/"+doc, h.admin, nil)
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("And?")}})
		want = "system: You are a test.|user: Refunds take 5 days.|assistant: echo: Refunds take 5 days.|user: Refunds take 3 days.|assistant: echo: Refunds take 3 days.|user: And?"
		if got := strings.Join(upstreamMessages(t, h), "|"); got != want {
			t.Errorf("after a deletion, upstream messages = %q\nwant %q", got, want)
		}
		msgs := h.must(200, "GET", "/api/v1/conversations/"+conv+"/messages", h.admin, nil)["data"].([]any)
		for i, wantContent := range map[int]string{0: "Refunds take 5 days.", 2: "Refunds take 3 days."} {
			m := msgs[i].(map[string]any)
			if m["content"] != wantContent || m["documentId"] != doc {
				t.Errorf("stored message %d = %v, want the text it sent (%q) and documentId %s", i, m, wantContent, doc)
			}
		}
	})
}

// A request that names a document many times is refused by the size of
// what it resolves to, not only by its body's: nothing goes upstream and
// nothing is stored.
func TestCompletionResolvedDocumentsAreBounded(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		doc := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "big", "content": strings.Repeat("a", 1<<20)})["id"].(string)
		msgs := []any{}
		for range 9 { // 9 MiB resolved, from a body of a few hundred bytes
			msgs = append(msgs, map[string]any{"role": "user", "documentId": doc})
		}
		before := h.up.Count()
		r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": msgs})
		if r.Status != 413 || r.ErrorCode() != "payload_too_large" {
			t.Fatalf("9 x 1 MiB document = %d %s, want 413 payload_too_large", r.Status, r.ErrorCode())
		}
		if n := h.up.Count() - before; n != 0 {
			t.Errorf("%d upstream calls, want none", n)
		}
		if l := h.must(200, "GET", "/api/v1/conversations?chatId="+w.chat, h.admin, nil)["data"].([]any); len(l) != 0 {
			t.Errorf("stored %d conversations, want none", len(l))
		}
		h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": msgs[:8]}) // 8 MiB is taken
	})
}

// TestConversationMessagesPage pages through a conversation's messages
// in order, and refuses a cursor of another list.
func TestConversationMessagesPage(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		conv := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("one"), userMessage("two")}})["conversationId"].(string)
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("three")}})
		whole := h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)["messages"].([]any)
		if len(whole) != 5 {
			t.Fatalf("the conversation has %d messages; want 5", len(whole))
		}

		var got []any
		var sizes []int
		next := "/api/v1/conversations/" + conv + "/messages?limit=2"
		for next != "" {
			page := h.must(200, "GET", next, h.admin, nil)
			data := page["data"].([]any)
			got, sizes = append(got, data...), append(sizes, len(data))
			next = ""
			if c, ok := page["nextCursor"].(string); ok {
				next = "/api/v1/conversations/" + conv + "/messages?limit=2&cursor=" + c
			}
		}
		if fmt.Sprint(sizes) != "[2 2 1]" {
			t.Errorf("page sizes = %v; want [2 2 1]", sizes)
		}
		if !reflect.DeepEqual(got, whole) {
			t.Errorf("the pages hold\n%v\nwant the conversation's messages\n%v", got, whole)
		}

		// A viewer reads them too; a stranger is told the conversation does not exist.
		viewer, viewerKey := h.user("viewer")
		h.setRole(h.admin, w.project, viewer, "viewer")
		if n := len(h.must(200, "GET", "/api/v1/conversations/"+conv+"/messages", viewerKey, nil)["data"].([]any)); n != 5 {
			t.Errorf("a viewer's page holds %d messages; want 5", n)
		}
		_, strangerKey := h.user("stranger")
		if r := h.call("GET", "/api/v1/conversations/"+conv+"/messages", strangerKey, nil); r.Status != 404 {
			t.Errorf("a stranger's page = %d %s; want 404", r.Status, r.Body)
		}

		other := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}})["conversationId"].(string)
		convCursor := h.must(200, "GET", "/api/v1/conversations?chatId="+w.chat+"&limit=1", h.admin, nil)["nextCursor"].(string)
		for query, field := range map[string]string{
			"cursor=" + convCursor: "cursor", // a conversations list's
			"cursor=bm9wZQ":        "cursor", // "nope"
			"cursor=" + base64.RawURLEncoding.EncodeToString([]byte(other+":2147483648")): "cursor", // past PostgreSQL's integer: was a 500
			"limit=0":          "limit",
			"chatId=" + w.chat: "chatId",
		} {
			r := h.call("GET", "/api/v1/conversations/"+other+"/messages?"+query, h.admin, nil)
			if r.Status != 400 || !strings.Contains(r.ErrorMessage(), field) {
				t.Errorf("?%s = %d %s; want 400 naming %s", query, r.Status, r.Body, field)
			}
		}
		msgCursor := h.must(200, "GET", "/api/v1/conversations/"+conv+"/messages?limit=1", h.admin, nil)["nextCursor"].(string)
		if r := h.call("GET", "/api/v1/conversations/"+other+"/messages?cursor="+msgCursor, h.admin, nil); r.Status != 400 || !strings.Contains(r.ErrorMessage(), "another list") {
			t.Errorf("another conversation's messages cursor = %d %s; want 400: it would skip this one's first messages", r.Status, r.Body)
		}
		if r := h.call("GET", "/api/v1/conversations?cursor="+msgCursor, h.admin, nil); r.Status != 400 {
			t.Errorf("a messages cursor on the conversations list = %d %s; want 400", r.Status, r.Body)
		}
		if r := h.call("GET", "/api/v1/conversations/cnv_missing/messages", h.admin, nil); r.Status != 404 {
			t.Errorf("a missing conversation's messages = %d; want 404", r.Status)
		}
	})
}

// TestDebugTimings: debug's timings are milliseconds, each sane against a
// fake upstream that delays its first byte: queueMs ≥ 0; firstByteMs at
// least the delay; queueMs + firstByteMs ≤ totalMs, which the reply's
// remaining deltas lengthen when streamed; and totalMs no more than the
// client waited.
func TestDebugTimings(t *testing.T) {
	const delay, chunkDelay = 200 * time.Millisecond, 50 * time.Millisecond
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	path := "/api/v1/chats/" + w.chat + "/completions"
	for _, streamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream %v", streamed), func(t *testing.T) {
			h.up.Enqueue(llmtest.Behavior{Delay: delay, ChunkDelay: chunkDelay, Deltas: []string{"a", "b", "c"}})
			body := map[string]any{"messages": []any{userMessage("x")}, "debug": true, "stream": streamed}
			start := time.Now()
			var debug map[string]any
			if streamed {
				events := readSSE(t, stream(t, h, path, body))
				debug, _ = events[len(events)-2].data["debug"].(map[string]any)
			} else {
				debug, _ = h.must(200, "POST", path, h.admin, body)["debug"].(map[string]any)
			}
			waited := ms(time.Since(start))
			if debug == nil {
				t.Fatal("debug: true, but no debug")
			}
			tm := debug["timings"].(map[string]any)
			queue, first, total := tm["queueMs"].(float64), tm["firstByteMs"].(float64), tm["totalMs"].(float64)
			if queue < 0 || first < ms(delay) || queue+first > total || total > waited {
				t.Errorf("timings %v; want 0 ≤ queueMs, %v ≤ firstByteMs, queueMs + firstByteMs ≤ totalMs ≤ %v (the client's wait)", tm, ms(delay), waited)
			}
			// Streamed, the first delta comes a chunk delay after the
			// headers, and two more deltas follow it.
			if streamed && (first < ms(delay+chunkDelay) || total-queue-first < ms(2*chunkDelay)) {
				t.Errorf("streamed timings %v; want firstByteMs ≥ %v and ≥ %v from the first byte to the end", tm, ms(delay+chunkDelay), ms(2*chunkDelay))
			}
		})
	}
}

// TestDebugOfAFailedCompletion: a completion that fails once it ran
// carries debug when asked, where debug helps most: in the error
// envelope's error (a provider that refused the request, one that failed),
// and in a stream's error event. It shows the messages as the provider got
// them (Anthropic's, with a blank text left out, though the call failed),
// secrets redacted; without debug: true there is none.
func TestDebugOfAFailedCompletion(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		const secret = "sk-live0123456789abcdef"
		body := func(debug, streamed bool) map[string]any {
			return map[string]any{"messages": []any{userMessage("my key is " + secret)}, "debug": debug, "stream": streamed}
		}
		wantMessages := []string{"system:You are a test.", "user:my key is [redacted]"}
		check := func(t *testing.T, where string, debug map[string]any, firstByte bool) {
			t.Helper()
			if debug == nil {
				t.Fatalf("%s: debug: true, but no debug", where)
			}
			if p := debug["provider"].(map[string]any); p["id"] != w.provider || debug["model"] == "" {
				t.Errorf("%s: debug provider %v, model %v; want %s and the model sent", where, p, debug["model"], w.provider)
			}
			if got := debugMessages(debug); !reflect.DeepEqual(got, wantMessages) {
				t.Errorf("%s: debug messages = %q, want %q", where, got, wantMessages)
			}
			tm := debug["timings"].(map[string]any)
			if first := tm["firstByteMs"].(float64); (first > 0) != firstByte || tm["queueMs"].(float64)+first > tm["totalMs"].(float64) {
				t.Errorf("%s: timings %v; want a first byte: %v", where, tm, firstByte)
			}
			if s := fmt.Sprint(debug); strings.Contains(s, secret) || strings.Contains(s, upstreamKey) {
				t.Errorf("%s: debug shows a secret: %s", where, s)
			}
		}

		// Refused by the provider (400, the caller's to fix) and failed
		// (401: it refused its key, 502).
		for status, want := range map[int]int{400: 400, 401: 502} {
			h.up.Enqueue(llmtest.Behavior{Status: status})
			r := h.call("POST", path, h.admin, body(true, false))
			if r.Status != want {
				t.Fatalf("upstream %d: status %d %s, want %d", status, r.Status, r.Body, want)
			}
			check(t, fmt.Sprint("upstream ", status), errorDebug(r), false)
		}
		h.up.Enqueue(llmtest.Behavior{Status: 401})
		if r := h.call("POST", path, h.admin, body(false, false)); r.Status != 502 || errorDebug(r) != nil {
			t.Errorf("without debug: %d %s, want 502 and no debug", r.Status, r.Body)
		}

		// A stream cut after its first deltas: the error event has it.
		h.up.Enqueue(llmtest.Behavior{Deltas: []string{"a", "b", "c"}, Fault: llmtest.FaultReset, AfterDeltas: 2})
		e, _ := streamError(t, stream(t, h, path, body(true, true)))
		debug, _ := e["debug"].(map[string]any)
		check(t, "stream", debug, true)

		// Anthropic: the blank message is left out, as it went up.
		aw := h.anthropicWorld()
		h.up.Enqueue(llmtest.Behavior{Status: 400})
		r := h.call("POST", "/api/v1/chats/"+aw.anthropicChat+"/completions", h.admin, map[string]any{"debug": true,
			"messages": []any{userMessage(" \n"), userMessage("hello")}})
		debug = errorDebug(r)
		if r.Status != 400 || debug == nil {
			t.Fatalf("anthropic: %d %s, want 400 with debug", r.Status, r.Body)
		}
		if got, want := debugMessages(debug), []string{"system:" + anthropicSystem, "user:hello"}; !reflect.DeepEqual(got, want) {
			t.Errorf("anthropic: debug messages = %q, want %q, as they went up", got, want)
		}
	})
}

// errorDebug is the debug object in r's error, nil when there is none.
func errorDebug(r *response) map[string]any {
	e, _ := r.JSON()["error"].(map[string]any)
	debug, _ := e["debug"].(map[string]any)
	return debug
}

// debugMessages is a debug object's messages as "role:content".
func debugMessages(debug map[string]any) []string {
	var out []string
	for _, m := range debug["messages"].([]any) {
		m := m.(map[string]any)
		out = append(out, fmt.Sprint(m["role"], ":", m["content"]))
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// TestDataSources: documents named as context, by id (dataSources) and by
// name (names), go upstream after the system message, in the request's
// order and each once, per chat and stateless, for that call only: the
// stored turn holds the request's messages, and a continuation that names
// none sends none. A document the project does not have, a name that no
// document or several have, and too many sources are 400s naming the
// field, which reach nothing.
func TestDataSources(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		doc := func(project, name, content string) string {
			return h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": project, "name": name, "content": content})["id"].(string)
		}
		faq := doc(w.project, "faq", "Refunds take 5 days.")
		guide := doc(w.project, "Style guide", "Answer in French.")
		sources := "The documents below are context for this conversation." +
			"\n\n<document id=\"" + faq + "\" name=\"faq\">\nRefunds take 5 days.\n</document>" +
			"\n\n<document id=\"" + guide + "\" name=\"Style guide\">\nAnswer in French.\n</document>"

		path := "/api/v1/chats/" + w.chat + "/completions"
		got := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("How long?")},
			"dataSources": []any{map[string]any{"id": faq}}, "names": []any{" Style guide ", "faq"}})
		if got, want := upstreamMessages(t, h), []string{"system: You are a test.\n\n" + sources, "user: How long?"}; !slices.Equal(got, want) {
			t.Errorf("upstream messages\n%q\nwant\n%q", got, want)
		}
		conv := got["conversationId"].(string)
		msgs := h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)["messages"].([]any)
		if len(msgs) != 2 || msgs[0].(map[string]any)["content"] != "How long?" {
			t.Errorf("the stored turn %v; want the request's message and the reply only", msgs)
		}
		h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("And?")}})
		if got := upstreamMessages(t, h); got[0] != "system: You are a test." {
			t.Errorf("a continuation that names no source sent the system message %q", got[0])
		}

		h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.provider,
			"messages": []any{userMessage("hi")}, "names": []any{"Style guide"}, "dataSources": []any{map[string]any{"id": faq}}})
		if got, want := upstreamMessages(t, h), []string{"system: " + sources, "user: hi"}; !slices.Equal(got, want) {
			t.Errorf("stateless upstream messages\n%q\nwant\n%q", got, want)
		}

		other := h.world()
		foreign := doc(other.project, "faq", "Not yours.")
		doc(w.project, "twin", "one")
		doc(w.project, "twin", "two")
		many := []any{}
		for range 33 {
			many = append(many, map[string]any{"id": faq})
		}
		hi := []any{userMessage("hi")}
		for _, tc := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"messages": hi, "dataSources": []any{map[string]any{"id": foreign}}}, "dataSources[0].id"},
			{map[string]any{"messages": hi, "dataSources": []any{map[string]any{"id": faq}, map[string]any{"id": w.chat}}}, "dataSources[1].id"},
			{map[string]any{"messages": hi, "dataSources": []any{map[string]any{}}}, "dataSources[0].id"},
			{map[string]any{"messages": hi, "names": []any{"nothing by that name"}}, "names[0]"},
			{map[string]any{"messages": hi, "names": []any{"faq", "twin"}}, "names[1]"},
			{map[string]any{"messages": hi, "names": []any{" "}}, "names[0]"},
			{map[string]any{"messages": hi, "dataSources": many}, "dataSources[32].id"},
			// Past the bound in names: the first name past it is named.
			{map[string]any{"messages": hi, "dataSources": many[:30], "names": []any{"faq", "faq", "faq"}}, "names[2]"},
		} {
			h.refusedByBoth(t, w, tc.body, tc.field)
		}
		// The hints a wrong id gets as a documentId, it gets as a source too;
		// a blank name is said to be blank; a document id among the names
		// is pointed to dataSources.
		path = "/api/v1/chats/" + w.chat + "/completions"
		for _, tc := range []struct {
			body map[string]any
			want string
		}{
			{map[string]any{"messages": hi, "dataSources": []any{map[string]any{"id": w.chat}}}, "that is a chat id; pass a document id (doc_…)"},
			{map[string]any{"messages": hi, "dataSources": []any{map[string]any{"id": strings.ToUpper(faq)}}}, "ids are lower case, without spaces or quotes; pass " + faq},
			{map[string]any{"messages": hi, "names": []any{" "}}, "names[0] must not be blank"},
			{map[string]any{"messages": hi, "names": []any{foreign}}, "that is a document id: send it in dataSources"},
			{map[string]any{"messages": hi, "names": []any{"FAQ"}}, "names are matched exactly (list-documents, or GET /api/v1/documents?projectId=, lists them)"},
		} {
			if r := h.call("POST", path, h.admin, tc.body); r.Status != 400 || !strings.Contains(r.ErrorMessage(), tc.want) {
				t.Errorf("%v = %d %s, want a 400 saying %q", tc.body, r.Status, r.Body, tc.want)
			}
		}
		// Documents that together pass the bound on a turn: a 413 naming
		// the source that passed it.
		big := doc(w.project, "big", strings.Repeat("a", 4<<20))
		big2 := doc(w.project, "big2", strings.Repeat("b", 4<<20))
		r := h.call("POST", path, h.admin, map[string]any{"messages": hi, "dataSources": []any{map[string]any{"id": big}, map[string]any{"id": big2}}})
		if r.Status != 413 || r.ErrorField() != "dataSources[1].id" {
			t.Errorf("two documents of 4 MiB = %d %s (field %q), want a 413 naming dataSources[1].id", r.Status, r.ErrorMessage(), r.ErrorField())
		}
	})
}

// TestStreamByAccept: a completion that leaves stream out streams when
// its Accept names text/event-stream alone (seed 001's client asks so);
// its stream field, when sent, decides over the header, and an Accept
// that takes JSON too gets JSON.
func TestStreamByAccept(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	for _, c := range []struct {
		accept string
		stream any // nil: left out
		want   string
	}{
		{"text/event-stream", nil, "text/event-stream"},
		{"Text/Event-Stream; charset=utf-8", nil, "text/event-stream"},
		{"text/event-stream", false, "application/json"},
		{"text/event-stream, application/json", nil, "application/json"},
		{"*/*", nil, "application/json"},
		{"", nil, "application/json"},
		{"application/json", true, "text/event-stream"},
	} {
		for _, path := range []string{"/api/v1/chats/" + w.chat + "/completions", "/api/v1/chat/completions"} {
			body := map[string]any{"messages": []any{userMessage("hi")}}
			if path == "/api/v1/chat/completions" {
				body["aiProviderId"] = w.provider
			}
			if c.stream != nil {
				body["stream"] = c.stream
			}
			header := http.Header{}
			if c.accept != "" {
				header.Set("Accept", c.accept)
			}
			r, err := h.sendWith("POST", path, h.admin, header, body)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Header.Get("Content-Type"); r.Status != 200 || !strings.HasPrefix(got, c.want) {
				t.Errorf("%s with Accept %q, stream %v = %d %s; want %s", path, c.accept, c.stream, r.Status, got, c.want)
			}
		}
	}
}

// TestStatelessTakesNoConversation: a stateless completion sent with a
// conversationId (or seed 001's sessionId) is a 400 that says where a
// conversation is continued, not only that the field is unknown.
func TestStatelessTakesNoConversation(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	for _, field := range []string{"conversationId", "sessionId"} {
		r := h.call("POST", "/api/v1/chat/completions", h.admin, map[string]any{"aiProviderId": w.provider,
			"messages": []any{userMessage("hi")}, field: "cnv_x"})
		if r.Status != 400 || r.ErrorField() != field || !strings.Contains(r.ErrorMessage(), "POST /api/v1/chats/{chatId}/completions") {
			t.Errorf("%s on a stateless completion = %d %s, want a 400 saying where conversations continue", field, r.Status, r.Body)
		}
	}
	if n := h.up.Count(); n != 0 {
		t.Errorf("%d upstream calls, want none", n)
	}
}

// TestEmptyConversationID: a per-chat completion that sends conversationId
// "" (a client whose id is not set yet) is a 400, where it would start a
// new conversation without a word and lose the one the client meant;
// left out, it starts one.
func TestEmptyConversationID(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	path := "/api/v1/chats/" + w.chat + "/completions"
	r := h.call("POST", path, h.admin, map[string]any{"conversationId": "", "messages": []any{userMessage("hi")}})
	if r.Status != 400 || r.ErrorField() != "conversationId" || !strings.Contains(r.ErrorMessage(), "leave it out to start a new conversation") {
		t.Errorf("conversationId \"\" = %d %s, want a 400 naming it", r.Status, r.Body)
	}
	if n := h.up.Count(); n != 0 {
		t.Errorf("%d upstream calls, want none", n)
	}
	if got := h.must(200, "GET", "/api/v1/conversations?chatId="+w.chat, h.admin, nil)["data"].([]any); len(got) != 0 {
		t.Errorf("%d conversations, want none", len(got))
	}
	h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("hi")}})
}

// TestSeedFieldsNamed: the fields by which seeds 000 and 001 send a
// completion (sessionId, systemPrompt, projectId, provider) are 400s that
// name the field Parley takes in their place, on both endpoints, and
// nothing goes upstream.
func TestSeedFieldsNamed(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	for _, tc := range []struct{ field, names string }{
		{"sessionId", "conversationId"},
		{"systemPrompt", "system"},
		{"projectId", "aiProviderId"},
		{"provider", "aiProviderId"},
		{"idempotencyKey", "Idempotency-Key header"},
	} {
		for _, path := range []string{"/api/v1/chats/" + w.chat + "/completions", "/api/v1/chats/completions"} {
			body := map[string]any{"messages": []any{userMessage("hi")}, tc.field: "openai"}
			if !strings.Contains(path, w.chat) {
				body["aiProviderId"] = w.provider
			}
			r := h.call("POST", path, h.admin, body)
			hint := "instead" // a stateless sessionId is TestStatelessTakesNoConversation's
			if tc.field == "sessionId" && !strings.Contains(path, w.chat) {
				hint = "POST /api/v1/chats/{chatId}/completions"
			}
			if r.Status != 400 || r.ErrorField() != tc.field || !strings.Contains(r.ErrorMessage(), tc.names) || !strings.Contains(r.ErrorMessage(), hint) {
				t.Errorf("%s to %s = %d %s, want a 400 naming %s", tc.field, path, r.Status, r.Body, tc.names)
			}
		}
	}
	// A stateless completion's fields, and MCP's chatId, sent per chat.
	for _, tc := range []struct{ field, says string }{
		{"aiProviderId", "runs on its chat's AI provider"},
		{"systemMessage", "role system first in messages"},
		{"chatId", "the one in the path"},
	} {
		r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("hi")}, tc.field: w.provider})
		if r.Status != 400 || r.ErrorField() != tc.field || !strings.Contains(r.ErrorMessage(), tc.says) {
			t.Errorf("%s per chat = %d %s, want a 400 saying %q", tc.field, r.Status, r.Body, tc.says)
		}
	}
	if n := h.up.Count(); n != 0 {
		t.Errorf("%d upstream calls, want none", n)
	}
}

// TestContextTooLongSaysWhatToDo: a provider's refusal of a request longer
// than its model's context window is a 400 with the provider's code, and
// says what the caller can change: per chat, a continuation's history
// (maxHistoryMessages sends less of it, or a new conversation none), the
// documents named as context; else the messages.
func TestContextTooLongSaysWhatToDo(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		conv := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("hello")}})["conversationId"].(string)
		h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "manual", "content": "0123456789"})
		tooLong := llmtest.Behavior{Status: 400, Body: `{"error":{"message":"This model's maximum context length is 128000 tokens. ` +
			`However, your messages resulted in 130512 tokens. Please reduce the length of the messages.",` +
			`"type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`}
		for _, tc := range []struct {
			name, path string
			body       map[string]any
			want, not  string
		}{
			{"a continuation", path, map[string]any{"conversationId": conv, "messages": []any{userMessage("more")}},
				"the history sent (2 of the conversation's 2 messages), the new messages, with maxTokens for the reply, are longer than the model's context window: " +
					"send fewer of its latest messages (maxHistoryMessages; it holds 2), start a new conversation", "send fewer or shorter ones"},
			{"a continuation with documents", path, map[string]any{"conversationId": conv, "names": []string{"manual"}, "maxHistoryMessages": 0, "messages": []any{userMessage("more")}},
				"the new messages, the documents named as context (1, 10 bytes), with maxTokens for the reply, are longer than the model's context window: " +
					"name fewer documents (dataSources, names)", "maxHistoryMessages"},
			{"a new conversation", path, map[string]any{"messages": []any{userMessage("more")}},
				"send fewer or shorter ones", "conversation's history"},
			{"stateless", "/api/v1/chats/completions", map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("more")}},
				"send fewer or shorter ones", "conversation's history"},
		} {
			h.up.Enqueue(tooLong)
			r := h.call("POST", tc.path, h.admin, tc.body)
			if r.Status != 400 || r.ErrorCode() != "invalid_request" {
				t.Fatalf("%s: %d %s; want 400 invalid_request", tc.name, r.Status, r.Body)
			}
			msg := r.ErrorMessage()
			if !strings.Contains(msg, "maximum context length is 128000 tokens") || !strings.Contains(msg, tc.want) || strings.Contains(msg, tc.not) {
				t.Errorf("%s: message %q; want the provider's reason and %q, not %q", tc.name, msg, tc.want, tc.not)
			}
			details, _ := r.JSON()["error"].(map[string]any)["details"].(map[string]any)
			if details["upstreamCode"] != "context_length_exceeded" || details["upstreamStatus"] != float64(400) {
				t.Errorf("%s: details %v; want upstreamCode context_length_exceeded and upstreamStatus 400", tc.name, details)
			}
		}
	})
}
