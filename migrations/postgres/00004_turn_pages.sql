-- SQLite rebuilt conversations and messages to write fewer pages per turn
-- (see migrations/sqlite/00004_turn_pages.sql). PostgreSQL's tables stay as
-- they are; this version keeps both dialects' schema versions in step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
