package socketd

import (
	"os"
	"strings"
	"time"
)

// SocketOptions are the options of a socket's listening sockets, as the
// [Socket] section of a systemd socket unit has them. Connections inherit
// those that apply to them (keep-alive, no-delay, buffers). The zero value
// leaves everything to the kernel's defaults.
type SocketOptions struct {
	// Backlog is Backlog=, the length of the queue of connections not yet
	// accepted; 0 is the kernel's maximum (net.core.somaxconn).
	Backlog int `json:"backlog,omitempty"`
	// BindIPv6Only is BindIPv6Only=: BindIPv6Default (the kernel's
	// setting), BindIPv6Both (an IPv6 wildcard takes IPv4 too) or
	// BindIPv6Only.
	BindIPv6Only string `json:"bind_ipv6_only,omitempty"`
	// ReusePort is ReusePort=: SO_REUSEPORT.
	ReusePort bool `json:"reuse_port,omitempty"`
	// KeepAlive is KeepAlive=: TCP keep-alive probes on connections, after
	// KeepAliveTime of silence (KeepAliveTimeSec=), every KeepAliveInterval
	// (KeepAliveIntervalSec=), KeepAliveProbes times (KeepAliveProbes=);
	// the kernel's defaults where empty.
	KeepAlive         bool   `json:"keep_alive,omitempty"`
	KeepAliveTime     string `json:"keep_alive_time,omitempty"`
	KeepAliveInterval string `json:"keep_alive_interval,omitempty"`
	KeepAliveProbes   int    `json:"keep_alive_probes,omitempty"`
	// NoDelay is NoDelay=: TCP_NODELAY.
	NoDelay bool `json:"no_delay,omitempty"`
	// DeferAccept is DeferAcceptSec=, a duration: a connection is accepted
	// once the client has sent something, or after this long.
	DeferAccept string `json:"defer_accept,omitempty"`
	// FreeBind is FreeBind=: bind an address the host does not have (yet).
	FreeBind bool `json:"free_bind,omitempty"`
	// ReceiveBuffer and SendBuffer are ReceiveBuffer= and SendBuffer=, in
	// bytes (the kernel doubles them for its bookkeeping).
	ReceiveBuffer int `json:"receive_buffer,omitempty"`
	SendBuffer    int `json:"send_buffer,omitempty"`
	// BindToDevice is BindToDevice=: only this network interface.
	BindToDevice string `json:"bind_to_device,omitempty"`
	// SocketUser and SocketGroup are SocketUser= and SocketGroup=: the
	// owner of a unix socket's file, a name or a number; empty is
	// socketd's. SocketMode is SocketMode=, its permissions in octal;
	// empty is 0666.
	SocketUser  string `json:"socket_user,omitempty"`
	SocketGroup string `json:"socket_group,omitempty"`
	SocketMode  string `json:"socket_mode,omitempty"`
}

// BindIPv6Only values.
const (
	BindIPv6Default = "default"
	BindIPv6Both    = "both"
	BindIPv6Only    = "ipv6-only"
)

// Bounds the kernel sets on socket options.
const (
	maxBacklog        = 65535
	maxKeepAlive      = 32767 * time.Second // MAX_TCP_KEEPIDLE and MAX_TCP_KEEPINTVL
	maxKeepAliveCount = 127                 // MAX_TCP_KEEPCNT
	maxBuffer         = 1 << 30
	maxDeviceName     = 15 // IFNAMSIZ less the NUL
)

// listenKinds says what kinds of listen entries a socket has, for the
// options that apply to some kinds only.
type listenKinds struct {
	tcp, udp, unixFile, unixAbstract, ipv6 bool
}

func kindsOf(parsed map[int]listen) listenKinds {
	var k listenKinds
	for _, l := range parsed {
		switch {
		case l.abstract():
			k.unixAbstract = true
		case l.kind == listenUnix:
			k.unixFile = true
		case l.kind == listenUDP:
			k.udp = true
		default:
			k.tcp = true
		}
		k.ipv6 = k.ipv6 || l.ipv6()
	}
	return k
}

