package convert_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/convert"
)

// everyField returns a definition that sets every field an export writes,
// in the form an import gives them.
func everyField() socketd.Socket {
	s := socketd.NewSocket()
	s.Name = "every"
	s.Description = `Every field: 100% "quoted", a \ and a $`
	s.Listen = []string{"127.0.0.1:2323", "[::1]:2323", "/run/every dir/every.sock", "@every", "udp:69", "udp:[::]:69"}
	s.Accept = false
	s.SocketOptions = socketd.SocketOptions{Backlog: 128, BindIPv6Only: "both", ReusePort: true, KeepAlive: true,
		KeepAliveTime: "5m", KeepAliveInterval: "1m30s", KeepAliveProbes: 5, NoDelay: true, DeferAccept: "1.5s",
		FreeBind: true, ReceiveBuffer: 1 << 20, SendBuffer: 65536, BindToDevice: "lo", SocketUser: "nobody",
		SocketGroup: "nogroup", SocketMode: "0660"}
	s.Limits = socketd.Limits{MaxConnections: 10, RateLimit: &socketd.RateLimit{PerSecond: 6.5, Burst: 20}}
	s.Command = []string{"/usr/bin/printf", "%s $HOME ${X} $$\n", "", "two words", "it's", `back\slash`, ";",
		"\t", "é", "\xff", "$X", "-", "#"}
	s.Environment = map[string]string{"A": "1", "B": "two words", "C": "100%", "D": `"q" 'q' \`, "E": "", "F": "$X"}
	s.WorkingDirectory = "/srv/every dir"
	s.IgnoreExitStatus = true
	s.StandardInput, s.StandardOutput, s.Stderr = "null", "log", "inherit"
	s.User, s.Group, s.DynamicUser = "nobody", "nogroup", true
	s.SupplementaryGroups = []string{"dialout", "audio", "4242"}
	s.UMask = "0027"
	nice := -5
	s.Nice = &nice
	s.PassEnvironment = []string{"LANG", "TZ"}
	s.RuntimeMax, s.KillSignal, s.TimeoutStop = "15m", "SIGHUP", "5s"
	s.ResourceLimits = socketd.ResourceLimits{LimitNOFILE: "1024:4096", LimitNPROC: "infinity", LimitCPU: "10m",
		LimitAS: "512M", LimitCORE: "0", MemoryMax: "256M", TasksMax: "64"}
	s.RecordRemoteIP = socketd.RecordRemotePrefix
	return s
}

func TestExportRoundTrip(t *testing.T) {
	accepting := everyField()
	accepting.Listen = []string{"13063", "/run/every.sock"}
	accepting.Accept = true
	accepting.StandardInput, accepting.StandardOutput, accepting.Stderr = "socket", "socket", "socket"
	accepting.IgnoreExitStatus = false
	accepting.IdleTimeout = "5m"
	accepting.Limits = socketd.Limits{MaxConnections: 10, OnLimit: "refuse", LimitMessage: `busy: 100% \`,
		MaxConnectionsPerSource: 3, SourcePrefixIPv4: 24, SourcePrefixIPv6: 48,
		RateLimit: &socketd.RateLimit{PerSecond: 6.5, Burst: 20}, SourceRateLimit: &socketd.RateLimit{PerSecond: 1.0 / 60, Burst: 3},
		IPAddressAllow: []string{"localhost", "192.0.2.0/24", "::ffff:10.0.0.1"}, IPAddressDeny: []string{"any"}}
	for _, tc := range []struct {
		name string
		s    socketd.Socket
	}{
		{"every field", everyField()},
		{"accept", accepting},
		{"hello world", helloWorld()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := convert.ExportSystemd(&tc.s)
			if len(files) != 2 {
				t.Fatalf("%d files", len(files))
			}
			res, err := convert.Systemd(tc.s.Name, files[0].Content+files[1].Content)
			if err != nil {
				t.Fatalf("%v\n%s%s", err, files[0].Content, files[1].Content)
			}
			if !reflect.DeepEqual(res.Sockets[0], tc.s) {
				t.Errorf("got  %+v\nwant %+v\n%s%s", res.Sockets[0], tc.s, files[0].Content, files[1].Content)
			}
			// The files hold only what socketd can express, and [Install].
			for _, u := range res.Unmapped {
				if u.Directive != "WantedBy" {
					t.Errorf("unmapped %+v", u)
				}
			}
			// Either order reads the same.
			res, err = convert.Systemd(tc.s.Name, files[1].Content+files[0].Content)
			if err != nil || !reflect.DeepEqual(res.Sockets[0], tc.s) {
				t.Errorf("service first: %v, %+v", err, res.Sockets)
			}
		})
	}
}

func TestExportFiles(t *testing.T) {
	s := helloWorld()
	files := convert.ExportSystemd(&s)
	want := []convert.File{{
		Name: "octoi-helloworld.socket",
		Content: `[Unit]
Description=OCTOI HelloWorld Socket for Per-Connection Servers

[Socket]
ListenStream=13063
Accept=yes

[Install]
WantedBy=sockets.target
`,
	}, {
		Name: "octoi-helloworld@.service",
		Content: `[Service]
ExecStart=-/opt/helloworld.sh
StandardInput=socket
StandardOutput=socket
StandardError=null
DynamicUser=yes
`,
	}}
	if !reflect.DeepEqual(files, want) {
		t.Errorf("got %q\nwant %q", files, want)
	}

	s.Accept, s.Enabled = false, false
	files = convert.ExportSystemd(&s)
	if files[1].Name != "octoi-helloworld.service" {
		t.Errorf("service %q, want octoi-helloworld.service without accept", files[1].Name)
	}
	if !strings.HasPrefix(files[0].Content, "# This socket is disabled in socketd.\n") {
		t.Errorf("a disabled socket's unit says nothing of it:\n%s", files[0].Content)
	}
}

func TestExportNormalisesDurations(t *testing.T) {
	s := helloWorld()
	s.RuntimeMax, s.TimeoutStop, s.KeepAlive, s.KeepAliveTime = "90s", "1h0m0s", true, "300s"
	files := convert.ExportSystemd(&s)
	res, err := convert.Systemd(s.Name, files[0].Content+files[1].Content)
	if err != nil {
		t.Fatal(err)
	}
	got := res.Sockets[0]
	if got.RuntimeMax != "1m30s" || got.TimeoutStop != "1h" || got.KeepAliveTime != "5m" {
		t.Errorf("runtime_max %q timeout_stop %q keep_alive_time %q, want 1m30s 1h 5m", got.RuntimeMax, got.TimeoutStop, got.KeepAliveTime)
	}
}

// TestNarrowerDeny: a deny rule more specific than an allow rule means
// something else to systemd: the import keeps it and says so, and the
// export says so in a comment.
func TestNarrowerDeny(t *testing.T) {
	s := helloWorld()
	s.IPAddressAllow, s.IPAddressDeny = []string{"10.0.0.0/8"}, []string{"10.6.6.6"}
	files := convert.ExportSystemd(&s)
	if !strings.Contains(files[0].Content, "# In socketd the most specific rule decides, and 10.6.6.6 is denied") {
		t.Errorf("export:\n%s", files[0].Content)
	}
	res, err := convert.Systemd(s.Name, files[0].Content+files[1].Content)
	if err != nil {
		t.Fatal(err)
	}
	if got := unmappedKeys(res.Unmapped); !slices.Contains(got, "octoi-helloworld.socket:4:IPAddressDeny") {
		t.Errorf("unmapped %q", got)
	}
	if !slices.Equal(res.Sockets[0].IPAddressDeny, []string{"10.6.6.6"}) {
		t.Errorf("the rule was not kept: %v", res.Sockets[0].IPAddressDeny)
	}
}
