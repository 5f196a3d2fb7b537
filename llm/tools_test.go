package llm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sashabaranov/go-openai"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/llm/llmtest"
)

const weatherSchema = `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`

// weatherCalls are the tool calls the fake answers with: arguments long
// enough to stream in several pieces, one with none.
var weatherCalls = []llmtest.ToolCall{
	{ID: "call_paris", Name: "weather", Arguments: `{"city":"Paris","unit":"celsius"}`},
	{ID: "call_now", Name: "clock", Arguments: `{}`},
}

func toolRequest(typ domain.ProviderType, s *llmtest.Server) domain.LLMRequest {
	req := request(typ, s, "weather in Paris?")
	req.Tools = []domain.Tool{
		{Type: "function", Name: "weather", Description: "Current weather in a city.", Parameters: []byte(weatherSchema)},
		{Type: "function", Name: "clock"},
	}
	req.ToolChoice = &domain.ToolChoice{Mode: domain.ToolChoiceRequired}
	return req
}

// TestGoOpenAIsOwnRefusals: go-openai refuses some requests before
// sending them, and such a request is the caller's to fix: a 400 naming
// the field, never a 502 of a provider that was never asked.
func TestGoOpenAIsOwnRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, model, field string
		tools              bool
		effort             string
	}{
		{"a completions-only model", "text-davinci-003", "model", false, ""}, // in go-openai's list of models the endpoint refuses
		{"a model that takes tools only through the Responses API", openai.GPT6Sol, "tools", true, ""},
		{"a model that takes no such reasoning effort", openai.GPT6Sol, "reasoningEffort", false, "minimal"},
	} {
		for _, m := range modes() {
			t.Run(tc.name+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				req := request(domain.ProviderOpenAI, s)
				if tc.tools {
					req = toolRequest(domain.ProviderOpenAI, s)
				}
				req.Model, req.ReasoningEffort = tc.model, tc.effort
				_, _, err := run(context.Background(), newClient(t), req, m.stream)
				if got := domain.KindOf(err); got != domain.Invalid {
					t.Fatalf("kind = %v, want invalid (%v)", got, err)
				}
				if got := domain.DetailsOf(err)["field"]; got != tc.field {
					t.Errorf("field = %v, want %s (%s)", got, tc.field, domain.MessageOf(err))
				}
				if !strings.Contains(domain.MessageOf(err), tc.model) {
					t.Errorf("message %q does not name the model", domain.MessageOf(err))
				}
				if n := s.Count(); n != 0 {
					t.Errorf("the fake got %d requests, want none", n)
				}
			})
		}
	}
	// Without tools the same model's request goes.
	s := llmtest.NewServer(t)
	req := request(domain.ProviderOpenAI, s)
	req.Model = openai.GPT6Sol
	if _, _, err := run(context.Background(), newClient(t), req, false); err != nil {
		t.Fatalf("%s without tools: %v", req.Model, err)
	}
}

// runDeltas calls Complete and returns the result and every delta.
func runDeltas(t *testing.T, req domain.LLMRequest, stream bool) (*domain.LLMResult, []domain.Delta) {
	t.Helper()
	var deltas []domain.Delta
	var onDelta func(domain.Delta) error
	if stream {
		onDelta = func(d domain.Delta) error {
			deltas = append(deltas, d)
			return nil
		}
	}
	res, err := newClient(t).Complete(context.Background(), req, onDelta)
	if err != nil {
		t.Fatal(err)
	}
	return res, deltas
}

// reassemble builds tool calls from deltas as an OpenAI client does.
func reassemble(t *testing.T, deltas []domain.Delta) []domain.ToolCall {
	t.Helper()
	var out []domain.ToolCall
	for _, d := range deltas {
		for _, tc := range d.ToolCalls {
			switch {
			case tc.Index == len(out):
				if tc.ID == "" || tc.Name == "" {
					t.Fatalf("the first delta of tool call %d lacks its id or name: %+v", tc.Index, tc)
				}
				out = append(out, domain.ToolCall{ID: tc.ID, Type: "function", Name: tc.Name, Arguments: tc.Arguments})
			case tc.Index < len(out):
				if tc.ID != "" || tc.Name != "" {
					t.Errorf("a later delta of tool call %d repeats its id or name: %+v", tc.Index, tc)
				}
				out[tc.Index].Arguments += tc.Arguments
			default:
				t.Fatalf("tool call delta index %d skips ahead of %d calls", tc.Index, len(out))
			}
		}
	}
	return out
}

func wantCalls() []domain.ToolCall {
	out := make([]domain.ToolCall, len(weatherCalls))
	for i, c := range weatherCalls {
		out[i] = domain.ToolCall{ID: c.ID, Type: "function", Name: c.Name, Arguments: c.Arguments}
	}
	return out
}

