package mcp

import (
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/dbtest"
)

// TestCallWhenTheDatabaseHangs: with the database hanging, a tool call
// that needs it gives an unavailable result once the call timeout passes,
// where it used to wait as long as its client did.
func TestCallWhenTheDatabaseHangs(t *testing.T) {
	st, p := dbtest.PostgresThroughProxy(t)
	e := newEnv(t, st)
	s := e.connect(overStdio, "admin", Options{CallTimeout: 300 * time.Millisecond})
	p.Stall()
	// The session gives up after 20s.
	s.fails(t, "get-project", obj{"projectId": e.project.ID}, "unavailable")
	p.Down() // let the pool's stalled connections go before the cleanup closes the store
}
