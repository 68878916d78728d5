package convert

import "strings"

// The formats of an import, as Detect names them.
const (
	FormatSystemd = "systemd"
	FormatInetd   = "inetd"
	FormatXinetd  = "xinetd"
)

// Detect tells which format text is in: systemd units have [Socket],
// [Service] or [Unit] sections, xinetd's services are blocks, and anything
// else is read as inetd.conf lines.
func Detect(text string) string {
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "[Socket]" || line == "[Service]" || line == "[Unit]":
			return FormatSystemd
		case strings.HasPrefix(line, "service ") && strings.Contains(text, "{"),
			strings.HasPrefix(line, "defaults") && strings.Contains(text, "{"):
			return FormatXinetd
		}
	}
	return FormatInetd
}
