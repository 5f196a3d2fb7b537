package domain

import (
	"context"
	"sync"
	"time"
	"unsafe"
)

// ProviderModels lists the models a completion with AI provider id could
// name (GET /models, MCP list-models): those the provider offers, asked
// of the provider itself and kept for modelsTTL (see modelLists). It
// takes the permission a stateless completion takes, UseAIProvider, as
// it is for the clients that complete (an SDK's model list, an agent
// choosing a model).
func (s *Completions) ProviderModels(ctx context.Context, id string) ([]Model, error) {
	if id == "" {
		return nil, Invalidf("aiProviderId", "aiProviderId is required: the id of the AI provider whose models to list")
	}
	if err := checkRef("aiProviderId", PrefixProvider, id); err != nil {
		return nil, err
	}
	prov, err := lookup(ctx, PrefixProvider, "AI provider", id, s.deps.Store.GetProvider)
	if err != nil {
		return nil, err
	}
	if err := s.access.check(ctx, prov.ProjectID, PermUseProvider, "AI provider", id); err != nil {
		return nil, err
	}
	return s.models(ctx, prov)
}

// ChatModels lists the models of chat id's provider (GET
// /chats/{chatId}/models, MCP list-models), as ProviderModels does, with
// the permission a chat's completions take, CreateChatCompletion.
func (s *Completions) ChatModels(ctx context.Context, id string) ([]Model, error) {
	chat, err := lookup(ctx, PrefixChat, "chat", id, s.deps.Store.GetChat)
	if err != nil {
		return nil, err
	}
	if err := s.access.check(ctx, chat.ProjectID, PermCreateChatCompletion, "chat", id); err != nil {
		return nil, err
	}
	prov, err := s.deps.Store.GetProvider(ctx, chat.AIProviderID)
	if err != nil {
		return nil, Wrap("completions.ChatModels", err)
	}
	return s.models(ctx, prov)
}

// models lists prov's models, from modelLists when it has them. The call
// has the request timeout, as a completion's planning does.
func (s *Completions) models(ctx context.Context, prov *AIProvider) ([]Model, error) {
	endpoint, err := s.providers.endpoint(prov)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if models, ok := s.modelLists.get(prov, now); ok {
		return models, nil
	}
	// The call runs for every request that waits on it (see call), so no
	// one's leaving cancels it; the timeout ends it.
	models, err := s.modelLists.call(prov, func() ([]Model, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.deps.RequestTimeout)
		defer cancel()
		return s.deps.LLM.Models(ctx, endpoint)
	}, now)
	if err != nil {
		return nil, Wrap("completions.Models", err)
	}
	return models, nil
}

// modelsTTL is how long a provider's model list is kept. Clients ask for
// it often (a UI each time it shows its model picker; an SDK user at
// every start), each ask would be a call with the provider's key, which
// the provider rate limits with the completions, and a provider's models
// change in weeks, not minutes.
const modelsTTL = time.Minute

// maxModelLists and maxModelBytes bound the lists kept, in number and in
// the bytes of their models and names: past either, all are dropped.
// Those expired are dropped as they are met and once a TTL: a list may
// hold 10,000 models and 1 MiB of names, and any owner may make
// providers, so lists kept past their TTL until the number filled held
// gigabytes.
const (
	maxModelLists = 1024
	maxModelBytes = 64 << 20
)

// modelLists keeps the providers' model lists, each for modelsTTL and
// only while its provider is unchanged (a new key or baseUrl lists
// again), and makes one call for the requests that miss a list together.
// The zero value is empty and ready. Per instance: another one asks the
// provider once itself.
type modelLists struct {
	mu    sync.Mutex
	lists map[string]modelList
	bytes int                   // of the lists' models and names
	swept time.Time             // when put last dropped the expired lists
	calls map[string]*modelCall // by provider id and updatedAt
}

// modelCall is a call for a model list that requests wait on.
type modelCall struct {
	done   chan struct{}
	models []Model
	err    error
}

// call lists p's models with list, once for every request that asks
// meanwhile of p as it was (a UI's first page load, clients starting at
// once: each other call would spend the key's rate limit too), and keeps
// the list if it came.
func (c *modelLists) call(p *AIProvider, list func() ([]Model, error), now time.Time) ([]Model, error) {
	key := p.ID + " " + p.UpdatedAt.Format(time.RFC3339Nano)
	c.mu.Lock()
	if f, ok := c.calls[key]; ok {
		c.mu.Unlock()
		<-f.done
		return f.models, f.err
	}
	if c.calls == nil {
		c.calls = map[string]*modelCall{}
	}
	f := &modelCall{done: make(chan struct{}), err: Errorf(Internal, "the call for AI provider %s's model list failed", p.ID)}
	c.calls[key] = f
	c.mu.Unlock()
	defer func() { // also when list panics: the others must not wait for good
		c.mu.Lock()
		delete(c.calls, key)
		c.mu.Unlock()
		close(f.done)
	}()
	f.models, f.err = list()
	if f.err == nil {
		c.put(p, f.models, now)
	}
	return f.models, f.err
}

type modelList struct {
	updatedAt time.Time // the provider's when listed
	expires   time.Time
	models    []Model
	bytes     int // of the models and their names
}

func (c *modelLists) get(p *AIProvider, now time.Time) ([]Model, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.lists[p.ID]
	if !ok {
		return nil, false
	}
	if !l.updatedAt.Equal(p.UpdatedAt) || !now.Before(l.expires) {
		c.drop(p.ID)
		return nil, false
	}
	return l.models, true
}

func (c *modelLists) put(p *AIProvider, models []Model, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lists == nil {
		c.lists = map[string]modelList{}
	}
	c.drop(p.ID)
	if now.Sub(c.swept) >= modelsTTL {
		c.swept = now
		for id, l := range c.lists {
			if !now.Before(l.expires) {
				c.drop(id)
			}
		}
	}
	n := len(models) * int(unsafe.Sizeof(Model{})) // 10,000 short names are mostly their Models
	for _, m := range models {
		n += len(m.ID) + len(m.OwnedBy)
	}
	if len(c.lists) >= maxModelLists || c.bytes+n > maxModelBytes {
		clear(c.lists)
		c.bytes = 0
	}
	c.lists[p.ID] = modelList{updatedAt: p.UpdatedAt, expires: now.Add(modelsTTL), models: models, bytes: n}
	c.bytes += n
}

// drop forgets the list of the provider id, if one is kept.
func (c *modelLists) drop(id string) {
	if l, ok := c.lists[id]; ok {
		c.bytes -= l.bytes
		delete(c.lists, id)
	}
}
