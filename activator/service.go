package activator

import (
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// A service that ends within quickRun while its sockets are still ready
// has likely left them as they were; after quickRuns such runs in a row,
// the next start waits, from quickDelayMin doubling to quickDelayMax,
// rather than spinning. Nothing ever stops the socket for good, as
// systemd's trigger limit does.
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
// has exited. A service is bound to one set of listeners: a change of them
// stops it, and the next waits for its last run to end.
type service struct {
	a    *Activator
	s    *socket
	fds  []int // copies of the listeners' descriptors, in listen order
	p    *poller
	prev *service // the service before this one on the socket, or nil

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
	sv := &service{a: a, s: s, p: p, prev: s.svc,
		stopped: make(chan struct{}), done: make(chan struct{})}
	// Its own copies: a listener may close while a run starts, and its
	// number be reused before the service gets it.
	for _, l := range s.listeners {
		fd, err := unix.FcntlInt(uintptr(l.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err == nil {
			sv.fds = append(sv.fds, fd)
			err = p.add(fd)
		}
		if err != nil {
			sv.close()
			return err
		}
	}
	s.svc = sv
	a.wg.Add(1)
	go sv.run()
	return nil
}

// stop stops watching the sockets. A service running goes on until it
// exits.
func (sv *service) stop() {
	sv.stopOnce.Do(func() {
		close(sv.stopped)
		sv.p.f.Close()
	})
}

// close closes what the service holds, once it is stopped and no run
// needs the sockets any more.
func (sv *service) close() {
	sv.stop()
	for _, fd := range sv.fds {
		unix.Close(fd)
	}
}

// run starts the service whenever a socket is ready, one run at a time,
// until stop.
func (sv *service) run() {
	a, s := sv.a, sv.s
	defer a.wg.Done()
	defer close(sv.done)
	defer sv.close()
	if sv.prev != nil {
		// The service of the listeners before may still run.
		<-sv.prev.done
		sv.prev = nil
	}
	var delay time.Duration
	quick := 0
	for {
		fd, err := sv.p.wait()
		if err != nil {
			return // stopped
		}
		select {
		case s.slots <- struct{}{}:
		case <-sv.stopped:
			return
		}
		select {
		case a.slots <- struct{}{}:
		case <-sv.stopped:
			<-s.slots
			return
		}
		start := time.Now()
		c := sv.start(fd, start)
		if c != nil {
			<-c.done
		}
		s.servicePID.Store(0)

		// A run that left its sockets ready at once may not have
		// read them: see quickRuns.
		if time.Since(start) >= quickRun || !sv.p.ready() {
			quick, delay = 0, 0
			continue
		}
		if quick++; quick <= quickRuns {
			continue
		}
		if delay == 0 {
			a.log.Warn("service leaves its sockets ready; delaying its starts", "socket", s.name, "runs", quick)
		}
		delay = min(max(2*delay, quickDelayMin), quickDelayMax)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-sv.stopped:
			t.Stop()
			return
		}
	}
}

// start records a run of the service, which socket fd woke, and starts it.
// It returns the run, which ends when its done is closed, or nil if it was
// refused before it was recorded; either way the slots taken for it are
// given back.
func (sv *service) start(fd int, start time.Time) *conn {
	a, s := sv.a, sv.s
	c := &conn{a: a, s: s, def: s.def.Load(), fd: -1, listenFDs: sv.fds, start: start,
		done: make(chan struct{}), logFD: -1}
	c.rec = socketd.Connection{Socket: s.name, State: socketd.ConnRunning, StartedAt: start.UTC()}
	if local := localAddr(fd); local.IsValid() {
		c.rec.LocalIP, c.rec.LocalPort = local.Addr().String(), int(local.Port())
	}
	if remote := peekSender(fd); remote.IsValid() {
		// The datagram that woke the service: who asked for it.
		c.rec.RemoteIP, c.rec.RemotePort = remote.Addr().String(), int(remote.Port())
	}
	if err := a.cfg.Recorder.BeginConnectionAsync(&c.rec, c.begun); err != nil {
		a.log.Error("record", "socket", s.name, "err", err)
		s.setError("record connection: " + err.Error())
		s.refused.Add(1)
		a.release(s)
		return nil
	}
	a.wg.Add(1)
	s.accepted.Add(1)
	s.connected.Add(1)
	if !a.register(c) {
		c.rec.State = socketd.ConnRefused
		c.rec.Error = "socketd is shutting down"
		s.refused.Add(1)
		c.closed(0, 0)
		return c
	}
	if !c.run() {
		c.closed(0, 0)
		return c
	}
	s.servicePID.Store(int64(c.rec.PID))
	return c
}

// peekSender returns the sender of the datagram waiting on fd, without
// taking it, or the zero AddrPort if fd is not a datagram socket.
func peekSender(fd int) netip.AddrPort {
	if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_DGRAM {
		return netip.AddrPort{}
	}
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	_, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), 0, 0, unix.MSG_PEEK|unix.MSG_DONTWAIT,
		uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return netip.AddrPort{}
	}
	return sockaddrAddrPort(&rsa)
}
