package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/socketd/socketd"
)

// Hub fans the daemon's events out to the clients of GET /v1/events.
// Publishing never blocks: a client that falls eventBuffer events behind is
// dropped, and resumes from its Last-Event-ID when it reconnects, out of the
// last eventHistory events the hub keeps.
type Hub struct {
	mu sync.Mutex
	// first is the ID of the run's first event, last that of the last
	// one published (first-1 before any).
	first, last int64
	recent      []socketd.Event // the last eventHistory events, oldest first
	subs        map[*subscription]struct{}
	// minutes counts the connections opened in each of the last
	// sparkMinutes minutes, by socket, for the dashboard's sparklines.
	minutes map[string]*minuteCounts
}

// sparkMinutes is how far back the connections per minute go.
const sparkMinutes = 60

// minuteCounts is a ring of counts by minute: slot m%sparkMinutes holds
// the count of minute m (Unix minutes) if at[slot] is m.
type minuteCounts struct {
	n  [sparkMinutes]int64
	at [sparkMinutes]int64
}

func (mc *minuteCounts) add(minute int64) { mc.addN(minute, 1) }

// addN adds n to the count of minute, unless its slot holds a later one.
func (mc *minuteCounts) addN(minute, n int64) {
	slot := minute % sparkMinutes
	if mc.at[slot] > minute {
		return
	}
	if mc.at[slot] != minute {
		mc.n[slot], mc.at[slot] = 0, minute
	}
	mc.n[slot] += n
}

// perMinute returns the connections socket opened in each of the last
// sparkMinutes minutes, oldest first, this one last.
func (h *Hub) perMinute(socket string) []int64 {
	out := make([]int64, sparkMinutes)
	now := time.Now().Unix() / 60
	h.mu.Lock()
	defer h.mu.Unlock()
	mc := h.minutes[socket]
	if mc == nil {
		return out
	}
	for i := range out {
		m := now - int64(sparkMinutes-1-i)
		if slot := m % sparkMinutes; mc.at[slot] == m {
			out[i] = mc.n[slot]
		}
	}
	return out
}

// seedSparklines counts the history's last hour into the hub (seedMinutes)
// unless done is closed first; a history that cannot be read leaves the
// sparklines to start empty, saying so.
func (s *Server) seedSparklines(done <-chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.hub.seedMinutes(ctx, s.store); err != nil && ctx.Err() == nil {
		s.log.Warn("the sparklines start empty: the history could not be read", slog.Any(logKeyErr, err))
	}
}

// seedMinutes adds to the hub's counts of connections per minute those
// the history holds from before the hub was made: connections of earlier
// runs, which the hub never saw, so that the sparklines do not start empty
// after a restart. Those of this run all pass through the hub.
func (h *Hub) seedMinutes(ctx context.Context, st SocketStore) error {
	socks, err := st.ListSockets(ctx)
	if err != nil {
		return err
	}
	until := time.UnixMicro(h.first)
	since := until.Truncate(time.Minute).Add(-(sparkMinutes - 1) * time.Minute)
	for _, s := range socks {
		stats, err := st.ConnectionStats(ctx, s.Name, since, until, time.Minute)
		if err != nil {
			return err
		}
		h.mu.Lock()
		mc := h.minutes[s.Name]
		if mc == nil {
			mc = &minuteCounts{}
			h.minutes[s.Name] = mc
		}
		for _, step := range stats.Steps {
			mc.addN(step.Start.Unix()/60, step.Accepted)
		}
		h.mu.Unlock()
	}
	return nil
}

// Sizes of a Hub's buffers.
const (
	eventBuffer  = 256
	eventHistory = 1024
)

// subscription is one client's stream.
type subscription struct {
	ch     chan socketd.Event
	socket string        // only this socket's events; "" for all
	gone   chan struct{} // closed when the hub drops a client that fell behind
}

// NewHub returns a Hub with no clients. Its events are numbered from the
// time it is made, in microseconds, so that the ids of a daemon's run are
// above those of the runs before it and a client resuming from an earlier
// run can be told that it missed events.
func NewHub() *Hub {
	first := time.Now().UnixMicro()
	return &Hub{first: first, last: first - 1, subs: map[*subscription]struct{}{}, minutes: map[string]*minuteCounts{}}
}

