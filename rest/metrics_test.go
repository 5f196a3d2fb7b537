package rest_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/store"
)

// TestMetrics reads /metrics after completions over REST and MCP: requests
// by route pattern, completions by provider, model, outcome and streaming,
// time to first token, tokens, open streams, and refusals by Parley's
// limits, which MCP counts as REST does.
func TestMetrics(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		body := func() map[string]any { return map[string]any{"messages": []any{userMessage("one two three")}} }

		h.must(200, "POST", path, h.admin, body())
		res := stream(t, h, path, body())
		readSSE(t, res)
		res.Body.Close()

		// The HTTP metrics are recorded after the response has left.
		h.waitMetric("parley_http_requests_total", 2, `route="/api/v1/chats/:chatId/completions"`, `status="200"`)
		h.waitMetric("parley_http_request_duration_seconds_count", 2, `route="/api/v1/chats/:chatId/completions"`)
		m := h.metrics()
		for _, c := range []struct {
			name   string
			labels []string
			check  func(float64) bool
		}{
			{"parley_completions_total", []string{`route="/api/v1/chats/:chatId/completions"`, `provider="openai-compatible"`, `model="fake-default"`, `outcome="ok"`, `stream="false"`}, eq(1)},
			{"parley_completions_total", []string{`route="/api/v1/chats/:chatId/completions"`, `provider="openai-compatible"`, `model="fake-default"`, `outcome="ok"`, `stream="true"`}, eq(1)},
			// Time to first token is a stream's: a whole reply's first byte comes
			// only once it is written, which would read as a slow first token.
			{"parley_completion_time_to_first_token_seconds_count", []string{`route="/api/v1/chats/:chatId/completions"`, `model="fake-default"`, `outcome="ok"`}, eq(1)},
			{"parley_completion_duration_seconds_count", []string{`route="/api/v1/chats/:chatId/completions"`, `outcome="ok"`}, eq(2)},
			{"parley_tokens_total", []string{`kind="completion"`}, positive},
			{"parley_tokens_total", []string{`kind="prompt"`}, positive},
			{"parley_open_streams", nil, eq(0)},
		} {
			if v, ok := m.value(c.name, c.labels...); !ok || !c.check(v) {
				t.Errorf("%s%v = %v (found %v)", c.name, c.labels, v, ok)
			}
		}
		if strings.Contains(m.text, w.chat) {
			t.Error("a metric label carries a chat id: routes must be patterns")
		}
		h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("x")}})
		if v, ok := h.metrics().value("parley_completions_total", `route="/api/v1/chats/completions"`); !ok || v != 1 {
			t.Errorf("stateless completions under their route = %v (found %v), want 1", v, ok)
		}

		// An open stream, over REST and then over MCP, is counted while it runs.
		h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 1})
		ctx, cancel := context.WithCancel(context.Background())
		res = streamCtx(t, h, ctx, path, body())
		if _, err := res.Body.Read(make([]byte, 256)); err != nil {
			t.Fatal(err)
		}
		h.waitMetric("parley_open_streams", 1)
		cancel()
		res.Body.Close()
		h.waitMetric("parley_open_streams", 0)

		admin := h.mcpSession(h.admin)
		h.up.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 1})
		ctx, cancel = context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			req := mcpgo.CallToolRequest{}
			req.Params.Name = "create-chat-completion-for-chat"
			req.Params.Arguments = map[string]any{"chatId": w.chat, "messages": []any{userMessage("stream")}}
			req.Params.Meta = &mcpgo.Meta{ProgressToken: "p1"}
			_, err := admin.CallTool(ctx, req)
			done <- err
		}()
		h.waitMetric("parley_open_streams", 1)
		cancel()
		<-done
		h.waitMetric("parley_open_streams", 0)

		// Refusals by a limit, over REST and over MCP.
		uid, key := h.user("limited")
		h.setRole(h.admin, w.project, uid, "editor")
		h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"keyRequestsPerMinute": 1})
		h.must(200, "POST", path, key, body())
		if r := h.call("POST", path, key, body()); r.Status != 429 {
			t.Fatalf("second request = %d %s, want 429", r.Status, r.Body)
		}
		req := mcpgo.CallToolRequest{}
		req.Params.Name = "create-chat-completion-for-chat"
		req.Params.Arguments = map[string]any{"chatId": w.chat, "messages": []any{userMessage("again")}}
		out, err := h.mcpSession(key).CallTool(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		text := fmt.Sprint(out.Content)
		if !out.IsError || !strings.Contains(text, "rate_limited:") || !strings.Contains(text, "limit key-requests-per-minute: 1 per 60s, 0 remaining") {
			t.Errorf("MCP call over the limit = %s, want a rate_limited error result naming the limit", text)
		}
		h.waitMetric("parley_http_requests_total", 1, `route="/api/v1/chats/:chatId/completions"`, `status="429"`)
		if v, _ := h.metrics().value("parley_rate_limit_rejections_total", `limit="key-requests-per-minute"`); v != 2 {
			t.Errorf("rate-limit rejections = %v, want 2 (one over REST, one over MCP)", v)
		}
	})
}

