package store

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/parleyhq/parley/domain"
)

// The rows below mirror the tables as the latest migration leaves them,
// column for column. Times are never filled in by GORM (autoCreateTime:false,
// autoUpdateTime:false): the domain sets them.

type userRow struct {
	ID        string    `gorm:"column:id;primaryKey"`
	Name      string    `gorm:"column:name"`
	IsAdmin   bool      `gorm:"column:is_admin"`
	CreatedAt time.Time `gorm:"column:created_at;autoCreateTime:false"`
}

func (userRow) TableName() string { return "users" }

func fromDomainUser(u *domain.User) userRow {
	return userRow{ID: u.ID, Name: u.Name, IsAdmin: u.IsAdmin, CreatedAt: ts(u.CreatedAt)}
}

func toDomainUser(r *userRow) *domain.User {
	return &domain.User{ID: r.ID, Name: r.Name, IsAdmin: r.IsAdmin, CreatedAt: utc(r.CreatedAt)}
}

type apiKeyRow struct {
	ID        string     `gorm:"column:id;primaryKey"`
	UserID    string     `gorm:"column:user_id"`
	Name      string     `gorm:"column:name"`
	Hash      []byte     `gorm:"column:hash"`
	Hint      string     `gorm:"column:hint"`
	CreatedAt time.Time  `gorm:"column:created_at;autoCreateTime:false"`
	RevokedAt *time.Time `gorm:"column:revoked_at"`
	ExpiresAt *time.Time `gorm:"column:expires_at"` // since 00006
}

func (apiKeyRow) TableName() string { return "api_keys" }

func fromDomainAPIKey(k *domain.APIKey) apiKeyRow {
	return apiKeyRow{
		ID: k.ID, UserID: k.UserID, Name: k.Name, Hash: k.Hash, Hint: k.Hint,
		CreatedAt: ts(k.CreatedAt), RevokedAt: tsPtr(k.RevokedAt), ExpiresAt: tsPtr(k.ExpiresAt),
	}
}

func toDomainAPIKey(r *apiKeyRow) *domain.APIKey {
	return &domain.APIKey{
		ID: r.ID, UserID: r.UserID, Name: r.Name, Hash: r.Hash, Hint: r.Hint,
		CreatedAt: utc(r.CreatedAt), RevokedAt: utcPtr(r.RevokedAt), ExpiresAt: utcPtr(r.ExpiresAt),
	}
}

