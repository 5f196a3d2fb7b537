package rest_test

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parleyhq/parley/domain"
)

// TestCursorBelongsToItsList: a list's cursor pages that list only, with
// the filter or the path it was made for. Passed to the same kind of list
// with another project's or chat's id, or with the filter left out or
// added, it would answer that list's items after the cursor's, skipping
// the earlier ones, as a normal page; it is a 400 naming cursor instead.
// On its own list it still answers the next page.
func TestCursorBelongsToItsList(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		a, b := h.world(), h.world()
		aliceID, _ := h.user("alice")
		bobID, _ := h.user("bob")
		for _, w := range []world{a, b} {
			h.provider(h.admin, w.project)
			h.chat(h.admin, w.project, w.provider, nil)
			for range 2 {
				h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "d", "content": "x"})
				h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("hi")}})
			}
		}
		h.setRole(h.admin, a.project, aliceID, "viewer")
		h.setRole(h.admin, b.project, bobID, "viewer")
		for _, id := range []string{aliceID, bobID} {
			h.must(201, "POST", "/api/v1/users/"+id+"/api-keys", h.admin, map[string]any{"name": "second"})
		}

		cursor := func(path string) string {
			t.Helper()
			sep := "?"
			if u, _ := url.Parse(path); u.RawQuery != "" {
				sep = "&"
			}
			next, _ := h.must(200, "GET", path+sep+"limit=1", h.admin, nil)["nextCursor"].(string)
			if next == "" {
				t.Fatalf("GET %s?limit=1 has no next page", path)
			}
			return next
		}
		for _, tc := range []struct {
			name      string
			own       string   // the list whose cursor is passed
			elsewhere []string // lists of the same kind it does not belong to
		}{
			{"chats", "/api/v1/chats?projectId=" + a.project, []string{"/api/v1/chats?projectId=" + b.project, "/api/v1/chats"}},
			{"every chat", "/api/v1/chats", []string{"/api/v1/chats?projectId=" + a.project}},
			{"providers", "/api/v1/ai-providers?projectId=" + a.project, []string{"/api/v1/ai-providers?projectId=" + b.project, "/api/v1/ai-providers"}},
			{"documents", "/api/v1/documents?projectId=" + a.project, []string{"/api/v1/documents?projectId=" + b.project, "/api/v1/documents"}},
			{"conversations", "/api/v1/conversations?chatId=" + a.chat, []string{"/api/v1/conversations?chatId=" + b.chat, "/api/v1/conversations"}},
			{"members", "/api/v1/projects/" + a.project + "/members", []string{"/api/v1/projects/" + b.project + "/members"}},
			{"API keys", "/api/v1/users/" + aliceID + "/api-keys", []string{"/api/v1/users/" + bobID + "/api-keys"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := cursor(tc.own)
				for _, path := range append(tc.elsewhere, tc.own) {
					u, _ := url.Parse(path)
					q := u.Query()
					q.Set("cursor", c)
					u.RawQuery = q.Encode()
					r := h.call("GET", u.String(), h.admin, nil)
					if path == tc.own {
						if r.Status != 200 {
							t.Errorf("GET %s with its own cursor = %d %s, want 200", path, r.Status, r.Body)
						}
						continue
					}
					if r.Status != 400 || r.ErrorField() != "cursor" {
						t.Errorf("GET %s with the cursor of %s = %d %s, want 400 naming cursor", path, tc.own, r.Status, r.Body)
					}
				}
			})
		}
	})
}

// TestUsersListOfOne: a user who is not an admin lists only itself, and its
// list of one takes limit and cursor as every list does: a bad limit or a
// cursor of another list is a 400, and the page after the user is empty.
func TestUsersListOfOne(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		aliceID, alice := h.user("alice")
		ids := func(path string) []string {
			t.Helper()
			var got []string
			for _, u := range h.must(200, "GET", path, alice, nil)["data"].([]any) {
				got = append(got, u.(map[string]any)["id"].(string))
			}
			return got
		}
		if got := ids("/api/v1/users"); !reflect.DeepEqual(got, []string{aliceID}) {
			t.Errorf("alice lists users %v, want only herself", got)
		}
		after := func(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }
		if got := ids("/api/v1/users?cursor=" + after(aliceID)); len(got) != 0 {
			t.Errorf("the page after alice = %v, want empty", got)
		}
		// An id made before hers is a cursor before her.
		if got := ids("/api/v1/users?limit=1&cursor=" + after(domain.PrefixUser+strings.Repeat("0", len(aliceID)-len(domain.PrefixUser)))); !reflect.DeepEqual(got, []string{aliceID}) {
			t.Errorf("the page before alice = %v, want her", got)
		}
		for name, query := range map[string]string{
			"a chat's cursor": "cursor=" + after(w.chat),
			"limit 0":         "limit=0",
		} {
			if r := h.call("GET", "/api/v1/users?"+query, alice, nil); r.Status != 400 {
				t.Errorf("alice lists users with %s = %d %s, want 400", name, r.Status, r.Body)
			}
		}
	})
}

