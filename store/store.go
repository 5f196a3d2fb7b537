// Package store implements domain's store ports with GORM over PostgreSQL
// or SQLite. The schema comes from the goose migrations in package
// migrations; the GORM models here only name its tables and columns.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"golang.org/x/sync/singleflight"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/migrations"
)

// Dialects a Store can speak; Dialect returns one of them.
const (
	Postgres = migrations.Postgres
	SQLite   = migrations.SQLite
)

// Store is Parley's database. It implements every store port of domain.
type Store struct {
	db      *gorm.DB
	sqlDB   *sql.DB
	dialect string

	commits *commitQueue // the turns being written; see commit.go
	writer  sqliteWriter // SQLite's write connection; see sqlitewrite.go
	tempDir string       // holds a ":memory:" database, removed on Close
	path    string       // the SQLite database's file; "" for PostgreSQL and ":memory:"
	dsn     string       // the driver's DSN (SQLite's with its pragmas)

	// beforeWrite, a test's, runs as a leader begins its batch's writes.
	beforeWrite func()
	// deleteChunk (0: the constant's) and betweenChunks, a test's, are
	// for the deletes of delete.go.
	deleteChunk   int
	betweenChunks func()
	// deleteLocks bounds the deletes holding a connection for their
	// lock (deleteLock).
	deleteLocks chan struct{}
	// deletes runs each SQLite delete of a chat or project once at a time
	// (deleteWhole).
	deletes singleflight.Group

	closed    chan struct{}
	closeOnce sync.Once
	// life ends at Close, and with it the turn writes still under way
	// (see writeContext): sql.DB.Close would wait for them.
	life    context.Context
	endLife context.CancelFunc
	workers sync.WaitGroup // the SQLite checkpointer
}

var (
	_ domain.Store             = (*Store)(nil)
	_ domain.UserStore         = (*Store)(nil)
	_ domain.ProjectStore      = (*Store)(nil)
	_ domain.MemberStore       = (*Store)(nil)
	_ domain.ProviderStore     = (*Store)(nil)
	_ domain.DocumentStore     = (*Store)(nil)
	_ domain.ChatStore         = (*Store)(nil)
	_ domain.ConversationStore = (*Store)(nil)
	_ domain.UsageStore        = (*Store)(nil)
)

// Open connects to the database named by dsn and checks that it answers:
//
//   - "postgres://..." or "postgresql://...": PostgreSQL;
//   - "" (or "sqlite:" alone): an error, since the default database's
//     place is the server's to choose (app.Config.DSN);
//   - "sqlite:PATH" (or "sqlite://PATH"), or any other string, taken as a
//     file path: SQLite at PATH, creating its directory. ":memory:" is a
//     private database that lasts until Close (in a temporary directory,
//     so that it works like any other).
//
// Open does not migrate; call Migrate.
func Open(ctx context.Context, dsn string) (*Store, error) {
	s := &Store{closed: make(chan struct{}), deleteLocks: make(chan struct{}, maxDeleteLocks)}
	s.life, s.endLife = context.WithCancel(context.Background())
	var dialector gorm.Dialector
	var where string
	switch {
	case isPostgres(dsn):
		dialector, s.dialect, s.dsn = postgres.New(postgres.Config{DSN: dsn}), Postgres, dsn
	default:
		path, query, err := sqlitePath(dsn)
		if err != nil {
			return nil, err
		}
		if path == ":memory:" {
			if s.tempDir, err = os.MkdirTemp("", "parley-memory-"); err != nil {
				return nil, fmt.Errorf("store: create a private SQLite database: %w", err)
			}
			path = filepath.Join(s.tempDir, "parley.db")
		} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("store: create the directory of the SQLite database: %w; "+
				"set PARLEY_DATA_DIR (or PARLEY_DATABASE_URL) to a directory this user may write", err)
		} else if err := createPrivate(path); err != nil {
			return nil, fmt.Errorf("store: create the SQLite database: %w; "+
				"set PARLEY_DATA_DIR (or PARLEY_DATABASE_URL) to a directory this user may write", err)
		}
		s.dsn = path + "?" + query
		if s.tempDir == "" {
			// SQLite's "unable to open database file" names no file; it
			// also writes PATH-wal and PATH-shm beside it.
			where = " at " + path
			s.path = path
		}
		dialector, s.dialect = sqlite.Open(s.dsn), SQLite
	}
	for attempt := 1; ; attempt++ {
		began := time.Now()
		err := s.open(ctx, dialector)
		if err == nil {
			return s, nil
		}
		_ = s.closeDBs()
		switch {
		case s.dialect == Postgres:
			err = postgresOpenHint(err)
		case cantOpen(err):
			// SQLite says only "unable to open database file": most often
			// a file restored as another user, or a directory in its place.
			err = fmt.Errorf("it cannot be opened (is it a file this user may read and write? check its owner and mode, and its directory's): %w", err)
		case sqliteIs(err, sqliteReadOnly):
			// A file this user may write in a directory it may not: SQLite
			// makes its -wal and -shm files beside it.
			err = fmt.Errorf("it cannot be written (check the file's owner and mode, and its directory's, "+
				"where SQLite makes its -wal and -shm files): %w", err)
		}
		if !openRace(s, err, attempt, time.Since(began)) {
			return nil, fmt.Errorf("store: open %s database%s: %w", s.dialect, where, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("store: open %s database%s: %w", s.dialect, where, err)
		case <-time.After(time.Duration(50+rand.IntN(100)) * time.Millisecond):
		}
	}
}

