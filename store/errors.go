package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
	sqlitedriver "modernc.org/sqlite"

	"github.com/parleyhq/parley/domain"
)

// violation is the kind of constraint a database error reports.
type violation int

const (
	noViolation violation = iota
	uniqueViolation
	foreignKeyViolation
	checkViolation // CHECK and NOT NULL
)

// sqliteBusy is SQLite's primary result code for a database locked by
// another connection (SQLITE_BUSY); extended codes keep it in the low byte.
const sqliteBusy = 5

// SQLite's extended result codes for constraint failures.
const (
	sqliteConstraint           = 19
	sqliteConstraintCheck      = 275
	sqliteConstraintForeignKey = 787
	sqliteConstraintNotNull    = 1299
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintUnique     = 2067
)

// classify returns which constraint err violates, on either database.
func classify(err error) violation {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "23505":
			return uniqueViolation
		case "23503":
			return foreignKeyViolation
		case "23514", "23502":
			return checkViolation
		}
		return noViolation
	}
	var lite *sqlitedriver.Error
	if errors.As(err, &lite) {
		switch lite.Code() {
		case sqliteConstraintUnique, sqliteConstraintPrimaryKey:
			return uniqueViolation
		case sqliteConstraintForeignKey:
			return foreignKeyViolation
		case sqliteConstraintCheck, sqliteConstraintNotNull:
			return checkViolation
		case sqliteConstraint:
			msg := lite.Error()
			switch {
			case strings.Contains(msg, "UNIQUE"):
				return uniqueViolation
			case strings.Contains(msg, "FOREIGN KEY"):
				return foreignKeyViolation
			default:
				return checkViolation
			}
		}
	}
	return noViolation
}

// fail turns a database error of op into a domain error: a cancelled
// context is Canceled, an expired one Unavailable, anything else Internal
// with err as its hidden cause.
// Callers map "no row" and constraint violations before calling it, where
// they know what the error means.
func fail(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *domain.Error
	if errors.As(err, &e) {
		return domain.Wrap(op, err)
	}
	if errors.Is(err, errClosed) {
		return &domain.Error{Kind: domain.Unavailable, Op: op, Message: "the server is shutting down; retry", Err: err}
	}
	if errors.Is(err, context.Canceled) {
		return &domain.Error{Kind: domain.Canceled, Op: op, Message: "the request was canceled", Err: err}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &domain.Error{Kind: domain.Unavailable, Op: op, Message: "the database did not answer in time; retry later", Err: err}
	}
	if locked(err) {
		return &domain.Error{Kind: domain.Unavailable, Op: op,
			Message: "the database is locked by another writer (another process, or a migration) and stayed locked too long; retry later", Err: err}
	}
	if unreachable(err) {
		return &domain.Error{Kind: domain.Unavailable, Op: op, Message: "the database is unavailable; retry later",
			Err: marked{err, []error{domain.ErrNoWrites, domain.ErrUnreachable}}}
	}
	if cannotWrite(err) {
		return &domain.Error{Kind: domain.Unavailable, Op: op, Message: "the database cannot take writes now; retry later",
			Err: marked{err, []error{domain.ErrNoWrites}}}
	}
	if contended(err) {
		return &domain.Error{Kind: domain.Unavailable, Op: op,
			Message: "the database ended this request's writes to settle a contention with another request's (a deadlock); retry", Err: err}
	}
	return &domain.Error{Kind: domain.Internal, Op: op, Err: err}
}

// marked is err, which errors.Is also finds marks in, without their words:
// the log line of a read the database did not answer says what the driver
// said, not "the database takes no writes" (ErrNoWrites), which read as a
// standby's refusal.
type marked struct {
	error
	marks []error
}

func (m marked) Unwrap() error { return m.error }

func (m marked) Is(target error) bool { return slices.Contains(m.marks, target) }

// contended reports whether err is PostgreSQL ending a transaction that
// deadlocked with another (40P01) or could not be serialized with one
// (40001): a fault of neither request, which sent again goes through. The
// last statement of a chat's or project's delete, which locks its row and
// then what is left of its rows (the conversations a turn started
// meanwhile, the members), can deadlock with a transaction that holds one
// of those and then waits for the chat or project.
func contended(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "40P01" || pg.Code == "40001")
}

