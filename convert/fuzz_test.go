package convert_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/convert"
)

// The fuzz tests hold every import to the same properties: it never
// panics; it fails only with a *convert.Error; what it returns has valid,
// distinct names, listen entries socketd parses and a command, and every
// unmapped directive has a line of the text and a reason. An import of
// systemd units also survives a round trip: its export imports back as
// the same socket, with nothing unmapped but [Install]. Their seeds are
// here and in testdata/fuzz, so that go test runs them every time.

func FuzzSystemd(f *testing.F) {
	every := everyField()
	exported := convert.ExportSystemd(&every)
	for _, seed := range []string{
		helloSocket + helloService,
		helloService + helloSocket,
		exported[0].Content + exported[1].Content,
		service(`ExecStart=-/bin/echo "a b" 'c\'d' \x41 \; %% $$ ""`, "Environment=A=1 \"B=2 3\"", "StandardInput=socket"),
		service("ExecStart=@/bin/sh sh -c 'echo $$0' \\", "  more", "WorkingDirectory=-%t/x", "User=%p"),
		"[Socket]\nListenDatagram=[::]:69\nListenStream=/run/x.sock\nKeepAliveTimeSec=1min 30s\n[Service]\nExecStart=/bin/cat\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		res, err := convert.Systemd("fuzz", text)
		if err != nil {
			checkError(t, err)
			return
		}
		checkResult(t, text, res)
		if len(res.Sockets) != 1 {
			t.Fatalf("%d sockets", len(res.Sockets))
		}
		s := res.Sockets[0]
		files := convert.ExportSystemd(&s)
		exported := files[0].Content + files[1].Content
		again, err := convert.Systemd("fuzz", exported)
		if err != nil {
			t.Fatalf("the export does not import: %v\n%s", err, exported)
		}
		if !reflect.DeepEqual(again.Sockets[0], s) {
			t.Fatalf("the export imports as\n%+v\nnot\n%+v\n%s", again.Sockets[0], s, exported)
		}
		for _, u := range again.Unmapped {
			// [Install] is for systemctl; a deny narrower than an
			// allow is kept with a warning of what it means.
			if u.Directive != "WantedBy" && !(u.Directive == "IPAddressDeny" && strings.HasPrefix(u.Reason, "kept")) {
				t.Fatalf("the export's import lists %+v\n%s", u, exported)
			}
		}
	})
}

func FuzzInetd(f *testing.F) {
	for _, seed := range []string{
		inetdConf,
		"13063 stream tcp46 nowait nobody /opt/helloworld.sh helloworld.sh\n",
		"#<off># 69 dgram udp wait nobody /usr/sbin/tcpd in.tftpd /srv/tftp\n7 stream tcp6 nowait root internal\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		res, err := convert.Inetd(text)
		if err != nil {
			checkError(t, err)
			return
		}
		checkResult(t, text, res)
	})
}

func FuzzXinetd(f *testing.F) {
	for _, seed := range []string{
		xinetdConf,
		xinetdEcho,
		"service x {\nsocket_type = dgram\nwait = yes\nserver = /bin/cat\nport = 7\nflags = IPv6 V6ONLY\nenv += A=1\n}\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		res, err := convert.Xinetd(text)
		if err != nil {
			checkError(t, err)
			return
		}
		checkResult(t, text, res)
	})
}

// checkError fails t unless err is a *convert.Error that says something.
func checkError(t *testing.T, err error) {
	t.Helper()
	var e *convert.Error
	if !errors.As(err, &e) || e.Msg == "" || e.Line < 0 {
		t.Fatalf("error %#v, want a *convert.Error with a message", err)
	}
}

// wantError fails t unless err is a *convert.Error at line that says has.
func wantError(t *testing.T, err error, line int, has string) {
	t.Helper()
	var e *convert.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v, want a *convert.Error", err)
	}
	if e.Line != line || !strings.Contains(e.Error(), has) {
		t.Errorf("error %q on line %d, want line %d and %q", e, e.Line, line, has)
	}
}

// checkResult fails t unless res is a sound import of text.
func checkResult(t *testing.T, text string, res convert.Result) {
	t.Helper()
	// At most: systemd ends a line at a lone "\r" too.
	lines := strings.Count(text, "\n") + strings.Count(text, "\r") + 1
	names := map[string]bool{}
	for _, s := range res.Sockets {
		if !socketd.ValidName(s.Name) || names[s.Name] {
			t.Fatalf("name %q is not valid or repeats", s.Name)
		}
		names[s.Name] = true
		if len(s.Listen) == 0 {
			t.Fatalf("%s listens on nothing", s.Name)
		}
		for _, l := range s.Listen {
			if _, err := socketd.ParseListen(l); err != nil {
				t.Fatalf("%s: listen %q: %v", s.Name, l, err)
			}
		}
		if len(s.Command) == 0 || s.Command[0] == "" {
			t.Fatalf("%s has no program: %q", s.Name, s.Command)
		}
	}
	for _, u := range res.Unmapped {
		if u.Source == "" || u.Directive == "" || u.Reason == "" || u.Line < 1 || u.Line > lines ||
			(u.Socket != "" && !names[u.Socket]) {
			t.Fatalf("unmapped %+v is not sound", u)
		}
	}
}
