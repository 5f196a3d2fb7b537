package rest

import (
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

type conversationResponse struct {
	ID        string `json:"id"`
	ProjectID string `json:"projectId"`
	ChatID    string `json:"chatId"`
	CreatedAt string `json:"createdAt" jsonschema:"format=date-time"`
	UpdatedAt string `json:"updatedAt" jsonschema:"format=date-time"`
	// MessageCount and Preview (the first 100 characters of the first user
	// message that names no document) tell a conversation in a list from
	// the others.
	MessageCount int    `json:"messageCount"`
	Preview      string `json:"preview"`
}

// conversationDetail is a conversation with its messages, as GET
// /conversations/{id} answers it; lists leave the messages out.
type conversationDetail struct {
	conversationResponse
	Messages []messageResponse `json:"messages"`
}

type messageResponse struct {
	ID           string          `json:"id"`
	Role         string          `json:"role" enum:"system,user,assistant,tool"`
	Content      string          `json:"content"`
	Refusal      string          `json:"refusal,omitempty"` // an assistant reply in which the model declined
	DocumentID   string          `json:"documentId,omitempty"`
	ToolCalls    []wire.ToolCall `json:"toolCalls,omitempty"`
	ToolCallID   string          `json:"toolCallId,omitempty"`
	Model        string          `json:"model,omitempty"`
	FinishReason string          `json:"finishReason,omitempty"`
	Usage        *usageJSON      `json:"usage,omitempty"`
	CreatedAt    string          `json:"createdAt" jsonschema:"format=date-time"`
}

type usageJSON struct {
	PromptTokens     int  `json:"promptTokens"`
	CompletionTokens int  `json:"completionTokens"`
	TotalTokens      int  `json:"totalTokens"`
	Estimated        bool `json:"estimated,omitempty"` // Parley counted some of it: the provider gave no count
	// Of promptTokens, those read from the provider's prompt cache and
	// those written to it; of completionTokens, those spent reasoning. 0
	// when it reports none.
	CachedTokens     int `json:"cachedTokens"`
	CacheWriteTokens int `json:"cacheWriteTokens"`
	ReasoningTokens  int `json:"reasoningTokens"`
}

func toConversationResponse(cv *domain.Conversation) conversationResponse {
	return conversationResponse{ID: cv.ID, ProjectID: cv.ProjectID, ChatID: cv.ChatID, CreatedAt: timestamp(cv.CreatedAt), UpdatedAt: timestamp(cv.UpdatedAt),
		MessageCount: cv.MessageCount, Preview: cv.Preview}
}

func toMessageResponse(m *domain.Message) messageResponse {
	r := messageResponse{ID: m.ID, Role: string(m.Role), Content: m.Content, Refusal: m.Refusal, DocumentID: m.DocumentID,
		ToolCalls: wire.ToolCallsOf(m.ToolCalls), ToolCallID: m.ToolCallID, Model: m.Model,
		FinishReason: m.FinishReason, CreatedAt: timestamp(m.CreatedAt)}
	if m.IsReply() {
		r.Usage = &usageJSON{PromptTokens: m.Usage.PromptTokens, CompletionTokens: m.Usage.CompletionTokens, TotalTokens: m.Usage.TotalTokens,
			Estimated: m.Usage.Estimated, CachedTokens: m.Usage.CachedTokens, CacheWriteTokens: m.Usage.CacheWriteTokens,
			ReasoningTokens: m.Usage.ReasoningTokens}
	}
	return r
}

func (s *Server) handleConversationList(c *echo.Context) error {
	pg, err := page(c, "chatId", "projectId")
	if err != nil {
		return err
	}
	l, err := s.svcs.Conversations.List(ctx(c), domain.ConversationListInput{ChatID: c.QueryParam("chatId"), ProjectID: c.QueryParam("projectId"), Page: pg})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toList(l, toConversationResponse))
}

func (s *Server) handleConversationGet(c *echo.Context) error {
	cv, err := s.svcs.Conversations.Get(ctx(c), c.Param("conversationId"))
	if err != nil {
		return err
	}
	r := conversationDetail{conversationResponse: toConversationResponse(cv), Messages: make([]messageResponse, len(cv.Messages))}
	for i := range cv.Messages {
		r.Messages[i] = toMessageResponse(&cv.Messages[i])
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Server) handleConversationMessages(c *echo.Context) error {
	pg, err := page(c)
	if err != nil {
		return err
	}
	l, err := s.svcs.Conversations.Messages(ctx(c), domain.MessageListInput{ConversationID: c.Param("conversationId"), Page: pg})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toList(l, toMessageResponse))
}

func (s *Server) handleConversationDelete(c *echo.Context) error {
	id := c.Param("conversationId")
	if err := s.svcs.Conversations.Delete(ctx(c), id); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, deletedResponse{ID: id, Deleted: true})
}
