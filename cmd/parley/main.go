// Command parley serves chat completions with context over REST and MCP.
//
//	parley serve              REST + MCP over HTTP on PARLEY_ADDR (127.0.0.1:8080)
//	parley mcp                MCP over stdio
//	parley migrate up|down|status
//	parley admin create-user|create-key|gen-key|gen-api-key|rotate-key|backup
//	parley healthcheck [URL]  exit 0 when the server on PARLEY_ADDR is ready
//	parley version
//
// Configuration comes from the environment; see README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/requestid"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// defaultGOGC is the garbage collector's target when GOGC is not set.
// Parley's live heap is a few megabytes, so at Go's default of 100 it
// collects five to ten times a second under 1,000 completions a second,
// and each cycle's mark phase slows the requests that overlap it: on two
// cores these made most of the p99. At 400 the heap goal is still a few
// tens of megabytes.
const defaultGOGC = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	// A write to a closed stdout or stderr (the agent that started
	// `parley mcp` died; the `| tee` behind `parley serve` went with its
	// terminal) is an error to handle, not a signal that kills the process
	// before it flushes its usage records: Go's default for fds 1 and 2.
	signal.Ignore(syscall.SIGPIPE)
	ctx, forceStop, stop := notifySignals()
	defer stop()
	if err := run(ctx, forceStop, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		os.Exit(report(os.Stderr, err))
	}
}

// notifySignals returns a context that the first SIGINT, SIGTERM or SIGHUP
// (the terminal or ssh session that started Parley closing) ends,
// which starts the shutdown's grace period, and one that the second ends,
// which ends the grace period at once: an operator who presses Ctrl-C
// twice wants the server stopped now, not in PARLEY_SHUTDOWN_GRACE. What
// is left after that is bounded (the usage flush waits up to 10s on a
// database that does not answer), but a third signal exits at once.
//
// A SIGHUP that was ignored when Parley started (nohup) stays ignored:
// Notify would turn it back on.
func notifySignals() (first, second context.Context, stop func()) {
	sigs := make(chan os.Signal, 3) // room for all three, however fast they come
	notified := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		notified = append(notified, syscall.SIGHUP)
	}
	signal.Notify(sigs, notified...)
	first, endFirst := context.WithCancel(context.Background())
	second, endSecond := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		for _, end := range []func(){endFirst, endSecond, exitNow} {
			select {
			case <-sigs:
				end()
			case <-stopped:
				return
			}
		}
	}()
	return first, second, func() {
		signal.Stop(sigs)
		close(stopped)
		endFirst()
		endSecond()
	}
}

// exitNow is the third signal's: no more waiting, for anything. Usage
// records not yet written are lost, and the status says something was.
func exitNow() {
	fmt.Fprintln(os.Stderr, "parley: third signal: exiting now; usage records not yet stored are lost")
	os.Exit(1)
}

// usageError is a command line parley cannot run. It is found before
// anything is opened; main prints it with the usage and exits 2.
type usageError struct {
	msg   string
	usage string
}

func (e *usageError) Error() string { return e.msg }

// report writes err to w, with the usage after a usageError, and returns
// the exit code: 2 for a usageError, 1 for any other error.
func report(w io.Writer, err error) int {
	fmt.Fprintln(w, "parley:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprint(w, "\n", ue.usage)
		return 2
	}
	return 1
}

// isHelp reports whether arg asks for the usage.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

const usage = `usage: parley <command> [arguments]

commands:
  serve                      serve REST and MCP over HTTP on PARLEY_ADDR (default 127.0.0.1:8080)
  mcp [--read-only]          serve MCP over stdio (caller: PARLEY_API_KEY, else the local admin)
  migrate up|down|status     apply, roll back one, or list database migrations
  admin create-user NAME [--admin]
  admin create-key USER_ID [NAME] [--expires-at TIME]
  admin gen-key              print a new master key for PARLEY_SECRET_KEY
  admin gen-api-key          print a new API key for PARLEY_BOOTSTRAP_ADMIN_KEY
  admin rotate-key           re-encrypt provider keys under PARLEY_SECRET_KEY
                             (old keys in PARLEY_OLD_SECRET_KEYS)
  admin backup PATH          copy the SQLite database, while Parley runs, to PATH
  healthcheck [URL]          exit 0 when the parley on PARLEY_ADDR (or at URL) is
                             ready (its /readyz answers 200), else 1
  version (or --version)     print the version
`

