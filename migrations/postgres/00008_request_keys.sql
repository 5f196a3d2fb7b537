-- A per-chat completion sent with an Idempotency-Key stores the key on its
-- reply, scoped to the chat ("<chatId>:<key>"), with a digest of the
-- request: the same request sent again is answered with the stored turn
-- instead of running, and storing, a second time. The index is partial:
-- the turns of requests without a key, nearly all of them, pay nothing.

-- +goose Up
ALTER TABLE messages ADD COLUMN request_key text;
ALTER TABLE messages ADD COLUMN request_hash text;
CREATE UNIQUE INDEX messages_request_key ON messages (request_key) WHERE request_key IS NOT NULL;

-- +goose Down
DROP INDEX messages_request_key;
ALTER TABLE messages DROP COLUMN request_hash;
ALTER TABLE messages DROP COLUMN request_key;
