package mcp

import (
	"context"
	"fmt"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

// projectOut is the REST project resource.
type projectOut struct {
	ID          string `json:"id" desc:"Project id (prj_...)."`
	Name        string `json:"name" desc:"Project name."`
	Description string `json:"description" desc:"Project description; may be empty."`
	CreatedAt   string `json:"createdAt" format:"date-time" desc:"When the project was created (ISO 8601 UTC)."`
	UpdatedAt   string `json:"updatedAt" format:"date-time" desc:"When the project was last changed (ISO 8601 UTC)."`
}

func toProjectOut(p *domain.Project) projectOut {
	return projectOut{ID: p.ID, Name: p.Name, Description: p.Description, CreatedAt: timestamp(p.CreatedAt), UpdatedAt: timestamp(p.UpdatedAt)}
}

func projectLine(p projectOut) string { return fmt.Sprintf("%s %s", p.ID, quote(p.Name)) }

func projectText(p projectOut) string {
	s := "Project " + projectLine(p)
	if p.Description != "" {
		s += ": " + p.Description
	}
	return s
}

type listProjectsArgs struct {
	pageArgs
}

func listProjects(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[listProjectsArgs, listOut[projectOut]]("list-projects", "List projects",
			"List the projects you can see (those you are a member of; every project for an admin).", readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in listProjectsArgs) (listOut[projectOut], error) {
			pg, err := in.page()
			if err != nil {
				return listOut[projectOut]{}, err
			}
			l, err := d.svcs.Projects.List(ctx, pg)
			if err != nil {
				return listOut[projectOut]{}, err
			}
			return toList(l, toProjectOut), nil
		}, func(l listOut[projectOut]) string { return listText("project", l, projectLine) + madeOverREST(l) })
}

type getProjectArgs struct {
	ProjectID string `json:"projectId" desc:"Id of the project (prj_...)."`
}

func getProject(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[getProjectArgs, projectOut]("get-project", "Get a project",
			"Get a project by id.", readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in getProjectArgs) (projectOut, error) {
			p, err := d.svcs.Projects.Get(ctx, in.ProjectID)
			if err != nil {
				return projectOut{}, err
			}
			return toProjectOut(p), nil
		}, projectText)
}

type getUsageArgs struct {
	ProjectID string `json:"projectId" desc:"Id of the project (prj_...)."`
	From      string `json:"from,omitempty" desc:"Start of the period, inclusive: an ISO 8601 time with a UTC offset (2026-01-31T00:00:00Z) or a date (2026-01-31, midnight UTC). Default: 30 days before to."`
	To        string `json:"to,omitempty" desc:"End of the period, exclusive: an ISO 8601 time with a UTC offset or a date. Default: a second from now."`
	GroupBy   string `json:"groupBy,omitempty" enum:",model,provider,chat,key,outcome,day" desc:"Group the totals by model, provider, chat, key (the API key that made the calls, key_...), outcome (ok, upstream_error, client_disconnect, ...) or day (the UTC day, YYYY-MM-DD); omit for one total. Each group's key field holds its model, id, outcome or day."`
	Limit     *int   `json:"limit,omitempty" min:"1" max:"100" desc:"Groups per page, 1 to 100; default 20."`
	Cursor    string `json:"cursor,omitempty" desc:"The nextCursor of the previous page, unchanged, with the same groupBy, from and to (or without from and to: the cursor keeps the period); omit for the first page."`
}

type usageTotalOut struct {
	Key              string `json:"key,omitempty" desc:"The group: a model name, AI provider id, chat id, API key id or outcome; absent when not grouped, and for the group of completions without one (stateless completions, by chat; the stdio local admin's, which has no API key, by key)."`
	Name             string `json:"name,omitempty" desc:"Grouped by provider or chat: the provider's or chat's current name; absent when it has been deleted since, or your role may not read it."`
	PromptTokens     int    `json:"promptTokens" desc:"Tokens of the messages sent upstream."`
	CompletionTokens int    `json:"completionTokens" desc:"Tokens of the replies."`
	TotalTokens      int    `json:"totalTokens" desc:"promptTokens plus completionTokens."`
	Requests         int64  `json:"requests" desc:"Number of completions."`
	EstimatedTokens  int64  `json:"estimatedTokens" desc:"The part of totalTokens counted by completions whose usage Parley estimated, in whole or in part, because the provider gave no count."`
	CachedTokens     int    `json:"cachedTokens" desc:"The part of promptTokens the providers read from their prompt cache (billed at a discount)."`
	CacheWriteTokens int    `json:"cacheWriteTokens" desc:"The part of promptTokens the providers wrote to their prompt cache (billed above the input price)."`
	ReasoningTokens  int    `json:"reasoningTokens" desc:"The part of completionTokens reasoning models spent thinking."`
}

