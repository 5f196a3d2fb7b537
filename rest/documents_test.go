package rest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDocumentMimeType: a mimeType must be a media type, one a client can
// send as a Content-Type header (no line break or other control character
// within it; the whitespace around it is dropped); a refused one creates
// nothing and a PATCH to one changes nothing.
func TestDocumentMimeType(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		p := h.project(h.admin, "p")
		create := func(mimeType string) *response {
			return h.call("POST", "/api/v1/documents", h.admin, map[string]any{"projectId": p, "name": "d", "content": "x", "mimeType": mimeType})
		}
		for _, bad := range []string{"not a mime", "text", "text/plain; charset", "text/plain;\ncharset=utf-8", "text/plain;\r\n charset=utf-8", "text/plain;\x7fcharset=utf-8"} {
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
		if got := h.must(200, "PATCH", "/api/v1/documents/"+id, h.admin, map[string]any{"mimeType": " text/html\n"})["mimeType"]; got != "text/html" {
			t.Errorf("PATCH mimeType \" text/html\\n\" answered mimeType %q, want \"text/html\"", got)
		}
		if got := create("\ttext/csv ").JSON()["mimeType"]; got != "text/csv" {
			t.Errorf("mimeType \"\\ttext/csv \" answered %q, want \"text/csv\"", got)
		}
	})
}

// TestDocumentMetadataKeepsNumbers: metadata's numbers come back as they
// were sent, on create, get and list: a 64-bit id past 2⁵³, -0 and a
// fraction are not rounded through float64. Metadata that is not an
// object is a 400.
func TestDocumentMetadataKeepsNumbers(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		p := h.project(h.admin, "p")
		const meta = `{"big":12345678901234567890,"f":1.5,"neg":-0,"nested":{"id":9007199254740993}}` // keys in order, as maps are written
		r := h.call("POST", "/api/v1/documents", h.admin, `{"projectId":"`+p+`","name":"d","content":"x","metadata":`+meta+`}`)
		if r.Status != 201 {
			t.Fatalf("create = %d %s", r.Status, r.Body)
		}
		id := r.JSON()["id"].(string)
		for _, got := range []*response{r, h.call("GET", "/api/v1/documents/"+id, h.admin, nil), h.call("GET", "/api/v1/documents?projectId="+p, h.admin, nil)} {
			if !strings.Contains(string(got.Body), `"metadata":`+meta) {
				t.Errorf("metadata sent as %s came back in %s", meta, got.Body)
			}
		}
		for _, bad := range []string{`[1]`, `"x"`, `5`} {
			r := h.call("PATCH", "/api/v1/documents/"+id, h.admin, `{"metadata":`+bad+`}`)
			if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "metadata must be a JSON object") {
				t.Errorf("metadata %s = %d %s, want 400", bad, r.Status, r.Body)
			}
		}
	})
}

// TestDocumentMetadataDepth: metadata nested deeper than 32 levels is a
// 400 naming metadata, on create and update, and changes nothing: every
// member's client must still parse the project's documents (Python's json
// gives up near 1,000 levels, Ruby's at 100, jq 1.6 at 256).
func TestDocumentMetadataDepth(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		p := h.project(h.admin, "p")
		nested := func(levels int) string {
			return strings.Repeat(`{"a":`, levels-1) + `{"a":1}` + strings.Repeat(`}`, levels-1)
		}
		create := func(meta string) *response {
			return h.call("POST", "/api/v1/documents", h.admin, `{"projectId":"`+p+`","name":"d","content":"x","metadata":`+meta+`}`)
		}
		r := create(nested(32))
		if r.Status != 201 {
			t.Fatalf("metadata 32 levels deep = %d %s, want 201", r.Status, r.Body)
		}
		id := r.JSON()["id"].(string)
		for _, meta := range []string{nested(33), nested(2000), `{"list":[` + strings.Repeat(`[`, 32) + strings.Repeat(`]`, 32) + `]}`} {
			if r := create(meta); r.Status != 400 || r.ErrorField() != "metadata" || !strings.Contains(r.ErrorMessage(), "the limit is 32") {
				t.Errorf("create with metadata %.40s… = %d %.200s, want 400 naming metadata and its limit", meta, r.Status, r.Body)
			}
			if r := h.call("PATCH", "/api/v1/documents/"+id, h.admin, `{"metadata":`+meta+`}`); r.Status != 400 || r.ErrorField() != "metadata" {
				t.Errorf("PATCH to metadata %.40s… = %d %.200s, want 400 naming metadata", meta, r.Status, r.Body)
			}
		}
		if n := len(h.must(200, "GET", "/api/v1/documents?projectId="+p, h.admin, nil)["data"].([]any)); n != 1 {
			t.Errorf("refused documents were created: %d documents, want 1", n)
		}
		if got := h.call("GET", "/api/v1/documents/"+id, h.admin, nil); !strings.Contains(string(got.Body), `"metadata":`+nested(32)) {
			t.Errorf("a refused PATCH changed the metadata: %.200s", got.Body)
		}
	})
}

