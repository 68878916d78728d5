package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Sessions are the dashboard's logins: a random id in an HttpOnly,
// SameSite=Strict cookie, each with a CSRF token of its own that every
// state-changing request must carry. They live in memory: a restarted
// daemon asks for the token again.
type Sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	now  func() time.Time
	// verify reports whether a token still is one: a session ends with
	// its token (rotated, say).
	verify func(token string) bool
}

type session struct {
	csrf    string
	token   string // what it logged in with
	expires time.Time
}

// Session limits.
const (
	// sessionCookie is the cookie's name.
	sessionCookie = "socketd_session"
	// sessionTTL is how long a login lasts.
	sessionTTL = 12 * time.Hour
	// maxSessions bounds the logins kept; the oldest goes first.
	maxSessions = 1024
)

// NewSessions returns an empty set of sessions, each valid only as long as
// verify says its token is.
func NewSessions(verify func(token string) bool) *Sessions {
	return &Sessions{byID: map[string]*session{}, now: time.Now, verify: verify}
}

// randomToken returns 32 random bytes, URL-safe base64.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// start makes a session of token and sets its cookie on w.
func (ss *Sessions) start(w http.ResponseWriter, token string) {
	id, now := randomToken(), ss.now()
	ss.mu.Lock()
	for k, s := range ss.byID {
		if !now.Before(s.expires) {
			delete(ss.byID, k)
		}
	}
	if len(ss.byID) >= maxSessions {
		oldest := ""
		for k, s := range ss.byID {
			if oldest == "" || s.expires.Before(ss.byID[oldest].expires) {
				oldest = k
			}
		}
		delete(ss.byID, oldest)
	}
	ss.byID[id] = &session{csrf: randomToken(), token: token, expires: now.Add(sessionTTL)}
	ss.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

// end ends the session of r, if any, and clears its cookie on w.
func (ss *Sessions) end(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		ss.mu.Lock()
		delete(ss.byID, c.Value)
		ss.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// CSRF returns the CSRF token of r's session, and false if r has no live
// session.
func (ss *Sessions) CSRF(r *http.Request) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", false
	}
	ss.mu.Lock()
	s := ss.byID[c.Value]
	ss.mu.Unlock()
	if s == nil || !ss.now().Before(s.expires) || !ss.verify(s.token) {
		return "", false
	}
	return s.csrf, true
}

// Valid reports whether r comes with a live session.
func (ss *Sessions) Valid(r *http.Request) bool {
	_, ok := ss.CSRF(r)
	return ok
}

// csrfHeader carries the CSRF token of htmx's requests; forms carry it as
// the field csrfField.
const (
	csrfHeader = "X-CSRF-Token"
	csrfField  = "csrf"
)

// checkWrite reports whether a state-changing request r may proceed: it
// comes from this origin (its Origin, or else its Referer, names the host
// it was sent to) and carries want, its session's CSRF token.
func checkWrite(r *http.Request, want string) bool {
	if !sameOrigin(r) {
		return false
	}
	got := r.Header.Get(csrfHeader)
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// maxFormMemory is how much of a multipart form is held in memory, not in
// temporary files; the API bounds the whole body well below it.
const maxFormMemory = 8 << 20

// readForm reads the form of a state-changing request r, urlencoded or
// multipart (the import's files), and returns why it cannot: an
// *http.MaxBytesError for a body over the server's bound.
func readForm(r *http.Request) error {
	// ParseForm first: ParseMultipartForm drops its error when the body
	// is not multipart.
	if err := r.ParseForm(); err != nil {
		return err
	}
	if err := r.ParseMultipartForm(maxFormMemory); err != nil && !errors.Is(err, http.ErrNotMultipart) {
		return err
	}
	return nil
}

// sameOrigin reports whether r's Origin header, or its Referer when a
// browser sent no Origin, is this server as r addressed it.
func sameOrigin(r *http.Request) bool {
	from := r.Header.Get("Origin")
	if from == "" {
		from = r.Header.Get("Referer")
	}
	u, err := url.Parse(from)
	if err != nil || from == "" || from == "null" {
		return false
	}
	return (u.Scheme == "http" || u.Scheme == "https") && u.Host == r.Host
}
