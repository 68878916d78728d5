package activator

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// takeUser gives c the dynamic user its definition asks for, before its row
// is begun, so that the row records it; if none is free, c.refusal says so
// and the connection is refused. Whoever begins c gives the user back
// (releaseUser) if the handler does not start; once it has, endGroup does.
func (c *conn) takeUser() {
	if !c.def.sock.DynamicUser {
		return
	}
	uid, err := c.a.dynUsers.get()
	if err != nil {
		c.refusal = err.Error()
		return
	}
	u := int(uid)
	c.dynUID, c.hasDynUID, c.rec.UID = uid, true, &u
}

// takeCgroup gives c an empty cgroup with its definition's caps, if socketd
// has cgroups, and returns the cgroup.procs of the v1 cgroups its handler
// must join for the caps.
func (c *conn) takeCgroup() ([]int, error) {
	caps := c.def.caps
	if c.a.cgroups == nil {
		if caps != (socketd.Caps{}) {
			return nil, fmt.Errorf("memory_max and tasks_max need a cgroup for the connection: %w", c.a.cgroupsErr)
		}
		return nil, nil
	}
	cg, err := c.a.cgroups.get()
	if err != nil {
		return nil, err
	}
	joins, err := cg.limit(caps)
	if err != nil {
		cg.release()
		return nil, err
	}
	c.cg = cg
	return joins, nil
}

// releaseCgroup gives back the cgroup of a handler that did not start.
func (c *conn) releaseCgroup() {
	if c.cg != nil {
		c.cg.release()
		c.cg = nil
	}
}

// run starts the handler and reports whether it did; if not, the row's
// outcome is filled in. Once started, the handler's exit is handled by
// handleExit, which ends the connection: on the exit watcher's goroutine,
// or on this one if the watcher cannot take the pidfd.
func (c *conn) run() bool {
	def := c.def
	path, err := def.command()
	if err != nil {
		c.spawnFailed(err)
		return false
	}
	creds, err := def.credentials()
	if err != nil {
		c.spawnFailed(err)
		return false
	}
	if def.rlimitErr != nil {
		c.spawnFailed(def.rlimitErr)
		return false
	}
	if def.capsErr != nil {
		c.spawnFailed(def.capsErr)
		return false
	}
	c.mu.Lock()
	stopping := c.stopping
	c.mu.Unlock()
	if stopping {
		c.rec.State = socketd.ConnKilled // asked to stop before it started
		return false
	}
	if c.hasDynUID {
		// The user and group of its own, with the listed supplementary
		// groups only.
		dyn := socketd.Credentials{SetUID: true, UID: c.dynUID, SetGID: true, GID: c.dynUID, Groups: []uint32{}}
		if creds != nil {
			dyn.Groups = creds.Groups
		}
		creds = &dyn
	}
	joins, err := c.takeCgroup()
	if err != nil {
		c.spawnFailed(err)
		return false
	}

	// The handler's fds 0, 1, 2 and, with stdin null, the connection as
	// fd 3; logW is the write end of the log's pipe where one goes.
	// A service gets the listening sockets instead of a connection: the
	// first as its "socket" (Validate allows no more with stdin socket),
	// all of them from fd 3 on.
	const logW = -2
	sock, passed := c.fd, []int{c.fd}
	if c.listenFDs != nil {
		sock, passed = c.listenFDs[0], c.listenFDs
	}
	fds := make([]int, 3, 3+len(passed))
	fds[0] = sock
	if def.stdin == socketd.StdinNull {
		fds[0] = c.a.devNull
		fds = append(fds, passed...)
	}
	switch def.stdout {
	case socketd.StdoutNull:
		fds[1] = c.a.devNull
	case socketd.StdoutLog:
		fds[1] = logW
	default: // socketd.StdoutSocket
		fds[1] = sock
	}
	switch def.sock.Stderr {
	case socketd.StderrNull:
		fds[2] = c.a.devNull
	case socketd.StderrSocket:
		fds[2] = sock
	case socketd.StderrInherit:
		fds[2] = fds[1]
	default: // socketd.StderrLog
		fds[2] = logW
	}
	stderr, logR := -1, -1
	if fds[1] == logW || fds[2] == logW {
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
			c.releaseCgroup()
			c.spawnFailed(fmt.Errorf("stderr pipe: %w", err))
			return false
		}
		logR, stderr = p[0], p[1]
		for i, fd := range fds {
			if fd == logW {
				fds[i] = stderr
			}
		}
	}

	proc, err := startProcess(&procAttr{
		path: path,
		argv: def.sock.Command,
		env:  def.environ(&c.rec, c.remote, len(c.listenFDs)),
		dir:  def.dir,
		fds:  fds,
		// With the connection as fd 3, LISTEN_PID is the last variable.
		listenPID: def.stdin == socketd.StdinNull,
		creds:     creds,
		umask:     def.umask,
		nice:      def.sock.Nice,
		// systemd's DynamicUser= implies PrivateTmp= and
		// NoNewPrivileges=.
		privateTmp: def.sock.DynamicUser,
		noNewPrivs: def.sock.DynamicUser,
		rlimits:    def.rlimits,
		cgroup:     c.cg,
		joins:      joins,
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
		c.releaseCgroup()
		c.spawnFailed(fmt.Errorf("start %s: %w", path, err))
		return false
	}
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
	c.proc = proc
	c.recordSpawn()
	c.started(pid)
	if proc.pidfd < 0 || !c.a.exits.add(proc.pidfd, c) {
		waitPID(pid)
		c.handleExit()
	}
	return true
}

