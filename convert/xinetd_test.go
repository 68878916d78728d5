package convert_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/convert"
)

const xinetdConf = `# Simple configuration file for xinetd
defaults
{
	instances	= 60
	log_type	= SYSLOG authpriv
}

includedir /etc/xinetd.d

# default: on
# description: The telnet server serves telnet sessions.
service telnet
{
	disable		= no
	flags		= REUSE IPv6
	socket_type	= stream
	wait		= no
	user		= root
	server		= /usr/sbin/in.telnetd
	server_args	= -h
	log_on_failure	+= USERID
	only_from	= 10.0.0.0/8
	env		= TERM=vt100 LANG=C
	env		+= LISTEN_FDS=1
	passenv		= TZ PATH
}

# The tftp server serves files from /srv/tftp.
service tftp
{
	socket_type	= dgram
	protocol	= udp
	wait		= yes
	user		= root
	server		= /usr/sbin/in.tftpd
	server_args	= -s /srv/tftp
	disable		= yes
	per_source	= 11
	cps		= 100 2
	flags		= IPv4
}

service hello {
	type		= UNLISTED
	port		= 13063
	bind		= 127.0.0.1
	socket_type	= stream
	wait		= no
	user		= nobody
	group		= nogroup
	server		= /usr/sbin/tcpd
	server_args	= /opt/helloworld.sh --greet
	flags		= NAMEINARGS NODELAY KEEPALIVE SENSOR
	nice		= 5
	umask		= 027
	groups		= yes
	rlimit_cpu	= 20
	instances	= 4
}
`

func TestXinetd(t *testing.T) {
	needServices(t, "tcp/telnet", "udp/tftp")
	res, err := convert.Xinetd(xinetdConf)
	if err != nil {
		t.Fatal(err)
	}
	telnet := socketd.NewSocket()
	telnet.Name, telnet.Description = "telnet", "xinetd service telnet"
	telnet.Listen, telnet.Accept = []string{"23"}, true
	telnet.Command = []string{"/usr/sbin/in.telnetd", "-h"}
	telnet.Environment = map[string]string{"TERM": "vt100", "LANG": "C"}
	telnet.PassEnvironment = []string{"TZ"}
	telnet.User = "root"
	telnet.IPAddressAllow, telnet.IPAddressDeny = []string{"10.0.0.0/8"}, []string{"any"}

	tftp := socketd.NewSocket()
	tftp.Name, tftp.Description = "tftp", "xinetd service tftp"
	tftp.Listen, tftp.Accept, tftp.Enabled = []string{"udp:0.0.0.0:69"}, false, false
	tftp.Command = []string{"/usr/sbin/in.tftpd", "-s", "/srv/tftp"}
	tftp.User = "root"
	tftp.RateLimit = &socketd.RateLimit{PerSecond: 100, Burst: 100} // cps = 100 2

	hello := socketd.NewSocket()
	hello.Name, hello.Description = "hello", "xinetd service hello"
	hello.Listen, hello.Accept = []string{"127.0.0.1:13063"}, true
	hello.Command = []string{"/opt/helloworld.sh", "--greet"}
	hello.User, hello.Group, hello.UMask = "nobody", "nogroup", "027"
	hello.NoDelay, hello.KeepAlive = true, true
	hello.MaxConnections, hello.OnLimit = 4, socketd.OnLimitRefuse // xinetd refuses beyond instances
	hello.LimitCPU = "20"
	nice := 5
	hello.Nice = &nice

	want := []socketd.Socket{telnet, tftp, hello}
	for i := range want {
		want[i].StandardInput, want[i].StandardOutput, want[i].Stderr = "socket", "socket", "socket"
	}
	if !reflect.DeepEqual(res.Sockets, want) {
		t.Errorf("got\n%+v\nwant\n%+v", res.Sockets, want)
	}
	wantUnmapped := []string{
		"xinetd defaults:4:instances", "xinetd defaults:5:log_type", "xinetd:8:includedir",
		"xinetd service telnet:21:log_on_failure",
		"xinetd service telnet:24:env", "xinetd service telnet:25:passenv",
		"xinetd service tftp:38:per_source", "xinetd service tftp:39:cps",
		"xinetd service hello:52:server_args", "xinetd service hello:53:flags",
		"xinetd service hello:56:groups",
	}
	if got := unmappedKeys(res.Unmapped); !reflect.DeepEqual(got, wantUnmapped) {
		t.Errorf("unmapped\n%q\nwant\n%q", got, wantUnmapped)
	}
	for _, u := range res.Unmapped {
		if strings.HasPrefix(u.Source, "xinetd service ") && u.Socket != strings.TrimPrefix(u.Source, "xinetd service ") {
			t.Errorf("unmapped %+v: want its socket's name", u)
		}
	}
}

