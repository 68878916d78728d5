package activator_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// idsScript prints the handler's real, effective, saved and filesystem
// uids and gids, its supplementary groups, its permitted capabilities, its
// umask and its nice value.
const idsScript = `grep -E '^(Uid|Gid|Groups|CapPrm):' /proc/self/status; umask; cut -d' ' -f19 /proc/self/stat`

// TestHandlerCredentials runs a handler under each combination of user,
// group and supplementary groups (by name and by number, in the user
// database or not) and checks every id of the process it became, with its
// umask and nice value: the privileges are dropped in one place for every
// handler, before it executes. Each combination runs on both spawn paths:
// a connection's handler (accept true) and a service (accept false, here
// an inetd wait service that reads its datagram).
func TestHandlerCredentials(t *testing.T) {
	testhandler.RequireRoot(t)
	five := 5
	cases := []struct {
		name                  string
		user, group           string
		groups                []string
		umask                 string
		nice                  *int
		uid, gid, sup, um, ni string
	}{
		{name: "unchanged", uid: "0", gid: "0", sup: "*", um: "0022", ni: "0"},
		{name: "user", user: "nobody", uid: "65534", gid: "65534", sup: "", um: "0022", ni: "0"},
		{name: "user-group", user: "nobody", group: "daemon", uid: "65534", gid: "1", sup: "", um: "0022", ni: "0"},
		{name: "group", group: "daemon", uid: "0", gid: "1", sup: "", um: "0022", ni: "0"},
		{name: "supplementary", user: "nobody", groups: []string{"bin", "3"}, uid: "65534", gid: "65534", sup: "2 3", um: "0022", ni: "0"},
		{name: "only-supplementary", groups: []string{"bin"}, uid: "0", gid: "0", sup: "2", um: "0022", ni: "0"},
		{name: "numbers", user: "4242", group: "4243", uid: "4242", gid: "4243", sup: "", um: "0022", ni: "0"},
		{name: "umask-nice", user: "1", umask: "0027", nice: &five, uid: "1", gid: "1", sup: "", um: "0027", ni: "5"},
	}
	var socks []socketd.Socket
	for _, c := range cases {
		s := socketd.NewSocket()
		s.Name = c.name
		s.Listen = []string{"127.0.0.1:0"}
		s.Command = []string{"/bin/sh", "-c", idsScript}
		s.User, s.Group, s.SupplementaryGroups, s.UMask, s.Nice = c.user, c.group, c.groups, c.umask, c.nice
		svc := s
		svc.Name, svc.Accept, svc.Listen = c.name+"-service", false, []string{"udp:127.0.0.1:0"}
		svc.StandardInput, svc.StandardOutput = socketd.StdinSocket, socketd.StdoutLog
		svc.Command = []string{"/bin/sh", "-c", "dd bs=512 count=1 of=/dev/null 2>/dev/null; " + idsScript}
		mustValid(t, s, svc)
		socks = append(socks, s, svc)
	}
	h := start(t, activator.Config{}, socks...)
	for _, c := range cases {
		check := func(t *testing.T, out string) {
			t.Helper()
			got := map[string]string{}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 6 {
				t.Fatalf("handler wrote %q", out)
			}
			for _, l := range lines[:4] {
				k, v, _ := strings.Cut(l, ":")
				got[k] = strings.Join(strings.Fields(v), " ")
			}
			want := func(id string) string { return strings.TrimSpace(strings.Repeat(id+" ", 4)) }
			if got["Uid"] != want(c.uid) || got["Gid"] != want(c.gid) {
				t.Errorf("uids %q, gids %q; want %s and %s for real, effective, saved and filesystem", got["Uid"], got["Gid"], c.uid, c.gid)
			}
			if c.sup != "*" && got["Groups"] != c.sup {
				t.Errorf("supplementary groups %q, want %q", got["Groups"], c.sup)
			}
			if c.uid != "0" && got["CapPrm"] != "0000000000000000" {
				t.Errorf("capabilities %s left to uid %s", got["CapPrm"], c.uid)
			}
			if lines[4] != c.um || lines[5] != c.ni {
				t.Errorf("umask %s, nice %s; want %s, %s", lines[4], lines[5], c.um, c.ni)
			}
		}
		t.Run(c.name, func(t *testing.T) {
			check(t, roundTrip(t, h.addr(t, c.name), ""))
			if row := h.rec.rowOf(t, c.name); row.State != socketd.ConnExited {
				t.Errorf("row %s (%s), want exited", row.State, row.Error)
			}
		})
		t.Run(c.name+"-service", func(t *testing.T) {
			u, err := net.Dial("udp", h.addr(t, c.name+"-service"))
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if _, err := u.Write([]byte("go")); err != nil {
				t.Fatal(err)
			}
			row := h.rec.rowOf(t, c.name+"-service")
			if row.State != socketd.ConnExited {
				t.Errorf("row %s (%s), want exited", row.State, row.Error)
			}
			check(t, string(row.Log))
		})
	}
}

