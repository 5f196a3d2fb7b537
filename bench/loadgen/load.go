//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// target is one way to reach the fake upstream's completions.
type target struct {
	name   string
	url    string
	header http.Header
	body   func(stream bool, content string) []byte
	pid    int // the process whose CPU a request costs
}

// result is what one open-loop run at one rate measured.
type result struct {
	sent    int
	errors  int
	lastErr string
	total   []time.Duration // from the scheduled send time to the last byte
	ttft    []time.Duration // streams: from the scheduled send time to the first content delta
	cpu     time.Duration   // the target process's CPU over the run
	dbCPU   time.Duration   // the PostgreSQL server's CPU over the run, when it is measured
	rounds  []time.Duration // the CPU per request of each run added, in order
}

func (r *result) add(o result) {
	r.sent += o.sent
	r.errors += o.errors
	if o.lastErr != "" {
		r.lastErr = o.lastErr
	}
	r.total = append(r.total, o.total...)
	r.ttft = append(r.ttft, o.ttft...)
	r.cpu += o.cpu
	r.dbCPU += o.dbCPU
	r.rounds = append(r.rounds, o.cpuPerRequest())
}

// cpuPerRequest is the target's CPU per completed request.
func (r *result) cpuPerRequest() time.Duration { return perRequest(r.cpu, len(r.total)) }

func (r *result) dbCPUPerRequest() time.Duration { return perRequest(r.dbCPU, len(r.total)) }

func perRequest(d time.Duration, n int) time.Duration {
	if n == 0 {
		return 0
	}
	return d / time.Duration(n)
}

// percentile returns the p-th percentile (0 < p ≤ 100) of ds by the
// nearest-rank method; ds is sorted in place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(p/100*float64(len(ds))+0.999999) - 1
	return ds[max(0, min(rank, len(ds)-1))]
}

// openLoop sends rate requests per second to t for d: request i is due at
// start + i/rate whether or not earlier ones have answered (open loop),
// and its latency counts from that due time, so a server that falls
// behind is charged for the queue it builds (no coordinated omission).
// The target process's CPU is read before and after, and so is dbCPU,
// the database server's (zero when it is not measured).
func openLoop(ctx context.Context, c *http.Client, t target, rate int, d time.Duration, stream bool, dbCPU func() time.Duration) result {
	n := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	body := t.body(stream, "one two three four five six seven eight")
	total := make([]time.Duration, n)
	ttft := make([]time.Duration, n)
	failed := make([]bool, n)
	var errs atomic.Int64
	var lastErr atomic.Value

	cpu0, _ := cpuTime(t.pid)
	db0 := dbCPU()
	var wg sync.WaitGroup
	start := time.Now().Add(5 * time.Millisecond)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, last, err := send(ctx, c, t, body, stream, due)
			if err != nil {
				failed[i] = true
				errs.Add(1)
				lastErr.Store(err.Error())
				return
			}
			total[i], ttft[i] = last, first
		}()
	}
	wg.Wait()
	cpu1, _ := cpuTime(t.pid)
	r := result{sent: n, errors: int(errs.Load()), cpu: cpu1 - cpu0, dbCPU: dbCPU() - db0}
	if e, ok := lastErr.Load().(string); ok {
		r.lastErr = e
	}
	for i := range n {
		if failed[i] {
			continue
		}
		r.total = append(r.total, total[i])
		if stream {
			r.ttft = append(r.ttft, ttft[i])
		}
	}
	return r
}

var (
	dataPrefix = []byte("data: ")
	doneLine   = []byte("data: [DONE]")
	contentKey = []byte(`"content":"`)
)

// send makes one completion and returns, from due, the time to the first
// content delta (streams) and to the end of the response.
func send(ctx context.Context, c *http.Client, t target, body []byte, stream bool, due time.Time) (first, last time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header = t.header.Clone()
	res, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return 0, 0, fmt.Errorf("%s: %d %s", t.name, res.StatusCode, msg)
	}
	if !stream {
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			return 0, 0, err
		}
		return 0, time.Since(due), nil
	}
	sc := bufio.NewScanner(res.Body)
	done := false
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, dataPrefix) {
			continue
		}
		if first == 0 && hasContent(line) {
			first = time.Since(due)
		}
		if bytes.Equal(line, doneLine) {
			done = true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if !done || first == 0 {
		return 0, 0, fmt.Errorf("%s: stream without content or [DONE]", t.name)
	}
	return first, time.Since(due), nil
}

// hasContent reports whether an OpenAI chunk line carries a non-empty
// content delta.
func hasContent(line []byte) bool {
	i := bytes.Index(line, contentKey)
	return i >= 0 && i+len(contentKey) < len(line) && line[i+len(contentKey)] != '"'
}

// openStreams opens n streams to t that the fake upstream holds after two
// deltas, waits until every one has its first content, and returns the
// growth of the target's resident memory per stream; the streams end
// when it returns.
func openStreams(ctx context.Context, c *http.Client, t target, n int) (perStream int64, err error) {
	settle := func() { _ = waitCtx(ctx, 500*time.Millisecond) }
	settle()
	before, err := rss(t.pid)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body := t.body(true, holdMessage)
	ready := make(chan error, n)
	for range n {
		go func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
			if err != nil {
				ready <- err
				return
			}
			req.Header = t.header.Clone()
			res, err := c.Do(req)
			if err != nil {
				ready <- err
				return
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				ready <- fmt.Errorf("%s: status %d", t.name, res.StatusCode)
				return
			}
			sc := bufio.NewScanner(res.Body)
			for sc.Scan() {
				if hasContent(sc.Bytes()) {
					ready <- nil
					_, _ = io.Copy(io.Discard, res.Body) // hold until canceled
					return
				}
			}
			ready <- fmt.Errorf("%s: a held stream ended before its first content", t.name)
		}()
	}
	timeout := time.After(2 * time.Minute)
	for range n {
		select {
		case err := <-ready:
			if err != nil {
				return 0, err
			}
		case <-timeout:
			return 0, fmt.Errorf("%s: %d streams were not all open within 2 minutes", t.name, n)
		}
	}
	settle()
	after, err := rss(t.pid)
	if err != nil {
		return 0, err
	}
	return (after - before) / int64(n), nil
}
