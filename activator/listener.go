package activator

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// Accept error backoff, for errors that would repeat at once (out of file
// descriptors or memory).
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// listenSpec is what a listener is bound for: a listen address, as
// ParseListen gives it, the socket's options, and whether the listener is
// handed to a service (accept: false) rather than accepted on. A change of
// any binds anew.
type listenSpec struct {
	socketd.ListenAddr
	opts    socketd.SocketOptions
	service bool
}

// listener is one bound address of a socket and its accept loop, or one of
// the sockets handed to its service.
type listener struct {
	spec  listenSpec
	addr  string         // the address actually bound, for status
	local netip.AddrPort // every connection's local address, unless bound to a wildcard
	f     *os.File       // the listening socket
	rc    syscall.RawConn
	// fd is the socket's descriptor for a service listener, blocking, as
	// the service gets it; -1 for an accepting one (see rc).
	fd   int
	file os.FileInfo // a unix socket's file, removed at close if still this one
	done chan struct{}
	once sync.Once

	// The accept loop's own state: accept4 writes the peer address here,
	// so accepting allocates nothing.
	rsa    unix.RawSockaddrAny
	rsaLen uint32
	nfd    int
	errno  unix.Errno
	try    func(fd uintptr) bool
}

// boundSocket is what net.Listen and net.ListenPacket return that listen
// needs.
type boundSocket interface {
	File() (*os.File, error)
	Close() error
	SyscallConn() (syscall.RawConn, error)
}

// listen binds spec. net.Listen does the binding (dual stack for a bare
// port, SO_REUSEADDR, the backlog), with the options set before the bind;
// the socket is then kept as an *os.File, because a net.Listener's RawConn
// cannot wait for readiness while an *os.File's can, and that is what
// accept4 on the raw fd needs.
func listen(spec listenSpec) (*listener, error) {
	var optErr error
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		if err := c.Control(func(fd uintptr) { optErr = setOptions(int(fd), network, &spec.opts) }); err != nil {
			return err
		}
		return optErr
	}}
	var (
		sock  boundSocket
		local net.Addr
		file  os.FileInfo
		err   error
	)
	switch spec.Network {
	case "udp", "udp4", "udp6":
		var pc net.PacketConn
		if pc, err = lc.ListenPacket(context.Background(), spec.Network, spec.Address); err == nil {
			sock, local = pc.(*net.UDPConn), pc.LocalAddr()
		}
	case "unix":
		var ul *net.UnixListener
		if ul, file, err = bindUnix(lc, spec); err == nil {
			sock, local = ul, ul.Addr()
		}
	default:
		var ln net.Listener
		if ln, err = lc.Listen(context.Background(), spec.Network, spec.Address); err == nil {
			sock, local = ln.(*net.TCPListener), ln.Addr()
		}
	}
	if err != nil {
		return nil, err
	}
	if b := spec.opts.Backlog; b > 0 && !spec.Datagram() {
		// listen(2) again sets the queue's length.
		rc, err := sock.SyscallConn()
		if err == nil {
			if err = rc.Control(func(fd uintptr) { optErr = unix.Listen(int(fd), b) }); err == nil {
				err = optErr
			}
		}
		if err != nil {
			sock.Close()
			removeUnix(spec.Address, file)
			return nil, fmt.Errorf("backlog %d: %w", b, err)
		}
	}
	// File returns a non-blocking duplicate registered with the netpoller.
	f, err := sock.File()
	sock.Close()
	if err != nil {
		removeUnix(spec.Address, file)
		return nil, err
	}
	l := &listener{spec: spec, addr: local.String(), f: f, fd: -1, done: make(chan struct{})}
	l.file = file
	if spec.service {
		// Fd makes it blocking, as the service expects its sockets:
		// socketd itself waits for them with epoll only.
		l.fd = int(f.Fd())
	} else if l.rc, err = f.SyscallConn(); err != nil {
		l.close()
		return nil, err
	}
	var ap netip.AddrPort
	switch a := local.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	if ap.IsValid() && !ap.Addr().IsUnspecified() {
		l.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	l.try = l.tryAccept
	return l, nil
}

