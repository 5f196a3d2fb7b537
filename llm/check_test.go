package llm_test

import (
	"context"
	"testing"

	"github.com/sashabaranov/go-openai"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestCheckRefusesWhatCompleteRefusesUnsent: Check refuses, with the same
// error, exactly the requests Complete refuses before any call upstream,
// and takes the others; the domain runs it before a request counts
// against limits.
func TestCheckRefusesWhatCompleteRefusesUnsent(t *testing.T) {
	user := func(s string) domain.LLMMessage { return domain.LLMMessage{Role: domain.RoleUser, Content: s} }
	system := domain.LLMMessage{Role: domain.RoleSystem, Content: "Be brief."}
	reply := func(s string, calls ...domain.ToolCall) domain.LLMMessage {
		return domain.LLMMessage{Role: domain.RoleAssistant, Content: s, ToolCalls: calls}
	}
	call := func(args string) domain.ToolCall {
		return domain.ToolCall{ID: "call_1", Type: "function", Name: "weather", Arguments: args}
	}
	result := domain.LLMMessage{Role: domain.RoleTool, ToolCallID: "call_1", Content: "18C"}
	for _, tc := range []struct {
		name    string
		typ     domain.ProviderType
		mut     func(*domain.LLMRequest)
		refused bool
	}{
		{"anthropic: a turn", domain.ProviderAnthropic, func(r *domain.LLMRequest) {}, false},
		{"anthropic: only a system message", domain.ProviderAnthropic, func(r *domain.LLMRequest) { r.Messages = []domain.LLMMessage{system} }, true},
		{"anthropic: only blank texts", domain.ProviderAnthropic, func(r *domain.LLMRequest) { r.Messages = []domain.LLMMessage{system, user(" \n"), reply("")} }, true},
		{"anthropic: a blank last message after a reply", domain.ProviderAnthropic, func(r *domain.LLMRequest) {
			r.Messages = []domain.LLMMessage{user("hi"), reply("hello"), user("  ")}
		}, true},
		{"anthropic: a prefill (a reply last)", domain.ProviderAnthropic, func(r *domain.LLMRequest) { r.Messages = []domain.LLMMessage{user("hi"), reply("{")} }, false},
		{"anthropic: a tool loop", domain.ProviderAnthropic, func(r *domain.LLMRequest) {
			r.Messages = []domain.LLMMessage{user("weather?"), reply("", call(`{"city":"Paris"}`)), result}
		}, false},
		{"anthropic: a call's arguments no object, sent as their text", domain.ProviderAnthropic, func(r *domain.LLMRequest) {
			r.Messages = []domain.LLMMessage{user("weather?"), reply("", call(`["Paris"]`)), result}
		}, false},
		{"anthropic: a refused turn left out", domain.ProviderAnthropic, func(r *domain.LLMRequest) {
			r.Messages = []domain.LLMMessage{user("hi"), {Role: domain.RoleAssistant, Refusal: "I can't."}, user("why?")}
		}, false},
		{"anthropic: a refused turn last, left out, after a reply", domain.ProviderAnthropic, func(r *domain.LLMRequest) {
			r.Messages = []domain.LLMMessage{user("hi"), reply("hello"), user("more"), {Role: domain.RoleAssistant, Refusal: "I can't."}}
		}, true},
		{"azure: a deployment name", domain.ProviderAzureOpenAI, func(r *domain.LLMRequest) { r.Model = "gpt-4o.deploy" }, false},
		{"azure: not a deployment name", domain.ProviderAzureOpenAI, func(r *domain.LLMRequest) { r.Model = "gpt 4o/x" }, true},
		{"azure: no baseUrl", domain.ProviderAzureOpenAI, func(r *domain.LLMRequest) { r.Model, r.Endpoint.BaseURL = "d", "" }, true},
		{"openai: a completions-only model", domain.ProviderOpenAI, func(r *domain.LLMRequest) { r.Model = "text-davinci-003" }, true},
		{"openai: a reasoning effort the model does not take", domain.ProviderOpenAI, func(r *domain.LLMRequest) {
			r.Model, r.ReasoningEffort = openai.GPT6Sol, "minimal"
		}, true},
		{"openai: tools the model takes only through the Responses API", domain.ProviderOpenAI, func(r *domain.LLMRequest) {
			r.Model, r.Tools = openai.GPT6Sol, []domain.Tool{{Type: "function", Name: "clock"}}
		}, true},
		{"openai: the same model with tools and no reasoning", domain.ProviderOpenAI, func(r *domain.LLMRequest) {
			r.Model, r.ReasoningEffort, r.Tools = openai.GPT6Sol, "none", []domain.Tool{{Type: "function", Name: "clock"}}
		}, false},
		{"openai-compatible: a completions-only model too (go-openai refuses it whatever the provider)", domain.ProviderOpenAICompatible, func(r *domain.LLMRequest) { r.Model = "text-davinci-003" }, true},
		{"an unknown provider type", "gemini", func(r *domain.LLMRequest) {}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := llmtest.NewServer(t)
			req := request(tc.typ, s)
			tc.mut(&req)
			c := newClient(t)
			checked := c.Check(req)
			_, completed := c.Complete(context.Background(), req, nil)
			if !tc.refused {
				if checked != nil || completed != nil {
					t.Fatalf("Check = %v, Complete = %v; want both to pass", checked, completed)
				}
				return
			}
			if domain.KindOf(checked) != domain.Invalid || domain.MessageOf(checked) != domain.MessageOf(completed) ||
				domain.DetailsOf(checked)["field"] != domain.DetailsOf(completed)["field"] {
				t.Errorf("Check = %v (%v), Complete = %v (%v): want the same refusal", checked, domain.DetailsOf(checked), completed, domain.DetailsOf(completed))
			}
			if n := s.Count(); n != 0 {
				t.Errorf("the fake got %d requests, want none", n)
			}
		})
	}
}
