-- The check on a message's role, written as comparisons instead of IN. In a
-- CHECK constraint SQLite evaluates an IN list of more than two constants
-- by building a temporary B-tree of the list for every row it checks: each
-- message a turn stores opened, filled and closed one (about 3% of the
-- server's CPU per completion in a profile at 1,000 requests/s). The same
-- check as comparisons costs a few instructions. Measured with
-- `go test -bench AppendTurn/sqlite/serial ./store/`: see docs/benchmarks.md.
--
-- SQLite cannot alter a constraint, so messages is rebuilt: every message
-- is copied once, in one transaction, at the first start of this version
-- (on a large database that takes a while and, until it commits, twice the
-- table's disk space). Nothing refers to messages, so it is simply renamed,
-- copied and dropped. PostgreSQL's check stays as it is (its 00010 changes
-- nothing): it tests IN against the list in place.

-- +goose Up
ALTER TABLE messages RENAME TO messages_old;
DROP INDEX messages_request_key;

CREATE TABLE messages (
    id                TEXT     NOT NULL,
    conversation_id   TEXT     NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq               INTEGER  NOT NULL,
    role              TEXT     NOT NULL CHECK (role = 'system' OR role = 'user' OR role = 'assistant' OR role = 'tool'),
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
    usage_estimated   BOOLEAN  NOT NULL DEFAULT 0,
    request_key       TEXT,
    request_hash      TEXT,
    refusal           TEXT,
    CONSTRAINT messages_conversation_id_seq_key PRIMARY KEY (conversation_id, seq)
);
INSERT INTO messages (id, conversation_id, seq, role, content, document_id, tool_calls, tool_call_id, model,
                      finish_reason, prompt_tokens, completion_tokens, total_tokens, created_at,
                      usage_estimated, request_key, request_hash, refusal)
SELECT id, conversation_id, seq, role, content, document_id, tool_calls, tool_call_id, model,
       finish_reason, prompt_tokens, completion_tokens, total_tokens, created_at,
       usage_estimated, request_key, request_hash, refusal
FROM messages_old;
DROP TABLE messages_old;
CREATE UNIQUE INDEX messages_request_key ON messages (request_key) WHERE request_key IS NOT NULL;

-- +goose Down
ALTER TABLE messages RENAME TO messages_new;
DROP INDEX messages_request_key;

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
    usage_estimated   BOOLEAN  NOT NULL DEFAULT 0,
    request_key       TEXT,
    request_hash      TEXT,
    refusal           TEXT,
    CONSTRAINT messages_conversation_id_seq_key PRIMARY KEY (conversation_id, seq)
);
INSERT INTO messages (id, conversation_id, seq, role, content, document_id, tool_calls, tool_call_id, model,
                      finish_reason, prompt_tokens, completion_tokens, total_tokens, created_at,
                      usage_estimated, request_key, request_hash, refusal)
SELECT id, conversation_id, seq, role, content, document_id, tool_calls, tool_call_id, model,
       finish_reason, prompt_tokens, completion_tokens, total_tokens, created_at,
       usage_estimated, request_key, request_hash, refusal
FROM messages_new;
DROP TABLE messages_new;
CREATE UNIQUE INDEX messages_request_key ON messages (request_key) WHERE request_key IS NOT NULL;
