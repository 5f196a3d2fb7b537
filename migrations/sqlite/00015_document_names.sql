-- A completion's names find their documents by name within the project
-- (store.DocumentIDsNamed). Without this index each lookup read every
-- document of the project, filtering by name: 11 ms at 10,000 documents
-- of 1 KB, 140 times a read by id (docs/benchmarks.md). With id in it, the
-- lookup reads the index alone. It costs each document written one B-tree
-- more; documents are written far less often than they are read. Building
-- it holds the write lock for as long as reading the documents takes.

-- +goose Up
CREATE INDEX documents_project_name_idx ON documents (project_id, name, id);

-- +goose Down
DROP INDEX documents_project_name_idx;
