package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/internal/tcpproxy"
	"github.com/parleyhq/parley/migrations"
	"github.com/parleyhq/parley/store"
)

// The store contract suite: every test runs on SQLite and PostgreSQL, each
// on a fresh database (dbtest.Each).

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

func ctx() context.Context { return context.Background() }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErr checks that err has kind and, when msg is not "", that message.
func wantErr(t testing.TB, err error, kind domain.Kind, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil; want %s", kind)
	}
	if got, want := domain.KindOf(err), kind; got != want {
		t.Fatalf("kind of %v = %s; want %s", err, got, want)
	}
	if msg == "" {
		return
	}
	if got, want := domain.MessageOf(err), msg; got != want {
		t.Fatalf("message = %q; want %q", got, want)
	}
}

func equal[T any](t testing.TB, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

// sortedIDs returns ids in the order lists return them.
func sortedIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func ids[T any](items []T, id func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = id(it)
	}
	return out
}

// world is a small dataset: two users, each owning a project with a
// provider and a chat.
type world struct {
	alice, bob       *domain.User
	prjA, prjB       *domain.Project
	provA, provB     *domain.AIProvider
	chatA, chatB     *domain.Chat
	aliceKey, bobKey *domain.APIKey
}

func newUser(t testing.TB, s *store.Store, name string) *domain.User {
	t.Helper()
	u := &domain.User{ID: domain.NewID(domain.PrefixUser), Name: name, CreatedAt: t0}
	must(t, s.CreateUser(ctx(), u))
	return u
}

func newProject(t testing.TB, s *store.Store, owner *domain.User, name string) *domain.Project {
	t.Helper()
	p := &domain.Project{ID: domain.NewID(domain.PrefixProject), Name: name, Description: "about " + name, CreatedAt: t0, UpdatedAt: t0}
	must(t, s.CreateProject(ctx(), p, domain.Member{ProjectID: p.ID, UserID: owner.ID, Role: domain.RoleOwner, CreatedAt: t0, UpdatedAt: t0}))
	return p
}

func newProvider(t testing.TB, s *store.Store, p *domain.Project) *domain.AIProvider {
	t.Helper()
	ap := &domain.AIProvider{
		ID: domain.NewID(domain.PrefixProvider), ProjectID: p.ID, Name: "openai", Type: domain.ProviderOpenAI,
		DefaultModel: "gpt-4o-mini", APIKeyCiphertext: []byte{0, 1, 2, 255}, APIKeyKeyID: "k1", APIKeyHint: "sk-…abcd",
		CreatedAt: t0, UpdatedAt: t0,
	}
	must(t, s.CreateProvider(ctx(), ap))
	return ap
}

func newChat(t testing.TB, s *store.Store, ap *domain.AIProvider) *domain.Chat {
	t.Helper()
	c := &domain.Chat{
		ID: domain.NewID(domain.PrefixChat), ProjectID: ap.ProjectID, AIProviderID: ap.ID, Name: "helper",
		SystemMessage: "Be brief.", Model: "gpt-4o", CreatedAt: t0, UpdatedAt: t0,
	}
	must(t, s.CreateChat(ctx(), c))
	return c
}

func newKey(t testing.TB, s *store.Store, u *domain.User, secret string) *domain.APIKey {
	t.Helper()
	k := &domain.APIKey{ID: domain.NewID(domain.PrefixKey), UserID: u.ID, Name: "laptop", Hash: domain.HashAPIKey(secret), Hint: secret[:7], CreatedAt: t0}
	must(t, s.CreateAPIKey(ctx(), k))
	return k
}

// newConversation returns a conversation of chat made at t0, not yet
// stored (AppendTurn with create stores it).
func newConversation(chat *domain.Chat) *domain.Conversation {
	return &domain.Conversation{ID: domain.NewID(domain.PrefixConversation), ProjectID: chat.ProjectID, ChatID: chat.ID, CreatedAt: t0, UpdatedAt: t0}
}

func newWorld(t testing.TB, s *store.Store) *world {
	t.Helper()
	w := &world{alice: newUser(t, s, "alice"), bob: newUser(t, s, "bob")}
	w.prjA, w.prjB = newProject(t, s, w.alice, "a"), newProject(t, s, w.bob, "b")
	w.provA, w.provB = newProvider(t, s, w.prjA), newProvider(t, s, w.prjB)
	w.chatA, w.chatB = newChat(t, s, w.provA), newChat(t, s, w.provB)
	w.aliceKey, w.bobKey = newKey(t, s, w.alice, "pk_alice_secret"), newKey(t, s, w.bob, "pk_bob_secret")
	return w
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, dsn, file string
	}{
		{"sqlite scheme", "sqlite:" + filepath.Join(dir, "a", "b", "one.db"), filepath.Join(dir, "a", "b", "one.db")},
		{"sqlite url", "sqlite://" + filepath.Join(dir, "c", "two.db"), filepath.Join(dir, "c", "two.db")},
		{"plain path", filepath.Join(dir, "d", "three.db"), filepath.Join(dir, "d", "three.db")},
		{"memory", ":memory:", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A temporary directory of this test's own, so that other
			// processes' private databases do not change the count below.
			t.Setenv("TMPDIR", t.TempDir())
			s, err := store.Open(ctx(), tt.dsn)
			must(t, err)
			defer s.Close() // a no-op once closed below
			if got, want := s.Dialect(), store.SQLite; got != want {
				t.Fatalf("Dialect() = %q; want %q", got, want)
			}
			must(t, s.Migrate(ctx(), "up", nil))
			must(t, s.Ping(ctx()))
			if _, err := s.CountUsers(ctx()); err != nil {
				t.Fatal(err)
			}
			w := newWorld(t, s)
			c := newConversation(w.chatA)
			tctx, cancel := context.WithTimeout(ctx(), 5*time.Second)
			defer cancel()
			must(t, s.AppendTurn(tctx, c, true, turn(c.ID, 0, "hello")))
			if tt.file != "" {
				if _, err := os.Stat(tt.file); err != nil {
					t.Fatalf("database file: %v", err)
				}
			}
			// A private database leaves nothing behind.
			before, _ := filepath.Glob(filepath.Join(os.TempDir(), "parley-memory-*"))
			must(t, s.Close())
			after, _ := filepath.Glob(filepath.Join(os.TempDir(), "parley-memory-*"))
			if tt.dsn == ":memory:" && len(after) != len(before)-1 {
				t.Errorf("%d private database directories before Close, %d after; want one fewer", len(before), len(after))
			}
		})
	}
	t.Run("postgres", func(t *testing.T) {
		s := dbtest.Postgres(t)
		if got, want := s.Dialect(), store.Postgres; got != want {
			t.Fatalf("Dialect() = %q; want %q", got, want)
		}
		must(t, s.Ping(ctx()))
	})
	// The README tells operators to set session settings such as
	// synchronous_commit in the URL's query: they must reach the sessions
	// that write turns.
	t.Run("postgres url settings", func(t *testing.T) {
		u, err := url.Parse(dbtest.PostgresURL(t))
		must(t, err)
		q := u.Query()
		q.Set("synchronous_commit", "off")
		u.RawQuery = q.Encode()
		s, err := store.Open(ctx(), u.String())
		must(t, err)
		defer s.Close()
		w := newWorld(t, s)
		c := newConversation(w.chatA)
		must(t, s.AppendTurn(ctx(), c, true, turn(c.ID, 0, "hello")))
		// Hold several connections at once, so that more than the first
		// one the pool opened is asked.
		pool, err := s.DB().DB()
		must(t, err)
		var conns []*sql.Conn
		for range 3 {
			conn, err := pool.Conn(ctx())
			must(t, err)
			defer conn.Close()
			conns = append(conns, conn)
		}
		for i, conn := range conns {
			var got string
			must(t, conn.QueryRowContext(ctx(), "SHOW synchronous_commit").Scan(&got))
			if got != "off" {
				t.Errorf("connection %d: synchronous_commit = %q; want off, from the URL", i, got)
			}
		}
	})
}

// TestSQLiteTimeFormat pins how SQLite stores times: as text in SQLite's own
// format, which sorts as it compares (ranges and cursors compare it as text)
// and which SQLite's date functions read. Databases written by earlier
// versions hold this format, so a driver change must keep it.
func TestSQLiteTimeFormat(t *testing.T) {
	s := dbtest.SQLite(t)
	u := &domain.User{ID: domain.NewID(domain.PrefixUser), Name: "u", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 678000000, time.UTC)}
	must(t, s.CreateUser(ctx(), u))
	var raw string
	var viaSQLite sql.NullString // NULL when SQLite cannot read the text as a time
	must(t, s.DB().Raw("SELECT created_at || '', datetime(created_at) FROM users WHERE id = ?", u.ID).Row().Scan(&raw, &viaSQLite))
	if want := "2026-01-02 03:04:05.678+00:00"; raw != want {
		t.Errorf("stored created_at = %q; want %q", raw, want)
	}
	if want := "2026-01-02 03:04:05"; viaSQLite.String != want {
		t.Errorf("datetime(created_at) = %q (valid %t); want %q", viaSQLite.String, viaSQLite.Valid, want)
	}
	got, err := s.GetUser(ctx(), u.ID)
	must(t, err)
	if !got.CreatedAt.Equal(u.CreatedAt) {
		t.Errorf("read back created_at = %v; want %v", got.CreatedAt, u.CreatedAt)
	}

	// Turns and usage records go through the write connection
	// (sqliteWrite), not GORM: in the same format.
	w := newWorld(t, s)
	conv := newConversation(w.chatA)
	must(t, s.AppendTurn(ctx(), conv, true, turn(conv.ID, 0, "x")))
	must(t, s.InsertUsage(ctx(), []domain.UsageRecord{{ID: domain.NewID(domain.PrefixMessage), ProjectID: w.prjA.ID, CreatedAt: t0}}))
	rows, err := s.DB().Raw("SELECT created_at || '' FROM conversations UNION ALL SELECT updated_at || '' FROM conversations " +
		"UNION ALL SELECT created_at || '' FROM messages UNION ALL SELECT created_at || '' FROM usage_records").Rows()
	must(t, err)
	defer rows.Close()
	n := 0
	for ; rows.Next(); n++ {
		must(t, rows.Scan(&raw))
		if want := "2026-03-04 05:06:07.123456+00:00"; raw != want { // t0
			t.Errorf("a turn's or usage record's time stored as %q; want %q", raw, want)
		}
	}
	must(t, rows.Err())
	if n != 5 {
		t.Errorf("%d times read; want the conversation's two, the two messages' and the usage record's", n)
	}
}

func TestMigrate(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		var out bytes.Buffer
		must(t, s.Migrate(ctx(), "status", &out))
		if got, want := out.String(), "00001_init.sql"; !strings.Contains(got, want) || !strings.Contains(got, "applied") {
			t.Fatalf("status = %q; want %q applied", got, want)
		}
		out.Reset()
		must(t, s.Migrate(ctx(), "up", &out))
		if got, want := out.String(), "no pending migrations; the schema is at version 17\n"; got != want {
			t.Fatalf("up again = %q; want %q", got, want)
		}
		// Down, one migration at a time, newest first, to an empty schema.
		fsys, err := migrations.FS(s.Dialect())
		must(t, err)
		names, err := fs.Glob(fsys, "*.sql")
		must(t, err)
		if len(names) != 17 {
			t.Fatalf("%d migrations; want 17: %q", len(names), names)
		}
		slices.Sort(names)
		for _, name := range slices.Backward(names) {
			out.Reset()
			must(t, s.Migrate(ctx(), "down", &out))
			if got, want := out.String(), "rolled back "+name; !strings.HasPrefix(got, want) {
				t.Fatalf("down = %q; want prefix %q", got, want)
			}
		}
		if _, err := s.CountUsers(ctx()); err == nil {
			t.Fatal("CountUsers after down: want an error, the table is gone")
		}
		out.Reset()
		must(t, s.Migrate(ctx(), "status", &out))
		if got, want := out.String(), "pending"; !strings.Contains(got, want) {
			t.Fatalf("status after down = %q; want %q", got, want)
		}
		must(t, s.Migrate(ctx(), "up", nil))
		newWorld(t, s)
		wantErr(t, s.Migrate(ctx(), "sideways", nil), domain.Invalid, `unknown migrate command "sideways"; use up, down or status`)
	})
}

// TestMigrateKeepsConversations moves a conversation, a usage record and a
// document down through the migrations that rekeyed messages on PostgreSQL
// and rebuilt conversations, messages, usage records and documents on
// SQLite, and up again.
func TestMigrateKeepsConversations(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		conv := newConversation(w.chatA)
		msgs := append(turn(conv.ID, 0, "one"), turn(conv.ID, 2, "two")...)
		must(t, s.AppendTurn(ctx(), conv, true, msgs))
		usage := domain.UsageRecord{ID: domain.NewID(domain.PrefixMessage), ProjectID: w.prjA.ID, ChatID: w.chatA.ID, Model: "m",
			Usage: domain.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}, CreatedAt: t0}
		must(t, s.InsertUsage(ctx(), []domain.UsageRecord{usage}))
		doc := &domain.Document{ID: domain.NewID(domain.PrefixDocument), ProjectID: w.prjA.ID, Name: "kept", Content: strings.Repeat("€", 3000),
			MimeType: "text/plain", Metadata: map[string]any{"n": json.Number("1")}, CreatedAt: t0, UpdatedAt: t0}
		must(t, s.CreateDocument(ctx(), doc))
		// Read with SQL of its own: the store's reads name the columns of
		// the latest version, which a rollback may have dropped.
		check := func(step string) {
			t.Helper()
			if got, want := storedMessages(t, s, conv.ID), messageColumnsOf(msgs); !slices.Equal(got, want) {
				t.Fatalf("%s: messages\n%q\nwant\n%q", step, got, want)
			}
			var n int64
			must(t, s.DB().Raw("SELECT count(*) FROM conversations WHERE id = ? AND chat_id = ?", conv.ID, conv.ChatID).Row().Scan(&n))
			if n != 1 {
				t.Fatalf("%s: the conversation is gone", step)
			}
			must(t, s.DB().Raw("SELECT count(*) FROM usage_records WHERE id = ? AND project_id = ? AND total_tokens = 7", usage.ID, usage.ProjectID).Row().Scan(&n))
			if n != 1 {
				t.Fatalf("%s: the usage record is gone", step)
			}
			must(t, s.DB().Raw("SELECT count(*) FROM documents WHERE id = ? AND name = ? AND content = ? AND mime_type = ? AND metadata = ?",
				doc.ID, doc.Name, doc.Content, doc.MimeType, `{"n":1}`).Row().Scan(&n))
			if n != 1 {
				t.Fatalf("%s: the document is gone or changed", step)
			}
		}
		for _, m := range []string{"00017_document_content_last.sql", "00016_project_streams.sql", "00015_document_names.sql", "00014_prompt_cache.sql", "00013_usage_details.sql", "00012_conversation_project_index.sql", "00011_fewer_indexes.sql", "00010_role_check.sql", "00009_refusals.sql", "00008_request_keys.sql", "00007_estimated_usage.sql", "00006_api_key_expiry.sql", "00005_message_key.sql", "00004_turn_pages.sql"} {
			var out bytes.Buffer
			must(t, s.Migrate(ctx(), "down", &out))
			if got, want := out.String(), "rolled back "+m; !strings.HasPrefix(got, want) {
				t.Fatalf("down = %q; want prefix %q", got, want)
			}
			check("after rolling back " + m)
		}
		must(t, s.Migrate(ctx(), "up", nil))
		check("after up")
		got, err := s.ListMessages(ctx(), conv.ID)
		must(t, err)
		equal(t, got, msgs)

		// A turn that reuses a stored seq still conflicts, a usage record
		// stored again too, and deleting the conversation still deletes
		// its messages.
		c := *conv
		wantErr(t, s.AppendTurn(ctx(), &c, false, turn(conv.ID, 2, "again")), domain.Conflict, "")
		wantErr(t, s.InsertUsage(ctx(), []domain.UsageRecord{usage}), domain.Conflict, "a usage record with one of these ids already exists")
		must(t, s.DeleteConversation(ctx(), conv.ID))
		var left int64
		must(t, s.DB().Raw("SELECT count(*) FROM messages WHERE conversation_id = ?", conv.ID).Row().Scan(&left))
		if left != 0 {
			t.Fatalf("%d messages left after the conversation was deleted; want 0", left)
		}
	})
}

// TestMessageRoleCheck: the schema keeps a message of each of the four
// roles and refuses any other, whatever the store above it checks (since
// 00010 SQLite's check is written as comparisons, not IN).
func TestMessageRoleCheck(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		conv := newConversation(w.chatA)
		var msgs []domain.Message
		for i, role := range []domain.MessageRole{domain.RoleSystem, domain.RoleUser, domain.RoleAssistant, domain.RoleTool} {
			msgs = append(msgs, domain.Message{ID: domain.NewID(domain.PrefixMessage), ConversationID: conv.ID, Seq: i, Role: role, Content: string(role), CreatedAt: t0})
		}
		must(t, s.AppendTurn(ctx(), conv, true, msgs))
		got, err := s.ListMessages(ctx(), conv.ID)
		must(t, err)
		equal(t, got, msgs)

		for _, role := range []string{"robot", "User", ""} {
			err := s.DB().Exec("INSERT INTO messages (id, conversation_id, seq, role, created_at) VALUES (?, ?, ?, ?, ?)",
				domain.NewID(domain.PrefixMessage), conv.ID, 10, role, t0).Error
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), "check") {
				t.Errorf("a message with role %q: %v; want the role check to refuse it", role, err)
			}
		}
		if n := len(storedMessages(t, s, conv.ID)); n != len(msgs) {
			t.Errorf("%d messages stored; want %d", n, len(msgs))
		}
	})
}

// TestRoleCheckRebuildKeepsMessages: on SQLite 00010 rebuilds messages,
// up and down; every column of every message comes through both ways, and
// the idempotency key's unique index with them. (On PostgreSQL 00010
// changes nothing, and the test holds there too.) Below the newest schema
// the store's reads do not work (they name the newer columns), so the
// version below 00010 is read with SQL of its own.
func TestRoleCheckRebuildKeepsMessages(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		conv := newConversation(w.chatA)
		msgs := turn(conv.ID, 0, "one")
		reply := &msgs[1]
		reply.Refusal, reply.Usage.Estimated = "I cannot help with that.", true
		reply.RequestKey, reply.RequestHash = w.chatA.ID+":key-1", "hash-1"
		reply.ToolCalls = []domain.ToolCall{{ID: "call_1", Type: "function", Name: "weather", Arguments: `{"city":"Oslo"}`}}
		msgs = append(msgs, domain.Message{ID: domain.NewID(domain.PrefixMessage), ConversationID: conv.ID, Seq: 2, Role: domain.RoleTool,
			Content: "12 degrees", ToolCallID: "call_1", CreatedAt: t0})
		msgs = append(msgs, domain.Message{ID: domain.NewID(domain.PrefixMessage), ConversationID: conv.ID, Seq: 3, Role: domain.RoleUser,
			Content: "the document's text", DocumentID: "doc_1", CreatedAt: t0})
		must(t, s.AppendTurn(ctx(), conv, true, msgs))

		rollBackAfter(t, s, "00010_role_check.sql")
		before := messagesAt00009(t, s, conv.ID)
		if len(before) != len(msgs) {
			t.Fatalf("%d messages read at 00010; want %d", len(before), len(msgs))
		}
		var out bytes.Buffer
		must(t, s.Migrate(ctx(), "down", &out))
		if !strings.Contains(out.String(), "00010_role_check.sql") {
			t.Fatalf("migrate down = %q; want 00010", out.String())
		}
		if got := messagesAt00009(t, s, conv.ID); !slices.Equal(got, before) {
			t.Errorf("below 00010 the messages read\n%q\nwant\n%q", got, before)
		}
		err := s.DB().Exec("INSERT INTO messages (id, conversation_id, seq, role, created_at, request_key, request_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
			domain.NewID(domain.PrefixMessage), newConversationRow(t, s, w.chatA), 1, "assistant", t0, reply.RequestKey, "hash-2").Error
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "unique") {
			t.Errorf("below 00010, a reply with a stored request key: %v; want the unique index to refuse it", err)
		}

		out.Reset()
		must(t, s.Migrate(ctx(), "up", &out))
		if !strings.Contains(out.String(), "00010_role_check.sql") {
			t.Fatalf("migrate up = %q; want 00010 among them", out.String())
		}
		got, err := s.ListMessages(ctx(), conv.ID)
		must(t, err)
		equal(t, got, msgs)
		byKey, err := s.GetReplyByRequestKey(ctx(), reply.RequestKey)
		must(t, err)
		equal(t, *byKey, *reply)
		other := newConversation(w.chatA)
		again := turn(other.ID, 0, "two")
		again[1].RequestKey, again[1].RequestHash = reply.RequestKey, "hash-2"
		wantErr(t, s.AppendTurn(ctx(), other, true, again), domain.Conflict, "")
	})
}