// openRace reports whether opening a SQLite database file failed on a
// lock another process held (SQLITE_BUSY), for at most the first
// openAttempts: processes opening a new database together (parley serve
// beside parley mcp, replicas on one volume) each turn it to WAL mode, and
// SQLite can refuse one of them at once, without waiting out its busy
// timeout, while another does; opened again a moment later, it is in WAL
// mode already. An attempt that took the busy timeout waited for a writer
// that kept the lock (a migration rebuilding a table): another twenty
// such waits would only hide that.
func openRace(s *Store, err error, attempt int, took time.Duration) bool {
	return s.dialect == SQLite && s.tempDir == "" && attempt < openAttempts && locked(err) && took < sqliteBusyTimeout
}

// openAttempts bounds how many times Open tries a SQLite file.
const openAttempts = 20

// createPrivate creates the SQLite database file at path, empty and mode
// 0600, when it does not exist: it holds API key hashes and sealed
// provider keys. SQLite reads an empty file as an empty database, and
// gives PATH-wal and PATH-shm the database file's mode.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// Backup writes a consistent copy of a SQLite database to path, a new
// file, private (mode 0600) as the database is: VACUUM INTO reads one
// snapshot, the writes still in the -wal file included, while other
// connections and processes go on writing. PostgreSQL has pg_dump.
func (s *Store) Backup(ctx context.Context, path string) error {
	if s.dialect != SQLite {
		return errors.New("only a SQLite database is copied by Backup; use pg_dump")
	}
	// Absolute: SQLite would read "file:…" as a URI and ":memory:" as no
	// file, copying elsewhere or nowhere.
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; the backup goes to a new file", path)
	}
	if err != nil {
		return fmt.Errorf("create the backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := s.db.WithContext(ctx).Exec("VACUUM INTO ?", path).Error; err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("copy the database to %s: %w", path, err)
	}
	return nil
}

// DialectOf returns the dialect Open takes dsn for: Postgres or SQLite.
func DialectOf(dsn string) string {
	if isPostgres(dsn) {
		return Postgres
	}
	return SQLite
}

func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// SQLiteFile returns the file of the SQLite database that Open would open
// for dsn, "" for PostgreSQL, ":memory:" and a dsn Open refuses. Commands
// that must not create a database check with it that one exists: Open
// creates the file and its directory.
func SQLiteFile(dsn string) string {
	if isPostgres(dsn) {
		return ""
	}
	path, _, err := sqlitePath(dsn)
	if err != nil || path == ":memory:" {
		return ""
	}
	return path
}

// Describe names the database dsn is, for an operator to check it is the
// one meant, and nothing secret: a SQLite file's absolute path, a
// PostgreSQL database's name, host and port (never its password).
func Describe(dsn string) string {
	if !isPostgres(dsn) {
		path, _, err := sqlitePath(dsn)
		switch {
		case err != nil:
			return "a SQLite database"
		case path == ":memory:":
			return "an in-memory SQLite database"
		}
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		return "the SQLite database at " + path
	}
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "a PostgreSQL database"
	}
	return fmt.Sprintf("the PostgreSQL database %q on %s:%d", cfg.Database, cfg.Host, cfg.Port)
}

