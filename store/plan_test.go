package store_test

import (
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
)

// TestSQLiteConversationListPlans: once SQLite has statistics (an
// operator's ANALYZE or PRAGMA optimize), a project's or a member's
// conversation list still reads through the chats' (chat_id, id) index,
// not every tenant's conversations in id order: SQLite's planner, told
// that the id order spares it a sort, otherwise scans the whole table.
func TestSQLiteConversationListPlans(t *testing.T) {
	s := dbtest.SQLite(t)
	w := newWorld(t, s)
	for range 3 {
		conv := newConversation(w.chatA)
		must(t, s.AppendTurn(ctx(), conv, true, turn(conv.ID, 0, "hello")))
	}
	// Other tenants' conversations, many more than project A's.
	must(t, s.DB().Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
INSERT INTO conversations (id, project_id, chat_id, created_at, updated_at)
SELECT printf('cv_other%05d', i), ?, ?, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM n`, w.prjB.ID, w.chatB.ID).Error)
	must(t, s.DB().Exec("ANALYZE").Error)

	var mu sync.Mutex
	var queries []string
	var vars [][]any
	must(t, s.DB().Callback().Query().After("gorm:query").Register("plan_test:capture", func(tx *gorm.DB) {
		if sql := tx.Statement.SQL.String(); strings.Contains(sql, "conversations") {
			mu.Lock()
			queries, vars = append(queries, sql), append(vars, tx.Statement.Vars)
			mu.Unlock()
		}
	}))
	for _, f := range []domain.ConversationFilter{
		{ProjectID: w.prjA.ID, Page: domain.Page{Limit: 10}},
		{MemberUserID: w.alice.ID, Page: domain.Page{Limit: 10}},
		{ProjectID: w.prjA.ID, Page: domain.Page{Limit: 10, After: "cv_0"}},
	} {
		got, err := s.ListConversations(ctx(), f)
		must(t, err)
		if len(got) != 3 && f.Page.After == "" {
			t.Errorf("ListConversations(%+v) = %d conversations; want 3", f, len(got))
		}
	}
	must(t, s.DB().Callback().Query().Remove("plan_test:capture"))
	if len(queries) == 0 {
		t.Fatal("captured no query of conversations")
	}
	for i, q := range queries {
		if strings.Contains(q, "c.id IN") { // the summary, by primary key
			continue
		}
		rows, err := s.DB().Raw("EXPLAIN QUERY PLAN "+q, vars[i]...).Rows()
		must(t, err)
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			must(t, rows.Scan(&id, &parent, &unused, &detail))
			plan = append(plan, detail)
		}
		must(t, rows.Err())
		rows.Close()
		for _, step := range plan {
			reads := strings.HasPrefix(step, "SCAN conversations") || strings.HasPrefix(step, "SEARCH conversations")
			if reads && !strings.Contains(step, "conversations_chat_id_idx") {
				t.Errorf("plan of %s\n%s\nreads conversations other than by their chats", q, strings.Join(plan, "\n"))
				break
			}
		}
	}
}
