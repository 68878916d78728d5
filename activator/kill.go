package activator

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// Kill terminates the handler of running connection id: its definition's
// kill signal (SIGTERM) to every process of its cgroup (its process group
// without one), SIGKILL after its timeout_stop
// (StopTimeout). It returns once the handler is
// gone and the row is finished with state killed, or when ctx is done. It
// returns an *socketd.Error with CodeNotFound if no such connection runs.
func (a *Activator) Kill(ctx context.Context, id int64) error {
	a.connMu.Lock()
	c := a.conns[id]
	a.connMu.Unlock()
	if c == nil {
		return socketd.Errorf(socketd.CodeNotFound, "connection %d is not running", id)
	}
	c.stop()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kill connection %d: %w", id, ctx.Err())
	}
}

// stop asks the handler to stop. Before the spawn it keeps the handler from
// starting; after, it signals the group.
func (c *conn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return
	}
	c.stopping = true
	if c.pid != 0 {
		c.terminateLocked()
	}
}

// started records the handler's pid, and stops it at once if a stop was
// asked for while it was being spawned. It arms the definition's
// runtime_max.
func (c *conn) started(pid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pid = pid
	if c.stopping {
		c.terminateLocked()
		if isClosed(c.a.hurry) {
			c.killLocked() // Close has run out of time, and killed the rest
		}
		return
	}
	if d := c.def.idleTimeout; d > 0 && c.fd >= 0 && c.rec.PeerUID == nil { // TCP only
		c.idleTimer = time.AfterFunc(d, c.checkIdle)
	}
	if d := c.def.runtimeMax; d > 0 {
		c.runtimeTimer = time.AfterFunc(d, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.stopForLocked(fmt.Sprintf("ran longer than runtime_max (%s)", c.def.sock.RuntimeMax))
		})
	}
}

// stopForLocked stops the handler, which socketd itself decided to, saying
// why in its row; unless it is stopping or gone already.
func (c *conn) stopForLocked(reason string) {
	if !c.stopping && !c.exited {
		c.stopping, c.stopReason = true, reason
		c.terminateLocked()
	}
}

// checkIdle stops the handler of a connection that has carried no data in
// either direction for idle_timeout, as TCP_INFO on socketd's copy tells,
// or checks again when it could be.
func (c *conn) checkIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping || c.exited {
		return // the connection is closing: its fd may be soon
	}
	limit := c.def.idleTimeout
	ti, err := unix.GetsockoptTCPInfo(c.fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return
	}
	// Retransmissions count as sent: with data unacknowledged, what
	// counts is when the peer last acknowledged any.
	sent := ti.Last_data_sent
	if ti.Unacked > 0 {
		sent = max(sent, ti.Last_ack_recv)
	}
	idle := time.Duration(min(ti.Last_data_recv, sent)) * time.Millisecond
	if idle < limit {
		c.idleTimer = time.AfterFunc(limit-idle, c.checkIdle)
		return
	}
	c.stopForLocked(fmt.Sprintf("no data either way for idle_timeout (%s)", c.def.sock.IdleTimeout))
}

// kill sends SIGKILL to the handler's group at once, when Close runs out of
// time before the handler's stop timeout has.
func (c *conn) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.killLocked()
}

// killLocked is kill with c.mu held.
func (c *conn) killLocked() {
	if c.pid == 0 || c.exited {
		return
	}
	if c.cg != nil {
		c.cg.kill()
	} else {
		_ = unix.Kill(-c.pid, unix.SIGKILL)
	}
}

// terminateLocked sends the definition's kill signal (SIGTERM by default)
// to the handler's group and arms SIGKILL. The caller holds c.mu, so the
// group is signalled only while its leader is not yet reaped and the id
// cannot belong to anyone else.
func (c *conn) terminateLocked() {
	if c.exited {
		return
	}
	c.signalLocked(c.def.killSignal)
	if wakes(c.def.killSignal) {
		c.signalLocked(unix.SIGCONT)
	}
	timeout := c.a.stopTimeout(c.def)
	c.killAt = time.Now().Add(timeout)
	c.killTimer = time.AfterFunc(timeout, c.kill)
}

// signalLocked sends sig to the running handler and to all it started:
// every process of its cgroup, or of its process group without one.
func (c *conn) signalLocked(sig unix.Signal) {
	if c.cg != nil {
		c.cg.signal(sig)
	} else {
		_ = unix.Kill(-c.pid, sig)
	}
}

// group is what a handler that has been reaped may have left running: its
// cgroup if it has one, else its process group, with its id (the handler's
// pid) and the handler's pidfd, kept open to signal the group through (-1
// without one). close closes the pidfd and gives back the cgroup once
// empty.
type group struct {
	id int
	fd int
	cg *cgroup
	// empty is set once the cgroup was seen empty.
	empty bool
}

// noPidfdGroups is set once the kernel has refused to signal a process
// group through a pidfd (PIDFD_SIGNAL_PROCESS_GROUP is Linux 6.9).
var noPidfdGroups atomic.Bool

