package store

import (
	"cmp"
	"context"
	"database/sql"
	"strings"
)

// SQLite takes one writer at a time, and a writer that finds the database
// locked sleeps and tries again: 1, 2, 5, 10 ms... So the hot writes (turns
// and usage records) go through a pool of their own with one connection,
// where they queue in Go and start the moment the one before commits. The
// connection's page cache also stays warm, since hardly any other
// connection writes. Their statements are prepared once on it: SQLite
// parses an INSERT in about the time it takes to run it, and GORM cannot
// keep a statement first used in a transaction, which database/sql would
// prepare again at every use.

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
func (s *Store) writeSQLite(ctx context.Context, w *sqliteWrite) error {
	// The statements are prepared before the transaction begins: preparing
	// takes a connection of its own, and a ":memory:" database has just one.
	stmts := make([]*sql.Stmt, len(w.steps))
	for i, st := range w.steps {
		var err error
		if stmts[i], err = s.prepared(ctx, st.query); err != nil {
			return err
		}
	}
	tx, err := s.writeDB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // a no-op once committed
	for i, st := range w.steps {
		res, err := tx.StmtContext(ctx, stmts[i]).ExecContext(ctx, st.args...)
		if err != nil {
			return err
		}
		if st.touch {
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				return cmp.Or(err, errNoConversation)
			}
		}
	}
	return tx.Commit()
}

// prepared returns query prepared on the write pool, once.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmts.Lock()
	defer s.stmts.Unlock()
	if st, ok := s.stmts.byQuery[query]; ok {
		return st, nil
	}
	st, err := s.writeDB.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if s.stmts.byQuery == nil {
		s.stmts.byQuery = make(map[string]*sql.Stmt)
	}
	s.stmts.byQuery[query] = st
	return st, nil
}

// insertQueries returns, at index n, the INSERT of n rows into table, for
// n up to sqliteRowsPerInsert: built once, not on every write.
func insertQueries(table string, columns []string) []string {
	row := "(?" + strings.Repeat(", ?", len(columns)-1) + ")"
	q := make([]string, sqliteRowsPerInsert+1)
	for n := 1; n < len(q); n++ {
		q[n] = "INSERT INTO " + table + " (" + strings.Join(columns, ", ") + ") VALUES " + row + strings.Repeat(", "+row, n-1)
	}
	return q
}
