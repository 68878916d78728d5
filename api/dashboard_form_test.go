package api

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/internal/seed"
)

// withCSRF returns a client logged in to the harness's dashboard, and the
// CSRF token of its session.
func withCSRF(t *testing.T, h *harness) (*browserish, string) {
	t.Helper()
	b := loggedIn(t, h)
	_, body := b.do("GET", "/ui/new", "", nil, nil)
	csrf := between(body, `name="csrf" value="`, `"`)
	if csrf == "" {
		t.Fatalf("no CSRF token in the form:\n%s", body)
	}
	return b, csrf
}

// socketForm returns the values a browser posts for the socket form with
// the defaults a new socket's form shows, then kv (name, value, ...).
func socketForm(csrf string, kv ...string) url.Values {
	v := url.Values{"csrf": {csrf}, "accept": {"true"}, "enabled": {"true"}, "stderr": {"log"}}
	for i := 0; i < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// fieldHTML returns the HTML of the form's field id (its container, the
// control, its errors and help), failing the test if it has none.
func fieldHTML(t *testing.T, body, id string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, `id="`+id+`-field"`)
	if !ok {
		t.Fatalf("no field %s in the page:\n%s", id, body)
	}
	end := len(rest)
	for _, next := range []string{`<div class="field`, "</fieldset>"} {
		if i := strings.Index(rest, next); i >= 0 && i < end {
			end = i
		}
	}
	return rest[:end]
}

// wantField checks that field id of the page is marked invalid and shows
// each of errs, and holds the value typed.
func wantField(t *testing.T, body, id, typed string, errs ...string) {
	t.Helper()
	f := fieldHTML(t, body, id)
	if !strings.Contains(f, `aria-invalid="true"`) || !strings.Contains(f, `id="`+id+`-error"`) ||
		!strings.Contains(f, `aria-describedby="`+id+`-error`) {
		t.Errorf("field %s is not marked invalid with its errors:\n%s", id, f)
	}
	for _, e := range errs {
		if !strings.Contains(f, e) {
			t.Errorf("field %s does not say %q:\n%s", id, e, f)
		}
	}
	if !strings.Contains(f, typed) {
		t.Errorf("field %s lost what was typed, %q:\n%s", id, typed, f)
	}
}