// TestLargeItemsEndAPageEarly: a page of large items ends, with a cursor,
// once their text passes 4 MiB, and the cursor walks every item once: 100
// chats with 1 MiB system messages were read, held and answered as one
// page of 100 MiB, and a conversation's messages as one of its whole
// history. A list of small items still answers its limit.
func TestLargeItemsEndAPageEarly(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		large := strings.Repeat("x", 1<<20-64)
		want := []string{w.chat}
		for range 9 {
			want = append(want, h.chat(h.admin, w.project, w.provider, map[string]any{"systemMessage": large}))
		}
		walk := func(path string, field string) (ids []string, pages int) {
			t.Helper()
			cursor := ""
			for ; ; pages++ {
				if pages > 20 {
					t.Fatalf("GET %s: pagination does not end", path)
				}
				p := path
				if cursor != "" {
					p += "&cursor=" + cursor
				}
				l := h.must(200, "GET", p, h.admin, nil)
				data := l["data"].([]any)
				if len(data) == 0 {
					t.Fatalf("GET %s: an empty page", p)
				}
				text := 0
				for _, it := range data {
					m := it.(map[string]any)
					ids = append(ids, m["id"].(string))
					s, _ := m[field].(string)
					text += len(s)
				}
				if len(data) > 1 && text > 4<<20 {
					t.Errorf("GET %s: a page of %d items holds %d bytes of %s, over 4 MiB", p, len(data), text, field)
				}
				next, _ := l["nextCursor"].(string)
				if next == "" {
					return ids, pages + 1
				}
				cursor = next
			}
		}
		ids, pages := walk("/api/v1/chats?limit=100&projectId="+w.project, "systemMessage")
		if !reflect.DeepEqual(ids, want) {
			t.Errorf("chats paged as %v, want %v", ids, want)
		}
		if pages < 3 {
			t.Errorf("10 chats of 9 MiB came in %d pages, want one per 4 MiB or less", pages)
		}

		part := strings.Repeat("y", 3<<19) // 1.5 MiB
		reply := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin,
			map[string]any{"messages": []any{userMessage(part), userMessage(part), userMessage(part)}})
		conv := reply["conversationId"].(string)
		ids, pages = walk("/api/v1/conversations/"+conv+"/messages?limit=100", "content")
		if len(ids) != 4 || pages != 2 {
			t.Errorf("4 messages, 3 of 1.5 MiB, came as %d in %d pages, want 4 in 2", len(ids), pages)
		}
		// Small messages, read in more than one batch: in order, each once.
		many := make([]any, 30)
		for i := range many {
			many[i] = userMessage(fmt.Sprint("m", i))
		}
		small := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": many})["conversationId"].(string)
		msgs := h.must(200, "GET", "/api/v1/conversations/"+small+"/messages?limit=100", h.admin, nil)["data"].([]any)
		for i, m := range msgs {
			if want := fmt.Sprint("m", i); i < 30 && m.(map[string]any)["content"] != want {
				t.Fatalf("message %d is %v, want %s", i, m.(map[string]any)["content"], want)
			}
		}
		if len(msgs) != 31 {
			t.Errorf("a page of 31 small messages holds %d", len(msgs))
		}
		few := h.world()
		for range 30 {
			h.chat(h.admin, few.project, few.provider, nil)
		}
		if l := h.must(200, "GET", "/api/v1/chats?limit=25&projectId="+few.project, h.admin, nil); len(l["data"].([]any)) != 25 {
			t.Errorf("a page of small chats has %d items, want its limit 25", len(l["data"].([]any)))
		}
	})
}

