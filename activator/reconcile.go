package activator

import (
	"fmt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/socketd/socketd"
)

// Bind retry backoff: a socket that cannot bind is retried after retryMin,
// doubling up to retryMax. A change of its listen addresses retries at once.
const (
	retryMin = time.Second
	retryMax = time.Minute
)

// socket is the live side of one socket definition: its listeners, its
// current definition and its status.
type socket struct {
	name string
	// def is the definition new connections use. Replacing it never
	// touches the listeners, so editing a command refuses no connection.
	def atomic.Pointer[definition]
	// changed is closed (and replaced) when def is: an accept loop waiting
	// for a slot or a token under the old one looks again.
	changed atomic.Pointer[chan struct{}]

	// slots counts the live connections of this socket, taken before
	// accept like Activator.slots (unless on_limit is refuse): when it is
	// full, this socket's accept loops wait.
	slots *gate

	// Guarded by Activator.reconcileMu.
	specs     []listenSpec  // wanted listeners
	listeners []*listener   // listeners[i] serves specs[i]; nil while not bound
	svc       *service      // accept: false: the service of the listeners, once all are bound
	backoff   time.Duration // the delay before retryAt; zero after a success
	retryAt   time.Time     // when to retry binding; zero when no retry is due

	accepted   atomic.Int64
	refusals   refusals     // by reason, and the budget of refusal rows
	sources    sources      // live connections and rates by source
	rate       rateGate     // the socket's rate_limit
	servicePID atomic.Int64 // accept: false: the running service's pid, or 0
	connected  atomic.Int64
	refused    atomic.Int64
	// bytesIn and bytesOut count what the socket's connections carried,
	// added as each ends, for the metrics.
	bytesIn, bytesOut atomic.Int64
	// attrs are the attributes of the socket's metrics; stateAttrs those
	// of its connections' durations, by final state.
	attrs      attribute.Set
	stateAttrs map[socketd.ConnectionState]metric.MeasurementOption

	mu        sync.Mutex // guards the fields below
	state     socketd.SocketState
	since     time.Time
	listening []string
	errMsg    string
}

func (s *socket) status() socketd.SocketStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return socketd.SocketStatus{
		State:           s.state,
		Since:           s.since,
		Accepted:        s.accepted.Load(),
		Connected:       s.connected.Load(),
		Refused:         s.refused.Load(),
		RefusedByReason: s.refusals.counts(),
		Sources:         s.shownSources(),
		PausedUntil:     pausedUntil(s.rate.resumes()),
		ServicePID:      int(s.servicePID.Load()),
		// Never nil, so that it shows as [] rather than null.
		Listening: append([]string{}, s.listening...),
		Error:     s.errMsg,
	}
}

// pausedUntil is t for a status, nil if zero.
func pausedUntil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// setState moves the socket to state st with error msg. Staying in the
// same state keeps since and, unless failed, the last error.
func (s *socket) setState(st socketd.SocketState, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != st {
		s.state, s.since, s.errMsg = st, time.Now().UTC(), msg
	} else if st == socketd.SocketFailed {
		s.errMsg = msg
	}
}

// current returns the state and the error shown.
func (s *socket) current() (socketd.SocketState, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.errMsg
}

// setError records the last error for humans, without changing the state.
func (s *socket) setError(msg string) {
	s.mu.Lock()
	s.errMsg = msg
	s.mu.Unlock()
}

// setSpecs makes specs the wanted listen addresses: listeners for addresses
// still wanted are kept, the others closed. The caller holds reconcileMu.
func (s *socket) setSpecs(specs []listenSpec) {
	old := s.listeners
	s.listeners = make([]*listener, len(specs))
	for i, spec := range specs {
		for j, l := range old {
			if l != nil && l.spec == spec {
				s.listeners[i], old[j] = l, nil
				break
			}
		}
	}
	if s.svc != nil && !slices.Equal(specs, s.specs) {
		// Its listeners change: the service stops, and the socket
		// binds again once it has (see waitingForService); it is
		// the socket's no more.
		s.svc.stop()
		s.svc = nil
	}
	for _, l := range old {
		if l != nil {
			l.close()
		}
	}
	s.specs = specs
	s.updateListening()
}

func (s *socket) updateListening() {
	addrs := make([]string, 0, len(s.listeners))
	for _, l := range s.listeners {
		if l != nil {
			addrs = append(addrs, l.addr)
		}
	}
	s.mu.Lock()
	s.listening = addrs
	s.mu.Unlock()
}

// reconcileLocked makes the sockets match the desired definitions. The
// caller holds reconcileMu.
func (a *Activator) reconcileLocked(desired []socketd.Socket) {
	want := make(map[string]*socketd.Socket, len(desired))
	for i := range desired {
		want[desired[i].Name] = &desired[i]
	}

	// Everything that is no longer wanted closes before anything binds, so
	// that an address moving between sockets in one change is free.
	a.mu.Lock()
	for name, s := range a.sockets {
		if want[name] == nil {
			s.setSpecs(nil)
			delete(a.sockets, name)
			a.flushSummary(s) // its timer would write it to a socket gone
		}
	}
	a.mu.Unlock()
	var bind []*socket
	for i := range desired {
		d := &desired[i]
		if want[d.Name] != d {
			continue // a repeated name: the last one wins
		}
		if s := a.prepare(d); s != nil {
			bind = append(bind, s)
		}
	}
	now := time.Now()
	for _, s := range bind {
		// A socket waiting for its retry waits on: binding it at every
		// Apply or resync would defeat the backoff.
		if s.retryAt.IsZero() || !now.Before(s.retryAt) {
			a.bind(s)
		}
	}
	a.kickLoop()
}