func TestToolCallsOpenAIWire(t *testing.T) {
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAI, domain.ProviderOpenAICompatible, domain.ProviderAzureOpenAI} {
		for _, m := range modes() {
			t.Run(string(typ)+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(llmtest.Behavior{ToolCalls: weatherCalls, ArgPiece: 5})
				req := toolRequest(typ, s)
				req.ResponseFormat = &domain.ResponseFormat{Type: domain.ResponseJSONSchema, Name: "answer", Schema: []byte(weatherSchema), Strict: true}
				res, deltas := runDeltas(t, req, m.stream)

				body := s.Last().Body
				tools, _ := json.Marshal(body["tools"])
				wantTools := `[{"function":{"description":"Current weather in a city.","name":"weather","parameters":` + weatherSchema + `},"type":"function"},` +
					`{"function":{"name":"clock","parameters":{"properties":{},"type":"object"}},"type":"function"}]`
				if got := normJSON(t, string(tools)); got != normJSON(t, wantTools) {
					t.Errorf("upstream tools = %s\nwant %s", got, wantTools)
				}
				if got := body["tool_choice"]; got != "required" {
					t.Errorf("upstream tool_choice = %v, want required", got)
				}
				rf, _ := json.Marshal(body["response_format"])
				wantRF := `{"type":"json_schema","json_schema":{"name":"answer","schema":` + weatherSchema + `,"strict":true}}`
				if got := normJSON(t, string(rf)); got != normJSON(t, wantRF) {
					t.Errorf("upstream response_format = %s\nwant %s", got, wantRF)
				}

				if got, want := res.ToolCalls, wantCalls(); !reflect.DeepEqual(got, want) {
					t.Errorf("tool calls = %+v\nwant %+v", got, want)
				}
				if got, want := res.FinishReason, "tool_calls"; got != want {
					t.Errorf("finish reason = %q, want %q", got, want)
				}
				if res.Content != "" {
					t.Errorf("content = %q, want none", res.Content)
				}
				if m.stream {
					if got, want := reassemble(t, deltas), wantCalls(); !reflect.DeepEqual(got, want) {
						t.Errorf("streamed tool calls = %+v\nwant %+v", got, want)
					}
					if len(deltas) < 4 {
						t.Errorf("the arguments came in %d deltas; the fake streams them in pieces", len(deltas))
					}
				}
			})
		}
	}
}

// TestToolCallsUnderOneIndex: Ollama streams every call of a parallel
// batch with index 0, each beginning with its own id. A piece with a new
// id under an index already taken begins a new call: merged by index, the
// calls became one, with the first id and name and the arguments of all
// ({"city":"Paris","unit":"celsius"}{}), which no tool can take.
func TestToolCallsUnderOneIndex(t *testing.T) {
	s := llmtest.NewServer(t)
	s.Enqueue(llmtest.Behavior{ToolCalls: weatherCalls, ArgPiece: 5, ToolIndexZero: true})
	res, deltas := runDeltas(t, toolRequest(domain.ProviderOpenAICompatible, s), true)
	if got, want := res.ToolCalls, wantCalls(); !reflect.DeepEqual(got, want) {
		t.Errorf("tool calls = %+v\nwant %+v", got, want)
	}
	if got, want := reassemble(t, deltas), wantCalls(); !reflect.DeepEqual(got, want) {
		t.Errorf("streamed tool calls = %+v\nwant %+v", got, want)
	}
}

func TestToolChoiceForms(t *testing.T) {
	tests := []struct {
		choice        domain.ToolChoice
		openAI        string
		anthropicJSON string
	}{
		{domain.ToolChoice{Mode: domain.ToolChoiceAuto}, `"auto"`, `{"type":"auto"}`},
		{domain.ToolChoice{Mode: domain.ToolChoiceNone}, `"none"`, `{"type":"none"}`},
		{domain.ToolChoice{Mode: domain.ToolChoiceRequired}, `"required"`, `{"type":"any"}`},
		{domain.ToolChoice{Mode: domain.ToolChoiceFunction, Name: "weather"}, `{"function":{"name":"weather"},"type":"function"}`, `{"name":"weather","type":"tool"}`},
	}
	for _, tt := range tests {
		t.Run(string(tt.choice.Mode), func(t *testing.T) {
			s := llmtest.NewServer(t)
			for _, typ := range []domain.ProviderType{domain.ProviderOpenAICompatible, domain.ProviderAnthropic} {
				req := toolRequest(typ, s)
				req.ToolChoice = &tt.choice
				runDeltas(t, req, false)
				got, _ := json.Marshal(s.Last().Body["tool_choice"])
				want := tt.openAI
				if typ == domain.ProviderAnthropic {
					want = tt.anthropicJSON
				}
				if normJSON(t, string(got)) != normJSON(t, want) {
					t.Errorf("%s tool_choice = %s, want %s", typ, got, want)
				}
			}
		})
	}
}

