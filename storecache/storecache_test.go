package storecache_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
	"github.com/parleyhq/parley/storecache"
)

// seed makes a user, a project with the user as owner, a provider and a chat.
func seed(t *testing.T, st *store.Store) (domain.User, domain.Project, domain.AIProvider, domain.Chat) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	u := domain.User{ID: domain.NewID(domain.PrefixUser), Name: "u", CreatedAt: now}
	p := domain.Project{ID: domain.NewID(domain.PrefixProject), Name: "p", CreatedAt: now, UpdatedAt: now}
	prov := domain.AIProvider{ID: domain.NewID(domain.PrefixProvider), ProjectID: p.ID, Name: "a", Type: domain.ProviderOpenAI, DefaultModel: "m", CreatedAt: now, UpdatedAt: now}
	c := domain.Chat{ID: domain.NewID(domain.PrefixChat), ProjectID: p.ID, AIProviderID: prov.ID, Name: "before", CreatedAt: now, UpdatedAt: now}
	for _, err := range []error{
		st.CreateUser(ctx, &u),
		st.CreateProject(ctx, &p, domain.Member{ProjectID: p.ID, UserID: u.ID, Role: domain.RoleOwner, CreatedAt: now, UpdatedAt: now}),
		st.CreateProvider(ctx, &prov),
		st.CreateChat(ctx, &c),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return u, p, prov, c
}

