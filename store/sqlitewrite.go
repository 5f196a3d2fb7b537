package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/glebarez/sqlite"
)

// SQLite takes one writer at a time, and a writer that finds the database
// locked sleeps and tries again: 1, 2, 5, 10 ms... So the hot writes (turns
// and usage records) all go through one connection held for them, where
// they queue in Go and start the moment the one before commits. Its page
// cache also stays warm, since hardly any other connection writes.
//
// Everything on it is prepared once, BEGIN and COMMIT included: SQLite
// parses a statement in about the time it takes to run an INSERT, and GORM
// cannot keep a statement first used in a transaction (database/sql
// prepares it again at every use). No database/sql transaction is used
// either: each costs a goroutine, and each statement run with a context
// that can end costs the driver one more.
type sqliteWriter struct {
	mu    sync.Mutex
	db    *sql.DB   // a pool of the one connection
	conn  *sql.Conn // that connection, held
	stmts map[string]*sql.Stmt
}

// open connects the writer to the database at dsn.
func (w *sqliteWriter) open(ctx context.Context, dsn string) error {
	db, err := openSQLiteConn(dsn)
	if err != nil {
		return err
	}
	w.db = db
	return w.connect(ctx)
}

// openSQLiteConn opens a pool of one connection to the database at dsn,
// kept open while it is idle.
func openSQLiteConn(dsn string) (*sql.DB, error) {
	db, err := sql.Open(sqlite.DriverName, dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// connect takes the connection; callers hold mu (or own w).
func (w *sqliteWriter) connect(ctx context.Context) error {
	conn, err := w.db.Conn(ctx)
	if err != nil {
		return err
	}
	w.conn, w.stmts = conn, map[string]*sql.Stmt{}
	return nil
}

// writable checks that the database takes writes: it changes a page (the
// schema's) in a transaction it rolls back, waiting for another writer as
// a write does. In WAL mode a file SQLite could open only for reading
// takes the write lock, and refuses only the change.
func (w *sqliteWriter) writable(ctx context.Context) error {
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	_, err := w.conn.ExecContext(ctx, "CREATE TABLE parley_write_check (x)")
	if _, rerr := w.conn.ExecContext(ctx, "ROLLBACK"); err == nil {
		err = rerr
	}
	return err
}

// close releases the connection and its statements.
func (w *sqliteWriter) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.db == nil {
		return nil
	}
	w.drop()
	err := w.db.Close()
	w.db = nil
	return err
}

// drop closes the connection, for close or after it broke; callers hold mu.
func (w *sqliteWriter) drop() {
	for _, st := range w.stmts {
		_ = st.Close()
	}
	if w.conn != nil {
		_ = w.conn.Raw(func(any) error { return driver.ErrBadConn }) // do not return it to the pool
		_ = w.conn.Close()
	}
	w.conn, w.stmts = nil, nil
}

// exec runs query, prepared once, with args; callers hold mu.
func (w *sqliteWriter) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, ok := w.stmts[query]
	if !ok {
		var err error
		if st, err = w.conn.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		w.stmts[query] = st
	}
	return st.ExecContext(ctx, args...)
}

// sqliteWrite is the statements of one SQLite write transaction.
type sqliteWrite struct {
	steps []sqliteStep
}

type sqliteStep struct {
	query string
	args  []any
	touch bool // an UPDATE of a row that must exist (errNoConversation)
}

// exec adds one statement.
func (w *sqliteWrite) exec(query string, touch bool, args ...any) {
	w.steps = append(w.steps, sqliteStep{query: query, args: args, touch: touch})
}

// insert adds the INSERTs of n rows of width columns, at most
// sqliteRowsPerInsert each; queries[k] inserts k rows, and appendRow
// appends row i's values to args.
func (w *sqliteWrite) insert(queries []string, width, n int, appendRow func(i int, args []any) []any) {
	for done := 0; done < n; {
		k := min(n-done, sqliteRowsPerInsert)
		args := make([]any, 0, k*width)
		for i := done; i < done+k; i++ {
			args = appendRow(i, args)
		}
		w.exec(queries[k], false, args...)
		done += k
	}
}

// writeSQLite runs w's statements in one transaction on the write
// connection, all or none.
func (s *Store) writeSQLite(ctx context.Context, w *sqliteWrite) (err error) {
	wr := &s.writer
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if wr.db == nil {
		return errClosed
	}
	if wr.conn == nil {
		if err := wr.connect(ctx); err != nil {
			return err
		}
	}
	defer func() {
		if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
			wr.drop() // the next write connects again
		}
	}()
	if _, err := wr.exec(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	if err := runSteps(ctx, wr, w.steps); err != nil {
		// Whatever ended the statement, the transaction ends here.
		if _, rerr := wr.exec(context.Background(), "ROLLBACK"); rerr != nil && !strings.Contains(rerr.Error(), "no transaction is active") {
			return errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return err
	}
	if _, err := wr.exec(ctx, "COMMIT"); err != nil {
		_, _ = wr.exec(context.Background(), "ROLLBACK")
		return err
	}
	return nil
}

func runSteps(ctx context.Context, wr *sqliteWriter, steps []sqliteStep) error {
	for _, st := range steps {
		res, err := wr.exec(ctx, st.query, st.args...)
		if err != nil {
			return err
		}
		if st.touch {
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 0 {
				return errNoConversation
			}
		}
	}
	return nil
}

// insertQueries returns, at index n, the INSERT of n rows into table, for
// n up to sqliteRowsPerInsert: built once, not on every write.
func insertQueries(table string, columns []string) []string {
	return rowsInserts(table, columns, "(?"+strings.Repeat(", ?", len(columns)-1)+")")
}

// rowsInserts is insertQueries with each row's values written as row.
func rowsInserts(table string, columns []string, row string) []string {
	q := make([]string, sqliteRowsPerInsert+1)
	for n := 1; n < len(q); n++ {
		q[n] = "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES " + row + strings.Repeat(", "+row, n-1)
	}
	return q
}

// leanInsert is the INSERTs of rows that leave some columns at their
// defaults, written as literals rather than bound: binding costs the
// driver and database/sql more than SQLite spends storing the value.
type leanInsert struct {
	queries []string // queries[n] inserts n rows
	params  []int    // the columns bound, as indexes into a row's values
	zero    []int    // the columns written as their literals
}

// newLeanInsert returns the INSERTs into table of columns, those in zero
// written as the literal zero gives them: what their zero value stores
// (an empty text for "", 0 for 0, NULL for a nil *string; see fits).
func newLeanInsert(table string, columns []string, zero map[string]string) leanInsert {
	var l leanInsert
	exprs := make([]string, len(columns))
	for i, c := range columns {
		if lit, ok := zero[c]; ok {
			exprs[i] = lit
			l.zero = append(l.zero, i)
		} else {
			exprs[i] = "?"
			l.params = append(l.params, i)
		}
	}
	if len(l.zero) != len(zero) {
		panic("store: a lean insert's column is not one of " + table + "'s")
	}
	l.queries = rowsInserts(table, columns, "("+strings.Join(exprs, ", ")+")")
	return l
}

// fits says whether the row of values v holds the zero value in each of
// l's literal columns.
func (l *leanInsert) fits(v []any) bool {
	for _, i := range l.zero {
		switch x := v[i].(type) {
		case string:
			if x != "" {
				return false
			}
		case int:
			if x != 0 {
				return false
			}
		case *string:
			if x != nil {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// appendParams appends to args the values of v that l binds.
func (l *leanInsert) appendParams(args, v []any) []any {
	for _, i := range l.params {
		args = append(args, v[i])
	}
	return args
}
