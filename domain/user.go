package domain

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"
)

// User is a person or agent that holds API keys.
type User struct {
	ID        string
	Name      string
	IsAdmin   bool
	CreatedAt time.Time
}

// APIKey is a bearer credential of a user. Only a hash of the key is kept.
type APIKey struct {
	ID        string
	UserID    string
	Name      string
	Hash      []byte // SHA-256 of the secret key
	Hint      string // the key's first characters, e.g. "pk_3f9a"
	CreatedAt time.Time
	RevokedAt *time.Time
	ExpiresAt *time.Time // nil: the key does not expire
}

// UserStore keeps users and their API keys.
type UserStore interface {
	// CreateUser inserts u.
	CreateUser(ctx context.Context, u *User) error
	// GetUser returns NotFound when id does not exist.
	GetUser(ctx context.Context, id string) (*User, error)
	// ListUsers returns up to p.Limit+1 users with ids after p.After.
	ListUsers(ctx context.Context, p Page) ([]User, error)
	// CountUsers returns how many users exist.
	CountUsers(ctx context.Context) (int64, error)
	// CreateAPIKey inserts k; Conflict when its hash already exists.
	CreateAPIKey(ctx context.Context, k *APIKey) error
	// CreateAdmin inserts the user u and its key k together, or neither.
	// With onlyFirst it inserts them only while no user exists, and
	// reports whether it did: starts racing on an empty database create
	// one first admin between them. Conflict when k's hash already exists.
	CreateAdmin(ctx context.Context, u *User, k *APIKey, onlyFirst bool) (bool, error)
	// GetAPIKeyByHash returns the key and its user; NotFound when no key has that hash.
	GetAPIKeyByHash(ctx context.Context, hash []byte) (*APIKey, *User, error)
	// ListAPIKeys returns up to p.Limit+1 keys of userID (revoked ones too).
	ListAPIKeys(ctx context.Context, userID string, p Page) ([]APIKey, error)
	// RevokeAPIKey sets revokedAt on keyID of userID, unless it is set
	// already, and returns the key; NotFound when it does not exist.
	RevokeAPIKey(ctx context.Context, userID, keyID string, at time.Time) (*APIKey, error)
}

// keyPrefix starts every API key, so a leaked key is recognisable.
const keyPrefix = "pk_"

// HashAPIKey returns the stored form of an API key. Keys carry 256 random
// bits, so a fast hash is as strong as a slow one here.
func HashAPIKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

func newAPIKeySecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return keyPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// Users authenticates callers and manages users and their API keys.
type Users struct {
	store UserStore
	now   func() time.Time
}

// Authenticate returns the principal owning key. Unknown, expired and
// revoked keys are Unauthenticated, alike.
func (s *Users) Authenticate(ctx context.Context, key string) (Principal, error) {
	if !strings.HasPrefix(key, keyPrefix) || len(key) > 128 {
		return Principal{}, errBadKey()
	}
	k, u, err := s.store.GetAPIKeyByHash(ctx, HashAPIKey(key))
	if KindOf(err) == NotFound {
		return Principal{}, errBadKey()
	}
	if err != nil {
		return Principal{}, Wrap("users.Authenticate", err)
	}
	// Checked here at every call, not by the store's query: a cached key
	// (storecache) stops working at its expiry all the same.
	if k.RevokedAt != nil || k.Expired(s.now()) {
		return Principal{}, errBadKey()
	}
	return Principal{UserID: u.ID, KeyID: k.ID, IsAdmin: u.IsAdmin, KeyExpiresAt: k.ExpiresAt}, nil
}

// Expired reports whether k has expired by now: from its ExpiresAt on.
func (k *APIKey) Expired(now time.Time) bool {
	return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)
}

// errBadKey is the one answer to a key that is malformed, unknown, expired
// or revoked, so that the answer does not say which. It is built only when
// needed: Authenticate runs on every request.
func errBadKey() error {
	return Errorf(Unauthenticated, "the API key is not valid, has expired or has been revoked")
}

