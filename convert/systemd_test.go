package convert_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/convert"
	"github.com/socketd/socketd/internal/seed"
)

// The Hello World units of the wiki page socketd started from.
const (
	helloSocket  = seed.SocketUnit
	helloService = seed.ServiceUnit
)

// helloWorld is the definition the Hello World units stand for.
func helloWorld() socketd.Socket {
	s := socketd.NewSocket()
	s.Name = "octoi-helloworld"
	s.Description = "OCTOI HelloWorld Socket for Per-Connection Servers"
	s.Listen = []string{"13063"}
	s.Accept = true
	s.Command = []string{"/opt/helloworld.sh"}
	s.IgnoreExitStatus = true
	s.StandardInput = socketd.StdinSocket
	s.StandardOutput = socketd.StdoutSocket
	s.Stderr = socketd.StderrNull
	s.DynamicUser = true
	return s
}

func TestSystemdHelloWorld(t *testing.T) {
	fixed := helloWorld()
	fixed.DynamicUser, fixed.User, fixed.Group = false, "nobody", "nogroup"
	for _, tc := range []struct {
		name, text string
		want       socketd.Socket
		unmapped   []string // source:line:directive
	}{{
		name: "socket then service",
		text: helloSocket + "\n" + helloService,
		want: helloWorld(),
		unmapped: []string{
			"octoi-helloworld.socket:9:WantedBy",
			"octoi-helloworld@.service:12:Description",
		},
	}, {
		name: "service then socket",
		text: helloService + helloSocket,
		want: helloWorld(),
		unmapped: []string{
			"octoi-helloworld@.service:2:Description",
			"octoi-helloworld.socket:17:WantedBy",
		},
	}, {
		name: "a fixed user",
		text: helloSocket + strings.Replace(helloService, "DynamicUser=true", "User=nobody\nGroup=nogroup", 1),
		want: fixed,
		unmapped: []string{
			"octoi-helloworld.socket:9:WantedBy",
			"octoi-helloworld@.service:11:Description",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := convert.Systemd("octoi-helloworld", tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Sockets) != 1 || !reflect.DeepEqual(res.Sockets[0], tc.want) {
				t.Fatalf("got %+v\nwant %+v", res.Sockets, tc.want)
			}
			if got := unmappedKeys(res.Unmapped); !reflect.DeepEqual(got, tc.unmapped) {
				t.Errorf("unmapped %q, want %q", got, tc.unmapped)
			}
			for _, u := range res.Unmapped {
				if u.Socket != "octoi-helloworld" || u.Reason == "" {
					t.Errorf("unmapped %+v: want the socket's name and a reason", u)
				}
			}
		})
	}
}

// unmappedKeys returns the source, line and directive of each of u.
func unmappedKeys(u []convert.Unmapped) []string {
	keys := []string{}
	for _, x := range u {
		keys = append(keys, fmt.Sprintf("%s:%d:%s", x.Source, x.Line, x.Directive))
	}
	return keys
}

// service returns a Hello World socket unit with a service made of lines.
func service(lines ...string) string {
	return helloSocket + "[Service]\n" + strings.Join(lines, "\n") + "\n"
}

