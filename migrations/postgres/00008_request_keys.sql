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

-- +goose NO TRANSACTION

-- +goose Up
ALTER TABLE messages ADD COLUMN IF NOT EXISTS request_key text;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS request_hash text;
DROP INDEX CONCURRENTLY IF EXISTS messages_request_key;
CREATE UNIQUE INDEX CONCURRENTLY messages_request_key ON messages (request_key) WHERE request_key IS NOT NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS messages_request_key;
ALTER TABLE messages DROP COLUMN IF EXISTS request_hash;
ALTER TABLE messages DROP COLUMN IF EXISTS request_key;
