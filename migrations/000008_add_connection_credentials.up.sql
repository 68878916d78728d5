-- A connection to a unix socket has no address: its peer is recorded by
-- its credentials (SO_PEERCRED), the pid, uid and gid of the process that
-- connected; NULL for IP connections. uid is the dynamic user a handler
-- ran as (dynamic_user), NULL otherwise.
ALTER TABLE connections ADD COLUMN peer_pid INTEGER;
ALTER TABLE connections ADD COLUMN peer_uid INTEGER;
ALTER TABLE connections ADD COLUMN peer_gid INTEGER;
ALTER TABLE connections ADD COLUMN uid INTEGER;
