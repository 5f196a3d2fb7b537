package ratelimit

import (
	"sync"
	"time"
)

// Backoffs of the breaker: it opens for breakerMin after the first failure
// and doubles after each failed probe, up to breakerMax. While it is open a
// probe costs one call at most a Redis timeout (see Open) once per backoff,
// and limits apply again at most breakerMax after Redis does.
const (
	breakerMin = 100 * time.Millisecond
	breakerMax = 2 * time.Second
)

// breaker keeps a Redis limiter off Redis while Redis fails, so that calls
// fail open at once instead of each waiting on a dial or a timeout.
//
// Closed (the zero value), every call uses Redis. The first failure opens
// it: calls skip Redis until the backoff has passed; then the next call
// alone probes Redis, while the others keep skipping it. The probe's success
// closes the breaker; its failure doubles the backoff (up to breakerMax).
//
// Only the probe decides while it is open: a call that entered while it was
// closed and fails later opens it only if it is still in the state the call
// entered (its epoch), so that a late failure does not reopen a breaker a
// probe closed since, and a late success does not close an open one.
type breaker struct {
	// now is the clock; nil means time.Now. Tests set it before first use.
	now func() time.Time

	mu      sync.Mutex
	open    bool
	epoch   uint64        // counts the openings and closings
	since   time.Time     // when it opened, while open
	next    time.Time     // while open: the time from which a call may probe
	backoff time.Duration // while open: the wait before the next probe
	probing bool          // while open: a probe is running
	warned  bool          // while open: a failure was logged
}

// ticket is a call's pass through the breaker.
type ticket struct {
	epoch uint64
	probe bool
}

func (b *breaker) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}

// enter reports whether the call may use Redis, and its ticket for done.
// false means the breaker is open: skip Redis.
func (b *breaker) enter() (ticket, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return ticket{epoch: b.epoch}, true
	}
	if b.probing || b.clock().Before(b.next) {
		return ticket{}, false
	}
	b.probing = true
	return ticket{epoch: b.epoch, probe: true}, true
}

// outcome is how a call that used Redis ended.
type outcome int

const (
	answered  outcome = iota // Redis answered
	failed                   // Redis failed: unreachable, timed out, or an error reply
	abandoned                // the caller went away first: says nothing of Redis
)

// done records how the call of t ended; warned says that its failure was
// logged. It returns true when this call closed the breaker after an outage
// of which a failure was logged, and how long the breaker was open.
func (b *breaker) done(t ticket, o outcome, warned bool) (recovered bool, down time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !t.probe {
		if o == failed && !b.open && b.epoch == t.epoch {
			now := b.clock()
			b.open, b.epoch, b.since, b.warned = true, b.epoch+1, now, false
			b.backoff, b.next = breakerMin, now.Add(breakerMin)
		}
		b.warned = b.warned || (b.open && warned)
		return false, 0
	}
	b.probing = false
	switch o {
	case answered:
		b.open, b.epoch = false, b.epoch+1
		return b.warned, b.clock().Sub(b.since)
	case failed:
		b.backoff = min(2*b.backoff, breakerMax)
		b.next = b.clock().Add(b.backoff)
		b.warned = b.warned || warned
	}
	// abandoned: the next call probes instead.
	return false, 0
}
