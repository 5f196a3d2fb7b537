package rest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/store"
)

// eachLimiter runs body on SQLite and PostgreSQL, with the limits counted
// in memory and in Redis (skipped loudly without one, as in
// TestLimitsSharedThroughRedis); configure, when not nil, sets up the app
// further.
func eachLimiter(t *testing.T, configure func(*app.Config), body func(t *testing.T, h *harness)) {
	for _, name := range []string{"memory", "redis"} {
		t.Run(name, func(t *testing.T) {
			redisURL := ""
			if name == "redis" {
				redisURL = testRedisURL(t)
			}
			dbtest.Each(t, func(t *testing.T, st *store.Store) {
				body(t, newHarness(t, st, func(c *app.Config) {
					c.RedisURL = redisURL
					if configure != nil {
						configure(c)
					}
				}))
			})
		})
	}
}

// inOneMinute waits, when need would run past the end of this minute,
// for the next one: the per-minute counters start afresh with each.
func inOneMinute(t *testing.T, need time.Duration) {
	t.Helper()
	now := time.Now()
	if left := now.Truncate(time.Minute).Add(time.Minute).Sub(now); left < need {
		time.Sleep(left + 100*time.Millisecond)
	}
}

// quota is what a response's RateLimit-* headers say.
type quota struct {
	limit, remaining, reset string
	policy                  string
}

