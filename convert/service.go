package convert

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/socketd/socketd"
)

// This file imports the [Service] section of the service a socket unit
// starts.

// serviceDirective imports a directive of the [Service] section.
func (im *unitImport) serviceDirective(file string, names unitNames, e entry) error {
	s, v := &im.s, e.value
	var err error
	switch e.key {
	case "ExecStart":
		if v == "" {
			s.Command, s.IgnoreExitStatus, im.execLine = nil, false, 0
			return nil
		}
		if im.execLine != 0 {
			return errorf(e.line, "a second ExecStart= (the first is on line %d): socketd runs one command for each connection; "+
				"run the commands from a script", im.execLine)
		}
		return im.execStart(file, names, e)
	case "Type":
		switch v {
		case "", "simple", "exec":
		default:
			im.note(file, e, "socketd runs the command as Type=simple, and a handler's end is the end of its connection")
		}
	case "Environment":
		im.environment(file, names, e)
	case "PassEnvironment":
		im.passEnvironment(file, names, e)
	case "WorkingDirectory":
		return im.workingDirectory(file, names, e)
	case "StandardInput":
		switch v {
		case "":
			s.StandardInput = ""
		case socketd.StdinSocket, socketd.StdinNull:
			s.StandardInput = v
		default:
			s.StandardInput = socketd.StdinNull
			im.note(file, e, "socketd gives a handler the connection or /dev/null as its standard input (socket or null): it gets /dev/null")
		}
	case "StandardOutput":
		im.stdout = optEntry(e)
	case "StandardError":
		im.stderr = optEntry(e)
	case "User":
		im.expanded(file, names, e, &s.User)
	case "Group":
		im.expanded(file, names, e, &s.Group)
	case "DynamicUser":
		s.DynamicUser, err = optBool(v)
	case "SupplementaryGroups":
		im.supplementaryGroups(file, names, e)
	case "UMask":
		if _, err := socketd.ParseUMask(v); err != nil {
			return err
		}
		s.UMask = v
	case "Nice":
		s.Nice = nil
		if v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < -20 || n > 19 {
				return fmt.Errorf("%q is not a nice level from -20 to 19", v)
			}
			s.Nice = &n
		}
	case "RuntimeMaxSec":
		if d, infinity, err := parseTimespan(v); err == nil && (infinity || d == 0) {
			s.RuntimeMax = "" // no limit, as socketd's default
			return nil
		}
		return im.duration(file, e, &s.RuntimeMax)
	case "LimitNOFILE":
		im.rlimit(file, e, &s.LimitNOFILE, "nofile")
	case "LimitNPROC":
		im.rlimit(file, e, &s.LimitNPROC, "nproc")
	case "LimitCPU":
		im.rlimit(file, e, &s.LimitCPU, "cpu")
	case "LimitAS":
		im.rlimit(file, e, &s.LimitAS, "as")
	case "LimitCORE":
		im.rlimit(file, e, &s.LimitCORE, "core")
	case "MemoryMax", "MemoryLimit": // MemoryLimit= is cgroup v1's name
		im.setCap(file, e, &s.MemoryMax, true)
	case "TasksMax":
		im.setCap(file, e, &s.TasksMax, false)
	case "KillSignal":
		if _, err := socketd.ParseKillSignal(v); err != nil {
			im.note(file, e, err.Error())
			return nil
		}
		s.KillSignal = v
	case "TimeoutStopSec":
		if d, infinity, err := parseTimespan(v); err == nil && (infinity || d == 0) {
			im.note(file, e, "socketd always ends a handler with SIGKILL in the end: leave it out for the daemon's --stop-timeout")
			return nil
		}
		return im.duration(file, e, &s.TimeoutStop)
	default:
		im.note(file, e, unmappedReason(e.key))
	}
	return err
}

// setCap sets *dst to the value of a MemoryMax= (memory) or TasksMax= line,
// or lists the line if socketd cannot read it.
func (im *unitImport) setCap(file string, e entry, dst *string, memory bool) {
	if err := socketd.CheckCap(memory, e.value); err != nil {
		im.note(file, e, err.Error())
		return
	}
	*dst = e.value
}

