package store

import (
	"context"

	"gorm.io/gorm"

	"github.com/parleyhq/parley/domain"
)

// GetConversation returns NotFound when id does not exist. Messages are not loaded.
func (s *Store) GetConversation(ctx context.Context, id string) (*domain.Conversation, error) {
	const op = "store.GetConversation"
	var row conversationRow
	if err := s.db.WithContext(ctx).Take(&row, "id = ?", id).Error; err != nil {
		if notFound(err) {
			return nil, because(op, domain.NotFoundf("conversation", id), nil)
		}
		return nil, fail(op, err)
	}
	return toDomainConversation(&row), nil
}

// ListMessages returns every message of the conversation ordered by seq;
// none when it does not exist.
func (s *Store) ListMessages(ctx context.Context, conversationID string) ([]domain.Message, error) {
	var rows []messageRow
	if err := s.db.WithContext(ctx).Where("conversation_id = ?", conversationID).Order("seq").Find(&rows).Error; err != nil {
		return nil, fail("store.ListMessages", err)
	}
	return toDomainMessages(rows), nil
}

func toDomainMessages(rows []messageRow) []domain.Message {
	out := make([]domain.Message, len(rows))
	for i := range rows {
		out[i] = toDomainMessage(&rows[i])
	}
	return out
}

// GetReplyByRequestKey returns the reply stored with request key key (see
// domain.Message.RequestKey); NotFound when there is none.
func (s *Store) GetReplyByRequestKey(ctx context.Context, key string) (*domain.Message, error) {
	const op = "store.GetReplyByRequestKey"
	var row messageRow
	if err := s.db.WithContext(ctx).Take(&row, "request_key = ?", key).Error; err != nil {
		if notFound(err) {
			return nil, because(op, domain.NotFoundf("reply", key), nil)
		}
		return nil, fail(op, err)
	}
	m := toDomainMessage(&row)
	return &m, nil
}

// ListMessagesAfter returns up to limit messages of the conversation whose
// seq is greater than afterSeq, ordered by seq.
func (s *Store) ListMessagesAfter(ctx context.Context, conversationID string, afterSeq, limit int, desc bool) ([]domain.Message, error) {
	var rows []messageRow
	q := s.db.WithContext(ctx).Where("conversation_id = ?", conversationID)
	switch {
	case !desc:
		q = q.Where("seq > ?", afterSeq).Order("seq")
	case afterSeq >= 0:
		q = q.Where("seq < ?", afterSeq).Order("seq DESC")
	default:
		q = q.Order("seq DESC")
	}
	err := q.Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, fail("store.ListMessagesAfter", err)
	}
	return toDomainMessages(rows), nil
}

// ListConversations returns up to f.Page.Limit+1 conversations ordered by
// id, of f.ChatID or f.ProjectID, and of the projects f.MemberUserID is a
// member of, when set, each with its MessageCount and Preview.
func (s *Store) ListConversations(ctx context.Context, f domain.ConversationFilter) ([]domain.Conversation, error) {
	var rows []conversationRow
	var err error
	q := func() *gorm.DB { return s.db.WithContext(ctx).Model(&conversationRow{}) }
	inProjects := func(q *gorm.DB, projects any) *gorm.DB { return q.Where("project_id IN (?)", projects) }
	if s.dialect == SQLite {
		// Through their chats' (chat_id, id) index: SQLite keeps no
		// project_id index on conversations (00012), which every new
		// conversation would write. It reads the conversations after the
		// cursor of each of the projects' chats and sorts them: the
		// projects' rows, not other tenants'. INDEXED BY holds it there:
		// once SQLite has statistics (an operator's ANALYZE or PRAGMA
		// optimize) its planner prefers the primary key's id order, which
		// spares the sort but walks every tenant's conversations.
		q = func() *gorm.DB {
			return s.db.WithContext(ctx).Model(&conversationRow{}).Table("conversations INDEXED BY conversations_chat_id_idx")
		}
		inProjects = func(q *gorm.DB, projects any) *gorm.DB {
			return q.Where("chat_id IN (?)", s.db.Model(&chatRow{}).Select("id").Where("project_id IN (?)", projects))
		}
	}
	switch {
	case f.ChatID == "" && f.ProjectID != "":
		err = paged(inProjects(q(), []string{f.ProjectID}), "id", f.Page).Find(&rows).Error
	case f.ChatID == "" && f.MemberUserID != "":
		err = s.memberPage(ctx, q, inProjects, f.MemberUserID, f.Page, &rows)
	default:
		db := scoped(s.db.WithContext(ctx), "", f.MemberUserID)
		if f.ChatID != "" {
			db = db.Where("chat_id = ?", f.ChatID)
		}
		err = paged(db, "id", f.Page).Find(&rows).Error
	}
	if err != nil {
		return nil, fail("store.ListConversations", err)
	}
	out := make([]domain.Conversation, len(rows))
	for i := range rows {
		out[i] = *toDomainConversation(&rows[i])
	}
	if err := s.summarize(ctx, out); err != nil {
		return nil, fail("store.ListConversations", err)
	}
	return out, nil
}

// summarize sets the MessageCount and Preview of a page of conversations,
// in one query that reads, per conversation, its last message and its
// first user message of its own text in their (conversation_id, seq) key.
// A turn's messages take the seqs after the last one's, so the last seq
// counts them. substr counts characters on both databases, as
// domain.Preview does; SQLite reads the whole value for it, which is why
// a message that names a document (its text, up to 4 MiB) is passed over,
// and told by octet_length: SQLite reads a value's length from the row's
// header, where comparing document_id, stored after the content, would
// walk the content's pages to reach it.
func (s *Store) summarize(ctx context.Context, convs []domain.Conversation) error {
	if len(convs) == 0 {
		return nil
	}
	ids := make([]string, len(convs))
	for i := range convs {
		ids[i] = convs[i].ID
	}
	var rows []struct {
		ID      string
		LastSeq *int
		Preview *string
	}
	err := s.db.WithContext(ctx).Raw(`SELECT c.id AS id,
  (SELECT MAX(m.seq) FROM messages m WHERE m.conversation_id = c.id) AS last_seq,
  (SELECT substr(m.content, 1, ?) FROM messages m WHERE m.conversation_id = c.id AND m.role = 'user' AND octet_length(m.document_id) = 0 ORDER BY m.seq LIMIT 1) AS preview
FROM conversations c WHERE c.id IN ?`, domain.PreviewChars, ids).Scan(&rows).Error
	if err != nil {
		return err
	}
	byID := make(map[string]int, len(convs))
	for i := range convs {
		byID[convs[i].ID] = i
	}
	for _, r := range rows {
		c := &convs[byID[r.ID]]
		if r.LastSeq != nil {
			c.MessageCount = *r.LastSeq + 1
		}
		if r.Preview != nil {
			c.Preview = *r.Preview
		}
	}
	return nil
}

// DeleteConversation deletes it and its messages; NotFound when absent.
func (s *Store) DeleteConversation(ctx context.Context, id string) error {
	res := s.db.WithContext(ctx).Where("id = ?", id).Delete(&conversationRow{})
	return rowsOrNotFound("store.DeleteConversation", res, "conversation", id)
}