// signal sends sig to every process of the group; signal 0 only tests that
// one is left. It fails with ESRCH when none is: the leader is reaped, so
// the group is empty, not merely down to its zombie leader (other members
// still count while they are zombies, until whoever adopted them reaps
// them).
//
// Through the pidfd the kernel resolves the group from the handler's own
// struct pid, which the pidfd pins: it reaches this group and no other even
// if its id has been freed and reused since. kill(2) is the fallback.
func (g *group) signal(sig unix.Signal) error {
	if g.cg != nil {
		// What counts is whether anything is left, wherever below.
		if !g.cg.populated() {
			g.empty = true
			return unix.ESRCH
		}
		if sig != 0 {
			g.cg.signal(sig)
		}
		return nil
	}
	if g.fd >= 0 && !noPidfdGroups.Load() {
		err := unix.PidfdSendSignal(g.fd, sig, nil, unix.PIDFD_SIGNAL_PROCESS_GROUP)
		if err != unix.EINVAL {
			return err
		}
		noPidfdGroups.Store(true)
	}
	return unix.Kill(-g.id, sig)
}

// kill sends SIGKILL to the group and reports whether a process was left to
// receive it.
func (g *group) kill() bool {
	if g.cg != nil {
		return g.cg.kill()
	}
	if g.fd < 0 || noPidfdGroups.Load() {
		// Through kill(2), the id could belong to someone else by now:
		// once the last process of the group died of its SIGTERM, its id
		// was free. A process with that pid is proof of reuse (while any
		// process of the group lives, the id can be no one's pid). A
		// reused id that leads a new group again in the meantime is not
		// caught; the pidfd path has no such gap.
		if unix.Kill(g.id, 0) != unix.ESRCH {
			return false
		}
	}
	return g.signal(unix.SIGKILL) == nil
}

func (g *group) close() {
	if g.fd >= 0 {
		unix.Close(g.fd)
	}
	switch {
	case g.cg == nil:
	case g.empty:
		g.cg.giveBack()
	default:
		g.cg.release()
	}
}

// Leftover groups are checked for emptiness after leftoverPollMin, doubling
// up to leftoverPollMax, so that Close does not wait for the SIGKILL of a
// group whose processes all died of their SIGTERM.
const (
	leftoverPollMin = 10 * time.Millisecond
	leftoverPollMax = time.Second
)

// endGroup ends what handler c, just reaped, left running in its process
// group, as systemd's KillMode=control-group stops a connection's unit when
// its main process exits: the kill signal now (unless a stop sent it
// already), SIGKILL at killAt (zero: the stop timeout from now) if anything
// is still left then. It does not wait: the connection's row does not depend on it.
//
// The handler is reaped first, because while it is a zombie it is itself a
// member and the group never looks empty. In the common case the group is
// empty and this is one signal failing with ESRCH.
func (a *Activator) endGroup(c *conn, g group, killAt time.Time) {
	sig := c.def.killSignal
	if !killAt.IsZero() {
		sig = 0 // stopped: the whole group had its kill signal then
	}
	if g.signal(sig) != nil {
		g.close()
		if c.hasDynUID {
			// Its killer takes a process start and a wait: not on
			// the exit watcher, which every other handler waits on.
			a.wg.Add(1) // the caller is counted, so Close still waits
			go func() {
				defer a.wg.Done()
				c.releaseUser()
			}()
		}
		return
	}
	if sig != 0 && wakes(sig) {
		_ = g.signal(unix.SIGCONT)
	}
	if killAt.IsZero() {
		killAt = time.Now().Add(a.stopTimeout(c.def))
	}
	// The caller is counted in wg, so Close cannot have finished waiting.
	a.wg.Add(1)
	go a.watchGroup(g, killAt, c.s.name, c.rec.ID, c.releaseUser)
}

// releaseUser gives back c's dynamic user, if it has one, once its
// process group is gone.
func (c *conn) releaseUser() {
	if c.hasDynUID {
		c.a.dynUsers.put(c.dynUID)
		c.hasDynUID = false
	}
}

// watchGroup owns leftover group g until it is empty or has had its SIGKILL,
// at killAt or as soon as Close runs out of time (hurry); then it calls
// gone.
func (a *Activator) watchGroup(g group, killAt time.Time, socket string, connID int64, gone func()) {
	defer a.wg.Done()
	defer gone()
	defer g.close()
	poll := leftoverPollMin
	t := time.NewTimer(min(poll, time.Until(killAt)))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-a.hurry:
		}
		if hurry := isClosed(a.hurry); hurry || !time.Now().Before(killAt) {
			if g.kill() {
				a.log.Warn("sent SIGKILL to processes a handler left behind", "socket", socket,
					"connection_id", connID, "pgid", g.id, "closing", hurry)
			}
			return
		}
		if g.signal(0) != nil {
			return // all gone
		}
		poll = min(2*poll, leftoverPollMax)
		t.Reset(min(poll, time.Until(killAt)))
	}
}

// stopTimeout is how long after its kill signal a handler of d gets
// SIGKILL: the definition's timeout_stop, else StopTimeout.
func (a *Activator) stopTimeout(d *definition) time.Duration {
	if d.stopTimeout > 0 {
		return d.stopTimeout
	}
	return a.cfg.StopTimeout
}

// wakes reports whether SIGCONT should follow kill signal sig, as systemd
// sends it: a stopped process would otherwise not act on sig until SIGKILL.
func wakes(sig unix.Signal) bool { return sig != unix.SIGKILL && sig != unix.SIGCONT }

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
