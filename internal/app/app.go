// Package app wires Parley's adapters to its domain: the store, the
// keyring, the Casbin authorizer, the LLM client and the HTTP handlers.
// cmd/parley reads flags and environment into a Config and calls Open;
// tests call New with a store of their own.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/requestid"
	"github.com/parleyhq/parley/llm"
	"github.com/parleyhq/parley/mcp"
	"github.com/parleyhq/parley/metrics"
	"github.com/parleyhq/parley/policy"
	"github.com/parleyhq/parley/ratelimit"
	"github.com/parleyhq/parley/rest"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
	"github.com/parleyhq/parley/storecache"
)

// Config is everything the server is configured with.
type Config struct {
	// DatabaseURL selects PostgreSQL ("postgres://..."); "" means SQLite
	// at DataDir/parley.db.
	DatabaseURL string
	// DataDir holds the SQLite database and its master key file.
	DataDir string
	// SecretKey is the base64 master key (PARLEY_SECRET_KEY). Required on
	// PostgreSQL; on SQLite a key file in DataDir is used when it is empty.
	SecretKey string
	// OldSecretKeys can still decrypt provider keys, for rotation.
	OldSecretKeys []string
	// AllowPrivateUpstreams lets providers use loopback and private addresses.
	AllowPrivateUpstreams bool
	// MaxBodyBytes caps request bodies (REST and MCP over HTTP).
	MaxBodyBytes int64
	// BootstrapAdminKey is made sure to exist as an admin key at start.
	BootstrapAdminKey string
	// MaxStreamDuration ends longer completion streams; 0 means no limit.
	MaxStreamDuration time.Duration
	// KeepAlive is the interval of SSE comment keep-alives; 0 means 15s.
	KeepAlive time.Duration
	// RequestTimeout bounds REST requests and MCP tool calls, and a
	// completion's work before its upstream call; 0 means 30s.
	RequestTimeout time.Duration
	// CacheTTL bounds how long another instance's write (a revoked key, a
	// removed member, a changed chat or provider) takes to be seen here;
	// writes through this instance are seen at once. 0 means 2s. Tests
	// that take the database away set it longer, so that what they had
	// read stays cached however slow the machine.
	CacheTTL time.Duration
	// RedisURL shares rate-limit counters across instances; "" keeps them
	// in memory.
	RedisURL string
	// MCPReadOnly registers only the read tools.
	MCPReadOnly bool
	// AllowedOrigins are the browser origins, besides loopback ones,
	// whose pages may call the REST API (CORS) and MCP over HTTP
	// (PARLEY_ALLOWED_ORIGINS).
	AllowedOrigins []string
	// MCPAllowedOrigins are the browser origins MCP over HTTP takes
	// besides loopback ones ("*": any); see mcp.Limits.Origins.
	MCPAllowedOrigins []string
	// MCPSSESessionsPerUser caps each user's open HTTP+SSE sessions (0:
	// mcp.DefaultSSESessionsPerUser); see mcp.Limits.SSESessionsPerUser.
	MCPSSESessionsPerUser int
	// Retention deletes usage records and conversations past their age,
	// from StartSweeps and then hourly; zero keeps them.
	Retention domain.Retention
	// LLM configures upstream calls; AllowPrivate is set from AllowPrivateUpstreams.
	LLM     llm.Config
	Version string
	Logger  *slog.Logger
	// Now is the services' clock (when keys expire, and the times stored);
	// nil means the system clock. Tests set it.
	Now func() time.Time
	// Authorizer decides permissions; nil means the base policy of
	// policies/. Tests set it, to check a rule under a narrower policy.
	Authorizer domain.Authorizer

	// limiter is the rate limiter Open opened before the database, for New.
	limiter *openLimiter
}

// openLimiter is a rate limiter and the func that closes it.
type openLimiter struct {
	domain.Limiter
	close func() error
}

// App is a wired Parley.
type App struct {
	Store    *store.Store
	Services *domain.Services
	// InitialAdminKey is set when this start created the first admin key;
	// print it once.
	InitialAdminKey string
	// NewDatabase is the absolute path of the SQLite database this start
	// created, "" when it opened one that existed (or PostgreSQL).
	NewDatabase string

	cfg     Config
	log     *slog.Logger
	usage   *domain.UsageBatcher
	flushed sync.Once
	handler http.Handler

	closeLimiter func() error
	metrics      *metrics.Metrics
	stopSweeps   func() // ends the retention sweeps and waits for them
	mcpCalls     mcp.Calls
	mcpSSE       *mcp.SSE
}