// run runs the command line args until ctx ends; for the servers,
// forceStop ending ends the grace period ctx ending started. A command line it
// cannot run is a *usageError, returned before any database or file is
// touched.
func run(ctx, forceStop context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{"no command given", usage}
	}
	cmd, args := args[0], args[1:]
	if cmd == "--version" || cmd == "-version" {
		cmd = "version" // as most commands take it
	}
	if cmd == "help" && len(args) == 1 && !isHelp(args[0]) {
		cmd, args = args[0], []string{"--help"} // parley help admin is parley admin --help
	}
	switch cmd {
	case "serve", "version":
		if len(args) > 0 {
			if isHelp(args[0]) {
				fmt.Fprint(stdout, usage)
				return nil
			}
			return &usageError{fmt.Sprintf("%s takes no arguments, got %q", cmd, args[0]), usage}
		}
		if cmd == "version" {
			fmt.Fprintln(stdout, "parley", version)
			return nil
		}
		return serve(ctx, forceStop, stderr)
	case "mcp":
		return serveStdio(ctx, forceStop, args, stdin, stdout, stderr)
	case "migrate":
		return migrate(ctx, args, stdout, stderr)
	case "admin":
		return admin(ctx, args, stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, args, stdout, stderr)
	}
	if isHelp(cmd) {
		fmt.Fprint(stdout, usage)
		return nil
	}
	return &usageError{fmt.Sprintf("unknown command %q", cmd), usage}
}

// env is the server's environment, read once here: cmd reads the flags and
// the environment, but for providers' apiKeyRef env:NAME, which domain
// looks up when a completion needs the key (Deps.LookupEnv).
type env struct {
	app.Config
	Addr          string
	APIKey        string
	APIKeyBlank   bool // PARLEY_API_KEY is set to whitespace alone
	ShutdownGrace time.Duration
	LogLevel      slog.Level
	LogJSON       bool
}

