package main

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/socketd/socketd/internal/testhandler"
)

// TestDashboardHistoryLive: in a real browser, the history page gets the
// row of a real connection without reloading; the connection's page shows
// its captured stderr; the socket's page draws its charts.
func TestDashboardHistoryLive(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	m, c := openMain(t, dir)
	base := "http://" + m.API.Addr()

	s := testhandler.Socket("chatty", testhandler.Stderr, "127.0.0.1:0")
	s.Description = "writes to stderr"
	if _, _, err := c.PutSocket(ctxT(t), s); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetSocket(ctxT(t), "chatty")
	if err != nil || got.Status == nil || len(got.Status.Listening) == 0 {
		t.Fatalf("chatty: %+v, %v", got, err)
	}
	addr := got.Status.Listening[0]
	connect := func() {
		t.Helper()
		if got := testhandler.Answer(t, addr); got != "done\n" {
			t.Fatalf("chatty said %q", got)
		}
	}
	connect()

	login(t, ctx, base, readToken(t, dir))
	navigate(t, ctx, base+"/ui/history")
	rows := `document.querySelectorAll('#history tr[data-connection]')`
	waitJS(t, ctx, "the first connection's row", rows+`.length === 1`)
	waitJS(t, ctx, "the page to follow the events", `document.getElementById("live").dataset.state === "open"`)
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.socketdMarker = 1`, nil)); err != nil {
		t.Fatal(err)
	}
	connect()
	waitJS(t, ctx, "the second connection's row, without a reload", rows+`.length === 2 && `+
		rows+`[0].dataset.state === "exited" && window.socketdMarker === 1`)
	screenshot(t, ctx, "history")

	// A burst of connections: the table follows them to the last, but
	// fetches itself at most once a second, not once an event.
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.socketdFetches = 0; window.socketdStart = Date.now();
		document.body.addEventListener("htmx:beforeRequest", function () { window.socketdFetches++; });`, nil)); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		connect()
	}
	waitJS(t, ctx, "the burst's rows", rows+`.length === 22 && window.socketdMarker === 1`)
	var paced struct{ Fetches, Elapsed float64 }
	if err := chromedp.Run(ctx, chromedp.Evaluate(`({Fetches: window.socketdFetches, Elapsed: Date.now() - window.socketdStart})`, &paced)); err != nil {
		t.Fatal(err)
	}
	if paced.Fetches > paced.Elapsed/1000+2 {
		t.Errorf("the table was fetched %v times in %v ms for 40 events: want at most once a second", paced.Fetches, paced.Elapsed)
	}
	t.Logf("the table was fetched %v times in %v ms for 40 events", paced.Fetches, paced.Elapsed)

	// A filter that does not parse is told next to its field.
	loaded(t, ctx)
	if err := chromedp.Run(ctx, chromedp.SendKeys("#f-remote", "not-an-ip", chromedp.ByQuery),
		chromedp.Submit("#f-remote", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the remote IP's error next to it", `document.querySelector('#f-remote').getAttribute("aria-invalid") === "true" && `+
		`document.querySelector('#f-remote').parentElement.querySelector('.field-error') !== null`)

	// The connection's page, from its row.
	navigate(t, ctx, base+"/ui/history?socket=chatty")
	if err := chromedp.Run(ctx,
		chromedp.WaitVisible(`#history tr[data-connection] a`, chromedp.ByQuery),
		chromedp.Click(`#history tr[data-connection] a`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the connection's stderr", `document.querySelector('#stderr') !== null && `+
		`document.querySelector('#stderr').textContent === "hello stderr\n"`)
	screenshot(t, ctx, "connection")

	// The socket's charts, drawn by uPlot: its canvases, and the bars.
	navigate(t, ctx, base+"/ui/sockets/chatty")
	waitJS(t, ctx, "the charts", `document.querySelectorAll('#charts .uplot canvas').length === 2 && `+
		`document.querySelector('#charts [data-chart="steps"] canvas').width > 100 && `+
		`document.querySelector('#charts meter').value === 22`)
	screenshot(t, ctx, "charts")
	// A connection ending refreshes them, without a reload.
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.socketdMarker = 2`, nil)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the page to follow the events", `document.getElementById("live").dataset.state === "open"`)
	connect()
	waitJS(t, ctx, "the charts to count one more connection", `document.querySelector('#charts meter').value === 23 && `+
		`document.querySelectorAll('#charts .uplot canvas').length === 2 && window.socketdMarker === 2`)
}
