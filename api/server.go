// Package api is socketd's HTTP interface: the REST API under /v1 that
// manages socket definitions, reads the connection history and streams
// events, the dashboard (package web) under /ui/, and a Client for it.
//
// The contract is openapi.yaml at the root of the module; the tests hold the
// server to it. Every request but GET /healthz needs a bearer token; errors
// are application/problem+json (RFC 9457) with a socketd error code.
package api

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/socketd/socketd"
	"github.com/socketd/socketd/web"
)

// SocketStore is what the API needs of the store: socket definitions, the
// connection history (read only) and token checks. *store.DB satisfies it.
type SocketStore interface {
	ListSockets(ctx context.Context) ([]socketd.Socket, error)
	GetSocket(ctx context.Context, name string) (socketd.Socket, error)
	CreateSocket(ctx context.Context, s socketd.Socket) (socketd.Socket, error)
	PutSocket(ctx context.Context, s socketd.Socket) (socketd.Socket, bool, error)
	PutSockets(ctx context.Context, socks []socketd.Socket, check func(stored []*socketd.Socket) error) ([]socketd.Socket, []bool, error)
	UpdateSocket(ctx context.Context, name string, fn func(*socketd.Socket) error) (socketd.Socket, error)
	DeleteSocket(ctx context.Context, name string) error

	ListConnections(ctx context.Context, f socketd.ConnectionFilter) ([]socketd.Connection, string, error)
	GetConnection(ctx context.Context, id int64) (socketd.Connection, error)
	ConnectionLog(ctx context.Context, id int64) ([]byte, error)
	ConnectionStats(ctx context.Context, socket string, since, until time.Time, step time.Duration) (socketd.ConnectionStats, error)

	CheckToken(ctx context.Context, token string) (bool, error)
}

// Runtime is what the API needs of the activator: to reconcile after a
// write, to report a socket's live status, and to terminate a connection.
type Runtime interface {
	// Apply reconciles the listeners with the stored definitions now.
	Apply(ctx context.Context) error
	// Status returns a socket's live status; false if it has none.
	Status(name string) (socketd.SocketStatus, bool)
	// Kill terminates a running connection and returns once it is dead and
	// recorded; a CodeNotFound error if it is not running.
	Kill(ctx context.Context, id int64) error
	// Connections returns a socket's running connections, with the bytes
	// they have carried so far.
	Connections(name string) []socketd.Connection
}

// Config configures a Server.
type Config struct {
	Store   SocketStore
	Runtime Runtime
	// Hub carries the events of GET /v1/events. The daemon records the
	// connections through it (Hub.Recording) and hands it here; nil makes
	// one that carries the API's own changes only.
	Hub *Hub
	// Logger receives internal errors and, at debug level, every request.
	// Nil discards them.
	Logger *slog.Logger
	// TracerProvider and MeterProvider, if set, get a span and the HTTP
	// server metrics of each request (none of the health check's and the
	// scrapes').
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Metrics, if set, serves GET /metrics (the Prometheus text format).
	Metrics http.Handler
}

// Limits of the HTTP server. The API can start programs, so it is guarded
// like one: slow or oversized requests cannot hold it.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	// writeTimeout bounds a response. DELETE /v1/connections/{id} lifts it,
	// since it waits for a handler to die, which the activator bounds.
	writeTimeout   = 30 * time.Second
	idleTimeout    = 2 * time.Minute
	maxHeaderBytes = 64 << 10
	// applyTimeout bounds the reconcile that follows a write.
	applyTimeout = 30 * time.Second
)

// Server serves the API. Create it with New, then either serve Handler()
// yourself or call Open and, at the end, Close.
type Server struct {
	store   SocketStore
	runtime Runtime
	hub     *Hub
	// sessions are the dashboard's logins, which GET /v1/events takes as
	// well as a token.
	sessions *web.Sessions
	log      *slog.Logger
	// done is closed by Close: it ends the event streams, which
	// http.Server.Shutdown would otherwise wait for, and watchStates.
	done chan struct{}
	// statesChecked gets a token after each pass of watchStates, for
	// tests.
	statesChecked chan struct{}
	router        *chi.Mux
	handler       http.Handler
	// metricsHandler serves GET /metrics; nil if the daemon gave none.
	metricsHandler http.Handler
	// loopback is set by Open when it binds a loopback address; it turns
	// on the Host check against DNS rebinding.
	loopback atomic.Bool
	// writeTimeout is writeTimeout unless a test shortens it.
	writeTimeout time.Duration

	mu  sync.Mutex
	srv *http.Server
	// metricsSrv serves OpenMetrics' address; nil without it.
	metricsSrv *http.Server
	ln         net.Listener
	served     chan struct{} // closed when Serve returns
	watching   chan struct{} // closed when seedSparklines and watchStates return
	// seeded is closed once seedSparklines has returned, for tests.
	seeded    chan struct{}
	closed    bool
	closeOnce sync.Once
	closeErr  error
}

// New returns a Server for the store and runtime in cfg.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hub := cfg.Hub
	if hub == nil {
		hub = NewHub()
	}
	s := &Server{store: cfg.Store, runtime: cfg.Runtime, hub: hub, log: log, writeTimeout: writeTimeout,
		done: make(chan struct{}), statesChecked: make(chan struct{}, 1), seeded: make(chan struct{})}
	// A dashboard login lasts only as long as its token does.
	s.sessions = web.NewSessions(func(token string) bool {
		ok, err := s.store.CheckToken(context.Background(), token)
		return err == nil && ok
	})
	s.metricsHandler = cfg.Metrics
	s.router = s.routes()
	s.handler = s.instrumented(s.router, cfg)
	return s
}

