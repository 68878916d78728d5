package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/internal/apitest"
	"github.com/socketd/socketd/store"
)

// beginConnection records a running connection, as the activator would.
func beginConnection(t *testing.T, db *store.DB, c socketd.Connection) socketd.Connection {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if c.LocalIP == "" {
		c.LocalIP, c.LocalPort, c.RemotePort = "127.0.0.1", 13063, 40000
	}
	if err := db.BeginConnection(ctx, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// finishConnection records how a connection ended.
func finishConnection(t *testing.T, db *store.DB, c socketd.Connection) socketd.Connection {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := db.FinishConnection(ctx, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func ids(cs []socketd.Connection) []int64 {
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// TestConnections covers the history routes: filters, pagination, one
// connection, its log, and killing.
func TestConnections(t *testing.T) {
	h := newHarness(t)
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var all []socketd.Connection // oldest first
	for i := range 6 {
		c := socketd.Connection{
			Socket:    []string{"alpha", "beta"}[i%2],
			RemoteIP:  []string{"192.0.2.1", "2001:db8::1", "192.0.2.2"}[i%3],
			StartedAt: t0.Add(time.Duration(i) * time.Minute),
			PID:       1000 + i,
		}
		all = append(all, beginConnection(t, h.db, c))
	}
	// The first two have ended; the second wrote to stderr.
	exit0, exit3 := 0, 3
	all[0].State, all[0].ExitCode = socketd.ConnExited, &exit0
	all[0] = finishConnection(t, h.db, all[0])
	all[1].State, all[1].ExitCode, all[1].Log = socketd.ConnFailed, &exit3, []byte("oops\nline two\n")
	all[1] = finishConnection(t, h.db, all[1])
	c := h.c

	t.Run("list", func(t *testing.T) {
		got, next, err := c.ListConnections(h.ctx(), socketd.ConnectionFilter{})
		if err != nil {
			t.Fatal(err)
		}
		want := ids(all)
		slices.Reverse(want)
		if !slices.Equal(ids(got), want) || next != "" {
			t.Errorf("list = %v next %q, want %v newest first", ids(got), next, want)
		}
	})

	t.Run("filters", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			f    socketd.ConnectionFilter
			want []int
		}{
			{"socket", socketd.ConnectionFilter{Socket: "beta"}, []int{5, 3, 1}},
			{"state", socketd.ConnectionFilter{State: socketd.ConnRunning}, []int{5, 4, 3, 2}},
			{"failed", socketd.ConnectionFilter{State: socketd.ConnFailed}, []int{1}},
			{"remote_ip", socketd.ConnectionFilter{RemoteIP: "2001:db8::1"}, []int{4, 1}},
			{"since", socketd.ConnectionFilter{Since: t0.Add(4 * time.Minute)}, []int{5, 4}},
			{"until", socketd.ConnectionFilter{Until: t0.Add(2 * time.Minute)}, []int{1, 0}},
			{"since and until", socketd.ConnectionFilter{Since: t0.Add(time.Minute), Until: t0.Add(3 * time.Minute)}, []int{2, 1}},
			{"combined", socketd.ConnectionFilter{Socket: "alpha", State: socketd.ConnRunning}, []int{4, 2}},
			{"nothing", socketd.ConnectionFilter{Socket: "gamma"}, nil},
		} {
			got, _, err := c.ListConnections(h.ctx(), tc.f)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			var want []int64
			for _, i := range tc.want {
				want = append(want, all[i].ID)
			}
			if !slices.Equal(ids(got), want) {
				t.Errorf("%s: got %v, want %v", tc.name, ids(got), want)
			}
		}
	})

	t.Run("pages", func(t *testing.T) {
		var seen []int64
		f := socketd.ConnectionFilter{Limit: 4}
		for page := 0; ; page++ {
			got, next, err := c.ListConnections(h.ctx(), f)
			if err != nil {
				t.Fatal(err)
			}
			seen = append(seen, ids(got)...)
			if next == "" {
				break
			}
			if page > 3 {
				t.Fatal("pagination does not end")
			}
			f.Cursor = next
		}
		want := ids(all)
		slices.Reverse(want)
		if !slices.Equal(seen, want) {
			t.Errorf("pages gave %v, want %v", seen, want)
		}
		// The raw response carries next_cursor, empty on the last page.
		resp, body := h.do(request{method: "GET", path: "/v1/connections?limit=6"})
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"next_cursor":""`) {
			t.Errorf("last page: %s %s", resp.Status, body)
		}
	})

	t.Run("get", func(t *testing.T) {
		got, err := c.GetConnection(h.ctx(), all[1].ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != all[1].ID || got.State != socketd.ConnFailed || got.ExitCode == nil || *got.ExitCode != 3 ||
			got.PID != 1001 || got.EndedAt == nil || got.DurationMS == nil || got.RemoteIP != "2001:db8::1" {
			t.Errorf("got %+v", got)
		}
		running, err := c.GetConnection(h.ctx(), all[5].ID)
		if err != nil {
			t.Fatal(err)
		}
		if running.State != socketd.ConnRunning || running.EndedAt != nil || running.ExitCode != nil {
			t.Errorf("running connection = %+v", running)
		}
	})

	t.Run("log", func(t *testing.T) {
		log, err := c.ConnectionLog(h.ctx(), all[1].ID)
		if err != nil || string(log) != "oops\nline two\n" {
			t.Errorf("log = %q, %v", log, err)
		}
		resp, body := h.do(request{method: "GET", path: "/v1/connections/" + itoa(all[1].ID) + "/log"})
		if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" || string(body) != "oops\nline two\n" {
			t.Errorf("log response: Content-Type %q, body %q", ct, body)
		}
		empty, err := c.ConnectionLog(h.ctx(), all[0].ID)
		if err != nil || len(empty) != 0 {
			t.Errorf("empty log = %q, %v", empty, err)
		}
	})

	t.Run("kill", func(t *testing.T) {
		victim := all[5]
		h.rt.mu.Lock()
		h.rt.running[victim.ID] = &victim
		h.rt.mu.Unlock()
		got, err := c.KillConnection(h.ctx(), victim.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != victim.ID || got.State != socketd.ConnKilled || got.Signal != "SIGTERM" || got.EndedAt == nil {
			t.Errorf("kill returned %+v", got)
		}
		h.rt.mu.Lock()
		kills := slices.Clone(h.rt.kills)
		h.rt.mu.Unlock()
		if !slices.Equal(kills, []int64{victim.ID}) {
			t.Errorf("Runtime.Kill calls = %v", kills)
		}

		// Now it has ended: a conflict, as is one that ended long ago.
		_, err = c.KillConnection(h.ctx(), victim.ID)
		wantCode(t, err, socketd.CodeConflict)
		_, err = c.KillConnection(h.ctx(), all[0].ID)
		wantCode(t, err, socketd.CodeConflict)
		// The store says running but the runtime no longer has it: it is
		// ending on its own.
		_, err = c.KillConnection(h.ctx(), all[4].ID)
		wantCode(t, err, socketd.CodeConflict)
		_, err = c.KillConnection(h.ctx(), 987654)
		wantCode(t, err, socketd.CodeNotFound)
	})

	t.Run("unknown", func(t *testing.T) {
		_, err := c.GetConnection(h.ctx(), 987654)
		wantCode(t, err, socketd.CodeNotFound)
		_, err = c.ConnectionLog(h.ctx(), 987654)
		wantCode(t, err, socketd.CodeNotFound)
	})
}

// TestKillUnavailable checks that a runtime error other than not found
// passes through with its code.
func TestKillUnavailable(t *testing.T) {
	h := newHarness(t)
	h.rt.mu.Lock()
	h.rt.killHook = func(context.Context) error {
		return socketd.Errorf(socketd.CodeUnavailable, "the daemon is shutting down")
	}
	h.rt.mu.Unlock()
	conn := beginConnection(t, h.db, socketd.Connection{Socket: "s", RemoteIP: "127.0.0.1"})
	_, err := h.c.KillConnection(h.ctx(), conn.ID)
	wantCode(t, err, socketd.CodeUnavailable)
}

// TestListConnectionsQuery checks what the Client puts in the query string.
func TestListConnectionsQuery(t *testing.T) {
	since := time.Date(2025, 3, 1, 12, 0, 0, 500, time.FixedZone("X", 3600))
	var got url.Values
	srv := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.Query()
		writeJSON(w, http.StatusOK, connectionList{Items: []socketd.Connection{}, NextCursor: "n"})
	})
	hs := newTestServer(t, srv)
	_, next, err := NewClient(hs, "t").ListConnections(t.Context(), socketd.ConnectionFilter{
		Socket: "a", State: socketd.ConnKilled, RemoteIP: "::1", Since: since, Until: since.Add(time.Hour),
		Limit: 5, Cursor: "c",
	})
	if err != nil || next != "n" {
		t.Fatalf("next %q, %v", next, err)
	}
	want := url.Values{
		"socket": {"a"}, "state": {"killed"}, "remote_ip": {"::1"}, "limit": {"5"}, "cursor": {"c"},
		"since": {"2025-03-01T11:00:00.0000005Z"}, "until": {"2025-03-01T12:00:00.0000005Z"},
	}
	if got.Encode() != want.Encode() {
		t.Errorf("query = %v, want %v", got, want)
	}
}

// TestKillOutlastsWriteTimeout checks that a kill that takes longer than the
// server's write timeout still gets its answer.
func TestKillOutlastsWriteTimeout(t *testing.T) {
	db, rt := openStore(t)
	s := New(Config{Store: db, Runtime: rt})
	s.writeTimeout = 100 * time.Millisecond
	if err := s.Open("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	conn := beginConnection(t, db, socketd.Connection{Socket: "s", RemoteIP: "127.0.0.1"})
	rt.mu.Lock()
	rt.killHook = func(context.Context) error {
		// Time is what this test is about: outlast the write timeout.
		time.Sleep(3 * s.writeTimeout)
		return nil
	}
	rt.running[conn.ID] = &conn
	rt.mu.Unlock()
	c := NewClient("http://"+s.Addr(), testToken, WithHTTPClient(apitest.HTTPClient(t)))
	got, err := c.KillConnection(t.Context(), conn.ID)
	if err != nil || got.State != socketd.ConnKilled {
		t.Fatalf("kill = %+v, %v", got, err)
	}
}