func loadEnv() (env, error) {
	e := env{
		Config: app.Config{
			DataDir:           getenv("PARLEY_DATA_DIR", "data"),
			SecretKey:         os.Getenv("PARLEY_SECRET_KEY"),
			BootstrapAdminKey: envKey("PARLEY_BOOTSTRAP_ADMIN_KEY"),
			RedisURL:          envKey("PARLEY_REDIS_URL"), // a secret file's newline is not the password's
			Version:           version,
		},
		Addr:   getenv("PARLEY_ADDR", "127.0.0.1:8080"),
		APIKey: envKey("PARLEY_API_KEY"),
	}
	e.APIKeyBlank = e.APIKey == "" && os.Getenv("PARLEY_API_KEY") != ""
	if v := os.Getenv("PARLEY_OLD_SECRET_KEYS"); v != "" {
		e.OldSecretKeys = strings.Split(v, ",")
	}
	var err error
	if e.DatabaseURL, err = databaseURL(os.Getenv("PARLEY_DATABASE_URL")); err != nil {
		return e, err
	}
	if e.AllowPrivateUpstreams, err = envBool("PARLEY_ALLOW_PRIVATE_UPSTREAMS"); err != nil {
		return e, err
	}
	if e.MCPReadOnly, err = envBool("PARLEY_MCP_READ_ONLY"); err != nil {
		return e, err
	}
	if e.AllowedOrigins, err = origins("PARLEY_ALLOWED_ORIGINS"); err != nil {
		return e, err
	}
	if e.MCPAllowedOrigins, err = origins("PARLEY_MCP_ALLOWED_ORIGINS"); err != nil {
		return e, err
	}
	if v := os.Getenv("PARLEY_MCP_SSE_SESSIONS_PER_USER"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return e, fmt.Errorf("PARLEY_MCP_SSE_SESSIONS_PER_USER must be a positive number of sessions, got %q", v)
		}
		e.MCPSSESessionsPerUser = n
	}
	if v := os.Getenv("PARLEY_MAX_BODY_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return e, fmt.Errorf("PARLEY_MAX_BODY_BYTES must be a positive number of bytes, got %q", v)
		}
		e.MaxBodyBytes = n
	}
	if e.ShutdownGrace, err = envDuration("PARLEY_SHUTDOWN_GRACE", 30*time.Second, "to end the requests still running at once"); err != nil {
		return e, err
	}
	if e.Retention.Usage, err = envRetention("PARLEY_USAGE_RETENTION"); err != nil {
		return e, err
	}
	if e.Retention.Conversations, err = envRetention("PARLEY_CONVERSATION_RETENTION"); err != nil {
		return e, err
	}
	if e.MaxStreamDuration, err = envDuration("PARLEY_MAX_STREAM_DURATION", 0, "for no limit"); err != nil {
		return e, err
	}
	if e.KeepAlive, err = envPositiveDuration("PARLEY_SSE_KEEPALIVE", domain.DefaultKeepAlive); err != nil {
		return e, err
	}
	if e.KeepAlive < time.Second {
		// Each interval is a write to every quiet stream, and over MCP a
		// progress notification: under a second they would be a flood.
		return e, fmt.Errorf("PARLEY_SSE_KEEPALIVE must be at least 1s, got %q", os.Getenv("PARLEY_SSE_KEEPALIVE"))
	}
	if e.KeepAlive > maxKeepAlive {
		// A client is cut once a write has waited twice this: a value
		// meant as "never" would overflow that into a second.
		return e, fmt.Errorf("PARLEY_SSE_KEEPALIVE must be at most %s, got %q (proxies cut a stream quiet for a minute or two)", maxKeepAlive, os.Getenv("PARLEY_SSE_KEEPALIVE"))
	}
	if e.RequestTimeout, err = envPositiveDuration("PARLEY_REQUEST_TIMEOUT", domain.DefaultRequestTimeout); err != nil {
		return e, err
	}
	if err := e.loadUpstreamEnv(); err != nil {
		return e, err
	}
	// Both in any case: slog reads DEBUG as debug, and so JSON is json.
	// By name only: slog's own syntax also takes offsets (error+100, which
	// would hide every line).
	if v := getenv("PARLEY_LOG_LEVEL", "info"); !slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(v)) ||
		e.LogLevel.UnmarshalText([]byte(v)) != nil {
		return e, fmt.Errorf("PARLEY_LOG_LEVEL must be debug, info, warn or error, got %q", v)
	}
	switch f := getenv("PARLEY_LOG_FORMAT", "text"); strings.ToLower(f) {
	case "text", "json":
		e.LogJSON = strings.EqualFold(f, "json")
	default:
		return e, fmt.Errorf("PARLEY_LOG_FORMAT must be text or json, got %q", f)
	}
	return e, nil
}

// maxKeepAlive bounds PARLEY_SSE_KEEPALIVE.
const maxKeepAlive = time.Hour

// knownVars are the PARLEY_ variables Parley reads, as the README's
// configuration table lists them (PARLEY_PROVIDER_KEY_* aside), for
// unknownVars.
var knownVars = []string{
	"PARLEY_ADDR", "PARLEY_DATABASE_URL", "PARLEY_DATA_DIR", "PARLEY_SECRET_KEY", "PARLEY_OLD_SECRET_KEYS",
	"PARLEY_BOOTSTRAP_ADMIN_KEY", "PARLEY_ALLOW_PRIVATE_UPSTREAMS", "PARLEY_MAX_BODY_BYTES", "PARLEY_SHUTDOWN_GRACE",
	"PARLEY_MAX_STREAM_DURATION", "PARLEY_USAGE_RETENTION", "PARLEY_CONVERSATION_RETENTION", "PARLEY_SSE_KEEPALIVE", "PARLEY_REQUEST_TIMEOUT", "PARLEY_UPSTREAM_RETRIES",
	"PARLEY_UPSTREAM_RETRY_DELAY", "PARLEY_UPSTREAM_CONNECT_TIMEOUT", "PARLEY_UPSTREAM_FIRST_BYTE_TIMEOUT",
	"PARLEY_UPSTREAM_IDLE_TIMEOUT", "PARLEY_UPSTREAM_RESPONSE_TIMEOUT", "PARLEY_REDIS_URL", "PARLEY_LOG_LEVEL",
	"PARLEY_LOG_FORMAT", "PARLEY_API_KEY", "PARLEY_MCP_READ_ONLY", "PARLEY_ALLOWED_ORIGINS", "PARLEY_MCP_ALLOWED_ORIGINS", "PARLEY_MCP_SSE_SESSIONS_PER_USER", "PARLEY_PPROF_ADDR",
}

