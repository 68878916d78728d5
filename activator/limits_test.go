package activator_test

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	time.Sleep(100 * time.Millisecond)
	if st := h.status(t, "two"); st.Accepted != 3 {
		t.Fatalf("accepted %d at a limit of 3", st.Accepted)
	}
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
	mustValid(t, s)
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
	mustValid(t, s)
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

// TestMaxConnectionsPerSource: with max_connections_per_source 4, a
// thousand connections from two dozen sources, eight at a time each, never
// run more than 4 handlers of one source at once, as the handlers' own
// start and end times show; the connections over it are refused with
// reason per_source.
func TestMaxConnectionsPerSource(t *testing.T) {
	stamps := filepath.Join(t.TempDir(), "stamps")
	if err := os.WriteFile(stamps, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	s := handlerSocket("shared", testhandler.Stamp, "SOCKETD_TEST_STAMPS", stamps, "SOCKETD_TEST_HOLD", "20")
	s.Listen = []string{"0.0.0.0:0"}
	s.MaxConnections, s.MaxConnectionsPerSource = 500, 4
	h := start(t, activator.Config{}, s)
	_, port := splitPort(t, h.addr(t, "shared"))
	const sources, perSource, parallel = 24, 42, 8
	var wg sync.WaitGroup
	for i := range sources {
		src := fmt.Sprintf("127.0.1.%d", i+1)
		for range parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: timeout}
				for range perSource / parallel {
					c, err := d.Dial("tcp", "127.0.0.1:"+port)
					if err != nil {
						t.Error(err)
						return
					}
					c.SetDeadline(time.Now().Add(timeout))
					io.ReadAll(c)
					c.Close()
				}
			}()
		}
	}
	wg.Wait()
	total := sources * (perSource / parallel) * parallel
	eventually(t, "every connection to end", func() bool {
		st := h.status(t, "shared")
		return st.Connected == 0 && st.Accepted == int64(total)
	})
	st := h.status(t, "shared")
	if st.RefusedByReason[socketd.ReasonPerSource] == 0 {
		t.Errorf("no connection refused per source (status %+v): the limit was not put to the test", st)
	}
	b, err := os.ReadFile(stamps)
	if err != nil {
		t.Fatal(err)
	}
	type event struct {
		at    int64
		delta int
	}
	events := map[string][]event{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var src, what string
		var at int64
		if _, err := fmt.Sscanf(line, "%s %s %d", &src, &what, &at); err != nil {
			t.Fatalf("stamp %q: %v", line, err)
		}
		delta := 1
		if what == "end" {
			delta = -1
		}
		events[src] = append(events[src], event{at, delta})
	}
	served := 0
	for src, evs := range events {
		// Ends sort before starts at the same instant: the slot was free.
		slices.SortFunc(evs, func(a, b event) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.delta, b.delta)) })
		running, most := 0, 0
		for _, e := range evs {
			running += e.delta
			most = max(most, running)
		}
		if most > 4 {
			t.Errorf("%s ran %d handlers at once", src, most)
		}
		served += len(evs) / 2
	}
	if int64(served)+st.RefusedByReason[socketd.ReasonPerSource] != int64(total) {
		t.Errorf("%d served and %d refused of %d", served, st.RefusedByReason[socketd.ReasonPerSource], total)
	}
	if len(st.Sources) != 0 {
		t.Errorf("sources after every connection ended: %v", st.Sources)
	}
}

func splitPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

// TestSourcePrefix: with source_prefix_ipv4 24, two addresses of one /24
// count as one source, and the status shows it.
func TestSourcePrefix(t *testing.T) {
	s := handlerSocket("nets", testhandler.ReadyHang)
	s.Listen = []string{"0.0.0.0:0"}
	s.MaxConnectionsPerSource, s.SourcePrefixIPv4 = 2, 24
	h := start(t, activator.Config{}, s)
	_, port := splitPort(t, h.addr(t, "nets"))
	for _, src := range []string{"127.0.2.1", "127.0.2.2"} {
		if got := readLine(t, dialFrom(t, src, "127.0.0.1:"+port)); got != "ready" {
			t.Fatalf("%s read %q", src, got)
		}
	}
	if out, _ := io.ReadAll(dialFrom(t, "127.0.2.3", "127.0.0.1:"+port)); len(out) != 0 {
		t.Errorf("a third client of 127.0.2.0/24 read %q", out)
	}
	if got := readLine(t, dialFrom(t, "127.0.3.1", "127.0.0.1:"+port)); got != "ready" {
		t.Errorf("another /24 read %q", got)
	}
	st := h.status(t, "nets")
	want := []socketd.SourceCount{{Source: "127.0.2.0/24", Connections: 2}, {Source: "127.0.3.0/24", Connections: 1}}
	if !slices.Equal(st.Sources, want) || st.RefusedByReason[socketd.ReasonPerSource] != 1 {
		t.Errorf("sources %v, refused %v", st.Sources, st.RefusedByReason)
	}
}

