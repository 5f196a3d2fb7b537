package rest_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/policies"
	"github.com/parleyhq/parley/policy"
)

// TestPermissionMatrix runs every action as each role of the project that
// owns the resource, and as an outsider: a role with the permission
// succeeds, a member without it gets 403, an outsider gets 404.
func TestPermissionMatrix(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		users := map[string]string{} // role → key
		ids := map[string]string{}   // role → user id
		for _, role := range []string{"viewer", "editor", "owner", "outsider", "bystander"} {
			ids[role], users[role] = h.user(role)
		}
		// fresh makes the resources an action works on, so that deletes do
		// not starve later rows.
		type fixture struct{ project, provider, chat, doc, conv string }
		fresh := func() fixture {
			p := h.project(users["owner"], "matrix")
			for _, role := range []string{"viewer", "editor"} {
				h.setRole(users["owner"], p, ids[role], role)
			}
			// A member none of the callers is: any member may remove
			// itself (TestMembersLeave), so removing another shows the
			// permission.
			h.setRole(users["owner"], p, ids["bystander"], "viewer")
			prov := h.provider(users["owner"], p)
			chat := h.chat(users["owner"], p, prov, nil)
			doc := h.must(201, "POST", "/api/v1/documents", users["owner"], map[string]any{"projectId": p, "name": "d", "content": "c"})["id"].(string)
			conv := h.must(200, "POST", "/api/v1/chats/"+chat+"/completions", users["owner"], map[string]any{"messages": []any{userMessage("x")}})["conversationId"].(string)
			return fixture{p, prov, chat, doc, conv}
		}
		f := fresh()
		msgs := []any{userMessage("hi")}

		type action struct {
			perm    string
			allowed []string // roles with the permission (the owner always has it)
			method  string
			path    func(fixture) string
			body    func(fixture) any
			ok      int
			mutates bool
		}
		viewer := []string{"viewer", "editor", "owner"}
		editor := []string{"editor", "owner"}
		owner := []string{"owner"}
		actions := []action{
			{"projects:GetProject", viewer, "GET", func(f fixture) string { return "/api/v1/projects/" + f.project }, nil, 200, false},
			{"projects:UpdateProject", owner, "PATCH", func(f fixture) string { return "/api/v1/projects/" + f.project }, func(fixture) any { return map[string]any{"name": "n"} }, 200, false},
			{"projects:DeleteProject", owner, "DELETE", func(f fixture) string { return "/api/v1/projects/" + f.project }, nil, 200, true},
			{"members:ListMembers", viewer, "GET", func(f fixture) string { return "/api/v1/projects/" + f.project + "/members" }, nil, 200, false},
			{"members:PutMember", owner, "PUT", func(f fixture) string { return "/api/v1/projects/" + f.project + "/members/" + ids["bystander"] }, func(fixture) any { return map[string]any{"role": "editor"} }, 200, true},
			{"members:DeleteMember", owner, "DELETE", func(f fixture) string { return "/api/v1/projects/" + f.project + "/members/" + ids["bystander"] }, nil, 200, true},
			{"projects:GetProject (limits)", viewer, "GET", func(f fixture) string { return "/api/v1/projects/" + f.project + "/limits" }, nil, 200, false},
			{"projects:SetProjectLimits", owner, "PUT", func(f fixture) string { return "/api/v1/projects/" + f.project + "/limits" }, func(fixture) any { return map[string]any{"requestsPerMinute": 0} }, 200, false},
			{"usage:GetUsage", viewer, "GET", func(f fixture) string { return "/api/v1/projects/" + f.project + "/usage" }, nil, 200, false},
			{"aiProviders:ListAIProviders", viewer, "GET", func(f fixture) string { return "/api/v1/ai-providers?projectId=" + f.project }, nil, 200, false},
			{"aiProviders:GetAIProvider", viewer, "GET", func(f fixture) string { return "/api/v1/ai-providers/" + f.provider }, nil, 200, false},
			{"aiProviders:CreateAIProvider", owner, "POST", func(fixture) string { return "/api/v1/ai-providers" }, func(f fixture) any {
				return map[string]any{"projectId": f.project, "name": "x", "type": "openai-compatible", "baseUrl": h.up.URL(), "defaultModel": "m"}
			}, 201, false},
			{"aiProviders:UpdateAIProvider", owner, "PATCH", func(f fixture) string { return "/api/v1/ai-providers/" + f.provider }, func(fixture) any { return map[string]any{"name": "y"} }, 200, false},
			{"aiProviders:UseAIProvider", editor, "POST", func(fixture) string { return "/api/v1/chats/completions" }, func(f fixture) any { return map[string]any{"aiProviderId": f.provider, "messages": msgs} }, 200, false},
			{"documents:ListDocuments", viewer, "GET", func(f fixture) string { return "/api/v1/documents?projectId=" + f.project }, nil, 200, false},
			{"documents:GetDocument", viewer, "GET", func(f fixture) string { return "/api/v1/documents/" + f.doc }, nil, 200, false},
			{"documents:CreateDocument", editor, "POST", func(fixture) string { return "/api/v1/documents" }, func(f fixture) any { return map[string]any{"projectId": f.project, "name": "n", "content": "c"} }, 201, false},
			{"documents:UpdateDocument", editor, "PATCH", func(f fixture) string { return "/api/v1/documents/" + f.doc }, func(fixture) any { return map[string]any{"name": "m"} }, 200, false},
			{"documents:DeleteDocument", editor, "DELETE", func(f fixture) string { return "/api/v1/documents/" + f.doc }, nil, 200, true},
			{"chats:ListChats", viewer, "GET", func(f fixture) string { return "/api/v1/chats?projectId=" + f.project }, nil, 200, false},
			{"chats:GetChat", viewer, "GET", func(f fixture) string { return "/api/v1/chats/" + f.chat }, nil, 200, false},
			{"chats:CreateChat", editor, "POST", func(fixture) string { return "/api/v1/chats" }, func(f fixture) any { return map[string]any{"projectId": f.project, "aiProviderId": f.provider} }, 201, false},
			{"chats:UpdateChat", editor, "PATCH", func(f fixture) string { return "/api/v1/chats/" + f.chat }, func(fixture) any { return map[string]any{"name": "z"} }, 200, false},
			{"chats:CreateChatCompletion", editor, "POST", func(f fixture) string { return "/api/v1/chats/" + f.chat + "/completions" }, func(fixture) any { return map[string]any{"messages": msgs} }, 200, false},
			{"chats:CreateChatCompletion", editor, "GET", func(f fixture) string { return "/api/v1/chats/" + f.chat + "/models" }, nil, 200, false},
			{"aiProviders:UseAIProvider", editor, "GET", func(f fixture) string { return "/api/v1/models?aiProviderId=" + f.provider }, nil, 200, false},
			{"chats:DeleteChat", editor, "DELETE", func(f fixture) string { return "/api/v1/chats/" + f.chat }, nil, 200, true},
			{"conversations:ListConversations", viewer, "GET", func(f fixture) string { return "/api/v1/conversations?chatId=" + f.chat }, nil, 200, false},
			{"conversations:GetConversation", viewer, "GET", func(f fixture) string { return "/api/v1/conversations/" + f.conv }, nil, 200, false},
			{"conversations:DeleteConversation", editor, "DELETE", func(f fixture) string { return "/api/v1/conversations/" + f.conv }, nil, 200, true},
			{"aiProviders:DeleteAIProvider", owner, "DELETE", func(f fixture) string { return "/api/v1/ai-providers/" + f.provider }, nil, 409, false}, // chats still use it
		}
		for _, a := range actions {
			for _, role := range []string{"outsider", "viewer", "editor", "owner"} {
				t.Run(a.perm+"/"+role, func(t *testing.T) {
					want := 404
					if role != "outsider" {
						want = 403
						for _, r := range a.allowed {
							if r == role {
								want = a.ok
							}
						}
					}
					var body any
					if a.body != nil {
						body = a.body(f)
					}
					r := h.call(a.method, a.path(f), users[role], body)
					if r.Status != want {
						t.Fatalf("%s %s as %s = %d, want %d: %s", a.method, a.path(f), role, r.Status, want, r.Body)
					}
					if want >= 400 {
						code := map[int]string{403: "forbidden", 404: "not_found", 409: "conflict"}[want]
						if r.ErrorCode() != code {
							t.Errorf("error code = %q, want %q", r.ErrorCode(), code)
						}
					}
					if a.mutates && want < 300 {
						f = fresh()
					}
				})
			}
		}
		// An admin may do everything in every project.
		h.must(200, "GET", "/api/v1/chats/"+f.chat, h.admin, nil)
		// Listing without a filter shows only the projects one belongs to.
		for _, c := range h.must(200, "GET", "/api/v1/chats?limit=100", users["outsider"], nil)["data"].([]any) {
			t.Errorf("outsider sees chat %v", c)
		}
		if got := len(h.must(200, "GET", "/api/v1/projects?limit=100", users["outsider"], nil)["data"].([]any)); got != 0 {
			t.Errorf("outsider sees %d projects, want 0", got)
		}
		if r := h.call("GET", "/api/v1/chats?projectId="+f.project, users["outsider"], nil); r.Status != 404 {
			t.Errorf("outsider filtering by a project it cannot see = %d, want 404", r.Status)
		}
	})
}

