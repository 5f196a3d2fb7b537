package mcp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/policies"
	"github.com/parleyhq/parley/policy"
	"github.com/parleyhq/parley/store"
)

type obj = map[string]any

func userMsg(content string) []obj { return []obj{{"role": "user", "content": content}} }

// TestTools drives every tool through a real client session over
// streamable HTTP, on SQLite and PostgreSQL.
func TestTools(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		editor := e.connect(overHTTP, "editor", Options{})
		admin := e.connect(overHTTP, "admin", Options{})

		t.Run("list-projects", func(t *testing.T) {
			var l listOut[projectOut]
			editor.ok(t, "list-projects", obj{}, &l)
			if len(l.Data) != 1 || l.Data[0].ID != e.project.ID || l.NextCursor != nil {
				t.Fatalf("editor sees %+v, want only %s", l, e.project.ID)
			}
			var p1, p2 listOut[projectOut]
			admin.ok(t, "list-projects", obj{"limit": 1}, &p1)
			if len(p1.Data) != 1 || p1.NextCursor == nil {
				t.Fatalf("first page %+v: want 1 project and a cursor", p1)
			}
			admin.ok(t, "list-projects", obj{"limit": 1, "cursor": *p1.NextCursor}, &p2)
			if len(p2.Data) != 1 || p2.Data[0].ID == p1.Data[0].ID {
				t.Fatalf("second page %+v after %+v", p2, p1)
			}
		})

		t.Run("get-project", func(t *testing.T) {
			var p projectOut
			res := editor.ok(t, "get-project", obj{"projectId": e.project.ID}, &p)
			if p.ID != e.project.ID || p.Name != "Main" || p.Description != "the project under test" {
				t.Fatalf("got %+v", p)
			}
			if _, err := time.Parse(time.RFC3339, p.CreatedAt); err != nil || !strings.HasSuffix(p.CreatedAt, "Z") {
				t.Errorf("createdAt %q is not ISO 8601 UTC", p.CreatedAt)
			}
			if !strings.Contains(text(res), e.project.ID) {
				t.Errorf("text %q does not name the project", text(res))
			}
		})

		t.Run("list-ai-providers and get-ai-provider never show a key", func(t *testing.T) {
			var l listOut[providerOut]
			res := editor.ok(t, "list-ai-providers", obj{"projectId": e.project.ID}, &l)
			if len(l.Data) != 1 || l.Data[0].ID != e.provider.ID {
				t.Fatalf("got %+v", l)
			}
			var p providerOut
			res2 := editor.ok(t, "get-ai-provider", obj{"aiProviderId": e.provider.ID}, &p)
			if !p.HasAPIKey || p.APIKeyHint != "sk-…cdef" || p.Type != "openai-compatible" || p.BaseURL != e.upstream.URL() || p.DefaultModel != "fake-model" {
				t.Fatalf("got %+v", p)
			}
			for _, r := range []*mcpgo.CallToolResult{res, res2} {
				b, _ := json.Marshal(r)
				if strings.Contains(string(b), "0123456789abcdef") || strings.Contains(string(b), `"apiKey"`) {
					t.Fatalf("a result carries the key: %s", b)
				}
			}
		})

		var chat chatOut
		t.Run("create-chat, get-chat, list-chats, update-chat", func(t *testing.T) {
			editor.ok(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID, "name": "Helper",
				"systemMessage": "You are terse."}, &chat)
			if !strings.HasPrefix(chat.ID, "cht_") || chat.ProjectID != e.project.ID || chat.AIProviderID != e.provider.ID ||
				chat.Name != "Helper" || chat.SystemMessage != "You are terse." || chat.Model != "" {
				t.Fatalf("created %+v", chat)
			}
			var got chatOut
			editor.ok(t, "get-chat", obj{"chatId": chat.ID}, &got)
			if got != chat {
				t.Fatalf("get-chat = %+v, want %+v", got, chat)
			}
			var l listOut[chatOut]
			editor.ok(t, "list-chats", obj{"projectId": e.project.ID}, &l)
			if len(l.Data) != 1 || l.Data[0].ID != chat.ID {
				t.Fatalf("list-chats = %+v", l)
			}
			var up chatOut
			editor.ok(t, "update-chat", obj{"chatId": chat.ID, "name": "Renamed"}, &up)
			if up.Name != "Renamed" || up.SystemMessage != chat.SystemMessage {
				t.Fatalf("update-chat = %+v", up)
			}
		})

		var doc documentOut
		t.Run("list-models", func(t *testing.T) {
			var byProvider, byChat modelsOut
			res := editor.ok(t, "list-models", obj{"aiProviderId": e.provider.ID}, &byProvider)
			var ids []string
			for _, m := range byProvider.Models {
				ids = append(ids, m.ID)
				if m.OwnedBy != "llmtest" || !strings.HasPrefix(m.CreatedAt, "2024-01-") {
					t.Errorf("model %+v: want owned by llmtest, made in January 2024", m)
				}
			}
			if !slices.Equal(ids, llmtest.DefaultModels) || !e.upstream.Last().ListModels {
				t.Fatalf("models %q, want the upstream's list %q", ids, llmtest.DefaultModels)
			}
			if got := text(res); !strings.HasPrefix(got, "2 models\n- fake-small (owned by llmtest)") {
				t.Errorf("text %q", got)
			}
			editor.ok(t, "list-models", obj{"chatId": chat.ID}, &byChat)
			if !reflect.DeepEqual(byChat, byProvider) {
				t.Errorf("a chat's %+v, its provider's %+v", byChat, byProvider)
			}
			n := e.upstream.Count()
			if got := editor.fails(t, "list-models", obj{}, "invalid_request"); !strings.Contains(got, "or chatId") {
				t.Errorf("list-models without a provider or chat: %q, want both ways named", got)
			}
			editor.fails(t, "list-models", obj{"aiProviderId": e.provider.ID, "chatId": chat.ID}, "invalid_request")
			e.connect(overHTTP, "outsider", Options{}).fails(t, "list-models", obj{"aiProviderId": e.provider.ID}, "not_found")
			if e.upstream.Count() != n {
				t.Error("a refused list reached the upstream")
			}
		})
		t.Run("create-document, get-document, list-documents", func(t *testing.T) {
			editor.ok(t, "create-document", obj{"projectId": e.project.ID, "name": "notes", "content": "The sky is green here.",
				"metadata": obj{"source": "test"}}, &doc)
			if !strings.HasPrefix(doc.ID, "doc_") || doc.MimeType != "text/plain" || doc.Metadata["source"] != "test" {
				t.Fatalf("created %+v", doc)
			}
			var got documentOut
			res := editor.ok(t, "get-document", obj{"documentId": doc.ID}, &got)
			if got.Content != "The sky is green here." || !strings.Contains(text(res), got.Content) {
				t.Fatalf("get-document = %+v / %q", got, text(res))
			}
			if got.Bytes != len(got.Content) || doc.Bytes != got.Bytes {
				t.Fatalf("get-document bytes = %d, create-document's %d; want %d", got.Bytes, doc.Bytes, len(got.Content))
			}
			// A list leaves the content out, in structured content and
			// text alike (a page could hold 400 MiB), and gives its size.
			var l listOut[obj]
			res = editor.ok(t, "list-documents", obj{"projectId": e.project.ID}, &l)
			if len(l.Data) != 2 {
				t.Fatalf("list-documents = %+v, want 2", l)
			}
			sizes := map[any]any{doc.ID: float64(len("The sky is green here.")), e.document.ID: float64(len(e.document.Content))}
			for _, d := range l.Data {
				if _, ok := d["content"]; ok || d["bytes"] != sizes[d["id"]] {
					t.Errorf("list-documents gives %v; want no content and bytes %v", d, sizes[d["id"]])
				}
			}
			if strings.Contains(text(res), got.Content) || !strings.Contains(text(res), doc.ID+` "notes" (text/plain, 22 bytes)`) {
				t.Errorf("list-documents text %q: want each document's line without its content", text(res))
			}
		})

		var first completionOut
		t.Run("create-chat-completion-for-chat", func(t *testing.T) {
			e.upstream.reply("Hello", ", ", "world", "!")
			res := editor.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("Hi")}, &first)
			if first.Content != "Hello, world!" || !strings.HasPrefix(first.ConversationID, "cnv_") || !strings.HasPrefix(first.MessageID, "msg_") ||
				first.Model == "" || first.FinishReason != "stop" || first.Usage.TotalTokens == 0 || first.Debug != nil {
				t.Fatalf("got %+v", first)
			}
			if got, want := e.upstream.lastMessages(), []string{"system: You are terse.", "user: Hi"}; !slices.Equal(got, want) {
				t.Fatalf("upstream got %q, want %q", got, want)
			}
			if !strings.HasPrefix(text(res), "Hello, world!") || !strings.Contains(text(res), first.ConversationID) {
				t.Errorf("text %q", text(res))
			}
		})

		t.Run("continuation sends the history upstream", func(t *testing.T) {
			e.upstream.reply("Again.")
			var next completionOut
			editor.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "conversationId": first.ConversationID,
				"messages": []obj{{"role": "user", "documentId": doc.ID}}}, &next)
			if next.ConversationID != first.ConversationID || next.Content != "Again." {
				t.Fatalf("got %+v", next)
			}
			want := []string{"system: You are terse.", "user: Hi", "assistant: Hello, world!", "user: The sky is green here."}
			if got := e.upstream.lastMessages(); !slices.Equal(got, want) {
				t.Fatalf("upstream got %q, want %q", got, want)
			}
		})

		t.Run("list-conversations and get-conversation", func(t *testing.T) {
			var l listOut[conversationOut]
			res := editor.ok(t, "list-conversations", obj{"chatId": chat.ID}, &l)
			if len(l.Data) != 1 || l.Data[0].ID != first.ConversationID || l.Data[0].Messages != nil {
				t.Fatalf("list-conversations = %+v", l)
			}
			// An agent tells conversations apart by their size and first
			// user message, in the result and in the text it may get alone.
			if l.Data[0].MessageCount != 4 || l.Data[0].Preview != "Hi" || !strings.Contains(text(res), `, 4 messages (started `) || !strings.Contains(text(res), `, updated `) ||
				!strings.Contains(text(res), `): "Hi"`) {
				t.Fatalf("list-conversations: %+v, text %q; want 4 messages and the preview \"Hi\" in both", l.Data[0], text(res))
			}
			var byProject listOut[conversationOut]
			editor.ok(t, "list-conversations", obj{"projectId": e.project.ID}, &byProject)
			if len(byProject.Data) != 1 || byProject.Data[0].ID != first.ConversationID {
				t.Fatalf("list-conversations of the project = %+v", byProject)
			}
			editor.fails(t, "list-conversations", obj{"projectId": e.project.ID, "chatId": chat.ID}, "invalid_request")
			var c conversationOut
			editor.ok(t, "get-conversation", obj{"conversationId": first.ConversationID}, &c)
			var roles []string
			for _, m := range c.Messages {
				roles = append(roles, m.Role+": "+m.Content)
			}
			want := []string{"user: Hi", "assistant: Hello, world!", "user: The sky is green here.", "assistant: Again."}
			if !slices.Equal(roles, want) || c.ChatID != chat.ID {
				t.Fatalf("messages %q, want %q", roles, want)
			}
			if c.Messages[2].DocumentID != doc.ID || c.Messages[1].Usage == nil || c.Messages[1].ID != first.MessageID {
				t.Fatalf("messages %+v", c.Messages)
			}
		})

		t.Run("list-messages", func(t *testing.T) {
			var got []messageOut
			var sizes []int
			args := obj{"conversationId": first.ConversationID, "limit": 3}
			for {
				var l listOut[messageOut]
				editor.ok(t, "list-messages", args, &l)
				got, sizes = append(got, l.Data...), append(sizes, len(l.Data))
				if l.NextCursor == nil {
					break
				}
				args["cursor"] = *l.NextCursor
			}
			var c conversationOut
			editor.ok(t, "get-conversation", obj{"conversationId": first.ConversationID}, &c)
			if !slices.Equal(sizes, []int{3, 1}) || !reflect.DeepEqual(got, c.Messages) {
				t.Fatalf("pages of %v hold %+v; want [3 1] holding %+v", sizes, got, c.Messages)
			}
			convCursor := base64.RawURLEncoding.EncodeToString([]byte(first.ConversationID)) // as list-conversations makes it
			editor.fails(t, "list-messages", obj{"conversationId": first.ConversationID, "cursor": convCursor}, "invalid_request")
			e.connect(overHTTP, "outsider", Options{}).fails(t, "list-messages", obj{"conversationId": first.ConversationID}, "not_found")
		})

		t.Run("list texts count one item in the singular", func(t *testing.T) {
			for tool, args := range map[string]obj{
				"list-projects":      {},
				"list-ai-providers":  {},
				"list-chats":         {},
				"list-documents":     {},
				"list-conversations": {},
				"list-messages":      {"conversationId": first.ConversationID},
			} {
				args["limit"] = 1
				noun := strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(tool, "list-"), "s"), "ai-provider", "AI provider")
				var l listOut[obj]
				got := text(editor.ok(t, tool, args, &l))
				if len(l.Data) != 1 || !strings.HasPrefix(got, "1 "+noun+" ") && !strings.HasPrefix(got, "1 "+noun+"\n") {
					t.Errorf("%s of one item says %q; want it to start %q", tool, got, "1 "+noun)
				}
			}
			var one map[string]any
			res := editor.ok(t, "create-document", obj{"projectId": e.project.ID, "name": "one", "content": "x"}, &one)
			if !strings.Contains(text(res), "(text/plain, 1 byte)") {
				t.Errorf("create-document of one byte says %q", text(res))
			}
			// The content the agent sent is not sent back to it.
			if _, echoed := one["content"]; echoed || one["bytes"] != 1.0 {
				t.Errorf("create-document's result = %v; want its size, not its content", one)
			}
			editor.ok(t, "delete-document", obj{"documentId": one["id"]}, nil)
		})

		t.Run("update-document; the conversation keeps the text it sent", func(t *testing.T) {
			var up documentSummaryOut
			editor.ok(t, "update-document", obj{"documentId": doc.ID, "content": "The sky is blue now.", "name": nil}, &up)
			if up.Bytes != len("The sky is blue now.") || up.Name != doc.Name || up.Metadata["source"] != "test" || up.UpdatedAt == doc.UpdatedAt {
				t.Fatalf("update-document = %+v; want the new content's size, the rest as it was", up)
			}
			var got documentOut
			editor.ok(t, "get-document", obj{"documentId": doc.ID}, &got)
			if got.Content != "The sky is blue now." || !reflect.DeepEqual(got.documentSummaryOut, up) {
				t.Fatalf("get-document = %+v, want %+v with the new content", got, up)
			}
			var c conversationOut
			editor.ok(t, "get-conversation", obj{"conversationId": first.ConversationID}, &c)
			if m := c.Messages[2]; m.DocumentID != doc.ID || m.Content != "The sky is green here." {
				t.Fatalf("the message that referenced the document now reads %+v; want the text it sent", m)
			}
			e.connect(overHTTP, "viewer", Options{}).fails(t, "update-document", obj{"documentId": doc.ID, "name": "x"}, "forbidden")
			editor.fails(t, "update-document", obj{"documentId": doc.ID, "name": " "}, "invalid_request")
			big := obj{"a": strings.Repeat("x", 64<<10)} // over 64 KiB as JSON
			for tool, args := range map[string]obj{
				"create-document": {"projectId": e.project.ID, "name": "big", "content": "x", "metadata": big},
				"update-document": {"documentId": doc.ID, "metadata": big},
			} {
				if msg := editor.fails(t, tool, args, "invalid_request"); !strings.Contains(msg, "metadata is 65544 bytes as JSON; the limit is 65536") {
					t.Errorf("%s with metadata over 64 KiB: %q, want a message naming metadata and its limit", tool, msg)
				}
			}
			var theirs documentOut
			e.connect(overHTTP, "outsider", Options{}).ok(t, "create-document", obj{"projectId": e.otherProject.ID, "name": "theirs", "content": "x"}, &theirs)
			editor.fails(t, "update-document", obj{"documentId": theirs.ID, "name": "x"}, "not_found")
		})

		t.Run("create-chat-completion (stateless) with debug", func(t *testing.T) {
			e.upstream.reply("Stateless.")
			var out completionOut
			editor.ok(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "systemMessage": "Be brief.", "model": "other-model",
				"messages": userMsg("my key is sk-abcdefghijklmnop"), "temperature": 0.5, "maxTokens": 100, "topP": 0.9, "stop": "END",
				"reasoningEffort": "low", "seed": 3, "frequencyPenalty": 0.25, "presencePenalty": 0.5, "debug": true}, &out)
			if out.Content != "Stateless." || out.ConversationID != "" || !strings.HasPrefix(out.MessageID, "msg_") || out.Model != "other-model" {
				t.Fatalf("got %+v", out)
			}
			if b := e.upstream.Last().Body; b["reasoning_effort"] != "low" || b["seed"] != 3.0 || b["frequency_penalty"] != 0.25 || b["presence_penalty"] != 0.5 {
				t.Errorf("the upstream got reasoning_effort %v, seed %v, frequency_penalty %v, presence_penalty %v; want low, 3, 0.25, 0.5",
					b["reasoning_effort"], b["seed"], b["frequency_penalty"], b["presence_penalty"])
			}
			if out.Debug == nil || out.Debug.Provider.ID != e.provider.ID || len(out.Debug.Messages) != 2 ||
				strings.Contains(out.Debug.Messages[1].Content, "sk-abcdefghijklmnop") {
				t.Fatalf("debug %+v", out.Debug)
			}
		})

		t.Run("get-usage", func(t *testing.T) {
			var u usageReportOut
			editor.ok(t, "get-usage", obj{"projectId": e.project.ID, "groupBy": "model"}, &u)
			var requests int64
			for _, d := range u.Data {
				requests += d.Requests
			}
			if requests != 3 || u.GroupBy != "model" || len(u.Data) != 2 {
				t.Fatalf("usage %+v: want 3 requests over 2 models", u)
			}
			var byOutcome usageReportOut
			editor.ok(t, "get-usage", obj{"projectId": e.project.ID, "groupBy": "outcome"}, &byOutcome)
			if len(byOutcome.Data) != 1 || byOutcome.Data[0].Key != "ok" || byOutcome.Data[0].Requests != 3 {
				t.Fatalf("usage by outcome %+v: want the 3 requests under ok", byOutcome)
			}
			// A provider's group names it, in the result and its text.
			var byProvider usageReportOut
			res := editor.ok(t, "get-usage", obj{"projectId": e.project.ID, "groupBy": "provider"}, &byProvider)
			if len(byProvider.Data) != 1 || byProvider.Data[0].Key != e.provider.ID || byProvider.Data[0].Name != "fake" {
				t.Fatalf("usage by provider %+v: want one group, %s named fake", byProvider, e.provider.ID)
			}
			if text := text(res); !strings.Contains(text, e.provider.ID+` ("fake")`) {
				t.Errorf("usage by provider's text %q does not name the provider", text)
			}
			var none usageReportOut
			editor.ok(t, "get-usage", obj{"projectId": e.project.ID, "from": "2000-01-01", "to": "2000-02-01"}, &none)
			if len(none.Data) != 0 && none.Data[0].Requests != 0 {
				t.Fatalf("usage in 2000: %+v", none)
			}
			if none.From != "2000-01-01T00:00:00.000Z" || none.To != "2000-02-01T00:00:00.000Z" {
				t.Errorf("period of usage in 2000 = %s to %s; want the one asked for", none.From, none.To)
			}
			from, errF := time.Parse(time.RFC3339, u.From)
			to, errT := time.Parse(time.RFC3339, u.To)
			if errF != nil || errT != nil || time.Since(to) > time.Minute || time.Until(to) > 2*time.Second || to.Sub(from) != 30*24*time.Hour {
				t.Errorf("default period = %q to %q; want the 30 days up to now", u.From, u.To)
			}

			// A group a page: the pages are the report, over its period.
			args := obj{"projectId": e.project.ID, "groupBy": "model", "limit": 1}
			var p1, p2 usageReportOut
			editor.ok(t, "get-usage", args, &p1)
			if len(p1.Data) != 1 || p1.NextCursor == nil {
				t.Fatalf("first page %+v: want 1 group and a cursor", p1)
			}
			args["cursor"] = *p1.NextCursor
			editor.ok(t, "get-usage", args, &p2)
			if p2.NextCursor != nil || p2.From != p1.From || p2.To != p1.To || !reflect.DeepEqual(append(p1.Data, p2.Data...), u.Data) {
				t.Fatalf("pages %+v and %+v; want together %+v, over one period, the last with no cursor", p1, p2, u)
			}
			if !strings.Contains(usageText(p1), "(more groups: pass cursor "+strconv.Quote(*p1.NextCursor)+"):") {
				t.Errorf("first page's text %q does not say how to get the next", usageText(p1))
			}
			// The cursor is the model report's: not the chat report's, nor
			// one over another period.
			for _, other := range []obj{
				{"projectId": e.project.ID, "groupBy": "chat", "cursor": *p1.NextCursor},
				{"projectId": e.project.ID, "cursor": *p1.NextCursor},
				{"projectId": e.project.ID, "groupBy": "model", "from": "2026-01-01", "cursor": *p1.NextCursor},
				{"projectId": e.project.ID, "groupBy": "model", "cursor": "bm9wZQ"},
			} {
				if msg := editor.fails(t, "get-usage", other, "invalid_request"); !strings.HasPrefix(msg, "invalid_request: cursor") {
					t.Errorf("get-usage(%v) = %q; want it to name cursor", other, msg)
				}
			}
			if msg := editor.fails(t, "get-usage", obj{"projectId": e.project.ID, "groupBy": "model", "limit": 101}, "invalid_request"); !strings.Contains(msg, "limit") {
				t.Errorf("get-usage with limit 101 = %q; want it to name limit", msg)
			}
			// Ungrouped, the one total's nextCursor is null, not missing.
			res = editor.ok(t, "get-usage", obj{"projectId": e.project.ID, "limit": 1}, nil)
			var raw map[string]any
			decode(t, res, &raw)
			if next, ok := raw["nextCursor"]; !ok || next != nil || len(raw["data"].([]any)) != 1 {
				t.Errorf("ungrouped usage = %v; want one total and nextCursor null", raw)
			}
		})

		t.Run("permission denials", func(t *testing.T) {
			viewer := e.connect(overHTTP, "viewer", Options{})
			outsider := e.connect(overHTTP, "outsider", Options{})
			viewer.ok(t, "get-chat", obj{"chatId": chat.ID}, nil)
			msg := viewer.fails(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID}, "forbidden")
			if !strings.Contains(msg, "chats:CreateChat") {
				t.Errorf("forbidden text %q does not name the permission", msg)
			}
			viewer.fails(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("x")}, "forbidden")
			viewer.fails(t, "delete-document", obj{"documentId": doc.ID}, "forbidden")
			viewer.fails(t, "delete-conversation", obj{"conversationId": first.ConversationID}, "forbidden")

			msg = outsider.fails(t, "get-chat", obj{"chatId": chat.ID}, "not_found")
			if msg != fmt.Sprintf("not_found: chat %s does not exist", chat.ID) {
				t.Errorf("outsider gets %q", msg)
			}
			outsider.fails(t, "list-chats", obj{"projectId": e.project.ID}, "not_found")
			// An admin, as stdio's local caller is, is told too.
			const missing = "prj_06h3j21pyc8h8y42nn3328e0bx"
			for _, tool := range []string{"list-chats", "list-documents", "list-ai-providers", "get-usage"} {
				if msg := admin.fails(t, tool, obj{"projectId": missing}, "not_found"); msg != "not_found: project "+missing+" does not exist" {
					t.Errorf("admin %s of a missing project: %q", tool, msg)
				}
			}
			outsider.fails(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("x")}, "not_found")
			outsider.fails(t, "get-conversation", obj{"conversationId": first.ConversationID}, "not_found")
			editor.fails(t, "get-chat", obj{"chatId": e.otherChat.ID}, "not_found")
			var l listOut[chatOut]
			outsider.ok(t, "list-chats", obj{}, &l)
			if len(l.Data) != 1 || l.Data[0].ID != e.otherChat.ID {
				t.Fatalf("outsider lists %+v", l)
			}
		})

		t.Run("reasoningEffort empty, as its schema allows, is the provider's default", func(t *testing.T) {
			var out completionOut
			editor.ok(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("a"), "reasoningEffort": ""}, &out)
			if b := e.upstream.Last().Body; b["reasoning_effort"] != nil {
				t.Errorf("the upstream got reasoning_effort %v; want none", b["reasoning_effort"])
			}
		})

		t.Run("bad arguments", func(t *testing.T) {
			for _, tc := range []struct {
				name, tool string
				args       obj
				want       string // substring of the error text
			}{
				{"missing messages", "create-chat-completion-for-chat", obj{"chatId": chat.ID}, "invalid_request: messages"},
				{"empty messages", "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": []obj{}}, "invalid_request: messages must not be empty"},
				{"content and documentId", "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": []obj{{"role": "user", "content": "a", "documentId": doc.ID}}}, "messages[0]"},
				{"bad role", "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": []obj{{"role": "robot", "content": "a"}}}, "messages[0].role"},
				{"unknown argument", "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("a"), "MAX_TOKENS": 5}, `unknown argument "MAX_TOKENS"`},
				{"unknown nested argument", "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": []obj{{"role": "user", "text": "a"}}}, `messages[0].text`},
				{"stateless conversationId", "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("a"), "conversationId": "cnv_00000000000000000000000000"},
					"create-chat-completion keeps no conversation, so it takes no conversationId; to continue one, call create-chat-completion-for-chat"},
				{"wrong type", "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("a"), "temperature": "hot"}, "temperature must be a number"},
				{"out of range", "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("a"), "temperature": 3}, "temperature must be between 0 and 2"},
				{"stop of the wrong type", "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("a"), "stop": 7}, "stop must be a string or an array of strings"},
				{"unknown reasoningEffort", "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("a"), "reasoningEffort": "extreme"}, "reasoningEffort must be one of"},
				{"missing chatId", "get-chat", obj{}, "invalid_request: chatId is required"},
				{"empty chatId", "get-chat", obj{"chatId": ""}, "invalid_request: the chat id is empty; pass the id of a chat (cht_…)"},
				{"empty aiProviderId", "get-ai-provider", obj{"aiProviderId": ""}, "invalid_request: the AI provider id is empty; pass the id of an AI provider (aip_…)"},
				{"bad limit", "list-chats", obj{"limit": 0}, "limit must be an integer from 1 to 100"},
				{"bad cursor", "list-chats", obj{"cursor": "%%%"}, "cursor is not valid"},
				{"bad time", "get-usage", obj{"projectId": e.project.ID, "from": "yesterday"}, "from must be an ISO 8601 time"},
				// No URL query here: a space is what was sent, and %2B would be read as is.
				{"space for an offset's +", "get-usage", obj{"projectId": e.project.ID, "from": "2026-01-31T10:00:00 02:00"}, "from must be an ISO 8601 time"},
				{"time past 9999 in UTC", "get-usage", obj{"projectId": e.project.ID, "to": "9999-12-31T23:00:00-05:00"}, "invalid_request: to is 10000-01-01T04:00:00Z in UTC"},
				{"bad groupBy", "get-usage", obj{"projectId": e.project.ID, "groupBy": "color"}, "groupBy must be one of"},
				{"foreign provider", "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.otherProvider.ID}, "invalid_request: AI provider"},
				{"foreign document", "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": []obj{{"role": "user", "documentId": "doc_00000000000000000000000000"}}}, "messages[0].documentId"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					msg := editor.fails(t, tc.tool, tc.args, "invalid_request")
					if !strings.Contains(msg, tc.want) {
						t.Errorf("error text %q does not contain %q", msg, tc.want)
					}
				})
			}
		})

		t.Run("upstream failures are tool errors", func(t *testing.T) {
			e.upstream.Enqueue(llmtest.Behavior{Status: 429, Header: http.Header{"Retry-After": {"7"}}})
			msg := editor.fails(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("x")}, "rate_limited")
			if !strings.Contains(msg, "retry after 7s") {
				t.Errorf("rate-limited text %q lacks the retry delay", msg)
			}
			e.upstream.Enqueue(llmtest.Behavior{Status: 500})
			msg = editor.fails(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("x")}, "upstream_error")
			if strings.Contains(msg, "sk-test") {
				t.Errorf("upstream error text %q leaks the provider key", msg)
			}
		})

		t.Run("streamed completion sends every delta as progress", func(t *testing.T) {
			deltas := make([]string, 30)
			for i := range deltas {
				deltas[i] = fmt.Sprintf("w%d ", i)
			}
			e.upstream.reply(deltas...)
			res, err := editor.callErr(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("stream")}, "tok-1")
			must(t, err)
			var out completionOut
			decode(t, res, &out)
			checkStream(t, editor, "tok-1", deltas, out)
		})

		t.Run("cancelling a call cancels the upstream", func(t *testing.T) {
			checkCancel(t, e, callTool(e, editor), nil)
		})

		t.Run("delete-conversation, delete-document and delete-chat", func(t *testing.T) {
			var del deletedOut
			editor.ok(t, "delete-conversation", obj{"conversationId": first.ConversationID}, &del)
			if del != (deletedOut{ID: first.ConversationID, Deleted: true}) {
				t.Fatalf("got %+v", del)
			}
			editor.fails(t, "get-conversation", obj{"conversationId": first.ConversationID}, "not_found")
			editor.fails(t, "delete-conversation", obj{"conversationId": first.ConversationID}, "not_found")
			editor.ok(t, "delete-document", obj{"documentId": doc.ID}, &del)
			if del != (deletedOut{ID: doc.ID, Deleted: true}) {
				t.Fatalf("got %+v", del)
			}
			editor.ok(t, "delete-chat", obj{"chatId": chat.ID}, &del)
			if del != (deletedOut{ID: chat.ID, Deleted: true}) {
				t.Fatalf("got %+v", del)
			}
			editor.fails(t, "get-chat", obj{"chatId": chat.ID}, "not_found")
		})
	})
}

