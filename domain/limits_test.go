package domain_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/policy"
	"github.com/parleyhq/parley/store"
)

// pausedLimits is the real store whose next GetLimits, once armed, reads
// the limits and then waits for resume before returning them: a read that
// a write overtakes.
type pausedLimits struct {
	*store.Store
	mu     sync.Mutex
	armed  bool
	read   chan struct{} // closed once the armed read has read
	resume chan struct{}
}

func (s *pausedLimits) arm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed, s.read, s.resume = true, make(chan struct{}), make(chan struct{})
}

func (s *pausedLimits) GetLimits(ctx context.Context, projectID string) (*domain.ProjectLimits, error) {
	l, err := s.Store.GetLimits(ctx, projectID)
	s.mu.Lock()
	armed, read, resume := s.armed, s.read, s.resume
	s.armed = false
	s.mu.Unlock()
	if armed {
		close(read)
		<-resume
	}
	return l, err
}

// TestLimitsPutOvertakingARead: a change of limits applies at once on the
// instance that took it, also when a read of the old limits (a completion
// whose cached limits had expired) was under way as it was written and
// ends after it: that read must not cache the old limits for the TTL.
func TestLimitsPutOvertakingARead(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		authz, err := policy.New()
		if err != nil {
			t.Fatal(err)
		}
		ps := &pausedLimits{Store: st}
		svcs := domain.NewServices(domain.Deps{Store: ps, Authz: authz, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		admin, err := svcs.Users.LocalAdmin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ctx := domain.WithPrincipal(context.Background(), admin)
		p, err := svcs.Projects.Create(ctx, domain.ProjectCreate{Name: "limited"})
		if err != nil {
			t.Fatal(err)
		}

		ps.arm()
		done := make(chan error, 1)
		go func() {
			_, err := svcs.Limits.Get(ctx, p.ID) // reads "none", then waits
			done <- err
		}()
		<-ps.read
		if _, err := svcs.Limits.Put(ctx, p.ID, domain.LimitsUpdate{LimitValues: domain.LimitValues{KeyRequestsPerMinute: 5}}); err != nil {
			t.Fatal(err)
		}
		close(ps.resume)
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		l, err := svcs.Limits.Get(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := l.KeyRequestsPerMinute, 5; got != want {
			t.Errorf("keyRequestsPerMinute after the Put = %d, want %d: the read it overtook cached the old limits", got, want)
		}
	})
}

// TestQuotaAs: a quota read a while after its request was admitted counts
// its reset from then; once its window has ended, it describes the window
// under way, with its whole limit left. Open streams have no window.
func TestQuotaAs(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 40, 0, time.UTC)
	q := domain.Quota{Name: "project-requests-per-minute", Limit: 5, Remaining: 3, Reset: 20 * time.Second, Window: time.Minute, At: at}
	for _, tc := range []struct {
		after     time.Duration
		reset     time.Duration
		remaining int
	}{
		{0, 20 * time.Second, 3},
		{15 * time.Second, 5 * time.Second, 3},
		{20 * time.Second, time.Minute, 5},
		{21 * time.Second, 59 * time.Second, 5},
		{3*time.Minute + 25*time.Second, 55 * time.Second, 5},
	} {
		got := q.As(at.Add(tc.after))
		if got.Reset != tc.reset || got.Remaining != tc.remaining || got.Limit != 5 || got.Name != q.Name {
			t.Errorf("%v after: %+v; want reset %v, %d remaining", tc.after, got, tc.reset, tc.remaining)
		}
	}
	streams := domain.Quota{Name: "key-concurrent-streams", Limit: 2, Remaining: 1, Reset: time.Second, At: at}
	if got := streams.As(at.Add(time.Hour)); got != streams {
		t.Errorf("open streams an hour later: %+v; want %+v", got, streams)
	}
	unstamped := domain.Quota{Limit: 5, Remaining: 3, Reset: 20 * time.Second, Window: time.Minute}
	if got := unstamped.As(at); got != unstamped {
		t.Errorf("a quota without its time: %+v; want it as it is", got)
	}
}

// TestRefusedQuota: a refusal's Details name its limit as the envelope
// shows it, and read back as the quota (its reset in whole seconds); an
// error without them names none.
func TestRefusedQuota(t *testing.T) {
	for _, q := range []domain.Quota{
		{Name: "key-requests-per-minute", Limit: 60, Reset: 1500 * time.Millisecond, Window: time.Minute},
		{Name: "key-concurrent-streams", Limit: 4, Reset: time.Second},
	} {
		e := domain.Errorf(domain.RateLimited, "refused")
		e.Details = domain.RefusalDetails(q)
		want := q
		want.Reset = time.Duration(max((q.Reset+time.Second-1)/time.Second, 1)) * time.Second
		if got, ok := domain.RefusedQuota(e); !ok || got != want {
			t.Errorf("RefusedQuota of %v = %+v, %v; want %+v", e.Details, got, ok, want)
		}
		if _, windowed := e.Details["windowSeconds"]; windowed != (q.Window > 0) {
			t.Errorf("details %v: windowSeconds present %v, want %v", e.Details, windowed, q.Window > 0)
		}
	}
	if q, ok := domain.RefusedQuota(domain.Errorf(domain.RateLimited, "the provider's 429")); ok {
		t.Errorf("a refusal without details names %+v", q)
	}
}