func TestUsersAndKeys(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		aliceID, alice := h.user("alice")
		bobID, _ := h.user("bob")
		me := h.must(200, "GET", "/api/v1/me", alice, nil)
		if me["id"] != aliceID || me["name"] != "alice" || me["isAdmin"] != false {
			t.Errorf("/me = %v", me)
		}
		if r := h.call("POST", "/api/v1/users", alice, map[string]any{"name": "eve"}); r.Status != 403 {
			t.Errorf("non-admin POST /users = %d, want 403", r.Status)
		}
		if r := h.call("GET", "/api/v1/users/"+bobID+"/api-keys", alice, nil); r.Status != 404 {
			t.Errorf("alice reading bob's keys = %d, want 404", r.Status)
		}
		k := h.must(201, "POST", "/api/v1/users/"+aliceID+"/api-keys", alice, map[string]any{"name": "second"})
		secretKey := k["key"].(string)
		list := h.must(200, "GET", "/api/v1/users/"+aliceID+"/api-keys", alice, nil)
		if got := fmt.Sprint(list); len(list["data"].([]any)) != 2 || strings.Contains(got, secretKey) {
			t.Errorf("key list = %v", list)
		}
		h.must(200, "GET", "/api/v1/me", secretKey, nil)
		h.must(200, "DELETE", "/api/v1/users/"+aliceID+"/api-keys/"+k["id"].(string), alice, nil)
		r := h.call("GET", "/api/v1/me", secretKey, nil)
		if r.Status != 401 || r.ErrorCode() != "unauthenticated" || r.Header.Get("WWW-Authenticate") != `Bearer realm="parley", error="invalid_token"` {
			t.Errorf("revoked key = %d %s (WWW-Authenticate %q)", r.Status, r.Body, r.Header.Get("WWW-Authenticate"))
		}
		for _, key := range []string{"", "pk_nope", "Basic abc"} {
			if r := h.call("GET", "/api/v1/me", key, nil); r.Status != 401 {
				t.Errorf("key %q = %d, want 401", key, r.Status)
			}
		}
		if r := h.call("GET", "/api/v1/me", "", nil); r.Header.Get("WWW-Authenticate") != `Bearer realm="parley"` {
			t.Errorf("no key: WWW-Authenticate %q, want the bare challenge", r.Header.Get("WWW-Authenticate"))
		}
	})
}

