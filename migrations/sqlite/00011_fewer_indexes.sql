-- Two fewer B-trees written per completion. A new turn inserted its
-- conversation into three (the table and its chat_id and project_id
-- indexes) and each usage record into three (the table, the index SQLite
-- keeps for its TEXT primary key, and (project_id, created_at)); each
-- B-tree a commit changes is a 4 KB page in the write-ahead log, checksummed
-- there and copied back by the checkpoint. Now:
--   - conversations has no project_id index and no foreign key to
--     projects: a project's conversations go with its chats (chat_id's ON
--     DELETE CASCADE), and the key needed the index, or deleting a project
--     would scan every conversation. No read finds conversations by
--     project alone; project_id stays, for the member scoping of reads;
--   - usage_records is a WITHOUT ROWID table clustered on (project_id,
--     created_at, id), the order the usage totals read it in, so the table
--     is that index. A record's id still cannot be stored twice: a record
--     is written again only whole, with its project and time.
-- Measured with `make bench-instructions`: see docs/benchmarks.md.
--
-- The rebuild copies every conversation and usage record once, at the
-- first start of this version; messages are not copied. It follows
-- SQLite's procedure for changes ALTER TABLE cannot make: foreign keys
-- off (only outside a transaction, hence NO TRANSACTION; Parley runs
-- migrations on one connection), then in one transaction: create the new
-- table, copy, drop the old one (without its foreign keys' cascades, which
-- would delete every message), rename the new one. Until it commits the
-- database needs the two tables' disk space twice.

-- +goose NO TRANSACTION
-- +goose Up
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE conversations_new (
    id         TEXT     NOT NULL PRIMARY KEY,
    project_id TEXT     NOT NULL,
    chat_id    TEXT     NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
) WITHOUT ROWID;
INSERT INTO conversations_new (id, project_id, chat_id, created_at, updated_at)
SELECT id, project_id, chat_id, created_at, updated_at FROM conversations;
DROP TABLE conversations;
ALTER TABLE conversations_new RENAME TO conversations;
CREATE INDEX conversations_chat_id_idx ON conversations (chat_id, id);

CREATE TABLE usage_records_new (
    id                TEXT     NOT NULL,
    project_id        TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    chat_id           TEXT     NOT NULL DEFAULT '',
    conversation_id   TEXT     NOT NULL DEFAULT '',
    ai_provider_id    TEXT     NOT NULL DEFAULT '',
    model             TEXT     NOT NULL DEFAULT '',
    user_id           TEXT     NOT NULL DEFAULT '',
    key_id            TEXT     NOT NULL DEFAULT '',
    prompt_tokens     INTEGER  NOT NULL DEFAULT 0,
    completion_tokens INTEGER  NOT NULL DEFAULT 0,
    total_tokens      INTEGER  NOT NULL DEFAULT 0,
    estimated         BOOLEAN  NOT NULL DEFAULT 0,
    latency_ms        INTEGER  NOT NULL DEFAULT 0,
    ttft_ms           INTEGER  NOT NULL DEFAULT 0,
    outcome           TEXT     NOT NULL DEFAULT '',
    stream            BOOLEAN  NOT NULL DEFAULT 0,
    created_at        DATETIME NOT NULL,
    PRIMARY KEY (project_id, created_at, id)
) WITHOUT ROWID;
INSERT INTO usage_records_new (id, project_id, chat_id, conversation_id, ai_provider_id, model, user_id, key_id,
                               prompt_tokens, completion_tokens, total_tokens, estimated, latency_ms, ttft_ms,
                               outcome, stream, created_at)
SELECT id, project_id, chat_id, conversation_id, ai_provider_id, model, user_id, key_id,
       prompt_tokens, completion_tokens, total_tokens, estimated, latency_ms, ttft_ms,
       outcome, stream, created_at
FROM usage_records;
DROP TABLE usage_records;
ALTER TABLE usage_records_new RENAME TO usage_records;

COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE conversations_old (
    id         TEXT     NOT NULL PRIMARY KEY,
    project_id TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    chat_id    TEXT     NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
) WITHOUT ROWID;
INSERT INTO conversations_old (id, project_id, chat_id, created_at, updated_at)
SELECT id, project_id, chat_id, created_at, updated_at FROM conversations;
DROP TABLE conversations;
ALTER TABLE conversations_old RENAME TO conversations;
CREATE INDEX conversations_chat_id_idx ON conversations (chat_id, id);
CREATE INDEX conversations_project_id_idx ON conversations (project_id, id);

CREATE TABLE usage_records_old (
    id                TEXT     NOT NULL PRIMARY KEY,
    project_id        TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    chat_id           TEXT     NOT NULL DEFAULT '',
    conversation_id   TEXT     NOT NULL DEFAULT '',
    ai_provider_id    TEXT     NOT NULL DEFAULT '',
    model             TEXT     NOT NULL DEFAULT '',
    user_id           TEXT     NOT NULL DEFAULT '',
    key_id            TEXT     NOT NULL DEFAULT '',
    prompt_tokens     INTEGER  NOT NULL DEFAULT 0,
    completion_tokens INTEGER  NOT NULL DEFAULT 0,
    total_tokens      INTEGER  NOT NULL DEFAULT 0,
    latency_ms        INTEGER  NOT NULL DEFAULT 0,
    ttft_ms           INTEGER  NOT NULL DEFAULT 0,
    outcome           TEXT     NOT NULL DEFAULT '',
    stream            BOOLEAN  NOT NULL DEFAULT 0,
    created_at        DATETIME NOT NULL,
    estimated         BOOLEAN  NOT NULL DEFAULT 0
);
INSERT INTO usage_records_old (id, project_id, chat_id, conversation_id, ai_provider_id, model, user_id, key_id,
                               prompt_tokens, completion_tokens, total_tokens, latency_ms, ttft_ms,
                               outcome, stream, created_at, estimated)
SELECT id, project_id, chat_id, conversation_id, ai_provider_id, model, user_id, key_id,
       prompt_tokens, completion_tokens, total_tokens, latency_ms, ttft_ms,
       outcome, stream, created_at, estimated
FROM usage_records;
DROP TABLE usage_records;
ALTER TABLE usage_records_old RENAME TO usage_records;
CREATE INDEX usage_records_project_id_created_at_idx ON usage_records (project_id, created_at);

COMMIT;
PRAGMA foreign_keys = ON;