// TestMetricLabelsAreBounded: no caller can make a metric label take
// values without bound. A request's method is any token a client sends,
// with or without a key: methods HTTP does not define count as "other".
// A completion's model is any name a caller sends: one the provider
// refuses keeps no label of its own (it counts as "other"), so that
// names a provider never answered cannot use up the labels of the models
// it does answer. A name that answered under another counts its failures
// under that one.
func TestMetricLabelsAreBounded(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	for i := range 5 {
		for _, path := range []string{"/nothing", "/api/v1/chats", "/metrics"} {
			h.call(fmt.Sprintf("X-MADE-UP-%d", i), path, "", nil)
		}
	}
	h.waitMetric("parley_http_requests_total", 15, `method="other"`)
	if m := h.metrics(); strings.Contains(m.text, "X-MADE-UP") {
		t.Errorf("a made-up method is a label value:\n%s", grep(m.text, "X-MADE-UP"))
	}

	const refused = 210 // more than the model names the metrics keep
	h.up.Script(func(_ int, r llmtest.Request) llmtest.Behavior {
		if strings.HasPrefix(r.Model, "junk-") {
			return llmtest.Behavior{Status: 404}
		}
		return llmtest.Behavior{}
	})
	for i := range refused {
		body := map[string]any{"aiProviderId": w.provider, "model": fmt.Sprintf("junk-%d", i), "messages": []any{userMessage("x")}}
		if r := h.call("POST", "/api/v1/chats/completions", h.admin, body); r.Status != 502 {
			t.Fatalf("completion with a model the provider refuses = %d %s, want 502", r.Status, r.Body)
		}
	}
	h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.provider, "model": "real-model", "messages": []any{userMessage("x")}})
	m := h.metrics()
	if strings.Contains(m.text, `model="junk-`) {
		t.Errorf("a model name the provider refused is a label value:\n%s", grep(m.text, `model="junk-`))
	}
	if v, _ := m.value("parley_completions_total", `model="other"`, `outcome="upstream_error"`); v != refused {
		t.Errorf(`completions with refused models under model="other" = %v, want %d`, v, refused)
	}
	if v, _ := m.value("parley_completions_total", `model="real-model"`, `outcome="ok"`); v != 1 {
		t.Errorf(`completions of a model the provider answered, after %d refused names = %v, want 1 under its own name`, refused, v)
	}
	// A model the provider answered keeps its name when it fails later.
	h.up.Enqueue(llmtest.Behavior{Status: 500}, llmtest.Behavior{Status: 500}, llmtest.Behavior{Status: 500})
	h.call("POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.provider, "model": "real-model", "messages": []any{userMessage("x")}})
	if v, _ := h.metrics().value("parley_completions_total", `model="real-model"`, `outcome="upstream_error"`); v != 1 {
		t.Errorf(`a failed completion of a model answered before = %v under its name, want 1`, v)
	}
	// One that answered under another name (as gpt-4o answers as a dated
	// version) counts its failures, which bear only the name asked for,
	// under that name too.
	alias := map[string]any{"aiProviderId": w.provider, "model": "alias-x", "messages": []any{userMessage("x")}}
	h.up.Enqueue(llmtest.Behavior{Model: "alias-x-2026-01-01"})
	h.must(200, "POST", "/api/v1/chats/completions", h.admin, alias)
	h.up.Enqueue(llmtest.Behavior{Status: 500}, llmtest.Behavior{Status: 500}, llmtest.Behavior{Status: 500})
	h.call("POST", "/api/v1/chats/completions", h.admin, alias)
	m = h.metrics()
	if v, _ := m.value("parley_completions_total", `model="alias-x-2026-01-01"`, `outcome="upstream_error"`); v != 1 {
		t.Errorf(`a failed completion of a model that answered under another name = %v under that name, want 1`, v)
	}
	if v, _ := m.value("parley_completions_total", `model="other"`, `outcome="upstream_error"`); v != refused {
		t.Errorf(`completions under model="other" = %v after the alias failed, want %d`, v, refused)
	}
}