// messagesAt00009 reads every column schema 00009 gives messages, a line
// per message in seq order.
func messagesAt00009(t *testing.T, s *store.Store, convID string) []string {
	t.Helper()
	rows, err := s.DB().Raw("SELECT id, conversation_id, seq, role, content, document_id, tool_calls, tool_call_id, model, finish_reason, "+
		"prompt_tokens, completion_tokens, total_tokens, usage_estimated, created_at, request_key, request_hash, refusal "+
		"FROM messages WHERE conversation_id = ? ORDER BY seq", convID).Rows()
	must(t, err)
	defer rows.Close()
	cols, err := rows.Columns()
	must(t, err)
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		must(t, rows.Scan(ptrs...))
		line := make([]string, len(vals))
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			line[i] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(line, "|"))
	}
	must(t, rows.Err())
	return out
}

// newConversationRow inserts a conversation of chat with SQL every schema
// version answers, and returns its id.
func newConversationRow(t *testing.T, s *store.Store, chat *domain.Chat) string {
	t.Helper()
	id := domain.NewID(domain.PrefixConversation)
	must(t, s.DB().Exec("INSERT INTO conversations (id, project_id, chat_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
		id, chat.ProjectID, chat.ID, t0, t0).Error)
	return id
}

// TestMigrateAPIKeyExpiry: rolling 00006 back drops expires_at, and the
// version before it would let an expiring key work for ever; so going down
// revokes each key with an expiry, at that expiry when it has passed and
// at once when it has not. Keys without one, and the time of an earlier
// revocation, are kept. Going up again, no key has an expiry.
func TestMigrateAPIKeyExpiry(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		now := time.Now().UTC().Truncate(time.Microsecond)
		key := func(secret string, expires, revoked *time.Time) *domain.APIKey {
			k := &domain.APIKey{ID: domain.NewID(domain.PrefixKey), UserID: w.alice.ID, Name: secret, Hash: domain.HashAPIKey(secret),
				Hint: secret[:7], CreatedAt: now.Add(-48 * time.Hour), ExpiresAt: expires, RevokedAt: revoked}
			must(t, s.CreateAPIKey(ctx(), k))
			return k
		}
		lapsedAt, liveUntil, revokedAt := now.Add(-time.Hour), now.Add(time.Hour), now.Add(-2*time.Hour)
		lapsed := key("pk_lapsed", &lapsedAt, nil)
		live := key("pk_live", &liveUntil, nil)
		revoked := key("pk_revoked", &liveUntil, &revokedAt)

		rollBackAfter(t, s, "00006_api_key_expiry.sql") // the later ones do not touch api_keys
		before := time.Now()
		var out bytes.Buffer
		must(t, s.Migrate(ctx(), "down", &out))
		after := time.Now()
		if got, want := out.String(), "rolled back 00006_api_key_expiry.sql"; !strings.HasPrefix(got, want) {
			t.Fatalf("down = %q; want prefix %q", got, want)
		}
		if err := s.DB().Exec("SELECT expires_at FROM api_keys").Error; err == nil {
			t.Fatal("api_keys.expires_at is still there after the rollback")
		}
		// Read with a statement of its own: on PostgreSQL, the store's
		// prepared SELECT * would fail once, as its result changed.
		revokedOf := func(k *domain.APIKey) *time.Time {
			t.Helper()
			var row struct{ RevokedAt *time.Time }
			must(t, s.DB().Raw("SELECT revoked_at FROM api_keys WHERE id = ?", k.ID).Scan(&row).Error)
			if row.RevokedAt != nil {
				*row.RevokedAt = row.RevokedAt.UTC()
			}
			return row.RevokedAt
		}
		if got := revokedOf(w.aliceKey); got != nil {
			t.Errorf("a key without an expiry was revoked at %v", got)
		}
		if got := revokedOf(lapsed); got == nil || !got.Equal(lapsedAt) {
			t.Errorf("lapsed key: RevokedAt = %v; want its expiry %v", got, lapsedAt)
		}
		// SQLite's clock reads milliseconds.
		if got := revokedOf(live); got == nil || got.Before(before.Add(-time.Millisecond)) || got.After(after) {
			t.Errorf("live key: RevokedAt = %v; want the rollback's time, in [%v, %v]", got, before, after)
		}
		if got := revokedOf(revoked); got == nil || !got.Equal(revokedAt) {
			t.Errorf("revoked key: RevokedAt = %v; want the first revocation %v", got, revokedAt)
		}

		must(t, s.Migrate(ctx(), "up", nil))
		for _, k := range []*domain.APIKey{w.aliceKey, lapsed, live, revoked} {
			got, _, err := s.GetAPIKeyByHash(ctx(), k.Hash)
			must(t, err)
			if got.ExpiresAt != nil {
				t.Errorf("%s after up: ExpiresAt = %v; want none", k.Name, got.ExpiresAt)
			}
		}
	})
}

func TestUsers(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		var created []string
		for i := range 5 {
			u := &domain.User{ID: domain.NewID(domain.PrefixUser), Name: fmt.Sprint("user", i), IsAdmin: i == 0, CreatedAt: t0.Add(time.Duration(i) * time.Second)}
			must(t, s.CreateUser(ctx(), u))
			created = append(created, u.ID)
			got, err := s.GetUser(ctx(), u.ID)
			must(t, err)
			equal(t, got, u)
		}
		all := sortedIDs(created)

		t.Run("count", func(t *testing.T) {
			n, err := s.CountUsers(ctx())
			must(t, err)
			if got, want := n, int64(5); got != want {
				t.Fatalf("CountUsers = %d; want %d", got, want)
			}
		})
		t.Run("duplicate id", func(t *testing.T) {
			err := s.CreateUser(ctx(), &domain.User{ID: created[0], Name: "again", CreatedAt: t0})
			wantErr(t, err, domain.Conflict, "user "+created[0]+" already exists")
		})
		t.Run("get unknown", func(t *testing.T) {
			_, err := s.GetUser(ctx(), "usr_nope")
			wantErr(t, err, domain.NotFound, "user usr_nope does not exist")
		})
		for _, tt := range []struct {
			name string
			page domain.Page
			want []string
		}{
			{"first page returns limit+1", domain.Page{Limit: 2}, all[:3]},
			{"after cursor", domain.Page{Limit: 2, After: all[1]}, all[2:5]},
			{"last page", domain.Page{Limit: 2, After: all[3]}, all[4:]},
			{"past the end", domain.Page{Limit: 2, After: all[4]}, []string{}},
			{"zero limit means default", domain.Page{}, all},
		} {
			t.Run("list "+tt.name, func(t *testing.T) {
				got, err := s.ListUsers(ctx(), tt.page)
				must(t, err)
				equal(t, ids(got, func(u domain.User) string { return u.ID }), tt.want)
			})
		}
	})
}

// TestCreateAdmin: the first admin and its key are created together, only
// while no user exists when asked so; a key whose hash exists creates
// neither.
func TestCreateAdmin(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		admin := func(secret string) (*domain.User, *domain.APIKey) {
			u := &domain.User{ID: domain.NewID(domain.PrefixUser), Name: "admin", IsAdmin: true, CreatedAt: t0}
			return u, &domain.APIKey{ID: domain.NewID(domain.PrefixKey), UserID: u.ID, Name: "bootstrap", Hash: domain.HashAPIKey(secret), CreatedAt: t0}
		}
		count := func() int64 {
			n, err := s.CountUsers(ctx())
			must(t, err)
			return n
		}
		u, k := admin("pk_first")
		created, err := s.CreateAdmin(ctx(), u, k, true)
		must(t, err)
		if !created || count() != 1 {
			t.Fatalf("first admin on an empty database: created %t, %d users; want true, 1", created, count())
		}
		got, owner, err := s.GetAPIKeyByHash(ctx(), domain.HashAPIKey("pk_first"))
		must(t, err)
		equal(t, got, k)
		equal(t, owner, u)

		u, k = admin("pk_second")
		created, err = s.CreateAdmin(ctx(), u, k, true)
		must(t, err)
		if created || count() != 1 {
			t.Errorf("first admin once a user exists: created %t, %d users; want false, 1", created, count())
		}
		u, k = admin("pk_first")
		_, err = s.CreateAdmin(ctx(), u, k, false)
		wantErr(t, err, domain.Conflict, "this API key already exists; generate another")
		if count() != 1 {
			t.Errorf("an admin whose key exists left its user: %d users, want 1", count())
		}
		u, k = admin("pk_third")
		created, err = s.CreateAdmin(ctx(), u, k, false)
		must(t, err)
		if !created || count() != 2 {
			t.Errorf("another admin: created %t, %d users; want true, 2", created, count())
		}

		// On PostgreSQL a bootstrap key's admin (not onlyFirst) takes the
		// first admin's lock too, so that a start without a key, racing it
		// on an empty database, sees its admin rather than making a second.
		if s.Dialect() != store.Postgres {
			return
		}
		tx := s.DB().Begin()
		must(t, tx.Exec("SELECT pg_advisory_xact_lock(?)", int64(0x7061726c65790001)).Error)
		done := make(chan error, 1)
		go func() {
			u, k := admin("pk_fourth")
			_, err := s.CreateAdmin(ctx(), u, k, false)
			done <- err
		}()
		select {
		case err := <-done:
			t.Errorf("a bootstrap key's admin was created (%v) while another start held the first admin's lock", err)
			must(t, tx.Rollback().Error)
		case <-time.After(300 * time.Millisecond):
			must(t, tx.Rollback().Error)
			must(t, <-done)
		}
	})
}

func TestAPIKeys(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		more := []string{w.aliceKey.ID}
		for i := range 3 {
			more = append(more, newKey(t, s, w.alice, fmt.Sprint("pk_more_", i)).ID)
		}
		aliceKeys := sortedIDs(more)

		t.Run("by hash", func(t *testing.T) {
			k, u, err := s.GetAPIKeyByHash(ctx(), domain.HashAPIKey("pk_bob_secret"))
			must(t, err)
			equal(t, k, w.bobKey)
			equal(t, u, w.bob)
		})
		t.Run("unknown hash", func(t *testing.T) {
			_, _, err := s.GetAPIKeyByHash(ctx(), domain.HashAPIKey("pk_nobody"))
			wantErr(t, err, domain.NotFound, "")
		})
		t.Run("duplicate hash", func(t *testing.T) {
			k := &domain.APIKey{ID: domain.NewID(domain.PrefixKey), UserID: w.bob.ID, Name: "copy", Hash: domain.HashAPIKey("pk_alice_secret"), CreatedAt: t0}
			wantErr(t, s.CreateAPIKey(ctx(), k), domain.Conflict, "this API key already exists; generate another")
		})
		t.Run("unknown user", func(t *testing.T) {
			k := &domain.APIKey{ID: domain.NewID(domain.PrefixKey), UserID: "usr_ghost", Name: "x", Hash: domain.HashAPIKey("pk_ghost"), CreatedAt: t0}
			wantErr(t, s.CreateAPIKey(ctx(), k), domain.NotFound, "user usr_ghost does not exist")
		})
		for _, tt := range []struct {
			name string
			user string
			page domain.Page
			want []string
		}{
			{"only the user's keys", w.alice.ID, domain.Page{Limit: 10}, aliceKeys},
			{"limit+1", w.alice.ID, domain.Page{Limit: 1}, aliceKeys[:2]},
			{"after", w.alice.ID, domain.Page{Limit: 10, After: aliceKeys[1]}, aliceKeys[2:]},
			{"other user", w.bob.ID, domain.Page{Limit: 10}, []string{w.bobKey.ID}},
			{"no keys", "usr_ghost", domain.Page{Limit: 10}, []string{}},
		} {
			t.Run("list "+tt.name, func(t *testing.T) {
				got, err := s.ListAPIKeys(ctx(), tt.user, tt.page)
				must(t, err)
				equal(t, ids(got, func(k domain.APIKey) string { return k.ID }), tt.want)
			})
		}
		t.Run("expiry", func(t *testing.T) {
			exp := t0.Add(24 * time.Hour)
			k := &domain.APIKey{ID: domain.NewID(domain.PrefixKey), UserID: w.bob.ID, Name: "ci", Hash: domain.HashAPIKey("pk_bob_ci"), Hint: "pk_bob_", CreatedAt: t0, ExpiresAt: &exp}
			must(t, s.CreateAPIKey(ctx(), k))
			got, _, err := s.GetAPIKeyByHash(ctx(), k.Hash)
			must(t, err)
			equal(t, got, k)
			list, err := s.ListAPIKeys(ctx(), w.bob.ID, domain.Page{Limit: 10})
			must(t, err)
			want := []domain.APIKey{*w.bobKey, *k}
			slices.SortFunc(want, func(a, b domain.APIKey) int { return strings.Compare(a.ID, b.ID) })
			equal(t, list, want)
			if w.bobKey.ExpiresAt != nil {
				t.Errorf("a key made without an expiry has ExpiresAt %v", w.bobKey.ExpiresAt)
			}
		})
		t.Run("revoke", func(t *testing.T) {
			at := t0.Add(time.Hour)
			k, err := s.RevokeAPIKey(ctx(), w.bob.ID, w.bobKey.ID, at)
			must(t, err)
			want := *w.bobKey
			want.RevokedAt = &at
			equal(t, k, &want)
			again, err := s.RevokeAPIKey(ctx(), w.bob.ID, w.bobKey.ID, at.Add(time.Hour)) // keeps the first time
			must(t, err)
			equal(t, again, &want)
			stored, _, err := s.GetAPIKeyByHash(ctx(), w.bobKey.Hash)
			must(t, err)
			equal(t, stored, &want)
		})
		t.Run("revoke another user's key", func(t *testing.T) {
			_, err := s.RevokeAPIKey(ctx(), w.bob.ID, w.aliceKey.ID, t0)
			wantErr(t, err, domain.NotFound, "API key "+w.aliceKey.ID+" does not exist")
			k, _, err := s.GetAPIKeyByHash(ctx(), w.aliceKey.Hash)
			must(t, err)
			if k.RevokedAt != nil {
				t.Fatalf("RevokedAt = %v; want nil", k.RevokedAt)
			}
		})
		t.Run("revoke unknown", func(t *testing.T) {
			_, err := s.RevokeAPIKey(ctx(), w.bob.ID, "key_nope", t0)
			wantErr(t, err, domain.NotFound, "API key key_nope does not exist")
		})
	})
}

func TestProjects(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		t.Run("get", func(t *testing.T) {
			got, err := s.GetProject(ctx(), w.prjA.ID)
			must(t, err)
			equal(t, got, w.prjA)
			m, err := s.GetMember(ctx(), w.prjA.ID, w.alice.ID)
			must(t, err)
			equal(t, m, &domain.Member{ProjectID: w.prjA.ID, UserID: w.alice.ID, Role: domain.RoleOwner, CreatedAt: t0, UpdatedAt: t0})
		})
		t.Run("get unknown", func(t *testing.T) {
			_, err := s.GetProject(ctx(), "prj_nope")
			wantErr(t, err, domain.NotFound, "project prj_nope does not exist")
		})
		t.Run("create is atomic", func(t *testing.T) {
			p := &domain.Project{ID: domain.NewID(domain.PrefixProject), Name: "orphan", CreatedAt: t0, UpdatedAt: t0}
			err := s.CreateProject(ctx(), p, domain.Member{ProjectID: p.ID, UserID: "usr_ghost", Role: domain.RoleOwner, CreatedAt: t0, UpdatedAt: t0})
			wantErr(t, err, domain.NotFound, "user usr_ghost does not exist")
			_, err = s.GetProject(ctx(), p.ID)
			wantErr(t, err, domain.NotFound, "")
		})
		t.Run("create duplicate", func(t *testing.T) {
			err := s.CreateProject(ctx(), &domain.Project{ID: w.prjA.ID, Name: "again", CreatedAt: t0, UpdatedAt: t0},
				domain.Member{ProjectID: w.prjA.ID, UserID: w.bob.ID, Role: domain.RoleOwner, CreatedAt: t0, UpdatedAt: t0})
			wantErr(t, err, domain.Conflict, "project "+w.prjA.ID+" already exists")
			if _, err := s.GetMember(ctx(), w.prjA.ID, w.bob.ID); domain.KindOf(err) != domain.NotFound {
				t.Fatalf("bob became a member of a project whose creation failed: %v", err)
			}
		})

		extra := []string{w.prjA.ID, w.prjB.ID}
		for i := range 3 {
			extra = append(extra, newProject(t, s, w.alice, fmt.Sprint("extra", i)).ID)
		}
		all := sortedIDs(extra)
		var aliceOnly []string
		for _, id := range all {
			if id != w.prjB.ID {
				aliceOnly = append(aliceOnly, id)
			}
		}
		for _, tt := range []struct {
			name string
			f    domain.ProjectFilter
			want []string
		}{
			{"all", domain.ProjectFilter{Page: domain.Page{Limit: 10}}, all},
			{"limit+1", domain.ProjectFilter{Page: domain.Page{Limit: 2}}, all[:3]},
			{"after", domain.ProjectFilter{Page: domain.Page{Limit: 2, After: all[2]}}, all[3:]},
			{"member alice", domain.ProjectFilter{MemberUserID: w.alice.ID, Page: domain.Page{Limit: 10}}, aliceOnly},
			{"member bob", domain.ProjectFilter{MemberUserID: w.bob.ID, Page: domain.Page{Limit: 10}}, []string{w.prjB.ID}},
			{"member nobody", domain.ProjectFilter{MemberUserID: "usr_ghost", Page: domain.Page{Limit: 10}}, []string{}},
		} {
			t.Run("list "+tt.name, func(t *testing.T) {
				got, err := s.ListProjects(ctx(), tt.f)
				must(t, err)
				equal(t, ids(got, func(p domain.Project) string { return p.ID }), tt.want)
			})
		}

		t.Run("update", func(t *testing.T) {
			p := *w.prjA
			p.Name, p.Description, p.UpdatedAt = "renamed", "new words", t0.Add(time.Minute)
			must(t, s.UpdateProject(ctx(), &p, time.Time{}))
			got, err := s.GetProject(ctx(), p.ID)
			must(t, err)
			equal(t, got, &p)
		})
		t.Run("update unknown", func(t *testing.T) {
			wantErr(t, s.UpdateProject(ctx(), &domain.Project{ID: "prj_nope", Name: "x", UpdatedAt: t0}, time.Time{}), domain.NotFound, "project prj_nope does not exist")
		})
		t.Run("delete unknown", func(t *testing.T) {
			wantErr(t, s.DeleteProject(ctx(), "prj_nope"), domain.NotFound, "project prj_nope does not exist")
		})
		t.Run("delete cascades", func(t *testing.T) {
			doc := &domain.Document{ID: domain.NewID(domain.PrefixDocument), ProjectID: w.prjA.ID, Name: "d", CreatedAt: t0, UpdatedAt: t0}
			must(t, s.CreateDocument(ctx(), doc))
			conv := newConversation(w.chatA)
			must(t, s.AppendTurn(ctx(), conv, true, turn(conv.ID, 0, "hi")))
			must(t, s.PutMember(ctx(), &domain.Member{ProjectID: w.prjA.ID, UserID: w.bob.ID, Role: domain.RoleViewer, CreatedAt: t0, UpdatedAt: t0}))
			must(t, s.InsertUsage(ctx(), []domain.UsageRecord{{ID: domain.NewID(domain.PrefixMessage), ProjectID: w.prjA.ID, Usage: domain.Usage{TotalTokens: 5}, CreatedAt: t0}}))

			must(t, s.DeleteProject(ctx(), w.prjA.ID))

			_, err := s.GetProject(ctx(), w.prjA.ID)
			wantErr(t, err, domain.NotFound, "")
			_, err = s.GetProvider(ctx(), w.provA.ID)
			wantErr(t, err, domain.NotFound, "")
			_, err = s.GetChat(ctx(), w.chatA.ID)
			wantErr(t, err, domain.NotFound, "")
			_, err = s.GetDocument(ctx(), doc.ID)
			wantErr(t, err, domain.NotFound, "")
			_, err = s.GetConversation(ctx(), conv.ID)
			wantErr(t, err, domain.NotFound, "")
			_, err = s.GetMember(ctx(), w.prjA.ID, w.bob.ID)
			wantErr(t, err, domain.NotFound, "")
			msgs, err := s.ListMessages(ctx(), conv.ID)
			must(t, err)
			if got, want := len(msgs), 0; got != want {
				t.Fatalf("messages left = %d; want %d", got, want)
			}
			totals, err := s.SumUsage(ctx(), domain.UsageQuery{ProjectID: w.prjA.ID})
			must(t, err)
			if got, want := totals[0].Requests, int64(0); got != want {
				t.Fatalf("usage records left = %d; want %d", got, want)
			}
			// The other project is untouched.
			if _, err := s.GetChat(ctx(), w.chatB.ID); err != nil {
				t.Fatal(err)
			}
		})
	})
}