// TestMissingProjectIsNotFoundForAdmins: a project named in a path or a
// filter that does not exist is a 404 naming it for an admin too, whose
// role comes from no membership, not an empty list or a report of zeros.
func TestMissingProjectIsNotFoundForAdmins(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		const missing = "prj_06h3j21pyc8h8y42nn3328e0bx" // well formed, never created
		_, key := h.user("someone")
		for _, path := range []string{
			"/api/v1/chats?projectId=" + missing,
			"/api/v1/documents?projectId=" + missing,
			"/api/v1/ai-providers?projectId=" + missing,
			"/api/v1/projects/" + missing + "/members",
			"/api/v1/projects/" + missing + "/usage",
			"/api/v1/projects/" + missing + "/limits",
		} {
			for who, k := range map[string]string{"admin": h.admin, "non-member": key} {
				r := h.call("GET", path, k, nil)
				if r.Status != 404 || r.ErrorCode() != "not_found" {
					t.Errorf("%s: GET %s = %d %s, want 404 not_found", who, path, r.Status, r.Body)
					continue
				}
				if want := "project " + missing + " does not exist"; r.ErrorMessage() != want {
					t.Errorf("%s: GET %s says %q, want %q", who, path, r.ErrorMessage(), want)
				}
			}
		}
	})
}

