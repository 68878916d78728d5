package convert_test

import (
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/convert"
)

// needServices skips a test that looks up services this machine's
// /etc/services may lack.
func needServices(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		network, name, _ := strings.Cut(n, "/")
		if _, err := net.LookupPort(network, name); err != nil {
			t.Skipf("%s is not in /etc/services: %v", n, err)
		}
	}
}

// A Debian-style inetd.conf, with what other inetds add.
const inetdConf = `# /etc/inetd.conf:  see inetd(8) for further informations.
#
# Internet superserver configuration database
#
#:STANDARD: These are standard services.
telnet		stream	tcp	nowait	root	/usr/sbin/tcpd	/usr/sbin/in.telnetd
telnet		stream	tcp6	nowait	root	/usr/sbin/tcpd	/usr/sbin/in.telnetd
#:BSD: Shell, login, exec and talk are BSD protocols.
#<off># shell	stream	tcp	nowait	root	/usr/sbin/tcpd	/usr/sbin/in.rshd
#:INTERNAL: Internal services
#<off># discard		stream	tcp	nowait	root	internal
tftp		dgram	udp	wait	nobody	/usr/sbin/tcpd	/usr/sbin/in.tftpd /srv/tftp

13063	stream	tcp46	nowait.400	nobody.nogroup	/opt/helloworld.sh	helloworld.sh
127.0.0.1:8080 stream tcp nowait www-data /usr/bin/python3 python3 -m
	http.server
daytime stream tcp nowait root /bin/date date
daytime dgram udp wait root /bin/date date
/run/echo.sock stream unix nowait root /bin/cat cat
[::1]:7 stream tcp6 nowait root /bin/cat kitty
`

func TestInetd(t *testing.T) {
	needServices(t, "tcp/telnet", "tcp/shell", "udp/tftp", "tcp/daytime", "udp/daytime")
	res, err := convert.Inetd(inetdConf)
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		name    string
		listen  []string
		accept  bool
		command []string
		user    string
		group   string
		enabled bool
	}
	want := []summary{
		{"telnet", []string{"0.0.0.0:23", "[::]:23"}, true, []string{"/usr/sbin/in.telnetd"}, "root", "", true},
		{"shell", []string{"0.0.0.0:514"}, true, []string{"/usr/sbin/in.rshd"}, "root", "", false},
		{"tftp", []string{"udp:0.0.0.0:69"}, false, []string{"/usr/sbin/in.tftpd", "/srv/tftp"}, "nobody", "", true},
		{"port-13063", []string{"13063"}, true, []string{"/opt/helloworld.sh"}, "nobody", "nogroup", true},
		{"port-8080", []string{"127.0.0.1:8080"}, true, []string{"/usr/bin/python3", "-m", "http.server"}, "www-data", "", true},
		{"daytime", []string{"0.0.0.0:13"}, true, []string{"/bin/date"}, "root", "", true},
		{"daytime-udp", []string{"udp:0.0.0.0:13"}, false, []string{"/bin/date"}, "root", "", true},
		{"echo.sock", []string{"/run/echo.sock"}, true, []string{"/bin/cat"}, "root", "", true},
		{"port-7", []string{"[::1]:7"}, true, []string{"/bin/cat"}, "root", "", true},
	}
	var got []summary
	for _, s := range res.Sockets {
		got = append(got, summary{s.Name, s.Listen, s.Accept, s.Command, s.User, s.Group, s.Enabled})
		if s.StandardInput != "socket" || s.StandardOutput != "socket" || s.Stderr != "socket" {
			t.Errorf("%s: stdin %q stdout %q stderr %q, want the socket for all three", s.Name, s.StandardInput, s.StandardOutput, s.Stderr)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%v\nwant\n%v", got, want)
	}
	// nowait.400: 400 servers a minute.
	if r := res.Sockets[3].RateLimit; r == nil || r.Burst != 400 || r.PerSecond != 400.0/60 {
		t.Errorf("port-13063's rate limit %+v, want 400 a minute", r)
	}
	if telnet := res.Sockets[0]; telnet.BindIPv6Only != socketd.BindIPv6Only ||
		telnet.Description != "inetd.conf: telnet stream tcp nowait root /usr/sbin/tcpd /usr/sbin/in.telnetd" {
		t.Errorf("telnet: bind_ipv6_only %q, description %q", telnet.BindIPv6Only, telnet.Description)
	}
	wantUnmapped := []string{
		"inetd.conf:6:server", "inetd.conf:7:server", "inetd.conf:9:server", "inetd.conf:11:#<off>#",
		"inetd.conf:12:server", "inetd.conf:14:wait", "inetd.conf:20:argv[0]",
	}
	if got := unmappedKeys(res.Unmapped); !reflect.DeepEqual(got, wantUnmapped) {
		t.Errorf("unmapped %q, want %q", got, wantUnmapped)
	}
}

func TestInetdErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		line       int
		has        string
	}{
		{"too few fields", "# comment\ntelnet stream tcp nowait root\n", 2, "expected"},
		{"internal", "echo stream tcp nowait root internal\n", 1, "internal"},
		{"unknown service", "\nnosuchservice-x stream tcp nowait root /bin/cat cat\n", 2, "nosuchservice-x"},
		{"bad port", "99999 stream tcp nowait root /bin/cat cat\n", 1, "99999"},
		{"rpc", "rstatd/1-5 dgram rpc/udp wait root /usr/sbin/rpc.rstatd rpc.rstatd\n", 1, "rpc/udp"},
		{"raw", "7 raw tcp nowait root /bin/cat cat\n", 1, "raw"},
		{"mismatch", "7 stream udp nowait root /bin/cat cat\n", 1, "does not go with"},
		{"wait", "7 stream tcp sometimes root /bin/cat cat\n", 1, "sometimes"},
		{"host name", "localhost:7 stream tcp nowait root /bin/cat cat\n", 1, "localhost"},
		{"relative unix", "echo.sock stream unix nowait root /bin/cat cat\n", 1, "absolute"},
		{"NUL", "7 stream tcp nowait root /bin/c\x00at cat\n", 1, "NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := convert.Inetd(tc.text)
			wantError(t, err, tc.line, tc.has)
		})
	}
}

func TestInetdUDPNowaitRunsAsWait(t *testing.T) {
	res, err := convert.Inetd("69 dgram udp6 nowait nobody /usr/sbin/in.tftpd in.tftpd\n")
	if err != nil {
		t.Fatal(err)
	}
	s := res.Sockets[0]
	if s.Accept || !reflect.DeepEqual(s.Listen, []string{"udp:[::]:69"}) || s.BindIPv6Only != socketd.BindIPv6Only {
		t.Errorf("got %+v", s)
	}
	if got := unmappedKeys(res.Unmapped); !reflect.DeepEqual(got, []string{"inetd.conf:1:wait"}) {
		t.Errorf("unmapped %q", got)
	}
}
