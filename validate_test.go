package socketd_test

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/internal/testhandler"
)

func TestParseListen(t *testing.T) {
	good := map[string]string{
		"13063":                ":13063",
		"0":                    ":0",
		"127.0.0.1:13063":      "127.0.0.1:13063",
		"0.0.0.0:80":           "0.0.0.0:80",
		"[::1]:13063":          "[::1]:13063",
		"[::]:13063":           "[::]:13063",
		"[::ffff:127.0.0.1]:7": "127.0.0.1:7",
		"udp:69":               "udp :69",
		"udp:0.0.0.0:69":       "udp4 0.0.0.0:69",
		"udp:[::1]:69":         "udp6 [::1]:69",
		"/run/socketd/x.sock":  "unix /run/socketd/x.sock",
		"@socketd-x":           "unix @socketd-x",
	}
	for in, want := range good {
		la, err := socketd.ParseListen(in)
		network := "tcp6"
		if n, a, ok := strings.Cut(want, " "); ok {
			network, want = n, a
		}
		switch {
		case network != "tcp6":
		case strings.HasPrefix(want, ":") || strings.HasPrefix(want, "[::]:"):
			network = "tcp"
		case !strings.HasPrefix(want, "["):
			network = "tcp4"
		}
		if err != nil || la.Network != network || la.Address != want {
			t.Errorf("ParseListen(%q) = %+v, %v; want %s %s", in, la, err, network, want)
		}
	}
	for _, in := range []string{"", "65536", "99999", "99999999999999999999", "-1", "host.example:80",
		"1.2.3.4", "::1:80", "[::1]", "127.0.0.1:", ":80", "[fe80::1%eth0]:80", "127.0.0.1:80x",
		"udp:", "udp:x", "tcp:80", "run/x.sock", "/a/./b", "/a/", "@", "/a\x00b"} {
		if la, err := socketd.ParseListen(in); err == nil {
			t.Errorf("ParseListen(%q) = %+v, want an error", in, la)
		}
	}
}

