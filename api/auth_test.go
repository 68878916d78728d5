package api

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/socketd/socketd"
)

// TestAuth checks the bearer token on every route but /healthz.
func TestAuth(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name      string
		auth      string // the Authorization header; "" sends none
		path      string
		status    int
		challenge string // the WWW-Authenticate of a 401
	}{
		{"no header", "", "/v1/sockets", 401, `Bearer realm="socketd"`},
		{"wrong token", "Bearer not-the-token", "/v1/sockets", 401, `Bearer realm="socketd", error="invalid_token"`},
		{"empty token", "Bearer ", "/v1/sockets", 401, `Bearer realm="socketd"`},
		{"basic auth", "Basic dXNlcjpwYXNz", "/v1/sockets", 401, `Bearer realm="socketd"`},
		{"token without scheme", testToken, "/v1/sockets", 401, `Bearer realm="socketd"`},
		{"right token", "Bearer " + testToken, "/v1/sockets", 200, ""},
		{"scheme in lower case", "bearer " + testToken, "/v1/sockets", 200, ""},
		{"connections without token", "", "/v1/connections", 401, `Bearer realm="socketd"`},
		{"unknown route without token", "", "/v1/secret", 401, `Bearer realm="socketd"`},
		{"healthz without token", "", "/healthz", 200, ""},
		{"healthz with a wrong token", "Bearer wrong", "/healthz", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			if tc.auth != "" {
				hdr.Set("Authorization", tc.auth)
			}
			resp, body := h.do(request{method: "GET", path: tc.path, header: hdr, noToken: true, offSpec: tc.status != 200})
			if resp.StatusCode != tc.status {
				t.Fatalf("status %s, want %d\n%s", resp.Status, tc.status, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.challenge)
			}
			if tc.status == 401 && problem(t, body).Code != socketd.CodeUnauthorized {
				t.Errorf("problem %s", body)
			}
		})
	}
}

// TestHostCheck checks the DNS-rebinding guard of a server bound to
// loopback: only loopback Host headers pass, before and regardless of the
// token.
func TestHostCheck(t *testing.T) {
	h := newHarness(t)
	_, port, _ := net.SplitHostPort(h.srv.Addr())
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:" + port, true},
		{"localhost:" + port, true},
		{"LOCALHOST:" + port, true},
		{"localhost", true},
		{"localhost.:" + port, true},
		{"dashboard.localhost:" + port, true},
		{"127.1.2.3:" + port, true},
		{"[::1]:" + port, true},
		{"[::ffff:127.0.0.1]:" + port, true},
		{"evil.example", false},
		{"evil.example:" + port, false},
		{"127.0.0.1.evil.example:" + port, false},
		{"localhost.evil.example", false},
		{"evillocalhost:" + port, false},
		{"10.0.0.1:" + port, false},
		{"[::2]:" + port, false},
	} {
		t.Run(tc.host, func(t *testing.T) {
			for _, path := range []string{"/v1/sockets", "/healthz"} {
				resp, body := h.do(request{method: "GET", path: path, host: tc.host, offSpec: !tc.ok})
				switch {
				case tc.ok && resp.StatusCode != http.StatusOK:
					t.Errorf("%s: %s, want 200\n%s", path, resp.Status, body)
				case !tc.ok && resp.StatusCode != http.StatusForbidden:
					t.Errorf("%s: %s, want 403\n%s", path, resp.Status, body)
				case !tc.ok && problem(t, body).Code != socketd.CodeForbidden:
					t.Errorf("%s: problem %s", path, body)
				}
			}
		})
	}
	// Refused before the token is looked at: a rebinding page learns
	// nothing about tokens.
	resp, _ := h.do(request{method: "GET", path: "/v1/sockets", host: "evil.example", noToken: true, offSpec: true})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("no token, evil host: %s, want 403", resp.Status)
	}
}

// TestHostCheckOffWhenNotLoopback checks that a server bound to every
// address takes any Host: it is meant to be reached by name.
func TestHostCheckOffWhenNotLoopback(t *testing.T) {
	h := newHarness(t, withAddr(":0"))
	_, port, _ := net.SplitHostPort(h.srv.Addr())
	h.base = "http://127.0.0.1:" + port
	resp, body := h.do(request{method: "GET", path: "/v1/sockets", host: "socketd.example:" + port})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("%s\n%s", resp.Status, body)
	}
}

// TestLoopbackHost checks the Host parser on its own.
func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"":                     true,
		"localhost":            true,
		"localhost:7780":       true,
		"a.b.localhost:1":      true,
		"127.0.0.1":            true,
		"127.255.255.254:80":   true,
		"::1":                  true,
		"[::1]":                true,
		"[::1]:7780":           true,
		"128.0.0.1":            false,
		"0.0.0.0:7780":         false,
		"[::]:7780":            false,
		"example.com":          false,
		"localhost.example":    false,
		"127.0.0.1.nip.io:80":  false,
		"[fe80::1%25lo]:7780":  false,
		"localhost:7780:extra": false,
	} {
		if got := loopbackHost(host); got != want {
			t.Errorf("loopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestHeaderLimit checks that oversized headers are refused. net/http
// answers this itself, before any handler, so the answer is its own (431,
// plain text) and the request is not sent through the spec check.
func TestHeaderLimit(t *testing.T) {
	h := newHarness(t)
	conn, err := net.DialTimeout("tcp", h.srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + strings.Repeat("x", 2*maxHeaderBytes) + "\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 431") {
		t.Errorf("answer %q, want a 431", buf[:n])
	}
}
