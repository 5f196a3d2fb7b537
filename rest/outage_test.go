package rest_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// dbProxy forwards TCP connections on 127.0.0.1 to a database server, so a
// test can take the database away: down closes every connection and
// refuses new ones; stall keeps connections open but stops forwarding, as a
// frozen network or proxy does.
type dbProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   []net.Conn
	stalled chan struct{} // closed by stall
	gone    chan struct{} // closed by down
	once    sync.Once
}

func startDBProxy(t *testing.T, target string) *dbProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dbProxy{ln: ln, target: target, stalled: make(chan struct{}), gone: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
	t.Cleanup(p.down)
	return p
}

func (p *dbProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, up)
	p.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case <-p.stalled:
					<-p.gone // hold the bytes until the proxy goes down
					return
				default:
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if err != io.EOF {
					_ = dst.Close()
				}
				return
			}
		}
	}
	go pipe(up, c)
	go pipe(c, up)
}

func (p *dbProxy) down() {
	p.once.Do(func() { close(p.gone) })
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

func (p *dbProxy) stall() { close(p.stalled) }

// postgresThroughProxy opens a store on a fresh PostgreSQL database
// reached through a dbProxy.
func postgresThroughProxy(t *testing.T) (*store.Store, *dbProxy) {
	t.Helper()
	u, err := url.Parse(dbtest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := startDBProxy(t, u.Host)
	u.Host = p.ln.Addr().String()
	st, err := store.Open(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, p
}

// TestDatabaseDownIs503: with the database gone, requests that need it
// answer 503 unavailable (a dependency is down), not 500 internal, and so
// does /readyz.
func TestDatabaseDownIs503(t *testing.T) {
	st, p := postgresThroughProxy(t)
	h := newHarness(t, st, nil)
	h.must(201, "POST", "/api/v1/projects", h.admin, map[string]any{"name": "before"})
	p.down()
	r := h.call("POST", "/api/v1/projects", h.admin, map[string]any{"name": "after"})
	if r.Status != 503 || r.ErrorCode() != "unavailable" {
		t.Errorf("a write with the database down = %d %s, want 503 unavailable", r.Status, r.Body)
	}
	if r := h.call("GET", "/readyz", "", nil); r.Status != 503 {
		t.Errorf("/readyz with the database down = %d %s, want 503", r.Status, r.Body)
	}
}

// TestReadyzWhenTheDatabaseHangs: a database that stops answering without
// closing its connections makes /readyz answer 503 once its check times
// out, where it used to wait as long as the client did.
func TestReadyzWhenTheDatabaseHangs(t *testing.T) {
	st, p := postgresThroughProxy(t)
	h := newHarness(t, st, nil)
	p.stall()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/readyz", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("/readyz with the database hanging gave no answer within 30s: %v", err)
	}
	_ = res.Body.Close()
	if res.StatusCode != 503 {
		t.Errorf("/readyz with the database hanging = %d, want 503", res.StatusCode)
	}
	p.down() // let the pool's stalled connections go before the cleanup closes the store
}
