package llm_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/llm"
	"github.com/parleyhq/parley/llm/llmtest"
)

const testKey = "sk-test-0123456789abcdefSECRET"

var allTypes = []domain.ProviderType{
	domain.ProviderOpenAI, domain.ProviderOpenAICompatible, domain.ProviderAzureOpenAI, domain.ProviderAnthropic,
}

// newClient returns a client allowed to reach the fake on 127.0.0.1, with
// retries that do not slow the tests down.
func newClient(t *testing.T, mut ...func(*llm.Config)) *llm.Client {
	t.Helper()
	cfg := llm.Config{AllowPrivate: true, RetryBaseDelay: time.Millisecond}
	for _, m := range mut {
		m(&cfg)
	}
	return llm.New(cfg)
}

func endpoint(typ domain.ProviderType, s *llmtest.Server) domain.Endpoint {
	return domain.Endpoint{Type: typ, BaseURL: s.URL(), APIKey: testKey}
}

func request(typ domain.ProviderType, s *llmtest.Server, msgs ...string) domain.LLMRequest {
	req := domain.LLMRequest{Endpoint: endpoint(typ, s), Model: "test-model"}
	if len(msgs) == 0 {
		msgs = []string{"hello there"}
	}
	for _, m := range msgs {
		req.Messages = append(req.Messages, domain.LLMMessage{Role: domain.RoleUser, Content: m})
	}
	return req
}

// run calls Complete, streaming when stream is set, and returns the
// deltas it received.
func run(ctx context.Context, c *llm.Client, req domain.LLMRequest, stream bool) (*domain.LLMResult, []string, error) {
	var deltas []string
	var onDelta func(domain.Delta) error
	if stream {
		onDelta = func(d domain.Delta) error {
			if d.Content != "" {
				deltas = append(deltas, d.Content)
			}
			return nil
		}
	}
	res, err := c.Complete(ctx, req, onDelta)
	return res, deltas, err
}

func ptr[T any](v T) *T { return &v }

func modes() []struct {
	name   string
	stream bool
} {
	return []struct {
		name   string
		stream bool
	}{{"json", false}, {"stream", true}}
}

func TestCompleteEachProvider(t *testing.T) {
	msgs := []domain.LLMMessage{
		{Role: domain.RoleSystem, Content: "Be brief."},
		{Role: domain.RoleUser, Content: "Hi."},
		{Role: domain.RoleAssistant, Content: "Hello! How can I help?"},
		{Role: domain.RoleUser, Content: "say something nice please"},
	}
	contents := make([]string, len(msgs))
	for i, m := range msgs {
		contents[i] = m.Content
	}
	wantContent := llmtest.EchoReply("say something nice please")
	wantDeltas := llmtest.Deltas(wantContent)
	wantUsage := domain.Usage{
		PromptTokens: llmtest.PromptTokens(contents...), CompletionTokens: len(wantDeltas),
		TotalTokens: llmtest.PromptTokens(contents...) + len(wantDeltas),
	}

	for _, typ := range allTypes {
		for _, m := range modes() {
			t.Run(string(typ)+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				c := newClient(t)
				req := domain.LLMRequest{
					Endpoint: endpoint(typ, s), Model: "test-model", Messages: msgs,
					Temperature: ptr(0.7), MaxTokens: ptr(50), TopP: ptr(0.9), Stop: []string{"END", "STOP"},
				}
				res, deltas, err := run(context.Background(), c, req, m.stream)
				if err != nil {
					t.Fatalf("Complete: %v", err)
				}
				if got, want := res.Content, wantContent; got != want {
					t.Errorf("Content = %q, want %q", got, want)
				}
				if got, want := res.FinishReason, "stop"; got != want {
					t.Errorf("FinishReason = %q, want %q", got, want)
				}
				if got, want := res.Model, "test-model"; got != want {
					t.Errorf("Model = %q, want %q", got, want)
				}
				if got, want := res.Usage, wantUsage; got != want {
					t.Errorf("Usage = %+v, want %+v", got, want)
				}
				if res.FirstByte <= 0 {
					t.Errorf("FirstByte = %v, want > 0", res.FirstByte)
				}
				if m.stream {
					if got, want := strings.Join(deltas, "|"), strings.Join(wantDeltas, "|"); got != want {
						t.Errorf("deltas = %q, want %q", got, want)
					}
				} else if len(deltas) != 0 {
					t.Errorf("got %d deltas without streaming", len(deltas))
				}
				if got, want := s.Count(), 1; got != want {
					t.Fatalf("upstream requests = %d, want %d", got, want)
				}
				checkUpstreamRequest(t, typ, s.Last(), m.stream)
			})
		}
	}
}

// checkUpstreamRequest checks what the fake received for the request of
// TestCompleteEachProvider.
func checkUpstreamRequest(t *testing.T, typ domain.ProviderType, r llmtest.Request, stream bool) {
	t.Helper()
	b := r.Body
	if got, want := r.Method, http.MethodPost; got != want {
		t.Errorf("method = %s, want %s", got, want)
	}
	if got, want := r.Stream, stream; got != want {
		t.Errorf("stream = %v, want %v", got, want)
	}
	if got, want := b["temperature"], 0.7; got != want {
		t.Errorf("temperature = %v, want %v", got, want)
	}
	if got, want := b["top_p"], 0.9; got != want {
		t.Errorf("top_p = %v, want %v", got, want)
	}
	if got, want := r.APIKey, testKey; got != want {
		t.Errorf("API key = %q, want %q", got, want)
	}

	if typ == domain.ProviderAnthropic {
		if got, want := r.Path, "/v1/messages"; got != want {
			t.Errorf("path = %s, want %s", got, want)
		}
		if got, want := r.Header.Get("X-Api-Key"), testKey; got != want {
			t.Errorf("x-api-key = %q, want %q", got, want)
		}
		if got := r.Header.Get("Authorization"); got != "" {
			t.Errorf("Authorization = %q, want none", got)
		}
		// API version 2026-10-21 (anthropic-sdk-go v2's) refuses
		// temperature and top_p, which Parley offers: an SDK upgrade that
		// moves the version must fail here, not in production.
		if got, want := r.Header.Get("Anthropic-Version"), "2023-06-01"; got != want {
			t.Errorf("anthropic-version = %q, want %q", got, want)
		}
		if got, want := b["model"], "test-model"; got != want {
			t.Errorf("model = %v, want %v", got, want)
		}
		if got, want := b["max_tokens"], 50.0; got != want {
			t.Errorf("max_tokens = %v, want %v", got, want)
		}
		if got, want := stringList(b["stop_sequences"]), "END,STOP"; got != want {
			t.Errorf("stop_sequences = %v, want %v", got, want)
		}
		sys, _ := b["system"].([]any)
		if len(sys) != 1 || sys[0].(map[string]any)["text"] != "Be brief." {
			t.Errorf("system = %#v, want one text block %q", b["system"], "Be brief.")
		}
		if got, want := roles(r), "system:Be brief.|user:Hi.|assistant:Hello! How can I help?|user:say something nice please"; got != want {
			t.Errorf("messages = %s, want %s", got, want)
		}
		return
	}

	switch typ {
	case domain.ProviderAzureOpenAI:
		if got, want := r.Path, "/v1/openai/deployments/test-model/chat/completions"; got != want {
			t.Errorf("path = %s, want %s", got, want)
		}
		if got, want := r.Query.Get("api-version"), llm.DefaultAzureAPIVersion; got != want {
			t.Errorf("api-version = %s, want %s", got, want)
		}
		if got, want := r.Header.Get("Api-Key"), testKey; got != want {
			t.Errorf("api-key = %q, want %q", got, want)
		}
	default:
		if got, want := r.Path, "/v1/chat/completions"; got != want {
			t.Errorf("path = %s, want %s", got, want)
		}
		if got, want := r.Header.Get("Authorization"), "Bearer "+testKey; got != want {
			t.Errorf("Authorization = %q, want %q", got, want)
		}
	}
	if got, want := b["model"], "test-model"; got != want {
		t.Errorf("model = %v, want %v", got, want)
	}
	// OpenAI itself gets max_completion_tokens (its reasoning models refuse
	// max_tokens); OpenAI-wire servers and Azure's dated API get max_tokens
	// (TestAzureMaxCompletionTokens).
	tokensField, otherField := "max_tokens", "max_completion_tokens"
	if typ == domain.ProviderOpenAI {
		tokensField, otherField = otherField, tokensField
	}
	if got, want := b[tokensField], 50.0; got != want {
		t.Errorf("%s = %v, want %v", tokensField, got, want)
	}
	if _, ok := b[otherField]; ok {
		t.Errorf("%s sent as well as %s", otherField, tokensField)
	}
	if got, want := stringList(b["stop"]), "END,STOP"; got != want {
		t.Errorf("stop = %v, want %v", got, want)
	}
	if got, want := roles(r), "system:Be brief.|user:Hi.|assistant:Hello! How can I help?|user:say something nice please"; got != want {
		t.Errorf("messages = %s, want %s", got, want)
	}
	so, _ := b["stream_options"].(map[string]any)
	if got, want := so["include_usage"] == true, stream; got != want {
		t.Errorf("stream_options.include_usage = %v, want %v (body %s)", got, want, r.RawBody)
	}
}

func roles(r llmtest.Request) string {
	var parts []string
	for _, m := range r.Messages {
		parts = append(parts, m.Role+":"+m.Content)
	}
	return strings.Join(parts, "|")
}

func stringList(v any) string {
	l, _ := v.([]any)
	var parts []string
	for _, x := range l {
		s, _ := x.(string)
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

func TestZeroSamplingParametersAreSent(t *testing.T) {
	for _, typ := range allTypes {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			req := request(typ, s)
			req.Temperature, req.TopP = ptr(0.0), ptr(0.0)
			if _, _, err := run(context.Background(), newClient(t), req, false); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"temperature", "top_p"} {
				if got, ok := s.Last().Body[f]; !ok || got != 0.0 {
					t.Errorf("%s = %v (present %v), want 0; body %s", f, got, ok, s.Last().RawBody)
				}
			}
		})
	}
}

func TestUnsetParametersAreNotSent(t *testing.T) {
	for _, typ := range allTypes {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			if _, _, err := run(context.Background(), newClient(t), request(typ, s), false); err != nil {
				t.Fatal(err)
			}
			b := s.Last().Body
			for _, f := range []string{"temperature", "top_p", "stop", "stop_sequences", "max_completion_tokens", "system"} {
				if v, ok := b[f]; ok {
					t.Errorf("%s = %v sent though unset", f, v)
				}
			}
			_, hasMax := b["max_tokens"]
			if typ == domain.ProviderAnthropic {
				if got, want := b["max_tokens"], float64(llm.DefaultAnthropicMaxTokens); got != want {
					t.Errorf("max_tokens = %v, want the default %v", got, want)
				}
			} else if hasMax {
				t.Errorf("max_tokens = %v sent though unset", b["max_tokens"])
			}
		})
	}
}

func TestFinishReasonLength(t *testing.T) {
	for _, typ := range allTypes {
		for _, m := range modes() {
			t.Run(string(typ)+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				req := request(typ, s, "one two three four five")
				req.MaxTokens = ptr(2)
				res, _, err := run(context.Background(), newClient(t), req, m.stream)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := res.FinishReason, "length"; got != want {
					t.Errorf("FinishReason = %q, want %q", got, want)
				}
				if got, want := res.Content, "echo: one "; got != want {
					t.Errorf("Content = %q, want %q", got, want)
				}
				if got, want := res.Usage.CompletionTokens, 2; got != want {
					t.Errorf("CompletionTokens = %d, want %d", got, want)
				}
			})
		}
	}
}

// TestFinishReasonsAreOpenAIs: every provider's finish reason comes back
// as one of OpenAI's. Anthropic's stop reasons are mapped; other
// OpenAI-wire servers' values outside OpenAI's were passed on as they came,
// and stored: clients that type finish_reason as an enum fail on them.
func TestFinishReasonsAreOpenAIs(t *testing.T) {
	for _, tc := range []struct {
		typ          domain.ProviderType
		reason, want string
	}{
		{domain.ProviderAnthropic, "end_turn", "stop"}, {domain.ProviderAnthropic, "stop_sequence", "stop"},
		{domain.ProviderAnthropic, "max_tokens", "length"}, {domain.ProviderAnthropic, "tool_use", "tool_calls"},
		{domain.ProviderAnthropic, "refusal", "content_filter"}, {domain.ProviderAnthropic, "pause_turn", "stop"},
		{domain.ProviderAnthropic, "model_context_window_exceeded", "length"},
		{domain.ProviderAnthropic, "a_reason_added_later", "stop"}, // not passed on: typed OpenAI clients reject it
		{domain.ProviderOpenAICompatible, "stop", "stop"}, {domain.ProviderOpenAICompatible, "length", "length"},
		{domain.ProviderOpenAICompatible, "content_filter", "content_filter"},
		{domain.ProviderOpenAICompatible, "model_length", "length"}, // Mistral: the context window reached
		{domain.ProviderOpenAICompatible, "a_reason_added_later", "stop"},
	} {
		for _, m := range modes() {
			t.Run(string(tc.typ)+"/"+tc.reason+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(llmtest.Behavior{FinishReason: tc.reason})
				res, _, err := run(context.Background(), newClient(t), request(tc.typ, s), m.stream)
				if err != nil {
					t.Fatal(err)
				}
				if got := res.FinishReason; got != tc.want {
					t.Errorf("FinishReason = %q, want %q", got, tc.want)
				}
			})
		}
	}
}