func TestMembers(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		carol := newUser(t, s, "carol")

		t.Run("put inserts", func(t *testing.T) {
			m := &domain.Member{ProjectID: w.prjA.ID, UserID: w.bob.ID, Role: domain.RoleViewer, CreatedAt: t0, UpdatedAt: t0}
			must(t, s.PutMember(ctx(), m))
			got, err := s.GetMember(ctx(), w.prjA.ID, w.bob.ID)
			must(t, err)
			equal(t, got, m)
		})
		t.Run("put updates the role", func(t *testing.T) {
			later := t0.Add(time.Hour)
			must(t, s.PutMember(ctx(), &domain.Member{ProjectID: w.prjA.ID, UserID: w.bob.ID, Role: domain.RoleEditor, CreatedAt: later, UpdatedAt: later}))
			got, err := s.GetMember(ctx(), w.prjA.ID, w.bob.ID)
			must(t, err)
			equal(t, got, &domain.Member{ProjectID: w.prjA.ID, UserID: w.bob.ID, Role: domain.RoleEditor, CreatedAt: t0, UpdatedAt: later})
		})
		t.Run("put of the same role keeps updatedAt", func(t *testing.T) {
			// An idempotent PUT changes nothing, updatedAt neither, and m
			// is told the times stored, not those it was sent with.
			m := &domain.Member{ProjectID: w.prjA.ID, UserID: w.bob.ID, Role: domain.RoleEditor, CreatedAt: t0.Add(2 * time.Hour), UpdatedAt: t0.Add(2 * time.Hour)}
			must(t, s.PutMember(ctx(), m))
			want := &domain.Member{ProjectID: w.prjA.ID, UserID: w.bob.ID, Role: domain.RoleEditor, CreatedAt: t0, UpdatedAt: t0.Add(time.Hour)}
			equal(t, m, want)
			got, err := s.GetMember(ctx(), w.prjA.ID, w.bob.ID)
			must(t, err)
			equal(t, got, want)
		})
		for _, tt := range []struct {
			name string
			m    domain.Member
			kind domain.Kind
			msg  string
		}{
			{"unknown user", domain.Member{ProjectID: w.prjA.ID, UserID: "usr_ghost", Role: domain.RoleViewer}, domain.NotFound, "user usr_ghost does not exist"},
			{"unknown project", domain.Member{ProjectID: "prj_ghost", UserID: w.bob.ID, Role: domain.RoleViewer}, domain.NotFound, "project prj_ghost does not exist"},
			{"bad role", domain.Member{ProjectID: w.prjA.ID, UserID: carol.ID, Role: "emperor"}, domain.Invalid, ""},
		} {
			t.Run("put "+tt.name, func(t *testing.T) {
				tt.m.CreatedAt, tt.m.UpdatedAt = t0, t0
				wantErr(t, s.PutMember(ctx(), &tt.m), tt.kind, tt.msg)
			})
		}
		t.Run("get non-member", func(t *testing.T) {
			_, err := s.GetMember(ctx(), w.prjB.ID, w.alice.ID)
			wantErr(t, err, domain.NotFound, fmt.Sprintf("user %s is not a member of project %s", w.alice.ID, w.prjB.ID))
		})
		must(t, s.PutMember(ctx(), &domain.Member{ProjectID: w.prjA.ID, UserID: carol.ID, Role: domain.RoleOwner, CreatedAt: t0, UpdatedAt: t0}))
		members := sortedIDs([]string{w.alice.ID, w.bob.ID, carol.ID})
		for _, tt := range []struct {
			name string
			page domain.Page
			want []string
		}{
			{"all", domain.Page{Limit: 10}, members},
			{"limit+1", domain.Page{Limit: 1}, members[:2]},
			{"after", domain.Page{Limit: 1, After: members[1]}, members[2:]},
		} {
			t.Run("list "+tt.name, func(t *testing.T) {
				got, err := s.ListMembers(ctx(), w.prjA.ID, tt.page)
				must(t, err)
				equal(t, ids(got, func(m domain.Member) string { return m.UserID }), tt.want)
			})
		}
		t.Run("count owners", func(t *testing.T) {
			if got, want := countOwners(t, s, w.prjA.ID), 2; got != want {
				t.Fatalf("owners = %d; want %d", got, want)
			}
		})
		t.Run("delete", func(t *testing.T) {
			must(t, s.DeleteMember(ctx(), w.prjA.ID, carol.ID))
			_, err := s.GetMember(ctx(), w.prjA.ID, carol.ID)
			wantErr(t, err, domain.NotFound, "")
			wantErr(t, s.DeleteMember(ctx(), w.prjA.ID, carol.ID), domain.NotFound,
				fmt.Sprintf("user %s is not a member of project %s", carol.ID, w.prjA.ID))
			if got, want := countOwners(t, s, w.prjA.ID), 1; got != want {
				t.Fatalf("owners = %d; want %d", got, want)
			}
		})
	})
}

// countOwners counts projectID's owners through the store's member list.
func countOwners(t *testing.T, s *store.Store, projectID string) int {
	t.Helper()
	members, err := s.ListMembers(ctx(), projectID, domain.Page{Limit: domain.MaxPageLimit})
	must(t, err)
	n := 0
	for _, m := range members {
		if m.Role == domain.RoleOwner {
			n++
		}
	}
	return n
}

// TestMembersKeepAnOwner checks that a project never loses its last owner,
// also when one of its two owners is demoted while the other is removed:
// one of the two writes wins, the other is refused with a Conflict.
func TestMembersKeepAnOwner(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		carol := newUser(t, s, "carol")
		alice := func(role domain.Role) *domain.Member {
			return &domain.Member{ProjectID: w.prjA.ID, UserID: w.alice.ID, Role: role, CreatedAt: t0, UpdatedAt: t0}
		}
		msg := domain.MessageOf(domain.LastOwnerConflict(w.prjA.ID))
		owners := func(t *testing.T) int {
			t.Helper()
			return countOwners(t, s, w.prjA.ID)
		}

		t.Run("demote the last owner", func(t *testing.T) {
			wantErr(t, s.PutMember(ctx(), alice(domain.RoleViewer)), domain.Conflict, msg)
			if got, want := owners(t), 1; got != want {
				t.Fatalf("owners = %d; want %d", got, want)
			}
		})
		t.Run("remove the last owner", func(t *testing.T) {
			wantErr(t, s.DeleteMember(ctx(), w.prjA.ID, w.alice.ID), domain.Conflict, msg)
			if got, want := owners(t), 1; got != want {
				t.Fatalf("owners = %d; want %d", got, want)
			}
		})
		t.Run("owner stays owner", func(t *testing.T) {
			must(t, s.PutMember(ctx(), alice(domain.RoleOwner)))
		})
		t.Run("demote one owner and remove the other at once", func(t *testing.T) {
			for i := range 100 {
				must(t, s.PutMember(ctx(), alice(domain.RoleOwner)))
				must(t, s.PutMember(ctx(), &domain.Member{ProjectID: w.prjA.ID, UserID: carol.ID, Role: domain.RoleOwner, CreatedAt: t0, UpdatedAt: t0}))
				start := make(chan struct{})
				var demote, remove error
				var wg sync.WaitGroup
				wg.Go(func() {
					<-start
					demote = s.PutMember(ctx(), alice(domain.RoleViewer))
				})
				wg.Go(func() {
					<-start
					remove = s.DeleteMember(ctx(), w.prjA.ID, carol.ID)
				})
				close(start)
				wg.Wait()

				if got, want := owners(t), 1; got != want {
					t.Fatalf("try %d: owners = %d; want %d (demote: %v; remove: %v)", i, got, want, demote, remove)
				}
				if (demote == nil) == (remove == nil) {
					t.Fatalf("try %d: demote: %v; remove: %v; want exactly one refused", i, demote, remove)
				}
				wantErr(t, errors.Join(demote, remove), domain.Conflict, msg)
			}
		})
	})
}

func TestProviders(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		t.Run("get", func(t *testing.T) {
			got, err := s.GetProvider(ctx(), w.provA.ID)
			must(t, err)
			equal(t, got, w.provA)
		})
		t.Run("get unknown", func(t *testing.T) {
			_, err := s.GetProvider(ctx(), "aip_nope")
			wantErr(t, err, domain.NotFound, "AI provider aip_nope does not exist")
		})
		t.Run("no key", func(t *testing.T) {
			p := &domain.AIProvider{ID: domain.NewID(domain.PrefixProvider), ProjectID: w.prjA.ID, Name: "local", Type: domain.ProviderOpenAICompatible,
				BaseURL: "http://127.0.0.1:11434/v1", DefaultModel: "llama3", PromptCache: domain.PromptCache5m, APIKeyRef: "env:PARLEY_PROVIDER_KEY_X", CreatedAt: t0, UpdatedAt: t0}
			must(t, s.CreateProvider(ctx(), p))
			got, err := s.GetProvider(ctx(), p.ID)
			must(t, err)
			equal(t, got, p)
			if got.HasAPIKey() != true || len(got.APIKeyCiphertext) != 0 {
				t.Fatalf("got %+v; want a ref and no ciphertext", got)
			}
			must(t, s.DeleteProvider(ctx(), p.ID))
		})
		t.Run("create in unknown project", func(t *testing.T) {
			p := &domain.AIProvider{ID: domain.NewID(domain.PrefixProvider), ProjectID: "prj_ghost", Name: "x", Type: domain.ProviderOpenAI, CreatedAt: t0, UpdatedAt: t0}
			wantErr(t, s.CreateProvider(ctx(), p), domain.NotFound, "project prj_ghost does not exist")
		})
		t.Run("create duplicate", func(t *testing.T) {
			p := *w.provA
			wantErr(t, s.CreateProvider(ctx(), &p), domain.Conflict, "AI provider "+p.ID+" already exists")
		})

		inA := []string{w.provA.ID}
		for range 3 {
			inA = append(inA, newProvider(t, s, w.prjA).ID)
		}
		inA = sortedIDs(inA)
		all := sortedIDs(append(slices.Clone(inA), w.provB.ID))
		for _, tt := range []struct {
			name string
			f    domain.ProviderFilter
			want []string
		}{
			{"all", domain.ProviderFilter{Page: domain.Page{Limit: 10}}, all},
			{"project", domain.ProviderFilter{ProjectID: w.prjA.ID, Page: domain.Page{Limit: 10}}, inA},
			{"project limit+1", domain.ProviderFilter{ProjectID: w.prjA.ID, Page: domain.Page{Limit: 2}}, inA[:3]},
			{"project after", domain.ProviderFilter{ProjectID: w.prjA.ID, Page: domain.Page{Limit: 2, After: inA[1]}}, inA[2:]},
			{"member", domain.ProviderFilter{MemberUserID: w.bob.ID, Page: domain.Page{Limit: 10}}, []string{w.provB.ID}},
			{"member and other project", domain.ProviderFilter{ProjectID: w.prjA.ID, MemberUserID: w.bob.ID, Page: domain.Page{Limit: 10}}, []string{}},
		} {
			t.Run("list "+tt.name, func(t *testing.T) {
				got, err := s.ListProviders(ctx(), tt.f)
				must(t, err)
				equal(t, ids(got, func(p domain.AIProvider) string { return p.ID }), tt.want)
			})
		}
		t.Run("list all", func(t *testing.T) {
			got, err := s.ListAllProviders(ctx())
			must(t, err)
			equal(t, ids(got, func(p domain.AIProvider) string { return p.ID }), all)
		})
		t.Run("update", func(t *testing.T) {
			p := *w.provA
			p.Name, p.Type, p.BaseURL, p.DefaultModel, p.APIVersion = "azure", domain.ProviderAzureOpenAI, "https://x.openai.azure.com", "gpt-4", "2024-06-01"
			p.APIKeyCiphertext, p.APIKeyKeyID, p.APIKeyHint, p.APIKeyRef = nil, "", "", "env:PARLEY_PROVIDER_KEY_AZ"
			p.PromptCache, p.UpdatedAt = domain.PromptCache1h, t0.Add(time.Minute)
			must(t, s.UpdateProvider(ctx(), &p, time.Time{}))
			got, err := s.GetProvider(ctx(), p.ID)
			must(t, err)
			equal(t, got, &p)
		})
		t.Run("update unknown", func(t *testing.T) {
			wantErr(t, s.UpdateProvider(ctx(), &domain.AIProvider{ID: "aip_nope", Name: "x", UpdatedAt: t0}, time.Time{}), domain.NotFound, "AI provider aip_nope does not exist")
		})
		t.Run("delete refused while a chat uses it", func(t *testing.T) {
			wantErr(t, s.DeleteProvider(ctx(), w.provA.ID), domain.Conflict,
				"AI provider "+w.provA.ID+" is used by chats; delete or move them first")
			if _, err := s.GetProvider(ctx(), w.provA.ID); err != nil {
				t.Fatalf("provider gone after a refused delete: %v", err)
			}
		})
		t.Run("delete after moving the chat", func(t *testing.T) {
			c := *w.chatA
			c.AIProviderID, c.UpdatedAt = inA[len(inA)-1], t0.Add(time.Minute)
			if c.AIProviderID == w.provA.ID {
				c.AIProviderID = inA[0]
			}
			must(t, s.UpdateChat(ctx(), &c, time.Time{}))
			must(t, s.DeleteProvider(ctx(), w.provA.ID))
			_, err := s.GetProvider(ctx(), w.provA.ID)
			wantErr(t, err, domain.NotFound, "")
			wantErr(t, s.DeleteProvider(ctx(), w.provA.ID), domain.NotFound, "AI provider "+w.provA.ID+" does not exist")
		})
	})
}

// TestSQLiteDocumentContentIsLast: SQLite stores a row's columns in order,
// and reading one stored after a content of megabytes walks the content's
// whole chain of overflow pages, so a list of documents, which shows no
// content, read all of it while content came before mime_type, metadata and
// the times (a page of 100 documents of 4 MiB: half a second, and one of
// the pool's connections held meanwhile). Migration 00017 moved it last.
func TestSQLiteDocumentContentIsLast(t *testing.T) {
	s := dbtest.SQLite(t)
	var columns []string
	must(t, s.DB().Raw("SELECT name FROM pragma_table_info('documents') ORDER BY cid").Scan(&columns).Error)
	if len(columns) == 0 || columns[len(columns)-1] != "content" {
		t.Errorf("documents' columns = %q; want content last, so that a list reads none of it", columns)
	}
}

func TestDocuments(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		doc := &domain.Document{
			ID: domain.NewID(domain.PrefixDocument), ProjectID: w.prjA.ID, Name: "faq", Content: "Q: why?\nA: because.", MimeType: "text/plain",
			Metadata:  map[string]any{"lang": "en", "pages": json.Number("3"), "tags": []any{"a", "b"}, "nested": map[string]any{"ok": true}},
			CreatedAt: t0, UpdatedAt: t0,
		}
		must(t, s.CreateDocument(ctx(), doc))
		t.Run("get", func(t *testing.T) {
			got, err := s.GetDocument(ctx(), doc.ID)
			must(t, err)
			equal(t, got, doc)
		})
		t.Run("nil metadata", func(t *testing.T) {
			d := &domain.Document{ID: domain.NewID(domain.PrefixDocument), ProjectID: w.prjB.ID, Name: "empty", CreatedAt: t0, UpdatedAt: t0}
			must(t, s.CreateDocument(ctx(), d))
			got, err := s.GetDocument(ctx(), d.ID)
			must(t, err)
			equal(t, got, d)
		})
		t.Run("get unknown", func(t *testing.T) {
			_, err := s.GetDocument(ctx(), "doc_nope")
			wantErr(t, err, domain.NotFound, "document doc_nope does not exist")
		})
		t.Run("create in unknown project", func(t *testing.T) {
			d := &domain.Document{ID: domain.NewID(domain.PrefixDocument), ProjectID: "prj_ghost", Name: "x", CreatedAt: t0, UpdatedAt: t0}
			wantErr(t, s.CreateDocument(ctx(), d), domain.NotFound, "project prj_ghost does not exist")
		})
		inA := []string{doc.ID}
		for i := range 2 {
			d := &domain.Document{ID: domain.NewID(domain.PrefixDocument), ProjectID: w.prjA.ID, Name: fmt.Sprint("d", i), CreatedAt: t0, UpdatedAt: t0}
			must(t, s.CreateDocument(ctx(), d))
			inA = append(inA, d.ID)
		}
		inA = sortedIDs(inA)
		for _, tt := range []struct {
			name string
			f    domain.DocumentFilter
			want int
		}{
			{"all", domain.DocumentFilter{Page: domain.Page{Limit: 10}}, 4},
			{"project", domain.DocumentFilter{ProjectID: w.prjA.ID, Page: domain.Page{Limit: 10}}, 3},
			{"limit+1", domain.DocumentFilter{ProjectID: w.prjA.ID, Page: domain.Page{Limit: 1}}, 2},
			{"after", domain.DocumentFilter{ProjectID: w.prjA.ID, Page: domain.Page{Limit: 10, After: inA[0]}}, 2},
			{"member", domain.DocumentFilter{MemberUserID: w.bob.ID, Page: domain.Page{Limit: 10}}, 1},
		} {
			t.Run("list "+tt.name, func(t *testing.T) {
				got, err := s.ListDocuments(ctx(), tt.f)
				must(t, err)
				if got, want := len(got), tt.want; got != want {
					t.Fatalf("len = %d; want %d", got, want)
				}
				if !slices.IsSortedFunc(got, func(a, b domain.DocumentSummary) int { return strings.Compare(a.ID, b.ID) }) {
					t.Fatal("not ordered by id")
				}
			})
		}
		t.Run("list gives each document but its content, and the content's size in bytes", func(t *testing.T) {
			p := newProject(t, s, w.alice, "sizes")
			var want []domain.DocumentSummary
			for _, content := range []string{
				"",
				"plain ASCII",
				"héllo € 😀",                       // 2-, 3- and 4-byte characters: 15 bytes, 9 characters
				strings.Repeat("ü", 1<<20) + "\n", // 2 MiB and a byte, in overflow pages (SQLite) and TOAST (PostgreSQL)
			} {
				d := &domain.Document{ID: domain.NewID(domain.PrefixDocument), ProjectID: p.ID, Name: "d", Content: content,
					MimeType: "text/plain", Metadata: map[string]any{"n": json.Number("1")}, CreatedAt: t0, UpdatedAt: t0}
				must(t, s.CreateDocument(ctx(), d))
				want = append(want, d.Summary())
			}
			if got := want[2].Bytes; got != 15 {
				t.Fatalf("Summary().Bytes of a 15-byte text = %d", got)
			}
			slices.SortFunc(want, func(a, b domain.DocumentSummary) int { return strings.Compare(a.ID, b.ID) })
			got, err := s.ListDocuments(ctx(), domain.DocumentFilter{ProjectID: p.ID, Page: domain.Page{Limit: 10}})
			must(t, err)
			equal(t, got, want)
		})
		t.Run("update", func(t *testing.T) {
			d := *doc
			d.Name, d.Content, d.MimeType, d.Metadata, d.UpdatedAt = "faq2", "new", "text/markdown", map[string]any{"v": json.Number("2")}, t0.Add(time.Minute)
			must(t, s.UpdateDocument(ctx(), &d, time.Time{}))
			got, err := s.GetDocument(ctx(), d.ID)
			must(t, err)
			equal(t, got, &d)
		})
		t.Run("update unknown", func(t *testing.T) {
			wantErr(t, s.UpdateDocument(ctx(), &domain.Document{ID: "doc_nope", Name: "x", UpdatedAt: t0}, time.Time{}), domain.NotFound, "document doc_nope does not exist")
		})
		t.Run("delete", func(t *testing.T) {
			must(t, s.DeleteDocument(ctx(), doc.ID))
			_, err := s.GetDocument(ctx(), doc.ID)
			wantErr(t, err, domain.NotFound, "")
			wantErr(t, s.DeleteDocument(ctx(), doc.ID), domain.NotFound, "document "+doc.ID+" does not exist")
		})
	})
}

