package main_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/logtest"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parley-bin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "parley")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// started is a running `parley serve`.
type started struct {
	cmd    *exec.Cmd
	url    string
	stderr *logtest.Buffer
}

var servingAddr = regexp.MustCompile(`parley serving"? addr=(\S+)`)

// serve starts the binary on a free port with env and waits until it serves.
func serve(t *testing.T, dir string, env ...string) *started {
	t.Helper()
	return serveCommand(t, exec.Command(bin, "serve"), dir, env...)
}

// serveCommand is serve by cmd, which runs `parley serve` (under nohup).
func serveCommand(t *testing.T, cmd *exec.Cmd, dir string, env ...string) *started {
	t.Helper()
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"PARLEY_ADDR=127.0.0.1:0", "PARLEY_DATABASE_URL=", "PARLEY_SECRET_KEY=", "PARLEY_BOOTSTRAP_ADMIN_KEY="}, env...)...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &started{cmd: cmd, stderr: &logtest.Buffer{}}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("parley serve (%v) wrote:\n%s", cmd.ProcessState, s.stderr.String())
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			s.stderr.WriteString(line + "\n")
			if m := servingAddr.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		s.url = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatalf("parley serve did not start:\n%s", s.stderr.String())
	}
	return s
}

// stop sends SIGTERM and waits for a clean exit.
func (s *started) stop(t *testing.T) {
	t.Helper()
	s.stopWith(t, syscall.SIGTERM)
}

// stopWith is stop by sig.
func (s *started) stopWith(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, s.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("parley did not stop after SIGTERM")
	}
}

func get(t *testing.T, url, key string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), "GET", url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

var printedKey = regexp.MustCompile(`\b(pk_[A-Za-z0-9_\-]{20,})`)

func TestServeOnEmbeddedDefault(t *testing.T) {
	dir := t.TempDir()
	s := serve(t, dir)
	m := printedKey.FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("first start printed no admin key:\n%s", s.stderr.String())
	}
	key := m[1]
	if got := get(t, s.url+"/api/v1/me", key); got != 200 {
		t.Fatalf("GET /me with the printed key = %d", got)
	}
	fi, err := os.Stat(filepath.Join(dir, "data", "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("master key mode = %v, want 0600", fi.Mode().Perm())
	}
	// The database holds key hashes and sealed provider keys: like the
	// master key, only its owner reads it.
	for _, name := range []string{"parley.db", "parley.db-wal", "parley.db-shm"} {
		fi, err := os.Stat(filepath.Join(dir, "data", name))
		if err != nil {
			t.Errorf("no %s in ./data: %v", name, err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, fi.Mode().Perm())
		}
	}
	s.stop(t)

	// The migrations the first start applied are in its log; the second
	// start has none to apply, and says nothing of them.
	if !strings.Contains(s.stderr.String(), "msg=\"migration applied 00001_init.sql") {
		t.Errorf("the first start did not log the migrations it applied:\n%s", s.stderr.String())
	}
	// The second start prints no key, and the first still works.
	s2 := serve(t, dir)
	if printedKey.MatchString(s2.stderr.String()) {
		t.Error("the second start printed an admin key again")
	}
	if strings.Contains(s2.stderr.String(), "migration") {
		t.Errorf("the second start logged migrations:\n%s", s2.stderr.String())
	}
	if got := get(t, s2.url+"/api/v1/me", key); got != 200 {
		t.Errorf("GET /me after restart = %d", got)
	}
	s2.stop(t)
}

// TestHangUpShutsDownGracefully: SIGHUP, which a closing terminal or ssh
// session sends, stops Parley as SIGTERM does, with the grace period and
// exit 0, not at once with usage unrecorded (Go's default for it).
func TestHangUpShutsDownGracefully(t *testing.T) {
	s := serve(t, t.TempDir())
	s.stopWith(t, syscall.SIGHUP)
	if !strings.Contains(s.stderr.String(), "shutting down") || !strings.Contains(s.stderr.String(), "msg=stopped") {
		t.Errorf("SIGHUP did not shut down gracefully:\n%s", s.stderr.String())
	}
}

