package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/parleyhq/parley/domain"
)

// InsertUsage stores records in one transaction; Conflict when one's id
// exists, NotFound when one's project does not.
func (s *Store) InsertUsage(ctx context.Context, records []domain.UsageRecord) error {
	const op = "store.InsertUsage"
	if len(records) == 0 {
		return nil
	}
	rows := make([]usageRow, len(records))
	var projects []string
	for i := range records {
		rows[i] = fromDomainUsage(&records[i])
		if !slices.Contains(projects, rows[i].ProjectID) {
			projects = append(projects, rows[i].ProjectID)
		}
	}
	var err error
	if s.dialect == SQLite {
		var w sqliteWrite
		w.insert(sqliteInsertUsage, len(usageColumns), len(rows), func(i int, args []any) []any {
			v := rows[i].values()
			return append(args, v[:]...)
		})
		err = s.writeSQLite(ctx, &w)
	} else {
		err = s.copyUsage(ctx, rows)
	}
	if err != nil {
		return translate(op, err,
			func() error { return conflictf(op, err, "a usage record with one of these ids already exists") },
			func() error {
				refs := make([]ref, len(projects))
				for i, p := range projects {
					refs[i] = ref{"projectId", "project", "projects", p}
				}
				return s.brokenRef(ctx, op, err, refs...)
			})
	}
	return nil
}

// copyUsage writes rows with PostgreSQL's COPY, all or none. A batch is
// a few hundred records; as one INSERT it cost Parley more CPU per record
// (GORM's reflection, then thousands of parameters) than the server spent
// storing it.
func (s *Store) copyUsage(ctx context.Context, rows []usageRow) error {
	src := make([][]any, len(rows))
	for i := range rows {
		v := rows[i].values()
		src[i] = v[:]
	}
	conn, err := s.sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		pc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("copy usage: the driver's connection is a %T, not pgx's", dc)
		}
		_, err := pc.Conn().CopyFrom(ctx, pgx.Identifier{"usage_records"}, usageColumns, pgx.CopyFromRows(src))
		return err
	})
}

// usageColumns are the columns of usage_records, in the order of
// usageRow.values.
var usageColumns = []string{"id", "project_id", "chat_id", "conversation_id", "ai_provider_id", "model", "user_id", "key_id",
	"prompt_tokens", "completion_tokens", "total_tokens", "estimated", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "latency_ms", "ttft_ms", "outcome", "stream", "created_at"}

// values returns u's fields in the order of usageColumns.
func (u *usageRow) values() [20]any {
	return [...]any{u.ID, u.ProjectID, u.ChatID, u.ConversationID, u.AIProviderID, u.Model, u.UserID, u.KeyID,
		u.PromptTokens, u.CompletionTokens, u.TotalTokens, u.Estimated, u.CachedTokens, u.CacheWriteTokens, u.ReasoningTokens, u.LatencyMS, u.TTFTMS, u.Outcome, u.Stream, u.CreatedAt}
}

// sqliteInsertUsage[n] is the INSERT of n usage records.
var sqliteInsertUsage = insertQueries("usage_records", usageColumns)

// usageKeys are the columns usage totals group by.
var usageKeys = map[domain.UsageGroupBy]string{
	domain.GroupByModel:    "model",
	domain.GroupByProvider: "ai_provider_id",
	domain.GroupByChat:     "chat_id",
	domain.GroupByKey:      "key_id",
	domain.GroupByOutcome:  "outcome",
}

// usageKey is the SQL expression usage totals group by for g, and whether
// g is a grouping: a column of usageKeys, or a record's UTC day as
// YYYY-MM-DD, which each database writes its own way (SQLite keeps a time
// as text that starts with it: ts stores UTC).
func (s *Store) usageKey(g domain.UsageGroupBy) (string, bool) {
	if g != domain.GroupByDay {
		key, ok := usageKeys[g]
		return key, ok
	}
	if s.dialect == Postgres {
		return "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')", true
	}
	return "substr(created_at, 1, 10)", true
}

type usageTotalRow struct {
	GroupKey         string
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
	Requests         int64
	EstimatedTokens  int64
	CachedTokens     int64
	CacheWriteTokens int64
	ReasoningTokens  int64
}

