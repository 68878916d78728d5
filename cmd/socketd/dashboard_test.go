package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/socketd/socketd/internal/testhandler"
)

// chromium returns the path of Chromium, or "" if the machine has none.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	return ""
}

// browser starts a headless Chromium of the test's own, or skips the test
// (fails it under testhandler.StrictEnv) where there is none. Its context
// ends with the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromium()
	if path == "" {
		testhandler.Require(t, "Chromium (Debian's chromium package)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// A profile of its own, which chromedp removes; not the test's
		// directory, whose removal Chromium's helpers could still race.
		chromedp.WindowSize(1280, 900),
		// A closed network: nothing of Google's to reach.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses root otherwise
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Run(ctx); err != nil { // starts it
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// loaded waits until the page has loaded: Chromium can otherwise measure
// a page still loading at zero width ("Cannot take screenshot with 0
// width"), or renumber the nodes a click is about to use ("Could not find
// node"). A test calls it before it clicks or types into a page it came to
// by a click or a form's post.
func loaded(t *testing.T, ctx context.Context) {
	t.Helper()
	waitJS(t, ctx, "the page to load", `document.readyState === "complete"`)
}

// navigate opens url in the browser and waits until it has loaded.
func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
	loaded(t, ctx)
}

// screenshot saves the page, once it has loaded, as name.png in the test's
// directory, and in SOCKETD_SCREENSHOTS if set (the README shows those of
// docs/screenshots).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	loaded(t, ctx)
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil { // 100: PNG
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dirs := []string{t.TempDir()}
	if d := os.Getenv("SOCKETD_SCREENSHOTS"); d != "" {
		dirs = append(dirs, d)
	}
	for _, dir := range dirs {
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Error(err)
		}
	}
}

// login logs the browser in to the dashboard at base with token, and
// waits until the dashboard's first page has loaded.
func login(t *testing.T, ctx context.Context, base, token string) {
	t.Helper()
	var url string
	navigate(t, ctx, base+"/")
	err := chromedp.Run(ctx,
		chromedp.WaitVisible("#token", chromedp.ByQuery),
		chromedp.SendKeys("#token", token, chromedp.ByQuery),
		chromedp.Submit("#token", chromedp.ByQuery),
		chromedp.WaitVisible("header.bar", chromedp.ByQuery), // the dashboard's, not the login page's
		chromedp.Location(&url),
	)
	if err != nil {
		t.Fatalf("log in: %v", err)
	}
	if !strings.HasSuffix(url, "/ui/") {
		t.Fatalf("after logging in the browser is at %s", url)
	}
	loaded(t, ctx)
}

// waitJS waits until the JavaScript expression is true in the page.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err := chromedp.Run(wctx, chromedp.Poll(expr, nil, chromedp.WithPollingInterval(50*time.Millisecond)))
	// A page that navigates (a form's answer) takes the poll's JavaScript
	// context with it: poll again in the new page.
	for err != nil && (strings.Contains(err.Error(), "Cannot find context") || strings.Contains(err.Error(), "navigated or closed")) && wctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		err = chromedp.Run(wctx, chromedp.Poll(expr, nil, chromedp.WithPollingInterval(50*time.Millisecond)))
	}
	if err != nil {
		var body string
		chromedp.Run(ctx, chromedp.Evaluate(`document.body.innerText`, &body))
		t.Fatalf("waiting for %s: %v\npage:\n%s", what, err, body)
	}
}

