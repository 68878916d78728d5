package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// The begun file keeps a handler from ever running unrecorded, while the
// history writer commits connections in groups (see BeginConnectionAsync).
// It holds the connections begun and not yet committed.
//
// Before a connection's handler may start, its row must be safe from a
// crash of socketd. A commit gives no more than that: with
// synchronous=NORMAL it is a write into the page cache, which survives the
// process but not the machine. A store into a shared file mapping survives
// exactly as much, costs no system call, and needs no one to wait for the
// writer. So each begun connection is first written to a slot of this file,
// which is mapped into memory, and then queued for the writer, which empties
// the slot once the row is committed. When socketd opens the database again,
// every connection left in the file is added to the history, as interrupted.
//
// A slot is reused begunSlots connections later. By then the row it held is
// committed: ids are handed out in the order requests are queued, and at
// most queueLen requests wait in the queue and maxBatch in the writer. A
// row whose commit failed keeps its slot until a retry commits it, and
// while one waits to be retried the store takes no new row (see
// writer.failure); put checks it all the same.
const (
	begunSlots    = 8192
	begunSlotSize = 256
	begunFileSize = begunSlots * begunSlotSize
)

// Is a slot reused only once its row is committed?
var _ = [1]struct{}{}[begunSlots/(queueLen+maxBatch+1)-1]

// A slot holds, little-endian: a CRC-32C of the rest of the slot, the id,
// the start time in Unix nanoseconds, the remote and local ports, flags,
// and the socket name, remote and local addresses, each a length byte and
// bytes (longer strings are cut; a name or address never is), and at the
// slot's end, flags saying which are set, a unix socket peer's pid, uid and
// gid and the handler's dynamic uid (a slot written before they were has
// zeros there: none). A slot whose
// CRC does not match, torn by a crash or never written, is empty; a
// committed row's slot is emptied by zeroing its CRC. A void slot holds an
// id that was handed out for a row that will never be written: it is not
// recovered, but no later id may be lower.
const (
	slotCRC     = 0
	slotID      = 4
	slotStarted = 12
	slotRPort   = 20
	slotLPort   = 22
	slotFlags   = 24
	slotStrings = 25
	slotIDFlags = begunSlotSize - 17 // the strings end here
	slotPeerPID = begunSlotSize - 16
	slotPeerUID = begunSlotSize - 12
	slotPeerGID = begunSlotSize - 8
	slotUID     = begunSlotSize - 4

	flagVoid = 1

	idPeer = 1 // at slotIDFlags: the peer's credentials are set
	idUID  = 2 // the dynamic uid is set
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// begunFile is the mapped begun file. It is locked for as long as it is
// open, so that two daemons never share a database: they would hand out
// the same ids.
type begunFile struct {
	f *os.File
	m []byte
}

// openBegun opens and locks the begun file at path, creating it if needed,
// and returns the connections it holds, without the void ones, and the
// highest id it holds, void or not. It does not map the file: call reset
// once those connections are in the history.
func openBegun(path string) (*begunFile, []socketd.Connection, int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, 0, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil, 0, fmt.Errorf("%s is locked: another socketd uses this database", path)
		}
		return nil, nil, 0, fmt.Errorf("lock %s: %w", path, err)
	}
	buf := make([]byte, begunFileSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		f.Close()
		return nil, nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	cs, highest := begunRows(buf[:n])
	return &begunFile{f: f}, cs, highest, nil
}

// begunRows decodes the slots of a begun file's content.
func begunRows(buf []byte) (cs []socketd.Connection, highest int64) {
	for off := 0; off+begunSlotSize <= len(buf); off += begunSlotSize {
		c, void, ok := decodeSlot(buf[off : off+begunSlotSize])
		if !ok {
			continue
		}
		highest = max(highest, c.ID)
		if !void {
			cs = append(cs, c)
		}
	}
	return cs, highest
}

// reset empties the file and maps it. Its blocks are allocated first: a
// store into a hole of a mapped file that the disk has no room for kills
// the process (SIGBUS), while this fails cleanly.
func (b *begunFile) reset() error {
	if err := b.f.Truncate(0); err != nil {
		return err
	}
	err := unix.Fallocate(int(b.f.Fd()), 0, 0, begunFileSize)
	if errors.Is(err, unix.EOPNOTSUPP) {
		_, err = b.f.WriteAt(make([]byte, begunFileSize), 0)
		if err == nil {
			err = b.f.Sync()
		}
	}
	if err != nil {
		return fmt.Errorf("allocate %s: %w", b.f.Name(), err)
	}
	m, err := unix.Mmap(int(b.f.Fd()), 0, begunFileSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map %s: %w", b.f.Name(), err)
	}
	b.m = m
	return nil
}

// close unmaps, unlocks and closes the file. Close has committed every row
// first, so it is left empty unless a commit failed.
func (b *begunFile) close() {
	if b.m != nil {
		_ = unix.Munmap(b.m)
		b.m = nil
	}
	b.f.Close()
}

// errBegunFull is put's error when the row a slot holds is not committed.
var errBegunFull = errors.New("the begun file is full: the history writer is behind")

