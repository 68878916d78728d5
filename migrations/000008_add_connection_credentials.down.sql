ALTER TABLE connections DROP COLUMN uid;
ALTER TABLE connections DROP COLUMN peer_gid;
ALTER TABLE connections DROP COLUMN peer_uid;
ALTER TABLE connections DROP COLUMN peer_pid;
