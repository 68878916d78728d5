-- The connection history: one row per accepted connection. Rows outlive
-- their socket, so socket is a plain name, not a foreign key. AUTOINCREMENT
-- keeps an id from ever being reused, since ids are shown to users and
-- handed to handlers (SOCKETD_CONNECTION_ID). Times are UTC Unix
-- nanoseconds. state is checked by the store rather than by a CHECK
-- constraint, which SQLite could only change by rebuilding the table.
CREATE TABLE connections (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    socket      TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    remote_ip   TEXT    NOT NULL DEFAULT '',
    remote_port INTEGER NOT NULL DEFAULT 0,
    local_ip    TEXT    NOT NULL DEFAULT '',
    local_port  INTEGER NOT NULL DEFAULT 0,
    pid         INTEGER,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    duration_ms INTEGER,
    exit_code   INTEGER,
    signal      TEXT    NOT NULL DEFAULT '',
    bytes_in    INTEGER NOT NULL DEFAULT 0,
    bytes_out   INTEGER NOT NULL DEFAULT 0,
    error       TEXT    NOT NULL DEFAULT ''
) STRICT;

-- Lists are newest first (id DESC) with keyset pagination (id < cursor), so
-- each filter gets an index ending in id: a page is a range scan that stops
-- after limit rows, with no sort.
CREATE INDEX connections_socket_id    ON connections (socket, id);
CREATE INDEX connections_remote_ip_id ON connections (remote_ip, id);
CREATE INDEX connections_state_id     ON connections (state, id);
CREATE INDEX connections_started_at   ON connections (started_at);