func TestCachedReadsAndInvalidation(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		u, p, _, c := seed(t, st)
		cs := storecache.New(st, time.Hour)

		if got, _ := cs.GetChat(ctx, c.ID); got.Name != "before" {
			t.Fatalf("GetChat = %+v", got)
		}
		// A write behind the cache's back (another instance) is not seen
		// until the entry expires...
		if err := st.DB().Exec("UPDATE chats SET name = 'elsewhere' WHERE id = ?", c.ID).Error; err != nil {
			t.Fatal(err)
		}
		if got, _ := cs.GetChat(ctx, c.ID); got.Name != "before" {
			t.Errorf("GetChat within the TTL = %q, want the cached value", got.Name)
		}
		// ...a write through the cache is seen at once.
		got, _ := cs.GetChat(ctx, c.ID)
		got.Name = "through"
		if err := cs.UpdateChat(ctx, got, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := cs.GetChat(ctx, c.ID); got.Name != "through" {
			t.Errorf("GetChat after UpdateChat = %q, want through", got.Name)
		}
		// Callers get copies: changing one changes nothing cached.
		got.Name = "mutated"
		if again, _ := cs.GetChat(ctx, c.ID); again.Name != "through" {
			t.Errorf("a caller's change leaked into the cache: %q", again.Name)
		}

		if m, err := cs.GetMember(ctx, p.ID, u.ID); err != nil || m.Role != domain.RoleOwner {
			t.Fatalf("GetMember = %+v, %v", m, err)
		}
		// Another owner, so that u may be demoted and removed.
		v := domain.User{ID: domain.NewID(domain.PrefixUser), Name: "v", CreatedAt: time.Now()}
		if err := st.CreateUser(ctx, &v); err != nil {
			t.Fatal(err)
		}
		if err := st.PutMember(ctx, &domain.Member{ProjectID: p.ID, UserID: v.ID, Role: domain.RoleOwner, CreatedAt: time.Now(), UpdatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := cs.PutMember(ctx, &domain.Member{ProjectID: p.ID, UserID: u.ID, Role: domain.RoleViewer, CreatedAt: time.Now(), UpdatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if m, _ := cs.GetMember(ctx, p.ID, u.ID); m.Role != domain.RoleViewer {
			t.Errorf("role after PutMember = %s, want viewer", m.Role)
		}
		if err := cs.DeleteMember(ctx, p.ID, u.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.GetMember(ctx, p.ID, u.ID); domain.KindOf(err) != domain.NotFound {
			t.Errorf("GetMember after DeleteMember: %v, want NotFound", err)
		}

		if err := cs.DeleteChat(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.GetChat(ctx, c.ID); domain.KindOf(err) != domain.NotFound {
			t.Errorf("GetChat after DeleteChat: %v, want NotFound", err)
		}
	})
}

func TestEntriesExpireAndRevocationIsImmediate(t *testing.T) {
	st := dbtest.SQLite(t)
	ctx := context.Background()
	u, _, prov, _ := seed(t, st)
	cs := storecache.New(st, 50*time.Millisecond)

	if _, err := cs.GetProvider(ctx, prov.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.DB().Exec("UPDATE ai_providers SET name = 'renamed' WHERE id = ?", prov.ID).Error; err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond)
	if got, _ := cs.GetProvider(ctx, prov.ID); got.Name != "renamed" {
		t.Errorf("GetProvider after the TTL = %q, want renamed", got.Name)
	}

	k := domain.APIKey{ID: domain.NewID(domain.PrefixKey), UserID: u.ID, Name: "k", Hash: domain.HashAPIKey("pk_x"), CreatedAt: time.Now()}
	if err := st.CreateAPIKey(ctx, &k); err != nil {
		t.Fatal(err)
	}
	if got, _, err := cs.GetAPIKeyByHash(ctx, k.Hash); err != nil || got.RevokedAt != nil {
		t.Fatalf("GetAPIKeyByHash = %+v, %v", got, err)
	}
	if _, err := cs.RevokeAPIKey(ctx, u.ID, k.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := cs.GetAPIKeyByHash(ctx, k.Hash); got.RevokedAt == nil {
		t.Error("a revoked key is still cached as valid")
	}
}

// TestExpiredKeyRefusedThoughCached: a key's expiry is checked at every
// authentication, not by the store, so a key cached as valid stops working
// at its expiry, not when its cache entry does.
func TestExpiredKeyRefusedThoughCached(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		u, _, _, _ := seed(t, st)
		now := time.Now().UTC().Truncate(time.Microsecond) // as stored
		exp := now.Add(time.Minute)
		secret := domain.NewAPIKeySecret()
		k := domain.APIKey{ID: domain.NewID(domain.PrefixKey), UserID: u.ID, Name: "k", Hash: domain.HashAPIKey(secret), CreatedAt: now, ExpiresAt: &exp}
		if err := st.CreateAPIKey(ctx, &k); err != nil {
			t.Fatal(err)
		}
		clock := now
		users := domain.NewServices(domain.Deps{Store: storecache.New(st, time.Hour), Now: func() time.Time { return clock }}).Users
		if _, err := users.Authenticate(ctx, secret); err != nil {
			t.Fatalf("Authenticate before the expiry: %v", err)
		}
		// Gone from the database, the key is now known only to the cache.
		if err := st.DB().Exec("DELETE FROM api_keys WHERE id = ?", k.ID).Error; err != nil {
			t.Fatal(err)
		}
		clock = exp.Add(-time.Nanosecond)
		if _, err := users.Authenticate(ctx, secret); err != nil {
			t.Fatalf("Authenticate just before the expiry, from the cache: %v", err)
		}
		clock = exp
		_, err := users.Authenticate(ctx, secret)
		if got, want := domain.KindOf(err), domain.Unauthenticated; got != want {
			t.Fatalf("Authenticate at the expiry: %v (kind %s), want %s", err, got, want)
		}
		if got, want := domain.MessageOf(err), "the API key is not valid, has expired or has been revoked"; got != want {
			t.Errorf("message %q, want %q", got, want)
		}
	})
}

// pausedStore is a store whose cached reads, once armed, stop after
// reading the database until resumed: a read that a write overtakes.
type pausedStore struct {
	domain.Store
	mu     sync.Mutex
	armed  bool
	read   chan struct{} // closed when the armed read has its value
	resume chan struct{} // closed to let it return
}

func (p *pausedStore) arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed, p.read, p.resume = true, make(chan struct{}), make(chan struct{})
}

func (p *pausedStore) pause() {
	p.mu.Lock()
	armed, read, resume := p.armed, p.read, p.resume
	p.armed = false
	p.mu.Unlock()
	if armed {
		close(read)
		<-resume
	}
}

func (p *pausedStore) GetAPIKeyByHash(ctx context.Context, hash []byte) (*domain.APIKey, *domain.User, error) {
	k, u, err := p.Store.GetAPIKeyByHash(ctx, hash)
	p.pause()
	return k, u, err
}

func (p *pausedStore) GetMember(ctx context.Context, projectID, userID string) (*domain.Member, error) {
	m, err := p.Store.GetMember(ctx, projectID, userID)
	p.pause()
	return m, err
}

func (p *pausedStore) GetChat(ctx context.Context, id string) (*domain.Chat, error) {
	c, err := p.Store.GetChat(ctx, id)
	p.pause()
	return c, err
}

func (p *pausedStore) GetProvider(ctx context.Context, id string) (*domain.AIProvider, error) {
	prov, err := p.Store.GetProvider(ctx, id)
	p.pause()
	return prov, err
}

// TestReadOvertakenByAWriteCachesNothing: a read that got its value from
// the database before a write through the cache, and returns after the
// write's invalidation, must not cache that value: the next read sees the
// write. Each write that invalidates is checked, those that forget one
// entry and those that forget all.
func TestReadOvertakenByAWriteCachesNothing(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		const gone = "not found"
		orGone := func(s string, err error) string {
			if domain.KindOf(err) == domain.NotFound {
				return gone
			}
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		for _, tc := range []struct {
			name  string
			read  func(cs *storecache.Store, w world) (string, error)
			write func(cs *storecache.Store, w world) error
			want  string // what the next read must see
		}{
			{"chat renamed", readChat, func(cs *storecache.Store, w world) error {
				c := w.chat
				c.Name = "after"
				return cs.UpdateChat(ctx, &c, c.UpdatedAt)
			}, "after"},
			{"chat deleted", readChat, func(cs *storecache.Store, w world) error { return cs.DeleteChat(ctx, w.chat.ID) }, gone},
			{"chat's project deleted", readChat, deleteProject, gone},
			{"provider renamed", readProvider, func(cs *storecache.Store, w world) error {
				p := w.spare
				p.Name = "after"
				return cs.UpdateProvider(ctx, &p, p.UpdatedAt)
			}, "after"},
			{"provider deleted", readProvider, func(cs *storecache.Store, w world) error { return cs.DeleteProvider(ctx, w.spare.ID) }, gone},
			{"provider's project deleted", readProvider, deleteProject, gone},
			{"member demoted", readMember, func(cs *storecache.Store, w world) error {
				return cs.PutMember(ctx, &domain.Member{ProjectID: w.project.ID, UserID: w.user.ID, Role: domain.RoleViewer, CreatedAt: time.Now(), UpdatedAt: time.Now()})
			}, string(domain.RoleViewer)},
			{"member removed", readMember, func(cs *storecache.Store, w world) error { return cs.DeleteMember(ctx, w.project.ID, w.user.ID) }, gone},
			{"member's project deleted", readMember, deleteProject, gone},
			{"key revoked", readKey, func(cs *storecache.Store, w world) error {
				_, err := cs.RevokeAPIKey(ctx, w.user.ID, w.key.ID, time.Now())
				return err
			}, "revoked"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				w := seedWorld(t, st)
				ps := &pausedStore{Store: st}
				cs := storecache.New(ps, time.Hour)
				before := orGone(tc.read(cs, w))

				// A read whose entry is gone (here: never made) gets the
				// value, and the write overtakes it before it returns.
				cs = storecache.New(ps, time.Hour)
				ps.arm()
				done := make(chan string, 1)
				go func() { done <- orGone(tc.read(cs, w)) }()
				<-ps.read
				if err := tc.write(cs, w); err != nil {
					t.Fatal(err)
				}
				close(ps.resume)
				if got := <-done; got != before {
					t.Fatalf("the overtaken read got %q, want %q (the value before the write)", got, before)
				}
				if got := orGone(tc.read(cs, w)); got != tc.want {
					t.Errorf("next read = %q, want %q: the overtaken read cached its value", got, tc.want)
				}
			})
		}
	})
}

// world is seed's, plus a second owner (so that the first may be demoted
// or removed), a provider no chat uses (so that it may be deleted) and a
// key of the user.
type world struct {
	user    domain.User
	project domain.Project
	chat    domain.Chat
	spare   domain.AIProvider
	key     domain.APIKey
}

func seedWorld(t *testing.T, st *store.Store) world {
	t.Helper()
	ctx := context.Background()
	u, p, _, c := seed(t, st)
	now := time.Now().UTC().Truncate(time.Millisecond)
	v := domain.User{ID: domain.NewID(domain.PrefixUser), Name: "v", CreatedAt: now}
	spare := domain.AIProvider{ID: domain.NewID(domain.PrefixProvider), ProjectID: p.ID, Name: "before", Type: domain.ProviderOpenAI, DefaultModel: "m", CreatedAt: now, UpdatedAt: now}
	k := domain.APIKey{ID: domain.NewID(domain.PrefixKey), UserID: u.ID, Name: "k", Hash: domain.HashAPIKey(domain.NewAPIKeySecret()), CreatedAt: now}
	for _, err := range []error{
		st.CreateUser(ctx, &v),
		st.PutMember(ctx, &domain.Member{ProjectID: p.ID, UserID: v.ID, Role: domain.RoleOwner, CreatedAt: now, UpdatedAt: now}),
		st.CreateProvider(ctx, &spare),
		st.CreateAPIKey(ctx, &k),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// As stored: the store may keep times less precisely than Go.
	got, err := st.GetChat(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	gotSpare, err := st.GetProvider(ctx, spare.ID)
	if err != nil {
		t.Fatal(err)
	}
	return world{user: u, project: p, chat: *got, spare: *gotSpare, key: k}
}

func readChat(cs *storecache.Store, w world) (string, error) {
	c, err := cs.GetChat(context.Background(), w.chat.ID)
	if err != nil {
		return "", err
	}
	return c.Name, nil
}

func readProvider(cs *storecache.Store, w world) (string, error) {
	p, err := cs.GetProvider(context.Background(), w.spare.ID)
	if err != nil {
		return "", err
	}
	return p.Name, nil
}

func readMember(cs *storecache.Store, w world) (string, error) {
	m, err := cs.GetMember(context.Background(), w.project.ID, w.user.ID)
	if err != nil {
		return "", err
	}
	return string(m.Role), nil
}

func readKey(cs *storecache.Store, w world) (string, error) {
	k, _, err := cs.GetAPIKeyByHash(context.Background(), w.key.Hash)
	if err != nil {
		return "", err
	}
	if k.RevokedAt != nil {
		return "revoked", nil
	}
	return "valid", nil
}

func deleteProject(cs *storecache.Store, w world) error {
	return cs.DeleteProject(context.Background(), w.project.ID)
}

// TestEntryAgeCountsFromTheRead: an entry expires TTL after the read that
// made it began, not after that read returned. A read that took longer
// than the TTL (a slow database) holds a value that another instance may
// have changed just after it was read: kept for a TTL from its return, it
// would be served longer than the TTL after that write.
func TestEntryAgeCountsFromTheRead(t *testing.T) {
	st := dbtest.SQLite(t)
	ctx := context.Background()
	w := seedWorld(t, st)
	const ttl = 50 * time.Millisecond
	ps := &pausedStore{Store: st}
	cs := storecache.New(ps, ttl)

	ps.arm()
	done := make(chan string, 1)
	go func() {
		c, err := cs.GetChat(ctx, w.chat.ID)
		if err != nil {
			t.Error(err)
		}
		done <- c.Name
	}()
	<-ps.read
	// Another instance renames the chat just after the read, which then
	// takes longer than the TTL to return.
	if err := st.DB().Exec("UPDATE chats SET name = 'elsewhere' WHERE id = ?", w.chat.ID).Error; err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * ttl)
	close(ps.resume)
	if got := <-done; got != "before" {
		t.Fatalf("the slow read got %q, want before", got)
	}
	if got, _ := cs.GetChat(ctx, w.chat.ID); got.Name != "elsewhere" {
		t.Errorf("GetChat %v after the rename = %q, want elsewhere: the slow read's value outlived the TTL", 2*ttl, got.Name)
	}
}
