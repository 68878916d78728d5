package convert

import (
	"strings"
)

// whitespace is systemd's WHITESPACE: what it trims around keys and values
// and splits words on.
const whitespace = " \t\n\r"

// section is one [Section] of a unit file with its assignments, in order.
type section struct {
	name    string
	line    int
	entries []entry
}

// entry is one Key=Value assignment.
type entry struct {
	line       int
	key, value string
}

// parseUnitText splits a text of unit files into their sections, reading it
// as systemd's configuration parser does: lines whose first non-blank
// character is "#" or ";" are comments, even in the middle of a continued
// line; a line ending in an unescaped backslash continues on the next, the
// backslash becoming a space; keys and values are trimmed. A logical line
// keeps the number of its first line.
func parseUnitText(text string) ([]section, error) {
	if i := strings.IndexByte(text, 0); i >= 0 {
		// systemd reads a NUL as the end of a line; no unit has one.
		return nil, errorf(1+strings.Count(text[:i], "\n"), "contains a NUL byte")
	}
	text = strings.TrimPrefix(text, "\ufeff")
	// read_line ends a line at "\n", "\r\n" or a lone "\r".
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")

	var (
		sections []section
		cont     strings.Builder // the continued line so far
		contLine int             // its first line; 0 when not continuing
	)
	for i, l := range strings.Split(text, "\n") {
		n := i + 1
		if t := strings.TrimLeft(l, whitespace); t != "" && (t[0] == '#' || t[0] == ';') {
			continue
		}
		if endsEscaped(l) {
			if contLine == 0 {
				contLine = n
			}
			cont.WriteString(l[:len(l)-1])
			cont.WriteByte(' ')
			continue
		}
		at := n
		if contLine != 0 {
			cont.WriteString(l)
			l, at = cont.String(), contLine
			cont.Reset()
			contLine = 0
		}
		if err := addUnitLine(&sections, at, l); err != nil {
			return nil, err
		}
	}
	if contLine != 0 {
		// A backslash on the last line continues into nothing.
		if err := addUnitLine(&sections, contLine, cont.String()); err != nil {
			return nil, err
		}
	}
	return sections, nil
}

// endsEscaped reports whether l ends in a backslash that is not itself
// escaped by one before it.
func endsEscaped(l string) bool {
	escaped := false
	for i := 0; i < len(l); i++ {
		switch {
		case escaped:
			escaped = false
		case l[i] == '\\':
			escaped = true
		}
	}
	return escaped
}

// addUnitLine adds one logical line to sections: a section header or an
// assignment to the last section.
func addUnitLine(sections *[]section, n int, l string) error {
	l = strings.Trim(l, whitespace)
	switch {
	case l == "":
		return nil
	case l[0] == '[':
		if len(l) < 2 || l[len(l)-1] != ']' {
			return errorf(n, "%q is not a section header such as [Socket]", l)
		}
		*sections = append(*sections, section{name: l[1 : len(l)-1], line: n})
		return nil
	case len(*sections) == 0:
		return errorf(n, "%q comes before any section such as [Socket]", l)
	}
	k, v, ok := strings.Cut(l, "=")
	if !ok {
		return errorf(n, "%q is not a Key=Value assignment", l)
	}
	k = strings.Trim(k, whitespace)
	if k == "" {
		return errorf(n, "%q has no key before =", l)
	}
	s := &(*sections)[len(*sections)-1]
	s.entries = append(s.entries, entry{line: n, key: k, value: strings.Trim(v, whitespace)})
	return nil
}