// TestLogLinesAreBounded: what a client sends at any length (a method, an
// id in the path, an unknown field's name), which the access log and a
// refusal's line repeat, is cut short there, so that no request writes
// more than a few kilobytes of log.
func TestLogLinesAreBounded(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	long := strings.Repeat("X", 200_000)
	h.call(long, "/healthz", "", nil)
	h.call("GET", "/api/v1/chats/cht_"+long, h.admin, nil)
	h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{long: 1, "messages": []any{userMessage("x")}})
	logs := h.finalLogs()
	for _, line := range strings.Split(logs, "\n") {
		if len(line) > 4096 {
			t.Errorf("a log line of %d bytes: %.300s…", len(line), line)
		}
	}
	if !strings.Contains(logs, "(200000 bytes)") {
		t.Errorf("no line says how long the value it cut was:\n%.2000s", logs)
	}
}

// grep returns the first lines of text that contain s.
func grep(text, s string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) && len(out) < 3 {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func eq(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

func positive(v float64) bool { return v > 0 }

// metricsText is a scrape of /metrics.
type metricsText struct{ text string }

func (h *harness) metrics() metricsText {
	h.t.Helper()
	r := h.call("GET", "/metrics", "", nil)
	if r.Status != 200 {
		h.t.Fatalf("GET /metrics = %d", r.Status)
	}
	return metricsText{string(r.Body)}
}

// value sums the samples of name whose labels include every one of labels
// (each `key="value"`), and reports whether there was one.
func (m metricsText) value(name string, labels ...string) (float64, bool) {
	var sum float64
	found := false
	sc := bufio.NewScanner(strings.NewReader(m.text))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series := line[:i]
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(series, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		sum, found = sum+v, true
	}
	return sum, found
}

// waitMetric waits up to five seconds for the samples of name with labels
// to sum to want.
func (h *harness) waitMetric(name string, want float64, labels ...string) {
	h.t.Helper()
	var v float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if v, _ = h.metrics().value(name, labels...); v == want {
			return
		}
	}
	h.t.Fatalf("%s%v = %v after 5s, want %v", name, labels, v, want)
}

// mcpSession is an initialized MCP client over streamable HTTP, as key,
// sending header on every request too.
func (h *harness) mcpSession(key string, header ...string) *client.Client {
	h.t.Helper()
	return h.mcpSessionAt(mcpgo.LATEST_PROTOCOL_VERSION, key, header...)
}

// mcpSessionAt is mcpSession asking for protocol version.
func (h *harness) mcpSessionAt(version, key string, header ...string) *client.Client {
	h.t.Helper()
	headers := map[string]string{"Authorization": "Bearer " + key}
	for i := 0; i+1 < len(header); i += 2 {
		headers[header[i]] = header[i+1]
	}
	tr, err := transport.NewStreamableHTTP(h.srv.URL+"/mcp", transport.WithHTTPHeaders(headers))
	if err != nil {
		h.t.Fatal(err)
	}
	c := client.NewClient(tr)
	h.t.Cleanup(func() { c.Close() })
	init := mcpgo.InitializeRequest{}
	init.Params.ProtocolVersion = version
	init.Params.ClientInfo = mcpgo.Implementation{Name: "metrics-test", Version: "1"}
	if _, err := c.Initialize(context.Background(), init); err != nil {
		h.t.Fatal(err)
	}
	return c
}

// TestMCPLogsCarryTheRequestID: the lines an MCP-over-HTTP call logs (here
// a refused tool call, at debug) carry the X-Request-Id of its HTTP
// request, as REST's lines do.
func TestMCPLogsCarryTheRequestID(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	const id = "trace-mcp-42"
	c := h.mcpSession(h.admin, "X-Request-Id", id)
	req := mcpgo.CallToolRequest{}
	req.Params.Name = "get-chat"
	req.Params.Arguments = map[string]any{"chatId": "cht_doesnotexist0000000000"}
	res, err := c.CallTool(context.Background(), req)
	if err != nil || !res.IsError {
		t.Fatalf("get-chat of a missing chat: %v %+v, want an error result", err, res)
	}
	c.Close()
	for _, line := range strings.Split(h.finalLogs(), "\n") {
		if strings.Contains(line, `msg="mcp tool call refused"`) {
			if !strings.Contains(line, "request_id="+id+" ") {
				t.Errorf("the MCP tool's log line does not carry request_id=%s first: %s", id, line)
			}
			return
		}
	}
	t.Error(`no "mcp tool call refused" line was logged`)
}

// TestMCPToolCallsCounted: every MCP answer is an HTTP 200, so a tool's
// failures show only in parley_mcp_tool_calls_total, by tool and outcome
// (the result's error code); and the usage records dropped are counted,
// none here.
func TestMCPToolCallsCounted(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	c := h.mcpSession(h.admin)
	call := func(name string, args map[string]any) {
		req := mcpgo.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = name, args
		if _, err := c.CallTool(context.Background(), req); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	call("list-projects", nil)
	call("list-projects", nil)
	call("get-chat", map[string]any{"chatId": "cht_doesnotexist0000000000"})
	call("get-chat", map[string]any{"chatId": 7})
	m := h.metrics()
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{`tool="list-projects"`, `outcome="ok"`}, 2},
		{[]string{`tool="get-chat"`, `outcome="not_found"`}, 1},
		{[]string{`tool="get-chat"`, `outcome="invalid_request"`}, 1},
	} {
		if got, _ := m.value("parley_mcp_tool_calls_total", tc.labels...); got != tc.want {
			t.Errorf("parley_mcp_tool_calls_total%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if got, _ := m.value("parley_mcp_tool_call_duration_seconds_count", `tool="get-chat"`); got != 2 {
		t.Errorf("get-chat's duration count %v, want 2", got)
	}
	if got, ok := m.value("parley_usage_records_dropped_total"); !ok || got != 0 {
		t.Errorf("parley_usage_records_dropped_total = %v (there: %v), want 0", got, ok)
	}
	if _, ok := m.value("parley_usage_records_waiting"); !ok {
		t.Error("parley_usage_records_waiting is not served")
	}
	// Without Redis the limits are kept in memory, which cannot fail.
	if got, ok := m.value("parley_rate_limiter_failed_open_total"); !ok || got != 0 {
		t.Errorf("parley_rate_limiter_failed_open_total = %v (there: %v) without Redis, want 0", got, ok)
	}
}

// TestMCPLogLinesNameTheirCaller: the lines of an MCP-over-HTTP request,
// its access line (which REST writes) and mcp-go's mcp.request and
// mcp.tool lines, name the user whose key sent it, and mcp-go's name the
// session by the id the client holds (mcp-go knows another, bindSession's).
// mcp-go copies the method the client sent into its line, twice: a method
// of any length writes at most a few hundred bytes of it.
func TestMCPLogLinesNameTheirCaller(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	userID, key := h.user("logged")
	const version = "2025-11-25" // the latest that has sessions
	c := h.mcpSessionAt(version, key)
	session := c.GetSessionId()
	if session == "" {
		t.Fatal("initialize gave no session id")
	}
	req := mcpgo.CallToolRequest{}
	req.Params.Name = "list-projects"
	if res, err := c.CallTool(context.Background(), req); err != nil || res.IsError {
		t.Fatalf("list-projects: %v %+v", err, res)
	}
	long := strings.Repeat("m", 100_000)
	r, err := http.NewRequest("POST", h.srv.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"`+long+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+key)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, text/event-stream")
	r.Header.Set("Mcp-Session-Id", session)
	r.Header.Set("Mcp-Protocol-Version", version)
	res, err := testClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	c.Close()

	seen := map[string]int{}
	for _, line := range strings.Split(h.finalLogs(), "\n") {
		if len(line) > 2000 {
			t.Errorf("a line of %d bytes: %.300s…", len(line), line)
		}
		var kind string
		switch {
		case strings.Contains(line, "msg=request ") && strings.Contains(line, "path=/mcp ") && !strings.Contains(line, "status=401 "):
			kind = "access" // (mcp-go's client ends a session with a DELETE that carries no key)
		case strings.Contains(line, "msg=mcp.request ") && !strings.Contains(line, "mcp.method=initialize "):
			kind = "mcp.request" // initialize's session is not the client's yet
		case strings.Contains(line, "msg=mcp.tool "):
			kind = "mcp.tool"
		default:
			continue
		}
		seen[kind]++
		if !strings.Contains(line, " user_id="+userID+" ") {
			t.Errorf("a %s line does not name user_id=%s: %.500s", kind, userID, line)
		}
		if kind == "mcp.request" && !strings.Contains(line, " mcp.session.id="+session+" ") {
			t.Errorf("an mcp.request line does not name the client's session %s: %.500s", session, line)
		}
	}
	if seen["access"] < 3 || seen["mcp.request"] < 2 || seen["mcp.tool"] != 1 {
		t.Errorf("lines seen %v, want access lines of initialize, the call and the long method, mcp.request lines of both, an mcp.tool line", seen)
	}
}

// TestMCPToolLineHasOneOutcome: over HTTP, the lines of a request that ran
// a completion carry its outcome; mcp-go's mcp.tool line has an outcome of
// its own (of the call: ok, error_result), and a line with the key twice
// reads, in JSON, as the last (a failed completion as "ok"): mcp-go's is
// mcp.outcome.
func TestMCPToolLineHasOneOutcome(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	c := h.mcpSessionAt("2025-11-25", h.admin)
	h.up.Enqueue(llmtest.Behavior{Status: 400})
	req := mcpgo.CallToolRequest{}
	req.Params.Name = "create-chat-completion-for-chat"
	req.Params.Arguments = map[string]any{"chatId": w.chat, "messages": []any{map[string]any{"role": "user", "content": "x"}}}
	if res, err := c.CallTool(context.Background(), req); err != nil || !res.IsError {
		t.Fatalf("a completion the provider refuses: %v %+v; want an error result", err, res)
	}
	c.Close()
	var tool []string
	for _, line := range strings.Split(h.finalLogs(), "\n") {
		if strings.Contains(line, "msg=mcp.tool ") {
			tool = append(tool, line)
		}
	}
	if len(tool) != 1 || strings.Count(tool[0], " outcome=") != 1 || !strings.Contains(tool[0], " outcome=upstream_refused ") ||
		!strings.Contains(tool[0], " mcp.outcome=error_result") {
		t.Errorf("mcp.tool lines %q; want one, with the completion's outcome=upstream_refused and mcp-go's as mcp.outcome", tool)
	}
}

// TestMetricBuckets: the duration histograms resolve what they measure.
// An API request takes well under a millisecond, so the request histogram
// has buckets below one; a stream runs as long as its reply, with no limit
// by default, so request and completion durations have buckets up to an
// hour, not +Inf past 15 minutes.
func TestMetricBuckets(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	h.call("GET", "/healthz", "", nil)
	h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("x")}})
	h.waitMetric("parley_http_request_duration_seconds_count", 1, `route="/healthz"`)
	m := h.metrics()
	for _, c := range []struct {
		name          string
		label         string
		lowest, upper float64 // the smallest bucket at most lowest, the largest at least upper
	}{
		{"parley_http_request_duration_seconds", `route="/healthz"`, 0.0001, 3600},
		{"parley_completion_duration_seconds", `outcome="ok"`, 0.005, 3600},
	} {
		bounds := m.buckets(c.name, c.label)
		if len(bounds) == 0 {
			t.Errorf("%s{%s} has no buckets", c.name, c.label)
			continue
		}
		if lo, hi := bounds[0], bounds[len(bounds)-1]; lo > c.lowest || hi < c.upper {
			t.Errorf("%s buckets run from %gs to %gs, want from %gs or less to %gs or more", c.name, lo, hi, c.lowest, c.upper)
		}
	}
}