func TestChats(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		t.Run("get", func(t *testing.T) {
			got, err := s.GetChat(ctx(), w.chatA.ID)
			must(t, err)
			equal(t, got, w.chatA)
		})
		t.Run("get unknown", func(t *testing.T) {
			_, err := s.GetChat(ctx(), "cht_nope")
			wantErr(t, err, domain.NotFound, "chat cht_nope does not exist")
		})
		for _, tt := range []struct {
			name    string
			project string
			prov    string
			kind    domain.Kind
			msg     string
		}{
			{"unknown provider", w.prjA.ID, "aip_ghost", domain.Invalid, "AI provider aip_ghost does not exist"},
			{"unknown project", "prj_ghost", w.provA.ID, domain.NotFound, "project prj_ghost does not exist"},
		} {
			t.Run("create with "+tt.name, func(t *testing.T) {
				c := &domain.Chat{ID: domain.NewID(domain.PrefixChat), ProjectID: tt.project, AIProviderID: tt.prov, Name: "x", CreatedAt: t0, UpdatedAt: t0}
				err := s.CreateChat(ctx(), c)
				wantErr(t, err, tt.kind, tt.msg)
				if tt.kind == domain.Invalid {
					if got, want := domain.DetailsOf(err)["field"], any("aiProviderId"); got != want {
						t.Fatalf("field = %v; want %v", got, want)
					}
				}
			})
		}
		inA := []string{w.chatA.ID}
		for range 3 {
			inA = append(inA, newChat(t, s, w.provA).ID)
		}
		inA = sortedIDs(inA)
		for _, tt := range []struct {
			name string
			f    domain.ChatFilter
			want []string
		}{
			{"all", domain.ChatFilter{Page: domain.Page{Limit: 10}}, sortedIDs(append(slices.Clone(inA), w.chatB.ID))},
			{"project", domain.ChatFilter{ProjectID: w.prjA.ID, Page: domain.Page{Limit: 10}}, inA},
			{"limit+1", domain.ChatFilter{ProjectID: w.prjA.ID, Page: domain.Page{Limit: 2}}, inA[:3]},
			{"after", domain.ChatFilter{ProjectID: w.prjA.ID, Page: domain.Page{Limit: 2, After: inA[2]}}, inA[3:]},
			{"member", domain.ChatFilter{MemberUserID: w.alice.ID, Page: domain.Page{Limit: 10}}, inA},
			{"member of other project", domain.ChatFilter{ProjectID: w.prjB.ID, MemberUserID: w.alice.ID, Page: domain.Page{Limit: 10}}, []string{}},
		} {
			t.Run("list "+tt.name, func(t *testing.T) {
				got, err := s.ListChats(ctx(), tt.f)
				must(t, err)
				equal(t, ids(got, func(c domain.Chat) string { return c.ID }), tt.want)
			})
		}
		t.Run("update", func(t *testing.T) {
			other := newProvider(t, s, w.prjA)
			c := *w.chatA
			c.AIProviderID, c.Name, c.SystemMessage, c.Model, c.UpdatedAt = other.ID, "renamed", "", "", t0.Add(time.Minute)
			must(t, s.UpdateChat(ctx(), &c, time.Time{}))
			got, err := s.GetChat(ctx(), c.ID)
			must(t, err)
			equal(t, got, &c)
		})
		t.Run("update to unknown provider", func(t *testing.T) {
			c := *w.chatB
			c.AIProviderID = "aip_ghost"
			wantErr(t, s.UpdateChat(ctx(), &c, time.Time{}), domain.Invalid, "AI provider aip_ghost does not exist")
		})
		t.Run("update unknown", func(t *testing.T) {
			c := *w.chatB
			c.ID = "cht_nope"
			wantErr(t, s.UpdateChat(ctx(), &c, time.Time{}), domain.NotFound, "chat cht_nope does not exist")
		})
		t.Run("delete cascades to conversations", func(t *testing.T) {
			conv := newConversation(w.chatB)
			must(t, s.AppendTurn(ctx(), conv, true, turn(conv.ID, 0, "hello")))
			must(t, s.DeleteChat(ctx(), w.chatB.ID))
			_, err := s.GetChat(ctx(), w.chatB.ID)
			wantErr(t, err, domain.NotFound, "")
			_, err = s.GetConversation(ctx(), conv.ID)
			wantErr(t, err, domain.NotFound, "")
			msgs, err := s.ListMessages(ctx(), conv.ID)
			must(t, err)
			if got, want := len(msgs), 0; got != want {
				t.Fatalf("messages left = %d; want %d", got, want)
			}
			wantErr(t, s.DeleteChat(ctx(), w.chatB.ID), domain.NotFound, "chat "+w.chatB.ID+" does not exist")
			// Its provider is free now.
			must(t, s.DeleteProvider(ctx(), w.provB.ID))
		})
	})
}

// rollBackAfter rolls back, one at a time, the migrations applied after
// the one named last, as `parley migrate status` lists them.
func rollBackAfter(t *testing.T, s *store.Store, last string) {
	t.Helper()
	for {
		var out bytes.Buffer
		must(t, s.Migrate(ctx(), "status", &out))
		newest := ""
		for line := range strings.Lines(out.String()) {
			if f := strings.Fields(line); len(f) >= 2 && f[1] == "applied" {
				newest = f[0]
			}
		}
		switch newest {
		case last:
			return
		case "":
			t.Fatalf("rolled back every migration without meeting %s", last)
		}
		must(t, s.Migrate(ctx(), "down", nil))
	}
}

// storedMessages reads a conversation's messages with SQL that every
// schema version since 00003 answers: a line of columns per message, in
// seq order.
func storedMessages(t *testing.T, s *store.Store, convID string) []string {
	t.Helper()
	rows, err := s.DB().Raw("SELECT id, seq, role, content, tool_calls, model, finish_reason, prompt_tokens, completion_tokens, total_tokens "+
		"FROM messages WHERE conversation_id = ? ORDER BY seq", convID).Rows()
	must(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, role, content, calls, model, finish string
		var seq, prompt, completion, total int
		must(t, rows.Scan(&id, &seq, &role, &content, &calls, &model, &finish, &prompt, &completion, &total))
		out = append(out, fmt.Sprint(id, seq, role, content, calls, model, finish, prompt, completion, total))
	}
	must(t, rows.Err())
	return out
}

// messageColumnsOf is what storedMessages reads of msgs, which call no
// tools.
func messageColumnsOf(msgs []domain.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, fmt.Sprint(m.ID, m.Seq, string(m.Role), m.Content, "", m.Model, m.FinishReason,
			m.Usage.PromptTokens, m.Usage.CompletionTokens, m.Usage.TotalTokens))
	}
	return out
}

// turn returns a user message and the assistant's reply at seq and seq+1.
func turn(convID string, seq int, text string) []domain.Message {
	return []domain.Message{
		{ID: domain.NewID(domain.PrefixMessage), ConversationID: convID, Seq: seq, Role: domain.RoleUser, Content: text, CreatedAt: t0},
		{
			ID: domain.NewID(domain.PrefixMessage), ConversationID: convID, Seq: seq + 1, Role: domain.RoleAssistant, Content: "re: " + text,
			Model: "gpt-4o", FinishReason: "stop", Usage: domain.Usage{PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7}, CreatedAt: t0,
		},
	}
}

// TestLongTurn stores a turn of more messages than one SQLite INSERT
// carries, so its messages go in several statements of one transaction.
func TestLongTurn(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		conv := newConversation(w.chatA)
		var msgs []domain.Message
		for i := range 35 {
			msgs = append(msgs, turn(conv.ID, 2*i, fmt.Sprint("part ", i))...)
			// The usage's details go in every statement too.
			msgs[len(msgs)-1].Usage.CachedTokens, msgs[len(msgs)-1].Usage.CacheWriteTokens, msgs[len(msgs)-1].Usage.ReasoningTokens = 1, i%2, 2
		}
		must(t, s.AppendTurn(ctx(), conv, true, msgs))
		got, err := s.ListMessages(ctx(), conv.ID)
		must(t, err)
		equal(t, got, msgs)
	})
}

func TestConversations(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		conv := newConversation(w.chatA)
		first := turn(conv.ID, 0, "one")
		first = append(first, domain.Message{ID: domain.NewID(domain.PrefixMessage), ConversationID: conv.ID, Seq: 2, Role: domain.RoleUser, DocumentID: "doc_x", Content: "doc body", CreatedAt: t0})
		slices.Reverse(first) // stored order must come from Seq, not insertion
		must(t, s.AppendTurn(ctx(), conv, true, first))

		t.Run("get", func(t *testing.T) {
			got, err := s.GetConversation(ctx(), conv.ID)
			must(t, err)
			equal(t, got, conv)
		})
		t.Run("get unknown", func(t *testing.T) {
			_, err := s.GetConversation(ctx(), "cnv_nope")
			wantErr(t, err, domain.NotFound, "conversation cnv_nope does not exist")
		})
		t.Run("messages in order", func(t *testing.T) {
			got, err := s.ListMessages(ctx(), conv.ID)
			must(t, err)
			want := slices.Clone(first)
			slices.Reverse(want)
			equal(t, got, want)
		})
		t.Run("continue", func(t *testing.T) {
			later := t0.Add(time.Minute)
			c := *conv
			c.UpdatedAt = later
			must(t, s.AppendTurn(ctx(), &c, false, turn(conv.ID, 3, "two")))
			got, err := s.GetConversation(ctx(), conv.ID)
			must(t, err)
			if !got.UpdatedAt.Equal(later) || !got.CreatedAt.Equal(t0) {
				t.Fatalf("times = %v, %v; want created %v, updated %v", got.CreatedAt, got.UpdatedAt, t0, later)
			}
			msgs, err := s.ListMessages(ctx(), conv.ID)
			must(t, err)
			equal(t, ids(msgs, func(m domain.Message) string { return fmt.Sprint(m.Seq, m.Role) }),
				[]string{"0user", "1assistant", "2user", "3user", "4assistant"})
		})
		t.Run("duplicate seq is atomic", func(t *testing.T) {
			msgs := turn(conv.ID, 5, "three") // 5 is free,
			msgs[1].Seq = 4                   // 4 is taken
			c := *conv
			c.UpdatedAt = t0.Add(time.Hour)
			wantErr(t, s.AppendTurn(ctx(), &c, false, msgs), domain.Conflict,
				"conversation "+conv.ID+" was continued by another request at the same time; retry")
			got, err := s.ListMessages(ctx(), conv.ID)
			must(t, err)
			if got, want := len(got), 5; got != want {
				t.Fatalf("messages = %d; want %d (none of the failed turn)", got, want)
			}
			cv, err := s.GetConversation(ctx(), conv.ID)
			must(t, err)
			if got, want := cv.UpdatedAt, t0.Add(time.Minute); !got.Equal(want) {
				t.Fatalf("updatedAt = %v; want %v (unchanged)", got, want)
			}
		})
		t.Run("create is atomic", func(t *testing.T) {
			c := newConversation(w.chatA)
			msgs := turn(c.ID, 0, "x")
			msgs[1].Seq = 0
			wantErr(t, s.AppendTurn(ctx(), c, true, msgs), domain.Conflict, "")
			_, err := s.GetConversation(ctx(), c.ID)
			wantErr(t, err, domain.NotFound, "")
		})
		t.Run("continue unknown", func(t *testing.T) {
			c := &domain.Conversation{ID: "cnv_nope", ProjectID: w.prjA.ID, ChatID: w.chatA.ID, UpdatedAt: t0}
			wantErr(t, s.AppendTurn(ctx(), c, false, turn("cnv_nope", 0, "x")), domain.NotFound, "conversation cnv_nope does not exist")
		})
		t.Run("create for unknown chat", func(t *testing.T) {
			c := &domain.Conversation{ID: domain.NewID(domain.PrefixConversation), ProjectID: w.prjA.ID, ChatID: "cht_ghost", CreatedAt: t0, UpdatedAt: t0}
			// The chat is the path's, checked before the completion: gone now, it
			// was deleted while the completion ran.
			wantErr(t, s.AppendTurn(ctx(), c, true, turn(c.ID, 0, "x")), domain.NotFound, "chat cht_ghost does not exist")
		})
		t.Run("tool calls and results", func(t *testing.T) {
			c := newConversation(w.chatA)
			msg := func(seq int, m domain.Message) domain.Message {
				m.ID, m.ConversationID, m.Seq, m.CreatedAt = domain.NewID(domain.PrefixMessage), c.ID, seq, t0
				return m
			}
			msgs := []domain.Message{
				msg(0, domain.Message{Role: domain.RoleUser, Content: "weather in Paris and Oslo?"}),
				msg(1, domain.Message{Role: domain.RoleAssistant, FinishReason: "tool_calls", Model: "gpt-4o", ToolCalls: []domain.ToolCall{
					{ID: "call_1", Type: "function", Name: "weather", Arguments: `{"city":"Paris"}`},
					{ID: "call_2", Type: "function", Name: "weather", Arguments: `{"city":"Oslo", "note":"ünïcode \"quoted\""}`},
				}}),
				msg(2, domain.Message{Role: domain.RoleTool, ToolCallID: "call_1", Content: "18°C"}),
				msg(3, domain.Message{Role: domain.RoleTool, ToolCallID: "call_2", Content: ""}),
				msg(4, domain.Message{Role: domain.RoleAssistant, Content: "Mild in Paris.", FinishReason: "stop"}),
			}
			must(t, s.AppendTurn(ctx(), c, true, msgs))
			got, err := s.ListMessages(ctx(), c.ID)
			must(t, err)
			equal(t, got, msgs)
			must(t, s.DeleteConversation(ctx(), c.ID))
		})

		inA := []string{conv.ID}
		for range 2 {
			c := newConversation(w.chatA)
			must(t, s.AppendTurn(ctx(), c, true, nil))
			inA = append(inA, c.ID)
		}
		inA = sortedIDs(inA)
		convB := newConversation(w.chatB)
		must(t, s.AppendTurn(ctx(), convB, true, turn(convB.ID, 0, "b")))
		for _, tt := range []struct {
			name string
			f    domain.ConversationFilter
			want []string
		}{
			{"all", domain.ConversationFilter{Page: domain.Page{Limit: 10}}, sortedIDs(append(slices.Clone(inA), convB.ID))},
			{"chat", domain.ConversationFilter{ChatID: w.chatA.ID, Page: domain.Page{Limit: 10}}, inA},
			{"limit+1", domain.ConversationFilter{ChatID: w.chatA.ID, Page: domain.Page{Limit: 1}}, inA[:2]},
			{"after", domain.ConversationFilter{ChatID: w.chatA.ID, Page: domain.Page{Limit: 1, After: inA[1]}}, inA[2:]},
			{"member", domain.ConversationFilter{MemberUserID: w.bob.ID, Page: domain.Page{Limit: 10}}, []string{convB.ID}},
			{"member of another chat's project", domain.ConversationFilter{ChatID: w.chatA.ID, MemberUserID: w.bob.ID, Page: domain.Page{Limit: 10}}, []string{}},
		} {
			t.Run("list "+tt.name, func(t *testing.T) {
				got, err := s.ListConversations(ctx(), tt.f)
				must(t, err)
				equal(t, ids(got, func(c domain.Conversation) string { return c.ID }), tt.want)
			})
		}
		t.Run("delete", func(t *testing.T) {
			must(t, s.DeleteConversation(ctx(), conv.ID))
			_, err := s.GetConversation(ctx(), conv.ID)
			wantErr(t, err, domain.NotFound, "")
			msgs, err := s.ListMessages(ctx(), conv.ID)
			must(t, err)
			if got, want := len(msgs), 0; got != want {
				t.Fatalf("messages left = %d; want %d", got, want)
			}
			wantErr(t, s.DeleteConversation(ctx(), conv.ID), domain.NotFound, "conversation "+conv.ID+" does not exist")
			if _, err := s.GetChat(ctx(), w.chatA.ID); err != nil {
				t.Fatalf("deleting a conversation touched its chat: %v", err)
			}
		})
	})
}

// TestConversationSummaries: a listed conversation has its message count
// and the start of its first user message (not a system message before
// it), cut at domain.PreviewChars characters, not bytes, on both
// databases; one without messages has neither. A member's list, read a
// page per project, has them too.
func TestConversationSummaries(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		long := strings.Repeat("é🙂x", 40) // 120 characters, 280 bytes
		talk := newConversation(w.chatA)
		first := append([]domain.Message{{ID: domain.NewID(domain.PrefixMessage), ConversationID: talk.ID, Role: domain.RoleSystem,
			Content: "Be brief.", CreatedAt: t0}}, turn(talk.ID, 1, long)...)
		must(t, s.AppendTurn(ctx(), talk, true, first))
		must(t, s.AppendTurn(ctx(), talk, false, turn(talk.ID, 3, "and then?")))
		empty := newConversation(w.chatA)
		must(t, s.AppendTurn(ctx(), empty, true, nil))
		// A message that names a document holds its text, which can be
		// megabytes: the preview is the next user message's.
		doc := newConversation(w.chatA)
		must(t, s.AppendTurn(ctx(), doc, true, append([]domain.Message{{ID: domain.NewID(domain.PrefixMessage), ConversationID: doc.ID,
			Role: domain.RoleUser, DocumentID: "doc_1", Content: "the document's text", CreatedAt: t0}}, turn(doc.ID, 1, "Summarise it.")...)))

		want := map[string]domain.Conversation{
			talk.ID:  {MessageCount: 5, Preview: domain.Preview(long)},
			empty.ID: {},
			doc.ID:   {MessageCount: 3, Preview: "Summarise it."},
		}
		if got := domain.Preview(long); utf8.RuneCountInString(got) != domain.PreviewChars || !strings.HasPrefix(long, got) {
			t.Fatalf("domain.Preview = %q; want the first %d characters", got, domain.PreviewChars)
		}
		for name, f := range map[string]domain.ConversationFilter{
			"of a chat":  {ChatID: w.chatA.ID, Page: domain.Page{Limit: 10}},
			"a member's": {MemberUserID: w.alice.ID, Page: domain.Page{Limit: 10}},
		} {
			got, err := s.ListConversations(ctx(), f)
			must(t, err)
			if len(got) != len(want) {
				t.Fatalf("%s list has %d conversations; want %d", name, len(got), len(want))
			}
			for _, c := range got {
				if w := want[c.ID]; c.MessageCount != w.MessageCount || c.Preview != w.Preview {
					t.Errorf("%s list: %s has %d messages, preview %q; want %d, %q", name, c.ID, c.MessageCount, c.Preview, w.MessageCount, w.Preview)
				}
			}
		}
	})
}

// TestUsageDetailsSummed: the usage's details (tokens read from the
// cache, written to it, spent reasoning) are stored with each record, in
// one statement or several (SQLite; PostgreSQL's COPY), and summed.
func TestUsageDetailsSummed(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		var records []domain.UsageRecord
		for i := range 70 {
			records = append(records, domain.UsageRecord{ID: domain.NewID(domain.PrefixMessage), ProjectID: w.prjA.ID, Model: "m",
				Usage:   domain.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15, CachedTokens: 4, CacheWriteTokens: i % 3, ReasoningTokens: 2},
				Outcome: domain.OutcomeOK, CreatedAt: t0})
		}
		must(t, s.InsertUsage(ctx(), records))
		got, err := s.SumUsage(ctx(), domain.UsageQuery{ProjectID: w.prjA.ID})
		must(t, err)
		equal(t, got, []domain.UsageTotal{{Usage: domain.Usage{PromptTokens: 700, CompletionTokens: 350, TotalTokens: 1050,
			CachedTokens: 280, CacheWriteTokens: 69, ReasoningTokens: 140}, Requests: 70}})
	})
}

// TestUsageByDay: grouped by day, usage totals are per UTC day, keyed
// YYYY-MM-DD in order, whatever the zone a record's time came in; pages
// go on after a day.
func TestUsageByDay(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		plus2 := time.FixedZone("UTC+2", 2*60*60)
		var records []domain.UsageRecord
		for _, at := range []time.Time{
			time.Date(2026, 11, 30, 23, 59, 59, 999000000, time.UTC),
			time.Date(2026, 12, 1, 1, 30, 0, 0, plus2), // 23:30 on November 30th in UTC
			time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
			time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC),
		} {
			records = append(records, domain.UsageRecord{ID: domain.NewID(domain.PrefixMessage), ProjectID: w.prjA.ID, Model: "m",
				Usage: domain.Usage{PromptTokens: 1, TotalTokens: 1}, Outcome: domain.OutcomeOK, CreatedAt: at})
		}
		must(t, s.InsertUsage(ctx(), records))
		day := func(key string, n int) domain.UsageTotal {
			return domain.UsageTotal{Key: key, Usage: domain.Usage{PromptTokens: n, TotalTokens: n}, Requests: int64(n)}
		}
		q := domain.UsageQuery{ProjectID: w.prjA.ID, GroupBy: domain.GroupByDay}
		got, err := s.SumUsage(ctx(), q)
		must(t, err)
		equal(t, got, []domain.UsageTotal{day("2026-11-30", 2), day("2026-12-01", 1), day("2026-12-03", 1)})
		after := "2026-11-30"
		q.After, q.Limit = &after, 1
		got, err = s.SumUsage(ctx(), q)
		must(t, err)
		equal(t, got, []domain.UsageTotal{day("2026-12-01", 1)})
	})
}