// checkStream checks that every delta arrived, in order, as a progress
// notification, and that the result holds the whole reply and usage.
func checkStream(t *testing.T, s *session, token any, deltas []string, out completionOut) {
	t.Helper()
	if want := strings.Join(deltas, ""); out.Content != want {
		t.Fatalf("result content %q, want %q", out.Content, want)
	}
	if out.Usage.TotalTokens == 0 || out.FinishReason == "" {
		t.Fatalf("result %+v lacks usage or finish reason", out)
	}
	notes := s.notes(token)
	if len(notes) != len(deltas) {
		t.Fatalf("got %d progress notifications, want %d: %+v", len(notes), len(deltas), notes)
	}
	for i, n := range notes {
		if n.Message != deltas[i] || n.Progress != float64(i+1) {
			t.Fatalf("notification %d = %+v, want progress %d message %q", i, n, i+1, deltas[i])
		}
	}
}

// cancelArgs is the completion checkCancel starts.
func cancelArgs(e *env) obj {
	return obj{"aiProviderId": e.provider.ID, "messages": userMsg("wait")}
}

// checkCancel starts a completion with call, which the upstream never
// answers, cancels call's context, and checks that the upstream saw its
// request cancelled within a second, and that the completion's usage was
// recorded with the outcome client_disconnect. notify, when set, tells
// the server of the cancellation, for transports where closing the request
// does not.
func checkCancel(t *testing.T, e *env, call func(ctx context.Context) error, notify func()) {
	t.Helper()
	before := e.disconnects()
	started, canceled := e.upstream.hang()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream never got the request")
	}
	cancel()
	if notify != nil {
		notify()
	}
	select {
	case <-canceled:
	case <-time.After(time.Second):
		t.Fatal("the upstream request was not cancelled within a second")
	}
	if err := <-done; err == nil {
		t.Error("the cancelled call returned no error")
	}
	// Usage is written synchronously here (no batcher), once the
	// completion has ended on the server.
	for deadline := time.Now().Add(5 * time.Second); e.disconnects() == before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.disconnects(); got != before+1 {
		t.Errorf("usage records with the outcome client_disconnect: %d, want %d", got, before+1)
	}
}