type projectRow struct {
	ID          string    `gorm:"column:id;primaryKey"`
	Name        string    `gorm:"column:name"`
	Description string    `gorm:"column:description"`
	CreatedAt   time.Time `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt   time.Time `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (projectRow) TableName() string { return "projects" }

func fromDomainProject(p *domain.Project) projectRow {
	return projectRow{ID: p.ID, Name: p.Name, Description: p.Description, CreatedAt: ts(p.CreatedAt), UpdatedAt: ts(p.UpdatedAt)}
}

func toDomainProject(r *projectRow) *domain.Project {
	return &domain.Project{ID: r.ID, Name: r.Name, Description: r.Description, CreatedAt: utc(r.CreatedAt), UpdatedAt: utc(r.UpdatedAt)}
}

type memberRow struct {
	ProjectID string    `gorm:"column:project_id;primaryKey"`
	UserID    string    `gorm:"column:user_id;primaryKey"`
	Role      string    `gorm:"column:role"`
	CreatedAt time.Time `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt time.Time `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (memberRow) TableName() string { return "project_members" }

func fromDomainMember(m *domain.Member) memberRow {
	return memberRow{ProjectID: m.ProjectID, UserID: m.UserID, Role: string(m.Role), CreatedAt: ts(m.CreatedAt), UpdatedAt: ts(m.UpdatedAt)}
}

func toDomainMember(r *memberRow) *domain.Member {
	return &domain.Member{ProjectID: r.ProjectID, UserID: r.UserID, Role: domain.Role(r.Role), CreatedAt: utc(r.CreatedAt), UpdatedAt: utc(r.UpdatedAt)}
}

type providerRow struct {
	ID               string    `gorm:"column:id;primaryKey"`
	ProjectID        string    `gorm:"column:project_id"`
	Name             string    `gorm:"column:name"`
	Type             string    `gorm:"column:type"`
	BaseURL          string    `gorm:"column:base_url"`
	DefaultModel     string    `gorm:"column:default_model"`
	APIVersion       string    `gorm:"column:api_version"`
	PromptCache      string    `gorm:"column:prompt_cache"`
	APIKeyCiphertext []byte    `gorm:"column:api_key_ciphertext"`
	APIKeyKeyID      string    `gorm:"column:api_key_key_id"`
	APIKeyHint       string    `gorm:"column:api_key_hint"`
	APIKeyRef        string    `gorm:"column:api_key_ref"`
	CreatedAt        time.Time `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt        time.Time `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (providerRow) TableName() string { return "ai_providers" }

func fromDomainProvider(p *domain.AIProvider) providerRow {
	ct := p.APIKeyCiphertext
	if len(ct) == 0 {
		ct = nil // NULL, not an empty blob
	}
	return providerRow{
		ID: p.ID, ProjectID: p.ProjectID, Name: p.Name, Type: string(p.Type), BaseURL: p.BaseURL,
		DefaultModel: p.DefaultModel, APIVersion: p.APIVersion, PromptCache: p.PromptCache, APIKeyCiphertext: ct,
		APIKeyKeyID: p.APIKeyKeyID, APIKeyHint: p.APIKeyHint, APIKeyRef: p.APIKeyRef,
		CreatedAt: ts(p.CreatedAt), UpdatedAt: ts(p.UpdatedAt),
	}
}

func toDomainProvider(r *providerRow) *domain.AIProvider {
	return &domain.AIProvider{
		ID: r.ID, ProjectID: r.ProjectID, Name: r.Name, Type: domain.ProviderType(r.Type), BaseURL: r.BaseURL,
		DefaultModel: r.DefaultModel, APIVersion: r.APIVersion, PromptCache: r.PromptCache, APIKeyCiphertext: r.APIKeyCiphertext,
		APIKeyKeyID: r.APIKeyKeyID, APIKeyHint: r.APIKeyHint, APIKeyRef: r.APIKeyRef,
		CreatedAt: utc(r.CreatedAt), UpdatedAt: utc(r.UpdatedAt),
	}
}

type documentRow struct {
	ID        string    `gorm:"column:id;primaryKey"`
	ProjectID string    `gorm:"column:project_id"`
	Name      string    `gorm:"column:name"`
	Content   string    `gorm:"column:content"`
	MimeType  string    `gorm:"column:mime_type"`
	Metadata  string    `gorm:"column:metadata"` // JSON
	CreatedAt time.Time `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt time.Time `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (documentRow) TableName() string { return "documents" }

func fromDomainDocument(d *domain.Document) (documentRow, error) {
	meta, err := json.Marshal(d.Metadata)
	if err != nil {
		return documentRow{}, domain.Invalidf("metadata", "metadata cannot be stored as JSON: %v", err)
	}
	return documentRow{
		ID: d.ID, ProjectID: d.ProjectID, Name: d.Name, Content: d.Content, MimeType: d.MimeType,
		Metadata: string(meta), CreatedAt: ts(d.CreatedAt), UpdatedAt: ts(d.UpdatedAt),
	}, nil
}

func toDomainDocument(r *documentRow) (*domain.Document, error) {
	meta, err := toDomainMetadata(r.Metadata)
	if err != nil {
		return nil, err
	}
	return &domain.Document{
		ID: r.ID, ProjectID: r.ProjectID, Name: r.Name, Content: r.Content, MimeType: r.MimeType,
		Metadata: meta, CreatedAt: utc(r.CreatedAt), UpdatedAt: utc(r.UpdatedAt),
	}, nil
}

// documentSummaryRow is a documents row without its content, which a list
// does not read: Bytes is octet_length(content) (documentSummaryColumns).
type documentSummaryRow struct {
	ID        string    `gorm:"column:id"`
	ProjectID string    `gorm:"column:project_id"`
	Name      string    `gorm:"column:name"`
	MimeType  string    `gorm:"column:mime_type"`
	Metadata  string    `gorm:"column:metadata"` // JSON
	Bytes     int       `gorm:"column:bytes"`
	CreatedAt time.Time `gorm:"column:created_at"`
	UpdatedAt time.Time `gorm:"column:updated_at"`
}

func (documentSummaryRow) TableName() string { return "documents" }

// documentSummaryColumns selects a documentSummaryRow. octet_length counts
// the bytes of the content in the database's encoding (UTF-8: Parley's
// SQLite databases and PostgreSQL's UTF8), and neither engine reads the
// content for it: PostgreSQL takes the size from the TOAST pointer, SQLite
// (3.43 and later) from the record header, where length(CAST(content AS
// BLOB)) would read every page of it. On SQLite content is the table's last
// column (migration 00017): a column stored after it would be read by
// walking the content's overflow pages.
const documentSummaryColumns = "id, project_id, name, mime_type, metadata, octet_length(content) AS bytes, created_at, updated_at"

func toDomainDocumentSummary(r *documentSummaryRow) (domain.DocumentSummary, error) {
	meta, err := toDomainMetadata(r.Metadata)
	if err != nil {
		return domain.DocumentSummary{}, err
	}
	return domain.DocumentSummary{
		ID: r.ID, ProjectID: r.ProjectID, Name: r.Name, MimeType: r.MimeType, Metadata: meta, Bytes: r.Bytes,
		CreatedAt: utc(r.CreatedAt), UpdatedAt: utc(r.UpdatedAt),
	}, nil
}

// toDomainMetadata decodes a document's stored metadata, keeping its
// numbers as stored (json.Number): float64 would round integers past 2⁵³,
// which the API took without loss (wire.Object).
func toDomainMetadata(s string) (map[string]any, error) {
	var meta map[string]any
	if s != "" {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		if err := dec.Decode(&meta); err != nil {
			return nil, err
		}
	}
	return meta, nil
}

type chatRow struct {
	ID            string    `gorm:"column:id;primaryKey"`
	ProjectID     string    `gorm:"column:project_id"`
	AIProviderID  string    `gorm:"column:ai_provider_id"`
	Name          string    `gorm:"column:name"`
	SystemMessage string    `gorm:"column:system_message"`
	Model         string    `gorm:"column:model"`
	CreatedAt     time.Time `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt     time.Time `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (chatRow) TableName() string { return "chats" }

func fromDomainChat(c *domain.Chat) chatRow {
	return chatRow{
		ID: c.ID, ProjectID: c.ProjectID, AIProviderID: c.AIProviderID, Name: c.Name,
		SystemMessage: c.SystemMessage, Model: c.Model, CreatedAt: ts(c.CreatedAt), UpdatedAt: ts(c.UpdatedAt),
	}
}

func toDomainChat(r *chatRow) *domain.Chat {
	return &domain.Chat{
		ID: r.ID, ProjectID: r.ProjectID, AIProviderID: r.AIProviderID, Name: r.Name,
		SystemMessage: r.SystemMessage, Model: r.Model, CreatedAt: utc(r.CreatedAt), UpdatedAt: utc(r.UpdatedAt),
	}
}

type conversationRow struct {
	ID        string    `gorm:"column:id;primaryKey"`
	ProjectID string    `gorm:"column:project_id"`
	ChatID    string    `gorm:"column:chat_id"`
	CreatedAt time.Time `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt time.Time `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (conversationRow) TableName() string { return "conversations" }

func fromDomainConversation(c *domain.Conversation) conversationRow {
	return conversationRow{ID: c.ID, ProjectID: c.ProjectID, ChatID: c.ChatID, CreatedAt: ts(c.CreatedAt), UpdatedAt: ts(c.UpdatedAt)}
}

func toDomainConversation(r *conversationRow) *domain.Conversation {
	return &domain.Conversation{ID: r.ID, ProjectID: r.ProjectID, ChatID: r.ChatID, CreatedAt: utc(r.CreatedAt), UpdatedAt: utc(r.UpdatedAt)}
}

type messageRow struct {
	ID               string    `gorm:"column:id;primaryKey"`
	ConversationID   string    `gorm:"column:conversation_id"`
	Seq              int       `gorm:"column:seq"`
	Role             string    `gorm:"column:role"`
	Content          string    `gorm:"column:content"`
	DocumentID       string    `gorm:"column:document_id"`
	ToolCalls        string    `gorm:"column:tool_calls"` // JSON (fromDomainToolCalls); "" for none
	ToolCallID       string    `gorm:"column:tool_call_id"`
	Model            string    `gorm:"column:model"`
	FinishReason     string    `gorm:"column:finish_reason"`
	PromptTokens     int       `gorm:"column:prompt_tokens"`
	CompletionTokens int       `gorm:"column:completion_tokens"`
	TotalTokens      int       `gorm:"column:total_tokens"`
	UsageEstimated   bool      `gorm:"column:usage_estimated"`
	CachedTokens     int       `gorm:"column:cached_tokens"`
	CacheWriteTokens int       `gorm:"column:cache_write_tokens"`
	ReasoningTokens  int       `gorm:"column:reasoning_tokens"`
	CreatedAt        time.Time `gorm:"column:created_at;autoCreateTime:false"`
	// RequestKey and RequestHash are NULL but on the reply of a request
	// sent with an idempotency key: its unique index is partial.
	RequestKey  *string `gorm:"column:request_key"`
	RequestHash *string `gorm:"column:request_hash"`
	// Refusal is NULL but on a reply in which the model declined.
	Refusal *string `gorm:"column:refusal"`
}

func (messageRow) TableName() string { return "messages" }

// toolCallJSON is how a stored message keeps a tool call: OpenAI's shape.
type toolCallJSON struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
	ExtraContent json.RawMessage `json:"extra_content,omitempty"`
}

func fromDomainToolCalls(calls []domain.ToolCall) string {
	if len(calls) == 0 {
		return ""
	}
	out := make([]toolCallJSON, len(calls))
	for i, c := range calls {
		out[i].ID, out[i].Type = c.ID, c.Type
		out[i].Function.Name, out[i].Function.Arguments = c.Name, c.Arguments
		out[i].ExtraContent = c.ExtraContent
	}
	b, _ := json.Marshal(out) // strings, and extra_content the domain checked is JSON: cannot fail
	return string(b)
}

// toDomainToolCalls reads the tool_calls column; a value that is not the
// JSON this package writes reads as no calls.
func toDomainToolCalls(s string) []domain.ToolCall {
	if s == "" {
		return nil
	}
	var in []toolCallJSON
	if err := json.Unmarshal([]byte(s), &in); err != nil || len(in) == 0 {
		return nil
	}
	out := make([]domain.ToolCall, len(in))
	for i, c := range in {
		out[i] = domain.ToolCall{ID: c.ID, Type: c.Type, Name: c.Function.Name, Arguments: c.Function.Arguments,
			ExtraContent: c.ExtraContent}
	}
	return out
}

func fromDomainMessage(m *domain.Message) messageRow {
	return messageRow{
		ID: m.ID, ConversationID: m.ConversationID, Seq: m.Seq, Role: string(m.Role), Content: m.Content,
		DocumentID: m.DocumentID, ToolCalls: fromDomainToolCalls(m.ToolCalls), ToolCallID: m.ToolCallID,
		Model: m.Model, FinishReason: m.FinishReason,
		PromptTokens: m.Usage.PromptTokens, CompletionTokens: m.Usage.CompletionTokens, TotalTokens: m.Usage.TotalTokens,
		UsageEstimated: m.Usage.Estimated, CachedTokens: m.Usage.CachedTokens, CacheWriteTokens: m.Usage.CacheWriteTokens,
		ReasoningTokens: m.Usage.ReasoningTokens, CreatedAt: ts(m.CreatedAt),
		RequestKey: nullString(m.RequestKey), RequestHash: nullString(m.RequestHash), Refusal: nullString(m.Refusal),
	}
}

// nullString is s, or NULL when s is empty.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toDomainMessage(r *messageRow) domain.Message {
	m := domain.Message{
		ID: r.ID, ConversationID: r.ConversationID, Seq: r.Seq, Role: domain.MessageRole(r.Role), Content: r.Content,
		DocumentID: r.DocumentID, ToolCalls: toDomainToolCalls(r.ToolCalls), ToolCallID: r.ToolCallID,
		Model: r.Model, FinishReason: r.FinishReason,
		Usage: domain.Usage{PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens, TotalTokens: r.TotalTokens,
			Estimated: r.UsageEstimated, CachedTokens: r.CachedTokens, CacheWriteTokens: r.CacheWriteTokens, ReasoningTokens: r.ReasoningTokens},
		CreatedAt: utc(r.CreatedAt),
	}
	if r.RequestKey != nil && r.RequestHash != nil {
		m.RequestKey, m.RequestHash = *r.RequestKey, *r.RequestHash
	}
	if r.Refusal != nil {
		m.Refusal = *r.Refusal
	}
	return m
}

type usageRow struct {
	ID               string    `gorm:"column:id;primaryKey"`
	ProjectID        string    `gorm:"column:project_id"`
	ChatID           string    `gorm:"column:chat_id"`
	ConversationID   string    `gorm:"column:conversation_id"`
	AIProviderID     string    `gorm:"column:ai_provider_id"`
	Model            string    `gorm:"column:model"`
	UserID           string    `gorm:"column:user_id"`
	KeyID            string    `gorm:"column:key_id"`
	PromptTokens     int64     `gorm:"column:prompt_tokens"`
	CompletionTokens int64     `gorm:"column:completion_tokens"`
	TotalTokens      int64     `gorm:"column:total_tokens"`
	Estimated        bool      `gorm:"column:estimated"`
	CachedTokens     int64     `gorm:"column:cached_tokens"`
	CacheWriteTokens int64     `gorm:"column:cache_write_tokens"`
	ReasoningTokens  int64     `gorm:"column:reasoning_tokens"`
	LatencyMS        int64     `gorm:"column:latency_ms"`
	TTFTMS           int64     `gorm:"column:ttft_ms"`
	Outcome          string    `gorm:"column:outcome"`
	Stream           bool      `gorm:"column:stream"`
	CreatedAt        time.Time `gorm:"column:created_at;autoCreateTime:false"`
}

func (usageRow) TableName() string { return "usage_records" }

func fromDomainUsage(u *domain.UsageRecord) usageRow {
	return usageRow{
		ID: u.ID, ProjectID: u.ProjectID, ChatID: u.ChatID, ConversationID: u.ConversationID,
		AIProviderID: u.AIProviderID, Model: u.Model, UserID: u.UserID, KeyID: u.KeyID,
		PromptTokens: int64(u.Usage.PromptTokens), CompletionTokens: int64(u.Usage.CompletionTokens), TotalTokens: int64(u.Usage.TotalTokens),
		Estimated: u.Usage.Estimated, CachedTokens: int64(u.Usage.CachedTokens), CacheWriteTokens: int64(u.Usage.CacheWriteTokens),
		ReasoningTokens: int64(u.Usage.ReasoningTokens), LatencyMS: u.Latency.Milliseconds(), TTFTMS: u.TimeToFirst.Milliseconds(),
		Outcome: string(u.Outcome), Stream: u.Stream, CreatedAt: ts(u.CreatedAt),
	}
}