func TestAnthropicBaseURLWithOrWithoutV1(t *testing.T) {
	for _, base := range []string{"", "/v1", "/v1/", "/"} {
		t.Run("root"+base, func(t *testing.T) {
			s := llmtest.NewServer(t)
			req := request(domain.ProviderAnthropic, s)
			req.Endpoint.BaseURL = s.RootURL() + base
			if _, _, err := run(context.Background(), newClient(t), req, false); err != nil {
				t.Fatal(err)
			}
			if got, want := s.Last().Path, "/v1/messages"; got != want {
				t.Errorf("path = %s, want %s", got, want)
			}
		})
	}
}

func TestAzureAPIVersion(t *testing.T) {
	s := llmtest.NewServer(t)
	req := request(domain.ProviderAzureOpenAI, s)
	req.Endpoint.APIVersion = "2025-01-01-preview"
	req.Model = "gpt-4o.deploy"
	if _, _, err := run(context.Background(), newClient(t), req, false); err != nil {
		t.Fatal(err)
	}
	r := s.Last()
	if got, want := r.Query.Get("api-version"), "2025-01-01-preview"; got != want {
		t.Errorf("api-version = %s, want %s", got, want)
	}
	if got, want := r.Deployment, "gpt-4o.deploy"; got != want {
		t.Errorf("deployment = %s, want %s (the model, unchanged)", got, want)
	}
}

// TestAzureV1: an azure-openai provider whose baseUrl is Azure's v1 API
// (.../openai/v1) is called as OpenAI's wire: POST .../openai/v1/chat/completions,
// the key as a bearer token, the deployment name as the body's model, and
// no api-version; a baseUrl without that path stays the dated API's
// resource root (TestAzureAPIVersion).
func TestAzureV1(t *testing.T) {
	s := llmtest.NewServer(t)
	for _, base := range []string{s.RootURL() + "/openai/v1", s.RootURL() + "/openai/v1/"} {
		for _, stream := range []bool{false, true} {
			req := request(domain.ProviderAzureOpenAI, s)
			req.Endpoint.BaseURL = base
			req.Model = "gpt-4o.deploy"
			res, _, err := run(context.Background(), newClient(t), req, stream)
			if err != nil || res.Content == "" {
				t.Fatalf("%s stream=%v: %v %+v", base, stream, err, res)
			}
			r := s.Last()
			if r.Path != "/openai/v1/chat/completions" || len(r.Query) != 0 {
				t.Errorf("%s stream=%v: called %s?%s, want /openai/v1/chat/completions with no query", base, stream, r.Path, r.Query.Encode())
			}
			if got, want := r.Header.Get("Authorization"), "Bearer "+testKey; got != want {
				t.Errorf("%s stream=%v: Authorization = %q, want %q", base, stream, got, want)
			}
			if r.Deployment != "" || r.Model != "gpt-4o.deploy" {
				t.Errorf("%s stream=%v: deployment %q, model %q; want the deployment name as the body's model", base, stream, r.Deployment, r.Model)
			}
		}
	}
}

// TestAzureDeploymentStaysInItsSegment: an Azure call's model is the
// deployment name, a segment of the URL's path. A model that would leave
// that segment ("x/../../files", "..") is refused before any request, so
// that a caller allowed to run completions cannot make the provider's key
// reach another path of the Azure resource.
func TestAzureDeploymentStaysInItsSegment(t *testing.T) {
	s := llmtest.NewServer(t)
	for _, model := range []string{"x/../../files", "..", ".", "a?b", "a#b", `a\b`, "a%2Fb", "a b"} {
		t.Run(model, func(t *testing.T) {
			before := s.Count()
			req := request(domain.ProviderAzureOpenAI, s)
			req.Model = model
			_, _, err := run(context.Background(), newClient(t), req, false)
			if domain.KindOf(err) != domain.Invalid || !strings.Contains(domain.MessageOf(err), "deployment") {
				t.Errorf("model %q: %v; want an invalid_request about the deployment name", model, err)
			}
			if s.Count() != before {
				t.Errorf("model %q reached the upstream at %s", model, s.Last().Path)
			}
		})
	}
	req := request(domain.ProviderAzureOpenAI, s)
	req.Model = "gpt-4o_mini.v2-eu"
	if _, _, err := run(context.Background(), newClient(t), req, false); err != nil {
		t.Fatalf("a deployment name of letters, digits, '.', '_' and '-': %v", err)
	}
}

func TestInvalidEndpoints(t *testing.T) {
	c := newClient(t)
	for _, tc := range []struct {
		name string
		ep   domain.Endpoint
		want string
	}{
		{"unknown type", domain.Endpoint{Type: "gemini", BaseURL: "http://127.0.0.1:1"}, "not supported"},
		{"azure without baseUrl", domain.Endpoint{Type: domain.ProviderAzureOpenAI}, "baseUrl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Complete(context.Background(), domain.LLMRequest{Endpoint: tc.ep, Model: "m",
				Messages: []domain.LLMMessage{{Role: domain.RoleUser, Content: "x"}}}, nil)
			if got, want := domain.KindOf(err), domain.Invalid; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if !strings.Contains(domain.MessageOf(err), tc.want) {
				t.Errorf("message %q does not mention %q", domain.MessageOf(err), tc.want)
			}
		})
	}
}

func TestUpstreamErrors(t *testing.T) {
	date := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name          string
		b             llmtest.Behavior
		kind          domain.Kind
		msg           []string // substrings of the message
		retryAfterMin time.Duration
		retryAfterMax time.Duration
		wantRequests  int
		notInMessages []string
		param         string // the refused parameter an OpenAI-wire refusal names
		code          string // the code the refusal gives: details.upstreamCode
		tooLong       bool   // a refusal of a request past the model's context window
	}{
		{name: "401", b: llmtest.Behavior{Status: 401}, kind: domain.Upstream,
			msg: []string{"the AI provider rejected its API key (HTTP 401): an owner of its project must replace the provider's apiKey (PATCH /api/v1/ai-providers/{id})"}, wantRequests: 1},
		{name: "403", b: llmtest.Behavior{Status: 403, Body: `{"error":{"message":"Project proj_1 does not have access to model o3","type":"invalid_request_error","code":"model_not_found"}}`},
			kind: domain.Upstream, msg: []string{"refused this key access (HTTP 403)", "does not have access to model o3"}, wantRequests: 1},
		{name: "429 out of quota", b: llmtest.Behavior{Status: 429, Body: `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","code":"insufficient_quota"}}`},
			kind: domain.Upstream, msg: []string{"out of credit or past its spending limit (HTTP 429)", "You exceeded your current quota"}, wantRequests: 1},
		{name: "429 seconds", b: llmtest.Behavior{Status: 429, Header: http.Header{"Retry-After": {"7"}}}, kind: domain.RateLimited,
			msg: []string{"HTTP 429"}, retryAfterMin: 7 * time.Second, retryAfterMax: 7 * time.Second, wantRequests: 1},
		{name: "429 date", b: llmtest.Behavior{Status: 429, Header: http.Header{"Retry-After": {date}}}, kind: domain.RateLimited,
			msg: []string{"HTTP 429"}, retryAfterMin: 80 * time.Second, retryAfterMax: 91 * time.Second, wantRequests: 1},
		{name: "429 without Retry-After", b: llmtest.Behavior{Status: 429}, kind: domain.RateLimited,
			msg: []string{"HTTP 429); retry after 1s"}, retryAfterMin: llm.DefaultRetryAfter, retryAfterMax: llm.DefaultRetryAfter, wantRequests: 1},
		{name: "429 Retry-After of a year", b: llmtest.Behavior{Status: 429, Header: http.Header{"Retry-After": {"31536000"}}}, kind: domain.RateLimited,
			msg: []string{"retry after 3600s"}, retryAfterMin: llm.MaxRetryAfter, retryAfterMax: llm.MaxRetryAfter, wantRequests: 1},
		{name: "429 with OpenAI's reset headers", b: llmtest.Behavior{Status: 429, Header: http.Header{
			"X-Ratelimit-Reset-Requests": {"1s"}, "X-Ratelimit-Remaining-Requests": {"59"},
			"X-Ratelimit-Reset-Tokens": {"1m30.5s"}, "X-Ratelimit-Remaining-Tokens": {"0"},
		}}, kind: domain.RateLimited, msg: []string{"retry after 91s"}, retryAfterMin: 90500 * time.Millisecond, retryAfterMax: 90500 * time.Millisecond, wantRequests: 1},
		{name: "429 with Anthropic's reset headers", b: llmtest.Behavior{Status: 429, Header: http.Header{
			"Anthropic-Ratelimit-Requests-Reset": {time.Now().Add(40 * time.Second).UTC().Format(time.RFC3339)}, "Anthropic-Ratelimit-Requests-Remaining": {"0"},
			"Anthropic-Ratelimit-Tokens-Reset": {time.Now().Add(5 * time.Minute).UTC().Format(time.RFC3339)}, "Anthropic-Ratelimit-Tokens-Remaining": {"80000"},
		}}, kind: domain.RateLimited, msg: []string{"HTTP 429"}, retryAfterMin: 30 * time.Second, retryAfterMax: 41 * time.Second, wantRequests: 1},
		// A request the provider refuses as malformed is the caller's to
		// fix (Invalid), not a gateway fault that clients retry.
		{name: "400 with the upstream's message", b: llmtest.Behavior{Status: 400, Body: `{"error":{"message":"max_tokens is too large: 999999","type":"invalid_request_error"}}`},
			kind: domain.Invalid, msg: []string{"HTTP 400", "max_tokens is too large: 999999", "fix the request"}, wantRequests: 1},
		// Anthropic's own error body, from a model that takes no
		// temperature on any API version.
		{name: "400 a model refuses a parameter", b: llmtest.Behavior{Status: 400, Body: "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"`temperature` is deprecated for this model.\"}}"},
			kind: domain.Invalid, msg: []string{"HTTP 400", "`temperature` is deprecated for this model.", "fix the request"}, wantRequests: 1},
		// OpenAI's refusal names the parameter it refuses: upstreamParam.
		{name: "400 naming a parameter", b: llmtest.Behavior{Status: 400, Body: `{"error":{"message":"Unsupported parameter: 'parallel_tool_calls' is not supported with this model.","type":"invalid_request_error","param":"parallel_tool_calls","code":"unsupported_parameter"}}`},
			kind: domain.Invalid, msg: []string{"HTTP 400", "Unsupported parameter"}, param: "parallel_tool_calls", code: "unsupported_parameter", wantRequests: 1},
		// A request past the model's context window says so, by the code
		// OpenAI gives or the words the others use.
		{name: "400 context length exceeded", b: llmtest.Behavior{Status: 400, Body: `{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`},
			kind: domain.Invalid, msg: []string{"HTTP 400", "maximum context length is 128000", "longer than the model's context window"}, notInMessages: []string{"fix the request"},
			param: "messages", code: "context_length_exceeded", tooLong: true, wantRequests: 1},
		{name: "400 prompt is too long", b: llmtest.Behavior{Status: 400, Body: `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}`},
			kind: domain.Invalid, msg: []string{"HTTP 400", "prompt is too long", "longer than the model's context window"}, tooLong: true, wantRequests: 1},
		{name: "400 with an HTML body", b: llmtest.Behavior{Status: 400, Body: "<html><body>Bad Request</body></html>", Header: http.Header{"Content-Type": {"text/html"}}},
			kind: domain.Invalid, msg: []string{"HTTP 400"}, notInMessages: []string{"<html>"}, wantRequests: 1},
		{name: "413", b: llmtest.Behavior{Status: 413, Body: `{"error":{"message":"prompt is too long","type":"request_too_large"}}`},
			kind: domain.Invalid, msg: []string{"HTTP 413", "prompt is too long"}, tooLong: true, wantRequests: 1},
		{name: "422", b: llmtest.Behavior{Status: 422}, kind: domain.Invalid, msg: []string{"HTTP 422"}, wantRequests: 1},
		{name: "402 is the provider's account", b: llmtest.Behavior{Status: 402}, kind: domain.Upstream, msg: []string{"HTTP 402"}, wantRequests: 1},
		{name: "404", b: llmtest.Behavior{Status: 404}, kind: domain.Upstream, msg: []string{"HTTP 404", "model", "ends in /v1"}, wantRequests: 1},
		{name: "500 every time", b: llmtest.Behavior{Status: 500}, kind: domain.Upstream, msg: []string{"HTTP 500"}, wantRequests: 3},
		{name: "529 overloaded", b: llmtest.Behavior{Status: 529}, kind: domain.Upstream, msg: []string{"HTTP 529"}, wantRequests: 3},
	} {
		for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
			for _, m := range modes() {
				t.Run(tc.name+"/"+string(typ)+"/"+m.name, func(t *testing.T) {
					s := llmtest.NewServer(t)
					s.Script(func(int, llmtest.Request) llmtest.Behavior { return tc.b })
					res, _, err := run(context.Background(), newClient(t), request(typ, s), m.stream)
					if err == nil {
						t.Fatalf("no error; result %+v", res)
					}
					if got := domain.KindOf(err); got != tc.kind {
						t.Errorf("kind = %v, want %v (%v)", got, tc.kind, err)
					}
					if refused := errors.Is(err, domain.ErrUpstreamRefused); refused != (tc.kind == domain.Invalid) {
						t.Errorf("errors.Is(err, ErrUpstreamRefused) = %v for kind %v", refused, tc.kind)
					}
					if tc.kind == domain.Invalid && domain.DetailsOf(err)["upstreamStatus"] != tc.b.Status {
						t.Errorf("details = %v, want upstreamStatus %d", domain.DetailsOf(err), tc.b.Status)
					}
					want := tc.param
					if typ != domain.ProviderOpenAI {
						want = "" // Anthropic's errors name no parameter
					}
					if got, _ := domain.DetailsOf(err)["upstreamParam"].(string); got != want {
						t.Errorf("details = %v, want upstreamParam %q", domain.DetailsOf(err), want)
					}
					if got, _ := domain.DetailsOf(err)["upstreamCode"].(string); tc.kind == domain.Invalid && got != tc.code {
						t.Errorf("details = %v, want upstreamCode %q", domain.DetailsOf(err), tc.code)
					}
					if got := errors.Is(err, domain.ErrContextTooLong); got != tc.tooLong {
						t.Errorf("errors.Is(err, ErrContextTooLong) = %v, want %v", got, tc.tooLong)
					}
					msg := domain.MessageOf(err)
					for _, want := range tc.msg {
						if !strings.Contains(msg, want) {
							t.Errorf("message %q does not contain %q", msg, want)
						}
					}
					for _, not := range tc.notInMessages {
						if strings.Contains(msg, not) {
							t.Errorf("message %q contains %q", msg, not)
						}
					}
					if ra := domain.RetryAfterOf(err); ra < tc.retryAfterMin || ra > tc.retryAfterMax {
						t.Errorf("RetryAfter = %v, want in [%v, %v]", ra, tc.retryAfterMin, tc.retryAfterMax)
					}
					if got := s.Count(); got != tc.wantRequests {
						t.Errorf("upstream requests = %d, want %d", got, tc.wantRequests)
					}
				})
			}
		}
	}
}

