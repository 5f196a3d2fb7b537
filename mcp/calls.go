package mcp

import (
	"context"
	"sync"
)

// Calls tracks the tool calls an MCP server runs, for the server's
// shutdown: Drain refuses new ones, Wait waits for the running ones, End
// ends them. Each records its usage as it ends. Over the older HTTP+SSE
// transport a call runs apart from the request that carried it, so the
// HTTP server's shutdown neither waits for it nor ends it. The zero value
// is ready; pass it in Options.
type Calls struct {
	mu       sync.Mutex
	running  inFlight
	draining bool            // set by Drain or End: no call starts
	stop     context.Context // ended by End
	end      context.CancelCauseFunc
}

func (c *Calls) init() {
	if c.stop == nil {
		c.stop, c.end = context.WithCancelCause(context.Background())
	}
}

// begin registers a call and returns the context End ends; ok is false
// once Drain or End was called.
func (c *Calls) begin() (stop context.Context, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	if c.draining {
		return c.stop, false
	}
	c.running.add(1)
	return c.stop, true
}

// done unregisters a call.
func (c *Calls) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running.add(-1)
}

// Drain refuses new calls and lets the running ones go on: at shutdown a
// stdio session could otherwise keep starting calls through the grace
// period, each of which End would cut. (Over HTTP the server reads no new
// request once its shutdown began; Drain refuses one that got in just
// before.)
func (c *Calls) Drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
}

// End ends the running calls, cause being their context's, and refuses
// new ones.
func (c *Calls) End(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.draining = true
	c.end(cause)
}

// Wait waits until no call runs, or until ctx is done.
func (c *Calls) Wait(ctx context.Context) error {
	c.mu.Lock()
	zero := c.running.zero
	c.mu.Unlock()
	return waitZero(ctx, zero)
}

// inFlight counts what is in flight, under its owner's mutex.
type inFlight struct {
	n    int
	zero chan struct{} // closed when n drops to 0; nil while it is 0
}

func (f *inFlight) add(d int) {
	if d == 0 {
		return
	}
	if f.n == 0 {
		f.zero = make(chan struct{})
	}
	if f.n += d; f.n == 0 {
		close(f.zero)
		f.zero = nil
	}
}

// waitZero waits until zero, an inFlight's, is closed (nil: nothing was in
// flight), or until ctx is done.
func waitZero(ctx context.Context, zero <-chan struct{}) error {
	if zero == nil {
		return nil
	}
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
