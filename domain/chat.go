package domain

import (
	"context"
	"strings"
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
	// CreateChat inserts c; Conflict when its id exists, NotFound when its
	// project does not, Invalid when its AI provider does not.
	CreateChat(ctx context.Context, c *Chat) error
	// GetChat returns NotFound when id does not exist.
	GetChat(ctx context.Context, id string) (*Chat, error)
	// ListChats returns up to f.Page.Limit+1 chats ordered by id, of
	// f.ProjectID and of the projects f.MemberUserID is a member of when set.
	ListChats(ctx context.Context, f ChatFilter) ([]Chat, error)
	// UpdateChat saves every field of c, provided the stored chat's
	// updatedAt is still prev (a zero prev: whatever it is); NotFound when
	// absent, StaleUpdate when another write came first.
	UpdateChat(ctx context.Context, c *Chat, prev time.Time) error
	// DeleteChat deletes the chat and its conversations; NotFound when absent.
	DeleteChat(ctx context.Context, id string) error
}

// Chats manages chats.
type Chats struct {
	store       Store
	access      access
	now         func() time.Time
	completions *Completions // to end the deleted chat's running completions
}

// ChatCreate is the input of Chats.Create.
type ChatCreate struct {
	ProjectID     string
	AIProviderID  string
	Name          string
	SystemMessage string
	Model         string
}

// ChatUpdate changes the fields that are not nil.
type ChatUpdate struct {
	AIProviderID  *string
	Name          *string
	SystemMessage *string
	Model         *string
}

// validate checks c, created or, from before, updated (before is nil on
// create).
func (s *Chats) validate(ctx context.Context, c, before *Chat) error {
	var was *string
	if before != nil {
		was = &before.Name
	}
	if err := checkUpdatedName("name", c.Name, false, was); err != nil {
		return err
	}
	if err := checkText("systemMessage", c.SystemMessage, false, maxTextLen); err != nil {
		return err
	}
	if err := checkModel("model", c.Model, false); err != nil {
		return err
	}
	if err := checkRef("aiProviderId", PrefixProvider, c.AIProviderID); err != nil {
		return err
	}
	p, err := lookup(ctx, PrefixProvider, "AI provider", c.AIProviderID, s.store.GetProvider)
	if KindOf(err) == NotFound || (err == nil && p.ProjectID != c.ProjectID) {
		return Invalidf("aiProviderId", "AI provider %s does not exist in project %s; a chat must use a provider of its own project", c.AIProviderID, c.ProjectID)
	}
	return err
}

// Create makes a chat in a project (editor).
func (s *Chats) Create(ctx context.Context, in ChatCreate) (*Chat, error) {
	if err := checkRef("projectId", PrefixProject, in.ProjectID); err != nil {
		return nil, err
	}
	if err := s.access.checkProject(ctx, in.ProjectID, PermCreateChat); err != nil {
		return nil, err
	}
	now := s.now()
	c := &Chat{ID: NewID(PrefixChat), ProjectID: in.ProjectID, AIProviderID: in.AIProviderID, Name: strings.TrimSpace(in.Name),
		SystemMessage: in.SystemMessage, Model: strings.TrimSpace(in.Model), CreatedAt: now, UpdatedAt: now}
	if err := s.validate(ctx, c, nil); err != nil {
		return nil, err
	}
	if err := s.store.CreateChat(ctx, c); err != nil {
		return nil, Wrap("chats.Create", err)
	}
	return c, nil
}

// get fetches a chat and checks perm on its project.
func (s *Chats) get(ctx context.Context, id string, perm Permission) (*Chat, error) {
	c, err := lookup(ctx, PrefixChat, "chat", id, s.store.GetChat)
	if err != nil {
		return nil, err
	}
	if err := s.access.check(ctx, c.ProjectID, perm, "chat", id); err != nil {
		return nil, err
	}
	return c, nil
}

// Get returns a chat the caller can see, as the database has it (see
// WithFreshReads).
func (s *Chats) Get(ctx context.Context, id string) (*Chat, error) {
	return s.get(WithFreshReads(ctx), id, PermGetChat)
}

// List returns chats of the projects the caller can see.
func (s *Chats) List(ctx context.Context, in ListInput) (List[Chat], error) {
	member, err := s.access.listScope(ctx, in.ProjectID, PermListChats)
	if err != nil {
		return List[Chat]{}, err
	}
	page, err := in.Page.normalizeIn(PrefixChat, in.ProjectID)
	if err != nil {
		return List[Chat]{}, err
	}
	items, page, err := readPage(page, func(c Chat) int { return jsonBytes(c.Name) + jsonBytes(c.SystemMessage) + jsonBytes(c.Model) },
		func(last *Chat, n int) ([]Chat, error) {
			// A store's page of Limit returns Limit+1 items; its Limit 0 is
			// the default one.
			f := ChatFilter{ProjectID: in.ProjectID, MemberUserID: member, Page: Page{Limit: max(n-1, 1), After: page.After, Desc: page.Desc}}
			if last != nil {
				f.Page.After = last.ID
			}
			return s.store.ListChats(ctx, f)
		})
	if err != nil {
		return List[Chat]{}, Wrap("chats.List", err)
	}
	return paginate(items, page, cursorIn(in.ProjectID, func(c Chat) string { return c.ID })), nil
}

// Update changes the fields of a chat that in sets (editor). When another
// write came first (a concurrent request, or another instance while this
// one's cached copy was older) the chat is read again and in applied to it
// (untilFresh).
func (s *Chats) Update(ctx context.Context, id string, in ChatUpdate) (*Chat, error) {
	return untilFresh(func() (*Chat, error) { return s.update(ctx, id, in) })
}

func (s *Chats) update(ctx context.Context, id string, in ChatUpdate) (*Chat, error) {
	c, err := s.get(ctx, id, PermUpdateChat)
	if err != nil {
		return nil, err
	}
	before := *c
	if in.AIProviderID != nil && *in.AIProviderID == "" {
		return nil, Invalidf("aiProviderId", "aiProviderId, when sent, must be the id of one of the project's AI providers (aip_...); "+
			"leave it out to keep the chat's")
	}
	if in.AIProviderID != nil {
		c.AIProviderID = *in.AIProviderID
	}
	if in.Name != nil {
		c.Name = strings.TrimSpace(*in.Name)
	}
	if in.SystemMessage != nil {
		c.SystemMessage = *in.SystemMessage
	}
	if in.Model != nil {
		c.Model = strings.TrimSpace(*in.Model)
	}
	if err := s.validate(ctx, c, &before); err != nil {
		return nil, err
	}
	if !unchanged(before, c) {
		c.UpdatedAt = s.now()
	}
	// Also when nothing changes: c may be a cached copy (storecache) older
	// than another instance's write, and this PATCH would then be dropped.
	// The same values with the same updatedAt change nothing, if c is
	// current; if not, the write is stale and untilFresh reads c again.
	if err := s.store.UpdateChat(ctx, c, before.UpdatedAt); err != nil {
		return nil, Wrap("chats.Update", err)
	}
	return c, nil
}

// Delete removes a chat and its conversations (editor).
func (s *Chats) Delete(ctx context.Context, id string) error {
	if _, err := s.get(ctx, id, PermDeleteChat); err != nil {
		return err
	}
	if err := s.store.DeleteChat(ctx, id); err != nil {
		return Wrap("chats.Delete", err)
	}
	s.completions.abandon(func(c *continuation) bool { return c.chatID == id }, "chat", id)
	return nil
}
