package rest_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/store"
)

// eachWith is each with a configured app.
func eachWith(t *testing.T, configure func(*app.Config), body func(t *testing.T, h *harness)) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		body(t, newHarness(t, st, configure))
	})
}

// readRaw reads a whole stream, returning its raw bytes and its data
// events (parsed as readSSE does, which skips comments).
func readRaw(t *testing.T, res *http.Response) ([]byte, []sseEvent) {
	t.Helper()
	raw, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return raw, readSSE(t, &http.Response{Header: res.Header, Body: io.NopCloser(bytes.NewReader(raw))})
}

func TestStreamKeepAlive(t *testing.T) {
	eachWith(t, func(c *app.Config) { c.KeepAlive = 100 * time.Millisecond }, func(t *testing.T, h *harness) {
		w := h.world()
		// A quiet upstream: 250ms between events, longer than the keep-alive.
		h.up.Enqueue(llmtest.Behavior{ChunkDelay: 250 * time.Millisecond})
		const prompt = "slow but steady"
		res := stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage(prompt)}})
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		raw, events := readRaw(t, res)

		n := strings.Count(string(raw), ": keep-alive\n\n")
		if n < 5 {
			t.Errorf("%d keep-alive comments in a stream of seven 250ms pauses with a 100ms keep-alive:\n%s", n, raw)
		}
		// Each comment is an event of its own, never inside a data event.
		for _, block := range strings.Split(strings.TrimSuffix(string(raw), "\n\n"), "\n\n") {
			if strings.HasPrefix(block, ":") && block != ": keep-alive" {
				t.Errorf("a comment event mixes in other lines: %q", block)
			}
			if !strings.HasPrefix(block, ":") && !strings.HasPrefix(block, "data: ") {
				t.Errorf("an event that is neither data nor comment: %q", block)
			}
		}
		// And the stream still parses to the whole reply, usage and [DONE].
		m := len(events)
		if m < 4 || events[m-1].raw != "[DONE]" {
			t.Fatalf("stream does not end with [DONE]: %s", raw)
		}
		var text strings.Builder
		for _, ev := range events[:m-1] {
			for _, c := range ev.data["choices"].([]any) {
				if s, ok := c.(map[string]any)["delta"].(map[string]any)["content"].(string); ok {
					text.WriteString(s)
				}
			}
		}
		if got := text.String(); got != llmtest.EchoReply(prompt) {
			t.Errorf("streamed text = %q", got)
		}
		if events[m-2].data["usage"] == nil {
			t.Errorf("the last chunk has no usage: %s", events[m-2].raw)
		}
		// No keep-alive after [DONE]: the ticker stopped with the stream.
		if !bytes.HasSuffix(raw, []byte("data: [DONE]\n\n")) {
			t.Errorf("the stream does not end with [DONE]: %q", raw[max(0, len(raw)-80):])
		}
	})
}

// TestNoKeepAliveOnABusyStream: keep-alives are for quiet streams. One
// whose deltas come every 40ms, over five keep-alive intervals of 300ms,
// gets none (it got one per interval when the timer ignored the deltas).
// One is let pass: on a loaded host a pause of the process (the race
// detector's, the scheduler's) can outlast an interval, and then a
// keep-alive is right.
func TestNoKeepAliveOnABusyStream(t *testing.T) {
	eachWith(t, func(c *app.Config) { c.KeepAlive = 300 * time.Millisecond }, func(t *testing.T, h *harness) {
		w := h.world()
		deltas := strings.Fields(strings.Repeat("busy ", 40)) // 40 × 40ms: five intervals
		h.up.Enqueue(llmtest.Behavior{ChunkDelay: 40 * time.Millisecond, Deltas: deltas})
		start := time.Now()
		res := stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("go")}})
		raw, events := readRaw(t, res)
		if took := time.Since(start); took < 1500*time.Millisecond {
			t.Fatalf("the stream took %v; the test needs it to outlast several keep-alive intervals", took)
		}
		if len(events) == 0 || events[len(events)-1].raw != "[DONE]" {
			t.Fatalf("the stream did not end with [DONE]: %s", raw)
		}
		if n := strings.Count(string(raw), ": keep-alive"); n > 1 {
			t.Errorf("%d keep-alives in a stream whose events never paused for an interval", n)
		}
	})
}

