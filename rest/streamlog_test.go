package rest_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestStreamFailureLogLevels: a stream that fails once it began is logged
// at the level of its cause, as a JSON completion's failure is: a turn
// that cannot be stored because its chat was deleted meanwhile (a 404 the
// JSON completion answers) is a debug line; one that cannot be stored
// because the database is gone (Parley's own fault, a 5xx) an error; a
// provider's failure a warning.
func TestStreamFailureLogLevels(t *testing.T) {
	for _, c := range []struct {
		name, code, level string
		during            func(h *harness, chat string)
		behavior          llmtest.Behavior
	}{
		{"chat deleted", "not_found", "DEBUG", func(h *harness, chat string) {
			h.must(200, "DELETE", "/api/v1/chats/"+chat, h.admin, nil)
		}, llmtest.Behavior{Deltas: []string{"a", "b", "c"}, ChunkDelay: 100 * time.Millisecond}},
		{"database gone", "", "ERROR", func(h *harness, chat string) {
			if err := h.app.Store.Close(); err != nil {
				h.t.Fatal(err)
			}
		}, llmtest.Behavior{Deltas: []string{"a", "b", "c"}, ChunkDelay: 100 * time.Millisecond}},
		{"provider failed", "upstream_error", "WARN", func(*harness, string) {},
			llmtest.Behavior{Fault: llmtest.FaultStreamError, AfterDeltas: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, dbtest.SQLite(t), nil)
			w := h.world()
			h.up.Enqueue(c.behavior)
			res := stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("x")}})
			id := res.Header.Get("X-Request-Id")
			rd := bufio.NewReader(res.Body)
			if _, err := rd.ReadString('\n'); err != nil { // the first chunk: the stream began
				t.Fatal(err)
			}
			c.during(h, w.chat)
			var rest strings.Builder
			_, _ = rd.WriteTo(&rest)
			res.Body.Close()
			if !strings.Contains(rest.String(), `"error"`) || !strings.Contains(rest.String(), c.code) {
				t.Fatalf("the stream ended without an error event %s: %s", c.code, rest.String())
			}
			var line string
			for _, l := range strings.Split(h.finalLogs(), "\n") {
				if strings.Contains(l, `msg="stream failed" request_id=`+id+" ") {
					line = l
				}
			}
			if !strings.Contains(line, "level="+c.level+" ") {
				t.Errorf("the stream's failure logged as %q, want level=%s", line, c.level)
			}
		})
	}
}

// TestCompletionLogLinesNameTheCompletion: the lines a completion's request
// logs once it ran, its failure's and its access line, name the project,
// chat, provider, model, outcome and message of the completion, so that an
// on-call can tell whose completion failed, and where, without the
// database.
func TestCompletionLogLinesNameTheCompletion(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	path := "/api/v1/chats/" + w.chat + "/completions"
	h.up.Enqueue(llmtest.Behavior{Status: 401})
	r := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}})
	jsonID := r.Header.Get("X-Request-Id")
	h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultStreamError, AfterDeltas: 1})
	res := stream(t, h, path, map[string]any{"messages": []any{userMessage("x")}})
	streamID := res.Header.Get("X-Request-Id")
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if r.Status != 502 || jsonID == "" || streamID == "" {
		t.Fatalf("JSON completion = %d %s, request ids %q and %q; want a 502 and ids", r.Status, r.Body, jsonID, streamID)
	}
	logs := h.finalLogs()
	for _, c := range []struct{ id, msg string }{{jsonID, "upstream failed"}, {jsonID, "request"}, {streamID, "stream failed"}, {streamID, "request"}} {
		var line string
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, "msg=\""+c.msg+"\" request_id="+c.id+" ") || strings.Contains(l, "msg="+c.msg+" request_id="+c.id+" ") {
				line = l
			}
		}
		for _, want := range []string{"project_id=" + w.project, "chat_id=" + w.chat, "provider_id=" + w.provider, "model=", "outcome=upstream_error", "message_id=msg_"} {
			if !strings.Contains(line, " "+want) {
				t.Errorf("the %q line of %s is %q; want it to carry %s", c.msg, c.id, line, want)
			}
		}
	}
}

// TestProviderRateLimitIsAWarning: a provider's 429 (its key's quota or
// rate spent) is the operator's to know of, a warning, where Parley's own
// limits refusing a caller are the caller's, a debug line.
func TestProviderRateLimitIsAWarning(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	path := "/api/v1/chats/" + w.chat + "/completions"
	h.up.Enqueue(llmtest.Behavior{Status: 429, Header: http.Header{"Retry-After": {"3"}}})
	provider := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}})
	h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 1})
	h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}})
	own := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}})
	if provider.Status != 429 || own.Status != 429 {
		t.Fatalf("the provider's 429 = %d, Parley's = %d; want both 429", provider.Status, own.Status)
	}
	levels := map[string]string{}
	for _, l := range strings.Split(h.finalLogs(), "\n") {
		for _, id := range []string{provider.Header.Get("X-Request-Id"), own.Header.Get("X-Request-Id")} {
			if strings.Contains(l, "request_id="+id+" ") && strings.Contains(l, "kind=rate_limited") {
				levels[id] = l
			}
		}
	}
	if l := levels[provider.Header.Get("X-Request-Id")]; !strings.Contains(l, `level=WARN msg="upstream failed" `) {
		t.Errorf("the provider's 429 logged as %q; want a warning", l)
	}
	if l := levels[own.Header.Get("X-Request-Id")]; !strings.Contains(l, "level=DEBUG ") {
		t.Errorf("Parley's own limit's 429 logged as %q; want a debug line", l)
	}
}
