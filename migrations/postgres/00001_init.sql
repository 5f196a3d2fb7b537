-- Parley's schema on PostgreSQL. Ids are text in the "C" collation so that
-- they sort in byte order, which is creation order (see domain.NewID).

-- +goose Up
CREATE TABLE users (
    id         text COLLATE "C" PRIMARY KEY,
    name       text        NOT NULL,
    is_admin   boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id         text COLLATE "C" PRIMARY KEY,
    user_id    text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text        NOT NULL,
    hash       bytea       NOT NULL,
    hint       text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    CONSTRAINT api_keys_hash_key UNIQUE (hash)
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id, id);

CREATE TABLE projects (
    id          text COLLATE "C" PRIMARY KEY,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE project_members (
    project_id text COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    text COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text        NOT NULL CHECK (role IN ('viewer', 'editor', 'owner')),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user_id_idx ON project_members (user_id, project_id);

CREATE TABLE ai_providers (
    id                 text COLLATE "C" PRIMARY KEY,
    project_id         text COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name               text        NOT NULL,
    type               text        NOT NULL,
    base_url           text        NOT NULL DEFAULT '',
    default_model      text        NOT NULL DEFAULT '',
    api_version        text        NOT NULL DEFAULT '',
    api_key_ciphertext bytea,
    api_key_key_id     text        NOT NULL DEFAULT '',
    api_key_hint       text        NOT NULL DEFAULT '',
    api_key_ref        text        NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX ai_providers_project_id_idx ON ai_providers (project_id, id);

CREATE TABLE documents (
    id         text COLLATE "C" PRIMARY KEY,
    project_id text COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name       text        NOT NULL,
    content    text        NOT NULL DEFAULT '',
    mime_type  text        NOT NULL DEFAULT '',
    metadata   text        NOT NULL DEFAULT 'null', -- JSON
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX documents_project_id_idx ON documents (project_id, id);

-- A provider used by a chat cannot be deleted. NO ACTION rather than
-- RESTRICT: it is checked at the end of the statement, so deleting a project,
-- which cascades to both its chats and its providers, does not trip over it.
CREATE TABLE chats (
    id             text COLLATE "C" PRIMARY KEY,
    project_id     text COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    ai_provider_id text COLLATE "C" NOT NULL,
    name           text        NOT NULL,
    system_message text        NOT NULL DEFAULT '',
    model          text        NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CONSTRAINT chats_ai_provider_id_fkey FOREIGN KEY (ai_provider_id)
        REFERENCES ai_providers (id) ON DELETE NO ACTION
);
CREATE INDEX chats_project_id_idx ON chats (project_id, id);
CREATE INDEX chats_ai_provider_id_idx ON chats (ai_provider_id);

CREATE TABLE conversations (
    id         text COLLATE "C" PRIMARY KEY,
    project_id text COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    chat_id    text COLLATE "C" NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX conversations_chat_id_idx ON conversations (chat_id, id);
CREATE INDEX conversations_project_id_idx ON conversations (project_id, id);

CREATE TABLE messages (
    id                text COLLATE "C" PRIMARY KEY,
    conversation_id   text COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq               integer     NOT NULL,
    role              text        NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content           text        NOT NULL DEFAULT '',
    document_id       text COLLATE "C" NOT NULL DEFAULT '', -- a reference only: the content is kept
    model             text        NOT NULL DEFAULT '',
    finish_reason     text        NOT NULL DEFAULT '',
    prompt_tokens     integer     NOT NULL DEFAULT 0,
    completion_tokens integer     NOT NULL DEFAULT 0,
    total_tokens      integer     NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    CONSTRAINT messages_conversation_id_seq_key UNIQUE (conversation_id, seq)
);

-- Usage outlives the chats, conversations and providers it names, so only
-- the project is a foreign key.
CREATE TABLE usage_records (
    id                text COLLATE "C" PRIMARY KEY,
    project_id        text COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    chat_id           text COLLATE "C" NOT NULL DEFAULT '',
    conversation_id   text COLLATE "C" NOT NULL DEFAULT '',
    ai_provider_id    text COLLATE "C" NOT NULL DEFAULT '',
    model             text COLLATE "C" NOT NULL DEFAULT '',
    user_id           text COLLATE "C" NOT NULL DEFAULT '',
    key_id            text COLLATE "C" NOT NULL DEFAULT '',
    prompt_tokens     bigint      NOT NULL DEFAULT 0,
    completion_tokens bigint      NOT NULL DEFAULT 0,
    total_tokens      bigint      NOT NULL DEFAULT 0,
    latency_ms        bigint      NOT NULL DEFAULT 0,
    ttft_ms           bigint      NOT NULL DEFAULT 0,
    outcome           text        NOT NULL DEFAULT '',
    stream            boolean     NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL
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
