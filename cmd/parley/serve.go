package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/mcp"
)

// serve runs the HTTP server until ctx ends (SIGINT/SIGTERM), then stops
// accepting, gives in-flight requests and streams the grace period (which
// forceStop ending, at a second signal, cuts short), and flushes usage before
// exiting.
func serve(ctx, forceStop context.Context, stderr io.Writer) error {
	e, err := loadEnv()
	if err != nil {
		return err
	}
	log := e.logger(stderr)
	slog.SetDefault(log)
	e.Logger = log
	// Listen first: a start that cannot (the port taken, the address
	// mistyped) must fail before it creates a database and prints its
	// admin key, which no later start would print again.
	ln, err := net.Listen("tcp", e.Addr)
	if err != nil {
		return fmt.Errorf("PARLEY_ADDR %q: %w; set it to a free HOST:PORT, such as 127.0.0.1:8080", e.Addr, err)
	}
	defer ln.Close()
	a, err := app.Open(ctx, e.Config)
	if err != nil {
		return err
	}
	defer closeApp(a, log)
	printInitialAdminKey(stderr, a)
	a.StartSweeps()

	// Cancelling base ends what is left after the grace period.
	base, cancelBase := context.WithCancelCause(context.Background())
	defer cancelBase(nil)
	srv := newHTTPServer(a.Handler(), base, log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("parley serving", "addr", ln.Addr().String(), "version", version, "database", a.Store.Dialect())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", e.ShutdownGrace.String())
	sctx, cancel := graceContext(forceStop, e.ShutdownGrace, log)
	defer cancel()
	// MCP calls get the grace period too, then are ended; the event streams
	// of the HTTP+SSE transport, which carry their results, close once
	// those are written. Meanwhile the HTTP server waits for its requests
	// (those streams among them).
	mcpDone := make(chan struct{})
	go func() {
		defer close(mcpDone)
		a.StopMCPCalls(sctx, domain.ErrShuttingDown, 5*time.Second)
		wctx, cancelWait := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelWait()
		if err := a.CloseMCPStreams(wctx); err != nil {
			log.Warn("MCP results still unsent when the event streams closed", "err", err)
		}
	}()
	err = srv.Shutdown(sctx)
	if err != nil {
		log.Warn("grace period over; ending the remaining requests", "err", err)
		cancelBase(domain.ErrShuttingDown)
	}
	<-mcpDone
	if err != nil {
		ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel2()
		if err := srv.Shutdown(ctx2); err != nil {
			log.Warn("requests still running at exit are cut; usage not yet recorded for them is lost", "err", err)
		}
	}
	a.FlushUsage()
	log.Info("stopped")
	return nil
}

// closeApp closes a at exit, and logs what failed: the last usage
// records not written, the database or Redis not closed cleanly.
func closeApp(a *app.App, log *slog.Logger) {
	if err := a.Close(); err != nil {
		log.Error("closing Parley failed", "err", err)
	}
}

// printInitialAdminKey shows the admin key this start created, if any, on
// stderr: the only time it is shown. `parley mcp` shows it too (stdout is
// its protocol): a first start over stdio creates it as any first start
// does, and no later start, of any command, shows it again.
func printInitialAdminKey(stderr io.Writer, a *app.App) {
	if a.InitialAdminKey != "" {
		fmt.Fprintf(stderr, "\n  First start: created the admin API key (shown only this once):\n\n    %s\n\n  Use it as 'Authorization: Bearer <key>'.\n\n", a.InitialAdminKey)
	}
}

// graceContext is the shutdown's grace period: it ends when grace has
// passed or, sooner, when forceStop ends (a second signal). What still runs then
// is ended the same way either way.
func graceContext(forceStop context.Context, grace time.Duration, log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(forceStop, grace)
	stopNote := context.AfterFunc(forceStop, func() {
		log.Warn("second signal: ending the grace period now; a third exits at once")
	})
	return ctx, func() {
		stopNote()
		cancel()
	}
}

// serveStdio serves MCP over stdin/stdout. The caller is PARLEY_API_KEY's
// user or, without one, the local admin: whoever started this process
// already has the machine's data.
func serveStdio(ctx, forceStop context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	readOnly := false
	for _, a := range args {
		switch {
		case a == "--read-only":
			readOnly = true
		case isHelp(a):
			fmt.Fprint(stdout, usage)
			return nil
		default:
			return &usageError{fmt.Sprintf("mcp: unknown argument %q", a), usage}
		}
	}
	e, err := loadEnv()
	if err != nil {
		return err
	}
	if e.APIKeyBlank {
		// A secret that expanded to whitespace would otherwise make this
		// session the local admin, where a key was meant to narrow it.
		return errors.New("PARLEY_API_KEY holds only whitespace; set it to an API key, or unset it (or leave it empty) to run as the local admin")
	}
	e.MCPReadOnly = e.MCPReadOnly || readOnly
	log := e.logger(stderr)
	slog.SetDefault(log)
	e.Logger = log
	a, err := app.Open(ctx, e.Config)
	if err != nil {
		return err
	}
	defer closeApp(a, log)
	printInitialAdminKey(stderr, a)
	a.StartSweeps()
	var p domain.Principal
	if e.APIKey != "" {
		p, err = a.Services.Users.Authenticate(ctx, e.APIKey)
	} else {
		p, err = a.Services.Users.LocalAdmin(ctx)
	}
	if err != nil {
		if a.NewDatabase != "" {
			return fmt.Errorf("PARLEY_API_KEY: %s: no database was at %s, so this is a new, empty one; "+
				"set PARLEY_DATA_DIR (or PARLEY_DATABASE_URL) to the one parley serve uses", domain.MessageOf(err), a.NewDatabase)
		}
		return fmt.Errorf("PARLEY_API_KEY: %s", domain.MessageOf(err))
	}
	if a.NewDatabase != "" {
		// An MCP client starts this process in a directory of its own
		// choosing, where ./data is rarely the server's.
		log.Warn("serving a new, empty database; set PARLEY_DATA_DIR (or PARLEY_DATABASE_URL) in the client's configuration to use the one parley serve uses", "path", a.NewDatabase)
	}
	srv := mcp.NewServer(a.Services, mcp.Options{ReadOnly: e.MCPReadOnly, Version: version, Logger: log, CallTimeout: e.RequestTimeout,
		Calls: a.MCPCalls(), ProgressHeartbeat: e.KeepAlive})
	// A signal ends the session as it ends `parley serve`: the calls
	// running get the grace period (a second signal ends it), then are
	// ended with ErrShuttingDown (an "unavailable:" result, recorded as
	// interrupted), and the session closes once their results are
	// written. Stdin closing (the agent left) ends it, and cancels its
	// calls, at once.
	session, endSession := context.WithCancel(context.WithoutCancel(ctx))
	defer endSession()
	go func() {
		select {
		case <-session.Done():
			return
		case <-ctx.Done():
		}
		log.Info("shutting down", "grace", e.ShutdownGrace.String())
		grace, cancel := graceContext(forceStop, e.ShutdownGrace, log)
		defer cancel()
		a.StopMCPCalls(grace, domain.ErrShuttingDown, 5*time.Second)
		endSession()
	}()
	caller := mcp.Fixed(p)
	if e.APIKey != "" {
		// Checked again at every call: a key revoked while the agent
		// runs stops working here too, not at the agent's next restart.
		caller = func(ctx context.Context) (domain.Principal, error) {
			p, err := a.Services.Users.Authenticate(ctx, e.APIKey)
			if domain.KindOf(err) == domain.Unauthenticated {
				return p, domain.Errorf(domain.Unauthenticated, "PARLEY_API_KEY is not valid, has expired or has been revoked; "+
					"put a valid key in the MCP client's configuration and restart parley mcp")
			}
			return p, err
		}
	}
	served := make(chan error, 1)
	go func() { served <- mcp.ServeStdio(session, srv, caller, e.MaxBodyBytes, stdin, stdout, log) }()
	select {
	case err = <-served:
	case <-session.Done():
		// Ended by a signal, the session returns once its last results
		// are written, which an agent that no longer reads its output
		// never lets happen: the exit, and the last usage records, would
		// wait for ever.
		select {
		case err = <-served:
		case <-time.After(stdioUnreadWait):
			log.Warn("exiting with MCP responses unsent: the agent is not reading parley mcp's output", "waited", stdioUnreadWait.String())
			return nil
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// stdioUnreadWait is how long `parley mcp`, once its session ended, waits
// for the agent to read its last responses before it exits without them.
const stdioUnreadWait = 5 * time.Second

// newHTTPServer is the server of `parley serve`. Streams live until they
// finish, the client leaves or PARLEY_MAX_STREAM_DURATION ends them, so it
// has no read or write timeout; only the request headers are bounded (a
// client that trickles them would hold a connection), and idle
// keep-alive connections.
func newHTTPServer(h http.Handler, base context.Context, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          log.New(serverLog{logger}, "", 0),
	}
}

// serverLog writes net/http's own log lines to the logger, at a level by
// what they say: through the standard logger they were all INFO, so that
// at PARLEY_LOG_LEVEL=warn a server failing to accept connections (out of
// file descriptors) logged nothing. A client's doing (a query with a
// semicolon, a broken TLS handshake) stays INFO.
type serverLog struct{ logger *slog.Logger }

func (l serverLog) Write(p []byte) (int, error) {
	level := slog.LevelInfo
	switch {
	case bytes.HasPrefix(p, []byte("http: Accept error")), bytes.HasPrefix(p, []byte("http: panic serving")):
		level = slog.LevelError
	case bytes.HasPrefix(p, []byte("http: superfluous response.WriteHeader")):
		level = slog.LevelWarn // a fault of Parley's
	}
	l.logger.Log(context.Background(), level, string(bytes.TrimSpace(p)), "source", "net/http")
	return len(p), nil
}