func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name         string
		first        llmtest.Behavior
		maxRetries   int
		wantErr      bool
		wantRequests int
	}{
		{name: "500 then success", first: llmtest.Behavior{Status: 500}, wantRequests: 2},
		{name: "503 then success", first: llmtest.Behavior{Status: 503}, wantRequests: 2},
		{name: "dropped connection then success", first: llmtest.Behavior{Fault: llmtest.FaultDrop}, wantRequests: 2},
		// A stream's first byte is its first data line: a connection
		// dropped after the headers and comments, before it, has passed
		// nothing on.
		{name: "reset after a stream's headers then success", first: llmtest.Behavior{Fault: llmtest.FaultResetBeforeData, Comments: 2}, wantRequests: 2},
		{name: "no retries configured", first: llmtest.Behavior{Status: 500}, maxRetries: -1, wantErr: true, wantRequests: 1},
		{name: "429 is not retried", first: llmtest.Behavior{Status: 429}, wantErr: true, wantRequests: 1},
		{name: "400 is not retried", first: llmtest.Behavior{Status: 400}, wantErr: true, wantRequests: 1},
	} {
		for _, typ := range []domain.ProviderType{domain.ProviderOpenAICompatible, domain.ProviderAnthropic} {
			for _, m := range modes() {
				t.Run(tc.name+"/"+string(typ)+"/"+m.name, func(t *testing.T) {
					s := llmtest.NewServer(t)
					s.Enqueue(tc.first)
					c := newClient(t, func(c *llm.Config) { c.MaxRetries = tc.maxRetries })
					res, deltas, err := run(context.Background(), c, request(typ, s, "retry me"), m.stream)
					if got := err != nil; got != tc.wantErr {
						t.Fatalf("err = %v, want error %v", err, tc.wantErr)
					}
					if got := s.Count(); got != tc.wantRequests {
						t.Errorf("upstream requests = %d, want %d", got, tc.wantRequests)
					}
					if tc.wantErr {
						return
					}
					if got, want := res.Content, "echo: retry me"; got != want {
						t.Errorf("Content = %q, want %q", got, want)
					}
					if m.stream && strings.Join(deltas, "") != res.Content {
						t.Errorf("deltas %q do not make the content %q", deltas, res.Content)
					}
				})
			}
		}
	}
}

// TestAzureMaxCompletionTokens: Azure's reasoning deployments refuse
// max_tokens, which Parley sent every azure-openai provider: Azure's v1
// API gets max_completion_tokens, as OpenAI does; a dated api-version
// gets max_tokens (its GA versions know no other) until it refuses it,
// and then the call, its retries included, goes with
// max_completion_tokens.
func TestAzureMaxCompletionTokens(t *testing.T) {
	refusal := `{"error":{"message":"Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",` +
		`"type":"invalid_request_error","param":"max_tokens","code":"unsupported_parameter"}}`
	reasoning := func(n int, r llmtest.Request) llmtest.Behavior {
		if _, ok := r.Body["max_tokens"]; ok {
			return llmtest.Behavior{Status: 400, Body: refusal}
		}
		return llmtest.Behavior{}
	}
	for _, tc := range []struct {
		name   string
		v1     bool
		script func(n int, r llmtest.Request) llmtest.Behavior
		want   string // the field of each request, in order
	}{
		{"dated", false, reasoning, "max_tokens,max_completion_tokens"},
		{"dated, then a 500", false, func(n int, r llmtest.Request) llmtest.Behavior {
			if n == 1 {
				return llmtest.Behavior{Status: 500}
			}
			return reasoning(n, r)
		}, "max_tokens,max_completion_tokens,max_completion_tokens"},
		{"v1", true, reasoning, "max_completion_tokens"},
	} {
		for _, m := range modes() {
			t.Run(tc.name+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Script(tc.script)
				req := request(domain.ProviderAzureOpenAI, s, "think")
				if tc.v1 {
					req.Endpoint.BaseURL = s.RootURL() + "/openai/v1"
				}
				req.MaxTokens = ptr(50)
				res, _, err := run(context.Background(), newClient(t), req, m.stream)
				if err != nil || res.Content != "echo: think" {
					t.Fatalf("res %+v, err %v; want the reply", res, err)
				}
				var fields []string
				for _, r := range s.Requests() {
					for _, f := range []string{"max_tokens", "max_completion_tokens"} {
						if v, ok := r.Body[f]; ok && v == 50.0 {
							fields = append(fields, f)
						}
					}
				}
				if got := strings.Join(fields, ","); got != tc.want {
					t.Errorf("token limit sent as %s, want %s", got, tc.want)
				}
			})
		}
	}

	// A request refused for max_tokens without naming the other field is
	// not sent again.
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Behavior{Status: 400, Body: `{"error":{"message":"max_tokens is too large: 999999"}}`})
	req := request(domain.ProviderAzureOpenAI, s)
	req.MaxTokens = ptr(999999)
	if _, _, err := run(context.Background(), newClient(t), req, false); domain.KindOf(err) != domain.Invalid || s.Count() != 1 {
		t.Errorf("err %v (kind %v) after %d requests, want the 400 after one", err, domain.KindOf(err), s.Count())
	}
}

// TestStreamWithoutStreamOptions: a stream asks for
// stream_options.include_usage, so that its usage is exact; an
// OpenAI-wire server that does not know the field refuses it (Mistral's
// API with a 422, Azure before api-version 2024-09-01-preview with a
// 400), which failed every streamed completion there. Such a stream is
// asked again without it, once, and a later retry of the call (a 5xx) goes
// without it too; a request refused for anything else is not sent again.
func TestStreamWithoutStreamOptions(t *testing.T) {
	azure := `{"error":{"message":"Unrecognized request argument supplied: stream_options","type":"invalid_request_error","param":null,"code":null}}`
	for _, tc := range []struct {
		name   string
		typ    domain.ProviderType
		script func(n int, r llmtest.Request) llmtest.Behavior
		want   []bool // per request: whether it had stream_options
	}{
		{"mistral", domain.ProviderOpenAICompatible, func(int, llmtest.Request) llmtest.Behavior {
			return llmtest.Behavior{NoStreamOptions: true}
		}, []bool{true, false}},
		{"azure", domain.ProviderAzureOpenAI, func(_ int, r llmtest.Request) llmtest.Behavior {
			if _, ok := r.Body["stream_options"]; ok {
				return llmtest.Behavior{Status: 400, Body: azure}
			}
			return llmtest.Behavior{}
		}, []bool{true, false}},
		{"then a 500", domain.ProviderOpenAICompatible, func(n int, _ llmtest.Request) llmtest.Behavior {
			if n == 1 {
				return llmtest.Behavior{Status: 500}
			}
			return llmtest.Behavior{NoStreamOptions: true}
		}, []bool{true, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Script(tc.script)
			res, deltas, err := run(context.Background(), newClient(t), request(tc.typ, s, "no options"), true)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Join(deltas, ""), "echo: no options"; got != want || res.Content != want {
				t.Errorf("deltas %q, content %q, want %q", got, res.Content, want)
			}
			var had []bool
			for _, r := range s.Requests() {
				_, ok := r.Body["stream_options"]
				had = append(had, ok)
			}
			if !reflect.DeepEqual(had, tc.want) {
				t.Errorf("stream_options sent per request = %v, want %v", had, tc.want)
			}
		})
	}

	// The usage such a server sends unasked is the call's.
	s := llmtest.NewServer(t)
	s.Script(func(int, llmtest.Request) llmtest.Behavior {
		return llmtest.Behavior{NoStreamOptions: true, Usage: &llmtest.Usage{PromptTokens: 7, CompletionTokens: 3}}
	})
	res, _, err := run(context.Background(), newClient(t), request(domain.ProviderOpenAICompatible, s), true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Usage, (domain.Usage{PromptTokens: 7, CompletionTokens: 3, TotalTokens: 10}); got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}

	// Another refusal is not sent again, nor is a whole reply's.
	for _, stream := range []bool{true, false} {
		s := llmtest.NewServer(t)
		s.Script(func(int, llmtest.Request) llmtest.Behavior {
			return llmtest.Behavior{Status: 400, Body: `{"error":{"message":"Unrecognized request argument supplied: logprobs"}}`}
		})
		if _, _, err := run(context.Background(), newClient(t), request(domain.ProviderOpenAICompatible, s), stream); err == nil {
			t.Errorf("stream %v: no error", stream)
		}
		if got := s.Count(); got != 1 {
			t.Errorf("stream %v: upstream requests = %d, want 1", stream, got)
		}
	}
}

func TestMidStreamResetIsNotRetried(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultReset, AfterDeltas: 2})
			res, deltas, err := run(context.Background(), newClient(t), request(typ, s, "one two three four"), true)
			if got, want := domain.KindOf(err), domain.Upstream; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if !strings.Contains(domain.MessageOf(err), "closed the connection") {
				t.Errorf("message = %q", domain.MessageOf(err))
			}
			if got, want := s.Count(), 1; got != want {
				t.Errorf("upstream requests = %d, want %d (no retry once a stream began)", got, want)
			}
			if res == nil {
				t.Fatal("no partial result")
			}
			if got, want := res.Content, "echo: one "; got != want {
				t.Errorf("partial Content = %q, want %q", got, want)
			}
			if got, want := strings.Join(deltas, ""), res.Content; got != want {
				t.Errorf("deltas = %q, want %q", got, want)
			}
		})
	}
}