func quotaOf(h http.Header) quota {
	return quota{h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining"), h.Get("RateLimit-Reset"), h.Get("RateLimit-Policy")}
}

// resetSeconds returns q's reset, failing t unless it is in [1, 60].
func (q quota) resetSeconds(t *testing.T) int {
	t.Helper()
	n, err := strconv.Atoi(q.reset)
	if err != nil || n < 1 || n > 60 {
		t.Errorf("RateLimit-Reset = %q; want seconds in [1, 60]", q.reset)
	}
	return n
}

// TestRateLimitHeadersCountDown: an admitted completion, JSON or stream,
// per chat or stateless, carries the RateLimit-* headers of the limit
// closest to running out, RateLimit-Policy listing every limit that
// applied, that one first; Remaining counts down to 0, and the refusal
// that follows names the same limit.
func TestRateLimitHeadersCountDown(t *testing.T) {
	eachLimiter(t, nil, func(t *testing.T, h *harness) {
		inOneMinute(t, 15*time.Second)
		w := h.world()
		uid, key := h.user("pacer")
		h.setRole(h.admin, w.project, uid, "editor")
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin,
			map[string]any{"requestsPerMinute": 5, "keyRequestsPerMinute": 3, "keyTokensPerMinute": 100000})
		perChat := "/api/v1/chats/" + w.chat + "/completions"
		stateless := "/api/v1/chats/completions"
		msg := func(s string) []any { return []any{userMessage(s)} }
		const (
			keyPolicy     = `3;w=60;comment="key-requests-per-minute"`
			projectPolicy = `5;w=60;comment="project-requests-per-minute"`
			tokensPolicy  = `100000;w=60;comment="key-tokens-per-minute"`
		)

		// The key's 3 requests are closest to running out: 3 - 1 left,
		// against the project's 5 - 1 and the key's 100000 tokens.
		r := h.call("POST", perChat, key, map[string]any{"messages": msg("one")})
		q := quotaOf(r.Header)
		if r.Status != 200 || q.limit != "3" || q.remaining != "2" ||
			q.policy != keyPolicy+", "+projectPolicy+", "+tokensPolicy {
			t.Fatalf("first completion = %d, headers %+v; want 200, limit 3, 2 remaining, the key's requests first of 3 policies", r.Status, q)
		}
		last := q.resetSeconds(t)

		r = h.call("POST", stateless, key, map[string]any{"aiProviderId": w.provider, "messages": msg("two")})
		if q := quotaOf(r.Header); r.Status != 200 || q.limit != "3" || q.remaining != "1" || q.policy != keyPolicy+", "+projectPolicy+", "+tokensPolicy {
			t.Errorf("stateless completion = %d, headers %+v; want 200, limit 3, 1 remaining", r.Status, q)
		} else if n := q.resetSeconds(t); n > last {
			t.Errorf("RateLimit-Reset went from %d to %d; want it to count down", last, n)
		}

		// A stream's headers come with its status, before the first event.
		res := streamAs(t, h, context.Background(), key, perChat, map[string]any{"messages": msg("three")})
		q = quotaOf(res.Header)
		events := readSSE(t, res)
		if res.StatusCode != 200 || q.limit != "3" || q.remaining != "0" || q.policy != keyPolicy+", "+projectPolicy+", "+tokensPolicy {
			t.Errorf("stream = %d, headers %+v; want 200, limit 3, 0 remaining", res.StatusCode, q)
		}
		if len(events) < 3 || events[len(events)-1].raw != "[DONE]" {
			t.Errorf("the stream is not a whole one: %v", events)
		}
		streamReset := q.resetSeconds(t)

		// 0 remaining: the next one is refused, by the same limit.
		r = h.call("POST", perChat, key, map[string]any{"messages": msg("four")})
		q = quotaOf(r.Header)
		if r.Status != 429 || q.limit != "3" || q.remaining != "0" || q.policy != keyPolicy {
			t.Errorf("fourth completion = %d, headers %+v; want 429 by the key's 3 requests, 0 remaining", r.Status, q)
		}
		if n := q.resetSeconds(t); n > streamReset {
			t.Errorf("the 429's RateLimit-Reset is %d, after the stream's %d", n, streamReset)
		}

		// Another key has its own 3, but the project has 5 - 3 - 1 left:
		// now the project's are closest to running out.
		r = h.call("POST", perChat, h.admin, map[string]any{"messages": msg("five")})
		if q := quotaOf(r.Header); r.Status != 200 || q.limit != "5" || q.remaining != "1" ||
			q.policy != projectPolicy+", "+keyPolicy+", "+tokensPolicy {
			t.Errorf("another key's completion = %d, headers %+v; want 200, the project's 5 with 1 remaining, first", r.Status, q)
		}
		r = h.call("POST", perChat, h.admin, map[string]any{"messages": msg("six")})
		if q := quotaOf(r.Header); r.Status != 200 || q.limit != "5" || q.remaining != "0" {
			t.Errorf("another key's second completion = %d, headers %+v; want 200, limit 5, 0 remaining", r.Status, q)
		}
		r = h.call("POST", perChat, h.admin, map[string]any{"messages": msg("seven")})
		if q := quotaOf(r.Header); r.Status != 429 || q.limit != "5" || q.remaining != "0" || q.policy != projectPolicy {
			t.Errorf("another key's third completion = %d, headers %+v; want 429 by the project's 5", r.Status, q)
		}
	})
}

// TestRateLimitHeadersOnAFailure: a completion that fails once its limits
// admitted it (the provider rejects its key: a 502) was counted, and its
// error says what is left as a success would; the provider's own 429 is
// not Parley's limit and carries only the provider's Retry-After.
func TestRateLimitHeadersOnAFailure(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		inOneMinute(t, 10*time.Second)
		w := h.world()
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 5})
		path := "/api/v1/chats/" + w.chat + "/completions"
		const policy = `5;w=60;comment="project-requests-per-minute"`
		h.up.Enqueue(llmtest.Behavior{Status: 401})
		r := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("one")}})
		if q := quotaOf(r.Header); r.Status != 502 || q.limit != "5" || q.remaining != "4" || q.policy != policy {
			t.Errorf("a completion the provider refused = %d, headers %+v; want 502, limit 5, 4 remaining", r.Status, q)
		}
		h.up.Enqueue(llmtest.Behavior{Status: 429, Header: http.Header{"Retry-After": {"7"}}})
		r = h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("two")}})
		if q := quotaOf(r.Header); r.Status != 429 || r.Header.Get("Retry-After") != "7" || q != (quota{}) {
			t.Errorf("the provider's 429 = %d, Retry-After %q, headers %+v; want 429, 7, no RateLimit-*", r.Status, r.Header.Get("Retry-After"), q)
		}
		r = h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("three")}})
		if q := quotaOf(r.Header); r.Status != 200 || q.remaining != "2" {
			t.Errorf("the next completion = %d, headers %+v; want 200, 2 remaining (both failures counted)", r.Status, q)
		}
	})
}