// disconnects counts the usage records of e's project with the outcome
// client_disconnect.
func (e *env) disconnects() int64 { return e.records("client_disconnect") }

// records counts the usage records of e's project with the outcome.
func (e *env) records(outcome string) int64 {
	var n int64
	must(e.t, e.store.DB().Table("usage_records").
		Where("project_id = ? AND outcome = ?", e.project.ID, outcome).Count(&n).Error)
	return n
}

// callTool returns a checkCancel call running the completion on s.
func callTool(e *env, s *session) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := s.callCtx(ctx, "create-chat-completion", cancelArgs(e), "tok-cancel")
		return err
	}
}

// completionsOnly gives e's editor a policy under which it may run
// completions and use the provider, and read nothing; it returns a chat
// of e's project and the editor's session.
func completionsOnly(t *testing.T, e *env) (*domain.Chat, *session) {
	t.Helper()
	chat := e.supportChat()
	authz, err := policy.NewFrom(policies.Model, `
p, editor, chats:CreateChatCompletion
p, editor, aiProviders:UseAIProvider
p, admin, *`)
	must(t, err)
	e.useAuthorizer(authz)
	return chat, e.connect(overHTTP, "editor", Options{})
}

// TestDebugNeedsReadAccess runs completions under a policy whose editor
// may run them but read neither chats nor AI providers: debug: true, which
// shows their configuration, is refused; the same call without it runs.
func TestDebugNeedsReadAccess(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	chat, editor := completionsOnly(t, e)

	for _, c := range []struct {
		tool string
		args obj
		perm string
	}{
		{"create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("hi")}, "chats:GetChat"},
		{"create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("hi")}, "aiProviders:GetAIProvider"},
	} {
		before := e.upstream.Count()
		c.args["debug"] = true
		msg := editor.fails(t, c.tool, c.args, "forbidden")
		if !strings.Contains(msg, "debug: true") || !strings.Contains(msg, c.perm) {
			t.Errorf("%s with debug: %q, want it to name debug and %s", c.tool, msg, c.perm)
		}
		if e.upstream.Count() != before {
			t.Errorf("%s with debug reached the upstream", c.tool)
		}
		delete(c.args, "debug")
		var out completionOut
		editor.ok(t, c.tool, c.args, &out)
	}
}

// TestDebugOfAContinuationNeedsTheConversation runs per-chat completions
// under a policy whose editor may run them and read the chat, but not read
// conversations: continuing one runs, but debug: true on a continuation,
// which would show the conversation's history, is refused before anything
// goes upstream; debug on a new conversation still runs.
func TestDebugOfAContinuationNeedsTheConversation(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	chat := e.supportChat()
	authz, err := policy.NewFrom(policies.Model, `
p, editor, chats:CreateChatCompletion
p, editor, chats:GetChat
p, editor, aiProviders:UseAIProvider
p, admin, *`)
	must(t, err)
	e.useAuthorizer(authz)
	editor := e.connect(overHTTP, "editor", Options{})

	var first completionOut
	editor.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "debug": true, "messages": userMsg("the secret plan")}, &first)
	if first.Debug == nil {
		t.Fatal("debug on a new conversation: no debug")
	}
	before := e.upstream.Count()
	args := obj{"chatId": chat.ID, "conversationId": first.ConversationID, "debug": true, "messages": userMsg("go on")}
	msg := editor.fails(t, "create-chat-completion-for-chat", args, "forbidden")
	if !strings.Contains(msg, "debug: true") || !strings.Contains(msg, "conversations:GetConversation") {
		t.Errorf("debug on a continuation: %q, want it to name debug and conversations:GetConversation", msg)
	}
	if e.upstream.Count() != before {
		t.Error("debug on a continuation reached the upstream")
	}
	delete(args, "debug")
	var next completionOut
	editor.ok(t, "create-chat-completion-for-chat", args, &next)
	if next.ConversationID != first.ConversationID || next.Debug != nil {
		t.Errorf("continuation without debug: conversation %s (want %s), debug %v", next.ConversationID, first.ConversationID, next.Debug)
	}
}