// TestNohupKeepsServing: `nohup parley serve &` asks that the session's
// hang-up not stop it; Parley's SIGHUP handling, meant for a terminal
// closing under it, turned that back on, so it stopped with the ssh
// session all the same. An ignored SIGHUP stays ignored.
func TestNohupKeepsServing(t *testing.T) {
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Skip("no nohup here")
	}
	s := serveCommand(t, exec.Command(nohup, bin, "serve"), t.TempDir())
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a shutdown closes the listener at once
	if got := get(t, s.url+"/healthz", ""); got != 200 {
		t.Fatalf("GET /healthz after a SIGHUP under nohup = %d", got)
	}
	if strings.Contains(s.stderr.String(), "shutting down") {
		t.Errorf("a SIGHUP under nohup started a shutdown:\n%s", s.stderr.String())
	}
	s.stop(t)
}

// TestFirstStartOnATakenAddress: a first start that cannot listen (the
// port is taken, the address mistyped) fails before it creates the
// database, so the admin key is printed by the start that serves, not lost
// in the output of one that failed.
func TestFirstStartOnATakenAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	for _, addr := range []string{ln.Addr().String(), "no-port"} {
		out, code := parley(t, dir, []string{"PARLEY_ADDR=" + addr}, "serve")
		if code != 1 || !strings.Contains(out, "listen") {
			t.Errorf("serve on %s: exit %d, want 1 naming the listen:\n%s", addr, code, out)
		}
		if printedKey.MatchString(out) {
			t.Errorf("serve on %s printed an admin key, then failed:\n%s", addr, out)
		}
		if got := files(t, dir); len(got) != 0 {
			t.Errorf("serve on %s left %v behind", addr, got)
		}
	}
	ln.Close()
	s := serve(t, dir)
	if !printedKey.MatchString(s.stderr.String()) {
		t.Errorf("the first start that serves printed no admin key:\n%s", s.stderr.String())
	}
	s.stop(t)
}

// TestBootstrapAdminKeyIsIdempotent: starts with the same bootstrap key
// make one admin; another key, set to replace it, makes a second, and the
// start warns that the first still works.
func TestBootstrapAdminKeyIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	key, other := "pk_bootstrap_"+strings.Repeat("a", 30), "pk_bootstrap_"+strings.Repeat("b", 30)
	for i, k := range []string{key, key, other} {
		s := serve(t, dir, "PARLEY_BOOTSTRAP_ADMIN_KEY="+k)
		if got := get(t, s.url+"/api/v1/me", k); got != 200 {
			t.Fatalf("GET /me with the bootstrap key = %d", got)
		}
		if printedKey.MatchString(s.stderr.String()) {
			t.Error("a start with a bootstrap key printed a key")
		}
		if warned := strings.Contains(s.stderr.String(), "a bootstrap key set before still works"); warned != (i == 2) {
			t.Errorf("start %d: warned of the earlier key %v:\n%s", i+1, warned, s.stderr.String())
		}
		s.stop(t)
	}
}

// TestStdioInAnotherDirectory: an MCP client starts `parley mcp` in a
// directory of its choosing. Where ./data holds no database, the key is
// refused with the reason (a new, empty database, and where), not only
// as invalid; without a key the empty database is served with a warning.
func TestStdioInAnotherDirectory(t *testing.T) {
	for _, key := range []string{"pk_" + strings.Repeat("a", 40), ""} {
		dir := t.TempDir()
		cmd := exec.Command(bin, "mcp")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PARLEY_DATABASE_URL=", "PARLEY_DATA_DIR=", "PARLEY_SECRET_KEY=", "PARLEY_API_KEY="+key)
		cmd.Stdin = strings.NewReader("") // the client leaves at once
		out, err := cmd.CombinedOutput()
		if (err == nil) != (key == "") {
			t.Errorf("key %q: exit %v, want failure only with a key\n%s", key, err, out)
		}
		if want := filepath.Join(dir, "data", "parley.db"); !strings.Contains(string(out), want) || !strings.Contains(string(out), "PARLEY_DATA_DIR") {
			t.Errorf("key %q: the output does not name %s and PARLEY_DATA_DIR:\n%s", key, want, out)
		}
	}
}

