package rest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/store"
)

func TestUpstreamFaults(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		tests := []struct {
			name       string
			queue      []llmtest.Behavior // the upstream's next answers
			stream     bool
			status     int
			code       string // "" for success
			retryAfter string
			message    string
			calls      int // requests the upstream gets
		}{
			{"429 passes Retry-After on", []llmtest.Behavior{{Status: 429, Header: http.Header{"Retry-After": {"7"}}}}, false, 429, "rate_limited", "7", "", 1},
			// A wait a hair over a second is 2 whole seconds: retrying after 1 would come too early.
			{"429 rounds a fraction of a second up", []llmtest.Behavior{{Status: 429, Header: http.Header{"Retry-After-Ms": {"1000.5"}}}}, false, 429, "rate_limited", "2", "", 1},
			{"401 is the provider's key", []llmtest.Behavior{{Status: 401}}, false, 502, "upstream_error", "", "rejected its API key", 1},
			{"403 is the provider's access", []llmtest.Behavior{{Status: 403}}, false, 502, "upstream_error", "", "refused this key access", 1},
			{"401 before a stream began is JSON", []llmtest.Behavior{{Status: 401}}, true, 502, "upstream_error", "", "rejected its API key", 1},
			// The provider's refusal of the request itself is the caller's
			// 400 with the provider's reason, not a 502 the OpenAI SDKs retry.
			{"400 from the provider", []llmtest.Behavior{{Status: 400, Body: `{"error":{"message":"model not found","type":"invalid_request_error"}}`}}, false, 400, "invalid_request", "", "HTTP 400): model not found", 1},
			{"422 before a stream began is JSON", []llmtest.Behavior{{Status: 422, Body: `{"error":{"message":"temperature must be at most 1"}}`}}, true, 400, "invalid_request", "", "temperature must be at most 1", 1},
			{"500s are retried, then 502", []llmtest.Behavior{{Status: 500}, {Status: 500}, {Status: 500}}, false, 502, "upstream_error", "", "", 3},
			{"a 500 then success", []llmtest.Behavior{{Status: 503}, {}}, false, 200, "", "", "", 2},
			{"a reset connection then success", []llmtest.Behavior{{Fault: llmtest.FaultDrop}, {}}, true, 200, "", "", "", 2},
			{"a stream reset before its first data then success", []llmtest.Behavior{{Fault: llmtest.FaultResetBeforeData}, {}}, true, 200, "", "", "", 2},
		}
		conversations := func() int {
			return len(h.must(200, "GET", "/api/v1/conversations?chatId="+w.chat, h.admin, nil)["data"].([]any))
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				for _, b := range tt.queue {
					h.up.Enqueue(b)
				}
				before, stored := h.up.Count(), conversations()
				r := h.call("POST", path, h.admin, map[string]any{"stream": tt.stream, "messages": []any{userMessage("hi")}})
				if got := h.up.Count() - before; got != tt.calls {
					t.Errorf("the upstream got %d requests, want %d", got, tt.calls)
				}
				if tt.code == "" {
					if r.Status != tt.status {
						t.Fatalf("= %d %s, want %d", r.Status, r.Body, tt.status)
					}
					return
				}
				if n := conversations(); n != stored {
					t.Errorf("a failed completion stored a conversation (%d, was %d)", n, stored)
				}
				if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type = %q, want the JSON error envelope", ct)
				}
				if r.Status != tt.status || r.ErrorCode() != tt.code {
					t.Fatalf("= %d %s, want %d %s", r.Status, r.Body, tt.status, tt.code)
				}
				if got := r.Header.Get("Retry-After"); got != tt.retryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
				}
				e, _ := r.JSON()["error"].(map[string]any)
				details, _ := e["details"].(map[string]any)
				if got := fmt.Sprint(details["retryAfterSeconds"]); tt.retryAfter != "" && got != tt.retryAfter {
					t.Errorf("details.retryAfterSeconds = %s, want %s as Retry-After", got, tt.retryAfter)
				}
				// A 502 is final: Parley retried what retrying mends, and
				// the OpenAI SDKs, which would send it again twice, read
				// x-should-retry before the status. Other answers leave
				// retrying to the client.
				wantRetry := ""
				if tt.code == "upstream_error" {
					wantRetry = "false"
				}
				if got := r.Header.Get("X-Should-Retry"); got != wantRetry {
					t.Errorf("X-Should-Retry = %q, want %q", got, wantRetry)
				}
				if !strings.Contains(r.ErrorMessage(), tt.message) || strings.Contains(string(r.Body), upstreamKey) {
					t.Errorf("message = %q", r.ErrorMessage())
				}
			})
		}
		// Every failure above was the provider's, its 429s too: each is
		// recorded as an upstream error, none as Parley's own, except its
		// refusals of the request (the caller's 400s), counted apart.
		failed, refusals := 0, 0
		for _, tt := range tests {
			switch {
			case tt.status == 400:
				refusals++
			case tt.code != "":
				failed++
			}
		}
		h.app.FlushUsage()
		var upstream, refused, other int64
		if err := h.app.Store.DB().Raw("SELECT count(CASE WHEN outcome = 'upstream_error' THEN 1 END), count(CASE WHEN outcome = 'upstream_refused' THEN 1 END), count(CASE WHEN outcome NOT IN ('upstream_error', 'upstream_refused', 'ok') THEN 1 END) FROM usage_records WHERE chat_id = ?", w.chat).Row().Scan(&upstream, &refused, &other); err != nil {
			t.Fatal(err)
		}
		if upstream != int64(failed) || refused != int64(refusals) || other != 0 {
			t.Errorf("usage records: %d upstream errors, %d refusals, %d other failures; want %d, %d and 0", upstream, refused, other, failed, refusals)
		}
	})
}

// TestFirstByteTimeout: an upstream that sends nothing within the
// first-byte timeout (a stream) or the response timeout (a whole reply)
// is a 504, per chat and stateless, and stores nothing.
func TestFirstByteTimeout(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, func(c *app.Config) {
			c.LLM.FirstByteTimeout, c.LLM.ResponseTimeout = 150*time.Millisecond, 150*time.Millisecond
		})
		w := h.world()
		for _, stream := range []bool{false, true} {
			for path, body := range map[string]map[string]any{
				"/api/v1/chats/" + w.chat + "/completions": {"stream": stream, "messages": []any{userMessage("hi")}},
				"/api/v1/chats/completions":                {"stream": stream, "messages": []any{userMessage("hi")}, "aiProviderId": w.provider},
			} {
				h.up.Enqueue(llmtest.Behavior{Delay: 3 * time.Second})
				r := h.call("POST", path, h.admin, body)
				// A timeout leaves retrying to the client (X-Should-Retry
				// is a 502's only).
				if r.Status != 504 || r.ErrorCode() != "upstream_timeout" || r.Header.Get("X-Should-Retry") != "" {
					t.Errorf("POST %s, stream=%v: %d %s, X-Should-Retry %q; want 504 upstream_timeout, none", path, stream, r.Status, r.Body, r.Header.Get("X-Should-Retry"))
				}
			}
		}
		// A stream's first byte is its first data line: headers at once and
		// then only keep-alive comments are no answer.
		h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultNoData, Comments: 2})
		r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"stream": true, "messages": []any{userMessage("hi")}})
		if r.Status != 504 || r.ErrorCode() != "upstream_timeout" || !strings.Contains(r.ErrorMessage(), "sent no data") {
			t.Errorf("a stream of comments only: %d %s, want 504 upstream_timeout", r.Status, r.Body)
		}
		if n := len(h.must(200, "GET", "/api/v1/conversations?chatId="+w.chat, h.admin, nil)["data"].([]any)); n != 0 {
			t.Errorf("timed-out completions stored %d conversations", n)
		}
		// The upstream had the prompt: its tokens are estimated, as for a
		// client that left.
		h.app.FlushUsage()
		var n, prompt int64
		if err := h.app.Store.DB().Raw("SELECT count(*), min(prompt_tokens) FROM usage_records WHERE chat_id = ? AND outcome = 'upstream_error'", w.chat).Row().Scan(&n, &prompt); err != nil {
			t.Fatal(err)
		}
		if n != 3 || prompt == 0 {
			t.Errorf("timed-out completions: %d usage records, fewest prompt tokens %d; want 3, with the prompt estimated", n, prompt)
		}
	})
}

// TestStreamGoesQuiet: a stream whose upstream stops sending after its
// first deltas, its connection open, ends with an upstream_timeout error
// event once the idle timeout passed, though keep-alives kept it open
// meanwhile; its usage is an upstream_error with the deltas counted.
func TestStreamGoesQuiet(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, func(c *app.Config) {
			c.LLM.IdleTimeout, c.KeepAlive = 500*time.Millisecond, 100*time.Millisecond
		})
		w := h.world()
		h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 2})
		e, _ := streamError(t, stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("one two three four five")}}))
		if e["code"] != "upstream_timeout" || !strings.Contains(fmt.Sprint(e["message"]), "sent nothing for 500ms") {
			t.Fatalf("the stream's error = %v, want an upstream_timeout saying the stream went quiet", e)
		}
		h.app.FlushUsage()
		var outcome string
		var completion int64
		if err := h.app.Store.DB().Raw("SELECT outcome, completion_tokens FROM usage_records WHERE chat_id = ?", w.chat).Row().Scan(&outcome, &completion); err != nil {
			t.Fatal(err)
		}
		if outcome != "upstream_error" || completion == 0 {
			t.Errorf("usage of the quiet stream: %s with %d completion tokens; want upstream_error with its deltas counted", outcome, completion)
		}
	})
}

