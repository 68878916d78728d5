package activator

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// A service that ends within quickRun and leaves its sockets as they were
// (the same connections or datagrams wait) has likely not read them; after
// quickRuns such runs in a row, the next start waits, from quickDelayMin
// doubling to quickDelayMax, rather than spinning. Nothing ever stops the
// socket for good, as systemd's trigger limit does.
const (
	quickRun      = time.Second
	quickRuns     = 5
	quickDelayMin = 100 * time.Millisecond
	quickDelayMax = 10 * time.Second
)

// service runs the one service of an accept: false socket, as systemd does
// for Accept=no and inetd for wait: socketd keeps the listening sockets and
// accepts nothing; when one is ready (a connection or a datagram waits), it
// starts the service with them, and watches them again once the service
// has exited. A service is bound to one set of listeners: when they change,
// or the socket is disabled or deleted, it is stopped (a run gets its kill
// signal), and the socket binds again only once that run has ended, since
// the run holds the sockets too.
type service struct {
	a     *Activator
	s     *socket
	fds   []int  // copies of the listeners' descriptors, in listen order
	dgram []bool // dgram[i]: fds[i] is a datagram socket
	p     *poller
	prev  *service // the socket's service before this one, or nil

	mu  sync.Mutex
	cur *conn // the running run, or nil

	stopOnce sync.Once
	stopped  chan struct{}
	done     chan struct{} // closed once run has returned
}

// startService starts the service of s over its listeners, all bound. The
// caller holds reconcileMu.
func (a *Activator) startService(s *socket) error {
	p, err := newPoller()
	if err != nil {
		return err
	}
	sv := &service{a: a, s: s, p: p, prev: a.services[s.name],
		stopped: make(chan struct{}), done: make(chan struct{})}
	// Its own copies: a listener may close while a run starts, and its
	// number be reused before the service gets it.
	for _, l := range s.listeners {
		fd, err := unix.FcntlInt(uintptr(l.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err == nil {
			sv.fds = append(sv.fds, fd)
			sv.dgram = append(sv.dgram, l.spec.Datagram())
			err = p.add(fd)
		}
		if err != nil {
			sv.close()
			return err
		}
	}
	s.svc = sv
	a.services[s.name] = sv
	a.wg.Add(1)
	go sv.run()
	return nil
}

// waitingForService reports whether s must wait with binding until the
// service before has ended: it still runs, holding its sockets. The caller
// holds reconcileMu.
func (a *Activator) waitingForService(s *socket) bool {
	prev := a.services[s.name]
	return prev != nil && prev != s.svc && !isClosed(prev.done)
}

// serviceEnded binds the socket of a service that has ended, if it waited
// for that (see waitingForService).
func (a *Activator) serviceEnded(sv *service) {
	a.reconcileMu.Lock()
	defer a.reconcileMu.Unlock()
	name := sv.s.name
	if a.services[name] == sv {
		delete(a.services, name)
	}
	a.mu.RLock()
	s := a.sockets[name]
	a.mu.RUnlock()
	if !a.closed && s != nil && len(s.specs) > 0 {
		a.bind(s)
	}
}

// stop stops the service: it watches the sockets no more, and a run still
// going gets its kill signal (SIGKILL after its timeout).
func (sv *service) stop() {
	sv.stopOnce.Do(func() {
		close(sv.stopped)
		sv.p.setDeadline(time.Unix(1, 0)) // wakes wait
		sv.mu.Lock()
		if sv.cur != nil {
			sv.cur.stop()
		}
		sv.mu.Unlock()
	})
}

// close closes what the service holds, once it is stopped and no run
// needs the sockets any more.
func (sv *service) close() {
	sv.stop()
	sv.p.f.Close()
	for _, fd := range sv.fds {
		unix.Close(fd)
	}
}

// run starts the service whenever a socket is ready, one run at a time,
// until stop.
func (sv *service) run() {
	a, s := sv.a, sv.s
	defer a.wg.Done()
	defer a.serviceEnded(sv)
	defer close(sv.done)
	defer sv.close()
	if sv.prev != nil {
		// The service before may still run: bind waited for it, but
		// a socket deleted and defined again has new listeners.
		select {
		case <-sv.prev.done:
		case <-sv.stopped:
			return
		}
		sv.prev = nil
	}
	var delay time.Duration
	quick := 0
	for {
		fd, err := sv.p.wait()
		if err != nil || isClosed(sv.stopped) {
			return
		}
		changed := *s.changed.Load()
		if !s.rate.wait(s.def.Load().sock.RateLimit, sv.stopped, changed) || !s.slots.take(sv.stopped, changed) {
			if isClosed(sv.stopped) {
				return
			}
			continue // a new definition: its limits apply
		}
		select {
		case a.slots <- struct{}{}:
		case <-sv.stopped:
			s.slots.give()
			return
		}
		if isClosed(sv.stopped) {
			// Both were ready: stopped wins, or a run would start
			// with the sockets of a definition gone.
			a.release(s)
			return
		}
		before := sv.queues()
		start := time.Now()
		if c := sv.start(fd, start, before); c != nil {
			<-c.done
		}
		sv.mu.Lock()
		sv.cur = nil
		sv.mu.Unlock()
		s.servicePID.Store(0)
		if isClosed(sv.stopped) {
			return
		}

		// See quickRuns.
		if time.Since(start) >= quickRun || !sv.p.ready() || progressed(before, sv.queues()) {
			if delay > 0 {
				s.setError("")
			}
			quick, delay = 0, 0
			continue
		}
		if quick++; quick <= quickRuns {
			continue
		}
		delay = min(max(2*delay, quickDelayMin), quickDelayMax)
		msg := fmt.Sprintf("the service exits without taking what waits on its sockets; %d runs in a row; next start in %s", quick, delay)
		if delay == quickDelayMin {
			a.log.Warn("service leaves its sockets ready; delaying its starts", "socket", s.name, "runs", quick)
		}
		s.setError(msg)
		if !sleep(delay, sv.stopped, nil) {
			return
		}
	}
}

// queue is what waits on a listening socket, as far as socketd can tell
// without taking it: how many connections wait to be accepted (TCP), or
// the first datagram's sender (from) and length; n is -1 when it cannot
// tell.
type queue struct {
	n    int
	head string
	from netip.AddrPort
}

// queues returns what waits on each of the service's sockets.
func (sv *service) queues() []queue {
	qs := make([]queue, len(sv.fds))
	for i, fd := range sv.fds {
		qs[i] = queue{n: -1}
		if sv.dgram[i] {
			var buf [64]byte
			var rsa unix.RawSockaddrAny
			rsaLen := uint32(unix.SizeofSockaddrAny)
			n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
				unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_TRUNC, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&rsaLen)))
			switch {
			case e == unix.EAGAIN:
				qs[i] = queue{n: 0}
			case e == 0:
				from := sockaddrAddrPort(&rsa)
				qs[i] = queue{n: 1, from: from, head: fmt.Sprintf("%v %d %x", from, n, buf[:min(int(n), len(buf))])}
			}
		} else if ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			// For a listening socket, the kernel reports its accept
			// queue's length here.
			qs[i] = queue{n: int(ti.Unacked)}
		}
	}
	return qs
}