// handleExit ends the connection of a handler that has exited: it sends the
// client the end of the output, reads what the handler wrote to stderr,
// reaps it, ends what it left in its process group, fills in the row's
// outcome and closes the connection.
func (c *conn) handleExit() {
	proc, def := c.proc, c.def
	pid := proc.pid
	// The client is waiting for the end of the output: send it before the
	// reaping and accounting below; closeConn then only drains and closes.
	if c.fd >= 0 {
		endOutput(c.fd)
	}
	c.mu.Lock()
	c.exited = true
	if c.killTimer != nil {
		c.killTimer.Stop()
	}
	if c.runtimeTimer != nil {
		c.runtimeTimer.Stop()
	}
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	stopped, killAt, reason := c.stopping, c.killAt, c.stopReason
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
	c.a.endGroup(c, group{id: pid, fd: proc.pidfd, cg: c.cg}, killAt)
	if c.log != nil {
		c.log.stop(c.a.cfg.LingerTimeout, stopped)
	}

	linger := c.a.cfg.LingerTimeout
	if err := proc.execErr(); err != nil {
		// The child never became the handler.
		c.rec.PID = 0
		path, _ := def.command()
		c.spawnFailed(fmt.Errorf("start %s: %w", path, err))
	} else {
		switch {
		case ws.Exited():
			code := ws.ExitStatus()
			c.rec.ExitCode = &code
		case ws.Signaled():
			c.rec.Signal = unix.SignalName(ws.Signal())
		}
		c.rec.State = exitState(ws, stopped, def.sock.IgnoreExitStatus)
		if c.rec.State == socketd.ConnKilled && reason != "" {
			c.rec.Error = reason
		}
		if c.rec.State == socketd.ConnKilled {
			// The connection is being torn down on purpose: close at
			// once, after what the peer has already sent.
			linger = 0
		}
	}
	proc.free()
	if c.fd < 0 {
		c.closed(0, 0) // a service: no connection to close
		return
	}
	c.a.closeConn(c.fd, linger, c.closed)
}

// spawnFailed records an error that kept the handler from running.
func (c *conn) spawnFailed(err error) {
	c.rec.State = socketd.ConnFailed
	c.rec.Error = err.Error()
	c.s.setError(err.Error())
	c.a.log.ErrorContext(c.logContext(), "spawn", "socket", c.s.name, "connection_id", c.rec.ID, "err", err)
}

// waitPID waits in a blocked thread until process pid has exited, without
// reaping it.
func waitPID(pid int) {
	var si unix.Siginfo
	for unix.Waitid(unix.P_PID, pid, &si, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
	}
}
