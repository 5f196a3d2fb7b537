-- Rate limits a project's owner sets; a missing row means no limits.

-- +goose Up
CREATE TABLE project_limits (
    project_id                 TEXT     NOT NULL PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    requests_per_minute        INTEGER  NOT NULL DEFAULT 0,
    tokens_per_minute          INTEGER  NOT NULL DEFAULT 0,
    key_requests_per_minute    INTEGER  NOT NULL DEFAULT 0,
    key_tokens_per_minute      INTEGER  NOT NULL DEFAULT 0,
    concurrent_streams_per_key INTEGER  NOT NULL DEFAULT 0,
    updated_at                 DATETIME NOT NULL
);

-- +goose Down
DROP TABLE project_limits;