// prepare installs definition d and closes the listeners it no longer
// wants. It returns the socket if it should listen. A change of its listen
// addresses clears its retry time, so that it binds at once.
func (a *Activator) prepare(d *socketd.Socket) *socket {
	a.mu.RLock()
	s := a.sockets[d.Name]
	a.mu.RUnlock()
	if s == nil {
		s = &socket{name: d.Name, slots: newGate(d.Max()), attrs: attribute.NewSet(attrSocket.String(d.Name)),
			stateAttrs: stateAttrs(d.Name)}
		a.mu.Lock()
		a.sockets[d.Name] = s
		a.mu.Unlock()
	}
	if old := s.def.Load(); old == nil || !old.same(d) {
		s.def.Store(newDefinition(d))
		ch := make(chan struct{})
		if prev := s.changed.Swap(&ch); prev != nil {
			close(*prev)
		}
		s.slots.setMax(d.Max())
		if d.DynamicUser && !a.dynUsers.hasSwept() {
			// The first sweep of the range clears all of it: now, not
			// on the path of the first connection that needs a uid
			// (get waits for it).
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				a.dynUsers.sweep()
			}()
		}
	}

	specs, err := parseSpecs(d)
	switch {
	case !d.Enabled:
		s.setSpecs(nil)
		s.backoff, s.retryAt = 0, time.Time{}
		s.setState(socketd.SocketDisabled, "")
		return nil
	case err != nil:
		// Retrying cannot mend a definition; the next change will.
		s.setSpecs(nil)
		s.backoff, s.retryAt = 0, time.Time{}
		a.fail(s, err)
		return nil
	}
	if !slices.Equal(specs, s.specs) {
		s.setSpecs(specs)
		s.backoff, s.retryAt = 0, time.Time{}
	}
	return s
}

func parseSpecs(d *socketd.Socket) ([]listenSpec, error) {
	if len(d.Listen) == 0 {
		return nil, fmt.Errorf("no listen address")
	}
	specs := make([]listenSpec, len(d.Listen))
	for i, l := range d.Listen {
		la, err := socketd.ParseListen(l)
		if err != nil {
			return nil, fmt.Errorf("listen %d: %w", i, err)
		}
		if la.Datagram() && d.Accept {
			// Validate refuses it; a definition stored before must not
			// spin an accept loop on a datagram socket.
			return nil, fmt.Errorf("listen %d: a datagram socket needs accept: false", i)
		}
		specs[i] = listenSpec{ListenAddr: la, opts: d.SocketOptions, service: !d.Accept}
	}
	return specs, nil
}

// bind binds the socket's missing listeners and starts their accept loops.
// If any address fails, the socket is failed and a retry is scheduled; the
// addresses that did bind serve meanwhile. The caller holds reconcileMu.
func (a *Activator) bind(s *socket) {
	if a.waitingForService(s) {
		// serviceEnded binds it.
		s.setState(socketd.SocketFailed, "waiting for the service of its sockets to exit")
		return
	}
	var firstErr error
	bound := false
	for i, spec := range s.specs {
		if s.listeners[i] != nil {
			continue
		}
		l, err := listen(spec)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		s.listeners[i] = l
		bound = true
		if !spec.service {
			a.wg.Add(1)
			go a.acceptLoop(s, l)
		}
	}
	if bound {
		s.updateListening()
	}
	if firstErr == nil && len(s.specs) > 0 && s.specs[0].service && s.svc == nil {
		// The service gets every socket, so it waits for all of them.
		firstErr = a.startService(s)
	}

	if firstErr == nil {
		if st, _ := s.current(); st == socketd.SocketFailed {
			a.log.Info("listening", "socket", s.name)
		}
		s.backoff, s.retryAt = 0, time.Time{}
		s.setState(socketd.SocketListening, "")
		return
	}
	a.fail(s, firstErr)
	if s.backoff == 0 {
		s.backoff = a.retryMin
	} else {
		s.backoff = min(2*s.backoff, a.retryMax)
	}
	s.retryAt = time.Now().Add(s.backoff)
	if a.bindFailed != nil {
		a.bindFailed(s.name, s.backoff, s.retryAt)
	}
}

// fail marks s failed with err. It logs only news: a retry that fails the
// same way again is not worth a line.
func (a *Activator) fail(s *socket, err error) {
	msg := err.Error()
	if st, shown := s.current(); st != socketd.SocketFailed || shown != msg {
		a.log.Error("bind", "socket", s.name, "err", err)
	}
	s.setState(socketd.SocketFailed, msg)
}

// retryBinds retries the sockets whose retry time has come.
func (a *Activator) retryBinds() {
	a.reconcileMu.Lock()
	defer a.reconcileMu.Unlock()
	if a.closed {
		return
	}
	now := time.Now()
	a.mu.RLock()
	due := make([]*socket, 0, 1)
	for _, s := range a.sockets {
		if !s.retryAt.IsZero() && !now.Before(s.retryAt) {
			due = append(due, s)
		}
	}
	a.mu.RUnlock()
	for _, s := range due {
		a.bind(s)
	}
}

// nextRetry returns the earliest retry time, or zero if none is due.
func (a *Activator) nextRetry() time.Time {
	a.reconcileMu.Lock()
	defer a.reconcileMu.Unlock()
	var next time.Time
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, s := range a.sockets {
		if !s.retryAt.IsZero() && (next.IsZero() || s.retryAt.Before(next)) {
			next = s.retryAt
		}
	}
	return next
}
