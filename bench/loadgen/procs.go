//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/parleyhq/parley/llm/llmtest"
)

// holdMessage is the user message that makes the fake upstream send two
// deltas and then hold the stream open until the client leaves: the open
// streams of the memory measurement.
const holdMessage = "hold"

// serveUpstream is the `loadgen upstream` child: the fake upstream, which
// echoes, forgets its requests (a load test would grow it), and holds
// streams whose last user message is holdMessage.
func serveUpstream() error {
	s := llmtest.Start()
	defer s.Close()
	s.Forget()
	s.Script(func(_ int, r llmtest.Request) llmtest.Behavior {
		if n := len(r.Messages); n > 0 && r.Messages[n-1].Content == holdMessage {
			return llmtest.Behavior{Fault: llmtest.FaultHang, AfterDeltas: 2}
		}
		return llmtest.Behavior{}
	})
	return announceAndWait(s.URL())
}

// serveProxy is the `loadgen proxy URL [DSN]` child: a bare
// httputil.ReverseProxy to URL, the floor any gateway pays. With DSN it is
// the commit floor: the same proxy committing one row to DSN before each
// answer (see committer), the floor of a gateway that stores its turns.
func serveProxy(target, dsn string) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
	rp.FlushInterval = -1 // flush every write, as a streaming gateway must
	var c *committer
	if dsn != "" {
		if c, err = openCommitter(dsn); err != nil {
			return err
		}
		rp.ModifyResponse = c.modifyResponse
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	// The body is read before proxying: net/http's server closes an
	// unread request body once response headers go out, and the
	// transport's last read of it then tears down the upstream connection
	// mid-stream (golang/go#40747).
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if c != nil {
			r = r.WithContext(context.WithValue(r.Context(), requestBodyKey{}, body))
		}
		rp.ServeHTTP(w, r)
	})
	go func() { _ = http.Serve(ln, h) }()
	return announceAndWait("http://" + ln.Addr().String())
}

// announceAndWait prints the child's URL for the parent and serves until
// its standard input closes, which happens when the parent ends for any
// reason, so a child never outlives a run.
func announceAndWait(u string) error {
	fmt.Println(u)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// proc is a child process the run measures.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop ends the child: closing its standard input ends the helpers,
// SIGTERM ends Parley (which flushes usage); SIGKILL after a grace.
func (p *proc) stop() {
	_ = p.stdin.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// childGOGC is every child's GOGC, Parley's and the helpers' alike (-gogc):
// the floor is a proxy at the garbage collector's setting Parley runs at,
// 400 unless set (cmd/parley's defaultGOGC); the proxy at Go's default 100
// spent a quarter more CPU per request, which flattered Parley's ratio.
var childGOGC = "400"

// childEnv is the generator's environment without what would make a child
// other than the run says: PARLEY_ settings (an exported
// PARLEY_DATABASE_URL would put the SQLite run on another database, a
// PARLEY_LOG_LEVEL silence the access log) and the runtime's GOGC and
// GOMEMLIMIT, which childGOGC sets for all alike; then env.
func childEnv(environ, env []string) []string {
	out := make([]string, 0, len(environ)+len(env)+1)
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "PARLEY_") || name == "GOGC" || name == "GOMEMLIMIT" {
			continue
		}
		out = append(out, kv)
	}
	return append(append(out, "GOGC="+childGOGC), env...)
}

// start runs name with args and env, logging to dir/name.log. Children
// die with the generator (Pdeathsig) and when their standard input closes.
func start(name, dir string, env []string, bin string, args ...string) (*proc, *bufio.Reader, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv(os.Environ(), env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, nil, err
	}
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &proc{cmd: cmd, stdin: stdin}, bufio.NewReader(stdout), nil
}

// startHelper starts this binary as `loadgen upstream` or `loadgen proxy`
// and reads the URL it announces.
func startHelper(name, dir string, args ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p, out, err := start(name, dir, nil, self, args...)
	if err != nil {
		return nil, err
	}
	line, err := out.ReadString('\n')
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("%s did not announce its URL (see %s.log): %w", name, name, err)
	}
	p.url = strings.TrimSpace(line)
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return p, nil
}

// startParley runs `parley serve` with env on a free port and waits until
// it is ready.
func startParley(bin, dir, name string, env []string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	env = append(env, "PARLEY_ADDR="+addr, "PARLEY_ALLOW_PRIVATE_UPSTREAMS=true")
	p, out, err := start(name, dir, env, bin, "serve")
	if err != nil {
		return nil, err
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	p.url = "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(p.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s was not ready within a minute; see %s", name, filepath.Join(dir, name+".log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// clockTick is USER_HZ, the unit of /proc's CPU times: 100 on every
// Linux architecture's ABI.
const clockTick = time.Second / 100

// stat returns the fields of /proc/pid/stat after the command name, so
// that index 0 is field 3 (state) of proc(5).
func stat(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strings.Fields(string(b[i+2:])), nil
}

// machineTicks returns the machine's CPU time so far from /proc/stat, in
// clock ticks: all of it, and the part the hypervisor gave to other guests
// (steal). A virtual machine on a busy host loses time this way, and every
// figure of the run is slower for it.
func machineTicks() (total, steal uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: unexpected format")
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i < 8 { // guest time is already counted in user time
			total += n
		}
		if i == 7 {
			steal = n
		}
	}
	return total, steal, nil
}

// cpuTime is the user plus system CPU time pid has used.
func cpuTime(pid int) (time.Duration, error) {
	f, err := stat(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * clockTick, nil
}

// treeCPU is the CPU time of root and of its children, live and exited:
// the PostgreSQL postmaster and its backends and workers, which come and
// go (an exited child's time is in its parent's cutime and cstime once
// reaped).
func treeCPU(root int) (time.Duration, error) {
	f, err := stat(root)
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // fields 14–17: utime, stime, cutime, cstime
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", root, err)
		}
		ticks += n
	}
	total := time.Duration(ticks) * clockTick
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	parent := strconv.Itoa(root)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := stat(pid)
		if err != nil || len(f) < 13 || f[1] != parent {
			continue // gone, or not a child
		}
		if d, err := cpuTime(pid); err == nil {
			total += d
		}
	}
	return total, nil
}

// parentPID is pid's parent.
func parentPID(pid int) (int, error) {
	f, err := stat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// rss is pid's resident set size.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

// waitCtx sleeps d unless ctx ends first.
func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