func TestStreamFaultsAfterTheFirstByte(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		for _, f := range []struct {
			name  string
			fault llmtest.Fault
		}{{"reset", llmtest.FaultReset}, {"cut without finish reason", llmtest.FaultTruncate}} {
			t.Run(f.name, func(t *testing.T) {
				h.up.Enqueue(llmtest.Behavior{Fault: f.fault, AfterDeltas: 2})
				e, _ := streamError(t, stream(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("one two three four five")}}))
				if e["code"] != "upstream_error" {
					t.Fatalf("the stream's error = %v, want an upstream_error", e)
				}
				if f.fault == llmtest.FaultTruncate && !strings.Contains(e["message"].(string), "truncated") {
					t.Errorf("a cut stream is reported as %q, want truncated", e["message"])
				}
			})
		}
		if got := h.up.Count(); got != 2 {
			t.Errorf("the upstream got %d requests, want 2: no retry once streaming began", got)
		}
	})
}

// TestClientDisconnectCancelsUpstream: a client that leaves, mid-stream or
// while waiting for a JSON reply, cancels the upstream request within a
// second, and its usage is recorded as client_disconnect with the tokens
// spent so far: the provider's count where it gave one (Anthropic sends
// the prompt's at the start), else an estimate.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		for _, c := range []struct {
			name               string
			chat               string
			stream             bool
			prompt, completion func(int64) bool
		}{
			{"openai stream", w.openaiChat, true, positive64, func(n int64) bool { return n >= 2 }},
			{"anthropic stream", w.anthropicChat, true, positive64, func(n int64) bool { return n >= 2 }},
			{"openai JSON", w.openaiChat, false, positive64, func(n int64) bool { return n == 0 }},
			{"anthropic JSON", w.anthropicChat, false, positive64, func(n int64) bool { return n == 0 }},
		} {
			t.Run(c.name, func(t *testing.T) {
				h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 2})
				ctx, cancel := context.WithCancel(context.Background())
				b, _ := json.Marshal(map[string]any{"stream": c.stream, "messages": []any{userMessage("a b c d e f")}})
				req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/api/v1/chats/"+c.chat+"/completions", strings.NewReader(string(b)))
				req.Header.Set("Authorization", "Bearer "+h.admin)
				req.Header.Set("Content-Type", "application/json")
				before := h.up.Count()
				done := make(chan struct{})
				go func() {
					defer close(done)
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						return // cancelled while waiting for a JSON reply
					}
					res.Body.Read(make([]byte, 256)) // the first chunk arrived: the stream runs
					cancel()
					res.Body.Close()
				}()
				if !c.stream {
					for deadline := time.Now().Add(5 * time.Second); h.up.Count() == before && time.Now().Before(deadline); {
						time.Sleep(5 * time.Millisecond)
					}
					cancel()
				}
				<-done
				cancel()
				if !h.up.WaitCanceledN(before, time.Second) {
					t.Fatal("the upstream did not see the cancellation within a second")
				}
				var rec struct {
					Outcome                                     string
					PromptTokens, CompletionTokens, TotalTokens int64
				}
				for range 150 { // the batcher writes within 200ms
					if err := h.app.Store.DB().Raw("SELECT outcome, prompt_tokens, completion_tokens, total_tokens FROM usage_records WHERE chat_id = ? AND outcome = ? AND stream = ?",
						c.chat, "client_disconnect", c.stream).Scan(&rec).Error; err != nil {
						t.Fatal(err)
					}
					if rec.Outcome != "" {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				if rec.Outcome != "client_disconnect" {
					t.Fatalf("no usage record with the outcome client_disconnect")
				}
				if !c.prompt(rec.PromptTokens) || !c.completion(rec.CompletionTokens) || rec.TotalTokens != rec.PromptTokens+rec.CompletionTokens {
					t.Errorf("usage of the abandoned completion: %+v", rec)
				}
			})
		}
	})
}

func positive64(n int64) bool { return n > 0 }

// TestUsageWithoutTheProvidersCount: a provider that reports no usage (some
// OpenAI-compatible servers do not, in streams) gets an estimate, in the
// response and in the record, never zero. An Anthropic-wire stream whose
// message_delta counts no output is estimated too, not counted at the
// placeholder output_tokens of its message_start (1, sent before the reply).
// An estimate says so: `estimated: true` in the response's usage and in the
// stored reply's, and the usage report's estimatedTokens sums the tokens of
// such completions apart; the provider's own count carries no mark.
func TestUsageWithoutTheProvidersCount(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		// lastUsage is the (last) usage object of a completion or of a
		// stream's last chunk.
		lastUsage := func(r *response) map[string]any {
			t.Helper()
			i := strings.LastIndex(string(r.Body), `"usage":`)
			var u map[string]any
			if i < 0 {
				t.Fatalf("no usage in %s", r.Body)
			}
			if err := json.NewDecoder(strings.NewReader(string(r.Body)[i+len(`"usage":`):])).Decode(&u); err != nil {
				t.Fatal(err)
			}
			return u
		}
		var estimated, total float64
		for wire, chat := range map[string]string{"openai": w.openaiChat, "anthropic": w.anthropicChat} {
			path := "/api/v1/chats/" + chat + "/completions"
			for _, stream := range []bool{false, true} {
				h.up.Enqueue(llmtest.Behavior{Usage: &llmtest.Usage{}})
				r := h.call("POST", path, h.admin, map[string]any{"stream": stream, "messages": []any{userMessage("one two three four")}})
				if r.Status != 200 || !strings.Contains(string(r.Body), `"usage":{"prompt_tokens":`) {
					t.Fatalf("%s stream=%v: %d %s", wire, stream, r.Status, r.Body)
				}
				u := lastUsage(r)
				// "echo: one two three four" is 24 characters in 5 deltas.
				if u["prompt_tokens"].(float64) <= 0 || u["completion_tokens"].(float64) < 5 || u["total_tokens"] != u["prompt_tokens"].(float64)+u["completion_tokens"].(float64) {
					t.Errorf("%s stream=%v: usage %v, want an estimate", wire, stream, u)
				}
				if u["estimated"] != true {
					t.Errorf("%s stream=%v: usage %v, want it marked estimated", wire, stream, u)
				}
				estimated += u["total_tokens"].(float64)
				total += u["total_tokens"].(float64)

				// The provider's count is not an estimate.
				r = h.call("POST", path, h.admin, map[string]any{"stream": stream, "conversationId": conversationIn(t, r),
					"messages": []any{userMessage("five six")}})
				if r.Status != 200 {
					t.Fatalf("%s stream=%v: %d %s", wire, stream, r.Status, r.Body)
				}
				u = lastUsage(r)
				if _, ok := u["estimated"]; ok {
					t.Errorf("%s stream=%v: the provider's usage %v is marked estimated", wire, stream, u)
				}
				total += u["total_tokens"].(float64)

				// The stored replies keep the mark, and only the first has it.
				conv := h.must(200, "GET", "/api/v1/conversations/"+conversationIn(t, r), h.admin, nil)
				var marks []any
				for _, m := range conv["messages"].([]any) {
					if u, ok := m.(map[string]any)["usage"].(map[string]any); ok {
						marks = append(marks, u["estimated"])
					}
				}
				if len(marks) != 2 || marks[0] != true || marks[1] != nil {
					t.Errorf("%s stream=%v: the stored replies' estimated marks are %v, want [true <nil>]", wire, stream, marks)
				}
			}
		}
		h.app.FlushUsage()
		var short int64
		if err := h.app.Store.DB().Raw("SELECT COUNT(*) FROM usage_records WHERE project_id = ? AND estimated AND (prompt_tokens = 0 OR completion_tokens < 5)", w.project).Scan(&short).Error; err != nil {
			t.Fatal(err)
		}
		if short != 0 {
			t.Errorf("%d estimated usage records have no tokens, or fewer completion tokens than the reply's 5 deltas", short)
		}
		rep := h.must(200, "GET", "/api/v1/projects/"+w.project+"/usage?from=2000-01-01", h.admin, nil)["data"].([]any)[0].(map[string]any)
		if rep["totalTokens"] != total || rep["estimatedTokens"] != estimated || estimated >= total {
			t.Errorf("the report counts %v tokens, %v of them estimated; want %v, %v estimated", rep["totalTokens"], rep["estimatedTokens"], total, estimated)
		}
	})
}

// conversationIn is the conversationId of a per-chat completion's
// response: its JSON's, or its stream's first chunk's.
func conversationIn(t *testing.T, r *response) string {
	t.Helper()
	m := regexp.MustCompile(`"conversationId":"(cnv_[^"]+)"`).FindSubmatch(r.Body)
	if m == nil {
		t.Fatalf("no conversationId in %s", r.Body)
	}
	return string(m[1])
}

