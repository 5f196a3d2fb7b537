// Package storecache keeps the reads on every completion's path — the
// caller's API key, its role in the project, the chat and the provider —
// in memory for a short time. Writes through the cache invalidate at once;
// writes by other instances are seen when the entry expires, at most the
// TTL after the write (an entry's age counts from the read that made it
// began), so a revoked key or a removed member keeps working on another
// replica for at most the TTL.
package storecache

import (
	"context"
	"sync"
	"time"

	"github.com/parleyhq/parley/domain"
)

// Store wraps a domain.Store with the cache.
type Store struct {
	domain.Store
	ttl time.Duration

	keys      ttlMap[string, keyEntry] // key hash → key and user
	members   ttlMap[memberID, domain.Member]
	chats     ttlMap[string, domain.Chat]
	providers ttlMap[string, domain.AIProvider]
}

var _ domain.Store = (*Store)(nil)

type keyEntry struct {
	key  domain.APIKey
	user domain.User
}

type memberID struct{ project, user string }

// New caches s's hot reads for ttl.
func New(s domain.Store, ttl time.Duration) *Store {
	return &Store{Store: s, ttl: ttl}
}

// GetAPIKeyByHash returns the cached key; misses are not cached.
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash []byte) (*domain.APIKey, *domain.User, error) {
	e, tk, ok := s.keys.get(string(hash), s.ttl, false)
	if ok {
		return &e.key, &e.user, nil
	}
	k, u, err := s.Store.GetAPIKeyByHash(ctx, hash)
	if err != nil {
		return nil, nil, err
	}
	s.keys.put(string(hash), keyEntry{key: *k, user: *u}, tk, s.ttl)
	return k, u, nil
}

// RevokeAPIKey revokes and forgets every cached key (revocations are rare).
func (s *Store) RevokeAPIKey(ctx context.Context, userID, keyID string, at time.Time) (*domain.APIKey, error) {
	defer s.keys.clear()
	return s.Store.RevokeAPIKey(ctx, userID, keyID, at)
}

// GetMember returns the cached membership; NotFound is not cached, so a
// new member is seen at once.
func (s *Store) GetMember(ctx context.Context, projectID, userID string) (*domain.Member, error) {
	id := memberID{projectID, userID}
	m, tk, ok := s.members.get(id, s.ttl, false)
	if ok {
		return &m, nil
	}
	got, err := s.Store.GetMember(ctx, projectID, userID)
	if err != nil {
		return nil, err
	}
	s.members.put(id, *got, tk, s.ttl)
	return got, nil
}

// PutMember, DeleteMember and the other writes below forget the entry
// they change, whether the write succeeds or fails: an update refused as
// stale (domain.StaleUpdate), whose service then reads the row again,
// must read it from the database, not the stale copy cached here.
func (s *Store) PutMember(ctx context.Context, m *domain.Member) error {
	defer s.members.del(memberID{m.ProjectID, m.UserID})
	return s.Store.PutMember(ctx, m)
}

func (s *Store) DeleteMember(ctx context.Context, projectID, userID string) error {
	defer s.members.del(memberID{projectID, userID})
	return s.Store.DeleteMember(ctx, projectID, userID)
}

// DeleteProject forgets everything cached: the project's members, chats
// and providers go with it.
func (s *Store) DeleteProject(ctx context.Context, id string) error {
	defer func() {
		s.members.clear()
		s.chats.clear()
		s.providers.clear()
	}()
	return s.Store.DeleteProject(ctx, id)
}

// GetChat returns the cached chat, read within the TTL, unless ctx asks
// for fresh reads (domain.WithFreshReads); NotFound is not cached.
func (s *Store) GetChat(ctx context.Context, id string) (*domain.Chat, error) {
	c, tk, ok := s.chats.get(id, s.ttl, domain.FreshReads(ctx))
	if ok {
		return &c, nil
	}
	got, err := s.Store.GetChat(ctx, id)
	if err != nil {
		return nil, err
	}
	s.chats.put(id, *got, tk, s.ttl)
	return got, nil
}

