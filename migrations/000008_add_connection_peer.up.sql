-- A connection to a unix socket has no address: its peer is recorded by
-- its credentials (SO_PEERCRED), the pid, uid and gid of the process that
-- connected. NULL for IP connections.
ALTER TABLE connections ADD COLUMN peer_pid INTEGER;
ALTER TABLE connections ADD COLUMN peer_uid INTEGER;
ALTER TABLE connections ADD COLUMN peer_gid INTEGER;