// TestStreamAnsweredWithNoEventStream: a stream answered 200 with a body
// that is no event stream (a sign-in page, a proxy that ignores stream and
// sends the whole reply) says what came and where to look, not that the
// stream was cut, which sending again would not mend; one answered as an
// event stream that ends before any event is still truncated.
func TestStreamAnsweredWithNoEventStream(t *testing.T) {
	whole := `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		for _, tc := range []struct{ contentType, body, want string }{
			{"text/html; charset=utf-8", "<html><body>Sign in</body></html>", "answered the stream with text/html, not an event stream"},
			{"application/json", whole, "answered the stream with application/json, not an event stream"},
			// An error body in place of the stream, as some gateways send
			// one with 200, without a last newline too: its message.
			{"application/json", `{"error":{"message":"You exceeded your current quota"}}`, "answered with an error instead of a stream: You exceeded your current quota"},
			{"application/json", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, "answered with an error instead of a stream: Overloaded"},
			{"text/event-stream", ": keep-alive\n\n", "ended the stream without a finish reason (truncated)"},
		} {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Body: tc.body, Header: http.Header{"Content-Type": {tc.contentType}}})
			_, _, err := run(context.Background(), newClient(t), request(typ, s, "hi"), true)
			if domain.KindOf(err) != domain.Upstream || !strings.Contains(domain.MessageOf(err), tc.want) {
				t.Errorf("%s, %s: %v, want an upstream error saying %q", typ, tc.contentType, err, tc.want)
			}
			if truncated := errors.Is(err, domain.ErrTruncated); truncated != (tc.contentType == "text/event-stream") {
				t.Errorf("%s, %s: recorded as truncated: %v", typ, tc.contentType, truncated)
			}
		}
	}
}

func TestTruncatedStream(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultTruncate, AfterDeltas: 2})
			res, _, err := run(context.Background(), newClient(t), request(typ, s, "one two three four"), true)
			if got, want := domain.KindOf(err), domain.Upstream; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if !errors.Is(err, domain.ErrTruncated) {
				t.Errorf("err = %v, want domain.ErrTruncated as its cause (the outcome truncated)", err)
			}
			if got, want := domain.MessageOf(err), "the AI provider ended the stream without a finish reason (truncated); send the request again"; got != want {
				t.Errorf("message = %q, want %q", got, want)
			}
			if res == nil || res.Content != "echo: one " {
				t.Errorf("partial result = %+v, want content %q", res, "echo: one ")
			}
			if got, want := s.Count(), 1; got != want {
				t.Errorf("upstream requests = %d, want %d", got, want)
			}
		})
	}
}

func TestTruncatedJSONBody(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultTruncate})
			_, _, err := run(context.Background(), newClient(t), request(typ, s), false)
			if got, want := domain.KindOf(err), domain.Upstream; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if got, want := s.Count(), 1; got != want {
				t.Errorf("upstream requests = %d, want %d (a 200 is never retried)", got, want)
			}
		})
	}
}

func TestInBandStreamError(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultStreamError, AfterDeltas: 1})
			res, _, err := run(context.Background(), newClient(t), request(typ, s), true)
			if got, want := domain.KindOf(err), domain.Upstream; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if !strings.Contains(domain.MessageOf(err), "during the stream") {
				t.Errorf("message = %q", domain.MessageOf(err))
			}
			if res == nil || res.Content != "echo: " {
				t.Errorf("partial result = %+v", res)
			}
			if got, want := s.Count(), 1; got != want {
				t.Errorf("upstream requests = %d, want %d", got, want)
			}
		})
	}
}

// TestAnthropicInBandOverloadBeforeTheReply: Anthropic answers a stream
// 200 and may then send, in place of the reply, an error event:
// overloaded_error is what a 529 says of a call not streamed, api_error
// a 500. Before the reply's first delta nothing was passed on, so the
// call is tried again as those are; before, the caller got a 502 where a
// call not streamed succeeded. An error event that refuses the request
// (invalid_request_error) is not tried again, nor one after a delta.
func TestAnthropicInBandOverloadBeforeTheReply(t *testing.T) {
	start := "event: message_start\ndata: " + `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",` +
		`"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}` + "\n\n" +
		"event: ping\ndata: {\"type\": \"ping\"}\n\n"
	errorEvent := func(typ string) llmtest.Behavior {
		return llmtest.Behavior{Header: http.Header{"Content-Type": {"text/event-stream"}},
			Body: start + "event: error\ndata: " + `{"type":"error","error":{"type":"` + typ + `","message":"Overloaded"}}` + "\n\n"}
	}
	for _, tc := range []struct {
		name         string
		first        llmtest.Behavior
		wantErr      bool
		wantRequests int
	}{
		{"overloaded_error before the first delta", llmtest.Behavior{Fault: llmtest.FaultStreamError}, false, 2},
		{"overloaded_error after message_start", errorEvent("overloaded_error"), false, 2},
		{"api_error after message_start", errorEvent("api_error"), false, 2},
		{"invalid_request_error", errorEvent("invalid_request_error"), true, 1},
		{"overloaded_error after a delta", llmtest.Behavior{Fault: llmtest.FaultStreamError, AfterDeltas: 1}, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(tc.first)
			res, deltas, err := run(context.Background(), newClient(t), request(domain.ProviderAnthropic, s, "retry me"), true)
			if got := s.Count(); got != tc.wantRequests {
				t.Errorf("upstream requests = %d, want %d", got, tc.wantRequests)
			}
			if tc.wantErr {
				if got, want := domain.KindOf(err), domain.Upstream; err == nil || got != want {
					t.Fatalf("err = %v (kind %v), want an upstream error", err, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v, want the retried call's reply", err)
			}
			if got, want := res.Content, "echo: retry me"; got != want || strings.Join(deltas, "") != want {
				t.Errorf("Content = %q, deltas %q, want %q once", got, deltas, want)
			}
		})
	}
}

// TestInBandErrorChunk: OpenRouter reports an error that comes once a
// stream began as a chunk with a top-level error object beside a choice
// whose finish_reason is "error"; other servers end with finish_reason
// "error" alone. Neither is a reply that finished: read as one, a stream
// cut by the provider's failure was passed on, and stored, as complete,
// with a finish_reason no OpenAI client knows.
func TestInBandErrorChunk(t *testing.T) {
	for _, tc := range []struct {
		name    string
		b       llmtest.Behavior
		stream  bool
		message string
	}{
		{"error chunk", llmtest.Behavior{Fault: llmtest.FaultErrorChunk, AfterDeltas: 1}, true,
			"the AI provider reported an error during the stream: Provider disconnected unexpectedly"},
		{"finish_reason error/stream", llmtest.Behavior{FinishReason: "error"}, true, "the AI provider reported an error during the stream"},
		// An error object beside a finish reason that would end the reply
		// well is still an error.
		{"error chunk with stop", llmtest.Behavior{Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"partial\"}}]}\n\n" +
			"data: {\"error\":{\"message\":\"upstream overloaded\"},\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"}, true,
			"the AI provider reported an error during the stream: upstream overloaded"},
		{"finish_reason error/json", llmtest.Behavior{FinishReason: "error"}, false, "the AI provider reported an error instead of finishing the reply"},
		{"error beside stop/json", llmtest.Behavior{Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"id":"x","object":"chat.completion","model":"m",` +
			`"error":{"message":"upstream overloaded"},"choices":[{"index":0,"message":{"role":"assistant","content":"partial"},"finish_reason":"stop"}]}`}, false,
			"the AI provider reported an error instead of finishing the reply: upstream overloaded"},
		{"choice error beside stop/json", llmtest.Behavior{Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"id":"x","object":"chat.completion","model":"m",` +
			`"choices":[{"index":0,"message":{"role":"assistant","content":"partial"},"error":{"message":"cut short"},"finish_reason":"stop"}]}`}, false,
			"the AI provider reported an error instead of finishing the reply: cut short"},
		// DeepSeek: "the request is interrupted due to insufficient resource".
		{"insufficient_system_resource/stream", llmtest.Behavior{FinishReason: "insufficient_system_resource"}, true,
			"the AI provider reported an error during the stream"},
		{"insufficient_system_resource/json", llmtest.Behavior{FinishReason: "insufficient_system_resource"}, false,
			"the AI provider reported an error instead of finishing the reply"},
		// OpenRouter answers some failures of a whole reply with status 200
		// and an error body, which the SDK reads as a reply of no choices.
		{"error body/json", llmtest.Behavior{Fault: llmtest.FaultErrorChunk}, false,
			"the AI provider answered with an error instead of a reply: The server had an error while processing your request"},
		{"no choices/json", llmtest.Behavior{Body: `{"id":"x","object":"chat.completion","choices":[]}`}, false,
			"the AI provider answered with no choices"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(tc.b)
			res, _, err := run(context.Background(), newClient(t), request(domain.ProviderOpenAICompatible, s), tc.stream)
			if got, want := domain.KindOf(err), domain.Upstream; got != want || err == nil {
				t.Fatalf("kind = %v, want %v (%v; result %+v)", got, want, err, res)
			}
			if got := domain.MessageOf(err); got != tc.message {
				t.Errorf("message = %q, want %q", got, tc.message)
			}
			if tc.stream && (res == nil || res.Content == "") {
				t.Errorf("partial result = %+v, want the text that came", res)
			}
			if got, want := s.Count(), 1; got != want {
				t.Errorf("upstream requests = %d, want %d", got, want)
			}
		})
	}
}

// TestInBandErrorStatus: OpenRouter answers 200 at once and reports what
// fails after in the body or the stream, the HTTP status it would have
// had in error.code: a 4xx there is that status's error (a 429 rate
// limited, with the wait its metadata.headers give; a 400 the caller's to
// fix, with the provider's own message from metadata.raw), not a provider
// failure that says nothing a client can act on. A 5xx stays one.
func TestInBandErrorStatus(t *testing.T) {
	reset := time.Now().Add(10 * time.Minute).UnixMilli()
	limited := fmt.Sprintf(`{"error":{"code":429,"message":"Rate limit exceeded: free-models-per-day",`+
		`"metadata":{"headers":{"X-RateLimit-Limit":"50","X-RateLimit-Remaining":"0","X-RateLimit-Reset":"%d"}}}}`, reset)
	refused := `{"error":{"code":400,"message":"Provider returned error","metadata":{"raw":"{\"error\":{\"message\":\"Function call is missing a thought_signature\"}}","provider_name":"Google"}}}`
	failed := `{"error":{"code":502,"message":"Provider disconnected"}}`
	sse := http.Header{"Content-Type": {"text/event-stream"}}
	for _, tc := range []struct {
		name   string
		b      llmtest.Behavior
		stream bool
		kind   domain.Kind
		msg    string
	}{
		{"429/stream", llmtest.Behavior{Header: sse, Body: ": OPENROUTER PROCESSING\n\ndata: " + limited + "\n\n"}, true, domain.RateLimited, "free-models-per-day"},
		{"429/json", llmtest.Behavior{Body: limited}, false, domain.RateLimited, "free-models-per-day"},
		{"400/stream", llmtest.Behavior{Header: sse, Body: "data: " + refused + "\n\n"}, true, domain.Invalid, "Provider returned error: Function call is missing a thought_signature"},
		{"400/json", llmtest.Behavior{Body: refused}, false, domain.Invalid, "Provider returned error: Function call is missing a thought_signature"},
		{"502/stream", llmtest.Behavior{Header: sse, Body: "data: " + failed + "\n\n"}, true, domain.Upstream, "the AI provider reported an error during the stream: Provider disconnected"},
		{"502/json", llmtest.Behavior{Body: failed}, false, domain.Upstream, "the AI provider answered with an error instead of a reply: Provider disconnected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(tc.b)
			_, _, err := run(context.Background(), newClient(t), request(domain.ProviderOpenAICompatible, s), tc.stream)
			var e *domain.Error
			if !errors.As(err, &e) || e.Kind != tc.kind || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("err = %v (%#v); want kind %v saying %q", err, e, tc.kind, tc.msg)
			}
			if tc.kind == domain.RateLimited && (e.RetryAfter < 9*time.Minute || e.RetryAfter > 10*time.Minute) {
				t.Errorf("RetryAfter = %v; want the reset its metadata.headers give, 10m away", e.RetryAfter)
			}
			if got := s.Count(); got != 1 {
				t.Errorf("upstream requests = %d, want 1", got)
			}
		})
	}
}

// TestAnthropicErrorBodyWithStatus200: a whole reply whose body is
// Anthropic's error object sent with status 200 (as some gateways in front
// of the Messages API answer a failure) is that error, with its message;
// before, it read "the AI provider answered with an empty message".
func TestAnthropicErrorBodyWithStatus200(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultStreamError})
	res, _, err := run(context.Background(), newClient(t), request(domain.ProviderAnthropic, s), false)
	if got, want := domain.KindOf(err), domain.Upstream; err == nil || got != want {
		t.Fatalf("err = %v (kind %v; result %+v), want an upstream error", err, got, res)
	}
	if got, want := domain.MessageOf(err), "the AI provider answered with an error instead of a reply: The server had an error while processing your request"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
	if got, want := s.Count(), 1; got != want {
		t.Errorf("upstream requests = %d, want %d", got, want)
	}
}

// TestReasoningIsApartFromTheReply: reasoning models send their thinking
// before the reply, each provider in its own shape (reasoning_content from
// DeepSeek and vLLM, typed content parts from Mistral, thinking blocks
// from Anthropic). The reply is the text alone, whichever the shape (a
// content that is a list of parts rather than a string was read as no
// text, whole, or failed the stream); the thinking is the result's
// Reasoning, and streamed its deltas' before the text, where Parley reads
// it (not Mistral's parts).
func TestReasoningIsApartFromTheReply(t *testing.T) {
	for _, tc := range []struct {
		name      string
		typ       domain.ProviderType
		b         llmtest.Behavior
		reasoning string // as the result carries it, and the deltas
	}{
		{"reasoning_content", domain.ProviderOpenAICompatible, llmtest.Behavior{Reasoning: "let me think"}, "let me think"},
		{"reasoning", domain.ProviderOpenAICompatible, llmtest.Behavior{Reasoning: "let me think", ReasoningNamed: true}, "let me think"},
		// Mistral's thinking parts are left out of the reply, and not read
		// as reasoning (go-openai's types do not carry them).
		{"content parts", domain.ProviderOpenAICompatible, llmtest.Behavior{Reasoning: "let me think", ContentParts: true}, ""},
		{"content parts without reasoning", domain.ProviderOpenAICompatible, llmtest.Behavior{ContentParts: true}, ""},
		{"thinking block", domain.ProviderAnthropic, llmtest.Behavior{Reasoning: "let me think"}, "let me think"},
	} {
		for _, m := range modes() {
			t.Run(tc.name+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(tc.b)
				var text, reasoning strings.Builder
				var onDelta func(domain.Delta) error
				if m.stream {
					onDelta = func(d domain.Delta) error {
						if d.Reasoning != "" && text.Len() > 0 {
							t.Errorf("reasoning %q after the reply's text %q", d.Reasoning, text.String())
						}
						text.WriteString(d.Content)
						reasoning.WriteString(d.Reasoning)
						return nil
					}
				}
				res, err := newClient(t).Complete(context.Background(), request(tc.typ, s), onDelta)
				if err != nil {
					t.Fatal(err)
				}
				const want = "echo: hello there"
				if res.Content != want || res.FinishReason != "stop" {
					t.Errorf("content = %q (%s), want %q (stop)", res.Content, res.FinishReason, want)
				}
				if res.Reasoning != tc.reasoning {
					t.Errorf("reasoning = %q, want %q", res.Reasoning, tc.reasoning)
				}
				if m.stream && (text.String() != want || reasoning.String() != tc.reasoning) {
					t.Errorf("deltas make %q and reasoning %q, want %q and %q", text.String(), reasoning.String(), want, tc.reasoning)
				}
			})
		}
	}
}