// TestDebugOfAFailedCompletion: a completion tool call that fails once it
// ran, with debug: true, has its error text and then {"debug": {...}}, the
// messages as they went upstream with secrets redacted, for both tools;
// without debug, the error text alone.
func TestDebugOfAFailedCompletion(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	chat := e.supportChat()
	admin := e.connect(overHTTP, "admin", Options{})
	const secret = "sk-live0123456789abcdef"
	for tool, args := range map[string]obj{
		"create-chat-completion-for-chat": {"chatId": chat.ID},
		"create-chat-completion":          {"aiProviderId": e.provider.ID},
	} {
		args["messages"] = userMsg("my key is " + secret)
		args["debug"] = true
		e.upstream.Enqueue(llmtest.Behavior{Status: 401})
		res := admin.call(t, tool, args)
		if !res.IsError || len(res.Content) != 2 {
			t.Fatalf("%s: error %v, %d texts (%s); want an error result with two", tool, res.IsError, len(res.Content), text(res))
		}
		if msg := res.Content[0].(mcpgo.TextContent).Text; !strings.HasPrefix(msg, "upstream_error: ") {
			t.Errorf("%s: first text %q, want the error", tool, msg)
		}
		var got struct {
			Debug *struct {
				Provider struct{ ID string }
				Messages []struct{ Role, Content string }
			}
		}
		raw := res.Content[1].(mcpgo.TextContent).Text
		must(t, json.Unmarshal([]byte(raw), &got))
		if got.Debug == nil || got.Debug.Provider.ID != e.provider.ID {
			t.Fatalf("%s: second text %s, want {\"debug\": ...} naming provider %s", tool, raw, e.provider.ID)
		}
		if last := got.Debug.Messages[len(got.Debug.Messages)-1]; last.Role != "user" || last.Content != "my key is [redacted]" {
			t.Errorf("%s: debug's last message %+v, want the user's, redacted", tool, last)
		}
		if strings.Contains(raw, secret) || strings.Contains(raw, "sk-test") {
			t.Errorf("%s: debug shows a secret: %s", tool, raw)
		}

		delete(args, "debug")
		e.upstream.Enqueue(llmtest.Behavior{Status: 401})
		if res := admin.call(t, tool, args); !res.IsError || len(res.Content) != 1 {
			t.Errorf("%s without debug: %d texts (%s), want the error alone", tool, len(res.Content), text(res))
		}
	}
}