// LastEventID returns the ID of the last event published; a client that
// resumes after it gets every event from now on.
func (h *Hub) LastEventID() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Publish numbers e, stamps it with the time if it has none, and sends it
// to every client that wants it.
func (h *Hub) Publish(e socketd.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last++
	e.ID = h.last
	if len(h.recent) == eventHistory {
		h.recent = slices.Delete(h.recent, 0, eventHistory/4)
	}
	h.recent = append(h.recent, e)
	switch e.Type {
	case socketd.EventConnectionOpened:
		mc := h.minutes[e.Socket]
		if mc == nil {
			mc = &minuteCounts{}
			h.minutes[e.Socket] = mc
		}
		mc.add(e.Time.Unix() / 60)
	case socketd.EventSocketDeleted:
		delete(h.minutes, e.Socket)
	}
	for s := range h.subs {
		if s.socket != "" && s.socket != e.Socket {
			continue
		}
		select {
		case s.ch <- e:
		default:
			delete(h.subs, s)
			close(s.gone)
		}
	}
}

// subscribe starts a stream of the events of socket ("" for all), with
// those after lastID (0: none) that the hub still keeps first. missed
// reports that some after lastID are no longer kept.
func (h *Hub) subscribe(socket string, lastID int64) (s *subscription, missed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var replay []socketd.Event
	switch {
	case lastID <= 0 || lastID == h.last:
	case lastID < h.first-1 || lastID > h.last:
		missed = true // of another run of the daemon
	default:
		missed = len(h.recent) == 0 || h.recent[0].ID > lastID+1
		for _, e := range h.recent {
			if e.ID > lastID && (socket == "" || e.Socket == socket) {
				replay = append(replay, e)
			}
		}
		// More than a client may fall behind: the newest, and say so.
		if len(replay) > eventBuffer {
			replay, missed = replay[len(replay)-eventBuffer:], true
		}
	}
	// Room for the replay and as many new events again.
	s = &subscription{ch: make(chan socketd.Event, eventBuffer+len(replay)), socket: socket, gone: make(chan struct{})}
	for _, e := range replay {
		s.ch <- e
	}
	h.subs[s] = struct{}{}
	return s, missed
}

func (h *Hub) unsubscribe(s *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}

// listening reports whether any client is subscribed.
func (h *Hub) listening() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs) > 0
}

// Recorder writes the connection history; the activator records through
// it (activator.Recorder).
type Recorder interface {
	BeginConnectionAsync(c *socketd.Connection, done func(error)) error
	FinishConnectionAsync(c *socketd.Connection, done func(error))
}

// Recording returns a Recorder that records through r and publishes each
// connection's opening and closing once its row is committed, so that a
// client that reads the history on an event finds the row.
func (h *Hub) Recording(r Recorder) Recorder { return &eventRecorder{r: r, h: h} }

type eventRecorder struct {
	r Recorder
	h *Hub
}

func (e *eventRecorder) BeginConnectionAsync(c *socketd.Connection, done func(error)) error {
	// A copy now: once Begin has returned, the activator goes on filling
	// c in while done may run. Begin sets c.ID before it queues the row,
	// and done runs after the row is taken from the queue, so reading
	// c.ID there is safe.
	snap := *c
	snap.Log = nil // never sent, and up to 64 KiB
	// A refusal is begun finished: it opens nothing. No state is running,
	// as the store takes it.
	typ := socketd.EventConnectionOpened
	if snap.State != "" && snap.State != socketd.ConnRunning {
		typ = socketd.EventConnectionClosed
	}
	return e.r.BeginConnectionAsync(c, func(err error) {
		if err == nil {
			snap.ID = c.ID
			e.h.Publish(socketd.Event{Type: typ, Socket: snap.Socket, Connection: &snap})
		}
		done(err)
	})
}

func (e *eventRecorder) FinishConnectionAsync(c *socketd.Connection, done func(error)) {
	snap := *c
	snap.Log = nil
	e.r.FinishConnectionAsync(c, func(err error) {
		if err == nil {
			e.h.Publish(socketd.Event{Type: socketd.EventConnectionClosed, Socket: snap.Socket, Connection: &snap})
		}
		done(err)
	})
}

