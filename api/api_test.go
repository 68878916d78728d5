package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata"

	"go.uber.org/goleak"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/internal/apitest"
	"github.com/socketd/socketd/store"
)

// testZone is the time zone the tests run in: one off UTC, and not by
// whole hours, so that a time read or shown in the wrong zone shows. It is
// set before anything reads the zone (time/tzdata has it on any host).
const testZone = "Asia/Kolkata"

func TestMain(m *testing.M) {
	os.Setenv("TZ", testZone)
	goleak.VerifyTestMain(m)
}

// testToken is the token the harness stores.
const testToken = "test-token-6f1c0e7d2b9a"

// fakeRuntime stands in for the activator: it counts Apply calls, reports a
// status for every socket but those it is told not to know, and kills the
// connections it is told are running by recording them killed in the store.
type fakeRuntime struct {
	db *store.DB

	mu       sync.Mutex
	applies  int
	applyErr error
	unknown  map[string]bool                 // sockets without a status
	running  map[int64]*socketd.Connection   // connections Kill can kill
	kills    []int64                         // ids Kill was called with
	killHook func(ctx context.Context) error // runs inside Kill when set
	states   map[string][2]string            // state and error by socket, set by setState
}

// setState makes Status report state and the error errText for name.
func (f *fakeRuntime) setState(name string, state socketd.SocketState, errText string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.states == nil {
		f.states = map[string][2]string{}
	}
	f.states[name] = [2]string{string(state), errText}
}

func newFakeRuntime(db *store.DB) *fakeRuntime {
	return &fakeRuntime{db: db, unknown: map[string]bool{}, running: map[int64]*socketd.Connection{}}
}

// panicName is a socket whose status makes the fake runtime panic.
const panicName = "panic"

// fakeSince is the Since of every status the fake reports.
var fakeSince = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func (f *fakeRuntime) Apply(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	return f.applyErr
}

func (f *fakeRuntime) Status(name string) (socketd.SocketStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name == panicName {
		panic("status of " + name)
	}
	if f.unknown[name] {
		return socketd.SocketStatus{}, false
	}
	// Listening is nil on purpose: the API must send [] rather than null.
	st := socketd.SocketStatus{State: socketd.SocketListening, Since: fakeSince, Accepted: 7, Connected: 1}
	if s, ok := f.states[name]; ok {
		st.State, st.Error = socketd.SocketState(s[0]), s[1]
	}
	return st, true
}

func (f *fakeRuntime) Connections(name string) []socketd.Connection {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []socketd.Connection
	for _, c := range f.running {
		if c.Socket == name {
			out = append(out, *c)
		}
	}
	return out
}

func (f *fakeRuntime) Kill(ctx context.Context, id int64) error {
	f.mu.Lock()
	c, ok := f.running[id]
	delete(f.running, id)
	f.kills = append(f.kills, id)
	hook := f.killHook
	f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx); err != nil {
			return err
		}
	}
	if !ok {
		return socketd.Errorf(socketd.CodeNotFound, "connection %d is not running", id)
	}
	c.State, c.Signal = socketd.ConnKilled, "SIGTERM"
	return f.db.FinishConnection(ctx, c)
}

// blockKill makes the next Kill wait: entered is closed when it starts,
// and it returns once the caller closes release.
func (f *fakeRuntime) blockKill() (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	f.mu.Lock()
	defer f.mu.Unlock()
	f.killHook = func(context.Context) error {
		close(entered)
		<-release
		return nil
	}
	return entered, release
}

func (f *fakeRuntime) applyCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

// logBuffer collects the server's log, safe for concurrent writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a Server on 127.0.0.1:0 over a real store in t.TempDir() and a
// fake runtime, with a Client and a raw HTTP client whose every request
// and response is validated against openapi.yaml.
type harness struct {
	t    *testing.T
	db   *store.DB
	rt   *fakeRuntime
	srv  *Server
	log  *logBuffer
	base string
	hc   *http.Client
	c    *Client
	// closeErrOK is set by a test that makes Close fail on purpose.
	closeErrOK bool
}

type harnessOption func(*harnessConfig)

type harnessConfig struct {
	addr  string
	store func(*store.DB) SocketStore
	// config, if set, adds to the server's Config.
	config func(*Config)
}

