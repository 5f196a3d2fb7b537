// Package tcpproxy is a TCP proxy on 127.0.0.1 for tests that take a
// server away (a database, Redis) from the code that talks to it: Down
// drops every connection and refuses new ones until Up; Stall stops
// forwarding while keeping the connections open, as a frozen network does,
// until Resume; LoseAnswers forwards requests but not the target's
// answers, until Cut closes the connections; Dials counts the connections
// clients opened and Held the reads a stall holds.
package tcpproxy

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards each connection it accepts to a target address.
type Proxy struct {
	ln      net.Listener
	target  string
	dials   atomic.Int64
	held    atomic.Int64
	stalled atomic.Bool // set by Stall, cleared by Resume
	losing  atomic.Bool // set by LoseAnswers, cleared by Cut

	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
	closed chan struct{} // closed when t ends
}

// Start starts a proxy to target, closed when t ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]bool{}, closed: make(chan struct{})}
	go p.serve()
	t.Cleanup(func() {
		close(p.closed)
		_ = ln.Close()
		p.Down()
	})
	return p
}

// Addr is the proxy's address, to put in a client's URL for the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Dials is how many connections clients have opened to the proxy, down or
// not.
func (p *Proxy) Dials() int64 { return p.dials.Load() }

// Held is how many reads the proxy has held since Stall: a client's
// request (or a server's answer) that is under way, and will not arrive.
func (p *Proxy) Held() int64 { return p.held.Load() }

// Down closes every connection, and each new one as soon as it is
// accepted (so that it is still counted), until Up.
func (p *Proxy) Down() { p.setDown(true) }

// Up forwards new connections again.
func (p *Proxy) Up() { p.setDown(false) }

// Stall stops forwarding on every connection, open or to come, while
// keeping them open, until Resume. The bytes a stall holds are never
// forwarded: a connection that read any is of no use after Resume, and
// Down closes it.
func (p *Proxy) Stall() { p.stalled.Store(true) }

// Resume ends Stall: connections forward what they read from then on.
func (p *Proxy) Resume() { p.stalled.Store(false) }

// LoseAnswers forwards what clients send on every connection, open or to
// come, and drops what the target answers: a request arrives and is
// carried out, and its answer never comes, until Cut.
func (p *Proxy) LoseAnswers() { p.losing.Store(true) }

// Cut closes every connection open now, as a network that failed does
// (the client learns it only then), and forwards new ones, answers and
// all.
func (p *Proxy) Cut() {
	p.losing.Store(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeAll()
}

func (p *Proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		p.closeAll()
	}
}

// closeAll closes every connection; callers hold mu.
func (p *Proxy) closeAll() {
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.dials.Add(1)
		if p.track(c) {
			go p.forward(c)
		}
	}
}

// track records c, or closes it and returns false when the proxy is down.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		_ = c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *Proxy) forward(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(up) {
		return
	}
	defer up.Close()
	go p.pipe(up, c, false)
	p.pipe(c, up, true)
}

// pipe copies src to dst until either ends or the proxy stalls; answers
// says src is the target, whose bytes LoseAnswers drops.
func (p *Proxy) pipe(dst, src net.Conn, answers bool) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.stalled.Load() {
				p.held.Add(1)
				<-p.closed // hold the bytes until the test ends
				return
			}
			if answers && p.losing.Load() {
				if err != nil {
					return
				}
				continue
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
