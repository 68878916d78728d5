package api

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/socketd/socketd"
)

// loggedIn returns a browserish client logged in to h's dashboard.
func loggedIn(t *testing.T, h *harness) *browserish {
	t.Helper()
	b := newBrowserish(h)
	if resp, body := b.do("POST", "/ui/login", "", url.Values{"token": {testToken}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("log in: %s\n%s", resp.Status, body)
	}
	return b
}

// record writes connections straight to h's history and returns them with
// their ids.
func record(t *testing.T, h *harness, cs ...socketd.Connection) []socketd.Connection {
	t.Helper()
	for i := range cs {
		if err := h.db.BeginConnection(h.ctx(), &cs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return cs
}

var rowIDs = regexp.MustCompile(`<tr data-connection="(\d+)"`)

// connectionRows returns the ids of the connection rows of a page, in order.
func connectionRows(body string) []int64 {
	var ids []int64
	for _, m := range rowIDs.FindAllStringSubmatch(body, -1) {
		id, _ := strconv.ParseInt(m[1], 10, 64)
		ids = append(ids, id)
	}
	return ids
}

// TestDashboardHistory: the history page filters, pages and exports.
func TestDashboardHistory(t *testing.T) {
	// Times are read and shown in the daemon's zone, testZone here.
	if _, off := time.Now().Zone(); off != 5*3600+1800 {
		t.Fatalf("the tests' zone is %s, not %s", time.Local, testZone)
	}
	h := newHarness(t)
	b := loggedIn(t, h)
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	var cs []socketd.Connection
	for i := range 120 {
		cs = append(cs, socketd.Connection{Socket: "a", State: socketd.ConnExited, RemoteIP: "192.0.2.1",
			StartedAt: start.Add(time.Duration(i) * time.Second)})
	}
	cs = append(cs,
		socketd.Connection{Socket: "b", State: socketd.ConnRefused, Reason: socketd.ReasonRate, RemoteIP: "2001:db8::7",
			StartedAt: start.Add(200 * time.Second), Error: "=HYPERLINK(\"http://evil.example\")"},
		socketd.Connection{Socket: "b", State: socketd.ConnFailed, RemoteIP: "192.0.2.2", StartedAt: start.Add(201 * time.Second)},
	)
	cs = record(t, h, cs...)

	resp, body := b.do("GET", "/ui/history", "", nil, nil)
	ids := connectionRows(body)
	if resp.StatusCode != http.StatusOK || len(ids) != 50 || ids[0] != cs[len(cs)-1].ID || ids[49] != cs[len(cs)-50].ID {
		t.Fatalf("first page: %s, rows %v", resp.Status, ids)
	}
	if !strings.Contains(body, `hx-get="/ui/history/table"`) {
		t.Error("the first page does not follow new connections")
	}
	next := between(body, `<a href="/ui/history?`, `" rel="next"`)
	if next == "" {
		t.Fatalf("no link to the next page:\n%s", body)

	}
	resp, body = b.do("GET", "/ui/history?"+strings.ReplaceAll(next, "&amp;", "&"), "", nil, nil)
	if ids := connectionRows(body); resp.StatusCode != http.StatusOK || len(ids) != 50 || ids[0] != cs[len(cs)-51].ID {
		t.Fatalf("second page: %s, rows %v", resp.Status, ids)
	}
	if strings.Contains(body, `hx-get="/ui/history/table`) || !strings.Contains(body, ">Newest</a>") {
		t.Error("an older page follows new connections, or has no way back to the newest")
	}

	for _, c := range []struct {
		query string
		want  []int64
	}{
		{"socket=b", []int64{cs[121].ID, cs[120].ID}},
		{"state=refused", []int64{cs[120].ID}},
		{"remote_ip=2001:0db8::7", []int64{cs[120].ID}},
		{"remote_ip=192.0.2.2&socket=b", []int64{cs[121].ID}},
		{"remote_ip=" + url.QueryEscape("::ffff:192.0.2.2"), []int64{cs[121].ID}},
		// A datetime-local input's value, in the daemon's time zone.
		{"since=" + start.Add(117*time.Second).Local().Format("2006-01-02T15:04:05") +
			"&until=" + start.Add(119*time.Second).Local().Format("2006-01-02T15:04:05") + "&socket=a",
			[]int64{cs[118].ID, cs[117].ID}},
		{"since=" + url.QueryEscape(start.Add(201*time.Second).Format(time.RFC3339)), []int64{cs[121].ID}},
	} {
		resp, body := b.do("GET", "/ui/history?"+c.query, "", nil, nil)
		if got := connectionRows(body); resp.StatusCode != http.StatusOK || fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: %s, rows %v, want %v", c.query, resp.Status, got, c.want)
		}
	}
	// The sockets of these rows were never defined (or were deleted): no
	// link to a page they do not have.
	if _, body := b.do("GET", "/ui/history?socket=b", "", nil, nil); !strings.Contains(body, `b <span class="muted">(deleted)</span>`) ||
		strings.Contains(body, `href="/ui/sockets/b"`) {
		t.Errorf("a deleted socket's rows link to it:\n%s", body)
	}
	// The API takes an IPv4 client written as IPv6 the same way.
	if got, _, err := h.c.ListConnections(h.ctx(), socketd.ConnectionFilter{RemoteIP: "::ffff:192.0.2.2"}); err != nil || len(got) != 1 || got[0].ID != cs[121].ID {
		t.Errorf("the API's history from ::ffff:192.0.2.2: %v, %v", got, err)
	}
	// The table alone, as the live page fetches it.
	if resp, body := b.do("GET", "/ui/history/table?socket=b", "", nil, nil); resp.StatusCode != http.StatusOK ||
		strings.Contains(body, "<html") || len(connectionRows(body)) != 2 {
		t.Errorf("the table alone: %s\n%s", resp.Status, body)
	}

	// Each filter that does not parse is told next to its field, and the
	// others keep what was typed.
	resp, body = b.do("GET", "/ui/history?socket=b&state=gone&remote_ip=banana&since=yesterday", "", nil, nil)
	if resp.StatusCode != http.StatusUnprocessableEntity || len(connectionRows(body)) != 0 {
		t.Errorf("bad filters: %s, rows %v", resp.Status, connectionRows(body))
	}
	for _, field := range []struct{ id, err string }{
		{"f-state", "e-state"}, {"f-remote", "e-remote"}, {"f-since", "e-since"},
	} {
		input := between(body, `id="`+field.id+`"`, ">")
		if !strings.Contains(input, `aria-invalid="true"`) || !strings.Contains(input, `aria-describedby="`+field.err+`"`) {
			t.Errorf("field %s is not marked invalid: %s", field.id, input)
		}
		if !strings.Contains(body, `class="field-error" id="`+field.err+`"`) {
			t.Errorf("no error %s next to its field", field.err)
		}
	}
	if !strings.Contains(body, `value="banana"`) || !strings.Contains(body, `value="yesterday"`) || !strings.Contains(body, `<option selected>b</option>`) {
		t.Errorf("bad filters lost what was typed:\n%s", body)
	}
	// An RFC 3339 time comes back as the date and time input takes it, in
	// the daemon's zone.
	if _, body := b.do("GET", "/ui/history?since=2026-01-02T10:00:00Z", "", nil, nil); !strings.Contains(body, `value="2026-01-02T15:30:00"`) {
		t.Errorf("an RFC 3339 time is not shown in the daemon's zone:\n%s", between(body, `id="f-since"`, ">"))
	}
	if resp, body := b.do("GET", "/ui/history?since=2026-01-02T10:00&until=2026-01-02T09:00", "", nil, nil); resp.StatusCode != http.StatusUnprocessableEntity ||
		!strings.Contains(body, `id="e-until"`) {
		t.Errorf("a range that ends before it starts: %s", resp.Status)
	}
	if resp, body := b.do("GET", "/ui/history?cursor=nonsense", "", nil, nil); resp.StatusCode != http.StatusUnprocessableEntity ||
		!strings.Contains(body, "start again from the newest") {
		t.Errorf("a cursor of no page: %s", resp.Status)
	}

	// The CSV holds every match, past a page, with the API's field names;
	// text a spreadsheet would run is quoted.
	resp, body = b.do("GET", "/ui/history.csv?socket=a", "", nil, nil)
	records, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv: %s %s, %v", resp.Status, resp.Header.Get("Content-Type"), err)
	}
	if len(records) != 121 || strings.Join(records[0], ",") != strings.Join(csvHeader, ",") {
		t.Fatalf("csv: %d records, header %v", len(records), records[0])
	}
	if records[1][0] != strconv.FormatInt(cs[119].ID, 10) || records[120][0] != strconv.FormatInt(cs[0].ID, 10) ||
		records[120][12] != cs[0].StartedAt.UTC().Format(time.RFC3339Nano) {
		t.Errorf("csv rows: first %v, last %v", records[1], records[120])
	}
	resp, body = b.do("GET", "/ui/history.csv?state=refused", "", nil, nil)
	records, _ = csv.NewReader(strings.NewReader(body)).ReadAll()
	if len(records) != 2 || records[1][19] != socketd.ReasonRate || records[1][20] != `'=HYPERLINK("http://evil.example")` {
		t.Errorf("csv of refusals: %v", records)
	}
	if resp, body := b.do("GET", "/ui/history.csv?remote_ip=banana", "", nil, nil); resp.StatusCode != http.StatusUnprocessableEntity ||
		!strings.Contains(body, "remote_ip") {
		t.Errorf("csv with a bad filter: %s %s", resp.Status, body)
	}

	b.cookie = nil
	for _, path := range []string{"/ui/history", "/ui/history.csv", "/ui/history/table"} {
		if resp, _ := b.do("GET", path, "", nil, nil); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("%s without a login: %s", path, resp.Status)
		}
	}
}