// TestDocumentMessagesNeedReadAccess runs completions under a policy whose
// editor may run them but not read documents: a documentId message, or a
// document named as context (dataSources, names), which sends a
// document's content upstream, is refused before anything goes upstream;
// the same text sent as content runs.
func TestDocumentMessagesNeedReadAccess(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	chat, editor := completionsOnly(t, e)

	for _, c := range []struct {
		tool string
		args obj
	}{
		{"create-chat-completion-for-chat", obj{"chatId": chat.ID}},
		{"create-chat-completion", obj{"aiProviderId": e.provider.ID}},
	} {
		before := e.upstream.Count()
		c.args["messages"] = []obj{{"role": "user", "content": "read this"}, {"role": "user", "documentId": e.document.ID}}
		msg := editor.fails(t, c.tool, c.args, "forbidden")
		if !strings.Contains(msg, "messages[1].documentId") || !strings.Contains(msg, "documents:GetDocument") {
			t.Errorf("%s with a document: %q, want it to name the message and documents:GetDocument", c.tool, msg)
		}
		if e.upstream.Count() != before {
			t.Errorf("%s with a document it may not read reached the upstream", c.tool)
		}
		c.args["messages"] = userMsg("read this")
		for _, sources := range []obj{{"dataSources": []obj{{"id": e.document.ID}}}, {"names": []string{e.document.Name}}} {
			args := maps.Clone(c.args)
			maps.Copy(args, sources)
			msg := editor.fails(t, c.tool, args, "forbidden")
			if !strings.Contains(msg, "dataSources and names") || !strings.Contains(msg, "documents:GetDocument") {
				t.Errorf("%s with %v: %q, want it to name the fields and documents:GetDocument", c.tool, sources, msg)
			}
		}
		if e.upstream.Count() != before {
			t.Errorf("%s with data sources it may not read reached the upstream", c.tool)
		}
		var out completionOut
		editor.ok(t, c.tool, c.args, &out)
	}

	// One who may read the documents (here the admin) sends them, by
	// name, over MCP too.
	reader := e.connect(overHTTP, "admin", Options{})
	var out completionOut
	reader.ok(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("read this"), "names": []string{e.document.Name}}, &out)
	if sys := e.upstream.Last().Messages[0]; sys.Role != "system" || !strings.Contains(sys.Content, e.document.Content) {
		t.Errorf("the upstream's first message %+v; want a system message holding the document", sys)
	}
}

