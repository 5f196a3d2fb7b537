package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNoTimeoutCutsAStream: the server bounds only the request headers
// and idle connections; a read or write timeout would end every stream
// that outlived it.
func TestNoTimeoutCutsAStream(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler(), context.Background(), slog.Default())
	if srv.ReadTimeout != 0 || srv.WriteTimeout != 0 {
		t.Errorf("ReadTimeout %v, WriteTimeout %v: either would cut long streams", srv.ReadTimeout, srv.WriteTimeout)
	}
	if srv.ReadHeaderTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Errorf("ReadHeaderTimeout %v, IdleTimeout %v: want both bounded", srv.ReadHeaderTimeout, srv.IdleTimeout)
	}
}

// TestServerErrorsAtTheirLevel: net/http's own lines (an accept that
// fails for want of file descriptors) went through the standard logger at
// INFO, so at PARLEY_LOG_LEVEL=warn a server refusing connections logged
// nothing; a client's doing stays INFO.
func TestServerErrorsAtTheirLevel(t *testing.T) {
	var out strings.Builder
	logger := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv := newHTTPServer(http.NotFoundHandler(), context.Background(), logger)
	srv.ErrorLog.Printf("http: Accept error: accept tcp 127.0.0.1:8080: accept4: too many open files; retrying in 1s")
	srv.ErrorLog.Printf("http: URL query contains semicolon, which is no longer a supported separator")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"level":"ERROR"`) || !strings.Contains(lines[0], "too many open files") {
		t.Errorf("at level warn the server logged %q; want the accept error alone, at ERROR", lines)
	}
}

func TestLoadEnv(t *testing.T) {
	for _, name := range []string{"PARLEY_SSE_KEEPALIVE", "PARLEY_MAX_STREAM_DURATION", "PARLEY_SHUTDOWN_GRACE",
		"PARLEY_UPSTREAM_RETRIES", "PARLEY_UPSTREAM_RETRY_DELAY", "PARLEY_UPSTREAM_CONNECT_TIMEOUT", "PARLEY_UPSTREAM_FIRST_BYTE_TIMEOUT",
		"PARLEY_UPSTREAM_IDLE_TIMEOUT", "PARLEY_UPSTREAM_RESPONSE_TIMEOUT"} {
		t.Setenv(name, "")
	}
	t.Setenv("PARLEY_LOG_FORMAT", "")
	t.Setenv("PARLEY_LOG_LEVEL", "")
	t.Setenv("PARLEY_DATABASE_URL", "")
	e, err := loadEnv()
	if err != nil {
		t.Fatal(err)
	}
	if e.KeepAlive != 15*time.Second || e.MaxStreamDuration != 0 || e.ShutdownGrace != 30*time.Second {
		t.Errorf("defaults: keep-alive %v, maximum stream %v, grace %v", e.KeepAlive, e.MaxStreamDuration, e.ShutdownGrace)
	}
	if e.LLM.MaxRetries != 0 || e.LLM.FirstByteTimeout != 0 || e.LLM.IdleTimeout != 0 || e.LLM.ResponseTimeout != 0 {
		t.Errorf("unset upstream settings must leave llm's defaults (zero): %+v", e.LLM)
	}

	t.Setenv("PARLEY_SSE_KEEPALIVE", "5s")
	t.Setenv("PARLEY_MAX_STREAM_DURATION", "30m")
	t.Setenv("PARLEY_UPSTREAM_RETRIES", "0")
	t.Setenv("PARLEY_UPSTREAM_FIRST_BYTE_TIMEOUT", "90s")
	t.Setenv("PARLEY_UPSTREAM_IDLE_TIMEOUT", "20m")
	t.Setenv("PARLEY_UPSTREAM_RESPONSE_TIMEOUT", "15m")
	if e, err = loadEnv(); err != nil {
		t.Fatal(err)
	}
	if e.KeepAlive != 5*time.Second || e.MaxStreamDuration != 30*time.Minute {
		t.Errorf("keep-alive %v, maximum stream %v", e.KeepAlive, e.MaxStreamDuration)
	}
	if e.LLM.MaxRetries >= 0 || e.LLM.FirstByteTimeout != 90*time.Second || e.LLM.IdleTimeout != 20*time.Minute {
		t.Errorf("PARLEY_UPSTREAM_RETRIES=0 must turn retries off (llm: negative), got %d; first byte %v, idle %v", e.LLM.MaxRetries, e.LLM.FirstByteTimeout, e.LLM.IdleTimeout)
	}
	if e.LLM.ResponseTimeout != 15*time.Minute {
		t.Errorf("PARLEY_UPSTREAM_RESPONSE_TIMEOUT=15m: response timeout %v", e.LLM.ResponseTimeout)
	}

	for name, bad := range map[string]string{"PARLEY_SSE_KEEPALIVE": "soon", "PARLEY_MAX_STREAM_DURATION": "-1m", "PARLEY_UPSTREAM_RETRY_DELAY": "x",
		"PARLEY_LOG_FORMAT": "jsn", "PARLEY_LOG_LEVEL": "error+100"} { // slog's offsets, which would hide every line
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, bad)
			if _, err := loadEnv(); err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), strconv.Quote(bad)) {
				t.Errorf("%s=%q: %v, want an error naming it and the value", name, bad, err)
			}
		})
	}

	// The log format and level are taken in any case, as slog takes a
	// level: an operator who writes JSON or DEBUG means json and debug.
	for _, tc := range []struct {
		format, level string
		json          bool
		want          slog.Level
	}{
		{"JSON", "DEBUG", true, slog.LevelDebug},
		{"Json", "Warn", true, slog.LevelWarn},
		{"TEXT", "ERROR", false, slog.LevelError},
		{"json", "info", true, slog.LevelInfo},
	} {
		t.Run("PARLEY_LOG_FORMAT="+tc.format+",PARLEY_LOG_LEVEL="+tc.level, func(t *testing.T) {
			t.Setenv("PARLEY_LOG_FORMAT", tc.format)
			t.Setenv("PARLEY_LOG_LEVEL", tc.level)
			e, err := loadEnv()
			if err != nil || e.LogJSON != tc.json || e.LogLevel != tc.want {
				t.Errorf("JSON %v, level %v, %v; want JSON %v, level %v", e.LogJSON, e.LogLevel, err, tc.json, tc.want)
			}
		})
	}

	// Where 0 would silently mean the default, it is refused: an operator
	// who writes PARLEY_REQUEST_TIMEOUT=0 to turn the timeout off must not
	// get 30s without a word.
	for _, name := range []string{"PARLEY_SSE_KEEPALIVE", "PARLEY_REQUEST_TIMEOUT", "PARLEY_UPSTREAM_RETRY_DELAY",
		"PARLEY_UPSTREAM_CONNECT_TIMEOUT", "PARLEY_UPSTREAM_FIRST_BYTE_TIMEOUT", "PARLEY_UPSTREAM_IDLE_TIMEOUT", "PARLEY_UPSTREAM_RESPONSE_TIMEOUT"} {
		t.Run(name+"=0", func(t *testing.T) {
			t.Setenv(name, "0")
			if _, err := loadEnv(); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=0: %v, want an error naming it", name, err)
			}
		})
	}

	// A keep-alive under a second would write to every quiet stream, and
	// notify every MCP call, as fast as that.
	t.Run("PARLEY_SSE_KEEPALIVE=10ms", func(t *testing.T) {
		t.Setenv("PARLEY_SSE_KEEPALIVE", "10ms")
		if _, err := loadEnv(); err == nil || !strings.Contains(err.Error(), "PARLEY_SSE_KEEPALIVE must be at least 1s") {
			t.Errorf("PARLEY_SSE_KEEPALIVE=10ms: %v, want an error giving the least", err)
		}
	})

	// One meant as "never" would make the stall a write may last before
	// the client is cut (twice it) overflow into a second.
	t.Run("PARLEY_SSE_KEEPALIVE=2000000h", func(t *testing.T) {
		t.Setenv("PARLEY_SSE_KEEPALIVE", "2000000h")
		if _, err := loadEnv(); err == nil || !strings.Contains(err.Error(), "PARLEY_SSE_KEEPALIVE must be at most 1h0m0s") {
			t.Errorf("PARLEY_SSE_KEEPALIVE=2000000h: %v, want an error giving the most", err)
		}
	})
	t.Run("PARLEY_REDIS_URL with a newline", func(t *testing.T) {
		t.Setenv("PARLEY_REDIS_URL", "redis://:pw@127.0.0.1:6379/12\n")
		if e, err := loadEnv(); err != nil || e.RedisURL != "redis://:pw@127.0.0.1:6379/12" {
			t.Errorf("PARLEY_REDIS_URL ending in a newline: %q, %v; want it trimmed", e.RedisURL, err)
		}
	})

	// A negative duration is refused with the rule of its setting: positive,
	// or, where 0 means something of its own, positive or 0, saying what 0
	// means.
	for name, rule := range map[string]string{
		"PARLEY_SHUTDOWN_GRACE":              "must be a positive duration such as 30s, or 0 to end the requests still running at once",
		"PARLEY_MAX_STREAM_DURATION":         "must be a positive duration such as 30s, or 0 for no limit",
		"PARLEY_SSE_KEEPALIVE":               "must be a positive duration such as 30s",
		"PARLEY_REQUEST_TIMEOUT":             "must be a positive duration such as 30s",
		"PARLEY_UPSTREAM_RETRY_DELAY":        "must be a positive duration such as 30s",
		"PARLEY_UPSTREAM_CONNECT_TIMEOUT":    "must be a positive duration such as 30s",
		"PARLEY_UPSTREAM_FIRST_BYTE_TIMEOUT": "must be a positive duration such as 30s",
		"PARLEY_UPSTREAM_IDLE_TIMEOUT":       "must be a positive duration such as 30s",
		"PARLEY_UPSTREAM_RESPONSE_TIMEOUT":   "must be a positive duration such as 30s",
	} {
		t.Run(name+"=-1s", func(t *testing.T) {
			t.Setenv(name, "-1s")
			_, err := loadEnv()
			if err == nil || !strings.Contains(err.Error(), name+" "+rule) || !strings.Contains(err.Error(), `"-1s"`) {
				t.Errorf("%s=-1s: %v, want %q and the value", name, err, name+" "+rule)
			}
		})
	}

	// MCP's allowed origins are origins, as a browser sends them.
	t.Run("PARLEY_MCP_ALLOWED_ORIGINS", func(t *testing.T) {
		t.Setenv("PARLEY_MCP_ALLOWED_ORIGINS", " https://app.example.com, http://10.0.0.5:3000 ,*")
		if e, err := loadEnv(); err != nil || strings.Join(e.MCPAllowedOrigins, " ") != "https://app.example.com http://10.0.0.5:3000 *" {
			t.Errorf("three origins: %q, %v", e.MCPAllowedOrigins, err)
		}
		// A scheme's own port and upper case would never match what a
		// browser sends: they are taken as it sends them.
		t.Setenv("PARLEY_MCP_ALLOWED_ORIGINS", "HTTPS://App.Example.com:443,http://x.example:80,https://y.example:8443")
		if e, err := loadEnv(); err != nil || strings.Join(e.MCPAllowedOrigins, " ") != "https://app.example.com http://x.example https://y.example:8443" {
			t.Errorf("origins as a browser sends them: %q, %v", e.MCPAllowedOrigins, err)
		}
		for _, bad := range []string{"app.example.com", "https://app.example.com/", "https://u:p@app.example.com", "https://app.example.com?x=1", "**", "https://*.example.com"} {
			t.Setenv("PARLEY_MCP_ALLOWED_ORIGINS", bad)
			if _, err := loadEnv(); err == nil || !strings.Contains(err.Error(), "PARLEY_MCP_ALLOWED_ORIGINS") || !strings.Contains(err.Error(), strconv.Quote(bad)) {
				t.Errorf("%q: %v, want an error naming the variable and the value", bad, err)
			}
		}
	})

	// The origins of REST's CORS are read alike.
	t.Run("PARLEY_ALLOWED_ORIGINS", func(t *testing.T) {
		t.Setenv("PARLEY_ALLOWED_ORIGINS", "HTTPS://App.Example.com:443, http://10.0.0.5:3000")
		if e, err := loadEnv(); err != nil || strings.Join(e.AllowedOrigins, " ") != "https://app.example.com http://10.0.0.5:3000" {
			t.Errorf("two origins: %q, %v", e.AllowedOrigins, err)
		}
		t.Setenv("PARLEY_ALLOWED_ORIGINS", "app.example.com")
		if _, err := loadEnv(); err == nil || !strings.Contains(err.Error(), "PARLEY_ALLOWED_ORIGINS") {
			t.Errorf("a host alone: %v, want an error naming the variable", err)
		}
	})

	t.Run("PARLEY_MCP_SSE_SESSIONS_PER_USER", func(t *testing.T) {
		t.Setenv("PARLEY_MCP_SSE_SESSIONS_PER_USER", "4")
		if e, err := loadEnv(); err != nil || e.MCPSSESessionsPerUser != 4 {
			t.Errorf("4: %d, %v", e.MCPSSESessionsPerUser, err)
		}
		for _, bad := range []string{"0", "-1", "many", "2.5"} {
			t.Setenv("PARLEY_MCP_SSE_SESSIONS_PER_USER", bad)
			if _, err := loadEnv(); err == nil || !strings.Contains(err.Error(), "PARLEY_MCP_SSE_SESSIONS_PER_USER must be a positive number") {
				t.Errorf("%q: %v, want an error naming the variable", bad, err)
			}
		}
	})

	// The first retry's wait is bounded: a caller waits through all of them.
	t.Run("PARLEY_UPSTREAM_RETRY_DELAY bound", func(t *testing.T) {
		t.Setenv("PARLEY_UPSTREAM_RETRY_DELAY", "10s")
		if e, err := loadEnv(); err != nil || e.LLM.RetryBaseDelay != 10*time.Second {
			t.Errorf("10s: %v, %v", e.LLM.RetryBaseDelay, err)
		}
		t.Setenv("PARLEY_UPSTREAM_RETRY_DELAY", "1h")
		if _, err := loadEnv(); err == nil || !strings.Contains(err.Error(), "at most 10s") {
			t.Errorf("1h: %v, want an error giving the bound", err)
		}
	})
}

func TestDatabaseURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"postgres://u:pw@db:5432/parley?sslmode=disable", "postgres://u:pw@db:5432/parley?sslmode=disable"},
		{"POSTGRES://u:pw@db/parley", "postgres://u:pw@db/parley"},
		{"PostgreSQL://u:pw@db/parley", "postgresql://u:pw@db/parley"},
		{"  postgres://db/parley\n", "postgres://db/parley"},
		{"sqlite:data/parley.db", "sqlite:data/parley.db"},
		{"SQLITE:///var/lib/parley.db", "sqlite:///var/lib/parley.db"},
		{"/var/lib/parley/parley.db", "/var/lib/parley/parley.db"},
		{"./data:v2/parley.db", "./data:v2/parley.db"},
		{"data/parley.db?_txlock=deferred", "data/parley.db?_txlock=deferred"},
		{":memory:", ":memory:"},
		{`C:\parley\parley.db`, `C:\parley\parley.db`},
	} {
		if got, err := databaseURL(tc.in); err != nil || got != tc.want {
			t.Errorf("databaseURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}

	for _, in := range []string{
		"mysql://root:pw-secret@db/parley",
		"MySQL://root:pw-secret@db/parley",
		"file:parley.db?key=pw-secret",
		"jdbc:postgresql://db/parley?password=pw-secret",
		"postgres:root:pw-secret@db",
		"host=db user=postgres password=pw-secret dbname=parley",
		"password = pw-secret",
	} {
		_, err := databaseURL(in)
		if err == nil {
			t.Errorf("databaseURL(%q) accepted it", in)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "PARLEY_DATABASE_URL") || !strings.Contains(msg, "postgres://") || strings.Contains(msg, "pw-secret") {
			t.Errorf("databaseURL(%q): %q; want the variable and what it takes, without the password", in, msg)
		}
	}
}

// TestKnownVarsAreTheREADMEs: the variables Parley takes for its own, and
// does not warn of, are those the README's configuration table documents
// (and the profiling build's address, documented with it).
func TestKnownVarsAreTheREADMEs(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	name := regexp.MustCompile("`(PARLEY_[A-Z_]+[A-Z])`")
	for _, line := range strings.Split(string(readme), "\n") {
		if first, _, ok := strings.Cut(strings.TrimPrefix(line, "| "), " | "); ok && strings.HasPrefix(line, "| `PARLEY_") {
			for _, m := range name.FindAllStringSubmatch(first, -1) {
				documented[m[1]] = true
			}
		}
	}
	for _, k := range knownVars {
		if !documented[k] {
			t.Errorf("%s is read but not in the README's table", k)
		}
		delete(documented, k)
	}
	for k := range documented {
		t.Errorf("%s is in the README's table but not among knownVars (Parley would warn of it)", k)
	}
}