type usageReportOut struct {
	ProjectID    string          `json:"projectId" desc:"Id of the project."`
	From         string          `json:"from" desc:"Start of the period summed, inclusive (ISO 8601, UTC), the default resolved."`
	To           string          `json:"to" desc:"End of the period summed, exclusive (ISO 8601, UTC), the default resolved."`
	RetainedFrom *string         `json:"retainedFrom" nullable:"true" format:"date-time" desc:"When the period starts earlier: the time before which usage records are past their retention, so the totals may lack any of them (all once the hourly sweep has run); null otherwise."`
	GroupBy      string          `json:"groupBy,omitempty" desc:"The grouping, when asked for."`
	Data         []usageTotalOut `json:"data" desc:"Totals per group, ordered by key byte by byte (the group without a key first); one total when not grouped."`
	NextCursor   *string         `json:"nextCursor" nullable:"true" desc:"Pass as cursor to get the next page of groups; null on the last page, and when not grouped."`
}

func getUsage(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[getUsageArgs, usageReportOut]("get-usage", "Get project usage",
			"Get a project's token and request totals over a period, optionally grouped by model, provider, chat, API key, outcome or UTC day, a page of groups at a time. A completion is counted within about a second of its end.", readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in getUsageArgs) (usageReportOut, error) {
			pg, err := page(in.Limit, in.Cursor, "") // usage groups come in key order only
			if err != nil {
				return usageReportOut{}, err
			}
			q := domain.UsageInput{ProjectID: in.ProjectID, GroupBy: domain.UsageGroupBy(in.GroupBy), Page: pg}
			if q.From, err = parseTime("from", in.From); err != nil {
				return usageReportOut{}, err
			}
			if q.To, err = parseTime("to", in.To); err != nil {
				return usageReportOut{}, err
			}
			rep, err := d.svcs.UsageReports.Get(ctx, q)
			if err != nil {
				return usageReportOut{}, err
			}
			out := usageReportOut{ProjectID: in.ProjectID, From: timestamp(rep.From), To: timestamp(rep.To), GroupBy: in.GroupBy,
				RetainedFrom: wire.OptionalTimestamp(rep.RetainedFrom), Data: make([]usageTotalOut, 0, len(rep.Totals))}
			for _, t := range rep.Totals {
				out.Data = append(out.Data, usageTotalOut{Key: t.Key, Name: t.Name, PromptTokens: t.Usage.PromptTokens,
					CompletionTokens: t.Usage.CompletionTokens, TotalTokens: t.Usage.TotalTokens, Requests: t.Requests,
					EstimatedTokens: t.EstimatedTokens, CachedTokens: t.Usage.CachedTokens, CacheWriteTokens: t.Usage.CacheWriteTokens,
					ReasoningTokens: t.Usage.ReasoningTokens})
			}
			if rep.NextCursor != "" {
				out.NextCursor = &rep.NextCursor
			}
			return out, nil
		}, usageText)
}

func usageText(u usageReportOut) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage of project %s from %s to %s", u.ProjectID, u.From, u.To)
	if u.GroupBy != "" {
		fmt.Fprintf(&b, " by %s", u.GroupBy)
	}
	if u.NextCursor != nil {
		fmt.Fprintf(&b, " (more groups: pass cursor %q)", *u.NextCursor)
	}
	b.WriteString(":")
	if len(u.Data) == 0 {
		b.WriteString(" no completions in this period")
	}
	for _, t := range u.Data {
		b.WriteString("\n- ")
		switch {
		case t.Key != "" && t.Name != "":
			fmt.Fprintf(&b, "%s (%q): ", t.Key, t.Name)
		case t.Key != "":
			b.WriteString(t.Key + ": ")
		case u.GroupBy == string(domain.GroupByChat):
			b.WriteString("stateless completions: ")
		case u.GroupBy != "":
			b.WriteString("no " + u.GroupBy + ": ")
		}
		fmt.Fprintf(&b, "%s, %s (%d prompt", count(t.Requests, "request"), count(t.TotalTokens, "token"), t.PromptTokens)
		var cache []string
		if t.CachedTokens > 0 {
			cache = append(cache, fmt.Sprintf("%d cached", t.CachedTokens))
		}
		if t.CacheWriteTokens > 0 {
			cache = append(cache, fmt.Sprintf("%d written to the cache", t.CacheWriteTokens))
		}
		if len(cache) > 0 {
			b.WriteString(" of which " + strings.Join(cache, " and "))
		}
		fmt.Fprintf(&b, ", %d completion", t.CompletionTokens)
		if t.ReasoningTokens > 0 {
			fmt.Fprintf(&b, " of which %d reasoning", t.ReasoningTokens)
		}
		b.WriteString(")")
	}
	return b.String()
}
