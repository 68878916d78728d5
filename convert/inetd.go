package convert

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/socketd/socketd"
)

// inetdSource names inetd.conf in the unmapped list.
const inetdSource = "inetd.conf"

// Inetd imports an inetd.conf. Each service line,
//
//	service socket_type protocol wait|nowait[.max] user[.group|:group] server [argv0 args...]
//
// becomes a socket, as inetd runs it: the connection (for wait, the
// listening socket) is the handler's standard input, output and error
// output. A line that starts with a blank continues the one before, and a
// line disabled by update-inetd ("#<off># ...") becomes a disabled socket.
//
// The service is a port or a name from /etc/services, optionally after an
// address and ":". The protocol says which addresses: tcp and udp (tcp4,
// udp4) are IPv4 only, tcp6 and udp6 IPv6 only (bind_ipv6_only
// ipv6-only), tcp46 and udp46 both; a tcp and a tcp6 line of one service
// become one socket. The socket is named after the service, "port-N" for
// a number; a second service with the name gets the protocol after it
// ("daytime-udp"). nowait is accept: true, wait accept: false.
//
// argv0 is dropped, since socketd runs the program with its path as
// argv[0] (noted if it differs from the program's name); tcpd, which needs
// it, is left out for the daemon it wraps, and noted. The internal services
// of inetd are refused.
func Inetd(text string) (Result, error) {
	if i := strings.IndexByte(text, 0); i >= 0 {
		return Result{}, errorf(1+strings.Count(text[:i], "\n"), "contains a NUL byte")
	}
	var res Result
	taken := func(n string) bool { return indexName(res.Sockets, n) >= 0 }
	for _, l := range inetdLines(text) {
		s, notes, v6only, err := inetdService(l.fields)
		if err != nil {
			if l.disabled {
				// update-inetd disables what inetd cannot run too.
				res.Unmapped = append(res.Unmapped, Unmapped{Source: inetdSource, Line: l.line, Directive: "#<off>#",
					Value: strings.Join(l.fields, " "), Reason: "a disabled service socketd cannot import: " + err.Error()})
				continue
			}
			return Result{}, errorf(l.line, "%v", err)
		}
		s.Enabled = !l.disabled
		if v6only {
			s.BindIPv6Only = socketd.BindIPv6Only
		}
		s.Description = truncate("inetd.conf: " + strings.Join(l.fields, " "))
		if i := indexName(res.Sockets, s.Name); i < 0 || !merge(&res.Sockets[i], s, v6only) {
			s.Name = uniqueName(taken, s.Name, l.fields[2])
			res.Sockets = append(res.Sockets, s)
		}
		for _, n := range notes {
			res.Unmapped = append(res.Unmapped, Unmapped{Source: inetdSource, Socket: s.Name, Line: l.line,
				Directive: n.directive, Value: n.value, Reason: n.reason})
		}
	}
	return newResult(res.Sockets, res.Unmapped), nil
}

// inetdLine is one service line of inetd.conf, with its continuations.
type inetdLine struct {
	line     int
	fields   []string
	disabled bool // commented out by update-inetd
}

// inetdLines returns the service lines of an inetd.conf.
func inetdLines(text string) []inetdLine {
	var lines []inetdLine
	cont := false // the line before is a service line the next may continue
	for i, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		t := strings.TrimSpace(l)
		switch {
		case t == "":
			cont = false
		case strings.HasPrefix(t, "#<off>#"):
			lines = append(lines, inetdLine{line: i + 1, fields: strings.Fields(t[len("#<off>#"):]), disabled: true})
			cont = true
		case t[0] == '#':
			cont = false
		case cont && (l[0] == ' ' || l[0] == '\t'):
			last := &lines[len(lines)-1]
			last.fields = append(last.fields, strings.Fields(t)...)
		default:
			lines = append(lines, inetdLine{line: i + 1, fields: strings.Fields(t)})
			cont = true
		}
	}
	return lines
}

