package rest_test

import "testing"

// TestDocumentMimeType: a mimeType must be a media type; a refused one
// creates nothing and a PATCH to one changes nothing.
func TestDocumentMimeType(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		p := h.project(h.admin, "p")
		create := func(mimeType string) *response {
			return h.call("POST", "/api/v1/documents", h.admin, map[string]any{"projectId": p, "name": "d", "content": "x", "mimeType": mimeType})
		}
		for _, bad := range []string{"not a mime", "text", "text/plain; charset"} {
			if r := create(bad); r.Status != 400 || r.ErrorCode() != "invalid_request" {
				t.Errorf("mimeType %q = %d %s, want 400", bad, r.Status, r.Body)
			}
		}
		if n := len(h.must(200, "GET", "/api/v1/documents?projectId="+p, h.admin, nil)["data"].([]any)); n != 0 {
			t.Errorf("refused documents were created: %d", n)
		}
		r := create("text/markdown; charset=utf-8")
		if r.Status != 201 {
			t.Fatalf("a media type with a parameter = %d %s, want 201", r.Status, r.Body)
		}
		id := r.JSON()["id"].(string)
		if r := h.call("PATCH", "/api/v1/documents/"+id, h.admin, map[string]any{"mimeType": "markdown"}); r.Status != 400 {
			t.Errorf("PATCH to a bad mimeType = %d %s, want 400", r.Status, r.Body)
		}
		if got := h.must(200, "GET", "/api/v1/documents/"+id, h.admin, nil)["mimeType"]; got != "text/markdown; charset=utf-8" {
			t.Errorf("mimeType after a refused PATCH = %v", got)
		}
	})
}