func TestOversizedStreamLine(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultOversizedLine, AfterDeltas: 1, Size: 64 << 10})
			c := newClient(t, func(c *llm.Config) { c.MaxLineBytes = 4096 })
			res, _, err := run(context.Background(), c, request(typ, s), true)
			if got, want := domain.KindOf(err), domain.Upstream; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if got, want := domain.MessageOf(err), "stream line exceeded 4096 bytes"; !strings.Contains(got, want) {
				t.Errorf("message = %q, want it to contain %q", got, want)
			}
			if res == nil || res.Content != "echo: " {
				t.Errorf("partial result = %+v", res)
			}
		})
	}
}

func TestOversizedBody(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultOversizedLine, Size: 64 << 10})
			c := newClient(t, func(c *llm.Config) { c.MaxResponseBytes = 16 << 10 })
			_, _, err := run(context.Background(), c, request(typ, s), false)
			if got, want := domain.KindOf(err), domain.Upstream; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if got, want := domain.MessageOf(err), "response exceeded 16384 bytes"; !strings.Contains(got, want) {
				t.Errorf("message = %q, want it to contain %q", got, want)
			}
		})
	}
}

func TestOversizedErrorBodyIsCut(t *testing.T) {
	s := llmtest.NewServer(t)
	huge := `{"error":{"message":"` + strings.Repeat("x", 1<<20) + `"}}`
	s.Enqueue(llmtest.Behavior{Status: 400, Body: huge})
	c := newClient(t, func(c *llm.Config) { c.MaxResponseBytes = 4096 })
	_, _, err := run(context.Background(), c, request(domain.ProviderOpenAI, s), true)
	if got, want := domain.KindOf(err), domain.Invalid; got != want {
		t.Fatalf("kind = %v, want %v (%v)", got, want, err)
	}
	if n := len(err.Error()); n > 2000 {
		t.Errorf("error text is %d bytes; the upstream body must not be carried whole", n)
	}
}

// TestOversizedStreamedReply: a stream's lines are capped one by one, and
// its reply as a whole (text, refusal, tool calls and their extra_content)
// at MaxResponseBytes, as a whole reply's body is: an upstream that
// streams without end would otherwise grow the reply Parley keeps, and
// stores, until memory ran out.
func TestOversizedStreamedReply(t *testing.T) {
	const limit = 128
	long := strings.TrimSpace(strings.Repeat("word ", 60))
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		for _, tc := range []struct {
			name string
			b    llmtest.Behavior
		}{
			{"text", llmtest.Behavior{ChunkDelay: 2 * time.Millisecond}},
			{"tool call", llmtest.Behavior{ChunkDelay: 2 * time.Millisecond, ToolCalls: []llmtest.ToolCall{
				{ID: "call_1", Name: "lookup", Arguments: `{"q":"` + long + `"}`}}}},
			{"extra_content", llmtest.Behavior{ChunkDelay: 2 * time.Millisecond, ToolCalls: slices.Repeat([]llmtest.ToolCall{
				{Name: "lookup", Arguments: `{}`, Extra: `{"google":{"thought_signature":"` + long[:40] + `"}}`}}, 100)}},
		} {
			if typ == domain.ProviderAnthropic && tc.name == "extra_content" {
				continue // an OpenAI-wire field
			}
			t.Run(string(typ)+"/"+tc.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(tc.b)
				c := newClient(t, func(c *llm.Config) { c.MaxResponseBytes = limit })
				var passed int
				res, err := c.Complete(context.Background(), request(typ, s, long), func(d domain.Delta) error {
					passed += len(d.Content)
					for _, tc := range d.ToolCalls {
						passed += len(tc.ID) + len(tc.Name) + len(tc.Arguments) + len(tc.ExtraContent)
					}
					return nil
				})
				if got, want := domain.KindOf(err), domain.Upstream; got != want {
					t.Fatalf("kind = %v, want %v (%v)", got, want, err)
				}
				if got, want := domain.MessageOf(err), "the AI provider's response exceeded 128 bytes"; got != want {
					t.Errorf("message = %q, want %q", got, want)
				}
				if passed == 0 || passed > limit {
					t.Errorf("%d bytes of deltas passed on, want some and at most %d", passed, limit)
				}
				kept := len(res.Content)
				for _, call := range res.ToolCalls {
					kept += len(call.ID) + len(call.Name) + len(call.Arguments) + len(call.ExtraContent)
				}
				if kept > 2*limit {
					t.Errorf("the partial result holds %d bytes, over twice the cap", kept)
				}
				if got := s.Count(); got != 1 {
					t.Errorf("upstream requests = %d, want 1 (a stream that began is not retried)", got)
				}
				if !s.WaitCanceledN(s.Last().N, 2*time.Second) {
					t.Error("the upstream did not see the request abandoned")
				}
			})
		}
	}
}

// TestStalledBody: once a response's headers came, its body may not stall
// for good. A whole reply's body that sends nothing for the idle timeout
// is ended (504, as a stream that goes quiet); an error body has the idle
// timeout to arrive, and its status then decides (a 502 is retried).
//
// A body that never goes quiet for the idle timeout, a byte at a time, is
// still ended at the response timeout, which bounds the whole reply: it
// held the call for as long as it went on.
func TestStalledBody(t *testing.T) {
	const idle = 300 * time.Millisecond
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		for _, tc := range []struct {
			name    string
			b       llmtest.Behavior
			bound   time.Duration // the response timeout; the idle timeout is idle
			message string
		}{
			{"reply", llmtest.Behavior{Fault: llmtest.FaultStallBody}, 10 * time.Minute,
				"the AI provider's response stopped for 300ms before its end and was ended"},
			{"trickling reply", llmtest.Behavior{Fault: llmtest.FaultTrickleBody, ChunkDelay: 20 * time.Millisecond}, 400 * time.Millisecond,
				"the AI provider did not finish its reply within 400ms and it was ended"},
		} {
			t.Run(string(typ)+"/"+tc.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(tc.b)
				c := newClient(t, func(c *llm.Config) { c.IdleTimeout, c.ResponseTimeout = idle, tc.bound })
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a client that gives up
				defer cancel()
				start := time.Now()
				_, _, err := run(ctx, c, request(typ, s), false)
				if got, want := domain.KindOf(err), domain.Timeout; got != want {
					t.Fatalf("kind = %v, want %v (%v) after %v", got, want, err, time.Since(start))
				}
				if got := domain.MessageOf(err); got != tc.message {
					t.Errorf("message = %q, want %q", got, tc.message)
				}
				if d := time.Since(start); d < min(idle, tc.bound) || d > 5*time.Second {
					t.Errorf("took %v, want about the timeout", d)
				}
				if got := s.Count(); got != 1 {
					t.Errorf("upstream requests = %d, want 1 (timeouts are not retried)", got)
				}
				if !s.WaitCanceledN(s.Last().N, time.Second) {
					t.Error("the upstream did not see the request abandoned")
				}
			})
		}
		for _, m := range modes() {
			t.Run(string(typ)+"/error body/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(llmtest.Behavior{Status: http.StatusBadGateway, Fault: llmtest.FaultStallBody})
				c := newClient(t, func(c *llm.Config) { c.IdleTimeout, c.MaxRetries = idle, 1 })
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				start := time.Now()
				res, _, err := run(ctx, c, request(typ, s), m.stream)
				if err != nil {
					t.Fatalf("the retry after a stalled 502 failed: %v after %v", err, time.Since(start))
				}
				if got, want := res.Content, llmtest.EchoReply("hello there"); got != want {
					t.Errorf("content = %q, want %q", got, want)
				}
				if d := time.Since(start); d < idle || d > 5*time.Second {
					t.Errorf("took %v, want about the idle timeout", d)
				}
				if got := s.Count(); got != 2 {
					t.Errorf("upstream requests = %d, want 2 (the 502, then the retry)", got)
				}
				if !s.WaitCanceledN(0, time.Second) {
					t.Error("the upstream did not see the stalled request abandoned")
				}
			})
		}
	}
}

// TestFirstByteTimeout: a stream's headers must come within
// FirstByteTimeout, a non-stream reply's within ResponseTimeout.
func TestFirstByteTimeout(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		for _, m := range modes() {
			t.Run(string(typ)+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(llmtest.Behavior{Delay: 5 * time.Second})
				c := newClient(t, func(c *llm.Config) {
					c.FirstByteTimeout, c.ResponseTimeout = 10*time.Second, 150*time.Millisecond
					if m.stream {
						c.FirstByteTimeout, c.ResponseTimeout = 150*time.Millisecond, 10*time.Second
					}
				})
				start := time.Now()
				_, _, err := run(context.Background(), c, request(typ, s), m.stream)
				if got, want := domain.KindOf(err), domain.Timeout; got != want {
					t.Fatalf("kind = %v, want %v (%v)", got, want, err)
				}
				if got, want := domain.MessageOf(err), "the AI provider did not answer within 150ms"; got != want {
					t.Errorf("message = %q, want %q", got, want)
				}
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("took %v", d)
				}
				if got, want := s.Count(), 1; got != want {
					t.Errorf("upstream requests = %d, want %d (timeouts are not retried)", got, want)
				}
				if !s.WaitCanceledN(s.Last().N, time.Second) {
					t.Error("the upstream did not see the request abandoned")
				}
			})
		}
	}
}

// TestSlowWholeReply: a provider answers a non-stream call only once the
// whole reply is written, which takes longer than a stream's first byte
// may (minutes for a long reply): the first-byte timeout does not cut it.
func TestSlowWholeReply(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		for _, m := range modes() {
			t.Run(string(typ)+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				delay, firstByte := 600*time.Millisecond, 150*time.Millisecond
				if m.stream {
					// A stream's headers come at once; its events are slow,
					// each within the first-byte timeout, together over it.
					s.Enqueue(llmtest.Behavior{ChunkDelay: delay / 6})
					firstByte = 300 * time.Millisecond
				} else {
					s.Enqueue(llmtest.Behavior{Delay: delay})
				}
				c := newClient(t, func(c *llm.Config) { c.FirstByteTimeout = firstByte })
				res, _, err := run(context.Background(), c, request(typ, s), m.stream)
				if err != nil {
					t.Fatalf("a reply that took %v failed: %v", delay, err)
				}
				if got, want := res.Content, llmtest.EchoReply("hello there"); got != want {
					t.Errorf("content = %q, want %q", got, want)
				}
			})
		}
	}
}

func TestCancellationReachesUpstream(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ)+"/mid-stream", func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{ChunkDelay: 50 * time.Millisecond, Reply: strings.Repeat("word ", 100)})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := 0
			res, err := newClient(t).Complete(ctx, request(typ, s), func(domain.Delta) error {
				if n++; n == 3 {
					cancel()
				}
				return nil
			})
			if got, want := domain.KindOf(err), domain.Canceled; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if !s.WaitCanceledN(s.Last().N, time.Second) {
				t.Error("the upstream did not see the cancellation within a second")
			}
			if res == nil || !strings.HasPrefix(res.Content, "word word word") {
				t.Errorf("partial result = %+v", res)
			}
		})
		t.Run(string(typ)+"/waiting", func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang})
			ctx, cancel := context.WithCancel(context.Background())
			go func() { // once the upstream has the request, waiting
				for s.Count() == 0 {
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
			}()
			res, err := newClient(t).Complete(ctx, request(typ, s), nil)
			if got, want := domain.KindOf(err), domain.Canceled; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if !s.WaitCanceledN(s.Last().N, time.Second) {
				t.Error("the upstream did not see the cancellation within a second")
			}
			if res != nil && res.NotTaken {
				t.Error("a call the upstream had was said unsent: its prompt would not be counted")
			}
		})
		// Cancelled before its request went out (the caller left while it
		// was admitted, or while it connected): said unsent, so that its
		// usage counts no estimated prompt.
		t.Run(string(typ)+"/before-sending", func(t *testing.T) {
			s := llmtest.NewServer(t)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			for _, stream := range []func(domain.Delta) error{nil, func(domain.Delta) error { return nil }} {
				res, err := newClient(t).Complete(ctx, request(typ, s), stream)
				if domain.KindOf(err) != domain.Canceled || res == nil || !res.NotTaken {
					t.Errorf("stream %v: %+v, %v; want canceled and unsent", stream != nil, res, err)
				}
			}
			if s.Count() != 0 {
				t.Errorf("the upstream got %d requests", s.Count())
			}
		})
		// Refused (503), then left during the backoff before the retry:
		// the provider took nothing, though a request went out.
		t.Run(string(typ)+"/refused-then-left", func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Status: 503})
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				for s.Count() == 0 {
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond) // into the backoff
				cancel()
			}()
			res, err := newClient(t, func(c *llm.Config) { c.RetryBaseDelay = time.Minute }).Complete(ctx, request(typ, s), nil)
			if domain.KindOf(err) != domain.Canceled || res == nil || !res.NotTaken || s.Count() != 1 {
				t.Errorf("%+v, %v after %d requests; want canceled and not taken after one", res, err, s.Count())
			}
		})
	}
}

func TestOnDeltaErrorAborts(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{ChunkDelay: 20 * time.Millisecond, Reply: strings.Repeat("word ", 100)})
			gone := errors.New("client went away")
			res, err := newClient(t).Complete(context.Background(), request(typ, s), func(domain.Delta) error { return gone })
			if !errors.Is(err, gone) {
				t.Fatalf("err = %v, want the onDelta error", err)
			}
			if res == nil || res.Content != "word " {
				t.Errorf("partial result = %+v", res)
			}
			if !s.WaitCanceledN(s.Last().N, time.Second) {
				t.Error("the upstream did not see the call abandoned")
			}
			if got, want := s.Count(), 1; got != want {
				t.Errorf("upstream requests = %d, want %d", got, want)
			}
		})
	}
}

