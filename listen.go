package socketd

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// Kinds of listen entries.
const (
	listenTCP  = iota // an IP stream socket
	listenUDP         // an IP datagram socket: "udp:" and an address
	listenUnix        // a unix stream socket: a path, or "@" and an abstract name
)

// DatagramPrefix starts a listen entry for a UDP socket, as systemd's
// ListenDatagram= has it: "udp:69", "udp:0.0.0.0:69", "udp:[::]:69".
const DatagramPrefix = "udp:"

// maxUnixPath is the longest unix socket address: sun_path less its NUL.
const maxUnixPath = 107

// ListenAddr is a parsed listen entry, ready for net.Listen or
// net.ListenPacket.
type ListenAddr struct {
	// Network is "tcp4" for an IPv4 address (an IPv4-mapped one too, then
	// unmapped), "tcp6" for an IPv6 one, "tcp" for a bare port and the IPv6
	// wildcard, which take IPv4 too: Go would otherwise listen on 0.0.0.0
	// with a dual-stack IPv6 socket, which systemd does not. A datagram
	// entry is "udp4", "udp6" or "udp" the same way, and a unix socket
	// "unix".
	Network string
	// Address is host:port ("" host means every address), or the unix
	// socket's path or "@" and its abstract name.
	Address string
}

// Datagram reports whether the entry is a datagram socket.
func (l ListenAddr) Datagram() bool { return strings.HasPrefix(l.Network, "udp") }

// ParseListen parses a listen entry: an address in systemd ListenStream=
// syntax, a bare port ("13063", all addresses, IPv6 and IPv4), "IPv4:port"
// or "[IPv6]:port", a unix socket's absolute path or "@" and an abstract
// name, or DatagramPrefix and an IP address as before. Port 0 lets the
// kernel pick. Host names are not accepted: a listener binds to addresses,
// and a name could resolve differently from one start to the next.
func ParseListen(s string) (ListenAddr, error) {
	l, err := parseListen(s)
	if err != nil {
		return ListenAddr{}, err
	}
	proto := "tcp"
	switch l.kind {
	case listenUnix:
		return ListenAddr{Network: "unix", Address: l.path}, nil
	case listenUDP:
		proto = "udp"
	}
	if !l.addr.IsValid() {
		return ListenAddr{Network: proto, Address: ":" + strconv.Itoa(int(l.port))}, nil
	}
	addr, network := l.addr, proto+"6"
	switch {
	case addr.Is4() || addr.Is4In6():
		addr, network = addr.Unmap(), proto+"4"
	case addr.IsUnspecified():
		// Go gives the IPv6 wildcard a dual-stack socket only as "tcp"
		// or "udp", as the kernel's default does; bind_ipv6_only may
		// change it.
		network = proto
	}
	return ListenAddr{Network: network, Address: netip.AddrPortFrom(addr, l.port).String()}, nil
}

// listen is a parsed listen entry: for IP, an address (the zero Addr for
// every address) and a port; for unix, a path.
type listen struct {
	kind int
	addr netip.Addr
	port uint16
	path string
}

func parseListen(s string) (listen, error) {
	if s == "" {
		return listen{}, fmt.Errorf("is empty")
	}
	if strings.ContainsRune(s, 0) {
		return listen{}, fmt.Errorf("contains NUL")
	}
	if s[0] == '/' || s[0] == '@' {
		return parseUnix(s)
	}
	kind := listenTCP
	if rest, ok := strings.CutPrefix(s, DatagramPrefix); ok {
		kind, s = listenUDP, rest
	}
	if port, err := parsePort(s); err == nil {
		return listen{kind: kind, port: uint16(port)}, nil
	} else if isDigits(s) {
		return listen{}, err
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return listen{}, fmt.Errorf("%q is not a port, IPv4:port, [IPv6]:port, unix socket path or @name, with %q before for a datagram socket",
			s, DatagramPrefix)
	}
	if ap.Addr().Zone() != "" {
		return listen{}, fmt.Errorf("%q: zoned IPv6 addresses are not supported", s)
	}
	return listen{kind: kind, addr: ap.Addr(), port: ap.Port()}, nil
}

// parseUnix parses a unix socket's path, or "@" and an abstract name.
func parseUnix(s string) (listen, error) {
	if len(s) > maxUnixPath {
		return listen{}, fmt.Errorf("a unix socket address is at most %d bytes", maxUnixPath)
	}
	if s[0] == '@' {
		if len(s) == 1 {
			return listen{}, fmt.Errorf("an abstract unix socket needs a name after @")
		}
		return listen{kind: listenUnix, path: s}, nil
	}
	if filepath.Clean(s) != s || strings.HasSuffix(s, "/") {
		return listen{}, fmt.Errorf("%q is not a clean path (try %q)", s, filepath.Clean(s))
	}
	return listen{kind: listenUnix, path: s}, nil
}

// abstract reports whether l is an abstract unix socket, which has no
// file.
func (l listen) abstract() bool { return l.kind == listenUnix && l.path[0] == '@' }

// wildcard reports whether l listens on every address: a bare port,
// 0.0.0.0 or [::].
func (l listen) wildcard() bool {
	return l.kind != listenUnix && (!l.addr.IsValid() || l.addr.IsUnspecified())
}

// ipv6 reports whether l may listen on IPv6.
func (l listen) ipv6() bool { return l.kind != listenUnix && (!l.addr.IsValid() || l.addr.Is6()) }

// families returns the address families l takes connections from: bit 1
// IPv4, bit 2 IPv6. An IPv6 wildcard or a bare port takes IPv4 too unless
// the socket is IPv6-only; an IPv4-mapped IPv6 address is IPv4.
func (l listen) families(v6only bool) int {
	switch {
	case l.addr.Is4() || l.addr.Is4In6():
		return 1
	case l.wildcard() && !v6only:
		return 3
	}
	return 2
}

func parsePort(s string) (int, error) {
	if !isDigits(s) {
		return 0, fmt.Errorf("%q is not a port", s)
	}
	p, err := strconv.Atoi(s)
	if err != nil || p > 65535 {
		return 0, fmt.Errorf("port %s is out of range 0-65535", s)
	}
	return p, nil
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// listenOverlaps finds the entries of a listen list that cannot be bound
// together: the same address twice, or a wildcard address (a bare port,
// 0.0.0.0 or [::]) beside any other address of the same protocol on the
// same port, since the wildcard takes the port on every address. Port 0
// never overlaps: each entry gets a port of its own. parsed holds the
// entries of list that parse; the result maps an entry's index to the
// reason.
func listenOverlaps(list []string, parsed map[int]listen, v6only bool) map[int]string {
	out := map[int]string{}
	for i := range list {
		a, ok := parsed[i]
		if !ok || (a.kind != listenUnix && a.port == 0) {
			continue
		}
		for j := range i {
			b, ok := parsed[j]
			if !ok || b.kind != a.kind || b.port != a.port {
				continue
			}
			if a.addr == b.addr && a.path == b.path {
				out[i] = fmt.Sprintf("repeats /listen/%d", j)
				break
			}
			if (a.wildcard() || b.wildcard()) && a.families(v6only)&b.families(v6only) != 0 {
				out[i] = fmt.Sprintf("overlaps /listen/%d: a wildcard address takes port %d on every address", j, a.port)
				break
			}
		}
	}
	return out
}
