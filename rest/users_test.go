package rest_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
)

// TestAPIKeyRevokeAnswersTheKey: revoking answers the key as it is now
// listed, revokedAt set; revoking it again answers the same, with the
// first revokedAt.
func TestAPIKeyRevokeAnswersTheKey(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		uid, key := h.user("alice")
		k := h.must(201, "POST", "/api/v1/users/"+uid+"/api-keys", key, map[string]any{"name": "laptop"})
		path := "/api/v1/users/" + uid + "/api-keys/" + k["id"].(string)

		first := h.must(200, "DELETE", path, key, nil)
		revokedAt, _ := first["revokedAt"].(string)
		if _, err := time.Parse(time.RFC3339, revokedAt); err != nil {
			t.Errorf("revokedAt %v: %v", first["revokedAt"], err)
		}
		want := map[string]any{"id": k["id"], "userId": uid, "name": "laptop", "hint": k["hint"], "createdAt": k["createdAt"],
			"revokedAt": revokedAt}
		if !reflect.DeepEqual(first, want) {
			t.Errorf("DELETE = %v\nwant     %v", first, want)
		}
		var listed map[string]any
		for _, e := range h.must(200, "GET", "/api/v1/users/"+uid+"/api-keys", key, nil)["data"].([]any) {
			if e.(map[string]any)["id"] == k["id"] {
				listed = e.(map[string]any)
			}
		}
		if !reflect.DeepEqual(first, listed) {
			t.Errorf("DELETE = %v\nlisted   %v", first, listed)
		}

		time.Sleep(2 * time.Millisecond) // a second revokedAt would differ
		if again := h.must(200, "DELETE", path, key, nil); !reflect.DeepEqual(again, want) {
			t.Errorf("DELETE again = %v\nwant           %v", again, want)
		}
		if r := h.call("DELETE", "/api/v1/users/"+uid+"/api-keys/"+domain.NewID(domain.PrefixKey), key, nil); r.Status != 404 {
			t.Errorf("DELETE an unknown key = %d %s, want 404", r.Status, r.Body)
		}
	})
}
