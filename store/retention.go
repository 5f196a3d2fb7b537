package store

import (
	"context"
	"time"
)

// DeleteUsageBefore deletes the usage records created before t, project
// by project, a chunk per statement (usage records are kept in project
// and time order, on SQLite as the table itself), and returns how many.
func (s *Store) DeleteUsageBefore(ctx context.Context, t time.Time) (int64, error) {
	var projects []string
	if err := s.db.WithContext(ctx).Raw("SELECT id FROM projects ORDER BY id").Scan(&projects).Error; err != nil {
		return 0, err
	}
	var deleted int64
	for _, p := range projects {
		n, err := s.countDeleted(ctx, s.chunk(), "DELETE FROM usage_records WHERE project_id = ? AND (created_at, id) IN "+
			"(SELECT created_at, id FROM usage_records WHERE project_id = ? AND created_at < ? LIMIT ?)", p, p, ts(t))
		deleted += n
		if err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// DeleteConversationsBefore deletes the conversations last updated before
// t, with their messages, a chunk at a time, and returns how many. Each
// statement checks the time again, so a conversation continued while the
// sweep runs is kept: on PostgreSQL one statement deletes a chunk and its
// messages (ON DELETE CASCADE); on SQLite, whose one write lock a
// statement holds, the messages go first, a bounded number per statement,
// as a chat's delete takes them.
func (s *Store) DeleteConversationsBefore(ctx context.Context, t time.Time) (int64, error) {
	chunk := s.chunk()
	before := ts(t)
	var deleted int64
	after := ""
	for {
		// In key order from the last chunk's last id: one pass over the
		// conversations whatever their number (no index has their time).
		var ids []string
		if err := s.db.WithContext(ctx).Raw("SELECT id FROM conversations WHERE id > ? AND updated_at < ? ORDER BY id LIMIT ?",
			after, before, chunk).Scan(&ids).Error; err != nil {
			return deleted, err
		}
		if len(ids) == 0 {
			return deleted, nil
		}
		after = ids[len(ids)-1]
		if s.dialect == SQLite {
			if _, err := s.countDeleted(ctx, messagesPerChunk*chunk, "DELETE FROM messages WHERE rowid IN "+
				"(SELECT m.rowid FROM messages m JOIN conversations c ON c.id = m.conversation_id "+
				"WHERE c.id IN ? AND c.updated_at < ? LIMIT ?)", ids, before); err != nil {
				return deleted, err
			}
		}
		res := s.db.WithContext(ctx).Exec("DELETE FROM conversations WHERE id IN ? AND updated_at < ?", ids, before)
		deleted += res.RowsAffected
		if res.Error != nil {
			return deleted, res.Error
		}
		if len(ids) < chunk {
			return deleted, nil
		}
		s.afterChunk()
	}
}