// eventsPath is the event stream's route.
const eventsPath = "/v1/events"

// keepaliveInterval is how often an idle event stream gets a comment line,
// so that proxies and the client see it alive.
const keepaliveInterval = 15 * time.Second

// events answers GET /v1/events with a Server-Sent Events stream: one
// event per change, "id: N", "event: TYPE" and the socketd.Event as JSON
// data, from now on, or after the Last-Event-ID the client resumes from.
// ?socket= keeps one socket's events. It ends when the client goes or the
// server closes.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	var lastID int64
	// The header is what a browser sends when it reconnects; ?after= is
	// where a page starts, at the event it was rendered at.
	for _, from := range []struct{ name, v string }{{"after", r.URL.Query().Get("after")}, {"Last-Event-ID", r.Header.Get("Last-Event-ID")}} {
		if from.v == "" {
			continue
		}
		id, err := strconv.ParseInt(from.v, 10, 64)
		if err != nil || id < 0 {
			return socketd.Errorf(socketd.CodeBadRequest, "%s %q is not an event id", from.name, from.v)
		}
		lastID = id
	}
	socket := r.URL.Query().Get("socket")
	rc := http.NewResponseController(w)
	// The stream lasts as long as the client wants it, but each write must
	// go through in time: a client that stops reading is let go.
	if err := rc.SetWriteDeadline(time.Now().Add(2 * keepaliveInterval)); err != nil {
		return err
	}
	sub, missed := s.hub.subscribe(socket, lastID)
	defer s.hub.unsubscribe(sub)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // a proxy must not hold events back
	w.WriteHeader(http.StatusOK)
	if missed {
		// Events were lost: the client should read the state afresh.
		fmt.Fprintf(w, "event: %s\ndata: {}\n\n", EventMissed)
	}
	fmt.Fprint(w, ": socketd events\n\n")
	if err := rc.Flush(); err != nil {
		return nil
	}
	keepalive := time.NewTicker(keepaliveInterval)
	defer keepalive.Stop()
	write := func(e socketd.Event) {
		data, _ := json.Marshal(e) // an Event always marshals
		fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, data)
	}
	for {
		select {
		case e := <-sub.ch:
			write(e)
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case <-sub.gone:
			// Too slow: what it holds, then the client reconnects and
			// resumes from there.
			for len(sub.ch) > 0 {
				write(<-sub.ch)
			}
			rc.Flush()
			return nil
		case <-r.Context().Done():
			return nil
		case <-s.done:
			return nil
		}
		if rc.Flush() != nil || rc.SetWriteDeadline(time.Now().Add(2*keepaliveInterval)) != nil {
			return nil
		}
	}
}

// stateInterval is how often the states of the sockets are compared while
// a client listens to events.
const stateInterval = time.Second

// watchStates publishes an EventSocketState when a socket's state, error,
// bound addresses, pause or service changes, comparing them every
// stateInterval while any client listens, until done is closed.
func (s *Server) watchStates(done <-chan struct{}) {
	seen := map[string]string{}
	t := time.NewTicker(stateInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if !s.hub.listening() {
			clear(seen) // the next client starts afresh
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), stateInterval)
		socks, err := s.store.ListSockets(ctx)
		cancel()
		if err != nil {
			continue
		}
		names := map[string]bool{}
		for _, sock := range socks {
			names[sock.Name] = true
			st, ok := s.runtime.Status(sock.Name)
			if !ok {
				continue
			}
			key := stateKey(st)
			if old, ok := seen[sock.Name]; ok && old != key {
				s.hub.Publish(socketd.Event{Type: socketd.EventSocketState, Socket: sock.Name, Status: &st})
			}
			seen[sock.Name] = key
		}
		for name := range seen {
			if !names[name] {
				delete(seen, name)
			}
		}
		select {
		case s.statesChecked <- struct{}{}:
		default:
		}
	}
}

// stateKey is what a state event is about in a status: not its counters,
// which change with every connection and have events of their own.
func stateKey(st socketd.SocketStatus) string {
	paused := ""
	if st.PausedUntil != nil {
		paused = st.PausedUntil.Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%s|%s|%q|%s|%d", st.State, st.Error, st.Listening, paused, st.ServicePID)
}
