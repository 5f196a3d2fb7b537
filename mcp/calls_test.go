package mcp

import (
	"context"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/logtest"
)

// TestCallsDrainsEndsAndWaits: Drain refuses new calls and lets the
// running one go on, Wait waits for it, End ends it, and a refused call
// answers that the server is shutting down and starts no more calls.
func TestCallsDrainsEndsAndWaits(t *testing.T) {
	var calls Calls
	if err := calls.Wait(context.Background()); err != nil {
		t.Fatalf("Wait with no call running = %v", err)
	}
	stop, ok := calls.begin()
	if !ok {
		t.Fatal("begin refused before Drain")
	}
	calls.Drain()
	if _, ok := calls.begin(); ok {
		t.Error("begin accepted a call after Drain")
	}
	if stop.Err() != nil {
		t.Fatal("Drain ended the running call")
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := calls.Wait(short); err == nil {
		t.Fatal("Wait returned while a call runs")
	}
	go func() {
		<-stop.Done() // the call sees End
		calls.done()
	}()
	calls.End(domain.ErrShuttingDown)
	if err := calls.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := calls.begin(); ok {
		t.Error("begin accepted a call after End")
	}
	// The call End ended answers that the shutdown ended it.
	log := &logtest.Buffer{}
	res, err := toolError(stop, deps{log: newTestLogger(log)}, "t", context.Cause(stop))
	if err != nil || !res.IsError || text(res) != "unavailable: the server is shutting down and ended this call; call again" {
		t.Errorf("a call ended at shutdown = %v, %v", res, err)
	}
	// One refused answers that no call starts.
	res = refusedAtShutdown(context.Background(), deps{log: newTestLogger(log)}, "t")
	if !res.IsError || text(res) != "unavailable: the server is shutting down and starts no more calls; call again once it is back" {
		t.Errorf("a call refused at shutdown = %v", res)
	}
}
