package convert

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// This file parses the values of systemd settings (booleans, numbers, time
// spans, sizes) as systemd does, and writes durations the way socketd keeps
// them.

// parseBool parses a systemd boolean.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (yes, no, true, false, on, off, 1, 0)", s)
}

// formatBool writes a boolean as systemd's documentation does.
func formatBool(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// parseUint parses a systemd unsigned integer that socketd keeps in an
// int.
func parseUint(s string) (int, error) {
	n, err := strconv.ParseUint(strings.TrimPrefix(s, "+"), 10, 31)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number from 0 to %d", s, math.MaxInt32)
	}
	return int(n), nil
}

// timeUnits are the units of a systemd time span, in the order systemd's
// parse_time() tries them: the first that the text starts with wins.
var timeUnits = []struct {
	suffix string
	usec   uint64
}{
	{"seconds", 1e6}, {"second", 1e6}, {"sec", 1e6}, {"s", 1e6},
	{"minutes", 60e6}, {"minute", 60e6}, {"min", 60e6},
	{"months", 2629800e6}, {"month", 2629800e6}, {"M", 2629800e6},
	{"msec", 1e3}, {"ms", 1e3}, {"m", 60e6},
	{"hours", 3600e6}, {"hour", 3600e6}, {"hr", 3600e6}, {"h", 3600e6},
	{"days", 86400e6}, {"day", 86400e6}, {"d", 86400e6},
	{"weeks", 604800e6}, {"week", 604800e6}, {"w", 604800e6},
	{"years", 31557600e6}, {"year", 31557600e6}, {"y", 31557600e6},
	{"usec", 1}, {"us", 1}, {"\u00b5s", 1}, {"\u03bcs", 1},
}

// parseTimespan parses a systemd time span ("30", "5s", "1min 30s",
// "1.5h", "infinity") whose unit, when it has none, is seconds, as the
// *Sec= settings take it. It keeps systemd's precision, a microsecond.
func parseTimespan(s string) (d time.Duration, infinity bool, err error) {
	bad := fmt.Errorf("%q is not a time span such as 30s, 1min 30s or infinity", s)
	p := strings.TrimLeft(s, whitespace)
	if rest, ok := strings.CutPrefix(p, "infinity"); ok {
		if strings.TrimLeft(rest, whitespace) != "" {
			return 0, false, bad
		}
		return 0, true, nil
	}
	var usec uint64
	for something := false; ; something = true {
		p = strings.TrimLeft(p, whitespace)
		if p == "" {
			if !something {
				return 0, false, bad
			}
			break
		}
		num := strings.TrimPrefix(p, "+")
		intPart := num[:countDigits(num)]
		rest := num[len(intPart):]
		frac, dot := "", false
		if r, ok := strings.CutPrefix(rest, "."); ok {
			dot, frac = true, r[:countDigits(r)]
			rest = r[len(frac):]
			if frac == "" {
				return 0, false, bad // "3." or "3.s"
			}
		} else if intPart == "" {
			return 0, false, bad
		}
		unit := strings.TrimLeft(rest, whitespace)
		mult, matched := uint64(1e6), false
		for _, u := range timeUnits {
			if after, ok := strings.CutPrefix(unit, u.suffix); ok {
				mult, unit, matched = u.usec, after, true
				break
			}
		}
		if !matched && len(unit) == len(rest) && rest != "" {
			return 0, false, bad // "12.34.56", "5x"
		}
		p = unit

		var n uint64
		if intPart != "" {
			if n, err = strconv.ParseUint(intPart, 10, 64); err != nil {
				return 0, false, bad
			}
		}
		if n > math.MaxUint64/mult || n*mult > math.MaxUint64-usec {
			return 0, false, bad
		}
		usec += n * mult
		if dot {
			for m, i := mult/10, 0; i < len(frac) && m > 0; i, m = i+1, m/10 {
				usec += uint64(frac[i]-'0') * m
			}
		}
	}
	if usec > math.MaxInt64/1000 {
		return 0, false, fmt.Errorf("%q is longer than socketd can keep", s)
	}
	return time.Duration(usec) * time.Microsecond, false, nil
}

// countDigits returns how many decimal digits s starts with.
func countDigits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// formatDuration writes d the way imports keep durations: Go's form
// without the zero units at its end ("5m", "1h30m", "1m30s", "1.5s",
// "500ms"), which both socketd and systemd read. It is rounded to the
// microsecond, systemd's precision.
func formatDuration(d time.Duration) string {
	s := d.Round(time.Microsecond).String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// parseSize parses a systemd size in bytes with an optional binary suffix
// ("8K" is 8192), as ReceiveBuffer= takes it.
func parseSize(s string) (int, error) {
	bad := fmt.Errorf("%q is not a size in bytes such as 65536 or 64K", s)
	num := s[:countDigits(s)]
	if num == "" {
		return 0, bad
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil {
		return 0, bad
	}
	suffix := strings.TrimLeft(s[len(num):], whitespace)
	shift := 0 // of 10 bits: K is 1
	if suffix != "" {
		shift = strings.Index("BKMGTPE", suffix)
		if len(suffix) > 1 || shift < 0 {
			return 0, bad
		}
	}
	if n > uint64(math.MaxInt32)>>(10*shift) {
		return 0, fmt.Errorf("%q is more than %d bytes", s, math.MaxInt32)
	}
	return int(n << (10 * shift)), nil
}
