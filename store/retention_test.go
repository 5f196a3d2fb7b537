package store_test

import (
	"slices"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// TestRetentionSweepEqualTimes: the usage sweep, a chunk of 2 per
// statement, deletes every record created before its bound, those of one
// time among them whatever chunks they fall in (on PostgreSQL each chunk
// resumes from the time the last one reached), and none from the bound on.
func TestRetentionSweepEqualTimes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		bound := t0.Add(-24 * time.Hour)
		same := bound.Add(-time.Hour) // five records of project A's at once
		var records []domain.UsageRecord
		var kept []string
		add := func(project string, at time.Time) {
			r := domain.UsageRecord{ID: domain.NewID(domain.PrefixMessage), ProjectID: project, ChatID: w.chatA.ID, Model: "m", CreatedAt: at}
			records = append(records, r)
			if !at.Before(bound) {
				kept = append(kept, r.ID)
			}
		}
		add(w.prjA.ID, same.Add(-time.Minute))
		for range 5 {
			add(w.prjA.ID, same)
		}
		add(w.prjA.ID, bound.Add(-time.Microsecond))
		add(w.prjA.ID, bound)
		add(w.prjA.ID, bound)
		add(w.prjA.ID, bound.Add(time.Hour))
		for range 3 {
			add(w.prjB.ID, same)
		}
		add(w.prjB.ID, bound)
		must(t, s.InsertUsage(ctx(), records))

		count := func(query string, args ...any) int64 {
			t.Helper()
			var n int64
			must(t, s.DB().Raw(query, args...).Row().Scan(&n))
			return n
		}
		// Between statements, how many of project A's records of one time
		// are left: a chunk boundary falls among them when one of these is
		// neither 5 nor 0.
		var left []int64
		s.SetDeleteChunks(2, func() {
			left = append(left, count("SELECT count(*) FROM usage_records WHERE project_id = ? AND created_at = ?", w.prjA.ID, same))
		})
		defer s.SetDeleteChunks(0, nil)

		n, err := s.DeleteUsageBefore(ctx(), bound)
		must(t, err)
		if want := int64(len(records) - len(kept)); n != want {
			t.Errorf("the sweep deleted %d usage records; want the %d created before its bound", n, want)
		}
		if !slices.ContainsFunc(left, func(n int64) bool { return n > 0 && n < 5 }) {
			t.Errorf("records of one time left between statements: %v; want a chunk boundary among them", left)
		}
		var ids []string
		must(t, s.DB().Raw("SELECT id FROM usage_records").Scan(&ids).Error)
		if !slices.Equal(sortedIDs(ids), sortedIDs(kept)) {
			t.Errorf("usage records left: %q\nwant those from the bound on: %q", sortedIDs(ids), sortedIDs(kept))
		}
	})
}
