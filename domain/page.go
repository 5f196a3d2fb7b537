package domain

import (
	"encoding/base64"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Page limits for every list.
const (
	DefaultPageLimit = 20
	MaxPageLimit     = 100
)

// Page selects one page of a list ordered by id (the order of creation):
// up to Limit items whose id is greater than After, or with Desc, the most
// recently created first, less than After.
// Stores return up to Limit+1 items so that the service can tell whether
// another page follows.
type Page struct {
	Limit int
	After string
	Desc  bool
}

// The values of a list's order parameter.
const (
	OrderAsc  = "asc"
	OrderDesc = "desc"
)

// descMark starts a cursor of a list in descending order (see paginate),
// so that its next pages keep the order without order being sent again,
// and a cursor is not read in the other order, which would page back
// over what was listed.
const descMark = "-"

// ParsePage validates the limit, cursor and order query parameters of a
// list. An empty limit means DefaultPageLimit; an empty order is the
// cursor's, or ascending.
func ParsePage(limit, cursor, order string) (Page, error) {
	p := Page{Limit: DefaultPageLimit}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > MaxPageLimit {
			return p, Invalidf("limit", "limit must be an integer from 1 to %d", MaxPageLimit)
		}
		p.Limit = n
	}
	switch order {
	case "", OrderAsc:
	case OrderDesc:
		p.Desc = true
	default:
		return p, Invalidf("order", "order must be %s (in the order created, the default) or %s (the most recently created first)", OrderAsc, OrderDesc)
	}
	if cursor != "" {
		// A cursor is the last id of a page (see paginate); anything else
		// would page past every item and answer an empty page as the end.
		after, err := base64.RawURLEncoding.DecodeString(cursor)
		rest, desc := strings.CutPrefix(string(after), descMark)
		if err != nil || !(validAnyID(rest) || validScopedCursor(rest) || validSeqCursor(rest) || validUsageCursor(rest)) {
			return p, Invalidf("cursor", "cursor is not valid; pass the nextCursor of the previous page unchanged")
		}
		if order != "" && desc != p.Desc {
			return p, Invalidf("order", "the cursor is of this list in the other order; send the order of its first page, or leave order out")
		}
		p.After, p.Desc = rest, desc
	}
	return p, nil
}

// beyond reports whether id comes after the page's cursor in its order,
// for a list of one held outside the store.
func (p Page) beyond(id string) bool {
	if p.After == "" {
		return true
	}
	if p.Desc {
		return id < p.After
	}
	return id > p.After
}

// normalize applies the default limit to a zero Page (MCP callers and
// internal callers may leave it out) and caps it. It also checks that the
// cursor came from a list of the same kind, whose ids carry prefix: a
// cursor from another list would answer a wrong page, or an empty one that
// looks like the end.
func (p Page) normalize(prefix string) (Page, error) {
	if p.After != "" && !validID(prefix, p.After) {
		return p, foreignCursor()
	}
	return p.limited(), nil
}

// normalizeIn is normalize for a list that scope narrows: the id of the
// project or chat named by its filter or its path, "" for none. Its
// cursors carry the scope (cursorIn): one of the same kind of list with
// another scope would answer this scope's items after the cursor's id,
// skipping the earlier ones, as a page that looks right.
func (p Page) normalizeIn(prefix, scope string) (Page, error) {
	if p.After == "" {
		return p.limited(), nil
	}
	id, in, _ := strings.Cut(p.After, ":")
	if in != scope || !validID(prefix, id) {
		return p, foreignCursor()
	}
	p.After = id
	return p.limited(), nil
}

// cursorIn returns paginate's id function for a list normalizeIn
// checked: the item's id, then ":" and the scope when there is one.
func cursorIn[T any](scope string, id func(T) string) func(T) string {
	if scope == "" {
		return id
	}
	return func(v T) string { return id(v) + ":" + scope }
}

// validScopedCursor reports whether s is a cursor cursorIn writes with a
// scope: two ids.
func validScopedCursor(s string) bool {
	id, scope, ok := strings.Cut(s, ":")
	return ok && validAnyID(id) && validAnyID(scope)
}

// limited applies the default limit to a zero Page and caps it.
func (p Page) limited() Page {
	if p.Limit <= 0 {
		p.Limit = DefaultPageLimit
	}
	if p.Limit > MaxPageLimit {
		p.Limit = MaxPageLimit
	}
	return p
}

func foreignCursor() error {
	return Invalidf("cursor", "cursor belongs to another list (another kind, or the same kind of another project, chat or conversation); pass the nextCursor of the previous page of this list unchanged")
}

// A conversation's messages are ordered by seq, not by id, so their
// cursor is the conversation's id, ":" and the seq of the page's last
// message. The id makes a cursor of another conversation's messages one of
// another list, rather than a seq that would skip this one's first
// messages.
func seqCursorOf(m Message) string { return m.ConversationID + ":" + strconv.Itoa(m.Seq) }

