package convert

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/socketd/socketd"
)

// This file holds what inetd and xinetd imports share: inetd's way of
// passing the connection, service names and ports, listen entries, and
// the argv[0] convention.

// maxDescription is the longest description socketd takes.
const maxDescription = 1024

// inetSocket returns the definition an inetd or xinetd service starts
// from: the connection (or, for wait, the listening socket) is the
// handler's standard input, output and error output.
func inetSocket() socketd.Socket {
	s := socketd.NewSocket()
	s.StandardInput, s.StandardOutput, s.Stderr = socketd.StdinSocket, socketd.StdoutSocket, socketd.StderrSocket
	return s
}

// family says which address families a service listens on when it names
// no address.
type family int

const (
	ipv4     family = iota // IPv4 only: inetd's tcp, xinetd's default
	ipv6Only               // IPv6 only: inetd's tcp6, xinetd's IPv6 with V6ONLY
	dual                   // IPv6 and IPv4: inetd's tcp46, xinetd's IPv6
)

// inetListen returns the listen entry of a service on port, on addr if it
// is valid, else on every address of fam, and whether the socket must be
// IPv6-only for it.
func inetListen(udp bool, addr netip.Addr, port int, fam family) (l string, v6only bool) {
	p := strconv.Itoa(port)
	switch {
	case addr.IsValid() && !addr.IsUnspecified():
		l = netip.AddrPortFrom(addr, uint16(port)).String()
	case (addr.IsValid() && addr.Is4()) || (!addr.IsValid() && fam == ipv4):
		l = "0.0.0.0:" + p
	case fam == dual:
		l = p // a bare port takes IPv6 and IPv4
	default:
		l, v6only = "[::]:"+p, true
	}
	if udp {
		l = socketd.DatagramPrefix + l
	}
	return l, v6only
}

// parseHost parses the address a service is bound to: "" or "*" is every
// address (the zero Addr).
func parseHost(h string) (netip.Addr, error) {
	if h == "" || h == "*" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address (host names and zones are not supported)", h)
	}
	return a, nil
}

// lookupPort returns the port of service for network "tcp" or "udp": a
// number, or a name from /etc/services.
func lookupPort(network, service string) (int, error) {
	// A plausible service name only: the lookup may go through NSS.
	if service == "" || len(service) > 64 || strings.ContainsFunc(service, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r))
	}) {
		return 0, fmt.Errorf("%q is neither a port nor a service name", service)
	}
	p, err := net.LookupPort(network, service)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a port nor a %s service in /etc/services", service, network)
	}
	return p, nil
}

// socketName makes a socket name of a service name: lowercase, with the
// characters a name cannot hold turned into "-". A service given as a
// number, or that leaves nothing, is named fallback.
func socketName(service, fallback string) string {
	n := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(service))
	n = strings.TrimLeft(n, "._-")
	n = n[:min(len(n), 63)]
	if n == "" || strings.Trim(n, "0123456789") == "" || !socketd.ValidName(n) {
		return fallback
	}
	return n
}

// uniqueName returns name if taken says it is free, else the first free
// of name-suffix, name-suffix-2, name-suffix-3...
func uniqueName(taken func(string) bool, name, suffix string) string {
	if !taken(name) {
		return name
	}
	for i := 1; ; i++ {
		tail := "-" + suffix
		if i > 1 {
			tail += "-" + strconv.Itoa(i)
		}
		base := name[:min(len(name), 63-len(tail))]
		if n := base + tail; !taken(n) {
			return n
		}
	}
}

// note is an unmapped part of a service, for its importer to place.
type note struct{ directive, value, reason string }

// inetCommand returns the command that runs server with argv, argv[0]
// first, as inetd does. socketd runs a program with its path as argv[0], so
// a different argv[0] is noted. tcpd, which finds the daemon it wraps
// through its argv[0], is left out for the daemon; busybox, which finds its
// applet the same way, gets the applet as its first argument.
func inetCommand(server string, argv []string) ([]string, []note) {
	switch {
	case len(argv) == 0:
		return []string{server}, nil
	case filepath.Base(server) == "tcpd":
		return argv, []note{{"server", server, "tcpd (TCP wrappers) finds the daemon it wraps through argv[0], which socketd cannot set: " +
			"socketd runs the daemon itself, and /etc/hosts.allow and /etc/hosts.deny no longer apply"}}
	case filepath.Base(server) == "busybox":
		return append([]string{server}, argv...), nil
	}
	cmd := append([]string{server}, argv[1:]...)
	if argv[0] != server && argv[0] != filepath.Base(server) {
		return cmd, []note{{"argv[0]", argv[0], "socketd runs the program with its path as argv[0]"}}
	}
	return cmd, nil
}

// isDual reports whether listen entry l takes IPv6 and IPv4 on every
// address: a bare port.
func isDual(l string) bool {
	l = strings.TrimPrefix(l, socketd.DatagramPrefix)
	return l != "" && strings.Trim(l, "0123456789") == ""
}

// merge adds the listen entry of b to a, when b is the same service as a on
// another address family (inetd's tcp and tcp6 lines of one service), and
// reports whether it did.
func merge(a *socketd.Socket, b socketd.Socket, v6only bool) bool {
	x, y := *a, b
	x.Listen, y.Listen, x.BindIPv6Only, y.BindIPv6Only, x.Description, y.Description = nil, nil, "", "", "", ""
	if !reflect.DeepEqual(x, y) || len(b.Listen) != 1 || isDual(b.Listen[0]) {
		return false
	}
	for _, l := range a.Listen {
		if isDual(l) || l == b.Listen[0] {
			return false
		}
	}
	a.Listen = append(a.Listen, b.Listen[0])
	if v6only {
		a.BindIPv6Only = socketd.BindIPv6Only
	}
	return true
}

// truncate cuts a description to the length socketd takes.
func truncate(s string) string {
	if len(s) <= maxDescription {
		return s
	}
	return strings.ToValidUTF8(s[:maxDescription], "")
}