// Open opens (and migrates) the configured database, then wires the app.
//
// What it can check without the database (the keys' forms, PostgreSQL's
// need of PARLEY_SECRET_KEY) it checks first: a start that is bound to
// fail must not create or migrate a database, a shared one least of all.
func Open(ctx context.Context, cfg Config) (*App, error) {
	dsn := cfg.DSN()
	if err := cfg.check(store.DialectOf(dsn)); err != nil {
		return nil, err
	}
	var created string
	if f := store.SQLiteFile(dsn); f != "" {
		if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) {
			created, _ = filepath.Abs(f)
		}
	}
	// A Redis that refuses the URL's password or database stops the start
	// before the database is opened, created or migrated (one that does
	// not answer is let through: the limiter fails open).
	l, closeLimiter, err := ratelimit.Open(cfg.RedisURL, logger(cfg))
	if err != nil {
		return nil, fmt.Errorf("PARLEY_REDIS_URL: %w", err)
	}
	cfg.limiter = &openLimiter{l, closeLimiter}
	st, err := store.Open(ctx, dsn)
	if err != nil {
		_ = closeLimiter()
		return nil, err
	}
	if err := st.Migrate(ctx, "up", migrationLog{cfg.Logger}); err != nil {
		_ = closeLimiter()
		st.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	a, err := New(ctx, cfg, st)
	if err != nil {
		_ = closeLimiter() // again, if New did: a closed client says so, and nothing more
		st.Close()
		return nil, err
	}
	if a.NewDatabase = created; created != "" {
		a.log.Info("created a new SQLite database", "path", created)
	}
	return a, nil
}

// check refuses a configuration that New would refuse once the database
// is open, for a database of dialect.
func (cfg Config) check(dialect string) error {
	for i, k := range cfg.OldSecretKeys {
		if strings.TrimSpace(k) == "" {
			continue
		}
		if _, err := secret.ParseKey(k); err != nil {
			return fmt.Errorf("PARLEY_OLD_SECRET_KEYS, its entry %d of %d: %w", i+1, len(cfg.OldSecretKeys), err)
		}
	}
	switch {
	case cfg.SecretKey != "":
		if _, err := secret.ParseKey(cfg.SecretKey); err != nil {
			return fmt.Errorf("PARLEY_SECRET_KEY: %w", err)
		}
	case dialect == store.Postgres:
		return errNoSecretKey
	default:
		// A key file there is read as Keyring reads it; one that is not
		// there Keyring makes, after the database is open.
		// One that cannot be read (its owner after a restore as root, a
		// directory) stops the start here, before a database is made.
		path := MasterKeyFile(cfg)
		b, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("master key file %s cannot be read (is it a file this user may read? check its owner and mode; or set PARLEY_SECRET_KEY to the key): %w", path, err)
		default:
			if _, err := secret.ParseKey(string(b)); err != nil {
				return fmt.Errorf("master key file %s: %w", path, err)
			}
		}
	}
	if err := ratelimit.CheckURL(cfg.RedisURL); err != nil {
		return fmt.Errorf("PARLEY_REDIS_URL: %w", err)
	}
	if cfg.BootstrapAdminKey != "" {
		if err := domain.CheckBootstrapKey(cfg.BootstrapAdminKey); err != nil {
			return errors.New(domain.MessageOf(err)) // which names PARLEY_BOOTSTRAP_ADMIN_KEY
		}
	}
	return nil
}

var errNoSecretKey = errors.New("PARLEY_SECRET_KEY is required with PostgreSQL (replicas must share it); make one with 'parley admin gen-key'")

// logRecorder is a domain.UsageRecorder that names what a completion's record
// says (its project, chat, provider, model, outcome and message id) on the
// log lines of the request it came in, from then on, its access line among
// them, so that an on-call can tell whose completion failed and where;
// then it hands the record on.
type logRecorder struct{ next domain.UsageRecorder }