// TestDashboardCreatesSocket: the form creates a socket as POST
// /v1/sockets does, every kind of field taken, and shows its page.
func TestDashboardCreatesSocket(t *testing.T) {
	h := newHarness(t)
	b, csrf := withCSRF(t, h)
	resp, body := b.do("GET", "/ui/new", "", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<form method="post" action="/ui/new"`) ||
		!strings.Contains(fieldHTML(t, body, "f-accept"), "checked") {
		t.Fatalf("the new socket's form: %s\n%s", resp.Status, body)
	}
	exe := testCommand(t)
	events := h.follow("", "")
	applies := h.rt.applyCount()
	form := socketForm(csrf, "name", "hello", "description", "says hello",
		"listen", "127.0.0.1:0\r\n\r\n  [::1]:0  \r\n", "command", exe+"\r\n-test.run=^$\r\n\r\n two words \r\n",
		"environment", "GREETING=hello world\r\nEMPTY=\r\nEQ=a=b", "stderr", "null", "max_connections", "5",
		"rate_limit/per_second", "2.5", "rate_limit/burst", "3", "ip_address_allow", "localhost\n192.0.2.0/24",
		"ip_address_deny", "any", "nice", "3", "standard_input", "socket")
	form.Del("enabled")
	resp, body = b.do("POST", "/ui/new", "", form, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/sockets/hello" {
		t.Fatalf("create: %s to %s\n%s", resp.Status, resp.Header.Get("Location"), body)
	}
	got, err := h.c.GetSocket(h.ctx(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	nice := 3
	want := socketd.NewSocket()
	want.Name, want.Description, want.Listen = "hello", "says hello", []string{"127.0.0.1:0", "[::1]:0"}
	want.Command = []string{exe, "-test.run=^$", "", " two words "}
	want.Environment = map[string]string{"GREETING": "hello world", "EMPTY": "", "EQ": "a=b"}
	want.Stderr, want.MaxConnections, want.Nice, want.StandardInput = "null", 5, &nice, "socket"
	want.RateLimit = &socketd.RateLimit{PerSecond: 2.5, Burst: 3}
	want.IPAddressAllow, want.IPAddressDeny = []string{"localhost", "192.0.2.0/24"}, []string{"any"}
	want.Enabled = false
	got.Status, got.CreatedAt, got.UpdatedAt = nil, want.CreatedAt, want.UpdatedAt
	if !reflect.DeepEqual(got, want) {
		t.Errorf("created\n got %+v\nwant %+v", got, want)
	}
	if h.rt.applyCount() == applies {
		t.Error("creating through the form did not reconcile")
	}
	events.expect(socketd.EventSocketCreated, "hello")

	// The name is taken: the name field says so.
	form.Set("description", "another")
	resp, body = b.do("POST", "/ui/new", "", form, nil)
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("a taken name: %s\n%s", resp.Status, body)
	}
	wantField(t, body, "f-name", `value="hello"`, "is taken by another socket")
	if s, _ := h.c.GetSocket(h.ctx(), "hello"); s.Description != "says hello" {
		t.Errorf("a taken name replaced the socket: %+v", s)
	}
	// The refusal published nothing: the next event is the next write's.
	if err := h.c.DeleteSocket(h.ctx(), "hello"); err != nil {
		t.Fatal(err)
	}
	events.expect(socketd.EventSocketDeleted, "hello")
}

// TestDashboardFormShowsErrors: input the API refuses comes back with
// status 422, each error next to its field, marked for assistive
// technology, and everything typed kept; nothing is saved.
func TestDashboardFormShowsErrors(t *testing.T) {
	h := newHarness(t)
	b, csrf := withCSRF(t, h)

	// What validation refuses.
	form := socketForm(csrf, "name", "hello", "description", `<b>"the" one</b>`,
		"listen", "13063\r\n\r\nnot-an-address\r\n", "command", "/nonexistent/prog\r\n--flag",
		"environment", "A=1\r\nREMOTE_ADDR=1.2.3.4", "memory_max", "lots", "on_limit", "refuse")
	resp, body := b.do("POST", "/ui/new", "", form, nil)
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("invalid input: %s\n%s", resp.Status, body)
	}
	wantField(t, body, "f-listen", "13063\r\n\r\nnot-an-address", `line 3: &#34;not-an-address&#34; is not a port`)
	wantField(t, body, "f-command", "/nonexistent/prog\r\n--flag", "line 1: /nonexistent/prog does not exist")
	wantField(t, body, "f-environment", "REMOTE_ADDR=1.2.3.4", "line 2, REMOTE_ADDR: is set by socketd")
	wantField(t, body, "f-memory_max", `value="lots"`, `&#34;lots&#34; is not bytes`)
	if f := fieldHTML(t, body, "f-description"); !strings.Contains(f, `value="&lt;b&gt;&#34;the&#34; one&lt;/b&gt;"`) {
		t.Errorf("the description typed is lost:\n%s", f)
	}
	if f := fieldHTML(t, body, "f-on_limit"); !strings.Contains(f, `<option value="refuse" selected>`) {
		t.Errorf("the choice made is lost:\n%s", f)
	}
	if f := fieldHTML(t, body, "f-name"); strings.Contains(f, "aria-invalid") {
		t.Errorf("a valid field is marked invalid:\n%s", f)
	}
	summary := between(body, `id="form-errors"`, "</div>")
	for _, want := range []string{`href="#f-listen"`, `href="#f-command"`, `href="#f-memory_max"`, "4 fields need a change"} {
		if !strings.Contains(summary, want) {
			t.Errorf("the summary has no %s:\n%s", want, summary)
		}
	}
	// The groups holding errors are open; the rest, left alone, closed.
	if !strings.Contains(body, `id="group-isolation" open`) || strings.Contains(body, `id="group-sockets" open`) {
		t.Errorf("open groups are not those with errors:\n%s", body)
	}
	if _, err := h.c.GetSocket(h.ctx(), "hello"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("invalid input saved a socket: %v", err)
	}

	// What cannot even be read: the form says so before the API is asked.
	form = socketForm(csrf, "name", "hello", "listen", "13063", "command", testCommand(t),
		"max_connections", "ten", "environment", "NOEQUALS")
	resp, body = b.do("POST", "/ui/new", "", form, nil)
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("unreadable input: %s\n%s", resp.Status, body)
	}
	wantField(t, body, "f-max_connections", `value="ten"`, "&#34;ten&#34; is not a number")
	wantField(t, body, "f-environment", "NOEQUALS", "line 1: &#34;NOEQUALS&#34; has no “=”: write KEY=VALUE")

	// A number the API's strict decoding refuses, at its field.
	form.Set("max_connections", "1.5")
	form.Del("environment")
	resp, body = b.do("POST", "/ui/new", "", form, nil)
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("a fraction for an integer: %s\n%s", resp.Status, body)
	}
	wantField(t, body, "f-max_connections", `value="1.5"`, "must be an integer, not a number")
	if _, err := h.c.GetSocket(h.ctx(), "hello"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("invalid input saved a socket: %v", err)
	}
}