// TestRateLimitHeadersCountFromTheResponse: RateLimit-Reset counts from
// when the reply is sent, not from when the request was admitted, which a
// slow completion leaves seconds (or minutes) behind. (A window that ends
// meanwhile: TestQuotaAs.)
func TestRateLimitHeadersCountFromTheResponse(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		const delay = 3 * time.Second
		inOneMinute(t, 10*time.Second)
		w := h.world()
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 5})
		h.up.Enqueue(llmtest.Behavior{Delay: delay})
		sent := time.Now()
		end := sent.Truncate(time.Minute).Add(time.Minute)
		r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("slowly")}})
		q := quotaOf(r.Header)
		// Sent at least delay after sent: at most this many seconds left.
		if most := int((end.Sub(sent) - delay + time.Second - 1) / time.Second); r.Status != 200 || q.remaining != "4" || q.resetSeconds(t) > most {
			t.Errorf("a completion %v slow = %d, headers %+v; want 200, 4 remaining, reset at most %ds", delay, r.Status, q, most)
		}
	})
}

// promptReserve is what a completion of w's chat with one user message of
// "count these tokens" reserves of a token limit when admitted, its
// estimated prompt: "You are a test." and that, 33 characters at four a
// token, and four for each message.
const promptReserve = (33+3)/4 + 2*4

// TestRateLimitHeadersTokens: a token limit's Remaining is what is left
// with the completion's reservation, its estimated prompt, counted; what it
// used replaces that once it ends: the next completion's Remaining is less
// by the previous one's usage.
func TestRateLimitHeadersTokens(t *testing.T) {
	eachLimiter(t, nil, func(t *testing.T, h *harness) {
		inOneMinute(t, 10*time.Second)
		w := h.world()
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"tokensPerMinute": 1000})
		path := "/api/v1/chats/" + w.chat + "/completions"
		const policy = `1000;w=60;comment="project-tokens-per-minute"`
		remaining := 1000 - promptReserve
		for i := range 3 {
			r := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("count these tokens")}})
			q := quotaOf(r.Header)
			if r.Status != 200 || q.limit != "1000" || q.remaining != strconv.Itoa(remaining) || q.policy != policy {
				t.Fatalf("completion %d = %d, headers %+v; want 200, limit 1000, %d remaining, policy %s", i+1, r.Status, q, remaining, policy)
			}
			q.resetSeconds(t)
			used, _ := r.JSON()["usage"].(map[string]any)["total_tokens"].(float64)
			if used < 1 {
				t.Fatalf("usage = %v", r.JSON()["usage"])
			}
			remaining -= int(used)
		}
	})
}