// connectTimeout bounds the wait for PostgreSQL to answer at Open, unless
// the URL's connect_timeout bounds it: a server, or a proxy in front of
// one, that takes the connection and says nothing would hold the start,
// silent, until a signal. A variable for tests.
var connectTimeout = 30 * time.Second

// firstPing is Ping bounded by connectTimeout, its error saying so, or by
// the URL's connect_timeout. A PostgreSQL not up yet (the connection
// refused, or "the database system is starting up"), as when Parley and
// PostgreSQL start together under systemd, Kubernetes or Compose, is asked
// again every startRetry within connectTimeout.
func (s *Store) firstPing(ctx context.Context) error {
	if u, err := url.Parse(s.dsn); err == nil && u.Query().Has("connect_timeout") {
		return s.Ping(ctx)
	}
	pctx, cancel := context.WithTimeoutCause(ctx, connectTimeout, errNoAnswer)
	defer cancel()
	err := s.Ping(pctx)
	notUp := false // the last answer: not up yet
	for err != nil && notUpYet(err) && pctx.Err() == nil {
		notUp = true
		select {
		case <-pctx.Done():
		case <-time.After(startRetry):
			err = s.Ping(pctx)
		}
	}
	switch {
	case err != nil && ctx.Err() != nil:
		// Not the bound: the start itself was stopped (a signal).
		return fmt.Errorf("the start was stopped while it waited for PostgreSQL to answer (%v)", err)
	case err != nil && (notUpYet(err) || notUp && pctx.Err() != nil): // the bound may cut the last ask
		// Asked until the bound: refused, or starting, all along.
		return fmt.Errorf("PostgreSQL was not up within %s (the connection refused, or the server starting): "+
			"check PARLEY_DATABASE_URL's host and port, and that PostgreSQL runs (%v)", connectTimeout, err)
	case err != nil && errors.Is(context.Cause(pctx), errNoAnswer):
		return fmt.Errorf("%w within %s: check PARLEY_DATABASE_URL, or set its connect_timeout to wait longer (%v)", errNoAnswer, connectTimeout, err)
	}
	return err
}

var errNoAnswer = errors.New("PostgreSQL did not answer")

// startRetry is how often a start asks again a PostgreSQL not up yet.
const startRetry = 250 * time.Millisecond

// notUpYet says whether err is PostgreSQL not up yet: nothing listening
// (the connection refused), or the server starting up, or going down for
// a restart (SQLSTATE 57P03, cannot_connect_now).
func notUpYet(err error) bool {
	var pg *pgconn.PgError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &pg) && pg.Code == "57P03"
}

// postgresMaxConns bounds the PostgreSQL pool; half of them are kept idle.
const postgresMaxConns = 20

// open connects s through dialector and starts its workers.
func (s *Store) open(ctx context.Context, dialector gorm.Dialector) error {
	var err error
	s.db, err = gorm.Open(dialector, &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		// Name the columns a read selects rather than `SELECT *`: the
		// PostgreSQL driver caches each connection's prepared statements,
		// and a `SELECT *` prepared before a migration (of a newer
		// instance, in a rolling upgrade) added a column fails once per
		// connection: "cached plan must not change result type".
		QueryFields: true,
		NowFunc:     func() time.Time { return ts(time.Now()) },
		// GORM's own ping at Open takes no context: a PostgreSQL that
		// accepts the connection but does not answer would hold the start
		// past SIGTERM. s.Ping(ctx) below checks the database instead.
		DisableAutomaticPing: true,
	})
	if err != nil {
		return err
	}
	if s.sqlDB, err = s.db.DB(); err != nil {
		return err
	}
	if s.dialect == Postgres {
		s.sqlDB.SetMaxOpenConns(postgresMaxConns)
		s.sqlDB.SetMaxIdleConns(postgresMaxConns / 2)
		s.sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		s.commits = newCommitQueue(4) // PostgreSQL commits batches side by side
		return s.firstPing(ctx)
	}
	// Opening a SQLite connection runs the pragmas and reads the schema;
	// keep the ones in use instead of the default two idle.
	s.sqlDB.SetMaxOpenConns(8)
	s.sqlDB.SetMaxIdleConns(8)
	s.sqlDB.SetConnMaxLifetime(sqliteConnLifetime)
	s.commits = newCommitQueue(1) // SQLite has one writer at a time
	if err := s.Ping(ctx); err != nil {
		return err
	}
	if err := s.writer.open(ctx, s.dsn); err != nil {
		return err
	}
	if err := s.writer.writable(ctx); err != nil {
		// A file Parley may not write (its owner or mode after a restore,
		// a read-only mount) would serve reads and /readyz, and fail every
		// write as a fault to retry.
		if locked(err) {
			return fmt.Errorf("another process kept it locked for writing past the %s busy timeout "+
				"(a migration that rebuilds a table, or a long transaction); start again once it is done: %w", sqliteBusyTimeout, err)
		}
		return fmt.Errorf("it cannot be written (check the file's owner and mode, and its directory's): %w", err)
	}
	s.workers.Add(1)
	go s.checkpointWAL()
	return nil
}

