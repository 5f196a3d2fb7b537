-- Messages are found by conversation and seq only, never by id (as on
-- SQLite since 00004), so (conversation_id, seq) becomes the primary key
-- and id loses its index: each message a turn stores updates one index,
-- not two. Ids come from domain.NewID (a millisecond and 80 random bits),
-- so they do not collide. The key's index is built once, at the first
-- start of this version, holding the table's lock while it builds.

-- +goose Up
ALTER TABLE messages
    DROP CONSTRAINT messages_pkey,
    DROP CONSTRAINT messages_conversation_id_seq_key,
    ADD CONSTRAINT messages_pkey PRIMARY KEY (conversation_id, seq);

-- +goose Down
ALTER TABLE messages
    DROP CONSTRAINT messages_pkey,
    ADD CONSTRAINT messages_pkey PRIMARY KEY (id),
    ADD CONSTRAINT messages_conversation_id_seq_key UNIQUE (conversation_id, seq);
