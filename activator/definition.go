package activator

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// definition is a socket definition prepared for spawning: whatever every
// connection of the socket needs is computed once, when it is installed.
// It is never modified after that, except for the command path cache.
type definition struct {
	sock  socketd.Socket // a private copy, compared with the next listing
	env   []string       // the environment without the per-connection variables
	dir   string         // the working directory: "/" unless the definition sets one
	umask uint32
	// stdin and stdout are the definition's, with the defaults filled in.
	stdin, stdout string
	// killSignal, stopTimeout (0: the activator's) and runtimeMax (0: none)
	// are the definition's, parsed.
	killSignal  unix.Signal
	stopTimeout time.Duration
	runtimeMax  time.Duration
	// idleTimeout is the definition's idle_timeout, 0 for none; rlimits
	// its resource limits, parsed.
	idleTimeout time.Duration
	rlimits     []rlimit
	rlimitErr   error // a stored limit that does not parse: no handler starts
	caps        socketd.Caps
	capsErr     error // likewise
	// allow and deny are the access rules' prefixes.
	allow, deny []netip.Prefix
	path        atomic.Pointer[string]
	creds       atomic.Pointer[resolvedCreds] // set once resolved
}

func newDefinition(s *socketd.Socket) *definition {
	d := &definition{sock: *s}
	d.sock.Listen = slices.Clone(s.Listen)
	d.sock.Command = slices.Clone(s.Command)
	d.sock.Environment = maps.Clone(s.Environment)
	d.sock.SupplementaryGroups = slices.Clone(s.SupplementaryGroups)
	if s.Nice != nil {
		n := *s.Nice
		d.sock.Nice = &n
	}
	d.sock.Status = nil
	d.sock.PassEnvironment = slices.Clone(s.PassEnvironment)
	// Validate checked these; a definition stored before keeps the
	// defaults.
	d.umask, _ = socketd.ParseUMask(s.UMask)
	d.stdin, d.stdout = s.Stdin(), s.Stdout()
	d.allow, d.deny = compileRules(s.IPAddressAllow), compileRules(s.IPAddressDeny)
	d.killSignal, _ = socketd.ParseKillSignal(s.KillSignal)
	if d.killSignal == 0 {
		d.killSignal = unix.SIGTERM
	}
	d.stopTimeout, _ = socketd.ParseDuration(s.TimeoutStop)
	d.runtimeMax, _ = socketd.ParseDuration(s.RuntimeMax)
	d.idleTimeout, _ = socketd.ParseDuration(s.IdleTimeout)
	d.rlimits, d.rlimitErr = handlerRlimits(s)
	d.caps, d.capsErr = s.Caps()
	// Not socketd's own: "/" as systemd and inetd use, so that a handler
	// neither depends on nor pins where the daemon was started.
	d.dir = s.WorkingDirectory
	if d.dir == "" {
		d.dir = "/"
	}

	keys := make([]string, 0, len(s.Environment))
	for k := range s.Environment {
		// Validate rejects these, but a definition stored before it did
		// must not override them either: a handler must be able to trust
		// them.
		if !slices.Contains(socketd.ReservedEnvironment, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	d.env = make([]string, 0, len(keys)+len(s.PassEnvironment)+9)
	for _, k := range s.PassEnvironment {
		// Values as socketd has them now; Environment wins.
		_, set := s.Environment[k]
		if v, ok := os.LookupEnv(k); ok && !set && !slices.Contains(socketd.ReservedEnvironment, k) {
			d.env = append(d.env, k+"="+v)
		}
	}
	for _, kv := range s.UserEnvironment() {
		// As systemd: what the definition sets or passes wins.
		k, _, _ := strings.Cut(kv, "=")
		_, set := s.Environment[k]
		if !set && !slices.Contains(s.PassEnvironment, k) {
			d.env = append(d.env, kv)
		}
	}
	for _, k := range keys {
		d.env = append(d.env, k+"="+s.Environment[k])
	}
	if _, ok := s.Environment["PATH"]; !ok {
		d.env = append(d.env, "PATH="+socketd.DefaultPath)
	}
	d.env = append(d.env, "SOCKETD_SOCKET="+s.Name)
	if s.Accept && d.stdin == socketd.StdinNull {
		// sd_listen_fds(3): the connection is fd 3.
		d.env = append(d.env, "LISTEN_FDS=1", "LISTEN_FDNAMES=connection")
	}

	// Resolve now, so that the first connection does not pay for it; an
	// error is reported by the spawn that needs the path.
	_, _ = d.command()
	_, _ = d.credentials()
	return d
}

// same reports whether s would spawn exactly as d does: it compares every
// field but those of no concern to spawning (the description, the enabled
// flag, the timestamps and status, and the listening sockets' options,
// which the listeners' specs cover), so that no new field can be
// forgotten. Empty and nil lists count as equal.
func (d *definition) same(s *socketd.Socket) bool {
	a, b := spawnFields(&d.sock), spawnFields(s)
	return reflect.DeepEqual(a, b)
}

// spawnFields returns the fields of s that same compares, with empty lists
// and maps made nil.
func spawnFields(s *socketd.Socket) socketd.Socket {
	c := *s
	c.Description, c.Enabled, c.CreatedAt, c.UpdatedAt, c.Status = "", false, time.Time{}, time.Time{}, nil
	c.SocketOptions = socketd.SocketOptions{}
	if len(c.Environment) == 0 {
		c.Environment = nil
	}
	for _, l := range []*[]string{&c.Listen, &c.Command, &c.SupplementaryGroups, &c.PassEnvironment} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return c
}

// compileRules parses access rules, which Validate checked; one stored
// before that does not parse is left out.
func compileRules(rules []string) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range rules {
		ps, _ := socketd.ParseRule(r)
		out = append(out, ps...)
	}
	return out
}

// denies reports whether the access rules deny a client at ip: the most
// specific rule that matches decides, allow winning a tie, and a client no
// rule matches is allowed. A unix socket's client, with no address, is.
func (d *definition) denies(ip netip.Addr) bool {
	if len(d.deny) == 0 || !ip.IsValid() {
		return false
	}
	deny := longestMatch(d.deny, ip)
	return deny >= 0 && deny > longestMatch(d.allow, ip)
}

// longestMatch returns the length of the longest prefix of ps that holds
// ip, or -1 if none does.
func longestMatch(ps []netip.Prefix, ip netip.Addr) int {
	best := -1
	for _, p := range ps {
		if p.Bits() > best && p.Contains(ip) {
			best = p.Bits()
		}
	}
	return best
}

// resolvedCreds holds a definition's credentials once looked up; creds is
// nil for socketd's own.
type resolvedCreds struct{ creds *socketd.Credentials }

// credentials returns the user and groups the handler runs as, nil for
// socketd's own. Like the command's path, they are looked up once; a
// failure is retried at the next connection.
func (d *definition) credentials() (*socketd.Credentials, error) {
	if r := d.creds.Load(); r != nil {
		return r.creds, nil
	}
	c, err := d.sock.Credentials()
	if err != nil {
		return nil, err
	}
	d.creds.Store(&resolvedCreds{c})
	return c, nil
}

// command returns the absolute path of the handler program. A path once
// found is kept; a failure is retried at the next connection, so that
// installing a missing program needs no edit of the definition.
func (d *definition) command() (string, error) {
	if p := d.path.Load(); p != nil {
		return *p, nil
	}
	p, err := d.sock.LookCommand()
	if err != nil {
		return "", err
	}
	d.path.Store(&p)
	return p, nil
}

// environ returns the handler's environment for connection c: exactly the
// definition's, PATH if it sets none, and the connection's variables. A
// service (accept: false) gets nListen listening sockets instead.
func (d *definition) environ(c *socketd.Connection, remote netip.AddrPort, nListen int) []string {
	env := make([]string, len(d.env), len(d.env)+9)
	copy(env, d.env)
	switch {
	case !d.sock.Accept && d.stdin == socketd.StdinNull:
		// sd_listen_fds(3): the listening sockets from fd 3 on, each
		// named as systemd names them by default, after their unit.
		// Counted as passed: the definition may have changed since.
		env = append(env, "LISTEN_FDS="+strconv.Itoa(nListen),
			"LISTEN_FDNAMES="+strings.TrimSuffix(strings.Repeat(d.sock.Name+":", nListen), ":"))
	case !d.sock.Accept:
		// A service has no one connection to describe.
	case c.PeerUID != nil:
		// A unix socket's peer, as ucspi-unix's unixserver describes it.
		env = append(env,
			"PROTO=UNIX",
			"UNIXREMOTEPID="+strconv.Itoa(*c.PeerPID),
			"UNIXREMOTEEUID="+strconv.Itoa(*c.PeerUID),
			"UNIXREMOTEEGID="+strconv.Itoa(*c.PeerGID))
	default:
		// The whole address, whatever the history keeps of it (c).
		rip, rport := remote.Addr().Unmap().String(), strconv.Itoa(int(remote.Port()))
		env = append(env,
			"PROTO=TCP",
			"REMOTE_ADDR="+rip,
			"REMOTE_PORT="+rport,
			"TCPREMOTEIP="+rip,
			"TCPREMOTEPORT="+rport,
			"TCPLOCALIP="+c.LocalIP,
			"TCPLOCALPORT="+strconv.Itoa(c.LocalPort))
	}
	env = append(env, "SOCKETD_CONNECTION_ID="+strconv.FormatInt(c.ID, 10))
	if d.stdin == socketd.StdinNull {
		// Room for the pid, which the new process writes itself (see
		// procAttr.listenPID).
		env = append(env, listenPIDVar)
	}
	return env
}

// listenPIDVar is LISTEN_PID with room for any pid.
const listenPIDVar = "LISTEN_PID=0000000000"

// defaultNOFILE is the soft limit of open files a handler gets unless its
// definition sets limit_nofile, as systemd gives a service: Go raised
// socketd's own for itself, and a handler using select(2) must not get more
// than 1024.
const defaultNOFILE = 1024

// handlerRlimits returns the resource limits a handler of s is started
// with: its definition's (validated), with infinity for open files made
// the kernel's ceiling (fs.nr_open), which is all it allows; and the soft
// limit of open files brought down to defaultNOFILE if it sets none.
// A limit that does not parse (stored before Validate refused it) is an
// error: a handler started without it would run with fewer limits than its
// definition asks for.
func handlerRlimits(s *socketd.Socket) ([]rlimit, error) {
	var out []rlimit
	rls, err := s.Rlimits()
	if err != nil {
		return nil, fmt.Errorf("resource limits: %w", err)
	}
	nofile := false
	for _, r := range rls {
		if r.Resource == "nofile" {
			nofile = true
			nrOpen := socketd.NROpen()
			r.Soft, r.Hard = min(r.Soft, nrOpen), min(r.Hard, nrOpen)
		}
		out = append(out, rlimit{resource: rlimitResources[r.Resource], soft: r.Soft, hard: r.Hard})
	}
	var own unix.Rlimit
	if !nofile && unix.Getrlimit(unix.RLIMIT_NOFILE, &own) == nil && own.Cur > defaultNOFILE {
		out = append(out, rlimit{resource: unix.RLIMIT_NOFILE, soft: defaultNOFILE, hard: own.Max})
	}
	return out, nil
}

// masksRemote reports whether the history keeps less of a client's address
// than the connection has (record_remote_ip).
func (d *definition) masksRemote() bool {
	r := d.sock.RecordRemoteIP
	return r != "" && r != socketd.RecordRemoteFull
}

// shownAddr is client address ip as socketd may write it down or show it
// (in a refusal's words, a status): as record_remote_ip says.
func (d *definition) shownAddr(ip netip.Addr) string {
	switch d.sock.RecordRemoteIP {
	case socketd.RecordRemoteNone:
		return "a client"
	case socketd.RecordRemotePrefix:
		return socketd.RecordedPrefix(ip).Addr().String() + " (the network)"
	}
	return ip.String()
}

// shownSource is source src (a prefix of sources) as socketd may write it
// down or show it: under record_remote_ip prefix no narrower than the
// history's /24 or /48, under none not at all.
func (d *definition) shownSource(src netip.Prefix) string {
	switch d.sock.RecordRemoteIP {
	case socketd.RecordRemoteNone:
		return "a source"
	case socketd.RecordRemotePrefix:
		if net := socketd.RecordedPrefix(src.Addr()); src.Bits() > net.Bits() {
			src = net
		}
	}
	return src.String()
}