// TestDocumentMetadataNumbersFitADouble: a number in metadata beyond what
// a 64-bit float holds (1e400) is a 400 naming where it is, on create and
// update, and changes nothing: many JSON parsers (Go's encoding/json, Rust's
// serde_json) refuse it, and every member's client reads it in each list of
// documents. Numbers a double holds, rounded or not, are taken.
func TestDocumentMetadataNumbersFitADouble(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		p := h.project(h.admin, "p")
		create := func(meta string) *response {
			return h.call("POST", "/api/v1/documents", h.admin, `{"projectId":"`+p+`","name":"d","content":"x","metadata":`+meta+`}`)
		}
		const fits = `{"big":1.7976931348623157e308,"id":12345678901234567890,"small":-1e-400}` // keys in order, as maps are written
		r := create(fits)
		if r.Status != 201 {
			t.Fatalf("metadata %s = %d %s, want 201", fits, r.Status, r.Body)
		}
		id := r.JSON()["id"].(string)
		for _, tc := range []struct{ meta, at string }{
			{`{"n":1e400}`, "metadata.n"},
			{`{"n":-1e400}`, "metadata.n"},
			{`{"o":{"list":[1,2,1e309]}}`, "metadata.o.list[2]"},
			{`{"n":` + strings.Repeat("9", 400) + `}`, "metadata.n"},
		} {
			if r := create(tc.meta); r.Status != 400 || r.ErrorField() != "metadata" || !strings.Contains(r.ErrorMessage(), tc.at) {
				t.Errorf("create with metadata %.60s = %d %.300s, want 400 naming metadata and %s", tc.meta, r.Status, r.Body, tc.at)
			}
			if r := h.call("PATCH", "/api/v1/documents/"+id, h.admin, `{"metadata":`+tc.meta+`}`); r.Status != 400 || r.ErrorField() != "metadata" {
				t.Errorf("PATCH to metadata %.60s = %d %.300s, want 400 naming metadata", tc.meta, r.Status, r.Body)
			}
		}
		list := h.must(200, "GET", "/api/v1/documents?projectId="+p, h.admin, nil)["data"].([]any) // parsed with encoding/json
		if len(list) != 1 {
			t.Errorf("refused documents were created: %d documents, want 1", len(list))
		}
		if got := h.call("GET", "/api/v1/documents/"+id, h.admin, nil); !strings.Contains(string(got.Body), `"metadata":`+fits) {
			t.Errorf("a refused PATCH changed the metadata: %.200s", got.Body)
		}
	})
}

// TestDocumentListLeavesOutContent: a list of documents gives each one's
// fields and the size of its content in bytes, but not the content (a
// page of 100 could hold 400 MiB); get, create and update still give it.
func TestDocumentListLeavesOutContent(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		p := h.project(h.admin, "p")
		contents := map[string]int{ // content → its size in bytes
			"Refunds take 5 days.":      20,
			"Rückerstattung: 5 Tage €.": 28, // ü and € are 2 and 3 bytes in UTF-8
			"退款需要五天 😀":                  23, // 6 CJK characters of 3 bytes, a space, a 4-byte emoji
		}
		docs := map[string]string{} // id → content
		for content, size := range contents {
			created := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": p, "name": "d", "content": content, "metadata": map[string]any{"k": "v"}})
			if created["content"] != content || created["bytes"] != float64(size) {
				t.Errorf("create gave content %q, bytes %v; want %q, %d", created["content"], created["bytes"], content, size)
			}
			docs[created["id"].(string)] = content
		}
		list := h.must(200, "GET", "/api/v1/documents?projectId="+p, h.admin, nil)["data"].([]any)
		if len(list) != len(contents) {
			t.Fatalf("list has %d documents, want %d", len(list), len(contents))
		}
		for _, it := range list {
			d := it.(map[string]any)
			id := d["id"].(string)
			if _, ok := d["content"]; ok {
				t.Errorf("the list gives %s's content", id)
			}
			if got, want := d["bytes"], float64(contents[docs[id]]); got != want {
				t.Errorf("list: %s has bytes %v, want %v (content %q)", id, got, want, docs[id])
			}
			for _, field := range []string{"projectId", "name", "mimeType", "metadata", "createdAt", "updatedAt"} {
				if _, ok := d[field]; !ok {
					t.Errorf("list: %s has no %s: %v", id, field, d)
				}
			}
			got := h.must(200, "GET", "/api/v1/documents/"+id, h.admin, nil)
			if got["content"] != docs[id] || got["bytes"] != d["bytes"] {
				t.Errorf("get %s = content %q, bytes %v; want %q, %v", id, got["content"], got["bytes"], docs[id], d["bytes"])
			}
		}
		up := h.must(200, "PATCH", "/api/v1/documents/"+list[0].(map[string]any)["id"].(string), h.admin, map[string]any{"content": "Näher"})
		if up["content"] != "Näher" || up["bytes"] != float64(6) {
			t.Errorf("update gave content %q, bytes %v; want Näher, 6", up["content"], up["bytes"])
		}
	})
}

