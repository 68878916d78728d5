package convert

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/socketd/socketd"
)

// ExportSystemd returns s as a systemd socket unit and the service it
// starts: NAME.socket, and NAME@.service with accept (a template, one
// instance for each connection) or NAME.service without. Every field s sets
// is written, with systemd's quoting and "%%" for "%", so that Systemd
// reads the two files, one after the other, back as s, with two
// exceptions: durations come back in the canonical form imports give them
// ("90s" is "1m30s"), and the standard input and outputs explicitly, as
// imports state them. Whether the socket is enabled lives outside unit
// files, in systemctl enable: the socket unit has an [Install] section for
// that, and a comment when s is disabled.
func ExportSystemd(s *socketd.Socket) []File {
	return []File{
		{Name: s.Name + ".socket", Content: socketUnitText(s)},
		{Name: serviceName(s), Content: serviceText(s)},
	}
}

// Keys of socketd's own in a socket unit, for what systemd cannot say;
// systemd ignores keys that start with X-.
const (
	onLimitKey          = "X-Socketd-OnLimit"
	limitMessageKey     = "X-Socketd-LimitMessage"
	sourcePrefixIPv4Key = "X-Socketd-SourcePrefixIPv4"
	sourcePrefixIPv6Key = "X-Socketd-SourcePrefixIPv6"
	// A rate limit is "PER_SECOND BURST".
	rateLimitKey       = "X-Socketd-RateLimit"
	sourceRateLimitKey = "X-Socketd-SourceRateLimit"
	recordRemoteIPKey  = "X-Socketd-RecordRemoteIP"
	idleTimeoutKey     = "X-Socketd-IdleTimeout"
)

// formatRate writes a rate limit as "PER_SECOND BURST", "" for none.
func formatRate(r *socketd.RateLimit) string {
	if r == nil {
		return ""
	}
	return strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + " " + strconv.Itoa(r.Burst)
}

// parseRate reads what formatRate writes.
func parseRate(v string) (*socketd.RateLimit, error) {
	if v == "" {
		return nil, nil
	}
	f := strings.Fields(v)
	if len(f) != 2 {
		return nil, fmt.Errorf("%q is not a rate a second and a burst", v)
	}
	per, err1 := strconv.ParseFloat(f[0], 64)
	burst, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%q is not a rate a second and a burst", v)
	}
	return &socketd.RateLimit{PerSecond: per, Burst: burst}, nil
}

// serviceName is the file name of the service s's socket unit starts.
func serviceName(s *socketd.Socket) string {
	if s.Accept {
		return s.Name + "@.service"
	}
	return s.Name + ".service"
}

// unitWriter writes a unit file.
type unitWriter struct{ b strings.Builder }

// section starts a [name] section, after a blank line.
func (w *unitWriter) section(name string) {
	if w.b.Len() > 0 {
		w.b.WriteByte('\n')
	}
	fmt.Fprintf(&w.b, "[%s]\n", name)
}

