// Package socketd is the vocabulary of the socketd daemon: socket definitions,
// connection records, their states and the rules that make a definition valid.
//
// It imports only the standard library. The daemon's parts (api, store,
// activator) all speak in these types.
package socketd

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Socket is a socket definition: where to listen and what to run for each
// connection. Its Name is its identity.
type Socket struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Listen holds addresses in systemd ListenStream= syntax: "13063",
	// "127.0.0.1:13063", "[::1]:13063", "[::]:13063".
	Listen []string `json:"listen"`
	// Accept is systemd's Accept=: true runs one process per connection.
	Accept bool `json:"accept"`
	// The options of the listening sockets, as flat fields.
	SocketOptions
	// What clients may take, as flat fields.
	Limits
	// What a handler may take, as flat fields.
	ResourceLimits
	// Command is the argv of the handler. No shell is involved.
	Command          []string          `json:"command"`
	Environment      map[string]string `json:"environment,omitempty"`
	WorkingDirectory string            `json:"working_directory,omitempty"`
	// IgnoreExitStatus is systemd's "-" prefix on ExecStart=: a non-zero exit
	// is recorded as exited, not failed.
	IgnoreExitStatus bool `json:"ignore_exit_status"`
	// StandardInput is systemd's StandardInput=: StdinSocket (the
	// connection is stdin; empty means this) or StdinNull (stdin is
	// /dev/null and the connection is fd 3, with LISTEN_FDS=1, as systemd
	// passes it to an Accept=yes service without StandardInput=socket).
	StandardInput string `json:"standard_input,omitempty"`
	// StandardOutput is StdoutSocket, StdoutNull or StdoutLog (captured
	// like stderr); empty is socket when stdin is the socket, else log.
	StandardOutput string `json:"standard_output,omitempty"`
	// Stderr is where the handler's standard error goes: StderrLog,
	// StderrNull, StderrSocket or StderrInherit (where stdout goes).
	Stderr string `json:"stderr"`
	// User and Group are systemd's User= and Group=, a name or a number:
	// the handler runs as them. With User alone, the group is the user's
	// primary group. Empty: socketd's.
	User  string `json:"user,omitempty"`
	Group string `json:"group,omitempty"`
	// DynamicUser is systemd's DynamicUser=: each handler runs as a user
	// and group of its own, allocated for it.
	DynamicUser bool `json:"dynamic_user,omitempty"`
	// SupplementaryGroups are systemd's SupplementaryGroups=: once User,
	// Group or these are set, the handler's only supplementary groups (the
	// user's memberships in the group database are not added, unlike
	// systemd's User=).
	SupplementaryGroups []string `json:"supplementary_groups,omitempty"`
	// UMask is systemd's UMask=, in octal; empty is 0022.
	UMask string `json:"umask,omitempty"`
	// Nice is systemd's Nice=, from -20 to 19; nil keeps socketd's.
	Nice *int `json:"nice,omitempty"`
	// PassEnvironment is systemd's PassEnvironment=: variables of socketd's
	// own environment the handler gets too (those socketd lacks are left
	// out; Environment wins over them).
	PassEnvironment []string `json:"pass_environment,omitempty"`
	// RuntimeMax is systemd's RuntimeMaxSec=, a duration such as "30s": a
	// handler still running after it is stopped (KillSignal, then SIGKILL
	// after TimeoutStop), and its row is killed, saying why. Empty or zero:
	// no limit.
	RuntimeMax string `json:"runtime_max,omitempty"`
	// IdleTimeout is a duration such as "5m": a TCP connection with no
	// data in either direction for that long is ended, its handler
	// stopped (KillSignal) and its row killed, saying why. Empty or zero:
	// none.
	IdleTimeout string `json:"idle_timeout,omitempty"`
	// KillSignal is systemd's KillSignal=, the signal that stops a handler
	// and what it leaves behind; empty is SIGTERM.
	KillSignal string `json:"kill_signal,omitempty"`
	// TimeoutStop is systemd's TimeoutStopSec=: how long after KillSignal
	// SIGKILL follows. Empty: the daemon's --stop-timeout.
	TimeoutStop string `json:"timeout_stop,omitempty"`
	// RecordRemoteIP is how much of a client's address the history keeps
	// (and the events carry): RecordRemoteFull (empty too), RecordRemotePrefix
	// or RecordRemoteNone. The handler and the limits get the whole address
	// either way.
	RecordRemoteIP string `json:"record_remote_ip,omitempty"`

	Enabled bool `json:"enabled"`

	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`

	// Status is the live state, filled in by the daemon; it is never stored
	// and ignored on input.
	Status *SocketStatus `json:"status,omitempty"`
}

// How much of a client's address the history keeps (RecordRemoteIP).
const (
	RecordRemoteFull = "full" // all of it, and the port
	// RecordRemotePrefix keeps the network, not the host: the /24 of an
	// IPv4 address, the /48 of an IPv6 one, and no port.
	RecordRemotePrefix = "prefix"
	RecordRemoteNone   = "none" // neither address nor port
)

// RecordedRemote returns a connection's remote address and port as the
// history keeps them under record (a RecordRemoteIP); "" and 0 for none.
func RecordedRemote(record string, remote netip.AddrPort) (string, int) {
	switch {
	case !remote.IsValid() || record == RecordRemoteNone:
		return "", 0
	case record == RecordRemotePrefix:
		return RecordedPrefix(remote.Addr()).Addr().String(), 0
	}
	return remote.Addr().Unmap().String(), int(remote.Port())
}

// HistoryIP returns address s as the history stores a client's address
// (an IPv4 client as IPv4, not mapped into IPv6), for a remote_ip filter to
// match it; false if s is no IP address.
func HistoryIP(s string) (string, bool) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return "", false
	}
	return addr.Unmap().String(), true
}

// RecordedPrefix is the network of addr that RecordRemotePrefix keeps: its
// /24 for IPv4, its /48 for IPv6.
func RecordedPrefix(addr netip.Addr) netip.Prefix {
	addr, bits := addr.Unmap(), 48
	if addr.Is4() {
		bits = 24
	}
	p, _ := addr.Prefix(bits)
	return p
}

// Where a handler's standard error goes.
const (
	StderrLog    = "log"    // captured, bounded, stored with the connection
	StderrNull   = "null"   // /dev/null
	StderrSocket = "socket" // the connection itself, as inetd does
	// StderrInherit sends stderr where stdout goes, as systemd's
	// StandardError=inherit.
	StderrInherit = "inherit"
)

// Standard input and output of a handler (StandardInput, StandardOutput).
const (
	StdinSocket  = "socket"
	StdinNull    = "null"
	StdoutSocket = "socket"
	StdoutNull   = "null"
	StdoutLog    = "log"
)

// Stdin returns where the handler's stdin comes from: StdinSocket or
// StdinNull. Unset, it is the connection with accept (inetd's nowait), and
// /dev/null without, where the listening sockets are fd 3 onwards (a
// systemd service's default).
func (s *Socket) Stdin() string {
	switch {
	case s.StandardInput != "":
		return s.StandardInput
	case s.Accept:
		return StdinSocket
	}
	return StdinNull
}

// Stdout returns where the handler's stdout goes, with the default filled
// in.
func (s *Socket) Stdout() string {
	switch {
	case s.StandardOutput != "":
		return s.StandardOutput
	case s.Stdin() == StdinSocket:
		return StdoutSocket
	}
	return StdoutLog
}

// NewSocket returns a definition holding the defaults, ready to have JSON
// decoded over it: fields the input leaves out keep their default.
func NewSocket() Socket {
	return Socket{Accept: true, Enabled: true, Stderr: StderrLog}
}

// SocketState is the state of a socket's listeners.
type SocketState string

// Socket states.
const (
	SocketListening SocketState = "listening"
	SocketDisabled  SocketState = "disabled"
	SocketFailed    SocketState = "failed"
)

// SocketStatus is the live state of a socket, as the activator sees it.
type SocketStatus struct {
	State SocketState `json:"state"`
	Since time.Time   `json:"since"`
	// Accepted counts connections accepted since the daemon started,
	// Connected those running now, Refused those closed without a handler.
	Accepted  int64 `json:"accepted"`
	Connected int64 `json:"connected"`
	Refused   int64 `json:"refused"`
	// RefusedByReason counts the refused connections by reason (see
	// Reasons), since the daemon started; reasons never seen are left
	// out.
	RefusedByReason map[string]int64 `json:"refused_by_reason"`
	// Sources lists the sources (see Limits.SourcePrefix) with live
	// connections, the busiest first, at most 100; empty for a unix
	// socket.
	Sources []SourceCount `json:"sources"`
	// PausedUntil is when a socket its rate_limit has paused resumes;
	// nil while it is not paused.
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	// ServicePID is the pid of the running service of an accept: false
	// socket; 0 when none runs.
	ServicePID int `json:"service_pid,omitempty"`
	// Listening holds the addresses actually bound, so port 0 shows the
	// port the kernel picked.
	Listening []string `json:"listening"`
	// Error is the last bind or spawn error, for humans.
	Error string `json:"error,omitempty"`
}

// SourceCount is how many live connections a source has.
type SourceCount struct {
	Source      string `json:"source"`
	Connections int    `json:"connections"`
}

// ConnectionState is the state of one connection in the history.
type ConnectionState string

// Connection states.
const (
	ConnRunning     ConnectionState = "running"
	ConnExited      ConnectionState = "exited"
	ConnFailed      ConnectionState = "failed"
	ConnKilled      ConnectionState = "killed"
	ConnInterrupted ConnectionState = "interrupted"
	ConnRefused     ConnectionState = "refused"
)

// Why a connection is refused (Connection.Reason).
const (
	// ReasonMaxConnections: the socket has max_connections live
	// connections and refuses more (on_limit "refuse").
	ReasonMaxConnections = "max_connections"
	// ReasonPerSource: the source has max_connections_per_source.
	ReasonPerSource = "per_source"
	// ReasonRate: the source is over its rate limit.
	ReasonRate = "rate"
	// ReasonDenied: the access rules deny the source.
	ReasonDenied = "denied"
	// ReasonNoDynamicUID: no dynamic user is free.
	ReasonNoDynamicUID = "no_dynamic_uid"
	// ReasonHistoryUnavailable: the connection cannot be recorded.
	ReasonHistoryUnavailable = "history_unavailable"
	// ReasonShuttingDown: socketd is stopping.
	ReasonShuttingDown = "shutting_down"
	// ReasonFolded marks a summary row: refusals beyond the socket's
	// budget of rows, counted in its error instead of a row each.
	ReasonFolded = "folded"
)

// Reasons lists every refusal reason.
var Reasons = []string{ReasonMaxConnections, ReasonPerSource, ReasonRate, ReasonDenied,
	ReasonNoDynamicUID, ReasonHistoryUnavailable, ReasonShuttingDown, ReasonFolded}

// ConnectionStates lists every connection state, for validating filters.
var ConnectionStates = []ConnectionState{
	ConnRunning, ConnExited, ConnFailed, ConnKilled, ConnInterrupted, ConnRefused,
}

// Valid reports whether s is one of ConnectionStates.
func (s ConnectionState) Valid() bool { return slices.Contains(ConnectionStates, s) }

// ConnectionStateList returns the states as "running, exited, ...", for
// error messages.
func ConnectionStateList() string {
	names := make([]string, len(ConnectionStates))
	for i, st := range ConnectionStates {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}

// ReservedEnvironment names the variables socketd sets for every
// connection; a definition cannot set them.
var ReservedEnvironment = []string{
	"REMOTE_ADDR", "REMOTE_PORT", // systemd
	"PROTO", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT", // UCSPI, as tcpserver
	"UNIXREMOTEPID", "UNIXREMOTEEUID", "UNIXREMOTEEGID", // UCSPI, as unixserver
	"SOCKETD_SOCKET", "SOCKETD_CONNECTION_ID",
	"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", // sd_listen_fds(3), with standard_input null
}

// Connection is one accepted connection and what became of its handler.
type Connection struct {
	ID         int64           `json:"id"`
	Socket     string          `json:"socket"`
	State      ConnectionState `json:"state"`
	RemoteIP   string          `json:"remote_ip"`
	RemotePort int             `json:"remote_port"`
	LocalIP    string          `json:"local_ip"`
	LocalPort  int             `json:"local_port"`
	PID        int             `json:"pid,omitempty"`
	// UID is the dynamic user the handler ran as (dynamic_user); nil
	// otherwise.
	UID *int `json:"uid,omitempty"`
	// PeerPID, PeerUID and PeerGID are the credentials of the process
	// that connected to a unix socket (SO_PEERCRED), which has no address;
	// nil for IP connections.
	PeerPID    *int       `json:"peer_pid,omitempty"`
	PeerUID    *int       `json:"peer_uid,omitempty"`
	PeerGID    *int       `json:"peer_gid,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	EndedAt    *time.Time `json:"ended_at"`
	DurationMS *int64     `json:"duration_ms"`
	ExitCode   *int       `json:"exit_code"`
	// Signal is the name of the signal that ended the handler ("SIGTERM").
	Signal   string `json:"signal,omitempty"`
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
	// Reason is why a refused connection was refused, one of Reasons.
	Reason string `json:"reason,omitempty"`
	// Error says why a connection failed before or around its handler
	// (a spawn error, a refusal), for humans.
	Error string `json:"error,omitempty"`
	// Log is the captured standard error; it is served on its own route.
	Log []byte `json:"-"`
}

