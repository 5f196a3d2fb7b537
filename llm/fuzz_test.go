package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/parleyhq/parley/domain"
)

// fuzzKey is the provider key of the fuzzed calls: no error may show it.
const fuzzKey = "sk-fuzz-0123456789abcdefghijkl"

// canned answers every request with one status, content type and body.
type canned struct {
	status int
	ctype  string
	body   []byte
}

func (c canned) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	h := http.Header{"Content-Type": {c.ctype}}
	return &http.Response{StatusCode: c.status, Status: http.StatusText(c.status), Header: h, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Body: io.NopCloser(bytes.NewReader(c.body)), ContentLength: int64(len(c.body)), Request: r}, nil
}

// fuzzRequest is a call that offers a tool, so that every reader of a
// reply's parts is on its path.
func fuzzRequest(t domain.ProviderType) domain.LLMRequest {
	return domain.LLMRequest{
		Endpoint: domain.Endpoint{Type: t, BaseURL: "http://upstream.test/v1", APIKey: fuzzKey},
		Model:    "m", Caller: "fuzz",
		Messages: []domain.LLMMessage{{Role: domain.RoleUser, Content: "hi"}},
		Tools:    []domain.Tool{{Type: "function", Name: "f", Parameters: []byte(`{"type":"object"}`)}},
	}
}

