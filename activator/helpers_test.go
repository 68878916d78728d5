package activator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// timeout bounds every dial, read and wait, so that a bug fails a test
// instead of hanging it.
const timeout = 15 * time.Second

func TestMain(m *testing.M) {
	testhandler.Main()
	// The netpoller opens its own descriptors on first use and keeps them:
	// open them now, so that the descriptor leak check does not see them.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	goleak.VerifyTestMain(m)
}

// handlerSocket returns an enabled definition on 127.0.0.1:0 whose handler
// is the test binary acting as handler, with extra environment kv pairs.
func handlerSocket(name, handler string, kv ...string) socketd.Socket {
	s := testhandler.Socket(name, handler, "127.0.0.1:0")
	for i := 0; i+1 < len(kv); i += 2 {
		s.Environment[kv[i]] = kv[i+1]
	}
	return s
}

// mustValid fails t unless every definition passes Validate, as the API
// would save it.
func mustValid(t testing.TB, socks ...socketd.Socket) {
	t.Helper()
	for _, s := range socks {
		if err := s.Validate(); err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
	}
}

// fakeSource is a Source whose definitions the test sets.
type fakeSource struct {
	mu    sync.Mutex
	socks []socketd.Socket
	err   error
}

func (f *fakeSource) set(socks ...socketd.Socket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.socks = nil
	for _, s := range socks {
		s.Listen = slices.Clone(s.Listen)
		s.Command = slices.Clone(s.Command)
		s.Environment = maps.Clone(s.Environment)
		f.socks = append(f.socks, s)
	}
}

func (f *fakeSource) ListSockets(ctx context.Context) ([]socketd.Socket, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	out := make([]socketd.Socket, len(f.socks))
	for i, s := range f.socks {
		s.Listen = slices.Clone(s.Listen)
		s.Command = slices.Clone(s.Command)
		s.Environment = maps.Clone(s.Environment)
		out[i] = s
	}
	return out, nil
}

// fakeRecorder is a Recorder that keeps every call, checks that each row is
// begun once and finished once, and lets a test fail or hold Begin, or fail
// its commit.
type fakeRecorder struct {
	t testing.TB

	mu       sync.Mutex
	nextID   int64
	begun    []socketd.Connection // in call order
	begunIDs map[int64]bool
	finished map[int64]socketd.Connection
	changed  chan struct{} // closed and replaced at every call
	beginErr error
	// commitErr is what the done callback of Begin reports.
	commitErr error
	// beginHook, if set, runs inside Begin after the id is assigned.
	beginHook func(c *socketd.Connection)
	// holding keeps the done callbacks of finishes in held (holdFinishes).
	holding bool
	held    []func(error)
}

func newRecorder(t testing.TB) *fakeRecorder {
	return &fakeRecorder{t: t, begunIDs: map[int64]bool{}, finished: map[int64]socketd.Connection{}, changed: make(chan struct{})}
}

