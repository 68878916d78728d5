package activator

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Default range of dynamic users, as systemd's (61184-65519). On a host
// where systemd runs DynamicUser= services too, give socketd a range of its
// own (--dynamic-users): the uids systemd has handed out are skipped, but
// systemd does not know socketd's.
const (
	DefaultDynamicUIDMin = 61184
	DefaultDynamicUIDMax = 65519
)

// Sweeps: at most sweepPasses scans of /proc, sweepPause apart, until one
// finds no process left running as a uid swept.
const (
	sweepPasses = 5
	sweepPause  = 10 * time.Millisecond
)

// uidPool hands out the dynamic users of dynamic_user handlers: uids (each
// also the gid) from a range, skipping those the user or group database or
// systemd's registry knows, never one a live connection has. A uid given
// back is not handed out again before a sweep has killed every process
// still running as it (a handler's child that left its process group, say),
// so that no two connections ever share one. A new pool trusts no uid of
// its range: its first sweep covers them all, for processes a socketd
// before it left behind.
type uidPool struct {
	min, max uint32

	mu    sync.Mutex
	next  uint32
	swept bool            // the whole range has been swept once
	busy  map[uint32]bool // handed to a live connection
	dirty map[uint32]bool // given back, not swept yet
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

// put gives back a uid whose connection has ended.
func (p *uidPool) put(u uint32) {
	p.mu.Lock()
	delete(p.busy, u)
	p.dirty[u] = true
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

// sweep kills every process running as a dirty uid (or, at the first
// sweep, as any uid of the range), and marks clean the uids that no
// process runs as any more. It kills all of a uid's processes at once, by
// a process of that uid sending SIGKILL to every process it may signal
// (kill(2) with pid -1): unlike a kill of each pid found in /proc, a
// process cannot escape it by forking in between.
func (p *uidPool) sweep() {
	p.sweepMu.Lock()
	defer p.sweepMu.Unlock()
	p.mu.Lock()
	all := !p.swept
	dirty := make(map[uint32]bool, len(p.dirty))
	for u := range p.dirty {
		dirty[u] = true
	}
	p.mu.Unlock()
	inSweep := func(u uint32) bool { return dirty[u] || all && u >= p.min && u <= p.max }

	left := map[uint32]bool{}
	for pass := range sweepPasses {
		left = uidsRunning(inSweep)
		if len(left) == 0 {
			break
		}
		if pass > 0 {
			time.Sleep(sweepPause) // SIGKILLed processes take a moment to die
		}
		for u := range left {
			killAll(u)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for u := range dirty {
		if !left[u] {
			delete(p.dirty, u)
		}
	}
	if all {
		p.swept = true
		for u := range left {
			p.dirty[u] = true // still running: not handed out
		}
	}
	clear(p.known)
}

// uidsRunning returns the uids that in says are swept and that a live
// process runs as (real, effective, saved or filesystem). Zombies are dead
// and are not counted: whoever adopted them reaps them.
func uidsRunning(in func(uint32) bool) map[uint32]bool {
	found := map[uint32]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue // gone
		}
		var uids []uint32
		dead := false
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "State:"); ok {
				st := strings.TrimSpace(rest)
				dead = strings.HasPrefix(st, "Z") || strings.HasPrefix(st, "X")
			} else if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
				for _, f := range strings.Fields(rest) {
					if u, err := strconv.ParseUint(f, 10, 32); err == nil {
						uids = append(uids, uint32(u))
					}
				}
				break
			}
		}
		for _, u := range uids {
			if !dead && in(u) {
				found[u] = true
			}
		}
	}
	return found
}

// killAll sends SIGKILL to every process running as uid u, from a shell
// running as u: kill(2) with pid -1 reaches every process the sender may
// signal but itself.
func killAll(u uint32) {
	cmd := exec.Command("/bin/sh", "-c", "kill -9 -1")
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: u, Gid: u, Groups: []uint32{}},
		Setpgid:    true,
	}
	_ = cmd.Run()
}
