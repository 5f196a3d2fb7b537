-- PostgreSQL's 00012 gives conversations back their (project_id, id)
-- index, for the lists of a member's conversations. SQLite reads those
-- through the chats' (chat_id, id) index instead (store.ListConversations):
-- every conversation after the cursor in the member's projects' chats,
-- then sorted, which costs what the member's own conversations do, not
-- other tenants'. The index would cost every new conversation one B-tree
-- more, 2.8-4.6% of the instructions of a completion (docs/benchmarks.md).
-- This version keeps the two dialects' migrations in step.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
