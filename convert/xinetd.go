package convert

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/socketd/socketd"
)

// Xinetd imports xinetd configuration: one or more
//
//	service NAME
//	{
//		attribute = value
//		...
//	}
//
// blocks, as /etc/xinetd.conf and the files of /etc/xinetd.d hold them.
// Each service becomes a socket, named after its id or its name (a second
// one of a name gets its protocol after it), that runs as xinetd runs it:
// the connection (for wait, the listening socket) is the handler's standard
// input, output and error output; wait = no is accept: true.
//
// The port is the port attribute, else the service name's in
// /etc/services; the socket listens on the bind (or interface) address,
// else on IPv4, on IPv6 and IPv4 with flags IPv6, on IPv6 alone with
// IPv6 and V6ONLY. server_args are split on blanks, as xinetd does, and
// with flags NAMEINARGS the first is argv[0], which is dropped as in Inetd.
// disable = yes makes a disabled socket. The defaults block, include and
// includedir lines, and the attributes socketd has no equivalent for
// (access and rate limits, logging, rlimits...) are listed as unmapped.
// Internal, RPC and TCPMUX services are refused, or listed if disabled.
func Xinetd(text string) (Result, error) {
	if i := strings.IndexByte(text, 0); i >= 0 {
		return Result{}, errorf(1+strings.Count(text[:i], "\n"), "contains a NUL byte")
	}
	blocks, unmapped, err := parseXinetd(text)
	if err != nil {
		return Result{}, err
	}
	res := Result{Unmapped: unmapped}
	taken := func(n string) bool { return indexName(res.Sockets, n) >= 0 }
	for _, b := range blocks {
		if b.defaults {
			for _, a := range b.attrs {
				res.Unmapped = append(res.Unmapped, Unmapped{Source: "xinetd defaults", Line: a.line, Directive: a.name,
					Value: a.op + " " + a.value, Reason: "defaults apply to every xinetd service: set what socketd supports in each socket"})
			}
			continue
		}
		x := &xinetdService{block: b}
		s, ok, err := x.socket()
		if err != nil {
			return Result{}, err
		}
		if ok {
			s.Name = uniqueName(taken, s.Name, x.protocol)
			res.Sockets = append(res.Sockets, s)
		}
		for _, n := range x.notes {
			n.Socket = s.Name
			if !ok {
				n.Socket = ""
			}
			res.Unmapped = append(res.Unmapped, n)
		}
	}
	return newResult(res.Sockets, res.Unmapped), nil
}

// xinetdBlock is a service or the defaults block.
type xinetdBlock struct {
	defaults bool
	name     string // the service's name
	line     int
	attrs    []xinetdAttr
}

// xinetdAttr is an "attribute op value" line of a block.
type xinetdAttr struct {
	line            int
	name, op, value string
}

// parseXinetd reads the blocks of an xinetd configuration text, and lists
// its include and includedir lines.
func parseXinetd(text string) ([]xinetdBlock, []Unmapped, error) {
	var (
		blocks   []xinetdBlock
		unmapped []Unmapped
		cur      *xinetdBlock // the block being read
		open     bool         // its "{" has been read
	)
	for i, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		n := i + 1
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		switch {
		case cur != nil && !open:
			if t != "{" {
				return nil, nil, errorf(n, "expected { to open the block of line %d", cur.line)
			}
			open = true
		case cur != nil && t == "}":
			blocks = append(blocks, *cur)
			cur, open = nil, false
		case cur != nil:
			a, err := parseXinetdAttr(n, t)
			if err != nil {
				return nil, nil, err
			}
			cur.attrs = append(cur.attrs, a)
		default:
			f := strings.Fields(t)
			switch {
			case f[0] == "include" || f[0] == "includedir":
				unmapped = append(unmapped, Unmapped{Source: "xinetd", Line: n, Directive: f[0],
					Value: strings.Join(f[1:], " "), Reason: "socketd reads only the text it is given: import those files too"})
				continue
			case f[0] == "defaults" && (len(f) == 1 || len(f) == 2 && f[1] == "{"):
				cur = &xinetdBlock{defaults: true, line: n}
			case f[0] == "service" && (len(f) == 2 || len(f) == 3 && f[2] == "{"):
				cur = &xinetdBlock{name: f[1], line: n}
			default:
				return nil, nil, errorf(n, "expected service NAME, defaults, include or includedir, not %q", t)
			}
			open = f[len(f)-1] == "{"
		}
	}
	if cur != nil {
		return nil, nil, errorf(cur.line, "the block has no closing }")
	}
	return blocks, unmapped, nil
}