// routes builds the router. The middleware runs in this order: the span's
// name (set once the route is known), request id,
// logging and panic recovery, body limit and common headers, the Host
// check, then the token check, so that every response, refusals included,
// carries an X-Request-Id and the common headers, and a request from a
// rebinding page is refused before its token is looked at.
func (s *Server) routes() *chi.Mux {
	r := chi.NewRouter()
	r.Use(nameSpan, withRequestID, s.logAndRecover, withLimitsAndHeaders, s.checkHost, s.requireToken)
	r.NotFound(s.notFound)
	r.MethodNotAllowed(s.methodNotAllowed)

	r.Get(healthPath, s.handle(s.health))
	r.Get(metricsPath, s.handle(s.metrics))
	r.Get("/", toDashboard)
	r.Mount(dashboardPrefix, web.New(web.Config{Backend: dashboardBackend{s}, Sessions: s.sessions, Logger: s.log}))

	r.Route("/v1", func(r chi.Router) {
		r.Get("/sockets", s.handle(s.listSockets))
		r.Post("/sockets", s.handle(s.createSocket))
		r.Get("/sockets/{name}", s.handle(s.getSocket))
		r.Put("/sockets/{name}", s.handle(s.putSocket))
		r.Patch("/sockets/{name}", s.handle(s.patchSocket))
		r.Delete("/sockets/{name}", s.handle(s.deleteSocket))
		r.Get("/sockets/{name}/export", s.handle(s.exportSocket))
		r.Post("/import", s.handle(s.importSockets))

		r.Get("/connections", s.handle(s.listConnections))
		r.Get("/connections/{id}", s.handle(s.getConnection))
		r.Delete("/connections/{id}", s.handle(s.killConnection))
		r.Get("/connections/{id}/log", s.handle(s.connectionLog))

		r.Get("/events", s.handle(s.events))
	})
	return r
}

// Handler returns the API's handler. Its Host check is on only once Open has
// bound a loopback address.
func (s *Server) Handler() http.Handler { return s.handler }

// handlerFunc is an HTTP handler that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// handle adapts a handlerFunc, rendering its error with writeError.
func (s *Server) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}

// health answers GET /healthz.
func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// allMethods are the methods a 405 lists in its Allow header when a route
// takes them.
var allMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// methodNotAllowed answers a known path with a method it does not take, with
// an Allow header listing those it does.
func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range allMethods {
		if s.router.Match(chi.NewRouteContext(), m, r.URL.Path) {
			allowed = append(allowed, m)
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	s.writeError(w, r, &socketd.Error{
		Code:    CodeMethodNotAllowed,
		Message: fmt.Sprintf("%s does not take %s; it takes %s", r.URL.Path, r.Method, strings.Join(allowed, ", ")),
	})
}

// Open binds addr ("host:port"; port 0 lets the kernel pick) synchronously
// and serves the API on it in the background. When the bound address is a
// loopback address, requests whose Host header is not a loopback name or
// address are refused from then on (see checkHost). In the background it
// counts the connections of the last hour that the history holds, for the
// dashboard's sparklines.
func (s *Server) Open(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil || s.closed {
		return errors.New("api: already opened or closed")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: listen on %s: %w", addr, err)
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && tcp.IP.IsLoopback() {
		s.loopback.Store(true)
	}
	s.ln = ln
	s.srv = s.httpServer(s.handler)
	s.served = make(chan struct{})
	s.watching = make(chan struct{})
	go func() {
		defer close(s.watching)
		s.seedSparklines(s.done)
		close(s.seeded)
		s.watchStates(s.done)
	}()
	go func(srv *http.Server, served chan struct{}) {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api server stopped", slog.String(logKeyAddr, ln.Addr().String()), slog.Any(logKeyErr, err))
		}
	}(s.srv, s.served)
	s.log.Info("api listening", slog.String(logKeyAddr, ln.Addr().String()),
		slog.Bool(logKeyHostCheck, s.loopback.Load()))
	return nil
}

// httpServer returns a server of h with the API's limits.
func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      s.writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// OpenMetrics serves GET /metrics, and nothing else, on addr without a
// token, for a scraper that cannot send one (socketd --metrics-addr), until
// Close. It returns the bound address.
func (s *Server) OpenMetrics(addr string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metricsHandler == nil || s.metricsSrv != nil || s.closed {
		return "", errors.New("api: no metrics to serve, or already serving them, or closed")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("api: listen on %s for metrics: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+metricsPath, s.metricsHandler)
	s.metricsSrv = s.httpServer(mux)
	go func(srv *http.Server) {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", slog.String(logKeyAddr, ln.Addr().String()), slog.Any(logKeyErr, err))
		}
	}(s.metricsSrv)
	return ln.Addr().String(), nil
}

// Addr returns the bound address as host:port, or "" before Open.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops the server: it stops accepting, lets requests in flight
// finish until ctx is done, then closes what is left. It returns ctx's error
// if it had to cut requests short. Calling it again returns the same result;
// calling it before Open does nothing.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		srv, served, watching, metrics := s.srv, s.served, s.watching, s.metricsSrv
		s.closed = true
		s.mu.Unlock()
		close(s.done)
		if metrics != nil {
			if err := metrics.Shutdown(ctx); err != nil {
				metrics.Close()
			}
		}
		if srv == nil {
			return
		}
		<-watching
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
			s.closeErr = fmt.Errorf("api: shut down: %w", err)
		}
		<-served
	})
	return s.closeErr
}
