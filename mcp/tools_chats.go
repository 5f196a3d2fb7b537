package mcp

import (
	"context"
	"fmt"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
)

// chatOut is exactly the seed's Chat resource, as REST returns it.
type chatOut struct {
	ID            string `json:"id" desc:"Chat id (cht_...)."`
	ProjectID     string `json:"projectId" desc:"Id of the project that owns the chat."`
	AIProviderID  string `json:"aiProviderId" desc:"Id of the AI provider the chat's completions use."`
	Name          string `json:"name" desc:"Human-readable name; may be empty."`
	SystemMessage string `json:"systemMessage" desc:"Default system prompt of every completion; may be empty."`
	Model         string `json:"model" desc:"Model override; empty means the provider's defaultModel."`
	CreatedAt     string `json:"createdAt" format:"date-time" desc:"When the chat was created (ISO 8601 UTC)."`
	UpdatedAt     string `json:"updatedAt" format:"date-time" desc:"When the chat was last changed (ISO 8601 UTC)."`
}

func toChatOut(c *domain.Chat) chatOut {
	return chatOut{ID: c.ID, ProjectID: c.ProjectID, AIProviderID: c.AIProviderID, Name: c.Name,
		SystemMessage: c.SystemMessage, Model: c.Model, CreatedAt: timestamp(c.CreatedAt), UpdatedAt: timestamp(c.UpdatedAt)}
}

func chatLine(c chatOut) string {
	model := c.Model
	if model == "" {
		model = "provider default"
	}
	return fmt.Sprintf("%s %s in project %s (provider %s, model %s)", c.ID, quote(c.Name), c.ProjectID, c.AIProviderID, model)
}

func chatText(c chatOut) string {
	s := "Chat " + chatLine(c)
	if c.SystemMessage != "" {
		s += "\nSystem message: " + c.SystemMessage
	}
	return s
}

type createChatArgs struct {
	ProjectID     string `json:"projectId" desc:"Id of the project to create the chat in (prj_...)."`
	AIProviderID  string `json:"aiProviderId" desc:"Id of an AI provider of the same project (aip_...); see list-ai-providers."`
	Name          string `json:"name,omitempty" max:"200" desc:"Human-readable name."`
	SystemMessage string `json:"systemMessage,omitempty" max:"1048576" desc:"Default system prompt applied to every completion of the chat."`
	Model         string `json:"model,omitempty" max:"200" desc:"Model override; omit to use the provider's defaultModel."`
}

func createChat(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[createChatArgs, chatOut]("create-chat", "Create a chat",
			"Create a chat: a stored AI provider, default system message and model, so that create-chat-completion-for-chat needs only messages. Needs the editor role in the project.", createHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in createChatArgs) (chatOut, error) {
			c, err := d.svcs.Chats.Create(ctx, domain.ChatCreate{ProjectID: in.ProjectID, AIProviderID: in.AIProviderID,
				Name: in.Name, SystemMessage: in.SystemMessage, Model: in.Model})
			if err != nil {
				return chatOut{}, err
			}
			return toChatOut(c), nil
		}, func(c chatOut) string { return "Created chat " + chatLine(c) })
}

type listChatsArgs struct {
	ProjectID string `json:"projectId,omitempty" desc:"Only chats of this project (prj_...); omit for every project you can see."`
	pageArgs
}

func listChats(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[listChatsArgs, listOut[chatOut]]("list-chats", "List chats",
			"List the chats of a project, or of every project you can see.", readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in listChatsArgs) (listOut[chatOut], error) {
			pg, err := in.page()
			if err != nil {
				return listOut[chatOut]{}, err
			}
			l, err := d.svcs.Chats.List(ctx, domain.ListInput{ProjectID: in.ProjectID, Page: pg})
			if err != nil {
				return listOut[chatOut]{}, err
			}
			return toList(l, toChatOut), nil
		}, func(l listOut[chatOut]) string { return listText("chat", l, chatLine) })
}

type chatIDArgs struct {
	ChatID string `json:"chatId" desc:"Id of the chat (cht_...)."`
}

func getChat(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[chatIDArgs, chatOut]("get-chat", "Get a chat",
			"Get a chat by id.", readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in chatIDArgs) (chatOut, error) {
			c, err := d.svcs.Chats.Get(ctx, in.ChatID)
			if err != nil {
				return chatOut{}, err
			}
			return toChatOut(c), nil
		}, chatText)
}

type updateChatArgs struct {
	ChatID        string  `json:"chatId" desc:"Id of the chat to change (cht_...)."`
	AIProviderID  *string `json:"aiProviderId,omitempty" desc:"New AI provider, of the chat's project (aip_...)."`
	Name          *string `json:"name,omitempty" max:"200" desc:"New name; an empty string clears it."`
	SystemMessage *string `json:"systemMessage,omitempty" max:"1048576" desc:"New default system prompt; an empty string clears it."`
	Model         *string `json:"model,omitempty" max:"200" desc:"New model override; an empty string falls back to the provider's defaultModel."`
}

func updateChat(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[updateChatArgs, chatOut]("update-chat", "Update a chat",
			"Change a chat's AI provider, name, system message or model; fields left out stay as they are. Needs the editor role.",
			hints{destructive: true, idempotent: true}),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in updateChatArgs) (chatOut, error) {
			c, err := d.svcs.Chats.Update(ctx, in.ChatID, domain.ChatUpdate{AIProviderID: in.AIProviderID, Name: in.Name,
				SystemMessage: in.SystemMessage, Model: in.Model})
			if err != nil {
				return chatOut{}, err
			}
			return toChatOut(c), nil
		}, func(c chatOut) string { return "Updated chat " + chatLine(c) })
}

func deleteChat(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return deleteTool(d, "delete-chat", "Delete a chat",
		"Delete a chat and all its conversations. This cannot be undone. Needs the editor role.", "chat",
		func(in chatIDArgs) string { return in.ChatID }, d.svcs.Chats.Delete)
}
