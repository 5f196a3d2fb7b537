package rest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/internal/stalltest"
)

// TestStalledClientDoesNotHoldTheStream: a client that keeps its
// connection open but stops reading (its receive window full) must not
// hold a stream past PARLEY_MAX_STREAM_DURATION: the handler may not stay
// blocked writing to it forever, keeping the stream open (gauge, stream
// slot, goroutine) and its usage unrecorded until the client closes.
func TestStalledClientDoesNotHoldTheStream(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) {
		c.KeepAlive = 100 * time.Millisecond
		c.MaxStreamDuration = 500 * time.Millisecond
	})
	w := h.world()
	h.up.Enqueue(stalltest.Flood())
	n := h.up.Count()
	stalltest.Completion(t, h.srv.URL, h.admin, w.chat)

	if !h.up.WaitCanceledN(n, 5*time.Second) {
		t.Fatal("the upstream call was not cancelled at the maximum stream duration")
	}
	open := func() string {
		res, err := http.Get(h.srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "parley_open_streams ") {
				return strings.TrimPrefix(l, "parley_open_streams ")
			}
		}
		return "?"
	}
	deadline := time.Now().Add(5 * time.Second)
	for open() != "0" {
		if time.Now().After(deadline) {
			t.Fatalf("parley_open_streams = %s 5s after the stream's maximum duration, with the client still connected but not reading", open())
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.app.FlushUsage()
	var outcome string
	if err := h.app.Store.DB().Raw("SELECT outcome FROM usage_records WHERE stream ORDER BY created_at DESC LIMIT 1").Row().Scan(&outcome); err != nil {
		t.Fatalf("no usage record of the stalled stream: %v", err)
	}
	if outcome != "interrupted" {
		t.Errorf("the stalled stream is recorded as %q, want interrupted", outcome)
	}
}