// TestDashboardLive: in a real browser, log in with the token, see the
// sockets, and watch a connection of a real TCP client appear and go
// without reloading the page.
func TestDashboardLive(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	m, c := openMain(t, dir)
	base := "http://" + m.API.Addr()

	// Not logged in: the login page, and nothing else.
	var loginURL string
	navigate(t, ctx, base+"/ui/")
	if err := chromedp.Run(ctx, chromedp.WaitVisible("#token", chromedp.ByQuery),
		chromedp.Location(&loginURL)); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(loginURL, "/ui/login") {
		t.Errorf("the dashboard without a login is at %s", loginURL)
	}
	screenshot(t, ctx, "login")
	// A wrong token is told so.
	loaded(t, ctx)
	if err := chromedp.Run(ctx, chromedp.SendKeys("#token", "not-a-token", chromedp.ByQuery),
		chromedp.Submit("#token", chromedp.ByQuery), chromedp.WaitVisible("#token-error", chromedp.ByQuery)); err != nil {
		t.Fatalf("a wrong token: %v", err)
	}

	login(t, ctx, base, readToken(t, dir))
	waitJS(t, ctx, "the empty state", `document.querySelector(".empty pre") !== null`)
	waitJS(t, ctx, "the page to follow the events", `document.getElementById("live").dataset.state === "open"`)

	echo := testhandler.Socket("echo", testhandler.Echo, "127.0.0.1:0")
	echo.Description = "copies what it reads"
	if _, _, err := c.PutSocket(ctxT(t), echo); err != nil {
		t.Fatal(err)
	}
	row := `document.querySelector('tr[data-socket="echo"]')`
	waitJS(t, ctx, "the new socket to appear", row+` !== null`)
	// From here on the page must not reload: a reload would lose this.
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.socketdMarker = 1`, nil)); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetSocket(ctxT(t), "echo")
	if err != nil || got.Status == nil || len(got.Status.Listening) == 0 {
		t.Fatalf("echo: %+v, %v", got, err)
	}
	conn, _ := openHanging(t, c, got.Status.Listening[0], "echo")
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintln(conn, "hello")
	field := func(name string) string {
		return row + `.querySelector('[data-field="` + name + `"]').textContent.trim()`
	}
	waitJS(t, ctx, "the live connection", field("connected")+` === "1" && `+field("accepted")+` === "1"`)
	screenshot(t, ctx, "sockets")
	waitJS(t, ctx, "the same page, never reloaded", `window.socketdMarker === 1`)

	// The socket's page: the connection with its pid and its bytes so far,
	// and a button that kills it.
	line := make([]byte, 6)
	if _, err := io.ReadFull(conn, line); err != nil || string(line) != "hello\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
	liveRow := `document.querySelector('#live-connections tr[data-connection]')`
	loaded(t, ctx)
	if err := chromedp.Run(ctx, chromedp.Click(`tr[data-socket="echo"] a`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the live connection on the socket's page", liveRow+` !== null && `+
		liveRow+`.cells[2].textContent.trim() !== "" && `+liveRow+`.cells[4].textContent.trim() === "6" && `+
		liveRow+`.cells[5].textContent.trim() === "6"`)
	screenshot(t, ctx, "socket")
	loaded(t, ctx)
	if err := chromedp.Run(ctx, chromedp.Click(`#live-connections button.danger`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the killed connection in the history", `document.querySelector('#live-connections') === null && `+
		`document.querySelector('#recent-connections tr[data-connection]').dataset.state === "killed"`)
	if b, err := io.ReadAll(conn); err != nil || len(b) != 0 {
		t.Errorf("the killed connection's client read %q, %v; want end of file", b, err)
	}
	conn.Close()
}

// TestDashboardRefusesCrossSitePosts: a page of another origin that makes
// the logged-in browser post to the dashboard is refused, although the
// browser sends the session cookie along (same site, another port).
func TestDashboardRefusesCrossSitePosts(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	m, c := openMain(t, dir)
	base := "http://" + m.API.Addr()
	hello := testhandler.Socket("hello", testhandler.Hello, "127.0.0.1:0")
	if _, _, err := c.PutSocket(ctxT(t), hello); err != nil {
		t.Fatal(err)
	}
	login(t, ctx, base, readToken(t, dir))
	// Even with the login's own CSRF token (leaked, say), a post from
	// another origin is refused: the origin check alone holds here.
	var csrf string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector('[name=csrf]').value`, &csrf)); err != nil || csrf == "" {
		t.Fatalf("the page's CSRF token: %q, %v", csrf, err)
	}

	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form id="f" method="post" action="%s/ui/sockets/hello/disable">`+
			`<input name="csrf" value="%s"></form><script>document.getElementById("f").submit()</script>`, base, csrf)
	}))
	defer evil.Close()
	navigate(t, ctx, evil.URL)
	waitJS(t, ctx, "the refusal", `document.body.innerText.includes("refused")`)
	if s, err := c.GetSocket(ctxT(t), "hello"); err != nil || !s.Enabled {
		t.Errorf("after the cross-site post: %+v, %v; want it still enabled", s.Enabled, err)
	}

	// The page's own toggle works.
	var enabled string
	navigate(t, ctx, base+"/ui/")
	if err := chromedp.Run(ctx,
		chromedp.Click(`tr[data-socket="hello"] button.toggle`, chromedp.ByQuery),
		chromedp.WaitVisible(`tr[data-socket="hello"] button.toggle[aria-checked="false"]`, chromedp.ByQuery),
		chromedp.AttributeValue(`tr[data-socket="hello"] button.toggle`, "aria-checked", &enabled, nil, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	if s, err := c.GetSocket(ctxT(t), "hello"); err != nil || s.Enabled {
		t.Errorf("after the toggle: enabled %v, %v; want disabled", s.Enabled, err)
	}

	// Logging out ends the session: the dashboard asks for the token again.
	var url string
	loaded(t, ctx)
	if err := chromedp.Run(ctx, chromedp.Click(`.logout button`, chromedp.ByQuery),
		chromedp.WaitVisible("#token", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	navigate(t, ctx, base+"/ui/")
	if err := chromedp.Run(ctx, chromedp.WaitVisible("#token", chromedp.ByQuery), chromedp.Location(&url)); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(url, "/ui/login") {
		t.Errorf("after logging out the dashboard is at %s", url)
	}
}