// indexName returns the index of the socket called name, or -1.
func indexName(sockets []socketd.Socket, name string) int {
	for i, s := range sockets {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// inetdService imports the fields of one inetd.conf service line. The
// socket is named after its service; v6only says it must be IPv6-only.
func inetdService(f []string) (s socketd.Socket, notes []note, v6only bool, err error) {
	if len(f) < 6 {
		return s, nil, false, fmt.Errorf("expected service socket_type protocol wait|nowait user[.group] server [argv0 args...]")
	}
	service, sockType, proto, wait, user, server := f[0], f[1], f[2], f[3], f[4], f[5]
	s = inetSocket()

	udp, fam := false, ipv4
	switch proto {
	case "tcp", "tcp4":
	case "tcp6":
		fam = ipv6Only
	case "tcp46":
		fam = dual
	case "udp", "udp4":
		udp = true
	case "udp6":
		udp, fam = true, ipv6Only
	case "udp46":
		udp, fam = true, dual
	case "unix":
	default:
		return s, nil, false, fmt.Errorf("protocol %s is not supported: socketd takes tcp, tcp6, tcp46, udp, udp6, udp46 and unix", proto)
	}
	switch {
	case sockType != "stream" && sockType != "dgram":
		return s, nil, false, fmt.Errorf("socket type %s is not supported: socketd takes stream and dgram", sockType)
	case (sockType == "dgram") != udp:
		return s, nil, false, fmt.Errorf("socket type %s does not go with protocol %s", sockType, proto)
	}

	port := 0
	if proto == "unix" {
		s.Listen = []string{service}
		if _, err := socketd.ParseListen(service); err != nil || service[0] != '/' {
			return s, nil, false, fmt.Errorf("%q is not the absolute path of a unix socket", service)
		}
		s.Name = socketName(filepath.Base(service), "unix")
	} else {
		host, name := "", service
		if i := strings.LastIndexByte(service, ':'); i >= 0 {
			host, name = service[:i], service[i+1:]
		}
		addr, err := parseHost(host)
		if err != nil {
			return s, nil, false, err
		}
		network := "tcp"
		if udp {
			network = "udp"
		}
		if port, err = lookupPort(network, name); err != nil {
			return s, nil, false, err
		}
		var l string
		l, v6only = inetListen(udp, addr, port, fam)
		s.Listen = []string{l}
		s.Name = socketName(name, "port-"+strconv.Itoa(port))
	}

	mode, limit, _ := strings.Cut(strings.Replace(wait, "/", ".", 1), ".")
	switch mode {
	case "nowait":
		s.Accept = true
	case "wait":
		s.Accept = false
	default:
		return s, nil, false, fmt.Errorf("%q is neither wait nor nowait", wait)
	}
	if limit != "" {
		// Servers started a minute; beyond, inetd stops the service for
		// ten minutes, where socketd pauses until the rate is back.
		n, err := strconv.Atoi(limit)
		if err != nil || n < 1 || n > 1<<20 {
			return s, nil, false, fmt.Errorf("%q: the rate after the dot is not a number of servers a minute", wait)
		}
		s.RateLimit = &socketd.RateLimit{PerSecond: float64(n) / 60, Burst: n}
		notes = append(notes, note{"wait", wait, "socketd pauses the socket over its rate until it is under it again, where inetd stops the service for ten minutes"})
	}
	if udp && s.Accept {
		s.Accept = false
		notes = append(notes, note{"wait", wait, "a datagram service runs as wait: socketd passes the socket to one handler at a time"})
	}

	s.User = user
	if i := strings.IndexAny(user, ":."); i >= 0 {
		s.User, s.Group = user[:i], user[i+1:]
	}
	if g, class, ok := strings.Cut(s.Group, "/"); ok {
		s.Group = g
		notes = append(notes, note{"user", user, "login class " + class + " is not supported"})
	}

	if server == "internal" {
		return s, nil, false, fmt.Errorf("inetd's internal services are not supported: run a program that serves %s", service)
	}
	var more []note
	s.Command, more = inetCommand(server, f[6:])
	return s, append(notes, more...), v6only, nil
}
