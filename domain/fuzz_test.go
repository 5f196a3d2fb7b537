package domain

import (
	"encoding/base64"
	"testing"
	"unicode/utf8"
)

// FuzzParsePage drives ParsePage, which reads the limit and cursor of
// every list (REST's query, MCP's arguments), and the cursor checks the
// lists then make. A page it takes has a limit from 1 to MaxPageLimit; its
// cursor is one of the forms the lists write, which each reads back as
// written (the id, the scoped id, the message seq, the usage report);
// a refusal is Invalid naming limit or cursor.
func FuzzParsePage(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	id := NewID(PrefixConversation)
	prj := NewID(PrefixProject)
	for _, s := range [][2]string{
		{"", ""}, {"20", ""}, {"0", ""}, {"101", ""}, {"+5", ""}, {"05", ""}, {" 5", ""},
		{"", enc([]byte(id))}, {"", enc([]byte(id + ":" + prj))}, {"", enc([]byte(id + ":17"))}, {"", enc([]byte(id + ":017"))},
		{"", enc([]byte("usage:" + prj + ":model:0:1000:gpt-4o"))}, {"", enc([]byte("usage:" + prj + ":day:0:1000:a:b"))},
		{"", enc([]byte("usage:" + prj + ":day:1000:0:"))}, {"", "!!"}, {"", id}, {"", enc([]byte(id)) + "\n"},
		{"", enc([]byte(descMark + id))}, {"", enc([]byte(descMark + id + ":17"))},
	} {
		f.Add(s[0], s[1], "")
	}
	f.Add("", enc([]byte(descMark+id)), "desc")
	f.Add("", enc([]byte(descMark+id)), "asc")
	f.Add("5", "", "DESC")
	f.Fuzz(func(t *testing.T, limit, cursor, order string) {
		p, err := ParsePage(limit, cursor, order)
		if err != nil {
			if KindOf(err) != Invalid {
				t.Fatalf("ParsePage(%q, %q, %q): %v, not Invalid", limit, cursor, order, err)
			}
			if f := DetailsOf(err)["field"]; f != "limit" && f != "cursor" && f != "order" {
				t.Fatalf("ParsePage(%q, %q, %q) names %v", limit, cursor, order, f)
			}
			return
		}
		if p.Limit < 1 || p.Limit > MaxPageLimit {
			t.Fatalf("ParsePage(%q, %q, %q).Limit = %d", limit, cursor, order, p.Limit)
		}
		if order != "" && p.Desc != (order == OrderDesc) {
			t.Fatalf("ParsePage(%q, %q, %q): Desc %v", limit, cursor, order, p.Desc)
		}
		if p.After == "" {
			return
		}
		if !utf8.ValidString(p.After) {
			t.Fatalf("cursor %q names %q, not UTF-8", cursor, p.After)
		}
		// Each list's check reads it back as the lists write it.
		written := map[string]bool{}
		if validAnyID(p.After) {
			written[p.After] = true
		}
		if id, scope, ok := splitScoped(p.After); ok {
			written[id+":"+scope] = true
		}
		if cid, seq, ok := parseSeqCursor(p.After); ok {
			written[seqCursorOf(Message{ConversationID: cid, Seq: seq})] = true
			if q, n, err := p.normalizeSeq(cid); err != nil || n != seq || q.After != p.After {
				t.Fatalf("normalizeSeq(%q) = %v, %d, %v", p.After, q, n, err)
			}
		}
		if c, ok := parseUsageCursor(p.After); ok {
			written[c.String()] = true
			if err := c.check(UsageInput{ProjectID: c.projectID, GroupBy: c.groupBy, From: c.from, To: c.to}); err != nil {
				t.Fatalf("usage cursor %q refused for its own report: %v", p.After, err)
			}
		}
		if len(written) != 1 || !written[p.After] {
			t.Fatalf("cursor %q (%q) is read as %v, not as itself", cursor, p.After, written)
		}
		// What the lists write of it (paginate), ParsePage takes again,
		// in the same order.
		last := p.After
		if p.Desc {
			last = descMark + last
		}
		again, err := ParsePage("", base64.RawURLEncoding.EncodeToString([]byte(last)), "")
		if err != nil || again.After != p.After || again.Desc != p.Desc {
			t.Fatalf("cursor %q written again reads %+v, %v", last, again, err)
		}
	})
}

func splitScoped(s string) (id, scope string, ok bool) {
	if !validScopedCursor(s) {
		return "", "", false
	}
	for i := range s {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}
