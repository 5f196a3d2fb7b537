package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/policy"
	"github.com/parleyhq/parley/secret"
)

// fuzzMCP is Parley's MCP server over SQLite, called in process as an
// admin, with the resources fuzzed arguments name by placeholders: $J
// project, $A AI provider, $C chat, $D document, $V conversation.
type fuzzMCP struct {
	srv   *server.MCPServer
	ctx   context.Context
	ids   map[string]string
	tools []string
}

func newFuzzMCP(tb testing.TB) *fuzzMCP {
	st := dbtest.SQLite(tb)
	authz, err := policy.New()
	must(tb, err)
	kr, err := secret.NewKeyring(make([]byte, 32))
	must(tb, err)
	svcs := domain.NewServices(domain.Deps{Store: st, Authz: authz, Sealer: kr, AllowPrivateUpstreams: true,
		LLM:    llm.New(llm.Config{MaxRetries: -1, AllowPrivate: true}),
		Logger: slog.New(slog.DiscardHandler)})
	adminKey := domain.NewAPIKeySecret()
	bg := context.Background()
	must(tb, svcs.Users.EnsureAdminKey(bg, adminKey))
	p, err := svcs.Users.Authenticate(bg, adminKey)
	must(tb, err)
	ctx := domain.WithPrincipal(bg, p)
	prj, err := svcs.Projects.Create(ctx, domain.ProjectCreate{Name: "Main"})
	must(tb, err)
	prov, err := svcs.Providers.Create(ctx, domain.ProviderCreate{ProjectID: prj.ID, Name: "fake", Type: domain.ProviderOpenAICompatible,
		BaseURL: llmtest.NewServer(tb).URL(), DefaultModel: "fake-model", APIKey: "sk-test-0123456789abcdef"})
	must(tb, err)
	doc, err := svcs.Documents.Create(ctx, domain.DocumentCreate{ProjectID: prj.ID, Name: "facts", Content: "Parley stores conversations.", MimeType: "text/plain"})
	must(tb, err)
	chat, err := svcs.Chats.Create(ctx, domain.ChatCreate{ProjectID: prj.ID, AIProviderID: prov.ID, Name: "c"})
	must(tb, err)
	m := &fuzzMCP{ctx: ctx, ids: map[string]string{"$J": prj.ID, "$A": prov.ID, "$D": doc.ID, "$C": chat.ID}}
	m.srv = newServer(svcs, Options{Logger: slog.New(slog.DiscardHandler)}, server.WithOutputSchemaValidation())
	for name := range m.srv.ListTools() {
		if !strings.HasPrefix(name, "delete-") { // the fuzzed calls keep the resources they name
			m.tools = append(m.tools, name)
		}
	}
	slices.Sort(m.tools)
	out := m.call("create-chat-completion-for-chat", `{"chatId":"$C","messages":[{"role":"user","content":"hi"}]}`)
	res, ok := out.(mcpgo.JSONRPCResponse)
	if !ok {
		tb.Fatalf("seeding a conversation: %#v", out)
	}
	var r struct {
		StructuredContent struct {
			ConversationID string `json:"conversationId"`
		} `json:"structuredContent"`
	}
	b, _ := json.Marshal(res.Result)
	_ = json.Unmarshal(b, &r)
	if m.ids["$V"] = r.StructuredContent.ConversationID; m.ids["$V"] == "" {
		tb.Fatalf("seeding a conversation: %s", b)
	}
	return m
}

func (m *fuzzMCP) fill(s string) string {
	for k, v := range m.ids {
		s = strings.ReplaceAll(s, k, v)
	}
	return s
}

