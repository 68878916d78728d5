package api

import (
	"bufio"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// browserish is a client that, like a browser, keeps cookies but, unlike
// one, does not follow redirects, so that each can be checked.
type browserish struct {
	t    *testing.T
	base string
	hc   *http.Client
	// cookie is the session cookie once logged in.
	cookie *http.Cookie
}

func newBrowserish(h *harness) *browserish {
	return &browserish{t: h.t, base: h.base, hc: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request from the dashboard's own origin unless origin says
// otherwise, with the session cookie if there is one, and returns the
// response with its body read.
func (b *browserish) do(method, path, origin string, form url.Values, header http.Header) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(b.t.Context(), method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if origin == "" {
		origin = b.base
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", origin)
	}
	for k, v := range header {
		if len(v) == 1 && v[0] == "" {
			req.Header.Del(k)
		} else {
			req.Header[k] = v
		}
	}
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.Name == "socketd_session" {
			b.cookie = c
			if c.MaxAge < 0 {
				b.cookie = nil
			}
		}
	}
	return resp, string(out)
}

// TestDashboardLogin: the dashboard is behind a login with an API token,
// in an HttpOnly, SameSite=Strict cookie; its pages carry a strict
// Content-Security-Policy.
func TestDashboardLogin(t *testing.T) {
	h := newHarness(t)
	b := newBrowserish(h)
	if resp, _ := b.do("GET", "/", "", nil, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /: %s to %s", resp.Status, resp.Header.Get("Location"))
	}
	if resp, _ := b.do("GET", "/ui/", "", nil, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Errorf("GET /ui/ without a login: %s to %s", resp.Status, resp.Header.Get("Location"))
	}
	resp, body := b.do("GET", "/ui/login", "", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="token"`) ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("login page: %s, CSP %q\n%s", resp.Status, resp.Header.Get("Content-Security-Policy"), body)
	}
	if resp, body := b.do("POST", "/ui/login", "", url.Values{"token": {"wrong"}}, nil); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(body, "not a token") || b.cookie != nil {
		t.Errorf("a wrong token: %s\n%s", resp.Status, body)
	}
	if resp, _ := b.do("POST", "/ui/login", "http://evil.example", url.Values{"token": {testToken}}, nil); resp.StatusCode != http.StatusForbidden || b.cookie != nil {
		t.Errorf("a login from another origin: %s", resp.Status)
	}
	if resp, body := b.do("POST", "/ui/login", "", url.Values{"token": {testToken}}, nil); resp.StatusCode != http.StatusSeeOther || b.cookie == nil {
		t.Fatalf("log in: %s\n%s", resp.Status, body)
	}
	if !b.cookie.HttpOnly || b.cookie.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict", b.cookie)
	}
	if _, _, err := h.c.PutSocket(h.ctx(), newSocket(t, "hello")); err != nil {
		t.Fatal(err)
	}
	resp, body = b.do("GET", "/ui/", "", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-socket="hello"`) {
		t.Errorf("overview: %s\n%s", resp.Status, body)
	}
	if resp, body := b.do("GET", "/ui/sockets/hello", "", nil, nil); resp.StatusCode != http.StatusOK ||
		!strings.Contains(body, "<h1>hello ") || !strings.Contains(body, "sse-connect=\"/v1/events?socket=hello&amp;after=") {
		t.Errorf("the socket's page: %s\n%s", resp.Status, body)
	}
	if resp, _ := b.do("GET", "/ui/sockets/nope", "", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown socket's page: %s", resp.Status)
	}
	if resp, _ := b.do("GET", "/ui/static/vendor/htmx.min.js", "", nil, nil); resp.StatusCode != http.StatusOK ||
		!strings.Contains(resp.Header.Get("Content-Type"), "javascript") {
		t.Errorf("htmx: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}

	// The page's event stream takes the login.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", h.base+"/v1/events", nil)
	req.AddCookie(b.cookie)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stream.Body).ReadString('\n')
	stream.Body.Close()
	if stream.StatusCode != http.StatusOK || !strings.HasPrefix(line, ":") {
		t.Errorf("events with the login: %s %q", stream.Status, line)
	}

	// Writes need the session's CSRF token and this origin.
	csrf := between(body, `name="csrf" value="`, `"`)
	if csrf == "" {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	if resp, _ := b.do("POST", "/ui/sockets/hello/disable", "", url.Values{}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a post without the CSRF token: %s", resp.Status)
	}
	if resp, _ := b.do("POST", "/ui/sockets/hello/disable", "http://127.0.0.1:1", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a post from another origin: %s", resp.Status)
	}
	if s, _ := h.c.GetSocket(h.ctx(), "hello"); !s.Enabled {
		t.Fatal("a refused post disabled the socket")
	}
	if resp, _ := b.do("POST", "/ui/sockets/hello/disable", "", nil, http.Header{"X-Csrf-Token": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("disable: %s", resp.Status)
	}
	if s, _ := h.c.GetSocket(h.ctx(), "hello"); s.Enabled {
		t.Error("disable left the socket enabled")
	}

	// Origin "null", or none: a write from a page that hides where it is
	// from is refused; a browser that sends only a Referer of this origin
	// is let through.
	if resp, _ := b.do("POST", "/ui/sockets/hello/enable", "null", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a post from origin null: %s", resp.Status)
	}
	noOrigin := http.Header{"Origin": {""}, "Referer": {"http://127.0.0.1:1/ui/"}}
	if resp, _ := b.do("POST", "/ui/sockets/hello/enable", "", url.Values{"csrf": {csrf}}, noOrigin); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a post with a foreign Referer and no Origin: %s", resp.Status)
	}
	noOrigin["Referer"] = []string{h.base + "/ui/"}
	if resp, _ := b.do("POST", "/ui/sockets/hello/enable", "", url.Values{"csrf": {csrf}}, noOrigin); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a post with this Referer and no Origin: %s", resp.Status)
	}

	old := b.cookie
	if resp, _ := b.do("POST", "/ui/logout", "", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther || b.cookie != nil {
		t.Errorf("log out: %s, cookie %v", resp.Status, b.cookie)
	}
	b.cookie = old // the browser that kept it
	if resp, _ := b.do("GET", "/ui/", "", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the session after logging out: %s", resp.Status)
	}
}

// TestDashboardSessionEndsWithItsToken: a login made with a token ends when
// the token is replaced.
func TestDashboardSessionEndsWithItsToken(t *testing.T) {
	h := newHarness(t)
	b := newBrowserish(h)
	if resp, _ := b.do("POST", "/ui/login", "", url.Values{"token": {testToken}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("log in: %s", resp.Status)
	}
	if resp, _ := b.do("GET", "/ui/session", "", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("the session: %s", resp.Status)
	}
	if err := h.db.SetToken(h.ctx(), "test", "a-new-token"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := b.do("GET", "/ui/session", "", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the session after its token was replaced: %s", resp.Status)
	}
}

// between returns what s holds between the first start and the end after
// it.
func between(s, start, end string) string {
	_, rest, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, end)
	return v
}
