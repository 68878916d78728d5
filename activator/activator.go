// Package activator turns socket definitions into live TCP listeners and
// serves every accepted connection with its own process, as systemd does for
// Accept=yes sockets and inetd for nowait services.
//
// It reconciles the enabled definitions of a Source into listeners, accepts
// connections within a per-socket and a global limit of live handlers,
// records each connection through a Recorder before its handler starts,
// runs the handler
// with the connection as stdin and stdout in its own process group and, where
// the host allows, its own cgroup (see cgroup.go), and closes the connection
// gracefully once the handler exits, so that a handler that never reads its
// input does not lose what it wrote to a reset. What a handler leaves running
// in its cgroup (its process group without one) gets SIGTERM when it exits
// and SIGKILL after StopTimeout, as systemd's KillMode=control-group does.
//
// The activator knows nothing of SQL or HTTP: it reads definitions from a
// Source and reports connections to a Recorder, both small interfaces it
// declares itself.
package activator

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd"
)

// Source lists the socket definitions, enabled or not.
type Source interface {
	ListSockets(ctx context.Context) ([]socketd.Socket, error)
}

// Recorder records connections in the history.
//
// BeginConnectionAsync sets c.ID and queues the row; once it has returned
// nil the row must be as safe from a crash of socketd as a commit would make
// it, for the handler starts then. It returns an error if it cannot take
// the row, and otherwise calls done exactly once, when the row is committed
// or has failed to be.
//
// FinishConnectionAsync queues the final fields of c, including PID, which
// is known only after Begin, and returns without waiting; it calls done
// exactly once, when they are committed or have failed to be.
//
// Both call done from any goroutine, and done does not block.
type Recorder interface {
	BeginConnectionAsync(c *socketd.Connection, done func(error)) error
	FinishConnectionAsync(c *socketd.Connection, done func(error))
}

// Config configures an Activator. Source and Recorder are required; zero
// durations and limits take the defaults below.
type Config struct {
	Source   Source
	Recorder Recorder
	Logger   *slog.Logger

	ResyncInterval time.Duration // safety-net reconcile; default 30s
	StopTimeout    time.Duration // kill signal -> SIGKILL grace unless a definition sets one; default 10s
	LingerTimeout  time.Duration // drain after handler exit; default 2s
	MaxChildren    int           // global cap on live handlers; slot taken before accept; default 1024
	// DynamicUIDMin and DynamicUIDMax bound the uids of dynamic_user
	// handlers; default DefaultDynamicUIDMin to DefaultDynamicUIDMax.
	DynamicUIDMin, DynamicUIDMax uint32
	// NoCgroups tracks handlers by process group only, even where socketd
	// could give each connection a cgroup (see cgroup.go): what a handler
	// starts in a session of its own then escapes a stop, and no
	// definition with memory_max or tasks_max can start a handler.
	NoCgroups bool
	// MeterProvider, if set, gets the activator's metrics: connections
	// accepted, refused, active, their bytes, durations and spawn times.
	MeterProvider metric.MeterProvider
	// TracerProvider, if set, gets a span per connection, from its accept
	// to the end of its row.
	TracerProvider trace.TracerProvider
}

// DefaultMaxConnections caps the live connections of a socket whose
// definition sets no max_connections, as systemd's MaxConnections= does
// with the same default, so that one busy socket cannot take every slot of
// MaxChildren. Like the global slot, the socket's is taken before accept:
// at the cap the socket stops accepting and its clients wait in the
// kernel's backlog, as with tcpserver -c, unless on_limit is refuse (as
// systemd does, which accepts and drops a connection over its cap).
const DefaultMaxConnections = socketd.DefaultMaxConnections

// Defaults for Config.
const (
	DefaultResyncInterval = 30 * time.Second
	DefaultStopTimeout    = 10 * time.Second
	DefaultLingerTimeout  = 2 * time.Second
	DefaultMaxChildren    = 1024
)