func TestValidateAcceptsAGoodDefinition(t *testing.T) {
	s := socketd.NewSocket()
	s.Name = "hello"
	s.Listen = []string{"13063", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:2323", "[::1]:2323"}
	s.Command = []string{"sh", "-c", "echo Hello World"}
	s.Environment = map[string]string{"GREETING": "hi"}
	s.WorkingDirectory = "/"
	nice := -5
	s.UMask = "0077"
	if os.Geteuid() == 0 { // else they are a 422: see TestValidateNeedsRoot
		s.User, s.Group, s.SupplementaryGroups, s.Nice = "nobody", "0", []string{"root", "4242"}, &nice
	}
	s.PassEnvironment, s.RuntimeMax, s.KillSignal, s.TimeoutStop = []string{"LANG", "TZ"}, "1m30s", "HUP", "5s"
	s.IdleTimeout = "5m"
	s.ResourceLimits = socketd.ResourceLimits{LimitNOFILE: "1024:infinity", LimitNPROC: "infinity", LimitCPU: "90",
		LimitAS: "2G", LimitCORE: "0:16M", MemoryMax: "12.5%", TasksMax: "64"}
	s.SocketOptions = socketd.SocketOptions{Backlog: 128, BindIPv6Only: socketd.BindIPv6Both, ReusePort: true,
		KeepAlive: true, KeepAliveTime: "5m", KeepAliveInterval: "30s", KeepAliveProbes: 5, NoDelay: true,
		DeferAccept: "3s", FreeBind: true, ReceiveBuffer: 1 << 20, SendBuffer: 1 << 20, BindToDevice: "lo"}
	s.Limits = socketd.Limits{MaxConnections: 10, OnLimit: socketd.OnLimitRefuse, LimitMessage: "busy, call later",
		MaxConnectionsPerSource: 2, SourcePrefixIPv4: 24, SourcePrefixIPv6: 56,
		RateLimit: &socketd.RateLimit{PerSecond: 100, Burst: 10}, SourceRateLimit: &socketd.RateLimit{PerSecond: 0.5, Burst: 3},
		IPAddressAllow: []string{"localhost", "10.0.0.0/8", "::ffff:192.0.2.0/120", "2001:db8::1"},
		IPAddressDeny:  []string{"any", "link-local", "multicast"}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	s.Listen, s.BindIPv6Only = []string{"[::]:80", "0.0.0.0:80", "81"}, socketd.BindIPv6Only // two families
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		s.User, s.Group = "4242", "4243" // numbers the user database lacks, with a group
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	// A service on every kind of socket; TCP and UDP may share a port.
	svc := socketd.NewSocket()
	svc.Name, svc.Accept, svc.Command = "svc", false, []string{"/bin/true"}
	svc.Listen = []string{"udp:69", "69", "/run/socketd/svc.sock", "@svc", "udp:[::1]:70"}
	svc.SocketMode, svc.ReceiveBuffer, svc.NoDelay, svc.ReusePort = "0660", 4096, true, true
	if os.Geteuid() == 0 {
		svc.SocketUser, svc.SocketGroup = "nobody", "4242"
	}
	if err := svc.Validate(); err != nil {
		t.Fatal(err)
	}
	if svc.Stdin() != socketd.StdinNull || svc.Stdout() != socketd.StdoutLog {
		t.Errorf("a service's streams default to %s and %s, want null and log", svc.Stdin(), svc.Stdout())
	}
	if !socketd.ValidName(strings.Repeat("a", 63)) || !socketd.ValidName("0.x-y_z") {
		t.Error("a name of 63 characters, or of digits, dots, dashes and underscores, is refused")
	}
	if p, err := s.LookCommand(); err != nil || !filepath.IsAbs(p) {
		t.Fatalf("LookCommand = %q, %v", p, err)
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		edit    func(*socketd.Socket)
		pointer string
	}{
		{"bad name", func(s *socketd.Socket) { s.Name = "Hello World" }, "/name"},
		{"empty name", func(s *socketd.Socket) { s.Name = "" }, "/name"},
		{"long name", func(s *socketd.Socket) { s.Name = strings.Repeat("a", 64) }, "/name"},
		{"no listen", func(s *socketd.Socket) { s.Listen = nil }, "/listen"},
		{"bad listen", func(s *socketd.Socket) { s.Listen = []string{"80", "nope"} }, "/listen/1"},
		{"bad listen before a good one", func(s *socketd.Socket) { s.Listen = []string{"nope", "80"} }, "/listen/0"},
		{"same address spelled twice", func(s *socketd.Socket) { s.Listen = []string{"[::1]:80", "[0:0::1]:80"} }, "/listen/1"},
		{"repeated listen", func(s *socketd.Socket) { s.Listen = []string{"80", "80"} }, "/listen/1"},
		{"bare port and IPv6 wildcard", func(s *socketd.Socket) { s.Listen = []string{"13070", "[::]:13070"} }, "/listen/1"},
		{"IPv4 wildcard and bare port", func(s *socketd.Socket) { s.Listen = []string{"0.0.0.0:13070", "13070"} }, "/listen/1"},
		{"wildcard and specific", func(s *socketd.Socket) { s.Listen = []string{"127.0.0.1:0", "[::]:80", "127.0.0.1:80"} }, "/listen/2"},
		{"reserved variable", func(s *socketd.Socket) { s.Environment = map[string]string{"REMOTE_ADDR": "x"} }, "/environment/REMOTE_ADDR"},
		{"reserved socketd variable", func(s *socketd.Socket) { s.Environment = map[string]string{"SOCKETD_CONNECTION_ID": "1"} }, "/environment/SOCKETD_CONNECTION_ID"},
		{"datagram with accept", func(s *socketd.Socket) { s.Listen = []string{"udp:69"} }, "/listen/0"},
		{"inetd wait with two sockets", func(s *socketd.Socket) {
			s.Accept, s.StandardInput, s.Listen = false, socketd.StdinSocket, []string{"udp:69", "70"}
		}, "/standard_input"},
		{"unclean unix path", func(s *socketd.Socket) { s.Listen = []string{"/run/../x.sock"} }, "/listen/0"},
		{"long unix path", func(s *socketd.Socket) { s.Listen = []string{"/" + strings.Repeat("x", 107)} }, "/listen/0"},
		{"empty abstract name", func(s *socketd.Socket) { s.Listen = []string{"@"} }, "/listen/0"},
		{"repeated unix path", func(s *socketd.Socket) { s.Listen = []string{"/run/x.sock", "/run/x.sock"} }, "/listen/1"},
		{"repeated datagram", func(s *socketd.Socket) { s.Accept, s.Listen = false, []string{"udp:69", "udp:69"} }, "/listen/1"},
		{"keep-alive on unix", func(s *socketd.Socket) { s.Listen, s.KeepAlive = []string{"/run/x.sock"}, true }, "/keep_alive"},
		{"backlog on datagram", func(s *socketd.Socket) { s.Accept, s.Listen, s.Backlog = false, []string{"udp:69"}, 5 }, "/backlog"},
		{"service writing to its listening socket", func(s *socketd.Socket) {
			s.Accept, s.StandardOutput = false, socketd.StdoutSocket
		}, "/standard_output"},
		{"service's stderr to its listening socket", func(s *socketd.Socket) { s.Accept, s.Stderr = false, socketd.StderrSocket }, "/stderr"},
		{"negative max_connections", func(s *socketd.Socket) { s.MaxConnections = -1 }, "/max_connections"},
		{"unknown on_limit", func(s *socketd.Socket) { s.OnLimit = "drop" }, "/on_limit"},
		{"limit message when deferring", func(s *socketd.Socket) { s.LimitMessage = "busy" }, "/limit_message"},
		{"two-line limit message", func(s *socketd.Socket) { s.OnLimit, s.LimitMessage = socketd.OnLimitRefuse, "busy\nnow" }, "/limit_message"},
		{"bad allow rule", func(s *socketd.Socket) { s.IPAddressAllow = []string{"localhost", "10.0.0.0/33"} }, "/ip_address_allow/1"},
		{"host name rule", func(s *socketd.Socket) { s.IPAddressDeny = []string{"example.com"} }, "/ip_address_deny/0"},
		{"short mapped prefix", func(s *socketd.Socket) { s.IPAddressDeny = []string{"::ffff:10.0.0.0/64"} }, "/ip_address_deny/0"},
		{"negative per-source limit", func(s *socketd.Socket) { s.MaxConnectionsPerSource = -1 }, "/max_connections_per_source"},
		{"IPv4 prefix too long", func(s *socketd.Socket) { s.SourcePrefixIPv4 = 33 }, "/source_prefix_ipv4"},
		{"IPv6 prefix too long", func(s *socketd.Socket) { s.SourcePrefixIPv6 = 129 }, "/source_prefix_ipv6"},
		{"zero rate", func(s *socketd.Socket) { s.RateLimit = &socketd.RateLimit{Burst: 1} }, "/rate_limit/per_second"},
		{"no burst", func(s *socketd.Socket) { s.SourceRateLimit = &socketd.RateLimit{PerSecond: 1} }, "/source_rate_limit/burst"},
		{"soft over hard", func(s *socketd.Socket) { s.LimitNOFILE = "200:100" }, "/limit_nofile"},
		{"bad size", func(s *socketd.Socket) { s.LimitAS = "12X" }, "/limit_as"},
		{"bad cpu time", func(s *socketd.Socket) { s.LimitCPU = "soon" }, "/limit_cpu"},
		{"bad memory cap", func(s *socketd.Socket) { s.MemoryMax = "lots" }, "/memory_max"},
		{"memory cap over 100%", func(s *socketd.Socket) { s.MemoryMax = "120%" }, "/memory_max"},
		{"no memory at all", func(s *socketd.Socket) { s.MemoryMax = "0" }, "/memory_max"},
		{"bad tasks cap", func(s *socketd.Socket) { s.TasksMax = "-1" }, "/tasks_max"},
		{"tasks cap in bytes", func(s *socketd.Socket) { s.TasksMax = "10K" }, "/tasks_max"},
		{"no task at all", func(s *socketd.Socket) { s.TasksMax = "0%" }, "/tasks_max"},
		{"more tasks than pids", func(s *socketd.Socket) { s.TasksMax = "5000000" }, "/tasks_max"},
		{"bad count", func(s *socketd.Socket) { s.LimitNPROC = "-1" }, "/limit_nproc"},
		{"idle timeout of a service", func(s *socketd.Socket) { s.Accept, s.IdleTimeout = false, "5m" }, "/idle_timeout"},
		{"idle timeout on unix", func(s *socketd.Socket) { s.Listen, s.IdleTimeout = []string{"/run/x.sock"}, "5m" }, "/idle_timeout"},
		{"socket mode on TCP", func(s *socketd.Socket) { s.SocketMode = "0600" }, "/socket_mode"},
		{"socket mode on abstract", func(s *socketd.Socket) { s.Listen, s.SocketMode = []string{"@x"}, "0600" }, "/socket_mode"},
		{"bad socket mode", func(s *socketd.Socket) { s.Listen, s.SocketMode = []string{"/run/x.sock"}, "0888" }, "/socket_mode"},
		{"unknown socket user", func(s *socketd.Socket) { s.Listen, s.SocketUser = []string{"/run/x.sock"}, "no-such-user" }, "/socket_user"},
		{"unknown socket group", func(s *socketd.Socket) { s.Listen, s.SocketGroup = []string{"/run/x.sock"}, "no-such-group" }, "/socket_group"},
		{"no command", func(s *socketd.Socket) { s.Command = nil }, "/command"},
		{"missing program", func(s *socketd.Socket) { s.Command = []string{"/nonexistent/prog"} }, "/command/0"},
		{"not in PATH", func(s *socketd.Socket) { s.Command = []string{"no-such-program-here"} }, "/command/0"},
		{"relative path", func(s *socketd.Socket) { s.Command = []string{"./prog"} }, "/command/0"},
		{"directory", func(s *socketd.Socket) { s.Command = []string{"/"} }, "/command/0"},
		{"not executable", func(s *socketd.Socket) { s.Command = []string{notExec} }, "/command/0"},
		{"NUL in argument", func(s *socketd.Socket) { s.Command = []string{"/bin/sh", "a\x00b"} }, "/command/1"},
		{"env key with =", func(s *socketd.Socket) { s.Environment = map[string]string{"A=B": "c"} }, "/environment/A=B"},
		{"env key with /", func(s *socketd.Socket) { s.Environment = map[string]string{"a/b=": "c"} }, "/environment/a~1b="},
		{"relative workdir", func(s *socketd.Socket) { s.WorkingDirectory = "tmp" }, "/working_directory"},
		{"missing workdir", func(s *socketd.Socket) { s.WorkingDirectory = "/nonexistent" }, "/working_directory"},
		{"bad stderr", func(s *socketd.Socket) { s.Stderr = "file" }, "/stderr"},
		{"unknown user", func(s *socketd.Socket) { s.User = "no-such-user-here" }, "/user"},
		{"user id unknown without group", func(s *socketd.Socket) { s.User = "4242" }, "/user"},
		{"user id -1", func(s *socketd.Socket) { s.User, s.Group = "4294967295", "0" }, "/user"},
		{"user id 65535", func(s *socketd.Socket) { s.User, s.Group = "65535", "0" }, "/user"},
		{"unknown group", func(s *socketd.Socket) { s.Group = "no-such-group-here" }, "/group"},
		{"unknown supplementary group", func(s *socketd.Socket) { s.SupplementaryGroups = []string{"0", "no-such-group-here"} }, "/supplementary_groups/1"},
		{"umask not octal", func(s *socketd.Socket) { s.UMask = "0999" }, "/umask"},
		{"umask too wide", func(s *socketd.Socket) { s.UMask = "1777" }, "/umask"},
		{"nice too high", func(s *socketd.Socket) { n := 20; s.Nice = &n }, "/nice"},
		{"nice too low", func(s *socketd.Socket) { n := -21; s.Nice = &n }, "/nice"},
		{"pass reserved variable", func(s *socketd.Socket) { s.PassEnvironment = []string{"HOME", "REMOTE_ADDR"} }, "/pass_environment/1"},
		{"pass bad variable name", func(s *socketd.Socket) { s.PassEnvironment = []string{"A=B"} }, "/pass_environment/0"},
		{"pass PATH", func(s *socketd.Socket) { s.PassEnvironment = []string{"PATH"} }, "/pass_environment/0"},
		{"pass twice", func(s *socketd.Socket) { s.PassEnvironment = []string{"LANG", "TZ", "LANG"} }, "/pass_environment/2"},
		{"runtime_max not a duration", func(s *socketd.Socket) { s.RuntimeMax = "5 minutes" }, "/runtime_max"},
		{"negative timeout_stop", func(s *socketd.Socket) { s.TimeoutStop = "-1s" }, "/timeout_stop"},
		{"zero timeout_stop", func(s *socketd.Socket) { s.TimeoutStop = "0s" }, "/timeout_stop"},
		{"unknown kill_signal", func(s *socketd.Socket) { s.KillSignal = "SIGFOO" }, "/kill_signal"},
		{"bad standard_input", func(s *socketd.Socket) { s.StandardInput = "tty" }, "/standard_input"},
		{"keep_alive_time without keep_alive", func(s *socketd.Socket) { s.KeepAliveTime = "1m" }, "/keep_alive_time"},
		{"keep_alive_probes without keep_alive", func(s *socketd.Socket) { s.KeepAliveProbes = 3 }, "/keep_alive_probes"},
		{"keep_alive_interval too short", func(s *socketd.Socket) { s.KeepAlive, s.KeepAliveInterval = true, "10ms" }, "/keep_alive_interval"},
		{"keep_alive_probes too many", func(s *socketd.Socket) { s.KeepAlive, s.KeepAliveProbes = true, 128 }, "/keep_alive_probes"},
		{"bind_ipv6_only on IPv4 only", func(s *socketd.Socket) { s.Listen, s.BindIPv6Only = []string{"127.0.0.1:0"}, socketd.BindIPv6Only }, "/bind_ipv6_only"},
		{"bad bind_ipv6_only", func(s *socketd.Socket) { s.BindIPv6Only = "v6" }, "/bind_ipv6_only"},
		{"negative backlog", func(s *socketd.Socket) { s.Backlog = -1 }, "/backlog"},
		{"huge backlog", func(s *socketd.Socket) { s.Backlog = 1 << 20 }, "/backlog"},
		{"negative buffer", func(s *socketd.Socket) { s.ReceiveBuffer = -1 }, "/receive_buffer"},
		{"huge buffer", func(s *socketd.Socket) { s.SendBuffer = 1 << 31 }, "/send_buffer"},
		{"defer_accept not a duration", func(s *socketd.Socket) { s.DeferAccept = "soon" }, "/defer_accept"},
		{"bad device name", func(s *socketd.Socket) { s.BindToDevice = "eth0/1" }, "/bind_to_device"},
		{"long device name", func(s *socketd.Socket) { s.BindToDevice = "abcdefghijklmnop" }, "/bind_to_device"},
		{"bad standard_output", func(s *socketd.Socket) { s.StandardOutput = "journal" }, "/standard_output"},
		{"reserved LISTEN_FDS", func(s *socketd.Socket) { s.Environment = map[string]string{"LISTEN_FDS": "2"} }, "/environment/LISTEN_FDS"},
		{"empty PATH finds nothing", func(s *socketd.Socket) {
			s.Command = []string{"sh"}
			s.Environment = map[string]string{"PATH": dir}
		}, "/command/0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := socketd.NewSocket()
			s.Name = "ok"
			s.Listen = []string{"0"}
			s.Command = []string{"/bin/sh"}
			c.edit(&s)
			err := s.Validate()
			var e *socketd.Error
			if !errors.As(err, &e) || e.Code != socketd.CodeInvalid {
				t.Fatalf("Validate = %v, want a CodeInvalid *Error", err)
			}
			var pointers []string
			for _, f := range e.Fields {
				pointers = append(pointers, f.Pointer)
				if f.Detail == "" {
					t.Errorf("field %s has no detail", f.Pointer)
				}
			}
			if !slices.Contains(pointers, c.pointer) {
				t.Errorf("fields %v do not point at %s", pointers, c.pointer)
			}
		})
	}
}

func TestErrorCode(t *testing.T) {
	if socketd.ErrorCode(nil) != "" {
		t.Error("nil has a code")
	}
	if got := socketd.ErrorCode(errors.New("disk on fire")); got != socketd.CodeInternal {
		t.Errorf("plain error code = %q", got)
	}
	wrapped := errors.Join(errors.New("context"), socketd.Errorf(socketd.CodeNotFound, "no socket %q", "x"))
	if got := socketd.ErrorCode(wrapped); got != socketd.CodeNotFound {
		t.Errorf("wrapped code = %q", got)
	}
}

// TestValidateNeedsRoot: a definition that changes the handler's user,
// groups or raises its priority needs socketd to run as root; as another
// user it is a 422, not a failure at every connection. As root, the test
// runs itself again as nobody.
func TestValidateNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		runAsNobody(t, "TestValidateNeedsRoot")
		return
	}
	nice := -1
	s := socketd.NewSocket()
	s.Name, s.Listen, s.Command = "x", []string{"0", "/tmp/x.sock"}, []string{"/bin/sh"}
	s.User, s.Group, s.SupplementaryGroups, s.Nice = "nobody", "0", []string{"0"}, &nice
	s.SocketUser, s.SocketGroup = "nobody", "0"
	var e *socketd.Error
	if err := s.Validate(); !errors.As(err, &e) || len(e.Fields) != 6 {
		t.Fatalf("Validate = %v, want the six fields refused", err)
	}
}