// TestTokenLimitBoundsABurst: completions admitted together cannot all
// run past a token limit before any has ended: each reserves its estimate,
// its prompt and maxTokens, when admitted, and the one that does not fit
// is refused with what is left; what they did not use comes back when they
// end.
func TestTokenLimitBoundsABurst(t *testing.T) {
	eachLimiter(t, nil, func(t *testing.T, h *harness) {
		inOneMinute(t, 15*time.Second)
		w := h.world()
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"tokensPerMinute": 1000})
		path := "/api/v1/chats/" + w.chat + "/completions"
		body := func() map[string]any {
			return map[string]any{"maxTokens": 400, "messages": []any{userMessage("count these tokens")}}
		}
		const reserve = promptReserve + 400
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		from := h.up.Count()
		for i, left := range []int{1000 - reserve, 1000 - 2*reserve} { // two streams held open upstream
			h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 1})
			res := streamAs(t, h, ctx, h.admin, path, body())
			defer res.Body.Close()
			if q := quotaOf(res.Header); res.StatusCode != 200 || q.remaining != strconv.Itoa(left) {
				t.Fatalf("stream %d = %d, headers %+v; want 200, %d remaining", i+1, res.StatusCode, q, left)
			}
		}
		r := h.call("POST", path, h.admin, body())
		e, _ := r.JSON()["error"].(map[string]any)
		d, _ := e["details"].(map[string]any)
		if r.Status != 429 || d["remaining"] != float64(1000-2*reserve) || r.Header.Get("RateLimit-Remaining") != strconv.Itoa(1000-2*reserve) ||
			!strings.Contains(r.ErrorMessage(), fmt.Sprintf("this request reserves an estimated %d: its prompt, with maxTokens when set; %d are left", reserve, 1000-2*reserve)) {
			t.Errorf("a third while two run = %d %s, RateLimit-Remaining %q; want 429 saying what it reserves and what is left",
				r.Status, r.Body, r.Header.Get("RateLimit-Remaining"))
		}
		// Ended early, the two used a few tokens of their 834.
		cancel()
		if !h.up.WaitCanceledN(from, 2*time.Second) || !h.up.WaitCanceledN(from+1, 2*time.Second) {
			t.Fatal("the upstream did not see the streams' cancellations")
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			r := h.call("POST", path, h.admin, body())
			if left, _ := strconv.Atoi(r.Header.Get("RateLimit-Remaining")); r.Status == 200 && left > 1000-2*reserve {
				break // both reservations back, less the tokens used
			}
			if time.Now().After(deadline) {
				t.Fatalf("5s after the streams ended: %d, RateLimit-Remaining %q; want their reservations back", r.Status, r.Header.Get("RateLimit-Remaining"))
			}
		}
	})
}

// TestRateLimitHeadersClosestByShare: limits in different units (requests
// and tokens) are compared by the share of each that is left, not by the
// count: 980 of 1,000 tokens are closer to running out than 598 of 600
// requests, though 598 is the smaller number.
func TestRateLimitHeadersClosestByShare(t *testing.T) {
	eachLimiter(t, nil, func(t *testing.T, h *harness) {
		inOneMinute(t, 10*time.Second)
		w := h.world()
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 600, "tokensPerMinute": 1000})
		path := "/api/v1/chats/" + w.chat + "/completions"
		const (
			requestsPolicy = `600;w=60;comment="project-requests-per-minute"`
			tokensPolicy   = `1000;w=60;comment="project-tokens-per-minute"`
		)
		// No token used yet, but the completion's reservation: 983 of
		// 1,000 tokens are a smaller share than 599 of 600 requests.
		r := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("count these tokens")}})
		want := strconv.Itoa(1000 - promptReserve)
		if q := quotaOf(r.Header); r.Status != 200 || q.limit != "1000" || q.remaining != want || q.policy != tokensPolicy+", "+requestsPolicy {
			t.Fatalf("first completion = %d, headers %+v; want 200, the project's 1000 tokens with %s remaining, first", r.Status, q, want)
		}
		used, _ := r.JSON()["usage"].(map[string]any)["total_tokens"].(float64)
		if used < 7 || used > 200 {
			t.Fatalf("usage = %v; want 7 to 200 tokens, for the shares below to compare as they should", r.JSON()["usage"])
		}
		r = h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("count these tokens")}})
		want = strconv.Itoa(1000 - int(used) - promptReserve)
		if q := quotaOf(r.Header); r.Status != 200 || q.limit != "1000" || q.remaining != want || q.policy != tokensPolicy+", "+requestsPolicy {
			t.Errorf("second completion = %d, headers %+v; want 200, the project's 1000 tokens with %s remaining, first", r.Status, q, want)
		}
	})
}