func TestSSRFGuard(t *testing.T) {
	for _, typ := range allTypes {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			c := llm.New(llm.Config{}) // AllowPrivate false
			_, _, err := run(context.Background(), c, request(typ, s), false)
			if got, want := domain.KindOf(err), domain.Invalid; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if !strings.Contains(domain.MessageOf(err), "PARLEY_ALLOW_PRIVATE_UPSTREAMS=true") {
				t.Errorf("message %q does not name PARLEY_ALLOW_PRIVATE_UPSTREAMS=true", domain.MessageOf(err))
			}
			if got := s.Count(); got != 0 {
				t.Errorf("upstream requests = %d, want 0", got)
			}
		})
	}
	// Link-local and metadata addresses are refused whether private
	// upstreams are allowed or not, before the connection is made, and
	// the error gives no advice that would not work.
	for _, allow := range []bool{true, false} {
		for _, base := range []string{"http://169.254.169.254/v1", "http://[::ffff:169.254.169.254]:80/v1", "http://100.100.100.200/v1"} {
			t.Run(fmt.Sprintf("private allowed %v, %s", allow, base), func(t *testing.T) {
				req := request(domain.ProviderOpenAICompatible, llmtest.NewServer(t))
				req.Endpoint.BaseURL = base
				_, _, err := run(context.Background(), newClient(t, func(c *llm.Config) { c.AllowPrivate = allow }), req, false)
				if domain.KindOf(err) != domain.Invalid || !strings.Contains(domain.MessageOf(err), "metadata address, which no AI provider may use") {
					t.Errorf("err = %v, want the metadata address refused", err)
				}
			})
		}
	}
	t.Run("a host name resolving to loopback", func(t *testing.T) {
		s := llmtest.NewServer(t)
		req := request(domain.ProviderOpenAICompatible, s)
		req.Endpoint.BaseURL = strings.Replace(s.URL(), "127.0.0.1", "localhost", 1)
		_, _, err := run(context.Background(), llm.New(llm.Config{}), req, true)
		if got, want := domain.KindOf(err), domain.Invalid; got != want {
			t.Fatalf("kind = %v, want %v (%v)", got, want, err)
		}
		if got := s.Count(); got != 0 {
			t.Errorf("upstream requests = %d, want 0", got)
		}
	})
}

// An upstream's redirect is not followed: net/http would send the request
// again, with Anthropic's x-api-key or Azure's api-key header (which it
// keeps across hosts), to wherever the redirect points.
func TestRedirectsAreNotFollowed(t *testing.T) {
	for _, typ := range allTypes {
		for _, m := range modes() {
			t.Run(string(typ)+"/"+m.name, func(t *testing.T) {
				target := llmtest.NewServer(t)
				elsewhere := strings.Replace(target.RootURL(), "127.0.0.1", "localhost", 1)
				redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, elsewhere+r.URL.RequestURI(), http.StatusTemporaryRedirect)
				}))
				t.Cleanup(redirector.Close)
				req := request(typ, target)
				req.Endpoint.BaseURL = redirector.URL + "/v1"
				_, _, err := run(context.Background(), newClient(t), req, m.stream)
				if got, want := domain.KindOf(err), domain.Upstream; got != want {
					t.Fatalf("kind = %v, want %v (%v)", got, want, err)
				}
				if !strings.Contains(domain.MessageOf(err), "redirect (HTTP 307)") {
					t.Errorf("message = %q", domain.MessageOf(err))
				}
				if n := target.Count(); n != 0 {
					t.Errorf("the redirect was followed: the other host got %d requests, the last with key %q", n, target.Last().APIKey)
				}
			})
		}
	}
}

// A 3xx with no Location is no redirect to the HTTP client, and go-openai
// takes it for a reply, streamed or not: it still fails with its status,
// and a stream's body is not read as one.
func TestThreeHundredsWithoutLocation(t *testing.T) {
	for _, typ := range allTypes {
		for _, m := range modes() {
			t.Run(string(typ)+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(llmtest.Behavior{Status: http.StatusMultipleChoices,
					Body: "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"not a reply\"},\"finish_reason\":\"stop\"}]}\n\n"})
				res, deltas, err := run(context.Background(), newClient(t), request(typ, s), m.stream)
				if got, want := domain.KindOf(err), domain.Upstream; got != want {
					t.Fatalf("kind = %v, want %v (%v; result %+v)", got, want, err, res)
				}
				if !strings.Contains(domain.MessageOf(err), "redirect (HTTP 300)") {
					t.Errorf("message = %q", domain.MessageOf(err))
				}
				if len(deltas) > 0 {
					t.Errorf("deltas = %q, want none", deltas)
				}
				if got, want := s.Count(), 1; got != want {
					t.Errorf("upstream requests = %d, want %d (a 3xx is not tried again)", got, want)
				}
			})
		}
	}
}

// TestOutOfFileDescriptors: a dial the process has no descriptor for
// (EMFILE, as the kernel answers past ulimit -n) is Parley's limit, a 503
// to retry, not the provider's failure: a 502, which clients are told not
// to retry.
func TestOutOfFileDescriptors(t *testing.T) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}}}
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		req := domain.LLMRequest{Endpoint: domain.Endpoint{Type: typ, BaseURL: "http://127.0.0.1:1/v1", APIKey: testKey}, Model: "m",
			Messages: []domain.LLMMessage{{Role: domain.RoleUser, Content: "x"}}}
		_, _, err := run(context.Background(), newClient(t, func(c *llm.Config) { c.HTTPClient = hc }), req, false)
		if got, want := domain.KindOf(err), domain.Unavailable; got != want || !strings.Contains(domain.MessageOf(err), "too many files and connections open") {
			t.Errorf("%s: kind %v, %q; want %v saying Parley has too many open", typ, got, domain.MessageOf(err), want)
		}
	}
}

func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			// Count the dials: a refused connection is tried again, twice
			// by default.
			var dials atomic.Int32
			var d net.Dialer
			hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return d.DialContext(ctx, network, addr)
			}}}
			req := domain.LLMRequest{Endpoint: domain.Endpoint{Type: typ, BaseURL: "http://" + addr + "/v1", APIKey: testKey}, Model: "m",
				Messages: []domain.LLMMessage{{Role: domain.RoleUser, Content: "x"}}}
			_, _, err := run(context.Background(), newClient(t, func(c *llm.Config) { c.HTTPClient = hc }), req, true)
			if got, want := domain.KindOf(err), domain.Upstream; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if !strings.Contains(domain.MessageOf(err), "refused the connection") {
				t.Errorf("message = %q", domain.MessageOf(err))
			}
			if got := dials.Load(); got != 1+llm.DefaultMaxRetries {
				t.Errorf("%d dials, want %d: the first and %d retries", got, 1+llm.DefaultMaxRetries, llm.DefaultMaxRetries)
			}
		})
	}
}

func TestErrorsNeverCarryTheAPIKey(t *testing.T) {
	// testKey is shaped like OpenAI's (sk-…), which secretLike redacts
	// whatever it is; a self-hosted server's key can be anything, and is
	// redacted because it is the key.
	for _, key := range []string{testKey, "vllm-local-token-2718"} {
		leaky := `{"error":{"message":"Incorrect API key provided: ` + key + `. You can find your key at https://example.com","type":"invalid_request_error"}}`
		anthropicLeaky := `{"type":"error","error":{"type":"invalid_request_error","message":"bad key ` + key + `"}}`
		behaviors := map[string]llmtest.Behavior{
			"401 echoing the key":    {Status: 401, Body: leaky},
			"400 echoing the key":    {Status: 400, Body: leaky},
			"400 anthropic-style":    {Status: 400, Body: anthropicLeaky},
			"500 echoing the key":    {Status: 500, Body: "upstream crashed handling key " + key},
			"429 echoing the key":    {Status: 429, Body: leaky},
			"in-band stream error":   {Fault: llmtest.FaultStreamError},
			"mid-stream reset":       {Fault: llmtest.FaultReset, AfterDeltas: 1},
			"200 with a broken body": {Body: `{"choices": [` + key},
			"200 with an error body": {Body: leaky},
		}
		for name, b := range behaviors {
			for _, typ := range allTypes {
				for _, m := range modes() {
					t.Run(key[:4]+"/"+name+"/"+string(typ)+"/"+m.name, func(t *testing.T) {
						s := llmtest.NewServer(t)
						s.Script(func(int, llmtest.Request) llmtest.Behavior { return b })
						req := request(typ, s)
						req.Endpoint.APIKey = domain.Secret(key)
						_, _, err := run(context.Background(), newClient(t), req, m.stream)
						if err == nil {
							t.Fatal("no error")
						}
						for _, text := range []string{err.Error(), domain.MessageOf(err)} {
							if strings.Contains(text, key) || strings.Contains(text, key[len(key)-10:]) {
								t.Errorf("error text carries the API key: %s", text)
							}
						}
					})
				}
			}
		}
	}
}

func TestConcurrentCalls(t *testing.T) {
	s := llmtest.NewServer(t)
	c := newClient(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			typ := allTypes[i%len(allTypes)]
			msg := strings.Repeat("x", i+1)
			res, _, err := run(context.Background(), c, request(typ, s, msg), i%2 == 0)
			if err != nil {
				t.Error(err)
				return
			}
			if got, want := res.Content, llmtest.EchoReply(msg); got != want {
				t.Errorf("Content = %q, want %q", got, want)
			}
		}()
	}
	wg.Wait()
	if got, want := s.Count(), 20; got != want {
		t.Errorf("upstream requests = %d, want %d", got, want)
	}
}

// TestOpenAIUsageDetails: an OpenAI-wire reply's cached and reasoning
// tokens are kept, whole and streamed, and no more of them than the prompt
// and the reply hold (a server that says otherwise is not believed).
func TestOpenAIUsageDetails(t *testing.T) {
	for _, tc := range []struct {
		details           string
		cached, reasoning int
	}{
		{`"prompt_tokens_details":{"cached_tokens":8},"completion_tokens_details":{"reasoning_tokens":3}`, 8, 3},
		{`"prompt_tokens_details":{"cached_tokens":99},"completion_tokens_details":{"reasoning_tokens":-2}`, 10, 0},
		{`"prompt_tokens_details":null`, 0, 0},
		// DeepSeek's counts of cached prompt tokens, beside the prompt's.
		{`"prompt_cache_hit_tokens":6,"prompt_cache_miss_tokens":4`, 6, 0},
		{`"prompt_cache_hit_tokens":60,"prompt_cache_miss_tokens":0`, 10, 0},
	} {
		usage := `{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,` + tc.details + `}`
		for _, streamed := range []bool{false, true} {
			s := llmtest.NewServer(t)
			body := `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":` + usage + `}`
			if streamed {
				body = "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\n" +
					"data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":" + usage + "}\n\ndata: [DONE]\n\n"
			}
			header := http.Header{"Content-Type": {"application/json"}}
			if streamed {
				header = http.Header{"Content-Type": {"text/event-stream"}}
			}
			// An openai provider pointed at another base URL (DeepSeek's)
			// reads it too.
			for _, typ := range []domain.ProviderType{domain.ProviderOpenAICompatible, domain.ProviderOpenAI} {
				s.Enqueue(llmtest.Behavior{Body: body, Header: header})
				res, _, err := run(context.Background(), newClient(t), request(typ, s), streamed)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := res.Usage, (domain.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, CachedTokens: tc.cached, ReasoningTokens: tc.reasoning}); got != want {
					t.Errorf("%s, %s, streamed %v: Usage = %+v, want %+v", typ, tc.details, streamed, got, want)
				}
			}
		}
	}
}

func TestAnthropicUsageCountsCachedInput(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Behavior{Body: `{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
		"content":[{"type":"text","text":"cached "},{"type":"text","text":"reply"}],"stop_reason":"end_turn","stop_sequence":null,
		"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":7}}`})
	res, _, err := run(context.Background(), newClient(t), request(domain.ProviderAnthropic, s), false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Usage, (domain.Usage{PromptTokens: 115, CompletionTokens: 7, TotalTokens: 122, CachedTokens: 100, CacheWriteTokens: 5}); got != want {
		t.Errorf("Usage = %+v, want %+v", got, want)
	}
	if got, want := res.Content, "cached reply"; got != want {
		t.Errorf("Content = %q, want %q", got, want)
	}
	if got, want := res.Model, "claude-x"; got != want {
		t.Errorf("Model = %q, want %q", got, want)
	}
}

// TestAnthropicStreamUsageByField: a stream's message_delta counts the
// reply and, in today's API, the input again; a gateway that passes on only
// some of the input's counts there leaves the others as message_start gave
// them, rather than zero.
func TestAnthropicStreamUsageByField(t *testing.T) {
	start := `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],` +
		`"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":1}}}`
	for name, final := range map[string]string{
		"every count":             `{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":7}`,
		"the input's tokens only": `{"input_tokens":10,"output_tokens":7}`,
		"the output only":         `{"output_tokens":7}`,
	} {
		t.Run(name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			body := "event: message_start\ndata: " + start + "\n\n" +
				"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n" +
				"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
				"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":" + final + "}\n\n" +
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
			s.Enqueue(llmtest.Behavior{Body: body, Header: http.Header{"Content-Type": {"text/event-stream"}}})
			res, _, err := run(context.Background(), newClient(t), request(domain.ProviderAnthropic, s), true)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := res.Usage, (domain.Usage{PromptTokens: 115, CompletionTokens: 7, TotalTokens: 122, CachedTokens: 100, CacheWriteTokens: 5}); got != want {
				t.Errorf("Usage = %+v, want %+v", got, want)
			}
		})
	}
}

