-- Parley's schema on SQLite. Times are DATETIME columns holding UTC text in
-- the driver's format ("2006-01-02 15:04:05.999999999-07:00"), which sorts
-- and compares correctly as text. Foreign keys need PRAGMA foreign_keys=1,
-- which the store sets on every connection.

-- +goose Up
CREATE TABLE users (
    id         TEXT     NOT NULL PRIMARY KEY,
    name       TEXT     NOT NULL,
    is_admin   BOOLEAN  NOT NULL DEFAULT 0,
    created_at DATETIME NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT     NOT NULL PRIMARY KEY,
    user_id    TEXT     NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT     NOT NULL,
    hash       BLOB     NOT NULL,
    hint       TEXT     NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL,
    revoked_at DATETIME,
    CONSTRAINT api_keys_hash_key UNIQUE (hash)
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id, id);

CREATE TABLE projects (
    id          TEXT     NOT NULL PRIMARY KEY,
    name        TEXT     NOT NULL,
    description TEXT     NOT NULL DEFAULT '',
    created_at  DATETIME NOT NULL,
    updated_at  DATETIME NOT NULL
);

CREATE TABLE project_members (
    project_id TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    TEXT     NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT     NOT NULL CHECK (role IN ('viewer', 'editor', 'owner')),
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user_id_idx ON project_members (user_id, project_id);

CREATE TABLE ai_providers (
    id                 TEXT     NOT NULL PRIMARY KEY,
    project_id         TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name               TEXT     NOT NULL,
    type               TEXT     NOT NULL,
    base_url           TEXT     NOT NULL DEFAULT '',
    default_model      TEXT     NOT NULL DEFAULT '',
    api_version        TEXT     NOT NULL DEFAULT '',
    api_key_ciphertext BLOB,
    api_key_key_id     TEXT     NOT NULL DEFAULT '',
    api_key_hint       TEXT     NOT NULL DEFAULT '',
    api_key_ref        TEXT     NOT NULL DEFAULT '',
    created_at         DATETIME NOT NULL,
    updated_at         DATETIME NOT NULL
);
CREATE INDEX ai_providers_project_id_idx ON ai_providers (project_id, id);

CREATE TABLE documents (
    id         TEXT     NOT NULL PRIMARY KEY,
    project_id TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name       TEXT     NOT NULL,
    content    TEXT     NOT NULL DEFAULT '',
    mime_type  TEXT     NOT NULL DEFAULT '',
    metadata   TEXT     NOT NULL DEFAULT 'null', -- JSON
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);
CREATE INDEX documents_project_id_idx ON documents (project_id, id);

-- A provider used by a chat cannot be deleted. NO ACTION rather than
-- RESTRICT: SQLite checks it at the end of the statement, so deleting a
-- project, which cascades to both its chats and its providers, succeeds.
CREATE TABLE chats (
    id             TEXT     NOT NULL PRIMARY KEY,
    project_id     TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    ai_provider_id TEXT     NOT NULL REFERENCES ai_providers (id) ON DELETE NO ACTION,
    name           TEXT     NOT NULL,
    system_message TEXT     NOT NULL DEFAULT '',
    model          TEXT     NOT NULL DEFAULT '',
    created_at     DATETIME NOT NULL,
    updated_at     DATETIME NOT NULL
);
CREATE INDEX chats_project_id_idx ON chats (project_id, id);
CREATE INDEX chats_ai_provider_id_idx ON chats (ai_provider_id);

CREATE TABLE conversations (
    id         TEXT     NOT NULL PRIMARY KEY,
    project_id TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    chat_id    TEXT     NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);
CREATE INDEX conversations_chat_id_idx ON conversations (chat_id, id);
CREATE INDEX conversations_project_id_idx ON conversations (project_id, id);

CREATE TABLE messages (
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

-- Usage outlives the chats, conversations and providers it names, so only
-- the project is a foreign key.
CREATE TABLE usage_records (
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
    created_at        DATETIME NOT NULL
);
CREATE INDEX usage_records_project_id_created_at_idx ON usage_records (project_id, created_at);

-- +goose Down
DROP TABLE usage_records;
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE chats;
DROP TABLE documents;
DROP TABLE ai_providers;
DROP TABLE project_members;
DROP TABLE projects;
DROP TABLE api_keys;
DROP TABLE users;
