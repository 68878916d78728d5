// Command socketd is the daemon: it serves programs on TCP sockets, one
// process per connection (systemd Accept=yes, inetd nowait), records every
// connection, and is managed over a REST API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	sd "github.com/coreos/go-systemd/v22/daemon"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/api"
	"github.com/socketd/socketd/store"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "socketd:", err)
		os.Exit(1)
	}
}

// run is the whole life of the daemon: parse the configuration, open every
// part, serve until SIGTERM or SIGINT, and shut down in order.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := ParseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	// Descriptors inherited from whoever started socketd must not reach the
	// handlers: mark every one above stderr close-on-exec.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close inherited descriptors on exec: %w", err)
	}
	// socketd must not die of SIGPIPE when a log reader goes away. Notify,
	// not Ignore: an ignored signal would be inherited by every handler.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	m := &Main{Config: cfg, Logger: cfg.NewLogger(stderr)}
	// SIGHUP is caught from before the start: a reload asked for as soon
	// as socketd said it was ready must not kill it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := m.Open(ctx); err != nil {
		// Bounded: what Open started, telemetry's flush included.
		closing, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.Close(closing)
		return err
	}
	// Under systemd (Type=notify), the service is ready once the
	// migrations have run, the listeners are up and the API answers.
	ready := sd.SdNotifyReady + "\nSTATUS=serving; API on http://" + m.API.Addr()
	m.notify(ready)
	for done := false; !done; {
		select {
		case <-hup:
			// SIGHUP reconciles at once, as a reload does for other daemons.
			m.notify(sd.SdNotifyReloading + "\n" + sd.SdNotifyMonotonicUsec())
			if err := m.Activator.Apply(ctx); err != nil {
				m.Logger.Error("reconcile", "err", err)
			}
			m.notify(ready)
		case <-ctx.Done():
			done = true
		}
	}
	// A second SIGTERM or SIGINT during the shutdown ends socketd at once.
	stop()
	m.notify(sd.SdNotifyStopping + "\nSTATUS=stopping: handlers get --stop-timeout to end")
	m.Logger.Info("shutting down")
	// The stop timeout bounds the handlers; the rest gets a little more.
	shutdown, cancel := context.WithTimeout(context.Background(), cfg.StopTimeout+10*time.Second)
	defer cancel()
	return m.Close(shutdown)
}

// Main holds the daemon's parts and wires them together.
type Main struct {
	Config    Config
	Logger    *slog.Logger
	DB        *store.DB
	Activator *activator.Activator
	API       *api.Server

	// Telemetry is the daemon's metrics and traces.
	Telemetry *telemetry
	// metricsAddr is where --metrics-addr was bound; "" without it.
	metricsAddr string

	// pruning ends the history's pruning (see prune); pruned is closed
	// when it has.
	pruning context.CancelFunc
	pruned  chan struct{}
}

// notify tells the service manager how socketd is doing (sd_notify(3),
// through NOTIFY_SOCKET); without one, under no Type=notify systemd, it
// does nothing.
func (m *Main) notify(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		m.Logger.Warn("systemd notification", "err", err)
	}
}

// pruneInterval is how often the history is pruned, when it is bounded;
// tests shorten it.
var pruneInterval = time.Minute

// prune deletes what the history's bounds allow no more, at once and then
// at every interval (pruneInterval, as Open read it), until ctx ends.
func (m *Main) prune(ctx context.Context, every time.Duration) {
	for {
		n, err := m.DB.PruneHistory(ctx, m.Config.History)
		switch {
		case err != nil && ctx.Err() == nil:
			m.Logger.Error("history retention", "err", err)
		case n > 0:
			m.Logger.Info("history pruned", "rows", n)
		}
		select {
		case <-time.After(every):
		case <-ctx.Done():
			return
		}
	}
}

