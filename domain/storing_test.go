package domain

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestStoringRefused: after a write the database refused for taking
// none, per-chat completions are refused for noWritesBackoff, with the
// wait left; a turn stored ends it; a usage write that succeeds ends it
// only when the database had been out of reach (a small write fitting on
// a nearly full disk says nothing of a turn); a clock stepped back ends
// it rather than stretch it.
func TestStoringRefused(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	s := &Completions{deps: Deps{Now: func() time.Time { return now }}}
	full := fmt.Errorf("store.AppendTurn: %w", errors.Join(ErrNoWrites, errors.New("database or disk is full")))
	down := fmt.Errorf("store.AppendTurn: %w", errors.Join(ErrNoWrites, ErrUnreachable, errors.New("connection refused")))
	refused := func() time.Duration {
		t.Helper()
		err := s.StoringRefused()
		if err == nil {
			return 0
		}
		if KindOf(err) != Unavailable {
			t.Fatalf("StoringRefused = %v, want Unavailable", err)
		}
		return RetryAfterOf(err)
	}

	if refused() != 0 {
		t.Fatal("refused before any write failed")
	}
	s.noteTurnWrite(errors.New("a statement's own fault"))
	if refused() != 0 {
		t.Error("refused after a write failed for a reason of its own")
	}
	s.noteTurnWrite(full)
	now = now.Add(2 * time.Second)
	if got := refused(); got != 3*time.Second {
		t.Errorf("2s after a turn was refused: wait %v, want 3s", got)
	}
	s.NoteUsageWrite(nil)
	if refused() == 0 {
		t.Error("a usage write on a full disk ended the refusal; a turn may still not fit")
	}
	now = now.Add(3 * time.Second)
	if refused() != 0 {
		t.Error("still refused after noWritesBackoff")
	}

	s.NoteUsageWrite(down)
	if refused() == 0 {
		t.Error("not refused after usage records found the database out of reach")
	}
	s.NoteUsageWrite(nil)
	if refused() != 0 {
		t.Error("a usage write once the database was back did not end the refusal")
	}

	s.noteTurnWrite(full)
	s.noteTurnWrite(nil)
	if refused() != 0 {
		t.Error("a turn stored did not end the refusal")
	}

	s.noteTurnWrite(full)
	now = now.Add(-time.Hour)
	if refused() != 0 {
		t.Error("a clock stepped back an hour stretched the refusal")
	}
}
