package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socketd/socketd"
)

// stream is a client of GET /v1/events.
type stream struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
	got  chan sse
}

// sse is one event as the stream carries it.
type sse struct {
	id    string
	event string
	data  socketd.Event
}

// follow opens GET /v1/events+query with the harness's token and, if
// lastID is not empty, Last-Event-ID.
func (h *harness) follow(query, lastID string) *stream {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+"/v1/events"+query, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		h.t.Fatalf("GET /v1/events: %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	s := &stream{t: h.t, resp: resp, r: bufio.NewReader(resp.Body), got: make(chan sse, 64)}
	go s.read()
	return s
}

// read parses the stream into s.got until it ends.
func (s *stream) read() {
	defer close(s.got)
	var e sse
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if e.event != "" {
				s.got <- e
			}
			e = sse{}
		case strings.HasPrefix(line, ":"): // a comment
		case strings.HasPrefix(line, "id: "):
			e.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			e.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &e.data); err != nil {
				s.t.Errorf("event data %q: %v", line, err)
			}
		}
	}
}

// next returns the next event, failing the test if none comes in time.
func (s *stream) next() sse {
	s.t.Helper()
	select {
	case e, ok := <-s.got:
		if !ok {
			s.t.Fatal("the event stream ended")
		}
		return e
	case <-time.After(10 * time.Second):
		s.t.Fatal("no event came")
	}
	return sse{}
}

// expect reads the next event and checks its type and socket.
func (s *stream) expect(typ socketd.EventType, socket string) sse {
	s.t.Helper()
	e := s.next()
	if e.event != string(typ) || e.data.Type != typ || e.data.Socket != socket || e.id != strconv.FormatInt(e.data.ID, 10) {
		s.t.Fatalf("event %s %+v; want %s of %s", e.event, e.data, typ, socket)
	}
	return e
}