// Activator runs the listeners and handlers of the socket definitions.
// Create it with New, start it with Open and stop it with Close.
type Activator struct {
	cfg Config
	log *slog.Logger

	// slots holds one token per live connection, from before its accept
	// until it is closed: a full channel stops every accept loop.
	slots chan struct{}

	// Bind retry backoff bounds: retryMin and retryMax unless a test sets
	// them. bindFailed, if set (by tests), is called after every failed
	// bind, under reconcileMu.
	retryMin, retryMax time.Duration
	bindFailed         func(name string, backoff time.Duration, retryAt time.Time)

	// ctx is cancelled by Close, to stop a resync stuck in the Source.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed by Close: stops the resync loop
	kick   chan struct{} // tells the resync loop that retry times changed

	// reconcileMu serializes reconciles, bind retries, Open and Close, and
	// guards the fields below it and the listener fields of every socket.
	reconcileMu sync.Mutex
	opened      bool
	closed      bool
	devNull     int          // shared /dev/null for stderr "null"; -1 until Open
	lingerer    *lingerer    // closes connections whose peer has not; nil until Open
	exits       *exitWatcher // handles the exits of handlers; nil until Open
	// services holds the latest service of each accept: false socket, by
	// name, until it has ended: a socket waits for it before it binds.
	services map[string]*service

	// mu guards the sockets map, read by Status. Writers also hold
	// reconcileMu.
	mu      sync.RWMutex
	sockets map[string]*socket

	// connMu guards conns and closing.
	connMu  sync.Mutex
	conns   map[int64]*conn // running connections by history id, for Kill
	closing bool            // Close has begun: start no more handlers

	// jobs hands accepted connections to idle workers (see dispatch);
	// idleWorkers counts the workers waiting for one.
	jobs        chan job
	idleWorkers atomic.Int32

	// logMu guards unwatched: the running connections whose stderr pipe
	// has no reader yet (see watchLogs).
	logMu     sync.Mutex
	unwatched map[*conn]struct{}

	// hurry is closed when Close runs out of time: the process groups
	// handlers left behind get their SIGKILL at once.
	hurry     chan struct{}
	hurryOnce sync.Once

	dynUsers *uidPool // the uids of dynamic_user handlers
	// cgroups are the connections' cgroups; nil if there are none, and
	// cgroupsErr says why.
	cgroups    *cgroups
	cgroupsErr error

	tel telemetry

	wg        sync.WaitGroup // resync loop, log watcher, accept loops, connections, leftover groups
	closeOnce sync.Once
	finished  chan struct{} // closed once everything Close waits for is done
}

// New returns an Activator for cfg, with the defaults filled in. It starts
// nothing: call Open.
func New(cfg Config) *Activator {
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.LingerTimeout <= 0 {
		cfg.LingerTimeout = DefaultLingerTimeout
	}
	if cfg.MaxChildren <= 0 {
		cfg.MaxChildren = DefaultMaxChildren
	}
	if cfg.DynamicUIDMin == 0 || cfg.DynamicUIDMax < cfg.DynamicUIDMin {
		cfg.DynamicUIDMin, cfg.DynamicUIDMax = DefaultDynamicUIDMin, DefaultDynamicUIDMax
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Activator{
		cfg:       cfg,
		log:       log,
		slots:     make(chan struct{}, cfg.MaxChildren),
		retryMin:  retryMin,
		retryMax:  retryMax,
		ctx:       ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		kick:      make(chan struct{}, 1),
		devNull:   -1,
		sockets:   map[string]*socket{},
		services:  map[string]*service{},
		conns:     map[int64]*conn{},
		unwatched: map[*conn]struct{}{},
		jobs:      make(chan job),
		hurry:     make(chan struct{}),
		finished:  make(chan struct{}),
		dynUsers:  newUIDPool(cfg.DynamicUIDMin, cfg.DynamicUIDMax),
	}
}

// Open reads the definitions from the Source and binds their listeners
// before it returns, so a port 0 listener's port is known to Status. A bind
// failure does not fail Open: that socket is failed and retried in the
// background. Open then starts the periodic resync.
func (a *Activator) Open(ctx context.Context) error {
	a.reconcileMu.Lock()
	defer a.reconcileMu.Unlock()
	if a.opened || a.closed {
		return errors.New("activator: open called twice or after close")
	}
	if err := a.instrument(); err != nil {
		return fmt.Errorf("activator telemetry: %w", err)
	}
	fd, err := unix.Open("/dev/null", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/null: %w", err)
	}
	socks, err := a.cfg.Source.ListSockets(ctx)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("list sockets: %w", err)
	}
	l, err := newLingerer()
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("lingering close: %w", err)
	}
	x, err := newExitWatcher()
	if err != nil {
		l.p.stop()
		unix.Close(fd)
		return fmt.Errorf("exit watcher: %w", err)
	}
	a.lingerer, a.exits = l, x
	a.devNull = fd
	if a.cfg.NoCgroups {
		a.cgroupsErr = errors.New("cgroups are turned off")
	} else if a.cgroups, a.cgroupsErr = openCgroups(); a.cgroupsErr != nil {
		a.log.Warn("handlers are tracked by their process group only: what starts a session of its own "+
			"escapes a stop, and memory_max and tasks_max cannot be had", "err", a.cgroupsErr)
	} else {
		a.log.Debug("connection cgroups", "dir", a.cgroups.dir, "v1", a.cgroups.v1, "v2", a.cgroups.v2)
	}
	a.opened = true
	a.reconcileLocked(socks)
	a.wg.Add(2)
	go a.loop()
	go a.watchLogs()
	return nil
}

