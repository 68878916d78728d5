package activator_test

import (
	"context"
	"io"
	"net"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// dialFrom connects to addr from the loopback address src (127.0.0.0/8
// holds many), with a deadline; it is closed at the end of the test.
func dialFrom(t *testing.T, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: timeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(timeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// TestMaxConnectionsDefer: at max_connections the socket stops accepting;
// the next client waits in the backlog and is served once a slot frees. A
// new definition raises the limit for the connections waiting.
func TestMaxConnectionsDefer(t *testing.T) {
	s := handlerSocket("two", testhandler.ReadyHang)
	s.MaxConnections = 2
	h := start(t, activator.Config{}, s)
	addr := h.addr(t, "two")
	first, second := dial(t, addr), dial(t, addr)
	for _, c := range []*net.TCPConn{first, second} {
		if got := readLine(t, c); got != "ready" {
			t.Fatalf("read %q", got)
		}
	}
	third := dial(t, addr) // connected in the backlog, not accepted
	time.Sleep(100 * time.Millisecond)
	if st := h.status(t, "two"); st.Accepted != 2 {
		t.Fatalf("accepted %d at a limit of 2", st.Accepted)
	}
	s.MaxConnections = 3
	h.apply(t, s)
	if got := readLine(t, third); got != "ready" {
		t.Fatalf("third read %q once the limit was raised", got)
	}
	fourth := dial(t, addr)
	if err := h.a.Kill(context.Background(), h.rec.nthBegun(t, 1)); err != nil {
		t.Fatal(err)
	}
	if got := readLine(t, fourth); got != "ready" {
		t.Fatalf("fourth read %q once a slot freed", got)
	}
}

// TestMaxConnectionsRefuse: with on_limit refuse, a client beyond
// max_connections is accepted, told limit_message and closed, and the
// refusal is recorded with its reason.
func TestMaxConnectionsRefuse(t *testing.T) {
	s := handlerSocket("one", testhandler.ReadyHang)
	s.MaxConnections, s.OnLimit, s.LimitMessage = 1, socketd.OnLimitRefuse, "busy, try later"
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	h := start(t, activator.Config{}, s)
	addr := h.addr(t, "one")
	first := dial(t, addr)
	if got := readLine(t, first); got != "ready" {
		t.Fatalf("read %q", got)
	}
	second := dial(t, addr)
	if out, err := io.ReadAll(second); err != nil || string(out) != "busy, try later\r\n" {
		t.Errorf("refused client read %q, %v", out, err)
	}
	row := h.rec.row(t, h.rec.nthBegun(t, 2))
	if row.State != socketd.ConnRefused || row.Reason != socketd.ReasonMaxConnections || row.PID != 0 || row.RemoteIP != "127.0.0.1" {
		t.Errorf("row %+v", row)
	}
	if st := h.status(t, "one"); st.Refused != 1 || st.RefusedByReason[socketd.ReasonMaxConnections] != 1 {
		t.Errorf("status refused %d, by reason %v", st.Refused, st.RefusedByReason)
	}
}

// TestAccessRules: the most specific rule decides, allow winning a tie;
// a denied client is closed before anything is spawned, and recorded.
func TestAccessRules(t *testing.T) {
	s := handlerSocket("guarded", testhandler.Hello)
	s.Listen = []string{"0.0.0.0:0"}
	s.IPAddressDeny = []string{"127.0.0.0/8", "127.0.0.5"}
	s.IPAddressAllow = []string{"127.0.0.0/24", "127.0.1.7", "127.0.2.0/24"}
	s.IPAddressDeny = append(s.IPAddressDeny, "127.0.2.0/24") // a tie: allowed
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	h := start(t, activator.Config{}, s)
	_, port, _ := net.SplitHostPort(h.addr(t, "guarded"))
	for src, allowed := range map[string]bool{
		"127.0.0.1": true,  // the /24 allow beats the /8 deny
		"127.0.0.5": false, // the /32 deny beats the /24 allow
		"127.0.1.7": true,
		"127.0.1.8": false,
		"127.0.2.9": true,
	} {
		c := dialFrom(t, src, "127.0.0.1:"+port)
		c.CloseWrite()
		out, _ := io.ReadAll(c)
		if got := string(out) == "Hello World\n"; got != allowed {
			t.Errorf("%s: read %q, allowed %v", src, out, allowed)
		}
	}
	st := h.status(t, "guarded")
	if st.RefusedByReason[socketd.ReasonDenied] != 2 {
		t.Errorf("refused by reason %v, want 2 denied", st.RefusedByReason)
	}
	h.rec.waitFor(t, "5 rows", func() bool { return len(h.rec.finished) == 5 })
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	for _, row := range h.rec.finished {
		denied := row.RemoteIP == "127.0.0.5" || row.RemoteIP == "127.0.1.8"
		if denied != (row.State == socketd.ConnRefused && row.Reason == socketd.ReasonDenied && row.PID == 0) {
			t.Errorf("row of %s: %s %s, pid %d", row.RemoteIP, row.State, row.Reason, row.PID)
		}
	}
}

// TestRefusalRowsBudget: under a flood of refusals, rows beyond the budget
// are folded into one summary row that counts them; the status counts all.
func TestRefusalRowsBudget(t *testing.T) {
	s := handlerSocket("walled", testhandler.Hello)
	s.IPAddressDeny = []string{"any"}
	h := start(t, activator.Config{}, s)
	const n = 150
	for range n {
		c := dial(t, h.addr(t, "walled"))
		io.ReadAll(c)
		c.Close()
	}
	eventually(t, "every refusal counted", func() bool { return h.status(t, "walled").Refused == n })
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := h.a.Close(ctx); err != nil { // writes the summary row
		t.Fatal(err)
	}
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	rows, folded := 0, 0
	for _, row := range h.rec.finished {
		switch row.Reason {
		case socketd.ReasonDenied:
			rows++
		case socketd.ReasonFolded:
			m := regexp.MustCompile(`^(\d+) more connections refused, without a row each: denied (\d+)$`).FindStringSubmatch(row.Error)
			if m == nil || m[1] != m[2] {
				t.Fatalf("summary row %q", row.Error)
			}
			folded, _ = strconv.Atoi(m[1])
		}
	}
	if rows > 110 || folded == 0 || rows+folded != n {
		t.Errorf("%d rows and %d folded for %d refusals", rows, folded, n)
	}
}
