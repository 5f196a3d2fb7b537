package store

import (
	"context"
	"database/sql"
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
)

// checkpointWAL checkpoints a SQLite database every checkpointEvery until
// the Store closes. (Closing the last connection checkpoints once more.)
func (s *Store) checkpointWAL() {
	defer s.workers.Done()
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-t.C:
			if frames := s.checkpoint("PASSIVE"); frames > checkpointRestartFrames {
				s.restartWAL()
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
// the pool. It returns what checkpoint returns.
func (s *Store) restartWAL() (frames int) {
	ctx, cancel := context.WithTimeout(context.Background(), checkpointTimeout)
	defer cancel()
	conn, err := s.sqlDB.Conn(ctx)
	if err != nil {
		return 0
	}
	defer conn.Close()
	s.writer.mu.Lock()
	defer s.writer.mu.Unlock()
	return checkpointOn(ctx, conn, "RESTART")
}

// checkpoint runs one checkpoint in mode on a connection of the pool; see
// checkpointOn.
func (s *Store) checkpoint(mode string) (frames int) {
	ctx, cancel := context.WithTimeout(context.Background(), checkpointTimeout)
	defer cancel()
	return checkpointOn(ctx, s.sqlDB, mode)
}

// checkpointTimeout bounds one checkpoint, waits for a connection included.
const checkpointTimeout = 30 * time.Second

// queryRower is a pool (*sql.DB) or one of its connections (*sql.Conn).
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// checkpointOn runs one checkpoint in mode on db and returns how many
// frames the log holds: -1 when it could not run (another checkpoint was
// running), 0 when it failed. A checkpoint that did not run is tried again
// at the next tick, and the database stays correct meanwhile.
func checkpointOn(ctx context.Context, db queryRower, mode string) (frames int) {
	var busy, checkpointed int
	if err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &frames, &checkpointed); err != nil {
		return 0
	}
	return frames
}
