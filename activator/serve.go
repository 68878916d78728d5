package activator

import (
	"cmp"
	"go.opentelemetry.io/otel/trace"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// conn is one accepted connection. A worker (serve) records it and starts
// its handler; the exit watcher handles the handler's exit (handleExit); the
// lingerer, or whoever closes it at once, finishes its row (closed). Each
// step hands the connection to the next, so only one touches it at a time;
// Kill and Close only ask the handler to stop.
type conn struct {
	a   *Activator
	s   *socket
	def *definition
	fd  int          // socketd's copy of the connection; -1 for a service (accept: false)
	src netip.Prefix // the source it counts in (see sources); invalid if none
	// listenFDs are the listening sockets a service gets, in listen
	// order; nil for a connection.
	listenFDs []int
	start     time.Time // accept time, with the monotonic clock for the duration
	rec       socketd.Connection
	done      chan struct{} // closed once the row is finished

	mu        sync.Mutex
	logFD     int        // stderr "log": the pipe's read end until it is watched or read, else -1
	log       *stderrLog // stderr "log": the pipe's reader, once watched (see watchLogs)
	pid       int        // the handler's pid and process group; 0 until spawned
	exited    bool       // the handler has exited: stop no longer signals its group (endGroup ends it)
	stopping  bool       // Kill or Close asked the handler to stop
	killAt    time.Time  // when the group it signalled gets SIGKILL; zero until then
	killTimer *time.Timer
	// runtimeTimer stops the handler at the definition's runtime_max;
	// stopReason says why a stop came from socketd itself.
	runtimeTimer *time.Timer
	idleTimer    *time.Timer // checks idle_timeout
	stopReason   string
	proc         *process // the handler, once started
	// cg is the cgroup the handler and all it starts run in; nil without
	// cgroups (then its process group is what a stop signals).
	cg *cgroup
	// dynUID is the dynamic user the handler runs as, if hasDynUID: given
	// back once its process group is gone.
	dynUID    uint32
	hasDynUID bool
	// refusal, if set, is why the handler may not start (no dynamic user
	// was free): the connection is refused, saying so.
	refusal string
	// remote is the client's whole address, for the handler's environment
	// (rec keeps what record_remote_ip lets the history keep); invalid
	// for a unix socket's peer and a service.
	remote netip.AddrPort
	// live is the row as begun, copied when the connection is
	// registered, for Connections: rec is its worker's alone.
	live socketd.Connection
	// span is the connection's, from accept to the end of its row; nil
	// without a tracer.
	span trace.Span
}

// maxIdleWorkers bounds the goroutines that wait for the next connection
// once theirs is served (see dispatch).
const maxIdleWorkers = 64

// job is an accepted connection for serve.
type job struct {
	s      *socket
	l      *listener
	fd     int
	remote netip.AddrPort
	start  time.Time
	src    netip.Prefix // the source it counts in; invalid if none
}

// dispatch hands j to a worker that waits for one, or starts a worker.
// Workers serve one connection after another, so that a connection does
// not pay for a new goroutine and for growing its stack again.
func (a *Activator) dispatch(j job) {
	select {
	case a.jobs <- j:
	default:
		a.wg.Add(1)
		go a.worker(j)
	}
}

// worker serves j, then the connections dispatch hands it, until Close or
// until maxIdleWorkers others already wait.
func (a *Activator) worker(j job) {
	defer a.wg.Done()
	for {
		a.serve(j)
		j = job{} // hold on to nothing while idle
		if a.idleWorkers.Add(1) > maxIdleWorkers {
			a.idleWorkers.Add(-1)
			return
		}
		select {
		case j = <-a.jobs:
			a.idleWorkers.Add(-1)
		case <-a.done:
			a.idleWorkers.Add(-1)
			return
		}
	}
}

// serve serves one accepted connection, on a worker. The connection holds a
// slot of its socket and one of the activator until it is closed, and is
// counted in a.wg until its row is finished.
func (a *Activator) serve(j job) {
	s, fd, start := j.s, j.fd, j.start
	c := &conn{a: a, s: s, def: s.def.Load(), fd: fd, start: start, done: make(chan struct{}), logFD: -1, src: j.src}
	c.rec = socketd.Connection{Socket: s.name, State: socketd.ConnRunning, StartedAt: start.UTC()}
	c.remote = j.describe(&c.rec, c.def)
	c.takeUser()
	if c.refusal != "" {
		a.refuse(s, socketd.ReasonNoDynamicUID, c.refusalText, c.row)
		a.drop(c)
		return
	}
	c.startSpan()
	// No handler starts before its row is recorded. The row is committed
	// with others, later, but it is as safe from a crash of socketd once
	// queued (see Recorder).
	if err := a.cfg.Recorder.BeginConnectionAsync(&c.rec, c.begun); err != nil {
		c.releaseUser()
		a.log.Error("record", "socket", s.name, "remote", c.rec.RemoteIP, "err", err)
		s.setError("record connection: " + err.Error())
		a.refuse(s, socketd.ReasonHistoryUnavailable, err.Error, c.row)
		c.endSpanRefused(socketd.ReasonHistoryUnavailable, err.Error())
		a.drop(c)
		return
	}
	s.connected.Add(1)

	linger := a.cfg.LingerTimeout
	if a.register(c) {
		if c.run() {
			return // handleExit ends the connection
		}
		c.releaseUser()
		if c.rec.State == socketd.ConnKilled {
			linger = 0 // asked to stop before it started
		}
	} else {
		c.rec.State, c.rec.Reason, c.rec.Error = socketd.ConnRefused, socketd.ReasonShuttingDown, "socketd is shutting down"
		s.countRefusal(socketd.ReasonShuttingDown)
		c.releaseUser()
		linger = 0 // no handler ran: there is no output to protect
	}
	// No handler runs: nothing to stop, and the copy is closed below,
	// which Connections must not read any more.
	c.mu.Lock()
	c.exited = true
	c.mu.Unlock()
	if c.rec.PID == 0 {
		endOutput(fd) // no handler ran, so its exit did not
	}
	a.closeConn(fd, linger, c.closed)
}

// describe fills in who connected to j and where: the addresses, the
// remote one as def's record_remote_ip lets the history keep it, or a unix
// socket's peer. It returns the whole remote address (invalid for a unix
// socket's peer).
func (j *job) describe(rec *socketd.Connection, def *definition) netip.AddrPort {
	if j.l.spec.Network == "unix" {
		// No addresses: the peer is who connected.
		if cred, err := unix.GetsockoptUcred(j.fd, unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid, uid, gid := int(cred.Pid), int(cred.Uid), int(cred.Gid)
			rec.PeerPID, rec.PeerUID, rec.PeerGID = &pid, &uid, &gid
		}
		return netip.AddrPort{}
	}
	local := j.l.local
	if !local.IsValid() {
		local = localAddr(j.fd)
	}
	rec.RemoteIP, rec.RemotePort = socketd.RecordedRemote(def.sock.RecordRemoteIP, j.remote)
	rec.LocalIP, rec.LocalPort = local.Addr().String(), int(local.Port())
	return j.remote
}

// drop closes connection c, refused before its row was begun, and gives
// back what serve holds for it.
func (a *Activator) drop(c *conn) {
	unix.Close(c.fd)
	a.release(c.s)
	c.leaveSource()
	a.wg.Done()
}

// row returns c's row, as begun so far.
func (c *conn) row() socketd.Connection { return c.rec }

// refusalText is why c may not start its handler, for refuse.
func (c *conn) refusalText() string { return c.refusal }

// leaveSource counts c gone from its source.
func (c *conn) leaveSource() {
	if c.src.IsValid() {
		c.s.sources.leave(c.src)
	}
}

// begun is called once c's row is committed or has failed to be. The
// connection goes on either way: its handler may have started already.
func (c *conn) begun(err error) {
	if err != nil {
		c.recordFailed(err)
	}
}

// recordFailed reports that c's row could not be written.
func (c *conn) recordFailed(err error) {
	c.s.setError("record connection: " + err.Error())
	c.a.log.ErrorContext(c.logContext(), "record", "socket", c.s.name, "connection_id", c.rec.ID, "err", err)
}

// closed finishes the row of c, whose connection is closed, with its byte
// counts. It may run on the lingerer's goroutine, so it does not wait: the
// rest of a stderr capture still being read is waited for on a goroutine.
func (c *conn) closed(in, out int64) {
	c.rec.BytesIn, c.rec.BytesOut = in, out
	c.s.bytesIn.Add(in)
	c.s.bytesOut.Add(out)
	c.s.connected.Add(-1)
	if c.log != nil {
		go c.finish()
		return
	}
	c.finish()
}

// finish records the end of c. Its slots are given back at once: the
// connection and its handler are gone, and the row may wait for a commit
// with later connections, which a socket at its limit could not accept.
// The connection ends once its row is committed, so that Kill and Close
// return with the row finished.
func (c *conn) finish() {
	if c.log != nil {
		c.rec.Log = c.log.wait()
	}
	end := time.Now()
	ended, ms := end.UTC(), end.Sub(c.start).Milliseconds()
	c.rec.EndedAt, c.rec.DurationMS = &ended, &ms
	c.a.release(c.s)
	c.leaveSource()
	c.recordDuration(end)
	c.endSpan(&c.rec, end)
	c.a.cfg.Recorder.FinishConnectionAsync(&c.rec, c.finished)
}

// finished ends c once its row is finished or has failed to be.
func (c *conn) finished(err error) {
	a := c.a
	if err != nil {
		c.recordFailed(err)
	}
	a.unregister(c)
	close(c.done)
	a.wg.Done()
}

// release gives back the slots taken for one connection of s.
func (a *Activator) release(s *socket) {
	<-a.slots
	s.slots.give()
}

// register makes c known to Kill and Close. It returns false once Close has
// begun: the handler must not start then.
func (a *Activator) register(c *conn) bool {
	a.connMu.Lock()
	defer a.connMu.Unlock()
	if a.closing {
		return false
	}
	a.conns[c.rec.ID] = c
	c.live = c.rec
	return true
}

// Connections returns the running connections of the named socket, oldest
// first, as their rows began, with the handler's pid and, on TCP, the bytes
// received from and acknowledged by the peer so far (TCP_INFO on socketd's
// copy).
func (a *Activator) Connections(name string) []socketd.Connection {
	a.connMu.Lock()
	var list []*conn
	for _, c := range a.conns {
		if c.s.name == name {
			list = append(list, c)
		}
	}
	a.connMu.Unlock()
	out := make([]socketd.Connection, 0, len(list))
	for _, c := range list {
		c.mu.Lock()
		if !c.exited {
			rec := c.live
			rec.PID = c.pid
			// Not exited: socketd's copy is still open.
			if c.fd >= 0 && rec.PeerUID == nil {
				rec.BytesIn, rec.BytesOut = tcpBytes(c.fd, false)
			}
			out = append(out, rec)
		}
		c.mu.Unlock()
	}
	slices.SortFunc(out, func(x, y socketd.Connection) int { return cmp.Compare(x.ID, y.ID) })
	return out
}

func (a *Activator) unregister(c *conn) {
	a.connMu.Lock()
	if a.conns[c.rec.ID] == c {
		delete(a.conns, c.rec.ID)
	}
	a.connMu.Unlock()
}

// exitState classifies how the handler ended, as systemd does for a
// service's main process: a clean exit is status 0 or death by SIGHUP,
// SIGINT, SIGTERM or SIGPIPE (SuccessExitStatus's defaults; SIGPIPE is how
// a handler usually ends when its client goes away), and IgnoreExitStatus
// (ExecStart=-) accepts anything. A handler socketd stopped is killed.
func exitState(ws unix.WaitStatus, stopped, ignore bool) socketd.ConnectionState {
	switch {
	case stopped:
		return socketd.ConnKilled
	case ignore:
		return socketd.ConnExited
	case ws.Exited() && ws.ExitStatus() == 0:
		return socketd.ConnExited
	case ws.Signaled():
		switch ws.Signal() {
		case unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGPIPE:
			return socketd.ConnExited
		}
	}
	return socketd.ConnFailed
}
