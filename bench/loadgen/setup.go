//go:build linux

package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/parleyhq/parley/secret"
)

// newClient is the load's one HTTP client: keep-alive connections without
// a per-host cap, so the open streams and the bursts of an open loop each
// get one.
func newClient() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Minute,
		Transport: &http.Transport{
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 4096,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// upstreamTarget calls the fake upstream's OpenAI endpoint under base,
// directly or through the proxy.
func upstreamTarget(name, base string, pid int) target {
	return target{
		name:   name,
		url:    base + "/chat/completions",
		pid:    pid,
		header: http.Header{"Authorization": {"Bearer sk-loadgen"}, "Content-Type": {"application/json"}},
		body: func(stream bool, content string) []byte {
			return mustJSON(map[string]any{
				"model": "fake", "stream": stream, "stream_options": map[string]any{"include_usage": stream},
				"messages": []any{map[string]any{"role": "user", "content": content}},
			})
		},
	}
}

// parleyTarget creates, through Parley's API, a project, a provider on the
// fake upstream at upstreamURL and a chat, and returns the chat's
// completions endpoint: every request starts a conversation Parley stores.
func parleyTarget(ctx context.Context, c *http.Client, p *proc, adminKey, upstreamURL string) (target, error) {
	h := http.Header{"Authorization": {"Bearer " + adminKey}, "Content-Type": {"application/json"}}
	post := func(path string, body any) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/api/v1"+path, bytes.NewReader(mustJSON(body)))
		if err != nil {
			return "", err
		}
		req.Header = h.Clone()
		res, err := c.Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		var out struct {
			ID string `json:"id"`
		}
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode >= 300 || out.ID == "" {
			return "", fmt.Errorf("POST %s: status %d (%v)", path, res.StatusCode, err)
		}
		return out.ID, nil
	}
	prj, err := post("/projects", map[string]any{"name": "loadgen"})
	if err != nil {
		return target{}, err
	}
	prov, err := post("/ai-providers", map[string]any{"projectId": prj, "name": "fake", "type": "openai-compatible",
		"baseUrl": upstreamURL, "defaultModel": "fake", "apiKey": "sk-loadgen-0123456789"})
	if err != nil {
		return target{}, err
	}
	chat, err := post("/chats", map[string]any{"projectId": prj, "aiProviderId": prov})
	if err != nil {
		return target{}, err
	}
	return target{
		name:   "parley",
		url:    p.url + "/api/v1/chats/" + chat + "/completions",
		pid:    p.pid(),
		header: h,
		body: func(stream bool, content string) []byte {
			return mustJSON(map[string]any{"stream": stream,
				"messages": []any{map[string]any{"role": "user", "content": content}}})
		},
	}, nil
}

// databaseEnv returns the environment that runs Parley on db with a fresh
// database, a reader of the database server's CPU time (PostgreSQL; zero
// for SQLite, which runs inside Parley), and a cleanup.
func databaseEnv(ctx context.Context, cfg config, dir, db string) (env []string, dbCPU func() time.Duration, cleanup func(), err error) {
	if db == "sqlite" {
		return []string{"PARLEY_DATA_DIR=" + filepath.Join(dir, "sqlite")}, noCPU, func() {}, nil
	}

	// A fresh database on the server, dropped afterwards.
	server, err := sql.Open("pgx", cfg.postgres)
	if err != nil {
		return nil, nil, nil, err
	}
	name := "parley_loadgen_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := server.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		server.Close()
		return nil, nil, nil, fmt.Errorf("create a database for the run: %w", err)
	}
	u, err := url.Parse(cfg.postgres)
	if err != nil {
		server.Close()
		return nil, nil, nil, err
	}
	u.Path = "/" + name
	env = []string{"PARLEY_DATABASE_URL=" + u.String(), "PARLEY_SECRET_KEY=" + secret.GenerateKey()}

	// The server's processes are the postmaster's children; its pid is a
	// backend's parent. A server on another machine is not measured.
	dbCPU = noCPU
	var backend int
	if err := server.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&backend); err == nil {
		if postmaster, err := parentPID(backend); err == nil {
			dbCPU = func() time.Duration { d, _ := treeCPU(postmaster); return d }
		}
	}
	cleanup = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = server.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		server.Close()
	}
	return env, dbCPU, cleanup, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