func (s *Store) UpdateChat(ctx context.Context, c *domain.Chat, prev time.Time) error {
	defer s.chats.del(c.ID)
	return s.Store.UpdateChat(ctx, c, prev)
}

func (s *Store) DeleteChat(ctx context.Context, id string) error {
	defer s.chats.del(id)
	return s.Store.DeleteChat(ctx, id)
}

// GetProvider returns the cached provider, read within the TTL, unless
// ctx asks for fresh reads (domain.WithFreshReads); NotFound is not cached.
func (s *Store) GetProvider(ctx context.Context, id string) (*domain.AIProvider, error) {
	p, tk, ok := s.providers.get(id, s.ttl, domain.FreshReads(ctx))
	if ok {
		return &p, nil
	}
	got, err := s.Store.GetProvider(ctx, id)
	if err != nil {
		return nil, err
	}
	s.providers.put(id, *got, tk, s.ttl)
	return got, nil
}

func (s *Store) UpdateProvider(ctx context.Context, p *domain.AIProvider, prev time.Time) error {
	defer s.providers.del(p.ID)
	return s.Store.UpdateProvider(ctx, p, prev)
}

func (s *Store) DeleteProvider(ctx context.Context, id string) error {
	defer s.providers.del(id)
	return s.Store.DeleteProvider(ctx, id)
}

// ttlMap is a map whose entries expire. Values are copied in and out, so
// a caller that sets a field of what it got changes nothing here; the copy
// is shallow, so the bytes of a slice (a provider's APIKeyCiphertext) are
// shared and must not be written to (no caller does).
type ttlMap[K comparable, V any] struct {
	mu    sync.RWMutex
	m     map[K]ttlEntry[V]
	gen   uint64    // counts invalidations
	swept time.Time // when put last dropped the expired entries
}

type ttlEntry[V any] struct {
	v  V
	at time.Time // when the read that got v began
}

// maxEntries bounds each map; past it the map starts over. Entries older
// than the TTL are dropped once a TTL by put: kept, every chat ever read
// (its system message up to 4 MiB) would stay in memory until the map
// filled, which any user could make cost gigabytes.
const maxEntries = 100_000

// ticket is what get hands the caller of a miss for put: the generation
// and the time at which the read began.
type ticket struct {
	gen uint64
	at  time.Time
}

// get returns an entry within its TTL, or on a miss (and always when the
// caller wants the database's row: refresh) what to hand to put.
func (t *ttlMap[K, V]) get(k K, ttl time.Duration, refresh bool) (V, ticket, bool) {
	now := time.Now()
	t.mu.RLock()
	e, ok := t.m[k]
	gen := t.gen
	t.mu.RUnlock()
	if refresh || !ok || now.Sub(e.at) > ttl {
		var zero V
		return zero, ticket{gen: gen, at: now}, false
	}
	return e.v, ticket{}, true
}

// put stores v read from the database after the miss tk, unless an
// invalidation happened since the read began: the value may predate that
// write. The entry's age counts from the read's beginning, not its end, so
// that a slow read's value is not kept for longer than the TTL after a
// write another instance made while it ran.
func (t *ttlMap[K, V]) put(k K, v V, tk ticket, ttl time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tk.gen != t.gen {
		return
	}
	if now := time.Now(); now.Sub(t.swept) > ttl {
		t.swept = now
		for k, e := range t.m {
			if now.Sub(e.at) > ttl {
				delete(t.m, k)
			}
		}
	}
	if t.m == nil || len(t.m) >= maxEntries {
		t.m = map[K]ttlEntry[V]{}
	}
	t.m[k] = ttlEntry[V]{v: v, at: tk.at}
}

func (t *ttlMap[K, V]) del(k K) {
	t.mu.Lock()
	delete(t.m, k)
	t.gen++
	t.mu.Unlock()
}

func (t *ttlMap[K, V]) clear() {
	t.mu.Lock()
	t.m = nil
	t.gen++
	t.mu.Unlock()
}