// set writes key=value. A line break in value, which no value can hold,
// becomes a space; a backslash at its end gets a space after it, which
// systemd trims, so that it does not continue the line.
func (w *unitWriter) set(key, value string) {
	value = strings.NewReplacer("\n", " ", "\r", " ").Replace(value)
	if strings.HasSuffix(value, `\`) {
		value += " "
	}
	fmt.Fprintf(&w.b, "%s=%s\n", key, value)
}

// setIf writes key=value if value is not empty.
func (w *unitWriter) setIf(key, value string) {
	if value != "" {
		w.set(key, value)
	}
}

// setBool writes key=yes if b.
func (w *unitWriter) setBool(key string, b bool) {
	if b {
		w.set(key, "yes")
	}
}

// setInt writes key=n if n is not 0.
func (w *unitWriter) setInt(key string, n int) {
	if n != 0 {
		w.set(key, strconv.Itoa(n))
	}
}

// setDuration writes the socketd duration d as a systemd time span, if it
// is set.
func (w *unitWriter) setDuration(key, d string) {
	if v, err := socketd.ParseDuration(d); err == nil && v > 0 {
		d = formatDuration(v)
	}
	w.setIf(key, d)
}

// socketUnitText writes the socket unit of s.
func socketUnitText(s *socketd.Socket) string {
	var w unitWriter
	if !s.Enabled {
		w.b.WriteString("# This socket is disabled in socketd.\n")
	}
	if s.Description != "" {
		w.section("Unit")
		w.set("Description", escapePercent(s.Description))
	}
	w.section("Socket")
	for _, l := range s.Listen {
		if addr, ok := strings.CutPrefix(l, socketd.DatagramPrefix); ok {
			w.set("ListenDatagram", escapePercent(addr))
		} else {
			w.set("ListenStream", escapePercent(l))
		}
	}
	w.set("Accept", formatBool(s.Accept))
	o := &s.SocketOptions
	w.setInt("Backlog", o.Backlog)
	w.setIf("BindIPv6Only", o.BindIPv6Only)
	w.setBool("ReusePort", o.ReusePort)
	w.setBool("KeepAlive", o.KeepAlive)
	w.setDuration("KeepAliveTimeSec", o.KeepAliveTime)
	w.setDuration("KeepAliveIntervalSec", o.KeepAliveInterval)
	w.setInt("KeepAliveProbes", o.KeepAliveProbes)
	w.setBool("NoDelay", o.NoDelay)
	w.setDuration("DeferAcceptSec", o.DeferAccept)
	w.setBool("FreeBind", o.FreeBind)
	w.setInt("ReceiveBuffer", o.ReceiveBuffer)
	w.setInt("SendBuffer", o.SendBuffer)
	w.setIf("BindToDevice", o.BindToDevice)
	w.setIf("SocketUser", escapePercent(o.SocketUser))
	w.setIf("SocketGroup", escapePercent(o.SocketGroup))
	w.setIf("SocketMode", o.SocketMode)
	w.setInt("MaxConnections", s.MaxConnections)
	w.setInt("MaxConnectionsPerSource", s.MaxConnectionsPerSource)
	if d := narrowerDeny(s.IPAddressAllow, s.IPAddressDeny); d != "" {
		w.b.WriteString("# In socketd the most specific rule decides, and " + d + " is denied; systemd lets any\n" +
			"# match of IPAddressAllow= win, and allows it.\n")
	}
	w.setIf("IPAddressAllow", strings.Join(s.IPAddressAllow, " "))
	w.setIf("IPAddressDeny", strings.Join(s.IPAddressDeny, " "))
	// What systemd cannot say, under keys it ignores (X-), so that an
	// import gives it back.
	w.setIf(onLimitKey, s.OnLimit)
	w.setIf(limitMessageKey, s.LimitMessage)
	w.setInt(sourcePrefixIPv4Key, s.SourcePrefixIPv4)
	w.setInt(sourcePrefixIPv6Key, s.SourcePrefixIPv6)
	w.setIf(rateLimitKey, formatRate(s.RateLimit))
	w.setIf(sourceRateLimitKey, formatRate(s.SourceRateLimit))
	w.setIf(recordRemoteIPKey, s.RecordRemoteIP)
	w.setIf(idleTimeoutKey, s.IdleTimeout)
	// So that systemctl enable starts the socket at boot.
	w.section("Install")
	w.set("WantedBy", "sockets.target")
	return w.b.String()
}

// serviceText writes the service s's socket unit starts.
func serviceText(s *socketd.Socket) string {
	var w unitWriter
	w.section("Service")
	w.set("ExecStart", commandLine(s))
	for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
		w.set("Environment", quoteWord(escapePercent(k+"="+s.Environment[k])))
	}
	w.setIf("PassEnvironment", escapePercent(strings.Join(s.PassEnvironment, " ")))
	w.setIf("WorkingDirectory", escapePercent(s.WorkingDirectory))
	w.set("StandardInput", s.Stdin())
	w.set("StandardOutput", journal(s.Stdout()))
	stderr := s.Stderr
	if stderr == "" {
		stderr = socketd.StderrLog // NewSocket's default
	}
	w.set("StandardError", journal(stderr))
	w.setIf("User", escapePercent(s.User))
	w.setIf("Group", escapePercent(s.Group))
	w.setBool("DynamicUser", s.DynamicUser)
	w.setIf("SupplementaryGroups", escapePercent(strings.Join(s.SupplementaryGroups, " ")))
	w.setIf("UMask", s.UMask)
	if s.Nice != nil {
		w.set("Nice", strconv.Itoa(*s.Nice))
	}
	w.setDuration("RuntimeMaxSec", s.RuntimeMax)
	w.setIf("KillSignal", s.KillSignal)
	w.setDuration("TimeoutStopSec", s.TimeoutStop)
	w.setIf("LimitNOFILE", s.LimitNOFILE)
	w.setIf("LimitNPROC", s.LimitNPROC)
	w.setIf("LimitCPU", s.LimitCPU)
	w.setIf("LimitAS", s.LimitAS)
	w.setIf("LimitCORE", s.LimitCORE)
	w.setIf("MemoryMax", s.MemoryMax)
	w.setIf("TasksMax", s.TasksMax)
	return w.b.String()
}

// commandLine writes s's command as an ExecStart= value: "-" for
// ignore_exit_status, then each argument with "%" and "$" doubled, as
// systemd would otherwise resolve them, and quoted where needed.
func commandLine(s *socketd.Socket) string {
	var b strings.Builder
	if s.IgnoreExitStatus {
		b.WriteByte('-')
	}
	for i, a := range s.Command {
		if i > 0 {
			b.WriteByte(' ')
			// systemd resolves "$" in the arguments; the program is a path.
			a = strings.ReplaceAll(a, "$", "$$")
		}
		b.WriteString(quoteWord(escapePercent(a)))
	}
	return b.String()
}

// journal maps socketd's "log" to systemd's journal, the log of a service.
func journal(out string) string {
	if out == socketd.StdoutLog {
		return "journal"
	}
	return out
}
