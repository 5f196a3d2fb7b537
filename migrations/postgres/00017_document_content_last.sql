-- SQLite's 00017 moves a document's content to the last column, so that
-- a list reads none of it. PostgreSQL keeps large values out of line
-- (TOAST) and reads them only when asked, so here there is nothing to do;
-- the version is kept so that it means the same schema on both.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
