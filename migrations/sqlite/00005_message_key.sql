-- PostgreSQL's messages take (conversation_id, seq) as their primary key,
-- as SQLite's did in 00004. This version keeps both dialects' schema
-- versions in step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
