package store

import (
	"context"
	"time"

	"github.com/parleyhq/parley/domain"
)

// TurnForTest is one turn of AppendTurnBatch.
type TurnForTest struct {
	Conv   *domain.Conversation
	Create bool
	Msgs   []domain.Message
}

// AppendTurnBatch writes turns as the group commit writes a batch: in one
// transaction (on PostgreSQL one statement, when they fit), all or none.
func (s *Store) AppendTurnBatch(ctx context.Context, turns []TurnForTest) error {
	batch := make([]*turn, len(turns))
	for i, t := range turns {
		batch[i] = newTurn(t.Conv, t.Create, t.Msgs)
	}
	return s.appendTurns(ctx, batch)
}

// SetSQLiteConnLifetime sets how long the SQLite connections of the stores
// opened from now on live, and returns a func that puts it back.
func SetSQLiteConnLifetime(d time.Duration) (restore func()) {
	was := sqliteConnLifetime
	sqliteConnLifetime = d
	return func() { sqliteConnLifetime = was }
}

// SetDeleteStatementTimeout sets the bound on each statement of a chunked
// delete, and returns a func that puts it back.
func SetDeleteStatementTimeout(d time.Duration) (restore func()) {
	was := deleteStatementTimeout
	deleteStatementTimeout = d
	return func() { deleteStatementTimeout = was }
}

// SetBeforeWrite makes f run as each batch's writes begin (nil: nothing).
// Set it while no turn is being written.
func (s *Store) SetBeforeWrite(f func()) { s.beforeWrite = f }

// SetDeleteChunks makes the deletes that go a chunk at a time (SQLite) take
// chunk rows per statement and run between after each full chunk. Set it
// while nothing is being deleted.
func (s *Store) SetDeleteChunks(chunk int, between func()) {
	s.deleteChunk, s.betweenChunks = chunk, between
}

// TurnStoredQuery is the query by which a turn whose answer was lost is
// looked for (PostgreSQL).
const TurnStoredQuery = turnStoredQuery

// LargestTurnBatch is the most turns one transaction has held so far.
func (s *Store) LargestTurnBatch() int { return s.commits.largestBatch() }

// WaitingTurns is how many turns wait in line for a writer.
func (s *Store) WaitingTurns() int {
	s.commits.mu.Lock()
	defer s.commits.mu.Unlock()
	return len(s.commits.waiting)
}

// RestartWAL runs the checkpointer's RESTART checkpoint (SQLite), again
// while the Store's own checkpointer is running one.
func (s *Store) RestartWAL() {
	untilRan(func() int {
		frames, _ := s.restartWAL()
		return frames
	})
}

// WALFrames checkpoints what it can (PASSIVE) and returns how many frames
// the write-ahead log holds (SQLite).
func (s *Store) WALFrames() int { return untilRan(func() int { return s.checkpoint("PASSIVE") }) }

// untilRan calls checkpoint until it was not turned away by another
// checkpoint, for up to five seconds, and returns its last result.
func untilRan(checkpoint func() int) int {
	deadline := time.Now().Add(5 * time.Second)
	frames := checkpoint()
	for frames < 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		frames = checkpoint()
	}
	return frames
}

// SetConnectTimeout sets how long Open waits for PostgreSQL to answer, and
// returns the func that restores it.
func SetConnectTimeout(d time.Duration) (restore func()) {
	old := connectTimeout
	connectTimeout = d
	return func() { connectTimeout = old }
}

// CreateChatsForTest inserts chats in one statement, for benchmarks that
// need many.
func (s *Store) CreateChatsForTest(ctx context.Context, chats []domain.Chat) error {
	rows := make([]chatRow, len(chats))
	for i := range chats {
		rows[i] = fromDomainChat(&chats[i])
	}
	return s.db.WithContext(ctx).Create(&rows).Error
}

// MaxMergedProjects is how many projects' pages a member's list merges.
const MaxMergedProjects = maxMergedProjects

// SetMigrationLockTimeout sets PostgreSQL migrations' lock_timeout, and
// returns the func that restores it.
func SetMigrationLockTimeout(d time.Duration) (restore func()) {
	old := migrationLockTimeout
	migrationLockTimeout = d
	return func() { migrationLockTimeout = old }
}