func TestSystemdExecStart(t *testing.T) {
	for _, tc := range []struct {
		line   string
		want   []string
		ignore bool
	}{
		{`ExecStart=/bin/echo hello world`, []string{"/bin/echo", "hello", "world"}, false},
		{`ExecStart=-/bin/echo "hello world"`, []string{"/bin/echo", "hello world"}, true},
		{`ExecStart=/bin/echo 'single quotes' "double \"quoted\""`, []string{"/bin/echo", "single quotes", `double "quoted"`}, false},
		{`ExecStart=/bin/echo a"b c"d`, []string{"/bin/echo", "ab cd"}, false},
		{`ExecStart=/bin/echo "" ''`, []string{"/bin/echo", "", ""}, false},
		{`ExecStart=/bin/echo \n\t\\ \x41\102\u00e9 \s`, []string{"/bin/echo", "\n\t\\", "AB\u00e9", " "}, false},
		{`ExecStart=/bin/echo '\n'`, []string{"/bin/echo", "\n"}, false},
		{`ExecStart=/bin/echo \q \x0g`, []string{"/bin/echo", `\q`, `\x0g`}, false}, // kept, as systemd does
		{`ExecStart=/bin/echo 100%% %p %n %t/x.sock`, []string{"/bin/echo", "100%", "hello", "%n", "/run/x.sock"}, false},
		{`ExecStart=/bin/echo $$HOME a$$b a$b a${`, []string{"/bin/echo", "$HOME", "a$b", "a$b", "a${"}, false},
		{`ExecStart=:/bin/echo $HOME ${HOME}`, []string{"/bin/echo", "$HOME", "${HOME}"}, false},
		{`ExecStart=/bin/echo ${A:-b} $$$`, []string{"/bin/echo", "${A:-b}", "$$"}, false},
		{`ExecStart=/bin/echo \; ";"`, []string{"/bin/echo", ";", ";"}, false},
		{`ExecStart=; -/bin/true`, []string{"/bin/true"}, true},
		{`ExecStart=echo hi`, []string{"echo", "hi"}, false},
		{`ExecStart="/opt/my tools/run" x`, []string{"/opt/my tools/run", "x"}, false},
		{"ExecStart=/bin/echo one \\\n  two", []string{"/bin/echo", "one", "two"}, false},
		{"ExecStart=/bin/false\nExecStart=\nExecStart=/bin/true", []string{"/bin/true"}, false},
		{`ExecStart=@/bin/busybox busybox echo x`, []string{"/bin/busybox", "echo", "x"}, false},
	} {
		t.Run(tc.line, func(t *testing.T) {
			// %n stands for itself in the service of an Accept=no socket.
			text := strings.Replace(service(tc.line), "Accept=yes", "Accept=no", 1)
			if strings.Contains(tc.line, "%n") {
				tc.want[3] = "hello.service"
			}
			res, err := convert.Systemd("hello", text)
			if err != nil {
				t.Fatal(err)
			}
			s := res.Sockets[0]
			if !reflect.DeepEqual(s.Command, tc.want) || s.IgnoreExitStatus != tc.ignore {
				t.Errorf("command %q ignore %v, want %q %v", s.Command, s.IgnoreExitStatus, tc.want, tc.ignore)
			}
		})
	}
}

func TestSystemdExecStartPrefixes(t *testing.T) {
	for _, tc := range []struct {
		line      string
		unmapped  bool
		reasonHas string
	}{
		{"ExecStart=-/bin/true", false, ""},
		{"ExecStart=:-/bin/true", false, ""},
		{"ExecStart=+/bin/true", true, "+ prefix"},
		{"ExecStart=!/bin/true", true, "! prefix"},
		{"ExecStart=!!/bin/true", true, "!! prefix"},
		{"ExecStart=@/bin/true other-name", true, "argv[0]"},
		{"ExecStart=@/bin/true /bin/true", false, ""},
	} {
		t.Run(tc.line, func(t *testing.T) {
			res, err := convert.Systemd("hello", service(tc.line))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Sockets[0].Command; !reflect.DeepEqual(got, []string{"/bin/true"}) {
				t.Errorf("command %q", got)
			}
			var found *convert.Unmapped
			for i, u := range res.Unmapped {
				if u.Directive == "ExecStart" {
					found = &res.Unmapped[i]
				}
			}
			switch {
			case found == nil && tc.unmapped:
				t.Errorf("ExecStart is not listed: %+v", res.Unmapped)
			case found != nil && !tc.unmapped:
				t.Errorf("ExecStart is listed: %+v", *found)
			case found != nil && !strings.Contains(found.Reason, tc.reasonHas):
				t.Errorf("reason %q, want it to mention %q", found.Reason, tc.reasonHas)
			}
		})
	}
}

