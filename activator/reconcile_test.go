package activator_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// TestReplaceCommandUnderLoad replaces a socket's command while clients
// connect without pause: no connection may be refused or fail, and every
// connection made after Apply returns runs the new command.
func TestReplaceCommandUnderLoad(t *testing.T) {
	v1 := handlerSocket("say", testhandler.Say, "SOCKETD_TEST_SAY", "one")
	h := start(t, activator.Config{}, v1)
	addr := h.addr(t, "say")

	type result struct {
		dialed time.Time
		out    string
		err    error
	}
	connect := func() result {
		r := result{dialed: time.Now()}
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			r.err = err
			return r
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		out, err := io.ReadAll(c)
		r.out, r.err = string(out), err
		return r
	}
	results, stop := make(chan result), make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer halt()
	for range 4 {
		wg.Go(func() {
			for {
				r := connect()
				select {
				case results <- r:
				case <-stop:
					return
				}
			}
		})
	}
	var all []result
	collect := func(n int, counts func(result) bool) {
		t.Helper()
		deadline := time.After(timeout)
		for n > 0 {
			select {
			case r := <-results:
				all = append(all, r)
				if counts(r) {
					n--
				}
			case <-deadline:
				t.Fatalf("timed out; results so far: %d", len(all))
			}
		}
	}

	// Each version's output, and when Apply installed it.
	type change struct {
		out     string
		applied time.Time
	}
	changes := []change{{"one\n", time.Time{}}}
	collect(20, func(result) bool { return true })
	for i, word := range []string{"two", "three", "four", "five"} {
		v := v1
		v.Environment = maps.Clone(v1.Environment)
		v.Environment["SOCKETD_TEST_SAY"] = word
		if i%2 == 1 {
			v.Stderr = socketd.StderrNull // any field of the command, not only its arguments
		}
		h.apply(t, v)
		applied := time.Now()
		changes = append(changes, change{word + "\n", applied})
		collect(20, func(r result) bool { return r.dialed.After(applied) })
	}
	halt()

	for _, r := range all {
		if r.err != nil {
			t.Errorf("connection failed: %v", r.err)
			continue
		}
		// A connection gets the version current when it was dialed, or a
		// newer one if it was accepted after a later change.
		current := 0
		for i, c := range changes {
			if r.dialed.After(c.applied) {
				current = i
			}
		}
		if !slices.ContainsFunc(changes[current:], func(c change) bool { return c.out == r.out }) {
			t.Errorf("connection dialed under version %d got %q", current, r.out)
		}
	}
	h.rec.waitFor(t, "every row to finish", func() bool { return len(h.rec.finished) == len(h.rec.begun) })
	for id, row := range h.rec.finished {
		if row.State != socketd.ConnExited {
			t.Errorf("connection %d: %s %s", id, row.State, row.Error)
		}
	}
	if st := h.status(t, "say"); st.Refused != 0 || st.Listening[0] != addr || st.Error != "" {
		t.Errorf("status %+v: want none refused, still on %s, no error", st, addr)
	}
}

// TestPortConflict checks that a socket whose port is taken fails alone,
// and recovers by itself once the port is free.
func TestPortConflict(t *testing.T) {
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hold.Close() })
	taken := handlerSocket("taken", testhandler.Hello)
	taken.Listen = []string{hold.Addr().String(), "127.0.0.1:0"}
	h := start(t, activator.Config{}, taken, handlerSocket("free", testhandler.Hello))

	// The address that could bind serves meanwhile.
	st := h.status(t, "taken")
	if st.State != socketd.SocketFailed || !strings.Contains(st.Error, "address already in use") || len(st.Listening) != 1 {
		t.Fatalf("status %+v: want failed, address already in use, listening on one address", st)
	}
	other := st.Listening[0]
	if out := roundTrip(t, other, ""); out != "Hello World\n" {
		t.Errorf("the bound address of the failed socket served %q", out)
	}
	if !strings.Contains(h.logs.String(), "msg=bind") {
		t.Errorf("the bind error is not logged: %s", h.logs)
	}
	if out := roundTrip(t, h.addr(t, "free"), ""); out != "Hello World\n" {
		t.Errorf("the other socket served %q", out)
	}

	hold.Close()
	eventually(t, "the socket to recover", func() bool {
		return h.status(t, "taken").State == socketd.SocketListening
	})
	st = h.status(t, "taken")
	if st.Error != "" || !slices.Equal(st.Listening, []string{hold.Addr().String(), other}) {
		t.Errorf("recovered status %+v: want no error, listening on %s and %s", st, hold.Addr(), other)
	}
	if n := strings.Count(h.logs.String(), "msg=bind"); n != 1 {
		t.Errorf("the bind error is logged %d times, want once:\n%s", n, h.logs)
	}
	if out := roundTrip(t, hold.Addr().String(), ""); out != "Hello World\n" {
		t.Errorf("the recovered socket served %q", out)
	}
}

