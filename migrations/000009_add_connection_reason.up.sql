-- Why a refused connection was refused, as a code (max_connections,
-- per_source, rate, denied, ...); the error column keeps the words for
-- humans.
ALTER TABLE connections ADD COLUMN reason TEXT NOT NULL DEFAULT '';