func TestMaxStreamDuration(t *testing.T) {
	const limit = 600 * time.Millisecond
	eachWith(t, func(c *app.Config) { c.MaxStreamDuration = limit }, func(t *testing.T, h *harness) {
		w := h.world()
		// Twelve deltas 150ms apart: ~2s, well over the limit.
		h.up.Enqueue(llmtest.Behavior{ChunkDelay: 150 * time.Millisecond})
		n := h.up.Count()
		start := time.Now()
		res := stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{
			"messages": []any{userMessage("a b c d e f g h i j k")},
		})
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		_, events := readRaw(t, res)
		took := time.Since(start)
		if took < limit || took > limit+time.Second {
			t.Errorf("the stream took %v, want it ended at about %v", took, limit)
		}
		m := len(events)
		if m < 3 || events[m-1].raw != "[DONE]" {
			t.Fatalf("stream = %v, want deltas, an error event, then [DONE]", events)
		}
		cut, _ := events[0].data["messageId"].(string)
		if cut == "" {
			t.Fatalf("the stream did not start normally: %s", events[0].raw)
		}
		e, _ := events[m-2].data["error"].(map[string]any)
		if e == nil || e["code"] != "upstream_timeout" {
			t.Fatalf("event before [DONE] = %s, want an upstream_timeout error", events[m-2].raw)
		}
		if msg, _ := e["message"].(string); !strings.Contains(msg, "maximum duration") {
			t.Errorf("error message = %q, want it to name the maximum duration", msg)
		}
		for _, ev := range events[:m-2] {
			if ev.data["usage"] != nil || ev.data["error"] != nil {
				t.Errorf("a cut stream carries %s before its error", ev.raw)
			}
		}
		// The upstream call was cancelled, not left running.
		if !h.up.WaitCanceledN(n, 2*time.Second) {
			t.Error("the upstream did not see the request cancelled")
		}
		// A stream within the limit is untouched.
		h.up.Enqueue(llmtest.Behavior{ChunkDelay: 20 * time.Millisecond})
		res = stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("quick")}})
		_, events = readRaw(t, res)
		if n := len(events); n < 3 || events[n-1].raw != "[DONE]" || events[n-2].data["usage"] == nil {
			t.Errorf("a stream within the limit = %v", events)
		}

		// The cut completion is recorded as usage, as ended by the server.
		h.app.FlushUsage()
		var outcome string
		if err := h.app.Store.DB().Raw("SELECT outcome FROM usage_records WHERE id = ?", cut).Row().Scan(&outcome); err != nil {
			t.Fatalf("no usage record of the cut stream: %v", err)
		}
		if outcome != "interrupted" {
			t.Errorf("the cut stream is recorded with outcome %q, want interrupted", outcome)
		}
	})
}

// TestKeepAliveStopsWithTheStream runs streams with a keep-alive so short
// that its ticker fires while the stream finishes: no keep-alive may be
// written once [DONE] is out, let alone after the handler returned.
func TestKeepAliveStopsWithTheStream(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) { c.KeepAlive = time.Microsecond })
	w := h.world()
	for i := range 50 {
		res := stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("a b c")}})
		raw, _ := readRaw(t, res)
		if !bytes.HasSuffix(raw, []byte("data: [DONE]\n\n")) {
			t.Fatalf("stream %d: bytes after [DONE]: %q", i, raw[max(0, len(raw)-80):])
		}
		if r := h.call("GET", "/api/v1/chats/"+w.chat, h.admin, nil); bytes.Contains(r.Body, []byte("keep-alive")) {
			t.Fatalf("a keep-alive of an ended stream was written into another response: %s", r.Body)
		}
	}
}