// csvHeader is the header the history's CSV must have: the API's names.
var csvHeader = []string{"id", "socket", "state", "remote_ip", "remote_port", "local_ip", "local_port",
	"pid", "uid", "peer_pid", "peer_uid", "peer_gid", "started_at", "ended_at", "duration_ms",
	"exit_code", "signal", "bytes_in", "bytes_out", "reason", "error"}

// TestDashboardConnectionPage: a connection's page shows its fields and
// its captured stderr, escaped.
func TestDashboardConnectionPage(t *testing.T) {
	h := newHarness(t)
	b := loggedIn(t, h)
	exit, ms := 3, int64(1500)
	ended := time.Now()
	cs := record(t, h, socketd.Connection{Socket: "a", State: socketd.ConnFailed, RemoteIP: "192.0.2.9", RemotePort: 4242,
		LocalIP: "192.0.2.1", LocalPort: 79, PID: 4321, StartedAt: ended.Add(-1500 * time.Millisecond), EndedAt: &ended,
		DurationMS: &ms, ExitCode: &exit, BytesIn: 7, BytesOut: 12,
		Log: []byte("line one\n<script>alert(1)</script>\n\xff\xfe the end\n")},
		socketd.Connection{Socket: "a", State: socketd.ConnExited, RemoteIP: "192.0.2.9"})
	resp, body := b.do("GET", "/ui/connections/"+strconv.FormatInt(cs[0].ID, 10), "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("connection page: %s\n%s", resp.Status, body)
	}
	for _, want := range []string{
		"<code>192.0.2.9:4242</code>", "<code>192.0.2.1:79</code>", `data-field="pid">4321<`, `data-field="exit_code">3<`,
		"1.5s", `data-field="bytes_in">7<`, `data-field="bytes_out">12<`, "state-failed",
		"line one\n&lt;script&gt;alert(1)&lt;/script&gt;\n\uFFFD the end",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("connection page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "/kill") || strings.Contains(body, "hx-get") {
		t.Error("a finished connection has a kill button, or follows events")
	}
	if !strings.Contains(body, `a <span class="muted">(deleted)</span>`) || strings.Contains(body, `href="/ui/sockets/a"`) {
		t.Error("the page of a deleted socket's connection links to the socket")
	}
	if _, body := b.do("GET", "/ui/connections/"+strconv.FormatInt(cs[1].ID, 10), "", nil, nil); !strings.Contains(body, "Nothing was captured") {
		t.Errorf("a connection without stderr:\n%s", body)
	}
	for _, id := range []string{"99999", "abc", "-1"} {
		if resp, _ := b.do("GET", "/ui/connections/"+id, "", nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("connection %s: %s", id, resp.Status)
		}
	}
}

// TestDashboardCharts: a socket's page charts its connections of the range
// it is asked for.
func TestDashboardCharts(t *testing.T) {
	h := newHarness(t)
	b := loggedIn(t, h)
	if _, _, err := h.c.PutSocket(h.ctx(), newSocket(t, "a")); err != nil {
		t.Fatal(err)
	}
	zero, one, ms := 0, 1, int64(50)
	now := time.Now()
	record(t, h,
		socketd.Connection{Socket: "a", State: socketd.ConnExited, StartedAt: now.Add(-time.Minute), DurationMS: &ms, ExitCode: &zero},
		socketd.Connection{Socket: "a", State: socketd.ConnExited, StartedAt: now.Add(-2 * time.Minute), DurationMS: &ms, ExitCode: &zero},
		socketd.Connection{Socket: "a", State: socketd.ConnFailed, StartedAt: now.Add(-3 * time.Hour), DurationMS: &ms, ExitCode: &one},
		socketd.Connection{Socket: "a", State: socketd.ConnRefused, StartedAt: now.Add(-time.Minute), Reason: socketd.ReasonPerSource},
	)
	resp, body := b.do("GET", "/ui/sockets/a", "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("socket page: %s", resp.Status)
	}
	for _, want := range []string{
		`data-chart="steps"`, "2 accepted, 1 refused", `data-chart="durations"`, "2 finished",
		`<code>exit 0</code></th><td><meter min="0" max="2" value="2">`, `<code>per_source</code>`,
		`hx-get="/ui/sockets/a/charts?range=1h"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("socket page lacks %q", want)
		}
	}
	if strings.Contains(body, "<code>exit 1</code>") {
		t.Error("the last hour's charts count a connection of three hours ago")
	}
	// A day's charts are drawn once, not again as connections end.
	if _, body := b.do("GET", "/ui/sockets/a?range=24h", "", nil, nil); strings.Contains(body, "/charts?range=") ||
		!strings.Contains(body, "per 15 minutes") {
		t.Errorf("the page of a day's charts refreshes them, or lacks them")
	}
	resp, body = b.do("GET", "/ui/sockets/a/charts?range=24h", "", nil, nil)
	if resp.StatusCode != http.StatusOK || strings.Contains(body, "<html") || !strings.Contains(body, "3 accepted, 1 refused") ||
		!strings.Contains(body, "per 15 minutes") || !strings.Contains(body, "<code>exit 1</code>") {
		t.Errorf("the charts of the last day: %s\n%s", resp.Status, body)
	}
	// The data a chart draws: 96 quarters of an hour of times, accepted
	// and refused; the two connections of the last minutes and the
	// refusal in the last quarter or two, the one of three hours ago
	// twelve quarters before.
	var steps [3][]int64
	if err := json.Unmarshal([]byte(html.UnescapeString(between(body, `data-chart="steps" data-values="`, `"`))), &steps); err != nil {
		t.Fatal(err)
	}
	var accepted, refused, recent int64
	for i := range steps[0] {
		accepted += steps[1][i]
		refused += steps[2][i]
		if i >= 94 {
			recent += steps[1][i]
		}
	}
	if len(steps[0]) != 96 || steps[0][1]-steps[0][0] != 15*60 || accepted != 3 || refused != 1 || recent != 2 {
		t.Errorf("per step data: %v", steps)
	}
}

// TestDashboardRunningConnection: a running connection's page, and its row
// in the history, show the pid and the bytes so far that only the runtime
// knows; the page has a kill button and follows its socket's events.
func TestDashboardRunningConnection(t *testing.T) {
	h := newHarness(t)
	b := loggedIn(t, h)
	cs := record(t, h, socketd.Connection{Socket: "a", State: socketd.ConnRunning, RemoteIP: "192.0.2.9", RemotePort: 4242})
	id := cs[0].ID
	h.rt.mu.Lock()
	h.rt.running[id] = &socketd.Connection{ID: id, Socket: "a", State: socketd.ConnRunning, PID: 777, BytesIn: 9, BytesOut: 11}
	h.rt.mu.Unlock()
	_, body := b.do("GET", "/ui/connections/"+strconv.FormatInt(id, 10), "", nil, nil)
	for _, want := range []string{`data-field="pid">777<`, `data-field="bytes_in">9<`, `data-field="bytes_out">11<`,
		`action="/ui/connections/` + strconv.FormatInt(id, 10) + `/kill"`, `hx-get="/ui/connections/` + strconv.FormatInt(id, 10) + `/detail"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the running connection's page lacks %s:\n%s", want, body)
		}
	}
	_, body = b.do("GET", "/ui/history", "", nil, nil)
	if !strings.Contains(body, `<td class="num" data-label="Bytes in">9</td>`) {
		t.Errorf("the history's running row lacks its bytes so far:\n%s", body)
	}
}
