-- A per-chat completion sent with an Idempotency-Key stores the key on its
-- reply, scoped to the chat ("<chatId>:<key>"), with a digest of the
-- request: the same request sent again is answered with the stored turn
-- instead of running, and storing, a second time. The index is partial:
-- the turns of requests without a key, nearly all of them, pay nothing.
--
-- messages is the largest table: its index is built CONCURRENTLY, so that
-- turns go on being stored while it is (a plain CREATE INDEX would hold
-- them for the whole scan). That cannot run in a transaction, so each
-- statement stands alone and can run again: a build that failed leaves an
-- invalid index, which the DROP before it clears.

-- A CONCURRENTLY build blocks no query, but waits for every transaction
-- older than it, in any table: lock_timeout 0 lets it wait (Parley's
-- migrations otherwise give up a lock wait after 2 s, store.retryLocked,
-- and would build the index again and again behind a long pg_dump).

-- +goose NO TRANSACTION

-- +goose Up
ALTER TABLE messages ADD COLUMN IF NOT EXISTS request_key text;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS request_hash text;
SET lock_timeout = 0;
DROP INDEX CONCURRENTLY IF EXISTS messages_request_key;
CREATE UNIQUE INDEX CONCURRENTLY messages_request_key ON messages (request_key) WHERE request_key IS NOT NULL;
RESET lock_timeout;

-- +goose Down
SET lock_timeout = 0;
DROP INDEX CONCURRENTLY IF EXISTS messages_request_key;
RESET lock_timeout;
ALTER TABLE messages DROP COLUMN IF EXISTS request_hash;
ALTER TABLE messages DROP COLUMN IF EXISTS request_key;
