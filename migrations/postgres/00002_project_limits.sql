-- Rate limits a project's owner sets; a missing row means no limits.

-- +goose Up
CREATE TABLE project_limits (
    project_id                 text COLLATE "C" NOT NULL PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    requests_per_minute        integer     NOT NULL DEFAULT 0 CHECK (requests_per_minute >= 0),
    tokens_per_minute          integer     NOT NULL DEFAULT 0 CHECK (tokens_per_minute >= 0),
    key_requests_per_minute    integer     NOT NULL DEFAULT 0 CHECK (key_requests_per_minute >= 0),
    key_tokens_per_minute      integer     NOT NULL DEFAULT 0 CHECK (key_tokens_per_minute >= 0),
    concurrent_streams_per_key integer     NOT NULL DEFAULT 0 CHECK (concurrent_streams_per_key >= 0),
    updated_at                 timestamptz NOT NULL
);

-- +goose Down
DROP TABLE project_limits;