// TestDashboardEditsSocket: the edit form holds the definition, replaces
// it, cannot rename the socket, and does not overwrite a change made while
// it was open.
func TestDashboardEditsSocket(t *testing.T) {
	h := newHarness(t)
	b, csrf := withCSRF(t, h)
	exe := testCommand(t)
	orig := newSocket(t, "hello")
	orig.Environment = map[string]string{"B": "2", "A": "1"}
	created, _, err := h.c.PutSocket(h.ctx(), orig)
	if err != nil {
		t.Fatal(err)
	}
	events := h.follow("", "")
	if resp, _ := b.do("GET", "/ui/sockets/nope/edit", "", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("editing an unknown socket: %s", resp.Status)
	}
	resp, body := b.do("GET", "/ui/sockets/hello/edit", "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the edit form: %s\n%s", resp.Status, body)
	}
	version := between(body, `name="version" value="`, `"`)
	if name := fieldHTML(t, body, "f-name"); !strings.Contains(name, `value="hello"`) || !strings.Contains(name, "readonly") {
		t.Errorf("the name is not shown read-only:\n%s", name)
	}
	for id, want := range map[string]string{"f-listen": "127.0.0.1:0", "f-command": exe + "\n-test.run=^$", "f-environment": "A=1\nB=2"} {
		if f := fieldHTML(t, body, id); !strings.Contains(f, want) {
			t.Errorf("field %s does not hold %q:\n%s", id, want, f)
		}
	}

	edit := func(version, description string) (*http.Response, string) {
		form := socketForm(csrf, "version", version, "name", "renamed", "description", description,
			"listen", "127.0.0.1:0", "command", exe+"\n-test.run=^$", "environment", "A=1\nB=2", "max_connections", "7")
		return b.do("POST", "/ui/sockets/hello/edit", "", form, nil)
	}
	applies := h.rt.applyCount()
	resp, body = edit(version, "edited")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/sockets/hello" {
		t.Fatalf("save: %s to %s\n%s", resp.Status, resp.Header.Get("Location"), body)
	}
	if h.rt.applyCount() == applies {
		t.Error("the edit did not reconcile")
	}
	events.expect(socketd.EventSocketChanged, "hello")
	got, err := h.c.GetSocket(h.ctx(), "hello")
	if err != nil || got.Description != "edited" || got.MaxConnections != 7 || !got.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("after the edit: %+v, %v", got, err)
	}
	if _, err := h.c.GetSocket(h.ctx(), "renamed"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("the edit made another socket: %v", err)
	}

	// A change through the API while the form is open: the form's save
	// is refused and says so, keeping what was typed.
	_, body = b.do("GET", "/ui/sockets/hello/edit", "", nil, nil)
	version = between(body, `name="version" value="`, `"`)
	if _, err := h.c.PatchSocket(h.ctx(), "hello", map[string]any{"description": "from the API"}); err != nil {
		t.Fatal(err)
	}
	events.expect(socketd.EventSocketChanged, "hello")
	applies = h.rt.applyCount()
	resp, body = edit(version, "from the form")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "was changed at") ||
		!strings.Contains(fieldHTML(t, body, "f-description"), `value="from the form"`) {
		t.Fatalf("save over a change: %s\n%s", resp.Status, body)
	}
	if s, _ := h.c.GetSocket(h.ctx(), "hello"); s.Description != "from the API" {
		t.Errorf("the form overwrote a change made meanwhile: %q", s.Description)
	}
	if h.rt.applyCount() != applies {
		t.Error("a refused edit reconciled")
	}
	// Saved again, from the form that said so, it replaces the change.
	newVersion := between(body, `name="version" value="`, `"`)
	if newVersion == version || newVersion == "" {
		t.Fatalf("the form's version stays %q", newVersion)
	}
	if resp, body := edit(newVersion, "from the form"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save again: %s\n%s", resp.Status, body)
	}
	// The next event is this save's: the refused one published none.
	events.expect(socketd.EventSocketChanged, "hello")
	if s, _ := h.c.GetSocket(h.ctx(), "hello"); s.Description != "from the form" {
		t.Errorf("after saving again: %q", s.Description)
	}

	// Deleted while the form is open: saving does not bring it back.
	_, body = b.do("GET", "/ui/sockets/hello/edit", "", nil, nil)
	version = between(body, `name="version" value="`, `"`)
	if err := h.c.DeleteSocket(h.ctx(), "hello"); err != nil {
		t.Fatal(err)
	}
	events.expect(socketd.EventSocketDeleted, "hello")
	if resp, body := edit(version, "again"); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "was deleted") {
		t.Errorf("save of a deleted socket: %s\n%s", resp.Status, body)
	}
	if _, err := h.c.GetSocket(h.ctx(), "hello"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("the edit of a deleted socket made it again: %v", err)
	}
}