// rlimit imports a Limit*= line into *dst: "VALUE" or "SOFT:HARD". A
// LimitCPU= time span socketd does not read as it is ("1min") is made
// seconds. What socketd cannot read is listed.
func (im *unitImport) rlimit(file string, e entry, dst *string, resource string) {
	v := e.value
	valid := func(v string) bool { return socketd.CheckRlimit(resource, v) == nil }
	if resource == "cpu" && v != "" && !valid(v) {
		parts := strings.Split(v, ":")
		for i, p := range parts {
			if d, infinity, err := parseTimespan(p); err == nil && !infinity {
				parts[i] = strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
			}
		}
		v = strings.Join(parts, ":")
	}
	if v != "" && !valid(v) {
		im.note(file, e, "not a limit socketd reads: a number, infinity, SOFT:HARD, bytes with K, M, G or T, or seconds")
		return
	}
	*dst = v
}

// optEntry returns e, or nil when its empty value resets the setting.
func optEntry(e entry) *entry {
	if e.value == "" {
		return nil
	}
	return &e
}

// execStart imports an ExecStart= command line, as systemd reads it: the
// prefixes of the first word, the program, and its arguments with their
// quotes, escapes and specifiers; "$" is resolved later, when systemd runs
// it, and socketd, which does not, refuses variables.
func (im *unitImport) execStart(file string, names unitNames, e entry) error {
	first, rest, ok, err := extractWord(e.value, true, true)
	for err == nil && ok && first == ";" {
		// systemd skips a ";" where a command would start.
		first, rest, ok, err = extractWord(rest, true, true)
	}
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("has no command")
	}

	var ignore, argv0, noExpand bool
	privilege := ""
	f := first
prefixes:
	for f != "" {
		switch {
		case f[0] == '-' && !ignore:
			ignore = true
		case f[0] == '@' && !argv0:
			argv0 = true
		case f[0] == ':' && !noExpand:
			noExpand = true
		case (f[0] == '+' || f[0] == '!') && privilege == "":
			privilege = f[:1]
		case f[0] == '!' && privilege == "!":
			privilege = "!!"
		default:
			break prefixes
		}
		f = f[1:]
	}
	program, err := names.expand(f)
	if err != nil {
		return err
	}
	if err := checkProgram(program); err != nil {
		return err
	}

	var args []string
	for rest != "" {
		// A ";" on its own separates commands; "\;" is a ";" argument.
		if rest[0] == ';' && (len(rest) == 1 || isSpace(rest[1])) {
			return fmt.Errorf("runs several commands: socketd runs one command for each connection; run them from a script")
		}
		if strings.HasPrefix(rest, `\;`) && (len(rest) == 2 || isSpace(rest[2])) {
			args = append(args, ";")
			rest = strings.TrimLeft(rest[2:], whitespace)
			continue
		}
		var w string
		w, rest, ok, err = extractWord(rest, true, true)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if w, err = names.expand(w); err != nil {
			return err
		}
		args = append(args, w)
	}
	if argv0 {
		if len(args) == 0 {
			return fmt.Errorf("the @ prefix needs argv[0] after the program")
		}
		if args[0] != program {
			im.note(file, e, fmt.Sprintf("argv[0] %q (the @ prefix) is left out: socketd runs the program with its path as argv[0]", args[0]))
		}
		args = args[1:]
	}
	if !noExpand {
		for i, a := range args {
			out, ref := expandDollars(a)
			if ref != "" {
				return fmt.Errorf("%s takes a variable's value, which socketd does not do: write the value, "+
					"or run the command through sh -c", ref)
			}
			args[i] = out
		}
	}
	switch privilege {
	case "+":
		im.note(file, e, "the + prefix (full privileges) is left out: socketd applies the user, group and other settings")
	case "!", "!!":
		im.note(file, e, "the "+privilege+" prefix (no user or group change) is left out: socketd applies the user and group")
	}
	im.s.Command = append([]string{program}, args...)
	im.s.IgnoreExitStatus = ignore
	im.execLine = e.line
	return nil
}

// checkProgram refuses an ExecStart= program that systemd refuses, and one
// that would start with a prefix character, which no ExecStart= could
// write back.
func checkProgram(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("has no program")
	case strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f || strings.ContainsRune(`\"'`, r) }):
		return fmt.Errorf("the program %q has characters systemd refuses in it", p)
	case strings.HasSuffix(p, "/"):
		return fmt.Errorf("the program %q is a directory", p)
	case !filepath.IsAbs(p) && (strings.Contains(p, "/") || p == "." || p == ".."):
		return fmt.Errorf("the program %q is neither an absolute path nor a name to look up in PATH", p)
	case strings.ContainsRune("-@:+!", rune(p[0])):
		return fmt.Errorf("the program name %q starts with an ExecStart= prefix character", p)
	}
	return nil
}

