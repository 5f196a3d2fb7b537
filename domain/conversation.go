package domain

import (
	"context"
	"time"
)

// Conversation is the stored history of per-chat completions.
type Conversation struct {
	ID        string
	ProjectID string
	ChatID    string
	CreatedAt time.Time
	UpdatedAt time.Time
	Messages  []Message // filled by GetConversation's callers that ask for them
}

// MessageRole is the author of a message.
type MessageRole string

const (
	RoleSystem    MessageRole = "system"
	RoleUser      MessageRole = "user"
	RoleAssistant MessageRole = "assistant"
)

// Message is one stored message of a conversation.
type Message struct {
	ID             string
	ConversationID string
	Seq            int // position in the conversation, from 0
	Role           MessageRole
	Content        string // resolved content (a document's content when DocumentID is set)
	DocumentID     string
	Model          string // assistant messages: the model that answered
	FinishReason   string
	Usage          Usage // assistant messages
	CreatedAt      time.Time
}

// ConversationFilter selects conversations to list.
type ConversationFilter struct {
	ChatID       string
	MemberUserID string
	Page         Page
}

// ConversationStore keeps conversations and their messages.
type ConversationStore interface {
	// GetConversation returns NotFound when id does not exist. Messages are not loaded.
	GetConversation(ctx context.Context, id string) (*Conversation, error)
	// ListMessages returns every message of the conversation in order.
	ListMessages(ctx context.Context, conversationID string) ([]Message, error)
	ListConversations(ctx context.Context, f ConversationFilter) ([]Conversation, error)
	// AppendTurn stores msgs at the end of c in one transaction, creating c
	// when create is true and bumping its updatedAt otherwise. Messages'
	// Seq values are assigned by the caller.
	AppendTurn(ctx context.Context, c *Conversation, create bool, msgs []Message) error
	// DeleteConversation deletes it and its messages; NotFound when absent.
	DeleteConversation(ctx context.Context, id string) error
}
