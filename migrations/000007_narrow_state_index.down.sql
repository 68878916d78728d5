DROP INDEX connections_state_id;
CREATE INDEX connections_state_id ON connections (state, id);