func TestUsageReport(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		for range 2 {
			h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("hi")}})
		}
		h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.provider, "model": "m2", "messages": []any{userMessage("hi")}})
		h.up.Enqueue(llmtest.Behavior{Status: 401})
		h.must(502, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.provider, "model": "m2", "messages": []any{userMessage("hi")}})
		h.app.FlushUsage() // writes what is queued; the test's app takes no more completions
		got := h.must(200, "GET", "/api/v1/projects/"+w.project+"/usage?groupBy=model", h.admin, nil)
		data := got["data"].([]any)
		if len(data) != 2 {
			t.Fatalf("usage by model = %v", data)
		}
		byModel := map[string]map[string]any{}
		for _, d := range data {
			byModel[d.(map[string]any)["key"].(string)] = d.(map[string]any)
		}
		if byModel["fake-default"]["requests"] != 2.0 || byModel["m2"]["requests"] != 2.0 {
			t.Errorf("requests per model = %v", byModel)
		}
		if tot := byModel["fake-default"]["totalTokens"].(float64); tot <= 0 {
			t.Errorf("totalTokens = %v", tot)
		}
		if r := h.call("GET", "/api/v1/projects/"+w.project+"/usage?groupBy=colour", h.admin, nil); r.Status != 400 {
			t.Errorf("bad groupBy = %d", r.Status)
		}
		// A misspelt parameter would answer the ungrouped report.
		if r := h.call("GET", "/api/v1/projects/"+w.project+"/usage?groupby=model", h.admin, nil); r.Status != 400 || !strings.Contains(r.ErrorMessage(), `unknown query parameter "groupby"`) {
			t.Errorf("misspelt groupBy = %d %s, want 400 naming it", r.Status, r.Body)
		}
		// A parameter sent twice would answer for one of its values only:
		// grouped by model, not by model and chat; a list's first limit.
		for _, path := range []string{
			"/api/v1/projects/" + w.project + "/usage?groupBy=model&groupBy=chat",
			"/api/v1/projects/" + w.project + "/usage?from=2026-01-01&from=2026-02-01",
			"/api/v1/chats?projectId=" + w.project + "&limit=1&limit=50",
		} {
			r := h.call("GET", path, h.admin, nil)
			if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "more than once") || r.ErrorField() == "" {
				t.Errorf("GET %s = %d %s, want 400 naming the parameter sent twice", path, r.Status, r.Body)
			}
		}
		// A pair Go's query parser cannot read (a bad escape, a ';') it
		// drops without a word, and an empty filter reads as left out:
		// either would answer the unfiltered list.
		for path, field := range map[string]string{
			"/api/v1/chats?projectId=" + w.project + "%ZZ":       "projectId",
			"/api/v1/chats?projectId=" + w.project + ";x":        "projectId",
			"/api/v1/chats?limit=5%":                             "limit",
			"/api/v1/chats?project%ZZId=" + w.project:            "query",
			"/api/v1/projects/" + w.project + "/usage?groupBy=":  "groupBy",
			"/api/v1/projects/" + w.project + "/usage?to=&from=": "from",
		} {
			r := h.call("GET", path, h.admin, nil)
			if r.Status != 400 || r.ErrorField() != field {
				t.Errorf("GET %s = %d %s, want 400 naming %s", path, r.Status, r.Body, field)
			}
		}
		// An empty cursor or limit is the first page of the default size.
		h.must(200, "GET", "/api/v1/chats?projectId="+w.project+"&cursor=&limit=", h.admin, nil)
		// An offset's + left unescaped reads as a space: the error says to send %2B.
		if r := h.call("GET", "/api/v1/projects/"+w.project+"/usage?from=2026-01-31T10:00:00+02:00", h.admin, nil); r.Status != 400 || !strings.Contains(r.ErrorMessage(), "%2B") {
			t.Errorf("from with an unescaped + = %d %s, want 400 saying to send %%2B", r.Status, r.Body)
		}

		// The other groupings, and the window.
		groups := func(query string) map[string]float64 {
			t.Helper()
			out := map[string]float64{}
			for _, d := range h.must(200, "GET", "/api/v1/projects/"+w.project+"/usage?"+query, h.admin, nil)["data"].([]any) {
				d := d.(map[string]any)
				key, _ := d["key"].(string) // no chat: a stateless completion
				out[key] = d["requests"].(float64)
			}
			return out
		}
		keys := h.must(200, "GET", "/api/v1/users/"+h.must(200, "GET", "/api/v1/me", h.admin, nil)["id"].(string)+"/api-keys", h.admin, nil)["data"].([]any)
		adminKey := keys[0].(map[string]any)["id"].(string)
		for query, want := range map[string]map[string]float64{
			"groupBy=provider": {w.provider: 4},
			"groupBy=chat":     {w.chat: 2, "": 2},
			"groupBy=key":      {adminKey: 4},
			"groupBy=outcome":  {"ok": 3, "upstream_error": 1}, // failures apart from successes
			"groupBy=model&from=" + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339):                                                                      {"fake-default": 2, "m2": 2},
			"groupBy=model&from=" + time.Now().Add(-3*time.Hour).UTC().Format(time.RFC3339) + "&to=" + time.Now().Add(-2*time.Hour).UTC().Format(time.RFC3339): {},
			"groupBy=model&to=" + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339):                                                                        {},
		} {
			if got := groups(query); !maps.Equal(got, want) {
				t.Errorf("usage?%s = %v, want %v", query, got, want)
			}
		}

		// The period summed comes back, defaults resolved.
		period := func(query string) (from, to string) {
			t.Helper()
			got := h.must(200, "GET", "/api/v1/projects/"+w.project+"/usage?"+query, h.admin, nil)
			return got["from"].(string), got["to"].(string)
		}
		if from, to := period("from=2026-01-01&to=2026-02-01T12:00:00Z"); from != "2026-01-01T00:00:00.000Z" || to != "2026-02-01T12:00:00.000Z" {
			t.Errorf("period asked for = %s to %s; want 2026-01-01T00:00:00.000Z to 2026-02-01T12:00:00.000Z", from, to)
		}
		// A time later than 9999 in UTC, through its offset, is refused:
		// the report could not give it back as an ISO 8601 time, and
		// SQLite, which keeps times as text, sorted it before every record.
		for q, field := range map[string]string{"from=2026-01-01&to=9999-12-31T23:00:00-05:00": "to", "from=9999-12-31T20:00:00-12:00&to=9999-12-31": "from"} {
			if r := h.call("GET", "/api/v1/projects/"+w.project+"/usage?"+q, h.admin, nil); r.Status != 400 || r.ErrorField() != field ||
				!strings.Contains(r.ErrorMessage(), "9999-12-31T23:59:59.999Z") {
				t.Errorf("usage?%s = %d %s; want 400 naming %s and the latest time", q, r.Status, r.Body, field)
			}
		}
		if got := groups("from=2026-01-01&to=9999-12-31T23:59:59.999Z"); !maps.Equal(got, map[string]float64{"": 4}) {
			t.Errorf("usage up to the latest time = %v, want the 4 completions", got)
		}
		// Before 1970 nothing was recorded: a period that ends by then is
		// empty, not a from that is not before its to.
		// Ungrouped, it is one zero total, as a later empty period is.
		if got := groups("from=2000-01-01&to=2000-01-02"); !maps.Equal(got, map[string]float64{"": 0}) {
			t.Errorf("usage of an empty period after 1970 = %v, want one zero total", got)
		}
		for _, q := range []string{"from=1960-01-01&to=1965-01-01", "to=1970-01-01", "from=0001-01-01&to=0001-01-02"} {
			if got := groups(q + "&groupBy=model"); len(got) != 0 {
				t.Errorf("usage?%s&groupBy=model = %v, want none", q, got)
			}
			if got := groups(q); !maps.Equal(got, map[string]float64{"": 0}) {
				t.Errorf("usage?%s = %v, want one zero total, as for an empty period after 1970", q, got)
			}
			if from, to := period(q); from != "1970-01-01T00:00:00.000Z" || to != from {
				t.Errorf("usage?%s period = %s to %s, want 1970-01-01 to 1970-01-01", q, from, to)
			}
		}
		// But a from after 1970 is not before a to before it: a 400, as for
		// any other from after its to, not an empty period.
		if r := h.call("GET", "/api/v1/projects/"+w.project+"/usage?from=2020-01-01&to=1960-01-01", h.admin, nil); r.Status != 400 || r.ErrorField() != "from" {
			t.Errorf("usage from 2020 to 1960 = %d %s; want 400 naming from", r.Status, r.Body)
		}
		// Both ends count to the millisecond: within one, from is not before to.
		if r := h.call("GET", "/api/v1/projects/"+w.project+"/usage?from=2026-01-01T00:00:00.0001Z&to=2026-01-01T00:00:00.0009Z", h.admin, nil); r.Status != 400 || !strings.Contains(r.ErrorMessage(), "millisecond") {
			t.Errorf("a period within one millisecond = %d %s; want 400 saying times count to the millisecond", r.Status, r.Body)
		}
		before := time.Now()
		from, to := period("")
		f, errF := time.Parse(time.RFC3339, from)
		u, errT := time.Parse(time.RFC3339, to)
		if errF != nil || errT != nil || u.Before(before.Truncate(time.Millisecond)) || u.After(time.Now().Add(2*time.Second)) || u.Sub(f) != 30*24*time.Hour {
			t.Errorf("default period = %s to %s; want the 30 days up to now", from, to)
		}
	})
}

// TestUsageReportPeriodIsSummed checks that the period a usage report
// gives back is the one it summed, to the millisecond of its times: an
// exporter that asks for the next period from the last one's "to" counts
// each record once, even one within the millisecond the times leave out.
func TestUsageReportPeriodIsSummed(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		at := t0.Add(500 * time.Microsecond) // within t0's millisecond
		if err := h.app.Store.InsertUsage(context.Background(), []domain.UsageRecord{{ID: domain.NewID(domain.PrefixMessage),
			ProjectID: w.project, Model: "m", Usage: domain.Usage{PromptTokens: 1, CompletionTokens: 1, TotalTokens: 2}, CreatedAt: at}}); err != nil {
			t.Fatal(err)
		}
		report := func(from, to string) (string, string, float64) {
			t.Helper()
			got := h.must(200, "GET", "/api/v1/projects/"+w.project+"/usage?from="+from+"&to="+to, h.admin, nil)
			return got["from"].(string), got["to"].(string), got["data"].([]any)[0].(map[string]any)["requests"].(float64)
		}
		cut := t0.Add(600 * time.Microsecond).Format(time.RFC3339Nano) // after the record, in the same millisecond
		_, to, first := report("2026-03-01", cut)
		from, _, second := report(to, "2026-03-02")
		if first+second != 1 {
			t.Errorf("usage up to %s (reported to %s) = %v requests, and from %s on = %v; want the record counted once in all",
				cut, to, first, from, second)
		}
		if end, err := time.Parse(time.RFC3339, to); err != nil || (first == 1) != end.After(at) {
			t.Errorf("usage up to %s = %v requests with a record at %s, but says it ends at %s", cut, first, at.Format(time.RFC3339Nano), to)
		}
	})
}

