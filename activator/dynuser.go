package activator

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

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

// hasSwept reports whether the range has had its first sweep.
func (p *uidPool) hasSwept() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.swept
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
	spare := p.spare(u)
	err := killUID(u, spare)
	p.mu.Lock()
	delete(p.busy, u)
	if spare != u {
		delete(p.busy, spare)
	}
	if err != nil {
		p.dirty[u] = true
	}
	p.mu.Unlock()
}

// spare reserves a uid of the range other than u that no process runs as
// (neither busy, dirty nor someone else's), for the killer of u; u itself
// if it finds none in a few tries.
func (p *uidPool) spare(u uint32) uint32 {
	for range 8 {
		c, ok := p.reserveSpare(u)
		if !ok {
			break
		}
		if !p.taken(c) { // the databases, checked outside the lock
			return c
		}
	}
	return u
}

// reserveSpare reserves the highest uid of the range that is not u and not
// busy, dirty or known to be taken.
func (p *uidPool) reserveSpare(u uint32) (uint32, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.swept {
		return 0, false
	}
	for c := p.max; ; c-- {
		if c != u && !p.busy[c] && !p.dirty[c] && !p.known[c] {
			p.busy[c] = true
			return c, true
		}
		if c == p.min {
			return 0, false
		}
	}
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
		// Only uids no one else has: a uid of the user or group
		// database, or of systemd's dynamic users, is someone's, and so
		// is socketd's own; their processes are not ours to kill.
		uids = uids[:0]
		for u := p.min; ; u++ {
			if u != uint32(os.Getuid()) && !known(u) {
				uids = append(uids, u)
			}
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
				if killUID(u, u) != nil {
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

// killTimeout bounds the wait for a killer (see killUID).
const killTimeout = 5 * time.Second

// killUID sends SIGKILL to every process running as uid u (its real or
// saved uid), at once: a child of socketd takes u as its effective uid and
// spare as its real and saved one, with no capabilities, and calls kill(2)
// with pid -1, which reaches every process whose real or saved uid is u or
// spare, but itself. A process cannot escape it by forking, as it could a
// kill of each pid read from /proc: the kernel signals them all under one
// lock, and a process with SIGKILL pending cannot fork. spare must be a uid
// no process runs as: then the processes of u cannot signal the killer
// (kill(2) checks the target's real and saved uid). spare == u leaves them
// able to stop it; the wait is bounded, and the killer is killed then.
// Not a thread of socketd taking u for a moment: a process of u could
// signal socketd then.
func killUID(u, spare uint32) error {
	proc, err := startProcess(&procAttr{path: "/", killAll: true, killRUID: spare,
		creds: &socketd.Credentials{SetUID: true, UID: u, SetGID: true, GID: u, Groups: []uint32{}}})
	if err != nil {
		return fmt.Errorf("kill the processes of uid %d: %w", u, err)
	}
	defer proc.free()
	if proc.pidfd >= 0 {
		defer unix.Close(proc.pidfd)
		pfd := []unix.PollFd{{Fd: int32(proc.pidfd), Events: unix.POLLIN}}
		deadline := time.Now().Add(killTimeout)
		for {
			n, err := unix.Poll(pfd, int(max(time.Until(deadline), 0)/time.Millisecond))
			if n > 0 || err != nil && err != unix.EINTR {
				break
			}
			if !time.Now().Before(deadline) {
				_ = unix.Kill(proc.pid, unix.SIGKILL) // stopped or stuck: end it
				break
			}
		}
	}
	var ws unix.WaitStatus
	for {
		if _, err := unix.Wait4(proc.pid, &ws, 0, nil); err != unix.EINTR {
			break
		}
	}
	if err := proc.execErr(); err != nil {
		return fmt.Errorf("kill the processes of uid %d: %w", u, err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("kill the processes of uid %d: the killer ended with status %v", u, ws)
	}
	return nil
}
