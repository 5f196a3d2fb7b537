package mcp

import (
	"context"
	"fmt"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
)

// pageArgs are the paging arguments of every list tool.
type pageArgs struct {
	Limit  *int   `json:"limit,omitempty" min:"1" max:"100" desc:"Page size, 1 to 100; default 20."`
	Cursor string `json:"cursor,omitempty" desc:"The nextCursor of the previous page, unchanged, with the same other arguments (a cursor of another list is refused); omit for the first page."`
	Order  string `json:"order,omitempty" enum:",asc,desc" desc:"asc (the default): in the order the items were created; desc: the most recently created first (conversations by when they were started, not by their last turn). A cursor keeps the order of the page it came from."`
}

func (p pageArgs) page() (domain.Page, error) { return page(p.Limit, p.Cursor, p.Order) }

// listOut is one page of a list, as REST returns it: MCP output schemas
// must be objects, so lists are wrapped.
type listOut[T any] struct {
	Data       []T     `json:"data" desc:"The items of this page, in the order they were created (the most recent first with order desc)."`
	NextCursor *string `json:"nextCursor" nullable:"true" desc:"Pass as cursor to get the next page; null on the last page."`
}

// paged is a listOut of any item type: its size and next cursor.
type paged interface {
	page() (items int, next *string)
}

func (l listOut[T]) page() (int, *string) { return len(l.Data), l.NextCursor }

func toList[T, R any](l domain.List[T], conv func(*T) R) listOut[R] {
	out := listOut[R]{Data: make([]R, 0, len(l.Items))}
	for i := range l.Items {
		out.Data = append(out.Data, conv(&l.Items[i]))
	}
	if l.NextCursor != "" {
		out.NextCursor = &l.NextCursor
	}
	return out
}

// listText renders a page: a count line ("1 document", "2 documents"),
// then one line per item; noun is what an item is, in the singular.
func listText[T any](noun string, l listOut[T], line func(T) string) string {
	var b strings.Builder
	b.WriteString(count(len(l.Data), noun))
	if l.NextCursor != nil {
		fmt.Fprintf(&b, " (more: pass cursor %q)", *l.NextCursor)
	}
	for _, it := range l.Data {
		b.WriteString("\n- " + line(it))
	}
	return b.String()
}

// madeOverREST is what an empty list of projects or AI providers adds to
// its text: no tool makes them, and an agent told to set one up must know
// to ask.
func madeOverREST[T any](l listOut[T]) string {
	if len(l.Data) > 0 || l.NextCursor != nil {
		return ""
	}
	return ". " + noProjectTools
}

// count is n and noun, in the plural unless n is 1: "1 document", "0
// documents". Every noun the texts count takes an s.
func count[N int | int64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// deletedOut is what every delete tool returns.
type deletedOut struct {
	ID      string `json:"id" desc:"The id of the deleted resource."`
	Deleted bool   `json:"deleted" desc:"Always true."`
}

// deleteTool is a tool that deletes the what its In names (id), through
// del: its description, desc, goes on to say what a repeat answers.
func deleteTool[In any](d deps, name, title, desc, what string, id func(In) string, del func(ctx context.Context, id string) error) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[In, deletedOut](name, title, desc+" not_found when it does not exist, or no longer does.", deleteHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in In) (deletedOut, error) {
			if err := del(ctx, id(in)); err != nil {
				return deletedOut{}, err
			}
			return deletedOut{ID: id(in), Deleted: true}, nil
		}, func(o deletedOut) string { return fmt.Sprintf("Deleted %s %s.", what, o.ID) })
}

// usageOut are token totals.
type usageOut struct {
	PromptTokens     int  `json:"promptTokens" desc:"Tokens of the messages sent upstream."`
	CompletionTokens int  `json:"completionTokens" desc:"Tokens of the reply."`
	TotalTokens      int  `json:"totalTokens" desc:"promptTokens plus completionTokens."`
	Estimated        bool `json:"estimated,omitempty" desc:"True when Parley counted some of the tokens itself because the provider gave no count; absent otherwise."`
	CachedTokens     int  `json:"cachedTokens,omitempty" desc:"Of promptTokens, those the provider read from its prompt cache; absent when it reports none."`
	CacheWriteTokens int  `json:"cacheWriteTokens,omitempty" desc:"Of promptTokens, those the provider wrote to its prompt cache (Anthropic, with the provider's promptCache set; billed above the input price); absent when it reports none."`
	ReasoningTokens  int  `json:"reasoningTokens,omitempty" desc:"Of completionTokens, those a reasoning model spent thinking; absent when the provider reports none."`
}

func toUsageOut(u domain.Usage) usageOut {
	return usageOut{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens, Estimated: u.Estimated,
		CachedTokens: u.CachedTokens, CacheWriteTokens: u.CacheWriteTokens, ReasoningTokens: u.ReasoningTokens}
}

// quote renders an optional name for text output.
func quote(s string) string {
	if s == "" {
		return "(unnamed)"
	}
	return fmt.Sprintf("%q", s)
}