// withConfig lets f add to the server's Config.
func withConfig(f func(*Config)) harnessOption { return func(c *harnessConfig) { c.config = f } }

// withAddr makes the harness Open addr instead of 127.0.0.1:0.
func withAddr(addr string) harnessOption { return func(c *harnessConfig) { c.addr = addr } }

// withStore wraps the harness's store.
func withStore(f func(*store.DB) SocketStore) harnessOption {
	return func(c *harnessConfig) { c.store = f }
}

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	cfg := harnessConfig{addr: "127.0.0.1:0", store: func(db *store.DB) SocketStore { return db }}
	for _, o := range opts {
		o(&cfg)
	}
	db, rt := openStore(t)
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	scfg := Config{Store: cfg.store(db), Runtime: rt, Logger: logger}
	if cfg.config != nil {
		cfg.config(&scfg)
	}
	srv := New(scfg)
	if err := srv.Open(cfg.addr); err != nil {
		t.Fatal(err)
	}
	hc := apitest.HTTPClient(t)
	base := "http://" + srv.Addr()
	h := &harness{
		t: t, db: db, rt: rt, srv: srv, log: logs, base: base, hc: hc,
		c: NewClient(base, testToken, WithHTTPClient(hc)),
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil && !h.closeErrOK {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	return h
}

// openStore opens a real store in t.TempDir() holding testToken, and a fake
// runtime over it.
func openStore(t *testing.T) (*store.DB, *fakeRuntime) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "socketd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := db.AddToken(ctx, "test", testToken); err != nil {
		t.Fatal(err)
	}
	return db, newFakeRuntime(db)
}

// ctx returns a context for one call, bounded so that a bug fails the test
// instead of hanging it.
func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(h.t.Context(), 15*time.Second)
	h.t.Cleanup(cancel)
	return ctx
}

// request is a raw request for harness.do.
type request struct {
	method, path string
	contentType  string
	body         io.Reader
	header       http.Header
	noToken      bool
	host         string
	// offSpec marks a request the spec may reject.
	offSpec bool
}