func TestToolCallsAnthropic(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			s.Enqueue(llmtest.Behavior{Reply: "Let me check.", ToolCalls: weatherCalls, ArgPiece: 4})
			req := toolRequest(domain.ProviderAnthropic, s)
			req.ResponseFormat = &domain.ResponseFormat{Type: domain.ResponseJSONObject}
			res, deltas := runDeltas(t, req, m.stream)

			body := s.Last().Body
			tools, _ := json.Marshal(body["tools"])
			wantTools := `[{"name":"weather","description":"Current weather in a city.","input_schema":` + weatherSchema + `},` +
				`{"name":"clock","input_schema":{"type":"object","properties":{}}}]`
			if got := normJSON(t, string(tools)); got != normJSON(t, wantTools) {
				t.Errorf("upstream tools = %s\nwant %s", got, wantTools)
			}
			if _, ok := body["response_format"]; ok {
				t.Error("Anthropic was sent a response_format, which it does not have")
			}
			if sys := s.Last().Messages[0]; sys.Role != "system" || !strings.Contains(sys.Content, "Respond with only a JSON object") {
				t.Errorf("system = %+v, want the JSON instruction", sys)
			}

			if got, want := res.ToolCalls, wantCalls(); !reflect.DeepEqual(got, want) {
				t.Errorf("tool calls = %+v\nwant %+v", got, want)
			}
			if res.FinishReason != "tool_calls" || res.Content != "Let me check." {
				t.Errorf("finish reason %q, content %q", res.FinishReason, res.Content)
			}
			if m.stream {
				if got, want := reassemble(t, deltas), wantCalls(); !reflect.DeepEqual(got, want) {
					t.Errorf("streamed tool calls = %+v\nwant %+v", got, want)
				}
				var text strings.Builder
				for _, d := range deltas {
					text.WriteString(d.Content)
				}
				if text.String() != "Let me check." {
					t.Errorf("streamed text = %q", text.String())
				}
			}
		})
	}
}