// TestDashboardEditSaysWhatItCannotShow: a saved value the edit form cannot
// hold exactly (a description on two lines, an argument with a line break)
// is pointed out at its field and in a notice at the top, as a warning: a
// plain GET shows no error, and what the form can hold (blanks around a
// description) is kept as saved by a save.
func TestDashboardEditSaysWhatItCannotShow(t *testing.T) {
	h := newHarness(t)
	b, csrf := withCSRF(t, h)
	s := newSocket(t, "hello")
	s.Description = "first line\nsecond line"
	s.Command = append(s.Command, "two\nlines")
	s.OnLimit, s.LimitMessage = "refuse", "  busy, try later  "
	if _, _, err := h.c.PutSocket(h.ctx(), s); err != nil {
		t.Fatal(err)
	}
	resp, body := b.do("GET", "/ui/sockets/hello/edit", "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the edit form: %s\n%s", resp.Status, body)
	}
	for _, bad := range []string{"<title>Error", `role="alert"`, "Nothing was saved", `aria-invalid`, `class="error-summary"`} {
		if strings.Contains(body, bad) {
			t.Errorf("a plain GET of the edit form shows an error (%s):\n%s", bad, body)
		}
	}
	notice := between(body, `<div class="notice cannot-show" id="form-inexact">`, "</div>")
	if !strings.Contains(notice, "cannot show 2 fields of this socket exactly as saved") ||
		!strings.Contains(notice, `<a href="#f-description">Description</a>: its saved value holds a line break`) ||
		!strings.Contains(notice, `<a href="#f-command">Command</a>: an argument holds a line break`) ||
		strings.Contains(notice, "f-limit_message") {
		t.Errorf("the notice:\n%s", notice)
	}
	for id, note := range map[string]string{"f-description": "its saved value holds a line break", "f-command": "an argument holds a line break"} {
		f := fieldHTML(t, body, id)
		if !strings.Contains(f, `id="`+id+`-note"`) || !strings.Contains(f, note) {
			t.Errorf("field %s does not say %q:\n%s", id, note, f)
		}
		if !strings.Contains(f, `aria-describedby="`+id+`-note `) {
			t.Errorf("field %s is not described by its note:\n%s", id, f)
		}
	}
	if f := fieldHTML(t, body, "f-limit_message"); !strings.Contains(f, `value="  busy, try later  "`) || strings.Contains(f, "-note") {
		t.Errorf("the limit message is not shown as saved:\n%s", f)
	}
	if !strings.Contains(body, `id="group-limits" open`) {
		t.Error("the limits group, with a value set, is closed")
	}

	// Saved with another field changed, the blanks of the limit message
	// stay; the description loses its line break, as the notice said.
	version := between(body, `name="version" value="`, `"`)
	form := socketForm(csrf, "version", version, "description", "first line second line",
		"listen", "127.0.0.1:0", "command", strings.Join(s.Command[:2], "\n"), "on_limit", "refuse",
		"limit_message", "  busy, try later  ", "max_connections", "9")
	if resp, body := b.do("POST", "/ui/sockets/hello/edit", "", form, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %s\n%s", resp.Status, body)
	}
	if got, err := h.c.GetSocket(h.ctx(), "hello"); err != nil || got.LimitMessage != "  busy, try later  " || got.MaxConnections != 9 {
		t.Errorf("after the save: %+v, %v", got, err)
	}
}

