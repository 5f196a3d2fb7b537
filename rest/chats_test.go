package rest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestChatCRUD(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		got := h.must(200, "GET", "/api/v1/chats/"+w.chat, h.admin, nil)
		for field, want := range map[string]any{
			"id": w.chat, "projectId": w.project, "aiProviderId": w.provider, "name": "c",
			"systemMessage": "You are a test.", "model": "",
		} {
			if got[field] != want {
				t.Errorf("chat.%s = %v, want %v", field, got[field], want)
			}
		}
		if !strings.HasPrefix(w.chat, "cht_") {
			t.Errorf("chat id %q lacks the cht_ prefix", w.chat)
		}
		for _, f := range []string{"createdAt", "updatedAt"} {
			if _, err := time.Parse(time.RFC3339, got[f].(string)); err != nil || !strings.HasSuffix(got[f].(string), "Z") {
				t.Errorf("%s = %v, want ISO 8601 UTC", f, got[f])
			}
		}

		upd := h.must(200, "PATCH", "/api/v1/chats/"+w.chat, h.admin, map[string]any{"name": "renamed", "model": "m2"})
		if upd["name"] != "renamed" || upd["model"] != "m2" || upd["systemMessage"] != "You are a test." {
			t.Errorf("PATCH result = %v", upd)
		}
		// An empty aiProviderId says what it must be, not that it is
		// required: an update's fields are not.
		r := h.call("PATCH", "/api/v1/chats/"+w.chat, h.admin, map[string]any{"aiProviderId": ""})
		if want := "aiProviderId, when sent, must be the id of one of the project's AI providers (aip_...); leave it out to keep the chat's"; r.Status != 400 ||
			r.ErrorField() != "aiProviderId" || r.ErrorMessage() != want {
			t.Errorf("PATCH with an empty aiProviderId = %d %s; want 400 saying %q", r.Status, r.Body, want)
		}

		del := h.must(200, "DELETE", "/api/v1/chats/"+w.chat, h.admin, nil)
		if del["id"] != w.chat || del["deleted"] != true {
			t.Errorf("DELETE result = %v", del)
		}
		if r := h.call("GET", "/api/v1/chats/"+w.chat, h.admin, nil); r.Status != 404 || r.ErrorCode() != "not_found" {
			t.Errorf("GET after delete = %d %s", r.Status, r.Body)
		}
	})
}

func TestChatListPaginates(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		other := h.world() // a second project: must not appear under w's filter
		want := []string{w.chat}
		for i := range 4 {
			want = append(want, h.chat(h.admin, w.project, w.provider, map[string]any{"name": fmt.Sprint(i)}))
		}
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
			path := "/api/v1/chats?limit=2&projectId=" + w.project
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			l := h.must(200, "GET", path, h.admin, nil)
			data := l["data"].([]any)
			if len(data) > 2 {
				t.Fatalf("page has %d items, limit 2", len(data))
			}
			for _, c := range data {
				got = append(got, c.(map[string]any)["id"].(string))
			}
			next, _ := l["nextCursor"].(string)
			if next == "" {
				if l["nextCursor"] != nil {
					t.Fatalf("nextCursor = %v, want null", l["nextCursor"])
				}
				break
			}
			cursor = next
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("paged ids = %v, want %v", got, want)
		}
		all := h.must(200, "GET", "/api/v1/chats?limit=100", h.admin, nil)["data"].([]any)
		if len(all) != 6 {
			t.Errorf("unfiltered list has %d chats, want 6 (both projects)", len(all))
		}
		_ = other

		for _, bad := range []string{"limit=0", "limit=101", "limit=x", "cursor=!!!", "projectid=" + w.project} {
			if r := h.call("GET", "/api/v1/chats?"+bad, h.admin, nil); r.Status != 400 {
				t.Errorf("GET /chats?%s = %d, want 400", bad, r.Status)
			}
		}
		// A cursor from another kind of list would page past every chat,
		// or before them all, and look like a normal page.
		chats := h.must(200, "GET", "/api/v1/chats?limit=1", h.admin, nil)["nextCursor"].(string)
		projects := h.must(200, "GET", "/api/v1/projects?limit=1", h.admin, nil)["nextCursor"].(string)
		for path, cursor := range map[string]string{"/api/v1/chats": projects, "/api/v1/documents": chats, "/api/v1/projects": chats} {
			r := h.call("GET", path+"?cursor="+cursor, h.admin, nil)
			if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "another list") {
				t.Errorf("GET %s with another list's cursor = %d %s, want 400", path, r.Status, r.Body)
			}
		}
	})
}

func TestChatValidation(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		other := h.world()
		tests := []struct {
			name   string
			body   any
			status int
			field  string
		}{
			{"provider of another project", map[string]any{"projectId": w.project, "aiProviderId": other.provider}, 400, "aiProviderId"},
			{"missing provider", map[string]any{"projectId": w.project}, 400, "aiProviderId"},
			{"missing project", map[string]any{"aiProviderId": w.provider}, 400, "projectId"},
			{"unknown field", `{"projectId":"` + w.project + `","aiProviderId":"` + w.provider + `","colour":"red"}`, 400, "colour"},
			{"wrong case", `{"ProjectId":"` + w.project + `","aiProviderId":"` + w.provider + `"}`, 400, "ProjectId"},
			{"duplicate key", `{"projectId":"` + w.project + `","projectId":"` + w.project + `","aiProviderId":"` + w.provider + `"}`, 400, "projectId"},
			{"wrong type", `{"projectId":"` + w.project + `","aiProviderId":"` + w.provider + `","name":7}`, 400, "name"},
			{"second value", `{"projectId":"` + w.project + `","aiProviderId":"` + w.provider + `"} {}`, 400, ""},
			{"not json", `{"projectId":`, 400, ""},
			{"empty body", ``, 400, ""},
			{"name too long", map[string]any{"projectId": w.project, "aiProviderId": w.provider, "name": strings.Repeat("x", 201)}, 400, "name"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := len(h.must(200, "GET", "/api/v1/chats?limit=100", h.admin, nil)["data"].([]any))
				r := h.call("POST", "/api/v1/chats", h.admin, tt.body)
				if r.Status != tt.status || r.ErrorCode() != "invalid_request" {
					t.Fatalf("status %d, body %s; want %d invalid_request", r.Status, r.Body, tt.status)
				}
				if tt.field != "" {
					details, _ := r.JSON()["error"].(map[string]any)["details"].(map[string]any)
					if details["field"] != tt.field {
						t.Errorf("details.field = %v, want %q (message %q)", details["field"], tt.field, r.ErrorMessage())
					}
				}
				after := len(h.must(200, "GET", "/api/v1/chats?limit=100", h.admin, nil)["data"].([]any))
				if after != before {
					t.Errorf("a refused request changed the chat count from %d to %d", before, after)
				}
			})
		}
	})
}