// Apply reconciles the listeners with the Source now. It returns an error
// only when the Source fails or the activator is not open; a socket that
// cannot bind shows it in its status.
func (a *Activator) Apply(ctx context.Context) error {
	a.reconcileMu.Lock()
	defer a.reconcileMu.Unlock()
	if !a.opened || a.closed {
		return socketd.Errorf(socketd.CodeUnavailable, "the activator is not running")
	}
	// The Source is read under the lock so that two concurrent Applies
	// cannot install an older listing after a newer one.
	socks, err := a.cfg.Source.ListSockets(ctx)
	if err != nil {
		return fmt.Errorf("list sockets: %w", err)
	}
	a.reconcileLocked(socks)
	return nil
}

// Status returns the live status of the named socket, and false if the
// activator does not know it (not defined, or not reconciled yet).
func (a *Activator) Status(name string) (socketd.SocketStatus, bool) {
	a.mu.RLock()
	s := a.sockets[name]
	a.mu.RUnlock()
	if s == nil {
		return socketd.SocketStatus{}, false
	}
	return s.status(), true
}

// Close stops the resync, closes every listener, terminates the running
// handlers (their kill signal, SIGTERM by default, then SIGKILL after their
// stop timeout) and waits until every connection's row is finished and
// every process group a handler left behind is empty or has had its
// SIGKILL, or until ctx is done: then the running handlers' groups and the
// leftover ones are killed at once, so that none outlives the daemon. It is
// safe to call more than once; every call waits the same way.
func (a *Activator) Close(ctx context.Context) error {
	a.closeOnce.Do(func() {
		a.cancel()
		a.reconcileMu.Lock()
		a.closed = true
		close(a.done)
		a.mu.RLock()
		for _, s := range a.sockets {
			s.setSpecs(nil)
		}
		a.mu.RUnlock()
		a.reconcileMu.Unlock()

		a.connMu.Lock()
		a.closing = true
		running := make([]*conn, 0, len(a.conns))
		for _, c := range a.conns {
			running = append(running, c)
		}
		a.connMu.Unlock()
		for _, c := range running {
			c.stop()
		}

		go func() {
			a.wg.Wait()
			// Every handler has been spawned and has exited, and every
			// connection is closed: nothing uses /dev/null, the exit
			// watcher or the lingerer any more.
			if a.devNull >= 0 {
				unix.Close(a.devNull)
			}
			if a.lingerer != nil {
				a.exits.p.stop()
				a.lingerer.p.stop()
			}
			if a.cgroups != nil {
				a.cgroups.close()
			}
			a.writeSummaries()
			close(a.finished)
		}()
	})
	select {
	case <-a.finished:
		return nil
	case <-ctx.Done():
		a.hurryOnce.Do(func() {
			close(a.hurry)
			a.connMu.Lock()
			for _, c := range a.conns {
				c.kill()
			}
			a.connMu.Unlock()
		})
		return fmt.Errorf("close activator: %w", ctx.Err())
	}
}

// loop runs the periodic resync and the bind retries until Close.
func (a *Activator) loop() {
	defer a.wg.Done()
	resync := time.NewTicker(a.cfg.ResyncInterval)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		if at := a.nextRetry(); at.IsZero() {
			retry.Stop()
		} else {
			retry.Reset(time.Until(at))
		}
		select {
		case <-a.done:
			return
		case <-resync.C:
			if err := a.Apply(a.ctx); err != nil && a.ctx.Err() == nil {
				a.log.Error("resync", "err", err)
			}
		case <-retry.C:
			a.retryBinds()
		case <-a.kick:
		}
	}
}

// sleep waits for d, or until stop or changed (nil: never) is closed: it
// reports false then.
func sleep(d time.Duration, stop, changed <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
	case <-changed:
	}
	return false
}

// kickLoop tells the resync loop to look at the retry times again.
func (a *Activator) kickLoop() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}