// validate adds a problem with o to add, with pointers at the fields. k
// says what the socket listens on: an option for a kind of socket it does
// not have is a mistake worth pointing out.
func (o *SocketOptions) validate(add func(pointer, format string, args ...any), k listenKinds) {
	ip := k.tcp || k.udp
	stream := k.tcp || k.unixFile || k.unixAbstract
	for _, f := range []struct {
		pointer string
		set     bool
		applies bool
		what    string
	}{
		{"/backlog", o.Backlog != 0, stream, "stream sockets"},
		{"/reuse_port", o.ReusePort, ip, "IP addresses"},
		{"/free_bind", o.FreeBind, ip, "IP addresses"},
		{"/bind_to_device", o.BindToDevice != "", ip, "IP addresses"},
		{"/keep_alive", o.KeepAlive, k.tcp, "TCP addresses"},
		{"/no_delay", o.NoDelay, k.tcp, "TCP addresses"},
		{"/defer_accept", o.DeferAccept != "", k.tcp, "TCP addresses"},
		{"/socket_user", o.SocketUser != "", k.unixFile, "unix socket paths"},
		{"/socket_group", o.SocketGroup != "", k.unixFile, "unix socket paths"},
		{"/socket_mode", o.SocketMode != "", k.unixFile, "unix socket paths"},
	} {
		if f.set && !f.applies {
			add(f.pointer, "applies to %s, and listen has none", f.what)
		}
	}
	if o.Backlog < 0 || o.Backlog > maxBacklog {
		add("/backlog", "must be from 1 to %d, or 0 for the kernel's maximum", maxBacklog)
	}
	switch o.BindIPv6Only {
	case "", BindIPv6Default:
	case BindIPv6Both, BindIPv6Only:
		if !k.ipv6 {
			add("/bind_ipv6_only", "applies to IPv6 addresses, and listen has none")
		}
	default:
		add("/bind_ipv6_only", "must be one of default, both, ipv6-only")
	}
	if _, err := ParseSocketMode(o.SocketMode); err != nil {
		add("/socket_mode", "%v", err)
	}
	// Giving the file away needs root (CAP_CHOWN).
	notRoot := os.Geteuid() != 0
	if u := o.SocketUser; u != "" {
		if _, err := lookupOwner(u); err != nil {
			add("/socket_user", "%v", err)
		} else if notRoot {
			add("/socket_user", "needs socketd to run as root")
		}
	}
	if g := o.SocketGroup; g != "" {
		if _, err := lookupGroup(g); err != nil {
			add("/socket_group", "%v", err)
		} else if notRoot {
			add("/socket_group", "needs socketd to run as root")
		}
	}
	for _, f := range []struct{ pointer, value string }{
		{"/keep_alive_time", o.KeepAliveTime}, {"/keep_alive_interval", o.KeepAliveInterval},
	} {
		if f.value == "" {
			continue
		}
		if !o.KeepAlive {
			add(f.pointer, "needs keep_alive: true")
		}
		if d, err := ParseDuration(f.value); err != nil {
			add(f.pointer, "%v", err)
		} else if d < time.Second || d > maxKeepAlive {
			add(f.pointer, "must be from 1s to %s", maxKeepAlive)
		}
	}
	if o.KeepAliveProbes != 0 {
		if !o.KeepAlive {
			add("/keep_alive_probes", "needs keep_alive: true")
		}
		if o.KeepAliveProbes < 1 || o.KeepAliveProbes > maxKeepAliveCount {
			add("/keep_alive_probes", "must be from 1 to %d", maxKeepAliveCount)
		}
	}
	if d, err := ParseDuration(o.DeferAccept); err != nil {
		add("/defer_accept", "%v", err)
	} else if d > maxKeepAlive {
		add("/defer_accept", "must be at most %s", maxKeepAlive)
	}
	for _, f := range []struct {
		pointer string
		value   int
	}{{"/receive_buffer", o.ReceiveBuffer}, {"/send_buffer", o.SendBuffer}} {
		if f.value < 0 || f.value > maxBuffer {
			add(f.pointer, "must be from 1 to %d bytes, or 0 for the kernel's default", maxBuffer)
		}
	}
	if d := o.BindToDevice; d != "" &&
		(len(d) > maxDeviceName || d == "." || d == ".." || strings.ContainsAny(d, "/: \t\n\x00")) {
		add("/bind_to_device", "is not a network interface name")
	}
}

// Seconds returns a duration the options hold (validated) in whole
// seconds, at least one if not zero, as the kernel takes them.
func Seconds(s string) int {
	d, err := ParseDuration(s)
	if err != nil || d == 0 {
		return 0
	}
	return max(1, int((d+time.Second-1)/time.Second))
}

// ParseSocketMode parses a unix socket file's mode, in octal; "" is 0666,
// as systemd's SocketMode= defaults.
func ParseSocketMode(s string) (uint32, error) { return parseMode(s, 0o666) }

// SocketOwner returns the owner a unix socket's file gets: -1 for socketd's
// own user or group where the options set none.
func (o *SocketOptions) SocketOwner() (uid, gid int, err error) {
	uid, gid = -1, -1
	if o.SocketUser != "" {
		u, err := lookupOwner(o.SocketUser)
		if err != nil {
			return 0, 0, err
		}
		uid = int(u)
	}
	if o.SocketGroup != "" {
		g, err := lookupGroup(o.SocketGroup)
		if err != nil {
			return 0, 0, err
		}
		gid = int(g)
	}
	return uid, gid, nil
}

// lookupOwner returns the uid of user name or number s; a number need not
// be in the user database.
func lookupOwner(s string) (uint32, error) {
	if isDigits(s) {
		return parseID(s)
	}
	uid, _, err := lookupUser(s)
	return uid, err
}
