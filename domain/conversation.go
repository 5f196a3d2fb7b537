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
	// MessageCount and Preview tell a conversation in a list from the
	// others: how many messages it holds, and the start of its first user
	// message of its own text, not a document's (at most PreviewChars
	// characters; "" when it has none). Set by lists and by Get.
	MessageCount int
	Preview      string
}

// PreviewChars is the most characters of a conversation's Preview.
const PreviewChars = 100

// FitsOnePage says whether c's messages hold no more text as JSON than
// one page of a list does (maxPageBytes): MCP's get-conversation, whose
// agents cannot take a conversation's whole 32 MiB (mcp-go's clients
// refuse a message that large, and an agent's context is smaller still),
// sends one that does not through list-messages instead.
func (c *Conversation) FitsOnePage() bool {
	n := 0
	for _, m := range c.Messages {
		if n += messageJSONBytes(m); n > maxPageBytes {
			return false
		}
	}
	return true
}

// messageJSONBytes is what m counts toward a page (maxPageBytes): its
// text as JSON, and messageOverhead for the rest.
func messageJSONBytes(m Message) int {
	n := messageOverhead + jsonBytes(m.Content) + jsonBytes(m.Refusal)
	for _, c := range m.ToolCalls {
		n += jsonBytes(c.Name) + jsonBytes(c.Arguments) + jsonBytes(string(c.ExtraContent))
	}
	return n
}

// MaxPageMiB is maxPageBytes in MiB, for messages.
const MaxPageMiB = maxPageBytes >> 20

// summarize sets c's MessageCount and Preview from its Messages.
func (c *Conversation) summarize() {
	c.MessageCount, c.Preview = len(c.Messages), ""
	for _, m := range c.Messages {
		if m.Role == RoleUser && m.DocumentID == "" {
			c.Preview = Preview(m.Content)
			return
		}
	}
}

// Preview is the start of text a conversation's Preview shows: its first
// PreviewChars characters.
func Preview(text string) string {
	n := 0
	for i := range text {
		if n == PreviewChars {
			return text[:i]
		}
		n++
	}
	return text
}

// MessageRole is the author of a message.
type MessageRole string

const (
	RoleSystem    MessageRole = "system"
	RoleUser      MessageRole = "user"
	RoleAssistant MessageRole = "assistant"
	RoleTool      MessageRole = "tool" // a tool's result, answering a tool call
)

// Message is one stored message of a conversation.
type Message struct {
	ID             string
	ConversationID string
	Seq            int // position in the conversation, from 0
	Role           MessageRole
	Content        string // resolved content (a document's content when DocumentID is set)
	Refusal        string // assistant messages: why the model declined, in place of content (see LLMResult)
	DocumentID     string
	ToolCalls      []ToolCall // assistant messages: the tools the model called
	ToolCallID     string     // tool messages: the call this is the result of
	Model          string     // assistant messages: the model that answered
	FinishReason   string
	Usage          Usage // assistant messages
	CreatedAt      time.Time
	// RequestKey and RequestHash are set on the reply to a per-chat
	// completion sent with an idempotency key: the key, scoped to the chat
	// (see planReplay), and the digest of the request (see requestHash).
	// They are not shown.
	RequestKey  string
	RequestHash string
}

// IsReply says whether m is a model's reply that a completion stored, which
// has its model, finish reason and usage, rather than an assistant message
// the caller sent in a turn's messages (a few-shot example, a prefill, a
// document), which has none of them.
func (m *Message) IsReply() bool {
	return m.Role == RoleAssistant && (m.Model != "" || m.FinishReason != "")
}

// ConversationFilter selects conversations to list.
type ConversationFilter struct {
	ChatID       string
	ProjectID    string // when ChatID is ""
	MemberUserID string
	Page         Page
}

// ConversationStore keeps conversations and their messages.
type ConversationStore interface {
	// GetConversation returns NotFound when id does not exist. Messages are not loaded.
	GetConversation(ctx context.Context, id string) (*Conversation, error)
	// ListMessages returns every message of the conversation in order.
	ListMessages(ctx context.Context, conversationID string) ([]Message, error)
	// ListMessagesAfter returns up to limit messages of the conversation
	// whose seq is greater than afterSeq, in order, or with desc, less than
	// afterSeq, newest first; afterSeq -1 is from the first (or last).
	ListMessagesAfter(ctx context.Context, conversationID string, afterSeq, limit int, desc bool) ([]Message, error)
	// ListConversations returns up to f.Page.Limit+1 conversations in id
	// order, without their messages but with MessageCount and Preview.
	ListConversations(ctx context.Context, f ConversationFilter) ([]Conversation, error)
	// AppendTurn stores msgs at the end of c in one transaction, creating c
	// when create is true and bumping its updatedAt otherwise. Messages'
	// Seq values are assigned by the caller. NotFound when c is to be
	// continued but does not exist; Conflict when another turn took the
	// same Seq values first (storeTurn tells the caller so); NotFound or
	// Invalid when a new conversation's project or chat does not exist.
	AppendTurn(ctx context.Context, c *Conversation, create bool, msgs []Message) error
	// GetReplyByRequestKey returns the reply stored with
	// Message.RequestKey key; NotFound when there is none.
	GetReplyByRequestKey(ctx context.Context, key string) (*Message, error)
	// DeleteConversation deletes it and its messages; NotFound when absent.
	DeleteConversation(ctx context.Context, id string) error
}

// Conversations reads and deletes stored conversations. Completions
// create and continue them.
type Conversations struct {
	store  Store
	access access
	// completions knows the conversations that first turns on this
	// instance are starting, which Delete must not answer as absent.
	completions *Completions
}

