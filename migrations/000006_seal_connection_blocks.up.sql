-- Migration 000005 kept each block's bounds and address entries row by row:
-- every insert rewrote its block's row and a page of the address index,
-- two of the handful of pages each commit writes, which made recording a
-- connection a third dearer. Now only the newest block is open, and it is
-- indexed once, when it is sealed:
--
-- - The open block's row is written when the block opens. Its bounds are a
--   superset of its rows, as every block's are: min_id and min_started are
--   its first row's, lowered (rarely) by a row that is lower still;
--   max_id is the last id the block can hold and max_started the largest
--   integer, so that no insert has to raise them.
-- - Its rows have no entries in connection_block_ips: an address lookup
--   scans the open block itself (at most 4096 rows, newest first) before it
--   walks the sealed blocks.
-- - The first row of a newer block seals it: its bounds become exact and
--   its rows' addresses are indexed in one sorted insert, then the new
--   block opens.
--
-- A row that lands in a sealed block (an id below the newest block, as an
-- import may write) is indexed at once, as under 000005. Existing blocks are
-- all sealed: 000005 indexed them.
ALTER TABLE connection_blocks ADD COLUMN sealed INTEGER NOT NULL DEFAULT 1;

DROP TRIGGER connections_blocks_insert;
DROP TRIGGER connections_blocks_update;

-- CROSS JOIN keeps the blocks the outer loop, so that sealing reads the open
-- block's rows alone; the planner would otherwise walk every connection.
CREATE TRIGGER connections_blocks_open AFTER INSERT ON connections
WHEN NOT EXISTS (SELECT 1 FROM connection_blocks WHERE block >= NEW.id >> 12)
BEGIN
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
    UPDATE connection_blocks SET sealed = 1 WHERE sealed = 0;
    INSERT INTO connection_blocks (block, min_id, max_id, min_started, max_started, sealed)
    VALUES (NEW.id >> 12, NEW.id, ((NEW.id >> 12) << 12) + 4095, NEW.started_at, 9223372036854775807, 0);
END;

-- Writes nothing unless the row is below the open block's bounds.
CREATE TRIGGER connections_blocks_widen AFTER INSERT ON connections
WHEN EXISTS (SELECT 1 FROM connection_blocks WHERE block = NEW.id >> 12 AND sealed = 0
    AND (min_id > NEW.id OR min_started > NEW.started_at))
BEGIN
    UPDATE connection_blocks SET min_id = min(min_id, NEW.id), min_started = min(min_started, NEW.started_at)
    WHERE block = NEW.id >> 12;
END;

CREATE TRIGGER connections_blocks_insert AFTER INSERT ON connections
WHEN NOT EXISTS (SELECT 1 FROM connection_blocks WHERE block = NEW.id >> 12 AND sealed = 0)
    AND EXISTS (SELECT 1 FROM connection_blocks WHERE block >= NEW.id >> 12)
BEGIN
    INSERT INTO connection_blocks (block, min_id, max_id, min_started, max_started, sealed)
    VALUES (NEW.id >> 12, NEW.id, NEW.id, NEW.started_at, NEW.started_at, 1)
    ON CONFLICT (block) DO UPDATE SET
        min_id      = min(min_id, excluded.min_id),
        max_id      = max(max_id, excluded.max_id),
        min_started = min(min_started, excluded.min_started),
        max_started = max(max_started, excluded.max_started);
    INSERT INTO connection_block_ips (block, remote_ip, id) VALUES (NEW.id >> 12, NEW.remote_ip, NEW.id);
END;

-- Nothing changes a row's id, start or address today; this keeps the blocks
-- true if something ever does.
CREATE TRIGGER connections_blocks_update AFTER UPDATE OF id, started_at, remote_ip ON connections BEGIN
    INSERT INTO connection_blocks (block, min_id, max_id, min_started, max_started, sealed)
    VALUES (NEW.id >> 12, NEW.id, NEW.id, NEW.started_at, NEW.started_at, 1)
    ON CONFLICT (block) DO UPDATE SET
        min_id      = min(min_id, excluded.min_id),
        max_id      = max(max_id, excluded.max_id),
        min_started = min(min_started, excluded.min_started),
        max_started = max(max_started, excluded.max_started);
    DELETE FROM connection_block_ips WHERE block = OLD.id >> 12 AND remote_ip = OLD.remote_ip AND id = OLD.id;
    INSERT INTO connection_block_ips (block, remote_ip, id)
    SELECT NEW.id >> 12, NEW.remote_ip, NEW.id
    WHERE EXISTS (SELECT 1 FROM connection_blocks WHERE block = NEW.id >> 12 AND sealed = 1);
END;
