package llmtest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/llm/llmtest"
)

func post(t *testing.T, url, body string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestOpenAIJSON(t *testing.T) {
	s := llmtest.NewServer(t)
	resp := post(t, s.URL()+"/chat/completions", `{"model":"m1","messages":[{"role":"system","content":"sys"},{"role":"user","content":"hello world"}]}`,
		"Authorization", "Bearer k1")
	var body struct {
		Model   string
		Choices []struct {
			Message      struct{ Role, Content string }
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if got, want := body.Choices[0].Message.Content, "echo: hello world"; got != want {
		t.Errorf("content = %q, want %q", got, want)
	}
	if got, want := body.Usage.PromptTokens, llmtest.PromptTokens("sys", "hello world"); got != want {
		t.Errorf("prompt_tokens = %d, want %d", got, want)
	}
	if got, want := body.Usage.CompletionTokens, 3; got != want {
		t.Errorf("completion_tokens = %d, want %d", got, want)
	}
	r := s.Last()
	if r.Model != "m1" || r.APIKey != "k1" || r.Protocol != llmtest.OpenAI || len(r.Messages) != 2 || r.Stream {
		t.Errorf("recorded %+v", r)
	}
}

func TestOpenAIStreamWithUsage(t *testing.T) {
	s := llmtest.NewServer(t)
	resp := post(t, s.URL()+"/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a b"}]}`)
	if got, want := resp.Header.Get("Content-Type"), "text/event-stream"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			lines = append(lines, l)
		}
	}
	// role, "echo: ", "a ", "b", finish, usage, [DONE]
	if got, want := len(lines), 7; got != want {
		t.Fatalf("got %d events, want %d:\n%s", got, want, strings.Join(lines, "\n"))
	}
	if !strings.Contains(lines[4], `"finish_reason":"stop"`) || !strings.Contains(lines[5], `"choices":[]`) ||
		!strings.Contains(lines[5], `"completion_tokens":3`) || lines[6] != "data: [DONE]" {
		t.Errorf("unexpected tail:\n%s", strings.Join(lines[4:], "\n"))
	}
}

func TestAnthropicStreamEvents(t *testing.T) {
	s := llmtest.NewServer(t)
	resp := post(t, s.RootURL()+"/v1/messages", `{"model":"c","max_tokens":100,"stream":true,"system":"be nice","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`,
		"x-api-key", "k2")
	raw, _ := io.ReadAll(resp.Body)
	var events []string
	for _, l := range strings.Split(string(raw), "\n") {
		if name, ok := strings.CutPrefix(l, "event: "); ok {
			events = append(events, name)
		}
	}
	if got, want := strings.Join(events, ","), "message_start,content_block_start,ping,content_block_delta,content_block_delta,content_block_stop,message_delta,message_stop"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
	r := s.Last()
	if r.APIKey != "k2" || r.Protocol != llmtest.Anthropic || len(r.Messages) != 2 || r.Messages[0].Role != "system" || r.Messages[1].Content != "hi" {
		t.Errorf("recorded %+v", r)
	}
}

func TestQueueThenScript(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Behavior{Status: 503})
	s.Script(func(n int, r llmtest.Request) llmtest.Behavior {
		if n == 1 {
			return llmtest.Behavior{Status: 429, Header: http.Header{"Retry-After": {"2"}}}
		}
		return llmtest.Behavior{Reply: "scripted " + r.Model}
	})
	body := `{"model":"m","messages":[{"role":"user","content":"x"}]}`
	if got := post(t, s.URL()+"/chat/completions", body).StatusCode; got != 503 {
		t.Errorf("first status = %d, want 503 (queued)", got)
	}
	resp := post(t, s.URL()+"/chat/completions", body)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Errorf("second: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	raw, _ := io.ReadAll(post(t, s.URL()+"/chat/completions", body).Body)
	if !strings.Contains(string(raw), `"content":"scripted m"`) {
		t.Errorf("third body = %s", raw)
	}
	if got, want := s.Count(), 3; got != want {
		t.Errorf("Count = %d, want %d", got, want)
	}
	if got := s.Requests()[2].N; got != 2 {
		t.Errorf("N = %d, want 2", got)
	}
}

func TestAzurePath(t *testing.T) {
	s := llmtest.NewServer(t)
	post(t, s.RootURL()+"/openai/deployments/dep-1/chat/completions?api-version=2024-10-21", `{"messages":[{"role":"user","content":"x"}]}`, "api-key", "k3")
	r := s.Last()
	if r.Deployment != "dep-1" || r.Model != "dep-1" || r.APIKey != "k3" || r.Query.Get("api-version") != "2024-10-21" {
		t.Errorf("recorded %+v", r)
	}
}

func TestCanceledIsObserved(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/chat/completions", strings.NewReader(`{"messages":[]}`))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the hanging request answered")
	}
	if !s.WaitCanceledN(0, time.Second) {
		t.Fatal("the fake did not see the client go away")
	}
	if got, want := s.Canceled(), 1; got != want {
		t.Errorf("Canceled = %d, want %d", got, want)
	}
}