func TestToolResultsAnthropic(t *testing.T) {
	s := llmtest.NewServer(t)
	req := request(domain.ProviderAnthropic, s)
	req.Messages = []domain.LLMMessage{
		{Role: domain.RoleSystem, Content: "Be brief."},
		{Role: domain.RoleUser, Content: "weather in Paris, and the time?"},
		{Role: domain.RoleAssistant, ToolCalls: wantCalls()},
		{Role: domain.RoleTool, ToolCallID: "call_paris", Content: "18C"},
		{Role: domain.RoleTool, ToolCallID: "call_now", Content: "noon"},
		{Role: domain.RoleUser, Content: "and tomorrow?"},
	}
	req.ResponseFormat = &domain.ResponseFormat{Type: domain.ResponseJSONSchema, Name: "forecast", Description: "a forecast", Schema: []byte(weatherSchema)}
	runDeltas(t, req, false)

	got, _ := json.Marshal(s.Last().Body["messages"])
	want := `[
		{"role":"user","content":[{"type":"text","text":"weather in Paris, and the time?"}]},
		{"role":"assistant","content":[
			{"type":"tool_use","id":"call_paris","name":"weather","input":{"city":"Paris","unit":"celsius"}},
			{"type":"tool_use","id":"call_now","name":"clock","input":{}}]},
		{"role":"user","content":[
			{"type":"tool_result","tool_use_id":"call_paris","content":[{"type":"text","text":"18C"}]},
			{"type":"tool_result","tool_use_id":"call_now","content":[{"type":"text","text":"noon"}]}]},
		{"role":"user","content":[{"type":"text","text":"and tomorrow?"}]}]`
	if normJSON(t, string(got)) != normJSON(t, want) {
		t.Errorf("upstream messages = %s\nwant %s", got, want)
	}
	// The request defines no tools, which Anthropic requires of one with
	// tool blocks: the history's are defined by name, none to be called.
	tools, _ := json.Marshal(s.Last().Body["tools"])
	wantTools := `[{"name":"weather","description":"Called earlier in this conversation; not available now.","input_schema":{"type":"object"}},
		{"name":"clock","description":"Called earlier in this conversation; not available now.","input_schema":{"type":"object"}}]`
	if normJSON(t, string(tools)) != normJSON(t, wantTools) {
		t.Errorf("upstream tools = %s\nwant %s", tools, wantTools)
	}
	if choice, _ := json.Marshal(s.Last().Body["tool_choice"]); string(choice) != `{"type":"none"}` {
		t.Errorf("tool_choice = %s, want none", choice)
	}
	sys := s.Last().Messages[0].Content
	if !strings.HasPrefix(sys, "Be brief.") || !strings.Contains(sys, "conforms to the JSON schema") || !strings.Contains(sys, weatherSchema) {
		t.Errorf("system = %q, want the schema instruction after the system message", sys)
	}

	// Another provider's ids (Kimi K2's) go in Anthropic's pattern, the
	// call's and its result's alike, and two that differ stay apart.
	req.Messages[2].ToolCalls = []domain.ToolCall{{ID: "functions.weather:0", Type: "function", Name: "weather", Arguments: "{}"},
		{ID: "functions.weather:1", Type: "function", Name: "weather", Arguments: "{}"}}
	req.Messages[3].ToolCallID, req.Messages[4].ToolCallID = "functions.weather:0", "functions.weather:1"
	runDeltas(t, req, false)
	msgs := s.Last().Body["messages"].([]any)
	use := msgs[1].(map[string]any)["content"].([]any)
	results := msgs[2].(map[string]any)["content"].([]any)
	var ids []string
	for i := range 2 {
		id, rid := use[i].(map[string]any)["id"].(string), results[i].(map[string]any)["tool_use_id"].(string)
		if id != rid || !strings.HasPrefix(id, "functions_weather_"+strconv.Itoa(i)+"_") || slices.Contains(ids, id) {
			t.Errorf("call %d: tool_use id %q, tool_use_id %q", i, id, rid)
		}
		ids = append(ids, id)
	}

	// Names another provider's model called that Anthropic does not take
	// (open models' "repo_browser.search", none, one past 128 bytes) go
	// as ids do, the tool_use block's and the tool's alike.
	req.Tools, req.ToolChoice, req.ResponseFormat = nil, nil, nil
	long := strings.Repeat("n", 200)
	req.Messages[2].ToolCalls = []domain.ToolCall{{ID: "call_a", Type: "function", Name: "repo_browser.search", Arguments: "{}"},
		{ID: "call_b", Type: "function", Name: "", Arguments: "{}"}}
	req.Messages[3].ToolCallID, req.Messages[4].ToolCallID = "call_a", "call_b"
	runDeltas(t, req, false)
	req.Messages[2].ToolCalls[1].Name = long
	runDeltas(t, req, false)
	var declared []string
	for _, tl := range s.Last().Body["tools"].([]any) {
		declared = append(declared, tl.(map[string]any)["name"].(string))
	}
	use = s.Last().Body["messages"].([]any)[1].(map[string]any)["content"].([]any)
	for i := range 2 {
		if name := use[i].(map[string]any)["name"].(string); !slices.Contains(declared, name) || len(name) > 128 {
			t.Errorf("call %d went as %q, the tools declared %q", i, name, declared)
		}
	}

	// Arguments that are no JSON object (a model's malformed call, stored as
	// it came) go as their text in an object, which Anthropic requires of a
	// tool_use input: refused, the conversation could never go on there.
	for _, args := range []string{`{"city": "Par`, "not json", "[1, 2]", "null", `"Paris"`} {
		req.Messages[2].ToolCalls[0].Arguments = args
		if _, err := newClient(t).Complete(context.Background(), req, nil); err != nil {
			t.Fatalf("arguments %q: %v", args, err)
		}
		use := s.Last().Body["messages"].([]any)[1].(map[string]any)["content"].([]any)[0].(map[string]any)
		if got, want := use["input"], map[string]any{"_unparsed_arguments": args}; !reflect.DeepEqual(got, want) {
			t.Errorf("arguments %q went as input %v; want %v", args, got, want)
		}
	}
}

func TestToolResultsOpenAIWire(t *testing.T) {
	s := llmtest.NewServer(t)
	req := request(domain.ProviderOpenAICompatible, s)
	req.Messages = []domain.LLMMessage{
		{Role: domain.RoleUser, Content: "weather?"},
		{Role: domain.RoleAssistant, Content: "Checking.", ToolCalls: wantCalls()[:1]},
		{Role: domain.RoleTool, ToolCallID: "call_paris", Content: "18C"},
	}
	runDeltas(t, req, false)
	got, _ := json.Marshal(s.Last().Body["messages"])
	want := `[{"role":"user","content":"weather?"},
		{"role":"assistant","content":"Checking.","tool_calls":[{"id":"call_paris","type":"function","function":{"name":"weather","arguments":"{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]},
		{"role":"tool","content":"18C","tool_call_id":"call_paris"}]`
	if normJSON(t, string(got)) != normJSON(t, want) {
		t.Errorf("upstream messages = %s\nwant %s", got, want)
	}
}

