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

-- A CONCURRENTLY build blocks no query, but waits for every transaction
-- older than it, in any table: lock_timeout 0 lets it wait (Parley's
-- migrations otherwise give up a lock wait after 2 s, store.retryLocked,
-- and would build the index again and again behind a long pg_dump).

-- +goose NO TRANSACTION

-- +goose Up
SET lock_timeout = 0;
DROP INDEX CONCURRENTLY IF EXISTS documents_project_name_idx;
CREATE INDEX CONCURRENTLY documents_project_name_idx ON documents (project_id, name, id);
RESET lock_timeout;

-- +goose Down
SET lock_timeout = 0;
DROP INDEX CONCURRENTLY IF EXISTS documents_project_name_idx;
RESET lock_timeout;
