package rest_test

import (
	"net/http"
	"testing"
)

// TestMalformedIDsAreNotFound: a project or user id in a path or filter
// that holds a NUL or bytes that are not UTF-8 names nothing. PostgreSQL
// cannot take such text as a query parameter, so it must never reach the
// database: the answer is 404, as on SQLite, for members and admins alike.
func TestMalformedIDsAreNotFound(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		_, bob := h.user("bob")
		for _, bad := range []string{"%00", "prj_%00", "prj_%FF", "%C3%28"} {
			for _, c := range []struct{ method, path, key string }{
				{"GET", "/api/v1/projects/" + bad, bob},
				{"PATCH", "/api/v1/projects/" + bad, bob},
				{"DELETE", "/api/v1/projects/" + bad, bob},
				{"DELETE", "/api/v1/projects/" + bad, h.admin},
				{"GET", "/api/v1/projects/" + bad + "/members", bob},
				{"GET", "/api/v1/projects/" + bad + "/usage", bob},
				{"GET", "/api/v1/projects/" + bad + "/limits", bob},
				{"GET", "/api/v1/chats?projectId=" + bad, bob},
				{"GET", "/api/v1/documents?projectId=" + bad, bob},
				{"GET", "/api/v1/ai-providers?projectId=" + bad, bob},
				{"DELETE", "/api/v1/projects/" + w.project + "/members/" + bad, h.admin},
				{"PUT", "/api/v1/projects/" + w.project + "/members/" + bad, h.admin},
				{"GET", "/api/v1/users/" + bad + "/api-keys", h.admin},
				{"DELETE", "/api/v1/users/" + bad + "/api-keys/key_x", h.admin},
			} {
				var body any
				switch c.method {
				case "PATCH":
					body = map[string]any{"name": "x"}
				case "PUT":
					body = map[string]any{"role": "viewer"}
				}
				r := h.call(c.method, c.path, c.key, body)
				if r.Status != http.StatusNotFound {
					who := "bob"
					if c.key == h.admin {
						who = "admin"
					}
					t.Errorf("%s %s (%s) = %d, want 404: %s", c.method, c.path, who, r.Status, r.Body)
				}
			}
		}
	})
}

// TestPercentEncodedPathIDs: a path parameter is read percent-decoded, as
// a query parameter is (it was taken as sent: /projects/%70rj_… was "not
// found" while ?projectId=%70rj_… found it), and routes still match the
// path as sent, so an escaped slash in an id reaches no other route.
func TestPercentEncodedPathIDs(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		encoded := "%70" + w.project[1:]
		if got := h.must(200, "GET", "/api/v1/projects/"+encoded, h.admin, nil); got["id"] != w.project {
			t.Errorf("GET /projects/%s = %v, want project %s", encoded, got, w.project)
		}
		if r := h.call("GET", "/api/v1/projects/"+w.project+"%2Fmembers", h.admin, nil); r.Status != http.StatusNotFound {
			t.Errorf("GET /projects/%s%%2Fmembers = %d %s, want 404", w.project, r.Status, r.Body)
		}
	})
}