func (m *fuzzMCP) call(tool, args string) mcpgo.JSONRPCMessage {
	name, _ := json.Marshal(tool)
	msg := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%s,"arguments":%s}}`, name, m.fill(args))
	ctx, cancel := context.WithTimeout(m.ctx, 20*time.Second)
	defer cancel()
	return m.srv.HandleMessage(ctx, json.RawMessage(msg))
}

// refusalCodes are the codes a tool's error result may start with for
// what a caller sent.
var refusalCodes = []string{"invalid_request", "not_found", "forbidden", "conflict", "rate_limited", "too_large", "unauthenticated"}

// FuzzMCPToolArgs calls each tool but the deletes with any JSON object
// of arguments: the answer is a result, or an error result whose text
// starts with a refusal's code; never a JSON-RPC internal error, an
// error result of Parley's own fault, or a result that breaks its
// tool's output schema (the server validates them, as the tests' do).
func FuzzMCPToolArgs(f *testing.F) {
	m := newFuzzMCP(f)
	for _, s := range [][2]string{
		{"create-chat-completion", `{"aiProviderId":"$A","messages":[{"role":"user","content":"hi"}],"dataSources":[{"id":"$D"}],"debug":true}`},
		{"create-chat-completion-for-chat", `{"chatId":"$C","conversationId":"$V","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"maxTokens":5,"stop":["a"]}`},
		{"create-chat-completion-for-chat", `{"chatId":"$C","messages":[{"role":"assistant","toolCalls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{"}}]},{"role":"tool","toolCallId":"c","content":"r"}],"tools":[{"type":"function","function":{"name":"f"}}]}`},
		{"create-chat", `{"projectId":"$J","aiProviderId":"$A","name":"n","systemMessage":"s","model":"m"}`},
		{"create-document", `{"projectId":"$J","name":"d","content":"c","metadata":{"n":12345678901234567890}}`},
		{"update-chat", `{"chatId":"$C","name":"x","systemMessage":""}`},
		{"update-document", `{"documentId":"$D","metadata":null}`},
		{"get-usage", `{"projectId":"$J","from":"2026-01-01","to":"2026-02-01T00:00:00+02:00","groupBy":"day","limit":2}`},
		{"get-usage", `{"projectId":"$J","cursor":"dXNhZ2U6"}`},
		{"list-messages", `{"conversationId":"$V","limit":1,"cursor":"x"}`},
		{"list-conversations", `{"chatId":"$C","projectId":"$J"}`},
		{"list-chats", `{"projectId":"$J","limit":1.0}`},
		{"list-models", `{"aiProviderId":"$A"}`},
		{"get-conversation", `{"conversationId":"$V"}`},
		{"get-document", `{"documentId":"$D"}`},
		{"list-projects", `{"limit":1e3}`},
		{"get-project", `{"projectId":"$J","extra":1}`},
		{"list-documents", `{"projectId":"$J","limit":-1}`},
		{"get-ai-provider", `{"aiProviderId":"$A","aiProviderId":"$A"}`},
		{"get-chat", `null`},
	} {
		f.Add(uint8(slices.Index(m.tools, s[0])), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, which uint8, args []byte) {
		tool := m.tools[int(which)%len(m.tools)]
		if !json.Valid([]byte(m.fill(string(args)))) {
			return // mcp-go's parse error, before Parley
		}
		switch out := m.call(tool, string(args)).(type) {
		case mcpgo.JSONRPCError:
			if out.Error.Code == mcpgo.INTERNAL_ERROR {
				t.Fatalf("%s %s: JSON-RPC internal error %q", tool, args, out.Error.Message)
			}
		case mcpgo.JSONRPCResponse:
			res, ok := out.Result.(*mcpgo.CallToolResult)
			if !ok {
				t.Fatalf("%s %s: a result of type %T", tool, args, out.Result)
			}
			if !res.IsError {
				return
			}
			text := ""
			if len(res.Content) > 0 {
				if tc, ok := res.Content[0].(mcpgo.TextContent); ok {
					text = tc.Text
				}
			}
			code, _, _ := strings.Cut(text, ":")
			if !slices.Contains(refusalCodes, code) {
				t.Fatalf("%s %s: error result %q", tool, args, text)
			}
		default:
			t.Fatalf("%s %s: answered %T %#v", tool, args, out, out)
		}
	})
}