// TestKeepAliveBeforeTheFirstDelta: a provider that keeps the stream
// waiting longer than a keep-alive interval before its first delta (a
// reasoning model, a queue) does not leave the client without a byte: the
// first keep-alive opens the stream, and an error after that is an error
// event, not a status.
func TestKeepAliveBeforeTheFirstDelta(t *testing.T) {
	const keepAlive = 100 * time.Millisecond
	eachWith(t, func(c *app.Config) { c.KeepAlive = keepAlive }, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		for _, tc := range []struct {
			name string
			b    llmtest.Behavior
		}{
			{"slow headers", llmtest.Behavior{Delay: 400 * time.Millisecond}},
			{"headers then silence", llmtest.Behavior{ChunkDelay: 400 * time.Millisecond}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h.up.Enqueue(tc.b)
				start := time.Now()
				res := stream(t, h, path, map[string]any{"messages": []any{userMessage("think first")}})
				if took := time.Since(start); took >= 400*time.Millisecond {
					t.Errorf("the headers came after %v, with the first delta; want them at the first keep-alive (%v)", took, keepAlive)
				}
				if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
					t.Fatalf("status %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
				}
				raw, events := readRaw(t, res)
				if !strings.HasPrefix(string(raw), ": keep-alive\n\n") {
					t.Errorf("the stream does not begin with a keep-alive: %q", raw[:min(len(raw), 80)])
				}
				if len(events) < 3 || events[0].data["messageId"] == nil || events[len(events)-1].raw != "[DONE]" {
					t.Fatalf("after the keep-alive the stream is not a normal one: %s", raw)
				}
				if events[len(events)-2].data["usage"] == nil {
					t.Errorf("the last chunk has no usage: %s", events[len(events)-2].raw)
				}
			})
		}
		t.Run("error after the keep-alive", func(t *testing.T) {
			h.up.Enqueue(llmtest.Behavior{Delay: 300 * time.Millisecond, Status: 401})
			res := stream(t, h, path, map[string]any{"messages": []any{userMessage("think first")}})
			if res.StatusCode != 200 {
				t.Fatalf("status %d, want 200: the keep-alive had opened the stream", res.StatusCode)
			}
			raw, events := readRaw(t, res)
			n := len(events)
			if n != 2 || events[1].raw != "[DONE]" {
				t.Fatalf("stream = %s, want a keep-alive, an error event and [DONE]", raw)
			}
			e, _ := events[0].data["error"].(map[string]any)
			if e == nil || e["code"] != "upstream_error" {
				t.Errorf("event = %s, want an upstream_error", events[0].raw)
			}
		})
		t.Run("a rate limit after the keep-alive", func(t *testing.T) {
			// The provider's wait, whose Retry-After the opened stream
			// cannot send, is in the event's details.
			h.up.Enqueue(llmtest.Behavior{Delay: 300 * time.Millisecond, Status: 429, Header: http.Header{"Retry-After": {"7"}}})
			res := stream(t, h, path, map[string]any{"messages": []any{userMessage("think first")}})
			_, events := readRaw(t, res)
			e, _ := events[0].data["error"].(map[string]any)
			if details, _ := e["details"].(map[string]any); e["code"] != "rate_limited" || details["retryAfterSeconds"] != 7.0 {
				t.Errorf("event = %s, want rate_limited with details.retryAfterSeconds 7", events[0].raw)
			}
		})
		t.Run("error before the keep-alive", func(t *testing.T) {
			h.up.Enqueue(llmtest.Behavior{Status: 401})
			res := stream(t, h, path, map[string]any{"messages": []any{userMessage("think first")}})
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 502 || !strings.Contains(string(body), `"upstream_error"`) {
				t.Errorf("status %d, body %s; want a 502 envelope", res.StatusCode, body)
			}
		})
	})
}