// put writes c, whose ID is set, to its slot. The CRC is written last, so
// that a crash in between leaves the slot empty rather than wrong.
func (b *begunFile) put(c *socketd.Connection) error {
	s := b.slot(c.ID)
	if binary.LittleEndian.Uint32(s[slotCRC:]) != 0 && s[slotFlags]&flagVoid == 0 {
		return errBegunFull
	}
	clear(s)
	binary.LittleEndian.PutUint64(s[slotID:], uint64(c.ID))
	binary.LittleEndian.PutUint64(s[slotStarted:], uint64(toNanos(c.StartedAt)))
	binary.LittleEndian.PutUint16(s[slotRPort:], uint16(c.RemotePort))
	binary.LittleEndian.PutUint16(s[slotLPort:], uint16(c.LocalPort))
	if c.PeerPID != nil && c.PeerUID != nil && c.PeerGID != nil {
		s[slotIDFlags] |= idPeer
		binary.LittleEndian.PutUint32(s[slotPeerPID:], uint32(*c.PeerPID))
		binary.LittleEndian.PutUint32(s[slotPeerUID:], uint32(*c.PeerUID))
		binary.LittleEndian.PutUint32(s[slotPeerGID:], uint32(*c.PeerGID))
	}
	if c.UID != nil {
		s[slotIDFlags] |= idUID
		binary.LittleEndian.PutUint32(s[slotUID:], uint32(*c.UID))
	}
	rest := s[slotStrings:slotIDFlags]
	for _, str := range []string{c.Socket, c.RemoteIP, c.LocalIP} {
		if len(rest) == 0 {
			break
		}
		n := min(len(str), 255, len(rest)-1)
		rest[0] = byte(n)
		copy(rest[1:], str[:n])
		rest = rest[1+n:]
	}
	binary.LittleEndian.PutUint32(s[slotCRC:], crc32.Checksum(s[slotID:], castagnoli))
	return nil
}

// drop empties the slot of id, whose row is committed, if it still holds
// id.
func (b *begunFile) drop(id int64) {
	if s := b.slot(id); int64(binary.LittleEndian.Uint64(s[slotID:])) == id {
		binary.LittleEndian.PutUint32(s[slotCRC:], 0)
	}
}

// void marks the slot of id void, if it still holds id: its row will never
// be written.
func (b *begunFile) void(id int64) {
	if s := b.slot(id); int64(binary.LittleEndian.Uint64(s[slotID:])) == id {
		s[slotFlags] |= flagVoid
		binary.LittleEndian.PutUint32(s[slotCRC:], crc32.Checksum(s[slotID:], castagnoli))
	}
}

func (b *begunFile) slot(id int64) []byte {
	off := int(uint64(id)%begunSlots) * begunSlotSize
	return b.m[off : off+begunSlotSize : off+begunSlotSize]
}

// decodeSlot returns the connection s holds, if it holds one, and whether
// it is void.
func decodeSlot(s []byte) (c socketd.Connection, void, ok bool) {
	if crc32.Checksum(s[slotID:], castagnoli) != binary.LittleEndian.Uint32(s[slotCRC:]) {
		return socketd.Connection{}, false, false
	}
	c = socketd.Connection{
		ID:         int64(binary.LittleEndian.Uint64(s[slotID:])),
		StartedAt:  fromNanos(int64(binary.LittleEndian.Uint64(s[slotStarted:]))),
		RemotePort: int(binary.LittleEndian.Uint16(s[slotRPort:])),
		LocalPort:  int(binary.LittleEndian.Uint16(s[slotLPort:])),
	}
	if c.ID <= 0 {
		return socketd.Connection{}, false, false
	}
	id := func(off int) *int {
		v := int(binary.LittleEndian.Uint32(s[off:]))
		return &v
	}
	if s[slotIDFlags]&idPeer != 0 {
		c.PeerPID, c.PeerUID, c.PeerGID = id(slotPeerPID), id(slotPeerUID), id(slotPeerGID)
	}
	if s[slotIDFlags]&idUID != 0 {
		c.UID = id(slotUID)
	}
	rest := s[slotStrings:slotIDFlags]
	for _, str := range []*string{&c.Socket, &c.RemoteIP, &c.LocalIP} {
		if len(rest) == 0 {
			break
		}
		n := int(rest[0])
		if 1+n > len(rest) {
			return socketd.Connection{}, false, false
		}
		*str = string(rest[1 : 1+n])
		rest = rest[1+n:]
	}
	return c, s[slotFlags]&flagVoid != 0, true
}

// recoverBegun adds to the history each connection of cs that it lacks, as
// interrupted and ended now: socketd stopped before it committed them. It
// raises the sequence of connection ids to highest, so that no id handed
// out before is handed out again. It returns how many rows it added.
func recoverBegun(ctx context.Context, w *sql.DB, cs []socketd.Connection, highest int64) (int64, error) {
	if highest == 0 {
		return 0, nil
	}
	slices.SortFunc(cs, func(a, b socketd.Connection) int { return cmp.Compare(a.ID, b.ID) })
	now := toNanos(time.Now())
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var added int64
	for _, c := range cs {
		started := toNanos(c.StartedAt)
		res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO connections (id, socket, state,
			remote_ip, remote_port, local_ip, local_port, started_at, ended_at, duration_ms, error,
			peer_pid, peer_uid, peer_gid, uid)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.Socket, string(socketd.ConnInterrupted), c.RemoteIP, c.RemotePort, c.LocalIP, c.LocalPort,
			started, now, max(0, (now-started)/int64(time.Millisecond)), recoveredError,
			nullIntPtr(c.PeerPID), nullIntPtr(c.PeerUID), nullIntPtr(c.PeerGID), nullIntPtr(c.UID))
		if err != nil {
			return 0, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		added += n
	}
	// The table has AUTOINCREMENT, so SQLite keeps its sequence in
	// sqlite_sequence, which ordinary statements may change.
	if _, err := tx.ExecContext(ctx, `INSERT INTO sqlite_sequence (name, seq)
		SELECT 'connections', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'connections')`); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'connections'`, highest); err != nil {
		return 0, err
	}
	return added, tx.Commit()
}

// recoveredError is the error of a row recoverBegun adds.
const recoveredError = "socketd stopped before it recorded this connection; recovered from the begun file"