// buckets returns the finite upper bounds of the buckets of histogram
// name's series with label, in order.
func (m metricsText) buckets(name, label string) []float64 {
	var bounds []float64
	le := regexp.MustCompile(`le="([^"]+)"`)
	for _, line := range strings.Split(m.text, "\n") {
		if !strings.HasPrefix(line, name+"_bucket{") || !strings.Contains(line, label) {
			continue
		}
		if mm := le.FindStringSubmatch(line); mm != nil && mm[1] != "+Inf" {
			if v, err := strconv.ParseFloat(mm[1], 64); err == nil {
				bounds = append(bounds, v)
			}
		}
	}
	return bounds
}

// TestFailedChecksLogTheRequestID: with the database gone, the lines that
// say why /readyz answered 503 and why MCP over HTTP could not check a
// key go to the server's log, first naming the request id the response
// carries, as every line of a request does.
func TestFailedChecksLogTheRequestID(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	_, key := h.user("u") // not used yet, so not cached: its check needs the database
	if err := h.app.Store.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ id, method, path, key, body, msg string }{
		{"ready-down", "GET", "/readyz", "", "", `msg="not ready"`},
		{"mcp-down", "POST", "/mcp", key, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, `msg="mcp authentication failed"`},
	} {
		req, err := http.NewRequest(c.method, h.srv.URL+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Request-Id", c.id)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		res, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode < 500 {
			t.Errorf("%s %s with the database closed = %d, want a 5xx", c.method, c.path, res.StatusCode)
		}
		logs := h.logs.String()
		found := false
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, c.msg) {
				found = true
				if !strings.Contains(line, c.msg+" request_id="+c.id+" ") {
					t.Errorf("the line does not name request_id=%s first: %s", c.id, line)
				}
			}
		}
		if !found {
			t.Errorf("no %s line in the server's log:\n%s", c.msg, logs)
		}
	}
}