// do sends a raw request through the spec-validating client, with the
// harness's token unless r.noToken or r.header sets Authorization, and
// returns the response and its body.
func (h *harness) do(r request) (*http.Response, []byte) {
	h.t.Helper()
	ctx := h.ctx()
	if r.offSpec {
		ctx = apitest.OffSpec(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, h.base+r.path, r.body)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if !r.noToken && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	if r.host != "" {
		req.Host = r.host
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, body
}

// problem decodes a problem body.
func problem(t *testing.T, body []byte) Problem {
	t.Helper()
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("not a problem: %v\n%s", err, body)
	}
	return p
}

// testCommand is an absolute path to a program that exists: the test binary.
func testCommand(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// newSocket returns a valid definition.
func newSocket(t testing.TB, name string) socketd.Socket {
	s := socketd.NewSocket()
	s.Name = name
	s.Listen = []string{"127.0.0.1:0"}
	s.Command = []string{testCommand(t), "-test.run=^$"}
	return s
}

func wantCode(t *testing.T, err error, code socketd.Code) {
	t.Helper()
	if got := socketd.ErrorCode(err); got != code {
		t.Fatalf("error %v has code %q, want %q", err, got, code)
	}
}

// TestSocketsCRUD drives the socket routes end to end through the Client.
func TestSocketsCRUD(t *testing.T) {
	h := newHarness(t)
	c := h.c
	applies := func(want int) {
		t.Helper()
		if got := h.rt.applyCount(); got != want {
			t.Fatalf("Apply was called %d times, want %d", got, want)
		}
	}

	hello := newSocket(t, "hello")
	hello.Environment = map[string]string{"LANG": "C.UTF-8"}
	got, created, err := c.PutSocket(h.ctx(), hello)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("the first PUT did not create")
	}
	if got.Name != "hello" || got.CreatedAt.IsZero() || got.Environment["LANG"] != "C.UTF-8" || !got.Enabled {
		t.Errorf("PUT returned %+v", got)
	}
	if got.Status == nil || got.Status.State != socketd.SocketListening || got.Status.Accepted != 7 {
		t.Errorf("PUT returned status %+v, want the runtime's", got.Status)
	}
	applies(1)

	hello.Description = "Hello World"
	replaced, created, err := c.PutSocket(h.ctx(), hello)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("the second PUT created")
	}
	if replaced.Description != "Hello World" || !replaced.CreatedAt.Equal(got.CreatedAt) || replaced.UpdatedAt.Before(got.UpdatedAt) {
		t.Errorf("PUT replaced with %+v", replaced)
	}
	applies(2)

	_, err = c.CreateSocket(h.ctx(), hello)
	wantCode(t, err, socketd.CodeConflict)
	applies(2)

	other, err := c.CreateSocket(h.ctx(), newSocket(t, "other"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Name != "other" || other.Status == nil {
		t.Errorf("POST returned %+v", other)
	}
	applies(3)

	list, err := c.ListSockets(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "hello" || list[1].Name != "other" {
		t.Fatalf("list = %+v", list)
	}
	for _, s := range list {
		if s.Status == nil || s.Status.Listening == nil {
			t.Errorf("listed socket %s has status %+v", s.Name, s.Status)
		}
	}

	one, err := c.GetSocket(h.ctx(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	if one.Description != "Hello World" || one.Status == nil {
		t.Errorf("GET = %+v", one)
	}

	patched, err := c.PatchSocket(h.ctx(), "hello", map[string]any{"enabled": false})
	if err != nil {
		t.Fatal(err)
	}
	if patched.Enabled || patched.Description != "Hello World" || patched.Environment["LANG"] != "C.UTF-8" ||
		!patched.CreatedAt.Equal(got.CreatedAt) {
		t.Errorf("PATCH = %+v", patched)
	}
	applies(4)
	if stored, _ := h.db.GetSocket(h.ctx(), "hello"); stored.Enabled {
		t.Error("the PATCH is not stored")
	}

	if err := c.DeleteSocket(h.ctx(), "hello"); err != nil {
		t.Fatal(err)
	}
	applies(5)
	_, err = c.GetSocket(h.ctx(), "hello")
	wantCode(t, err, socketd.CodeNotFound)
	wantCode(t, c.DeleteSocket(h.ctx(), "hello"), socketd.CodeNotFound)
	applies(5)
}

// TestCreatedHasLocation checks the Location of a 201, and that a 200 PUT has
// none.
func TestCreatedHasLocation(t *testing.T) {
	h := newHarness(t)
	body, _ := json.Marshal(map[string]any{"listen": []string{"0"}, "command": []string{testCommand(t)}})
	resp, _ := h.do(request{method: "PUT", path: "/v1/sockets/web", contentType: "application/json", body: bytes.NewReader(body)})
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") != "/v1/sockets/web" {
		t.Errorf("PUT: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	resp, _ = h.do(request{method: "PUT", path: "/v1/sockets/web", contentType: "application/json; charset=utf-8", body: bytes.NewReader(body)})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" {
		t.Errorf("second PUT: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	body, _ = json.Marshal(map[string]any{"name": "web2", "listen": []string{"0"}, "command": []string{testCommand(t)}})
	resp, _ = h.do(request{method: "POST", path: "/v1/sockets", contentType: "application/json", body: bytes.NewReader(body)})
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") != "/v1/sockets/web2" {
		t.Errorf("POST: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
}

// TestReadOnlyFieldsIgnored sends back what GET returned, with read-only
// fields that would not even decode: they are ignored.
func TestReadOnlyFieldsIgnored(t *testing.T) {
	h := newHarness(t)
	s, _, err := h.c.PutSocket(h.ctx(), newSocket(t, "ro"))
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{
		"listen":     s.Listen,
		"command":    s.Command,
		"status":     map[string]any{"state": "bogus", "accepted": "many"},
		"created_at": "not a time",
		"updated_at": 12,
	}
	body, _ := json.Marshal(doc)
	resp, out := h.do(request{method: "PUT", path: "/v1/sockets/ro", contentType: "application/json",
		body: bytes.NewReader(body), offSpec: true})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT with read-only fields: %s\n%s", resp.Status, out)
	}
	var got socketd.Socket
	json.Unmarshal(out, &got)
	if !got.CreatedAt.Equal(s.CreatedAt) || got.Status == nil || got.Status.State != socketd.SocketListening {
		t.Errorf("read-only fields were taken from the body: %+v", got)
	}
	resp, out = h.do(request{method: "PATCH", path: "/v1/sockets/ro", contentType: "application/merge-patch+json",
		body: strings.NewReader(`{"status": {"state": "failed"}, "created_at": "x", "description": "d"}`), offSpec: true})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH with read-only fields: %s\n%s", resp.Status, out)
	}
	got = socketd.Socket{}
	json.Unmarshal(out, &got)
	if got.Description != "d" || !got.CreatedAt.Equal(s.CreatedAt) || got.Status == nil || got.Status.State != socketd.SocketListening {
		t.Errorf("PATCH took read-only fields from the body, or not the rest: %+v", got)
	}
	stored, err := h.db.GetSocket(h.ctx(), "ro")
	if err != nil || stored.Description != "d" || !stored.CreatedAt.Equal(s.CreatedAt) || stored.Status != nil {
		t.Errorf("stored after PATCH: %+v, %v", stored, err)
	}
}

// TestPutNameFromURL checks that a PUT body may leave the name out.
func TestPutNameFromURL(t *testing.T) {
	h := newHarness(t)
	s := newSocket(t, "")
	body, _ := json.Marshal(s)
	resp, out := h.do(request{method: "PUT", path: "/v1/sockets/from-url", contentType: "application/json", body: bytes.NewReader(body), offSpec: true})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("%s\n%s", resp.Status, out)
	}
	if _, err := h.db.GetSocket(h.ctx(), "from-url"); err != nil {
		t.Fatal(err)
	}
}

// TestPatchMerge checks merge-patch semantics on a definition: nested
// objects merge, null removes or resets to the default, application/json is
// taken as a merge patch.
func TestPatchMerge(t *testing.T) {
	h := newHarness(t)
	s := newSocket(t, "m")
	s.Description = "before"
	s.Stderr = socketd.StderrNull
	s.Environment = map[string]string{"A": "1", "B": "2"}
	if _, _, err := h.c.PutSocket(h.ctx(), s); err != nil {
		t.Fatal(err)
	}
	got, err := h.c.PatchSocket(h.ctx(), "m", json.RawMessage(`{"environment": {"A": null, "C": "3"}, "description": null, "stderr": null, "name": "m"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Environment) != 2 || got.Environment["B"] != "2" || got.Environment["C"] != "3" {
		t.Errorf("environment = %v", got.Environment)
	}
	if got.Description != "" || got.Stderr != socketd.StderrLog {
		t.Errorf("null did not reset: description %q, stderr %q", got.Description, got.Stderr)
	}
	got, err = h.c.PatchSocket(h.ctx(), "m", json.RawMessage(`{"user": "nobody", "supplementary_groups": ["0"], "umask": "0027", "nice": 3, "command": ["/bin/true"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.User != "nobody" || len(got.SupplementaryGroups) != 1 || got.UMask != "0027" || got.Nice == nil || *got.Nice != 3 {
		t.Errorf("credentials patched to user %q, groups %v, umask %q, nice %v", got.User, got.SupplementaryGroups, got.UMask, got.Nice)
	}
	got, err = h.c.PatchSocket(h.ctx(), "m", json.RawMessage(`{"keep_alive": true, "keep_alive_time": "5m", "backlog": 64, "bind_to_device": "lo"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !got.KeepAlive || got.KeepAliveTime != "5m" || got.Backlog != 64 || got.BindToDevice != "lo" {
		t.Errorf("socket options patched to %+v", got.SocketOptions)
	}
	got, err = h.c.PatchSocket(h.ctx(), "m", json.RawMessage(`{"user": null, "supplementary_groups": null, "umask": null, "nice": null}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.User != "" || got.SupplementaryGroups != nil || got.UMask != "" || got.Nice != nil {
		t.Errorf("null did not reset: user %q, groups %v, umask %q, nice %v", got.User, got.SupplementaryGroups, got.UMask, got.Nice)
	}
	resp, out := h.do(request{method: "PATCH", path: "/v1/sockets/m", contentType: "application/json",
		body: strings.NewReader(`{"ignore_exit_status": true, "listen": ["127.0.0.1:0", "[::1]:0"]}`)})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH as application/json: %s\n%s", resp.Status, out)
	}
	stored, err := h.db.GetSocket(h.ctx(), "m")
	if err != nil {
		t.Fatal(err)
	}
	if !stored.IgnoreExitStatus || len(stored.Listen) != 2 || stored.Environment["C"] != "3" {
		t.Errorf("stored %+v", stored)
	}
}

// TestStatusOnlyWhenKnown checks that a socket the runtime does not know has
// no status.
func TestStatusOnlyWhenKnown(t *testing.T) {
	h := newHarness(t)
	h.rt.mu.Lock()
	h.rt.unknown["quiet"] = true
	h.rt.mu.Unlock()
	got, _, err := h.c.PutSocket(h.ctx(), newSocket(t, "quiet"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != nil {
		t.Errorf("status = %+v, want none", got.Status)
	}
}

// TestApplyFailureKeepsWrite checks that a failed reconcile is logged and the
// write stands.
func TestApplyFailureKeepsWrite(t *testing.T) {
	h := newHarness(t)
	h.rt.mu.Lock()
	h.rt.applyErr = errors.New("bind: address already in use")
	h.rt.mu.Unlock()
	if _, _, err := h.c.PutSocket(h.ctx(), newSocket(t, "stays")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.GetSocket(h.ctx(), "stays"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.log.String(), "address already in use") {
		t.Errorf("the Apply failure is not logged:\n%s", h.log)
	}
}

// failingStore fails ListSockets with an error that must not reach clients.
type failingStore struct{ SocketStore }

const secretCause = "open /var/lib/socketd/secret.db: disk on fire"

func (failingStore) ListSockets(context.Context) ([]socketd.Socket, error) {
	return nil, fmt.Errorf("list sockets: %s", secretCause)
}

// TestInternalErrorHidden checks that an internal error is a generic 500
// whose cause is logged under the request id and never sent.
func TestInternalErrorHidden(t *testing.T) {
	h := newHarness(t, withStore(func(db *store.DB) SocketStore { return failingStore{db} }))
	resp, body := h.do(request{method: "GET", path: "/v1/sockets", header: http.Header{"X-Request-Id": {"req-500"}}})
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("%s\n%s", resp.Status, body)
	}
	if strings.Contains(string(body), "disk on fire") || strings.Contains(string(body), "secret") {
		t.Errorf("the cause leaked: %s", body)
	}
	p := problem(t, body)
	if p.Code != socketd.CodeInternal || p.RequestID != "req-500" {
		t.Errorf("problem %+v", p)
	}
	logged := h.log.String()
	if !strings.Contains(logged, "req-500") || !strings.Contains(logged, "disk on fire") {
		t.Errorf("the cause is not logged with the request id:\n%s", logged)
	}
	_, err := h.c.ListSockets(h.ctx())
	wantCode(t, err, socketd.CodeInternal)
}

// TestRequestID checks that X-Request-Id is echoed when sane and made up
// otherwise.
func TestRequestID(t *testing.T) {
	h := newHarness(t)
	resp, _ := h.do(request{method: "GET", path: "/healthz", header: http.Header{"X-Request-Id": {"abc-123"}}})
	if got := resp.Header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("X-Request-Id = %q, want it echoed", got)
	}
	for _, bad := range []string{"", "has space", strings.Repeat("x", 65), "new\u00e9"} {
		resp, _ := h.do(request{method: "GET", path: "/v1/sockets", header: http.Header{"X-Request-Id": {bad}}})
		got := resp.Header.Get("X-Request-Id")
		if got == bad || len(got) != 16 {
			t.Errorf("for X-Request-Id %q the server answered %q, want a new id", bad, got)
		}
	}
	a, _ := h.do(request{method: "GET", path: "/healthz"})
	b, _ := h.do(request{method: "GET", path: "/healthz"})
	if a.Header.Get("X-Request-Id") == b.Header.Get("X-Request-Id") {
		t.Error("two requests got the same id")
	}
}

// TestHealthAndDashboard checks the two routes outside /v1.
func TestHealthAndDashboard(t *testing.T) {
	h := newHarness(t)
	if err := h.c.Health(h.ctx()); err != nil {
		t.Fatal(err)
	}
	resp, body := h.do(request{method: "GET", path: "/healthz", noToken: true})
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Errorf("healthz: %s %s", resp.Status, body)
	}
}

// TestUnknownRouteAndMethod checks that routing errors are problems too.
func TestUnknownRouteAndMethod(t *testing.T) {
	h := newHarness(t)
	resp, body := h.do(request{method: "GET", path: "/v1/nothing", offSpec: true})
	if resp.StatusCode != http.StatusNotFound || problem(t, body).Code != socketd.CodeNotFound {
		t.Errorf("unknown route: %s %s", resp.Status, body)
	}
	resp, body = h.do(request{method: "POST", path: "/v1/connections", offSpec: true})
	if resp.StatusCode != http.StatusMethodNotAllowed || problem(t, body).Code != CodeMethodNotAllowed ||
		resp.Header.Get("Allow") != "GET" {
		t.Errorf("wrong method: %s Allow %q %s", resp.Status, resp.Header.Get("Allow"), body)
	}
	resp, _ = h.do(request{method: "PUT", path: "/v1/sockets", offSpec: true})
	if allow := resp.Header.Get("Allow"); allow != "GET, POST" {
		t.Errorf("Allow = %q, want GET, POST", allow)
	}
}

// TestServerLifecycle checks Open, Addr and Close: limits set, Close
// idempotent, no Open after Close, an address in use an error.
func TestServerLifecycle(t *testing.T) {
	s := New(Config{})
	if s.Addr() != "" {
		t.Errorf("Addr before Open = %q", s.Addr())
	}
	if err := s.Close(t.Context()); err != nil {
		t.Errorf("Close before Open: %v", err)
	}
	if err := s.Open("127.0.0.1:0"); err == nil {
		t.Error("Open after Close succeeded")
	}

	h := newHarness(t)
	srv := h.srv.srv
	if srv.ReadHeaderTimeout == 0 || srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 || srv.MaxHeaderBytes == 0 {
		t.Errorf("server limits unset: %+v", srv)
	}
	if err := h.srv.Open("127.0.0.1:0"); err == nil {
		t.Error("a second Open succeeded")
	}
	other := New(Config{})
	if err := other.Open(h.srv.Addr()); err == nil {
		other.Close(t.Context())
		t.Error("Open on an address in use succeeded")
	}
	if err := h.srv.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := h.c.Health(h.ctx()); err == nil {
		t.Error("the server answers after Close")
	}
}

// TestCloseIsGraceful checks that Close lets a request in flight finish.
func TestCloseIsGraceful(t *testing.T) {
	h := newHarness(t)
	entered, release := h.rt.blockKill()
	id := beginConnection(t, h.db, socketd.Connection{Socket: "s", RemoteIP: "127.0.0.1"})
	h.rt.mu.Lock()
	h.rt.running[id.ID] = &id
	h.rt.mu.Unlock()

	type result struct {
		c   socketd.Connection
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := h.c.KillConnection(h.ctx(), id.ID)
		done <- result{c, err}
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- h.srv.Close(h.ctx()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a request was in flight", err)
	case <-time.After(50 * time.Millisecond):
		// Close is waiting, as it should; the wait only gives a wrong
		// Close time to return.
	}
	close(release)
	r := <-done
	if r.err != nil || r.c.State != socketd.ConnKilled {
		t.Errorf("the request in flight got %+v, %v", r.c, r.err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestCloseIsBounded checks that Close gives up on a request that does not
// finish when its context ends.
func TestCloseIsBounded(t *testing.T) {
	h := newHarness(t)
	entered, release := h.rt.blockKill()
	defer close(release)
	h.closeErrOK = true
	go func() {
		// Not h.do: this request fails when Close cuts it, off the test
		// goroutine.
		req, _ := http.NewRequestWithContext(apitest.OffSpec(h.ctx()), "DELETE", h.base+"/v1/connections/1", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		if resp, err := h.hc.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := h.srv.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want the deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
}

// TestPanicIsA500 checks that a panic in a handler becomes a logged 500
// problem and the server goes on.
func TestPanicIsA500(t *testing.T) {
	h := newHarness(t)
	if _, _, err := h.db.PutSocket(h.ctx(), newSocket(t, panicName)); err != nil {
		t.Fatal(err)
	}
	resp, body := h.do(request{method: "GET", path: "/v1/sockets/" + panicName})
	if resp.StatusCode != http.StatusInternalServerError || problem(t, body).Code != socketd.CodeInternal {
		t.Errorf("%s\n%s", resp.Status, body)
	}
	if !strings.Contains(h.log.String(), "status of "+panicName) {
		t.Errorf("the panic is not logged:\n%s", h.log)
	}
	if err := h.c.Health(h.ctx()); err != nil {
		t.Errorf("after the panic: %v", err)
	}
}

// racingStore changes the definition behind the API's back just before each
// of its first races UpdateSocket calls, as a concurrent writer would.
type racingStore struct {
	*store.DB
	races int
}

func (r *racingStore) UpdateSocket(ctx context.Context, name string, fn func(*socketd.Socket) error) (socketd.Socket, error) {
	if r.races > 0 {
		r.races--
		cur, err := r.DB.GetSocket(ctx, name)
		if err != nil {
			return socketd.Socket{}, err
		}
		cur.Description += " and meanwhile"
		if _, _, err := r.DB.PutSocket(ctx, cur); err != nil {
			return socketd.Socket{}, err
		}
	}
	return r.DB.UpdateSocket(ctx, name, fn)
}

// TestPatchKeepsConcurrentChanges: a patch validated against a definition
// that changed before it was written is redone on the new definition, so no
// concurrent change is lost; one that never settles is a 409.
func TestPatchKeepsConcurrentChanges(t *testing.T) {
	for _, tc := range []struct {
		races int
		want  socketd.Code
	}{{1, ""}, {100, socketd.CodeConflict}} {
		rs := &racingStore{}
		h := newHarness(t, withStore(func(db *store.DB) SocketStore { rs.DB = db; return rs }))
		s := newSocket(t, "p")
		s.Description = "first"
		if _, _, err := h.c.PutSocket(h.ctx(), s); err != nil {
			t.Fatal(err)
		}
		rs.races = tc.races
		got, err := h.c.PatchSocket(h.ctx(), "p", map[string]any{"ignore_exit_status": true})
		if code := socketd.ErrorCode(err); code != tc.want {
			t.Fatalf("races=%d: patch error %v, want code %q", tc.races, err, tc.want)
		}
		if tc.want == "" && (got.Description != "first and meanwhile" || !got.IgnoreExitStatus) {
			t.Errorf("races=%d: patched socket %+v lost a change", tc.races, got)
		}
	}
}

// TestPutIfMatch: a PUT with If-Match replaces only the version it names
// (the ETag of GET), never creates, and refuses anything else with 412.
func TestPutIfMatch(t *testing.T) {
	h := newHarness(t)
	first, _, err := h.c.PutSocket(h.ctx(), newSocket(t, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := h.do(request{method: "GET", path: "/v1/sockets/hello"})
	if got := resp.Header.Get("ETag"); got != etag(first.UpdatedAt) {
		t.Fatalf("ETag %q, want %q", got, etag(first.UpdatedAt))
	}
	edited := newSocket(t, "hello")
	edited.Description = "mine"
	saved, err := h.c.ReplaceSocket(h.ctx(), edited, first.UpdatedAt)
	if err != nil || saved.Description != "mine" || !saved.UpdatedAt.After(first.UpdatedAt) {
		t.Fatalf("replace the version read: %+v, %v", saved, err)
	}
	// From the old version again: someone changed it since.
	edited.Description = "stale"
	_, err = h.c.ReplaceSocket(h.ctx(), edited, first.UpdatedAt)
	wantCode(t, err, socketd.CodePreconditionFailed)
	if got, _ := h.c.GetSocket(h.ctx(), "hello"); got.Description != "mine" {
		t.Errorf("a stale If-Match changed the socket: %q", got.Description)
	}
	// Never creates: a socket deleted since, or never there.
	other := newSocket(t, "other")
	_, err = h.c.ReplaceSocket(h.ctx(), other, first.UpdatedAt)
	wantCode(t, err, socketd.CodePreconditionFailed)
	if _, err := h.c.GetSocket(h.ctx(), "other"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("a PUT with If-Match created a socket: %v", err)
	}
	body, _ := json.Marshal(map[string]any{"listen": []string{"1234"}, "command": []string{"/bin/true"}})
	for _, c := range []struct {
		value string
		want  int
	}{{`"garbage"`, http.StatusPreconditionFailed}, {`12`, http.StatusPreconditionFailed}, {`*`, http.StatusBadRequest}} {
		resp, _ := h.do(request{method: "PUT", path: "/v1/sockets/hello", contentType: "application/json",
			body: bytes.NewReader(body), header: http.Header{"If-Match": {c.value}}})
		if resp.StatusCode != c.want {
			t.Errorf("If-Match %s: %s, want %d", c.value, resp.Status, c.want)
		}
	}
}