// TestDisableAndRemove checks that disabling or removing a socket closes its
// listener while the connection in flight finishes normally.
func TestDisableAndRemove(t *testing.T) {
	s := handlerSocket("echo", testhandler.Echo)
	h := start(t, activator.Config{}, s)

	// ping starts a connection and makes sure its handler runs.
	ping := func(addr string) net.Conn {
		c := dial(t, addr)
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		if got := readLine(t, c); got != "ping" {
			t.Fatalf("read %q", got)
		}
		return c
	}
	// finish ends a connection started by ping, checking it still works.
	finish := func(c net.Conn, id int64) {
		if _, err := c.Write([]byte("pong\n")); err != nil {
			t.Fatal(err)
		}
		if got := readLine(t, c); got != "pong" {
			t.Fatalf("read %q", got)
		}
		c.(*net.TCPConn).CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Fatalf("read %q, %v; want end of file", rest, err)
		}
		if row := h.rec.row(t, id); row.State != socketd.ConnExited {
			t.Errorf("in-flight connection ended %s %s", row.State, row.Error)
		}
	}
	refused := func(addr string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err == nil {
			c.Close()
			t.Fatalf("%s still accepts connections", addr)
		}
	}

	addr := h.addr(t, "echo")
	c := ping(addr)
	s.Enabled = false
	h.apply(t, s)
	if st := h.status(t, "echo"); st.State != socketd.SocketDisabled || len(st.Listening) != 0 {
		t.Errorf("disabled status %+v", st)
	}
	refused(addr)
	finish(c, 1)

	s.Enabled = true
	h.apply(t, s)
	addr = h.addr(t, "echo")
	c = ping(addr)
	h.apply(t)
	if _, ok := h.a.Status("echo"); ok {
		t.Error("a removed socket still has a status")
	}
	refused(addr)
	finish(c, 2)
}

// TestListenChange checks that a listen list change keeps the listeners of
// the addresses that stay and rebinds the rest.
func TestListenChange(t *testing.T) {
	s := handlerSocket("hello", testhandler.Hello)
	h := start(t, activator.Config{}, s)
	first := h.addr(t, "hello")

	s.Listen = []string{"127.0.0.1:0", "127.0.0.1:0"}
	h.apply(t, s)
	st := h.status(t, "hello")
	if len(st.Listening) != 2 || st.Listening[0] != first || st.Listening[1] == first {
		t.Fatalf("listening on %v; want %s kept and a second address", st.Listening, first)
	}
	for _, addr := range st.Listening {
		if out := roundTrip(t, addr, ""); out != "Hello World\n" {
			t.Errorf("%s served %q", addr, out)
		}
	}

	port := testhandler.FreePort(t)
	s.Listen = []string{port}
	h.apply(t, s)
	if st := h.status(t, "hello"); !slices.Equal(st.Listening, []string{port}) {
		t.Fatalf("listening on %v, want %s", st.Listening, port)
	}
	if c, err := net.DialTimeout("tcp", first, timeout); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections", first)
	}
	if out := roundTrip(t, port, ""); out != "Hello World\n" {
		t.Errorf("%s served %q", port, out)
	}
}

// TestAddressMovesBetweenSockets removes a socket and adds another on its
// address in one change: the new one must bind at once, not fail and retry.
func TestAddressMovesBetweenSockets(t *testing.T) {
	port := testhandler.FreePort(t)
	a := handlerSocket("a", testhandler.Hello)
	a.Listen = []string{port}
	h := start(t, activator.Config{}, a)
	b := handlerSocket("b", testhandler.Say, "SOCKETD_TEST_SAY", "b")
	b.Listen = []string{port}
	h.apply(t, b)
	if st := h.status(t, "b"); st.State != socketd.SocketListening {
		t.Fatalf("the new socket is %s: %s", st.State, st.Error)
	}
	if out := roundTrip(t, port, ""); out != "b\n" {
		t.Errorf("%s served %q", port, out)
	}
}