func (l logRecorder) Record(ctx context.Context, r domain.UsageRecord) {
	attrs := make([]slog.Attr, 0, 8)
	attrs = append(attrs, slog.String("project_id", r.ProjectID))
	if r.ChatID != "" {
		attrs = append(attrs, slog.String("chat_id", r.ChatID))
	}
	attrs = append(attrs, slog.String("provider_id", r.AIProviderID), slog.String("model", requestid.Capped(r.Model, 128)),
		slog.String("outcome", string(r.Outcome)), slog.String("message_id", r.ID),
		// The completion's latency and a stream's time to first token (from
		// the call upstream), as its usage record has them: beside the
		// request's duration_ms, a slow provider told from a slow Parley.
		slog.Float64("completion_ms", requestid.Millis(r.Latency)))
	if r.Stream && r.TimeToFirst > 0 {
		attrs = append(attrs, slog.Float64("ttft_ms", requestid.Millis(r.TimeToFirst)))
	}
	requestid.Annotate(ctx, attrs...)
	l.next.Record(ctx, r)
}

// migrationLog logs what Migrate reports at a start: each migration it
// applied, a migration waiting for a lock (a warning), and a schema that a
// newer parley migrated past this one's (a warning: this one may not know
// its tables). Nothing when the schema is current.
type migrationLog struct{ log *slog.Logger }

func (m migrationLog) Write(p []byte) (int, error) {
	if m.log == nil {
		return len(p), nil
	}
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		switch {
		case strings.HasPrefix(line, "applied "):
			m.log.Info("migration " + line)
		case strings.HasPrefix(line, "waiting: "):
			m.log.Warn(strings.TrimPrefix(line, "waiting: "))
		case strings.Contains(line, "newer parley"):
			m.log.Warn("the database's schema is newer than this parley's: " + line)
		}
	}
	return len(p), nil
}

// DSN is the database cfg names: DatabaseURL, else SQLite's parley.db in
// the data directory. `parley migrate` opens it too.
func (cfg Config) DSN() string {
	if cfg.DatabaseURL != "" {
		return cfg.DatabaseURL
	}
	return filepath.Join(dataDir(cfg), "parley.db")
}

func dataDir(cfg Config) string {
	if cfg.DataDir == "" {
		return "data"
	}
	return cfg.DataDir
}

// MasterKeyFile is where a server on SQLite keeps its master key when
// PARLEY_SECRET_KEY is not set: in the data directory.
func MasterKeyFile(cfg Config) string { return filepath.Join(dataDir(cfg), "master.key") }

// logger is cfg's logger (one that writes nothing when it has none),
// adding the request id to every line logged in a request's course.
func logger(cfg Config) *slog.Logger {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(requestid.LogHandler(log.Handler()))
}

// warnIfReadable warns when the file at path, what it is, can be read by
// other users of the machine, saying why it matters and what to do.
func warnIfReadable(log *slog.Logger, path, what, why string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn(what+" can be read by other users of this machine, and "+why, "path", path, "mode", fi.Mode().Perm().String())
	}
}

// keyring loads the master key (and old ones) as the config says. sealed
// counts the stored provider keys by the id of the master key that sealed
// them: a key file is not created while some of them are sealed under a
// key that is not loaded, since a new key would open none of them.
func keyring(cfg Config, dialect string, sealed map[string]int) (*secret.Keyring, error) {
	var older [][]byte
	olderIDs := map[string]bool{}
	for _, s := range cfg.OldSecretKeys {
		if strings.TrimSpace(s) == "" {
			continue // a trailing comma, or two in a row
		}
		k, err := secret.ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("PARLEY_OLD_SECRET_KEYS: %w", err)
		}
		older = append(older, k)
		olderIDs[secret.KeyID(k)] = true
	}
	var primary []byte
	var err error
	switch {
	case cfg.SecretKey != "":
		primary, err = secret.ParseKey(cfg.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("PARLEY_SECRET_KEY: %w", err)
		}
	case dialect == store.Postgres:
		return nil, errNoSecretKey
	default:
		path := MasterKeyFile(cfg)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if n, ids := unheld(sealed, func(id string) bool { return olderIDs[id] }); n > 0 {
				abs, _ := filepath.Abs(path)
				return nil, fmt.Errorf("the database holds %s sealed under another master key (%s), but PARLEY_SECRET_KEY is not set and %s does not exist: "+
					"set PARLEY_SECRET_KEY to that key, or restore %s; if the key is lost, set PARLEY_SECRET_KEY to a new one from 'parley admin gen-key' and send each provider's apiKey again",
					providerKeys(n), keyIDs(ids), abs, abs)
			}
		}
		primary, err = secret.LoadOrCreateFile(path)
		if err != nil {
			return nil, fmt.Errorf("master key file: %w", err)
		}
	}
	return secret.NewKeyring(primary, older...)
}

