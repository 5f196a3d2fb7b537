package rest_test

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestUpdateWithNothingNewKeepsUpdatedAt: a PATCH with an empty body, or
// with the values a resource already has, answers the resource as it is
// and leaves updatedAt alone; a PATCH that changes something moves it.
func TestUpdateWithNothingNewKeepsUpdatedAt(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		doc := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{
			"projectId": w.project, "name": "d", "content": "x", "metadata": map[string]any{"n": 1, "tags": []any{"a"}}})["id"].(string)
		for _, tc := range []struct {
			path       string
			same, news map[string]any
		}{
			{"/api/v1/projects/" + w.project, map[string]any{"name": "p", "description": ""}, map[string]any{"name": "p2"}},
			{"/api/v1/ai-providers/" + w.provider, map[string]any{"name": "fake", "defaultModel": "fake-default"}, map[string]any{"name": "f2"}},
			{"/api/v1/documents/" + doc, map[string]any{"name": "d", "content": "x", "metadata": map[string]any{"n": 1, "tags": []any{"a"}}}, map[string]any{"content": "y"}},
			{"/api/v1/chats/" + w.chat, map[string]any{"name": "c", "aiProviderId": w.provider, "systemMessage": "You are a test."}, map[string]any{"model": "m2"}},
		} {
			before := h.must(200, "GET", tc.path, h.admin, nil)["updatedAt"]
			time.Sleep(5 * time.Millisecond) // updatedAt has milliseconds: a write now would show
			for _, body := range []map[string]any{{}, tc.same} {
				if got := h.must(200, "PATCH", tc.path, h.admin, body)["updatedAt"]; got != before {
					t.Errorf("PATCH %s %v: updatedAt %v → %v, want it kept", tc.path, body, before, got)
				}
			}
			if got := h.must(200, "GET", tc.path, h.admin, nil)["updatedAt"]; got != before {
				t.Errorf("GET %s after PATCHes with nothing new: updatedAt %v → %v", tc.path, before, got)
			}
			if got := h.must(200, "PATCH", tc.path, h.admin, tc.news)["updatedAt"]; got == before {
				t.Errorf("PATCH %s %v left updatedAt at %v, want it moved", tc.path, tc.news, got)
			}
		}
	})
}

// TestUpdateRefusesNull: fields left out of a PATCH keep their values, so
// a field sent as null, which Go would read as left out, is a 400 naming
// it, not a 200 that silently changed nothing; and the refused PATCH
// changes nothing else it carried.
func TestUpdateRefusesNull(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		doc := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{
			"projectId": w.project, "name": "d", "content": "x", "metadata": map[string]any{"k": "v"}})["id"].(string)
		for _, tc := range []struct {
			path, field string
		}{
			{"/api/v1/projects/" + w.project, "description"},
			{"/api/v1/ai-providers/" + w.provider, "apiKey"},
			{"/api/v1/documents/" + doc, "metadata"},
			{"/api/v1/chats/" + w.chat, "systemMessage"},
		} {
			before := h.must(200, "GET", tc.path, h.admin, nil)
			r := h.call("PATCH", tc.path, h.admin, `{"name": "renamed", "`+tc.field+`": null}`)
			if r.Status != 400 || r.ErrorCode() != "invalid_request" || !strings.Contains(r.ErrorMessage(), `"`+tc.field+`" cannot be null`) {
				t.Errorf("PATCH %s with %s null = %d %s; want 400 naming %s", tc.path, tc.field, r.Status, r.Body, tc.field)
				continue
			}
			if d, _ := r.JSON()["error"].(map[string]any)["details"].(map[string]any); d["field"] != tc.field {
				t.Errorf("PATCH %s with %s null: details = %v, want field %s", tc.path, tc.field, d, tc.field)
			}
			if after := h.must(200, "GET", tc.path, h.admin, nil); !reflect.DeepEqual(after, before) {
				t.Errorf("a refused PATCH %s changed it: %v → %v", tc.path, before, after)
			}
		}
	})
}