// complete runs one call of type pt answered with c, streamed when stream
// is set, and checks what every caller of Complete relies on: it ends in
// time, without a panic; an error is one of the kinds domain.LLM names,
// with a message in valid UTF-8 that does not show the key; the deltas,
// joined, are the result (text, reasoning, refusal, and each tool call's
// id, name and arguments, its id and name with its first piece).
func complete(t *testing.T, pt domain.ProviderType, c canned, stream bool) {
	t.Helper()
	cl := New(Config{HTTPClient: &http.Client{Transport: c}, MaxRetries: -1,
		FirstByteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second, ResponseTimeout: 5 * time.Second,
		MaxResponseBytes: 1 << 20, MaxLineBytes: 64 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var deltas []domain.Delta
	var onDelta func(domain.Delta) error
	if stream {
		onDelta = func(d domain.Delta) error { deltas = append(deltas, d); return nil }
	}
	res, err := cl.Complete(ctx, fuzzRequest(pt), onDelta)
	if ctx.Err() != nil {
		t.Fatalf("the call took 10 s on a body in memory (status %d): %q", c.status, c.body)
	}
	if err != nil {
		switch k := domain.KindOf(err); k {
		case domain.Upstream, domain.RateLimited, domain.Timeout, domain.Invalid:
		default:
			t.Fatalf("error of kind %v: %v", k, err)
		}
		// (A message may hold the provider's bytes as they came, not
		// UTF-8: the REST and MCP encoders write them as U+FFFD.)
		msg := domain.MessageOf(err)
		if strings.Contains(msg, fuzzKey) || strings.Contains(err.Error(), fuzzKey) {
			t.Fatalf("error message %q (cause %q) shows the key", msg, err.Error())
		}
		if domain.KindOf(err) == domain.Timeout {
			t.Fatalf("a body in memory timed out: %v", err)
		}
	}
	if res == nil {
		if len(deltas) > 0 {
			t.Fatalf("%d deltas, then no result: %v", len(deltas), err)
		}
		return
	}
	if strings.Contains(res.Model, fuzzKey) {
		t.Fatalf("model %q shows the key", res.Model)
	}
	for name, s := range map[string]string{"content": res.Content, "reasoning": res.Reasoning, "refusal": res.Refusal} {
		if !utf8.ValidString(s) {
			t.Fatalf("the result's %s is not UTF-8: %q", name, s)
		}
	}
	for _, tc := range res.ToolCalls {
		if !utf8.ValidString(tc.Arguments) || !utf8.ValidString(tc.Name) || !utf8.ValidString(tc.ID) {
			t.Fatalf("a tool call is not UTF-8: %+v", tc)
		}
		if tc.ID == "" {
			t.Fatalf("a tool call without an id: %+v", tc)
		}
	}
	if !stream {
		return
	}
	var content, reasoning, refusal strings.Builder
	type call struct{ id, name, args string }
	var calls []call
	for i, d := range deltas {
		content.WriteString(d.Content)
		reasoning.WriteString(d.Reasoning)
		refusal.WriteString(d.Refusal)
		if !utf8.ValidString(d.Content) || !utf8.ValidString(d.Reasoning) || !utf8.ValidString(d.Refusal) {
			t.Fatalf("delta %d is not UTF-8: %+v", i, d)
		}
		for _, td := range d.ToolCalls {
			switch {
			case td.Index == len(calls):
				if td.ID == "" {
					t.Fatalf("delta %d begins call %d without an id: %+v", i, td.Index, td)
				}
				calls = append(calls, call{id: td.ID, name: td.Name})
			case td.Index < 0 || td.Index > len(calls):
				t.Fatalf("delta %d: call index %d after %d calls", i, td.Index, len(calls))
			case td.ID != "":
				t.Fatalf("delta %d gives call %d an id again: %+v", i, td.Index, td)
			case td.Name != "" && calls[td.Index].name != "":
				t.Fatalf("delta %d names call %d again: %+v", i, td.Index, td)
			default:
				calls[td.Index].name += td.Name // a name after an id-only first piece
			}
			calls[td.Index].args += td.Arguments
		}
	}
	if content.String() != res.Content || reasoning.String() != res.Reasoning || refusal.String() != res.Refusal {
		t.Fatalf("deltas joined differ from the result (err %v):\n content %q vs %q\n reasoning %q vs %q\n refusal %q vs %q",
			err, content.String(), res.Content, reasoning.String(), res.Reasoning, refusal.String(), res.Refusal)
	}
	if len(calls) != len(res.ToolCalls) {
		t.Fatalf("%d calls streamed, %d in the result (err %v)", len(calls), len(res.ToolCalls), err)
	}
	for i, c := range calls {
		r := res.ToolCalls[i]
		if c.id != r.ID || c.name != r.Name || c.args != r.Arguments {
			t.Fatalf("call %d streamed as %+v, the result has %+v", i, c, r)
		}
	}
}

// FuzzOpenAIStream feeds an OpenAI-wire stream's body, any bytes, to a
// streamed completion of an openai-compatible provider.
func FuzzOpenAIStream(f *testing.F) {
	for _, s := range []string{
		"data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\ndata: [DONE]\n\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xe2\x82\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xac!\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"think\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}},{\"index\":0,\"id\":\"b\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"a\",\"function\":{\"name\":\"f\"}}],\"reasoning_details\":[{\"type\":\"reasoning.text\",\"text\":\"x\"},{\"type\":\"reasoning.encrypted\",\"data\":\"e\",\"id\":\"a\",\"index\":1}]}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"extra_content\":{\"google\":{\"thought_signature\":\"s\"}},\"function\":{\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"no\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"thinking\",\"thinking\":[{\"type\":\"text\",\"text\":\"t\"}]},{\"type\":\"text\",\"text\":\"x\"}]},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
		"data: {\"error\":{\"message\":\"Incorrect API key provided: " + fuzzKey + "\",\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}\n\n",
		"data: {\"error\":{\"message\":\"boom\"},\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"error\"}]}\n\ndata: [DONE]\n\n",
		": keep-alive\n\n: keep-alive\n\n",
		"{\"error\":{\"message\":\"not a stream\",\"code\":400}}",
		"<html>bad gateway</html>",
		"data: {\"model\":\"" + fuzzKey + "\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"length\"}]}\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		complete(t, domain.ProviderOpenAICompatible, canned{200, "text/event-stream", body}, true)
	})
}