// validSeqCursor reports whether s is a message list's cursor.
func validSeqCursor(s string) bool {
	_, _, ok := parseSeqCursor(s)
	return ok
}

// parseSeqCursor returns the conversation and seq of a message list's
// cursor, as seqCursorOf writes it: a seq no message can have is not one.
func parseSeqCursor(s string) (conversationID string, seq int, ok bool) {
	id, digits, ok := strings.Cut(s, ":")
	if !ok || !validID(PrefixConversation, id) {
		return "", 0, false
	}
	n, err := strconv.Atoi(digits)
	return id, n, err == nil && n >= 0 && n <= maxSeq && strconv.Itoa(n) == digits
}

// maxSeq is the largest seq a message can have: PostgreSQL keeps seq in an
// integer (32 bits), which refuses a larger number even to compare with.
const maxSeq = math.MaxInt32

// normalizeSeq is normalize for the messages of conversationID, ordered by
// seq: it also returns the seq its cursor names, -1 when it has none.
func (p Page) normalizeSeq(conversationID string) (Page, int, error) {
	after := -1
	if p.After != "" {
		id, n, ok := parseSeqCursor(p.After)
		if !ok || id != conversationID {
			return p, 0, foreignCursor()
		}
		after = n
	}
	return p.limited(), after, nil
}

// List is one page of results and the cursor of the next, "" on the last page.
type List[T any] struct {
	Items      []T
	NextCursor string
}

// maxPageBytes bounds the text of one page of a list whose items can be
// large (a chat's system message is up to 1 MiB, a message up to a
// turn's maxTurnBytes): a page of them ends early, with a cursor, once
// its items' text as JSON (jsonBytes) passes it. Without it a page of 100
// chats was read, held and answered at 100 MiB. It is counted as JSON
// because that is what goes out, up to six times the text: an MCP result
// holds 12 MiB (mcp's maxResultBytes), and a page of two 2 MiB messages
// of HTML, 4 MiB of text, was 24 MiB as JSON.
const maxPageBytes = 4 << 20

// jsonBytes is the length of s as a JSON string (quotes included) as
// encoding/json's Marshal writes it, which mcp-go answers with: <, > and
// &, control characters, U+2028 and U+2029 take six bytes (\u003c), a
// quote, a backslash and \n, \r, \t, \b, \f two, each byte of invalid
// UTF-8 three (U+FFFD). REST leaves <, > and & as they are: a page is
// bounded as the larger of the two.
func jsonBytes(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\', '\n', '\r', '\t', '\b', '\f':
				n += 2
			case '<', '>', '&':
				n += 6
			default:
				if c < 0x20 {
					n += 6
				} else {
					n++
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			n += 3 // U+FFFD
		case r == '\u2028' || r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

// firstBatch is the items readPage reads first, before it knows their
// size: four chats of 1 MiB are about a page.
const firstBatch = 4

// readPage reads up to p.Limit+1 items, as a store does for paginate, in
// batches sized so that it reads about what it answers: the first of
// firstBatch items, each next one of as many as the bytes left of
// maxPageBytes would hold at the largest item's size yet (the rest of the
// page, for small items: two reads). read returns n items after
// last (nil: from p's cursor), fewer at the list's end; size is an item's
// text in bytes. readPage also returns the page paginate is to cut at: p,
// or a smaller limit when the items passed maxPageBytes (one item at
// least).
func readPage[T any](p Page, size func(T) int, read func(last *T, n int) ([]T, error)) ([]T, Page, error) {
	var items []T
	var last *T
	used, largest := 0, 1
	n := min(p.Limit+1, firstBatch)
	for {
		got, err := read(last, n)
		if err != nil {
			return nil, p, err
		}
		for _, it := range got {
			b := size(it)
			if len(items) > 0 && used+b > maxPageBytes {
				// it starts the next page
				return append(items, it), Page{Limit: len(items), After: p.After, Desc: p.Desc}, nil
			}
			items = append(items, it)
			used, largest = used+b, max(largest, b)
			if len(items) > p.Limit {
				return items, p, nil
			}
		}
		if len(got) < n {
			return items, p, nil // the list's end
		}
		last = &items[len(items)-1]
		n = min(p.Limit+1-len(items), max(1, (maxPageBytes-used)/largest))
	}
}

// paginate trims the Limit+1 items a store returned to one page and makes
// the cursor from the last item kept, marked when the list is newest first.
func paginate[T any](items []T, p Page, id func(T) string) List[T] {
	if len(items) <= p.Limit {
		return List[T]{Items: items}
	}
	items = items[:p.Limit]
	last := id(items[len(items)-1])
	if p.Desc {
		last = descMark + last
	}
	return List[T]{Items: items, NextCursor: base64.RawURLEncoding.EncodeToString([]byte(last))}
}
