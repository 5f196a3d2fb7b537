-- Tool calls: an assistant message keeps the tools the model called
-- (tool_calls, a JSON array of {id, type, function: {name, arguments}};
-- '' when none) and a tool message the call it answers (tool_call_id).
-- SQLite cannot change a CHECK constraint in place, so the table is
-- rebuilt (no other table refers to messages).

-- +goose Up
CREATE TABLE messages_new (
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
INSERT INTO messages_new (id, conversation_id, seq, role, content, document_id, model, finish_reason,
                          prompt_tokens, completion_tokens, total_tokens, created_at)
SELECT id, conversation_id, seq, role, content, document_id, model, finish_reason,
       prompt_tokens, completion_tokens, total_tokens, created_at
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;

-- +goose Down
-- Tool messages cannot exist in the old schema: going down deletes them.
CREATE TABLE messages_old (
    id                TEXT     NOT NULL PRIMARY KEY,
    conversation_id   TEXT     NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq               INTEGER  NOT NULL,
    role              TEXT     NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content           TEXT     NOT NULL DEFAULT '',
    document_id       TEXT     NOT NULL DEFAULT '', -- a reference only: the content is kept
    model             TEXT     NOT NULL DEFAULT '',
    finish_reason     TEXT     NOT NULL DEFAULT '',
    prompt_tokens     INTEGER  NOT NULL DEFAULT 0,
    completion_tokens INTEGER  NOT NULL DEFAULT 0,
    total_tokens      INTEGER  NOT NULL DEFAULT 0,
    created_at        DATETIME NOT NULL,
    CONSTRAINT messages_conversation_id_seq_key UNIQUE (conversation_id, seq)
);
INSERT INTO messages_old (id, conversation_id, seq, role, content, document_id, model, finish_reason,
                          prompt_tokens, completion_tokens, total_tokens, created_at)
SELECT id, conversation_id, seq, role, content, document_id, model, finish_reason,
       prompt_tokens, completion_tokens, total_tokens, created_at
FROM messages WHERE role <> 'tool';
DROP TABLE messages;
ALTER TABLE messages_old RENAME TO messages;
