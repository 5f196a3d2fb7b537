package mcp

import (
	"context"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
)

// TestCallsEndsAndWaits: Wait waits for a running call, End ends it and
// refuses new ones, and a refused call answers as one the shutdown ended.
func TestCallsEndsAndWaits(t *testing.T) {
	var calls Calls
	if err := calls.Wait(context.Background()); err != nil {
		t.Fatalf("Wait with no call running = %v", err)
	}
	stop, ok := calls.begin()
	if !ok {
		t.Fatal("begin refused before End")
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
	// A handler refused by End answers as the shutdown does.
	res, err := toolError(stop, deps{log: newTestLogger(&syncBuffer{})}, "t", context.Cause(stop))
	if err != nil || !res.IsError || text(res) != "unavailable: the server is shutting down and ended this call; call again" {
		t.Errorf("a call refused at shutdown = %v, %v", res, err)
	}
}