// TestNewestFirst: every list taking order=desc answers its items newest
// first, exactly the reverse of its default order, through pages whose
// cursors keep the order without order sent again; on each database and
// on each path a list is read by (one project, a member's projects merged,
// an admin's all). A cursor sent with the other order, an order of
// another name, and usage groups newest first are 400s naming order.
func TestNewestFirst(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		a, b := h.world(), h.world()
		aliceID, alice := h.user("alice")
		var conversation string
		for _, w := range []world{a, b} {
			h.setRole(h.admin, w.project, aliceID, "viewer")
			h.provider(h.admin, w.project)
			h.chat(h.admin, w.project, w.provider, nil)
			for range 3 {
				h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "d", "content": "x"})
				conversation = h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("hi")}})["conversationId"].(string)
			}
		}
		for range 2 {
			h.must(200, "POST", "/api/v1/chats/"+b.chat+"/completions", h.admin, map[string]any{"conversationId": conversation, "messages": []any{userMessage("more")}})
			h.must(201, "POST", "/api/v1/users/"+aliceID+"/api-keys", h.admin, map[string]any{"name": "another"})
		}
		// walk pages through path two items at a time, sending order on
		// the first page only, and returns the items' ids (idField).
		walk := func(path, key, order, idField string) []string {
			t.Helper()
			var ids []string
			cursor := ""
			for range 50 {
				q := url.Values{"limit": {"2"}}
				if cursor == "" && order != "" {
					q.Set("order", order)
				}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				sep := "?"
				if strings.Contains(path, "?") {
					sep = "&"
				}
				body := h.must(200, "GET", path+sep+q.Encode(), key, nil)
				for _, it := range body["data"].([]any) {
					ids = append(ids, it.(map[string]any)[idField].(string))
				}
				if cursor, _ = body["nextCursor"].(string); cursor == "" {
					return ids
				}
			}
			t.Fatalf("GET %s: more than 50 pages", path)
			return nil
		}
		for _, tc := range []struct{ path, key, idField string }{
			{"/api/v1/projects", alice, "id"},
			{"/api/v1/projects", h.admin, "id"},
			{"/api/v1/chats", alice, "id"},
			{"/api/v1/chats?projectId=" + a.project, h.admin, "id"},
			{"/api/v1/documents", alice, "id"},
			{"/api/v1/ai-providers", alice, "id"},
			{"/api/v1/conversations", alice, "id"},
			{"/api/v1/conversations", h.admin, "id"},
			{"/api/v1/conversations?projectId=" + b.project, alice, "id"},
			{"/api/v1/conversations?chatId=" + a.chat, h.admin, "id"},
			{"/api/v1/conversations/" + conversation + "/messages", h.admin, "id"},
			{"/api/v1/users", h.admin, "id"},
			{"/api/v1/users/" + aliceID + "/api-keys", h.admin, "id"},
			{"/api/v1/projects/" + a.project + "/members", h.admin, "userId"},
		} {
			asc, desc := walk(tc.path, tc.key, "", tc.idField), walk(tc.path, tc.key, "desc", tc.idField)
			if len(asc) < 2 {
				t.Fatalf("GET %s: %d items; the test wants several", tc.path, len(asc))
			}
			slices.Reverse(desc)
			if !slices.Equal(asc, desc) {
				t.Errorf("GET %s with order=desc, reversed: %v; want the default order's %v", tc.path, desc, asc)
			}
		}

		next := h.must(200, "GET", "/api/v1/documents?limit=1&order=desc", alice, nil)["nextCursor"].(string)
		for _, path := range []string{
			"/api/v1/documents?order=asc&cursor=" + next,
			"/api/v1/documents?order=newest",
			"/api/v1/projects/" + a.project + "/usage?groupBy=model&order=desc",
		} {
			if r := h.call("GET", path, alice, nil); r.Status != 400 || r.ErrorField() != "order" {
				t.Errorf("GET %s = %d %s, want 400 naming order", path, r.Status, r.Body)
			}
		}
		if r := h.call("GET", "/api/v1/documents?order=desc&cursor="+next, alice, nil); r.Status != 200 {
			t.Errorf("a newest-first cursor sent with order=desc = %d %s, want the next page", r.Status, r.Body)
		}
	})
}
