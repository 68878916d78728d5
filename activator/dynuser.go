package activator

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Default range of dynamic users, as systemd's (61184-65519).
const (
	DefaultDynamicUIDMin = 61184
	DefaultDynamicUIDMax = 65519
)

// sweepWait bounds how long a sweep waits for the processes it killed to
// be gone.
const sweepWait = time.Second

// uidPool hands out the dynamic users of dynamic_user handlers: uids (each
// also the gid) from a range, skipping those the user or group database
// knows, never one a live connection has. A uid given back is not handed
// out again before a sweep has killed every process still running under it
// (a handler's child that left its process group, say), so that no two
// connections ever share one.
type uidPool struct {
	min, max uint32

	mu    sync.Mutex
	next  uint32
	busy  map[uint32]bool // handed to a live connection
	dirty map[uint32]bool // given back, not swept yet
}

func newUIDPool(min, max uint32) *uidPool {
	return &uidPool{min: min, max: max, next: min, busy: map[uint32]bool{}, dirty: map[uint32]bool{}}
}

// errNoDynamicUID is get's error when every uid of the range is taken.
var errNoDynamicUID = errors.New("no dynamic user is free")

// get hands out a uid. It goes round the range, so that a uid given back
// is the last to be used again.
func (p *uidPool) get() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range 2 {
		n := p.max - p.min + 1
		for range n {
			u := p.next
			if p.next++; p.next > p.max || p.next < p.min {
				p.next = p.min
			}
			if p.busy[u] || p.dirty[u] || known(u) {
				continue
			}
			p.busy[u] = true
			return u, nil
		}
		if len(p.dirty) == 0 {
			break
		}
		p.sweepLocked()
	}
	return 0, fmt.Errorf("%w in %d-%d", errNoDynamicUID, p.min, p.max)
}

// put gives back a uid whose connection has ended.
func (p *uidPool) put(u uint32) {
	p.mu.Lock()
	delete(p.busy, u)
	p.dirty[u] = true
	p.mu.Unlock()
}

// known reports whether uid u is taken in the user or the group database
// (a dynamic user's gid is its uid).
func known(u uint32) bool {
	id := strconv.FormatUint(uint64(u), 10)
	if _, err := user.LookupId(id); err == nil {
		return true
	}
	_, err := user.LookupGroupId(id)
	return err == nil
}

// sweepLocked kills every process that runs as a dirty uid and marks the
// uids clean once those are gone. It reads every process's ids in /proc.
func (p *uidPool) sweepLocked() {
	var left []int // pidfds of the processes killed
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !p.runsDirty(pid) {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone already
		}
		// The pid is pinned now: check that it is still the process
		// seen, not a new one with its number.
		if p.runsDirty(pid) && unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) == nil {
			left = append(left, fd)
		} else {
			unix.Close(fd)
		}
	}
	// A pidfd is readable once its process has exited.
	deadline := time.Now().Add(sweepWait)
	for _, fd := range left {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for time.Now().Before(deadline) {
			if n, err := unix.Poll(pfd, int(time.Until(deadline)/time.Millisecond)+1); n > 0 || (err != nil && err != unix.EINTR) {
				break
			}
		}
		unix.Close(fd)
	}
	clear(p.dirty)
}

// runsDirty reports whether process pid runs as a dirty uid: real,
// effective, saved or filesystem.
func (p *uidPool) runsDirty(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			for _, f := range strings.Fields(rest) {
				if u, err := strconv.ParseUint(f, 10, 32); err == nil && p.dirty[uint32(u)] {
					return true
				}
			}
			return false
		}
	}
	return false
}
