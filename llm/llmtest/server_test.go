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
	if !s.WaitCanceled(time.Second) {
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