// TestRateLimitHeadersStreams: the key's open streams are a limit of
// their own, on streams only: a stream that takes the last slot says 0
// remaining; a JSON completion, which takes none, carries no headers when
// no other limit is set. The headers go out with a stream that a
// keep-alive opened before the first delta.
func TestRateLimitHeadersStreams(t *testing.T) {
	eachLimiter(t, func(c *app.Config) { c.KeepAlive = 250 * time.Millisecond }, func(t *testing.T, h *harness) {
		w := h.world()
		uid, key := h.user("streamer")
		h.setRole(h.admin, w.project, uid, "editor")
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"concurrentStreamsPerKey": 2})
		path := "/api/v1/chats/" + w.chat + "/completions"
		const policy = `2;comment="key-concurrent-streams"`

		// The first stream holds a slot while the upstream hangs.
		h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 1})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		firstN := h.up.Count()
		first := streamAs(t, h, ctx, key, path, map[string]any{"messages": []any{userMessage("a b c")}})
		defer first.Body.Close()
		if q := quotaOf(first.Header); first.StatusCode != 200 || q != (quota{"2", "1", "1", policy}) {
			t.Errorf("first stream = %d, headers %+v; want 200, limit 2, 1 remaining, reset 1, %s", first.StatusCode, q, policy)
		}

		// The second takes the last slot; its upstream is slower than a
		// keep-alive, which opens the stream, headers and all.
		h.up.Enqueue(llmtest.Behavior{Delay: time.Second})
		second := streamAs(t, h, context.Background(), key, path, map[string]any{"messages": []any{userMessage("d e f")}})
		q := quotaOf(second.Header)
		raw, _ := io.ReadAll(second.Body)
		second.Body.Close()
		if second.StatusCode != 200 || q != (quota{"2", "0", "1", policy}) {
			t.Errorf("second stream = %d, headers %+v; want 200, limit 2, 0 remaining", second.StatusCode, q)
		}
		if !strings.HasPrefix(string(raw), ": keep-alive\n\n") {
			t.Errorf("the second stream did not open with a keep-alive: %.80q", raw)
		}

		// A JSON completion takes no slot: no limit applied to it.
		r := h.call("POST", path, key, map[string]any{"messages": []any{userMessage("not streamed")}})
		if r.Status != 200 || quotaOf(r.Header) != (quota{}) {
			t.Errorf("JSON completion = %d, headers %+v; want 200 and no RateLimit-* headers", r.Status, quotaOf(r.Header))
		}
		cancel()
		first.Body.Close()
		if !h.up.WaitCanceledN(firstN, time.Second) {
			t.Fatal("the upstream did not see the first stream's cancellation")
		}
	})
}

// TestNoRateLimitHeadersWithoutLimits: a project without limits sends no
// RateLimit-* header, JSON or stream, whichever limiter counts.
func TestNoRateLimitHeadersWithoutLimits(t *testing.T) {
	eachLimiter(t, nil, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		none := func(what string, status int, hd http.Header) {
			t.Helper()
			if status != 200 {
				t.Errorf("%s = %d, want 200", what, status)
			}
			for name := range hd {
				if strings.HasPrefix(name, "Ratelimit-") {
					t.Errorf("%s carries %s: %q; want no RateLimit-* header", what, name, hd.Get(name))
				}
			}
		}
		r := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("free")}})
		none("JSON completion", r.Status, r.Header)
		res := stream(t, h, path, map[string]any{"messages": []any{userMessage("free")}})
		readSSE(t, res)
		none("stream", res.StatusCode, res.Header)
		// Limits set to 0 are none either.
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 0})
		r = h.call("POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("free")}})
		none("stateless completion", r.Status, r.Header)
	})
}