// TestUsageRecordFields reads the usage rows completions leave, with every
// field the issue lists: a per-chat completion, JSON and streamed, a
// stateless one, and the outcomes of the provider's refusal of a request
// and of a stream cut short.
func TestUsageRecordFields(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		uid := h.must(201, "POST", "/api/v1/users", h.admin, map[string]any{"name": "alice"})["id"].(string)
		k := h.must(201, "POST", "/api/v1/users/"+uid+"/api-keys", h.admin, map[string]any{"name": "laptop"})
		keyID, key := k["id"].(string), k["key"].(string)
		h.setRole(h.admin, w.project, uid, "editor")
		path := "/api/v1/chats/" + w.chat + "/completions"
		ask := func(stream bool) map[string]any {
			return map[string]any{"stream": stream, "messages": []any{userMessage("one two three")}}
		}

		h.up.Enqueue(llmtest.Behavior{Delay: 30 * time.Millisecond})
		conv := h.must(200, "POST", path, key, ask(false))["conversationId"].(string)
		if r := h.call("POST", path, key, ask(true)); r.Status != 200 || !strings.HasSuffix(string(r.Body), "data: [DONE]\n\n") {
			t.Fatalf("stream = %d %s", r.Status, r.Body)
		}
		stateless := ask(false)
		stateless["aiProviderId"] = w.provider
		h.must(200, "POST", "/api/v1/chats/completions", key, stateless)
		// Its message says "truncated", but the outcome is the provider's
		// refusal: a truncated reply is told apart by its cause, not a word.
		h.up.Enqueue(llmtest.Behavior{Status: 400, Body: `{"error":{"message":"the prompt was truncated","type":"invalid_request_error"}}`})
		if r := h.call("POST", path, key, ask(false)); r.Status != 400 || !strings.Contains(r.ErrorMessage(), "truncated") {
			t.Fatalf("upstream 400 = %d %s, want a 400 passing on its message", r.Status, r.Body)
		}
		h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultTruncate, AfterDeltas: 2})
		if r := h.call("POST", path, key, ask(true)); r.Status != 200 {
			t.Fatalf("cut stream = %d %s", r.Status, r.Body)
		}
		h.app.FlushUsage()

		type record struct {
			ChatID, ConversationID, Model, UserID, KeyID, Outcome          string
			AIProviderID                                                   string `gorm:"column:ai_provider_id"`
			PromptTokens, CompletionTokens, TotalTokens, LatencyMs, TtftMs int64
			Stream                                                         bool
		}
		var rows []record
		if err := h.app.Store.DB().Raw(`SELECT chat_id, conversation_id, ai_provider_id, model, user_id, key_id, outcome,
			prompt_tokens, completion_tokens, total_tokens, latency_ms, ttft_ms, stream
			FROM usage_records WHERE project_id = ? ORDER BY created_at, id`, w.project).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if len(rows) != 5 {
			t.Fatalf("%d usage records, want 5: %+v", len(rows), rows)
		}
		for i, r := range rows {
			if r.AIProviderID != w.provider || r.Model != "fake-default" || r.UserID != uid || r.KeyID != keyID {
				t.Errorf("record %d names provider %s, model %s, user %s, key %s", i, r.AIProviderID, r.Model, r.UserID, r.KeyID)
			}
			if r.LatencyMs < r.TtftMs {
				t.Errorf("record %d: latency %dms is under its time to first token %dms", i, r.LatencyMs, r.TtftMs)
			}
		}
		json, streamed, noChat, failed, cut := rows[0], rows[1], rows[2], rows[3], rows[4]
		if json.ChatID != w.chat || json.ConversationID != conv || json.Outcome != "ok" || json.Stream {
			t.Errorf("JSON completion: %+v", json)
		}
		if json.PromptTokens <= 0 || json.CompletionTokens <= 0 || json.TotalTokens != json.PromptTokens+json.CompletionTokens {
			t.Errorf("JSON completion tokens: %+v", json)
		}
		if json.TtftMs < 30 {
			t.Errorf("time to first token %dms, but the upstream waited 30ms", json.TtftMs)
		}
		if streamed.ChatID != w.chat || streamed.Outcome != "ok" || !streamed.Stream || streamed.CompletionTokens <= 0 {
			t.Errorf("streamed completion: %+v", streamed)
		}
		if noChat.ChatID != "" || noChat.ConversationID != "" || noChat.Outcome != "ok" {
			t.Errorf("stateless completion: %+v", noChat)
		}
		if failed.Outcome != "upstream_refused" || failed.ChatID != w.chat || failed.CompletionTokens != 0 {
			t.Errorf("failed completion: %+v", failed)
		}
		if cut.Outcome != "truncated" || !cut.Stream {
			t.Errorf("cut stream: %+v", cut)
		}
	})
}

// TestLimitsRoundTrip: what a GET of limits gives can be PUT back changed,
// its output-only projectId and updatedAt (null before any PUT) with it;
// a projectId that is not the path's is a 400 that changes nothing.
func TestLimitsRoundTrip(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/projects/" + w.project + "/limits"
		got := h.must(200, "GET", path, h.admin, nil)
		if got["updatedAt"] != nil || got["projectId"] != w.project {
			t.Fatalf("limits never set = %v", got)
		}
		got["requestsPerMinute"] = 7
		if l := h.must(200, "PUT", path, h.admin, got); l["requestsPerMinute"] != 7.0 || l["updatedAt"] == nil {
			t.Errorf("GET's body PUT back = %v", l)
		}
		got = h.must(200, "GET", path, h.admin, nil)
		got["keyRequestsPerMinute"] = 3
		if l := h.must(200, "PUT", path, h.admin, got); l["requestsPerMinute"] != 7.0 || l["keyRequestsPerMinute"] != 3.0 {
			t.Errorf("GET's body with updatedAt PUT back = %v", l)
		}
		got["projectId"] = nil // what a client's model of the body may send
		if l := h.must(200, "PUT", path, h.admin, got); l["keyRequestsPerMinute"] != 3.0 {
			t.Errorf("a null projectId = %v", l)
		}
		other := h.world()
		got["projectId"] = other.project
		got["requestsPerMinute"] = 1
		r := h.call("PUT", path, h.admin, got)
		if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "projectId must be the project in the path ("+w.project+")") {
			t.Errorf("another project's id = %d %s, want 400", r.Status, r.Body)
		}
		if l := h.must(200, "GET", path, h.admin, nil); l["requestsPerMinute"] != 7.0 {
			t.Errorf("a refused PUT changed the limits: %v", l)
		}
		// A caller who is no member gets the 404 it gets without projectId,
		// and a member who may not set limits the 403.
		_, stranger := h.user("stranger")
		if r := h.call("PUT", path, stranger, got); r.Status != 404 {
			t.Errorf("a stranger's PUT with another projectId = %d %s, want 404", r.Status, r.Body)
		}
		uid, viewer := h.user("viewer")
		h.setRole(h.admin, w.project, uid, "viewer")
		if r := h.call("PUT", path, viewer, got); r.Status != 403 || r.ErrorCode() != "forbidden" {
			t.Errorf("a viewer's PUT with another projectId = %d %s, want 403", r.Status, r.Body)
		}

		// The limits as they are, sent again, keep their updatedAt.
		same := h.must(200, "GET", path, h.admin, nil)
		time.Sleep(2 * time.Millisecond) // a new updatedAt would differ
		if l := h.must(200, "PUT", path, h.admin, same); l["updatedAt"] != same["updatedAt"] {
			t.Errorf("an unchanged PUT moved updatedAt from %v to %v", same["updatedAt"], l["updatedAt"])
		}
		if l := h.must(200, "GET", path, h.admin, nil); l["updatedAt"] != same["updatedAt"] {
			t.Errorf("an unchanged PUT stored updatedAt %v, was %v", l["updatedAt"], same["updatedAt"])
		}
		same["requestsPerMinute"] = 8
		if l := h.must(200, "PUT", path, h.admin, same); l["updatedAt"] == same["updatedAt"] {
			t.Errorf("a changed PUT kept updatedAt %v", l["updatedAt"])
		}
	})
}

