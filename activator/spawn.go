package activator

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// run starts the handler, waits for it to exit and fills in the row's
// outcome. It returns with the handler reaped; the connection is still
// open.
//
// The pidfd of the handler waits in the netpoller like any socket, rather
// than a thread blocked in waitid per child as os.Process.Wait does.
func (c *conn) run() {
	def := c.def
	path, err := def.command()
	if err != nil {
		c.spawnFailed(err)
		return
	}
	c.mu.Lock()
	stopping := c.stopping
	c.mu.Unlock()
	if stopping {
		c.rec.State = socketd.ConnKilled // asked to stop before it started
		return
	}

	stderr, logR := -1, -1
	switch def.sock.Stderr {
	case socketd.StderrNull:
		stderr = c.a.devNull
	case socketd.StderrSocket:
		stderr = c.fd
	default: // socketd.StderrLog
		// socketd's end is non-blocking, for reading without waiting;
		// the handler's must block, as every program expects.
		var p [2]int
		err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK)
		if err == nil {
			if _, err = unix.FcntlInt(uintptr(p[1]), unix.F_SETFL, 0); err != nil {
				unix.Close(p[0])
				unix.Close(p[1])
			}
		}
		if err != nil {
			c.spawnFailed(fmt.Errorf("stderr pipe: %w", err))
			return
		}
		logR, stderr = p[0], p[1]
	}

	proc, err := startProcess(&procAttr{
		path: path,
		argv: def.sock.Command,
		env:  def.environ(&c.rec),
		dir:  def.dir,
		fds:  []int{c.fd, c.fd, stderr},
	})
	if logR >= 0 {
		// Only the handler may hold the write end, or the capture never
		// sees end of file.
		unix.Close(stderr)
	}
	if err != nil {
		if logR >= 0 {
			unix.Close(logR)
		}
		c.spawnFailed(fmt.Errorf("start %s: %w", path, err))
		return
	}
	defer proc.free()
	if logR >= 0 {
		c.mu.Lock()
		c.logFD = logR
		c.mu.Unlock()
		c.a.logMu.Lock()
		c.a.unwatched[c] = struct{}{}
		c.a.logMu.Unlock()
	}
	pid := proc.pid
	c.rec.PID = pid
	c.started(pid)

	pidf := waitExit(pid, proc.pidfd)
	// The client is waiting for the end of the output: send it before the
	// reaping and accounting below; closeConn then only drains and closes.
	endOutput(c.fd)
	c.mu.Lock()
	c.exited = true
	if c.killTimer != nil {
		c.killTimer.Stop()
	}
	stopped, killAt := c.stopping, c.killAt
	logFD := c.logFD
	c.logFD = -1
	c.mu.Unlock()
	if logFD >= 0 {
		c.a.logMu.Lock()
		delete(c.a.unwatched, c)
		c.a.logMu.Unlock()
		c.rec.Log = readLog(logFD)
	}

	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			break
		}
	}
	// Reaped, the handler no longer counts in its group, which is now
	// empty unless it left something behind.
	g := group{id: pid, fd: -1, f: pidf}
	if pidf != nil {
		g.fd = proc.pidfd
	}
	c.a.endGroup(c, g, killAt)
	if c.log != nil {
		c.log.stop(c.a.cfg.LingerTimeout, stopped)
	}

	if err := proc.execErr(); err != nil {
		// The child never became the handler.
		c.rec.PID = 0
		c.spawnFailed(fmt.Errorf("start %s: %w", path, err))
		return
	}
	switch {
	case ws.Exited():
		code := ws.ExitStatus()
		c.rec.ExitCode = &code
	case ws.Signaled():
		c.rec.Signal = unix.SignalName(ws.Signal())
	}
	c.rec.State = exitState(ws, stopped, def.sock.IgnoreExitStatus)
}

// spawnFailed records an error that kept the handler from running.
func (c *conn) spawnFailed(err error) {
	c.rec.State = socketd.ConnFailed
	c.rec.Error = err.Error()
	c.s.setError(err.Error())
	c.a.log.Error("spawn", "socket", c.s.name, "connection_id", c.rec.ID, "err", err)
}

// waitExit returns once process pid has exited, without reaping it. It
// waits in the netpoller on the process's pidfd (non-blocking; -1 for
// none), and returns the pidfd still open, as a file the caller closes, for
// signalling the process group; nil without one.
func waitExit(pid, pidfd int) *os.File {
	if pidfd < 0 {
		waitPID(pid)
		return nil
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Read(exited)
	}
	if err != nil {
		// A pidfd the netpoller cannot take: wait in a blocked thread
		// instead.
		waitPID(pid)
	}
	return f
}

// waitPID waits in a blocked thread until process pid has exited, without
// reaping it.
func waitPID(pid int) {
	var si unix.Siginfo
	for unix.Waitid(unix.P_PID, pid, &si, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
	}
}

// exited reports whether the process of pidfd has exited, leaving it
// waitable (WNOWAIT); it is called by the netpoller until it does.
func exited(pidfd uintptr) bool {
	var si unix.Siginfo
	err := unix.Waitid(unix.P_PIDFD, int(pidfd), &si, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	// An error would repeat forever: stop waiting and let Wait4 tell.
	return err != nil || si.Signo != 0
}