// Debian's /etc/xinetd.d/echo: two disabled internal services.
const xinetdEcho = `# default: off
# description: An xinetd internal service which echo's characters back to
# clients.
# This is the tcp version.
service echo
{
	disable		= yes
	type		= INTERNAL
	id		= echo-stream
	socket_type	= stream
	protocol	= tcp
	user		= root
	wait		= no
}

# This is the udp version.
service echo
{
	disable		= yes
	type		= INTERNAL
	id		= echo-dgram
	socket_type	= dgram
	protocol	= udp
	user		= root
	wait		= yes
}
`

// TestXinetdAccess maps only_from and no_access, in xinetd's forms, to
// access rules; names are listed as unmapped.
func TestXinetdAccess(t *testing.T) {
	for _, tc := range []struct {
		attrs       string
		allow, deny []string
		unmapped    []string
	}{
		{"only_from = 128.138.0.0 10.1.2.3 192.0.2.0/24 2001:db8::/32\nno_access = 128.138.209.0",
			[]string{"128.138.0.0/16", "10.1.2.3/32", "192.0.2.0/24", "2001:db8::/32"}, []string{"128.138.209.0/24", "any"}, nil},
		{"only_from = 10.1.{2,3} 0.0.0.0", []string{"10.1.2.0/24", "10.1.3.0/24", "any"}, []string{"any"}, nil},
		{"only_from =", nil, []string{"any"}, nil},
		{"no_access = 203.0.113.7\nno_access += 198.51.100.0/24 .example.com", nil,
			[]string{"203.0.113.7/32", "198.51.100.0/24"}, []string{"no_access=.example.com"}},
		{"only_from = localhost ::1 gw.example.com\nonly_from -= gw.example.com", []string{"::1"}, []string{"any"},
			[]string{"only_from=localhost"}},
	} {
		conf := "service hello\n{\n\ttype = UNLISTED\n\tport = 13063\n\tsocket_type = stream\n\twait = no\n" +
			"\tuser = nobody\n\tserver = /bin/cat\n\t" + strings.ReplaceAll(tc.attrs, "\n", "\n\t") + "\n}\n"
		res, err := convert.Xinetd(conf)
		if err != nil {
			t.Fatalf("%s: %v", tc.attrs, err)
		}
		s := res.Sockets[0]
		if !reflect.DeepEqual(s.IPAddressAllow, tc.allow) || !reflect.DeepEqual(s.IPAddressDeny, tc.deny) {
			t.Errorf("%s:\nallow %q deny %q\nwant  %q deny %q", tc.attrs, s.IPAddressAllow, s.IPAddressDeny, tc.allow, tc.deny)
		}
		var unmapped []string
		for _, u := range res.Unmapped {
			unmapped = append(unmapped, u.Directive+"="+u.Value)
		}
		if !reflect.DeepEqual(unmapped, tc.unmapped) {
			t.Errorf("%s: unmapped %q, want %q", tc.attrs, unmapped, tc.unmapped)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", tc.attrs, err)
		}
	}
}

