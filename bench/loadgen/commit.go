//go:build linux

package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", the engine Parley embeds

	"github.com/parleyhq/parley/domain"
)

// committer writes the commit floor's one row per request: the least a
// gateway that keeps conversations must write, and commit, before it
// answers. Parley's turn is a conversation and two messages; this is one
// row holding the request, on the same engine with the same durability:
// SQLite in WAL mode with synchronous=NORMAL on one held connection, or a
// PostgreSQL server (durable when the server is).
type committer struct {
	db     *sql.DB
	insert *sql.Stmt
}

// openCommitter connects to dsn, "sqlite:PATH" or a postgres:// URL, and
// creates the floor's table.
func openCommitter(dsn string) (*committer, error) {
	var db *sql.DB
	var err error
	var create, insert string
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		db, err = sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)")
		if err == nil {
			db.SetMaxOpenConns(1) // SQLite takes one writer at a time
		}
		create = "CREATE TABLE IF NOT EXISTS floor_turns (id TEXT NOT NULL PRIMARY KEY, content TEXT NOT NULL, created_at DATETIME NOT NULL)"
		insert = "INSERT INTO floor_turns (id, content, created_at) VALUES (?, ?, ?)"
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err = sql.Open("pgx", dsn)
		if err == nil { // Parley's pool: 20 open, 10 kept idle
			db.SetMaxOpenConns(20)
			db.SetMaxIdleConns(10)
		}
		create = "CREATE TABLE IF NOT EXISTS floor_turns (id text NOT NULL PRIMARY KEY, content text NOT NULL, created_at timestamptz NOT NULL)"
		insert = "INSERT INTO floor_turns (id, content, created_at) VALUES ($1, $2, $3)"
	default:
		return nil, fmt.Errorf("the commit floor's database %q is neither sqlite:PATH nor postgres://", dsn)
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, create); err != nil {
		db.Close()
		return nil, err
	}
	stmt, err := db.PrepareContext(ctx, insert)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &committer{db: db, insert: stmt}, nil
}

// commit writes and commits one row holding content.
func (c *committer) commit(ctx context.Context, content []byte) error {
	_, err := c.insert.ExecContext(context.WithoutCancel(ctx), domain.NewID(domain.PrefixMessage), string(content), time.Now().UTC())
	return err
}

type requestBodyKey struct{}

// modifyResponse commits as Parley does: a JSON reply before its headers
// go out, a stream before its [DONE].
func (c *committer) modifyResponse(resp *http.Response) error {
	ctx := resp.Request.Context()
	content, _ := ctx.Value(requestBodyKey{}).([]byte)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body = &commitBeforeDone{rc: resp.Body, commit: func() error { return c.commit(ctx, content) }}
		return nil
	}
	return c.commit(ctx, content)
}

// commitBeforeDone commits before it hands on the read that holds a
// stream's "data: [DONE]" (or its end, when none came).
type commitBeforeDone struct {
	rc     io.ReadCloser
	commit func() error
	done   bool
}

var doneEvent = []byte("data: [DONE]")

func (r *commitBeforeDone) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if !r.done && (bytes.Contains(p[:n], doneEvent) || errors.Is(err, io.EOF)) {
		r.done = true
		if cerr := r.commit(); cerr != nil {
			return 0, cerr
		}
	}
	return n, err
}

func (r *commitBeforeDone) Close() error { return r.rc.Close() }