// parseXinetdAttr parses an "attribute op value" line: op is =, += or -=.
func parseXinetdAttr(n int, t string) (xinetdAttr, error) {
	end := strings.IndexFunc(t, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_')
	})
	if end <= 0 {
		return xinetdAttr{}, errorf(n, "expected attribute = value or }, not %q", t)
	}
	a := xinetdAttr{line: n, name: t[:end]}
	rest := strings.TrimSpace(t[end:])
	for _, op := range []string{"+=", "-=", "="} {
		if v, ok := strings.CutPrefix(rest, op); ok {
			a.op, a.value = op, strings.TrimSpace(v)
			return a, nil
		}
	}
	return xinetdAttr{}, errorf(n, "expected attribute = value or }, not %q", t)
}

// xinetdService imports one service block.
type xinetdService struct {
	block   xinetdBlock
	scalars map[string]xinetdAttr // the attributes with one value, by name
	types   []word                // type, flags, env and passenv: lists
	flags   []word
	env     []word
	passenv []word
	// onlyFrom and noAccess are the access lists; onlyFromSet says that
	// only_from was given, if empty: then nobody may connect.
	onlyFrom, noAccess []word
	onlyFromSet        bool
	protocol           string
	notes              []Unmapped // Socket is filled in by the caller
}

// word is a word of a list attribute, with the attribute it comes from.
type word struct {
	w    string
	attr xinetdAttr
}

// source names the service in the unmapped list.
func (x *xinetdService) source() string { return "xinetd service " + x.block.name }

// note lists value, of attribute a, as unmapped.
func (x *xinetdService) note(a xinetdAttr, value, reason string) {
	x.notes = append(x.notes, Unmapped{Source: x.source(), Line: a.line, Directive: a.name, Value: value, Reason: reason})
}

// get returns the value of a scalar attribute, "" if the block has none.
func (x *xinetdService) get(name string) string { return x.scalars[name].value }

// line returns the line of a scalar attribute, or of the block.
func (x *xinetdService) line(name string) int {
	if a, ok := x.scalars[name]; ok {
		return a.line
	}
	return x.block.line
}

// has reports whether list holds w.
func has(list []word, w string) bool {
	return slices.ContainsFunc(list, func(x word) bool { return x.w == w })
}

// xinetdReasons say why attributes are left out.
var xinetdReasons = map[string]string{
	"max_load":       "connection limits are not supported",
	"access_times":   "access rules are not supported",
	"deny_time":      "access rules are not supported",
	"log_type":       "socketd records every connection in its history",
	"log_on_success": "socketd records every connection in its history",
	"log_on_failure": "socketd records every connection in its history",
	"redirect":       "socketd runs a program for each connection; it does not redirect",
	"banner":         "banners are not supported",
	"banner_success": "banners are not supported",
	"banner_fail":    "banners are not supported",
}

// collect sorts the block's attributes into scalars and lists, and notes
// those socketd has no equivalent for.
func (x *xinetdService) collect() error {
	x.scalars = map[string]xinetdAttr{}
	for _, a := range x.block.attrs {
		switch a.name {
		case "type":
			x.types = listOp(x.types, a)
		case "flags":
			x.flags = listOp(x.flags, a)
		case "env":
			x.env = listOp(x.env, a)
		case "passenv":
			x.passenv = listOp(x.passenv, a)
		case "only_from":
			x.onlyFrom, x.onlyFromSet = listOp(x.onlyFrom, a), true
		case "no_access":
			x.noAccess = listOp(x.noAccess, a)
		case "id", "socket_type", "protocol", "wait", "user", "group", "server", "server_args", "port", "bind",
			"interface", "disable", "nice", "umask", "groups", "instances", "per_source", "cps",
			"rlimit_files", "rlimit_cpu", "rlimit_as":
			if a.op != "=" {
				return errorf(a.line, "%s takes =, not %s", a.name, a.op)
			}
			if a.name == "interface" {
				a.name = "bind" // its synonym
			}
			x.scalars[a.name] = a
		default:
			reason, known := xinetdReasons[a.name]
			switch {
			case strings.HasPrefix(a.name, "rlimit_"):
				reason = "socketd sets the limits of open files, CPU time, address space, processes and core size only"
			case !known:
				reason = "socketd has no equivalent"
			}
			x.note(a, a.value, reason)
		}
	}
	return nil
}

