package rest_test

import (
	"context"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// TestDeleteRunsToItsEnd: a delete held up past the request's deadline
// (here by another transaction's lock) is not cut by it: it answers once
// done, and the project, or the chat, is gone with everything it held. Cut,
// SQLite's chunked delete left the project without part of its rows (its
// usage records among them), and PostgreSQL's one statement rolled back,
// so that a project too large to delete within the deadline never was.
func TestDeleteRunsToItsEnd(t *testing.T) {
	const timeout = 300 * time.Millisecond
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, func(c *app.Config) { c.RequestTimeout = timeout })
		for _, what := range []string{"project", "chat"} {
			t.Run(what, func(t *testing.T) {
				w := h.world()
				conv := conversationIn(t, h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("hi")}}))
				h.app.FlushUsage()
				path, table, id := "/api/v1/projects/"+w.project, "projects", w.project
				if what == "chat" {
					path, table, id = "/api/v1/chats/"+w.chat, "chats", w.chat
				}

				release := h.holdLock(t, st, table, id)
				done := make(chan *response, 1)
				go func() { done <- h.call("DELETE", path, h.admin, nil) }()
				time.Sleep(2 * timeout)
				release()
				var r *response
				select {
				case r = <-done:
				case <-time.After(15 * time.Second):
					t.Fatal("the delete did not answer")
				}
				if r.Status != 200 {
					t.Fatalf("DELETE %s held past the deadline = %d %s; want 200 once done", what, r.Status, r.Body)
				}
				h.must(404, "GET", path, h.admin, nil)
				h.must(404, "GET", "/api/v1/conversations/"+conv, h.admin, nil)
				if what == "project" {
					var left int64
					if err := st.DB().Raw("SELECT COUNT(*) FROM usage_records WHERE project_id = ?", w.project).Scan(&left).Error; err != nil {
						t.Fatal(err)
					}
					if left != 0 {
						t.Errorf("%d usage records of the deleted project left", left)
					}
				}
			})
		}
	})
}

// holdLock holds, from another connection, a lock that a delete of table's
// row id waits for: on PostgreSQL the row's, on SQLite the database's one
// write lock. release lets it go.
func (h *harness) holdLock(t *testing.T, st *store.Store, table, id string) (release func()) {
	t.Helper()
	sqlDB, err := st.DB().DB()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := sqlDB.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lock := "BEGIN IMMEDIATE"
	if st.Dialect() == "postgres" {
		lock = "BEGIN"
	}
	if _, err := conn.ExecContext(context.Background(), lock); err != nil {
		t.Fatal(err)
	}
	if st.Dialect() == "postgres" {
		if _, err := conn.ExecContext(context.Background(), "SELECT id FROM "+table+" WHERE id = $1 FOR UPDATE", id); err != nil {
			t.Fatal(err)
		}
	}
	released := false
	release = func() {
		if !released {
			released = true
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			_ = conn.Close()
		}
	}
	t.Cleanup(release)
	return release
}
