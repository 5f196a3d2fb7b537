package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/parleyhq/parley/domain"
)

// Turns are group-committed (see commitQueue). Every completion stores its
// turn before its response goes out, so the turn write is on the hot path;
// one transaction per turn spends most of its time in BEGIN, COMMIT and the
// journal pages each commit rewrites, so turns that arrive while a batch
// is being written go together in the next one. When a batch fails, its
// turns are written again one by one, so each caller gets its own answer
// (a conflict or a missing conversation fails one turn, not its
// neighbours).
const (
	maxTurnBatch = 64               // turns per transaction
	turnTimeout  = 30 * time.Second // a batch's transaction serves several callers, so it has its own deadline
)

// errNoConversation is returned inside a turn's transaction when the
// conversation to continue is gone.
var errNoConversation = errors.New("conversation does not exist")

// errClosed answers turns that arrive after Close, and those Close ended.
var errClosed = errors.New("store: closed")

// errLeaderPanicked answers the turns of a batch whose writes panicked.
var errLeaderPanicked = errors.New("store: the writes of the turn's batch panicked")

// turn is one AppendTurn waiting to be written.
type turn struct {
	conv   *domain.Conversation
	create bool
	row    conversationRow
	rows   []messageRow
	wake   chan wake // one message: the result, or a batch to lead
}

// AppendTurn stores msgs at the end of c in one transaction, creating c
// when create is true and setting its updatedAt to c.UpdatedAt otherwise.
// NotFound when c is to be continued but does not exist; Conflict when
// another turn took the same Seq values first (retry); NotFound or Invalid
// when a new conversation's project or chat does not exist. The turn may
// share its transaction with others (see maxTurnBatch); it is committed
// when AppendTurn returns nil. Once in line, the turn is written even if
// ctx ends meanwhile.
func (s *Store) AppendTurn(ctx context.Context, c *domain.Conversation, create bool, msgs []domain.Message) error {
	const op = "store.AppendTurn"
	if err := ctx.Err(); err != nil {
		return fail(op, err)
	}
	t := newTurn(c, create, msgs)
	batch, ok := s.commits.enter(t)
	if !ok {
		return fail(op, errClosed)
	}
	var err error
	if batch == nil { // in line: told the result, or handed a batch to lead
		w := <-t.wake
		batch, err = w.batch, w.err
	}
	if batch != nil {
		err = s.lead(batch)
	}
	if err != nil {
		return err
	}
	c.UpdatedAt = t.row.UpdatedAt
	if create {
		c.CreatedAt = t.row.CreatedAt
	}
	for i := range msgs {
		msgs[i].ConversationID, msgs[i].CreatedAt = c.ID, t.rows[i].CreatedAt
	}
	return nil
}

// newTurn is AppendTurn's turn, not yet in line.
func newTurn(c *domain.Conversation, create bool, msgs []domain.Message) *turn {
	t := &turn{conv: c, create: create, row: fromDomainConversation(c), rows: make([]messageRow, len(msgs)), wake: make(chan wake, 1)}
	for i := range msgs {
		t.rows[i] = fromDomainMessage(&msgs[i])
		t.rows[i].ConversationID = c.ID
	}
	return t
}

// lead writes batch, whose first turn is the caller's: all in one
// transaction, or one by one when that fails, unless it failed for
// SQLite's lock. It tells the others their results, hands the turns that
// queued meanwhile to the first of them, and returns the caller's result.
func (s *Store) lead(batch []*turn) error {
	errs := make([]error, len(batch))
	done := false
	// Also when the writes panic (the panic goes on up, to the request's
	// recovery): else the turns in line, and every later one once no slot
	// is free, would wait for good, and Close with them.
	defer func() {
		if !done {
			for i := range errs {
				errs[i] = fail("store.AppendTurn", errLeaderPanicked)
			}
		}
		for i, t := range batch[1:] {
			t.wake <- wake{err: errs[i+1]}
		}
		if next := s.commits.next(); next != nil {
			next[0].wake <- wake{batch: next}
		}
	}()
	if s.beforeWrite != nil {
		s.beforeWrite()
	}
	ctx, cancel := s.writeContext()
	defer cancel()
	var err error
	if len(batch) > 1 {
		err = s.appendTurns(ctx, batch)
	}
	switch {
	case locked(err):
		// Another connection held SQLite's lock through the busy
		// timeout: each turn alone would wait as long again, and the
		// last of them answer only after all those waits.
		for i := range batch {
			errs[i] = fail("store.AppendTurn", err)
		}
	case len(batch) == 1 || err != nil:
		for i, t := range batch {
			if i > 0 && noConnection(errs[i-1]) {
				// The turn before waited reconnectWait for a server that
				// stayed down; each would wait as long again.
				errs[i] = errs[i-1]
				continue
			}
			errs[i] = s.appendTurn(ctx, t)
		}
	}
	if s.life.Err() != nil {
		// Close ended the writes: say so, not that a caller canceled.
		for i := range errs {
			if errs[i] != nil {
				errs[i] = fail("store.AppendTurn", errClosed)
			}
		}
	}
	done = true
	return errs[0]
}

