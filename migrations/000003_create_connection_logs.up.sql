-- The captured standard error of a connection's handler, kept apart from
-- connections so that listing the history never reads it.
CREATE TABLE connection_logs (
    connection_id INTEGER NOT NULL PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    log           BLOB    NOT NULL
) STRICT;