// FuzzAnthropicStream feeds an Anthropic Messages stream's body, any
// bytes, to a streamed completion of an anthropic provider.
func FuzzAnthropicStream(f *testing.F) {
	ev := func(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }
	start := ev("message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[],"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":1}}}`)
	stop := ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}`) + ev("message_stop", `{"type":"message_stop"}`)
	for _, s := range []string{
		start + ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`) +
			ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}`) +
			ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}`) +
			ev("content_block_stop", `{"type":"content_block_stop","index":0}`) + stop,
		start + ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}`) +
			ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}`) +
			ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}`) +
			ev("content_block_stop", `{"type":"content_block_stop","index":0}`) +
			ev("content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}`) +
			ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}`) +
			ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1}"}}`) +
			ev("content_block_stop", `{"type":"content_block_stop","index":1}`) +
			ev("content_block_start", `{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_2","name":"g","input":{}}}`) +
			ev("content_block_stop", `{"type":"content_block_stop","index":2}`) +
			ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}`),
		start + ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`) +
			ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\u00e2"}}`) +
			ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"refusal","stop_details":{"type":"refusal","explanation":"no"}},"usage":{"output_tokens":2}}`),
		start + ev("ping", `{"type":"ping"}`) + ev("error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`),
		ev("error", `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key `+fuzzKey+`"}}`),
		`{"type":"error","error":{"type":"api_error","message":"not a stream"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		complete(t, domain.ProviderAnthropic, canned{200, "text/event-stream", body}, true)
	})
}

// FuzzWholeReply feeds a whole reply's body, any bytes, with one of a few
// statuses, to a completion that does not stream, of each wire.
func FuzzWholeReply(f *testing.F) {
	for _, s := range []string{
		`{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi","reasoning_content":"r","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"},"extra_content":{"google":{}}}],"reasoning_details":[{"type":"reasoning.text","text":"t"}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_cache_hit_tokens":1}}`,
		`{"id":"msg","type":"message","role":"assistant","model":"claude","content":[{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"hi"},{"type":"tool_use","id":"toolu","name":"f","input":{"a":1}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":2}}`,
		`{"error":{"message":"Incorrect API key provided: ` + fuzzKey + `","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`,
		`{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`,
		`<html>502</html>`, ``,
	} {
		for _, st := range []uint8{0, 1, 2, 3, 4} {
			f.Add(st, []byte(s))
		}
	}
	statuses := []int{200, 400, 429, 500, 401, 529, 404, 413, 422, 403}
	f.Fuzz(func(t *testing.T, st uint8, body []byte) {
		status := statuses[int(st/2)%len(statuses)]
		pt := domain.ProviderOpenAICompatible
		if st%2 == 1 {
			pt = domain.ProviderAnthropic
		}
		complete(t, pt, canned{status, "application/json", body}, false)
	})
}

// FuzzUTF8Joiner: the texts a utf8Joiner passes on for pieces, and its
// flush, are the pieces joined with each invalid byte as U+FFFD, however
// the pieces split the text.
func FuzzUTF8Joiner(f *testing.F) {
	f.Add([]byte("a\xe2\x82\xacb\xf0\x9f\x98\x80"), []byte{1, 2, 3})
	f.Add([]byte("\xe2\x82\xe2\x82\xac\xff"), []byte{2, 1})
	f.Fuzz(func(t *testing.T, text, cuts []byte) {
		var j utf8Joiner
		var out strings.Builder
		rest := text
		for _, c := range cuts {
			n := min(int(c)%8, len(rest))
			piece := j.next(string(rest[:n]))
			if !utf8.ValidString(piece) {
				t.Fatalf("a piece is not UTF-8: %q", piece)
			}
			out.WriteString(piece)
			rest = rest[n:]
		}
		out.WriteString(j.next(string(rest)))
		out.WriteString(j.flush())
		if want := validUTF8(string(text)); out.String() != want {
			t.Fatalf("%q cut at %v: %q, want %q", text, cuts, out.String(), want)
		}
	})
}

// FuzzSanitize: an upstream text made safe to show holds no part of the
// key longer than a third of it, wherever the key sits in the text, and
// is at most max runes and "…".
func FuzzSanitize(f *testing.F) {
	keys := []string{fuzzKey, "0123456789abcdef0123456789abcdef", "AIzaSyD-0123456789abcdefghijklmnopqrs"}
	f.Add(uint8(0), "Incorrect API key provided: ", " please", uint16(200))
	f.Add(uint8(1), strings.Repeat(`"`, 1580), "", uint16(200))
	f.Add(uint8(2), strings.Repeat("x", 790), "", uint16(100))
	// Control characters fold away after the cut at 8×max bytes, which
	// looked for a space to cut at: a key without sk- kept 10 characters.
	f.Add(uint8(1), strings.Repeat("\x01", 1590), " rejected", uint16(200))
	f.Fuzz(func(t *testing.T, which uint8, before, after string, max uint16) {
		key := keys[int(which)%len(keys)]
		m := int(max%600) + 1
		got := sanitize(before+key+after, key, m)
		if utf8.RuneCountInString(got) > m+1 {
			t.Fatalf("sanitize = %q: past %d runes", got, m)
		}
		third := len(key) / 3
		for i := 0; i+third <= len(key); i++ {
			if frag := key[i : i+third]; strings.Contains(got, frag) && !strings.Contains(before+after, frag) {
				t.Fatalf("key %q: its fragment %q survives in %q", key, frag, got)
			}
		}
	})
}

// FuzzAnthropicParams drives the conversion of a request's messages, in
// OpenAI's shape (text, refusals, tool calls and results, as stored from
// any provider), to Anthropic's Messages API, and checks the request it
// makes holds nothing the API refuses for its form alone: tool_use and
// tool_result ids of ^[a-zA-Z0-9_-]+$, tool names of
// ^[a-zA-Z0-9_-]{1,128}$, tool_use inputs that are JSON objects, no blank
// text block, a last assistant message (a prefill) without trailing
// whitespace, at least one message; or a refusal of kind Invalid.
func FuzzAnthropicParams(f *testing.F) {
	for _, s := range []string{
		`[{"role":"system","content":"s"},{"role":"user","content":"hi"}]`,
		`[{"role":"user","content":"q"},{"role":"assistant","content":" ","toolCalls":[{"id":"functions.weather:0","name":"repo_browser.search","arguments":"{\"a\":1}"},{"id":"","name":"","arguments":"not json"}]},{"role":"tool","toolCallId":"functions.weather:0","content":""},{"role":"tool","toolCallId":"","content":"r"}]`,
		`[{"role":"user","content":"q"},{"role":"assistant","refusal":"no","toolCalls":[{"id":"a","name":"f","arguments":"{}"}]},{"role":"tool","toolCallId":"a","content":"x"},{"role":"user","content":"again"},{"role":"assistant","content":"prefill \n"}]`,
		`[{"role":"assistant","content":"\n\n"},{"role":"user","content":"\t"}]`,
		`[{"role":"user","content":"q"},{"role":"assistant","toolCalls":[{"id":"x","name":"` + strings.Repeat("é", 100) + `","arguments":" [1] "}]}]`,
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(7))
	}
	idRe := func(s string) bool {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return false
			}
		}
		return s != ""
	}
	f.Fuzz(func(t *testing.T, data []byte, flags uint8) {
		var in []struct {
			Role       string `json:"role"`
			Content    string `json:"content"`
			Refusal    string `json:"refusal"`
			ToolCallID string `json:"toolCallId"`
			ToolCalls  []struct {
				ID        string `json:"id"`
				Name      string `json:"name"`
				Arguments string `json:"arguments"`
			} `json:"toolCalls"`
		}
		if json.Unmarshal(data, &in) != nil {
			return
		}
		req := fuzzRequest(domain.ProviderAnthropic)
		req.Messages = nil
		for _, m := range in {
			// What the domain lets through (validate, and the turns it
			// stores): these roles, calls on assistant messages only,
			// a tool call id on tool messages only.
			switch r := domain.MessageRole(m.Role); {
			case r != domain.RoleSystem && r != domain.RoleUser && r != domain.RoleAssistant && r != domain.RoleTool,
				len(m.ToolCalls) > 0 && r != domain.RoleAssistant,
				m.ToolCallID != "" && r != domain.RoleTool,
				m.Refusal != "" && r != domain.RoleAssistant:
				return
			}
			lm := domain.LLMMessage{Role: domain.MessageRole(m.Role), Content: m.Content, Refusal: m.Refusal, ToolCallID: m.ToolCallID}
			for _, c := range m.ToolCalls {
				lm.ToolCalls = append(lm.ToolCalls, domain.ToolCall{ID: c.ID, Type: "function", Name: c.Name, Arguments: c.Arguments})
			}
			req.Messages = append(req.Messages, lm)
		}
		if flags&1 == 0 {
			req.Tools = nil
		}
		if flags&2 != 0 {
			req.ResponseFormat = &domain.ResponseFormat{Type: domain.ResponseJSONSchema, Name: "n", Schema: []byte(`{"type":"object"}`), Strict: flags&4 != 0}
		}
		p, _, err := anthropicParams(req)
		if err != nil {
			if domain.KindOf(err) != domain.Invalid {
				t.Fatalf("refusal of kind %v: %v", domain.KindOf(err), err)
			}
			return
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("the params do not encode: %v", err)
		}
		var out struct {
			Messages []struct {
				Role    string `json:"role"`
				Content []struct {
					Type      string          `json:"type"`
					Text      *string         `json:"text"`
					ID        string          `json:"id"`
					Name      string          `json:"name"`
					Input     json.RawMessage `json:"input"`
					ToolUseID string          `json:"tool_use_id"`
					Content   []struct {
						Text string `json:"text"`
					} `json:"content"`
				} `json:"content"`
			} `json:"messages"`
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		}
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("the params' JSON does not decode: %v\n%s", err, b)
		}
		if len(out.Messages) == 0 {
			t.Fatalf("no message: %s", b)
		}
		for i, m := range out.Messages {
			if len(m.Content) == 0 {
				t.Fatalf("message %d has no content: %s", i, b)
			}
			for _, c := range m.Content {
				switch c.Type {
				case "text":
					if c.Text == nil || strings.TrimSpace(*c.Text) == "" {
						t.Fatalf("message %d: a blank text block: %s", i, b)
					}
				case "tool_use":
					if !idRe(c.ID) || !idRe(c.Name) || len(c.Name) > 128 {
						t.Fatalf("message %d: tool_use id %q name %q", i, c.ID, c.Name)
					}
					if in := bytes.TrimSpace(c.Input); len(in) == 0 || in[0] != '{' || !json.Valid(in) {
						t.Fatalf("message %d: tool_use input %s", i, c.Input)
					}
				case "tool_result":
					if !idRe(c.ToolUseID) {
						t.Fatalf("message %d: tool_result id %q", i, c.ToolUseID)
					}
					for _, r := range c.Content {
						if strings.TrimSpace(r.Text) == "" {
							t.Fatalf("message %d: a blank tool_result text: %s", i, b)
						}
					}
				}
			}
		}
		if last := out.Messages[len(out.Messages)-1]; last.Role == "assistant" {
			if c := last.Content[len(last.Content)-1]; c.Type == "text" && strings.TrimRightFunc(*c.Text, unicode.IsSpace) != *c.Text {
				t.Fatalf("a prefill ends with whitespace: %q", *c.Text)
			}
		}
		for _, tl := range out.Tools {
			if !idRe(tl.Name) || len(tl.Name) > 128 {
				t.Fatalf("tool name %q", tl.Name)
			}
		}
	})
}
