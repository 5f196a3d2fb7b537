package store

import (
	"context"
	"database/sql"
	"time"
)

// DeleteUsageBefore deletes the usage records created before t, project
// by project, a chunk per statement, and returns how many. On SQLite the
// table is kept in project and time order (its key), so each chunk
// starts at the first record left; on PostgreSQL it is a heap, and each
// chunk resumes from the time the last one reached (deleteUsageFrom).
func (s *Store) DeleteUsageBefore(ctx context.Context, t time.Time) (_ int64, err error) {
	defer func() { err = fail("store.DeleteUsageBefore", err) }()
	var projects []string
	if err := s.db.WithContext(ctx).Raw("SELECT id FROM projects ORDER BY id").Scan(&projects).Error; err != nil {
		return 0, err
	}
	var deleted int64
	for _, p := range projects {
		var n int64
		if s.dialect == SQLite {
			n, err = s.countDeleted(ctx, s.chunk(), "DELETE FROM usage_records WHERE project_id = ? AND (created_at, id) IN "+
				"(SELECT created_at, id FROM usage_records WHERE project_id = ? AND created_at < ? LIMIT ?)", p, p, ts(t))
		} else {
			n, err = s.deleteUsageFrom(ctx, p, ts(t))
		}
		deleted += n
		if err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// deleteUsageFrom deletes project's usage records created before t on
// PostgreSQL, a chunk per statement, and returns how many. A chunk is the
// next records in time order from where the last one ended, read from the
// index on (project_id, created_at). Without that resume point each
// statement read the table from its start, in no order, past every record
// the chunks before it had deleted (dead until vacuumed): each chunk
// slower than the last, a project of 250,000 old records took seconds.
// The next chunk starts at the last one's latest time itself (>=), for
// the records of that time it did not take, and the sweep ends with a
// chunk that found fewer records than it takes.
func (s *Store) deleteUsageFrom(ctx context.Context, project string, t time.Time) (int64, error) {
	chunk := s.chunk()
	var deleted int64
	var from sql.NullTime // the last chunk's latest time; none at first
	for {
		after, args := "", []any{project}
		if from.Valid {
			after, args = " AND created_at >= ?", append(args, from.Time)
		}
		args = append(args, t, chunk)
		var found, gone int64
		var latest sql.NullTime
		stmt, cancel := context.WithTimeout(ctx, deleteStatementTimeout)
		err := s.db.WithContext(stmt).Raw("WITH chunk AS (SELECT id, created_at FROM usage_records "+
			"WHERE project_id = ?"+after+" AND created_at < ? ORDER BY created_at LIMIT ?), "+
			"gone AS (DELETE FROM usage_records WHERE id IN (SELECT id FROM chunk) RETURNING 1) "+
			"SELECT (SELECT count(*) FROM chunk), (SELECT count(*) FROM gone), (SELECT max(created_at) FROM chunk)", args...).
			Row().Scan(&found, &gone, &latest)
		cancel()
		deleted += gone
		if err != nil || found < int64(chunk) {
			return deleted, err
		}
		from = latest
		s.afterChunk()
	}
}

// DeleteConversationsBefore deletes the conversations last updated before
// t, with their messages, a chunk at a time, and returns how many it
// deleted. hold, when set, is asked for each before it is deleted: nil
// keeps it (a completion of this instance is continuing it); else the
// conversation is held, from a completion that would continue it, until
// the statement that deletes it is done, when release is called. A conversation goes whole or not at all: each
// statement deletes conversations whose time it checks again, and their
// messages with them (ON DELETE CASCADE), so a conversation continued while
// the sweep runs is kept with every message. On SQLite, whose one write
// lock a statement holds, a statement takes at most messagesPerChunk
// chunks' worth of messages, or one conversation that has more (as its
// delete through the API does); on PostgreSQL, which locks only the rows,
// a chunk at a time.
func (s *Store) DeleteConversationsBefore(ctx context.Context, t time.Time, hold func(id string) (release func())) (_ int64, err error) {
	defer func() { err = fail("store.DeleteConversationsBefore", err) }()
	chunk := s.chunk()
	before := ts(t)
	most := messagesPerChunk * chunk // messages per statement, on SQLite
	query := "SELECT id, 0 AS messages FROM conversations WHERE id > ? AND updated_at < ? ORDER BY id LIMIT ?"
	if s.dialect == SQLite {
		// A conversation's messages are numbered from 0: the last one's
		// number is an index lookup, where counting them reads them all.
		query = "SELECT id, (SELECT coalesce(max(seq), -1) + 1 FROM messages WHERE conversation_id = conversations.id) AS messages " +
			"FROM conversations WHERE id > ? AND updated_at < ? ORDER BY id LIMIT ?"
	}
	var deleted int64
	var group []string
	var held []func() // the releases of group's conversations
	defer func() {
		for _, release := range held {
			release()
		}
	}()
	messages := 0
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		n, err := s.deleteExec(ctx, "DELETE FROM conversations WHERE id IN ? AND updated_at < ?", group, before)
		deleted += n
		for _, release := range held {
			release()
		}
		group, held, messages = group[:0], held[:0], 0
		if err == nil {
			s.afterChunk()
		}
		return err
	}
	after := ""
	for {
		// In key order from the last chunk's last id: one pass over the
		// conversations whatever their number (no index has their time).
		var rows []struct {
			ID       string
			Messages int
		}
		if err := s.db.WithContext(ctx).Raw(query, after, before, chunk).Scan(&rows).Error; err != nil {
			return deleted, err
		}
		for _, r := range rows {
			if s.dialect == SQLite && len(group) > 0 && messages+r.Messages > most {
				if err := flush(); err != nil {
					return deleted, err
				}
			}
			if hold != nil {
				release := hold(r.ID)
				if release == nil {
					continue
				}
				held = append(held, release)
			}
			group = append(group, r.ID)
			messages += r.Messages
		}
		if err := flush(); err != nil {
			return deleted, err
		}
		if len(rows) < chunk {
			return deleted, nil
		}
		after = rows[len(rows)-1].ID
	}
}