// Me returns the calling user.
func (s *Users) Me(ctx context.Context) (*User, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	return s.store.GetUser(ctx, p.UserID)
}

// UserCreate is the input of Users.Create.
type UserCreate struct {
	Name    string
	IsAdmin bool
}

// Create makes a user. Only admins may.
func (s *Users) Create(ctx context.Context, in UserCreate) (*User, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if !p.IsAdmin {
		return nil, Errorf(Forbidden, "only a system admin may create users")
	}
	if err := checkName("name", in.Name, true); err != nil {
		return nil, err
	}
	now := s.now()
	u := &User{ID: NewID(PrefixUser), Name: strings.TrimSpace(in.Name), IsAdmin: in.IsAdmin, CreatedAt: now}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return nil, Wrap("users.Create", err)
	}
	return u, nil
}

// List returns users: every user for an admin, only itself otherwise.
func (s *Users) List(ctx context.Context, page Page) (List[User], error) {
	p, err := principal(ctx)
	if err != nil {
		return List[User]{}, err
	}
	page, err = page.normalize(PrefixUser)
	if err != nil {
		return List[User]{}, err
	}
	if !p.IsAdmin {
		// The list of one: its page after a cursor at or past the caller
		// is empty, as an admin's would be.
		if !page.beyond(p.UserID) {
			return List[User]{}, nil
		}
		u, err := s.store.GetUser(ctx, p.UserID)
		if err != nil {
			return List[User]{}, err
		}
		return List[User]{Items: []User{*u}}, nil
	}
	users, err := s.store.ListUsers(ctx, page)
	if err != nil {
		return List[User]{}, Wrap("users.List", err)
	}
	return paginate(users, page, func(u User) string { return u.ID }), nil
}

// selfOrAdmin checks that the caller is userID or an admin; others get
// NotFound so that users cannot probe for each other.
func (s *Users) selfOrAdmin(ctx context.Context, userID string) error {
	p, err := principal(ctx)
	if err != nil {
		return err
	}
	if userID == "" {
		return emptyID("user", PrefixUser)
	}
	if p.IsAdmin || p.UserID == userID {
		if _, err := lookup(ctx, PrefixUser, "user", userID, s.store.GetUser); err != nil {
			return err
		}
		return nil
	}
	return NotFoundf("user", userID)
}

// NewAPIKey is a created key with its secret, which is shown only once.
type NewAPIKey struct {
	APIKey
	Secret string
}

// APIKeyCreate is the input of Users.CreateAPIKey.
type APIKeyCreate struct {
	Name string
	// ExpiresAt, when set, is when the key stops working: in the future,
	// at most MaxAPIKeyLifetimeYears ahead, and no later than the expiry of
	// the caller's own key, if that expires.
	ExpiresAt *time.Time
}

// MaxAPIKeyLifetimeYears bounds how far ahead a key's expiry may be. A
// later one is most likely a typo (20270 for 2027), and a key that should
// outlive it needs no expiry.
const MaxAPIKeyLifetimeYears = 10

// CreateAPIKey makes a key for userID (an admin, or the user for itself).
// A caller whose key expires makes only keys that expire by then: else a
// key given out for a day could hand its holder one that never expires.
func (s *Users) CreateAPIKey(ctx context.Context, userID string, in APIKeyCreate) (*NewAPIKey, error) {
	if err := s.selfOrAdmin(ctx, userID); err != nil {
		return nil, err
	}
	if p, _ := PrincipalFrom(ctx); p.KeyExpiresAt != nil {
		if err := checkWithinCallerKey(in.ExpiresAt, *p.KeyExpiresAt); err != nil {
			return nil, err
		}
	}
	if err := checkName("name", in.Name, true); err != nil {
		return nil, err
	}
	now := s.now()
	if err := checkExpiry(in.ExpiresAt, now); err != nil {
		return nil, err
	}
	return s.createKey(ctx, userID, strings.TrimSpace(in.Name), newAPIKeySecret(), now, in.ExpiresAt)
}