func TestUsage(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		rec := func(at time.Duration, model, prov, chat, key string, prompt, completion int) domain.UsageRecord {
			return domain.UsageRecord{
				ID: domain.NewID(domain.PrefixMessage), ProjectID: w.prjA.ID, ChatID: chat, AIProviderID: prov, Model: model,
				UserID: w.alice.ID, KeyID: key, Usage: domain.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion},
				Latency: 1500 * time.Millisecond, TimeToFirst: 200 * time.Millisecond, Outcome: domain.OutcomeOK, Stream: true, CreatedAt: t0.Add(at),
			}
		}
		failed := func(r domain.UsageRecord) domain.UsageRecord { r.Outcome = domain.OutcomeUpstreamError; return r }
		records := []domain.UsageRecord{
			rec(0, "gpt-4o", "aip_1", "cht_1", "key_1", 10, 1),
			rec(time.Minute, "gpt-4o", "aip_1", "", "key_2", 20, 2),
			rec(time.Hour, "claude", "aip_2", "cht_1", "key_1", 30, 3),
			rec(2*time.Hour, "claude", "aip_2", "cht_2", "key_1", 40, 4),
			failed(rec(150*time.Minute, "claude", "aip_2", "cht_2", "key_1", 5, 0)),
			{ID: domain.NewID(domain.PrefixMessage), ProjectID: w.prjB.ID, Model: "gpt-4o", Usage: domain.Usage{CompletionTokens: 1000, TotalTokens: 1000}, CreatedAt: t0},
		}
		must(t, s.InsertUsage(ctx(), records))
		must(t, s.InsertUsage(ctx(), nil))

		u := func(key string, prompt, completion int, n int64) domain.UsageTotal {
			return domain.UsageTotal{Key: key, Usage: domain.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}, Requests: n}
		}
		all := domain.UsageQuery{ProjectID: w.prjA.ID, From: t0, To: t0.Add(24 * time.Hour)}
		with := func(q domain.UsageQuery, g domain.UsageGroupBy) domain.UsageQuery { q.GroupBy = g; return q }
		for _, tt := range []struct {
			name string
			q    domain.UsageQuery
			want []domain.UsageTotal
		}{
			{"total", all, []domain.UsageTotal{u("", 105, 10, 5)}},
			{"by model", with(all, domain.GroupByModel), []domain.UsageTotal{u("claude", 75, 7, 3), u("gpt-4o", 30, 3, 2)}},
			{"by provider", with(all, domain.GroupByProvider), []domain.UsageTotal{u("aip_1", 30, 3, 2), u("aip_2", 75, 7, 3)}},
			{"by chat", with(all, domain.GroupByChat), []domain.UsageTotal{u("", 20, 2, 1), u("cht_1", 40, 4, 2), u("cht_2", 45, 4, 2)}},
			{"by key", with(all, domain.GroupByKey), []domain.UsageTotal{u("key_1", 85, 8, 4), u("key_2", 20, 2, 1)}},
			{"by outcome", with(all, domain.GroupByOutcome), []domain.UsageTotal{u("ok", 100, 10, 4), u("upstream_error", 5, 0, 1)}},
			{"from is inclusive, to exclusive", domain.UsageQuery{ProjectID: w.prjA.ID, From: t0.Add(time.Minute), To: t0.Add(2 * time.Hour)}, []domain.UsageTotal{u("", 50, 5, 2)}},
			{"open bounds", domain.UsageQuery{ProjectID: w.prjA.ID}, []domain.UsageTotal{u("", 105, 10, 5)}},
			{"empty window total", domain.UsageQuery{ProjectID: w.prjA.ID, From: t0.Add(-time.Hour), To: t0}, []domain.UsageTotal{u("", 0, 0, 0)}},
			{"empty window grouped", domain.UsageQuery{ProjectID: w.prjA.ID, From: t0.Add(-time.Hour), To: t0, GroupBy: domain.GroupByModel}, []domain.UsageTotal{}},
			{"other project", domain.UsageQuery{ProjectID: w.prjB.ID, GroupBy: domain.GroupByModel}, []domain.UsageTotal{u("gpt-4o", 0, 1000, 1)}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.SumUsage(ctx(), tt.q)
				must(t, err)
				equal(t, got, tt.want)
			})
		}
		// A page of groups: those whose key sorts after After, byte by
		// byte, at most Limit of them. After "" is after the group without
		// a key (stateless completions, by chat), not "no cursor".
		key := func(s string) *string { return &s }
		page := func(q domain.UsageQuery, after *string, limit int) domain.UsageQuery {
			q.After, q.Limit = after, limit
			return q
		}
		for _, tt := range []struct {
			name string
			q    domain.UsageQuery
			want []domain.UsageTotal
		}{
			{"first page", page(with(all, domain.GroupByChat), nil, 2), []domain.UsageTotal{u("", 20, 2, 1), u("cht_1", 40, 4, 2)}},
			{"after the empty key", page(with(all, domain.GroupByChat), key(""), 1), []domain.UsageTotal{u("cht_1", 40, 4, 2)}},
			{"after a key", page(with(all, domain.GroupByChat), key("cht_1"), 2), []domain.UsageTotal{u("cht_2", 45, 4, 2)}},
			{"after the last key", page(with(all, domain.GroupByChat), key("cht_2"), 2), []domain.UsageTotal{}},
			{"after a key of no group", page(with(all, domain.GroupByModel), key("c"), 5), []domain.UsageTotal{u("claude", 75, 7, 3), u("gpt-4o", 30, 3, 2)}},
			{"outcomes byte by byte", page(with(all, domain.GroupByOutcome), key("ok"), 5), []domain.UsageTotal{u("upstream_error", 5, 0, 1)}},
			{"no limit", page(with(all, domain.GroupByKey), key("key_1"), 0), []domain.UsageTotal{u("key_2", 20, 2, 1)}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.SumUsage(ctx(), tt.q)
				must(t, err)
				equal(t, got, tt.want)
			})
		}
		t.Run("keys in byte order", func(t *testing.T) {
			// A locale's collation would put "_b" and "a" before "B", and
			// ignore the "-" of "b-2".
			var odd []domain.UsageRecord
			for _, m := range []string{"b1", "a", "B", "_b", "b-2", "é", "Z"} {
				r := rec(5*time.Hour, m, "", "", "", 1, 1)
				r.ProjectID = w.prjB.ID
				odd = append(odd, r)
			}
			must(t, s.InsertUsage(ctx(), odd))
			q := domain.UsageQuery{ProjectID: w.prjB.ID, From: t0.Add(5 * time.Hour), GroupBy: domain.GroupByModel}
			got, err := s.SumUsage(ctx(), q)
			must(t, err)
			var keys []string
			for _, g := range got {
				keys = append(keys, g.Key)
			}
			if want := []string{"B", "Z", "_b", "a", "b-2", "b1", "é"}; !slices.Equal(keys, want) {
				t.Fatalf("models in the order %q; want %q", keys, want)
			}
			got, err = s.SumUsage(ctx(), page(q, key("_b"), 2))
			must(t, err)
			if len(got) != 2 || got[0].Key != "a" || got[1].Key != "b-2" {
				t.Fatalf("after _b: %+v; want a, b-2", got)
			}
		})
		t.Run("unknown groupBy", func(t *testing.T) {
			_, err := s.SumUsage(ctx(), domain.UsageQuery{ProjectID: w.prjA.ID, GroupBy: "weekday"})
			wantErr(t, err, domain.Invalid, "groupBy must be one of model, provider, chat, key, outcome, day")
		})
		t.Run("unknown project", func(t *testing.T) {
			r := rec(0, "m", "", "", "", 1, 1)
			r.ProjectID = "prj_ghost"
			wantErr(t, s.InsertUsage(ctx(), []domain.UsageRecord{rec(0, "m", "", "", "", 1, 1), r}), domain.NotFound, "project prj_ghost does not exist")
		})
		t.Run("duplicate id", func(t *testing.T) {
			wantErr(t, s.InsertUsage(ctx(), records[:1]), domain.Conflict, "")
		})
		t.Run("failed batch stores nothing", func(t *testing.T) {
			got, err := s.SumUsage(ctx(), domain.UsageQuery{ProjectID: w.prjA.ID})
			must(t, err)
			if got, want := got[0].Requests, int64(5); got != want {
				t.Fatalf("requests = %d; want %d", got, want)
			}
		})
		t.Run("many batches", func(t *testing.T) {
			var many []domain.UsageRecord
			for range 1001 {
				many = append(many, rec(3*time.Hour, "bulk", "aip_3", "", "", 1, 1))
			}
			must(t, s.InsertUsage(ctx(), many))
			got, err := s.SumUsage(ctx(), domain.UsageQuery{ProjectID: w.prjA.ID, From: t0.Add(3 * time.Hour), GroupBy: domain.GroupByModel})
			must(t, err)
			equal(t, got, []domain.UsageTotal{u("bulk", 1001, 1001, 1001)})
		})
	})
}

func TestLimits(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		got, err := s.GetLimits(ctx(), w.prjA.ID)
		must(t, err)
		if *got != (domain.ProjectLimits{ProjectID: w.prjA.ID}) {
			t.Errorf("limits of a project without any = %+v, want zero", got)
		}
		want := domain.ProjectLimits{ProjectID: w.prjA.ID, RequestsPerMinute: 60, TokensPerMinute: 1000, KeyRequestsPerMinute: 10,
			KeyTokensPerMinute: 100, ConcurrentStreams: 7, ConcurrentStreamsPerKey: 2, UpdatedAt: t0}
		must(t, s.PutLimits(ctx(), &want))
		want.RequestsPerMinute = 61 // the second put replaces the first
		must(t, s.PutLimits(ctx(), &want))
		got, err = s.GetLimits(ctx(), w.prjA.ID)
		must(t, err)
		if *got != want {
			t.Errorf("GetLimits = %+v, want %+v", got, want)
		}
		err = s.PutLimits(ctx(), &domain.ProjectLimits{ProjectID: "prj_missing", UpdatedAt: t0})
		if got, want := domain.KindOf(err), domain.NotFound; got != want {
			t.Errorf("PutLimits on a missing project: kind %v, want %v (%v)", got, want, err)
		}
		must(t, s.DeleteProject(ctx(), w.prjA.ID))
		got, err = s.GetLimits(ctx(), w.prjA.ID)
		must(t, err)
		if got.RequestsPerMinute != 0 {
			t.Error("limits outlived their project")
		}
	})
}

// Turns that arrive together share a transaction (see turns.go), yet each
// caller gets its own answer: the good turns are stored, and a conflict, a
// missing conversation or a missing chat fails only its own turn.
func TestConcurrentTurnsGroupCommit(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		newConv := func(chatID string) *domain.Conversation {
			return &domain.Conversation{ID: domain.NewID(domain.PrefixConversation), ProjectID: w.prjA.ID, ChatID: chatID, CreatedAt: t0, UpdatedAt: t0}
		}
		contested := newConv(w.chatA.ID)
		must(t, s.AppendTurn(ctx(), contested, true, turn(contested.ID, 0, "first")))

		type job struct {
			conv    *domain.Conversation
			create  bool
			msgs    []domain.Message
			wantErr domain.Kind // 0: must succeed; Conflict: one of the two contested turns
		}
		var jobs []job
		for i := range 60 {
			c := newConv(w.chatA.ID)
			jobs = append(jobs, job{conv: c, create: true, msgs: turn(c.ID, 0, fmt.Sprint("new ", i))})
		}
		for i := range 2 { // two continuations taking the same seq: one wins
			c := *contested
			c.UpdatedAt = t0.Add(time.Minute)
			jobs = append(jobs, job{conv: &c, msgs: turn(c.ID, 2, fmt.Sprint("contest ", i)), wantErr: domain.Conflict})
		}
		ghost := newConv("cht_ghost")
		jobs = append(jobs, job{conv: ghost, create: true, msgs: turn(ghost.ID, 0, "ghost"), wantErr: domain.NotFound})
		gone := newConv(w.chatA.ID)
		jobs = append(jobs, job{conv: gone, msgs: turn(gone.ID, 0, "gone"), wantErr: domain.NotFound})

		if s.Dialect() == store.SQLite {
			// The first writer waits (up to 10 s) for a turn to queue
			// behind it, which a loaded machine's scheduler might
			// otherwise let each goroutine miss.
			var once sync.Once
			s.SetBeforeWrite(func() {
				once.Do(func() {
					for end := time.Now().Add(10 * time.Second); s.WaitingTurns() == 0 && time.Now().Before(end); {
						time.Sleep(time.Millisecond)
					}
				})
			})
		}
		errs := make([]error, len(jobs))
		var start, done sync.WaitGroup
		start.Add(1)
		for i, j := range jobs {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				errs[i] = s.AppendTurn(ctx(), j.conv, j.create, j.msgs)
			}()
		}
		start.Done()
		done.Wait()
		s.SetBeforeWrite(nil)

		conflicts := 0
		for i, j := range jobs {
			switch {
			case j.wantErr == domain.Conflict && errs[i] != nil:
				wantErr(t, errs[i], domain.Conflict, "")
				conflicts++
			case j.wantErr == domain.Conflict:
			case j.wantErr != 0:
				wantErr(t, errs[i], j.wantErr, "")
			default:
				must(t, errs[i])
				got, err := s.ListMessages(ctx(), j.conv.ID)
				must(t, err)
				equal(t, got, j.msgs)
			}
		}
		if conflicts != 1 {
			t.Errorf("%d of the two contested continuations failed; want exactly 1", conflicts)
		}
		msgs, err := s.ListMessages(ctx(), contested.ID)
		must(t, err)
		if len(msgs) != 4 {
			t.Errorf("contested conversation has %d messages; want 4 (first turn and the winner's)", len(msgs))
		}
		for _, c := range []*domain.Conversation{ghost, gone} {
			if _, err := s.GetConversation(ctx(), c.ID); domain.KindOf(err) != domain.NotFound {
				t.Errorf("failed turn left conversation %s behind (err %v)", c.ID, err)
			}
			if got, err := s.ListMessages(ctx(), c.ID); err != nil || len(got) != 0 {
				t.Errorf("failed turn left %d messages behind (err %v)", len(got), err)
			}
		}
		if s.Dialect() == store.SQLite && s.LargestTurnBatch() < 2 {
			// One writer: the turns that wait while it commits go together.
			t.Errorf("largest turn batch = %d; 64 turns at once never shared a transaction", s.LargestTurnBatch())
		}
		t.Logf("largest turn batch: %d", s.LargestTurnBatch())
	})
}

// TestTurnBatch writes batches as the group commit does (on PostgreSQL one
// statement of several data-modifying WITHs): new and continued
// conversations together are all stored, and a batch with one continuation
// of a conversation that is gone stores nothing.
func TestTurnBatch(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		old := newConversation(w.chatA)
		must(t, s.AppendTurn(ctx(), old, true, turn(old.ID, 0, "first")))

		later := t0.Add(time.Hour)
		cont := *old
		cont.UpdatedAt = later
		a, b := newConversation(w.chatA), newConversation(w.chatA)
		batch := []store.TurnForTest{
			{Conv: a, Create: true, Msgs: turn(a.ID, 0, "a")},
			{Conv: &cont, Msgs: turn(old.ID, 2, "again")},
			{Conv: b, Create: true, Msgs: turn(b.ID, 0, "b")},
		}
		must(t, s.AppendTurnBatch(ctx(), batch))
		for _, tt := range batch {
			got, err := s.ListMessages(ctx(), tt.Conv.ID)
			must(t, err)
			want := tt.Msgs
			if tt.Conv.ID == old.ID {
				want = append(turn(old.ID, 0, "first"), want...)
				got[0].ID, got[1].ID = want[0].ID, want[1].ID // the first turn's, made apart
			}
			equal(t, got, want)
		}
		got, err := s.GetConversation(ctx(), old.ID)
		must(t, err)
		if !got.UpdatedAt.Equal(later) {
			t.Errorf("continued conversation's updatedAt = %v; want %v", got.UpdatedAt, later)
		}

		ghost, c := newConversation(w.chatA), newConversation(w.chatA)
		err = s.AppendTurnBatch(ctx(), []store.TurnForTest{
			{Conv: c, Create: true, Msgs: turn(c.ID, 0, "c")},
			{Conv: ghost, Msgs: turn(ghost.ID, 0, "ghost")},
		})
		if err == nil {
			t.Fatal("a batch continuing a conversation that does not exist was stored")
		}
		if _, err := s.GetConversation(ctx(), c.ID); domain.KindOf(err) != domain.NotFound {
			t.Errorf("the failed batch's new conversation was stored (err %v)", err)
		}
	})
}

// TestSQLiteCheckpointsInBackground checks that committed turns reach the
// database file while the store stays open, though far fewer pages were
// written than SQLite's own checkpoint waits for (1,000): the Store's
// checkpointer copies the log back, so no commit has to.
func TestSQLiteCheckpointsInBackground(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	s, err := store.Open(ctx(), path)
	must(t, err)
	defer s.Close()
	var autocheckpoint int
	must(t, s.DB().Raw("PRAGMA wal_autocheckpoint").Row().Scan(&autocheckpoint))
	if autocheckpoint != 0 {
		t.Fatalf("wal_autocheckpoint = %d; want 0 (commits must not checkpoint)", autocheckpoint)
	}
	// Switching to WAL mode writes the file's first page; the schema and
	// every row after it go to the log.
	opened, err := os.Stat(path)
	must(t, err)
	must(t, s.Migrate(ctx(), "up", nil))
	w := newWorld(t, s)
	for i := range 20 {
		c := newConversation(w.chatA)
		must(t, s.AppendTurn(ctx(), c, true, turn(c.ID, 0, fmt.Sprint("turn ", i))))
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		fi, err := os.Stat(path)
		must(t, err)
		if fi.Size() > opened.Size() {
			var rows int
			must(t, s.DB().Raw("SELECT count(*) FROM messages").Row().Scan(&rows))
			if rows != 40 {
				t.Fatalf("%d messages after the checkpoint; want 40", rows)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database file is still empty %v after the writes: nothing checkpointed the log", 5*time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRestartWAL checks the checkpointer's bound on the write-ahead log:
// while turns keep arriving, a PASSIVE checkpoint never copies the whole
// log and SQLite never starts it afresh, so the checkpointer restarts it
// (RESTART) holding the write connection. The turns written meanwhile all
// land, and the log starts again from its beginning.
func TestRestartWAL(t *testing.T) {
	s := dbtest.SQLite(t)
	w := newWorld(t, s)
	stop := make(chan struct{})
	done := make(chan error, 1)
	var written atomic.Int64
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			c := newConversation(w.chatA)
			if err := s.AppendTurn(ctx(), c, true, turn(c.ID, 0, "hello")); err != nil {
				done <- err
				return
			}
			written.Add(1)
		}
	}()
	waitWritten := func(n int64) {
		for written.Load() < n {
			select {
			case err := <-done:
				t.Fatalf("a turn failed: %v", err)
			case <-time.After(time.Millisecond):
			}
		}
	}
	waitWritten(300)
	before := s.WALFrames()
	s.RestartWAL()
	waitWritten(written.Load() + 5) // a few turns into the restarted log
	after := s.WALFrames()
	close(stop)
	must(t, <-done)
	if before < 1000 || after >= before/2 {
		t.Errorf("log frames: %d before the restart, %d a few turns after; want over 1,000, then far fewer", before, after)
	}
	var n int64
	must(t, s.DB().Raw("SELECT COUNT(*) FROM conversations").Row().Scan(&n))
	if n != written.Load() {
		t.Errorf("%d conversations stored; want the %d turns written", n, written.Load())
	}
}

// TestDatabaseThatCannotWrite: a database that refuses writes for a reason
// of the operator's (SQLite's disk full, PostgreSQL read-only, as a standby
// after a failover is) makes them Unavailable (503, retry later), not
// Internal faults of Parley's; reads still work.
func TestDatabaseThatCannotWrite(t *testing.T) {
	check := func(t *testing.T, s *store.Store, w *world) {
		t.Helper()
		c := newConversation(w.chatA)
		err := s.AppendTurn(ctx(), c, true, turn(c.ID, 0, strings.Repeat("x", 64<<10)))
		if got := domain.KindOf(err); got != domain.Unavailable {
			t.Errorf("AppendTurn: %v (kind %v); want Unavailable", err, got)
		}
		err = s.CreateUser(ctx(), &domain.User{ID: domain.NewID(domain.PrefixUser), Name: strings.Repeat("y", 64<<10), CreatedAt: t0})
		if got := domain.KindOf(err); got != domain.Unavailable {
			t.Errorf("CreateUser: %v (kind %v); want Unavailable", err, got)
		}
		if _, err := s.GetUser(ctx(), w.alice.ID); err != nil {
			t.Errorf("GetUser: %v", err)
		}
	}
	t.Run("sqlite disk full", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "parley.db")
		s, err := store.Open(ctx(), path)
		must(t, err)
		must(t, s.Migrate(ctx(), "up", nil))
		w := newWorld(t, s)
		var pages int
		must(t, s.DB().Raw("PRAGMA page_count").Scan(&pages).Error)
		must(t, s.Close())
		// No page beyond those it has: the disk is full.
		full, err := store.Open(ctx(), fmt.Sprintf("sqlite:%s?_pragma=max_page_count(%d)", path, pages))
		must(t, err)
		defer full.Close()
		check(t, full, w)
	})
	t.Run("postgres read-only", func(t *testing.T) {
		dsn := dbtest.PostgresURL(t)
		s, err := store.Open(ctx(), dsn)
		must(t, err)
		w := newWorld(t, s)
		must(t, s.Close())
		ro, err := store.Open(ctx(), dsn+"&default_transaction_read_only=on")
		must(t, err)
		defer ro.Close()
		check(t, ro, w)
	})
}