// TestDashboardDeletesSocket: the confirmation says what deleting does;
// confirmed, the socket is deleted as DELETE does.
func TestDashboardDeletesSocket(t *testing.T) {
	h := newHarness(t)
	b, csrf := withCSRF(t, h)
	if _, _, err := h.c.PutSocket(h.ctx(), newSocket(t, "hello")); err != nil {
		t.Fatal(err)
	}
	if resp, _ := b.do("GET", "/ui/sockets/nope/delete", "", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("deleting an unknown socket: %s", resp.Status)
	}
	resp, body := b.do("GET", "/ui/sockets/hello/delete", "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the confirmation: %s\n%s", resp.Status, body)
	}
	// The fake runtime reports one connection running.
	for _, want := range []string{"<h1>Delete hello?</h1>", "Its listener on <code>127.0.0.1:0</code> closes",
		"The connection running now finishes on its own", `action="/ui/sockets/hello/delete"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the confirmation does not say %q:\n%s", want, body)
		}
	}
	if _, err := h.c.GetSocket(h.ctx(), "hello"); err != nil {
		t.Fatalf("the confirmation deleted the socket: %v", err)
	}
	events := h.follow("", "")
	applies := h.rt.applyCount()
	resp, _ = b.do("POST", "/ui/sockets/hello/delete", "", url.Values{"csrf": {csrf}}, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("delete: %s to %s", resp.Status, resp.Header.Get("Location"))
	}
	if _, err := h.c.GetSocket(h.ctx(), "hello"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("after the delete: %v", err)
	}
	if h.rt.applyCount() == applies {
		t.Error("the delete did not reconcile")
	}
	events.expect(socketd.EventSocketDeleted, "hello")
	// Sent twice: it is gone, as asked.
	if resp, _ := b.do("POST", "/ui/sockets/hello/delete", "", url.Values{"csrf": {csrf}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("delete again: %s", resp.Status)
	}
}

// postFiles posts the import form with files, as a browser does
// (multipart/form-data).
func (b *browserish) postFiles(path string, fields url.Values, files map[string]string) (*http.Response, string) {
	b.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, vs := range fields {
		for _, v := range vs {
			mw.WriteField(k, v)
		}
	}
	for name, content := range files {
		w, _ := mw.CreateFormFile("files", name)
		io.WriteString(w, content)
	}
	mw.Close()
	req, err := http.NewRequestWithContext(b.t.Context(), "POST", b.base+path, &buf)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Origin", b.base)
	req.AddCookie(b.cookie)
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

// TestDashboardImports: the import page previews what a text defines,
// with every directive left out, saves nothing until asked, then saves as
// POST /v1/import does; errors keep the text.
func TestDashboardImports(t *testing.T) {
	h := newHarness(t)
	b, csrf := withCSRF(t, h)
	exe := testCommand(t)
	units := helloUnits(exe, "")
	events := h.follow("", "")
	applies := h.rt.applyCount()
	form := url.Values{"csrf": {csrf}, "format": {"systemd"}, "name": {"hello"}, "text": {units}, "action": {"preview"}}
	resp, body := b.do("POST", "/ui/import", "", form, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("preview: %s\n%s", resp.Status, body)
	}
	for _, want := range []string{"Preview: nothing is saved yet", `data-socket="hello"`, `&#34;listen&#34;: [`,
		"<code>WantedBy</code>", "[Socket]\nListenStream=13063", `<input type="radio" id="format-1" name="format" value="systemd" checked>`} {
		if !strings.Contains(body, want) {
			t.Errorf("the preview has no %q:\n%s", want, body)
		}
	}
	if _, err := h.c.GetSocket(h.ctx(), "hello"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Fatalf("the preview saved the socket: %v", err)
	}
	if h.rt.applyCount() != applies {
		t.Error("the preview reconciled")
	}
	form.Set("action", "import")
	resp, body = b.do("POST", "/ui/import", "", form, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `Imported 1 socket: <a href="/ui/sockets/hello">hello</a>`) {
		t.Fatalf("import: %s\n%s", resp.Status, body)
	}
	if s, err := h.c.GetSocket(h.ctx(), "hello"); err != nil || !reflect.DeepEqual(s.Command, []string{exe}) {
		t.Errorf("imported: %+v, %v", s, err)
	}
	if h.rt.applyCount() == applies {
		t.Error("the import did not reconcile")
	}
	events.expect(socketd.EventSocketCreated, "hello")

	// The files of a unit pair, the service first: the .socket names the
	// socket.
	service := strings.Replace(strings.Replace(seed.ServiceUnit, seed.Script, exe, 1), "DynamicUser=true\n", "", 1)
	resp, body = b.postFiles("/ui/import", url.Values{"csrf": {csrf}, "format": {""}, "action": {"preview"}},
		map[string]string{"greet@.service": service, "greet.socket": seed.SocketUnit})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `data-socket="greet"`) ||
		!strings.Contains(body, `value="greet"`) || !strings.Contains(body, "ListenStream=13063") {
		t.Errorf("preview of files: %s\n%s", resp.Status, body)
	}

	for _, c := range []struct {
		what, format, name, text string
		field, want              string
	}{
		{"no name", "systemd", "", units, "import-name-field", "give the .socket unit&#39;s name"},
		{"no name, the format told from the text", "", "", units, "import-name-field", "give the .socket unit&#39;s name"},
		{"a line that is not inetd's", "inetd", "", "daytime stream tcp\n", "import-error", "the inetd text cannot be imported: line 1"},
		{"nothing", "", "", " \n", "import-error", "nothing to import"},
		{"a program missing", "inetd", "", "7777 stream tcp nowait nobody /nonexistent/daemon daemon\n",
			`data-socket="port-7777"`, "command/0: /nonexistent/daemon does not exist"},
	} {
		form := url.Values{"csrf": {csrf}, "format": {c.format}, "name": {c.name}, "text": {c.text}, "action": {"import"}}
		resp, body := b.do("POST", "/ui/import", "", form, nil)
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("%s: %s\n%s", c.what, resp.Status, body)
			continue
		}
		if _, part, _ := strings.Cut(body, c.field); !strings.Contains(part, c.want) {
			t.Errorf("%s: no %q after %s:\n%s", c.what, c.want, c.field, body)
		}
		// The summary says it too, and takes the focus.
		if summary := between(body, `<div class="error-summary" role="alert" tabindex="-1" id="import-error" autofocus>`, "</div>"); !strings.Contains(summary, c.want) {
			t.Errorf("%s: the summary does not say %q:\n%s", c.what, c.want, body)
		} else if c.field == "import-name-field" && !strings.Contains(summary, `<a href="#import-name">Name</a>`) {
			t.Errorf("%s: the summary does not link to the name:\n%s", c.what, summary)
		} else if strings.HasPrefix(c.field, "data-socket") && !strings.Contains(summary, `<a href="#import-socket-0">port-7777</a>: command/0:`) {
			t.Errorf("%s: the summary does not link to the socket:\n%s", c.what, summary)
		}
		if !strings.Contains(body, c.text) {
			t.Errorf("%s: the text is lost:\n%s", c.what, body)
		}
	}
	if _, err := h.c.GetSocket(h.ctx(), "port-7777"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("an invalid import saved a socket: %v", err)
	}
}

