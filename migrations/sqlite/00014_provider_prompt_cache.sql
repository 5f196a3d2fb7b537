-- An Anthropic provider's prompt caching: '' (off, as every provider made
-- before this version), '5m' or '1h', the time a cached prompt prefix
-- lives. When set, each call asks Anthropic to cache the prompt up to its
-- last block (the Messages API's top-level cache_control), so the next
-- turn of a conversation reads its history from the cache. Rolling back
-- drops the setting: caching stops. A constant default rewrites no row.

-- +goose Up
ALTER TABLE ai_providers ADD COLUMN prompt_cache TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE ai_providers DROP COLUMN prompt_cache;