// TestOpenSQLiteErrorNamesThePath: a SQLite database that cannot be opened
// (here a directory; a read-only data directory fails alike) is reported
// with its path, which the driver's "unable to open database file" leaves
// out.
func TestOpenSQLiteErrorNamesThePath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "parley.db")
	must(t, os.Mkdir(dir, 0o700))
	s, err := store.Open(ctx(), dir)
	if err == nil {
		s.Close()
		t.Fatal("opened a directory as a SQLite database")
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name %s", err, dir)
	}
}

// TestOpenNamesNoDefault: a DSN that names no database is refused, in
// the directory the test runs in too, where a default path would have
// made ./data/parley.db: where the default database lives is the
// server's choice (app.Config.DSN), not the store's.
func TestOpenNamesNoDefault(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, dsn := range []string{"", "sqlite:", "sqlite://"} {
		s, err := store.Open(ctx(), dsn)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) opened a database", dsn)
		} else if !strings.Contains(err.Error(), "no database named") {
			t.Errorf("Open(%q) = %v, want it to say no database is named", dsn, err)
		}
	}
	if _, err := os.Stat("data"); !os.IsNotExist(err) {
		t.Errorf("a data directory was made (%v)", err)
	}
}

// TestMigrateDownOverDuplicateMessageIDs: since 00005 (00004 on SQLite) a
// message id is no key, so two messages may share one (written by hand;
// Parley's ids do not collide). Rolling back, which makes id the key
// again, then fails as a whole, leaving the schema and the messages as
// they were, with an error that says which id is duplicated.
func TestMigrateDownOverDuplicateMessageIDs(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		conv := newConversation(w.chatA)
		msgs := turn(conv.ID, 0, "one")
		msgs[1].ID = msgs[0].ID
		must(t, s.AppendTurn(ctx(), conv, true, msgs))
		// The later migrations keep the columns or add ones the rollback
		// drops; SQLite's 00005 changes nothing.
		last, applied := "00005_message_key.sql", 5
		if s.Dialect() == store.SQLite {
			last, applied = "00004_turn_pages.sql", 4
		}
		rollBackAfter(t, s, last)
		err := s.Migrate(ctx(), "down", nil)
		if err == nil {
			t.Fatal("migrate down over duplicate message ids succeeded")
		}
		want := msgs[0].ID
		if s.Dialect() == store.SQLite {
			want = "messages.id" // SQLite names the column, not the value
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("migrate down: %v; want it to name %s", err, want)
		}
		var out bytes.Buffer
		must(t, s.Migrate(ctx(), "status", &out))
		if strings.Count(out.String(), "applied") != applied {
			t.Errorf("status after the failed rollback:\n%s", out.String())
		}
		if got, want := storedMessages(t, s, conv.ID), messageColumnsOf(msgs); !slices.Equal(got, want) {
			t.Errorf("messages after the failed rollback\n%q\nwant\n%q", got, want)
		}
	})
}

// TestTurnWhoseAnswerIsLost: the connection of a turn's write is lost
// after PostgreSQL committed the turn and before its answer arrived (the
// network failed between them). The write is run again on another
// connection, which finds the turn's keys taken by the committed one: the
// turn is stored, once, and AppendTurn says so rather than report a
// conflict, or the database down. Both kinds of write, a new conversation
// and a continued one.
func TestTurnWhoseAnswerIsLost(t *testing.T) {
	s, p, direct := postgresWithProxy(t)
	w := newWorld(t, s)
	db, err := direct.DB().DB()
	must(t, err)
	c := newConversation(w.chatA)
	for i, create := range []bool{true, false} {
		msgs := turn(c.ID, 2*i, fmt.Sprint("turn ", i))
		reply := msgs[len(msgs)-1].ID
		// The write waits, its statement prepared and running, for the
		// conversation's row, which the test holds: a new one's key (an
		// insert not yet committed), a continued one's row (FOR UPDATE).
		// Its answer is lost from the moment it is let go.
		hold, err := db.BeginTx(ctx(), nil)
		must(t, err)
		if create {
			_, err = hold.Exec("INSERT INTO conversations (id, project_id, chat_id, created_at, updated_at) VALUES ($1, $2, $3, now(), now())",
				c.ID, c.ProjectID, c.ChatID)
		} else {
			_, err = hold.Exec("SELECT id FROM conversations WHERE id = $1 FOR UPDATE", c.ID)
		}
		must(t, err)
		done := make(chan error, 1)
		go func() { done <- s.AppendTurn(ctx(), c, create, msgs) }()
		waitForLockWaiters(t, db, 1)
		p.LoseAnswers()
		must(t, hold.Rollback())
		waitUntilStored(t, direct, c.ID, reply)
		p.Cut()
		if err := <-done; err != nil {
			t.Fatalf("turn %d (create %v), committed and its answer lost: %v; want it reported stored", i, create, err)
		}
		stored, err := direct.ListMessages(ctx(), c.ID)
		must(t, err)
		if len(stored) != 2*(i+1) {
			t.Fatalf("turn %d: %d messages stored, want %d (each turn once)", i, len(stored), 2*(i+1))
		}
	}
}

// TestBatchWhoseAnswerIsLost: as TestTurnWhoseAnswerIsLost, for turns
// the group commit wrote together. When a batch fails, its turns are
// written again one by one; after a lost answer each then fails on its
// own keys and is found stored.
func TestBatchWhoseAnswerIsLost(t *testing.T) {
	s, p, direct := postgresWithProxy(t)
	w := newWorld(t, s)
	db, err := direct.DB().DB()
	must(t, err)

	// Four turns, one per writer, each waiting for a conversation's row
	// the test holds, make the next two wait in line: a batch. Its
	// statement then waits for a fifth row, and its answer is lost from
	// the moment it is let go.
	held := make([]*domain.Conversation, 5)
	holds := make([]*sql.Tx, len(held))
	for i := range held {
		held[i] = newConversation(w.chatA)
		must(t, s.AppendTurn(ctx(), held[i], true, turn(held[i].ID, 0, "first")))
		holds[i], err = db.BeginTx(ctx(), nil)
		must(t, err)
		_, err = holds[i].Exec("SELECT id FROM conversations WHERE id = $1 FOR UPDATE", held[i].ID)
		must(t, err)
	}
	appendTurn := func(c *domain.Conversation, create bool, msgs []domain.Message) chan error {
		done := make(chan error, 1)
		go func() { done <- s.AppendTurn(ctx(), c, create, msgs) }()
		return done
	}
	var leaders []chan error
	for _, c := range held[:4] {
		leaders = append(leaders, appendTurn(c, false, turn(c.ID, 2, "second")))
	}
	waitForLockWaiters(t, db, 4)
	continued, created := held[4], newConversation(w.chatA)
	continuedTurn, createdTurn := turn(continued.ID, 2, "second"), turn(created.ID, 0, "first")
	batch := []chan error{appendTurn(continued, false, continuedTurn), appendTurn(created, true, createdTurn)}
	for deadline := time.Now().Add(10 * time.Second); s.WaitingTurns() < len(batch); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d turns in line after 10s, want %d", s.WaitingTurns(), len(batch))
		}
	}
	for i, done := range leaders {
		must(t, holds[i].Rollback())
		if err := <-done; err != nil {
			t.Fatalf("turn of %s: %v", held[i].ID, err)
		}
	}
	waitForLockWaiters(t, db, 1)
	p.LoseAnswers()
	must(t, holds[4].Rollback())
	waitUntilStored(t, direct, continued.ID, continuedTurn[1].ID)
	waitUntilStored(t, direct, created.ID, createdTurn[1].ID)
	p.Cut()
	for i, done := range batch {
		if err := <-done; err != nil {
			t.Fatalf("batch's turn %d, committed and its answer lost: %v; want it reported stored", i, err)
		}
	}
	if got := s.LargestTurnBatch(); got != len(batch) {
		t.Fatalf("largest batch %d turns, want %d", got, len(batch))
	}
	for c, want := range map[*domain.Conversation]int{continued: 4, created: 2} {
		stored, err := direct.ListMessages(ctx(), c.ID)
		must(t, err)
		if len(stored) != want {
			t.Errorf("%s: %d messages stored, want %d (each turn once)", c.ID, len(stored), want)
		}
	}
}

// postgresWithProxy returns a store over a new PostgreSQL database
// reached through a proxy, the proxy, and a store over the same database
// reached directly, from which a test holds rows and reads what was
// committed while the proxy fails.
func postgresWithProxy(t *testing.T) (s *store.Store, p *tcpproxy.Proxy, direct *store.Store) {
	t.Helper()
	dsn := dbtest.PostgresURL(t)
	direct, err := store.Open(ctx(), dsn)
	must(t, err)
	t.Cleanup(func() { _ = direct.Close() })
	u, err := url.Parse(dsn)
	must(t, err)
	p = tcpproxy.Start(t, u.Host)
	u.Host = p.Addr()
	s, err = store.Open(ctx(), u.String())
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, p, direct
}

// waitForLockWaiters waits until n sessions of the test's database wait
// for a lock.
func waitForLockWaiters(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var waiting int
		must(t, db.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting))
		if waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes waiting for a row after 10s, want %d", waiting, n)
		}
	}
}

// waitUntilStored waits until the message is in the conversation.
func waitUntilStored(t *testing.T, s *store.Store, convID, msgID string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		stored, err := s.ListMessages(ctx(), convID)
		must(t, err)
		if slices.ContainsFunc(stored, func(m domain.Message) bool { return m.ID == msgID }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not committed within 10s", msgID)
		}
	}
}

// TestTurnsWhileSessionsAreEnded: PostgreSQL ends sessions in the middle
// of their statements (pg_terminate_backend, as a fast shutdown or a
// failover does), and the ended statement did not commit. A turn is
// written after its completion's upstream call was paid for, so it is
// written again on another connection rather than lost.
func TestTurnsWhileSessionsAreEnded(t *testing.T) {
	dsn := dbtest.PostgresURL(t)
	s, err := store.Open(ctx(), dsn)
	must(t, err)
	defer s.Close()
	killer, err := store.Open(ctx(), dsn)
	must(t, err)
	defer killer.Close()
	w := newWorld(t, s)

	stop := make(chan struct{})
	var killed, written atomic.Int64
	var kw sync.WaitGroup
	kw.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			var n int64
			// OFFSET 0 keeps the filter apart from the call, which would
			// otherwise also end the killer's own session. One session a
			// round, and the next round only once turns were written
			// meanwhile: on a loaded host (make test under -race) a
			// statement outlasts many rounds, and ending sessions at a
			// fixed pace ended some turns' every attempt, which no server
			// does.
			before := written.Load()
			if killer.DB().Raw(`SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
				AND state = 'active' ORDER BY random() LIMIT 1 OFFSET 0) AS busy`).Row().Scan(&n) == nil && n > 0 {
				killed.Add(n)
				for written.Load() < before+4 {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
				}
			}
		}
	})
	// Forty turns a writer at least, and more until a few sessions were
	// ended: on a quiet host the forty can all be written between two of
	// the killer's rounds, and then the test would prove nothing.
	var failed, tried atomic.Int64
	var wg sync.WaitGroup
	until := time.Now().Add(30 * time.Second)
	for range 8 {
		wg.Go(func() {
			for i := 0; i < 40 || (killed.Load() < 3 && time.Now().Before(until)); i++ {
				tried.Add(1)
				c := newConversation(w.chatA)
				if err := s.AppendTurn(ctx(), c, true, turn(c.ID, 0, "x")); err != nil {
					failed.Add(1)
					t.Log(err)
				} else {
					written.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	kw.Wait()
	t.Logf("%d sessions ended mid-statement, over %d turns", killed.Load(), tried.Load())
	if killed.Load() == 0 {
		t.Fatal("no session was ended while turns were written; the test proved nothing")
	}
	if failed.Load() > 0 {
		t.Errorf("%d of %d turns failed while sessions were ended; want every one written on another connection", failed.Load(), tried.Load())
	}
}

// migratedSQLiteFile opens a migrated SQLite database in a file of its own,
// which other connections (another process, as the tests play it) may open
// too; it is closed when the test ends.
func migratedSQLiteFile(t *testing.T) (string, *store.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "parley.db")
	s, err := store.Open(ctx(), path)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	must(t, s.Migrate(ctx(), "up", nil))
	return path, s
}

// otherProcessTx opens the SQLite file at path as another process would
// (modernc.org/sqlite, as the store opens it) and begins a transaction
// with begin on it; end rolls it back and closes the connection.
func otherProcessTx(t *testing.T, path, begin string) (conn *sql.Conn, end func()) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	must(t, err)
	conn, err = db.Conn(ctx())
	must(t, err)
	_, err = conn.ExecContext(ctx(), begin)
	must(t, err)
	return conn, func() {
		_, _ = conn.ExecContext(ctx(), "ROLLBACK")
		_ = conn.Close()
		_ = db.Close()
	}
}

// TestOpenWhileAnotherProcessWrites: a start that finds the SQLite file
// locked for writing past the busy timeout (10s) by another process (a
// migration rebuilding a table) fails after that one wait, saying so; it
// used to wait it out twenty times over (200s) and then blame the file's
// owner and mode.
func TestOpenWhileAnotherProcessWrites(t *testing.T) {
	path, s := migratedSQLiteFile(t)
	must(t, s.Close())
	_, end := otherProcessTx(t, path, "BEGIN IMMEDIATE")
	defer end()

	start := time.Now()
	_, err := store.Open(ctx(), path)
	took := time.Since(start)
	if err == nil {
		t.Fatal("Open succeeded while another process held the write lock")
	}
	if msg := err.Error(); !strings.Contains(msg, "another process kept it locked for writing") || strings.Contains(msg, "owner and mode") {
		t.Errorf("Open's error = %q; want it to say another process kept it locked, not to blame the file's mode", msg)
	}
	if took > 25*time.Second {
		t.Errorf("Open gave up after %v; want one busy timeout (10s)", took.Round(time.Second))
	}
}

// TestTurnsWhileSQLiteIsLocked: another process holds SQLite's write lock
// (a migration, a backup, a second Parley) past the busy timeout (10s).
// The turns that queued meanwhile fail together after one more busy
// timeout, with Unavailable: a batch refused for the lock used to be
// written again turn by turn, each waiting out the busy timeout on its
// own, so the last of n queued turns answered after (n+2)×10s. The
// message says the database is locked, which an operator running `parley
// admin` beside the server can act on, where "unavailable" sent them
// looking for a server that an embedded database does not have.
func TestTurnsWhileSQLiteIsLocked(t *testing.T) {
	path, s := migratedSQLiteFile(t)
	w := newWorld(t, s)
	other, err := store.Open(ctx(), path)
	must(t, err)
	defer other.Close()
	db, err := other.DB().DB()
	must(t, err)
	lock, err := db.Conn(ctx())
	must(t, err)
	defer lock.Close()
	_, err = lock.ExecContext(ctx(), "BEGIN IMMEDIATE")
	must(t, err)

	start := time.Now()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if i > 0 {
				time.Sleep(200 * time.Millisecond) // queued behind the first, which waits for the lock
			}
			c := newConversation(w.chatA)
			err := s.AppendTurn(ctx(), c, true, turn(c.ID, 0, fmt.Sprint("turn ", i)))
			took := time.Since(start)
			if got := domain.KindOf(err); got != domain.Unavailable {
				t.Errorf("turn %d: %v (kind %v); want Unavailable", i, err, got)
			}
			if msg := domain.MessageOf(err); !strings.Contains(msg, "locked") {
				t.Errorf("turn %d: message %q does not say the database is locked", i, msg)
			}
			if took > 25*time.Second {
				t.Errorf("turn %d answered after %v; want the queued turns to fail together, after two busy timeouts (20s)", i, took.Round(time.Second))
			}
		})
	}
	wg.Wait()
	_, err = lock.ExecContext(ctx(), "ROLLBACK")
	must(t, err)
	c := newConversation(w.chatA)
	must(t, s.AppendTurn(ctx(), c, true, turn(c.ID, 0, "once the lock is released")))
}

// TestWALRestartWhileAnotherProcessReads: another process holds a read
// transaction open (a backup, an open sqlite3 shell, Litestream keeps one
// for good) while the log passes checkpointRestartFrames, and a second
// Parley (`parley mcp`) has the database open too. No checkpointer can
// start the log afresh until that reader ends; each used to wait for it in
// SQLite's busy handler for the whole busy timeout, keeping writers out,
// and to try again 100ms later: turns took 10 to 20s, or failed as locked.
// Turns now go on at their pace.
func TestWALRestartWhileAnotherProcessReads(t *testing.T) {
	path, s := migratedSQLiteFile(t)
	w := newWorld(t, s)
	mcp, err := store.Open(ctx(), path) // with its own checkpointer
	must(t, err)
	defer mcp.Close()
	reader, end := otherProcessTx(t, path, "BEGIN")
	defer end()
	var n int
	must(t, reader.QueryRowContext(ctx(), "SELECT count(*) FROM users").Scan(&n)) // the read transaction holds its snapshot from here

	appendTurn := func(content string) time.Duration {
		c := newConversation(w.chatA)
		start := time.Now()
		must(t, s.AppendTurn(ctx(), c, true, turn(c.ID, 0, content)))
		return time.Since(start)
	}
	big := strings.Repeat("x", 1<<20) // a turn of two such messages adds 512 frames of 4 KiB
	for range 40 {                    // 80 MiB: past the 64 MiB of checkpointRestartFrames
		appendTurn(big)
	}
	var slowest time.Duration
	for range 10 {
		slowest = max(slowest, appendTurn("small"))
		time.Sleep(150 * time.Millisecond) // a checkpointer's tick or more between turns
	}
	t.Logf("slowest small turn: %v", slowest.Round(time.Millisecond))
	if slowest > 2*time.Second {
		t.Errorf("the slowest of 10 small turns took %v while another process read; want well under the busy timeout (10s)", slowest.Round(time.Millisecond))
	}
}

// TestTurnsThroughARestart: PostgreSQL restarting (its connections closed,
// new ones refused for a second) under turns being written: each turn is
// written once it takes connections again, not failed because the first
// reconnection was refused; a server that stays down fails them after
// reconnectWait (5s), the turns queued behind the first without waiting
// as long again.
func TestTurnsThroughARestart(t *testing.T) {
	s, p := dbtest.PostgresThroughProxy(t)
	w := newWorld(t, s)
	write := func(n int) []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				conv := newConversation(w.chatA)
				errs[i] = s.AppendTurn(ctx(), conv, true, turn(conv.ID, 0, "through a restart"))
			})
		}
		wg.Wait()
		return errs
	}

	p.Down()
	time.AfterFunc(time.Second, p.Up)
	for i, err := range write(4) {
		if err != nil {
			t.Errorf("turn %d, written while PostgreSQL restarted for 1s: %v", i, err)
		}
	}

	p.Down()
	defer p.Up()
	start := time.Now()
	for _, err := range write(4) {
		wantErr(t, err, domain.Unavailable, "the database is unavailable; retry later")
	}
	if took := time.Since(start); took > 12*time.Second {
		t.Errorf("4 turns with PostgreSQL down failed after %v; want about one reconnect wait (5s)", took.Round(time.Second))
	}
}

