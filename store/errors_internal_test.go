package store

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/parleyhq/parley/domain"
)

// TestUnreachableSaysWhatTheDriverSaid: a database out of reach is
// ErrNoWrites and ErrUnreachable to errors.Is, but a read's log line said
// "the database takes no writes", as a standby would, before the driver's
// words: the marks are not part of the text.
func TestUnreachableSaysWhatTheDriverSaid(t *testing.T) {
	err := fail("store.GetChat", syscall.EMFILE)
	if !errors.Is(err, domain.ErrNoWrites) || !errors.Is(err, domain.ErrUnreachable) || !errors.Is(err, syscall.EMFILE) {
		t.Errorf("errors.Is: no writes %v, unreachable %v, the cause %v; want all", errors.Is(err, domain.ErrNoWrites),
			errors.Is(err, domain.ErrUnreachable), errors.Is(err, syscall.EMFILE))
	}
	if text := err.Error(); strings.Contains(text, "takes no writes") || strings.Contains(text, "is unreachable") || !strings.Contains(text, "too many open files") {
		t.Errorf("the error says %q; want the driver's words without the marks'", text)
	}
}
