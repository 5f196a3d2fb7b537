-- PostgreSQL's 00012 gives conversations back their (project_id, id)
-- index, for the lists of a member's conversations. SQLite reads those
-- through the chats' (chat_id, id) index instead, a page of each chat
-- (store.ListConversations): the index would cost every new conversation
-- one B-tree more, 3-4% of the instructions of a completion
-- (docs/benchmarks.md), for a list that scales without it here. This
-- version keeps the two dialects' migrations in step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