// TestCloseEndsTurnWritesUnderWay: a turn being written to a PostgreSQL
// that stopped answering (a frozen network, at shutdown) ends when the
// store closes, with an unavailable error that says the server is
// shutting down; Close does not wait out the write's own 30 s deadline,
// which would hold a stopping server that long after its grace period.
func TestCloseEndsTurnWritesUnderWay(t *testing.T) {
	s, p := dbtest.PostgresThroughProxy(t)
	w := newWorld(t, s)
	conv := newConversation(w.chatA)
	p.Stall()
	wrote := make(chan error, 1)
	go func() { wrote <- s.AppendTurn(ctx(), conv, true, turn(conv.ID, 0, "one")) }()
	for deadline := time.Now().Add(10 * time.Second); p.Held() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the turn's write never reached the database")
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-wrote:
		wantErr(t, err, domain.Unavailable, "the server is shutting down; retry")
	case <-time.After(10 * time.Second):
		t.Fatal("the turn's write did not end within 10s of Close")
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s")
	}
}

// TestTurnWritesThatPanic: a batch whose writes panic (the panic goes on
// up, to the request's recovery) still frees its writer's slot and hands
// on the turns in line: more such batches than the store has writers leave
// later turns written, and Close returning.
func TestTurnWritesThatPanic(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		type result struct {
			panicked any
			err      error
		}
		appendTurn := func(text string) result {
			t.Helper()
			conv := newConversation(w.chatA)
			done := make(chan result, 1)
			go func() {
				var r result
				defer func() { r.panicked = recover(); done <- r }()
				r.err = s.AppendTurn(ctx(), conv, true, turn(conv.ID, 0, text))
			}()
			select {
			case r := <-done:
				return r
			case <-time.After(10 * time.Second):
				t.Fatalf("the turn %q was not written within 10s", text)
				return result{}
			}
		}
		s.SetBeforeWrite(func() { panic("a driver's bug") })
		for i := range 8 { // more than a store's writers
			if r := appendTurn(fmt.Sprint("panics ", i)); r.panicked != "a driver's bug" {
				t.Fatalf("AppendTurn %d: panicked with %v, returned %v; want the write's panic", i, r.panicked, r.err)
			}
		}
		s.SetBeforeWrite(nil)
		if r := appendTurn("after"); r.panicked != nil || r.err != nil {
			t.Fatalf("a turn after the panics: panicked with %v, returned %v", r.panicked, r.err)
		}
	})
}

// TestTurnStoredUsesTheKey: the lookup of a turn whose answer was lost
// goes through the messages' key, not a scan of every message (id alone
// has no index on PostgreSQL since 00005), which could take the rest of
// its batch's deadline on a large table.
func TestTurnStoredUsesTheKey(t *testing.T) {
	s := dbtest.Postgres(t)
	tx, err := s.DB().DB()
	must(t, err)
	conn, err := tx.Conn(ctx())
	must(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx(), "SET enable_seqscan = off") // what the plan would be on a large table
	must(t, err)
	rows, err := conn.QueryContext(ctx(), "EXPLAIN "+store.TurnStoredQuery, "cnv_x", 1, "msg_x")
	must(t, err)
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		must(t, rows.Scan(&line))
		plan = append(plan, line)
	}
	must(t, rows.Err())
	if p := strings.Join(plan, "\n"); strings.Contains(p, "Seq Scan") || !strings.Contains(p, "messages_pkey") {
		t.Errorf("the lookup does not use the messages' key:\n%s", p)
	}
}

// TestDeadlockIsUnavailable: a delete that PostgreSQL ends to break a
// deadlock with another transaction is a 503 that says to retry, not an
// internal error. Here another transaction holds a member of the project
// and then waits for the project, which the delete's last statement holds
// while it waits for the member.
func TestDeadlockIsUnavailable(t *testing.T) {
	s := dbtest.Postgres(t)
	w := newWorld(t, s)
	db, err := s.DB().DB()
	must(t, err)
	tx, err := db.BeginTx(ctx(), nil)
	must(t, err)
	defer func() { _ = tx.Rollback() }()
	_, err = tx.ExecContext(ctx(), "UPDATE project_members SET role = role WHERE project_id = $1", w.prjA.ID)
	must(t, err)
	deleted := make(chan error, 1)
	go func() { deleted <- s.DeleteProject(ctx(), w.prjA.ID) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var waiting int
		must(t, db.QueryRowContext(ctx(), "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM projects%'").Scan(&waiting))
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the delete never waited for the member")
		}
	}
	// The delete, which waited first, finds the cycle at its deadlock
	// timeout (1s by default) and is ended; this statement then goes on.
	_, txErr := tx.ExecContext(ctx(), "UPDATE projects SET name = name WHERE id = $1", w.prjA.ID)
	select {
	case err := <-deleted:
		if txErr != nil {
			t.Skipf("PostgreSQL ended the other transaction (%v); the delete: %v", txErr, err)
		}
		wantErr(t, err, domain.Unavailable, "the database ended this request's writes to settle a contention with another request's (a deadlock); retry")
	case <-time.After(10 * time.Second):
		t.Fatal("the delete did not end within 10s")
	}
}

// TestLargeDeletesLetOtherWritesIn: deleting a chat or a project removes
// its conversations, usage records and documents a chunk per statement,
// each committed on its own, so that another writer (here a turn of
// another project) commits between two chunks rather than wait for the
// whole delete: on SQLite for its busy timeout and then in vain, on
// PostgreSQL behind turns waiting on the deleted rows' locks, which fill
// the commit queue. Everything the chat or project owned is gone at the
// end, and nothing of the other project.
func TestLargeDeletesLetOtherWritesIn(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) { largeDeletesLetOtherWritesIn(t, s) })
}

func largeDeletesLetOtherWritesIn(t *testing.T, s *store.Store) {
	w := newWorld(t, s)
	count := func(query string, args ...any) int64 {
		t.Helper()
		var n int64
		must(t, s.DB().Raw(query, args...).Row().Scan(&n))
		return n
	}
	fill := func(chat *domain.Chat, n int) {
		for i := range n {
			c := newConversation(chat)
			must(t, s.AppendTurn(ctx(), c, true, turn(c.ID, 0, fmt.Sprint("turn ", i))))
			must(t, s.InsertUsage(ctx(), []domain.UsageRecord{{ID: domain.NewID(domain.PrefixMessage), ProjectID: chat.ProjectID, ChatID: chat.ID,
				CreatedAt: t0.Add(time.Duration(i) * time.Second)}}))
		}
	}
	other := newChat(t, s, w.provA) // chat A's project keeps this one when chat A goes
	fill(w.chatA, 7)
	fill(other, 3)
	fill(w.chatB, 2)
	var between int
	s.SetDeleteChunks(2, func() {
		between++
		c := newConversation(w.chatB)
		must(t, s.AppendTurn(ctx(), c, true, turn(c.ID, 0, "meanwhile")))
	})

	must(t, s.DeleteChat(ctx(), w.chatA.ID))
	if between != 3 { // 7 conversations in chunks of 2
		t.Errorf("%d turns of another project committed during the chat's delete; want one between each two chunks, 3", between)
	}
	if n := count("SELECT count(*) FROM conversations WHERE chat_id = ?", w.chatA.ID); n != 0 {
		t.Errorf("%d conversations of the deleted chat are left", n)
	}
	if n := count("SELECT count(*) FROM conversations WHERE chat_id = ?", other.ID); n != 3 {
		t.Errorf("the project's other chat has %d conversations; want its 3", n)
	}

	for i := range 5 {
		must(t, s.CreateDocument(ctx(), &domain.Document{ID: domain.NewID(domain.PrefixDocument), ProjectID: w.prjA.ID,
			Name: fmt.Sprint("doc ", i), Content: "text", CreatedAt: t0, UpdatedAt: t0}))
	}
	between = 0
	must(t, s.DeleteProject(ctx(), w.prjA.ID))
	if between != 1+5+2 { // the other chat's 3 conversations, 10 usage records, then 5 documents, in chunks of 2
		t.Errorf("%d turns of another project committed during the project's delete; want 8", between)
	}
	wantErr(t, s.DeleteProject(ctx(), w.prjA.ID), domain.NotFound, "project "+w.prjA.ID+" does not exist")
	for _, table := range []string{"conversations", "usage_records", "chats", "documents"} {
		if n := count("SELECT count(*) FROM "+table+" WHERE project_id = ?", w.prjA.ID); n != 0 {
			t.Errorf("%d rows of %s of the deleted project are left", n, table)
		}
	}
	if n := count("SELECT count(*) FROM messages WHERE conversation_id NOT IN (SELECT id FROM conversations)"); n != 0 {
		t.Errorf("%d messages are left without their conversation", n)
	}
	if got, want := count("SELECT count(*) FROM conversations WHERE project_id = ?", w.prjB.ID), int64(2+3+8); got != want {
		t.Errorf("the other project has %d conversations; want %d", got, want)
	}
	if n := count("SELECT count(*) FROM usage_records WHERE project_id = ?", w.prjB.ID); n != 2 {
		t.Errorf("the other project has %d usage records; want its 2", n)
	}

	if s.Dialect() != store.SQLite {
		return // PostgreSQL deletes a conversation's messages with it
	}
	// A conversation of many messages goes a chunk of them at a time too
	// (here 16: 2 × messagesPerChunk), not in one statement with its row.
	long := newConversation(w.chatB) // chat B's fourteenth, the last by id
	var msgs []domain.Message
	for i := range 20 {
		msgs = append(msgs, turn(long.ID, 2*i, fmt.Sprint("turn ", i))...)
	}
	must(t, s.AppendTurn(ctx(), long, true, msgs))
	bystander := newChat(t, s, w.provB)
	between = 0
	s.SetDeleteChunks(2, func() {
		between++
		c := newConversation(bystander)
		must(t, s.AppendTurn(ctx(), c, true, turn(c.ID, 0, "meanwhile")))
	})
	must(t, s.DeleteChat(ctx(), w.chatB.ID))
	// 14 conversations in 7 chunks of 2; the last chunk's 42 messages in
	// statements of 16, 16 and 10.
	if between != 7+2 {
		t.Errorf("%d turns of another chat committed during the delete; want 9", between)
	}
	if n := count("SELECT count(*) FROM messages WHERE conversation_id = ?", long.ID) + count("SELECT count(*) FROM conversations WHERE chat_id = ?", w.chatB.ID); n != 0 {
		t.Errorf("%d messages of the long conversation and conversations of the deleted chat are left", n)
	}
	if n := count("SELECT count(*) FROM conversations WHERE chat_id = ?", bystander.ID); n != 9 {
		t.Errorf("the bystander chat has %d conversations; want the 9 written meanwhile", n)
	}
}

// TestDeleteSentAgainWaitsForTheFirst: on SQLite a chat's delete sent
// again while the first still runs (here held by another connection's
// write lock) waits for the first's result, rather than run beside it on
// another connection: both are told it is deleted, and the second, whose
// caller gave up, is not cut either.
func TestDeleteSentAgainWaitsForTheFirst(t *testing.T) {
	s := dbtest.SQLite(t)
	w := newWorld(t, s)
	c := newConversation(w.chatA)
	must(t, s.AppendTurn(ctx(), c, true, turn(c.ID, 0, "hello")))
	sqlDB, err := s.DB().DB()
	must(t, err)
	conn, err := sqlDB.Conn(ctx())
	must(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx(), "BEGIN IMMEDIATE")
	must(t, err)

	first := make(chan error, 1)
	go func() { first <- s.DeleteChat(ctx(), w.chatA.ID) }()
	time.Sleep(200 * time.Millisecond) // the first waits for the lock
	gaveUp, cancel := context.WithCancel(ctx())
	cancel()
	again := make(chan error, 1)
	go func() { again <- s.DeleteChat(gaveUp, w.chatA.ID) }()
	time.Sleep(200 * time.Millisecond)
	_, err = conn.ExecContext(ctx(), "ROLLBACK")
	must(t, err)
	for name, ch := range map[string]chan error{"first": first, "again": again} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("the %s delete: %v; want both told it is deleted", name, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("the %s delete did not end", name)
		}
	}
	_, err = s.GetChat(ctx(), w.chatA.ID)
	wantErr(t, err, domain.NotFound, "")
}

// TestRefusals: a reply in which the model declined keeps its refusal;
// every other message stores NULL there.
func TestRefusals(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		conv := newConversation(w.chatA)
		msgs := append(turn(conv.ID, 0, "a secret?"), turn(conv.ID, 2, "a joke?")...)
		msgs[1].Content, msgs[1].Refusal = "", "I can't share that."
		must(t, s.AppendTurn(ctx(), conv, true, msgs))
		got, err := s.ListMessages(ctx(), conv.ID)
		must(t, err)
		equal(t, got, msgs)
		var nulls int64
		must(t, s.DB().Raw("SELECT count(*) FROM messages WHERE conversation_id = ? AND refusal IS NULL", conv.ID).Row().Scan(&nulls))
		if nulls != 3 {
			t.Errorf("%d messages without a refusal store NULL; want 3", nulls)
		}
	})
}

// TestRequestKeys: a reply stored with a request key (a per-chat
// completion's idempotency key) is found by it, with its request's digest;
// a second turn with the same key is a Conflict that stores nothing, also
// when it was group-committed with others, who are stored.
func TestRequestKeys(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		keyed := func(c *domain.Conversation, key, text string) []domain.Message {
			msgs := turn(c.ID, 0, text)
			msgs[1].RequestKey, msgs[1].RequestHash = key, "digest of "+text
			return msgs
		}
		a := newConversation(w.chatA)
		msgs := keyed(a, w.chatA.ID+":k1", "a")
		must(t, s.AppendTurn(ctx(), a, true, msgs))
		got, err := s.GetReplyByRequestKey(ctx(), w.chatA.ID+":k1")
		must(t, err)
		equal(t, *got, msgs[1])
		listed, err := s.ListMessages(ctx(), a.ID)
		must(t, err)
		equal(t, listed, msgs)
		_, err = s.GetReplyByRequestKey(ctx(), w.chatA.ID+":k2")
		wantErr(t, err, domain.NotFound, "")

		again := newConversation(w.chatA)
		wantErr(t, s.AppendTurn(ctx(), again, true, keyed(again, w.chatA.ID+":k1", "again")), domain.Conflict, "")
		if _, err := s.GetConversation(ctx(), again.ID); domain.KindOf(err) != domain.NotFound {
			t.Errorf("the refused turn stored its conversation (err %v)", err)
		}

		// Twenty turns at once, without keys but two with the same one.
		convs := make([]*domain.Conversation, 20)
		errs := make([]error, len(convs))
		var start, done sync.WaitGroup
		start.Add(1)
		for i := range convs {
			convs[i] = newConversation(w.chatA)
			key := ""
			if i%10 == 3 {
				key = w.chatA.ID + ":k3"
			}
			m := keyed(convs[i], key, fmt.Sprint("turn ", i))
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				errs[i] = s.AppendTurn(ctx(), convs[i], true, m)
			}()
		}
		start.Done()
		done.Wait()
		for i, err := range errs {
			switch {
			case i%10 != 3:
				must(t, err)
			case err != nil:
				wantErr(t, err, domain.Conflict, "")
			}
		}
		if errs[3] == nil == (errs[13] == nil) {
			t.Fatalf("the two turns with one key: errors %v and %v; want exactly one Conflict", errs[3], errs[13])
		}
		got, err = s.GetReplyByRequestKey(ctx(), w.chatA.ID+":k3")
		must(t, err)
		winner, loser := convs[3], convs[13]
		if errs[3] != nil {
			winner, loser = loser, winner
		}
		if got.ConversationID != winner.ID {
			t.Errorf("the key's reply is in %s; want %s, the stored turn's conversation", got.ConversationID, winner.ID)
		}
		if _, err := s.GetConversation(ctx(), loser.ID); domain.KindOf(err) != domain.NotFound {
			t.Errorf("the refused turn stored its conversation (err %v)", err)
		}
		t.Logf("largest turn batch: %d", s.LargestTurnBatch())
	})
}

// TestOpenGivesUpOnASilentPostgres: a server (or a proxy in front of one)
// that takes the connection and says nothing fails the start within the
// connect timeout, saying what to check, rather than holding it, silent,
// until a signal; a URL's own connect_timeout is left to bound it.
func TestOpenGivesUpOnASilentPostgres(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // open, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	defer store.SetConnectTimeout(300 * time.Millisecond)()
	base := "postgres://parley:hunter2secret@" + ln.Addr().String() + "/parley?sslmode=disable"
	for _, tc := range []struct{ url, says, not string }{
		{base, "PostgreSQL did not answer within 300ms", "hunter2secret"},
		{base + "&connect_timeout=1", "timeout", "within 300ms"}, // pgx's, after a second
	} {
		start := time.Now()
		st, err := store.Open(context.Background(), tc.url)
		if err == nil {
			st.Close()
			t.Fatalf("%s: opened", tc.url)
		}
		if !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), tc.not) || strings.Contains(err.Error(), "hunter2secret") {
			t.Errorf("%s: %v, want it to say %q, not %q, and no password", tc.url, err, tc.says, tc.not)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%s: gave up after %v", tc.url, took)
		}
	}
}

// TestOpenWaitsForPostgresToComeUp: a start whose PostgreSQL is not
// listening yet (both started together, under systemd or Kubernetes) asks
// again until it is, within the connect timeout, rather than fail at once
// on the refused connection; one that stays down fails at the timeout.
func TestOpenWaitsForPostgresToComeUp(t *testing.T) {
	u, err := url.Parse(dbtest.PostgresURL(t))
	must(t, err)
	pg := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port, closed: refused until it listens again
	must(t, err)
	u.Host = ln.Addr().String()
	ln.Close()

	opened := make(chan error, 1)
	go func() {
		st, err := store.Open(context.Background(), u.String())
		if err == nil {
			st.Close()
		}
		opened <- err
	}()
	time.Sleep(time.Second)
	ln, err = net.Listen("tcp", u.Host) // PostgreSQL comes up, here a forwarder to it
	must(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", pg)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Errorf("Open with PostgreSQL up a second late: %v; want it opened", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Open did not end within 20s of PostgreSQL coming up")
	}

	defer store.SetConnectTimeout(500 * time.Millisecond)()
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ln2.Close()
	if st, err := store.Open(context.Background(), "postgres://postgres@"+ln2.Addr().String()+"/parley?sslmode=disable"); err == nil {
		st.Close()
		t.Error("Open with nothing listening: opened")
	} else if !strings.Contains(err.Error(), "PostgreSQL was not up within 500ms (the connection refused") {
		t.Errorf("Open with nothing listening: %v; want it to say it was not up within 500ms", err)
	}
	// A start stopped (by a signal) while it waits says so, and does not
	// blame PostgreSQL for a bound it did not reach.
	defer store.SetConnectTimeout(30 * time.Second)()
	stopped, stop := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer stop()
	if st, err := store.Open(stopped, "postgres://postgres@"+ln2.Addr().String()+"/parley?sslmode=disable"); err == nil {
		st.Close()
		t.Error("Open stopped while nothing listens: opened")
	} else if msg := err.Error(); !strings.Contains(msg, "the start was stopped while it waited for PostgreSQL") || strings.Contains(msg, "within") {
		t.Errorf("Open stopped while nothing listens: %v; want it to say the start was stopped", err)
	}
}

// TestOpenRefusesADatabaseItCannotWrite: a SQLite database that refuses
// writes (here by PRAGMA query_only, as root may write any file; a file's
// owner or mode, or a read-only mount, refuse them the same way, with
// SQLITE_READONLY) is refused at Open, saying what to check, instead of
// serving reads and failing every write as a fault to retry.
func TestOpenRefusesADatabaseItCannotWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(context.Background(), "up", nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = store.Open(context.Background(), "sqlite:"+path+"?_pragma=query_only(1)")
	if err == nil {
		st.Close()
		t.Fatal("opened a database it cannot write")
	}
	if !strings.Contains(err.Error(), "cannot be written") || !strings.Contains(err.Error(), path) {
		t.Errorf("%v, want it to say the database at %s cannot be written", err, path)
	}
}

// TestOpenSaysWhyADatabaseCannotBeOpened: SQLite's "unable to open
// database file" names no cause; Open says what to check. (A directory in
// the file's place here: root, which runs the tests, opens any file.)
func TestOpenSaysWhyADatabaseCannotBeOpened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	must(t, os.Mkdir(path, 0o700))
	st, err := store.Open(context.Background(), path)
	if err == nil {
		st.Close()
		t.Fatal("opened a directory as a database")
	}
	if msg := err.Error(); !strings.Contains(msg, "cannot be opened") || !strings.Contains(msg, "owner and mode") || !strings.Contains(msg, path) {
		t.Errorf("%v, want it to say the database at %s cannot be opened and what to check", err, path)
	}
}