// TestEvents: socket writes, connection rows and state changes reach the
// stream, in order; ?socket= keeps one socket's; a client that reconnects
// with Last-Event-ID gets what it missed.
func TestEvents(t *testing.T) {
	h := newHarness(t)
	all := h.follow("", "")
	hello := h.follow("?socket=hello", "")

	sock := newSocket(t, "hello")
	if _, _, err := h.c.PutSocket(h.ctx(), sock); err != nil {
		t.Fatal(err)
	}
	created := all.expect(socketd.EventSocketCreated, "hello")
	hello.expect(socketd.EventSocketCreated, "hello")
	other := newSocket(t, "other")
	if _, _, err := h.c.PutSocket(h.ctx(), other); err != nil {
		t.Fatal(err)
	}
	all.expect(socketd.EventSocketCreated, "other")
	if _, err := h.c.PatchSocket(h.ctx(), "hello", json.RawMessage(`{"description": "changed"}`)); err != nil {
		t.Fatal(err)
	}
	all.expect(socketd.EventSocketChanged, "hello")
	hello.expect(socketd.EventSocketChanged, "hello") // not other's

	// Connections, recorded through the hub as the daemon does.
	rec := h.srv.hub.Recording(h.db)
	c := &socketd.Connection{Socket: "hello", State: socketd.ConnRunning, StartedAt: time.Now().UTC(), RemoteIP: "192.0.2.1", RemotePort: 4242}
	begun := make(chan error, 1)
	if err := rec.BeginConnectionAsync(c, func(err error) { begun <- err }); err != nil {
		t.Fatal(err)
	}
	opened := all.expect(socketd.EventConnectionOpened, "hello")
	if err := <-begun; err != nil {
		t.Fatal(err)
	}
	if opened.data.Connection == nil || opened.data.Connection.ID != c.ID || opened.data.Connection.RemoteIP != "192.0.2.1" {
		t.Errorf("opened: %+v, want connection %d", opened.data.Connection, c.ID)
	}
	// The row is there when the event says so.
	if got, err := h.c.GetConnection(h.ctx(), c.ID); err != nil || got.State != socketd.ConnRunning {
		t.Errorf("the opened connection's row: %+v, %v", got, err)
	}
	code := 0
	c.State, c.ExitCode, c.EndedAt = socketd.ConnExited, &code, ptr(time.Now().UTC())
	finished := make(chan error, 1)
	rec.FinishConnectionAsync(c, func(err error) { finished <- err })
	closed := all.expect(socketd.EventConnectionClosed, "hello")
	if err := <-finished; err != nil {
		t.Fatal(err)
	}
	if closed.data.Connection == nil || closed.data.Connection.State != socketd.ConnExited {
		t.Errorf("closed: %+v, want exited", closed.data.Connection)
	}
	if got, err := h.c.GetConnection(h.ctx(), c.ID); err != nil || got.State != socketd.ConnExited {
		t.Errorf("the closed connection's row: %+v, %v", got, err)
	}

	// A state change, seen by the runtime's status once the watcher has
	// seen the state before.
	for range 3 { // the first may be of a pass before the socket was made
		select {
		case <-h.srv.statesChecked:
		case <-time.After(10 * time.Second):
			t.Fatal("the states are not watched")
		}
	}
	h.rt.setState("hello", socketd.SocketFailed, "bind: address already in use")
	state := all.expect(socketd.EventSocketState, "hello")
	if state.data.Status == nil || state.data.Status.State != socketd.SocketFailed || state.data.Status.Error == "" {
		t.Errorf("state: %+v, want failed with the error", state.data.Status)
	}

	if err := h.c.DeleteSocket(h.ctx(), "other"); err != nil {
		t.Fatal(err)
	}
	all.expect(socketd.EventSocketDeleted, "other")

	// A refusal is begun finished: a closed connection, never opened.
	refused := &socketd.Connection{Socket: "hello", State: socketd.ConnRefused, StartedAt: time.Now().UTC(),
		EndedAt: ptr(time.Now().UTC()), Reason: socketd.ReasonDenied}
	if err := rec.BeginConnectionAsync(refused, func(err error) { begun <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-begun; err != nil {
		t.Fatal(err)
	}
	if e := all.expect(socketd.EventConnectionClosed, "hello"); e.data.Connection.State != socketd.ConnRefused {
		t.Errorf("a refusal: %+v", e.data.Connection)
	}

	// Reconnecting after the first event gives the rest again, and so
	// does ?after=, where a page starts.
	for _, again := range []*stream{h.follow("", created.id), h.follow("?after="+created.id, "")} {
		for _, want := range []socketd.EventType{socketd.EventSocketCreated, socketd.EventSocketChanged,
			socketd.EventConnectionOpened, socketd.EventConnectionClosed, socketd.EventSocketState,
			socketd.EventSocketDeleted, socketd.EventConnectionClosed} {
			if e := again.next(); e.data.Type != want {
				t.Fatalf("replayed %s, want %s", e.data.Type, want)
			}
		}
	}
	// An id of an earlier run of the daemon: told it missed events.
	if e := h.follow("", "42").next(); e.event != "missed" {
		t.Errorf("resuming from another run: %s first", e.event)
	}
}

func ptr[T any](v T) *T { return &v }

// heldRecorder is a Recorder whose rows are committed when the test says.
type heldRecorder struct{ done chan func(error) }

func (r heldRecorder) BeginConnectionAsync(c *socketd.Connection, done func(error)) error {
	c.ID = 7
	r.done <- done
	return nil
}

func (r heldRecorder) FinishConnectionAsync(c *socketd.Connection, done func(error)) { r.done <- done }

// TestRecordingPublishesAfterCommit: a connection's event comes once its
// row is committed, not when it is queued, and not at all if the commit
// fails.
func TestRecordingPublishesAfterCommit(t *testing.T) {
	h := NewHub()
	sub, _ := h.subscribe("", 0)
	inner := heldRecorder{done: make(chan func(error), 1)}
	rec := h.Recording(inner)
	c := &socketd.Connection{Socket: "s", State: socketd.ConnRunning}
	for _, step := range []func(done func(error)){
		func(done func(error)) { rec.BeginConnectionAsync(c, done) },
		func(done func(error)) { rec.FinishConnectionAsync(c, done) },
	} {
		called := false
		step(func(error) { called = true })
		commit := <-inner.done
		if len(sub.ch) != 0 {
			t.Fatalf("an event before the commit: %+v", <-sub.ch)
		}
		commit(errors.New("disk full"))
		if len(sub.ch) != 0 || !called {
			t.Fatalf("after a failed commit: %d events, done called %v", len(sub.ch), called)
		}
		step(func(error) {})
		(<-inner.done)(nil)
		if e := <-sub.ch; e.Connection == nil || e.Connection.ID != 7 {
			t.Errorf("the event once committed: %+v", e)
		}
	}
}

// TestEventsNeedToken: the stream is the API's, behind its token.
func TestEventsNeedToken(t *testing.T) {
	h := newHarness(t)
	resp, body := h.do(request{method: http.MethodGet, path: "/v1/events", noToken: true, offSpec: true})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/events without a token: %s %s", resp.Status, body)
	}
	resp, body = h.do(request{method: http.MethodGet, path: "/v1/events", header: http.Header{"Last-Event-Id": {"soon"}}, offSpec: true})
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /v1/events with a bad Last-Event-ID: %s %s", resp.Status, body)
	}
}

