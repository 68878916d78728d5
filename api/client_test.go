package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/socketd/socketd"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// newTestServer serves h on a loopback port for one test and returns its URL.
func newTestServer(t *testing.T, h http.Handler) string {
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs.URL
}

// TestClientNonProblemError checks that a failure without a problem body is
// a plain error that says the status.
func TestClientNonProblemError(t *testing.T) {
	url := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	_, err := NewClient(url, "t").GetSocket(t.Context(), "x")
	var se *socketd.Error
	if err == nil || errors.As(err, &se) || !strings.Contains(err.Error(), "502 Bad Gateway") {
		t.Errorf("error %v, want a plain error with the status", err)
	}
	if socketd.ErrorCode(err) != socketd.CodeInternal {
		t.Errorf("code %q", socketd.ErrorCode(err))
	}
}

// TestClientInternalError checks that an internal problem's message carries
// the request id, which is what an operator looks up in the log.
func TestClientInternalError(t *testing.T) {
	url := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", problemContentType)
		w.WriteHeader(500)
		w.Write([]byte(`{"type":"x","title":"t","status":500,"code":"internal","detail":"d","request_id":"r1"}`))
	}))
	err := NewClient(url+"/", "t").DeleteSocket(t.Context(), "x")
	wantCode(t, err, socketd.CodeInternal)
	if !strings.Contains(err.Error(), "r1") {
		t.Errorf("error %q lacks the request id", err)
	}
}

// TestClientSendsToken checks the Authorization header and the trimming of
// a trailing slash in the base URL.
func TestClientSendsToken(t *testing.T) {
	var auth, path string
	url := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, path = r.Header.Get("Authorization"), r.URL.Path
		w.WriteHeader(http.StatusNoContent)
	}))
	if err := NewClient(url+"/", "tok").DeleteSocket(t.Context(), "x"); err != nil {
		t.Fatal(err)
	}
	if auth != "Bearer tok" || path != "/v1/sockets/x" {
		t.Errorf("Authorization %q, path %q", auth, path)
	}
}