func TestUnknownPath(t *testing.T) {
	s := llmtest.NewServer(t)
	if got := post(t, s.URL()+"/embeddings", `{}`).StatusCode; got != http.StatusNotFound {
		t.Errorf("status = %d, want 404", got)
	}
}

// hang sends a request the fake answers with FaultHang and returns a func
// that abandons it and waits until the client side has returned.
func hang(t *testing.T, s *llmtest.Server) (abandon func()) {
	t.Helper()
	n := s.Count()
	s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/chat/completions", strings.NewReader(`{"messages":[]}`))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); s.Count() == n; { // arrived once counted
		if time.Now().After(deadline) {
			t.Fatal("the request did not reach the fake")
		}
		time.Sleep(time.Millisecond)
	}
	return func() {
		cancel()
		<-done
	}
}

func TestWaitCanceledN(t *testing.T) {
	s := llmtest.NewServer(t)
	abandon0 := hang(t, s) // request 0
	abandon1 := hang(t, s) // request 1
	t.Cleanup(abandon1)

	abandon0()
	for deadline := time.Now().Add(5 * time.Second); s.Canceled() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the fake did not see request 0 abandoned")
		}
		time.Sleep(time.Millisecond)
	}
	// Request 0's abandonment must not satisfy a wait for request 1, which
	// still hangs.
	start := time.Now()
	if s.WaitCanceledN(1, 100*time.Millisecond) {
		t.Fatal("WaitCanceledN(1) is true while request 1 still hangs")
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("WaitCanceledN(1) gave up after %v, want the whole 100ms", d)
	}
	if !s.WaitCanceledN(0, time.Second) {
		t.Fatal("request 0 was abandoned but WaitCanceledN(0) says no")
	}
	if s.WaitCanceledN(7, 10*time.Millisecond) {
		t.Error("WaitCanceledN(7) is true for a request never received")
	}

	// A wait begun before the abandonment sees it.
	got := make(chan bool)
	go func() { got <- s.WaitCanceledN(1, 5*time.Second) }()
	time.Sleep(20 * time.Millisecond)
	abandon1()
	if !<-got {
		t.Fatal("WaitCanceledN(1) did not see request 1 abandoned")
	}
	// Nothing is consumed: both stay seen.
	for n := range 2 {
		if !s.WaitCanceledN(n, 0) {
			t.Errorf("WaitCanceledN(%d, 0) = false after it was seen", n)
		}
	}
	if got, want := s.Canceled(), 2; got != want {
		t.Errorf("Canceled = %d, want %d", got, want)
	}
}