func TestSystemdStandardStreams(t *testing.T) {
	for _, tc := range []struct {
		lines                 []string
		stdin, stdout, stderr string
	}{
		// An Accept=yes service without StandardInput=socket gets the
		// connection as fd 3 and /dev/null as stdin.
		{nil, "null", "log", "inherit"},
		{[]string{"StandardInput=socket"}, "socket", "socket", "inherit"},
		{[]string{"StandardInput=null"}, "null", "log", "inherit"},
		{[]string{"StandardInput=socket", "StandardOutput=journal", "StandardError=inherit"}, "socket", "log", "inherit"},
		{[]string{"StandardInput=socket", "StandardOutput=null", "StandardError=socket"}, "socket", "null", "socket"},
		{[]string{"StandardOutput=inherit"}, "null", "null", "inherit"},
		{[]string{"StandardInput=socket", "StandardOutput=inherit"}, "socket", "socket", "inherit"},
		{[]string{"StandardOutput=socket", "StandardError=journal+console"}, "null", "socket", "log"},
		{[]string{"StandardInput=socket", "StandardError=kmsg", "StandardError="}, "socket", "socket", "inherit"},
	} {
		t.Run(strings.Join(tc.lines, ","), func(t *testing.T) {
			res, err := convert.Systemd("hello", service(append([]string{"ExecStart=/bin/cat"}, tc.lines...)...))
			if err != nil {
				t.Fatal(err)
			}
			s := res.Sockets[0]
			if s.StandardInput != tc.stdin || s.StandardOutput != tc.stdout || s.Stderr != tc.stderr {
				t.Errorf("stdin %q stdout %q stderr %q, want %q %q %q",
					s.StandardInput, s.StandardOutput, s.Stderr, tc.stdin, tc.stdout, tc.stderr)
			}
		})
	}
}

func TestSystemdUnsupportedStreamsAreListed(t *testing.T) {
	res, err := convert.Systemd("hello", service("ExecStart=/bin/cat", "StandardInput=tty",
		"StandardOutput=file:/var/log/x", "StandardError=append:/var/log/y"))
	if err != nil {
		t.Fatal(err)
	}
	s := res.Sockets[0]
	if s.StandardInput != "null" || s.StandardOutput != "log" || s.Stderr != "log" {
		t.Errorf("stdin %q stdout %q stderr %q, want null log log", s.StandardInput, s.StandardOutput, s.Stderr)
	}
	got := unmappedKeys(res.Unmapped)
	for _, want := range []string{"hello@.service:12:StandardInput", "hello@.service:13:StandardOutput",
		"hello@.service:14:StandardError"} {
		if !strings.Contains(strings.Join(got, " "), want) {
			t.Errorf("unmapped %q lacks %s", got, want)
		}
	}
}

