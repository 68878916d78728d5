package convert

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// unitNames are the names a unit's %-specifiers resolve to.
type unitNames struct {
	// unit is the unit's full name, "x.socket" or "x.service"; empty for
	// the instance of a template (x@.service), whose name systemd makes up
	// for each connection.
	unit string
	// prefix is the name before the type suffix or the "@": the socket's
	// name.
	prefix string
}

// systemPaths are the specifiers whose value is a fixed directory in
// systemd's system manager.
var systemPaths = map[byte]string{
	't': "/run", 'S': "/var/lib", 'C': "/var/cache", 'L': "/var/log",
	'E': "/etc", 'T': "/tmp", 'V': "/var/tmp",
}

// expand resolves the %-specifiers of a setting's value as systemd's
// specifier_printf() does for a system unit: "%%" is "%", a "%" at the end
// stays, and "%p", "%n", "%N" and the directories of the system manager
// ("%t" is /run...) resolve. The others depend on the machine, the user or
// the connection, and are an error.
func (u unitNames) expand(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			b.WriteByte('%')
			break
		}
		i++
		c := s[i]
		switch {
		case c == '%':
			b.WriteByte('%')
		case c == 'p':
			b.WriteString(u.prefix)
		case (c == 'n' || c == 'N') && u.unit != "":
			n := u.unit
			if c == 'N' {
				n = n[:strings.LastIndexByte(n, '.')]
			}
			b.WriteString(n)
		case systemPaths[c] != "":
			b.WriteString(systemPaths[c])
		default:
			return "", specifierError(s[i:])
		}
	}
	return b.String(), nil
}

// specifierError says why the specifier at the start of s does not resolve.
func specifierError(s string) error {
	r, _ := utf8.DecodeRuneInString(s)
	switch r {
	case 'i', 'I', 'n', 'N', 'j', 'J':
		return fmt.Errorf("%%%c names the instance of the service, which systemd makes up for each connection; "+
			"socketd passes the peer's address in REMOTE_ADDR and REMOTE_PORT instead", r)
	}
	return fmt.Errorf("%%%c depends on the machine or the user systemd runs it for: write out its value", r)
}

// escapePercent writes s so that expand reads it back as s.
func escapePercent(s string) string { return strings.ReplaceAll(s, "%", "%%") }