// sqliteBusyTimeout is how long a SQLite statement waits for a lock that
// another connection holds before it fails with SQLITE_BUSY.
const sqliteBusyTimeout = 10 * time.Second

// sqlitePath returns the file path of a SQLite dsn and the driver query
// string to open it with: foreign keys on, a busy timeout, WAL journal,
// write transactions that take the lock when they begin (so two of them
// wait for each other instead of failing with SQLITE_BUSY), and times in
// SQLite's own text format.
func sqlitePath(dsn string) (path, query string, err error) {
	path = dsn
	if rest, ok := strings.CutPrefix(path, "sqlite:"); ok {
		path = strings.TrimPrefix(rest, "//")
	}
	if path == "" {
		return "", "", errors.New("store: no database named: give a PostgreSQL URL or a SQLite file's path")
	}
	q := url.Values{}
	if p, raw, ok := strings.Cut(path, "?"); ok {
		if q, err = url.ParseQuery(raw); err != nil {
			return "", "", fmt.Errorf("store: the SQLite database URL has a malformed query: %w", err)
		}
		path = p
	}
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "wal_autocheckpoint(0)") // see checkpoint.go
	// A log that a burst of writes (a large sweep or delete) grew is cut
	// back to this size when it starts afresh, not kept at its largest.
	q.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", walSizeLimit))
	if q.Get("_txlock") == "" {
		q.Set("_txlock", "immediate")
	}
	// Times are stored as text that sorts as it compares and that SQLite's
	// date functions read: "2006-01-02 15:04:05.999999999-07:00". The
	// driver's default would be Go's time.Time.String.
	q.Set("_time_format", "sqlite")
	return path, q.Encode(), nil
}

// Close waits for the turns being written and closes the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.endLife()
		if s.commits != nil {
			s.commits.close()
		}
		close(s.closed)
		s.workers.Wait()
	})
	return s.closeDBs()
}

func (s *Store) closeDBs() error {
	err := s.writer.close()
	if s.sqlDB != nil {
		err = errors.Join(err, s.sqlDB.Close())
	}
	if s.tempDir != "" {
		err = errors.Join(err, os.RemoveAll(s.tempDir))
	}
	return err
}

// sqliteConnLifetime is how long a SQLite connection of the pool lives. One
// opened while the file could not be written (its mode or owner changed
// by hand, a mount remounted read-only) is read-only for good: renewed,
// the pool takes writes again within this of the file being put right,
// without a restart. Opening one costs its pragmas and a read of the
// schema, well under a millisecond.
var sqliteConnLifetime = time.Minute

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.sqlDB.PingContext(ctx) }

// Ready checks, for readiness probes, that the database answers a query
// and, PostgreSQL, takes writes: one in read-only mode (a standby after a
// failover, default_transaction_read_only) answers pings and reads but
// refuses every turn, after its completion was paid for. A ping of SQLite
// reads nothing; a query reads the file.
func (s *Store) Ready(ctx context.Context) error {
	if s.dialect != Postgres {
		var n int
		return s.sqlDB.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n)
	}
	var readOnly string
	if err := s.sqlDB.QueryRowContext(ctx, "SELECT current_setting('transaction_read_only')").Scan(&readOnly); err != nil {
		return err
	}
	if readOnly == "on" {
		return errors.New("the database takes no writes (transaction_read_only is on: a standby, or default_transaction_read_only)")
	}
	return nil
}

