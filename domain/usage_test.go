package domain_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
)

// usageSink is a UsageStore that keeps what it is given, in memory, and
// refuses records of the project "gone", as a database would once the
// project is deleted.
type usageSink struct {
	mu      sync.Mutex
	batches [][]string // ids, per InsertUsage call that succeeded
	block   chan struct{}
}

func (s *usageSink) InsertUsage(_ context.Context, records []domain.UsageRecord) error {
	if s.block != nil {
		<-s.block
	}
	ids := make([]string, len(records))
	for i, r := range records {
		if r.ProjectID == "gone" {
			return errors.New("FOREIGN KEY constraint failed")
		}
		ids[i] = r.ID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, ids)
	return nil
}

func (s *usageSink) SumUsage(context.Context, domain.UsageQuery) ([]domain.UsageTotal, error) {
	return nil, nil
}

func (s *usageSink) stored() (batches int, ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.batches {
		ids = append(ids, b...)
	}
	return len(s.batches), ids
}

func records(n int, project string) []domain.UsageRecord {
	out := make([]domain.UsageRecord, n)
	for i := range out {
		out[i] = domain.UsageRecord{ID: fmt.Sprintf("%s-%03d", project, i), ProjectID: project}
	}
	return out
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestUsageBatcher(t *testing.T) {
	t.Run("a full batch is written at once", func(t *testing.T) {
		sink := &usageSink{}
		b := domain.NewUsageBatcher(sink, quiet(), 10, time.Hour)
		defer b.Close()
		for _, r := range records(10, "p") {
			b.Record(context.Background(), r)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if n, ids := sink.stored(); n == 1 && len(ids) == 10 {
				return
			}
			if time.Now().After(deadline) {
				n, ids := sink.stored()
				t.Fatalf("after 5s: %d batches, %d records; want the full batch of 10 written without waiting for the hour", n, len(ids))
			}
			time.Sleep(time.Millisecond)
		}
	})
	t.Run("a partial batch is written at the interval", func(t *testing.T) {
		sink := &usageSink{}
		b := domain.NewUsageBatcher(sink, quiet(), 100, 20*time.Millisecond)
		defer b.Close()
		for _, r := range records(3, "p") {
			b.Record(context.Background(), r)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, ids := sink.stored(); len(ids) == 3 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("3 records were not written within 5s at an interval of 20ms")
			}
			time.Sleep(time.Millisecond)
		}
	})
	t.Run("close writes every record, in batches no larger than the maximum", func(t *testing.T) {
		sink := &usageSink{block: make(chan struct{})}
		b := domain.NewUsageBatcher(sink, quiet(), 4, time.Hour)
		// The writer is held up, so records pile up behind the first batch.
		var wg sync.WaitGroup
		wg.Go(func() {
			for _, r := range records(30, "p") {
				b.Record(context.Background(), r)
			}
		})
		wg.Wait()
		close(sink.block)
		b.Close()
		n, ids := sink.stored()
		if len(ids) != 30 {
			t.Fatalf("%d records stored; want all 30", len(ids))
		}
		if n < 30/4 {
			t.Errorf("%d batches for 30 records; want batches of at most 4", n)
		}
		for i, id := range ids {
			if want := fmt.Sprintf("p-%03d", i); id != want {
				t.Fatalf("record %d is %s; want %s (in order)", i, id, want)
			}
		}
		// After Close a record is written at once.
		b.Record(context.Background(), domain.UsageRecord{ID: "late", ProjectID: "p"})
		if _, ids := sink.stored(); ids[len(ids)-1] != "late" {
			t.Errorf("a record after Close was not written at once")
		}
	})
	t.Run("a bad record does not lose its batch", func(t *testing.T) {
		sink := &usageSink{}
		b := domain.NewUsageBatcher(sink, quiet(), 100, time.Hour)
		rs := records(5, "p")
		rs[2].ProjectID = "gone"
		for _, r := range rs {
			b.Record(context.Background(), r)
		}
		b.Close()
		_, ids := sink.stored()
		if got, want := fmt.Sprint(ids), "[p-000 p-001 p-003 p-004]"; got != want {
			t.Errorf("stored %s; want %s", got, want)
		}
	})
	t.Run("a full backlog holds up Record instead of losing records", func(t *testing.T) {
		sink := &usageSink{block: make(chan struct{})}
		b := domain.NewUsageBatcher(sink, quiet(), 1, time.Hour)
		// 1 batch being written plus a backlog of 16 fill it up.
		recorded := make(chan int, 100)
		go func() {
			for i, r := range records(40, "p") {
				b.Record(context.Background(), r)
				recorded <- i
			}
			close(recorded)
		}()
		time.Sleep(50 * time.Millisecond)
		if n := len(recorded); n >= 40 {
			t.Fatalf("all %d records were taken while the writer was stuck; want Record to wait", n)
		}
		close(sink.block)
		for range recorded {
		}
		b.Close()
		if _, ids := sink.stored(); len(ids) != 40 {
			t.Errorf("%d records stored; want 40", len(ids))
		}
	})
}