// setOptions sets o on listening socket fd before it is bound. Go has made
// an IPv6 socket dual stack, unless it binds an IPv6 address only.
func setOptions(fd int, network string, o *socketd.SocketOptions) error {
	type opt struct {
		name            string
		level, opt, val int
		on              bool
	}
	opts := []opt{
		{"reuse_port", unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, o.ReusePort},
		{"free_bind", unix.SOL_IP, unix.IP_FREEBIND, 1, o.FreeBind},
		{"keep_alive", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, o.KeepAlive},
		{"keep_alive_time", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, socketd.Seconds(o.KeepAliveTime), o.KeepAliveTime != ""},
		{"keep_alive_interval", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, socketd.Seconds(o.KeepAliveInterval), o.KeepAliveInterval != ""},
		{"keep_alive_probes", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, o.KeepAliveProbes, o.KeepAliveProbes > 0},
		{"no_delay", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1, o.NoDelay},
		{"defer_accept", unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, socketd.Seconds(o.DeferAccept), o.DeferAccept != ""},
		{"receive_buffer", unix.SOL_SOCKET, unix.SO_RCVBUF, o.ReceiveBuffer, o.ReceiveBuffer > 0},
		{"send_buffer", unix.SOL_SOCKET, unix.SO_SNDBUF, o.SendBuffer, o.SendBuffer > 0},
	}
	// Validate refuses options for kinds of socket a definition lacks;
	// those it has are set on the sockets they apply to.
	switch network {
	case "udp", "udp4", "udp6":
		opts = slices.DeleteFunc(opts, func(x opt) bool { return x.level == unix.IPPROTO_TCP || x.opt == unix.SO_KEEPALIVE })
	case "unix":
		opts = slices.DeleteFunc(opts, func(x opt) bool {
			return x.level != unix.SOL_SOCKET || x.opt != unix.SO_RCVBUF && x.opt != unix.SO_SNDBUF
		})
	}
	if network == "tcp6" || network == "udp6" {
		switch o.BindIPv6Only {
		case socketd.BindIPv6Both:
			opts = append(opts, opt{"bind_ipv6_only", unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0, true})
		case socketd.BindIPv6Only:
			opts = append(opts, opt{"bind_ipv6_only", unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1, true})
		}
	}
	for _, x := range opts {
		if !x.on {
			continue
		}
		if err := unix.SetsockoptInt(fd, x.level, x.opt, x.val); err != nil {
			return fmt.Errorf("%s: %w", x.name, err)
		}
	}
	if d := o.BindToDevice; d != "" && network != "unix" {
		if err := unix.BindToDevice(fd, d); err != nil {
			return fmt.Errorf("bind_to_device %s: %w", d, err)
		}
	}
	return nil
}

// close stops the accept loop and closes the listening socket. Accepted
// connections are not affected.
func (l *listener) close() {
	l.once.Do(func() {
		close(l.done)
		l.f.Close()
		removeUnix(l.spec.Address, l.file)
	})
}

// waitPending waits in the netpoller until a connection waits to be
// accepted, or the listener closes (an error then).
func (l *listener) waitPending() error {
	return l.rc.Read(func(fd uintptr) bool {
		pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(pfd[:], 0)
		return n > 0
	})
}

// accept waits in the netpoller for a connection and returns its fd, which
// is blocking and close-on-exec, ready to be a handler's stdin and stdout.
func (l *listener) accept() (int, netip.AddrPort, error) {
	if err := l.rc.Read(l.try); err != nil {
		return -1, netip.AddrPort{}, err
	}
	if l.errno != 0 {
		return -1, netip.AddrPort{}, l.errno
	}
	return l.nfd, sockaddrAddrPort(&l.rsa), nil
}