// TestAnthropicThinkingTokensAreReasoningTokens: Anthropic's
// output_tokens_details.thinking_tokens, in a whole reply or a stream's
// message_delta, are the usage's reasoning tokens (as OpenAI's
// completion_tokens_details.reasoning_tokens are), never more than the
// reply's tokens.
func TestAnthropicThinkingTokensAreReasoningTokens(t *testing.T) {
	for _, tc := range []struct {
		name     string
		thinking int
		want     int
	}{{"counted", 30, 30}, {"bounded by the reply", 90, 40}} {
		for _, streamed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, streamed %v", tc.name, streamed), func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(llmtest.Behavior{Usage: &llmtest.Usage{PromptTokens: 12, CompletionTokens: 40, ReasoningTokens: tc.thinking}})
				res, _, err := run(context.Background(), newClient(t), request(domain.ProviderAnthropic, s), streamed)
				if err != nil {
					t.Fatal(err)
				}
				if got := res.Usage; got.ReasoningTokens != tc.want || got.CompletionTokens != 40 {
					t.Errorf("Usage = %+v; want %d reasoning tokens of 40", got, tc.want)
				}
			})
		}
	}
}

func TestAnthropicIgnoresTheServersEnvironment(t *testing.T) {
	other := llmtest.NewServer(t)
	t.Setenv("ANTHROPIC_API_KEY", "server-env-key")
	t.Setenv("ANTHROPIC_BASE_URL", other.RootURL())
	s := llmtest.NewServer(t)
	req := request(domain.ProviderAnthropic, s)
	req.Endpoint.APIKey = ""
	if _, _, err := run(context.Background(), newClient(t), req, false); err != nil {
		t.Fatal(err)
	}
	if got := s.Last().APIKey; got != "" {
		t.Errorf("the upstream got API key %q, want none", got)
	}
	if got := other.Count(); got != 0 {
		t.Errorf("ANTHROPIC_BASE_URL got %d requests", got)
	}
}

func TestWrongKeyAgainstAFakeRequiringOne(t *testing.T) {
	for _, typ := range allTypes {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.RequireKey("the-right-key")
			_, _, err := run(context.Background(), newClient(t), request(typ, s), true)
			if got, want := domain.MessageOf(err), "the AI provider rejected its API key (HTTP 401): an owner of its project must replace the provider's apiKey (PATCH /api/v1/ai-providers/{id})"; got != want {
				t.Errorf("message = %q, want %q", got, want)
			}
			req := request(typ, s)
			req.Endpoint.APIKey = "the-right-key"
			if _, _, err := run(context.Background(), newClient(t), req, true); err != nil {
				t.Errorf("with the right key: %v", err)
			}
		})
	}
}

// TestStreamChunksAsUpstreamsSendThem reads a stream whose chunks have
// what real upstreams send but the fake's do not: null fields, fields
// Parley does not know, a name given twice, invalid UTF-8 and a choice
// other than the first. Each chunk is still read as encoding/json would,
// except that "\xe9" at the end of a delta could begin a character the next
// delta ends (see TestStreamJoinsSplitCharacters), so it waits for it.
func TestStreamChunksAsUpstreamsSendThem(t *testing.T) {
	s := llmtest.NewServer(t)
	body := strings.Join([]string{
		`data: {"id":"c1","object":"chat.completion.chunk","model":"m-1","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":null},"logprobs":null,"finish_reason":null}]}`,
		`data: {"model":"m-1","choices":[{"index":0,"delta":{"content":"caf` + "\xe9" + `"},"finish_reason":null},{"index":1,"delta":{"content":"other"}}]}`,
		`data: {"model":"m-1","choices":[{"index":0,"delta":{"content":"x","content":" au lait"},"finish_reason":null}]}`,
		`data: {"model":"m-1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`,
		`data: {"model":"m-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`,
		`data: [DONE]`,
	}, "\n\n") + "\n\n"
	s.Enqueue(llmtest.Behavior{Body: body, Header: http.Header{"Content-Type": {"text/event-stream"}}})
	res, deltas, err := run(context.Background(), newClient(t), request(domain.ProviderOpenAI, s), true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(deltas, "|"), "caf|\ufffd au lait"; got != want {
		t.Errorf("deltas = %q; want %q", got, want)
	}
	if res.Content != "caf\ufffd au lait" || res.FinishReason != "stop" || res.Model != "m-1" {
		t.Errorf("result = %+v", res)
	}
	if got, want := res.Usage, (domain.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}); got != want {
		t.Errorf("usage = %+v; want %+v", got, want)
	}
}

// TestStreamJoinsSplitCharacters: an upstream that splits a character's
// bytes between two chunks (invalid UTF-8 in the JSON string of each)
// gets the character passed on whole, with the delta that completes it, in
// the text, the reasoning, a refusal and a tool call's arguments.
func TestStreamJoinsSplitCharacters(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pieces []string // as they go in the chunks' JSON strings
		deltas string   // joined with |
	}{
		{"two bytes of three, then one", []string{"a\xe2\x82", "\xacb"}, "a|€b"},
		{"one byte of three, then two", []string{"a\xe2", "\x82\xacb"}, "a|€b"},
		{"a four-byte character in three chunks", []string{"\xf0\x9f", "\x98", "\x80!"}, "😀!"},
		{"with escapes", []string{`line\n\u00e9` + "\xe2\x82", "\xac" + `\"\ud83d\ude00`}, "line\né|€\"😀"},
		{"an invalid byte between escapes", []string{`\t` + "\xe2" + `\n`}, "\t\ufffd\n"},
		{"a start never continued", []string{"x\xe2", "yz"}, "x|\ufffdyz"},
		{"a start never ended", []string{"ab\xe2\x82"}, "ab|\ufffd\ufffd"},
		{"invalid bytes in the middle", []string{"a\xff\x82b"}, "a\ufffd\ufffdb"},
	} {
		// The reply's text, and a reasoning model's thinking alike.
		for _, field := range []string{"content", "reasoning_content", "refusal", "arguments"} {
			t.Run(tc.name+"/"+field, func(t *testing.T) {
				s := llmtest.NewServer(t)
				var body strings.Builder
				for _, p := range tc.pieces {
					delta := `{"` + field + `":"` + p + `"}`
					if field == "arguments" {
						delta = `{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"` + p + `"}}]}`
					}
					body.WriteString(`data: {"model":"m","choices":[{"index":0,"delta":` + delta + `,"finish_reason":null}]}` + "\n\n")
				}
				body.WriteString(`data: {"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n")
				s.Enqueue(llmtest.Behavior{Body: body.String(), Header: http.Header{"Content-Type": {"text/event-stream"}}})
				var deltas []string
				res, err := newClient(t).Complete(context.Background(), request(domain.ProviderOpenAI, s), func(d domain.Delta) error {
					piece := d.Content + d.Reasoning + d.Refusal
					for _, c := range d.ToolCalls {
						piece += c.Arguments
					}
					if piece != "" {
						deltas = append(deltas, piece)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.Join(deltas, "|"); got != tc.deltas {
					t.Errorf("deltas = %q; want %q", got, tc.deltas)
				}
				got, want := res.Content, strings.ReplaceAll(tc.deltas, "|", "")
				switch field {
				case "reasoning_content":
					got = res.Reasoning
				case "refusal":
					got = res.Refusal
				case "arguments":
					if len(res.ToolCalls) != 1 {
						t.Fatalf("tool calls = %+v; want one", res.ToolCalls)
					}
					got = res.ToolCalls[0].Arguments
				}
				if got != want {
					t.Errorf("%s = %q; want %q", field, got, want)
				}
			})
		}
	}
}

// countingTransport counts the response body bytes its caller read.
type countingTransport struct {
	base http.RoundTripper
	read *atomic.Int64
}

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.base.RoundTrip(req)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, read: c.read}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	read *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read.Add(int64(n))
	return n, err
}

// TestUnendedStreamEvent streams an event whose data lines never end with
// the blank line that ends an event (the Anthropic SDK keeps every one in
// memory until it comes): the call fails once the event passes twice the
// line cap, having read little more than that.
func TestUnendedStreamEvent(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			const sent = 32 << 20
			s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultUnendedEvent, AfterDeltas: 1, Size: sent})
			var read atomic.Int64
			base := &http.Transport{}
			t.Cleanup(base.CloseIdleConnections)
			hc := &http.Client{Transport: countingTransport{base: base, read: &read}}
			c := newClient(t, func(c *llm.Config) { c.MaxLineBytes, c.HTTPClient = 4096, hc })
			res, _, err := run(context.Background(), c, request(typ, s), true)
			if got, want := domain.KindOf(err), domain.Upstream; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if got, want := domain.MessageOf(err), "the AI provider's stream event exceeded 8192 bytes"; got != want {
				t.Errorf("message = %q, want %q", got, want)
			}
			if res == nil || res.Content != "echo: " {
				t.Errorf("partial result = %+v", res)
			}
			if got, limit := read.Load(), int64(64<<10); got > limit {
				t.Errorf("read %d bytes of the %d sent, want at most %d", got, sent, limit)
			}
			if !s.WaitCanceledN(0, 5*time.Second) {
				t.Error("the upstream did not see the stream abandoned")
			}
		})
	}
}

// TestKeepAliveComments streams a reply after 1,000 SSE comments, as
// aggregators send while a model thinks (OpenRouter's ": OPENROUTER
// PROCESSING"): go-openai's default would fail the stream after 300.
func TestKeepAliveComments(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAICompatible, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Comments: 1000})
			res, deltas, err := run(context.Background(), newClient(t), request(typ, s), true)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			want := llmtest.EchoReply("hello there")
			if got := res.Content; got != want {
				t.Errorf("Content = %q, want %q", got, want)
			}
			if got, want := strings.Join(deltas, "|"), strings.Join(llmtest.Deltas(want), "|"); got != want {
				t.Errorf("deltas = %q, want %q", got, want)
			}
			if got, want := res.FinishReason, "stop"; got != want {
				t.Errorf("FinishReason = %q, want %q", got, want)
			}
		})
	}
}

// TestNonDataLinesAreBounded checks what bounds the non-data lines
// go-openai keeps for a whole stream, now that its count of them is off:
// their bytes, at MaxResponseBytes.
func TestNonDataLinesAreBounded(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Behavior{Comments: 20000}) // 280,000 bytes
	c := newClient(t, func(c *llm.Config) { c.MaxResponseBytes = 64 << 10 })
	_, _, err := run(context.Background(), c, request(domain.ProviderOpenAICompatible, s), true)
	if got, want := domain.KindOf(err), domain.Upstream; got != want {
		t.Fatalf("kind = %v, want %v (%v)", got, want, err)
	}
	if got, want := domain.MessageOf(err), "the AI provider's response exceeded 65536 bytes"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}

// TestBlankLinesWithoutEnd streams nothing but blank lines after two
// chunks: go-openai keeps nothing of them, and its count of lines without
// data, raised for keep-alive comments (5,000 blank lines pass), still
// ends the stream.
func TestBlankLinesWithoutEnd(t *testing.T) {
	s := llmtest.NewServer(t)
	chunk := func(text string) string {
		return `data: {"choices":[{"index":0,"delta":{"content":"` + text + `"}}]}` + "\n"
	}
	body := chunk("hi") + strings.Repeat("\n", 5000) + chunk(" there") + strings.Repeat("\n", 1<<20+10)
	s.Enqueue(llmtest.Behavior{Body: body, Header: http.Header{"Content-Type": {"text/event-stream"}}})
	res, _, err := run(context.Background(), newClient(t), request(domain.ProviderOpenAICompatible, s), true)
	if got, want := domain.KindOf(err), domain.Upstream; got != want {
		t.Fatalf("kind = %v, want %v (%v)", got, want, err)
	}
	if got, want := domain.MessageOf(err), "the AI provider sent more than 1048576 stream lines in a row with no data"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
	if res == nil || res.Content != "hi there" {
		t.Errorf("partial result = %+v", res)
	}
}

// connCounter is an HTTP client that counts the connections it dials and
// the ones it closes.
type connCounter struct {
	dials, closes atomic.Int32
}

func (cc *connCounter) client(t *testing.T) *http.Client {
	var d net.Dialer
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cc.dials.Add(1)
		return &countedConn{Conn: c, closes: &cc.closes}, nil
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

type countedConn struct {
	net.Conn
	closes *atomic.Int32
	once   sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.closes.Add(1) })
	return c.Conn.Close()
}

// TestConnectionsAreReused makes many calls at once, JSON and streamed, to
// the fake, which sends its bodies chunked as servers do (the chunked
// body's end comes in a write of its own, after the reply): no connection
// may be thrown away. The SDKs stop reading at the reply's end, and
// closing the body there closed the connection, so calls dialled again.
// Each call's context is cancelled when it returns: a cancelled request
// closes a connection whose body's end is still to be read.
func TestConnectionsAreReused(t *testing.T) {
	const workers, calls = 8, 25
	for _, typ := range allTypes {
		for _, m := range modes() {
			t.Run(string(typ)+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				var cc connCounter
				c := newClient(t, func(c *llm.Config) { c.HTTPClient = cc.client(t) })
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						for range calls {
							// Cancelled as soon as the call returns, as a
							// handler's request context is when it answers.
							ctx, cancel := context.WithCancel(context.Background())
							_, _, err := run(ctx, c, request(typ, s), m.stream)
							cancel()
							if err != nil {
								t.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				if got := cc.closes.Load(); got != 0 {
					t.Errorf("%d connections closed after %d calls on %d dialled, want none closed", got, workers*calls, cc.dials.Load())
				}
				if got, limit := cc.dials.Load(), int32(workers*calls/4); got > limit {
					t.Errorf("%d connections dialled for %d calls, want at most %d", got, workers*calls, limit)
				}
			})
		}
	}
}

// TestUnendedBodyAfterReply answers with a whole reply whose body never
// ends: the call returns with the reply, and the connection is closed
// after the bounded drain rather than held.
func TestUnendedBodyAfterReply(t *testing.T) {
	bodies := map[bool]string{
		false: `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`,
		true: "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\n" +
			"data: [DONE]\n\n",
	}
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			release, gone := make(chan struct{}), make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, bodies[m.stream])
				http.NewResponseController(w).Flush()
				select { // hold the body open
				case <-r.Context().Done():
					close(gone)
				case <-release:
				}
			}))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) })
			req := domain.LLMRequest{Endpoint: domain.Endpoint{Type: domain.ProviderOpenAICompatible, BaseURL: srv.URL + "/v1", APIKey: testKey},
				Model: "m", Messages: []domain.LLMMessage{{Role: domain.RoleUser, Content: "x"}}}
			res, _, err := run(context.Background(), newClient(t), req, m.stream)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := res.Content, "hi"; got != want {
				t.Errorf("Content = %q, want %q", got, want)
			}
			select {
			case <-gone:
			case <-time.After(10 * time.Second):
				t.Error("the connection of a body that never ended was not closed")
			}
		})
	}
}

// sseChunk is one OpenAI stream event carrying content (and a finish
// reason when finish is set).
func sseChunk(content string, finish bool) string {
	reason := "null"
	if finish {
		reason = `"stop"`
	}
	return `data: {"id":"x","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":` +
		strconv.Quote(content) + `},"finish_reason":` + reason + `}]}` + "\n\n"
}

// streamFrom calls Complete, streaming from a server that runs serve, and
// returns the deltas it received; seen, when not nil, sees each as it
// comes.
func streamFrom(t *testing.T, serve func(w http.ResponseWriter, flush func()), seen func(domain.Delta)) ([]domain.Delta, error) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		serve(w, func() { _ = http.NewResponseController(w).Flush() })
	}))
	t.Cleanup(srv.Close)
	req := domain.LLMRequest{Endpoint: domain.Endpoint{Type: domain.ProviderOpenAICompatible, BaseURL: srv.URL + "/v1", APIKey: testKey},
		Model: "m", Messages: []domain.LLMMessage{{Role: domain.RoleUser, Content: "x"}}}
	var got []domain.Delta
	_, err := newClient(t).Complete(context.Background(), req, func(d domain.Delta) error {
		got = append(got, d)
		if seen != nil {
			seen(d)
		}
		return nil
	})
	return got, err
}

// TestStreamDeltasThatArriveTogether: deltas the upstream sent in one
// write are handed on with More set, all but the last, so a writer can
// send them in one write too.
func TestStreamDeltasThatArriveTogether(t *testing.T) {
	got, err := streamFrom(t, func(w http.ResponseWriter, _ func()) {
		_, _ = io.WriteString(w, sseChunk("a", false)+sseChunk("b", false)+sseChunk("c", false)+
			sseChunk("", true)+`data: {"id":"x","object":"chat.completion.chunk","model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}`+"\n\ndata: [DONE]\n\n")
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []domain.Delta{{Content: "a", Model: "m", More: true}, {Content: "b", Model: "m", More: true}, {Content: "c", Model: "m"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("deltas = %+v, want %+v", got, want)
	}
}

// TestStreamDeltaIsNotHeldForTheUpstream: a delta after which the
// upstream pauses goes on at once, without More. The fake sends the rest
// only once the first delta has reached the caller, or after 5 s.
func TestStreamDeltaIsNotHeldForTheUpstream(t *testing.T) {
	first := make(chan struct{})
	var once sync.Once
	var waited atomic.Bool
	got, err := streamFrom(t, func(w http.ResponseWriter, flush func()) {
		_, _ = io.WriteString(w, sseChunk("a", false))
		flush()
		select {
		case <-first:
		case <-time.After(5 * time.Second):
			waited.Store(true)
		}
		_, _ = io.WriteString(w, sseChunk("b", false)+sseChunk("", true)+"data: [DONE]\n\n")
	}, func(domain.Delta) { once.Do(func() { close(first) }) })
	if err != nil {
		t.Fatal(err)
	}
	if waited.Load() {
		t.Error("the first delta was held until the upstream sent more")
	}
	want := []domain.Delta{{Content: "a", Model: "m"}, {Content: "b", Model: "m"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("deltas = %+v, want %+v", got, want)
	}
}

// TestFirstByteTimeoutCountsData: a stream's first byte is its first data
// line, not its headers: a provider (or an aggregator in front of it) that
// answers 200 at once and then sends only keep-alive comments, or nothing,
// is a timeout once the first-byte timeout passed, not a wait without end.
func TestFirstByteTimeoutCountsData(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		for _, comments := range []int{0, 3} {
			t.Run(fmt.Sprintf("%s/%d comments", typ, comments), func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultNoData, Comments: comments})
				c := newClient(t, func(c *llm.Config) { c.FirstByteTimeout = 300 * time.Millisecond })
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				start := time.Now()
				res, deltas, err := run(ctx, c, request(typ, s), true)
				if got, want := domain.KindOf(err), domain.Timeout; got != want {
					t.Fatalf("kind = %v, want %v (%v) after %v", got, want, err, time.Since(start))
				}
				if got, want := domain.MessageOf(err), "the AI provider did not answer within 300ms (its stream sent no data)"; got != want {
					t.Errorf("message = %q, want %q", got, want)
				}
				if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
					t.Errorf("took %v, want about the first-byte timeout", d)
				}
				if len(deltas) != 0 || (res != nil && res.Content != "") {
					t.Errorf("deltas %q, result %+v", deltas, res)
				}
				if got := s.Count(); got != 1 {
					t.Errorf("upstream requests = %d, want 1 (timeouts are not retried)", got)
				}
				if !s.WaitCanceledN(s.Last().N, time.Second) {
					t.Error("the upstream did not see the request abandoned")
				}
			})
		}
	}
	// Data that comes in time stops the clock: a slow reply after it is
	// not cut.
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ)+"/slow after the first data", func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Comments: 2, ChunkDelay: 100 * time.Millisecond})
			c := newClient(t, func(c *llm.Config) { c.FirstByteTimeout = 300 * time.Millisecond })
			res, _, err := run(context.Background(), c, request(typ, s), true)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := res.Content, llmtest.EchoReply("hello there"); got != want {
				t.Errorf("content = %q, want %q", got, want)
			}
		})
	}
}