func TestRateLimits(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		uid, key := h.user("limited")
		h.setRole(h.admin, w.project, uid, "editor")
		if r := h.call("PUT", "/api/v1/projects/"+w.project+"/limits", key, map[string]any{"keyRequestsPerMinute": 1}); r.Status != 403 {
			t.Errorf("an editor setting limits = %d, want 403", r.Status)
		}
		if r := h.call("PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"keyRequestsPerMinute": -1}); r.Status != 400 {
			t.Errorf("a negative limit = %d, want 400", r.Status)
		}
		// Past 32 bits: a 400 naming the field on both engines (PostgreSQL
		// answered 500, SQLite stored it).
		for _, v := range []int64{math.MaxInt32 + 1, math.MaxInt64} {
			r := h.call("PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 5, "tokensPerMinute": v})
			if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "tokensPerMinute must be 0 (no limit) or a positive integer up to 2147483647") {
				t.Errorf("tokensPerMinute %d = %d %s, want 400", v, r.Status, r.Body)
			}
		}
		if l := h.must(200, "GET", "/api/v1/projects/"+w.project+"/limits", h.admin, nil); l["requestsPerMinute"] != 0.0 {
			t.Errorf("a refused PUT changed the limits: %v", l)
		}
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"tokensPerMinute": math.MaxInt32})
		// A null is no number: read as left out, it lifted the limit.
		r := h.call("PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 5, "tokensPerMinute": nil})
		if r.Status != 400 || !strings.Contains(r.ErrorMessage(), `field "tokensPerMinute" cannot be null; send a number, 0 for no limit`) {
			t.Errorf("tokensPerMinute null = %d %s, want 400", r.Status, r.Body)
		}
		if l := h.must(200, "GET", "/api/v1/projects/"+w.project+"/limits", h.admin, nil); l["tokensPerMinute"] != float64(math.MaxInt32) {
			t.Errorf("a refused PUT changed the limits: %v", l)
		}
		l := h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"keyRequestsPerMinute": 2})
		if l["keyRequestsPerMinute"] != 2.0 {
			t.Errorf("limits = %v", l)
		}
		body := map[string]any{"messages": []any{userMessage("hi")}}
		path := "/api/v1/chats/" + w.chat + "/completions"
		for range 2 {
			h.must(200, "POST", path, key, body)
		}
		r = h.call("POST", path, key, body)
		if r.Status != 429 || r.ErrorCode() != "rate_limited" {
			t.Fatalf("third request = %d %s, want 429", r.Status, r.Body)
		}
		for _, hdr := range []string{"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
			if r.Header.Get(hdr) == "" {
				t.Errorf("429 lacks %s", hdr)
			}
		}
		if got := r.Header.Get("RateLimit-Limit"); got != "2" {
			t.Errorf("RateLimit-Limit = %q, want 2", got)
		}
		if got, want := r.Header.Get("RateLimit-Policy"), `2;w=60;comment="key-requests-per-minute"`; got != want {
			t.Errorf("RateLimit-Policy = %q, want %q", got, want)
		}
		// The limit is per key: the admin's key is not counted against it.
		h.must(200, "POST", path, h.admin, body)
	})
}

// TestLimitBudgets runs each of a project's per-minute budgets to its end
// over REST: the refusal names the budget in its RateLimit-* headers and
// in the error's details, and another project is not affected.
func TestLimitBudgets(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		for _, c := range []struct {
			limits  map[string]any
			allowed int // completions that pass before the refusal
			name    string
			limit   int
		}{
			{map[string]any{"requestsPerMinute": 2}, 2, "project-requests-per-minute", 2},
			{map[string]any{"tokensPerMinute": 1}, 1, "project-tokens-per-minute", 1},
			{map[string]any{"keyTokensPerMinute": 1}, 1, "key-tokens-per-minute", 1},
		} {
			t.Run(c.name, func(t *testing.T) {
				w := h.world()
				h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, c.limits)
				path := "/api/v1/chats/" + w.chat + "/completions"
				body := map[string]any{"messages": []any{userMessage("one two three")}}
				used := 0
				for range c.allowed {
					u, _ := h.must(200, "POST", path, h.admin, body)["usage"].(map[string]any)["total_tokens"].(float64)
					used = int(u)
				}
				// What a completion used past a token limit waits in the
				// minutes after, c.limit in each: the refusal names the
				// first minute with room.
				carried := 0
				if strings.HasSuffix(c.name, "-tokens-per-minute") {
					carried = min(used-c.limit, 60)
				}
				r := h.call("POST", path, h.admin, body)
				if r.Status != 429 || r.ErrorCode() != "rate_limited" {
					t.Fatalf("= %d %s, want 429 rate_limited", r.Status, r.Body)
				}
				if got, want := r.Header.Get("RateLimit-Policy"), fmt.Sprintf("%d;w=60;comment=%q", c.limit, c.name); got != want {
					t.Errorf("RateLimit-Policy = %q, want %q", got, want)
				}
				reset, _ := strconv.Atoi(r.Header.Get("RateLimit-Reset"))
				retry, _ := strconv.Atoi(r.Header.Get("Retry-After"))
				if r.Header.Get("RateLimit-Limit") != strconv.Itoa(c.limit) || r.Header.Get("RateLimit-Remaining") != "0" ||
					reset < 60*carried+1 || reset > 60*carried+60 || retry != reset {
					t.Errorf("RateLimit-Limit %q, -Remaining %q, -Reset %q, Retry-After %q", r.Header.Get("RateLimit-Limit"),
						r.Header.Get("RateLimit-Remaining"), r.Header.Get("RateLimit-Reset"), r.Header.Get("Retry-After"))
				}
				d, _ := r.JSON()["error"].(map[string]any)["details"].(map[string]any)
				if d["limitName"] != c.name || d["limit"] != float64(c.limit) || d["remaining"] != 0.0 || d["resetSeconds"] != float64(reset) {
					t.Errorf("error details = %v; want resetSeconds %d", d, reset)
				}
				if msg := r.ErrorMessage(); (carried > 0) != strings.Contains(msg, "count in the minutes after") {
					t.Errorf("message %q; want it to say why the wait is past this minute when it is (%d minutes carried)", msg, carried)
				}
				// Another project's budget is its own.
				other := h.world()
				h.must(200, "POST", "/api/v1/chats/"+other.chat+"/completions", h.admin, body)
			})
		}
	})
}

func TestConcurrentStreamsPerKey(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		uid, key := h.user("streamer")
		h.setRole(h.admin, w.project, uid, "editor")
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"concurrentStreamsPerKey": 1})
		path := "/api/v1/chats/" + w.chat + "/completions"
		open := func(ctx context.Context, k string) *http.Response {
			t.Helper()
			return streamAs(t, h, ctx, k, path, map[string]any{"messages": []any{userMessage("a b c")}})
		}

		// The first stream holds the key's one slot while the upstream hangs.
		h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 1})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		firstN := h.up.Count()
		first := open(ctx, key)
		if _, err := first.Body.Read(make([]byte, 256)); err != nil || first.StatusCode != 200 {
			t.Fatalf("first stream = %d, %v", first.StatusCode, err)
		}

		second := h.call("POST", path, key, map[string]any{"stream": true, "messages": []any{userMessage("more")}})
		if second.Status != 429 || second.ErrorCode() != "rate_limited" {
			t.Fatalf("second stream = %d %s, want 429 rate_limited", second.Status, second.Body)
		}
		if got := second.Header.Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After = %q, want 1", got)
		}
		if got, want := second.Header.Get("RateLimit-Policy"), `1;comment="key-concurrent-streams"`; got != want {
			t.Errorf("RateLimit-Policy = %q, want %q", got, want)
		}
		// Another key, and a non-streamed completion, are not counted.
		if r := h.call("POST", path, h.admin, map[string]any{"stream": true, "messages": []any{userMessage("admin")}}); r.Status != 200 {
			t.Errorf("another key's stream = %d %s, want 200", r.Status, r.Body)
		}
		h.must(200, "POST", path, key, map[string]any{"messages": []any{userMessage("not streamed")}})

		// Closing the first stream gives the slot back.
		cancel()
		first.Body.Close()
		if !h.up.WaitCanceledN(firstN, time.Second) {
			t.Fatal("the upstream did not see the first stream's cancellation")
		}
		var status int
		for range 100 { // the handler releases the slot as it returns
			res := open(context.Background(), key)
			status = res.StatusCode
			res.Body.Close()
			if status == 200 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if status != 200 {
			t.Errorf("a stream after the first closed = %d, want 200", status)
		}
	})
}

// heldStream opens a stream in path as key whose upstream hangs after its
// first delta, and reads that delta: the stream holds its slots until
// cancel. firstN is the upstream's count of requests before it.
func heldStream(t *testing.T, h *harness, key, path string) (first *http.Response, cancel func(), firstN int) {
	t.Helper()
	h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 1})
	ctx, cancel := context.WithCancel(context.Background())
	firstN = h.up.Count()
	first = streamAs(t, h, ctx, key, path, map[string]any{"messages": []any{userMessage("a b c")}})
	if _, err := first.Body.Read(make([]byte, 256)); err != nil || first.StatusCode != 200 {
		cancel()
		t.Fatalf("first stream = %d, %v", first.StatusCode, err)
	}
	return first, cancel, firstN
}