// TestToolCallIDsForMistral: Mistral refuses tool call ids that are not
// nine letters and digits, as those of a history another provider answered
// are: such a request is sent again once with each id made nine (a call
// and its result alike, two calls apart), and answered, JSON or stream.
func TestToolCallIDsForMistral(t *testing.T) {
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			req := request(domain.ProviderOpenAICompatible, s)
			calls := []domain.ToolCall{{ID: "call_paris", Type: "function", Name: "weather", Arguments: `{}`},
				{ID: "toolu_01A", Type: "function", Name: "weather", Arguments: `{}`}, {ID: "abc123XYZ", Type: "function", Name: "weather", Arguments: `{}`}}
			req.Messages = []domain.LLMMessage{
				{Role: domain.RoleUser, Content: "weather?"},
				{Role: domain.RoleAssistant, ToolCalls: calls},
				{Role: domain.RoleTool, ToolCallID: "call_paris", Content: "18C"},
				{Role: domain.RoleTool, ToolCallID: "toolu_01A", Content: "9C"},
				{Role: domain.RoleTool, ToolCallID: "abc123XYZ", Content: "20C"},
			}
			before := s.Count()
			s.Enqueue(llmtest.Behavior{NineCharIDs: true}, llmtest.Behavior{NineCharIDs: true})
			if _, _, err := run(context.Background(), newClient(t), req, m.stream); err != nil {
				t.Fatalf("%v; want it answered once the ids are nine", err)
			}
			if n := s.Count() - before; n != 2 {
				t.Errorf("%d requests upstream, want 2: refused, then sent again", n)
			}
			sent := s.Last().Body["messages"].([]any)
			var callIDs []string
			for _, c := range sent[1].(map[string]any)["tool_calls"].([]any) {
				callIDs = append(callIDs, c.(map[string]any)["id"].(string))
			}
			nine := regexp.MustCompile(`^[a-zA-Z0-9]{9}$`)
			for i, id := range callIDs {
				if !nine.MatchString(id) || sent[2+i].(map[string]any)["tool_call_id"] != id {
					t.Errorf("call %d went as %q, its result as %v; want the same nine letters and digits", i, id, sent[2+i].(map[string]any)["tool_call_id"])
				}
			}
			if len(callIDs) != 3 || callIDs[0] == callIDs[1] || callIDs[2] != "abc123XYZ" {
				t.Errorf("ids %q; want two apart, and one already nine kept", callIDs)
			}
			if req.Messages[1].ToolCalls[0].ID != "call_paris" {
				t.Errorf("the request's own ids changed: %q", req.Messages[1].ToolCalls[0].ID)
			}
		})
	}
}

