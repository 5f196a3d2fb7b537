package storecache_test

import (
	"context"
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