// listWords returns the words of a list directive's line, split as systemd
// splits them (with C escapes if cunescape). An empty value resets the
// list, as in systemd: reset is called and there are no words. A line with
// bad quoting is listed, and systemd ignores it too.
func (im *unitImport) listWords(file string, e entry, cunescape bool, reset func()) []string {
	if e.value == "" {
		reset()
		return nil
	}
	words, err := splitWords(e.value, cunescape, false)
	if err != nil {
		im.note(file, e, fmt.Sprintf("the line %v: systemd ignores it", err))
		return nil
	}
	return words
}

// environment imports the assignments of an Environment= line. A line
// with bad quoting, and assignments systemd would refuse, are listed:
// systemd ignores them too.
func (im *unitImport) environment(file string, names unitNames, e entry) {
	for _, w := range im.listWords(file, e, true, func() { im.s.Environment = nil }) {
		a, err := names.expand(w)
		if err != nil {
			im.noteValue(file, e, w, err.Error())
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		switch {
		case !ok || !validEnvName(k) || !utf8.ValidString(v):
			im.noteValue(file, e, w, "not a NAME=value assignment: systemd ignores it")
		case slices.Contains(socketd.ReservedEnvironment, k):
			im.noteValue(file, e, w, "socketd sets "+k+" for each connection")
		default:
			if im.s.Environment == nil {
				im.s.Environment = map[string]string{}
			}
			im.s.Environment[k] = v
		}
	}
}

// passEnvironment imports the names of a PassEnvironment= line.
func (im *unitImport) passEnvironment(file string, names unitNames, e entry) {
	for _, w := range im.listWords(file, e, false, func() { im.s.PassEnvironment = nil }) {
		k, err := names.expand(w)
		switch {
		case err != nil:
			im.noteValue(file, e, w, err.Error())
		case !validEnvName(k):
			im.noteValue(file, e, w, "not a variable name: systemd ignores it")
		case slices.Contains(socketd.ReservedEnvironment, k):
			im.noteValue(file, e, w, "socketd sets "+k+" for each connection")
		case k == "PATH":
			im.noteValue(file, e, w, "socketd looks the command up in the handler's PATH: set PATH in Environment=")
		case !slices.Contains(im.s.PassEnvironment, k):
			im.s.PassEnvironment = append(im.s.PassEnvironment, k)
		}
	}
}

// validEnvName is systemd's env_name_is_valid().
func validEnvName(k string) bool {
	if k == "" || (k[0] >= '0' && k[0] <= '9') {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// supplementaryGroups imports the groups of a SupplementaryGroups= line.
func (im *unitImport) supplementaryGroups(file string, names unitNames, e entry) {
	for _, w := range im.listWords(file, e, false, func() { im.s.SupplementaryGroups = nil }) {
		g, err := names.expand(w)
		switch {
		case err != nil:
			im.noteValue(file, e, w, err.Error())
		case !validGroupName(g):
			im.noteValue(file, e, w, "not a group name or number: systemd ignores it")
		default:
			im.s.SupplementaryGroups = append(im.s.SupplementaryGroups, g)
		}
	}
}

// validGroupName accepts the group names systemd's relaxed check does, as
// far as socketd cares: no separators, quotes or control characters.
func validGroupName(g string) bool {
	return g != "" && g != "." && g != ".." && utf8.ValidString(g) &&
		!strings.ContainsFunc(g, func(r rune) bool { return r < ' ' || r == 0x7f || strings.ContainsRune(":/,\\\"' ", r) })
}

// workingDirectory imports WorkingDirectory=.
func (im *unitImport) workingDirectory(file string, names unitNames, e entry) error {
	v := e.value
	if v == "" {
		im.s.WorkingDirectory = ""
		return nil
	}
	optional := strings.HasPrefix(v, "-")
	v = strings.TrimPrefix(v, "-")
	if v == "~" {
		im.note(file, e, "~ (the user's home directory) is not supported: write out the directory")
		return nil
	}
	d, err := names.expand(v)
	if err != nil {
		im.note(file, e, err.Error())
		return nil
	}
	if !filepath.IsAbs(d) {
		return fmt.Errorf("%q is not an absolute path", d)
	}
	im.s.WorkingDirectory = d
	if optional {
		im.note(file, e, "the - prefix (carry on without the directory) is left out: socketd requires the directory")
	}
	return nil
}

// output maps a StandardOutput= or StandardError= value to socketd's:
// "socket", "null", "inherit" or "log" for systemd's logging targets. It
// returns "" for the others (a terminal, a file...).
func output(v string) string {
	switch v {
	case "socket", "null", "inherit":
		return v
	case "journal", "syslog", "kmsg", "journal+console", "syslog+console", "kmsg+console":
		return socketd.StderrLog
	}
	return ""
}
