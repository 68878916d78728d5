package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Keys of the API's log records.
const (
	logKeyRequestID = "request_id"
	logKeyMethod    = "method"
	logKeyPath      = "path"
	logKeyStatus    = "status"
	logKeyDuration  = "duration"
	logKeyErr       = "err"
	logKeyAddr      = "addr"
	logKeyHostCheck = "host_check"
	logKeyPanic     = "panic"
)

// requestIDHeader carries the request id both ways.
const requestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds a request id taken from the client.
const maxRequestIDLen = 64

type ctxKey int

const requestIDKey ctxKey = 0

// requestID returns the id given to the request by withRequestID.
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// withRequestID gives each request an id, echoed in X-Request-Id: the
// client's own if it sent a sane one, so that its logs and ours line up,
// else a random one.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(requestIDHeader)
		if !saneRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(requestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// saneRequestID reports whether id is short and made of characters that are
// safe in a header and a log line.
func saneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:]) // never returns an error (crypto/rand since Go 1.24)
	return hex.EncodeToString(b[:])
}

// statusRecorder remembers the status a handler wrote, for the access log
// and for the recovery of a panic.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logAndRecover logs each request at debug level and turns a panic in a
// handler into a logged 500 problem, so that one bug neither kills the
// daemon nor leaves the client with a reset connection.
func (s *Server) logAndRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "handler panicked",
					slog.String(logKeyRequestID, requestID(r.Context())),
					slog.String(logKeyMethod, r.Method),
					slog.String(logKeyPath, r.URL.Path),
					slog.String(logKeyPanic, fmt.Sprint(v)))
				if rec.status == 0 {
					s.writeError(rec, r, fmt.Errorf("panic: %v", v))
				}
			}
			s.log.DebugContext(r.Context(), "request",
				slog.String(logKeyRequestID, requestID(r.Context())),
				slog.String(logKeyMethod, r.Method),
				slog.String(logKeyPath, r.URL.Path),
				slog.Int(logKeyStatus, rec.status),
				slog.Duration(logKeyDuration, time.Since(start)))
		}()
		next.ServeHTTP(rec, r)
	})
}

// withLimitsAndHeaders bounds every request body at maxBodyBytes and sets the
// headers every response carries: an API answer is never cached and never
// sniffed into something a browser would run.
func withLimitsAndHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}