// ConnectionFilter selects connections from the history. Zero fields do not
// filter.
type ConnectionFilter struct {
	Socket   string
	State    ConnectionState
	RemoteIP string
	Since    time.Time // started at or after
	Until    time.Time // started before
	Limit    int
	// Cursor is the next_cursor of the previous page.
	Cursor string
}

// ConnectionStats summarises a socket's connections that started in a time
// range, for the dashboard's charts.
type ConnectionStats struct {
	Since, Until time.Time
	// Step is the width of each of Steps, which cover Since to Until.
	Step  time.Duration
	Steps []StepCount
	// Durations counts the finished connections by how long they took:
	// Durations[i] those shorter than DurationBuckets[i] (and not shorter
	// than the bucket before), the last those longer than every bucket.
	Durations []int64
	// Outcomes counts the finished connections that ran a handler by how
	// they ended: "exit 0", "exit 1", "SIGTERM", "killed", ...
	Outcomes map[string]int64
	// Refused counts the refused connections by reason.
	Refused map[string]int64
	// Rows is how many connections were read. At most MaxStatsRows are, the
	// newest: when the range holds more, Partial is true and the counts
	// start at From, the start of the oldest row read.
	Rows    int
	Partial bool
	From    time.Time
}

// StepCount is how many connections started in a step of ConnectionStats:
// those accepted and those refused.
type StepCount struct {
	Start    time.Time
	Accepted int64
	Refused  int64
}

// DurationBuckets are the upper bounds of ConnectionStats.Durations.
var DurationBuckets = []time.Duration{
	10 * time.Millisecond, 100 * time.Millisecond, time.Second, 10 * time.Second,
	time.Minute, 10 * time.Minute, time.Hour,
}

// MaxStatsRows bounds the rows ConnectionStats reads, so that a chart of a
// busy socket costs a bounded read of the history.
const MaxStatsRows = 50000

// History list limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)