// listOp applies a list attribute's operator: = sets the list, += adds to
// it, -= removes from it.
func listOp(list []word, a xinetdAttr) []word {
	var words []word
	for _, w := range strings.Fields(a.value) {
		words = append(words, word{w, a})
	}
	switch a.op {
	case "=":
		return words
	case "+=":
		return append(list, words...)
	}
	return slices.DeleteFunc(list, func(w word) bool { return has(words, w.w) })
}

// accessRules maps only_from and no_access to ip_address_allow and
// ip_address_deny. Once only_from is set (even empty) xinetd serves only the
// addresses it lists, so any other is denied; where an address matches
// both, the closest match decides in xinetd as in socketd. A wait service
// takes no connections of its own to check: its lists are noted.
func (x *xinetdService) accessRules(s *socketd.Socket) {
	for _, list := range []struct {
		words []word
		dst   *[]string
	}{{x.onlyFrom, &s.IPAddressAllow}, {x.noAccess, &s.IPAddressDeny}} {
		for _, w := range list.words {
			switch rules, ok := xinetdRules(w.w); {
			case !s.Accept:
				x.note(w.attr, w.w, "a wait service takes no connections of its own to check")
			case !ok:
				x.note(w.attr, w.w, "socketd's access rules take addresses and prefixes, not host, network or domain names")
			default:
				*list.dst = append(*list.dst, rules...)
			}
		}
	}
	if x.onlyFromSet && s.Accept && !slices.Contains(s.IPAddressDeny, "any") {
		s.IPAddressDeny = append(s.IPAddressDeny, "any")
	}
}

// xinetdRules turns an address of only_from or no_access into socketd's
// rules: an IPv4 or IPv6 address or CIDR prefix; an IPv4 address whose
// rightmost parts are 0 for the network they leave (0.0.0.0 is any); and a
// factorized address, "10.1.{2,3}" for 10.1.2.0/24 and 10.1.3.0/24. It
// reports false for names, which socketd does not resolve.
func xinetdRules(s string) ([]string, bool) {
	if head, list, ok := strings.Cut(s, "{"); ok {
		list, closed := strings.CutSuffix(list, "}")
		if !closed || !strings.HasSuffix(head, ".") {
			return nil, false
		}
		var rules []string
		for _, n := range strings.Split(list, ",") {
			r, ok := xinetdRules(head + n)
			if !ok {
				return nil, false
			}
			rules = append(rules, r...)
		}
		return rules, true
	}
	if _, err := socketd.ParseRule(s); err == nil && (strings.Contains(s, ":") || strings.Contains(s, "/")) {
		return []string{s}, true
	}
	// Dotted IPv4, perhaps with fewer than four parts: trailing zeros
	// and missing parts are wildcards.
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return nil, false
	}
	for len(parts) < 4 {
		parts = append(parts, "0")
	}
	a, err := netip.ParseAddr(strings.Join(parts, "."))
	if err != nil {
		return nil, false
	}
	bits := 32
	for bits > 0 && parts[bits/8-1] == "0" {
		bits -= 8
	}
	if bits == 0 {
		return []string{"any"}, true
	}
	return []string{netip.PrefixFrom(a, bits).String()}, true
}

// socket returns the socket of the service; ok is false for a disabled
// service socketd cannot run, which is noted instead.
func (x *xinetdService) socket() (s socketd.Socket, ok bool, err error) {
	if err := x.collect(); err != nil {
		return s, false, err
	}
	s = inetSocket()
	s.Description = truncate("xinetd service " + x.block.name)
	switch d := x.get("disable"); d {
	case "", "no":
	case "yes":
		s.Enabled = false
	default:
		return s, false, errorf(x.line("disable"), "disable = %s: expected yes or no", d)
	}
	if a, reason := x.unsupported(); reason != "" {
		if s.Enabled {
			return s, false, errorf(a.line, "service %s: %s", x.block.name, reason)
		}
		x.note(a, a.value, reason+": the disabled service is left out")
		return s, false, nil
	}

	udp := x.get("socket_type") == "dgram"
	switch w := x.get("wait"); w {
	case "no":
		s.Accept = true
		if udp {
			s.Accept = false
			x.note(x.scalars["wait"], w, "a datagram service runs as wait = yes: socketd passes the socket to one handler at a time")
		}
	case "yes":
		s.Accept = false
	default:
		return s, false, errorf(x.line("wait"), "service %s: wait must be yes or no", x.block.name)
	}
	port, err := x.port()
	if err != nil {
		return s, false, err
	}
	if err := x.listen(&s, udp, port); err != nil {
		return s, false, err
	}
	x.command(&s)
	if err := x.process(&s, udp); err != nil {
		return s, false, err
	}
	fallback := "port-" + strconv.Itoa(port)
	s.Name = socketName(x.block.name, fallback)
	if id := x.get("id"); id != "" {
		s.Name = socketName(id, fallback)
	}
	return s, true, nil
}

