package activator

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// Kill terminates the handler of running connection id: SIGTERM to its
// process group, SIGKILL after StopTimeout. It returns once the handler is
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
// asked for while it was being spawned.
func (c *conn) started(pid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pid = pid
	if c.stopping {
		c.terminateLocked()
	}
}

// terminateLocked sends SIGTERM to the handler's group and arms SIGKILL.
// The caller holds c.mu, so the group is signalled only while its leader is
// not yet reaped and the id cannot belong to anyone else.
func (c *conn) terminateLocked() {
	if c.exited {
		return
	}
	_ = unix.Kill(-c.pid, unix.SIGTERM)
	c.killTimer = time.AfterFunc(c.a.cfg.StopTimeout, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.exited {
			_ = unix.Kill(-c.pid, unix.SIGKILL)
		}
	})
}