func TestCommentsBeforeTheFirstEvent(t *testing.T) {
	for _, tc := range []struct {
		name, path, body, first string
	}{
		{"openai", "/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "data: "},
		{"anthropic", "/messages", `{"model":"c","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, "event: message_start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Comments: 3})
			raw, _ := io.ReadAll(post(t, s.URL()+tc.path, tc.body).Body)
			rest, ok := strings.CutPrefix(string(raw), strings.Repeat(": keep-alive\n\n", 3))
			if !ok || !strings.HasPrefix(rest, tc.first) {
				t.Errorf("stream = %.200q, want 3 comments and then %q", raw, tc.first)
			}
		})
	}
}

func TestFaultUnendedEvent(t *testing.T) {
	for _, tc := range []struct {
		name, path, body, data string
	}{
		{"openai", "/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"a b c"}]}`, `data: {"choices":[],"pad":"`},
		{"anthropic", "/messages", `{"model":"c","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"a b c"}]}`, `data: {"type":"ping","pad":"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			const size = 100 << 10
			s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultUnendedEvent, AfterDeltas: 1, Size: size})
			raw, err := io.ReadAll(post(t, s.URL()+tc.path, tc.body).Body)
			if err != nil {
				t.Fatal(err)
			}
			// The event is the stream's last: after its last blank line
			// come only its data lines, then the blank line that ends it.
			body := strings.TrimSuffix(string(raw), "\n\n")
			event := body[strings.LastIndex(body, "\n\n")+2:]
			if tc.name == "anthropic" {
				var ok bool
				if event, ok = strings.CutPrefix(event, "event: ping\n"); !ok {
					t.Fatalf("the event does not begin with its name: %.100q", event)
				}
			}
			lines := strings.Split(event, "\n")
			if got, want := len(lines), (size+llmtest.UnendedEventLine-1)/llmtest.UnendedEventLine; got != want {
				t.Errorf("%d data lines, want %d", got, want)
			}
			for i, l := range lines {
				if len(l)+1 != llmtest.UnendedEventLine || !strings.HasPrefix(l, tc.data) || !json.Valid([]byte(strings.TrimPrefix(l, "data: "))) {
					t.Fatalf("line %d = %.60q (%d bytes)", i, l, len(l)+1)
				}
			}
			if strings.Contains(body, "[DONE]") || strings.Contains(body, "finish_reason\":\"stop") || strings.Contains(body, "message_stop") {
				t.Error("the stream ended normally after the event")
			}
		})
	}
}

// dataLines returns the data of a stream's data lines.
func dataLines(raw []byte) []string {
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		if d, ok := strings.CutPrefix(l, "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

func TestReasoningShapes(t *testing.T) {
	const stream = `{"model":"m","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"a b"}]}`
	const whole = `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"a b"}]}`
	for _, tc := range []struct {
		name, path, body string
		b                llmtest.Behavior
		want             []string // in order, each in a data line of its own (whole: in the body)
	}{
		{"openai stream", "/chat/completions", stream, llmtest.Behavior{Reasoning: "hmm ok"},
			[]string{`"delta":{"content":null,"reasoning_content":"hmm "}`, `"reasoning_content":"ok"`, `"delta":{"content":"echo: "}`}},
		{"openai parts stream", "/chat/completions", stream, llmtest.Behavior{Reasoning: "hmm", ContentParts: true},
			[]string{`"content":[{"thinking":[{"text":"hmm","type":"text"}],"type":"thinking"}]`, `"content":[{"text":"echo: ","type":"text"}]`}},
		{"openai whole", "/chat/completions", whole, llmtest.Behavior{Reasoning: "hmm"},
			[]string{`"content":"echo: a b","reasoning_content":"hmm"`}},
		{"openai parts whole", "/chat/completions", whole, llmtest.Behavior{Reasoning: "hmm", ContentParts: true},
			[]string{`"content":[{"thinking":[{"text":"hmm","type":"text"}],"type":"thinking"},{"text":"echo: a b","type":"text"}]`}},
		{"anthropic stream", "/messages", stream, llmtest.Behavior{Reasoning: "hmm"},
			[]string{`"index":0,"type":"content_block_start"`, `{"type":"ping"}`, `"delta":{"thinking":"hmm","type":"thinking_delta"}`, `"type":"signature_delta"`,
				`"content_block":{"text":"","type":"text"},"index":1`, `"delta":{"text":"echo: ","type":"text_delta"},"index":1`}},
		{"anthropic whole", "/messages", whole, llmtest.Behavior{Reasoning: "hmm"},
			[]string{`"content":[{"signature":"ErUBCkYIAxgCIkDfake","thinking":"hmm","type":"thinking"},{"text":"echo: a b","type":"text"}]`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(tc.b)
			raw, _ := io.ReadAll(post(t, s.URL()+tc.path, tc.body).Body)
			lines := dataLines(raw)
			if !strings.Contains(tc.body, `"stream":true`) {
				lines = []string{string(raw)}
			}
			i := 0
			for _, l := range lines {
				if i < len(tc.want) && strings.Contains(l, tc.want[i]) {
					i++
				}
			}
			if i < len(tc.want) {
				t.Errorf("no %s after the first %d: %s", tc.want[i], i, raw)
			}
		})
	}
}

func TestFaultErrorChunk(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultErrorChunk, AfterDeltas: 1})
	raw, _ := io.ReadAll(post(t, s.URL()+"/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"a b"}]}`).Body)
	lines := dataLines(raw)
	// role, "echo: ", the error chunk, [DONE]
	if len(lines) != 4 || !strings.Contains(lines[1], `"content":"echo: "`) || lines[3] != "[DONE]" {
		t.Fatalf("stream = %s", raw)
	}
	var c struct {
		Error   struct{ Message string }
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		}
	}
	if err := json.Unmarshal([]byte(lines[2]), &c); err != nil || c.Error.Message == "" || len(c.Choices) != 1 || c.Choices[0].FinishReason != "error" {
		t.Errorf("error chunk = %s (%v)", lines[2], err)
	}
}

func TestToolIndexZero(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Behavior{ToolCalls: []llmtest.ToolCall{{ID: "a", Name: "f"}, {ID: "b", Name: "g"}}, ToolIndexZero: true})
	raw, _ := io.ReadAll(post(t, s.URL()+"/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`).Body)
	var ids []string
	for _, l := range dataLines(raw) {
		var c struct {
			Choices []struct {
				Delta struct {
					ToolCalls []struct {
						Index int
						ID    string
					} `json:"tool_calls"`
				}
			}
		}
		_ = json.Unmarshal([]byte(l), &c)
		for _, ch := range c.Choices {
			for _, tc := range ch.Delta.ToolCalls {
				if tc.Index != 0 {
					t.Errorf("tool call index %d: %s", tc.Index, l)
				}
				if tc.ID != "" {
					ids = append(ids, tc.ID)
				}
			}
		}
	}
	if got := strings.Join(ids, ","); got != "a,b" {
		t.Errorf("ids = %s, want a,b", got)
	}
}

// TestAnthropicRefusesBlankText: the Messages API refuses an empty text
// block, and a content whose text is only whitespace, with a 400; the fake
// does too, so that a client that sends one fails as it would upstream.
func TestAnthropicRefusesBlankText(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
	}{
		{"text", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, 200},
		{"empty block", `{"messages":[{"role":"user","content":[{"type":"text","text":""}]}]}`, 400},
		{"empty string", `{"messages":[{"role":"user","content":""}]}`, 400},
		{"whitespace block", `{"messages":[{"role":"user","content":[{"type":"text","text":" \n"}]}]}`, 400},
		{"whitespace beside text", `{"messages":[{"role":"user","content":[{"type":"text","text":" "},{"type":"text","text":"hi"}]}]}`, 200},
		{"whitespace system", `{"system":[{"type":"text","text":"\n"}],"messages":[{"role":"user","content":"hi"}]}`, 400},
		{"whitespace tool result", `{"tools":[{"name":"f","input_schema":{"type":"object"}}],"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"\t"}]}]}]}`, 400},
		{"tool result without content", `{"tools":[{"name":"f","input_schema":{"type":"object"}}],"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t"}]}]}`, 200},
		// Tool blocks need tools defined, and ids of Anthropic's pattern.
		{"tool result without tools", `{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t"}]}]}`, 400},
		{"tool result without its call", `{"tools":[{"name":"f","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t"}]}]}`, 400},
		{"tool id of another provider", `{"tools":[{"name":"f","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"functions.f:0"}]}]}`, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			resp := post(t, s.URL()+"/messages", tt.body)
			if got := resp.StatusCode; got != tt.status {
				b, _ := io.ReadAll(resp.Body)
				t.Errorf("status = %d, want %d: %s", got, tt.status, b)
			}
		})
	}
	// OpenAI-wire servers take empty text.
	s := llmtest.NewServer(t)
	if resp := post(t, s.URL()+"/chat/completions", `{"messages":[{"role":"user","content":""}]}`); resp.StatusCode != 200 {
		t.Errorf("an empty OpenAI-wire message = %d, want 200", resp.StatusCode)
	}
}

// TestNoStreamOptions: a server that does not know stream_options (as
// Mistral's API) refuses a request that has it with a 422, and streams
// usage unasked.
func TestNoStreamOptions(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Script(func(int, llmtest.Request) llmtest.Behavior { return llmtest.Behavior{NoStreamOptions: true} })
	resp := post(t, s.URL()+"/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a"}]}`)
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 422 || !strings.Contains(string(b), `"stream_options"`) {
		t.Errorf("with stream_options: %d %s, want 422 naming it", resp.StatusCode, b)
	}
	resp = post(t, s.URL()+"/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"a"}]}`)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"usage":{`) {
		t.Errorf("without stream_options: %d %s, want a stream with usage", resp.StatusCode, b)
	}
}

// TestAnthropicPromptCache: a request with a top-level cache_control writes
// its prompt to the cache; the next one that extends it reads that part,
// reported as Anthropic does (input_tokens is the rest); a request without
// cache_control neither reads nor writes, and one with a cache_control the
// API does not know is refused.
func TestAnthropicPromptCache(t *testing.T) {
	s := llmtest.NewServer(t)
	type usage struct {
		Input int `json:"input_tokens"`
		Write int `json:"cache_creation_input_tokens"`
		Read  int `json:"cache_read_input_tokens"`
	}
	call := func(body string) (int, usage) {
		t.Helper()
		resp := post(t, s.URL()+"/messages", body, "X-Api-Key", "k")
		var out struct{ Usage usage }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Usage
	}
	const cachedSystem = `"system":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}]`
	const first = `"system":"sys","messages":[{"role":"user","content":"hello world"}]`
	const second = `"system":"sys","messages":[{"role":"user","content":"hello world"},{"role":"assistant","content":"echo: hello world"},{"role":"user","content":"again"}]`
	all, prefix := llmtest.PromptTokens("sys", "hello world", "echo: hello world", "again"), llmtest.PromptTokens("sys", "hello world")
	for _, tc := range []struct {
		name, body string
		want       usage
	}{
		{"uncached", `{"model":"m",` + first + `}`, usage{Input: prefix}},
		{"first", `{"model":"m","cache_control":{"type":"ephemeral"},` + first + `}`, usage{Write: prefix}},
		{"extended", `{"model":"m","cache_control":{"type":"ephemeral","ttl":"1h"},` + second + `}`, usage{Input: 0, Write: all - prefix, Read: prefix}},
		{"again", `{"model":"m","cache_control":{"type":"ephemeral"},` + second + `}`, usage{Read: all}},
		{"another model", `{"model":"m2","cache_control":{"type":"ephemeral"},` + second + `}`, usage{Write: all}},
		{"other tools", `{"model":"m","cache_control":{"type":"ephemeral"},"tools":[{"name":"t","input_schema":{"type":"object"}}],` + second + `}`, usage{Write: all}},
		{"without cache_control", `{"model":"m",` + second + `}`, usage{Input: all}},
		// A breakpoint after the system prompt caches it for every
		// conversation that shares it.
		{"system breakpoint", `{"model":"m3","cache_control":{"type":"ephemeral"},` + cachedSystem + `,"messages":[{"role":"user","content":"hello world"}]}`, usage{Write: prefix}},
		{"another conversation", `{"model":"m3","cache_control":{"type":"ephemeral"},` + cachedSystem + `,"messages":[{"role":"user","content":"other"}]}`,
			usage{Read: llmtest.PromptTokens("sys"), Write: llmtest.PromptTokens("sys", "other") - llmtest.PromptTokens("sys")}},
	} {
		if status, got := call(tc.body); status != 200 || got != tc.want {
			t.Errorf("%s: %d %+v; want 200 %+v", tc.name, status, got, tc.want)
		}
	}
	for name, body := range map[string]string{
		"a ttl of 10m": `{"model":"m","cache_control":{"type":"ephemeral","ttl":"10m"},` + first + `}`,
		"1h after 5m":  `{"model":"m","cache_control":{"type":"ephemeral","ttl":"1h"},` + cachedSystem + `,"messages":[{"role":"user","content":"a"}]}`,
		"five breakpoints": `{"model":"m","cache_control":{"type":"ephemeral"},"system":[` + strings.Repeat(`{"type":"text","text":"s","cache_control":{"type":"ephemeral"}},`, 3) +
			`{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}}]}]}`,
	} {
		if status, _ := call(body); status != 400 {
			t.Errorf("%s: %d; want 400", name, status)
		}
	}
}
