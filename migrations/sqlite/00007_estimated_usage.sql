-- Usage that Parley estimated, in whole or in part, because the provider
-- gave no count is marked so, on the usage record and on the assistant
-- message that carries it. Every row made before this version reads as
-- the provider's count, which most were. Rolling back drops the marks:
-- the counts stay, and read as the provider's.

-- +goose Up
ALTER TABLE usage_records ADD COLUMN estimated BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN usage_estimated BOOLEAN NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE messages DROP COLUMN usage_estimated;
ALTER TABLE usage_records DROP COLUMN estimated;
