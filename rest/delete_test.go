package rest_test

import (
	"context"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// TestDeleteHeldPastTheDeadline: a delete held up past the request's
// deadline (here by another transaction's lock) never leaves a project or
// chat part deleted. It goes a chunk per statement, and is not cut: it
// answers once done, everything gone. Cut, it left the project without
// part of its rows, its usage records among them.
func TestDeleteHeldPastTheDeadline(t *testing.T) {
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
				usage := func() int64 {
					var n int64
					if err := st.DB().Raw("SELECT COUNT(*) FROM usage_records WHERE project_id = ?", w.project).Scan(&n).Error; err != nil {
						t.Fatal(err)
					}
					return n
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
					t.Fatalf("DELETE %s = %d %s; want 200", what, r.Status, r.Body)
				}
				h.must(404, "GET", path, h.admin, nil)
				h.must(404, "GET", "/api/v1/conversations/"+conv, h.admin, nil)
				if n := usage(); what == "project" && n != 0 {
					t.Errorf("%d usage records of the deleted project left", n)
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
