package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"time"
)

// SQLite in WAL mode appends each commit to the write-ahead log and copies
// the log back into the database file in a checkpoint. Left to itself,
// SQLite checkpoints inside the commit that takes the log past 1,000 pages,
// and that commit then waits for the copy and two fsyncs: every turn
// queued behind it waits too. So the connections do not checkpoint
// (wal_autocheckpoint(0), see sqlitePath), and a goroutine of the Store
// does it on its own connection, where it holds up no writer.
const (
	// checkpointEvery is how often the checkpointer copies the log back.
	checkpointEvery = 100 * time.Millisecond
	// checkpointRestartFrames bounds the log. A PASSIVE checkpoint copies
	// what was committed when it began; while commits keep arriving the
	// log may never be wholly copied, and SQLite starts the log afresh
	// only when it is. Past this many frames (about 64 MB) the
	// checkpointer copies it all and starts it afresh (RESTART), which
	// keeps writers out meanwhile (see restartWAL).
	checkpointRestartFrames = 16 << 10
	// restartWait bounds how long a RESTART waits for readers to leave the
	// log, keeping writers out meanwhile. Parley's own reads take
	// milliseconds; a reader that holds on (another process's long
	// transaction: a backup, an open sqlite3 shell, Litestream, which
	// keeps one for good) would otherwise hold every write for the busy
	// timeout, at every tick.
	restartWait = 100 * time.Millisecond
	// restartRetryMin and restartRetryMax bound the wait before the next
	// RESTART after one a reader turned away; it doubles each time. The
	// PASSIVE checkpoints go on meanwhile.
	restartRetryMin = time.Second
	restartRetryMax = 30 * time.Second
	// walSizeLimit is the most of the log's file kept once the log starts
	// afresh (journal_size_limit): Parley's steady load keeps it near a
	// megabyte, and a burst that grew it to a hundred leaves it so until
	// the last connection closes.
	walSizeLimit = 16 << 20
)

// checkpointWAL checkpoints a SQLite database every checkpointEvery until
// the Store closes. (Closing the last connection checkpoints once more.)
func (s *Store) checkpointWAL() {
	defer s.workers.Done()
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	var retry time.Duration
	var next time.Time // no RESTART before then
	for {
		select {
		case <-s.closed:
			return
		case <-t.C:
			if frames := s.checkpoint("PASSIVE"); frames > checkpointRestartFrames && !time.Now().Before(next) {
				if _, busy := s.restartWAL(); busy {
					retry = min(max(2*retry, restartRetryMin), restartRetryMax)
					next = time.Now().Add(retry)
				} else {
					retry = 0
				}
			}
		}
	}
}

// restartWAL runs a RESTART checkpoint while holding the write connection.
// SQLite keeps writers out of the database during a RESTART anyway; a turn
// that found it locked would sleep in SQLite's busy handler (1, 2, 5, 10 ms
// and on) and start up to a step after the checkpoint ended. Holding the
// write connection, turns queue in Go and start the moment it ends. The
// checkpoint's own connection is taken first, so that turns never wait for
// the pool, and waits restartWait for readers, not the busy timeout. It
// returns what checkpointOn returns.
func (s *Store) restartWAL() (frames int, busy bool) {
	ctx, cancel := context.WithTimeout(context.Background(), checkpointTimeout)
	defer cancel()
	conn, err := s.sqlDB.Conn(ctx)
	if err != nil {
		return 0, true
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", restartWait.Milliseconds())); err != nil {
		return 0, true
	}
	defer func() {
		if _, err := conn.ExecContext(context.Background(), fmt.Sprintf("PRAGMA busy_timeout = %d", sqliteBusyTimeout.Milliseconds())); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn }) // not back to the pool with the short wait
		}
	}()
	s.writer.mu.Lock()
	defer s.writer.mu.Unlock()
	return checkpointOn(ctx, conn, "RESTART")
}

// checkpoint runs one checkpoint in mode on a connection of the pool and
// returns the frames checkpointOn returns.
func (s *Store) checkpoint(mode string) (frames int) {
	ctx, cancel := context.WithTimeout(context.Background(), checkpointTimeout)
	defer cancel()
	frames, _ = checkpointOn(ctx, s.sqlDB, mode)
	return frames
}

// checkpointTimeout bounds one checkpoint, waits for a connection included.
const checkpointTimeout = 30 * time.Second

// queryRower is a pool (*sql.DB) or one of its connections (*sql.Conn).
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// checkpointOn runs one checkpoint in mode on db and returns how many
// frames the log holds: -1 when it could not run (another checkpoint was
// running), 0 when it failed; and busy when it did not finish (a RESTART
// that readers or a writer kept waiting past the busy timeout) or failed.
// A checkpoint that did not run is tried again later, and the database
// stays correct meanwhile.
func checkpointOn(ctx context.Context, db queryRower, mode string) (frames int, busy bool) {
	var blocked, checkpointed int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&blocked, &frames, &checkpointed); err != nil {
		return 0, true
	}
	return frames, blocked != 0
}
