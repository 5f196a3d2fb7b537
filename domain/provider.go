package domain

import (
	"context"
	"time"
)

// ProviderType names the wire protocol of an AI provider.
type ProviderType string

const (
	ProviderOpenAI           ProviderType = "openai"
	ProviderOpenAICompatible ProviderType = "openai-compatible"
	ProviderAzureOpenAI      ProviderType = "azure-openai"
	ProviderAnthropic        ProviderType = "anthropic"
)

// AIProvider is an upstream LLM endpoint with its credentials. The API key
// is kept encrypted (APIKeyCiphertext under the master key APIKeyKeyID) or
// referenced from the server's environment (APIKeyRef); it is never returned.
type AIProvider struct {
	ID               string
	ProjectID        string
	Name             string
	Type             ProviderType
	BaseURL          string
	DefaultModel     string
	APIVersion       string // azure-openai only
	APIKeyCiphertext []byte
	APIKeyKeyID      string
	APIKeyHint       string
	APIKeyRef        string
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// HasAPIKey reports whether the provider has a stored or referenced key.
func (p *AIProvider) HasAPIKey() bool { return len(p.APIKeyCiphertext) > 0 || p.APIKeyRef != "" }

// ProviderFilter selects AI providers to list.
type ProviderFilter struct {
	ProjectID    string // "" for every project visible to MemberUserID
	MemberUserID string // "" for all (admin)
	Page         Page
}

// ProviderStore keeps AI providers.
type ProviderStore interface {
	CreateProvider(ctx context.Context, p *AIProvider) error
	// GetProvider returns NotFound when id does not exist.
	GetProvider(ctx context.Context, id string) (*AIProvider, error)
	ListProviders(ctx context.Context, f ProviderFilter) ([]AIProvider, error)
	// ListAllProviders returns every provider, for re-encrypting keys.
	ListAllProviders(ctx context.Context) ([]AIProvider, error)
	// UpdateProvider saves every field of p; NotFound when absent.
	UpdateProvider(ctx context.Context, p *AIProvider) error
	// DeleteProvider returns NotFound when absent and Conflict while chats use it.
	DeleteProvider(ctx context.Context, id string) error
}

// Sealer encrypts provider API keys under a master key. KeyID names the
// master key used, so keys can be rotated.
type Sealer interface {
	Seal(plaintext []byte) (ciphertext []byte, keyID string, err error)
	Open(ciphertext []byte, keyID string) ([]byte, error)
}