// normJSON re-encodes a JSON text with sorted keys and no spaces.
func normJSON(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, s)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAnthropicBlankText: Anthropic refuses a text that is only
// whitespace ("text content blocks must contain non-whitespace text") as
// it refuses an empty one, where OpenAI-wire providers take both. A reply
// of only whitespace (a model's "\n\n" before its tool calls) is stored,
// and sent back with every continuation of its conversation, so it must
// not break them: such text goes as none, and a message left with nothing
// is left out, as an empty one is. Debug shows what was sent.
func TestAnthropicBlankText(t *testing.T) {
	s := llmtest.NewServer(t)
	req := request(domain.ProviderAnthropic, s)
	req.Messages = []domain.LLMMessage{
		{Role: domain.RoleSystem, Content: " \n"},
		{Role: domain.RoleUser, Content: "weather in Paris?"},
		{Role: domain.RoleAssistant, Content: "\n\n", ToolCalls: wantCalls()[:1]},
		{Role: domain.RoleTool, ToolCallID: "call_paris", Content: "\t"},
		{Role: domain.RoleAssistant, Content: "\n"},
		{Role: domain.RoleUser, Content: " "},
		{Role: domain.RoleUser, Content: "and tomorrow?"},
	}
	res, err := newClient(t).Complete(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := s.Last().Body
	if _, ok := body["system"]; ok {
		t.Errorf("system = %v, want none", body["system"])
	}
	got, _ := json.Marshal(body["messages"])
	want := `[
		{"role":"user","content":[{"type":"text","text":"weather in Paris?"}]},
		{"role":"assistant","content":[{"type":"tool_use","id":"call_paris","name":"weather","input":{"city":"Paris","unit":"celsius"}}]},
		{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_paris"}]},
		{"role":"user","content":[{"type":"text","text":"and tomorrow?"}]}]`
	if normJSON(t, string(got)) != normJSON(t, want) {
		t.Errorf("upstream messages = %s\nwant %s", got, want)
	}
	wantSent := []domain.LLMMessage{
		{Role: domain.RoleUser, Content: "weather in Paris?"},
		{Role: domain.RoleAssistant, ToolCalls: wantCalls()[:1]},
		{Role: domain.RoleTool, ToolCallID: "call_paris"},
		{Role: domain.RoleUser, Content: "and tomorrow?"},
	}
	if !reflect.DeepEqual(res.Sent, wantSent) {
		t.Errorf("Sent = %+v\nwant %+v", res.Sent, wantSent)
	}
}

// TestAnthropicBlankLastMessage: a request whose last message is blank
// would, with that message left out, end with the assistant's reply,
// which Anthropic takes for a prefill to continue (or, on models without
// prefill, refuses): a 400 before the call. A request that ends with an
// assistant message of its own still goes, as the prefill it asks for.
func TestAnthropicBlankLastMessage(t *testing.T) {
	s := llmtest.NewServer(t)
	for _, last := range []string{"", " \n\n"} {
		req := request(domain.ProviderAnthropic, s)
		req.Messages = []domain.LLMMessage{
			{Role: domain.RoleUser, Content: "Hi."},
			{Role: domain.RoleAssistant, Content: "Hello! How can I help?"},
			{Role: domain.RoleUser, Content: last},
		}
		_, err := newClient(t).Complete(context.Background(), req, nil)
		if domain.KindOf(err) != domain.Invalid || !strings.Contains(domain.MessageOf(err), "the last message has no text") {
			t.Errorf("last message %q: err = %v, want a 400 saying it has no text", last, err)
		}
	}
	if n := s.Count(); n != 0 {
		t.Errorf("%d upstream requests, want none", n)
	}
	req := request(domain.ProviderAnthropic, s)
	req.Messages = []domain.LLMMessage{{Role: domain.RoleUser, Content: "Count to three."}, {Role: domain.RoleAssistant, Content: "One,"}}
	if _, err := newClient(t).Complete(context.Background(), req, nil); err != nil || s.Count() != 1 {
		t.Errorf("a prefill: err %v after %d requests, want it sent", err, s.Count())
	}
	// A prefill that ends with whitespace, which Anthropic refuses there,
	// goes without it.
	req.Messages[1].Content = "The colour is \n"
	if _, err := newClient(t).Complete(context.Background(), req, nil); err != nil {
		t.Fatalf("a prefill ending with whitespace: %v", err)
	}
	if got := s.Last().Messages[1].Content; got != "The colour is" {
		t.Errorf("the prefill went as %q, want it without its trailing whitespace", got)
	}
}

// TestStrictSchemaAnthropic: a strict JSON schema goes to Anthropic as its
// structured output (output_config.format), which the API enforces, and
// not as words in the system prompt; a schema that is not strict, and JSON
// mode, are still asked for in the system prompt (TestToolResultsAnthropic),
// with no output_config.
func TestStrictSchemaAnthropic(t *testing.T) {
	s := llmtest.NewServer(t)
	for _, stream := range []bool{false, true} {
		req := request(domain.ProviderAnthropic, s)
		req.Messages = append([]domain.LLMMessage{{Role: domain.RoleSystem, Content: "Be brief."}}, req.Messages...)
		req.ResponseFormat = &domain.ResponseFormat{Type: domain.ResponseJSONSchema, Name: "forecast", Schema: []byte(weatherSchema), Strict: true}
		runDeltas(t, req, stream)
		got, _ := json.Marshal(s.Last().Body["output_config"])
		if want := `{"format":{"schema":` + weatherSchema + `,"type":"json_schema"}}`; normJSON(t, string(got)) != normJSON(t, want) {
			t.Errorf("stream=%v: output_config = %s, want %s", stream, got, want)
		}
		if sys := s.Last().Messages[0].Content; sys != "Be brief." {
			t.Errorf("stream=%v: system = %q, want the request's alone", stream, sys)
		}

		for _, f := range []*domain.ResponseFormat{
			{Type: domain.ResponseJSONSchema, Name: "forecast", Schema: []byte(weatherSchema)},
			{Type: domain.ResponseJSONObject},
		} {
			req.ResponseFormat = f
			runDeltas(t, req, stream)
			if oc, ok := s.Last().Body["output_config"]; ok {
				t.Errorf("stream=%v, %s strict=%v: output_config = %v, want none", stream, f.Type, f.Strict, oc)
			}
			if sys := s.Last().Messages[0].Content; !strings.Contains(sys, "Respond with only a JSON object") {
				t.Errorf("stream=%v, %s: system = %q, want the JSON instruction", stream, f.Type, sys)
			}
		}
	}
}

// TestAnthropicToolCallCutBeforeItsInput: Anthropic streams a tool_use
// block's input a whole property at a time, so a call cut off before its
// first property (by max_tokens, the context window or a refusal) ends
// with no input at all, as a call of a tool without parameters does. Only
// the stop reason tells them apart: a cut call keeps empty arguments
// (which the domain leaves out of the stored turn, as it does any cut
// call), where a finished one gets {}. A whole reply shows the cut call so
// too.
func TestAnthropicToolCallCutBeforeItsInput(t *testing.T) {
	for _, tc := range []struct {
		stop, finish, want string
	}{
		{"tool_calls", "tool_calls", "{}"},
		{"length", "length", ""}, // the fake's max_tokens
		{"model_context_window_exceeded", "length", ""},
		{"refusal", "content_filter", ""},
	} {
		for _, m := range modes() {
			t.Run(tc.stop+"/"+m.name, func(t *testing.T) {
				s := llmtest.NewServer(t)
				s.Enqueue(llmtest.Behavior{FinishReason: tc.stop, ToolCalls: []llmtest.ToolCall{
					{ID: "toolu_clock", Name: "clock"}, {ID: "toolu_weather", Name: "weather"}}})
				res, deltas := runDeltas(t, toolRequest(domain.ProviderAnthropic, s), m.stream)
				want := []domain.ToolCall{
					{ID: "toolu_clock", Type: "function", Name: "clock", Arguments: "{}"},
					{ID: "toolu_weather", Type: "function", Name: "weather", Arguments: tc.want},
				}
				if res.FinishReason != tc.finish || !reflect.DeepEqual(res.ToolCalls, want) {
					t.Errorf("finish %q, tool calls %+v; want %q, %+v", res.FinishReason, res.ToolCalls, tc.finish, want)
				}
				if m.stream {
					if got := reassemble(t, deltas); !reflect.DeepEqual(got, want) {
						t.Errorf("streamed tool calls = %+v\nwant %+v", got, want)
					}
				}
			})
		}
	}
}

// TestToolCallPiecesWithTheirOwnIDs: some OpenAI-wire servers give each
// piece of a streamed call an id of its own, or repeat the id on pieces
// without an index; the pieces are still one call, under the id it began
// with. Only a piece that names a function begins another call at an
// index already taken (Ollama's batches, TestToolCallsUnderOneIndex).
func TestToolCallPiecesWithTheirOwnIDs(t *testing.T) {
	chunk := func(call string) string {
		return `data: {"model":"m","choices":[{"index":0,"delta":{"tool_calls":[` + call + `]},"finish_reason":null}]}`
	}
	want := []domain.ToolCall{{ID: "call_first", Type: "function", Name: "weather", Arguments: `{"city":"Oslo"}`}}
	for name, pieces := range map[string][]string{
		"a new id per piece": {
			chunk(`{"index":0,"id":"call_first","type":"function","function":{"name":"weather","arguments":""}}`),
			chunk(`{"index":0,"id":"call_second","type":"function","function":{"arguments":"{\"city\":"}}`),
			chunk(`{"index":0,"id":"call_third","function":{"arguments":"\"Oslo\"}"}}`),
		},
		"the id repeated without an index": {
			chunk(`{"id":"call_first","type":"function","function":{"name":"weather","arguments":"{\"city\":"}}`),
			chunk(`{"id":"call_first","function":{"arguments":"\"Oslo\"}"}}`),
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			body := strings.Join(append(pieces,
				`data: {"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`, `data: [DONE]`), "\n\n") + "\n\n"
			s.Enqueue(llmtest.Behavior{Body: body, Header: http.Header{"Content-Type": {"text/event-stream"}}})
			res, deltas := runDeltas(t, toolRequest(domain.ProviderOpenAICompatible, s), true)
			if !reflect.DeepEqual(res.ToolCalls, want) {
				t.Errorf("tool calls = %+v\nwant %+v", res.ToolCalls, want)
			}
			if got := reassemble(t, deltas); !reflect.DeepEqual(got, want) {
				t.Errorf("streamed tool calls = %+v\nwant %+v", got, want)
			}
		})
	}
}