// checkExpiry validates a new key's expiresAt against now.
func checkExpiry(at *time.Time, now time.Time) error {
	if at == nil {
		return nil
	}
	if !at.After(now) {
		return Invalidf("expiresAt", "expiresAt must be in the future: %s has passed; leave it out for a key that does not expire",
			at.UTC().Format(time.RFC3339Nano))
	}
	if limit := now.AddDate(MaxAPIKeyLifetimeYears, 0, 0); at.After(limit) {
		return Invalidf("expiresAt", "expiresAt must be at most %d years ahead (by %s); leave it out for a key that does not expire",
			MaxAPIKeyLifetimeYears, limit.UTC().Format(time.RFC3339))
	}
	return nil
}

// checkWithinCallerKey refuses a new key's expiry later than limit, the
// expiry of the key making it, or none at all.
func checkWithinCallerKey(at *time.Time, limit time.Time) error {
	if at == nil || at.After(limit) {
		return Invalidf("expiresAt", "the API key making this request expires at %s, and a key it creates must expire by then: set expiresAt to that time or earlier",
			limit.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

func (s *Users) createKey(ctx context.Context, userID, name, secret string, now time.Time, expiresAt *time.Time) (*NewAPIKey, error) {
	k := newAPIKey(userID, name, secret, now, expiresAt)
	if err := s.store.CreateAPIKey(ctx, &k); err != nil {
		return nil, Wrap("users.CreateAPIKey", err)
	}
	return &NewAPIKey{APIKey: k, Secret: secret}, nil
}

// newAPIKey is the stored form of the key secret of userID: its hash and
// the hint lists show, never the secret.
func newAPIKey(userID, name, secret string, now time.Time, expiresAt *time.Time) APIKey {
	return APIKey{
		ID: NewID(PrefixKey), UserID: userID, Name: name,
		Hash: HashAPIKey(secret), Hint: secret[:len(keyPrefix)+4], CreatedAt: now, ExpiresAt: expiresAt,
	}
}

// ListAPIKeys lists userID's keys, never their secrets.
func (s *Users) ListAPIKeys(ctx context.Context, userID string, page Page) (List[APIKey], error) {
	if err := s.selfOrAdmin(ctx, userID); err != nil {
		return List[APIKey]{}, err
	}
	page, err := page.normalizeIn(PrefixKey, userID)
	if err != nil {
		return List[APIKey]{}, err
	}
	keys, err := s.store.ListAPIKeys(ctx, userID, page)
	if err != nil {
		return List[APIKey]{}, Wrap("users.ListAPIKeys", err)
	}
	return paginate(keys, page, cursorIn(userID, func(k APIKey) string { return k.ID })), nil
}

// RevokeAPIKey revokes keyID of userID and returns it as it is now listed;
// the key answers 401 from then on. Revoking it again changes nothing.
func (s *Users) RevokeAPIKey(ctx context.Context, userID, keyID string) (*APIKey, error) {
	if err := s.selfOrAdmin(ctx, userID); err != nil {
		return nil, err
	}
	if !validID(PrefixKey, keyID) {
		return nil, notFoundID("API key", PrefixKey, keyID)
	}
	k, err := s.store.RevokeAPIKey(ctx, userID, keyID, s.now())
	if err != nil {
		return nil, Wrap("users.RevokeAPIKey", err)
	}
	return k, nil
}

// CheckBootstrapKey refuses a PARLEY_BOOTSTRAP_ADMIN_KEY of a form no key
// Parley makes has: the start checks it before it opens the database.
func CheckBootstrapKey(key string) error {
	if !strings.HasPrefix(key, keyPrefix) || len(key) < len(keyPrefix)+20 || len(key) > 128 {
		return Errorf(Invalid, "PARLEY_BOOTSTRAP_ADMIN_KEY must start with %q and have 20 to %d more characters; make one with 'parley admin gen-api-key'", keyPrefix, 128-len(keyPrefix))
	}
	if i := strings.IndexFunc(key, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
		// No Authorization header can carry it: the admin so made could
		// never be used (a secret file of two lines, say).
		return Errorf(Invalid, "PARLEY_BOOTSTRAP_ADMIN_KEY must not contain a space or a control character such as a newline (one is at character %d); set it to one key alone", i+1)
	}
	return nil
}

// EnsureAdminKey makes sure key exists as a system admin's key, creating
// the admin user "admin" when needed. It is idempotent: the bootstrap key
// (PARLEY_BOOTSTRAP_ADMIN_KEY) is passed at every start.
func (s *Users) EnsureAdminKey(ctx context.Context, key string) error {
	if err := CheckBootstrapKey(key); err != nil {
		return err
	}
	if err := s.checkAdminKey(ctx, key); KindOf(err) != NotFound {
		return err
	}
	_, err := s.createAdmin(ctx, key, false)
	if KindOf(err) == Conflict {
		// Another start (a replica starting at the same time) created it
		// since: it exists, as it should.
		return s.checkAdminKey(ctx, key)
	}
	return err
}

// checkAdminKey returns nil when key is an admin's key that is not
// revoked, NotFound when no key is key, and Conflict when it is another's.
func (s *Users) checkAdminKey(ctx context.Context, key string) error {
	k, u, err := s.store.GetAPIKeyByHash(ctx, HashAPIKey(key))
	switch {
	case KindOf(err) == NotFound:
		return err
	case err != nil:
		return Wrap("users.EnsureAdminKey", err)
	case !u.IsAdmin || k.RevokedAt != nil:
		return Errorf(Conflict, "the bootstrap admin key belongs to a non-admin user or was revoked; choose another key, or unset it once the server has an admin")
	}
	return nil
}

// createAdmin creates an admin user named admin with key, which does not
// expire, both or neither; with onlyFirst, only while no user exists,
// reporting whether it did.
func (s *Users) createAdmin(ctx context.Context, key string, onlyFirst bool) (bool, error) {
	now := s.now()
	u := &User{ID: NewID(PrefixUser), Name: "admin", IsAdmin: true, CreatedAt: now}
	k := newAPIKey(u.ID, "bootstrap", key, now, nil) // it does not expire
	created, err := s.store.CreateAdmin(ctx, u, &k, onlyFirst)
	if err != nil {
		return false, Wrap("users.createAdmin", err)
	}
	return created, nil
}

// BootstrapIfEmpty creates an admin user and key when no user exists yet,
// returning the key to print once; "" when users already exist. Of starts
// racing on an empty database (replicas, or serve and an MCP client's
// parley mcp), one creates them: the others get "".
func (s *Users) BootstrapIfEmpty(ctx context.Context) (string, error) {
	n, err := s.store.CountUsers(ctx)
	if err != nil {
		return "", Wrap("users.BootstrapIfEmpty", err)
	}
	if n > 0 {
		return "", nil
	}
	key := newAPIKeySecret()
	created, err := s.createAdmin(ctx, key, true)
	if err != nil || !created {
		return "", err
	}
	return key, nil
}

// NewAPIKeySecret returns a fresh random API key in Parley's format.
func NewAPIKeySecret() string { return newAPIKeySecret() }

// LocalAdminID is the id of the user a stdio MCP session acts as when it
// was started without PARLEY_API_KEY.
const LocalAdminID = PrefixUser + "00000000000000000000000000"

// LocalAdmin returns the principal of a stdio session started without an
// API key: the machine's user who started the process, as a system admin.
// The user is created on first use.
func (s *Users) LocalAdmin(ctx context.Context) (Principal, error) {
	_, err := s.store.GetUser(ctx, LocalAdminID)
	if KindOf(err) == NotFound {
		err = s.store.CreateUser(ctx, &User{ID: LocalAdminID, Name: "local admin (stdio)", IsAdmin: true, CreatedAt: s.now()})
		if KindOf(err) == Conflict {
			err = nil
		}
	}
	if err != nil {
		return Principal{}, Wrap("users.LocalAdmin", err)
	}
	return Principal{UserID: LocalAdminID, IsAdmin: true}, nil
}
