-- A member's conversations, listed without naming a chat, are read a page
-- per project (store.memberPage): through this index, a page costs what the
-- page's rows do. Without it (00011 took it out) SQLite scanned every
-- tenant's conversations. It costs each new conversation one B-tree more.

-- +goose Up
CREATE INDEX conversations_project_id_idx ON conversations (project_id, id);

-- +goose Down
DROP INDEX conversations_project_id_idx;