// TestValidateChecksAccessAsTheUser: with user (or group), the command
// must be executable and the working directory enterable by that user, not
// only by socketd.
func TestValidateChecksAccessAsTheUser(t *testing.T) {
	if os.Geteuid() != 0 {
		testhandler.RequireRoot(t)
	}
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	private := filepath.Join(dir, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\n"), 0o744); err != nil { // the owner's only
		t.Fatal(err)
	}
	hidden := filepath.Join(private, "prog")
	if err := os.WriteFile(hidden, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, user, group, cmd, wd, pointer string
	}{
		{"not executable by the user", "nobody", "", prog, "", "/command/0"},
		{"in a directory the user cannot enter", "nobody", "", hidden, "", "/command/0"},
		{"working directory", "nobody", "", "/bin/sh", private, "/working_directory"},
		{"group only", "", "nogroup", prog, "", ""}, // root stays root: allowed
		{"as root", "root", "", hidden, private, ""},
		{"executable by the user", "nobody", "", "/bin/sh", dir, ""},
		{"dynamic user, command in /tmp", "", "", filepath.Join("/tmp", "x"), "", "/command/0"},
		{"dynamic user, working directory in /tmp", "", "", "/bin/sh", "/tmp", "/working_directory"},
	} {
		s := socketd.NewSocket()
		s.Name, s.Listen, s.Command, s.WorkingDirectory = "x", []string{"0"}, []string{c.cmd}, c.wd
		s.User, s.Group = c.user, c.group
		if strings.HasPrefix(c.name, "dynamic user") {
			s.DynamicUser = true
			if c.cmd != "/bin/sh" {
				// An executable in /tmp, which the handler does not see.
				f, err := os.CreateTemp("/tmp", "prog")
				if err != nil {
					t.Fatal(err)
				}
				f.Chmod(0o755)
				f.Close()
				defer os.Remove(f.Name())
				s.Command = []string{f.Name()}
			}
		}
		err := s.Validate()
		var e *socketd.Error
		switch {
		case c.pointer == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.pointer != "" && (!errors.As(err, &e) || len(e.Fields) != 1 || e.Fields[0].Pointer != c.pointer):
			t.Errorf("%s: Validate = %v, want %s refused", c.name, err, c.pointer)
		}
	}
}