// TestPostgresNeedsSecretKey: a start on PostgreSQL without the master
// key is refused, saying how to make one, before it touches the database:
// a misconfigured replica must not migrate the one its fleet shares.
func TestPostgresNeedsSecretKey(t *testing.T) {
	// A server that would refuse the connection: a start that tried to
	// connect first would say so instead.
	url := "postgres://postgres@127.0.0.1:1/parley?sslmode=disable"
	out, code := parley(t, t.TempDir(), []string{"PARLEY_DATABASE_URL=" + url}, "serve")
	if code != 1 || !strings.Contains(out, "parley admin gen-key") {
		t.Errorf("serve on PostgreSQL without PARLEY_SECRET_KEY: exit %d, want 1 and a refusal saying how to make a key (before connecting to the database):\n%s", code, out)
	}
}

// TestBadKeysRefusedBeforeTheDatabase: a master key or bootstrap key of
// the wrong form is refused before the start creates a database (and
// prints an admin key no later start would print again).
func TestBadKeysRefusedBeforeTheDatabase(t *testing.T) {
	for name, env := range map[string]string{
		"PARLEY_SECRET_KEY":          "PARLEY_SECRET_KEY=abc",
		"PARLEY_OLD_SECRET_KEYS":     "PARLEY_OLD_SECRET_KEYS=abc",
		"PARLEY_BOOTSTRAP_ADMIN_KEY": "PARLEY_BOOTSTRAP_ADMIN_KEY=short",
		// Two keys of a secret file's two lines: no header could carry it.
		"PARLEY_BOOTSTRAP_ADMIN_KEY two lines": "PARLEY_BOOTSTRAP_ADMIN_KEY=pk_" + strings.Repeat("a", 30) + "\npk_" + strings.Repeat("b", 30),
		// A URL that cannot name a Redis: a start bound to fail creates
		// no database, as it would migrate a shared one.
		"PARLEY_REDIS_URL": "PARLEY_REDIS_URL=redis//127.0.0.1:6379/11",
	} {
		name := strings.Fields(name)[0]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out, code := parley(t, dir, []string{"PARLEY_OLD_SECRET_KEYS=", env}, "serve")
			if code != 1 || !strings.Contains(out, name) {
				t.Errorf("%s: exit %d, want 1 and a refusal naming %s:\n%s", env, code, name, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "data", "parley.db")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: the refused start created the database (%v)", env, err)
			}
		})
	}
}

