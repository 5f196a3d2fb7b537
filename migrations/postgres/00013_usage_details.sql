-- The details of a completion's usage that clients price it by: of the
-- prompt, the tokens the provider read from its prompt cache; of the reply,
-- the tokens a reasoning model spent thinking. Kept on the usage record,
-- which the usage report sums, and on the assistant message, which a
-- conversation and an idempotent replay show. Rows made before this version
-- read 0, as for a provider that reports none. Rolling back drops them. A
-- constant default rewrites no row.

-- +goose Up
ALTER TABLE usage_records ADD COLUMN cached_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN reasoning_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN cached_tokens integer NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN reasoning_tokens integer NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE messages DROP COLUMN reasoning_tokens;
ALTER TABLE messages DROP COLUMN cached_tokens;
ALTER TABLE usage_records DROP COLUMN reasoning_tokens;
ALTER TABLE usage_records DROP COLUMN cached_tokens;