// rowsPerInsert is how many rows one multi-row INSERT carries. PostgreSQL
// takes up to 65,535 parameters. SQLite compiles a statement into a program
// that grows with its rows and parses it again unless it is prepared; short
// statements keep that small.
func (s *Store) rowsPerInsert() int {
	if s.dialect == Postgres {
		return 500
	}
	return sqliteRowsPerInsert
}

const sqliteRowsPerInsert = 32

// Dialect returns "postgres" or "sqlite".
func (s *Store) Dialect() string { return s.dialect }

// SQLitePath is the SQLite database's file, "" for PostgreSQL and for a
// private in-memory database.
func (s *Store) SQLitePath() string { return s.path }

// DB returns the underlying database handle, for tests that need SQL the
// ports do not offer.
func (s *Store) DB() *gorm.DB { return s.db }

// Migrate runs the embedded goose migrations of the store's dialect:
// command "up" applies every pending one, "down" rolls back the last one,
// "status" lists them. It reports what it did to w (nil discards it).
func (s *Store) Migrate(ctx context.Context, command string, w io.Writer) error {
	if w == nil {
		w = io.Discard
	}
	db := s.sqlDB
	if s.dialect == SQLite {
		// SQLite's migrations run on a connection of their own: one that
		// turns foreign keys off outside its transaction (00011) must run
		// every statement on the connection it turned them off on, and one
		// it leaves in a transaction, having failed, is closed, which
		// rolls that back.
		one, err := openSQLiteConn(s.dsn)
		if err != nil {
			return fmt.Errorf("store: migrate %s: %w", command, err)
		}
		defer one.Close()
		db = one
	} else if command != "status" {
		pool, err := s.migrationPool()
		if err != nil {
			return fmt.Errorf("store: migrate %s: %w", command, err)
		}
		defer pool.Close()
		db = pool
	}
	p, err := s.migrator(db)
	if err != nil {
		return err
	}
	if command == "down" && !s.db.WithContext(ctx).Migrator().HasTable(goose.DefaultTablename) {
		// goose's Down would create its table (and SQLite's lock, its
		// file) to find nothing in it.
		fmt.Fprintln(w, "nothing to roll back: no migration is applied")
		return nil
	}
	if s.path != "" && command != "status" {
		unlock, err := lockMigrations(ctx, s.path)
		if err != nil {
			return fmt.Errorf("store: migrate %s: %w", command, err)
		}
		defer unlock()
	}
	switch command {
	case "up":
		return migrateUp(ctx, p, w)
	case "down":
		return migrateDown(ctx, p, w)
	case "status":
		return s.migrateStatus(ctx, p, w)
	}
	return domain.Errorf(domain.Invalid, "unknown migrate command %q; use up, down or status", command)
}

// migrateUp applies the pending migrations, naming each on w, or says
// there is none.
func migrateUp(ctx context.Context, p *goose.Provider, w io.Writer) error {
	var results []*goose.MigrationResult
	err := retryLocked(ctx, w, func() error {
		done, err := p.Up(ctx)
		if pe := (*goose.PartialError)(nil); errors.As(err, &pe) {
			done = pe.Applied // those applied before the one that failed
		}
		for _, r := range done {
			fmt.Fprintf(w, "applied %s (%s)\n", r.Source.Path, r.Duration.Round(time.Millisecond))
		}
		results = append(results, done...)
		return err
	})
	if err != nil {
		return migrateErr("up", err)
	}
	if len(results) == 0 {
		v, err := p.GetDBVersion(ctx)
		if err != nil {
			return fmt.Errorf("store: migrate up: %w", err)
		}
		fmt.Fprintf(w, "no pending migrations; the schema is at version %d%s\n", v, newerSchema(p, v))
	}
	return nil
}

