package ratelimit

import (
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
)

// Allow drops the counters of windows older than the previous one.
func TestMemoryCollectsOldWindows(t *testing.T) {
	clock := newClock()
	m := NewMemory()
	m.Now = clock.Now
	windows := func() int {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.windows)
	}
	b := []domain.Budget{project(100, 1000)}
	for i := range 5 {
		allowN(t, m, 3, b...)
		m.AddTokens(bg, b, 10, domain.Reservation{})
		if got, want := windows(), min(i+1, 2); got != want {
			t.Fatalf("minute %d: %d windows kept; want %d", i, got, want)
		}
		clock.Add(time.Minute)
	}
	clock.Add(time.Hour)
	allowN(t, m, 1, b...)
	if got := windows(); got != 1 {
		t.Fatalf("after an hour: %d windows kept; want 1", got)
	}
}

func TestMemoryReleasesStreamEntries(t *testing.T) {
	m := NewMemory()
	var releases []func()
	for range 3 {
		r, err := acquire(bg, m, "k", 3)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	for _, r := range releases {
		r()
		r()
	}
	if len(m.streams) != 0 {
		t.Fatalf("streams = %v; want none left", m.streams)
	}
}

// The zero Memory works too.
func TestMemoryZeroValue(t *testing.T) {
	var m Memory
	allowN(t, &m, 1, project(1, 0))
	m.AddTokens(bg, []domain.Budget{project(1, 5)}, 5, domain.Reservation{})
	if _, err := acquire(bg, &m, "k", 1); err != nil {
		t.Fatal(err)
	}
}