// TestBlankAPIKeyRefused: a PARLEY_API_KEY of whitespace alone (a secret
// that expanded to a newline) stops `parley mcp`, rather than run it as
// the local admin, which only an unset or empty one means; the commands
// that do not read it ignore it.
func TestBlankAPIKeyRefused(t *testing.T) {
	dir := t.TempDir()
	out, code := parley(t, dir, []string{"PARLEY_API_KEY= \n"}, "mcp")
	if code != 1 || !strings.Contains(out, "PARLEY_API_KEY holds only whitespace") {
		t.Errorf("exit %d, want 1 and a refusal naming PARLEY_API_KEY:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "parley.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused start created the database (%v)", err)
	}
	if out, code := parley(t, dir, []string{"PARLEY_API_KEY="}, "mcp"); code != 0 {
		t.Errorf("an empty PARLEY_API_KEY: exit %d, want 0 (the local admin):\n%s", code, out)
	}
	// Only parley mcp reads it: an env file the server shares with an
	// MCP client's does not stop the others.
	if out, code := parley(t, t.TempDir(), []string{"PARLEY_API_KEY= \n"}, "migrate", "up"); code != 0 {
		t.Errorf("migrate with a blank PARLEY_API_KEY: exit %d, want 0:\n%s", code, out)
	}
}

// TestBadKeyFileRefusedBeforeTheDatabase: a master key file in the data
// directory that holds no key stops the start, naming the file, before a
// database is created there.
func TestBadKeyFileRefusedBeforeTheDatabase(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "master.key"), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := parley(t, dir, []string{"PARLEY_OLD_SECRET_KEYS="}, "serve")
	if code != 1 || !strings.Contains(out, filepath.Join("data", "master.key")) {
		t.Errorf("exit %d, want 1 and a refusal naming the key file:\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "parley.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused start created the database (%v)", err)
	}
}

func TestMigrateCommands(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PARLEY_DATABASE_URL=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("parley %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("migrate", "up")
	if out := run("migrate", "status"); !strings.Contains(out, "00001") {
		t.Errorf("migrate status does not list the first migration:\n%s", out)
	}
	run("migrate", "down")
	run("migrate", "up")
	if out := run("admin", "gen-key"); len(strings.TrimSpace(out)) != 44 {
		t.Errorf("gen-key printed %q, want 32 bytes of base64", out)
	}
	// On an empty database the first admin command also creates (and
	// prints) the first admin key; the user id is the last line.
	all := run("admin", "create-user", "carol")
	out := strings.Split(strings.TrimSpace(all), "\n")
	if !printedKey.MatchString(all) {
		t.Errorf("first admin command did not print the first admin key: %q", out)
	}
	id := out[len(out)-1]
	if !strings.HasPrefix(id, "usr_") {
		t.Fatalf("create-user printed %q", id)
	}
	if key := strings.TrimSpace(run("admin", "create-key", id, "cli")); !strings.HasPrefix(key, "pk_") {
		t.Errorf("create-key printed %q", key)
	}
	for _, v := range []string{"version", "--version"} {
		if out := run(v); !strings.HasPrefix(out, "parley ") {
			t.Errorf("%s printed %q", v, out)
		}
	}
}

// TestStdioFirstStartPrintsTheAdminKey: `parley mcp` on an empty database
// creates the first admin key as every first start does, and no later
// start prints one, so it shows the key once on stderr (never on stdout,
// the protocol), where the next `parley serve` finds it working.
func TestStdioFirstStartPrintsTheAdminKey(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(bin, "mcp")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PARLEY_DATABASE_URL=", "PARLEY_DATA_DIR=", "PARLEY_SECRET_KEY=", "PARLEY_API_KEY=", "PARLEY_BOOTSTRAP_ADMIN_KEY=")
	cmd.Stdin = strings.NewReader("") // the client leaves at once
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("parley mcp: %v\n%s", err, stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("parley mcp wrote to stdout, the protocol's channel: %q", stdout.String())
	}
	m := printedKey.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("the first start of parley mcp printed no admin key:\n%s", stderr.String())
	}
	s := serve(t, dir)
	if printedKey.MatchString(s.stderr.String()) {
		t.Errorf("parley serve printed an admin key after parley mcp had:\n%s", s.stderr.String())
	}
	if got := get(t, s.url+"/api/v1/me", m[1]); got != 200 {
		t.Errorf("GET /me with the key parley mcp printed = %d", got)
	}
	s.stop(t)
}

// TestSignalDuringAStalledDatabaseStart: a PostgreSQL that accepts the
// connection but does not answer (a stalled server, a proxy with no
// backend) holds the start; SIGTERM ends it there, with a non-zero exit
// and a message that names the database but not its password.
func TestSignalDuringAStalledDatabaseStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	defer func() {
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	}()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "PARLEY_ADDR=127.0.0.1:0", "PARLEY_BOOTSTRAP_ADMIN_KEY=",
		"PARLEY_DATABASE_URL=postgres://parley:hunter2secret@"+ln.Addr().String()+"/parley?sslmode=disable",
		"PARLEY_SECRET_KEY=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	var out logtest.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-accepted:
		accepted <- c
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("parley serve did not connect to the database")
	}
	time.Sleep(200 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("exit after SIGTERM during the start: %v, want status 1\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "postgres") || strings.Contains(out.String(), "hunter2secret") {
			t.Errorf("the message does not name the database, or quotes its password:\n%s", out.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("parley serve waited on a database that does not answer for 10s after SIGTERM:\n%s", out.String())
	}
}

// TestKeysFromTheEnvironmentAreTrimmed: a key read from a file into the
// environment often keeps the file's newline (a Kubernetes or Docker
// secret, an env file with CRLF lines). PARLEY_BOOTSTRAP_ADMIN_KEY is
// then the key clients send, not one they cannot send (no header carries
// a newline); PARLEY_API_KEY is that key too.
func TestKeysFromTheEnvironmentAreTrimmed(t *testing.T) {
	dir := t.TempDir()
	key := "pk_trimmed_" + strings.Repeat("n", 30)
	s := serve(t, dir, "PARLEY_BOOTSTRAP_ADMIN_KEY="+key+"\r\n")
	if got := get(t, s.url+"/api/v1/me", key); got != 200 {
		t.Errorf("GET /me with the bootstrap key, set with a trailing newline = %d, want 200", got)
	}
	s.stop(t)

	s = serve(t, dir, "PARLEY_BOOTSTRAP_ADMIN_KEY="+key)
	s.stop(t)
	cmd := exec.Command(bin, "mcp")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PARLEY_DATABASE_URL=", "PARLEY_DATA_DIR=", "PARLEY_SECRET_KEY=", "PARLEY_BOOTSTRAP_ADMIN_KEY=", "PARLEY_API_KEY= "+key+"\n")
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("parley mcp with PARLEY_API_KEY set with spaces around: %v\n%s", err, out)
	}
}