// migrateDown rolls back the last migration applied.
func migrateDown(ctx context.Context, p *goose.Provider, w io.Writer) error {
	var r *goose.MigrationResult
	err := retryLocked(ctx, w, func() (err error) {
		r, err = p.Down(ctx)
		return err
	})
	if errors.Is(err, goose.ErrNoNextVersion) {
		fmt.Fprintln(w, "nothing to roll back: no migration is applied")
		return nil
	}
	if errors.Is(err, goose.ErrVersionNotFound) {
		// goose says only "version not found": the last one applied is
		// not among this binary's.
		if v, verr := p.GetDBVersion(ctx); verr == nil && newerSchema(p, v) != "" {
			return fmt.Errorf("store: migrate down: the schema is at version %d%s, and this parley has no migration to roll that back; "+
				"run migrate down with the parley that applied it", v, newerSchema(p, v))
		}
	}
	if err != nil {
		return migrateErr("down", err)
	}
	fmt.Fprintf(w, "rolled back %s (%s)\n", r.Source.Path, r.Duration.Round(time.Millisecond))
	return nil
}

// migrateStatus writes each migration, applied (when) or pending, and a
// schema a newer Parley migrated; it changes nothing.
func (s *Store) migrateStatus(ctx context.Context, p *goose.Provider, w io.Writer) error {
	width := 0
	for _, src := range p.ListSources() {
		width = max(width, len(src.Path))
	}
	if !s.db.WithContext(ctx).Migrator().HasTable(goose.DefaultTablename) {
		// Nothing applied yet: goose's Status would create its table to
		// say so, and status changes nothing (a database named by mistake
		// keeps no trace; a read-only role may run it).
		for _, src := range p.ListSources() {
			fmt.Fprintf(w, "%-*s pending\n", width, src.Path)
		}
		return nil
	}
	st, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate status: %w", err)
	}
	for _, m := range st {
		at := "pending"
		if m.State == goose.StateApplied {
			at = "applied " + m.AppliedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%-*s %s\n", width, m.Source.Path, at)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate status: %w", err)
	}
	if newer := newerSchema(p, v); newer != "" {
		fmt.Fprintf(w, "the schema is at version %d%s\n", v, newer)
	}
	return nil
}

// migrationLockTimeout is the lock_timeout of PostgreSQL's migrations: how
// long a statement waits for a lock before it fails, to be tried again
// (retryLocked). An ALTER TABLE waiting for its table behind a long
// transaction (pg_dump, a long report) holds every later query of that
// table behind it, and the instances of the version before, still serving
// in a rolling upgrade, would stall for as long, their turns failing to be
// stored. A variable for tests.
var migrationLockTimeout = 2 * time.Second

// optionsSetLockTimeout matches a connection's options that set
// lock_timeout: `-c lock_timeout=…` or `--lock_timeout=…` (not
// deadlock_timeout).
var optionsSetLockTimeout = regexp.MustCompile(`(?:^|\s)(?:-c\s*|--)lock_timeout=`)