// sealedKeys counts the stored provider keys by the id of the master key
// that sealed them, and those not bound to their provider (sealed before
// keys were); keys read from the environment are not counted.
func sealedKeys(ctx context.Context, st *store.Store) (sealed map[string]int, unbound int, err error) {
	all, err := st.ListAllProviders(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("read the provider keys' master key ids: %w", err)
	}
	sealed = map[string]int{}
	for _, p := range all {
		if len(p.APIKeyCiphertext) > 0 {
			masterKeyID, bound := p.SealedUnder()
			sealed[masterKeyID]++
			if !bound {
				unbound++
			}
		}
	}
	return sealed, unbound, nil
}

// unheld returns how many of the sealed keys are under a master key that
// holds does not report, and those keys' ids, sorted.
func unheld(sealed map[string]int, holds func(keyID string) bool) (int, []string) {
	n, ids := 0, []string{}
	for id, c := range sealed {
		if !holds(id) {
			n += c
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return n, ids
}

func keyIDs(ids []string) string {
	if len(ids) == 1 {
		return "key id " + ids[0]
	}
	return "key ids " + strings.Join(ids, ", ")
}

func providerKeys(n int) string {
	if n == 1 {
		return "1 provider key"
	}
	return fmt.Sprintf("%d provider keys", n)
}

// defaultCacheTTL is Config.CacheTTL's default.
const defaultCacheTTL = 2 * time.Second

// New wires the app over an open, migrated store, and bootstraps the admin.
func New(ctx context.Context, cfg Config, st *store.Store) (*App, error) {
	log := logger(cfg)
	kr, err := openKeyring(ctx, cfg, st, log)
	if err != nil {
		return nil, err
	}
	var authz domain.Authorizer = cfg.Authorizer
	if authz == nil {
		if authz, err = policy.New(); err != nil {
			return nil, err
		}
	}
	limiter := cfg.limiter
	if limiter == nil {
		l, closeLimiter, err := ratelimit.Open(cfg.RedisURL, log)
		if err != nil {
			return nil, fmt.Errorf("PARLEY_REDIS_URL: %w", err)
		}
		limiter = &openLimiter{l, closeLimiter}
	}
	usage := domain.NewUsageBatcher(st, log, 500, 200*time.Millisecond)
	m := newMetrics(st, usage, limiter.Limiter)
	svcs := domain.NewServices(domain.Deps{
		Store: storecache.New(st, cmp.Or(cfg.CacheTTL, defaultCacheTTL)), Authz: authz, Sealer: kr, LLM: llm.New(llmConfig(cfg, m, log)),
		Usage: logRecorder{m.Recorder(usage)}, Limiter: m.Limiter(limiter.Limiter),
		AllowPrivateUpstreams: cfg.AllowPrivateUpstreams, MaxStreamDuration: cfg.MaxStreamDuration,
		RequestTimeout: cfg.RequestTimeout, UsageRetention: cfg.Retention.Usage, Logger: log, Now: cfg.Now,
	})
	usage.ReportWrites(svcs.Completions.NoteUsageWrite)
	a := &App{Store: st, Services: svcs, cfg: cfg, log: log, usage: usage, closeLimiter: limiter.close, metrics: m, stopSweeps: func() {}}
	if a.InitialAdminKey, err = bootstrapAdmin(ctx, cfg, st, svcs, log); err != nil {
		usage.Close()
		_ = limiter.close()
		return nil, err
	}
	a.mount()
	return a, nil
}

// openKeyring returns the keyring of the master keys cfg gives (or the
// key file), warning of what an operator must put right: a database or
// key file others may read, provider keys sealed under a master key this
// server does not hold, keys an earlier Parley sealed unbound.
func openKeyring(ctx context.Context, cfg Config, st *store.Store, log *slog.Logger) (*secret.Keyring, error) {
	// Parley makes its files 0600, but one an older Parley made, a
	// restore or a copy may be anyone's to read on this machine.
	if path := st.SQLitePath(); path != "" {
		warnIfReadable(log, path, "the SQLite database", "it holds API key hashes and sealed provider keys: chmod 600 it (and its -wal and -shm files)")
	}
	sealed, unbound, err := sealedKeys(ctx, st)
	if err != nil {
		return nil, err
	}
	kr, err := keyring(cfg, st.Dialect(), sealed)
	if err != nil {
		return nil, err
	}
	if cfg.SecretKey == "" && st.Dialect() != store.Postgres {
		warnIfReadable(log, filepath.Join(dataDir(cfg), "master.key"), "the master key file", "it opens every stored provider key: chmod 600 it")
	}
	if n, ids := unheld(sealed, kr.Holds); n > 0 {
		log.Warn("provider keys are sealed under a master key this server does not hold, so their completions fail: "+
			"set PARLEY_SECRET_KEY to that key, or add it to PARLEY_OLD_SECRET_KEYS and run 'parley admin rotate-key'; "+
			"if it is lost, send each provider's apiKey again", "count", n, "keyIds", strings.Join(ids, ","))
	}
	if unbound > 0 {
		// Until rotate-key binds them, one who can write the database can
		// copy such a key into another provider's row and spend it there.
		log.Warn("provider keys sealed by an earlier Parley are not bound to their provider: run 'parley admin rotate-key' to bind them", "count", unbound)
	}
	return kr, nil
}

// newMetrics returns the server's metrics, counting the usage records
// waiting and dropped, the database pool, and the limiter's calls that
// failed open.
func newMetrics(st *store.Store, usage *domain.UsageBatcher, limiter domain.Limiter) *metrics.Metrics {
	m := metrics.New()
	m.CountUsageDropped(usage.Dropped)
	m.CountUsageWaiting(usage.Waiting)
	// Redis's limiter counts its calls that failed open; limits kept in
	// memory cannot fail.
	failedOpen := func() int64 { return 0 }
	if r, ok := limiter.(interface{ FailedOpen() int64 }); ok {
		failedOpen = r.FailedOpen
	}
	m.CountLimiterFailedOpen(failedOpen)
	if db, err := st.DB().DB(); err == nil {
		m.CountDatabase(db)
	}
	return m
}

// llmConfig is cfg's upstream settings, with the hooks that count and log
// retries and name each call's request ids on its log lines.
func llmConfig(cfg Config, m *metrics.Metrics, log *slog.Logger) llm.Config {
	c := cfg.LLM
	c.AllowPrivate = cfg.AllowPrivateUpstreams
	c.OnRetry = func(ctx context.Context, r llm.Retry) {
		m.UpstreamRetried(string(r.ProviderType), r.Reason)
		log.WarnContext(ctx, "upstream retried", "provider_type", string(r.ProviderType), "reason", r.Reason, "status", r.Status,
			"attempt", r.Attempt, "wait_ms", r.Wait.Milliseconds())
	}
	c.RequestID = requestid.From
	c.OnUpstreamID = func(ctx context.Context, id string) {
		if id == "" {
			requestid.Forget(ctx, "upstream_request_id")
			return
		}
		requestid.Annotate(ctx, slog.String("upstream_request_id", requestid.Capped(id, 128)))
	}
	return c
}

// bootstrapAdmin makes sure of PARLEY_BOOTSTRAP_ADMIN_KEY's admin, or on an
// empty database creates the first admin, whose key it returns to be
// printed once.
func bootstrapAdmin(ctx context.Context, cfg Config, st *store.Store, svcs *domain.Services, log *slog.Logger) (string, error) {
	if cfg.BootstrapAdminKey == "" {
		key, err := svcs.Users.BootstrapIfEmpty(ctx)
		if err != nil {
			return "", fmt.Errorf("bootstrap admin: %w", err)
		}
		return key, nil
	}
	// A key the database does not hold, in one that has users, makes a
	// new admin beside those: an operator who changed the variable to
	// replace a leaked key must be told the old one still works.
	_, held := svcs.Users.Authenticate(ctx, cfg.BootstrapAdminKey)
	users, _ := st.CountUsers(ctx)
	if err := svcs.Users.EnsureAdminKey(ctx, cfg.BootstrapAdminKey); err != nil {
		return "", fmt.Errorf("PARLEY_BOOTSTRAP_ADMIN_KEY: %s", domain.MessageOf(err))
	}
	if held != nil && users > 0 {
		log.Warn("PARLEY_BOOTSTRAP_ADMIN_KEY is a key this database did not hold, so a new admin user holds it beside the users there; " +
			"a bootstrap key set before still works: revoke it (GET /api/v1/users, then DELETE /api/v1/users/{userId}/api-keys/{keyId}) if this one replaces it")
	}
	return "", nil
}

// mount makes a's handler: the REST API, /metrics, and MCP over
// streamable HTTP (/mcp) and HTTP+SSE (/sse, /message).
func (a *App) mount() {
	cfg, svcs, st, m, log := a.cfg, a.Services, a.Store, a.metrics, a.log
	api := rest.New(svcs, rest.Config{
		MaxBodyBytes: cfg.MaxBodyBytes, KeepAlive: cfg.KeepAlive, RequestTimeout: cfg.RequestTimeout,
		Ready: func(ctx context.Context) error {
			if err := svcs.Completions.StoringRefused(); err != nil {
				return err
			}
			return st.Ready(ctx)
		},
		Metrics: m, Logger: log, Origins: cfg.AllowedOrigins,
	})
	api.HandleGet("/metrics", m.Handler())
	srv := mcp.NewServer(svcs, mcp.Options{ReadOnly: cfg.MCPReadOnly, Version: cfg.Version, Logger: log, Metrics: m, Calls: &a.mcpCalls,
		CallTimeout: cfg.RequestTimeout, ProgressHeartbeat: cfg.KeepAlive})
	lim := mcp.Limits{MaxBodyBytes: cfg.MaxBodyBytes, BodyTimeout: cfg.RequestTimeout,
		Origins:            append(slices.Clone(cfg.AllowedOrigins), cfg.MCPAllowedOrigins...),
		SSESessionsPerUser: cfg.MCPSSESessionsPerUser}
	api.Handle("/mcp", mcp.StreamableHTTPHandler(srv, svcs.Users.Authenticate, lim, cfg.KeepAlive, log))
	a.mcpSSE = mcp.NewSSE(srv, svcs.Users.Authenticate, lim, "", log)
	a.mcpSSE.KeepAlive = cfg.KeepAlive
	api.Handle("/sse", a.mcpSSE.Stream)
	api.Handle("/message", a.mcpSSE.Message)
	a.handler = api
}

// StartSweeps runs the retention sweeps the configuration asks for in the
// background, until Close: the servers (`parley serve`, `parley mcp`)
// start them, not a one-off command. Call it once.
func (a *App) StartSweeps() {
	cfg := a.cfg
	if !cfg.Retention.On() {
		return
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	w := &domain.RetentionSweeper{Retention: cfg.Retention, Store: a.Store, Every: time.Hour, Logger: a.log, Now: now,
		Hold: a.Services.Completions.HoldForSweep, Swept: a.metrics.Swept}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	a.stopSweeps = func() {
		cancel()
		<-done
	}
}

// Handler serves REST, MCP over HTTP and the operational endpoints.
func (a *App) Handler() http.Handler { return a.handler }

// StopMCPCalls refuses new MCP tool calls at once, gives those still
// running until ctx is done to finish, then ends them with cause and waits
// up to wait more for them to record their usage. Call it on shutdown,
// before FlushUsage: over the HTTP+SSE transport a call runs apart from
// any HTTP request, so the HTTP server's shutdown does not wait for it.
func (a *App) StopMCPCalls(ctx context.Context, cause error, wait time.Duration) {
	a.mcpCalls.Drain()
	finished := a.mcpCalls.Wait(ctx) == nil
	a.mcpCalls.End(cause)
	if !finished {
		wctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := a.mcpCalls.Wait(wctx); err != nil {
			a.log.Warn("MCP tool calls still running at exit; their usage is lost", "err", err)
		}
	}
}

// MCPCalls is what StopMCPCalls stops: pass it as the Calls of an MCP
// server the app does not serve itself (`parley mcp`'s stdio server).
func (a *App) MCPCalls() *mcp.Calls { return &a.mcpCalls }

// CloseMCPStreams ends the event streams of MCP's HTTP+SSE transport once
// every call sent over them has its result written, or when ctx is done.
// The server's shutdown does not end them (a call's result travels on its
// session's stream), so call it on shutdown after StopMCPCalls.
func (a *App) CloseMCPStreams(ctx context.Context) error { return a.mcpSSE.Close(ctx) }

// FlushUsage writes every queued usage record; the app takes no more
// completions afterwards. Call it on shutdown, after the HTTP server stopped.
func (a *App) FlushUsage() { a.flushed.Do(a.usage.Close) }

// Close ends the retention sweeps, flushes usage and closes the database.
func (a *App) Close() error {
	a.stopSweeps()
	a.FlushUsage()
	return errors.Join(a.closeLimiter(), a.Store.Close())
}
