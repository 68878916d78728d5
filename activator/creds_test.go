package activator_test

import (
	"strings"
	"testing"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// idsScript prints the handler's real, effective, saved and filesystem
// uids and gids, its supplementary groups, its umask and its nice value.
const idsScript = `grep -E '^(Uid|Gid|Groups):' /proc/self/status; umask; cut -d' ' -f19 /proc/self/stat`

// TestHandlerCredentials runs a handler under each combination of user,
// group and supplementary groups (by name and by number, in the user
// database or not) and checks every id of the process it became, with its
// umask and nice value: the privileges are dropped in one place for every
// handler, before it executes.
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
		if err := s.Validate(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		socks = append(socks, s)
	}
	h := start(t, activator.Config{}, socks...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := roundTrip(t, h.addr(t, c.name), "")
			got := map[string]string{}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 5 {
				t.Fatalf("handler wrote %q", out)
			}
			for _, l := range lines[:3] {
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
			if lines[3] != c.um || lines[4] != c.ni {
				t.Errorf("umask %s, nice %s; want %s, %s", lines[3], lines[4], c.um, c.ni)
			}
			row := h.rec.rowOf(t, c.name)
			if row.State != socketd.ConnExited {
				t.Errorf("row %s (%s), want exited", row.State, row.Error)
			}
		})
	}
}
