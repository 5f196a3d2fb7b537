package domain

import (
	"context"
	"time"
)

// Chat is a stored completion configuration: provider, default system
// message and model, so callers only send messages.
type Chat struct {
	ID            string
	ProjectID     string
	AIProviderID  string
	Name          string
	SystemMessage string
	Model         string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// ChatFilter selects chats to list.
type ChatFilter struct {
	ProjectID    string
	MemberUserID string
	Page         Page
}

// ChatStore keeps chats.
type ChatStore interface {
	CreateChat(ctx context.Context, c *Chat) error
	// GetChat returns NotFound when id does not exist.
	GetChat(ctx context.Context, id string) (*Chat, error)
	ListChats(ctx context.Context, f ChatFilter) ([]Chat, error)
	// UpdateChat saves every field of c; NotFound when absent.
	UpdateChat(ctx context.Context, c *Chat) error
	// DeleteChat deletes the chat and its conversations; NotFound when absent.
	DeleteChat(ctx context.Context, id string) error
}
