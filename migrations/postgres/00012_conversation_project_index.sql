-- A member's conversations, listed without naming a chat, are read a page
-- per project (store.memberPage): through this index, a page costs what the
-- page's rows do. Without it (00011 took it out) PostgreSQL walked the
-- primary key of every tenant's conversations, checking each one's project.
-- It costs each new conversation one B-tree more.
--
-- Built CONCURRENTLY, so that turns go on being stored while it is, as
-- 00008's; a build that failed leaves an invalid index, which the DROP
-- before it clears.

-- A CONCURRENTLY build blocks no query, but waits for every transaction
-- older than it, in any table: lock_timeout 0 lets it wait (Parley's
-- migrations otherwise give up a lock wait after 2 s, store.retryLocked,
-- and would build the index again and again behind a long pg_dump).

-- +goose NO TRANSACTION

-- +goose Up
SET lock_timeout = 0;
DROP INDEX CONCURRENTLY IF EXISTS conversations_project_id_idx;
CREATE INDEX CONCURRENTLY conversations_project_id_idx ON conversations (project_id, id);
RESET lock_timeout;

-- +goose Down
SET lock_timeout = 0;
DROP INDEX CONCURRENTLY IF EXISTS conversations_project_id_idx;
RESET lock_timeout;
