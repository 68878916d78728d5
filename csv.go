package socketd

import (
	"strconv"
	"strings"
	"time"
)

// ConnectionCSVHeader names the columns of a connection as CSV, as the API
// names the fields; the dashboard's export and socketctl's write it.
var ConnectionCSVHeader = []string{"id", "socket", "state", "remote_ip", "remote_port", "local_ip", "local_port",
	"pid", "uid", "peer_pid", "peer_uid", "peer_gid", "started_at", "ended_at", "duration_ms",
	"exit_code", "signal", "bytes_in", "bytes_out", "reason", "error"}

// CSVRecord returns c as a row of ConnectionCSVHeader's columns: times in
// RFC 3339 UTC, what is unknown empty. Text that a spreadsheet would take
// for a formula (=, +, -, @ first) is prefixed with a quote.
func (c Connection) CSVRecord() []string {
	num := func(n *int) string {
		if n == nil {
			return ""
		}
		return strconv.Itoa(*n)
	}
	ended, duration, pid, remotePort, localPort := "", "", "", "", ""
	if c.EndedAt != nil {
		ended = c.EndedAt.UTC().Format(time.RFC3339Nano)
	}
	if c.DurationMS != nil {
		duration = strconv.FormatInt(*c.DurationMS, 10)
	}
	if c.PID != 0 {
		pid = strconv.Itoa(c.PID)
	}
	// A unix socket's connection has neither addresses nor ports.
	if c.RemoteIP != "" {
		remotePort = strconv.Itoa(c.RemotePort)
	}
	if c.LocalIP != "" {
		localPort = strconv.Itoa(c.LocalPort)
	}
	return []string{
		strconv.FormatInt(c.ID, 10), csvText(c.Socket), string(c.State), c.RemoteIP, remotePort,
		c.LocalIP, localPort, pid, num(c.UID), num(c.PeerPID), num(c.PeerUID), num(c.PeerGID),
		c.StartedAt.UTC().Format(time.RFC3339Nano), ended, duration, num(c.ExitCode), c.Signal,
		strconv.FormatInt(c.BytesIn, 10), strconv.FormatInt(c.BytesOut, 10), c.Reason, csvText(c.Error),
	}
}

func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