// TestConcurrentStreamsOfTheProject: the project's limit of open streams
// holds whatever key a stream comes with: a member who makes a second key
// for itself gets no second stream, and the refusal names the project's
// limit. A key's own limit still applies beside it; the slot of a stream
// refused by the key's limit is given back to the project.
func TestConcurrentStreamsOfTheProject(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		uid, key := h.user("streamer")
		h.setRole(h.admin, w.project, uid, "editor")
		second := h.must(201, "POST", "/api/v1/users/"+uid+"/api-keys", key, map[string]any{"name": "another"})["key"].(string)
		l := h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"concurrentStreams": 1, "concurrentStreamsPerKey": 1})
		if l["concurrentStreams"] != 1.0 {
			t.Fatalf("limits = %v", l)
		}
		path := "/api/v1/chats/" + w.chat + "/completions"
		body := map[string]any{"stream": true, "messages": []any{userMessage("more")}}

		first, cancel, firstN := heldStream(t, h, key, path)
		defer cancel()
		for _, k := range []string{second, h.admin} {
			r := h.call("POST", path, k, body)
			if r.Status != 429 || r.Header.Get("RateLimit-Policy") != `1;comment="project-concurrent-streams"` ||
				!strings.Contains(r.ErrorMessage(), "too many open streams for this project (max 1)") {
				t.Errorf("another key's stream = %d %s (RateLimit-Policy %q), want a 429 of the project's limit", r.Status, r.Body, r.Header.Get("RateLimit-Policy"))
			}
		}
		h.must(200, "POST", path, second, map[string]any{"messages": []any{userMessage("not streamed")}})
		cancel()
		first.Body.Close()
		if !h.up.WaitCanceledN(firstN, time.Second) {
			t.Fatal("the upstream did not see the first stream's cancellation")
		}

		// The key's limit refuses a second stream of the key; the project's
		// slot it took goes back, so another key's stream goes.
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"concurrentStreams": 2, "concurrentStreamsPerKey": 1})
		h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 1})
		ctx2, cancel2 := context.WithCancel(context.Background())
		defer cancel2()
		var held *http.Response
		for range 100 { // the handler of the first releases its slots as it returns
			held = streamAs(t, h, ctx2, key, path, map[string]any{"messages": []any{userMessage("again")}})
			if held.StatusCode == 200 {
				break
			}
			held.Body.Close()
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := held.Body.Read(make([]byte, 256)); err != nil || held.StatusCode != 200 {
			t.Fatalf("held stream = %d, %v", held.StatusCode, err)
		}
		if r := h.call("POST", path, key, body); r.Status != 429 || r.Header.Get("RateLimit-Policy") != `1;comment="key-concurrent-streams"` {
			t.Errorf("the key's second stream = %d %s, want a 429 of the key's limit", r.Status, r.Body)
		}
		if r := h.call("POST", path, second, body); r.Status != 200 {
			t.Errorf("another key's stream = %d %s, want 200: the refused stream's project slot given back", r.Status, r.Body)
		}
		cancel2()
		held.Body.Close()
	})
}

// TestChatDeletedDuringCompletion: a chat, or its project, deleted while
// a first turn in it runs on this instance stops that completion with a
// 404 naming what was deleted (the turn has nowhere to go), not a 400
// blaming a field the caller did not send, nor the whole reply first.
func TestChatDeletedDuringCompletion(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		for _, deleted := range []string{"chat", "project"} {
			for _, stream := range []bool{false, true} {
				w := h.world()
				id, del := w.chat, "/api/v1/chats/"+w.chat
				if deleted == "project" {
					id, del = w.project, "/api/v1/projects/"+w.project
				}
				r := deletedMidway(t, h, "/api/v1/chats/"+w.chat+"/completions", map[string]any{"messages": []any{userMessage("hi")}}, stream,
					func() { h.must(200, "DELETE", del, h.admin, nil) })
				wasDeleted(t, r, stream, deleted, id)
			}
		}
	})
}

// TestStreamRefusalCountsNoRequest: a stream refused because the key's
// stream slots are all taken ran no completion, so it must not use up the
// key's requests per minute (a client retrying a busy slot would lock
// itself out for the rest of the minute).
func TestStreamRefusalCountsNoRequest(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		// Counters are per minute: a new minute mid-test would pass it
		// without the fix, so it starts in the same minute it ends in.
		if s := time.Now().Second(); s >= 55 {
			time.Sleep(time.Duration(61-s) * time.Second)
		}
		w := h.world()
		uid, key := h.user("streamer")
		h.setRole(h.admin, w.project, uid, "editor")
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin,
			map[string]any{"keyRequestsPerMinute": 2, "concurrentStreamsPerKey": 1})
		path := "/api/v1/chats/" + w.chat + "/completions"

		first, cancel, firstN := heldStream(t, h, key, path)
		defer cancel()
		for range 3 {
			r := h.call("POST", path, key, map[string]any{"stream": true, "messages": []any{userMessage("more")}})
			if got := r.Header.Get("RateLimit-Policy"); r.Status != 429 || got != `1;comment="key-concurrent-streams"` {
				t.Fatalf("second stream = %d %s (%s), want 429 for the stream slot", r.Status, got, r.Body)
			}
		}
		cancel()
		first.Body.Close()
		if !h.up.WaitCanceledN(firstN, time.Second) {
			t.Fatal("the upstream did not see the first stream's cancellation")
		}
		// One completion ran; the key may run a second this minute.
		if r := h.call("POST", path, key, map[string]any{"messages": []any{userMessage("second")}}); r.Status != 200 {
			t.Errorf("the key's second completion this minute = %d %s %s, want 200", r.Status, r.Header.Get("RateLimit-Policy"), r.Body)
		}
	})
}

// TestUpstreamFailureLoggedAtWarn: a provider that refuses its key, fails
// or times out is the operator's to know of, at the default level, for a
// JSON completion as for a stream (whose failure after its headers is a
// warning too); a request the caller must fix stays a debug line.
func TestUpstreamFailureLoggedAtWarn(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	h.up.Enqueue(llmtest.Behavior{Status: 401, Body: `{"error":{"message":"bad key"}}`})
	if r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("x")}}); r.Status != 502 {
		t.Fatalf("completion with a refused key = %d %s, want 502", r.Status, r.Body)
	}
	if r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{}}); r.Status != 400 {
		t.Fatalf("completion without messages = %d %s, want 400", r.Status, r.Body)
	}
	var upstream, refused string
	for _, line := range strings.Split(h.finalLogs(), "\n") {
		switch {
		case strings.Contains(line, "kind=upstream"):
			upstream = line
		case strings.Contains(line, "kind=invalid"):
			refused = line
		}
	}
	if !strings.Contains(upstream, "level=WARN") || !strings.Contains(upstream, `msg="upstream failed"`) {
		t.Errorf("the upstream's refusal logged as %q, want a warning", upstream)
	}
	if !strings.Contains(refused, "level=DEBUG") {
		t.Errorf("the caller's invalid request logged as %q, want a debug line", refused)
	}
}

// TestStoppedStreamKeepsItsTurn: a client that stops a chat's stream (the
// "stop generating" of a chat UI: it closes the connection) keeps the turn
// as far as it went: the conversationId of the first chunk names a stored
// conversation, whose reply is the text that had arrived with the finish
// reason client_disconnect, and a continuation sends that history upstream.
// A JSON request the client abandons handed out nothing and stores nothing.
func TestStoppedStreamKeepsItsTurn(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		for _, c := range []struct{ name, chat string }{{"openai", w.openaiChat}, {"anthropic", w.anthropicChat}} {
			t.Run(c.name, func(t *testing.T) {
				path := "/api/v1/chats/" + c.chat + "/completions"
				h.up.Enqueue(llmtest.Behavior{Deltas: []string{"Once ", "upon ", "a time"}, Fault: llmtest.FaultHang, AfterDeltas: 2})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				before := h.up.Count()
				res := streamCtx(t, h, ctx, path, map[string]any{"messages": []any{userMessage("Tell me a story")}})
				var got strings.Builder
				conv := readSSEUntil(t, res, func(ev sseEvent) bool {
					for _, c := range ev.data["choices"].([]any) {
						if text, ok := c.(map[string]any)["delta"].(map[string]any)["content"].(string); ok {
							got.WriteString(text)
						}
					}
					return strings.Contains(got.String(), "upon ")
				})
				if conv == "" || got.String() != "Once upon " {
					t.Fatalf("before the stop: conversationId %q, text %q", conv, got.String())
				}
				cancel()
				res.Body.Close()
				if !h.up.WaitCanceledN(before, time.Second) {
					t.Fatal("the upstream did not see the cancellation within a second")
				}

				stored := storedAfterStop(t, h, conv)
				if len(stored) != 2 || stored[0].(map[string]any)["content"] != "Tell me a story" ||
					stored[1].(map[string]any)["role"] != "assistant" || stored[1].(map[string]any)["content"] != "Once upon " ||
					stored[1].(map[string]any)["finishReason"] != "client_disconnect" {
					t.Fatalf("stored turn: %v", stored)
				}

				h.must(200, "POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("Go on")}})
				var sent []string
				for _, m := range h.up.Last().Messages {
					if m.Role != "system" {
						sent = append(sent, m.Role+": "+m.Content)
					}
				}
				if want := []string{"user: Tell me a story", "assistant: Once upon ", "user: Go on"}; !slices.Equal(sent, want) {
					t.Errorf("the continuation sent upstream %q, want %q", sent, want)
				}
			})
		}

		t.Run("JSON", func(t *testing.T) {
			h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
			ctx, cancel := context.WithCancel(context.Background())
			before := h.up.Count()
			records := func() (n int64) {
				h.app.FlushUsage()
				if err := h.app.Store.DB().Raw("SELECT count(*) FROM usage_records WHERE chat_id = ?", w.openaiChat).Row().Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			recorded := records()
			b, _ := json.Marshal(map[string]any{"messages": []any{userMessage("Tell me a story")}})
			req, _ := http.NewRequestWithContext(ctx, "POST", h.srv.URL+"/api/v1/chats/"+w.openaiChat+"/completions", bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+h.admin)
			req.Header.Set("Content-Type", "application/json")
			go func() {
				for h.up.Count() == before {
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
			}()
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
				t.Fatalf("the abandoned request answered %s", res.Status)
			}
			if !h.up.WaitCanceledN(before, time.Second) {
				t.Fatal("the upstream did not see the cancellation within a second")
			}
			// The handler's end: it records the usage last.
			for deadline := time.Now().Add(5 * time.Second); records() == recorded; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the abandoned request's usage was not recorded within 5s")
				}
			}
			// The two stopped streams' conversations, and no third.
			if l := h.must(200, "GET", "/api/v1/conversations?chatId="+w.openaiChat, h.admin, nil)["data"].([]any); len(l) != 1 {
				t.Errorf("conversations of the chat after an abandoned JSON request: %d, want the stopped stream's 1", len(l))
			}
		})
	})
}

