package mcp

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

// conversationOut is the REST conversation resource; get-conversation
// fills messages, list-conversations leaves them out.
type conversationOut struct {
	ID        string `json:"id" desc:"Conversation id (cnv_...)."`
	ProjectID string `json:"projectId" desc:"Id of the project that owns the conversation."`
	ChatID    string `json:"chatId" desc:"Id of the chat the conversation belongs to."`
	CreatedAt string `json:"createdAt" format:"date-time" desc:"When the conversation was started (ISO 8601 UTC)."`
	UpdatedAt string `json:"updatedAt" format:"date-time" desc:"When the last turn was stored (ISO 8601 UTC)."`
	// Without them a list is ids and times, and an agent cannot tell
	// which conversation to continue.
	MessageCount int          `json:"messageCount" desc:"How many messages the conversation holds."`
	Preview      string       `json:"preview" desc:"The first 100 characters of its first user message that names no document, to tell it from the others."`
	Messages     []messageOut `json:"messages,omitempty" desc:"The stored messages in order (get-conversation only)."`
}

type messageOut struct {
	ID           string        `json:"id" desc:"Message id (msg_...)."`
	Role         string        `json:"role" enum:"user,assistant,tool" desc:"Author of the message."`
	Content      string        `json:"content" desc:"The message's text (a referenced document's content, resolved)."`
	Refusal      string        `json:"refusal,omitempty" desc:"Why the model declined to answer, in place of content (assistant messages; OpenAI, with structured outputs)."`
	DocumentID   string        `json:"documentId,omitempty" desc:"The document the message referenced, if any."`
	ToolCalls    []toolCallArg `json:"toolCalls,omitempty" desc:"The tools the model called (assistant messages)."`
	ToolCallID   string        `json:"toolCallId,omitempty" desc:"The tool call this is the result of (tool messages)."`
	Model        string        `json:"model,omitempty" desc:"The model that answered (assistant messages)."`
	FinishReason string        `json:"finishReason,omitempty" desc:"Why the reply ended (assistant messages): stop, length, tool_calls, content_filter, ..., or client_disconnect for a streamed reply the client stopped, stored as far as it went."`
	Usage        *usageOut     `json:"usage,omitempty" desc:"Tokens of the completion (a model's replies; not assistant messages the caller sent)."`
	CreatedAt    string        `json:"createdAt" format:"date-time" desc:"When the message was stored (ISO 8601 UTC)."`
}

func toConversationOut(c *domain.Conversation) conversationOut {
	out := conversationOut{ID: c.ID, ProjectID: c.ProjectID, ChatID: c.ChatID, CreatedAt: timestamp(c.CreatedAt), UpdatedAt: timestamp(c.UpdatedAt),
		MessageCount: c.MessageCount, Preview: c.Preview}
	for i := range c.Messages {
		out.Messages = append(out.Messages, toMessageOut(&c.Messages[i]))
	}
	return out
}

func toMessageOut(m *domain.Message) messageOut {
	out := messageOut{ID: m.ID, Role: string(m.Role), Content: m.Content, Refusal: m.Refusal, DocumentID: m.DocumentID,
		ToolCalls: wire.ToolCallsOf(m.ToolCalls), ToolCallID: m.ToolCallID, Model: m.Model,
		FinishReason: m.FinishReason, CreatedAt: timestamp(m.CreatedAt)}
	if m.IsReply() {
		u := toUsageOut(m.Usage)
		out.Usage = &u
	}
	return out
}

func conversationLine(c conversationOut) string {
	line := fmt.Sprintf("%s of chat %s, %s (started %s, updated %s)", c.ID, c.ChatID, count(c.MessageCount, "message"), c.CreatedAt, c.UpdatedAt)
	if c.Preview != "" {
		line += ": " + strconv.Quote(c.Preview)
	}
	return line
}

func conversationText(c conversationOut) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Conversation %s of chat %s, %s (updated %s):", c.ID, c.ChatID, count(len(c.Messages), "message"), c.UpdatedAt)
	for _, m := range c.Messages {
		b.WriteString("\n" + messageLine(m))
	}
	return b.String()
}

