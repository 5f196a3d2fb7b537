-- Fewer pages per turn. A SQLite commit writes every page it changed to the
-- write-ahead log, and the checkpoint copies each one back; storing a new
-- turn touched seven: conversations' table and its three indexes, messages'
-- table and its two. Now it touches five:
--   - conversations is a WITHOUT ROWID table clustered on its id (its rows
--     are small), so the table is its primary key;
--   - messages is found by conversation and seq only, never by id, so
--     (conversation_id, seq) is its primary key and id has no index of its
--     own. Ids come from domain.NewID (a millisecond and 80 random bits), so
--     they do not collide. (PostgreSQL followed in 00005.)
-- Measured with `go test -bench AppendTurn/sqlite/serial ./store/`: a new
-- turn took ~90 µs before and ~70 µs after.
--
-- The rebuild copies every conversation and message once, in one
-- transaction, at the first start of this version: on a large database
-- that takes a while and, until it commits, twice their disk space.
--
-- The tables are renamed before they are rebuilt: dropping conversations
-- while messages still referred to it would delete every message (ON DELETE
-- CASCADE), and renaming a table updates the references to it.

-- +goose Up
ALTER TABLE messages RENAME TO messages_old;
ALTER TABLE conversations RENAME TO conversations_old;
DROP INDEX conversations_chat_id_idx;
DROP INDEX conversations_project_id_idx;

CREATE TABLE conversations (
    id         TEXT     NOT NULL PRIMARY KEY,
    project_id TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    chat_id    TEXT     NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
) WITHOUT ROWID;
INSERT INTO conversations (id, project_id, chat_id, created_at, updated_at)
SELECT id, project_id, chat_id, created_at, updated_at FROM conversations_old;
CREATE INDEX conversations_chat_id_idx ON conversations (chat_id, id);
CREATE INDEX conversations_project_id_idx ON conversations (project_id, id);

CREATE TABLE messages (
    id                TEXT     NOT NULL,
    conversation_id   TEXT     NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq               INTEGER  NOT NULL,
    role              TEXT     NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content           TEXT     NOT NULL DEFAULT '',
    document_id       TEXT     NOT NULL DEFAULT '', -- a reference only: the content is kept
    tool_calls        TEXT     NOT NULL DEFAULT '',
    tool_call_id      TEXT     NOT NULL DEFAULT '',
    model             TEXT     NOT NULL DEFAULT '',
    finish_reason     TEXT     NOT NULL DEFAULT '',
    prompt_tokens     INTEGER  NOT NULL DEFAULT 0,
    completion_tokens INTEGER  NOT NULL DEFAULT 0,
    total_tokens      INTEGER  NOT NULL DEFAULT 0,
    created_at        DATETIME NOT NULL,
    CONSTRAINT messages_conversation_id_seq_key PRIMARY KEY (conversation_id, seq)
);
INSERT INTO messages (id, conversation_id, seq, role, content, document_id, tool_calls, tool_call_id, model,
                      finish_reason, prompt_tokens, completion_tokens, total_tokens, created_at)
SELECT id, conversation_id, seq, role, content, document_id, tool_calls, tool_call_id, model,
       finish_reason, prompt_tokens, completion_tokens, total_tokens, created_at
FROM messages_old;

DROP TABLE messages_old;
DROP TABLE conversations_old;

-- +goose Down
ALTER TABLE messages RENAME TO messages_new;
ALTER TABLE conversations RENAME TO conversations_new;
DROP INDEX conversations_chat_id_idx;
DROP INDEX conversations_project_id_idx;

CREATE TABLE conversations (
    id         TEXT     NOT NULL PRIMARY KEY,
    project_id TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    chat_id    TEXT     NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);
INSERT INTO conversations (id, project_id, chat_id, created_at, updated_at)
SELECT id, project_id, chat_id, created_at, updated_at FROM conversations_new;
CREATE INDEX conversations_chat_id_idx ON conversations (chat_id, id);
CREATE INDEX conversations_project_id_idx ON conversations (project_id, id);

CREATE TABLE messages (
    id                TEXT     NOT NULL PRIMARY KEY,
    conversation_id   TEXT     NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq               INTEGER  NOT NULL,
    role              TEXT     NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content           TEXT     NOT NULL DEFAULT '',
    document_id       TEXT     NOT NULL DEFAULT '', -- a reference only: the content is kept
    tool_calls        TEXT     NOT NULL DEFAULT '',
    tool_call_id      TEXT     NOT NULL DEFAULT '',
    model             TEXT     NOT NULL DEFAULT '',
    finish_reason     TEXT     NOT NULL DEFAULT '',
    prompt_tokens     INTEGER  NOT NULL DEFAULT 0,
    completion_tokens INTEGER  NOT NULL DEFAULT 0,
    total_tokens      INTEGER  NOT NULL DEFAULT 0,
    created_at        DATETIME NOT NULL,
    CONSTRAINT messages_conversation_id_seq_key UNIQUE (conversation_id, seq)
);
INSERT INTO messages (id, conversation_id, seq, role, content, document_id, tool_calls, tool_call_id, model,
                      finish_reason, prompt_tokens, completion_tokens, total_tokens, created_at)
SELECT id, conversation_id, seq, role, content, document_id, tool_calls, tool_call_id, model,
       finish_reason, prompt_tokens, completion_tokens, total_tokens, created_at
FROM messages_new;

DROP TABLE messages_new;
DROP TABLE conversations_new;
