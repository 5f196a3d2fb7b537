package store

import (
	"slices"
	"testing"
)

// TestCommitQueueLetsWrittenTurnsGo: the turns handed out as a batch are
// no longer referenced by the queue's array, so that a burst's messages
// do not stay in memory once written.
func TestCommitQueueLetsWrittenTurnsGo(t *testing.T) {
	q := newCommitQueue(1)
	if b, _ := q.enter(&turn{}); len(b) != 1 {
		t.Fatal("the first turn did not lead")
	}
	for range maxTurnBatch + 6 {
		if b, _ := q.enter(&turn{}); b != nil {
			t.Fatal("a turn led while the writer was busy")
		}
	}
	for _, want := range []int{maxTurnBatch, 6} {
		if b := q.next(); len(b) != want {
			t.Fatalf("batch of %d, want %d", len(b), want)
		}
		if held := slices.IndexFunc(q.waiting[len(q.waiting):cap(q.waiting)], func(t *turn) bool { return t != nil }); held >= 0 {
			t.Fatalf("the queue's array still holds a written turn past its %d waiting", len(q.waiting))
		}
	}
}

// TestOptionsSetLockTimeout: a lock_timeout the URL's options set is the
// user's, which the migrations keep; deadlock_timeout is another setting.
func TestOptionsSetLockTimeout(t *testing.T) {
	for options, want := range map[string]bool{
		"-c lock_timeout=7s":                        true,
		"-clock_timeout=0":                          true,
		"--lock_timeout=5s":                         true,
		"-c statement_timeout=1s -c lock_timeout=0": true,
		"-c deadlock_timeout=1s":                    false,
		"--deadlock_timeout=1s":                     false,
		"":                                          false,
	} {
		if got := optionsSetLockTimeout.MatchString(options); got != want {
			t.Errorf("options %q set lock_timeout: %v; want %v", options, got, want)
		}
	}
}
