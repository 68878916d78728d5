package socketd

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Credentials are the user and groups a handler runs as, resolved from a
// definition's User, Group and SupplementaryGroups (see Socket.Credentials).
type Credentials struct {
	SetUID bool // UID applies; else the handler keeps socketd's user
	UID    uint32
	SetGID bool // GID applies; else it keeps socketd's group
	GID    uint32
	// Groups are the handler's only supplementary groups: socketd's own
	// are dropped.
	Groups []uint32
}

// Credentials resolves s's User, Group and SupplementaryGroups, as
// systemd's User=, Group= and SupplementaryGroups=: with User alone the
// group is the user's primary group. Unlike systemd, which adds the user's
// groups from the group database, once any of them is set the handler's
// supplementary groups are exactly those listed: least privilege, and what
// the definition says is all the handler gets. It returns nil if none is
// set: the handler runs as socketd does. Names and numbers are looked up in
// the user database now, so a user removed since the definition was saved
// is an error here.
func (s *Socket) Credentials() (*Credentials, error) {
	if s.User == "" && s.Group == "" && len(s.SupplementaryGroups) == 0 {
		return nil, nil
	}
	c := &Credentials{Groups: []uint32{}}
	if s.User != "" {
		uid, gid, hasGID, err := resolveUser(s.User, s.Group != "")
		if err != nil {
			return nil, err
		}
		c.SetUID, c.UID, c.SetGID, c.GID = true, uid, hasGID, gid
	}
	if s.Group != "" {
		gid, err := lookupGroup(s.Group)
		if err != nil {
			return nil, err
		}
		c.SetGID, c.GID = true, gid
	}
	for _, g := range s.SupplementaryGroups {
		gid, err := lookupGroup(g)
		if err != nil {
			return nil, err
		}
		c.Groups = append(c.Groups, gid)
	}
	return c, nil
}

// resolveUser returns the uid of user name or number s and, if the user
// database knows it, its primary gid. A number the database does not know
// is a user only if the definition sets the group (haveGroup).
func resolveUser(s string, haveGroup bool) (uid, gid uint32, hasGID bool, err error) {
	uid, gid, err = lookupUser(s)
	switch {
	case err == nil:
		return uid, gid, true, nil
	case isDigits(s) && haveGroup:
		uid, err = parseID(s)
		return uid, 0, false, err
	}
	return 0, 0, false, err
}

// lookupUser returns the uid and primary gid of user name or number s.
func lookupUser(s string) (uid, gid uint32, err error) {
	var u *user.User
	if isDigits(s) {
		if _, err := parseID(s); err != nil {
			return 0, 0, err
		}
		u, err = user.LookupId(s)
		if err != nil {
			return 0, 0, fmt.Errorf("user %s is not in the user database: set group too", s)
		}
	} else if u, err = user.Lookup(s); err != nil {
		return 0, 0, fmt.Errorf("no user %q", s)
	}
	if uid, err = parseID(u.Uid); err != nil {
		return 0, 0, err
	}
	if gid, err = parseID(u.Gid); err != nil {
		return 0, 0, err
	}
	return uid, gid, nil
}

// lookupGroup returns the gid of group name or number s. A number need not
// be in the group database.
func lookupGroup(s string) (uint32, error) {
	if isDigits(s) {
		return parseID(s)
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("no group %q", s)
	}
	return parseID(g.Gid)
}

// parseID parses a uid or gid. 65535 and 4294967295 are refused, as
// systemd refuses them: the kernel and old tools use them for "none".
func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 65535 || n == 4294967295 {
		return 0, fmt.Errorf("%q is not a valid user or group id", s)
	}
	return uint32(n), nil
}

// ParseUMask parses an octal umask such as "0027"; "" is systemd's default,
// 0022.
func ParseUMask(s string) (uint32, error) { return parseMode(s, 0o022) }

// parseMode parses permission bits in octal, from 0000 to 0777; "" is def.
func parseMode(s string, def uint32) (uint32, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("%q is not an octal mode from 0000 to 0777", s)
	}
	return uint32(n), nil
}

// killSignals are the signals a definition's KillSignal may name, as
// systemd's KillSignal= takes them, with or without "SIG".
var killSignals = map[string]syscall.Signal{
	"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGHUP": syscall.SIGHUP,
	"SIGQUIT": syscall.SIGQUIT, "SIGKILL": syscall.SIGKILL, "SIGUSR1": syscall.SIGUSR1,
	"SIGUSR2": syscall.SIGUSR2, "SIGABRT": syscall.SIGABRT, "SIGALRM": syscall.SIGALRM,
	"SIGPIPE": syscall.SIGPIPE, "SIGCONT": syscall.SIGCONT, "SIGWINCH": syscall.SIGWINCH,
}