// geminiSignature is extra_content as Gemini's OpenAI-compatible API puts
// a thought signature beside a tool call.
const geminiSignature = `{"google":{"thought_signature":"CiQBVKhc7sig"}}`

// TestToolCallExtraContent: Gemini 3 sends each tool call's thought
// signature as the call's extra_content and refuses (4xx) a continuation
// whose assistant message comes back without it. A reply's calls keep it,
// whole or streamed (in the call's first piece), and an assistant
// message's calls send it back to an openai-compatible provider, as it
// came; not to OpenAI or Azure, whose API knows no such field.
func TestToolCallExtraContent(t *testing.T) {
	for _, m := range modes() {
		t.Run("reply/"+m.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			// One past what a caller may send back (domain.MaxExtraContent)
			// is dropped: kept, it would make the conversation one no
			// stateless caller could continue. (A stream's line cap, 1 MiB,
			// refuses such a chunk before.)
			calls := []llmtest.ToolCall{
				{ID: "function-call-1", Name: "weather", Arguments: `{"city":"Oslo"}`, Extra: geminiSignature},
				{ID: "function-call-2", Name: "clock", Arguments: `{}`}}
			if !m.stream {
				calls = append(calls, llmtest.ToolCall{ID: "function-call-3", Name: "clock", Arguments: `{}`,
					Extra: `{"google":{"thought_signature":"` + strings.Repeat("A", domain.MaxExtraContent) + `"}}`})
			}
			s.Enqueue(llmtest.Behavior{ToolCalls: calls})
			res, deltas := runDeltas(t, toolRequest(domain.ProviderOpenAICompatible, s), m.stream)
			if len(res.ToolCalls) != len(calls) || string(res.ToolCalls[0].ExtraContent) != geminiSignature ||
				slices.ContainsFunc(res.ToolCalls[1:], func(c domain.ToolCall) bool { return c.ExtraContent != nil }) {
				t.Fatalf("tool calls = %.300v; want the first with extra_content %s, the others with none", res.ToolCalls, geminiSignature)
			}
			if m.stream {
				var got []string
				for _, d := range deltas {
					for _, tc := range d.ToolCalls {
						if tc.ExtraContent != nil {
							got = append(got, fmt.Sprintf("%d %s %s", tc.Index, tc.ID, tc.ExtraContent))
						}
					}
				}
				if want := "0 function-call-1 " + geminiSignature; len(got) != 1 || got[0] != want {
					t.Errorf("deltas with extra_content: %q; want [%q]", got, want)
				}
			}
		})
	}
	for _, typ := range []domain.ProviderType{domain.ProviderOpenAICompatible, domain.ProviderOpenAI, domain.ProviderAzureOpenAI} {
		t.Run("sent back/"+string(typ), func(t *testing.T) {
			s := llmtest.NewServer(t)
			req := toolRequest(typ, s)
			req.Messages = append(req.Messages,
				domain.LLMMessage{Role: domain.RoleAssistant, ToolCalls: []domain.ToolCall{
					{ID: "function-call-1", Type: "function", Name: "weather", Arguments: `{"city":"Oslo"}`, ExtraContent: []byte(geminiSignature)}}},
				domain.LLMMessage{Role: domain.RoleTool, ToolCallID: "function-call-1", Content: "sunny"})
			runDeltas(t, req, false)
			msgs := s.Last().Messages
			calls := msgs[len(msgs)-2].ToolCalls
			want := ""
			if typ == domain.ProviderOpenAICompatible {
				want = geminiSignature
			}
			if len(calls) != 1 || calls[0].Extra != want || calls[0].Arguments != `{"city":"Oslo"}` {
				t.Errorf("the assistant message went up with tool calls %+v; want extra_content %q", calls, want)
			}
		})
	}
}