func TestSystemdSettings(t *testing.T) {
	text := `# A socket with options.
[Unit]
Description=Options %p
After=network.target

[Socket]
ListenStream=127.0.0.1:2323
ListenStream=
ListenStream=[::1]:2323
ListenStream=%t/hello.sock
ListenDatagram=69
Accept=no
Backlog=128
BindIPv6Only=both
ReusePort=yes
KeepAlive=on
KeepAliveTimeSec=1min 30s
KeepAliveIntervalSec=30
KeepAliveProbes=5
NoDelay=true
DeferAcceptSec=1.5s
FreeBind=1
ReceiveBuffer=64K
SendBuffer=1M
BindToDevice=lo
SocketUser=nobody
SocketGroup=nogroup
SocketMode=0660
MaxConnections=10
IPAddressDeny=any
IPAddressAllow=localhost 192.0.2.0/24 not-an-address
X-Socketd-OnLimit=refuse
X-Socketd-LimitMessage=busy, call again

[Service]
ExecStart=/usr/bin/env
Environment=A=1 "B=two words" C=%%
Environment=D=4
Environment="A=one"
PassEnvironment=LANG TZ
PassEnvironment=LANG
WorkingDirectory=-/srv
SupplementaryGroups=dialout
SupplementaryGroups=audio video
UMask=0027
Nice=-5
RuntimeMaxSec=15min
KillSignal=SIGHUP
TimeoutStopSec=5
LimitCPU=1min:infinity
LimitNOFILE=1024
MemoryMax=25%
TasksMax=64
TasksMax=5000000
Restart=always
`
	res, err := convert.Systemd("hello.socket", text)
	if err != nil {
		t.Fatal(err)
	}
	want := socketd.NewSocket()
	want.Name, want.Description = "hello", "Options hello"
	want.Listen = []string{"[::1]:2323", "/run/hello.sock", "udp:69"}
	want.Accept = false
	want.SocketOptions = socketd.SocketOptions{Backlog: 128, BindIPv6Only: "both", ReusePort: true, KeepAlive: true,
		KeepAliveTime: "1m30s", KeepAliveInterval: "30s", KeepAliveProbes: 5, NoDelay: true, DeferAccept: "1.5s",
		FreeBind: true, ReceiveBuffer: 65536, SendBuffer: 1 << 20, BindToDevice: "lo", SocketUser: "nobody",
		SocketGroup: "nogroup", SocketMode: "0660"}
	// With Accept=no the access rules and what concerns refused clients
	// go: socketd checks clients as it accepts them, and accepts none.
	want.Limits = socketd.Limits{MaxConnections: 10}
	want.Command = []string{"/usr/bin/env"}
	want.Environment = map[string]string{"A": "one", "B": "two words", "C": "%", "D": "4"}
	want.PassEnvironment = []string{"LANG", "TZ"}
	want.WorkingDirectory = "/srv"
	want.SupplementaryGroups = []string{"dialout", "audio", "video"}
	want.UMask = "0027"
	nice := -5
	want.Nice = &nice
	want.RuntimeMax, want.KillSignal, want.TimeoutStop = "15m", "SIGHUP", "5s"
	want.StandardInput, want.StandardOutput, want.Stderr = "null", "log", "inherit"
	want.LimitCPU, want.LimitNOFILE = "60:infinity", "1024"
	want.MemoryMax, want.TasksMax = "25%", "64"
	if !reflect.DeepEqual(res.Sockets[0], want) {
		t.Errorf("got  %+v\nwant %+v", res.Sockets[0], want)
	}
	wantUnmapped := []string{"hello.socket:4:After", "hello.socket:6:IPAddressAllow", "hello.socket:6:IPAddressDeny",
		"hello.socket:6:X-Socketd-OnLimit", "hello.socket:6:X-Socketd-LimitMessage",
		"hello.socket:31:IPAddressAllow",
		"hello.service:42:WorkingDirectory", "hello.service:54:TasksMax", "hello.service:55:Restart"}
	if got := unmappedKeys(res.Unmapped); !reflect.DeepEqual(got, wantUnmapped) {
		t.Errorf("unmapped %q, want %q", got, wantUnmapped)
	}
}

func TestSystemdTimeSpans(t *testing.T) {
	for in, want := range map[string]string{
		"30": "30s", "30s": "30s", "90": "1m30s", "1min 30s": "1m30s", "1min30s": "1m30s", "2h": "2h",
		"1h 30min": "1h30m", "500ms": "500ms", "1.5s": "1.5s", "0.5": "500ms", "1d": "24h", "1w": "168h",
		"3600 s": "1h", "5 minutes": "5m", "1h 5s": "1h0m5s", "1 2": "3s", "250us": "250µs", "0": "",
	} {
		t.Run(in, func(t *testing.T) {
			res, err := convert.Systemd("hello", service("ExecStart=/bin/true", "RuntimeMaxSec="+in))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Sockets[0].RuntimeMax; got != want {
				t.Errorf("RuntimeMaxSec=%s is %q, want %q", in, got, want)
			}
		})
	}
	for _, in := range []string{"x", "5x", "1.2.3", "-5", "3.", "5 mins", "infinityx"} {
		if _, err := convert.Systemd("hello", service("ExecStart=/bin/true", "RuntimeMaxSec="+in)); err == nil {
			t.Errorf("RuntimeMaxSec=%s: want an error", in)
		}
	}
}

func TestSystemdErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		line       int
		has        string
	}{
		{"no section", "ListenStream=80\n", 1, "before any section"},
		{"bad header", "[Socket\nListenStream=80\n", 1, "section header"},
		{"no equals", helloSocket + "[Service]\nExecStart\n", 11, "Key=Value"},
		{"no key", "[Socket]\n=80\n", 2, "no key"},
		{"NUL", helloSocket + "[Service]\nExecStart=/bin/tr\x00ue\n", 11, "NUL"},
		{"no socket", helloService, 0, "[Socket]"},
		{"no service", helloSocket, 0, "[Service]"},
		{"two sockets", helloSocket + helloSocket + helloService, 13, "second socket"},
		{"no listen", "[Socket]\nAccept=yes\n[Service]\nExecStart=/bin/true\n", 1, "ListenStream"},
		{"no command", service("User=nobody"), 10, "ExecStart"},
		{"two commands", service("ExecStart=/bin/true", "ExecStart=/bin/false"), 12, "second ExecStart"},
		{"separated commands", service("ExecStart=/bin/true ; /bin/false"), 11, "several commands"},
		{"variable", service("ExecStart=/bin/echo $HOME"), 11, "$HOME"},
		{"braced variable", service("ExecStart=/bin/echo x${HOME}y"), 11, "${HOME}"},
		{"instance", service("ExecStart=/bin/echo %i"), 11, "%i"},
		{"machine specifier", service("ExecStart=/bin/echo %H"), 11, "%H"},
		{"unbalanced quote", service(`ExecStart=/bin/echo "x`), 11, "quote"},
		{"relative program", service("ExecStart=bin/true"), 11, "absolute"},
		{"empty program", service(`ExecStart=- ""`), 11, "no program"},
		{"only prefixes", service("ExecStart=-"), 11, "no program"},
		{"bad boolean", strings.Replace(service("ExecStart=/bin/true"), "Accept=yes", "Accept=maybe", 1), 6, "boolean"},
		{"bad listen", strings.Replace(service("ExecStart=/bin/true"), "13063", "localhost:80", 1), 5, "localhost:80"},
		{"udp in a stream", strings.Replace(service("ExecStart=/bin/true"), "13063", "udp:69", 1), 5, "stream"},
		{"bad nice", service("ExecStart=/bin/true", "Nice=20"), 12, "nice"},
		{"bad umask", service("ExecStart=/bin/true", "UMask=999"), 12, "octal"},
		{"relative directory", service("ExecStart=/bin/true", "WorkingDirectory=srv"), 12, "absolute"},
		{"continued error", "[Socket]\nListenStream=1\\\n2\\\n3x\n[Service]\nExecStart=/bin/true\n", 2, `"1 2 3x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := convert.Systemd("hello", tc.text)
			wantError(t, err, tc.line, tc.has)
			if tc.line > 0 && !strings.HasPrefix(err.Error(), fmt.Sprintf("line %d: ", tc.line)) {
				t.Errorf("error %q does not start with its line", err)
			}
		})
	}
	if _, err := convert.Systemd("Hello World", helloSocket+helloService); err == nil {
		t.Error("an invalid name is accepted")
	}
}

func TestSystemdListsWhatItCannotMap(t *testing.T) {
	text := helloSocket + `[Service]
ExecStart=/bin/true
Type=oneshot
ExecStartPre=/bin/mkdir -p /run/x
Environment=LISTEN_FDS=2 9BAD=x GOOD=yes
Environment="unbalanced
PassEnvironment=PATH HOME
User=%i
KillSignal=SIGRTMIN+3
TimeoutStopSec=infinity
[X-Extra]
Foo=bar
`
	res, err := convert.Systemd("hello", text)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Sockets[0]
	if !reflect.DeepEqual(s.Environment, map[string]string{"GOOD": "yes"}) || !reflect.DeepEqual(s.PassEnvironment, []string{"HOME"}) ||
		s.User != "" || s.KillSignal != "" || s.TimeoutStop != "" {
		t.Errorf("got %+v", s)
	}
	want := []string{
		"hello.socket:9:WantedBy", "hello@.service:12:Type", "hello@.service:13:ExecStartPre",
		"hello@.service:14:Environment", "hello@.service:14:Environment", "hello@.service:15:Environment",
		"hello@.service:16:PassEnvironment", "hello@.service:17:User", "hello@.service:18:KillSignal",
		"hello@.service:19:TimeoutStopSec", "hello@.service:21:Foo",
	}
	if got := unmappedKeys(res.Unmapped); !reflect.DeepEqual(got, want) {
		t.Errorf("unmapped\n%q\nwant\n%q", got, want)
	}
}
