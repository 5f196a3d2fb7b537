-- A document's content is the last column, so that a list of documents
-- reads none of it. SQLite keeps a row's columns in order, and a content
-- of megabytes spills onto a chain of overflow pages: reading a column
-- stored after it (mime_type, metadata, the times) walked the whole chain,
-- so a page of 100 documents of 4 MiB read 400 MiB (0.5 s, holding one of
-- the pool's connections). The size a list shows, octet_length(content),
-- comes from the row's header either way. PostgreSQL keeps large values
-- out of line (TOAST), so its migration changes nothing.
--
-- The rebuild copies every document once, at the first start of this
-- version, by SQLite's procedure for changes ALTER TABLE cannot make (see
-- 00011): foreign keys off, outside a transaction (hence NO TRANSACTION),
-- then create, copy, drop and rename in one transaction. No table refers
-- to documents. Until it commits the database needs the documents' disk
-- space twice.

-- +goose NO TRANSACTION
-- +goose Up
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE documents_new (
    id         TEXT     NOT NULL PRIMARY KEY,
    project_id TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name       TEXT     NOT NULL,
    mime_type  TEXT     NOT NULL DEFAULT '',
    metadata   TEXT     NOT NULL DEFAULT 'null', -- JSON
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    content    TEXT     NOT NULL DEFAULT '' -- last: see above
);
INSERT INTO documents_new (id, project_id, name, mime_type, metadata, created_at, updated_at, content)
SELECT id, project_id, name, mime_type, metadata, created_at, updated_at, content FROM documents;
DROP TABLE documents;
ALTER TABLE documents_new RENAME TO documents;
CREATE INDEX documents_project_id_idx ON documents (project_id, id);
CREATE INDEX documents_project_name_idx ON documents (project_id, name, id);

COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE documents_old (
    id         TEXT     NOT NULL PRIMARY KEY,
    project_id TEXT     NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name       TEXT     NOT NULL,
    content    TEXT     NOT NULL DEFAULT '',
    mime_type  TEXT     NOT NULL DEFAULT '',
    metadata   TEXT     NOT NULL DEFAULT 'null', -- JSON
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL
);
INSERT INTO documents_old (id, project_id, name, content, mime_type, metadata, created_at, updated_at)
SELECT id, project_id, name, content, mime_type, metadata, created_at, updated_at FROM documents;
DROP TABLE documents;
ALTER TABLE documents_old RENAME TO documents;
CREATE INDEX documents_project_id_idx ON documents (project_id, id);
CREATE INDEX documents_project_name_idx ON documents (project_id, name, id);

COMMIT;
PRAGMA foreign_keys = ON;
