-- Usage that Parley estimated, in whole or in part, because the provider
-- gave no count is marked so, on the usage record and on the assistant
-- message that carries it. Every row made before this version reads as
-- the provider's count, which most were. Rolling back drops the marks:
-- the counts stay, and read as the provider's. A constant default rewrites no
-- row.

-- +goose Up
ALTER TABLE usage_records ADD COLUMN estimated boolean NOT NULL DEFAULT false;
ALTER TABLE messages ADD COLUMN usage_estimated boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE messages DROP COLUMN usage_estimated;
ALTER TABLE usage_records DROP COLUMN estimated;