// Open starts the daemon: the data dir, the database and its migrations, the
// admin token, the listeners, and last the API.
func (m *Main) Open(ctx context.Context) error {
	if err := m.openDataDir(); err != nil {
		return err
	}
	tel, err := newTelemetry(ctx, m.Config.Exports, os.Stdout)
	if err != nil {
		return err
	}
	m.Telemetry = tel
	db, err := store.Open(ctx, m.Config.DBPath())
	if err != nil {
		return err
	}
	m.DB = db
	if err := db.Instrument(tel.Meters); err != nil {
		return fmt.Errorf("history telemetry: %w", err)
	}
	if n := db.Recovered(); n > 0 {
		m.Logger.Warn("connections an earlier daemon had not yet recorded added as interrupted", "count", n)
	}
	if n, err := db.InterruptRunning(ctx); err != nil {
		return err
	} else if n > 0 {
		m.Logger.Warn("connections left running by an earlier daemon marked interrupted", "count", n)
	}
	if err := m.ensureAdminToken(ctx); err != nil {
		return err
	}
	// Connections are recorded through the hub, which tells the event
	// stream once each row is committed.
	hub := api.NewHub()
	m.Activator = activator.New(activator.Config{
		Source:         db,
		Recorder:       hub.Recording(db),
		Logger:         m.Logger,
		StopTimeout:    m.Config.StopTimeout,
		DynamicUIDMin:  m.Config.DynamicUIDMin,
		DynamicUIDMax:  m.Config.DynamicUIDMax,
		MeterProvider:  tel.Meters,
		TracerProvider: tel.TracerProvider(),
	})
	if err := m.Activator.Open(ctx); err != nil {
		return err
	}
	m.API = api.New(api.Config{Store: db, Runtime: m.Activator, Hub: hub, Logger: m.Logger,
		TracerProvider: tel.TracerProvider(), MeterProvider: tel.Meters, Metrics: tel.Metrics})
	if err := m.API.Open(m.Config.APIAddr); err != nil {
		return err
	}
	if m.Config.MetricsAddr != "" {
		if m.metricsAddr, err = m.API.OpenMetrics(m.Config.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		m.Logger.Info("metrics without a token", "addr", "http://"+m.metricsAddr+"/metrics")
	}
	if h := m.Config.History; h.MaxAge > 0 || h.MaxRows > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		m.pruning, m.pruned = cancel, make(chan struct{})
		every := pruneInterval // read here, not by the goroutine: tests set it
		go func() {
			defer close(m.pruned)
			m.prune(ctx, every)
		}()
	}
	m.Logger.Info("socketd started", "api", "http://"+m.API.Addr(), "data_dir", m.Config.DataDir)
	return nil
}

// Close shuts down: the API and the listeners stop accepting at once; API
// requests in flight finish while running handlers get SIGTERM (SIGKILL
// after the stop timeout) and their rows are finished; then the database
// closes. It is safe to call on a partly opened Main and more than once.
func (m *Main) Close(ctx context.Context) error {
	var apiErr, actErr error
	var wg sync.WaitGroup
	if m.API != nil {
		wg.Go(func() { apiErr = m.API.Close(ctx) })
	}
	if m.Activator != nil {
		wg.Go(func() { actErr = m.Activator.Close(ctx) })
	}
	if m.pruning != nil {
		wg.Go(func() {
			m.pruning()
			<-m.pruned
		})
	}
	wg.Wait()
	errs := []error{apiErr, actErr}
	if m.DB != nil {
		errs = append(errs, m.DB.Close())
	}
	if m.Telemetry != nil {
		// What is still to be exported goes now, within ctx.
		if err := m.Telemetry.Shutdown(ctx); err != nil {
			m.Logger.Warn("telemetry", "err", err)
		}
	}
	return errors.Join(errs...)
}

// openDataDir creates the data dir with mode 0700, or tightens an existing
// one to it: the database holds definitions whose environment may carry
// secrets, and admin.token is the key to the API.
func (m *Main) openDataDir() error {
	dir := m.Config.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(dir, perm&0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		m.Logger.Warn("data dir was open to other users; its mode is now 0700", "dir", dir, "was", fmt.Sprintf("%04o", perm))
	}
	return nil
}
