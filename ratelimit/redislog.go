package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

var (
	redisLogger     atomic.Pointer[slog.Logger] // where go-redis's lines go
	redisLoggerOnce sync.Once
)

// routeRedisLogs sends go-redis's own log lines (a failed dial, a pool
// error), which it otherwise prints to stderr, to logger at warn, with the
// context of the call that logged when go-redis has one (so the request id
// too); nil means slog.Default(). go-redis keeps one logger for the whole
// process (redis.SetLogger): the logger of the last call wins, for every
// client. It is installed once; later calls only swap the slog.Logger.
func routeRedisLogs(logger *slog.Logger) {
	if logger == nil {
		logger = slog.Default()
	}
	redisLogger.Store(logger)
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
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	logger.LogAttrs(ctx, slog.LevelWarn, "rate limiter: go-redis: "+msg)
}