// TestRateLimits: a socket over its rate_limit pauses, says until when,
// and resumes by itself, every client served in the end; a source over its
// source_rate_limit is refused with reason rate, others are not.
func TestRateLimits(t *testing.T) {
	paced := handlerSocket("paced", testhandler.Hello)
	paced.RateLimit = &socketd.RateLimit{PerSecond: 10, Burst: 2}
	perSource := handlerSocket("persource", testhandler.Hello)
	perSource.Listen = []string{"0.0.0.0:0"}
	perSource.SourceRateLimit = &socketd.RateLimit{PerSecond: 0.5, Burst: 2}
	mustValid(t, paced, perSource)
	h := start(t, activator.Config{}, paced, perSource)

	addr := h.addr(t, "paced")
	began := time.Now()
	conns := make([]*net.TCPConn, 6)
	for i := range conns {
		conns[i] = dial(t, addr)
	}
	eventually(t, "the socket to pause", func() bool { return h.status(t, "paced").PausedUntil != nil })
	for i, c := range conns {
		if out, err := io.ReadAll(c); err != nil || string(out) != "Hello World\n" {
			t.Fatalf("client %d read %q, %v", i, out, err)
		}
	}
	// Two at once, then four at ten a second.
	if took := time.Since(began); took < 350*time.Millisecond {
		t.Errorf("6 connections served in %v at 10 a second with a burst of 2", took)
	}
	eventually(t, "the socket to resume", func() bool { return h.status(t, "paced").PausedUntil == nil })

	_, port := splitPort(t, h.addr(t, "persource"))
	for i, want := range []string{"Hello World\n", "Hello World\n", ""} {
		if out, _ := io.ReadAll(dialFrom(t, "127.0.4.1", "127.0.0.1:"+port)); string(out) != want {
			t.Errorf("connection %d of the source read %q, want %q", i, out, want)
		}
	}
	if out, _ := io.ReadAll(dialFrom(t, "127.0.4.2", "127.0.0.1:"+port)); string(out) != "Hello World\n" {
		t.Errorf("another source read %q", out)
	}
	if st := h.status(t, "persource"); st.RefusedByReason[socketd.ReasonRate] != 1 {
		t.Errorf("refused %v, want 1 by rate", st.RefusedByReason)
	}
}

// TestResourceLimits: the handler runs with the definition's rlimits, soft
// and hard, as /proc/self/limits shows them.
func TestResourceLimits(t *testing.T) {
	s := handlerSocket("limited", testhandler.Hello)
	s.Command = []string{"/bin/cat", "/proc/self/limits"}
	s.ResourceLimits = socketd.ResourceLimits{LimitNOFILE: "100:200", LimitNPROC: "50", LimitCPU: "1m",
		LimitAS: "1G", LimitCORE: "0"}
	mustValid(t, s)
	h := start(t, activator.Config{}, s)
	out := roundTrip(t, h.addr(t, "limited"), "")
	want := map[string]string{
		"Max open files":     "100 200",
		"Max processes":      "50 50",
		"Max cpu time":       "60 60",
		"Max address space":  "1073741824 1073741824",
		"Max core file size": "0 0",
	}
	for _, line := range strings.Split(out, "\n") {
		for name, limits := range want {
			if strings.HasPrefix(line, name+" ") {
				f := strings.Fields(strings.TrimPrefix(line, name))
				if len(f) < 2 || f[0]+" "+f[1] != limits {
					t.Errorf("%s: %q, want %s", name, line, limits)
				}
				delete(want, name)
			}
		}
	}
	if len(want) > 0 {
		t.Errorf("not in /proc/self/limits: %v\n%s", want, out)
	}
}