// writeContext is the context of a batch's writes. On PostgreSQL it has a
// deadline (turnTimeout), and ends at Close: a server that hangs at
// shutdown must not hold the process for the rest of turnTimeout after
// the grace period. SQLite is a file of this process whose lock waits
// busy_timeout bounds; a context that cannot end spares its driver the
// goroutine per statement that watches for cancellation.
func (s *Store) writeContext() (context.Context, context.CancelFunc) {
	if s.dialect == SQLite {
		return context.Background(), func() {}
	}
	return context.WithTimeout(s.life, turnTimeout)
}

// appendTurns writes a batch of turns in one transaction, all or none.
func (s *Store) appendTurns(ctx context.Context, batch []*turn) error {
	switch {
	case s.dialect == SQLite:
		return s.appendSQLiteTurns(ctx, batch)
	case s.fitStatement(batch):
		return s.appendTurnsStatement(ctx, batch)
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var creates []conversationRow
		var rows []messageRow
		for _, t := range batch {
			if t.create {
				creates = append(creates, t.row)
			} else if err := touchConversation(tx, &t.row); err != nil {
				return err
			}
			rows = append(rows, t.rows...)
		}
		if len(creates) > 0 {
			if err := tx.CreateInBatches(&creates, s.rowsPerInsert()).Error; err != nil {
				return err
			}
			i := 0
			for _, t := range batch {
				if t.create {
					t.row = creates[i]
					i++
				}
			}
		}
		if len(rows) == 0 {
			return nil
		}
		if err := tx.CreateInBatches(&rows, s.rowsPerInsert()).Error; err != nil {
			return err
		}
		for _, t := range batch {
			n := copy(t.rows, rows)
			rows = rows[n:]
		}
		return nil
	})
}

// appendTurn writes one turn atomically and explains its failure.
func (s *Store) appendTurn(ctx context.Context, t *turn) error {
	const op = "store.AppendTurn"
	c := t.conv
	var err error
	switch {
	case s.dialect == SQLite:
		err = s.appendSQLiteTurns(ctx, []*turn{t})
	case s.fitStatement([]*turn{t}):
		err = onLiveConn(ctx, func() error { return s.appendTurnsStatement(ctx, []*turn{t}) })
	default:
		err = onLiveConn(ctx, func() error { return s.appendTurnTx(ctx, t) })
	}
	switch {
	case err == nil:
		return nil
	case classify(err) == uniqueViolation && s.dialect == Postgres && s.turnStored(ctx, t):
		// A write before this one, whose answer was lost (onLiveConn, or
		// its batch's in lead), had committed the turn.
		return nil
	case errors.Is(err, errNoConversation):
		return because(op, domain.NotFoundf("conversation", c.ID), nil)
	default:
		return translate(op, err,
			func() error {
				return conflictf(op, err, "conversation %s was continued by another request at the same time; retry", c.ID)
			},
			func() error {
				return s.brokenRef(ctx, op, err,
					ref{"projectId", "project", "projects", c.ProjectID},
					ref{"", "chat", "chats", c.ChatID}) // the path's: deleted meanwhile
			})
	}
}