// messageLine is a message as the text of a tool result shows it.
func messageLine(m messageOut) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s", m.Role, m.Content)
	if m.Refusal != "" {
		if m.Content != "" {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "(refusal: %s)", m.Refusal)
	}
	if m.ToolCallID != "" {
		fmt.Fprintf(&b, " (result of tool call %s)", m.ToolCallID)
	}
	if m.DocumentID != "" {
		fmt.Fprintf(&b, " (document %s)", m.DocumentID)
	}
	if m.FinishReason != "" && m.FinishReason != "stop" && m.FinishReason != "tool_calls" {
		fmt.Fprintf(&b, " (finishReason %s)", m.FinishReason) // cut short, or filtered
	}
	for _, tc := range m.ToolCalls {
		b.WriteString("\n  " + toolCallLine(tc))
	}
	return b.String()
}

type listConversationsArgs struct {
	ChatID    string `json:"chatId,omitempty" desc:"Only conversations of this chat (cht_...); omit for every project you can see."`
	ProjectID string `json:"projectId,omitempty" desc:"Only conversations of this project (prj_...), of all its chats; send chatId or projectId, not both."`
	pageArgs
}

func listConversations(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[listConversationsArgs, listOut[conversationOut]]("list-conversations", "List conversations",
			"List the stored conversations of a chat, of a project, or of every project you can see, without their messages.", readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in listConversationsArgs) (listOut[conversationOut], error) {
			pg, err := in.page()
			if err != nil {
				return listOut[conversationOut]{}, err
			}
			l, err := d.svcs.Conversations.List(ctx, domain.ConversationListInput{ChatID: in.ChatID, ProjectID: in.ProjectID, Page: pg})
			if err != nil {
				return listOut[conversationOut]{}, err
			}
			return toList(l, toConversationOut), nil
		}, func(l listOut[conversationOut]) string { return listText("conversation", l, conversationLine) })
}

type getConversationArgs struct {
	ConversationID string `json:"conversationId" desc:"Id of the conversation (cnv_...)."`
}

func getConversation(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[getConversationArgs, conversationOut]("get-conversation", "Get a conversation",
			fmt.Sprintf("Get a conversation with all its messages in order, up to %d MiB of text as JSON (each <, > and & counted six bytes); a larger one is refused: "+
				"page through its messages with list-messages.", domain.MaxPageMiB), readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in getConversationArgs) (conversationOut, error) {
			c, err := d.svcs.Conversations.Get(ctx, in.ConversationID)
			if err != nil {
				return conversationOut{}, err
			}
			if !c.FitsOnePage() {
				return conversationOut{}, domain.Errorf(domain.TooLarge, "conversation %s holds more text than get-conversation returns at once (%d MiB as JSON, in %d messages); "+
					"page through its messages with list-messages instead", c.ID, domain.MaxPageMiB, c.MessageCount)
			}
			out := toConversationOut(c)
			if out.Messages == nil {
				out.Messages = []messageOut{}
			}
			return out, nil
		}, conversationText)
}

func deleteConversation(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return deleteTool(d, "delete-conversation", "Delete a conversation",
		"Delete a conversation and its messages. This cannot be undone; its usage stays counted. Needs the editor role.", "conversation",
		func(in getConversationArgs) string { return in.ConversationID }, d.svcs.Conversations.Delete)
}

type listMessagesArgs struct {
	ConversationID string `json:"conversationId" desc:"Id of the conversation (cnv_...)."`
	pageArgs
}

func listMessages(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[listMessagesArgs, listOut[messageOut]]("list-messages", "List a conversation's messages",
			"List a conversation's stored messages in order, a page at a time (get-conversation returns them all at once).", readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in listMessagesArgs) (listOut[messageOut], error) {
			pg, err := in.page()
			if err != nil {
				return listOut[messageOut]{}, err
			}
			l, err := d.svcs.Conversations.Messages(ctx, domain.MessageListInput{ConversationID: in.ConversationID, Page: pg})
			if err != nil {
				return listOut[messageOut]{}, err
			}
			return toList(l, toMessageOut), nil
		}, func(l listOut[messageOut]) string { return listText("message", l, messageLine) })
}
