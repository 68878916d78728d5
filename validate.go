package socketd

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
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
	maxGroups      = 1024
)

// NamePattern is the regular expression every socket name matches.
const NamePattern = `^[a-z0-9][a-z0-9._-]{0,62}$`

var nameRE = regexp.MustCompile(NamePattern)

// ValidName reports whether name can name a socket.
func ValidName(name string) bool { return nameRE.MatchString(name) }

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
	parsed := map[int]listen{} // the entries that parse, by index
	for i, l := range s.Listen {
		la, err := parseListen(l)
		if err != nil {
			add(fmt.Sprintf("/listen/%d", i), "%v", err)
			continue
		}
		if la.kind == listenUDP && s.Accept {
			add(fmt.Sprintf("/listen/%d", i), "a datagram socket has no connections to accept: it needs accept: false")
		}
		parsed[i] = la
	}
	for i, j := range listenOverlaps(s.Listen, parsed, s.BindIPv6Only == BindIPv6Only) {
		add(fmt.Sprintf("/listen/%d", i), "%s", j)
	}
	kinds := kindsOf(parsed)
	s.SocketOptions.validate(add, kinds)
	s.Limits.validate(add, kinds, s.Accept)
	s.ResourceLimits.validate(add)
	if d, err := ParseDuration(s.IdleTimeout); err != nil {
		add("/idle_timeout", "%v", err)
	} else if d > 0 && !kinds.tcp {
		add("/idle_timeout", "applies to TCP connections, and listen has no TCP address")
	} else if d > 0 && !s.Accept {
		add("/idle_timeout", "applies to connections: a service (accept false) has none")
	}
	switch s.RecordRemoteIP {
	case "", RecordRemoteFull, RecordRemotePrefix, RecordRemoteNone:
	default:
		add("/record_remote_ip", "%q is not %s, %s or %s", s.RecordRemoteIP, RecordRemoteFull, RecordRemotePrefix, RecordRemoteNone)
	}
	if !s.Accept && s.Stdin() == StdinNull {
		// The sockets are listening ones: nothing can be written to them.
		if s.Stdout() == StdoutSocket {
			add("/standard_output", "socket: a service's listening socket cannot be written to; use log or null, or standard_input socket")
		}
		if s.Stderr == StderrSocket {
			add("/stderr", "socket: a service's listening socket cannot be written to; use log, null or inherit")
		}
	}
	if !s.Accept && s.Stdin() == StdinSocket && len(s.Listen) > 1 {
		add("/standard_input", "socket (inetd's wait) passes one listening socket as stdin, and listen has %d; "+
			"use null to pass them all as fd 3 onwards", len(s.Listen))
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
		if path, err := s.LookCommand(); err != nil {
			add("/command/0", "%v", err)
		} else if err := s.accessAs(path, false); err != nil {
			add("/command/0", "%v", err)
		} else if s.DynamicUser && inPrivateTmp(path) {
			add("/command/0", "%s is in /tmp or /var/tmp, which a dynamic_user handler has of its own, empty", path)
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
		} else if err := s.accessAs(d, true); err != nil {
			add("/working_directory", "%v", err)
		} else if s.DynamicUser && inPrivateTmp(d) {
			add("/working_directory", "%s is in /tmp or /var/tmp, which a dynamic_user handler has of its own, empty", d)
		}
	}
	switch s.Stderr {
	case StderrLog, StderrNull, StderrSocket, StderrInherit:
	default:
		add("/stderr", "must be one of log, null, socket, inherit")
	}
	switch s.StandardInput {
	case "", StdinSocket, StdinNull:
	default:
		add("/standard_input", "must be socket or null")
	}
	switch s.StandardOutput {
	case "", StdoutSocket, StdoutNull, StdoutLog:
	default:
		add("/standard_output", "must be one of socket, null, log")
	}
	// Changing them needs root (CAP_SETUID, CAP_SETGID, CAP_SYS_NICE):
	// without it every connection would fail.
	notRoot := os.Geteuid() != 0
	if u := s.User; u != "" {
		if _, _, _, err := resolveUser(u, s.Group != ""); err != nil {
			add("/user", "%v", err)
		} else if notRoot {
			add("/user", "needs socketd to run as root")
		}
	}
	if s.DynamicUser {
		switch {
		case s.User != "" || s.Group != "":
			add("/dynamic_user", "excludes user and group: each handler gets a user and group of its own")
		case notRoot:
			add("/dynamic_user", "needs socketd to run as root")
		}
	}
	if notRoot && s.Group != "" {
		add("/group", "needs socketd to run as root")
	}
	if notRoot && len(s.SupplementaryGroups) > 0 {
		add("/supplementary_groups", "needs socketd to run as root")
	}
	if n := s.Nice; notRoot && n != nil && *n < 0 {
		add("/nice", "below 0 needs socketd to run as root")
	}
	if g := s.Group; g != "" {
		if _, err := lookupGroup(g); err != nil {
			add("/group", "%v", err)
		}
	}
	if len(s.SupplementaryGroups) > maxGroups {
		add("/supplementary_groups", "has more than %d groups", maxGroups)
	}
	for i, g := range s.SupplementaryGroups {
		if _, err := lookupGroup(g); err != nil {
			add(fmt.Sprintf("/supplementary_groups/%d", i), "%v", err)
		}
	}
	if _, err := ParseUMask(s.UMask); err != nil {
		add("/umask", "%v", err)
	}
	if n := s.Nice; n != nil && (*n < -20 || *n > 19) {
		add("/nice", "must be from -20 to 19")
	}
	if len(s.PassEnvironment) > maxEnv {
		add("/pass_environment", "has more than %d variables", maxEnv)
	}
	for i, k := range s.PassEnvironment {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00") || len(k) > maxStringLen:
			add(fmt.Sprintf("/pass_environment/%d", i), "is not a valid variable name")
		case slices.Contains(ReservedEnvironment, k):
			add(fmt.Sprintf("/pass_environment/%d", i), "is set by socketd for each connection and cannot be passed")
		case k == "PATH":
			add(fmt.Sprintf("/pass_environment/%d", i), "cannot be passed: set PATH in environment, where the command is looked up")
		case slices.Contains(s.PassEnvironment[:i], k):
			add(fmt.Sprintf("/pass_environment/%d", i), "repeats %s", k)
		}
	}
	if _, err := ParseDuration(s.RuntimeMax); err != nil {
		add("/runtime_max", "%v", err)
	}
	if d, err := ParseDuration(s.TimeoutStop); err != nil {
		add("/timeout_stop", "%v", err)
	} else if s.TimeoutStop != "" && d == 0 {
		add("/timeout_stop", "must be more than zero (leave it out for the daemon's --stop-timeout)")
	}
	if _, err := ParseKillSignal(s.KillSignal); err != nil {
		add("/kill_signal", "%v", err)
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
	if unix.Access(path, unix.X_OK) != nil {
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}

// inPrivateTmp reports whether path is under /tmp or /var/tmp, which a
// dynamic_user handler does not see (it gets empty ones of its own).
func inPrivateTmp(path string) bool {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	for _, dir := range []string{"/tmp", "/var/tmp"} {
		if path == dir || strings.HasPrefix(path, dir+"/") {
			return true
		}
	}
	return false
}