// TestLongUpstreamModelNameIsNotTaken: the provider names the model a
// completion ran, and a provider of the project's own may answer with a
// name as long as a reply. Such a name is not taken: the model asked for
// stands, in the response, the stream, the stored reply, the usage report
// and the metrics, where it would repeat in every line of every series it
// labels. A name as long as the API takes (200 characters) is taken.
func TestLongUpstreamModelNameIsNotTaken(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	long, longest := strings.Repeat("m", 100_000), "gpt-"+strings.Repeat("4", 196)
	path := "/api/v1/chats/" + w.chat + "/completions"
	h.up.Enqueue(llmtest.Behavior{Model: long})
	got := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}})
	if got["model"] != "fake-default" {
		t.Errorf("model = %.40v, want the one asked for, fake-default", got["model"])
	}
	conv := got["conversationId"].(string)
	h.up.Enqueue(llmtest.Behavior{Model: long})
	for _, ev := range readSSE(t, stream(t, h, path, map[string]any{"messages": []any{userMessage("x")}})) {
		if ev.data != nil && ev.data["model"] != nil && ev.data["model"] != "fake-default" {
			t.Errorf("a chunk's model = %.40v, want fake-default", ev.data["model"])
			break
		}
	}
	h.up.Enqueue(llmtest.Behavior{Model: longest})
	if got := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}}); got["model"] != longest {
		t.Errorf("model = %v, want the provider's 200-character name", got["model"])
	}
	msgs := h.must(200, "GET", "/api/v1/conversations/"+conv+"/messages", h.admin, nil)["data"].([]any)
	if m := msgs[len(msgs)-1].(map[string]any)["model"]; m != "fake-default" {
		t.Errorf("stored reply's model = %.40v, want fake-default", m)
	}
	h.app.FlushUsage()
	byModel := map[string]any{}
	for _, d := range h.must(200, "GET", "/api/v1/projects/"+w.project+"/usage?groupBy=model", h.admin, nil)["data"].([]any) {
		byModel[d.(map[string]any)["key"].(string)] = d.(map[string]any)["requests"]
	}
	if len(byModel) != 2 || byModel["fake-default"] != 2.0 || byModel[longest] != 1.0 {
		t.Errorf("usage requests by model: %d models, fake-default %v, the 200-character one %v; want 2, 2 and 1",
			len(byModel), byModel["fake-default"], byModel[longest])
	}
	m := h.metrics()
	if strings.Contains(m.text, strings.Repeat("m", 201)) {
		t.Errorf("/metrics (%d bytes) labels the %d-character model name", len(m.text), len(long))
	}
	if v, _ := m.value("parley_completions_total", `model="`+longest+`"`); v != 1 {
		t.Errorf("completions of a 200-character model name under its name = %v, want 1", v)
	}
}

