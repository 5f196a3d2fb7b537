package mcp

import (
	"context"
	"sync"
)

// Calls tracks the tool calls an MCP server runs, for the server's
// shutdown: Wait waits for the running ones, End ends them and refuses new
// ones. Each records its usage as it ends. Over the older HTTP+SSE
// transport a call runs apart from the request that carried it, so the
// HTTP server's shutdown neither waits for it nor ends it. The zero value
// is ready; pass it in Options.
type Calls struct {
	mu      sync.Mutex
	running int
	zero    chan struct{} // closed when running drops to 0; nil while it is 0
	ended   bool
	stop    context.Context // ended by End
	end     context.CancelCauseFunc
}

func (c *Calls) init() {
	if c.stop == nil {
		c.stop, c.end = context.WithCancelCause(context.Background())
	}
}

// begin registers a call and returns the context End ends; ok is false
// once End was called.
func (c *Calls) begin() (stop context.Context, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	if c.ended {
		return c.stop, false
	}
	if c.running == 0 {
		c.zero = make(chan struct{})
	}
	c.running++
	return c.stop, true
}

// done unregisters a call.
func (c *Calls) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running--; c.running == 0 {
		close(c.zero)
		c.zero = nil
	}
}

// End ends the running calls, cause being their context's, and refuses
// new ones.
func (c *Calls) End(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.ended = true
	c.end(cause)
}

// Wait waits until no call runs, or until ctx is done.
func (c *Calls) Wait(ctx context.Context) error {
	c.mu.Lock()
	zero := c.zero
	c.mu.Unlock()
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
