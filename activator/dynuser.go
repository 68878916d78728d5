package activator

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// Default range of dynamic users, as systemd's (61184-65519). On a host
// where systemd runs DynamicUser= services too, give socketd a range of its
// own (--dynamic-users): the uids systemd has handed out are skipped, but
// systemd does not know socketd's.
const (
	DefaultDynamicUIDMin = 61184
	DefaultDynamicUIDMax = 65519
)

// sweepWorkers is how many uids a sweep clears at once.
const sweepWorkers = 16

// uidPool hands out the dynamic users of dynamic_user handlers: uids (each
// also the gid) from a range, skipping those the user or group database or
// systemd's registry knows, never one a live connection has. A uid given
// back is cleared first: every process still running as it (a handler's
// child that left its process group, say) is killed, so that no two
// connections ever share one and nothing of a connection outlives it. A new
// pool trusts no uid of its range and clears them all before it hands out
// one, for processes a socketd before it left behind.
type uidPool struct {
	min, max uint32

	mu    sync.Mutex
	next  uint32
	swept bool            // the whole range has been cleared once
	busy  map[uint32]bool // handed to a live connection
	dirty map[uint32]bool // given back, its clearing failed: cleared again before use
	known map[uint32]bool // taken by someone else; forgotten at each sweep

	sweepMu sync.Mutex // one sweep at a time, without holding mu
}

func newUIDPool(min, max uint32) *uidPool {
	return &uidPool{min: min, max: max, next: min,
		busy: map[uint32]bool{}, dirty: map[uint32]bool{}, known: map[uint32]bool{}}
}

// errNoDynamicUID is get's error when every uid of the range is taken.
var errNoDynamicUID = errors.New("no dynamic user is free")

// get hands out a uid. It goes round the range, so that a uid given back
// is the last to be used again.
func (p *uidPool) get() (uint32, error) {
	for range 3 {
		u, ok, sweep := p.pick()
		for ok && p.taken(u) {
			u, ok, sweep = p.pick()
		}
		if ok {
			return u, nil
		}
		if !sweep {
			break
		}
		p.sweep()
	}
	return 0, fmt.Errorf("%w in %d-%d", errNoDynamicUID, p.min, p.max)
}

// pick reserves the next uid that is neither busy, dirty nor known to be
// taken. If there is none, sweep says whether a sweep could free some.
func (p *uidPool) pick() (u uint32, ok, sweep bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.swept {
		return 0, false, true
	}
	for n := uint64(p.max-p.min) + 1; n > 0; n-- {
		u := p.next
		if p.next == p.max {
			p.next = p.min
		} else {
			p.next++
		}
		if !p.busy[u] && !p.dirty[u] && !p.known[u] {
			p.busy[u] = true
			return u, true, false
		}
	}
	return 0, false, len(p.dirty) > 0
}

// taken checks uid u, reserved by pick, against the user and group
// databases and systemd's registry of its dynamic users, outside the lock
// (a lookup may be slow). A uid taken is given up and remembered.
func (p *uidPool) taken(u uint32) bool {
	if !known(u) {
		return false
	}
	p.mu.Lock()
	delete(p.busy, u)
	p.known[u] = true
	p.mu.Unlock()
	return true
}

// put gives back a uid whose connection's process group is gone, once
// whatever else still runs as it is killed.
func (p *uidPool) put(u uint32) {
	err := killUID(u)
	p.mu.Lock()
	delete(p.busy, u)
	if err != nil {
		p.dirty[u] = true
	}
	p.mu.Unlock()
}

// known reports whether uid u belongs to someone: a user or group of the
// databases (the dynamic user's gid is its uid), or a dynamic user systemd
// has handed out. A lookup that fails for another reason than the id
// being unknown counts as known: the database may be down, not empty.
func known(u uint32) bool {
	id := strconv.FormatUint(uint64(u), 10)
	if _, err := os.Stat("/run/systemd/dynamic-uid/" + id); err == nil {
		return true
	}
	if _, err := user.LookupId(id); !errors.As(err, new(user.UnknownUserIdError)) {
		return true
	}
	_, err := user.LookupGroupId(id)
	return !errors.As(err, new(user.UnknownGroupIdError))
}

// sweep clears the dirty uids or, at the first sweep, every uid of the
// range.
func (p *uidPool) sweep() {
	p.sweepMu.Lock()
	defer p.sweepMu.Unlock()
	p.mu.Lock()
	all := !p.swept
	uids := make([]uint32, 0, len(p.dirty))
	for u := range p.dirty {
		uids = append(uids, u)
	}
	p.mu.Unlock()
	if all {
		uids = uids[:0]
		for u := p.min; ; u++ {
			uids = append(uids, u)
			if u == p.max {
				break
			}
		}
	}
	// A few at a time: the first sweep covers the whole range.
	failed := map[uint32]bool{}
	var fmu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan uint32)
	for range sweepWorkers {
		wg.Go(func() {
			for u := range work {
				if killUID(u) != nil {
					fmu.Lock()
					failed[u] = true
					fmu.Unlock()
				}
			}
		})
	}
	for _, u := range uids {
		work <- u
	}
	close(work)
	wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range uids {
		if failed[u] {
			p.dirty[u] = true
		} else {
			delete(p.dirty, u)
		}
	}
	p.swept = true
	clear(p.known)
}

// killUID sends SIGKILL to every process running as uid u (its real or
// saved uid), at once: a child of socketd takes u as all its uids, with no
// capabilities, and calls kill(2) with pid -1, which reaches every process
// it may signal but itself. A process cannot escape it by forking, as it
// could a kill of each pid read from /proc: the kernel signals them all
// under one lock, and a process with SIGKILL pending cannot fork. Not a
// thread of socketd taking u for a moment: a process of u could signal
// socketd then.
func killUID(u uint32) error {
	proc, err := startProcess(&procAttr{path: "/", killAll: true,
		creds: &socketd.Credentials{SetUID: true, UID: u, SetGID: true, GID: u, Groups: []uint32{}}})
	if err != nil {
		return fmt.Errorf("kill the processes of uid %d: %w", u, err)
	}
	defer proc.free()
	var ws unix.WaitStatus
	for {
		if _, err := unix.Wait4(proc.pid, &ws, 0, nil); err != unix.EINTR {
			break
		}
	}
	if proc.pidfd >= 0 {
		unix.Close(proc.pidfd)
	}
	if err := proc.execErr(); err != nil {
		return fmt.Errorf("kill the processes of uid %d: %w", u, err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("kill the processes of uid %d: the killer ended with status %v", u, ws)
	}
	return nil
}
