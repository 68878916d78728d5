-- Nearly every connection ends exited, and a row finished as exited moved
-- in connections_state_id from the running rows to the exited ones: one
-- more page written per commit, for an index no list of exited rows needs
-- (a walk down the ids finds them at once, as they are most rows). The
-- index now holds the other states only: running, the live connections,
-- and the rare failed, killed, refused and interrupted ones. A row begun
-- and then finished as exited enters and leaves the same few pages.
DROP INDEX connections_state_id;
CREATE INDEX connections_state_id ON connections (state, id) WHERE state <> 'exited';
