package domain

import (
	"context"
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
	// GetAPIKeyByHash returns the key and its user; NotFound when no key has that hash.
	GetAPIKeyByHash(ctx context.Context, hash []byte) (*APIKey, *User, error)
	// ListAPIKeys returns up to p.Limit+1 keys of userID (revoked ones too).
	ListAPIKeys(ctx context.Context, userID string, p Page) ([]APIKey, error)
	// RevokeAPIKey sets revokedAt on keyID of userID; NotFound when it does not exist.
	RevokeAPIKey(ctx context.Context, userID, keyID string, at time.Time) error
}
