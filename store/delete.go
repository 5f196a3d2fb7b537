package store

import "context"

// On SQLite a delete holds the database's one write lock until it commits,
// and deleting a chat or a project cascades to every conversation, message
// and usage record it owns: for a large one, millions of rows and seconds,
// while every other write waits (a turn for its busy timeout, and then it
// fails, its upstream call already paid for). So on SQLite those rows go
// first, deleteChunk conversations (with their messages) or usage records
// per statement, each statement its own transaction, and other writes
// take their turn between them. A delete that fails midway has removed
// some of what it was removing; sent again, it goes on. On PostgreSQL a
// delete locks only its own rows, and runs as one statement.
const deleteChunk = 256

// deleteChatConversations deletes, on SQLite, the conversations of chatID
// a chunk at a time.
func (s *Store) deleteChatConversations(ctx context.Context, chatID string) error {
	if s.dialect != SQLite {
		return nil
	}
	return s.deleteInChunks(ctx, "DELETE FROM conversations WHERE id IN (SELECT id FROM conversations WHERE chat_id = ? LIMIT ?)", chatID)
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
	return s.deleteInChunks(ctx, "DELETE FROM usage_records WHERE project_id = ? AND (created_at, id) IN "+
		"(SELECT created_at, id FROM usage_records WHERE project_id = ? LIMIT ?)", projectID, projectID)
}

// deleteInChunks runs query, a DELETE of at most a chunk's rows, with args
// and then the chunk's size, until it deletes fewer than a chunk.
func (s *Store) deleteInChunks(ctx context.Context, query string, args ...any) error {
	chunk := s.deleteChunk
	if chunk <= 0 {
		chunk = deleteChunk
	}
	args = append(args, chunk)
	for {
		res := s.db.WithContext(ctx).Exec(query, args...)
		if res.Error != nil || res.RowsAffected < int64(chunk) {
			return res.Error
		}
		if s.betweenChunks != nil {
			s.betweenChunks()
		}
	}
}
