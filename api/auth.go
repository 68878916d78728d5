package api

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/socketd/socketd"
)

// healthPath is the one route served without a token, so that a monitor
// needs no secret to learn that the daemon is up.
const healthPath = "/healthz"

// requireToken refuses, with a 401 and a WWW-Authenticate challenge
// (RFC 6750), every request but GET /healthz that does not carry
// "Authorization: Bearer <token>" with a token the store knows. The
// dashboard's pages check its logins themselves, and the event stream takes
// a login too, for the dashboard's pages follow it.
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == healthPath || isDashboard(r.URL.Path) ||
			(r.URL.Path == eventsPath && r.Method == http.MethodGet && r.Header.Get("Authorization") == "" && s.sessions.Valid(r)) {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="socketd"`)
			s.writeError(w, r, socketd.Errorf(socketd.CodeUnauthorized,
				"this request needs an Authorization: Bearer <token> header"))
			return
		}
		valid, err := s.store.CheckToken(r.Context(), token)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if !valid {
			w.Header().Set("WWW-Authenticate", `Bearer realm="socketd", error="invalid_token"`)
			s.writeError(w, r, socketd.Errorf(socketd.CodeUnauthorized, "the bearer token is not valid"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header value. The scheme is case-insensitive (RFC 9110, section 11.1).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// checkHost defeats DNS rebinding. A web page on evil.example whose name the
// attacker re-points at 127.0.0.1 can make a victim's browser send requests
// to a daemon that listens on loopback; the browser still sends
// "Host: evil.example". So, when the server is bound to a loopback address,
// a request whose Host is not a loopback name or address is refused with a
// 403 problem (code forbidden) before anything else looks at it. A request
// without a Host (HTTP/1.0) passes: browsers always send one.
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.loopback.Load() && !loopbackHost(r.Host) {
			s.writeError(w, r, socketd.Errorf(socketd.CodeForbidden,
				"host %q is not a loopback name or address; this API listens on loopback and answers only requests addressed to localhost, 127.0.0.0/8 or [::1]",
				r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether host, a Host header value with or without a
// port, names the local machine: "localhost", a name under ".localhost"
// (RFC 6761 reserves them for loopback), an address in 127.0.0.0/8 or ::1.
func loopbackHost(host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}