// TestUsageIsTheProvidersCount: for each wire protocol, stateless and per
// chat, JSON and streamed, and after a 5xx the call retried, the usage
// report and the tokens/min limit count exactly the tokens the provider
// reported, once: a retried attempt adds nothing. A completion the
// provider refused (a 4xx; 5xx until the retries ran out) is a request of
// no tokens, in the report and in the limit alike.
func TestUsageIsTheProvidersCount(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.anthropicWorld()
		const limit = 1_000_000
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"tokensPerMinute": limit})
		reported := llmtest.Usage{PromptTokens: 13, CompletionTokens: 7}
		var wantPrompt, wantCompletion, wantRequests, okRequests int
		chats := map[string]int{}
		for _, p := range []struct{ id, chat string }{{w.openai, w.openaiChat}, {w.anthropic, w.anthropicChat}} {
			for _, stateless := range []bool{false, true} {
				for _, stream := range []bool{false, true} {
					for _, c := range []struct {
						name  string
						plays []llmtest.Behavior
						ok    bool
					}{
						{"plain", []llmtest.Behavior{{Usage: &reported}}, true},
						{"after a 5xx", []llmtest.Behavior{{Status: 503}, {Usage: &reported}}, true},
						{"refused", []llmtest.Behavior{{Status: 400}}, false},
					} {
						body := map[string]any{"stream": stream, "messages": []any{userMessage("one two three")}}
						path, chat := "/api/v1/chats/"+p.chat+"/completions", p.chat
						if stateless {
							body["aiProviderId"], path, chat = p.id, "/api/v1/chats/completions", ""
						}
						h.up.Enqueue(c.plays...)
						r := h.call("POST", path, h.admin, body)
						if got, want := r.Status == 200, c.ok; got != want {
							t.Fatalf("%s stateless=%v stream=%v %s = %d %s", p.id, stateless, stream, c.name, r.Status, r.Body)
						}
						wantRequests++
						chats[chat]++
						if c.ok {
							okRequests++
							wantPrompt += reported.PromptTokens
							wantCompletion += reported.CompletionTokens
						}
					}
				}
			}
		}
		h.app.FlushUsage()
		total := wantPrompt + wantCompletion
		for _, groupBy := range []string{"provider", "chat", "key", "outcome", "day"} {
			got := h.must(200, "GET", "/api/v1/projects/"+w.project+"/usage?groupBy="+groupBy+"&from=2026-01-01", h.admin, nil)
			var prompt, completion, sum, requests float64
			for _, d := range got["data"].([]any) {
				d := d.(map[string]any)
				prompt += d["promptTokens"].(float64)
				completion += d["completionTokens"].(float64)
				sum += d["totalTokens"].(float64)
				requests += d["requests"].(float64)
				if groupBy == "chat" {
					key, _ := d["key"].(string)
					if d["requests"] != float64(chats[key]) {
						t.Errorf("usage by chat, %q: %v requests, want %d", key, d["requests"], chats[key])
					}
				}
				if today := time.Now().UTC().Format(time.DateOnly); groupBy == "day" && d["key"] != today && d["key"] != time.Now().UTC().Add(-time.Hour).Format(time.DateOnly) {
					t.Errorf("usage by day: a group %v; want today's, %s (or yesterday's, at midnight)", d["key"], today)
				}
				if groupBy == "outcome" && d["key"] == "upstream_error" && d["totalTokens"] != 0.0 {
					t.Errorf("refused completions count %v tokens, want 0", d["totalTokens"])
				}
			}
			if int(prompt) != wantPrompt || int(completion) != wantCompletion || int(sum) != total || int(requests) != wantRequests {
				t.Errorf("usage by %s: %v prompt, %v completion, %v total tokens in %v requests; want %d, %d, %d in %d",
					groupBy, prompt, completion, sum, requests, wantPrompt, wantCompletion, total, wantRequests)
			}
		}
		// The tokens/min limit counted those tokens, no more: a completion's
		// RateLimit-Remaining is what is left with its own reservation, its
		// estimated prompt ("x": one token, and four for the message).
		r := h.call("POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.openai, "messages": []any{userMessage("x")}})
		if got, want := r.Header.Get("RateLimit-Remaining"), strconv.Itoa(limit-total-5); r.Status != 200 || got != want {
			t.Errorf("tokens left after %d completions of %d tokens = %q (status %d), want %s", okRequests, reported.PromptTokens+reported.CompletionTokens, got, r.Status, want)
		}
	})
}

// TestUsageOfAStreamBrokenBeforeItsFirstDelta: a stream the provider had
// answered 200 and that broke before its first delta was recorded with no
// tokens, though its prompt was sent and may be billed; it is estimated,
// as a stream that broke later is. A connection dropped before any answer
// (retried, then a 502) counts none.
func TestUsageOfAStreamBrokenBeforeItsFirstDelta(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		body := map[string]any{"stream": true, "messages": []any{userMessage("a b c d e f")}}
		h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultReset})
		if r := h.call("POST", path, h.admin, body); !strings.Contains(string(r.Body), "upstream_error") {
			t.Fatalf("a stream reset after its headers = %d %s, want an upstream_error", r.Status, r.Body)
		}
		h.up.Script(func(int, llmtest.Request) llmtest.Behavior { return llmtest.Behavior{Fault: llmtest.FaultDrop} })
		if r := h.call("POST", path, h.admin, body); r.Status != 502 {
			t.Fatalf("a connection dropped before any answer = %d %s, want 502", r.Status, r.Body)
		}
		h.app.FlushUsage()
		var recs []struct {
			PromptTokens, CompletionTokens int64
		}
		if err := h.app.Store.DB().Raw("SELECT prompt_tokens, completion_tokens FROM usage_records WHERE chat_id = ? AND outcome = ? ORDER BY created_at, id",
			w.chat, "upstream_error").Scan(&recs).Error; err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 {
			t.Fatalf("%d upstream_error records, want 2", len(recs))
		}
		if recs[0].PromptTokens <= 0 || recs[0].CompletionTokens != 0 {
			t.Errorf("the stream reset after its headers recorded %+v, want an estimated prompt and no completion", recs[0])
		}
		if recs[1].PromptTokens != 0 || recs[1].CompletionTokens != 0 {
			t.Errorf("the call never answered recorded %+v, want no tokens", recs[1])
		}
	})
}

// TestUsageOfAWholeReplyLost: a JSON completion the provider answered 200
// whose body was cut off, or went over its cap, had its reply generated,
// and billed, all the same: its prompt is estimated (and so counted
// against the token limits), as a broken stream's is. A 200 whose body
// came whole but holds no reply (an error object, with or without a
// message, however long; an HTML page) counts none.
func TestUsageOfAWholeReplyLost(t *testing.T) {
	eachWith(t, func(c *app.Config) { c.LLM.MaxResponseBytes = 64 << 10 }, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		body := map[string]any{"messages": []any{userMessage("a b c d e f")}}
		jsonBody := func(b string) llmtest.Behavior {
			return llmtest.Behavior{Body: b, Header: http.Header{"Content-Type": {"application/json"}}}
		}
		for _, c := range []struct {
			name     string
			behavior llmtest.Behavior
			counted  bool
		}{
			{"cut half-way", llmtest.Behavior{Fault: llmtest.FaultTruncate}, true},
			{"over its cap", llmtest.Behavior{Fault: llmtest.FaultOversizedLine, Size: 1 << 20}, true},
			{"an error object", llmtest.Behavior{Fault: llmtest.FaultStreamError}, false},
			{"an error object without a message", jsonBody(`{"error":{"code":502,"type":"upstream_error"}}`), false},
			{"a long error object", jsonBody(`{"error":{"message":"Provider returned error","metadata":{"raw":"` + strings.Repeat("x", 1200) + `"}}}`), false},
			{"an HTML page", llmtest.Behavior{Body: "<!doctype html><html><body>Welcome to nginx!</body></html>", Header: http.Header{"Content-Type": {"text/html"}}}, false},
		} {
			h.up.Enqueue(c.behavior)
			if r := h.call("POST", path, h.admin, body); r.Status != 502 {
				t.Fatalf("%s = %d %s, want 502", c.name, r.Status, r.Body)
			}
			h.app.FlushUsage()
			var rec struct{ PromptTokens, CompletionTokens int64 }
			if err := h.app.Store.DB().Raw("SELECT prompt_tokens, completion_tokens FROM usage_records WHERE chat_id = ? AND outcome = ? ORDER BY created_at DESC, id DESC LIMIT 1",
				w.chat, "upstream_error").Scan(&rec).Error; err != nil {
				t.Fatal(err)
			}
			if (rec.PromptTokens > 0) != c.counted || rec.CompletionTokens != 0 {
				t.Errorf("%s recorded %+v; want its prompt estimated: %v", c.name, rec, c.counted)
			}
		}
	})
}

