package convert

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// This file reads and writes the words of systemd settings that take
// several (ExecStart=, Environment=, SupplementaryGroups=...), as systemd's
// extract_first_word() splits them, and resolves the "$" of a command line
// as systemd does when it runs it.

// extractWord returns the first word of s and what follows it, as systemd's
// extract_first_word() with EXTRACT_UNQUOTE: words are separated by
// whitespace, single and double quotes group anywhere in a word, and a
// backslash escapes, in quotes too. With cunescape the escapes are C's and
// systemd's (\n, \t, \x41, \101, \u00e9, \s for a space...), without it a
// backslash takes the next character as it is. With relax an unknown
// escape or a trailing backslash outside quotes is kept as written, as
// systemd does (after a warning) for command lines; without, it is an
// error, and systemd ignores the whole setting. ok is false when s has no
// more words.
func extractWord(s string, cunescape, relax bool) (word, rest string, ok bool, err error) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i == len(s) {
		return "", "", false, nil
	}
	var b []byte
	var quote byte // the open quote, or 0
	for i < len(s) {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
			i++
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
			i++
		case quote == 0 && isSpace(c):
			for i < len(s) && isSpace(s[i]) {
				i++
			}
			return string(b), s[i:], true, nil
		case c == '\\':
			i++
			if i == len(s) {
				if relax && quote == 0 {
					return string(append(b, '\\')), "", true, nil
				}
				return "", "", false, errors.New("ends in a backslash")
			}
			if !cunescape {
				b = append(b, s[i])
				i++
				continue
			}
			dec, n, ok := unescapeOne(s[i:])
			if !ok {
				if !relax {
					return "", "", false, fmt.Errorf("has an unknown escape \\%c", s[i])
				}
				b = append(b, '\\', s[i])
				i++
				continue
			}
			b = append(b, dec...)
			i += n
		default:
			b = append(b, c)
			i++
		}
	}
	if quote != 0 {
		return "", "", false, fmt.Errorf("has an unbalanced %c quote", quote)
	}
	return string(b), "", true, nil
}

// splitWords splits s into its words as extractWord reads them.
func splitWords(s string, cunescape, relax bool) ([]string, error) {
	var words []string
	for {
		w, rest, ok, err := extractWord(s, cunescape, relax)
		if err != nil {
			return nil, err
		}
		if !ok {
			return words, nil
		}
		words = append(words, w)
		s = rest
	}
}

// isSpace reports whether c separates words.
func isSpace(c byte) bool { return strings.IndexByte(whitespace, c) >= 0 }

// simpleEscapes are the one-character escapes and what they stand for;
// "\s" is systemd's, for a space.
var simpleEscapes = map[byte]byte{
	'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v',
	'\\': '\\', '"': '"', '\'': '\'', 's': ' ',
}

// unescapeOne decodes the escape sequence s starts with (after its
// backslash), as systemd's cunescape_one() does: it returns the bytes it
// stands for and how many bytes of s it took, or false if it is not one.
// NUL is refused in every form, as systemd refuses it.
func unescapeOne(s string) ([]byte, int, bool) {
	if simple, ok := simpleEscapes[s[0]]; ok {
		return []byte{simple}, 1, true
	}
	switch c := s[0]; {
	case c == 'x':
		// A byte, which need not be UTF-8.
		n, ok := digits(s[1:], 2, 16)
		if !ok || n == 0 {
			return nil, 0, false
		}
		return []byte{byte(n)}, 3, true
	case c == 'u' || c == 'U':
		size := 4
		if c == 'U' {
			size = 8
		}
		n, ok := digits(s[1:], size, 16)
		if !ok || n == 0 || (c == 'U' && !validCodePoint(n)) {
			return nil, 0, false
		}
		return encodeUTF8(n), 1 + size, true
	case c >= '0' && c <= '7':
		n, ok := digits(s, 3, 8)
		if !ok || n == 0 || n > 255 {
			return nil, 0, false
		}
		return []byte{byte(n)}, 3, true
	}
	return nil, 0, false
}

// digits parses the n digits s starts with in base.
func digits(s string, n int, base uint32) (uint32, bool) {
	if len(s) < n {
		return 0, false
	}
	var v uint32
	for i := range n {
		c := s[i]
		var d uint32
		switch {
		case c >= '0' && c <= '9':
			d = uint32(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint32(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint32(c-'A') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		v = v*base + d
	}
	return v, true
}

// validCodePoint is systemd's unichar_is_valid().
func validCodePoint(c uint32) bool {
	return c < 0x110000 && c&0xfffff800 != 0xd800 && (c < 0xfdd0 || c > 0xfdef) && c&0xfffe != 0xfffe
}

// encodeUTF8 encodes c as systemd's utf8_encode_unichar() does, which,
// unlike utf8.AppendRune, encodes the surrogates \u allows too.
func encodeUTF8(c uint32) []byte {
	switch {
	case c < 0x80:
		return []byte{byte(c)}
	case c < 0x800:
		return []byte{0xc0 | byte(c>>6), 0x80 | byte(c&0x3f)}
	case c < 0x10000:
		return []byte{0xe0 | byte(c>>12), 0x80 | byte(c>>6&0x3f), 0x80 | byte(c&0x3f)}
	}
	return []byte{0xf0 | byte(c>>18), 0x80 | byte(c>>12&0x3f), 0x80 | byte(c>>6&0x3f), 0x80 | byte(c&0x3f)}
}

// quoteWord returns w written so that extractWord with cunescape reads it
// back as w: as it is when nothing in it is special, else in double quotes
// with C escapes for the quote, the backslash, control characters and
// bytes that are not UTF-8.
func quoteWord(w string) string {
	if w != "" && w != ";" && !needsQuote(w) {
		return w
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(w); {
		r, size := utf8.DecodeRuneInString(w[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, w[i])
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteString(w[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}

// needsQuote reports whether w has a character that a bare word cannot
// hold.
func needsQuote(w string) bool {
	if !utf8.ValidString(w) {
		return true
	}
	for i := 0; i < len(w); i++ {
		if c := w[i]; c < 0x20 || c == 0x7f || strings.IndexByte(" \"'\\", c) >= 0 {
			return true
		}
	}
	return false
}

// expandDollars resolves the "$" of a command line argument as systemd
// does before it runs the command: "$$" is a "$"; a word that is "$NAME",
// and "${NAME}" anywhere, take a variable's value. socketd runs the command
// as it is written, so a variable is returned as ref, for the caller to
// refuse.
func expandDollars(w string) (out, ref string) {
	if w != "" && w[0] == '$' && (len(w) == 1 || (w[1] != '{' && w[1] != '$')) {
		return "", w
	}
	// The states of systemd's replace_env() without its extensions.
	const (
		word = iota
		dollar
		variable
	)
	var b strings.Builder
	state, start := word, 0 // start: where the text not yet copied begins
	for i := 0; i < len(w); i++ {
		switch state {
		case word:
			if w[i] == '$' {
				state = dollar
			}
		case dollar:
			switch w[i] {
			case '{':
				b.WriteString(w[start : i-1])
				start, state = i-1, variable
			case '$':
				b.WriteString(w[start:i])
				start, state = i+1, word
			default:
				state = word
			}
		case variable:
			switch w[i] {
			case '}':
				return "", w[start : i+1]
			case ':':
				// ${NAME:-default} is not expanded in a command line.
				state = word
			}
		}
	}
	b.WriteString(w[start:])
	return b.String(), ""
}