// SQLite's primary result codes for a database that cannot be written:
// read-only (its file or file system), a disk I/O error, the disk full.
const (
	sqliteReadOnly = 8
	sqliteIOErr    = 10
	sqliteFull     = 13
	sqliteCantOpen = 14 // not of the three: the file could not be opened at all (see unreachable)
)

// cannotWrite reports whether err says the database is up but refuses
// writes for a reason of its operator's (a dependency's fault, 503), not
// because a statement was wrong (a bug, 500): PostgreSQL out of disk,
// memory or another resource (SQLSTATE class 53) or read-only (25006, a
// standby after a failover, default_transaction_read_only), or SQLite
// read-only, out of disk or failing its disk I/O.
func cannotWrite(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return strings.HasPrefix(pg.Code, "53") || pg.Code == "25006"
	}
	var lite *sqlitedriver.Error
	if errors.As(err, &lite) {
		switch lite.Code() & 0xff {
		case sqliteReadOnly, sqliteIOErr, sqliteFull:
			return true
		}
	}
	return false
}

// unreachable reports whether err says the database could not be reached
// or dropped the connection (a dependency down, 503), rather than that a
// statement failed (a bug, 500): PostgreSQL refusing or closing the
// connection (SQLSTATE classes 08 and 57P, too many connections), a
// connection that could not be made or was lost (connLost; since pgx
// v5.13 database/sql no longer runs such a statement again itself, as it
// may have reached the server), a network timeout, SQLite's lock still
// held after its busy timeout, or a file that could not be opened (SQLite's
// CANTOPEN, the process out of file descriptors).
func unreachable(err error) bool {
	var connect *pgconn.ConnectError
	var netErr net.Error
	if connLost(err) || errors.As(err, &connect) || errors.As(err, &netErr) || errors.Is(err, sql.ErrConnDone) ||
		pgconn.SafeToRetry(err) {
		return true
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return strings.HasPrefix(pg.Code, "08") || strings.HasPrefix(pg.Code, "57P") || pg.Code == "53300"
	}
	if cantOpen(err) {
		return true // a new connection could not open the file: out of file descriptors, the file gone
	}
	return locked(err) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// sqliteIs reports whether err is SQLite's primary result code, of any
// extended code (SQLITE_READONLY_DIRECTORY is SQLITE_READONLY's).
func sqliteIs(err error, code int) bool {
	var lite *sqlitedriver.Error
	return errors.As(err, &lite) && lite.Code()&0xff == code
}

// locked reports whether err is SQLite's answer that another connection
// held its lock through the busy timeout.
func locked(err error) bool { return sqliteIs(err, sqliteBusy) }

// cantOpen reports whether err is SQLite's SQLITE_CANTOPEN.
func cantOpen(err error) bool { return sqliteIs(err, sqliteCantOpen) }

// postgresOpenHint is err, which opening a PostgreSQL database returned,
// with what to do when the server named the database or role as unknown.
func postgresOpenHint(err error) error {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return err
	}
	switch pg.Code {
	case "3D000": // invalid_catalog_name
		return fmt.Errorf("%w; create it (createdb, or CREATE DATABASE) or set PARLEY_DATABASE_URL to one that exists", err)
	case "28000": // invalid_authorization_specification: no such role, or pg_hba refused it
		return fmt.Errorf("%w; check the user in PARLEY_DATABASE_URL, and that the server lets it connect from here (pg_hba.conf)", err)
	}
	return err
}

// connLost reports whether err says a PostgreSQL connection was lost
// under a statement without the server's word: closed, cut or reset while
// the statement or its answer was on the way. Not a connection that could
// not be made, nor one the statement's deadline ended.
func connLost(err error) bool {
	var connect *pgconn.ConnectError
	if errors.As(err, &connect) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var netErr net.Error
	return errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, driver.ErrBadConn) || (errors.As(err, &netErr) && !netErr.Timeout())
}

// noConnection reports whether err says PostgreSQL took no new connection:
// refused, closed before it was made, or answered that the server is
// starting up or shutting down (57P03), as during a restart or failover.
func noConnection(err error) bool {
	var connect *pgconn.ConnectError
	var pg *pgconn.PgError
	return errors.As(err, &connect) || errors.As(err, &pg) && pg.Code == "57P03"
}