// TestMCPOutageLoggedAsError: an MCP tool call that fails because the
// database is gone gets an "unavailable:" result, and is logged as an
// error, as the REST request's 503 is: it is Parley's fault, not the
// caller's, and an operator must hear of it at the default level.
func TestMCPOutageLoggedAsError(t *testing.T) {
	st, p := dbtest.PostgresThroughProxy(t)
	h := newHarness(t, st, nil)
	prj := h.project(h.admin, "p")
	c := h.mcpSession(h.admin, "X-Request-Id", "mcp-outage") // the key is checked, and cached, here
	p.Down()
	doc := map[string]any{"projectId": prj, "name": "d", "content": "x"}
	req := mcpgo.CallToolRequest{}
	req.Params.Name = "create-document"
	req.Params.Arguments = doc
	res, err := c.CallTool(context.Background(), req)
	if err != nil || !res.IsError || !strings.Contains(fmt.Sprint(res.Content), "unavailable:") {
		t.Fatalf("create-document with the database gone: %v %+v, want an unavailable: result", err, res)
	}
	r := h.call("POST", "/api/v1/documents", h.admin, doc)
	if r.Status != 503 {
		t.Fatalf("POST /documents with the database gone = %d %s, want 503", r.Status, r.Body)
	}
	c.Close()
	var mcpLine, restLine string
	for _, line := range strings.Split(h.finalLogs(), "\n") {
		switch {
		case strings.Contains(line, "request_id=mcp-outage") && strings.Contains(line, "kind=unavailable"):
			mcpLine = line
		case strings.Contains(line, "path=/api/v1/documents") && strings.Contains(line, "kind=unavailable"):
			restLine = line
		}
	}
	if !strings.Contains(restLine, "level=ERROR") {
		t.Errorf("the REST request's 503 logged as %q, want an error", restLine)
	}
	if !strings.Contains(mcpLine, "level=ERROR") {
		t.Errorf("the MCP call's outage logged as %q, want an error", mcpLine)
	}
}

