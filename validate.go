package socketd

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// DefaultPath is the PATH a handler gets when its definition sets none, and
// where a bare command name is looked up.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Bounds on a definition, so that one cannot grow without limit.
const (
	maxDescription = 1024
	maxListen      = 64
	maxArgs        = 1024
	maxEnv         = 1024
	maxStringLen   = 4096
)

// NamePattern is the regular expression every socket name matches.
const NamePattern = `^[a-z0-9][a-z0-9._-]{0,62}$`

var nameRE = regexp.MustCompile(NamePattern)

// ValidName reports whether name can name a socket.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// ListenAddr is a parsed listen entry, ready for net.Listen.
type ListenAddr struct {
	Network string // "tcp"
	Address string // host:port for net.Listen; "" host means every address
}

// ParseListen parses an address in systemd ListenStream= syntax: a bare port
// ("13063", all addresses, IPv6 and IPv4), "IPv4:port" or "[IPv6]:port".
// Port 0 lets the kernel pick. Host names are not accepted: a listener binds
// to addresses, and a name could resolve differently from one start to the
// next.
func ParseListen(s string) (ListenAddr, error) {
	if s == "" {
		return ListenAddr{}, fmt.Errorf("is empty")
	}
	if port, err := parsePort(s); err == nil {
		return ListenAddr{Network: "tcp", Address: ":" + strconv.Itoa(port)}, nil
	} else if isDigits(s) {
		return ListenAddr{}, err
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ListenAddr{}, fmt.Errorf("%q is not a port, IPv4:port or [IPv6]:port", s)
	}
	if ap.Addr().Zone() != "" {
		return ListenAddr{}, fmt.Errorf("%q: zoned IPv6 addresses are not supported", s)
	}
	return ListenAddr{Network: "tcp", Address: ap.String()}, nil
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

// Validate checks a definition and returns an *Error with code CodeInvalid
// listing every field at fault, or nil. It also checks that the command can
// be found and run, as the daemon would run it now.
func (s *Socket) Validate() error {
	var fs []FieldError
	add := func(pointer, format string, args ...any) {
		fs = append(fs, FieldError{Pointer: pointer, Detail: fmt.Sprintf(format, args...)})
	}
	if !ValidName(s.Name) {
		add("/name", "must match %s", NamePattern)
	}
	if len(s.Description) > maxDescription {
		add("/description", "is longer than %d bytes", maxDescription)
	}
	switch {
	case len(s.Listen) == 0:
		add("/listen", "needs at least one address")
	case len(s.Listen) > maxListen:
		add("/listen", "has more than %d addresses", maxListen)
	}
	var parsed []ListenAddr
	for i, l := range s.Listen {
		la, err := ParseListen(l)
		if err != nil {
			add(fmt.Sprintf("/listen/%d", i), "%v", err)
			la = ListenAddr{}
		}
		parsed = append(parsed, la)
	}
	for i, j := range listenOverlaps(parsed) {
		add(fmt.Sprintf("/listen/%d", i), "%s", j)
	}
	if !s.Accept {
		add("/accept", "accept: false (one service for the whole socket) is not supported yet; use true")
	}
	switch {
	case len(s.Command) == 0:
		add("/command", "needs at least the program to run")
	case len(s.Command) > maxArgs:
		add("/command", "has more than %d arguments", maxArgs)
	default:
		for i, a := range s.Command {
			if strings.ContainsRune(a, 0) || len(a) > maxStringLen {
				add(fmt.Sprintf("/command/%d", i), "must be at most %d bytes with no NUL", maxStringLen)
			}
		}
		if _, err := s.LookCommand(); err != nil {
			add("/command/0", "%v", err)
		}
	}
	if len(s.Environment) > maxEnv {
		add("/environment", "has more than %d variables", maxEnv)
	}
	for k, v := range s.Environment {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00") || len(k) > maxStringLen:
			add("/environment/"+EscapePointer(k), "is not a valid variable name")
		case slices.Contains(ReservedEnvironment, k):
			add("/environment/"+EscapePointer(k), "is set by socketd for each connection and cannot be defined")
		}
		if strings.ContainsRune(v, 0) || len(v) > maxStringLen {
			add("/environment/"+EscapePointer(k), "must be at most %d bytes with no NUL", maxStringLen)
		}
	}
	if d := s.WorkingDirectory; d != "" {
		if !filepath.IsAbs(d) || strings.ContainsRune(d, 0) {
			add("/working_directory", "must be an absolute path")
		} else if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			add("/working_directory", "%s is not a directory", d)
		}
	}
	switch s.Stderr {
	case StderrLog, StderrNull, StderrSocket:
	default:
		add("/stderr", "must be one of log, null, socket")
	}
	if len(fs) > 0 {
		return &Error{Code: CodeInvalid, Message: "the socket definition is not valid", Fields: fs}
	}
	return nil
}

// EscapePointer escapes a key for use in a JSON Pointer (RFC 6901).
func EscapePointer(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// Path returns the PATH the handler runs with.
func (s *Socket) Path() string {
	if p, ok := s.Environment["PATH"]; ok {
		return p
	}
	return DefaultPath
}

// LookCommand returns the absolute path of the program Command[0] names: the
// path itself when it is absolute, else the first executable found in the
// handler's PATH. A relative path with a slash is refused, since the
// daemon's working directory is not the user's.
func (s *Socket) LookCommand() (string, error) {
	if len(s.Command) == 0 {
		return "", fmt.Errorf("no command")
	}
	name := s.Command[0]
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			return "", fmt.Errorf("%q must be an absolute path or a name found in PATH", name)
		}
		return name, checkExecutable(name)
	}
	if name == "" {
		return "", fmt.Errorf("is empty")
	}
	for _, dir := range filepath.SplitList(s.Path()) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q is not found in PATH %s", name, s.Path())
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s does not exist", path)
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	// access(2) answers for the user the daemon runs as, who will run it.
	if syscall.Access(path, accessExecute) != nil {
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}

// accessExecute is X_OK for access(2).
const accessExecute = 1

// listenOverlaps finds the entries of a listen list that cannot be bound
// together: the same address twice, or a wildcard address (a bare port,
// 0.0.0.0 or [::]) beside any other address on the same port, since the
// wildcard takes the port on every address. Port 0 never overlaps: each
// entry gets a port of its own. It maps an entry's index to the reason.
func listenOverlaps(ls []ListenAddr) map[int]string {
	out := map[int]string{}
	for i, a := range ls {
		if a.Address == "" {
			continue
		}
		host, port := splitHostPort(a.Address)
		if port == "0" {
			continue
		}
		for j, b := range ls[:i] {
			bhost, bport := splitHostPort(b.Address)
			if b.Address == "" || bport != port {
				continue
			}
			switch {
			case host == bhost:
				out[i] = fmt.Sprintf("repeats /listen/%d", j)
			case isWildcard(host) || isWildcard(bhost):
				out[i] = fmt.Sprintf("overlaps /listen/%d: a wildcard address takes port %s on every address", j, port)
			default:
				continue
			}
			break
		}
	}
	return out
}

func splitHostPort(addr string) (host, port string) {
	i := strings.LastIndexByte(addr, ':')
	return strings.Trim(addr[:i], "[]"), addr[i+1:]
}

func isWildcard(host string) bool { return host == "" || host == "0.0.0.0" || host == "::" }
