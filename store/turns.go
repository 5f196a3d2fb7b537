package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/parleyhq/parley/domain"
)

// Turns are group-committed. Every completion stores its turn before its
// response goes out, so the turn write is on the hot path; one transaction
// per turn spends most of its time in BEGIN, COMMIT and the journal pages
// each commit rewrites. Instead, turns that arrive while a transaction is
// being written wait and go together in the next one: under no load a
// batch is one turn, under load the cost of a commit is shared. When a
// batch fails, its turns are written again one by one, so each caller gets
// its own answer (a conflict or a missing conversation fails one turn, not
// its neighbours).
const (
	maxTurnBatch = 64               // turns per transaction
	turnTimeout  = 30 * time.Second // a batch's transaction serves several callers, so it has its own deadline
)

// errNoConversation is returned inside a turn's transaction when the
// conversation to continue is gone.
var errNoConversation = errors.New("conversation does not exist")

// errClosed answers turns that arrive after Close.
var errClosed = errors.New("store: closed")

// turn is one AppendTurn waiting to be written.
type turn struct {
	conv   *domain.Conversation
	create bool
	msgs   []domain.Message
	row    conversationRow
	rows   []messageRow
	done   chan error
}

// AppendTurn stores msgs at the end of c in one transaction, creating c
// when create is true and setting its updatedAt to c.UpdatedAt otherwise.
// NotFound when c is to be continued but does not exist; Conflict when
// another turn took the same Seq values first (retry); NotFound or Invalid
// when a new conversation's project or chat does not exist. The turn may
// share its transaction with others (see maxTurnBatch); it is committed
// when AppendTurn returns nil.
func (s *Store) AppendTurn(ctx context.Context, c *domain.Conversation, create bool, msgs []domain.Message) error {
	t := &turn{conv: c, create: create, msgs: msgs, row: fromDomainConversation(c), rows: make([]messageRow, len(msgs)), done: make(chan error, 1)}
	for i := range msgs {
		t.rows[i] = fromDomainMessage(&msgs[i])
		t.rows[i].ConversationID = c.ID
	}
	select {
	case s.turns <- t:
	case <-ctx.Done():
		return fail("store.AppendTurn", ctx.Err())
	case <-s.closed:
		return fail("store.AppendTurn", errClosed)
	}
	if err := <-t.done; err != nil {
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

// writeTurns is a turn writer: it takes a turn, then every turn already
// waiting (up to maxTurnBatch), and writes them in one transaction. It
// returns when the store closes.
func (s *Store) writeTurns() {
	defer s.writers.Done()
	batch := make([]*turn, 0, maxTurnBatch)
	for {
		select {
		case <-s.closed:
			return
		case t := <-s.turns:
			batch = append(batch[:0], t)
		}
	more:
		for len(batch) < maxTurnBatch {
			select {
			case t := <-s.turns:
				batch = append(batch, t)
			default:
				break more
			}
		}
		if n := int64(len(batch)); n > s.largestBatch.Load() {
			s.largestBatch.Store(n) // one writer per value seen; a race only undercounts
		}
		ctx, cancel := context.WithTimeout(context.Background(), turnTimeout)
		if len(batch) > 1 && s.appendTurns(ctx, batch) == nil {
			for _, t := range batch {
				t.done <- nil
			}
		} else {
			for _, t := range batch {
				t.done <- s.appendTurn(ctx, t)
			}
		}
		cancel()
	}
}

// appendTurns writes a batch of turns in one transaction, all or none.
func (s *Store) appendTurns(ctx context.Context, batch []*turn) error {
	if s.dialect == SQLite {
		return s.appendSQLiteTurns(ctx, batch)
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
	case len(t.rows) > 0 && len(t.rows) <= s.rowsPerInsert():
		err = s.appendTurnStatement(ctx, t)
	default:
		err = s.appendTurnTx(ctx, t)
	}
	switch {
	case err == nil:
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
					ref{"chatId", "chat", "chats", c.ChatID})
			})
	}
}

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

