package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"time"

	"gorm.io/gorm"

	"github.com/parleyhq/parley/domain"
)

// Deleting a chat or a project cascades to every conversation, message,
// usage record and document it owns: for a large one, millions of rows
// and seconds. On SQLite a delete holds the database's one write lock
// until it commits, while every other write waits (a turn for its busy
// timeout, and then it fails, its upstream call already paid for). On
// PostgreSQL it holds only its own rows' locks, but turns still arriving
// for those conversations wait on them, and once they fill the commit
// queue's four batches every other project's turns wait behind them: one
// statement stalled every tenant's completions for as long as it ran. So
// those rows go first, deleteChunk usage records, documents or
// conversations per statement (on SQLite, before a chunk of conversations,
// their messages, messagesPerChunk per statement: a conversation may hold
// thousands; on PostgreSQL they go with their conversations), each
// statement its own transaction, and other writes take their turn between
// them. A delete that fails midway has removed some of what it was
// removing; sent again, it goes on.
const (
	deleteChunk      = 256
	messagesPerChunk = 8 // × the chunk: messages deleted per statement
)

// deleteWhole runs del, the delete of a chat or a project (key names it).
// A chunk per statement, a delete cut midway would leave the chat or
// project in place without part of its rows, its usage records among
// them, the usage report's figures gone with them: once begun, it runs to
// its end, whatever becomes of the caller's context (a statement that
// fails, the database closed at shutdown, unreachable, or locked by
// another process past its busy timeout, leaves it part done; sent again,
// it goes on). A delete sent again while the first runs (by a client that
// gave up on it) waits for the first's result rather than run beside it,
// each holding a connection of the pool. On PostgreSQL one sent to
// another instance waits for the first's end too (deleteLock), then finds
// what is left, if anything: run beside it, its chunks met the first's
// locked rows, found nothing left to delete, and the chat's or project's
// own row then took every row left in one statement, for seconds.
func (s *Store) deleteWhole(ctx context.Context, key string, del func(context.Context) error) error {
	ctx = context.WithoutCancel(ctx)
	_, err, _ := s.deletes.Do(key, func() (any, error) {
		unlock, err := s.deleteLock(ctx, key)
		if err != nil {
			return nil, err
		}
		defer unlock()
		return nil, del(ctx)
	})
	return err
}

// deleteLock takes, on PostgreSQL, a session advisory lock named by key,
// on a connection of its own that holds it until unlock; nothing on
// SQLite, whose one writer already keeps deletes apart. It waits for
// another instance's delete as long as that runs, asking every
// deleteLockPoll, each question bounded as a delete's statements are
// (deleteStatementTimeout): a database that hangs ends the delete
// Unavailable rather than hold it.
func (s *Store) deleteLock(ctx context.Context, key string) (unlock func(), err error) {
	if s.dialect == SQLite {
		return func() {}, nil
	}
	// The connection comes out of the pool its statements need too: at
	// most maxDeleteLocks deletes hold one at a time, the rest wait their
	// turn, or twenty deletes at once took every connection and each
	// statement waited, as every other request did, for one.
	s.deleteLocks <- struct{}{}
	held := false
	defer func() {
		if !held {
			<-s.deleteLocks
		}
	}()
	name := "parley delete " + key
	bounded := func(f func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, deleteStatementTimeout)
		defer cancel()
		return f(ctx)
	}
	var conn *sql.Conn
	if err := bounded(func(ctx context.Context) (err error) { conn, err = s.sqlDB.Conn(ctx); return err }); err != nil {
		return nil, fail("store.delete", err)
	}
	for {
		var got bool
		err := bounded(func(ctx context.Context) error {
			return conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", name).Scan(&got)
		})
		if err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			_ = conn.Close()
			return nil, fail("store.delete", err)
		}
		if got {
			break
		}
		time.Sleep(deleteLockPoll)
	}
	held = true
	return func() {
		defer func() { <-s.deleteLocks }()
		// Closing a connection ends its session and its locks; one that
		// goes back to the pool must let go of them first.
		err := bounded(func(ctx context.Context) error {
			_, err := conn.ExecContext(ctx, "SELECT pg_advisory_unlock(hashtextextended($1, 0))", name)
			return err
		})
		if err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		_ = conn.Close()
	}, nil
}

// maxDeleteLocks is how many deletes of an instance hold a connection for
// their lock (deleteLock) at once, of the pool's postgresMaxConns.
const maxDeleteLocks = 4

// deleteLockPoll is how often a delete waiting for another instance's
// asks whether it has ended.
const deleteLockPoll = 200 * time.Millisecond

// deleteChatConversations deletes the conversations of chatID a chunk at
// a time: on SQLite each chunk's messages first, messagesPerChunk chunks'
// worth per statement; on PostgreSQL with them (ON DELETE CASCADE).
func (s *Store) deleteChatConversations(ctx context.Context, chatID string) error {
	chunk := s.chunk()
	if s.dialect != SQLite {
		return s.deleteInChunks(ctx, chunk, "DELETE FROM conversations WHERE id IN "+
			"(SELECT id FROM conversations WHERE chat_id = ? LIMIT ?)", chatID)
	}
	for {
		var ids []string
		if err := s.boundedRead(ctx, &ids, "SELECT id FROM conversations WHERE chat_id = ? LIMIT ?", chatID, chunk); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		// By rowid: the subquery reads only the messages' key, and the
		// DELETE finds each row by it.
		if err := s.deleteInChunks(ctx, messagesPerChunk*chunk, "DELETE FROM messages WHERE rowid IN "+
			"(SELECT rowid FROM messages WHERE conversation_id IN ? LIMIT ?)", ids); err != nil {
			return err
		}
		if _, err := s.deleteExec(ctx, "DELETE FROM conversations WHERE id IN ?", ids); err != nil {
			return err
		}
		if len(ids) < chunk {
			return nil
		}
		s.afterChunk()
	}
}

