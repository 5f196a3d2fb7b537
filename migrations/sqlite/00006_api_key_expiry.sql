-- An API key may expire: expires_at is when it stops working, NULL for a
-- key that does not (every key made before this version). Adding a column
-- that may be NULL rewrites no row.
--
-- Rolling back drops the column, and the version before it knows no
-- expiry: a key made to expire would then work for ever. So going down
-- revokes each key with an expiry, at that expiry when it has passed and
-- at once when it has not; a key revoked before keeps its time. Going up
-- again, no key has an expiry.

-- +goose Up
ALTER TABLE api_keys ADD COLUMN expires_at DATETIME;

-- +goose Down
-- The times are text in the store's format ('2026-01-02 03:04:05.678+00:00',
-- see TestSQLiteTimeFormat), which compares as it sorts.
UPDATE api_keys
SET revoked_at = min(expires_at, strftime('%Y-%m-%d %H:%M:%f+00:00', 'now'))
WHERE expires_at IS NOT NULL AND revoked_at IS NULL;
ALTER TABLE api_keys DROP COLUMN expires_at;
