-- Prompt caching. An Anthropic provider's prompt_cache: '' (off, as every
-- provider made before this version), '5m' or '1h', the time a cached
-- prompt prefix lives; when set, each call asks Anthropic to cache the
-- prompt up to its last block (the Messages API's top-level
-- cache_control), so the next turn of a conversation reads its history
-- from the cache. Of a completion's prompt, the tokens the provider wrote
-- to its cache (billed above the input price, as those read from it are
-- billed below), kept beside cached_tokens on the usage record and the
-- assistant message; rows made before this version read 0. Rolling back
-- drops them all: caching stops. Constant defaults rewrite no row.

-- +goose Up
ALTER TABLE ai_providers ADD COLUMN prompt_cache TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_records ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE messages DROP COLUMN cache_write_tokens;
ALTER TABLE usage_records DROP COLUMN cache_write_tokens;
ALTER TABLE ai_providers DROP COLUMN prompt_cache;
