DROP TRIGGER connections_blocks_delete;
DROP TRIGGER connections_blocks_update;
DROP TRIGGER connections_blocks_insert;
DROP TABLE connection_block_ips;
DROP TABLE connection_blocks;
CREATE INDEX connections_remote_ip_id ON connections (remote_ip, id);
CREATE INDEX connections_started_at   ON connections (started_at);
