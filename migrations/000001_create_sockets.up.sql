-- Socket definitions, keyed by name. definition is the socket as JSON; its
-- timestamps live in their own columns and its live status is never stored.
-- Times are UTC Unix nanoseconds, so they sort and round-trip exactly.
CREATE TABLE sockets (
    name       TEXT    NOT NULL PRIMARY KEY,
    definition TEXT    NOT NULL CHECK (json_valid(definition)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