// TestDocumentMetadataSize: metadata over 64 KiB as compact JSON is a 400
// naming metadata and its limit, on create and update, and changes
// nothing: every list of documents gives every document's metadata. The
// size is JSON.stringify's: < is one byte (not Go's \u003c), € three.
func TestDocumentMetadataSize(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		p := h.project(h.admin, "p")
		meta := func(s string) string { return `{"a":"` + s + `"}` } // 8 bytes and s
		create := func(meta string) *response {
			return h.call("POST", "/api/v1/documents", h.admin, `{"projectId":"`+p+`","name":"d","content":"x","metadata":`+meta+`}`)
		}
		atLimit := meta(strings.Repeat("<", 64<<10-8))
		r := create(atLimit)
		if r.Status != 201 {
			t.Fatalf("metadata of 64 KiB = %d %.200s, want 201", r.Status, r.Body)
		}
		id := r.JSON()["id"].(string)
		keys := make([]string, 8000) // "k0000":1, … : 8 or 9 bytes each
		for i := range keys {
			keys[i] = fmt.Sprintf(`"k%04d":1`, i)
		}
		for name, meta := range map[string]string{
			"a byte over":            meta(strings.Repeat("x", 64<<10-7)),
			"multibyte, a byte over": meta(strings.Repeat("€", (64<<10-8)/3) + "xxx"),
			"many keys":              "{" + strings.Join(keys, ",") + "}",
		} {
			if r := create(meta); r.Status != 400 || r.ErrorField() != "metadata" || !strings.Contains(r.ErrorMessage(), "the limit is 65536") {
				t.Errorf("create with metadata %s = %d %.200s, want 400 naming metadata and its limit", name, r.Status, r.Body)
			}
			if r := h.call("PATCH", "/api/v1/documents/"+id, h.admin, `{"metadata":`+meta+`}`); r.Status != 400 || r.ErrorField() != "metadata" {
				t.Errorf("PATCH to metadata %s = %d %.200s, want 400 naming metadata", name, r.Status, r.Body)
			}
		}
		if n := len(h.must(200, "GET", "/api/v1/documents?projectId="+p, h.admin, nil)["data"].([]any)); n != 1 {
			t.Errorf("refused documents were created: %d documents, want 1", n)
		}
		if got := h.must(200, "GET", "/api/v1/documents/"+id, h.admin, nil)["metadata"].(map[string]any)["a"]; got != strings.Repeat("<", 64<<10-8) {
			t.Errorf("a refused PATCH changed the metadata to %.40q…", got)
		}
	})
}