// TestDashboardFormPostsAreGuarded: each of the form's writes needs the
// session's CSRF token and this origin, as the dashboard's other writes
// do.
func TestDashboardFormPostsAreGuarded(t *testing.T) {
	h := newHarness(t)
	b, csrf := withCSRF(t, h)
	orig, _, err := h.c.PutSocket(h.ctx(), newSocket(t, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	exe := testCommand(t)
	posts := map[string]url.Values{
		"/ui/new": socketForm("", "name", "other", "listen", "127.0.0.1:0", "command", exe),
		"/ui/sockets/hello/edit": socketForm("", "version", orig.UpdatedAt.Format("2006-01-02T15:04:05.999999999Z07:00"),
			"description", "changed", "listen", "127.0.0.1:0", "command", exe),
		"/ui/sockets/hello/delete": {},
		"/ui/import":               {"format": {"inetd"}, "text": {"7777 stream tcp nowait nobody " + exe + " x\n"}, "action": {"import"}},
	}
	for path, form := range posts {
		form.Del("csrf")
		if resp, _ := b.do("POST", path, "", form, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s without the CSRF token: %s", path, resp.Status)
		}
		form.Set("csrf", csrf)
		if resp, _ := b.do("POST", path, "http://127.0.0.1:1", form, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s from another origin: %s", path, resp.Status)
		}
	}
	list, err := h.c.ListSockets(h.ctx())
	if err != nil || len(list) != 1 || !list[0].UpdatedAt.Equal(orig.UpdatedAt) {
		t.Errorf("after the refused posts: %+v, %v", list, err)
	}
	// The token and the origin together pass, which makes the refusals
	// above the guard's and not the handlers'.
	if resp, body := b.do("POST", "/ui/sockets/hello/edit", "", posts["/ui/sockets/hello/edit"], nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the edit with its token: %s\n%s", resp.Status, body)
	}
}

// postedVersions returns the versions an import page posts back with its
// import: name=updated_at each.
func postedVersions(t *testing.T, body string) []string {
	t.Helper()
	var out []string
	for _, part := range strings.Split(body, `<input type="hidden" name="version" value="`)[1:] {
		v, _, _ := strings.Cut(part, `"`)
		out = append(out, html.UnescapeString(v))
	}
	return out
}

// TestDashboardImportKeepsChanges: the import page replaces only the
// definitions its preview showed, and all of its sockets or none. The
// preview says which sockets exist and are replaced; a socket changed,
// created or deleted since, or one that exists and was never previewed, is
// not replaced, nothing of the import is saved, and the page says why and
// shows the preview again, from which the import goes through.
func TestDashboardImportKeepsChanges(t *testing.T) {
	h := newHarness(t)
	b, csrf := withCSRF(t, h)
	exe := testCommand(t)
	user := "root"
	if os.Geteuid() != 0 {
		user = currentUser(t)
	}
	conf := "7771 stream tcp nowait " + user + " " + exe + " one\n" +
		"7772 stream tcp nowait " + user + " " + exe + " two\n"
	mine := newSocket(t, "port-7771")
	mine.Description = "edited by hand"
	if _, _, err := h.c.PutSocket(h.ctx(), mine); err != nil {
		t.Fatal(err)
	}
	events := h.follow("", "")
	post := func(action string, versions []string) (*http.Response, string) {
		t.Helper()
		form := url.Values{"csrf": {csrf}, "format": {"inetd"}, "text": {conf}, "action": {action}, "version": versions}
		return b.do("POST", "/ui/import", "", form, nil)
	}
	description := func(name string) string {
		t.Helper()
		s, err := h.c.GetSocket(h.ctx(), name)
		if socketd.ErrorCode(err) == socketd.CodeNotFound {
			return "(none)"
		}
		if err != nil {
			t.Fatal(err)
		}
		return s.Description
	}
	stamp := func(name string) (version, shown string) {
		t.Helper()
		s, err := h.c.GetSocket(h.ctx(), name)
		if err != nil {
			t.Fatal(err)
		}
		return s.UpdatedAt.Format(time.RFC3339Nano), s.UpdatedAt.Format("2006-01-02 15:04:05 MST")
	}
	// refused checks a 409 that says, on each socket's card and in the
	// summary, why it was not imported, and saved nothing.
	refused := func(what string, resp *http.Response, body string, cards map[int]string, want map[string]string) {
		t.Helper()
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, `id="import-conflict"`) {
			t.Fatalf("%s: %s\n%s", what, resp.Status, body)
		}
		summary := between(body, `id="import-error"`, "</div>")
		if !strings.Contains(summary, "autofocus") {
			t.Errorf("%s: the summary is not focused:\n%s", what, summary)
		}
		for i, detail := range cards {
			id := fmt.Sprintf("import-socket-%d", i)
			if card := between(body, `id="`+id+`"`, "</article>"); !strings.Contains(card, detail) {
				t.Errorf("%s: card %d does not say %q:\n%s", what, i, detail, card)
			}
			if !strings.Contains(summary, `<a href="#`+id+`">`) {
				t.Errorf("%s: the summary has no link to card %d:\n%s", what, i, summary)
			}
		}
		for name, d := range want {
			if got := description(name); got != d {
				t.Errorf("%s: %s is %q, want %q", what, name, got, d)
			}
		}
	}

	// Imported without a preview: port-7771 exists, so nothing is saved,
	// not even the new port-7772, and the page says what would be
	// replaced.
	applies := h.rt.applyCount()
	version, shown := stamp("port-7771")
	resp, body := post("import", nil)
	refused("an import over a socket never previewed", resp, body,
		map[int]string{0: "exists already, last changed at " + shown},
		map[string]string{"port-7771": "edited by hand", "port-7772": "(none)"})
	if got := postedVersions(t, body); !slices.Equal(got, []string{"port-7771=" + version, "port-7772="}) {
		t.Errorf("the refused import's versions: %q", got)
	}
	if h.rt.applyCount() != applies {
		t.Error("a refused import reconciled")
	}

	// The preview says which socket is replaced and since when, and which
	// is new.
	resp, body = post("preview", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("preview: %s\n%s", resp.Status, body)
	}
	if notice := between(body, `id="import-replaces"`, "</div>"); !strings.Contains(notice, "Importing replaces a socket saved now") ||
		!strings.Contains(notice, `<a href="/ui/sockets/port-7771">port-7771</a> (last changed at `+shown+`)`) ||
		strings.Contains(notice, "port-7772") {
		t.Errorf("the preview does not say what it replaces:\n%s", notice)
	}
	if card := between(body, `id="import-socket-0"`, "</article>"); !strings.Contains(card, "Replaces the definition saved now, last changed at "+shown) {
		t.Errorf("port-7771's card:\n%s", card)
	}
	if card := between(body, `id="import-socket-1"`, "</article>"); !strings.Contains(card, "A new socket.") {
		t.Errorf("port-7772's card:\n%s", card)
	}
	versions := postedVersions(t, body)
	if !slices.Equal(versions, []string{"port-7771=" + version, "port-7772="}) {
		t.Errorf("the preview's versions: %q", versions)
	}

	// Changed after the preview: nothing is imported.
	if _, err := h.c.PatchSocket(h.ctx(), "port-7771", map[string]any{"description": "edited again"}); err != nil {
		t.Fatal(err)
	}
	events.expect(socketd.EventSocketChanged, "port-7771")
	_, shown = stamp("port-7771")
	applies = h.rt.applyCount()
	resp, body = post("import", versions)
	refused("an import over a change made after the preview", resp, body,
		map[int]string{0: "was changed at " + shown + ", after the preview"},
		map[string]string{"port-7771": "edited again", "port-7772": "(none)"})
	if h.rt.applyCount() != applies {
		t.Error("a refused import reconciled")
	}

	// Imported from the page that said so, both are saved, reconciled and
	// published (and nothing before them was).
	resp, body = post("import", postedVersions(t, body))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Imported 2 sockets") {
		t.Fatalf("the import again: %s\n%s", resp.Status, body)
	}
	if d := description("port-7771"); d == "edited again" || description("port-7772") == "(none)" {
		t.Errorf("after the import port-7771 is %q and port-7772 %q", d, description("port-7772"))
	}
	if h.rt.applyCount() == applies {
		t.Error("the import did not reconcile")
	}
	events.expect(socketd.EventSocketCreated, "port-7772")
	events.expect(socketd.EventSocketChanged, "port-7771")

	// Deleted, and created, after the preview.
	if err := h.c.DeleteSocket(h.ctx(), "port-7772"); err != nil {
		t.Fatal(err)
	}
	events.expect(socketd.EventSocketDeleted, "port-7772")
	_, body = post("preview", nil)
	versions = postedVersions(t, body)
	if err := h.c.DeleteSocket(h.ctx(), "port-7771"); err != nil {
		t.Fatal(err)
	}
	other := newSocket(t, "port-7772")
	other.Description = "made meanwhile"
	if _, _, err := h.c.PutSocket(h.ctx(), other); err != nil {
		t.Fatal(err)
	}
	_, shown = stamp("port-7772")
	resp, body = post("import", versions)
	refused("an import after a delete and a create", resp, body,
		map[int]string{0: "was deleted after the preview", 1: "was created at " + shown + ", after the preview"},
		map[string]string{"port-7771": "(none)", "port-7772": "made meanwhile"})
	events.expect(socketd.EventSocketDeleted, "port-7771")
	events.expect(socketd.EventSocketCreated, "port-7772")
	// The refusal published nothing: the next event is the next write's.
	if err := h.c.DeleteSocket(h.ctx(), "port-7772"); err != nil {
		t.Fatal(err)
	}
	events.expect(socketd.EventSocketDeleted, "port-7772")
}