// TestHealthcheck: `parley healthcheck`, the image's HEALTHCHECK, exits 0
// while the server on PARLEY_ADDR is ready, asking on loopback when it
// listens on every interface, and 1, saying why, once it has stopped.
func TestHealthcheck(t *testing.T) {
	s := serve(t, t.TempDir())
	_, port, err := net.SplitHostPort(strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(env string, args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"healthcheck"}, args...)...)
		cmd.Env = append(os.Environ(), env)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tt := range []struct{ env, arg string }{
		{"PARLEY_ADDR=127.0.0.1:" + port, ""},
		{"PARLEY_ADDR=0.0.0.0:" + port, ""},
		{"PARLEY_ADDR=:" + port, ""},
		{"PARLEY_ADDR=127.0.0.1:1", s.url},
	} {
		var args []string
		if tt.arg != "" {
			args = append(args, tt.arg)
		}
		if out, err := check(tt.env, args...); err != nil || strings.TrimSpace(out) != "ready" {
			t.Errorf("healthcheck %v with %s = %v %q; want ready", args, tt.env, err, out)
		}
	}
	s.stop(t)
	// An address with an IPv6 zone is asked as such, and failing, exits 1:
	// Docker reserves 2.
	out, err := check("PARLEY_ADDR=[fe80::1%lo]:" + port)
	if exit := (*exec.ExitError)(nil); !errors.As(err, &exit) || exit.ExitCode() != 1 || strings.Contains(out, "invalid URL escape") {
		t.Errorf("healthcheck of a zoned IPv6 address = %v %q; want exit 1 from asking it", err, out)
	}
	out, err = check("PARLEY_ADDR=127.0.0.1:" + port)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "/readyz") {
		t.Errorf("healthcheck of a stopped server = %v %q; want exit 1 naming /readyz", err, out)
	}
	// Two arguments, a mistake in the HEALTHCHECK line, exit 1 as well,
	// and a misspelt PARLEY_ADDR, which leaves the default to be asked,
	// is warned of.
	out, err = check("PARLEY_ADRR=127.0.0.1:"+port, s.url, s.url)
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "at most one argument") ||
		!strings.Contains(out, "did you mean PARLEY_ADDR?") {
		t.Errorf("healthcheck of two URLs with PARLEY_ADRR set = %v %q; want exit 1 saying it takes one, and a warning naming PARLEY_ADDR", err, out)
	}
}