// TestMaxStreamDuration: PARLEY_MAX_STREAM_DURATION ends a streamed call
// (one with a progress token) over MCP as it does over REST, with an
// upstream_timeout error result that names the limit; the upstream call is
// cancelled. A call without a progress token does not stream and is not
// cut.
func TestMaxStreamDuration(t *testing.T) {
	const limit = 500 * time.Millisecond
	e := newEnv(t, dbtest.SQLite(t))
	e.configure(func(d *domain.Deps) { d.MaxStreamDuration = limit })
	editor := e.connect(overHTTP, "editor", Options{})
	args := obj{"aiProviderId": e.provider.ID, "messages": userMsg("slow")}

	// Eight deltas 150ms apart: 1.2s, over the limit.
	slow := llmtest.Behavior{Deltas: strings.Split("a b c d e f g h", " "), ChunkDelay: 150 * time.Millisecond}
	e.upstream.Enqueue(slow)
	n := e.upstream.Count()
	start := time.Now()
	res, err := editor.callErr(t, "create-chat-completion", args, "tok-limit")
	if err != nil {
		t.Fatalf("protocol error: %v", err)
	}
	if took := time.Since(start); took < limit || took > limit+time.Second {
		t.Errorf("the call took %v, want it ended at about %v", took, limit)
	}
	msg := text(res)
	if !res.IsError || !strings.HasPrefix(msg, "upstream_timeout: ") || !strings.Contains(msg, "maximum duration of 500ms") {
		t.Fatalf("result %q, want an upstream_timeout error naming the maximum duration", msg)
	}
	if got := len(editor.notes("tok-limit")); got == 0 || got >= 8 {
		t.Errorf("%d deltas were streamed before the limit, want some but not all 8", got)
	}
	if !e.upstream.WaitCanceledN(n, 2*time.Second) {
		t.Error("the upstream did not see the call cancelled")
	}

	// Without a progress token the call does not stream: no limit.
	e.upstream.Enqueue(llmtest.Behavior{Deltas: slow.Deltas, Delay: 2 * limit})
	var out completionOut
	editor.ok(t, "create-chat-completion", args, &out)
	if out.Content != "abcdefgh" {
		t.Errorf("the call without a progress token = %q, want the whole reply", out.Content)
	}
}

// TestUsageTextLabelsEveryGroup: the group of completions without a key
// (stateless ones, grouped by chat) gets a label, not a bare line; cached
// tokens, those written to the cache and reasoning tokens are named where
// there are any.
func TestUsageTextLabelsEveryGroup(t *testing.T) {
	u := usageReportOut{ProjectID: "prj_x", From: "a", To: "b", GroupBy: "chat", Data: []usageTotalOut{
		{Key: "cht_1", Requests: 2, TotalTokens: 3},
		{Requests: 1, TotalTokens: 29, PromptTokens: 20, CompletionTokens: 9, CachedTokens: 12, ReasoningTokens: 4},
		{Key: "cht_2", Requests: 1, TotalTokens: 31, PromptTokens: 30, CompletionTokens: 1, CacheWriteTokens: 25},
		{Key: "cht_3", Requests: 2, TotalTokens: 52, PromptTokens: 50, CompletionTokens: 2, CachedTokens: 30, CacheWriteTokens: 15},
	}}
	want := "Usage of project prj_x from a to b by chat:\n" +
		"- cht_1: 2 requests, 3 tokens (0 prompt, 0 completion)\n" +
		"- stateless completions: 1 request, 29 tokens (20 prompt of which 12 cached, 9 completion of which 4 reasoning)\n" +
		"- cht_2: 1 request, 31 tokens (30 prompt of which 25 written to the cache, 1 completion)\n" +
		"- cht_3: 2 requests, 52 tokens (50 prompt of which 30 cached and 15 written to the cache, 2 completion)"
	if got := usageText(u); got != want {
		t.Errorf("usageText =\n%s\nwant\n%s", got, want)
	}
}

// TestListCursorBelongsToItsList: as on REST, a list tool's cursor pages
// the list with the filter it was made for only: passed with another
// projectId, or without one, it is an invalid_request rather than a page
// that skips that list's first items.
func TestListCursorBelongsToItsList(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		_, err := e.svcs.Documents.Create(e.ctx("admin"), domain.DocumentCreate{ProjectID: e.project.ID, Name: "more", Content: "x"})
		must(t, err)
		admin := e.connect(overHTTP, "admin", Options{})
		var first listOut[documentSummaryOut]
		admin.ok(t, "list-documents", obj{"projectId": e.project.ID, "limit": 1}, &first)
		if first.NextCursor == nil {
			t.Fatalf("first page %+v: want a cursor", first)
		}
		c := *first.NextCursor
		admin.fails(t, "list-documents", obj{"projectId": e.otherProject.ID, "cursor": c}, "invalid_request")
		admin.fails(t, "list-documents", obj{"cursor": c}, "invalid_request")
		var next listOut[documentSummaryOut]
		admin.ok(t, "list-documents", obj{"projectId": e.project.ID, "cursor": c}, &next)
		if len(next.Data) != 1 || next.Data[0].ID == first.Data[0].ID {
			t.Fatalf("second page %+v after %+v", next, first)
		}
	})
}

// TestListsNewestFirst: a list tool's order desc answers newest first, as
// REST's order=desc does, its cursor keeping the order.
func TestListsNewestFirst(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	for range 3 {
		_, err := e.svcs.Documents.Create(e.ctx("admin"), domain.DocumentCreate{ProjectID: e.project.ID, Name: "more", Content: "x"})
		must(t, err)
	}
	admin := e.connect(overHTTP, "admin", Options{})
	walk := func(order string) []string {
		var ids []string
		args := obj{"projectId": e.project.ID, "limit": 2, "order": order}
		for range 10 {
			var l listOut[documentSummaryOut]
			admin.ok(t, "list-documents", args, &l)
			for _, d := range l.Data {
				ids = append(ids, d.ID)
			}
			if l.NextCursor == nil {
				break
			}
			args = obj{"projectId": e.project.ID, "limit": 2, "cursor": *l.NextCursor}
		}
		return ids
	}
	asc, desc := walk("asc"), walk("desc")
	slices.Reverse(desc)
	if len(asc) < 4 || !slices.Equal(asc, desc) {
		t.Errorf("list-documents with order desc, reversed: %v; want order asc's %v", desc, asc)
	}
	admin.fails(t, "list-documents", obj{"projectId": e.project.ID, "order": "newest"}, "invalid_request")
}

