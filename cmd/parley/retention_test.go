package main_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRetentionSweepsAtStart: with PARLEY_USAGE_RETENTION and
// PARLEY_CONVERSATION_RETENTION set, `parley serve` deletes at start the
// usage records and the conversations older than them, says so in its log
// and /metrics, and keeps the rest: the usage report and the conversation
// left answer as before.
func TestRetentionSweepsAtStart(t *testing.T) {
	f := serveWithChat(t)
	conv := func(content string) string {
		t.Helper()
		a := <-postCompletion(f.started, f.key, f.chat, content)
		if a.err != nil || a.status != 200 {
			t.Fatalf("completion: %d %v %v", a.status, a.body, a.err)
		}
		return a.body["conversationId"].(string)
	}
	aged, kept := conv("from last year"), conv("from today")
	project := api(t, f.started, f.key, "GET", "/api/v1/chats/"+f.chat, 200, nil)["projectId"].(string)
	f.stop(t)

	// The first conversation and its usage record are made 40 days old.
	st := openStopped(t, sqliteIn(f.dir))
	old := time.Now().Add(-40 * 24 * time.Hour).UTC()
	if err := st.DB().Exec("UPDATE conversations SET updated_at = ? WHERE id = ?", old, aged).Error; err != nil {
		t.Fatal(err)
	}
	if res := st.DB().Exec("UPDATE usage_records SET created_at = ? WHERE conversation_id = ?", old, aged); res.Error != nil || res.RowsAffected != 1 {
		t.Fatalf("aging the usage record: %v (%d rows)", res.Error, res.RowsAffected)
	}
	st.Close()

	s := serve(t, f.dir, "PARLEY_BOOTSTRAP_ADMIN_KEY="+f.key, "PARLEY_ALLOW_PRIVATE_UPSTREAMS=true",
		"PARLEY_USAGE_RETENTION=30d", "PARLEY_CONVERSATION_RETENTION=720h")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.stderr.String(), "retention sweep deleted") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	log := s.stderr.String()
	if !strings.Contains(log, "usageRecords=1 conversations=1") {
		t.Fatalf("no log line of the sweep's deletes:\n%s", log)
	}
	if code := get(t, s.url+"/api/v1/conversations/"+aged, f.key); code != http.StatusNotFound {
		t.Errorf("the aged conversation = %d, want 404", code)
	}
	if code := get(t, s.url+"/api/v1/conversations/"+kept, f.key); code != http.StatusOK {
		t.Errorf("the recent conversation = %d, want 200", code)
	}
	report := api(t, s, f.key, "GET", "/api/v1/projects/"+project+"/usage?groupBy=model", 200, nil)
	groups := report["data"].([]any)
	if len(groups) != 1 || groups[0].(map[string]any)["requests"] != float64(1) {
		t.Errorf("usage report after the sweep: %v, want the one recent completion", report)
	}
	res, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_, _ = io.Copy(&b, res.Body)
	res.Body.Close()
	for _, line := range []string{`parley_retention_deleted_total{kind="conversations"} 1`, `parley_retention_deleted_total{kind="usage_records"} 1`} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	s.stop(t)
}
