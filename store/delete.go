package store

import (
	"context"

	"gorm.io/gorm"
)

// On SQLite a delete holds the database's one write lock until it commits,
// and deleting a chat or a project cascades to every conversation, message
// and usage record it owns: for a large one, millions of rows and seconds,
// while every other write waits (a turn for its busy timeout, and then it
// fails, its upstream call already paid for). So on SQLite those rows go
// first, deleteChunk usage records or conversations per statement, and
// before a chunk of conversations their messages, messagesPerChunk per
// statement (a conversation may hold thousands), each statement its own
// transaction, and other writes take their turn between them. A delete
// that fails midway has removed some of what it was removing; sent again,
// it goes on. On PostgreSQL a delete locks only its own rows, and runs as
// one statement.
const (
	deleteChunk      = 256
	messagesPerChunk = 8 // × the chunk: messages deleted per statement
)

// deleteWhole runs del, the delete of a chat or a project (key names it).
// On SQLite, a chunk per statement, a delete cut midway would leave the
// chat or project in place without part of its rows, its usage records
// among them, the usage report's figures gone with them: once begun, it
// runs to its end, whatever becomes of the caller's context (a statement
// that fails, the database closed at shutdown or locked by another process
// past its busy timeout, leaves it part done; sent again, it goes on). A
// delete sent again while the first runs (by a client that gave up on it)
// waits for the first's result rather than run beside it, each holding a
// connection of the pool's eight. On PostgreSQL it is one statement, which
// a cut rolls back whole.
func (s *Store) deleteWhole(ctx context.Context, key string, del func(context.Context) error) error {
	if s.dialect != SQLite {
		return del(ctx)
	}
	ctx = context.WithoutCancel(ctx)
	_, err, _ := s.deletes.Do(key, func() (any, error) { return nil, del(ctx) })
	return err
}

// deleteChatConversations deletes, on SQLite, the conversations of chatID
// a chunk at a time, each chunk's messages first, messagesPerChunk chunks'
// worth per statement.
func (s *Store) deleteChatConversations(ctx context.Context, chatID string) error {
	if s.dialect != SQLite {
		return nil
	}
	chunk := s.chunk()
	for {
		var ids []string
		if err := s.db.WithContext(ctx).Raw("SELECT id FROM conversations WHERE chat_id = ? LIMIT ?", chatID, chunk).Scan(&ids).Error; err != nil {
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

// deleteProjectRows deletes, on SQLite, the conversations of projectID's
// chats and its usage records a chunk at a time.
func (s *Store) deleteProjectRows(ctx context.Context, projectID string) error {
	if s.dialect != SQLite {
		return nil
	}
	var chats []string
	if err := s.db.WithContext(ctx).Raw("SELECT id FROM chats WHERE project_id = ? ORDER BY id", projectID).Scan(&chats).Error; err != nil {
		return err
	}
	for _, id := range chats {
		if err := s.deleteChatConversations(ctx, id); err != nil {
			return err
		}
	}
	if err := s.deleteInChunks(ctx, s.chunk(), "DELETE FROM usage_records WHERE project_id = ? AND (created_at, id) IN "+
		"(SELECT created_at, id FROM usage_records WHERE project_id = ? LIMIT ?)", projectID, projectID); err != nil {
		return err
	}
	// Documents are up to 4 MiB each: thousands in the project's own
	// statement would hold the write lock for as long as they take.
	return s.deleteInChunks(ctx, s.chunk(), "DELETE FROM documents WHERE id IN "+
		"(SELECT id FROM documents WHERE project_id = ? LIMIT ?)", projectID)
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

// deleteExec runs one statement of a chunked delete (an API delete's, a
// retention sweep's) and returns the rows it deleted. On SQLite it holds
// the write connection meanwhile, as restartWAL does, its own connection
// taken first: the statement holds SQLite's one write lock, and a turn
// that found it taken slept in SQLite's busy handler (1, 2, 5, 10 ms and
// on), over a second behind under a sweep of millions of rows. Holding
// the writer, turns queue in Go and start the moment each statement
// commits.
func (s *Store) deleteExec(ctx context.Context, query string, args ...any) (deleted int64, err error) {
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