// TestDocumentFieldErrors: a field of only whitespace is called blank and
// a missing one required, for content and for names alike; content over
// 4 MiB is a 413 that names the field, as other field errors do.
func TestDocumentFieldErrors(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		p := h.project(h.admin, "p")
		id := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": p, "name": "d", "content": "x"})["id"].(string)
		for _, tt := range []struct {
			name, method, path string
			body               map[string]any
			status             int
			field, message     string
		}{
			{"blank content", "POST", "/api/v1/documents", map[string]any{"projectId": p, "name": "d", "content": " \n\t"}, 400, "content", "content must not be blank"},
			{"missing content", "POST", "/api/v1/documents", map[string]any{"projectId": p, "name": "d"}, 400, "content", "content is required: it is missing or empty"},
			{"empty content", "POST", "/api/v1/documents", map[string]any{"projectId": p, "name": "d", "content": ""}, 400, "content", "content is required: it is missing or empty"},
			{"blank name", "POST", "/api/v1/documents", map[string]any{"projectId": p, "name": "  ", "content": "x"}, 400, "name", "name must not be blank"},
			{"missing name", "POST", "/api/v1/documents", map[string]any{"projectId": p, "content": "x"}, 400, "name", "name is required"},
			{"PATCH to blank content", "PATCH", "/api/v1/documents/" + id, map[string]any{"content": "   "}, 400, "content", "content must not be blank"},
			// Sent empty, a field that cannot be says so, not that it is
			// required (an update's fields are not).
			{"PATCH to empty content", "PATCH", "/api/v1/documents/" + id, map[string]any{"content": ""}, 400, "content",
				"content, when sent, must not be empty; leave it out to keep the document's"},
			{"PATCH to blank name", "PATCH", "/api/v1/documents/" + id, map[string]any{"name": " "}, 400, "name", "name must not be blank"},
			{"PATCH to a blank project name", "PATCH", "/api/v1/projects/" + p, map[string]any{"name": " "}, 400, "name", "name must not be blank"},
			{"PATCH to an empty name", "PATCH", "/api/v1/documents/" + id, map[string]any{"name": ""}, 400, "name",
				"name, when sent, must not be empty; leave it out to keep the document's"},
			{"PATCH to an empty project name", "PATCH", "/api/v1/projects/" + p, map[string]any{"name": ""}, 400, "name",
				"name, when sent, must not be empty; leave it out to keep the project's"},
			{"content over 4 MiB", "POST", "/api/v1/documents", map[string]any{"projectId": p, "name": "d", "content": strings.Repeat("x", 4<<20+1)}, 413, "content", "the limit is 4194304"},
			{"PATCH to content over 4 MiB", "PATCH", "/api/v1/documents/" + id, map[string]any{"content": strings.Repeat("é", 2<<20+1)}, 413, "content", "content is 4194306 bytes"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := h.call(tt.method, tt.path, h.admin, tt.body)
				if r.Status != tt.status || r.ErrorField() != tt.field || !strings.Contains(r.ErrorMessage(), tt.message) {
					t.Errorf("= %d %.300s; want %d naming %s, saying %q", r.Status, r.Body, tt.status, tt.field, tt.message)
				}
			})
		}
		if got := h.must(200, "GET", "/api/v1/documents/"+id, h.admin, nil); got["name"] != "d" || got["content"] != "x" {
			t.Errorf("refused PATCHes changed the document: %v", got)
		}
	})
}

// TestDocumentEmptyMetadataChangesNothing: a document without metadata
// shows it as {}, so a PATCH sending {} back (a client that writes what it
// read) changes nothing and keeps updatedAt; {} clears metadata that has
// members, once.
func TestDocumentEmptyMetadataChangesNothing(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		p := h.project(h.admin, "p")
		for _, created := range []map[string]any{
			{"projectId": p, "name": "without", "content": "x"},
			{"projectId": p, "name": "empty", "content": "x", "metadata": map[string]any{}},
		} {
			d := h.must(201, "POST", "/api/v1/documents", h.admin, created)
			path := "/api/v1/documents/" + d["id"].(string)
			time.Sleep(5 * time.Millisecond) // updatedAt has milliseconds: a write now would show
			got := h.must(200, "PATCH", path, h.admin, map[string]any{"metadata": map[string]any{}})
			if got["updatedAt"] != d["updatedAt"] {
				t.Errorf("%s: PATCH metadata {} moved updatedAt %v → %v", created["name"], d["updatedAt"], got["updatedAt"])
			}
			if got := h.must(200, "GET", path, h.admin, nil)["updatedAt"]; got != d["updatedAt"] {
				t.Errorf("%s: GET after PATCH metadata {}: updatedAt %v → %v", created["name"], d["updatedAt"], got)
			}
		}
		d := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": p, "name": "tagged", "content": "x", "metadata": map[string]any{"k": "v"}})
		path := "/api/v1/documents/" + d["id"].(string)
		time.Sleep(5 * time.Millisecond)
		cleared := h.must(200, "PATCH", path, h.admin, map[string]any{"metadata": map[string]any{}})
		if fmt.Sprint(cleared["metadata"]) != "map[]" || cleared["updatedAt"] == d["updatedAt"] {
			t.Errorf("PATCH metadata {} of a tagged document = %v, updatedAt %v; want {} and updatedAt moved", cleared["metadata"], cleared["updatedAt"])
		}
		time.Sleep(5 * time.Millisecond)
		if again := h.must(200, "PATCH", path, h.admin, map[string]any{"metadata": map[string]any{}}); again["updatedAt"] != cleared["updatedAt"] {
			t.Errorf("a second PATCH metadata {} moved updatedAt %v → %v", cleared["updatedAt"], again["updatedAt"])
		}
	})
}