// connEnded reports whether err is PostgreSQL's answer that it ended the
// session, by an administrator's command or a shutdown (57P01) or after
// a crash (57P02): the statement did not commit, and another connection
// may take it.
func connEnded(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "57P01" || pg.Code == "57P02")
}

// because returns e with op and the database error cause attached.
func because(op string, e *domain.Error, cause error) error {
	e.Op, e.Err = op, cause
	return e
}

// conflictf returns a Conflict error of op caused by err.
func conflictf(op string, err error, format string, args ...any) error {
	return because(op, domain.Errorf(domain.Conflict, format, args...), err)
}

// ref is a reference from a row being written to another resource.
type ref struct {
	field string // the input field that holds it, e.g. "aiProviderId"; "" when the path names it
	what  string // the resource, e.g. "AI provider"
	table string
	id    string
}

// brokenRef explains a foreign key violation of op: it looks up refs in
// order and reports the first that does not exist. A missing project is
// NotFound, as domain reports projects the caller cannot see, and so is
// one the request's path named (it was deleted while the request ran);
// other missing references are Invalid, naming the field. When every reference
// exists (it was deleted and recreated meanwhile) the error is Conflict.
func (s *Store) brokenRef(ctx context.Context, op string, cause error, refs ...ref) error {
	for _, r := range refs {
		if r.id == "" {
			continue
		}
		var n int64
		if err := s.db.WithContext(ctx).Table(r.table).Where("id = ?", r.id).Count(&n).Error; err != nil {
			return fail(op, errors.Join(cause, err))
		}
		if n > 0 {
			continue
		}
		if r.table == "projects" || r.field == "" {
			return because(op, domain.NotFoundf(r.what, r.id), cause)
		}
		return because(op, domain.Invalidf(r.field, "%s %s does not exist", r.what, r.id), cause)
	}
	return conflictf(op, cause, "a resource this one refers to changed meanwhile; retry the request")
}

// invalidValue reports a CHECK or NOT NULL violation: a value the domain
// should have refused.
func invalidValue(op string, err error) error {
	return because(op, domain.Errorf(domain.Invalid, "a field has a value that cannot be stored; check the request against the API reference"), err)
}

// translate maps the violations every write can meet; a nil onFK or
// onUnique falls through to fail.
func translate(op string, err error, onUnique, onFK func() error) error {
	switch classify(err) {
	case uniqueViolation:
		if onUnique != nil {
			return onUnique()
		}
	case foreignKeyViolation:
		if onFK != nil {
			return onFK()
		}
	case checkViolation:
		return invalidValue(op, err)
	}
	return fail(op, err)
}

// onlyIfUnchanged restricts an update to a row whose updated_at is still
// prev, the value the update was based on; a zero prev leaves q as it is.
func onlyIfUnchanged(q *gorm.DB, prev time.Time) *gorm.DB {
	if prev.IsZero() {
		return q
	}
	return q.Where("updated_at = ?", ts(prev))
}

// rowsOrStale is rowsOrNotFound for an update made with onlyIfUnchanged:
// when it changed no row but the row exists, another write came first
// (domain.StaleUpdate).
func (s *Store) rowsOrStale(ctx context.Context, op string, res *gorm.DB, prev time.Time, table, what, id string) error {
	if res.Error != nil || res.RowsAffected > 0 || prev.IsZero() {
		return rowsOrNotFound(op, res, what, id)
	}
	var n int64
	if err := s.db.WithContext(ctx).Table(table).Where("id = ?", id).Count(&n).Error; err != nil {
		return fail(op, err)
	}
	if n == 0 {
		return because(op, domain.NotFoundf(what, id), nil)
	}
	e := domain.StaleUpdate(what, id)
	e.Op = op
	return e
}

// rowsOrNotFound returns NotFound for what/id when res changed no row.
func rowsOrNotFound(op string, res *gorm.DB, what, id string) error {
	if res.Error != nil {
		return fail(op, res.Error)
	}
	if res.RowsAffected == 0 {
		return because(op, domain.NotFoundf(what, id), nil)
	}
	return nil
}