// TestMemberListsMergeProjects walks a member's lists, without a project
// or chat named, a page at a time: every row of the member's projects and
// no other, in id order, whether the store merges a page per project or,
// for a member of more projects than it merges, reads one page filtered
// by membership.
func TestMemberListsMergeProjects(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		projects := []*domain.Project{w.prjA, newProject(t, s, w.alice, "a2"), newProject(t, s, w.alice, "a3"), w.prjB}
		want := map[string][]string{}
		for round := range 4 {
			for i, p := range projects {
				prov := newProvider(t, s, p)
				chat := newChat(t, s, prov)
				conv := newConversation(chat)
				must(t, s.AppendTurn(ctx(), conv, true, turn(conv.ID, 0, "hello")))
				doc := &domain.Document{ID: domain.NewID(domain.PrefixDocument), ProjectID: p.ID, Name: fmt.Sprint("d", round), CreatedAt: t0, UpdatedAt: t0}
				must(t, s.CreateDocument(ctx(), doc))
				if i < 3 { // alice's
					for list, id := range map[string]string{"chats": chat.ID, "providers": prov.ID, "conversations": conv.ID, "documents": doc.ID} {
						want[list] = append(want[list], id)
					}
				}
			}
		}
		want["chats"] = append(want["chats"], w.chatA.ID)
		want["providers"] = append(want["providers"], w.provA.ID)
		want["projects"] = []string{w.prjA.ID, projects[1].ID, projects[2].ID}
		// walk lists a page of two at a time, as the services page: a
		// list returns up to a page and one more.
		walk := func(t *testing.T, list func(p domain.Page) ([]string, error)) []string {
			var all []string
			p := domain.Page{Limit: 2}
			for {
				ids, err := list(p)
				must(t, err)
				if len(ids) <= p.Limit {
					return append(all, ids...)
				}
				all, p.After = append(all, ids[:p.Limit]...), ids[p.Limit-1]
			}
		}
		lists := map[string]func(p domain.Page) ([]string, error){
			"chats": func(p domain.Page) ([]string, error) {
				l, err := s.ListChats(ctx(), domain.ChatFilter{MemberUserID: w.alice.ID, Page: p})
				return ids(l, func(c domain.Chat) string { return c.ID }), err
			},
			"providers": func(p domain.Page) ([]string, error) {
				l, err := s.ListProviders(ctx(), domain.ProviderFilter{MemberUserID: w.alice.ID, Page: p})
				return ids(l, func(c domain.AIProvider) string { return c.ID }), err
			},
			"conversations": func(p domain.Page) ([]string, error) {
				l, err := s.ListConversations(ctx(), domain.ConversationFilter{MemberUserID: w.alice.ID, Page: p})
				return ids(l, func(c domain.Conversation) string { return c.ID }), err
			},
			"documents": func(p domain.Page) ([]string, error) {
				l, err := s.ListDocuments(ctx(), domain.DocumentFilter{MemberUserID: w.alice.ID, Page: p})
				return ids(l, func(c domain.DocumentSummary) string { return c.ID }), err
			},
			"projects": func(p domain.Page) ([]string, error) {
				l, err := s.ListProjects(ctx(), domain.ProjectFilter{MemberUserID: w.alice.ID, Page: p})
				return ids(l, func(c domain.Project) string { return c.ID }), err
			},
		}
		check := func(t *testing.T) {
			for name, list := range lists {
				w := slices.Sorted(slices.Values(want[name]))
				if got := walk(t, list); !slices.Equal(got, w) {
					t.Errorf("%s: walked\n%q\nwant\n%q", name, got, w)
				}
			}
		}
		t.Run("a page per project", check)
		for i := range store.MaxMergedProjects {
			want["projects"] = append(want["projects"], newProject(t, s, w.alice, fmt.Sprint("empty ", i)).ID)
		}
		t.Run("more projects than merged", check)
	})
}

// TestListConversationsOfProject: a project's conversations, of all its
// chats, a page at a time in id order, and none of another project's.
func TestListConversationsOfProject(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		chatA2 := newChat(t, s, w.provA)
		var want []string
		for i := range 6 {
			chat := w.chatA
			if i%2 == 1 {
				chat = chatA2
			}
			for _, c := range []*domain.Chat{chat, w.chatB} {
				conv := newConversation(c)
				must(t, s.AppendTurn(ctx(), conv, true, turn(conv.ID, 0, "hello")))
				if c.ProjectID == w.prjA.ID {
					want = append(want, conv.ID)
				}
			}
		}
		var got []string
		p := domain.Page{Limit: 4}
		for {
			l, err := s.ListConversations(ctx(), domain.ConversationFilter{ProjectID: w.prjA.ID, Page: p})
			must(t, err)
			ids := ids(l, func(c domain.Conversation) string { return c.ID })
			if len(ids) <= p.Limit {
				got = append(got, ids...)
				break
			}
			got, p.After = append(got, ids[:p.Limit]...), ids[p.Limit-1]
		}
		if !slices.Equal(got, want) {
			t.Errorf("project A's conversations = %q\nwant %q", got, want)
		}
	})
}

// TestRetentionDeletes: the retention sweep's deletes take the usage
// records created, and the conversations last continued, before their
// bound, each conversation whole with its messages, a bounded number per
// statement (here chunks of 2: on SQLite, 16 messages, or one conversation
// of more); what is newer stays, and so do the conversations the caller
// keeps (those being continued) and one continued while the sweep runs,
// with every message. A second sweep finds nothing.
func TestRetentionDeletes(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, s *store.Store) {
		w := newWorld(t, s)
		old, bound := t0.Add(-48*time.Hour), t0.Add(-24*time.Hour)
		count := func(query string, args ...any) int64 {
			t.Helper()
			var n int64
			must(t, s.DB().Raw(query, args...).Row().Scan(&n))
			return n
		}
		written := map[string]int64{} // messages of each conversation
		conversation := func(chat *domain.Chat, at time.Time, turns int) *domain.Conversation {
			c := newConversation(chat)
			c.CreatedAt, c.UpdatedAt = old, at
			var msgs []domain.Message
			for i := range turns {
				msgs = append(msgs, turn(c.ID, 2*i, fmt.Sprint("turn ", i))...)
			}
			must(t, s.AppendTurn(ctx(), c, true, msgs))
			written[c.ID] = int64(len(msgs))
			return c
		}
		var olds []*domain.Conversation
		for range 4 {
			olds = append(olds, conversation(w.chatA, old, 3))
		}
		for range 2 {
			olds = append(olds, conversation(w.chatB, old, 12)) // 24 messages: more than a statement takes
		}
		fresh := []*domain.Conversation{conversation(w.chatA, t0, 1), conversation(w.chatB, bound.Add(time.Second), 2)}
		busy := olds[0] // a completion of this instance is continuing it
		usage := func(project string, at time.Time) domain.UsageRecord {
			return domain.UsageRecord{ID: domain.NewID(domain.PrefixMessage), ProjectID: project, ChatID: w.chatA.ID, Model: "m", CreatedAt: at}
		}
		must(t, s.InsertUsage(ctx(), []domain.UsageRecord{
			usage(w.prjA.ID, old), usage(w.prjA.ID, old.Add(time.Hour)), usage(w.prjA.ID, bound.Add(-time.Microsecond)), usage(w.prjA.ID, bound),
			usage(w.prjB.ID, old), usage(w.prjB.ID, old), usage(w.prjB.ID, t0),
		}))

		// After each statement, a turn is stored in every old conversation
		// the sweep has not deleted (but the busy one): the first it finds
		// is kept, whole, with its new turn; those before it are gone whole.
		var continued []*domain.Conversation
		s.SetDeleteChunks(2, func() {
			for _, c := range olds {
				if c == busy || slices.Contains(continued, c) || count("SELECT count(*) FROM conversations WHERE id = ?", c.ID) == 0 {
					continue
				}
				c.UpdatedAt = t0
				must(t, s.AppendTurn(ctx(), c, false, turn(c.ID, int(written[c.ID]), "back again")))
				written[c.ID] += 2
				continued = append(continued, c)
				return
			}
		})
		defer s.SetDeleteChunks(0, nil)

		// The sweep holds each conversation it deletes until its statement
		// is done, and keeps the one hold refuses.
		released := map[string]int{}
		hold := func(id string) func() {
			if id == busy.ID {
				return nil
			}
			return func() { released[id]++ }
		}
		n, err := s.DeleteConversationsBefore(ctx(), bound, hold)
		must(t, err)
		for id, times := range released {
			if times != 1 {
				t.Errorf("conversation %s was released %d times; want once", id, times)
			}
		}
		if len(continued) == 0 {
			t.Fatal("no turn was stored between the sweep's statements")
		}
		kept := append(append([]*domain.Conversation{busy}, fresh...), continued...)
		for _, c := range olds {
			if !slices.Contains(kept, c) && released[c.ID] != 1 {
				t.Errorf("conversation %s was deleted without being held", c.ID)
			}
		}
		if want := int64(len(olds) + len(fresh) - len(kept)); n != want {
			t.Errorf("the sweep deleted %d conversations; want %d", n, want)
		}
		for _, c := range kept {
			if got := count("SELECT count(*) FROM messages WHERE conversation_id = ?", c.ID); got != written[c.ID] || count("SELECT count(*) FROM conversations WHERE id = ?", c.ID) != 1 {
				t.Errorf("conversation %s (last continued %s) is gone, or holds %d of its %d messages", c.ID, c.UpdatedAt, got, written[c.ID])
			}
		}
		if got := count("SELECT count(*) FROM messages WHERE conversation_id NOT IN (SELECT id FROM conversations)"); got != 0 {
			t.Errorf("%d messages are left without their conversation", got)
		}
		if got := count("SELECT count(*) FROM conversations"); got != int64(len(kept)) {
			t.Errorf("%d conversations are left; want %d", got, len(kept))
		}

		n, err = s.DeleteUsageBefore(ctx(), bound)
		must(t, err)
		if n != 5 {
			t.Errorf("the sweep deleted %d usage records; want the 5 created before its bound", n)
		}
		for project, want := range map[string]int64{w.prjA.ID: 1, w.prjB.ID: 1} {
			if got := count("SELECT count(*) FROM usage_records WHERE project_id = ? AND created_at >= ?", project, bound); got != want {
				t.Errorf("project %s has %d usage records from the bound on; want %d", project, got, want)
			}
		}
		if got := count("SELECT count(*) FROM usage_records"); got != 2 {
			t.Errorf("%d usage records are left; want 2", got)
		}

		s.SetDeleteChunks(0, nil)
		nu, err := s.DeleteUsageBefore(ctx(), bound)
		must(t, err)
		nc, err := s.DeleteConversationsBefore(ctx(), bound, hold)
		must(t, err)
		if nu != 0 || nc != 0 {
			t.Errorf("a second sweep deleted %d usage records and %d conversations; want none", nu, nc)
		}
	})
}

// TestMigrateDownOnNothingLeavesNoLock: down on a SQLite database nothing
// was migrated on says so and leaves no lock file beside it, nor goose's
// table in it.
func TestMigrateDownOnNothingLeavesNoLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	must(t, os.WriteFile(path, nil, 0o600)) // an empty file is an empty database
	s, err := store.Open(ctx(), path)
	must(t, err)
	defer s.Close()
	var out bytes.Buffer
	must(t, s.Migrate(ctx(), "down", &out))
	if !strings.Contains(out.String(), "nothing to roll back") {
		t.Errorf("down = %q, want nothing to roll back", out.String())
	}
	if _, err := os.Stat(path + "-migrate.lock"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("down on a database nothing was migrated on left its lock file (%v)", err)
	}
	out.Reset()
	must(t, s.Migrate(ctx(), "status", &out))
	if strings.Contains(out.String(), "applied") {
		t.Errorf("status after down = %q, want every migration pending", out.String())
	}
}

// TestReadyRefusesAReadOnlyPostgres: a PostgreSQL that answers but takes
// no writes (a standby after a failover; here
// default_transaction_read_only) is not ready, as every turn would fail to
// be stored after its completion was paid for; SQLite's check reads the file.
func TestReadyRefusesAReadOnlyPostgres(t *testing.T) {
	ctx := context.Background()
	if err := dbtest.SQLite(t).Ready(ctx); err != nil {
		t.Errorf("SQLite: Ready = %v; want nil", err)
	}
	dsn := dbtest.PostgresURL(t)
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Ready(ctx); err != nil {
		t.Fatalf("Ready = %v; want nil", err)
	}
	var name string
	if err := st.DB().Raw("SELECT current_database()").Scan(&name).Error; err != nil {
		t.Fatal(err)
	}
	if err := st.DB().Exec(`ALTER DATABASE "` + name + `" SET default_transaction_read_only = on`).Error; err != nil {
		t.Fatal(err)
	}
	ro, err := store.Open(ctx, dsn) // its sessions start read-only
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.Ready(ctx); err == nil || !strings.Contains(err.Error(), "takes no writes") {
		t.Errorf("Ready of a read-only database = %v; want an error saying it takes no writes", err)
	}
}

// sqliteRenewing opens and migrates a SQLite store at a path of its own,
// whose pool renews its connections after lifetime, and returns it with
// the path.
func sqliteRenewing(t *testing.T, lifetime time.Duration) (*store.Store, string) {
	t.Helper()
	t.Cleanup(store.SetSQLiteConnLifetime(lifetime)) // set for Open, put back at the end
	path := filepath.Join(t.TempDir(), "parley.db")
	s, err := store.Open(ctx(), "sqlite:"+path)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	must(t, s.Migrate(ctx(), "up", nil))
	return s, path
}

// TestSQLiteWritableAgainWithoutRestart: connections the pool opened while
// the file could not be written (made immutable here, which root cannot
// write either; a chmod by hand does alike to other users) are read-only
// for good; the pool renews them, so writes work again soon after the
// file is put right, without a restart.
func TestSQLiteWritableAgainWithoutRestart(t *testing.T) {
	s, path := sqliteRenewing(t, 200*time.Millisecond)
	sqlDB, err := s.DB().DB()
	must(t, err)
	// failedWrites writes on four connections of the pool held at once:
	// SQLite hands a new connection the file descriptor of one closed
	// before, if it has one, so holding several opens new ones.
	failedWrites := func() (failed int) {
		conns := make([]*sql.Conn, 4)
		for i := range conns {
			conns[i], err = sqlDB.Conn(ctx())
			must(t, err)
		}
		for _, c := range conns {
			if _, err := c.ExecContext(ctx(), "UPDATE projects SET name = name WHERE 0"); err != nil {
				failed++
			}
			must(t, c.Close())
		}
		return failed
	}
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Skipf("chattr +i %s (needs root with CAP_LINUX_IMMUTABLE, on ext4 or the like): %v %s", path, err, out)
	}
	defer exec.Command("chattr", "-i", path).Run()
	if failedWrites() == 0 {
		t.Fatal("every connection took a write while the file could not be written")
	}
	must(t, exec.Command("chattr", "-i", path).Run())
	time.Sleep(300 * time.Millisecond)
	if n := failedWrites(); n > 0 {
		t.Errorf("%d of 4 connections refused a write once the file could be written again; want none", n)
	}
}

// TestSQLiteFileThatCannotBeOpened: a connection of the pool that cannot
// open the file (here a directory in its place; the process out of file
// descriptors does alike) is the database unavailable, a 503 to retry,
// not a fault of Parley's.
func TestSQLiteFileThatCannotBeOpened(t *testing.T) {
	s, path := sqliteRenewing(t, 100*time.Millisecond)
	w := newWorld(t, s)
	must(t, os.Rename(path, path+".away"))
	must(t, os.Mkdir(path, 0o700))
	time.Sleep(200 * time.Millisecond) // the pool's connections expire
	_, err := s.GetProject(ctx(), w.prjA.ID)
	if domain.KindOf(err) != domain.Unavailable {
		t.Errorf("a read when the file cannot be opened = %v (kind %v), want Unavailable", err, domain.KindOf(err))
	}
}

// TestDeleteWhenTheDatabaseHangs: a chat's delete runs to its end whatever
// its caller's context, but each of its statements has a deadline: with
// PostgreSQL hanging it ends Unavailable (sent again, it goes on), where it
// held on for as long as the database hung, and every delete of the chat
// behind it.
func TestDeleteWhenTheDatabaseHangs(t *testing.T) {
	defer store.SetDeleteStatementTimeout(300 * time.Millisecond)()
	s, p := dbtest.PostgresThroughProxy(t)
	w := newWorld(t, s)
	p.Stall()
	done := make(chan error, 1)
	go func() { done <- s.DeleteChat(ctx(), w.chatA.ID) }()
	select {
	case err := <-done:
		if domain.KindOf(err) != domain.Unavailable {
			t.Errorf("a delete with the database hanging = %v, want Unavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("a delete with the database hanging did not end within 10s")
	}
	p.Down() // let the pool's stalled connections go before the cleanup closes the store
}

// TestDeleteSentToTwoInstances: on PostgreSQL a project's delete sent
// again to another instance (two stores on one database) while the first
// runs waits for the first to end, then finds the project gone; run
// beside it, it met no row left between two of the first's chunks and
// deleted the rest of the project, cascading, in one statement, and the
// first then answered 404.
func TestDeleteSentToTwoInstances(t *testing.T) {
	url := dbtest.PostgresURL(t)
	first, err := store.Open(ctx(), url)
	must(t, err)
	defer first.Close()
	second, err := store.Open(ctx(), url)
	must(t, err)
	defer second.Close()

	w := newWorld(t, first)
	for i := range 6 {
		c := newConversation(w.chatA)
		must(t, first.AppendTurn(ctx(), c, true, turn(c.ID, 0, fmt.Sprint("turn ", i))))
	}
	paused, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	first.SetDeleteChunks(2, func() {
		once.Do(func() {
			close(paused)
			<-resume
		})
	})
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.DeleteProject(ctx(), w.prjA.ID) }()
	<-paused // the first has deleted a chunk and waits before its next

	secondDone := make(chan error, 1)
	go func() { secondDone <- second.DeleteProject(ctx(), w.prjA.ID) }()
	select {
	case err := <-secondDone:
		close(resume)
		<-firstDone
		t.Fatalf("the second instance's delete ended (%v) while the first's was under way; want it to wait", err)
	case <-time.After(500 * time.Millisecond):
	}
	close(resume)
	must(t, <-firstDone)
	wantErr(t, <-secondDone, domain.NotFound, "project "+w.prjA.ID+" does not exist")
}

// TestManyDeletesAtOnce: twenty deletes of distinct chats at once on one
// instance (PostgreSQL), each holding a connection for its lock while its
// statements need another of the same pool, all succeed: at most a few
// hold one at a time. Before, the twenty took every connection, and each
// statement, as every other request, waited out its timeout for one.
func TestManyDeletesAtOnce(t *testing.T) {
	defer store.SetDeleteStatementTimeout(5 * time.Second)()
	st, err := store.Open(ctx(), dbtest.PostgresURL(t))
	must(t, err)
	defer st.Close()
	w := newWorld(t, st)
	var ids []string
	for range 20 {
		c := newChat(t, st, w.provA)
		conv := newConversation(c)
		must(t, st.AppendTurn(ctx(), conv, true, turn(conv.ID, 0, "hi")))
		ids = append(ids, c.ID)
	}
	errs := make(chan error, len(ids))
	for _, id := range ids {
		go func() { errs <- st.DeleteChat(ctx(), id) }()
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Errorf("a delete of twenty at once: %v", err)
		}
	}
}

// TestOpenSaysWhatToDoOfAnUnknownDatabaseOrRole: PostgreSQL's "database
// does not exist" and "role does not exist" stop the start saying what to
// create or check, with the variable to set.
func TestOpenSaysWhatToDoOfAnUnknownDatabaseOrRole(t *testing.T) {
	base, err := url.Parse(dbtest.EmptyPostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	noDB, noRole := *base, *base
	noDB.Path = "/parley_never_created"
	noRole.User = url.User("parley_no_such_role")
	for _, tc := range []struct {
		u    url.URL
		want string
	}{
		{noDB, "create it (createdb, or CREATE DATABASE) or set PARLEY_DATABASE_URL"},
		{noRole, "check the user in PARLEY_DATABASE_URL"},
	} {
		st, err := store.Open(context.Background(), tc.u.String())
		if err == nil {
			st.Close()
			t.Fatalf("opened %s", tc.u.Redacted())
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("open %s: %v; want it to say %q", tc.u.Redacted(), err, tc.want)
		}
	}
}