// TestDebugNeedsReadAccess runs completions under a policy whose editor
// may run them and read the chat, but read neither AI providers nor
// conversations: debug: true is refused, with 403 before anything goes
// upstream, where it would show what the caller may not read (the
// provider's configuration; the history of the conversation it
// continues), streamed or not, and runs where it shows nothing more.
func TestDebugNeedsReadAccess(t *testing.T) {
	authz, err := policy.NewFrom(policies.Model, `
p, editor, chats:CreateChatCompletion
p, editor, chats:GetChat
p, editor, aiProviders:UseAIProvider
p, admin, *`)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) { c.Authorizer = authz })
	w := h.world()
	uid, editor := h.user("editor")
	h.setRole(h.admin, w.project, uid, "editor")
	chatPath := "/api/v1/chats/" + w.chat + "/completions"
	first := h.must(200, "POST", chatPath, editor, map[string]any{"debug": true, "messages": []any{userMessage("the secret plan")}})
	if first["debug"] == nil {
		t.Fatalf("debug on a new conversation: no debug in %v", first)
	}
	conv := first["conversationId"].(string)

	for _, c := range []struct {
		name, path string
		body       map[string]any
		perm       string // refused with debug for want of it; "" runs
	}{
		{"per chat, new conversation", chatPath, map[string]any{}, ""},
		{"per chat, continued", chatPath, map[string]any{"conversationId": conv}, "conversations:GetConversation"},
		{"stateless", "/api/v1/chats/completions", map[string]any{"aiProviderId": w.provider}, "aiProviders:GetAIProvider"},
	} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, stream %v", c.name, stream), func(t *testing.T) {
				body := maps.Clone(c.body)
				body["messages"], body["stream"], body["debug"] = []any{userMessage("go on")}, stream, true
				before := h.up.Count()
				r := h.call("POST", c.path, editor, body)
				if c.perm == "" {
					if r.Status != 200 || !strings.Contains(string(r.Body), `"debug":`) {
						t.Fatalf("POST %s with debug = %d %s, want 200 with debug", c.path, r.Status, r.Body)
					}
					return
				}
				if r.Status != 403 || r.ErrorCode() != "forbidden" {
					t.Fatalf("POST %s with debug = %d %s, want 403", c.path, r.Status, r.Body)
				}
				if msg := r.ErrorMessage(); !strings.Contains(msg, "debug: true") || !strings.Contains(msg, c.perm) {
					t.Errorf("message %q, want it to name debug and %s", msg, c.perm)
				}
				if h.up.Count() != before {
					t.Error("a completion refused for its debug reached the upstream")
				}
				delete(body, "debug")
				if r := h.call("POST", c.path, editor, body); r.Status != 200 {
					t.Errorf("the same without debug = %d %s, want 200", r.Status, r.Body)
				}
			})
		}
	}
}
