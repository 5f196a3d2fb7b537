-- SQLite's 00010 rewrites its check on a message's role as comparisons, to
-- stop it building a temporary B-tree for every message it stores.
-- PostgreSQL tests the IN list in place, so its schema stays as it is; this
-- migration keeps the two dialects' versions in step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