// runAsNobody runs test name of this binary as user nobody, from a copy
// nobody can read, and fails t if it fails.
func runAsNobody(t *testing.T, name string) {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^"+name+"$", "-test.count=1")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
}

func TestParseRule(t *testing.T) {
	for in, want := range map[string]string{
		"any":                  "0.0.0.0/0 ::/0",
		"localhost":            "127.0.0.0/8 ::1/128",
		"10.1.2.3":             "10.1.2.3/32",
		"10.1.2.3/8":           "10.0.0.0/8",
		"::ffff:192.0.2.1":     "192.0.2.1/32",
		"::ffff:192.0.2.0/120": "192.0.2.0/24",
		"2001:db8::1/48":       "2001:db8::/48",
	} {
		r, err := socketd.ParseRule(in)
		var got []string
		for _, p := range r {
			got = append(got, p.String())
		}
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("ParseRule(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}

func TestSourcePrefix(t *testing.T) {
	var l socketd.Limits
	for in, want := range map[string]string{
		"192.0.2.7":           "192.0.2.7/32",
		"::ffff:192.0.2.7":    "192.0.2.7/32", // an IPv4 client over IPv6 counts as IPv4
		"2001:db8:1:2:3::4":   "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::": "2001:db8:1:2::/64",
	} {
		if got := l.SourcePrefix(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("SourcePrefix(%s) = %s, want %s", in, got, want)
		}
	}
	l.SourcePrefixIPv4, l.SourcePrefixIPv6 = 24, 48
	if got := l.SourcePrefix(netip.MustParseAddr("192.0.2.7")).String(); got != "192.0.2.0/24" {
		t.Errorf("with /24: %s", got)
	}
	if got := l.SourcePrefix(netip.MustParseAddr("2001:db8:1:2::1")).String(); got != "2001:db8:1::/48" {
		t.Errorf("with /48: %s", got)
	}
}

func TestRecordedRemote(t *testing.T) {
	for _, tc := range []struct {
		record, remote string
		wantIP         string
		wantPort       int
	}{
		{"", "192.0.2.77:4000", "192.0.2.77", 4000},
		{socketd.RecordRemoteFull, "[2001:db8:1:2::7]:4000", "2001:db8:1:2::7", 4000},
		{socketd.RecordRemotePrefix, "192.0.2.77:4000", "192.0.2.0", 0},
		{socketd.RecordRemotePrefix, "[2001:db8:1:2::7]:4000", "2001:db8:1::", 0},
		{socketd.RecordRemotePrefix, "[::ffff:198.51.100.9]:4000", "198.51.100.0", 0},
		{socketd.RecordRemoteNone, "192.0.2.77:4000", "", 0},
	} {
		ip, port := socketd.RecordedRemote(tc.record, netip.MustParseAddrPort(tc.remote))
		if ip != tc.wantIP || port != tc.wantPort {
			t.Errorf("RecordedRemote(%q, %s) = %q, %d; want %q, %d", tc.record, tc.remote, ip, port, tc.wantIP, tc.wantPort)
		}
	}
	if ip, port := socketd.RecordedRemote(socketd.RecordRemoteFull, netip.AddrPort{}); ip != "" || port != 0 {
		t.Errorf("no remote recorded as %q, %d", ip, port)
	}
	s := socketd.NewSocket()
	s.Name, s.Listen, s.Command = "a", []string{"1234"}, []string{"/bin/true"}
	s.RecordRemoteIP = "hashed"
	var e *socketd.Error
	if err := s.Validate(); !errors.As(err, &e) || len(e.Fields) != 1 || e.Fields[0].Pointer != "/record_remote_ip" {
		t.Errorf("record_remote_ip hashed: %v", err)
	}
}
