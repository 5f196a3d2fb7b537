-- As SQLite's 00011: a project's conversations go with its chats (chat_id's
-- ON DELETE CASCADE), so conversations needs neither its foreign key to
-- projects nor the index that key needed, which every new conversation
-- wrote. No read finds conversations by project alone (until a member's
-- lists: 00012 puts the index back). (SQLite's 00011
-- also clusters usage_records on (project_id, created_at, id); PostgreSQL
-- keeps its table and two indexes, as a heap has no clustered key.)

-- +goose Up
ALTER TABLE conversations DROP CONSTRAINT conversations_project_id_fkey;
DROP INDEX conversations_project_id_idx;

-- +goose Down
CREATE INDEX conversations_project_id_idx ON conversations (project_id, id);
ALTER TABLE conversations ADD CONSTRAINT conversations_project_id_fkey
    FOREIGN KEY (project_id) REFERENCES projects (id) ON DELETE CASCADE;