// TestResync checks that the periodic reconcile picks up a change nobody
// applied, and that a failing Source leaves the sockets as they are.
func TestResync(t *testing.T) {
	h := start(t, activator.Config{ResyncInterval: 10 * time.Millisecond})
	h.src.set(handlerSocket("late", testhandler.Hello))
	eventually(t, "the resync to bind the socket", func() bool {
		st, ok := h.a.Status("late")
		return ok && st.State == socketd.SocketListening
	})

	h.src.mu.Lock()
	h.src.err = errors.New("database is locked")
	h.src.mu.Unlock()
	eventually(t, "the resync error to be logged", func() bool {
		return strings.Contains(h.logs.String(), "database is locked")
	})
	if err := h.a.Apply(context.Background()); err == nil {
		t.Error("Apply hides the Source's error")
	}
	if out := roundTrip(t, h.addr(t, "late"), ""); out != "Hello World\n" {
		t.Errorf("served %q", out)
	}
}

// TestMaxChildren checks that at the limit a connection waits in the
// backlog rather than being accepted, and is served once a slot frees.
func TestMaxChildren(t *testing.T) {
	h := start(t, activator.Config{MaxChildren: 1}, handlerSocket("hang", testhandler.ReadyHang))
	addr := h.addr(t, "hang")
	c1 := dial(t, addr)
	if got := readLine(t, c1); got != "ready" {
		t.Fatalf("read %q", got)
	}
	c2 := dial(t, addr)
	// Nothing to wait on for something that must not happen: give the
	// accept loop time to misbehave.
	time.Sleep(200 * time.Millisecond)
	if st := h.status(t, "hang"); st.Accepted != 1 {
		t.Fatalf("accepted %d connections over a limit of 1", st.Accepted)
	}
	if err := h.a.Kill(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if got := readLine(t, c2); got != "ready" {
		t.Fatalf("read %q", got)
	}
	if st := h.status(t, "hang"); st.Accepted != 2 || st.Connected != 1 {
		t.Errorf("status %+v: want 2 accepted, 1 connected", st)
	}
}

// TestMaxConnections checks that one socket at its own cap of live
// connections stops accepting (its clients wait in the backlog) while the
// other sockets go on serving, and accepts again once one of its
// connections ends.
func TestMaxConnections(t *testing.T) {
	cat := socketd.NewSocket()
	cat.Name = "cat"
	cat.Listen = []string{"127.0.0.1:0"}
	cat.Command = []string{"cat"} // light: DefaultMaxConnections of them run at once
	h := start(t, activator.Config{}, cat, handlerSocket("hello", testhandler.Hello))
	addr := h.addr(t, "cat")

	// ping writes a line and, if served, reads it back.
	ping := func(c net.Conn) {
		t.Helper()
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
	}
	conns := make([]*net.TCPConn, activator.DefaultMaxConnections)
	for i := range conns {
		conns[i] = dial(t, addr)
		ping(conns[i])
		if got := readLine(t, conns[i]); got != "ping" {
			t.Fatalf("connection %d read %q", i, got)
		}
	}
	over := dial(t, addr) // the kernel completes it into the backlog
	ping(over)

	if out := roundTrip(t, h.addr(t, "hello"), ""); out != "Hello World\n" {
		t.Errorf("the other socket served %q while the first is at its cap", out)
	}
	// Nothing to wait on for something that must not happen: give the
	// accept loop time to misbehave.
	time.Sleep(200 * time.Millisecond)
	if st := h.status(t, "cat"); st.Accepted != activator.DefaultMaxConnections {
		t.Fatalf("accepted %d connections over a cap of %d", st.Accepted, activator.DefaultMaxConnections)
	}

	conns[0].CloseWrite()
	if rest, err := io.ReadAll(conns[0]); err != nil || len(rest) != 0 {
		t.Fatalf("read %q, %v; want end of file", rest, err)
	}
	if got := readLine(t, over); got != "ping" {
		t.Fatalf("the connection over the cap read %q", got)
	}
	if st := h.status(t, "cat"); st.Accepted != activator.DefaultMaxConnections+1 {
		t.Errorf("accepted %d connections, want %d", st.Accepted, activator.DefaultMaxConnections+1)
	}
}

// TestBindBackoff checks that a socket that cannot bind is retried with a
// doubling, bounded delay, never before its retry time, and that an Apply
// does not retry it early unless its addresses change.
func TestBindBackoff(t *testing.T) {
	type failure struct {
		at, retryAt time.Time
		backoff     time.Duration
	}
	// failing starts an activator whose bind failures are reported on
	// the channel returned, with socket "taken" on an address in use.
	failing := func(t *testing.T, min, max time.Duration) (*harness, <-chan failure, net.Listener, socketd.Socket) {
		hold, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hold.Close() })
		s := handlerSocket("taken", testhandler.Hello)
		s.Listen = []string{hold.Addr().String()}
		failures := make(chan failure, 100)
		h := startWith(t, activator.Config{}, func(a *activator.Activator) {
			a.SetRetryBackoff(min, max)
			a.OnBindFailure(func(name string, backoff time.Duration, retryAt time.Time) {
				select {
				case failures <- failure{time.Now(), retryAt, backoff}:
				default:
				}
			})
		}, s)
		return h, failures, hold, s
	}

	t.Run("growth", func(t *testing.T) {
		const base = 20 * time.Millisecond
		h, failures, _, s := failing(t, base, 4*base)
		var prev failure
		for i, want := range []time.Duration{base, 2 * base, 4 * base, 4 * base, 4 * base} {
			if i == 2 {
				// An Apply in the middle changes nothing.
				h.apply(t, s)
			}
			f := waitChan(t, "a bind failure", failures)
			if f.backoff != want || f.retryAt.Sub(f.at) > want {
				t.Errorf("failure %d: backoff %v, retry in %v; want %v", i, f.backoff, f.retryAt.Sub(f.at), want)
			}
			if i > 0 && f.at.Before(prev.retryAt) {
				t.Errorf("failure %d: retried %v before its retry time", i, prev.retryAt.Sub(f.at))
			}
			prev = f
		}
	})

	t.Run("apply", func(t *testing.T) {
		h, failures, hold, s := failing(t, time.Hour, time.Hour)
		waitChan(t, "the first bind failure", failures)
		for range 3 {
			h.apply(t, s)
		}
		hold.Close()
		h.apply(t, s)
		if n := len(failures); n != 0 {
			t.Errorf("%d binds before the retry time", n)
		}
		if st := h.status(t, "taken"); st.State != socketd.SocketFailed {
			t.Errorf("an Apply of the unchanged socket bound it before its retry time: %+v", st)
		}

		// A change of its addresses is tried at once.
		s.Listen = append(s.Listen, "127.0.0.1:0")
		h.apply(t, s)
		if st := h.status(t, "taken"); st.State != socketd.SocketListening || len(st.Listening) != 2 {
			t.Errorf("after a change of addresses: %+v; want listening on both", st)
		}
		if out := roundTrip(t, hold.Addr().String(), ""); out != "Hello World\n" {
			t.Errorf("served %q", out)
		}
	})
}

// TestStatusUnknown checks Status of a socket that does not exist.
func TestStatusUnknown(t *testing.T) {
	h := start(t, activator.Config{})
	if _, ok := h.a.Status("nope"); ok {
		t.Error("Status of an unknown socket is ok")
	}
}

// TestSlotFreedAtClose checks that a connection gives its slot back once it
// is closed, not once its row is durable: a finished row may wait for the
// next connection's commit, which a socket at its limit could not accept.
func TestSlotFreedAtClose(t *testing.T) {
	h := start(t, activator.Config{MaxChildren: 1}, handlerSocket("hello", testhandler.Hello))
	h.rec.holdFinishes()
	defer h.rec.releaseFinishes()
	for i := range 3 {
		if out := roundTrip(t, h.addr(t, "hello"), ""); out != "Hello World\n" {
			t.Fatalf("connection %d with the earlier rows not yet durable: read %q", i, out)
		}
	}
}