// TestEmptyListsSayHowProjectsAreMade: no tool makes a project or an AI
// provider, so an agent whose list of them is empty is told to ask the
// user, and how they are made; a list with items says nothing of it.
func TestEmptyListsSayHowProjectsAreMade(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	u, err := e.svcs.Users.Create(e.ctx("admin"), domain.UserCreate{Name: "newcomer"})
	must(t, err)
	k, err := e.svcs.Users.CreateAPIKey(e.ctx("admin"), u.ID, domain.APIKeyCreate{Name: "test"})
	must(t, err)
	e.addPrincipal("newcomer", k.Secret)
	newcomer := e.connect(overHTTP, "newcomer", Options{})
	res := newcomer.call(t, "list-projects", obj{})
	if res.IsError || !strings.HasPrefix(text(res), "0 projects. ") || !strings.Contains(text(res), "ask the user") || !strings.Contains(text(res), "POST /api/v1/projects") {
		t.Errorf("list-projects of a user in no project: %q; want 0 projects and to ask the user, saying how they are made", text(res))
	}
	editor := e.connect(overHTTP, "editor", Options{})
	if res := editor.call(t, "list-ai-providers", obj{}); res.IsError || strings.Contains(text(res), "ask the user") {
		t.Errorf("list-ai-providers with one: %q; want the list alone", text(res))
	}
}

// TestContentParts checks that a message's content may be an array of
// text parts, as over REST, and that a part of another type is refused by
// name.
func TestContentParts(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	editor := e.connect(overStdio, "editor", Options{})
	e.upstream.reply("Parts.")
	var out completionOut
	editor.ok(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": []obj{{"role": "user",
		"content": []obj{{"type": "text", "text": "one"}, {"type": "text", "text": "two"}}}}}, &out)
	if got, want := e.upstream.lastMessages(), []string{"user: one\ntwo"}; !slices.Equal(got, want) {
		t.Fatalf("upstream got %q, want %q", got, want)
	}
	msg := editor.fails(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": []obj{{"role": "user",
		"content": []obj{{"type": "image_url", "image_url": obj{"url": "https://example.com/a.png"}}}}}}, "invalid_request")
	if !strings.Contains(msg, "messages[0].content[0]") || !strings.Contains(msg, "text only") {
		t.Errorf("an image part: %q, want it named and refused", msg)
	}
}

// TestProviderShowsItsKeyRef: a provider that reads the server's key
// (apiKeyRef) says so, as the REST resource does; MCP's left it out, and
// an agent could not tell a key the server lends from one stored.
func TestProviderShowsItsKeyRef(t *testing.T) {
	t.Setenv("PARLEY_PROVIDER_KEY_MCPTEST", "sk-test-lent-0123456789")
	e := newEnv(t, dbtest.SQLite(t))
	p, err := e.svcs.Providers.Create(e.ctx("admin"), domain.ProviderCreate{ProjectID: e.project.ID, Name: "lent",
		Type: domain.ProviderOpenAICompatible, BaseURL: e.upstream.URL(), DefaultModel: "fake-model", APIKeyRef: "env:PARLEY_PROVIDER_KEY_MCPTEST"})
	must(t, err)
	s := e.connect(overHTTP, "viewer", Options{})
	var out providerOut
	res := s.ok(t, "get-ai-provider", obj{"aiProviderId": p.ID}, &out)
	if out.APIKeyRef != "env:PARLEY_PROVIDER_KEY_MCPTEST" || !out.HasAPIKey || !strings.Contains(text(res), "env:PARLEY_PROVIDER_KEY_MCPTEST") {
		t.Errorf("get-ai-provider = %+v, text %q; want its apiKeyRef", out, text(res))
	}
	if strings.Contains(text(res), "sk-test-lent") || strings.Contains(fmt.Sprint(out), "sk-test-lent") {
		t.Errorf("get-ai-provider shows the key itself: %q", text(res))
	}
}

// TestProviderShowsItsPromptCache: an Anthropic provider's prompt caching
// is part of the provider MCP shows, in its result and its text, as REST
// shows it; a provider it does not apply to shows none.
func TestProviderShowsItsPromptCache(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	p, err := e.svcs.Providers.Create(e.ctx("admin"), domain.ProviderCreate{ProjectID: e.project.ID, Name: "claude",
		Type: domain.ProviderAnthropic, BaseURL: e.upstream.URL(), DefaultModel: "claude-fake", APIKey: "sk-ant-test-0123456789",
		PromptCache: domain.PromptCache5m})
	must(t, err)
	s := e.connect(overHTTP, "viewer", Options{})
	var out providerOut
	res := s.ok(t, "get-ai-provider", obj{"aiProviderId": p.ID}, &out)
	if out.PromptCache != "5m" || !strings.Contains(text(res), "prompt cached for 5m") {
		t.Errorf("get-ai-provider = %+v, text %q; want promptCache 5m", out, text(res))
	}
	out = providerOut{}
	res = s.ok(t, "get-ai-provider", obj{"aiProviderId": e.provider.ID}, &out)
	if out.PromptCache != "" || strings.Contains(text(res), "prompt cache") {
		t.Errorf("get-ai-provider of a %s provider = %+v, text %q; want no promptCache", out.Type, out, text(res))
	}
}

// TestReasoningIsApart: a reasoning model's thinking is the result's
// reasoning, apart from its content, and out of its text, which an agent
// reads as the reply.
func TestReasoningIsApart(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overHTTP, "editor", Options{})
	const thought = "the user greets; greet back"
	e.upstream.Enqueue(llmtest.Behavior{Reasoning: thought})
	var out completionOut
	res := s.ok(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("hello")}, &out)
	if out.Reasoning != thought || out.Content != "echo: hello" {
		t.Errorf("result = %+v, want reasoning %q apart from content", out, thought)
	}
	if strings.Contains(text(res), thought) {
		t.Errorf("the text result holds the thinking: %q", text(res))
	}
}

// TestThinkingStaysOutOfTheText: a reply that thinks and calls tools
// carries its thinking in the first call's extraContent of the structured
// result, to be sent back (Anthropic's thinking, an OpenAI-wire reply's
// reasoning_content); the text a model reads names the call without it.
func TestThinkingStaysOutOfTheText(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	claude, err := e.svcs.Providers.Create(e.ctx("admin"), domain.ProviderCreate{ProjectID: e.project.ID, Name: "claude",
		Type: domain.ProviderAnthropic, BaseURL: e.upstream.URL(), DefaultModel: "claude-fake", APIKey: "sk-ant-test-0123456789"})
	must(t, err)
	s := e.connect(overHTTP, "editor", Options{})
	for _, c := range []struct {
		name string
		args obj
	}{
		{"anthropic", obj{"aiProviderId": claude.ID, "thinking": obj{"type": "enabled", "budgetTokens": 2048}}},
		{"openai-compatible", obj{"aiProviderId": e.provider.ID}},
	} {
		t.Run(c.name, func(t *testing.T) {
			const thought = "private chain of thought"
			e.upstream.Enqueue(llmtest.Behavior{Reasoning: thought, ToolCalls: []llmtest.ToolCall{{ID: "toolu_1", Name: "weather", Arguments: `{"city":"Paris"}`}}})
			c.args["messages"] = userMsg("weather?")
			c.args["tools"] = []obj{{"type": "function", "function": obj{"name": "weather"}}}
			var out completionOut
			res := s.ok(t, "create-chat-completion", c.args, &out)
			if len(out.ToolCalls) != 1 || !strings.Contains(string(out.ToolCalls[0].ExtraContent), thought) {
				t.Fatalf("result's calls %+v, want the thinking in the first call's extra content", out.ToolCalls)
			}
			if got := text(res); strings.Contains(got, thought) || !strings.Contains(got, "tool call toolu_1: weather") || !strings.Contains(got, "model's thinking") {
				t.Errorf("text %q: want the call named, and its thinking left out and pointed to", got)
			}
		})
	}
}