// unsupported says why socketd cannot run the service, and which
// attribute is to blame, or returns "". It settles the protocol.
func (x *xinetdService) unsupported() (xinetdAttr, string) {
	for _, t := range x.types {
		switch t.w {
		case "INTERNAL", "SPECIAL":
			return t.attr, "xinetd's internal services are not supported"
		case "RPC":
			return t.attr, "RPC services are not supported"
		case "TCPMUX", "TCPMUXPLUS":
			return t.attr, "TCPMUX services are not supported"
		}
	}
	service := xinetdAttr{line: x.block.line, name: "service", value: x.block.name}
	if x.get("server") == "" {
		return service, "it has no server"
	}
	sockType := x.get("socket_type")
	x.protocol = x.get("protocol")
	switch {
	case sockType != "stream" && sockType != "dgram":
		if a, ok := x.scalars["socket_type"]; ok {
			service = a
		}
		return service, fmt.Sprintf("socket_type %q is not supported: socketd takes stream and dgram", sockType)
	case x.protocol == "" && sockType == "stream":
		x.protocol = "tcp"
	case x.protocol == "":
		x.protocol = "udp"
	case x.protocol != "tcp" && x.protocol != "udp", (x.protocol == "udp") != (sockType == "dgram"):
		return x.scalars["protocol"], fmt.Sprintf("protocol %s does not go with socket_type %s", x.protocol, sockType)
	}
	return xinetdAttr{}, ""
}

// port returns the service's port: its port attribute, else its name's in
// /etc/services.
func (x *xinetdService) port() (int, error) {
	if p := x.get("port"); p != "" {
		port, err := strconv.Atoi(p)
		if err != nil || port < 0 || port > 65535 {
			return 0, errorf(x.line("port"), "port %q is not a port number", p)
		}
		return port, nil
	}
	if has(x.types, "UNLISTED") {
		return 0, errorf(x.block.line, "service %s is UNLISTED and has no port", x.block.name)
	}
	port, err := lookupPort(x.protocol, x.block.name)
	if err != nil {
		return 0, errorf(x.block.line, "service %s has no port attribute, and %v", x.block.name, err)
	}
	return port, nil
}

// listen sets the socket's listen entry: the bind address, else every
// address of the family the flags choose.
func (x *xinetdService) listen(s *socketd.Socket, udp bool, port int) error {
	addr, err := parseHost(x.get("bind"))
	if err != nil {
		return errorf(x.line("bind"), "bind: %v", err)
	}
	fam := ipv4
	if has(x.flags, "IPv6") {
		fam = dual
		if has(x.flags, "V6ONLY") {
			fam = ipv6Only
		}
	}
	l, v6only := inetListen(udp, addr, port, fam)
	s.Listen = []string{l}
	if v6only {
		s.BindIPv6Only = socketd.BindIPv6Only
	}
	return nil
}

// command sets the socket's command: the server and its arguments, the
// first of which is argv[0] with flags NAMEINARGS.
func (x *xinetdService) command(s *socketd.Socket) {
	args := strings.Fields(x.get("server_args"))
	if !has(x.flags, "NAMEINARGS") {
		s.Command = append([]string{x.get("server")}, args...)
		return
	}
	var notes []note
	s.Command, notes = inetCommand(x.get("server"), args)
	for _, n := range notes {
		x.note(x.scalars["server_args"], n.value, n.reason)
	}
}