// SumUsage returns the totals of q.ProjectID's usage created in
// [q.From, q.To) (a zero bound is open), per group ordered by key byte by
// byte: those after q.After, when set, and at most q.Limit, when not 0.
// Without GroupBy it returns one total, zero when nothing was used.
// Invalid for an unknown GroupBy.
func (s *Store) SumUsage(ctx context.Context, q domain.UsageQuery) ([]domain.UsageTotal, error) {
	const op = "store.SumUsage"
	key := "''"
	if q.GroupBy != "" {
		var ok bool
		if key, ok = s.usageKey(q.GroupBy); !ok {
			return nil, because(op, domain.ErrUnknownGrouping(), nil)
		}
	}
	// The order of keys, and so of pages, is their bytes' on both
	// databases: SQLite compares text so, PostgreSQL in the "C" collation
	// (the id columns and model have it; outcome has the database's).
	sorted := key
	if s.dialect == Postgres {
		sorted = key + ` COLLATE "C"`
	}
	db := s.db.WithContext(ctx).Model(&usageRow{}).
		Select(key+" AS group_key, "+
			"CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, "+
			"CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, "+
			"CAST(COALESCE(SUM(total_tokens), 0) AS BIGINT) AS total_tokens, "+
			"COUNT(*) AS requests, "+
			"CAST(COALESCE(SUM(CASE WHEN estimated THEN total_tokens ELSE 0 END), 0) AS BIGINT) AS estimated_tokens, "+
			"CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS cached_tokens, "+
			"CAST(COALESCE(SUM(cache_write_tokens), 0) AS BIGINT) AS cache_write_tokens, "+
			"CAST(COALESCE(SUM(reasoning_tokens), 0) AS BIGINT) AS reasoning_tokens").
		Where("project_id = ?", q.ProjectID)
	if !q.From.IsZero() {
		db = db.Where("created_at >= ?", ts(q.From))
	}
	if !q.To.IsZero() {
		db = db.Where("created_at < ?", ts(q.To))
	}
	if q.GroupBy != "" {
		if q.After != nil {
			db = db.Where(sorted+" > ?", *q.After)
		}
		db = db.Group(key).Order(sorted)
		if q.Limit > 0 {
			db = db.Limit(q.Limit)
		}
	}
	var rows []usageTotalRow
	if err := db.Scan(&rows).Error; err != nil {
		return nil, fail(op, err)
	}
	out := make([]domain.UsageTotal, len(rows))
	for i, r := range rows {
		out[i] = domain.UsageTotal{
			Key: r.GroupKey,
			Usage: domain.Usage{
				PromptTokens: int(r.PromptTokens), CompletionTokens: int(r.CompletionTokens), TotalTokens: int(r.TotalTokens),
				CachedTokens: int(r.CachedTokens), CacheWriteTokens: int(r.CacheWriteTokens), ReasoningTokens: int(r.ReasoningTokens),
			},
			Requests: r.Requests, EstimatedTokens: r.EstimatedTokens,
		}
	}
	if q.Names {
		if err := s.nameGroups(ctx, q, out); err != nil {
			return nil, fail(op, err)
		}
	}
	return out, nil
}

// usageNamed are the tables whose rows' names usage groups can carry.
var usageNamed = map[domain.UsageGroupBy]string{
	domain.GroupByProvider: "ai_providers",
	domain.GroupByChat:     "chats",
}

// nameGroups sets the name of each total's provider or chat, that of
// q.ProjectID with the key as its id; one deleted since keeps none.
func (s *Store) nameGroups(ctx context.Context, q domain.UsageQuery, totals []domain.UsageTotal) error {
	table, ok := usageNamed[q.GroupBy]
	if !ok {
		return nil
	}
	index := make(map[string]int, len(totals))
	ids := make([]string, 0, len(totals))
	for i, t := range totals {
		if t.Key != "" {
			index[t.Key] = i
			ids = append(ids, t.Key)
		}
	}
	for part := range slices.Chunk(ids, 500) {
		var rows []struct{ ID, Name string }
		if err := s.db.WithContext(ctx).Table(table).Select("id, name").
			Where("project_id = ? AND id IN ?", q.ProjectID, part).Scan(&rows).Error; err != nil {
			return err
		}
		for _, r := range rows {
			totals[index[r.ID]].Name = r.Name
		}
	}
	return nil
}