// TestAnthropicInputSchemaType: a tool's parameters without "type", which
// OpenAI takes, reach Anthropic, which requires it, as an object's schema,
// and a schema that says its type goes as sent.
func TestAnthropicInputSchemaType(t *testing.T) {
	tests := []struct{ params, want string }{
		{`{}`, `{"type":"object","properties":{}}`},
		{` { } `, `{"type":"object","properties":{}}`},
		{`{"properties":{"city":{"type":"string"}},"required":["city"]}`,
			`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`},
		{`{"type":"object","properties":{"n":{"type":"integer"}}}`, `{"type":"object","properties":{"n":{"type":"integer"}}}`},
		{`{"type":null,"properties":{}}`, `{"type":"object","properties":{}}`},
	}
	for _, tt := range tests {
		s := llmtest.NewServer(t)
		req := request(domain.ProviderAnthropic, s)
		req.Tools = []domain.Tool{{Type: "function", Name: "get", Parameters: []byte(tt.params)}}
		if _, _, err := run(context.Background(), newClient(t), req, false); err != nil {
			t.Fatalf("parameters %s: %v", tt.params, err)
		}
		tools, _ := s.Last().Body["tools"].([]any)
		got, _ := json.Marshal(tools[0].(map[string]any)["input_schema"])
		if normJSON(t, string(got)) != normJSON(t, tt.want) {
			t.Errorf("parameters %s went as %s, want %s", tt.params, got, tt.want)
		}
	}
}