// BeginConnectionAsync records c and calls done on another goroutine, with
// commitErr, unless beginErr is set: then the row is refused.
func (r *fakeRecorder) BeginConnectionAsync(c *socketd.Connection, done func(error)) error {
	r.mu.Lock()
	hook, err, commitErr := r.beginHook, r.beginErr, r.commitErr
	r.mu.Unlock()
	if err != nil {
		return err
	}
	// A refusal is begun complete: refused, ended, with its reason.
	complete := c.State == socketd.ConnRefused && c.EndedAt != nil && c.Reason != ""
	if c.ID != 0 || (c.State != socketd.ConnRunning && !complete) || c.PID != 0 {
		r.t.Errorf("BeginConnection got id %d, state %s, pid %d; want 0, running (or a complete refusal), 0", c.ID, c.State, c.PID)
	}
	r.mu.Lock()
	r.nextID++
	c.ID = r.nextID
	r.mu.Unlock()
	if hook != nil {
		hook(c)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.begun = append(r.begun, *c)
	r.begunIDs[c.ID] = true
	if complete {
		r.finished[c.ID] = *c
	}
	r.notifyLocked()
	go done(commitErr)
	return nil
}

// FinishConnectionAsync records c at once and calls done on another
// goroutine, as a store's history writer would, or keeps done for
// releaseFinishes while holdFinishes holds them.
func (r *fakeRecorder) FinishConnectionAsync(c *socketd.Connection, done func(error)) {
	r.finish(c)
	r.mu.Lock()
	if r.holding {
		r.held = append(r.held, done)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	go done(nil)
}

// holdFinishes keeps the finishes from being reported durable, as a commit
// that waits for the next connection would, until releaseFinishes.
func (r *fakeRecorder) holdFinishes() {
	r.mu.Lock()
	r.holding = true
	r.mu.Unlock()
}

func (r *fakeRecorder) releaseFinishes() {
	r.mu.Lock()
	held := r.held
	r.holding, r.held = false, nil
	r.mu.Unlock()
	for _, done := range held {
		done(nil)
	}
}

func (r *fakeRecorder) finish(c *socketd.Connection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.begunIDs[c.ID] {
		r.t.Errorf("FinishConnection of connection %d, never begun", c.ID)
	}
	if _, dup := r.finished[c.ID]; dup {
		r.t.Errorf("FinishConnection of connection %d twice", c.ID)
	}
	row := *c
	row.Log = bytes.Clone(c.Log)
	r.finished[c.ID] = row
	r.notifyLocked()
}

// setCommit sets the error the commit of each row begun reports.
func (r *fakeRecorder) setCommit(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commitErr = err
}

// setBegin sets the error Begin returns and the hook it runs.
func (r *fakeRecorder) setBegin(err error, hook func(c *socketd.Connection)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.beginErr, r.beginHook = err, hook
}

// waitChan waits for ch to be closed or to deliver.
func waitChan[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func (r *fakeRecorder) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitFor waits until cond, called with the recorder locked, is true.
func (r *fakeRecorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// row waits for connection id's finished row.
func (r *fakeRecorder) row(t *testing.T, id int64) socketd.Connection {
	t.Helper()
	var c socketd.Connection
	r.waitFor(t, fmt.Sprintf("connection %d to finish", id), func() bool {
		var ok bool
		c, ok = r.finished[id]
		return ok
	})
	return c
}

// rowOf waits for a finished row of socket and returns it.
func (r *fakeRecorder) rowOf(t *testing.T, socket string) socketd.Connection {
	t.Helper()
	var c socketd.Connection
	r.waitFor(t, "a finished row of "+socket, func() bool {
		for _, row := range r.finished {
			if row.Socket == socket {
				c = row
				return true
			}
		}
		return false
	})
	return c
}

// nthBegun waits until n connections have begun and returns the nth id.
func (r *fakeRecorder) nthBegun(t *testing.T, n int) int64 {
	t.Helper()
	var id int64
	r.waitFor(t, fmt.Sprintf("%d connections to begin", n), func() bool {
		if len(r.begun) < n {
			return false
		}
		id = r.begun[n-1].ID
		return true
	})
	return id
}

func (r *fakeRecorder) counts() (begun, finished int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.begun), len(r.finished)
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// harness is an open Activator with its fakes.
type harness struct {
	a    *activator.Activator
	src  *fakeSource
	rec  *fakeRecorder
	logs *syncBuffer
}

// start opens an Activator over socks. At the end of the test it is
// closed, every begun row must be finished, and no goroutine, descriptor
// or child process may be left.
func start(t testing.TB, cfg activator.Config, socks ...socketd.Socket) *harness {
	t.Helper()
	return startWith(t, cfg, nil, socks...)
}

// startWith is start with setup, if not nil, called between New and Open.
func startWith(t testing.TB, cfg activator.Config, setup func(*activator.Activator), socks ...socketd.Socket) *harness {
	t.Helper()
	checkLeaks(t)
	h := &harness{src: &fakeSource{}, rec: newRecorder(t), logs: &syncBuffer{}}
	h.src.set(socks...)
	cfg.Source, cfg.Recorder = h.src, h.rec
	cfg.Logger = slog.New(slog.NewTextHandler(h.logs, nil))
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = time.Hour // tests reconcile explicitly
	}
	h.a = activator.New(cfg)
	if setup != nil {
		setup(h.a)
	}
	if err := h.a.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := h.a.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if b, f := h.rec.counts(); b != f {
			t.Errorf("%d connections begun, %d finished", b, f)
		}
		// The project's key for an error is "err".
		if logs := h.logs.String(); strings.Contains(logs, " error=") {
			t.Errorf("an error is logged under the key error, not err:\n%s", logs)
		}
	})
	return h
}

// apply sets the Source's definitions and applies them.
func (h *harness) apply(t *testing.T, socks ...socketd.Socket) {
	t.Helper()
	h.src.set(socks...)
	if err := h.a.Apply(context.Background()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func (h *harness) status(t testing.TB, name string) socketd.SocketStatus {
	t.Helper()
	st, ok := h.a.Status(name)
	if !ok {
		t.Fatalf("no status for socket %s", name)
	}
	return st
}

// addr returns the first address socket name listens on.
func (h *harness) addr(t testing.TB, name string) string {
	t.Helper()
	st := h.status(t, name)
	if st.State != socketd.SocketListening || len(st.Listening) == 0 {
		t.Fatalf("socket %s is %s, listening on %v: %s", name, st.State, st.Listening, st.Error)
	}
	return st.Listening[0]
}

// eventually waits until cond is true. For states that have no event to
// wait on (a socket's status); it polls.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dial connects to addr with a deadline on the connection; it is closed at
// the end of the test.
func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(timeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip connects, sends in (if any) and half-closes, and returns all it
// reads until end of file.
func roundTrip(t *testing.T, addr, in string) string {
	t.Helper()
	c := dial(t, addr)
	if in != "" {
		if _, err := c.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (after %q)", err, out)
	}
	c.Close()
	return string(out)
}

// readLine reads one line from c.
func readLine(t *testing.T, c net.Conn) string {
	t.Helper()
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			t.Fatalf("read line: %v (after %q)", err, b)
		}
		if one[0] == '\n' {
			return string(b)
		}
		b = append(b, one[0])
	}
}

// checkLeaks fails the test if, when it ends, goroutines, descriptors or
// un-waited children are left that were not there when it began.
func checkLeaks(t testing.TB) {
	before, running := openFDs(t), goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, running)
		after := openFDs(t)
		for fd, target := range after {
			if before[fd] != target {
				t.Errorf("descriptor %d left open: %s", fd, target)
			}
		}
		var si unix.Siginfo
		if err := unix.Waitid(unix.P_ALL, 0, &si, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); !errors.Is(err, unix.ECHILD) {
			t.Errorf("a child process is left un-waited (waitid: %v)", err)
		}
	})
}

func openFDs(t testing.TB) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// The descriptor ReadDir itself used is gone by now.
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			fds[fd] = target
		}
	}
	return fds
}

// gone reports whether process pid has ended: it no longer exists, or is a
// zombie. A handler's grandchild is not ours to wait for: when it ends it is
// a zombie of whoever adopted it, for as long as that takes to reap it.
func gone(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z")
}

// noChildren reports whether this process has no child at all, running or
// zombie.
func noChildren() bool {
	var si unix.Siginfo
	return errors.Is(unix.Waitid(unix.P_ALL, 0, &si, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil), unix.ECHILD)
}

// envMap parses the "env" handler's output.
func envMap(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}