// progressed reports whether a run took something from its sockets: a
// queue got shorter or its first datagram changed. Where socketd cannot
// tell (a unix socket), it assumes not.
func progressed(before, after []queue) bool {
	for i := range before {
		b, a := before[i], after[i]
		if b.n < 0 || a.n < 0 {
			continue
		}
		if a.n < b.n || a.head != b.head {
			return true
		}
	}
	return false
}

// start records a run of the service, which socket fd woke (its sockets'
// queues are waiting), and starts it. It returns the run, which ends when
// its done is closed, or nil if it was refused before it was recorded;
// either way the slots taken for it are given back.
func (sv *service) start(fd int, start time.Time, waiting []queue) *conn {
	a, s := sv.a, sv.s
	c := &conn{a: a, s: s, def: s.def.Load(), fd: -1, listenFDs: sv.fds, start: start,
		done: make(chan struct{}), logFD: -1}
	c.rec = socketd.Connection{Socket: s.name, State: socketd.ConnRunning, StartedAt: start.UTC()}
	if local := localAddr(fd); local.IsValid() {
		c.rec.LocalIP, c.rec.LocalPort = local.Addr().String(), int(local.Port())
	}
	if i := slices.Index(sv.fds, fd); i >= 0 && waiting[i].from.IsValid() {
		// The datagram that woke the service: who asked for it.
		from := waiting[i].from
		c.rec.RemoteIP, c.rec.RemotePort = socketd.RecordedRemote(c.def.sock.RecordRemoteIP, from)
	}
	c.takeUser()
	if c.refusal != "" {
		a.refuse(s, socketd.ReasonNoDynamicUID, c.refusalText, c.row)
		a.release(s)
		return nil
	}
	c.startSpan()
	if err := a.cfg.Recorder.BeginConnectionAsync(&c.rec, c.begun); err != nil {
		c.releaseUser()
		a.log.Error("record", "socket", s.name, "err", err)
		s.setError("record connection: " + err.Error())
		a.refuse(s, socketd.ReasonHistoryUnavailable, err.Error, c.row)
		c.endSpanRefused(socketd.ReasonHistoryUnavailable, err.Error())
		a.release(s)
		return nil
	}
	a.wg.Add(1)
	s.accepted.Add(1)
	s.connected.Add(1)
	if !a.register(c) {
		c.rec.State, c.rec.Reason, c.rec.Error = socketd.ConnRefused, socketd.ReasonShuttingDown, "socketd is shutting down"
		s.countRefusal(socketd.ReasonShuttingDown)
		c.releaseUser()
		c.closed(0, 0)
		return c
	}
	sv.mu.Lock()
	sv.cur = c
	stopped := isClosed(sv.stopped)
	sv.mu.Unlock()
	if stopped {
		c.stop() // stop came between the check in run and now
	}
	if !c.run() {
		c.releaseUser()
		c.closed(0, 0)
		return c
	}
	s.servicePID.Store(int64(c.rec.PID))
	return c
}
