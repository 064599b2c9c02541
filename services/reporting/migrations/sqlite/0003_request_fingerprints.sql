-- The one idempotency rule (platform::idempotency): the request's fingerprint is kept beside its key,
-- so the same key sent with a different request is refused instead of answered with the first
-- result. Keys stored before this have none and replay as before.
ALTER TABLE idempotency ADD COLUMN request_hash TEXT NOT NULL DEFAULT '';
