-- The history grows by one row per connection, in id order, and is read
-- newest first by id. Two lookups fit that badly:
--
-- A time range. started_at is only nearly monotonic with id (rows are
-- committed in queue order, after their start; a wall clock can step back; a
-- caller may record any start), so an index on started_at cannot say where
-- in id order a range lies, and a narrow range far in the past walks every
-- newer row.
--
-- A remote address. An index on (remote_ip, id) takes each new row at a
-- random place: with millions of rows every insert dirties its own page of
-- it, which the single history writer then writes to the WAL and again at
-- the checkpoint; with 10 million rows that held the writer to some 10,000
-- connections a second.
--
-- Both are answered per block of 4096 consecutive ids. connection_blocks
-- summarises each block by the ids and start times it holds, so a time range
-- maps to the ids between the first and the last block that overlaps it: a
-- superset of the matching rows, tight while starts follow ids, which the
-- list query then filters exactly. connection_block_ips indexes addresses
-- within each block, so the rows of a batch land in the few pages of the
-- newest block, and a lookup walks the blocks newest first with one seek in
-- each. 4096 keeps both cheap: the newest block of the address index is a
-- few dozen pages, and 10 million connections make 2,500 blocks to scan or
-- walk (a few milliseconds for an address seen less than a page's worth).
--
-- Triggers keep both tables, whatever writes the connections. A block's
-- bounds only ever widen, so they stay a superset through any change.
CREATE TABLE connection_blocks (
    block       INTEGER NOT NULL PRIMARY KEY,
    min_id      INTEGER NOT NULL,
    max_id      INTEGER NOT NULL,
    min_started INTEGER NOT NULL,
    max_started INTEGER NOT NULL
) STRICT;

CREATE TABLE connection_block_ips (
    block     INTEGER NOT NULL,
    remote_ip TEXT    NOT NULL,
    id        INTEGER NOT NULL,
    PRIMARY KEY (block, remote_ip, id)
) STRICT, WITHOUT ROWID;

INSERT INTO connection_blocks (block, min_id, max_id, min_started, max_started)
SELECT id >> 12, min(id), max(id), min(started_at), max(started_at)
FROM connections GROUP BY id >> 12;

INSERT INTO connection_block_ips (block, remote_ip, id)
SELECT id >> 12, remote_ip, id FROM connections;

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

-- Nothing changes a row's id, start or address today; this keeps the blocks
-- true if something ever does.
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

-- A deleted row leaves its block's bounds as they were: still a superset.
CREATE TRIGGER connections_blocks_delete AFTER DELETE ON connections BEGIN
    DELETE FROM connection_block_ips WHERE block = OLD.id >> 12 AND remote_ip = OLD.remote_ip AND id = OLD.id;
END;

-- The blocks replace these indexes: no query uses them any more, and every
-- insert paid for them.
DROP INDEX connections_started_at;
DROP INDEX connections_remote_ip_id;