// TestIdleTimeout: a connection with no data either way for idle_timeout
// is ended, its row killed saying why; one that keeps talking is not.
func TestIdleTimeout(t *testing.T) {
	s := handlerSocket("idle", testhandler.Echo)
	s.IdleTimeout = "300ms"
	mustValid(t, s)
	h := start(t, activator.Config{}, s)
	talker, silent := dial(t, h.addr(t, "idle")), dial(t, h.addr(t, "idle"))
	began := time.Now()
	for range 8 { // 800 ms of talk, a message every 100 ms
		if _, err := talker.Write([]byte("x\n")); err != nil {
			t.Fatal(err)
		}
		if got := readLine(t, talker); got != "x" {
			t.Fatalf("echo %q", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Its last word was 100 ms ago: still on. Rows are told apart by the
	// client's port: the two may have been begun in either order.
	talkerPort := talker.LocalAddr().(*net.TCPAddr).Port
	h.rec.mu.Lock()
	talkerEnded := false
	for _, row := range h.rec.finished {
		talkerEnded = talkerEnded || row.RemotePort == talkerPort
	}
	h.rec.mu.Unlock()
	if talkerEnded {
		t.Errorf("the talking connection was ended within %v", time.Since(began))
	}
	if out, err := io.ReadAll(silent); err != nil || len(out) != 0 {
		t.Errorf("the silent client read %q, %v", out, err)
	}
	silentPort := silent.LocalAddr().(*net.TCPAddr).Port
	var row socketd.Connection
	h.rec.waitFor(t, "the silent connection's row", func() bool {
		for _, r := range h.rec.finished {
			if r.RemotePort == silentPort {
				row = r
				return true
			}
		}
		return false
	})
	if row.State != socketd.ConnKilled || !strings.Contains(row.Error, "idle_timeout (300ms)") ||
		row.DurationMS == nil || *row.DurationMS < 300 {
		t.Errorf("silent row %s (%s) after %v ms", row.State, row.Error, row.DurationMS)
	}
	// Silent now, it ends too.
	if out, err := io.ReadAll(talker); err != nil || len(out) != 0 {
		t.Errorf("the talker read %q, %v", out, err)
	}
}

// TestAcceptSurvivesEMFILE: out of file descriptors, the accept loop backs
// off without spinning, says so once, and serves the clients that waited
// once descriptors are there again.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	h := start(t, activator.Config{}, handlerSocket("files", testhandler.Hello))
	_, port := splitPort(t, h.addr(t, "files"))
	p, _ := strconv.Atoi(port)
	// The clients' sockets are made first: connecting takes no new one.
	clients := make([]int, 3)
	for i := range clients {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = fd
		defer unix.Close(fd)
		tv := unix.Timeval{Sec: int64(timeout / time.Second)}
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}
	var saved unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	restore := func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &saved) }
	defer restore()
	var before unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	// A limit of 0: no new descriptor at all, whatever is closed meanwhile.
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 0, Max: saved.Max}); err != nil {
		t.Fatal(err)
	}
	for _, fd := range clients {
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			restore()
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	var during unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &during)
	restore()
	cpu := time.Duration(during.Utime.Nano()+during.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	if cpu > 250*time.Millisecond {
		t.Errorf("%v of CPU in 500 ms out of descriptors: the accept loop spins", cpu)
	}
	if logs := h.logs.String(); strings.Count(logs, "too many open files") != 1 {
		t.Errorf("want the accept error logged once:\n%s", logs)
	}
	for i, fd := range clients {
		buf := make([]byte, 64)
		n, err := unix.Read(fd, buf)
		for err == unix.EINTR { // the runtime's preemption signal
			n, err = unix.Read(fd, buf)
		}
		if err != nil || string(buf[:max(n, 0)]) != "Hello World\n" {
			t.Errorf("client %d read %q, %v", i, buf[:max(n, 0)], err)
		}
	}
}

// TestLimitsChangeWhileWaiting: a socket waiting under its old limits sees
// a new definition at once: a rate limit removed lets the waiting client
// in, and a switch to on_limit refuse refuses the client the full socket
// kept waiting.
func TestLimitsChangeWhileWaiting(t *testing.T) {
	slow := handlerSocket("slow", testhandler.Hello)
	slow.RateLimit = &socketd.RateLimit{PerSecond: 0.001, Burst: 1}
	full := handlerSocket("full", testhandler.ReadyHang)
	full.MaxConnections = 1
	h := start(t, activator.Config{}, slow, full)
	if out := roundTrip(t, h.addr(t, "slow"), ""); out != "Hello World\n" {
		t.Fatalf("first read %q", out)
	}
	waiting := dial(t, h.addr(t, "slow"))
	eventually(t, "the socket to pause", func() bool { return h.status(t, "slow").PausedUntil != nil })
	first := dial(t, h.addr(t, "full"))
	if got := readLine(t, first); got != "ready" {
		t.Fatalf("read %q", got)
	}
	kept := dial(t, h.addr(t, "full"))

	slow.RateLimit = nil
	full.OnLimit = socketd.OnLimitRefuse
	h.apply(t, slow, full)
	if out, err := io.ReadAll(waiting); err != nil || string(out) != "Hello World\n" {
		t.Errorf("the client paused under the removed rate limit read %q, %v", out, err)
	}
	if h.status(t, "slow").PausedUntil != nil {
		t.Error("the socket still shows a pause")
	}
	if out, err := io.ReadAll(kept); err != nil || len(out) != 0 {
		t.Errorf("the client kept waiting read %q, %v", out, err)
	}
	if st := h.status(t, "full"); st.RefusedByReason[socketd.ReasonMaxConnections] != 1 {
		t.Errorf("refused %v, want the waiting client refused at the limit", st.RefusedByReason)
	}
}

// TestSlotsShareAcrossListeners: a socket's slots go to the listener with a
// client waiting: with max_connections 1 and two addresses, the second
// address is served once the first's client is done.
func TestSlotsShareAcrossListeners(t *testing.T) {
	s := handlerSocket("two-addrs", testhandler.Hello)
	s.Listen = []string{"127.0.0.1:0", "127.0.0.2:0"}
	s.MaxConnections = 1
	h := start(t, activator.Config{}, s)
	st := h.status(t, "two-addrs")
	for i := range 3 {
		for _, addr := range st.Listening {
			if out := roundTrip(t, addr, ""); out != "Hello World\n" {
				t.Fatalf("round %d, %s: read %q", i, addr, out)
			}
		}
	}
}
