DROP TRIGGER connections_blocks_update;
DROP TRIGGER connections_blocks_insert;
DROP TRIGGER connections_blocks_widen;
DROP TRIGGER connections_blocks_open;

-- 000005 keeps every block exact and indexed: seal the open one.
INSERT INTO connection_block_ips (block, remote_ip, id)
SELECT c.id >> 12, c.remote_ip, c.id
FROM connection_blocks b CROSS JOIN connections c ON c.id BETWEEN b.block << 12 AND (b.block << 12) + 4095
WHERE b.sealed = 0
ORDER BY 1, 2, 3;
UPDATE connection_blocks SET (min_id, max_id, min_started, max_started) = (
    SELECT min(id), max(id), min(started_at), max(started_at) FROM connections
    WHERE id BETWEEN connection_blocks.block << 12 AND (connection_blocks.block << 12) + 4095)
WHERE sealed = 0 AND EXISTS (SELECT 1 FROM connections
    WHERE id BETWEEN connection_blocks.block << 12 AND (connection_blocks.block << 12) + 4095);
ALTER TABLE connection_blocks DROP COLUMN sealed;

CREATE TRIGGER connections_blocks_insert AFTER INSERT ON connections BEGIN
    INSERT INTO connection_blocks (block, min_id, max_id, min_started, max_started)
    VALUES (NEW.id >> 12, NEW.id, NEW.id, NEW.started_at, NEW.started_at)
    ON CONFLICT (block) DO UPDATE SET
        min_id      = min(min_id, excluded.min_id),
        max_id      = max(max_id, excluded.max_id),
        min_started = min(min_started, excluded.min_started),
        max_started = max(max_started, excluded.max_started);
    INSERT INTO connection_block_ips (block, remote_ip, id) VALUES (NEW.id >> 12, NEW.remote_ip, NEW.id);
END;

CREATE TRIGGER connections_blocks_update AFTER UPDATE OF id, started_at, remote_ip ON connections BEGIN
    INSERT INTO connection_blocks (block, min_id, max_id, min_started, max_started)
    VALUES (NEW.id >> 12, NEW.id, NEW.id, NEW.started_at, NEW.started_at)
    ON CONFLICT (block) DO UPDATE SET
        min_id      = min(min_id, excluded.min_id),
        max_id      = max(max_id, excluded.max_id),
        min_started = min(min_started, excluded.min_started),
        max_started = max(max_started, excluded.max_started);
    DELETE FROM connection_block_ips WHERE block = OLD.id >> 12 AND remote_ip = OLD.remote_ip AND id = OLD.id;
    INSERT INTO connection_block_ips (block, remote_ip, id) VALUES (NEW.id >> 12, NEW.remote_ip, NEW.id);
END;
