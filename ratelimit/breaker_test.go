package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newTestBreaker returns a closed breaker on a clock of its own.
func newTestBreaker() (*breaker, *fakeClock) {
	clock := newClock()
	return &breaker{now: clock.Now}, clock
}

// mustEnter enters b and fails t unless Redis may be used, as a probe or not.
func mustEnter(t *testing.T, b *breaker, probe bool) ticket {
	t.Helper()
	tk, ok := b.enter()
	if !ok || tk.probe != probe {
		t.Fatalf("enter = (probe %t, %t); want (probe %t, true)", tk.probe, ok, probe)
	}
	return tk
}

// mustSkip fails t unless b skips Redis.
func mustSkip(t *testing.T, b *breaker) {
	t.Helper()
	if tk, ok := b.enter(); ok {
		t.Fatalf("enter = (probe %t, true); want Redis skipped", tk.probe)
	}
}

func TestBreaker(t *testing.T) {
	t.Run("ClosedUsesRedis", func(t *testing.T) {
		b, _ := newTestBreaker()
		for range 3 {
			b.done(mustEnter(t, b, false), answered, false)
		}
		b.done(mustEnter(t, b, false), abandoned, false)
		mustEnter(t, b, false)
	})
	t.Run("FailureOpensForTheBackoff", func(t *testing.T) {
		b, clock := newTestBreaker()
		b.done(mustEnter(t, b, false), failed, true)
		mustSkip(t, b)
		clock.Add(breakerMin - time.Millisecond)
		mustSkip(t, b)
		clock.Add(time.Millisecond)
		mustEnter(t, b, true)
	})
	t.Run("OneProbeAtATime", func(t *testing.T) {
		b, clock := newTestBreaker()
		b.done(mustEnter(t, b, false), failed, true)
		clock.Add(breakerMin)
		probe := mustEnter(t, b, true)
		mustSkip(t, b)
		clock.Add(time.Hour)
		mustSkip(t, b)
		b.done(probe, answered, false)
		mustEnter(t, b, false)
	})
	t.Run("FailedProbesDoubleTheBackoffUpToTheCap", func(t *testing.T) {
		b, clock := newTestBreaker()
		b.done(mustEnter(t, b, false), failed, true)
		var waits []time.Duration
		for wait := breakerMin; len(waits) < 10; {
			clock.Add(wait - time.Millisecond)
			mustSkip(t, b)
			clock.Add(time.Millisecond)
			b.done(mustEnter(t, b, true), failed, false)
			waits = append(waits, wait)
			wait = min(2*wait, breakerMax)
		}
		if got, want := waits[len(waits)-1], breakerMax; got != want {
			t.Errorf("last backoff = %v; want the cap %v", got, want)
		}
		// A success resets the backoff.
		clock.Add(breakerMax)
		b.done(mustEnter(t, b, true), answered, false)
		b.done(mustEnter(t, b, false), failed, true)
		clock.Add(breakerMin)
		mustEnter(t, b, true)
	})
	t.Run("AbandonedProbeLetsTheNextCallProbe", func(t *testing.T) {
		b, clock := newTestBreaker()
		b.done(mustEnter(t, b, false), failed, true)
		clock.Add(breakerMin)
		b.done(mustEnter(t, b, true), abandoned, false)
		mustEnter(t, b, true)
	})
	t.Run("LateResultsOfOlderCallsChangeNothing", func(t *testing.T) {
		b, clock := newTestBreaker()
		early, late := mustEnter(t, b, false), mustEnter(t, b, false)
		b.done(early, failed, true)
		b.done(late, answered, false) // started before Redis failed: does not close it
		mustSkip(t, b)
		stale := late
		clock.Add(breakerMin)
		b.done(mustEnter(t, b, true), answered, false)
		b.done(stale, failed, false) // started before the probe closed it: does not reopen it
		mustEnter(t, b, false)
	})
	t.Run("RecoveryIsReportedWhenTheOutageWasLogged", func(t *testing.T) {
		for _, warned := range []bool{true, false} {
			b, clock := newTestBreaker()
			b.done(mustEnter(t, b, false), failed, warned)
			clock.Add(breakerMin)
			b.done(mustEnter(t, b, true), failed, false)
			clock.Add(2 * breakerMin)
			recovered, down := b.done(mustEnter(t, b, true), answered, false)
			if recovered != warned || down != 3*breakerMin {
				t.Errorf("warned %t: done = (%t, %v); want (%t, %v)", warned, recovered, down, warned, 3*breakerMin)
			}
		}
	})
	t.Run("ConcurrentCallersProbeOnce", func(t *testing.T) {
		b, clock := newTestBreaker()
		b.done(mustEnter(t, b, false), failed, true)
		clock.Add(breakerMin)
		var probes, skips atomic.Int64
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				tk, ok := b.enter()
				switch {
				case !ok:
					skips.Add(1)
				case tk.probe:
					probes.Add(1)
				}
			})
		}
		wg.Wait()
		if probes.Load() != 1 || skips.Load() != 99 {
			t.Errorf("%d probes and %d skips of 100 calls; want 1 and 99", probes.Load(), skips.Load())
		}
	})
}
