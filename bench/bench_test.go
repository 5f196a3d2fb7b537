// Package bench measures what Parley adds to a completion over calling the
// upstream directly, with a bare reverse proxy as the floor, all on
// loopback against the fake upstream. Run with `make bench`.
//
// These are closed-loop testing.B benchmarks (each worker sends its next
// request when the last one answered), in one process: use them for CPU
// profiles and allocation counts (make bench-go). The open-loop figures,
// with each server in its own process, come from bench/loadgen (make
// bench); see docs/benchmarks.md.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

// target is one way to reach the fake upstream.
type target struct {
	url    string
	header http.Header
	body   func(stream bool) []byte
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

func upstreamBody(stream bool) []byte {
	b, _ := json.Marshal(map[string]any{
		"model": "fake", "stream": stream, "stream_options": map[string]any{"include_usage": stream},
		"messages": []any{map[string]any{"role": "user", "content": "one two three four five six seven eight"}},
	})
	return b
}

func direct(b *testing.B, up *llmtest.Server) target {
	return target{url: up.URL() + "/chat/completions", header: http.Header{"Authorization": {"Bearer sk-bench"}}, body: upstreamBody}
}

func proxied(b *testing.B, up *llmtest.Server) target {
	u, _ := url.Parse(up.RootURL())
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	rp.FlushInterval = -1
	srv := httptest.NewServer(rp)
	b.Cleanup(srv.Close)
	return target{url: srv.URL + "/v1/chat/completions", header: http.Header{"Authorization": {"Bearer sk-bench"}}, body: upstreamBody}
}

// parley starts Parley over st with a project, a provider on the fake and
// a chat; requests are per-chat completions, which store the conversation
// and record usage.
func parley(b *testing.B, up *llmtest.Server, st *store.Store) target {
	admin := domain.NewAPIKeySecret()
	a, err := app.New(context.Background(), app.Config{
		SecretKey: secret.GenerateKey(), BootstrapAdminKey: admin, AllowPrivateUpstreams: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, st)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	b.Cleanup(func() { srv.Close(); a.FlushUsage() })
	h := http.Header{"Authorization": {"Bearer " + admin}, "Content-Type": {"application/json"}}
	post := func(path string, body any) map[string]any {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", srv.URL+path, bytes.NewReader(raw))
		req.Header = h.Clone()
		res, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		if res.StatusCode >= 300 {
			b.Fatalf("POST %s = %d %v", path, res.StatusCode, m)
		}
		return m
	}
	prj := post("/api/v1/projects", map[string]any{"name": "bench"})["id"]
	prov := post("/api/v1/ai-providers", map[string]any{"projectId": prj, "name": "fake", "type": "openai-compatible",
		"baseUrl": up.URL(), "defaultModel": "fake", "apiKey": "sk-bench-key-0123456789"})["id"]
	chat := post("/api/v1/chats", map[string]any{"projectId": prj, "aiProviderId": prov})["id"].(string)
	return target{url: srv.URL + "/api/v1/chats/" + chat + "/completions", header: h, body: func(stream bool) []byte {
		raw, _ := json.Marshal(map[string]any{"stream": stream,
			"messages": []any{map[string]any{"role": "user", "content": "one two three four five six seven eight"}}})
		return raw
	}}
}

// run sends b.N completions from parallel workers and reports the time to
// the first content byte of streams.
func run(b *testing.B, t target, stream bool) {
	body := t.body(stream)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", t.url, bytes.NewReader(body))
			req.Header = t.header.Clone()
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			if res.StatusCode != 200 {
				b.Errorf("status %d", res.StatusCode)
			}
			if stream {
				sc := bufio.NewScanner(res.Body)
				done := false
				for sc.Scan() {
					if strings.HasPrefix(sc.Text(), "data: [DONE]") {
						done = true
					}
				}
				if !done {
					b.Error("stream without [DONE]")
				}
			} else {
				_, _ = io.Copy(io.Discard, res.Body)
			}
			res.Body.Close()
		}
	})
}

func benchAll(b *testing.B, stream bool) {
	for _, db := range []string{"sqlite", "postgres"} {
		up := llmtest.NewServer(b)
		var st *store.Store
		if db == "sqlite" {
			st = dbtest.SQLite(b)
		} else {
			st = dbtest.Postgres(b)
		}
		targets := []struct {
			name string
			t    target
		}{{"direct", direct(b, up)}, {"proxy", proxied(b, up)}, {"parley", parley(b, up, st)}}
		for _, tt := range targets {
			b.Run(db+"/"+tt.name, func(b *testing.B) { run(b, tt.t, stream) })
		}
	}
}

func BenchmarkCompletion(b *testing.B) { benchAll(b, false) }

func BenchmarkStreamedCompletion(b *testing.B) { benchAll(b, true) }