// TestIdleTimeout: a stream that goes quiet after its first data, its
// connection open (a stuck provider), is ended once the idle timeout
// passed since its last data line, not held until the client gives up;
// one whose chunks keep coming, each within the timeout, runs on past
// it, and past the first-byte timeout, which the same timer keeps.
func TestIdleTimeout(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		// The idle timeout counts from the last data line, whether it is
		// shorter than the first-byte timeout or longer.
		for _, first := range []time.Duration{200 * time.Millisecond, 5 * time.Second} {
			t.Run(fmt.Sprintf("%s/quiet, first byte %v", typ, first), func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 2})
				c := newClient(t, func(c *llm.Config) {
					c.FirstByteTimeout, c.IdleTimeout = first, 400*time.Millisecond
				})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				start := time.Now()
				_, deltas, err := run(ctx, c, request(typ, s), true)
				if got, want := domain.KindOf(err), domain.Timeout; got != want {
					t.Fatalf("kind = %v, want %v (%v) after %v", got, want, err, time.Since(start))
				}
				if got, want := domain.MessageOf(err), "the AI provider's stream sent nothing for 400ms and was ended"; got != want {
					t.Errorf("message = %q, want %q", got, want)
				}
				if d := time.Since(start); d < 350*time.Millisecond || d > 3*time.Second {
					t.Errorf("took %v, want about the idle timeout", d)
				}
				if len(deltas) != 2 {
					t.Errorf("deltas before the quiet = %q, want 2", deltas)
				}
				if got := s.Count(); got != 1 {
					t.Errorf("upstream requests = %d, want 1 (a stream that began is not retried)", got)
				}
				if !s.WaitCanceledN(s.Last().N, time.Second) {
					t.Error("the upstream did not see the request abandoned")
				}
			})
		}
		t.Run(string(typ)+"/steady", func(t *testing.T) {
			s := llmtest.NewServer(t)
			// Chunks 100ms apart, the idle timeout six times that: room for a
			// loaded host's stalls, and over 2s of stream to outlast it.
			s.Enqueue(llmtest.Behavior{ChunkDelay: 100 * time.Millisecond})
			c := newClient(t, func(c *llm.Config) {
				c.FirstByteTimeout, c.IdleTimeout = 200*time.Millisecond, 600*time.Millisecond
			})
			prompt := strings.TrimSpace(strings.Repeat("word ", 20))
			start := time.Now()
			res, _, err := run(context.Background(), c, request(typ, s, prompt), true)
			if err != nil {
				t.Fatalf("%v after %v", err, time.Since(start))
			}
			if got, want := res.Content, llmtest.EchoReply(prompt); got != want {
				t.Errorf("content = %q, want %q", got, want)
			}
			if d := time.Since(start); d < 1200*time.Millisecond {
				t.Errorf("the stream took %v: too short to outlast the idle timeout more than once", d)
			}
		})
	}
}

// TestOversizedGzipBody: the size caps count the body as decompressed, so
// a small gzip body that inflates past them (a decompression bomb) is cut,
// whole replies and error bodies alike.
func TestOversizedGzipBody(t *testing.T) {
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return b.String()
	}
	reply := gz(`{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"` + strings.Repeat("a", 4<<20) + `"}}]}`)
	errBody := gz(`{"error":{"message":"` + strings.Repeat("x", 4<<20) + `"}}`)
	h := http.Header{"Content-Encoding": {"gzip"}}
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Body: reply, Header: h}, llmtest.Behavior{Status: 400, Body: errBody, Header: h})
			c := newClient(t, func(c *llm.Config) { c.MaxResponseBytes = 16 << 10 })
			if len(reply) >= 16<<10 {
				t.Fatalf("the compressed reply is %d bytes, not under the cap", len(reply))
			}
			_, _, err := run(context.Background(), c, request(typ, s), false)
			if got, want := domain.MessageOf(err), "response exceeded 16384 bytes"; !strings.Contains(got, want) {
				t.Errorf("message = %q, want it to contain %q", got, want)
			}
			_, _, err = run(context.Background(), c, request(typ, s), false)
			if got, want := domain.KindOf(err), domain.Invalid; got != want {
				t.Fatalf("kind = %v, want %v (%v)", got, want, err)
			}
			if n := len(err.Error()); n > 2000 {
				t.Errorf("error text is %d bytes; the upstream body must not be carried whole", n)
			}
		})
	}
}

// TestCancelDuringBackoff: a caller that goes away while a retry waits
// its backoff gets its answer at once, not after the wait, and no further
// attempt is made.
func TestCancelDuringBackoff(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderAnthropic} {
		for _, m := range modes() {
			t.Run(string(typ)+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Script(func(int, llmtest.Request) llmtest.Behavior { return llmtest.Behavior{Status: 503} })
				c := newClient(t, func(c *llm.Config) { c.RetryBaseDelay, c.MaxRetries = 20*time.Second, 3 })
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go func() {
					for s.Count() == 0 {
						time.Sleep(5 * time.Millisecond)
					}
					time.Sleep(50 * time.Millisecond)
					cancel()
				}()
				start := time.Now()
				_, _, err := run(ctx, c, request(typ, s), m.stream)
				if got, want := domain.KindOf(err), domain.Canceled; got != want {
					t.Fatalf("kind = %v, want %v (%v)", got, want, err)
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("took %v after a cancel during a backoff of at least 10s", d)
				}
				if got := s.Count(); got != 1 {
					t.Errorf("upstream requests = %d, want 1", got)
				}
			})
		}
	}
}

// TestAnsweredModelThatHoldsTheKey: a model name the upstream answers
// with that holds the key it was called with (an upstream echoing it) is
// not taken, on either wire, whole or streamed: it would go into metrics
// labels, usage reports and stored replies. Its deltas carry none either.
func TestAnsweredModelThatHoldsTheKey(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAICompatible, domain.ProviderAnthropic} {
		for _, m := range modes() {
			t.Run(string(typ)+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(llmtest.Behavior{Model: "served-by-" + testKey})
				var deltaModels []string
				var onDelta func(domain.Delta) error
				if m.stream {
					onDelta = func(d domain.Delta) error {
						deltaModels = append(deltaModels, d.Model)
						return nil
					}
				}
				res, err := newClient(t).Complete(context.Background(), request(typ, s, "hi"), onDelta)
				if err != nil {
					t.Fatal(err)
				}
				if res.Model != "" || slices.ContainsFunc(deltaModels, func(m string) bool { return strings.Contains(m, testKey) }) {
					t.Errorf("model %q, deltas' %q: want none holding the key", res.Model, deltaModels)
				}
			})
		}
	}
}