// TestDashboardTooLarge: a post over the body's bound (files to import,
// say) is answered 413 with what happened and what to do, not as a post
// from elsewhere; nothing is read or saved.
func TestDashboardTooLarge(t *testing.T) {
	h := newHarness(t)
	b, csrf := withCSRF(t, h)
	big := strings.Repeat("# a comment of inetd.conf, longer than anything socketd reads at once\n", maxBodyBytes/64)
	resp, body := b.postFiles("/ui/import", url.Values{"csrf": {csrf}, "format": {"inetd"}, "action": {"import"}},
		map[string]string{"inetd.conf": big + "7777 stream tcp nowait root /bin/cat cat\n"})
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("an upload over the bound: %s\n%s", resp.Status, body)
	}
	summary := between(body, `id="import-error"`, "</div>")
	if !strings.Contains(summary, "That is more than 1 MiB, the most socketd reads at once") ||
		!strings.Contains(summary, "Back button") || strings.Contains(body, "did not come from") {
		t.Errorf("the page does not say what happened:\n%s", body)
	}
	// A form as large, to another page: a line that says so.
	form := socketForm(csrf, "name", "big", "description", big, "listen", "127.0.0.1:0", "command", "/bin/cat")
	resp, body = b.do("POST", "/ui/new", "", form, nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "larger than 1 MiB") {
		t.Errorf("a form over the bound: %s\n%s", resp.Status, body)
	}
	if list, err := h.c.ListSockets(h.ctx()); err != nil || len(list) != 0 {
		t.Errorf("after posts over the bound: %+v, %v", list, err)
	}
	// Below the bound, the same guard refuses a post without the token as
	// before.
	resp, body = b.do("POST", "/ui/new", "", socketForm("", "name", "small"), nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "did not come from") {
		t.Errorf("a small post without the token: %s\n%s", resp.Status, body)
	}
}