// onLiveConn runs a PostgreSQL write again while its connection fails
// under it. A turn is written after its completion's upstream call was
// made and paid for; on another connection it is stored rather than lost.
// When the server answers that it ended the session (connEnded: an
// administrator, a fast shutdown or a failover), the write did not
// commit. When the connection is lost without the server's word
// (connLost: the network, a proxy between), the write may have committed
// before its answer was lost; the next one then fails on the turn's keys,
// having waited for the first to end (PostgreSQL holds a key a transaction
// inserts until it ends), and turnStored tells the two apart. Each failed
// connection leaves the pool as it fails, so the pool's size bounds those
// attempts. A server that takes no connection (restarting, failing over:
// refused, or 57P03) is tried again, backing off, for reconnectWait, and
// then its error returned: a restart that is back within seconds loses
// no turn, one that stays down fails it.
func onLiveConn(ctx context.Context, write func() error) error {
	err := write()
	pause, waited := 50*time.Millisecond, time.Duration(0)
	for lost := 0; ; {
		switch {
		case connEnded(err) || connLost(err):
			if lost++; lost > postgresMaxConns {
				return err
			}
		case noConnection(err) && waited < reconnectWait:
			select {
			case <-ctx.Done():
				return err
			case <-time.After(pause):
			}
			waited += pause
			pause = min(2*pause, time.Second)
		default:
			return err
		}
		err = write()
	}
}

// reconnectWait is how long a turn's write waits for PostgreSQL to take
// connections again (see onLiveConn): a restart takes a second or two.
const reconnectWait = 5 * time.Second

// turnStored says whether t's turn is in the database: its last message,
// whose id no other write has, is stored only with the rest of it. It is
// looked up by the messages' key (id alone has no index: a scan of the
// whole table, inside the batch's deadline), on a live connection: the
// pool may still hold others the failure that lost the answer cut, and
// a lookup that met one would report a stored turn as a conflict.
func (s *Store) turnStored(ctx context.Context, t *turn) bool {
	if len(t.rows) == 0 {
		return false
	}
	last := &t.rows[len(t.rows)-1]
	var n int
	err := onLiveConn(ctx, func() error {
		return s.sqlDB.QueryRowContext(ctx, turnStoredQuery, last.ConversationID, last.Seq, last.ID).Scan(&n)
	})
	return err == nil && n == 1
}

// turnStoredQuery is turnStored's (PostgreSQL).
const turnStoredQuery = "SELECT count(*) FROM messages WHERE conversation_id = $1 AND seq = $2 AND id = $3"

// appendTurnTx writes one turn in a transaction, on PostgreSQL.
func (s *Store) appendTurnTx(ctx context.Context, t *turn) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if t.create {
			if err := tx.Create(&t.row).Error; err != nil {
				return err
			}
		} else if err := touchConversation(tx, &t.row); err != nil {
			return err
		}
		if len(t.rows) == 0 {
			return nil
		}
		return tx.CreateInBatches(&t.rows, s.rowsPerInsert()).Error
	})
}

// appendTurnsStatement writes a batch of turns on PostgreSQL in a single
// statement, atomic without BEGIN and COMMIT: one round trip instead of
// four. The conversations' inserts and updatedAt are data-modifying WITHs;
// when a continued conversation is gone, the messages' foreign key fails.
// Only for batches that fitStatement.
func (s *Store) appendTurnsStatement(ctx context.Context, batch []*turn) error {
	var q strings.Builder
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	withs := 0
	with := func(query string) { // the statement's next data-modifying WITH
		if withs == 0 {
			q.WriteString("WITH ")
		} else {
			q.WriteString(", ")
		}
		withs++
		fmt.Fprintf(&q, "c%d AS (%s)", withs, query)
	}
	var creates []string
	for _, t := range batch {
		r := &t.row
		if t.create {
			creates = append(creates, fmt.Sprintf("(%s, %s, %s, %s, %s)", arg(r.ID), arg(r.ProjectID), arg(r.ChatID), arg(r.CreatedAt), arg(r.UpdatedAt)))
		}
	}
	if len(creates) > 0 {
		with("INSERT INTO conversations (id, project_id, chat_id, created_at, updated_at) VALUES " + strings.Join(creates, ", "))
	}
	for _, t := range batch {
		if !t.create {
			with(fmt.Sprintf("UPDATE conversations SET updated_at = %s WHERE id = %s", arg(t.row.UpdatedAt), arg(t.row.ID)))
		}
	}
	q.WriteString(" INSERT INTO messages (" + strings.Join(messageColumns, ", ") + ") VALUES ")
	for k, t := range batch {
		for i := range t.rows {
			if k > 0 || i > 0 {
				q.WriteString(", ")
			}
			q.WriteByte('(')
			for j, v := range t.rows[i].values() {
				if j > 0 {
					q.WriteString(", ")
				}
				q.WriteString(arg(v))
			}
			q.WriteByte(')')
		}
	}
	_, err := s.sqlDB.ExecContext(ctx, q.String(), args...)
	if err != nil && len(batch) == 1 && !batch[0].create && classify(err) == foreignKeyViolation {
		return errNoConversation
	}
	return err
}

