-- A completion's names find their documents by name within the project
-- (store.DocumentIDsNamed). Without this index each lookup read every
-- document of the project, filtering by name: 4.1 ms at 10,000 documents
-- of 1 KB, 18 times a read by id (docs/benchmarks.md). With id in it, the
-- lookup reads the index alone. It costs each document written one B-tree
-- more; documents are written far less often than they are read.
--
-- Built CONCURRENTLY, as 00008's and 00012's, so that documents go on
-- being written while it is; a build that failed leaves an invalid index,
-- which the DROP before it clears.

-- +goose NO TRANSACTION

-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS documents_project_name_idx;
CREATE INDEX CONCURRENTLY documents_project_name_idx ON documents (project_id, name, id);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS documents_project_name_idx;