// unknownVar is a PARLEY_ variable Parley does not read, and the one it
// most likely misspells ("" when none is close).
type unknownVar struct{ name, meant string }

// unknownVars returns the PARLEY_ variables of environ that Parley does
// not read: a misspelt PARLEY_DATABASE_URL would otherwise serve an empty
// SQLite database without a word.
func unknownVars(environ []string) []unknownVar {
	var out []unknownVar
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "PARLEY_") || strings.HasPrefix(name, "PARLEY_PROVIDER_KEY_") || slices.Contains(knownVars, name) {
			continue
		}
		v, dist := unknownVar{name: name}, 4 // a closer name than this is a likely misspelling
		for _, k := range knownVars {
			d := editDistance(name, k)
			if strings.HasPrefix(name, k+"_") {
				d = 0 // PARLEY_SHUTDOWN_GRACE_PERIOD
			}
			if d < dist {
				v.meant, dist = k, d
			}
		}
		out = append(out, v)
	}
	return out
}

// warnUnknownVars logs environ's unknown PARLEY_ variables: a warning for
// a likely misspelling, naming the setting; a debug line for another (the
// test suite's own, say).
func warnUnknownVars(log *slog.Logger, environ []string) {
	for _, v := range unknownVars(environ) {
		if v.meant != "" {
			log.Warn(v.name + " is not a Parley setting and is ignored; did you mean " + v.meant + "?")
		} else {
			log.Debug(v.name + " is not a Parley setting and is ignored")
		}
	}
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// origins reads the comma-separated origins of the variable name: each
// "*" or scheme://host[:port], as a browser sends it in Origin.
func origins(name string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(os.Getenv(name), ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		if o == "*" {
			out = append(out, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%s must list origins such as https://app.example.com (scheme, host and port only) or *, got %q", name, o)
		}
		if strings.Contains(u.Host, "*") {
			return nil, fmt.Errorf("%s: %q holds a * in its host, which matches nothing: list each origin, or * alone for any", name, o)
		}
		// As a browser sends it: lower case, without the scheme's own port.
		u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
		if p := u.Port(); (u.Scheme == "https" && p == "443") || (u.Scheme == "http" && p == "80") {
			u.Host = strings.TrimSuffix(u.Host, ":"+p)
		}
		out = append(out, u.String())
	}
	return out, nil
}

// maxUpstreamRetries bounds PARLEY_UPSTREAM_RETRIES: with the delay
// doubling each time, ten retries already wait minutes.
const maxUpstreamRetries = 10

// maxRetryDelay bounds PARLEY_UPSTREAM_RETRY_DELAY, the first retry's
// wait: a caller is waiting through every one of them.
const maxRetryDelay = 10 * time.Second

// loadUpstreamEnv reads how upstream calls are retried and timed out; unset
// variables keep llm's defaults.
func (e *env) loadUpstreamEnv() error {
	c := &e.LLM
	if v := os.Getenv("PARLEY_UPSTREAM_RETRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxUpstreamRetries {
			return fmt.Errorf("PARLEY_UPSTREAM_RETRIES must be a number from 0 to %d, got %q", maxUpstreamRetries, v)
		}
		c.MaxRetries = n
		if n == 0 {
			c.MaxRetries = -1 // llm's "none"; 0 there means the default
		}
	}
	var err error
	if c.RetryBaseDelay, err = envPositiveDuration("PARLEY_UPSTREAM_RETRY_DELAY", 0); err != nil {
		return err
	}
	if c.RetryBaseDelay > maxRetryDelay {
		return fmt.Errorf("PARLEY_UPSTREAM_RETRY_DELAY must be at most %s, got %q", maxRetryDelay, os.Getenv("PARLEY_UPSTREAM_RETRY_DELAY"))
	}
	if c.ConnectTimeout, err = envPositiveDuration("PARLEY_UPSTREAM_CONNECT_TIMEOUT", 0); err != nil {
		return err
	}
	if c.FirstByteTimeout, err = envPositiveDuration("PARLEY_UPSTREAM_FIRST_BYTE_TIMEOUT", 0); err != nil {
		return err
	}
	if c.IdleTimeout, err = envPositiveDuration("PARLEY_UPSTREAM_IDLE_TIMEOUT", 0); err != nil {
		return err
	}
	c.ResponseTimeout, err = envPositiveDuration("PARLEY_UPSTREAM_RESPONSE_TIMEOUT", 0)
	return err
}

// commandLogger is the logger of a command that is not a server (migrate,
// admin), on w: warnings and errors only, as its output is the command's
// (an id, a key, a migration's name), not a server's account of itself.
func (e env) commandLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: max(e.LogLevel, slog.LevelWarn)}
	if e.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// logger writes to stderr: over stdio, stdout is the protocol. Each line