// tryAccept runs accept4 on the non-blocking listening fd; it returns false
// to wait for readiness. Without SOCK_NONBLOCK the new fd is blocking.
func (l *listener) tryAccept(fd uintptr) bool {
	for {
		l.rsaLen = unix.SizeofSockaddrAny
		nfd, _, e := unix.Syscall6(unix.SYS_ACCEPT4, fd,
			uintptr(unsafe.Pointer(&l.rsa)), uintptr(unsafe.Pointer(&l.rsaLen)),
			unix.SOCK_CLOEXEC, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		l.nfd, l.errno = int(nfd), e
		return true
	}
}

// acceptLoop accepts connections until the listener closes. It takes a
// slot of the socket and one of the activator before each accept, so that at
// either limit connections wait in the kernel's backlog instead of being
// accepted and dropped. The socket's comes first: a socket at its own limit
// holds no global slot while it waits. With on_limit refuse, the socket's
// slot is taken after the accept instead, and a connection beyond the limit
// is refused. A client the access rules deny is refused at once.
func (a *Activator) acceptLoop(s *socket, l *listener) {
	defer a.wg.Done()
	var backoff time.Duration
	for {
		changed := *s.changed.Load()
		def := s.def.Load()
		if len(def.sock.Listen) > 1 {
			// Another listener of the socket may need the slot: hold
			// none while this one has nothing to accept.
			if err := l.waitPending(); err != nil {
				return // closed
			}
		}
		if !s.rate.wait(def.sock.RateLimit, l.done, changed) || !def.sock.Refuses() && !s.slots.take(l.done, changed) {
			if isClosed(l.done) {
				return
			}
			continue // a new definition: its limits apply
		}
		refuses := def.sock.Refuses()
		giveSocketSlot := func() {
			if !refuses {
				s.slots.give()
			}
		}
		select {
		case a.slots <- struct{}{}:
		case <-l.done:
			giveSocketSlot()
			return
		}
		fd, remote, err := l.accept()
		if err != nil {
			<-a.slots
			giveSocketSlot()
			select {
			case <-l.done:
				return
			default:
			}
			if retryNow(err) {
				continue
			}
			if backoff == 0 {
				a.log.Error("accept", "socket", s.name, "address", l.addr, "err", err)
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			if !sleep(backoff, l.done, nil) {
				return
			}
			continue
		}
		backoff = 0
		s.accepted.Add(1)
		j := job{s: s, l: l, fd: fd, remote: remote, start: time.Now()}
		if a.admit(&j, s.def.Load(), refuses) {
			a.wg.Add(1)
			a.dispatch(j)
			continue
		}
		giveSocketSlot()
		<-a.slots
	}
}

// admit decides whether accepted connection j may be served, or refuses
// it: the access rules, the source's limits (j then counts in its
// source), and with on_limit refuse, the socket's slot.
func (a *Activator) admit(j *job, def *definition, refuses bool) bool {
	s := j.s
	if ip := j.remote.Addr(); ip.IsValid() {
		if def.denies(ip) {
			a.refuseAccepted(*j, socketd.ReasonDenied, func() string { return "the access rules deny " + def.shownAddr(ip) }, "")
			return false
		}
		src := def.sock.SourcePrefix(ip)
		if reason := s.sources.enter(&def.sock.Limits, src, j.start); reason != "" {
			a.refuseAccepted(*j, reason, func() string { return sourceRefusal(reason, def.shownSource(src), &def.sock.Limits) }, "")
			return false
		}
		j.src = src
	}
	if refuses && !s.slots.tryTake() {
		if j.src.IsValid() {
			s.sources.leave(j.src)
		}
		a.refuseAccepted(*j, socketd.ReasonMaxConnections, func() string {
			return fmt.Sprintf("the socket has max_connections (%d) connections", def.sock.Max())
		}, def.sock.LimitMessage)
		return false
	}
	return true
}

// sourceRefusal says why source src (as shownSource writes it) was
// refused, for humans.
func sourceRefusal(reason, src string, l *socketd.Limits) string {
	if reason == socketd.ReasonRate {
		return fmt.Sprintf("%s is over its source_rate_limit (%g a second, %d at once)",
			src, l.SourceRateLimit.PerSecond, l.SourceRateLimit.Burst)
	}
	return fmt.Sprintf("%s has max_connections_per_source (%d) connections", src, l.MaxConnectionsPerSource)
}

// refuseAccepted refuses connection j, accepted but not served: it writes
// message (if any) to the client, closes the connection and records the
// refusal.
func (a *Activator) refuseAccepted(j job, reason string, detail func() string, message string) {
	if message != "" {
		// The client gets the line if its buffer takes it now; a
		// refusal never waits for a client.
		_, _ = unix.SendmsgN(j.fd, []byte(message+"\r\n"), nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		endOutput(j.fd)
	}
	a.refuse(j.s, reason, detail, func() socketd.Connection {
		rec := socketd.Connection{Socket: j.s.name, StartedAt: j.start.UTC()}
		j.describe(&rec, j.s.def.Load())
		return rec
	})
	unix.Close(j.fd)
}

// retryNow reports whether an accept error concerns only the connection at
// hand, so the next accept can follow at once. accept(2) reports a new
// connection's pending network errors this way.
func retryNow(err error) bool {
	switch err {
	case unix.ECONNABORTED, unix.EPROTO, unix.EPERM, unix.ENETDOWN, unix.ENOPROTOOPT,
		unix.EHOSTDOWN, unix.ENONET, unix.EHOSTUNREACH, unix.EOPNOTSUPP, unix.ENETUNREACH:
		return true
	}
	return false
}

// sockaddrAddrPort decodes an IPv4 or IPv6 socket address. IPv4-mapped IPv6
// addresses come out as IPv4, as people write them.
func sockaddrAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), ntohs(&p.Port))
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), ntohs(&p.Port))
	}
	return netip.AddrPort{}
}

// ntohs reads a port stored in network byte order.
func ntohs(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// localAddr returns the local address of a connection accepted on a
// wildcard listener.
func localAddr(fd int) netip.AddrPort {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd),
		uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return netip.AddrPort{}
	}
	return sockaddrAddrPort(&rsa)
}
