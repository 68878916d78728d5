package apitest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestSpecIsValid fails on a spec kin-openapi does not accept, or one this
// package cannot find.
func TestSpecIsValid(t *testing.T) {
	if doc := Spec(t); doc.Paths.Len() == 0 {
		t.Fatalf("%s has no paths", SpecPath(t))
	}
}

// TestOnlyTestsImport keeps this package out of every package's non-test
// import graph (the daemon's, the CLI's, api's), and package api out of
// this one's.
func TestOnlyTestsImport(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		if os.Getenv("SOCKETD_TEST_STRICT") != "" {
			t.Fatal("the go command is not in PATH (SOCKETD_TEST_STRICT forbids skipping)")
		}
		t.Skip("the go command is not in PATH")
	}
	const self = module + "/internal/apitest"
	out, err := exec.Command("go", "list", "-deps=false", "-f", `{{.ImportPath}} {{join .Deps " "}}`, module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s/...: %v\n%s", module, err, out)
	}
	seen := false
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		pkg, deps := f[0], f[1:]
		if pkg == self {
			seen = true
			if slices.Contains(deps, module+"/api") {
				t.Errorf("%s imports %s/api", self, module)
			}
		} else if slices.Contains(deps, self) {
			t.Errorf("%s imports %s outside its tests", pkg, self)
		}
	}
	if !seen {
		t.Errorf("go list did not list %s:\n%s", self, out)
	}
}

// recorder is a testing.TB that collects what the transport reports instead
// of failing the test.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// answer writes a response as the API would, with the headers every
// response carries.
func answer(w http.ResponseWriter, status int, contentType, body string) {
	h := w.Header()
	h.Set(RequestIDHeader, "rid")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func problemBody(status int, code, requestID string) string {
	return fmt.Sprintf(`{"type":%q,"title":"t","status":%d,"code":%q,"request_id":%q}`,
		ProblemTypeBase+code, status, code, requestID)
}

// handlerTransport answers requests with h, in process: unlike a real
// server, it lets h send what HTTP forbids (a body with a 204).
type handlerTransport http.HandlerFunc

func (h handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	w := httptest.NewRecorder()
	h(w, req)
	return w.Result(), nil
}

// TestTransportCatches checks that the transport passes what the spec
// allows and reports what it does not, for requests and responses alike.
func TestTransportCatches(t *testing.T) {
	const token = "Bearer t0ken"
	for _, tc := range []struct {
		name          string
		method, path  string
		auth          string
		offSpec       bool
		handler       http.HandlerFunc
		wantFail      bool
		wantInMessage string
	}{
		{
			name: "a documented answer", method: "GET", path: "/healthz",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				answer(w, 200, "application/json", `{"status":"ok"}`)
			},
		},
		{
			name: "an undocumented status", method: "GET", path: "/healthz",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				answer(w, 409, ProblemContentType, problemBody(409, "conflict", "rid"))
			},
			wantFail: true, wantInMessage: "409",
		},
		{
			name: "a body that does not match its schema", method: "GET", path: "/healthz",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				answer(w, 200, "application/json", `{"status":"fine"}`)
			},
			wantFail: true, wantInMessage: "does not match",
		},
		{
			name: "no request id", method: "GET", path: "/healthz",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Cache-Control", "no-store")
				w.Header().Set("X-Content-Type-Options", "nosniff")
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"status":"ok"}`)
			},
			wantFail: true, wantInMessage: RequestIDHeader,
		},
		{
			name: "an error in plain text", method: "GET", path: "/v1/sockets/x", auth: token,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				answer(w, 404, "text/plain", "not found")
			},
			wantFail: true, wantInMessage: ProblemContentType,
		},
		{
			name: "a problem whose status is not the response's", method: "GET", path: "/v1/sockets/x", auth: token,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				answer(w, 404, ProblemContentType, problemBody(400, "not_found", "rid"))
			},
			wantFail: true, wantInMessage: "status 400",
		},
		{
			name: "a problem whose request_id is not the header's", method: "GET", path: "/v1/sockets/x", auth: token,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				answer(w, 404, ProblemContentType, problemBody(404, "not_found", "other"))
			},
			wantFail: true, wantInMessage: "request_id",
		},
		{
			name: "a body where the spec declares none", method: "DELETE", path: "/v1/sockets/x", auth: token,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				answer(w, 204, "application/json", `{}`)
			},
			wantFail: true, wantInMessage: "a body where the spec declares none",
		},
		{
			name: "no token", method: "GET", path: "/v1/sockets",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("WWW-Authenticate", "Bearer")
				answer(w, 401, ProblemContentType, problemBody(401, "unauthorized", "rid"))
			},
			wantFail: true, wantInMessage: "the request does not match",
		},
		{
			name: "no token, off the spec on purpose", method: "GET", path: "/v1/sockets", offSpec: true,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("WWW-Authenticate", "Bearer")
				answer(w, 401, ProblemContentType, problemBody(401, "unauthorized", "rid"))
			},
		},
		{
			name: "a route outside the spec", method: "GET", path: "/v1/nothing", auth: token,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				answer(w, 404, ProblemContentType, problemBody(404, "not_found", "rid"))
			},
			wantFail: true, wantInMessage: "not in",
		},
		{
			name: "a route outside the spec, off it on purpose", method: "GET", path: "/v1/nothing", auth: token, offSpec: true,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				answer(w, 404, ProblemContentType, problemBody(404, "not_found", "rid"))
			},
		},
		{
			name: "a route outside the spec that is served", method: "GET", path: "/v1/nothing", auth: token, offSpec: true,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				answer(w, 200, "application/json", `{}`)
			},
			wantFail: true, wantInMessage: "outside the spec",
		},
		{
			name: "a 405 without Allow", method: "POST", path: "/v1/connections", auth: token, offSpec: true,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				answer(w, 405, ProblemContentType, problemBody(405, "method_not_allowed", "rid"))
			},
			wantFail: true, wantInMessage: "Allow",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			hc := &http.Client{Transport: NewTransport(rec, handlerTransport(tc.handler))}
			ctx := t.Context()
			if tc.offSpec {
				ctx = OffSpec(ctx)
			}
			req, err := http.NewRequestWithContext(ctx, tc.method, "http://127.0.0.1:7780"+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			// The body is handed on intact.
			if _, err := io.ReadAll(resp.Body); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			msgs := strings.Join(rec.errs, "\n")
			switch {
			case tc.wantFail && len(rec.errs) == 0:
				t.Error("the transport reported nothing")
			case !tc.wantFail && len(rec.errs) > 0:
				t.Errorf("the transport reported:\n%s", msgs)
			case tc.wantFail && !strings.Contains(msgs, tc.wantInMessage):
				t.Errorf("the report does not say %q:\n%s", tc.wantInMessage, msgs)
			}
		})
	}
}

// TestTransportPassesBodies checks that a request's body reaches the server
// whole after validation.
func TestTransportPassesBodies(t *testing.T) {
	const patch = `{"description":"d"}`
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
		answer(w, 404, ProblemContentType, problemBody(404, "not_found", "rid"))
	}))
	defer srv.Close()
	hc := &http.Client{Transport: NewTransport(t, srv.Client().Transport)}
	req, _ := http.NewRequestWithContext(context.Background(), "PATCH", srv.URL+"/v1/sockets/x", strings.NewReader(patch))
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("Authorization", "Bearer x")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got != patch {
		t.Errorf("the server got %q, want %q", got, patch)
	}
}