// process sets what the socket's flags, user, groups, nice, umask, env
// and passenv ask for.
func (x *xinetdService) process(s *socketd.Socket, udp bool) error {
	for _, f := range x.flags {
		switch f.w {
		case "IPv4", "IPv6", "V6ONLY", "NAMEINARGS":
		case "REUSE":
			// SO_REUSEADDR, which socketd always sets.
		case "NOLIBWRAP":
			// socketd never applies TCP wrappers.
		case "NODELAY", "KEEPALIVE":
			if udp {
				x.note(f.attr, f.w, "applies to TCP only")
			} else if f.w == "NODELAY" {
				s.NoDelay = true
			} else {
				s.KeepAlive = true
			}
		default:
			x.note(f.attr, f.w, "socketd has no equivalent")
		}
	}
	s.User, s.Group = x.get("user"), x.get("group")
	switch g := x.get("groups"); g {
	case "", "no":
	case "yes":
		x.note(x.scalars["groups"], g, "socketd gives the handler only the supplementary groups its definition lists")
	default:
		return errorf(x.line("groups"), "groups = %s: expected yes or no", g)
	}
	if n := x.get("nice"); n != "" {
		v, err := strconv.Atoi(n)
		if err != nil || v < -20 || v > 19 {
			return errorf(x.line("nice"), "nice = %s: expected a number from -20 to 19", n)
		}
		s.Nice = &v
	}
	switch n := x.get("instances"); n {
	case "", "UNLIMITED":
		// xinetd's unlimited is socketd's default of 64 at once.
		if n != "" {
			x.note(x.scalars["instances"], n, "socketd runs at most max_connections handlers of a socket at once (64 unless set)")
		}
	default:
		v, err := strconv.Atoi(n)
		if err != nil || v < 1 {
			return errorf(x.line("instances"), "instances = %s: expected a number or UNLIMITED", n)
		}
		// xinetd refuses connections beyond it; a wait service has
		// one run at a time whatever it says.
		s.MaxConnections = v
		if s.Accept {
			s.OnLimit = socketd.OnLimitRefuse
		}
	}
	switch n := x.get("per_source"); n {
	case "", "UNLIMITED":
	default:
		v, err := strconv.Atoi(n)
		if err != nil || v < 1 {
			return errorf(x.line("per_source"), "per_source = %s: expected a number or UNLIMITED", n)
		}
		if s.Accept {
			s.MaxConnectionsPerSource = v
		} else {
			x.note(x.scalars["per_source"], n, "a wait service takes no connections of its own to count by source")
		}
	}
	x.accessRules(s)
	if c := x.get("cps"); c != "" {
		// Connections a second, then the seconds xinetd stops the
		// service for; socketd pauses until the rate is back instead.
		f := strings.Fields(c)
		v, err := strconv.Atoi(f[0])
		if err != nil || v < 1 || len(f) > 2 {
			return errorf(x.line("cps"), "cps = %s: expected connections a second and seconds to wait", c)
		}
		s.RateLimit = &socketd.RateLimit{PerSecond: float64(v), Burst: v}
		if len(f) == 2 {
			x.note(x.scalars["cps"], c, "socketd pauses the socket over its rate until it is under it again, instead of for a set time")
		}
	}
	for _, r := range []struct {
		attr, resource string
		dst            *string
	}{{"rlimit_files", "nofile", &s.LimitNOFILE}, {"rlimit_cpu", "cpu", &s.LimitCPU}, {"rlimit_as", "as", &s.LimitAS}} {
		v := x.get(r.attr)
		switch v {
		case "":
			continue
		case "UNLIMITED":
			v = "infinity"
		}
		if err := socketd.CheckRlimit(r.resource, v); err != nil {
			return errorf(x.line(r.attr), "%s = %s: %v", r.attr, v, err)
		}
		*r.dst = v
	}
	if u := x.get("umask"); u != "" {
		if _, err := socketd.ParseUMask(u); err != nil {
			return errorf(x.line("umask"), "umask: %v", err)
		}
		s.UMask = u
	}
	for _, e := range x.env {
		k, v, ok := strings.Cut(e.w, "=")
		switch {
		case !ok || k == "":
			x.note(e.attr, e.w, "not a NAME=value assignment")
		case slices.Contains(socketd.ReservedEnvironment, k):
			x.note(e.attr, e.w, "socketd sets "+k+" for each connection")
		default:
			if s.Environment == nil {
				s.Environment = map[string]string{}
			}
			s.Environment[k] = v
		}
	}
	for _, e := range x.passenv {
		switch k := e.w; {
		case slices.Contains(socketd.ReservedEnvironment, k):
			x.note(e.attr, k, "socketd sets "+k+" for each connection")
		case k == "PATH":
			x.note(e.attr, k, "socketd looks the command up in the handler's PATH: set PATH in env")
		case !slices.Contains(s.PassEnvironment, k):
			s.PassEnvironment = append(s.PassEnvironment, k)
		}
	}
	return nil
}
