package store

import (
	"context"
	"errors"

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
	out := make([]domain.Message, len(rows))
	for i := range rows {
		out[i] = toDomainMessage(&rows[i])
	}
	return out, nil
}

// ListConversations returns up to f.Page.Limit+1 conversations ordered by
// id, of f.ChatID and of the projects f.MemberUserID is a member of when set.
func (s *Store) ListConversations(ctx context.Context, f domain.ConversationFilter) ([]domain.Conversation, error) {
	var rows []conversationRow
	q := scoped(s.db.WithContext(ctx), "project_id", "", f.MemberUserID)
	if f.ChatID != "" {
		q = q.Where("chat_id = ?", f.ChatID)
	}
	if err := paged(q, "id", f.Page).Find(&rows).Error; err != nil {
		return nil, fail("store.ListConversations", err)
	}
	out := make([]domain.Conversation, len(rows))
	for i := range rows {
		out[i] = *toDomainConversation(&rows[i])
	}
	return out, nil
}

// errNoConversation is returned inside AppendTurn's transaction when the
// conversation to continue is gone.
var errNoConversation = errors.New("conversation does not exist")

// AppendTurn stores msgs at the end of c in one transaction, creating c
// when create is true and setting its updatedAt to c.UpdatedAt otherwise.
// NotFound when c is to be continued but does not exist; Conflict when
// another turn took the same Seq values first (retry); NotFound or Invalid
// when a new conversation's project or chat does not exist.
func (s *Store) AppendTurn(ctx context.Context, c *domain.Conversation, create bool, msgs []domain.Message) error {
	const op = "store.AppendTurn"
	conv := fromDomainConversation(c)
	rows := make([]messageRow, len(msgs))
	for i := range msgs {
		rows[i] = fromDomainMessage(&msgs[i])
		rows[i].ConversationID = c.ID
	}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if create {
			if err := tx.Create(&conv).Error; err != nil {
				return err
			}
		} else {
			res := tx.Model(&conversationRow{}).Where("id = ?", c.ID).Update("updated_at", conv.UpdatedAt)
			if res.Error != nil {
				return res.Error
			}
			if res.RowsAffected == 0 {
				return errNoConversation
			}
		}
		if len(rows) == 0 {
			return nil
		}
		return tx.Create(&rows).Error
	})
	switch {
	case err == nil:
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
	c.UpdatedAt = conv.UpdatedAt
	if create {
		c.CreatedAt = conv.CreatedAt
	}
	for i := range msgs {
		msgs[i].ConversationID, msgs[i].CreatedAt = c.ID, rows[i].CreatedAt
	}
	return nil
}

// DeleteConversation deletes it and its messages; NotFound when absent.
func (s *Store) DeleteConversation(ctx context.Context, id string) error {
	res := s.db.WithContext(ctx).Where("id = ?", id).Delete(&conversationRow{})
	return rowsOrNotFound("store.DeleteConversation", res, "conversation", id)
}