// TestUnknownVarsWarned: a PARLEY_ variable Parley does not read is a
// warning when it likely misspells a setting, naming it, and a debug line
// otherwise (the test suite's own variables); provider keys and other
// variables are not mentioned.
func TestUnknownVarsWarned(t *testing.T) {
	var logs strings.Builder
	warnUnknownVars(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), []string{
		"PARLEY_DATABSE_URL=postgres://db/parley", "PARLEY_SHUTDOWN_GRACE_PERIOD=5m", "PARLEY_TEST_DATABASE_URL=postgres://x",
		"PARLEY_ADDR=:8080", "PARLEY_PROVIDER_KEY_OPENAI=sk-x", "HOME=/root", "PARLEY_MCP_READONLY=true"})
	for _, want := range []string{
		`level=WARN msg="PARLEY_DATABSE_URL is not a Parley setting and is ignored; did you mean PARLEY_DATABASE_URL?"`,
		`level=WARN msg="PARLEY_SHUTDOWN_GRACE_PERIOD is not a Parley setting and is ignored; did you mean PARLEY_SHUTDOWN_GRACE?"`,
		`level=DEBUG msg="PARLEY_TEST_DATABASE_URL is not a Parley setting and is ignored"`,
		`level=WARN msg="PARLEY_MCP_READONLY is not a Parley setting and is ignored; did you mean PARLEY_MCP_READ_ONLY?"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 4 {
		t.Errorf("%d lines, want 4:\n%s", n, logs.String())
	}
}

// TestRetentionSettings: retention is kept for ever unless set, in days or
// as a duration; what cannot be meant (under an hour, a fraction of a day,
// a negative time) is refused naming the setting and the value.
func TestRetentionSettings(t *testing.T) {
	t.Setenv("PARLEY_DATABASE_URL", "")
	for _, tc := range []struct {
		usage, conversations string
		want                 time.Duration // of both
	}{
		{"", "", 0},
		{"0", "0", 0},
		{"90d", "90d", 90 * 24 * time.Hour},
		{"720h", "720h", 720 * time.Hour},
		{"1h", "60m", time.Hour},
	} {
		t.Setenv("PARLEY_USAGE_RETENTION", tc.usage)
		t.Setenv("PARLEY_CONVERSATION_RETENTION", tc.conversations)
		e, err := loadEnv()
		if err != nil || e.Retention.Usage != tc.want || e.Retention.Conversations != tc.want {
			t.Errorf("%q, %q: usage %v, conversations %v, %v; want %v", tc.usage, tc.conversations, e.Retention.Usage, e.Retention.Conversations, err, tc.want)
		}
	}
	for _, name := range []string{"PARLEY_USAGE_RETENTION", "PARLEY_CONVERSATION_RETENTION"} {
		for _, bad := range []string{"90", "1.5d", "0d", "-3d", "30m", "-1h", "soon", "d", "36501d", "900000h"} {
			t.Run(name+"="+bad, func(t *testing.T) {
				t.Setenv("PARLEY_USAGE_RETENTION", "")
				t.Setenv("PARLEY_CONVERSATION_RETENTION", "")
				t.Setenv(name, bad)
				if _, err := loadEnv(); err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), strconv.Quote(bad)) {
					t.Errorf("%s=%q: %v, want an error naming it and the value", name, bad, err)
				}
			})
		}
	}
}