func TestXinetdDisabledInternalServicesAreListed(t *testing.T) {
	res, err := convert.Xinetd(xinetdEcho)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sockets) != 0 {
		t.Errorf("sockets %+v", res.Sockets)
	}
	want := []string{"xinetd service echo:8:type", "xinetd service echo:20:type"}
	if got := unmappedKeys(res.Unmapped); !reflect.DeepEqual(got, want) {
		t.Errorf("unmapped %q, want %q", got, want)
	}
}

func TestXinetdNamesAfterIDAndProtocol(t *testing.T) {
	text := strings.NewReplacer("disable\t\t= yes", "disable = no", "type\t\t= INTERNAL", "server = /bin/cat").Replace(xinetdEcho)
	text += "service echo\n{\nsocket_type = stream\nwait = no\nserver = /bin/cat\nport = 7007\n}\n"
	res, err := convert.Xinetd(text)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range res.Sockets {
		names = append(names, s.Name)
	}
	if want := []string{"echo-stream", "echo-dgram", "echo"}; !reflect.DeepEqual(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
	text += "service echo\n{\nsocket_type = stream\nwait = no\nserver = /bin/cat\nport = 7008\n}\n"
	if res, err = convert.Xinetd(text); err != nil || res.Sockets[3].Name != "echo-tcp" {
		t.Errorf("a second echo: %v %+v", err, res.Sockets)
	}
}

func TestXinetdErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		line       int
		has        string
	}{
		{"garbage", "hello\n", 1, "expected service"},
		{"no brace", "service x\nport = 7\n", 2, "expected {"},
		{"unclosed", "\nservice x\n{\nport = 7\n", 2, "no closing }"},
		{"bad attribute", "service x\n{\n= 7\n}\n", 3, "attribute"},
		{"no op", "service x\n{\nport 7\n}\n", 3, "attribute"},
		{"internal", strings.Replace(xinetdEcho, "disable\t\t= yes", "disable = no", 1), 8, "internal"},
		{"no server", "service x\n{\nsocket_type = stream\nwait = no\nport = 7\n}\n", 1, "no server"},
		{"no wait", "service x\n{\nsocket_type = stream\nserver = /bin/cat\nport = 7\n}\n", 1, "wait"},
		{"unlisted", "service x\n{\ntype = UNLISTED\nsocket_type = stream\nwait = no\nserver = /bin/cat\n}\n", 1, "port"},
		{"unknown service", "service nosuchservice-x\n{\nsocket_type = stream\nwait = no\nserver = /bin/cat\n}\n", 1, "nosuchservice-x"},
		{"bad port", "service x\n{\nsocket_type = stream\nwait = no\nserver = /bin/cat\nport = 70000\n}\n", 6, "70000"},
		{"bad nice", "service x\n{\nsocket_type = stream\nwait = no\nserver = /bin/cat\nport = 7\nnice = 99\n}\n", 7, "nice"},
		{"scalar op", "service x\n{\nserver += /bin/cat\n}\n", 3, "takes ="},
		{"host name", "service x\n{\nsocket_type = stream\nwait = no\nserver = /bin/cat\nport = 7\nbind = localhost\n}\n", 7, "localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := convert.Xinetd(tc.text)
			wantError(t, err, tc.line, tc.has)
		})
	}
}

// TestXinetdRlimitCPU: rlimit_cpu is CPU seconds, held to what a CPU limit
// takes (not to the floor of open files).
func TestXinetdRlimitCPU(t *testing.T) {
	res, err := convert.Xinetd("service hello\n{\n\ttype = UNLISTED\n\tport = 13063\n\tsocket_type = stream\n" +
		"\twait = no\n\tuser = nobody\n\tserver = /bin/cat\n\trlimit_cpu = 5\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Sockets[0].LimitCPU; got != "5" {
		t.Errorf("limit_cpu %q, want 5", got)
	}
}