// TestHubDropsSlowClients: publishing never waits for a client; one that
// falls behind is dropped, and on reconnecting it is told it missed events
// that are no longer kept.
func TestHubDropsSlowClients(t *testing.T) {
	h := NewHub()
	slow, _ := h.subscribe("", 0)
	done := make(chan struct{})
	go func() {
		for range eventHistory + eventBuffer + 1 {
			h.Publish(socketd.Event{Type: socketd.EventSocketChanged, Socket: "s"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish waits for a client that does not read")
	}
	select {
	case <-slow.gone:
	default:
		t.Fatal("the slow client was not dropped")
	}
	if h.listening() {
		t.Error("the dropped client still counts")
	}
	_, missed := h.subscribe("", 1)
	if !missed {
		t.Error("a client resuming from an event of another run is not told")
	}
	if _, missed := h.subscribe("", h.first); !missed {
		t.Error("a client resuming from an event no longer kept is not told")
	}
	s, missed := h.subscribe("", h.last-3)
	if missed || len(s.ch) != 3 {
		t.Errorf("resuming 3 events back: missed %v, %d replayed", missed, len(s.ch))
	}
}

// TestCloseEndsStreams: Close does not wait for the event streams.
func TestCloseEndsStreams(t *testing.T) {
	h := newHarness(t)
	s := h.follow("", "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-s.got:
		if ok {
			t.Error("an event after Close")
		}
	case <-time.After(5 * time.Second):
		t.Error("the stream outlived Close")
	}
}

// TestSparklinesSeededFromHistory checks that the per-minute counts start
// from the history's last hour, not empty, after a restart, and that the
// connections of the run are not counted twice.
func TestSparklinesSeededFromHistory(t *testing.T) {
	db, rt := openStore(t)
	ctx := t.Context()
	if _, err := db.CreateSocket(ctx, socketd.Socket{Name: "a", Listen: []string{"127.0.0.1:0"}, Command: []string{"/bin/true"}}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, c := range []socketd.Connection{
		{Socket: "a", State: socketd.ConnExited, StartedAt: now.Add(-5 * time.Minute)},
		{Socket: "a", State: socketd.ConnExited, StartedAt: now.Add(-5 * time.Minute)},
		{Socket: "a", State: socketd.ConnExited, StartedAt: now.Add(-30 * time.Minute)},
		{Socket: "a", State: socketd.ConnRefused, StartedAt: now.Add(-30 * time.Minute), Reason: socketd.ReasonRate},
		{Socket: "a", State: socketd.ConnExited, StartedAt: now.Add(-2 * time.Hour)},
	} {
		if err := db.BeginConnection(ctx, &c); err != nil {
			t.Fatal(err)
		}
	}
	hub := NewHub()
	// A connection of this run, recorded through the hub before the
	// history is read: the hub counts it, the seed must not again.
	done := make(chan error, 1)
	if err := hub.Recording(db).BeginConnectionAsync(&socketd.Connection{Socket: "a"}, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Store: db, Runtime: rt, Hub: hub})
	if err := srv.Open("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	<-srv.seeded

	counts := hub.perMinute("a")
	var at []int
	var total int64
	for i, n := range counts {
		if n > 0 {
			at = append(at, i)
			total += n
		}
	}
	// Two five minutes ago, one half an hour ago (the refusal is not an
	// opened connection), one now; none of two hours ago. A minute may
	// have turned between the records and the count: the positions are
	// checked against each other.
	if total != 4 || len(at) != 3 || at[2]-at[1] != 5 || at[1]-at[0] != 25 || counts[at[1]] != 2 {
		t.Fatalf("per minute %v, want 1, 2 and 1 connections 30 and 5 minutes ago and now", counts)
	}
}
