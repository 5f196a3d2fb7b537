package store

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/parleyhq/parley/domain"
)

// CreateChat inserts c; Conflict when its id exists, NotFound when its
// project does not, Invalid when its AI provider does not.
func (s *Store) CreateChat(ctx context.Context, c *domain.Chat) error {
	const op = "store.CreateChat"
	row := fromDomainChat(c)
	if err := s.db.WithContext(ctx).Create(&row).Error; err != nil {
		return translate(op, err,
			func() error { return conflictf(op, err, "chat %s already exists", c.ID) },
			func() error {
				return s.brokenRef(ctx, op, err,
					ref{"projectId", "project", "projects", c.ProjectID},
					ref{"aiProviderId", "AI provider", "ai_providers", c.AIProviderID})
			})
	}
	c.CreatedAt, c.UpdatedAt = row.CreatedAt, row.UpdatedAt
	return nil
}

// GetChat returns NotFound when id does not exist.
func (s *Store) GetChat(ctx context.Context, id string) (*domain.Chat, error) {
	const op = "store.GetChat"
	var row chatRow
	if err := s.db.WithContext(ctx).Take(&row, "id = ?", id).Error; err != nil {
		if notFound(err) {
			return nil, because(op, domain.NotFoundf("chat", id), nil)
		}
		return nil, fail(op, err)
	}
	return toDomainChat(&row), nil
}

// ListChats returns up to f.Page.Limit+1 chats ordered by id, of
// f.ProjectID and of the projects f.MemberUserID is a member of when set.
func (s *Store) ListChats(ctx context.Context, f domain.ChatFilter) ([]domain.Chat, error) {
	var rows []chatRow
	q := func() *gorm.DB { return s.db.WithContext(ctx).Model(&chatRow{}) }
	if err := s.list(ctx, q, f.ProjectID, f.MemberUserID, f.Page, &rows); err != nil {
		return nil, fail("store.ListChats", err)
	}
	out := make([]domain.Chat, len(rows))
	for i := range rows {
		out[i] = *toDomainChat(&rows[i])
	}
	return out, nil
}

// UpdateChat saves every field of c but its project and createdAt;
// NotFound when absent, Invalid when its new AI provider does not exist.
func (s *Store) UpdateChat(ctx context.Context, c *domain.Chat, prev time.Time) error {
	const op = "store.UpdateChat"
	row := fromDomainChat(c)
	res := onlyIfUnchanged(s.db.WithContext(ctx).Model(&chatRow{}).Where("id = ?", c.ID), prev).
		Select("ai_provider_id", "name", "system_message", "model", "updated_at").Updates(&row)
	if res.Error != nil {
		return translate(op, res.Error, nil, func() error {
			return s.brokenRef(ctx, op, res.Error, ref{"aiProviderId", "AI provider", "ai_providers", c.AIProviderID})
		})
	}
	if err := s.rowsOrStale(ctx, op, res, prev, "chats", "chat", c.ID); err != nil {
		return err
	}
	c.UpdatedAt = row.UpdatedAt
	return nil
}

// DeleteChat deletes the chat and its conversations and their messages
// (the foreign keys cascade); NotFound when absent. Usage records stay.
func (s *Store) DeleteChat(ctx context.Context, id string) error {
	return s.deleteWhole(ctx, "chat:"+id, func(ctx context.Context) error {
		if err := s.deleteChatConversations(ctx, id); err != nil {
			return fail("store.DeleteChat", err)
		}
		return s.deleteRow(ctx, "store.DeleteChat", "chats", "chat", id)
	})
}