// deleteProjectRows deletes the conversations of projectID's chats, its
// usage records and its documents a chunk at a time.
func (s *Store) deleteProjectRows(ctx context.Context, projectID string) error {
	var chats []string
	if err := s.boundedRead(ctx, &chats, "SELECT id FROM chats WHERE project_id = ? ORDER BY id", projectID); err != nil {
		return err
	}
	for _, id := range chats {
		if err := s.deleteChatConversations(ctx, id); err != nil {
			return err
		}
	}
	if err := s.deleteProjectUsage(ctx, projectID); err != nil {
		return err
	}
	// Documents are up to 4 MiB each: thousands in the project's own
	// statement would hold the write lock for as long as they take.
	return s.deleteInChunks(ctx, s.chunk(), "DELETE FROM documents WHERE id IN "+
		"(SELECT id FROM documents WHERE project_id = ? LIMIT ?)", projectID)
}

// deleteProjectUsage deletes projectID's usage records a chunk at a time:
// on PostgreSQL resuming each chunk where the last ended, as the sweep
// does (deleteUsageFrom), rather than reading the table from its start
// past the records deleted before.
func (s *Store) deleteProjectUsage(ctx context.Context, projectID string) error {
	if s.dialect != SQLite {
		_, err := s.deleteUsageFrom(ctx, projectID, endOfTime)
		return err
	}
	return s.deleteInChunks(ctx, s.chunk(), "DELETE FROM usage_records WHERE project_id = ? AND (created_at, id) IN "+
		"(SELECT created_at, id FROM usage_records WHERE project_id = ? LIMIT ?)", projectID, projectID)
}

// endOfTime is after every record's time.
var endOfTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// deleteRow deletes the row id of table, a chat's or a project's, and
// with it what is left of its rows (ON DELETE CASCADE), holding SQLite's
// writer as the chunks before it did (deleteExec); NotFound, naming it
// what, when there is none.
func (s *Store) deleteRow(ctx context.Context, op, table, what, id string) error {
	n, err := s.deleteExec(ctx, "DELETE FROM "+table+" WHERE id = ?", id)
	if err != nil {
		return fail(op, err)
	}
	if n == 0 {
		return because(op, domain.NotFoundf(what, id), nil)
	}
	return nil
}

// chunk is the rows per statement of a chunked delete: deleteChunk, or a
// test's.
func (s *Store) chunk() int {
	if s.deleteChunk > 0 {
		return s.deleteChunk
	}
	return deleteChunk
}

// afterChunk runs a test's betweenChunks, if any.
func (s *Store) afterChunk() {
	if s.betweenChunks != nil {
		s.betweenChunks()
	}
}

// deleteInChunks runs query, a DELETE of at most n rows, with args and
// then n, until it deletes fewer than n.
func (s *Store) deleteInChunks(ctx context.Context, n int, query string, args ...any) error {
	_, err := s.countDeleted(ctx, n, query, args...)
	return err
}

// countDeleted is deleteInChunks, and returns how many rows it deleted.
func (s *Store) countDeleted(ctx context.Context, n int, query string, args ...any) (int64, error) {
	args = append(args, n)
	var deleted int64
	for {
		m, err := s.deleteExec(ctx, query, args...)
		deleted += m
		if err != nil || m < int64(n) {
			return deleted, err
		}
		s.afterChunk()
	}
}

// deleteStatementTimeout bounds each statement of a chunked delete, which
// runs to its end whatever its caller's context (deleteWhole): a database
// that hangs ends the delete part done, Unavailable (sent again, it goes
// on), rather than hold it, and every delete of the same chat or project
// behind it, for as long as it hangs.
var deleteStatementTimeout = 30 * time.Second

// boundedRead scans the rows of query into dest within
// deleteStatementTimeout, for a delete's reads as deleteExec bounds its
// writes.
func (s *Store) boundedRead(ctx context.Context, dest any, query string, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, deleteStatementTimeout)
	defer cancel()
	return s.db.WithContext(ctx).Raw(query, args...).Scan(dest).Error
}

// deleteExec runs one statement of a chunked delete (an API delete's, a
// retention sweep's) and returns the rows it deleted. On SQLite it holds
// the write connection meanwhile, as restartWAL does, its own connection
// taken first: the statement holds SQLite's one write lock, and a turn
// that found it taken slept in SQLite's busy handler (1, 2, 5, 10 ms and
// on), over a second behind under a sweep of millions of rows. Holding
// the writer, turns queue in Go and start the moment each statement
// commits.
func (s *Store) deleteExec(ctx context.Context, query string, args ...any) (deleted int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, deleteStatementTimeout)
	defer cancel()
	if s.dialect != SQLite {
		res := s.db.WithContext(ctx).Exec(query, args...)
		return res.RowsAffected, res.Error
	}
	err = s.db.WithContext(ctx).Connection(func(conn *gorm.DB) error {
		s.writer.mu.Lock()
		defer s.writer.mu.Unlock()
		res := conn.Exec(query, args...)
		deleted = res.RowsAffected
		return res.Error
	})
	return deleted, err
}