// TestRefusedBeforeTheProviderCountsNothing: a request the provider's
// adapter refuses before any call (here a message list Anthropic cannot
// be sent) is a 400 that counts against no limit and leaves no usage
// record, as every request refused before a call upstream.
func TestRefusedBeforeTheProviderCountsNothing(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		aw := h.anthropicWorld()
		h.must(200, "PUT", "/api/v1/projects/"+aw.project+"/limits", h.admin, map[string]any{"keyRequestsPerMinute": 1, "requestsPerMinute": 1})
		path := "/api/v1/chats/" + aw.anthropicChat + "/completions"
		n := h.up.Count()
		for range 3 {
			r := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("  \n")}})
			if r.Status != 400 || r.ErrorField() != "messages" || r.Header.Get("RateLimit-Remaining") != "" {
				t.Fatalf("a message list Anthropic cannot be sent = %d %s (RateLimit-Remaining %q), want a 400 naming messages, counted nowhere",
					r.Status, r.Body, r.Header.Get("RateLimit-Remaining"))
			}
		}
		if h.up.Count() != n {
			t.Errorf("the upstream got %d requests, want none", h.up.Count()-n)
		}
		r := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("hi")}})
		if r.Status != 200 || r.Header.Get("RateLimit-Remaining") != "0" {
			t.Errorf("the first request that goes = %d %s (RateLimit-Remaining %q), want 200 with the limit's one request left to it", r.Status, r.Body, r.Header.Get("RateLimit-Remaining"))
		}
		// Records are written in order, off the hot path: once the one
		// that went is there, so would the refused ones be.
		got := h.usagePage(t, aw.project, "groupBy=outcome").totals
		for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			got = h.usagePage(t, aw.project, "groupBy=outcome").totals
		}
		if len(got) != 1 || got["ok"].requests != 1 {
			t.Errorf("usage by outcome = %v, want the one completion that went", got)
		}
	})
}

// agedConversation is a chat's conversation last continued 40 days ago,
// and the chat's completions path.
func agedConversation(t *testing.T, h *harness) (path, conv string) {
	t.Helper()
	w := h.world()
	path = "/api/v1/chats/" + w.chat + "/completions"
	conv = h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("first")}})["conversationId"].(string)
	aged := time.Now().Add(-40 * 24 * time.Hour).UTC()
	if err := h.app.Store.DB().Exec("UPDATE conversations SET updated_at = ? WHERE id = ?", aged, conv).Error; err != nil {
		t.Fatal(err)
	}
	return path, conv
}

// TestRetentionKeepsAConversationBeingContinued: a conversation past its
// retention that a completion is continuing when the sweep comes is kept
// (its reply, paid for upstream, is stored with its history), and, once
// continued, it is recent again.
func TestRetentionKeepsAConversationBeingContinued(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		path, conv := agedConversation(t, h)
		retention := domain.Retention{Conversations: 30 * 24 * time.Hour}
		sweep := func() int64 {
			t.Helper()
			s, err := retention.Sweep(context.Background(), h.app.Store, time.Now(), h.app.Services.Completions.HoldForSweep)
			if err != nil {
				t.Fatal(err)
			}
			return s.Conversations
		}

		h.up.Enqueue(llmtest.Behavior{Delay: 300 * time.Millisecond})
		n := h.up.Count()
		done := make(chan *response, 1)
		go func() {
			done <- h.call("POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("again")}})
		}()
		for deadline := time.Now().Add(5 * time.Second); h.up.Count() == n && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if got := sweep(); got != 0 {
			t.Errorf("a sweep while the conversation is being continued deleted %d conversations; want none", got)
		}
		if r := <-done; r.Status != 200 {
			t.Fatalf("the continuation = %d %s, want 200", r.Status, r.Body)
		}
		if msgs := h.must(200, "GET", "/api/v1/conversations/"+conv+"/messages", h.admin, nil)["data"].([]any); len(msgs) != 4 {
			t.Errorf("the conversation holds %d messages; want its 4", len(msgs))
		}
		if got := sweep(); got != 0 {
			t.Errorf("a sweep after the continuation deleted %d conversations; want none (it is recent)", got)
		}
	})
}

// TestQueryOnAnEndpointThatTakesNone: a query parameter on an endpoint
// that reads none is a 400 naming it, which changes nothing: a DELETE sent
// with ?dryRun=true must not delete, a GET with a cursor must not answer
// as if it were read; nor may a query too long for Go's parser.
func TestQueryOnAnEndpointThatTakesNone(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		d := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "d", "content": "x"})["id"].(string)
		conv := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("hi")}})["conversationId"].(string)
		for _, tc := range []struct{ method, path, param string }{
			{"DELETE", "/api/v1/documents/" + d + "?dryRun=true", "dryRun"},
			{"GET", "/api/v1/conversations/" + conv + "?limit=2&cursor=zzz", ""},
			{"DELETE", "/api/v1/conversations/" + conv + "?force=1", "force"},
			{"PATCH", "/api/v1/chats/" + w.chat + "?name=x", "name"},
			{"GET", "/api/v1/projects/" + w.project + "?expand=members", "expand"},
			{"POST", "/api/v1/projects?name=p", "name"},
		} {
			var body any
			if tc.method == "PATCH" || tc.method == "POST" {
				body = map[string]any{"name": "renamed"}
			}
			r := h.call(tc.method, tc.path, h.admin, body)
			if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "this endpoint takes none") || (tc.param != "" && r.ErrorField() != tc.param) {
				t.Errorf("%s %s = %d %s, want a 400 naming the parameter", tc.method, tc.path, r.Status, r.Body)
			}
		}
		// Past 10,000 pairs Go's parser drops them all, the filter too.
		many := strings.Repeat("&", 10_000)
		for _, path := range []string{"/api/v1/documents/" + d + "?dryRun=true" + many, "/api/v1/chats?projectId=prj_00000000000000000000000000" + many} {
			method := "DELETE"
			if strings.HasPrefix(path, "/api/v1/chats") {
				method = "GET"
			}
			if r := h.call(method, path, h.admin, nil); r.Status != 400 || !strings.Contains(r.ErrorMessage(), "more than 100 parameters") {
				t.Errorf("%s with 10,000 more &s = %d %.300s, want a 400 on the query's size", method, r.Status, r.Body)
			}
		}
		h.must(200, "GET", "/api/v1/documents/"+d, h.admin, nil)
		h.must(200, "GET", "/api/v1/conversations/"+conv, h.admin, nil)
		if got := h.must(200, "GET", "/api/v1/chats/"+w.chat, h.admin, nil)["name"]; got == "renamed" {
			t.Error("the refused PATCH renamed the chat")
		}
		// Completions take one (an SDK's defaultQuery may add it).
		h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions?trace=1", h.admin, map[string]any{"messages": []any{userMessage("hi")}})
	})
}

// TestBodyOnAnEndpointThatTakesNone: a body sent with a GET or a DELETE,
// which no endpoint reads, is a 400 that changes nothing, as a query
// parameter there is: a DELETE sent {"dryRun": true} must not delete, a
// list sent its filter in the body must not answer unfiltered. An empty
// object, null or whitespace (under 64 bytes), which some clients send
// with every request, pass.
func TestBodyOnAnEndpointThatTakesNone(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		d := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "d", "content": "x"})["id"].(string)
		for _, tc := range []struct {
			method, path string
			body         any
		}{
			{"DELETE", "/api/v1/documents/" + d, map[string]any{"dryRun": true}},
			{"DELETE", "/api/v1/projects/" + w.project, map[string]any{"dryRun": true}},
			{"GET", "/api/v1/chats", map[string]any{"projectId": w.project}},
			{"GET", "/api/v1/documents/" + d, "{" + strings.Repeat(" ", 100) + "}"},
		} {
			r := h.call(tc.method, tc.path, h.admin, tc.body)
			if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "takes no request body") {
				t.Errorf("%s %s with a body = %d %s, want a 400 saying it takes none", tc.method, tc.path, r.Status, r.Body)
			}
		}
		h.must(200, "GET", "/api/v1/documents/"+d, h.admin, nil)
		h.must(200, "GET", "/api/v1/projects/"+w.project, h.admin, nil)
		for _, body := range []string{"{}", "null", " \n", " { } "} {
			h.must(200, "GET", "/api/v1/documents/"+d, h.admin, body)
		}
		h.must(200, "DELETE", "/api/v1/documents/"+d, h.admin, "{}")
	})
}

// TestRetentionHoldsWhatItDeletes: a continuation that arrives after the
// sweep found its conversation idle, and before the sweep deleted it,
// waits for the delete and is then a 404, with nothing sent upstream:
// between the check and the delete it read the history, paid for a
// reply, and could not store it.
func TestRetentionHoldsWhatItDeletes(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		path, conv := agedConversation(t, h)
		h.up.Enqueue(llmtest.Behavior{Delay: time.Second}) // a reply the delete would come in the middle of
		n := h.up.Count()
		done := make(chan *response, 1)
		hold := func(id string) func() {
			release := h.app.Services.Completions.HoldForSweep(id)
			if id == conv && release != nil {
				// The continuation arrives right after the sweep's check.
				go func() {
					done <- h.call("POST", path, h.admin, map[string]any{"conversationId": conv, "messages": []any{userMessage("again")}})
				}()
				time.Sleep(300 * time.Millisecond)
			}
			return release
		}
		s, err := domain.Retention{Conversations: 30 * 24 * time.Hour}.Sweep(context.Background(), h.app.Store, time.Now(), hold)
		if err != nil || s.Conversations != 1 {
			t.Fatalf("the sweep deleted %d conversations (%v); want the aged one", s.Conversations, err)
		}
		if r := <-done; r.Status != 404 || r.ErrorCode() != "not_found" {
			t.Errorf("the continuation that arrived as the sweep deleted its conversation = %d %s, want 404", r.Status, r.Body)
		}
		if got := h.up.Count() - n; got != 0 {
			t.Errorf("the upstream got %d calls for a conversation being deleted; want none", got)
		}
	})
}