// appendTurnStatement writes one turn on PostgreSQL in a single statement,
// atomic without BEGIN and COMMIT: one round trip instead of four. The
// conversation's insert (or updatedAt) is a data-modifying WITH; when a
// continued conversation is gone, the messages' foreign key fails.
func (s *Store) appendTurnStatement(ctx context.Context, t *turn) error {
	var q strings.Builder
	args := make([]any, 0, 5+len(t.rows)*len(messageColumns))
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	r := &t.row
	if t.create {
		fmt.Fprintf(&q, "WITH c AS (INSERT INTO conversations (id, project_id, chat_id, created_at, updated_at) VALUES (%s, %s, %s, %s, %s)) ",
			arg(r.ID), arg(r.ProjectID), arg(r.ChatID), arg(r.CreatedAt), arg(r.UpdatedAt))
	} else {
		fmt.Fprintf(&q, "WITH c AS (UPDATE conversations SET updated_at = %s WHERE id = %s) ", arg(r.UpdatedAt), arg(r.ID))
	}
	q.WriteString("INSERT INTO messages (" + strings.Join(messageColumns, ", ") + ") VALUES ")
	for i := range t.rows {
		if i > 0 {
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
	_, err := s.sqlDB.ExecContext(ctx, q.String(), args...)
	if err != nil && !t.create && classify(err) == foreignKeyViolation {
		return errNoConversation
	}
	return err
}

// messageColumns are the columns of messages, in the order of
// messageRow.values.
var messageColumns = []string{"id", "conversation_id", "seq", "role", "content", "document_id", "tool_calls",
	"tool_call_id", "model", "finish_reason", "prompt_tokens", "completion_tokens", "total_tokens", "created_at"}

// values returns m's fields in the order of messageColumns.
func (m *messageRow) values() [14]any {
	return [...]any{m.ID, m.ConversationID, m.Seq, m.Role, m.Content, m.DocumentID, m.ToolCalls,
		m.ToolCallID, m.Model, m.FinishReason, m.PromptTokens, m.CompletionTokens, m.TotalTokens, m.CreatedAt}
}

// The SQLite turn writer's statements. SQLite parses an INSERT in about the
// time it takes to run it, so these are prepared once per connection (see
// prepared); GORM cannot do that for statements first run inside a
// transaction, because database/sql prepares a transaction's statement
// again on every use.
const (
	sqliteInsertConversation = "INSERT INTO conversations (id, project_id, chat_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
	sqliteTouchConversation  = "UPDATE conversations SET updated_at = ? WHERE id = ?"
)

// sqliteInsertMessages[n] is the INSERT of n messages, built once rather
// than on every turn.
var sqliteInsertMessages = func() []string {
	row := "(?" + strings.Repeat(", ?", len(messageColumns)-1) + ")"
	q := make([]string, sqliteRowsPerInsert+1)
	for n := 1; n < len(q); n++ {
		q[n] = "INSERT INTO messages (" + strings.Join(messageColumns, ", ") + ") VALUES " + row + strings.Repeat(", "+row, n-1)
	}
	return q
}()

// appendSQLiteTurns writes turns in one SQLite transaction, all or none.
func (s *Store) appendSQLiteTurns(ctx context.Context, batch []*turn) error {
	// The statements are prepared before the transaction begins: preparing
	// takes a connection of its own, and a ":memory:" database has just one.
	type step struct {
		stmt  *sql.Stmt
		args  []any
		touch bool // continues a conversation, which must exist
	}
	var steps []step
	add := func(query string, touch bool, args ...any) error {
		st, err := s.prepared(ctx, query)
		steps = append(steps, step{st, args, touch})
		return err
	}
	for _, t := range batch {
		r := &t.row
		var err error
		if t.create {
			err = add(sqliteInsertConversation, false, r.ID, r.ProjectID, r.ChatID, r.CreatedAt, r.UpdatedAt)
		} else {
			err = add(sqliteTouchConversation, true, r.UpdatedAt, r.ID)
		}
		for rows := t.rows; len(rows) > 0 && err == nil; {
			n := min(len(rows), s.rowsPerInsert())
			args := make([]any, 0, n*len(messageColumns))
			for i := range rows[:n] {
				v := rows[i].values()
				args = append(args, v[:]...)
			}
			err = add(sqliteInsertMessages[n], false, args...)
			rows = rows[n:]
		}
		if err != nil {
			return err
		}
	}

	tx, err := s.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // a no-op once committed
	for _, st := range steps {
		res, err := tx.StmtContext(ctx, st.stmt).ExecContext(ctx, st.args...)
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

// prepared returns query prepared on the database, once: database/sql
// then prepares it once per connection, the first time a transaction on
// that connection uses it. Only the turn writer's few queries come here.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmts.Lock()
	defer s.stmts.Unlock()
	if st, ok := s.stmts.byQuery[query]; ok {
		return st, nil
	}
	st, err := s.sqlDB.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if s.stmts.byQuery == nil {
		s.stmts.byQuery = make(map[string]*sql.Stmt)
	}
	s.stmts.byQuery[query] = st
	return st, nil
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
