package domain_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
)

// cutStore deletes n usage records and then finds its sweep ended, as a
// store does when the server shuts down mid-sweep.
type cutStore struct {
	n      int64
	cancel context.CancelFunc
}

func (s cutStore) DeleteUsageBefore(ctx context.Context, _ time.Time) (int64, error) {
	s.cancel()
	return s.n, ctx.Err()
}

func (s cutStore) DeleteConversationsBefore(ctx context.Context, _ time.Time, _ func(string) func()) (int64, error) {
	return 0, ctx.Err()
}

// TestSweepCutByShutdownSaysWhatItDeleted: a sweep that shutdown ends
// midway logs what it had deleted, and no failure.
func TestSweepCutByShutdownSaysWhatItDeleted(t *testing.T) {
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	w := &domain.RetentionSweeper{
		Retention: domain.Retention{Usage: time.Hour, Conversations: time.Hour}, Store: cutStore{n: 170, cancel: cancel},
		Every: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: time.Now,
	}
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the sweeper did not return once its context ended")
	}
	if out := logs.String(); !strings.Contains(out, "retention sweep stopped by shutdown") || !strings.Contains(out, "usageRecords=170") || strings.Contains(out, "WARN") {
		t.Errorf("log = %q, want the 170 records deleted before the shutdown, and no warning", out)
	}
}
