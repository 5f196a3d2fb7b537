package mcp

import (
	"context"
	"fmt"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/wire"
)

// documentSummaryOut is a document without its content, as
// list-documents gives it: a page of 100 documents of up to 4 MiB each
// would not fit an agent's context.
type documentSummaryOut struct {
	ID        string         `json:"id" desc:"Document id (doc_...)."`
	ProjectID string         `json:"projectId" desc:"Id of the project that owns the document."`
	Name      string         `json:"name" desc:"Document name."`
	MimeType  string         `json:"mimeType" desc:"Media type of the content, e.g. text/plain or text/markdown."`
	Bytes     int            `json:"bytes" desc:"Size of the content in bytes (UTF-8)."`
	Metadata  map[string]any `json:"metadata" desc:"Free-form metadata; an empty object when none."`
	CreatedAt string         `json:"createdAt" format:"date-time" desc:"When the document was created (ISO 8601 UTC)."`
	UpdatedAt string         `json:"updatedAt" format:"date-time" desc:"When the document was last changed (ISO 8601 UTC)."`
}

// documentOut is the REST document resource, content included.
type documentOut struct {
	documentSummaryOut
	Content string `json:"content" desc:"The document's text."`
}

func toDocumentSummaryOut(d *domain.DocumentSummary) documentSummaryOut {
	md := d.Metadata
	if md == nil {
		md = map[string]any{}
	}
	return documentSummaryOut{ID: d.ID, ProjectID: d.ProjectID, Name: d.Name, MimeType: d.MimeType, Bytes: d.Bytes,
		Metadata: md, CreatedAt: timestamp(d.CreatedAt), UpdatedAt: timestamp(d.UpdatedAt)}
}

func toDocumentOut(d *domain.Document) documentOut {
	sum := d.Summary()
	return documentOut{documentSummaryOut: toDocumentSummaryOut(&sum), Content: d.Content}
}

func documentLine(d documentSummaryOut) string {
	return fmt.Sprintf("%s %s (%s, %s) in project %s", d.ID, quote(d.Name), d.MimeType, count(d.Bytes, "byte"), d.ProjectID)
}

type createDocumentArgs struct {
	ProjectID string      `json:"projectId" desc:"Id of the project to add the document to (prj_...)."`
	Name      string      `json:"name" min:"1" max:"200" desc:"Document name. Completions' names pick documents by it, and refuse a name two documents share: to change a document, use update-document rather than creating another of the same name."`
	Content   string      `json:"content" min:"1" desc:"The document's text (at most 4 MiB)."`
	MimeType  string      `json:"mimeType,omitempty" max:"255" desc:"Media type of the content; default text/plain."`
	Metadata  wire.Object `json:"metadata,omitempty" desc:"Free-form metadata object: at most 32 levels deep and 64 KiB as JSON."`
}

func createDocument(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[createDocumentArgs, documentSummaryOut]("create-document", "Create a document",
			"Add a document to a project. A completion then takes it as context with dataSources [{\"id\": ...}] (or names, by its name, which must be the project's only document of that name), or as a message's text with documentId. Needs the editor role. The result is the document without its content, which you sent (get-document reads it).", createHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in createDocumentArgs) (documentSummaryOut, error) {
			doc, err := d.svcs.Documents.Create(ctx, domain.DocumentCreate{ProjectID: in.ProjectID, Name: in.Name,
				Content: in.Content, MimeType: in.MimeType, Metadata: in.Metadata})
			if err != nil {
				return documentSummaryOut{}, err
			}
			sum := doc.Summary()
			return toDocumentSummaryOut(&sum), nil
		}, func(o documentSummaryOut) string { return "Created document " + documentLine(o) })
}

type listDocumentsArgs struct {
	ProjectID string `json:"projectId,omitempty" desc:"Only documents of this project (prj_...); omit for every project you can see."`
	pageArgs
}

func listDocuments(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[listDocumentsArgs, listOut[documentSummaryOut]]("list-documents", "List documents",
			"List the documents of a project, or of every project you can see: their names, media types, sizes and metadata, "+
				"without their content (use get-document for a document's text).", readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in listDocumentsArgs) (listOut[documentSummaryOut], error) {
			pg, err := in.page()
			if err != nil {
				return listOut[documentSummaryOut]{}, err
			}
			l, err := d.svcs.Documents.List(ctx, domain.ListInput{ProjectID: in.ProjectID, Page: pg})
			if err != nil {
				return listOut[documentSummaryOut]{}, err
			}
			return toList(l, toDocumentSummaryOut), nil
		}, func(l listOut[documentSummaryOut]) string { return listText("document", l, documentLine) })
}

type documentIDArgs struct {
	DocumentID string `json:"documentId" desc:"Id of the document (doc_...)."`
}

func getDocument(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[documentIDArgs, documentOut]("get-document", "Get a document",
			"Get a document by id, with its content.", readHints),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in documentIDArgs) (documentOut, error) {
			doc, err := d.svcs.Documents.Get(ctx, in.DocumentID)
			if err != nil {
				return documentOut{}, err
			}
			return toDocumentOut(doc), nil
		}, func(o documentOut) string {
			return "Document " + documentLine(o.documentSummaryOut) + ":\n" + o.Content
		})
}

type updateDocumentArgs struct {
	DocumentID string      `json:"documentId" desc:"Id of the document to change (doc_...)."`
	Name       *string     `json:"name,omitempty" min:"1" max:"200" desc:"New name."`
	Content    *string     `json:"content,omitempty" min:"1" desc:"New text (at most 4 MiB). Conversations that used the document keep the text they sent."`
	MimeType   *string     `json:"mimeType,omitempty" max:"255" desc:"New media type; an empty string resets it to text/plain."`
	Metadata   wire.Object `json:"metadata,omitempty" desc:"New metadata object, replacing the old one whole (at most 32 levels deep and 64 KiB as JSON); {} clears it."`
}

func updateDocument(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return newTool[updateDocumentArgs, documentSummaryOut]("update-document", "Update a document",
			"Change a document's name, content, media type or metadata; fields left out stay as they are. "+
				"Later completion messages that reference it send the new content. Needs the editor role. "+
				"The result is the document without its content (get-document reads it).",
			hints{destructive: true, idempotent: true}),
		handle(d, func(ctx context.Context, _ mcpgo.CallToolRequest, in updateDocumentArgs) (documentSummaryOut, error) {
			doc, err := d.svcs.Documents.Update(ctx, in.DocumentID, domain.DocumentUpdate{Name: in.Name, Content: in.Content,
				MimeType: in.MimeType, Metadata: in.Metadata})
			if err != nil {
				return documentSummaryOut{}, err
			}
			sum := doc.Summary()
			return toDocumentSummaryOut(&sum), nil
		}, func(o documentSummaryOut) string { return "Updated document " + documentLine(o) })
}

func deleteDocument(d deps) (mcpgo.Tool, server.ToolHandlerFunc) {
	return deleteTool(d, "delete-document", "Delete a document",
		"Delete a document. This cannot be undone. Conversations that used it keep the text they sent. Needs the editor role.", "document",
		func(in documentIDArgs) string { return in.DocumentID }, d.svcs.Documents.Delete)
}