// TestGetConversationTooLarge: get-conversation answers a conversation of
// more text than a page holds with an error that says to page through it
// with list-messages, which does: its whole 32 MiB, twice over (text and
// structured content), would pass mcp-go's clients' 32 MiB message bound
// and any agent's context.
func TestGetConversationTooLarge(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		chat := e.supportChat()
		s := e.connect(overHTTP, "editor", Options{})
		big := strings.Repeat("a", 2_500_000)
		var out completionOut
		s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg(big)}, &out)
		s.ok(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "conversationId": out.ConversationID, "messages": userMsg(big)}, nil)

		msg := s.fails(t, "get-conversation", obj{"conversationId": out.ConversationID}, "payload_too_large")
		if !strings.Contains(msg, "list-messages") || !strings.Contains(msg, out.ConversationID) {
			t.Errorf("the refusal %q does not say to page through %s with list-messages", msg, out.ConversationID)
		}
		var seen int
		cursor := ""
		for range 10 {
			var l listOut[messageOut]
			s.ok(t, "list-messages", obj{"conversationId": out.ConversationID, "cursor": cursor}, &l)
			seen += len(l.Data)
			if l.NextCursor == nil {
				break
			}
			cursor = *l.NextCursor
		}
		if seen != 4 {
			t.Errorf("list-messages gave %d messages, want the 4 of two turns", seen)
		}
	})
}

// TestListMessagesReachesEveryMessage: list-messages pages a conversation
// by the size of what mcp-go sends, where each <, > and & is six bytes:
// two 1 MiB messages of markup were one page of 12 MiB, refused, and a
// message too large for any page, which no smaller limit mends, is
// refused with the cursor past it, so every message after it is reached.
func TestListMessagesReachesEveryMessage(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	chat := e.supportChat()
	s := e.connect(overHTTP, "editor", Options{})
	// The turns go in through the domain: sent as JSON by mcp-go's
	// client, which escapes markup too, they would be over the body limit.
	turn := func(conversationID string, contents ...string) string {
		t.Helper()
		var msgs []domain.InputMessage
		for _, c := range contents {
			msgs = append(msgs, domain.InputMessage{Role: domain.RoleUser, Content: &c})
		}
		c, err := e.svcs.Completions.ForChat(e.ctx("editor"), domain.ChatCompletion{ChatID: chat.ID, ConversationID: conversationID,
			CompletionParams: domain.CompletionParams{Messages: msgs}}, nil)
		must(t, err)
		return c.ConversationID
	}
	markup := strings.Repeat("<", 1<<20)
	conversation := turn("", "first", markup, markup)
	turn(conversation, strings.Repeat("<", 2_200_000)) // 13.2 MB as JSON, over an MCP result's 12 MiB alone
	turn(conversation, "after")

	var seen []string
	refused, cursor := 0, ""
	skip := regexp.MustCompile(`pass cursor "([^"]+)"`)
	for range 20 {
		res := s.call(t, "list-messages", obj{"conversationId": conversation, "cursor": cursor})
		if res.IsError {
			msg := text(res)
			m := skip.FindStringSubmatch(msg)
			if !strings.HasPrefix(msg, "payload_too_large: ") || !strings.Contains(msg, "REST API") || m == nil {
				t.Fatalf("list-messages after %d messages: %.300s; want a page, or for one message too large, where to read it and the cursor past it", len(seen), msg)
			}
			refused++
			cursor = m[1]
			continue
		}
		var l listOut[messageOut]
		decode(t, res, &l)
		for _, m := range l.Data {
			seen = append(seen, m.Content)
		}
		if l.NextCursor == nil {
			break
		}
		cursor = *l.NextCursor
	}
	if refused != 1 || len(seen) != 7 || seen[0] != "first" || seen[1] != markup || seen[2] != markup || seen[5] != "after" {
		short := make([]string, len(seen))
		for i, c := range seen {
			short[i] = fmt.Sprintf("%.10q (%d bytes)", c, len(c))
		}
		t.Errorf("list-messages gave %d messages (%s) and %d refusals; want the 7 besides the one over 12 MiB, in order, \"after\" sixth", len(seen), strings.Join(short, ", "), refused)
	}
}

// TestLargeResultsFitOneMessage: a tool's result fits one MCP message as
// the official Go SDK reads them (16 MiB a stdio line or SSE event; a
// longer one ends its session). encoding/json writes each <, > and & as
// six bytes, so a 4 MiB HTML document, as text and as structured
// content, was an 18 MiB message: its text, which repeats the structured
// content, gives way to a note, and a result too large even so is
// refused, saying where to read it.
func TestLargeResultsFitOneMessage(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overStdio, "editor", Options{})
	row := "<tr><td>a &amp; b</td><td>&lt;c&gt;</td></tr>\n"
	html := strings.Repeat(row, (4<<20)/len(row))
	doc, err := e.svcs.Documents.Create(e.ctx("editor"), domain.DocumentCreate{ProjectID: e.project.ID, Name: "table", Content: html, MimeType: "text/html"})
	must(t, err)
	var got documentOut
	res := s.ok(t, "get-document", obj{"documentId": doc.ID}, &got)
	b, err := json.Marshal(res)
	must(t, err)
	if got.Content != html || len(b) > 12<<20 || !strings.Contains(text(res), "in the structured content alone") {
		t.Errorf("get-document of a 4 MiB HTML document: content whole %v, %d bytes as JSON, text %.120q; want it whole, in at most 12 MiB, the text saying where",
			got.Content == html, len(b), text(res))
	}

	worst, err := e.svcs.Documents.Create(e.ctx("editor"), domain.DocumentCreate{ProjectID: e.project.ID, Name: "angles", Content: strings.Repeat("<", 4<<20)})
	must(t, err)
	msg := s.fails(t, "get-document", obj{"documentId": worst.ID}, "payload_too_large")
	if !strings.Contains(msg, "more than an MCP message may hold") || !strings.Contains(msg, "REST API") {
		t.Errorf("the refusal %q does not say why, nor where to read it", msg)
	}
	s.ok(t, "get-document", obj{"documentId": e.document.ID}, nil) // the session lives on

	// The structured content may hold what the text leaves out: a
	// completion's reasoning, here 5 MiB of markup.
	// Streamed (a progress token), in words of 512 bytes.
	e.upstream.Enqueue(llmtest.Behavior{Reasoning: strings.Repeat(strings.Repeat("<>", 256)+" ", 10<<9), Deltas: []string{"done"}})
	res, err = s.callErr(t, "create-chat-completion-for-chat", obj{"chatId": e.supportChat().ID, "messages": userMsg("think")}, "think-1")
	must(t, err)
	if !res.IsError || !strings.HasPrefix(text(res), "payload_too_large: ") || !strings.Contains(text(res), "more than an MCP message may hold") {
		b, _ := json.Marshal(res)
		t.Errorf("a completion whose reasoning is 5 MiB of markup: error %v, %d bytes, %.100q; want it refused, saying why", res.IsError, len(b), text(res))
	}
	s.ok(t, "get-document", obj{"documentId": e.document.ID}, nil)
}

// TestGroupByTagFollowsTheDomain: get-usage's groupBy offers the groupings
// the domain takes, as the REST API's schema (made from them) does, and
// "" for none, as an empty optional argument is taken.
func TestGroupByTagFollowsTheDomain(t *testing.T) {
	f, _ := reflect.TypeFor[getUsageArgs]().FieldByName("GroupBy")
	want := []string{""}
	for _, g := range domain.UsageGroupings {
		want = append(want, string(g))
	}
	if got := f.Tag.Get("enum"); got != strings.Join(want, ",") {
		t.Errorf("get-usage's groupBy enum tag = %q, want the domain's %q", got, strings.Join(want, ","))
	}
}
