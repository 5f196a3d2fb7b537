-- A reply in which the model declined to answer (OpenAI's refusal, with
-- structured outputs) keeps the refusal's text, which is shown with the
-- message, sent upstream with the conversation's history and replayed to
-- an idempotency key. NULL for every other message. Rolling back drops
-- the texts: those replies read as empty again, as they did before. A
-- column without a default rewrites no row.

-- +goose Up
ALTER TABLE messages ADD COLUMN refusal text;

-- +goose Down
ALTER TABLE messages DROP COLUMN refusal;