// Get returns a conversation with its messages.
func (s *Conversations) Get(ctx context.Context, id string) (*Conversation, error) {
	c, err := s.get(ctx, id, PermGetConversation)
	if err != nil {
		return nil, err
	}
	if c.Messages, err = s.store.ListMessages(ctx, id); err != nil {
		return nil, Wrap("conversations.Get", err)
	}
	c.summarize()
	return c, nil
}

// MessageListInput selects a page of a conversation's messages.
type MessageListInput struct {
	ConversationID string
	Page           Page
}

// Messages returns a page of a conversation's messages in order, for
// conversations too long to read whole (Get).
func (s *Conversations) Messages(ctx context.Context, in MessageListInput) (List[Message], error) {
	if _, err := s.get(ctx, in.ConversationID, PermGetConversation); err != nil {
		return List[Message]{}, err
	}
	page, after, err := in.Page.normalizeSeq(in.ConversationID)
	if err != nil {
		return List[Message]{}, err
	}
	items, page, err := readPage(page, messageJSONBytes,
		func(last *Message, n int) ([]Message, error) {
			if last != nil {
				after = last.Seq
			}
			return s.store.ListMessagesAfter(ctx, in.ConversationID, after, n, page.Desc)
		})
	if err != nil {
		return List[Message]{}, Wrap("conversations.Messages", err)
	}
	return paginate(items, page, seqCursorOf), nil
}

func (s *Conversations) get(ctx context.Context, id string, perm Permission) (*Conversation, error) {
	c, err := lookup(ctx, PrefixConversation, "conversation", id, s.store.GetConversation)
	if err != nil {
		return nil, err
	}
	if err := s.access.check(ctx, c.ProjectID, perm, "conversation", id); err != nil {
		return nil, err
	}
	return c, nil
}

// ConversationListInput selects conversations; ChatID "" lists those of
// every project the caller can see.
type ConversationListInput struct {
	ChatID    string
	ProjectID string // one of ChatID and ProjectID, or neither: every project the caller can see
	Page      Page
}

// List returns conversations without their messages.
func (s *Conversations) List(ctx context.Context, in ConversationListInput) (List[Conversation], error) {
	p, err := principal(ctx)
	if err != nil {
		return List[Conversation]{}, err
	}
	member := visibleTo(p)
	if in.ChatID != "" && in.ProjectID != "" {
		return List[Conversation]{}, Invalidf("projectId", "send chatId or projectId, not both: a chat's conversations are its project's")
	}
	if in.ProjectID != "" {
		if member, err = s.access.listScope(ctx, in.ProjectID, PermListConversations); err != nil {
			return List[Conversation]{}, err
		}
	}
	if in.ChatID != "" {
		chat, err := lookup(ctx, PrefixChat, "chat", in.ChatID, s.store.GetChat)
		if err != nil {
			return List[Conversation]{}, err
		}
		if err := s.access.check(ctx, chat.ProjectID, PermListConversations, "chat", in.ChatID); err != nil {
			return List[Conversation]{}, err
		}
		member = ""
	}
	scope := in.ChatID + in.ProjectID // the one filter sent, if any
	page, err := in.Page.normalizeIn(PrefixConversation, scope)
	if err != nil {
		return List[Conversation]{}, err
	}
	items, err := s.store.ListConversations(ctx, ConversationFilter{ChatID: in.ChatID, ProjectID: in.ProjectID, MemberUserID: member, Page: page})
	if err != nil {
		return List[Conversation]{}, Wrap("conversations.List", err)
	}
	return paginate(items, page, cursorIn(scope, func(c Conversation) string { return c.ID })), nil
}

// Delete removes a conversation and its messages (editor). The
// conversation a first turn is starting on this instance, which a stream
// names before the turn is stored, is a Conflict while its reply is
// generated, and is deleted once stored when the turn is being stored: a
// NotFound would let the turn store it after the client was told it is
// gone.
func (s *Conversations) Delete(ctx context.Context, id string) error {
	_, err := s.get(ctx, id, PermDeleteConversation)
	if KindOf(err) == NotFound {
		err = s.started(ctx, id, err)
	}
	if err != nil {
		return err
	}
	if err := s.store.DeleteConversation(ctx, id); err != nil {
		return Wrap("conversations.Delete", err)
	}
	s.completions.abandon(func(c *continuation) bool { return c.id == id }, "conversation", id)
	return nil
}

// started answers a Delete of conversation id that the store does not
// hold (notFound says so): Conflict while a first turn on this instance
// generates its reply; once a turn being stored is, nil when it stored
// the conversation; notFound (or the caller's Forbidden) otherwise.
func (s *Conversations) started(ctx context.Context, id string, notFound error) error {
	c := s.completions.startingClaim(id)
	if c == nil {
		// A first turn may have stored it, and released its claim,
		// since the lookup.
		_, err := s.get(ctx, id, PermDeleteConversation)
		return err
	}
	if err := s.access.check(ctx, c.project, PermDeleteConversation, "conversation", id); err != nil {
		if KindOf(err) == NotFound {
			return notFound // as for one that does not exist: no existence oracle
		}
		return err
	}
	if !c.storing.Load() {
		return Errorf(Conflict, "conversation %s cannot be deleted yet: its first reply is still being generated; retry when it ends", id)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return Errorf(Unavailable, "conversation %s is still being stored by its first turn; send this request again", id)
	}
	_, err := s.get(ctx, id, PermDeleteConversation)
	return err
}
