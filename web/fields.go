package web

// fieldKind says how a field of the socket form is entered and how its
// text becomes JSON.
type fieldKind int

const (
	kindText   fieldKind = iota // a string, on one line
	kindInt                     // an integer
	kindNumber                  // a number, fractions allowed
	kindBool                    // a checkbox
	kindChoice                  // a string, one of the field's choices
	kindList                    // strings, one a line; blank lines are skipped
	kindArgv                    // strings, one a line, kept as typed: an argv
	kindEnv                     // an object of strings, KEY=VALUE a line
)

// choice is an option of a kindChoice field. Default marks a value that
// means what leaving the field empty means, spelled out ("defer" for
// on_limit): a definition may hold either, and the form keeps the one it
// holds.
type choice struct {
	Value, Label string
	Default      bool
}

// formField describes a field of the socket form.
type formField struct {
	// Pointer is the field's JSON pointer in a definition: "/listen",
	// "/rate_limit/burst". Without its slash it names the form's input.
	Pointer string
	Label   string
	Kind    fieldKind
	Help    string
	Choices []choice
}

// formGroup is a fieldset of the socket form.
type formGroup struct {
	ID, Legend string
	// Summary says what the group holds, beside its legend.
	Summary string
	Fields  []formField
}

// socketFormGroups are the fields of the socket form, every field of a
// definition (TestFormCoversEverySocketField holds it to socketd.Socket),
// grouped as a sysadmin looks for them.
var socketFormGroups = []formGroup{
	{ID: "basics", Legend: "Basics", Summary: "where to listen and what to run", Fields: []formField{
		{Pointer: "/name", Label: "Name", Kind: kindText,
			Help: "Lower case letters, digits, “.”, “_” and “-”: the socket's key in the API and in its address."},
		{Pointer: "/description", Label: "Description", Kind: kindText, Help: "For people (systemd's Description=)."},
		{Pointer: "/listen", Label: "Listen", Kind: kindList,
			Help: "One address a line: a port (every address, IPv6 and IPv4), 127.0.0.1:13063, [::1]:13063, " +
				"a unix socket's path or @name; udp: before an IP address for a datagram socket. Port 0 lets the kernel pick."},
		{Pointer: "/command", Label: "Command", Kind: kindArgv,
			Help: "The program, then each argument, one a line, run without a shell (ExecStart=). " +
				"For a shell line: /bin/sh, then -c, then the line. The program is an absolute path or a name found in PATH."},
		{Pointer: "/environment", Label: "Environment", Kind: kindEnv, Help: "KEY=VALUE, one a line (Environment=)."},
		{Pointer: "/working_directory", Label: "Working directory", Kind: kindText, Help: "An absolute path (WorkingDirectory=)."},
		{Pointer: "/accept", Label: "Accept: a process for each connection", Kind: kindBool,
			Help: "systemd's Accept=yes, inetd's nowait. Off: one service gets the listening sockets (Accept=no, inetd's wait)."},
		{Pointer: "/enabled", Label: "Enabled", Kind: kindBool,
			Help: "A disabled socket keeps its definition and does not listen."},
		{Pointer: "/ignore_exit_status", Label: "Ignore the exit status", Kind: kindBool,
			Help: "The “-” prefix of ExecStart=: a handler's non-zero exit is recorded as exited, not failed."},
	}},
	{ID: "process", Legend: "Process", Summary: "who runs the handler, its streams, how it stops", Fields: []formField{
		{Pointer: "/user", Label: "User", Kind: kindText,
			Help: "A name or a number (User=); needs socketd to run as root. Empty: socketd's."},
		{Pointer: "/group", Label: "Group", Kind: kindText,
			Help: "A name or a number (Group=). With a user alone, the user's primary group."},
		{Pointer: "/dynamic_user", Label: "Dynamic user", Kind: kindBool,
			Help: "A user and group of its own for each handler, with an empty /tmp (DynamicUser=); excludes user and group."},
		{Pointer: "/supplementary_groups", Label: "Supplementary groups", Kind: kindList,
			Help: "One a line (SupplementaryGroups=): once set, or a user or group, the handler's only supplementary groups."},
		{Pointer: "/pass_environment", Label: "Pass environment", Kind: kindList,
			Help: "Names of socketd's own variables the handler gets too, one a line (PassEnvironment=)."},
		{Pointer: "/umask", Label: "Umask", Kind: kindText, Help: "In octal (UMask=). Empty: 0022."},
		{Pointer: "/nice", Label: "Nice", Kind: kindInt, Help: "From -20 to 19 (Nice=). Empty: socketd's own."},
		{Pointer: "/standard_input", Label: "Standard input", Kind: kindChoice, Choices: []choice{
			{"", "default: socket with accept, else null", true},
			{"socket", "socket: the connection, as inetd", false},
			{"null", "null: /dev/null; the connection is fd 3, as systemd", false},
		}, Help: "StandardInput=."},
		{Pointer: "/standard_output", Label: "Standard output", Kind: kindChoice, Choices: []choice{
			{"", "default: socket if stdin is, else log", true},
			{"socket", "socket: the connection", false},
			{"log", "log: kept with the connection, as stderr", false},
			{"null", "null: /dev/null", false},
		}, Help: "StandardOutput=."},
		{Pointer: "/stderr", Label: "Standard error", Kind: kindChoice, Choices: []choice{
			{"log", "log: kept with the connection (64 KiB)", true},
			{"null", "null: /dev/null", false},
			{"socket", "socket: to the client, as inetd does", false},
			{"inherit", "inherit: where stdout goes", false},
		}, Help: "StandardError=."},
		{Pointer: "/kill_signal", Label: "Kill signal", Kind: kindText,
			Help: "The signal that stops a handler (KillSignal=), such as SIGHUP. Empty: SIGTERM."},
		{Pointer: "/timeout_stop", Label: "Stop timeout", Kind: kindText,
			Help: "How long after the kill signal SIGKILL follows (TimeoutStopSec=), such as 5s. Empty: the daemon's --stop-timeout."},
		{Pointer: "/runtime_max", Label: "Longest run", Kind: kindText,
			Help: "A handler still running after this long is stopped (RuntimeMaxSec=), such as 15m. Empty: no limit."},
	}},
	{ID: "limits", Legend: "Limits", Summary: "how many, how fast, from where", Fields: []formField{
		{Pointer: "/max_connections", Label: "Max connections", Kind: kindInt,
			Help: "Connections (or service runs) alive at once (MaxConnections=). Empty: 64."},
		{Pointer: "/on_limit", Label: "Beyond max connections", Kind: kindChoice, Choices: []choice{
			{"", "default: defer, wait in the backlog", true},
			{"defer", "defer: wait in the backlog", true},
			{"refuse", "refuse: close, after the limit message", false},
		}},
		{Pointer: "/limit_message", Label: "Limit message", Kind: kindText,
			Help: "One line written to a client refused at the limit; needs refuse."},
		{Pointer: "/max_connections_per_source", Label: "Max connections per source", Kind: kindInt,
			Help: "Connections one source may have at once (MaxConnectionsPerSource=); more are refused. Empty: no limit."},
		{Pointer: "/source_prefix_ipv4", Label: "Source prefix, IPv4", Kind: kindInt,
			Help: "Bits of a client's IPv4 address that make its source. Empty: 32."},
		{Pointer: "/source_prefix_ipv6", Label: "Source prefix, IPv6", Kind: kindInt,
			Help: "Bits of a client's IPv6 address that make its source. Empty: 64."},
		{Pointer: "/rate_limit/per_second", Label: "Rate limit: connections a second", Kind: kindNumber,
			Help: "On average; beyond it the socket pauses and clients wait in the backlog. Empty, with burst: no limit."},
		{Pointer: "/rate_limit/burst", Label: "Rate limit: burst", Kind: kindInt, Help: "Connections at once."},
		{Pointer: "/source_rate_limit/per_second", Label: "Source rate limit: connections a second", Kind: kindNumber,
			Help: "For each source; beyond it the source's connections are refused. Empty, with burst: no limit."},
		{Pointer: "/source_rate_limit/burst", Label: "Source rate limit: burst", Kind: kindInt, Help: "Connections at once."},
		{Pointer: "/ip_address_allow", Label: "Allowed addresses", Kind: kindList,
			Help: "One rule a line: an address, a CIDR prefix, any, localhost, link-local or multicast (IPAddressAllow=). " +
				"The most specific rule that matches a client decides."},
		{Pointer: "/ip_address_deny", Label: "Denied addresses", Kind: kindList,
			Help: "One rule a line, as above (IPAddressDeny=): any here lets in only the allowed addresses."},
		{Pointer: "/record_remote_ip", Label: "Clients' addresses in the history", Kind: kindChoice, Choices: []choice{
			{"", "default: full, the whole address and port", true},
			{"full", "full: the whole address and port", true},
			{"prefix", "prefix: the /24 or /48, no port", false},
			{"none", "none: neither address nor port", false},
		}, Help: "What the history and the events keep of a client's address; handlers, access rules and limits see all of it."},
		{Pointer: "/idle_timeout", Label: "Idle timeout", Kind: kindText,
			Help: "A TCP connection silent both ways for this long is ended, such as 5m. Empty: never."},
	}},
	{ID: "isolation", Legend: "Isolation", Summary: "what a handler may take", Fields: []formField{
		{Pointer: "/memory_max", Label: "Memory cap", Kind: kindText,
			Help: "For a handler and all it starts (MemoryMax=): bytes with K, M, G or T, a percentage of the host's, or infinity."},
		{Pointer: "/tasks_max", Label: "Tasks cap", Kind: kindText,
			Help: "Processes and threads of a handler and all it starts (TasksMax=): a count, a percentage, or infinity."},
		{Pointer: "/limit_nofile", Label: "Open files", Kind: kindText,
			Help: "LimitNOFILE=: a number or SOFT:HARD, infinity allowed, at least 8. Empty: 1024 soft."},
		{Pointer: "/limit_nproc", Label: "Processes of the user", Kind: kindText,
			Help: "LimitNPROC=: a number or SOFT:HARD, infinity allowed."},
		{Pointer: "/limit_cpu", Label: "CPU time", Kind: kindText,
			Help: "LimitCPU=: a duration such as 10m, or seconds; SOFT:HARD allowed."},
		{Pointer: "/limit_as", Label: "Address space", Kind: kindText,
			Help: "LimitAS=: bytes with K, M, G or T, or infinity; SOFT:HARD allowed."},
		{Pointer: "/limit_core", Label: "Core file size", Kind: kindText,
			Help: "LimitCORE=: bytes with K, M, G or T, or infinity; 0 for none."},
	}},
	{ID: "sockets", Legend: "Listening sockets", Summary: "options of the sockets themselves", Fields: []formField{
		{Pointer: "/backlog", Label: "Backlog", Kind: kindInt,
			Help: "Connections waiting to be accepted (Backlog=). Empty: the kernel's maximum."},
		{Pointer: "/bind_ipv6_only", Label: "IPv6 only", Kind: kindChoice, Choices: []choice{
			{"", "unset: the kernel's setting", true},
			{"default", "default: the kernel's setting", true},
			{"both", "both: an IPv6 wildcard takes IPv4 too", false},
			{"ipv6-only", "ipv6-only: IPv6 addresses take IPv6 only", false},
		}, Help: "BindIPv6Only=."},
		{Pointer: "/reuse_port", Label: "Reuse port", Kind: kindBool, Help: "SO_REUSEPORT (ReusePort=)."},
		{Pointer: "/free_bind", Label: "Free bind", Kind: kindBool,
			Help: "Bind an address the host does not have yet (FreeBind=)."},
		{Pointer: "/bind_to_device", Label: "Network interface", Kind: kindText,
			Help: "Take connections on this interface only (BindToDevice=)."},
		{Pointer: "/no_delay", Label: "No delay", Kind: kindBool, Help: "TCP_NODELAY on connections (NoDelay=)."},
		{Pointer: "/defer_accept", Label: "Defer accept", Kind: kindText,
			Help: "Accept a connection once the client has sent something, or after this long (DeferAcceptSec=)."},
		{Pointer: "/keep_alive", Label: "Keep-alive", Kind: kindBool, Help: "TCP keep-alive probes on connections (KeepAlive=)."},
		{Pointer: "/keep_alive_time", Label: "Keep-alive time", Kind: kindText,
			Help: "Silence before the first probe, such as 5m (KeepAliveTimeSec=)."},
		{Pointer: "/keep_alive_interval", Label: "Keep-alive interval", Kind: kindText,
			Help: "Between probes, such as 30s (KeepAliveIntervalSec=)."},
		{Pointer: "/keep_alive_probes", Label: "Keep-alive probes", Kind: kindInt,
			Help: "Probes unanswered before the connection ends (KeepAliveProbes=)."},
		{Pointer: "/receive_buffer", Label: "Receive buffer", Kind: kindInt, Help: "Bytes (ReceiveBuffer=)."},
		{Pointer: "/send_buffer", Label: "Send buffer", Kind: kindInt, Help: "Bytes (SendBuffer=)."},
		{Pointer: "/socket_user", Label: "Socket file's user", Kind: kindText,
			Help: "The owner of a unix socket's file (SocketUser=). Empty: socketd's."},
		{Pointer: "/socket_group", Label: "Socket file's group", Kind: kindText,
			Help: "The group of a unix socket's file (SocketGroup=). Empty: socketd's."},
		{Pointer: "/socket_mode", Label: "Socket file's mode", Kind: kindText,
			Help: "In octal (SocketMode=). Empty: 0666."},
	}},
}
