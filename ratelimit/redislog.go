package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	redisLogger     atomic.Pointer[slog.Logger] // where go-redis's lines go
	redisLoggerOnce sync.Once

	// go-redis logs each failed dial: one per probe of a Redis that is
	// down (every 2s at most, per instance). Its lines are kept to one
	// per warnEvery, as the limiter's own warnings are, with a count of
	// those left out.
	redisLogMu         sync.Mutex
	redisLogLast       time.Time
	redisLogSuppressed int
)

// routeRedisLogs sends go-redis's own log lines (a failed dial, a pool
// error), which it otherwise prints to stderr, to logger at warn, with the
// context of the call that logged when go-redis has one (so the request id
// too); nil means slog.Default(). go-redis keeps one logger for the whole
// process (redis.SetLogger): the logger of the last call wins, for every
// client. It is installed once; later calls only swap the slog.Logger.
// Its lines are kept to one per warnEvery (see redisLogLast).
func routeRedisLogs(logger *slog.Logger) {
	if logger == nil {
		logger = slog.Default()
	}
	redisLogger.Store(logger)
	redisLogMu.Lock()
	redisLogLast, redisLogSuppressed = time.Time{}, 0 // a new logger hears the next line
	redisLogMu.Unlock()
	redisLoggerOnce.Do(func() { redis.SetLogger(redisLog{}) })
}

// redisLog is go-redis's logger (the interface of redis.SetLogger), writing
// to redisLogger.
type redisLog struct{}

func (redisLog) Printf(ctx context.Context, format string, v ...any) {
	logger := redisLogger.Load()
	if ctx == nil {
		ctx = context.Background()
	}
	if logger == nil || !logger.Enabled(ctx, slog.LevelWarn) {
		return
	}
	redisLogMu.Lock()
	now := time.Now()
	if !redisLogLast.IsZero() && now.Sub(redisLogLast) < warnEvery {
		redisLogSuppressed++
		redisLogMu.Unlock()
		return
	}
	suppressed := redisLogSuppressed
	redisLogLast, redisLogSuppressed = now, 0
	redisLogMu.Unlock()
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	logger.LogAttrs(ctx, slog.LevelWarn, "rate limiter: go-redis: "+msg, slog.Int("suppressed", suppressed))
}
