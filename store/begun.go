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
// most queueLen requests wait in the queue and maxBatch in the writer.
const (
	begunSlots    = 8192
	begunSlotSize = 256
	begunFileSize = begunSlots * begunSlotSize
)

// Is a slot reused only once its row is committed?
var _ = [1]struct{}{}[begunSlots/(queueLen+maxBatch+1)-1]

// A slot holds, little-endian: a CRC-32C of the rest of the slot, the id,
// the start time in Unix nanoseconds, the remote and local ports, and the
// socket name, remote and local addresses, each a length byte and bytes
// (longer strings are cut; a name or address never is). A slot whose CRC
// does not match, torn by a crash or never written, is empty.
const (
	slotCRC     = 0
	slotID      = 4
	slotStarted = 12
	slotRPort   = 20
	slotLPort   = 22
	slotStrings = 24
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
// and returns the connections it holds. It does not map the file: call
// reset once those connections are in the history.
func openBegun(path string) (*begunFile, []socketd.Connection, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("%s is locked: another socketd uses this database", path)
		}
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	buf := make([]byte, begunFileSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		f.Close()
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	var cs []socketd.Connection
	for off := 0; off+begunSlotSize <= n; off += begunSlotSize {
		if c, ok := decodeSlot(buf[off : off+begunSlotSize]); ok {
			cs = append(cs, c)
		}
	}
	return &begunFile{f: f}, cs, nil
}

// reset empties the file and maps it.
func (b *begunFile) reset() error {
	if err := b.f.Truncate(0); err != nil {
		return err
	}
	if err := b.f.Truncate(begunFileSize); err != nil {
		return err
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

// put writes c, whose ID is set, to its slot. The CRC is written last, so
// that a crash in between leaves the slot empty rather than wrong.
func (b *begunFile) put(c *socketd.Connection) {
	s := b.slot(c.ID)
	clear(s)
	binary.LittleEndian.PutUint64(s[slotID:], uint64(c.ID))
	binary.LittleEndian.PutUint64(s[slotStarted:], uint64(toNanos(c.StartedAt)))
	binary.LittleEndian.PutUint16(s[slotRPort:], uint16(c.RemotePort))
	binary.LittleEndian.PutUint16(s[slotLPort:], uint16(c.LocalPort))
	rest := s[slotStrings:]
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
}

// drop empties the slot of id, if it still holds id: its row is committed,
// or is not to be written after all.
func (b *begunFile) drop(id int64) {
	s := b.slot(id)
	if int64(binary.LittleEndian.Uint64(s[slotID:])) == id {
		binary.LittleEndian.PutUint32(s[slotCRC:], 0)
	}
}

func (b *begunFile) slot(id int64) []byte {
	off := int(uint64(id)%begunSlots) * begunSlotSize
	return b.m[off : off+begunSlotSize : off+begunSlotSize]
}

// decodeSlot returns the connection s holds, if it holds one.
func decodeSlot(s []byte) (socketd.Connection, bool) {
	if crc32.Checksum(s[slotID:], castagnoli) != binary.LittleEndian.Uint32(s[slotCRC:]) {
		return socketd.Connection{}, false
	}
	c := socketd.Connection{
		ID:         int64(binary.LittleEndian.Uint64(s[slotID:])),
		StartedAt:  fromNanos(int64(binary.LittleEndian.Uint64(s[slotStarted:]))),
		RemotePort: int(binary.LittleEndian.Uint16(s[slotRPort:])),
		LocalPort:  int(binary.LittleEndian.Uint16(s[slotLPort:])),
	}
	if c.ID <= 0 {
		return socketd.Connection{}, false
	}
	rest := s[slotStrings:]
	for _, str := range []*string{&c.Socket, &c.RemoteIP, &c.LocalIP} {
		if len(rest) == 0 {
			break
		}
		n := int(rest[0])
		if 1+n > len(rest) {
			return socketd.Connection{}, false
		}
		*str = string(rest[1 : 1+n])
		rest = rest[1+n:]
	}
	return c, true
}

// recoverBegun adds to the history each connection of cs that it lacks, as
// interrupted and ended now: socketd stopped before it committed them. It
// returns how many it added.
func recoverBegun(ctx context.Context, w *sql.DB, cs []socketd.Connection) (int64, error) {
	if len(cs) == 0 {
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
			remote_ip, remote_port, local_ip, local_port, started_at, ended_at, duration_ms, error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.ID, c.Socket, string(socketd.ConnInterrupted), c.RemoteIP, c.RemotePort, c.LocalIP, c.LocalPort,
			started, now, max(0, (now-started)/int64(time.Millisecond)), recoveredError)
		if err != nil {
			return 0, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		added += n
	}
	return added, tx.Commit()
}

// recoveredError is the error of a row recoverBegun adds.
const recoveredError = "socketd stopped before it recorded this connection; recovered from the begun file"