// TestMetricsAsREADMESays: every metric README's Operations table names is
// served, after completions (JSON and streamed) and a refusal by a limit,
// with the labels the table gives it, and no others.
func TestMetricsAsREADMESays(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| (`parley_[a-z_]+`.*?) \\| (.*) \\|$")
	backticked := regexp.MustCompile("`([a-z_]+)`")
	aside := regexp.MustCompile(`\([^)]*\)`)
	want := map[string][]string{} // metric → its labels
	for _, line := range strings.Split(string(readme), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var labels []string // the backticked names outside parentheses
		for _, l := range backticked.FindAllStringSubmatch(aside.ReplaceAllString(m[2], ""), -1) {
			labels = append(labels, l[1])
		}
		slices.Sort(labels)
		for _, name := range backticked.FindAllStringSubmatch(m[1], -1) {
			want[name[1]] = labels
		}
	}
	if len(want) < 8 {
		t.Fatalf("README's metrics table names %d metrics: %v", len(want), want)
	}

	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	path := "/api/v1/chats/" + w.chat + "/completions"
	h.up.Enqueue(llmtest.Behavior{Status: 503}) // retried
	h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}})
	readSSE(t, stream(t, h, path, map[string]any{"messages": []any{userMessage("x")}}))
	list := mcpgo.CallToolRequest{}
	list.Params.Name = "list-projects"
	if _, err := h.mcpSession(h.admin).CallTool(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"keyRequestsPerMinute": 1})
	h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}})
	if r := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}}); r.Status != 429 {
		t.Fatalf("completion over the limit = %d %s, want 429", r.Status, r.Body)
	}
	h.waitMetric("parley_http_requests_total", 1, `status="429"`)

	got := map[string][]string{}
	sample := regexp.MustCompile(`^(parley_[a-z_]+?)(?:_bucket|_sum|_count)?(?:\{(.*)\})? `)
	label := regexp.MustCompile(`([a-z_]+)="`)
	for _, line := range strings.Split(h.metrics().text, "\n") {
		m := sample.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var labels []string
		for _, l := range label.FindAllStringSubmatch(m[2], -1) {
			if l[1] != "le" {
				labels = append(labels, l[1])
			}
		}
		slices.Sort(labels)
		got[m[1]] = labels
	}
	for name, labels := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s, which README names, is not served", name)
		} else if !slices.Equal(g, labels) {
			t.Errorf("%s has labels %v; README says %v", name, g, labels)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s is served but README's table does not name it", name)
		}
	}
}