// migrationPool is a pool of connections to s's PostgreSQL for
// migrations, whose lock_timeout is migrationLockTimeout unless the URL
// sets one (a lock_timeout parameter, or in its options: `-c
// lock_timeout=…`). It keeps no idle connection, so that each run of
// goose, which holds one connection for its lock and its migrations,
// starts on a fresh one, whatever a migration that failed SET on the last.
func (s *Store) migrationPool() (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(s.dsn)
	if err != nil {
		return nil, err
	}
	_, set := cfg.RuntimeParams["lock_timeout"]
	if !set && !optionsSetLockTimeout.MatchString(cfg.RuntimeParams["options"]) {
		cfg.RuntimeParams["lock_timeout"] = strconv.FormatInt(migrationLockTimeout.Milliseconds(), 10)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxIdleConns(0)
	return db, nil
}

// retryLocked runs migrate, and runs it again, after a wait growing from a
// second to half a minute, each time it failed for want of a lock
// (lock_timeout, SQLSTATE 55P03), saying so to w, until it ends otherwise
// or ctx does: a migration waits for a long transaction without holding
// the queries of others behind it for more than migrationLockTimeout at a
// time. goose rolls a failed migration back, and runs only those not
// applied.
func retryLocked(ctx context.Context, w io.Writer, migrate func() error) error {
	wait := time.Second
	for {
		err := migrate()
		var pg *pgconn.PgError
		if err == nil || !errors.As(err, &pg) || pg.Code != "55P03" {
			return err
		}
		fmt.Fprintf(w, "waiting: a migration gave up waiting for a lock another transaction holds (a long query, or pg_dump?) and was rolled back, "+
			"so as not to hold up the queries behind it; trying again in %s\n", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (a migration was waiting for a lock another transaction holds)", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// newerSchema says, for a schema at version v, that a newer parley
// migrated it past this one's last migration; "" when it did not.
func newerSchema(p *goose.Provider, v int64) string {
	sources := p.ListSources()
	if len(sources) == 0 || v <= sources[len(sources)-1].Version {
		return ""
	}
	return fmt.Sprintf(", from a newer parley (this one's last migration is %d)", sources[len(sources)-1].Version)
}

// migrateErr reports a failed migrate command with PostgreSQL's detail,
// which its error text leaves out: "could not create unique index" says
// which index, its detail which key is duplicated.
func migrateErr(command string, err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Detail != "" {
		return fmt.Errorf("store: migrate %s: %w; %s", command, err, pg.Detail)
	}
	return fmt.Errorf("store: migrate %s: %w", command, err)
}

// lockMigrations takes the lock that processes migrating the SQLite
// database at path hold, waiting for another's until ctx ends, and returns
// its release. Each goose run reads the applied migrations, then applies
// the others one transaction at a time: two processes starting together
// (parley serve beside an MCP client's parley mcp, on a new data directory
// or after an upgrade) would both apply the same migrations, and all but
// one fail ("table users already exists"), where PostgreSQL's replicas
// wait for goose's advisory lock. The lock is an exclusive transaction on
// a SQLite database of its own, PATH-migrate.lock, which stays empty: the
// operating system releases it when a process dies, wherever SQLite runs.
//
// The lock is named after the database's real path, so that a process
// that reaches the database through a symbolic link takes the same lock,
// and has the database's owner, so that a root process (`parley migrate`
// by hand) leaves none the service's own user cannot open.
func lockMigrations(ctx context.Context, path string) (unlock func(), err error) {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	lockPath := path + "-migrate.lock"
	if err := createLock(lockPath, path); err != nil {
		return nil, fmt.Errorf("create the migration lock: %w", err)
	}
	db, err := sql.Open(sqlite.DriverName, lockPath+"?_pragma=busy_timeout(1000)")
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	for err == nil {
		if _, err = conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err == nil {
			return func() {
				_, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
				_ = conn.Close()
				_ = db.Close()
			}, nil
		}
		if locked(err) && ctx.Err() == nil {
			err = nil // another process migrates: wait on
		}
	}
	if conn != nil {
		_ = conn.Close()
	}
	_ = db.Close()
	if cannotWrite(err) {
		// Taking the lock writes its journal: out of disk, or on a
		// read-only mount, that is what is wrong, not the lock.
		return nil, fmt.Errorf("take the migration lock %s: the file system cannot take writes (is the disk full, or mounted read-only?): %w", lockPath, err)
	}
	return nil, fmt.Errorf("take the migration lock %s (check its owner and mode; with no parley running it may be deleted): %w", lockPath, err)
}

func (s *Store) migrator(db *sql.DB) (*goose.Provider, error) {
	fsys, err := migrations.FS(s.dialect)
	if err != nil {
		return nil, err
	}
	dialect, opts := goose.DialectSQLite3, []goose.ProviderOption{}
	if s.dialect == Postgres {
		dialect = goose.DialectPostgres
		// Replicas starting together migrate one at a time, under a
		// session advisory lock. The others wait for it as long as they
		// run, as on SQLite (lockMigrations), not goose's default 5
		// minutes: a migration that rebuilds a large table may take longer,
		// and a replica that gave up would exit for nothing. PostgreSQL
		// frees the lock when its holder's session ends, however it ends.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, math.MaxUint32))
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("store: load migrations: %w", err)
	}
	return p, nil
}

// ts is how times are stored: UTC, to the microsecond (PostgreSQL's
// precision), so both databases return what was written.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// tsPtr is ts for nullable times.
func tsPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := ts(*t)
	return &v
}

// utc returns a time read from the database in UTC.
func utc(t time.Time) time.Time { return t.UTC() }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}

// pageSize is how many rows a list reads: one more than the page, so the
// service can tell whether another page follows.
func pageSize(p domain.Page) int {
	if p.Limit <= 0 {
		p.Limit = domain.DefaultPageLimit
	}
	return p.Limit + 1
}

// paged orders q by col, descending for a page newest first, and applies
// the page's cursor and size.
func paged(q *gorm.DB, col string, p domain.Page) *gorm.DB {
	after, order := " > ?", col
	if p.Desc {
		after, order = " < ?", col+" DESC"
	}
	if p.After != "" {
		q = q.Where(col+after, p.After)
	}
	return q.Order(order).Limit(pageSize(p))
}

// scoped restricts q to one project and to the projects memberUserID is a
// member of, when they are set.
func scoped(q *gorm.DB, projectID, memberUserID string) *gorm.DB {
	if projectID != "" {
		q = q.Where("project_id = ?", projectID)
	}
	if memberUserID != "" {
		q = q.Where("project_id IN (SELECT project_id FROM project_members WHERE user_id = ?)", memberUserID)
	}
	return q
}

// maxMergedProjects is how many projects' pages memberPage reads and
// merges at most; a member of more gets one read filtered by membership.
const maxMergedProjects = 100

// memberPage reads into dest a page of the rows q selects (a new query
// each call), ordered by id, of the projects userID is a member of. It
// reads a page of each project, in the table's (project_id, id) index, and
// merges them: one read filtered by membership and ordered by id is what
// PostgreSQL plans as a walk of the whole table's primary key, so a member
// of a small project paid for every other tenant's rows on each page.
// inProjects restricts a query to the rows of projects (a list of ids, or
// a query of them); nil: by their project_id.
func (s *Store) memberPage(ctx context.Context, q func() *gorm.DB, inProjects func(q *gorm.DB, projects any) *gorm.DB, userID string, p domain.Page, dest any) error {
	if inProjects == nil {
		inProjects = func(q *gorm.DB, projects any) *gorm.DB { return q.Where("project_id IN (?)", projects) }
	}
	var projects []string
	if err := s.db.WithContext(ctx).Model(&memberRow{}).Where("user_id = ?", userID).
		Limit(maxMergedProjects+1).Pluck("project_id", &projects).Error; err != nil {
		return err
	}
	switch {
	case len(projects) == 0:
		return nil
	case len(projects) > maxMergedProjects:
		members := s.db.Model(&memberRow{}).Select("project_id").Where("user_id = ?", userID)
		return paged(inProjects(q(), members), "id", p).Find(dest).Error
	}
	parts, pages := make([]string, len(projects)), make([]any, len(projects))
	for i, id := range projects {
		parts[i], pages[i] = "SELECT * FROM (?) AS p", paged(inProjects(q(), []string{id}), "id", p)
	}
	order := "id"
	if p.Desc {
		order = "id DESC"
	}
	return s.db.WithContext(ctx).Table("("+strings.Join(parts, " UNION ALL ")+") AS page", pages...).
		Order(order).Limit(pageSize(p)).Find(dest).Error
}

// list reads into dest a page of the rows q selects (a new query each
// call), ordered by id, of projectID and of the projects memberUserID is a
// member of, when they are set.
func (s *Store) list(ctx context.Context, q func() *gorm.DB, projectID, memberUserID string, p domain.Page, dest any) error {
	if projectID == "" && memberUserID != "" {
		return s.memberPage(ctx, q, nil, memberUserID, p, dest)
	}
	return paged(scoped(q(), projectID, memberUserID), "id", p).Find(dest).Error
}

// notFound reports whether err is GORM's "no row".
func notFound(err error) bool { return errors.Is(err, gorm.ErrRecordNotFound) }

// returning is a RETURNING clause that names model's columns: an empty
// one is RETURNING *, whose cached plan on a PostgreSQL connection fails
// once a newer instance's migration added a column (see QueryFields in
// open).
func (s *Store) returning(model any) clause.Returning {
	stmt := &gorm.Statement{DB: s.db}
	if err := stmt.Parse(model); err != nil {
		panic("store: returning: " + err.Error()) // a row type of this package: cannot fail
	}
	cols := make([]clause.Column, len(stmt.Schema.DBNames))
	for i, name := range stmt.Schema.DBNames {
		cols[i] = clause.Column{Name: name}
	}
	return clause.Returning{Columns: cols}
}