// fitStatement reports whether appendTurnsStatement can write batch: each
// turn has messages (whose foreign key tells a continued conversation is
// gone), and all of them fit in one INSERT.
func (s *Store) fitStatement(batch []*turn) bool {
	n := 0
	for _, t := range batch {
		if len(t.rows) == 0 {
			return false
		}
		n += len(t.rows)
	}
	return n <= s.rowsPerInsert()
}

// messageColumns are the columns of messages, in the order of
// messageRow.values.
var messageColumns = []string{"id", "conversation_id", "seq", "role", "content", "document_id", "tool_calls",
	"tool_call_id", "model", "finish_reason", "prompt_tokens", "completion_tokens", "total_tokens", "usage_estimated", "cached_tokens",
	"cache_write_tokens", "reasoning_tokens", "created_at", "request_key", "request_hash", "refusal"}

// values returns m's fields in the order of messageColumns.
func (m *messageRow) values() [21]any {
	return [...]any{m.ID, m.ConversationID, m.Seq, m.Role, m.Content, m.DocumentID, m.ToolCalls,
		m.ToolCallID, m.Model, m.FinishReason, m.PromptTokens, m.CompletionTokens, m.TotalTokens, m.UsageEstimated, m.CachedTokens,
		m.CacheWriteTokens, m.ReasoningTokens, m.CreatedAt, m.RequestKey, m.RequestHash, m.Refusal}
}

// The SQLite turn writer's statements (see sqliteWrite).
const (
	sqliteInsertConversation = "INSERT INTO conversations (id, project_id, chat_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
	sqliteTouchConversation  = "UPDATE conversations SET updated_at = ? WHERE id = ?"
)

// sqliteInsertMessages[n] is the INSERT of n messages.
var sqliteInsertMessages = insertQueries("messages", messageColumns)

// sqliteLeanMessages inserts messages that leave the columns of features
// most turns do not use (documents, tool calls, refusals, idempotency
// keys, usage details) at their defaults, which it writes as literals.
var sqliteLeanMessages = newLeanInsert("messages", messageColumns, map[string]string{
	"document_id": "''", "tool_calls": "''", "tool_call_id": "''", "cached_tokens": "0", "cache_write_tokens": "0",
	"reasoning_tokens": "0", "request_key": "NULL", "request_hash": "NULL", "refusal": "NULL"})

// appendSQLiteTurns writes turns in one SQLite transaction, all or none.
func (s *Store) appendSQLiteTurns(ctx context.Context, batch []*turn) error {
	var w sqliteWrite
	for _, t := range batch {
		r := &t.row
		if t.create {
			w.exec(sqliteInsertConversation, false, r.ID, r.ProjectID, r.ChatID, r.CreatedAt, r.UpdatedAt)
		} else {
			w.exec(sqliteTouchConversation, true, r.UpdatedAt, r.ID)
		}
		vals := make([][21]any, len(t.rows)) // each row's values(), read once
		lean := true
		for i := range t.rows {
			vals[i] = t.rows[i].values()
			lean = lean && sqliteLeanMessages.fits(vals[i][:])
		}
		if lean {
			w.insert(sqliteLeanMessages.queries, len(sqliteLeanMessages.params), len(vals), func(i int, args []any) []any {
				return sqliteLeanMessages.appendParams(args, vals[i][:])
			})
			continue
		}
		w.insert(sqliteInsertMessages, len(messageColumns), len(vals), func(i int, args []any) []any {
			return append(args, vals[i][:]...)
		})
	}
	return s.writeSQLite(ctx, &w)
}

// touchConversation sets the updatedAt of the conversation a turn
// continues; errNoConversation when it is gone.
func touchConversation(tx *gorm.DB, row *conversationRow) error {
	res := tx.Model(&conversationRow{}).Where("id = ?", row.ID).Update("updated_at", row.UpdatedAt)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return errNoConversation
	}
	return nil
}