// ParseKillSignal returns the signal s names; "" is SIGTERM.
func ParseKillSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return syscall.SIGTERM, nil
	}
	if sig, ok := killSignals[s]; ok {
		return sig, nil
	}
	if sig, ok := killSignals["SIG"+s]; ok {
		return sig, nil
	}
	return 0, fmt.Errorf("%q is not one of SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGKILL, SIGUSR1, SIGUSR2, SIGABRT, SIGALRM, SIGPIPE, SIGCONT, SIGWINCH", s)
}

// ParseDuration parses a definition's duration, a Go duration such as
// "30s" or "1m30s"; "" is zero, which means the default.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration such as \"30s\" or \"1m30s\"", s)
	}
	return d, nil
}

// UserEnvironment returns USER, LOGNAME, HOME and SHELL for s.User, as
// systemd sets them for a service with User=, or nil if User is unset or
// the user database does not know it. SHELL is read from /etc/passwd, which
// os/user does not report; a user known elsewhere gets no SHELL.
func (s *Socket) UserEnvironment() []string {
	if s.User == "" {
		return nil
	}
	var u *user.User
	var err error
	if isDigits(s.User) {
		u, err = user.LookupId(s.User)
	} else {
		u, err = user.Lookup(s.User)
	}
	if err != nil {
		return nil
	}
	env := []string{"USER=" + u.Username, "LOGNAME=" + u.Username, "HOME=" + u.HomeDir}
	if sh := passwdShell(u.Username); sh != "" {
		env = append(env, "SHELL="+sh)
	}
	return env
}

// passwdShell returns the login shell of user name in /etc/passwd, or "".
func passwdShell(name string) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// name:password:uid:gid:gecos:home:shell
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[0] == name {
			return fields[6]
		}
	}
	return ""
}

// dynamicStandIn is the uid and gid accessAs checks for a dynamic user: one
// that owns no file.
const dynamicStandIn = 61184

// accessAs checks that the handler, with the definition's user and groups,
// may execute the file at path (or, with dir, enter the directory): that it
// can search every directory on the way and has the permission itself. The
// daemon's own access(2) check answers for socketd's user only. Mode bits
// are checked; a file or directory with an access control list is taken as
// allowed, since its list may say otherwise. Without user, group or
// supplementary groups, it checks nothing more.
func (s *Socket) accessAs(path string, dir bool) error {
	c, err := s.Credentials()
	if err != nil {
		return nil // an unknown user is reported on its own
	}
	if s.DynamicUser {
		// A dynamic user owns nothing and is in no group but the listed.
		dyn := Credentials{SetUID: true, UID: dynamicStandIn, SetGID: true, GID: dynamicStandIn}
		if c != nil {
			dyn.Groups = c.Groups
		}
		c = &dyn
	}
	if c == nil {
		return nil // as socketd itself
	}
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	if c.SetUID {
		uid = c.UID
	}
	if c.SetGID {
		gid = c.GID
	}
	who := fmt.Sprintf("uid %d, gid %d", uid, gid)
	switch {
	case s.DynamicUser:
		who = "a dynamic user"
	case s.User != "":
		who = "user " + s.User
	}
	for p := filepath.Dir(path); ; p = filepath.Dir(p) {
		if !permits(p, uid, gid, c.Groups) {
			return fmt.Errorf("%s cannot enter %s", who, p)
		}
		if p == "/" {
			break
		}
	}
	if !permits(path, uid, gid, c.Groups) {
		if dir {
			return fmt.Errorf("%s cannot enter %s", who, path)
		}
		return fmt.Errorf("%s cannot execute %s", who, path)
	}
	return nil
}

// permits reports whether uid, gid and groups have execute (search)
// permission on path by its mode, as the kernel decides it: root needs one
// execute bit (any for a directory), the owner the owner's bit, a member
// of the file's group the group's, anyone else the others'.
func permits(path string, uid, gid uint32, groups []uint32) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return true // reported elsewhere, or not ours to judge
	}
	if _, err := unix.Getxattr(path, "system.posix_acl_access", nil); err == nil {
		return true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	mode := uint32(fi.Mode().Perm())
	switch {
	case uid == 0:
		return fi.IsDir() || mode&0o111 != 0
	case st.Uid == uid:
		return mode&0o100 != 0
	case st.Gid == gid || slices.Contains(groups, st.Gid):
		return mode&0o010 != 0
	}
	return mode&0o001 != 0
}