// TestUserEnvironment: with user, the handler gets USER, LOGNAME, HOME and
// SHELL from the user database, as systemd's User= gives them, unless the
// definition sets them.
func TestUserEnvironment(t *testing.T) {
	testhandler.RequireRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	say := func(name string) socketd.Socket {
		s := socketd.NewSocket()
		s.Name, s.Listen, s.User = name, []string{"127.0.0.1:0"}, "nobody"
		s.Command = []string{"/bin/sh", "-c", `echo "$USER $LOGNAME $HOME ${SHELL-unset}"`}
		return s
	}
	plain, home := say("plain"), say("home")
	home.Environment = map[string]string{"HOME": "/srv"}
	h := start(t, activator.Config{}, plain, home)
	shell := "unset"
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Split(l, ":"); len(f) == 7 && f[0] == "nobody" {
				shell = f[6]
			}
		}
	}
	if got, want := roundTrip(t, h.addr(t, "plain"), ""), "nobody nobody "+nobody.HomeDir+" "+shell+"\n"; got != want {
		t.Errorf("handler of nobody: %q, want %q", got, want)
	}
	if got, want := roundTrip(t, h.addr(t, "home"), ""), "nobody nobody /srv "+shell+"\n"; got != want {
		t.Errorf("with HOME set: %q, want %q", got, want)
	}
}

// TestStopOptions: runtime_max stops a handler that runs too long and says
// so in its row; kill_signal is the signal a kill sends; timeout_stop
// replaces the daemon's stop timeout; pass_environment hands the handler
// variables of socketd's own environment.
func TestStopOptions(t *testing.T) {
	t.Setenv("SOCKETD_TEST_PASSED", "from socketd")
	t.Setenv("SOCKETD_TEST_OVERRIDDEN", "from socketd")
	limited := handlerSocket("limited", testhandler.ReadyHang)
	limited.RuntimeMax = "200ms"
	intsig := handlerSocket("intsig", testhandler.ReadyHang)
	intsig.KillSignal = "INT"
	quick := handlerSocket("quick", testhandler.TrapTerm)
	quick.TimeoutStop = "100ms"
	env := handlerSocket("env", testhandler.Environ, "SOCKETD_TEST_OVERRIDDEN", "from the definition")
	env.PassEnvironment = []string{"SOCKETD_TEST_PASSED", "SOCKETD_TEST_OVERRIDDEN", "SOCKETD_TEST_ABSENT"}
	mustValid(t, limited, intsig, quick, env)
	h := start(t, activator.Config{StopTimeout: time.Minute}, limited, intsig, quick, env)

	t.Run("runtime_max", func(t *testing.T) {
		c := dial(t, h.addr(t, "limited"))
		if got := readLine(t, c); got != "ready" {
			t.Fatalf("read %q", got)
		}
		row := h.rec.rowOf(t, "limited")
		if row.State != socketd.ConnKilled || row.Signal != "SIGTERM" || !strings.Contains(row.Error, "runtime_max (200ms)") ||
			row.DurationMS == nil || *row.DurationMS < 200 {
			t.Errorf("row %s, signal %s, error %q, duration %v ms; want killed by SIGTERM after 200 ms, saying why",
				row.State, row.Signal, row.Error, row.DurationMS)
		}
	})
	for _, tc := range []struct{ name, signal string }{{"intsig", "SIGINT"}, {"quick", "SIGKILL"}} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, h.addr(t, tc.name))
			if got := readLine(t, c); got != "ready" {
				t.Fatalf("read %q", got)
			}
			var id int64
			h.rec.waitFor(t, "the row of "+tc.name, func() bool {
				for _, b := range h.rec.begun {
					if b.Socket == tc.name {
						id = b.ID
						return true
					}
				}
				return false
			})
			began := time.Now()
			if err := h.a.Kill(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(began); took > 20*time.Second {
				t.Errorf("Kill took %v: the definition's timeout_stop was not used", took)
			}
			row := h.rec.row(t, id)
			if row.State != socketd.ConnKilled || row.Signal != tc.signal || row.Error != "" {
				t.Errorf("row %s, signal %s, error %q; want killed by %s", row.State, row.Signal, row.Error, tc.signal)
			}
		})
	}
	t.Run("pass_environment", func(t *testing.T) {
		out := roundTrip(t, h.addr(t, "env"), "")
		for _, want := range []string{"SOCKETD_TEST_PASSED=from socketd", "SOCKETD_TEST_OVERRIDDEN=from the definition"} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("environment lacks %s:\n%s", want, out)
			}
		}
		if strings.Count(out, "SOCKETD_TEST_OVERRIDDEN=") != 1 || strings.Contains(out, "SOCKETD_TEST_ABSENT") {
			t.Errorf("environment:\n%s", out)
		}
	})
}

// TestCloseOutOfTimeKillsRunning: when Close runs out of time before a
// handler's own stop timeout, the handler is killed at once.
func TestCloseOutOfTimeKillsRunning(t *testing.T) {
	slow := handlerSocket("slow", testhandler.TrapTerm)
	slow.TimeoutStop = "1h"
	h := start(t, activator.Config{}, slow)
	c := dial(t, h.addr(t, "slow"))
	if got := readLine(t, c); got != "ready" {
		t.Fatalf("read %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := h.a.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want its deadline", err)
	}
	row := h.rec.rowOf(t, "slow")
	if row.State != socketd.ConnKilled || row.Signal != "SIGKILL" {
		t.Errorf("row %s by %s, want killed by SIGKILL", row.State, row.Signal)
	}
}
