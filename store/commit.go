package store

import (
	"sync"
)

// Turns are group-committed, leader and followers, as in LevelDB's write
// queue. A turn that arrives while fewer than max batches are being
// written leads at once: its own goroutine writes it, with no hand-off to
// another goroutine and back. A turn that arrives while max batches are in
// flight waits in line. A leader that is done hands the waiting turns, up
// to maxTurnBatch of them, to the first of them, which writes them all in
// one transaction and then hands on the rest. Under no load every turn is
// a batch of one written by its caller; under load the cost of a commit is
// shared by the turns that waited for it.
type commitQueue struct {
	mu      sync.Mutex
	idle    sync.Cond // signalled when writing drops to zero
	max     int       // batches written at once
	writing int       // batches being written
	waiting []*turn
	closed  bool
	// largest is the most turns one batch has held, for tests.
	largest int
}

// wake is what a waiting turn is told: either its result, or that it
// leads batch (itself first).
type wake struct {
	err   error
	batch []*turn
}

func newCommitQueue(max int) *commitQueue {
	q := &commitQueue{max: max}
	q.idle.L = &q.mu
	return q
}

// enter puts t in line. It returns the batch t leads ([t]) when a writer
// is free, nil when t must wait for its wake, and ok false once the queue
// is closed.
func (q *commitQueue) enter(t *turn) (batch []*turn, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, false
	}
	if q.writing < q.max {
		q.writing++
		q.largest = max(q.largest, 1)
		return []*turn{t}, true
	}
	q.waiting = append(q.waiting, t)
	return nil, true
}

// next is called by a leader whose batch is written: it returns the next
// batch to hand on, or nil, and then the leader's slot is free.
func (q *commitQueue) next() []*turn {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) == 0 {
		q.writing--
		if q.writing == 0 {
			q.idle.Broadcast()
		}
		return nil
	}
	n := min(len(q.waiting), maxTurnBatch)
	batch := make([]*turn, n)
	copy(batch, q.waiting)
	// The slots the batch leaves are cleared: turns hold their messages,
	// megabytes each, which a burst would otherwise keep until later
	// bursts wrote over them.
	left := copy(q.waiting, q.waiting[n:])
	clear(q.waiting[left:])
	q.waiting = q.waiting[:left]
	q.largest = max(q.largest, n)
	return batch
}

// close turns new turns away and waits for those in line to be written.
func (q *commitQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for q.writing > 0 {
		q.idle.Wait()
	}
}

// largestBatch returns the most turns one batch has held.
func (q *commitQueue) largestBatch() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.largest
}
