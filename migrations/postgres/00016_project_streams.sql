-- A limit of open completion streams for the whole project, beside the one
-- for each API key: a member who makes more keys gets each key's limit,
-- and a project's streams had no bound of their own.

-- +goose Up
ALTER TABLE project_limits ADD COLUMN concurrent_streams INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE project_limits DROP COLUMN concurrent_streams;
