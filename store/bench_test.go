package store_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// The writes every completion makes: its turn, on the hot path, and its
// usage record, in batches off it. `make bench-go` runs these; compare
// runs with benchstat.

// eachDB runs b on SQLite and, when a server is configured, PostgreSQL.
func eachDB(b *testing.B, body func(b *testing.B, s *store.Store)) {
	b.Run("sqlite", func(b *testing.B) { body(b, dbtest.SQLite(b)) })
	b.Run("postgres", func(b *testing.B) { body(b, dbtest.Postgres(b)) })
}

// BenchmarkAppendTurn stores new conversations of one turn (the user's
// message and the reply), one at a time ("serial") and from many
// goroutines at once ("parallel", where turns share transactions).
func BenchmarkAppendTurn(b *testing.B) {
	eachDB(b, func(b *testing.B, s *store.Store) {
		w := newWorld(b, s)
		appendOne := func() error {
			now := time.Now()
			c := &domain.Conversation{ID: domain.NewID(domain.PrefixConversation), ProjectID: w.prjA.ID, ChatID: w.chatA.ID, CreatedAt: now, UpdatedAt: now}
			return s.AppendTurn(ctx(), c, true, turn(c.ID, 0, "How far is the moon from the earth, on average?"))
		}
		b.Run("serial", func(b *testing.B) {
			for b.Loop() {
				if err := appendOne(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("parallel", func(b *testing.B) {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := appendOne(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	})
}

// BenchmarkInsertUsage stores batches of usage records, the size the
// usage batcher writes at about 1,000 completions a second; the figure is
// per record.
func BenchmarkInsertUsage(b *testing.B) {
	const batch = 200
	eachDB(b, func(b *testing.B, s *store.Store) {
		w := newWorld(b, s)
		records := make([]domain.UsageRecord, batch)
		b.ResetTimer()
		for i := 0; i < b.N; i += batch {
			now := time.Now()
			for j := range records {
				records[j] = domain.UsageRecord{
					ID: domain.NewID(domain.PrefixMessage), ProjectID: w.prjA.ID, ChatID: w.chatA.ID, ConversationID: domain.NewID(domain.PrefixConversation),
					AIProviderID: w.provA.ID, Model: "gpt-4o-mini", UserID: w.alice.ID, KeyID: w.aliceKey.ID,
					Usage:   domain.Usage{PromptTokens: 12, CompletionTokens: 30, TotalTokens: 42},
					Latency: 900 * time.Millisecond, TimeToFirst: 200 * time.Millisecond, Outcome: domain.OutcomeOK, CreatedAt: now,
				}
			}
			if err := s.InsertUsage(ctx(), records); err != nil {
				b.Fatal(fmt.Errorf("batch at %d: %w", i, err))
			}
		}
	})
}

// BenchmarkListAsMember reads the first page of a member's chats and
// conversations, with no project or chat named, where another project
// holds many rows of each ("member"); the baseline reads the same rows
// through the member's one project or chat ("named"). A page costs what
// the member's rows do when the two are close, whatever other tenants
// store.
func BenchmarkListAsMember(b *testing.B) {
	const others = 20000
	eachDB(b, func(b *testing.B, s *store.Store) {
		w := newWorld(b, s)
		for range 3 {
			newChat(b, s, w.provA)
			c := newConversation(w.chatA)
			must(b, s.AppendTurn(ctx(), c, true, turn(c.ID, 0, "hello")))
		}
		for i := 0; i < others; i += 500 {
			turns := make([]store.TurnForTest, 500)
			chats := make([]domain.Chat, 500)
			for j := range turns {
				c := newConversation(w.chatB)
				turns[j] = store.TurnForTest{Conv: c, Create: true, Msgs: turn(c.ID, 0, "hello")}
				chats[j] = domain.Chat{ID: domain.NewID(domain.PrefixChat), ProjectID: w.prjB.ID, AIProviderID: w.provB.ID, Name: "other", Model: "gpt-4o", CreatedAt: t0, UpdatedAt: t0}
			}
			must(b, s.AppendTurnBatch(ctx(), turns))
			must(b, s.CreateChatsForTest(ctx(), chats))
		}
		page := domain.Page{Limit: domain.DefaultPageLimit}
		for _, bc := range []struct {
			name string
			list func() (int, error)
		}{
			{"chats/member", func() (int, error) {
				l, err := s.ListChats(ctx(), domain.ChatFilter{MemberUserID: w.alice.ID, Page: page})
				return len(l), err
			}},
			{"chats/named", func() (int, error) {
				l, err := s.ListChats(ctx(), domain.ChatFilter{ProjectID: w.prjA.ID, MemberUserID: w.alice.ID, Page: page})
				return len(l), err
			}},
			{"conversations/member", func() (int, error) {
				l, err := s.ListConversations(ctx(), domain.ConversationFilter{MemberUserID: w.alice.ID, Page: page})
				return len(l), err
			}},
			{"conversations/named", func() (int, error) {
				l, err := s.ListConversations(ctx(), domain.ConversationFilter{ChatID: w.chatA.ID, MemberUserID: w.alice.ID, Page: page})
				return len(l), err
			}},
		} {
			b.Run(bc.name, func(b *testing.B) {
				for b.Loop() {
					if n, err := bc.list(); err != nil || n == 0 {
						b.Fatalf("%d rows, %v", n, err)
					}
				}
			})
		}
	})
}

// BenchmarkDocumentIDsNamed finds a document by its name ("named", as a
// completion's names do) in a project of 10,000 documents; the baseline
// reads one by its id ("by-id", as dataSources do), whole.
func BenchmarkDocumentIDsNamed(b *testing.B) {
	const docs = 10000
	eachDB(b, func(b *testing.B, s *store.Store) {
		w := newWorld(b, s)
		content := strings.Repeat("a line of a document of the project\n", 28) // 1 KB
		var last domain.Document
		for i := range docs {
			last = domain.Document{ID: domain.NewID(domain.PrefixDocument), ProjectID: w.prjA.ID, Name: fmt.Sprintf("notes-%05d.md", i),
				Content: content, MimeType: "text/markdown", CreatedAt: t0, UpdatedAt: t0}
			must(b, s.CreateDocument(ctx(), &last))
		}
		b.Run("named", func(b *testing.B) {
			for b.Loop() {
				if ids, err := s.DocumentIDsNamed(ctx(), w.prjA.ID, last.Name, 2); err != nil || len(ids) != 1 {
					b.Fatalf("%v, %v", ids, err)
				}
			}
		})
		b.Run("by-id", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.GetDocument(ctx(), last.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
