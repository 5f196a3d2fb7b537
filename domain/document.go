package domain

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"mime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Document is a piece of project knowledge a message can reference by id.
type Document struct {
	ID        string
	ProjectID string
	Name      string
	Content   string
	MimeType  string
	Metadata  map[string]any
	CreatedAt time.Time
	UpdatedAt time.Time
}

// DocumentSummary is a document without its content, as lists give it:
// a page holds up to 100 documents of up to 4 MiB each, too much for one
// response or an agent's context. Bytes is the content's size in bytes
// (UTF-8); get the document for the content itself.
type DocumentSummary struct {
	ID        string
	ProjectID string
	Name      string
	MimeType  string
	Metadata  map[string]any
	Bytes     int
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Summary is d without its content.
func (d *Document) Summary() DocumentSummary {
	return DocumentSummary{ID: d.ID, ProjectID: d.ProjectID, Name: d.Name, MimeType: d.MimeType, Metadata: d.Metadata,
		Bytes: len(d.Content), CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
}

// DocumentFilter selects documents to list.
type DocumentFilter struct {
	ProjectID    string
	MemberUserID string
	Page         Page
}

// DocumentStore keeps documents.
type DocumentStore interface {
	// CreateDocument inserts d; Conflict when its id exists, NotFound when
	// its project does not.
	CreateDocument(ctx context.Context, d *Document) error
	// GetDocument returns NotFound when id does not exist.
	GetDocument(ctx context.Context, id string) (*Document, error)
	// ListDocuments returns the documents f selects without their content,
	// which it does not read: a page of 100 would read up to 400 MiB.
	ListDocuments(ctx context.Context, f DocumentFilter) ([]DocumentSummary, error)
	// UpdateDocument saves every field of d, provided the stored
	// document's updatedAt is still prev (a zero prev: whatever it is);
	// NotFound when absent, StaleUpdate when another write came first.
	UpdateDocument(ctx context.Context, d *Document, prev time.Time) error
	// DeleteDocument deletes it; NotFound when absent. Messages that
	// referenced it keep their copy of its content.
	DeleteDocument(ctx context.Context, id string) error
	// DocumentIDsNamed returns the ids of project projectID's documents
	// named name, at most limit, ordered by id.
	DocumentIDsNamed(ctx context.Context, projectID, name string, limit int) ([]string, error)
}

// maxDocumentBytes caps a document's content; the request body limit
// (8 MiB by default) applies first.
const maxDocumentBytes = 4 << 20

// maxMetadataDepth caps how deep a document's metadata nests. Every member
// of the project reads it in each list of documents, and common JSON
// parsers give up on deep nesting (Ruby's at 100 levels, jq 1.6's at 256,
// Python's near 1,000): one document must not make the list unreadable.
const maxMetadataDepth = 32

// maxMetadataBytes caps a document's metadata, as compact JSON. A list of
// documents gives every document's metadata but no content, so metadata
// must not be where a document's bulk goes: a page of 100 is at most
// 6.4 MiB of it.
const maxMetadataBytes = 64 << 10

// Documents manages project documents.
type Documents struct {
	store  Store
	access access
	now    func() time.Time
}

// DocumentCreate is the input of Documents.Create.
type DocumentCreate struct {
	ProjectID string
	Name      string
	Content   string
	MimeType  string
	Metadata  map[string]any
}

// DocumentUpdate changes the fields that are not nil.
type DocumentUpdate struct {
	Name     *string
	Content  *string
	MimeType *string
	Metadata map[string]any // nil leaves it; an empty map clears it
}

// validateDocument checks d, created or, from before, updated (before is
// nil on create).
func validateDocument(d, before *Document) error {
	var was *string
	if before != nil {
		was = &before.Name
	}
	if err := checkUpdatedName("name", d.Name, true, was); err != nil {
		return err
	}
	if len(d.Content) > maxDocumentBytes {
		e := Errorf(TooLarge, "content is %d bytes; the limit is %d (4 MiB)", len(d.Content), maxDocumentBytes)
		e.Details = map[string]any{"field": "content"}
		return e
	}
	if err := checkText("content", d.Content, true, maxDocumentBytes); err != nil {
		return err
	}
	if d.MimeType = strings.TrimSpace(d.MimeType); d.MimeType == "" {
		d.MimeType = "text/plain"
	}
	if err := checkText("mimeType", d.MimeType, false, 255); err != nil {
		return err
	}
	if _, _, err := mime.ParseMediaType(d.MimeType); err != nil || !strings.Contains(d.MimeType, "/") {
		return Invalidf("mimeType", "mimeType must be a media type such as text/markdown or text/plain; charset=utf-8")
	}
	// ParseMediaType skips any white space between parameters, a line
	// break too; but a client serves the document with its mimeType as a
	// Content-Type header, which no line break or other control character
	// may be in (HTTP allows spaces and tabs there).
	if strings.ContainsFunc(d.MimeType, func(r rune) bool { return unicode.IsControl(r) && r != '\t' }) {
		return Invalidf("mimeType", "mimeType must not contain a line break or another control character; put its parameters on one line: text/plain; charset=utf-8")
	}
	if jsonDepth(d.Metadata, maxMetadataDepth+1) > maxMetadataDepth {
		return Invalidf("metadata", "metadata nests more than %d levels of objects and arrays; the limit is %d, so flatten it", maxMetadataDepth, maxMetadataDepth)
	}
	if at := numberPastFloat64(d.Metadata, "metadata"); at != "" {
		return Invalidf("metadata", "%s is a number beyond what a 64-bit float holds (about ±1.8e308), which many JSON parsers refuse, so every list of the project's documents would fail to parse for them; send it as a string", at)
	}
	n, err := jsonSize(d.Metadata)
	if err != nil {
		return Invalidf("metadata", "metadata cannot be written as JSON: %v", err)
	}
	if n > maxMetadataBytes {
		return Invalidf("metadata", "metadata is %d bytes as JSON; the limit is %d (64 KiB), so keep large data in the content", n, maxMetadataBytes)
	}
	return nil
}

// noMembersIsNone returns nil for metadata without members: a document
// shows none as {}, so {} sent back (by a client that writes what it
// read) must compare equal to none, not change the document.
func noMembersIsNone(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	return m
}

// numberPastFloat64 returns the path (metadata.list[2]) of the first
// number in v, in key order, that a 64-bit float cannot hold (1e400): Go's
// encoding/json and Rust's serde_json, among others, refuse the whole
// document it is in. "" when there is none. v nests at most
// maxMetadataDepth levels (checked before).
func numberPastFloat64(v any, path string) string {
	switch v := v.(type) {
	case json.Number:
		if f, err := strconv.ParseFloat(string(v), 64); errors.Is(err, strconv.ErrRange) && math.IsInf(f, 0) {
			return path // an overflow, not a number too small, which reads as 0
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if at := numberPastFloat64(v[k], path+"."+k); at != "" {
				return at
			}
		}
	case []any:
		for i, e := range v {
			if at := numberPastFloat64(e, path+"["+strconv.Itoa(i)+"]"); at != "" {
				return at
			}
		}
	}
	return ""
}

// jsonSize is the size of v as compact JSON with no HTML escapes, as
// JavaScript's JSON.stringify writes it.
func jsonSize(v any) (int, error) {
	var n byteCounter
	enc := json.NewEncoder(&n)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return 0, err
	}
	return int(n) - 1, nil // Encode ends with a newline
}

// byteCounter is an io.Writer that counts what it is given.
type byteCounter int

func (c *byteCounter) Write(p []byte) (int, error) {
	*c += byteCounter(len(p))
	return len(p), nil
}

// jsonDepth is how many levels of objects and arrays v nests (an object of
// scalars is 1), counted no further than limit.
func jsonDepth(v any, limit int) int {
	deepest := 0
	visit := func(k any) {
		if limit > 1 {
			deepest = max(deepest, jsonDepth(k, limit-1))
		}
	}
	switch v := v.(type) {
	case map[string]any:
		for _, k := range v {
			visit(k)
		}
	case []any:
		for _, k := range v {
			visit(k)
		}
	default:
		return 0
	}
	return 1 + deepest
}

// Create adds a document to a project (editor).
func (s *Documents) Create(ctx context.Context, in DocumentCreate) (*Document, error) {
	if err := checkRef("projectId", PrefixProject, in.ProjectID); err != nil {
		return nil, err
	}
	if err := s.access.checkProject(ctx, in.ProjectID, PermCreateDocument); err != nil {
		return nil, err
	}
	now := s.now()
	d := &Document{ID: NewID(PrefixDocument), ProjectID: in.ProjectID, Name: trimRequired(in.Name), Content: in.Content,
		MimeType: in.MimeType, Metadata: noMembersIsNone(in.Metadata), CreatedAt: now, UpdatedAt: now}
	if err := validateDocument(d, nil); err != nil {
		return nil, err
	}
	if err := s.store.CreateDocument(ctx, d); err != nil {
		return nil, Wrap("documents.Create", err)
	}
	return d, nil
}

// Get returns a document the caller can see.
func (s *Documents) Get(ctx context.Context, id string) (*Document, error) {
	d, err := lookup(ctx, PrefixDocument, "document", id, s.store.GetDocument)
	if err != nil {
		return nil, err
	}
	if err := s.access.check(ctx, d.ProjectID, PermGetDocument, "document", id); err != nil {
		return nil, err
	}
	return d, nil
}

// List returns documents of the projects the caller can see, without
// their content (see DocumentSummary); Get gives a document's content.
func (s *Documents) List(ctx context.Context, in ListInput) (List[DocumentSummary], error) {
	member, err := s.access.listScope(ctx, in.ProjectID, PermListDocuments)
	if err != nil {
		return List[DocumentSummary]{}, err
	}
	page, err := in.Page.normalizeIn(PrefixDocument, in.ProjectID)
	if err != nil {
		return List[DocumentSummary]{}, err
	}
	items, err := s.store.ListDocuments(ctx, DocumentFilter{ProjectID: in.ProjectID, MemberUserID: member, Page: page})
	if err != nil {
		return List[DocumentSummary]{}, Wrap("documents.List", err)
	}
	return paginate(items, page, cursorIn(in.ProjectID, func(d DocumentSummary) string { return d.ID })), nil
}

// Update changes the fields of a document that in sets (editor), on top of
// any write that came first (untilFresh).
func (s *Documents) Update(ctx context.Context, id string, in DocumentUpdate) (*Document, error) {
	return untilFresh(func() (*Document, error) { return s.update(ctx, id, in) })
}

func (s *Documents) update(ctx context.Context, id string, in DocumentUpdate) (*Document, error) {
	d, err := lookup(ctx, PrefixDocument, "document", id, s.store.GetDocument)
	if err != nil {
		return nil, err
	}
	if err := s.access.check(ctx, d.ProjectID, PermUpdateDocument, "document", id); err != nil {
		return nil, err
	}
	d.Metadata = noMembersIsNone(d.Metadata) // a row may hold {} as well as null
	before := *d
	if err := cmp.Or(emptyWhenSent("name", in.Name, "document"), emptyWhenSent("content", in.Content, "document")); err != nil {
		return nil, err
	}
	if in.Name != nil {
		d.Name = trimRequired(*in.Name)
	}
	if in.Content != nil {
		d.Content = *in.Content
	}
	if in.MimeType != nil {
		d.MimeType = *in.MimeType
	}
	if in.Metadata != nil {
		d.Metadata = noMembersIsNone(in.Metadata)
	}
	if err := validateDocument(d, &before); err != nil {
		return nil, err
	}
	if unchanged(before, d) {
		return d, nil
	}
	d.UpdatedAt = s.now()
	if err := s.store.UpdateDocument(ctx, d, before.UpdatedAt); err != nil {
		return nil, Wrap("documents.Update", err)
	}
	return d, nil
}

// Delete removes a document (editor).
func (s *Documents) Delete(ctx context.Context, id string) error {
	d, err := lookup(ctx, PrefixDocument, "document", id, s.store.GetDocument)
	if err != nil {
		return err
	}
	if err := s.access.check(ctx, d.ProjectID, PermDeleteDocument, "document", id); err != nil {
		return err
	}
	return Wrap("documents.Delete", s.store.DeleteDocument(ctx, id))
}