// TestUpstreamRetriesAreSeen: a call retried after a 5xx, a refused
// connection or a stream's fault before its first delta, which then
// succeeds, counts ok everywhere else: each retry is counted by provider
// type and reason, and logged as a warning on the request's lines.
func TestUpstreamRetriesAreSeen(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	path := "/api/v1/chats/" + w.chat + "/completions"
	h.up.Enqueue(llmtest.Behavior{Status: 503}, llmtest.Behavior{Status: 502})
	r := h.call("POST", path, h.admin, map[string]any{"messages": []any{userMessage("x")}})
	if r.Status != 200 {
		t.Fatalf("completion after two 5xx = %d %s; want 200", r.Status, r.Body)
	}
	typ := h.must(200, "GET", "/api/v1/ai-providers/"+w.provider, h.admin, nil)["type"].(string)
	if v, _ := h.metrics().value("parley_upstream_retries_total", `provider="`+typ+`"`, `reason="status_5xx"`); v != 2 {
		t.Errorf("parley_upstream_retries_total{provider=%q,reason=\"status_5xx\"} = %v; want 2", typ, v)
	}

	// Anthropic's stream answered 529 (overloaded) is a 5xx as well, not a
	// fault of a stream that began: the SDK reads its error body as one.
	aw := h.anthropicWorld()
	h.up.Enqueue(llmtest.Behavior{Status: 529, Body: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`})
	ar := h.call("POST", "/api/v1/chats/"+aw.anthropicChat+"/completions", h.admin, map[string]any{"stream": true, "messages": []any{userMessage("x")}})
	if ar.Status != 200 || !strings.HasSuffix(string(ar.Body), "data: [DONE]\n\n") {
		t.Fatalf("anthropic stream after a 529 = %d %s", ar.Status, ar.Body)
	}
	if v, _ := h.metrics().value("parley_upstream_retries_total", `provider="anthropic"`, `reason="status_5xx"`); v != 1 {
		t.Errorf("parley_upstream_retries_total{provider=\"anthropic\",reason=\"status_5xx\"} = %v; want 1", v)
	}
	id := r.Header.Get("X-Request-Id")
	var lines []string
	for _, l := range strings.Split(h.finalLogs(), "\n") {
		if strings.Contains(l, `msg="upstream retried" request_id=`+id+" ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 || !strings.Contains(lines[0], "level=WARN ") || !strings.Contains(lines[0], " status=503 ") ||
		!strings.Contains(lines[0], " attempt=1 ") || !strings.Contains(lines[1], " status=502 ") || !strings.Contains(lines[1], " reason=status_5xx ") {
		t.Errorf("the retries' lines: %q; want two warnings, status 503 then 502", lines)
	}

}

// TestUpstreamRequestIDs: a provider's support asks for its own request
// id, which Parley's logs had not kept, and its logs (and a proxy's
// between) could not name Parley's. Each call goes with an X-Request-Id of
// its own, the request's and a suffix (vLLM takes it as its request's id
// and refuses one running already: a retry's, or another request's sent
// with the same); the lines logged after a response name the id it gave
// (OpenAI's x-request-id, Anthropic's request-id), a retry's the id of the
// attempt that failed (none after a lost connection), the access line the
// last, once.
func TestUpstreamRequestIDs(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	h.up.Enqueue(llmtest.Behavior{Status: 503, Header: http.Header{"X-Request-Id": {"upreq_1"}}},
		llmtest.Behavior{Fault: llmtest.FaultDrop},
		llmtest.Behavior{Header: http.Header{"X-Request-Id": {"upreq_2"}}})
	r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("x")}})
	if r.Status != 200 {
		t.Fatalf("completion = %d %s", r.Status, r.Body)
	}
	id := r.Header.Get("X-Request-Id")
	sent := map[string]bool{}
	for _, up := range h.up.Requests() {
		got := up.Header.Get("X-Request-Id")
		if !regexp.MustCompile(`^`+regexp.QuoteMeta(id)+`-[0-9a-f]{8}$`).MatchString(got) || sent[got] {
			t.Errorf("the provider got X-Request-Id %q (sent before: %v); want the request's, %q, and a suffix of the call's own", got, sent[got], id)
		}
		sent[got] = true
	}
	if len(sent) != 3 {
		t.Errorf("the provider got %d calls' ids; want 3", len(sent))
	}
	aw := h.anthropicWorld()
	h.up.Enqueue(llmtest.Behavior{Header: http.Header{"Request-Id": {"req_011anthropic"}}})
	ar := h.call("POST", "/api/v1/chats/"+aw.anthropicChat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("x")}})
	if ar.Status != 200 {
		t.Fatalf("anthropic completion = %d %s", ar.Status, ar.Body)
	}
	var retried []string
	var access, anthropic string
	for _, l := range strings.Split(h.finalLogs(), "\n") {
		switch {
		case strings.Contains(l, `msg="upstream retried" request_id=`+id+" "):
			retried = append(retried, l)
		case strings.Contains(l, "msg=request request_id="+id+" "):
			access = l
		case strings.Contains(l, "msg=request request_id="+ar.Header.Get("X-Request-Id")+" "):
			anthropic = l
		}
	}
	if len(retried) != 2 || !strings.Contains(retried[0], " upstream_request_id=upreq_1 ") || strings.Contains(retried[1], "upstream_request_id=") {
		t.Errorf("the retries' lines: %q; want the first naming upstream_request_id=upreq_1, the second (a lost connection) none", retried)
	}
	if strings.Count(access, "upstream_request_id=") != 1 || !strings.Contains(access, " upstream_request_id=upreq_2 ") {
		t.Errorf("the access line: %q; want upstream_request_id=upreq_2, once", access)
	}
	if !strings.Contains(anthropic, " upstream_request_id=req_011anthropic ") {
		t.Errorf("the Anthropic completion's access line: %q; want its request-id", anthropic)
	}
}

// TestDatabasePoolMetrics: a slow database and a full pool looked alike
// (a slow completion, nothing else): the pool's connections and the waits
// for one are served, as go_sql_* of db_name "parley".
func TestDatabasePoolMetrics(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, nil)
		w := h.world()
		h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("x")}})
		m := h.metrics()
		for _, name := range []string{"go_sql_max_open_connections", "go_sql_open_connections"} {
			if v, ok := m.value(name, `db_name="parley"`); !ok || v <= 0 {
				t.Errorf("%s{db_name=\"parley\"} = %v (served: %v); want more than 0", name, v, ok)
			}
		}
		if _, ok := m.value("go_sql_wait_duration_seconds_total", `db_name="parley"`); !ok {
			t.Error("go_sql_wait_duration_seconds_total is not served")
		}
	})
}

// TestAccessLineTimesTheCompletion: a slow completion's access line had
// its request's duration alone; it names the completion's latency and a
// stream's time to first token, as its usage record has them.
func TestAccessLineTimesTheCompletion(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	h.up.Enqueue(llmtest.Behavior{Delay: 50 * time.Millisecond})
	r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"stream": true, "messages": []any{userMessage("x")}})
	if r.Status != 200 {
		t.Fatalf("stream = %d %s", r.Status, r.Body)
	}
	id := r.Header.Get("X-Request-Id")
	ttft := regexp.MustCompile(` completion_ms=(\d+\.?\d*) .*ttft_ms=(\d+\.?\d*) `)
	for _, l := range strings.Split(h.finalLogs(), "\n") {
		if !strings.Contains(l, "msg=request request_id="+id+" ") {
			continue
		}
		m := ttft.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("the access line names no completion_ms and ttft_ms: %s", l)
		}
		total, _ := strconv.ParseFloat(m[1], 64)
		first, _ := strconv.ParseFloat(m[2], 64)
		if first < 50 || total < first {
			t.Errorf("completion_ms %v, ttft_ms %v; want the first token after the provider's 50 ms, within the completion", total, first)
		}
		return
	}
	t.Fatal("no access line of the stream")
}