// logged in the course of a request or an MCP tool call names its
// request_id.
// It warns, first, of the PARLEY_ variables Parley does not read
// (warnUnknownVars).
func (e env) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: e.LogLevel}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if e.LogJSON {
		h = slog.NewJSONHandler(w, opts)
	}
	log := slog.New(requestid.LogHandler(h))
	warnUnknownVars(log, os.Environ())
	return log
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// envKey reads an API key setting without the whitespace around it: a key
// read from a file into the environment (a Kubernetes or Docker secret, an
// env file with CRLF lines) often keeps the file's newline, which no client
// can send in its Authorization header. PARLEY_SECRET_KEY and
// PARLEY_DATABASE_URL are read so too.
func envKey(name string) string { return strings.TrimSpace(os.Getenv(name)) }

func envBool(name string) (bool, error) {
	v := os.Getenv(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s must be true or false, got %q", name, v)
	}
	return b, nil
}

// envDuration reads a duration setting where 0 has a meaning of its own,
// which zero says ("for no limit"); def when it is unset. A negative one
// is refused, saying what 0 means.
func envDuration(name string, def time.Duration, zero string) (time.Duration, error) {
	d, err := parseEnvDuration(name, def)
	if err == nil && d < 0 {
		return 0, fmt.Errorf("%s must be a positive duration such as 30s, or 0 %s, got %q", name, zero, os.Getenv(name))
	}
	return d, err
}

// envPositiveDuration reads a duration setting where 0 has no meaning of
// its own (the code would take its default instead): set to 0, like set
// to a negative duration, it is refused rather than silently read as the
// default.
func envPositiveDuration(name string, def time.Duration) (time.Duration, error) {
	d, err := parseEnvDuration(name, def)
	if err == nil && d <= 0 && os.Getenv(name) != "" {
		return 0, fmt.Errorf("%s must be a positive duration such as 30s, got %q; leave it unset for the default", name, os.Getenv(name))
	}
	return d, err
}

// maxRetentionDays bounds a retention setting: a century, past which "for
// ever" (0) is what is meant, and within time.Duration's range.
const maxRetentionDays = 36500

// envRetention reads a retention setting: a duration of at least
// domain.MinRetention, in days ("90d") or as a Go duration ("2160h"), or
// unset or 0 to keep for ever.
func envRetention(name string) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" || v == "0" {
		return 0, nil
	}
	var d time.Duration
	days, isDays := strings.CutSuffix(v, "d")
	n, err := strconv.Atoi(days)
	switch {
	case isDays && err == nil && n > maxRetentionDays:
		return 0, fmt.Errorf("%s must be at most %dd, or 0 to keep for ever; got %q", name, maxRetentionDays, v)
	case isDays && err == nil && n > 0:
		d = time.Duration(n) * 24 * time.Hour
	default:
		if d, err = time.ParseDuration(v); err != nil || isDays {
			return 0, fmt.Errorf("%s must be a number of days such as 90d, or a duration such as 720h; or 0 to keep for ever; got %q", name, v)
		}
	}
	if d > maxRetentionDays*24*time.Hour {
		return 0, fmt.Errorf("%s must be at most %dd, or 0 to keep for ever; got %q", name, maxRetentionDays, v)
	}
	if d < domain.MinRetention {
		return 0, fmt.Errorf("%s must be at least an hour, or 0 to keep for ever; got %q", name, v)
	}
	return d, nil
}

// parseEnvDuration reads the duration setting name, def when it is unset.
func parseEnvDuration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s must be a duration such as 30s, got %q", name, v)
	}
	return d, nil
}
