package api

import (
	"errors"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/internal/seed"
)

// helloUnits are the seed's Hello World units, with the script at path and
// user lines in place of DynamicUser.
func helloUnits(path, user string) string {
	service := strings.Replace(seed.ServiceUnit, seed.Script, path, 1)
	return seed.SocketUnit + strings.Replace(service, "DynamicUser=true\n", user, 1)
}

// TestImportSystemd imports a socket unit and its service: the socket is
// saved, and whatever socketd does not express is listed; a dry run saves
// nothing.
func TestImportSystemd(t *testing.T) {
	h := newHarness(t)
	exe := testCommand(t)
	units := helloUnits(exe, "Group=nogroup\n")
	if os.Geteuid() != 0 {
		units = helloUnits(exe, "") // Group needs root
	}

	dry, err := h.c.Import(h.ctx(), units, ImportOptions{Name: "hello", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.GetSocket(h.ctx(), "hello"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Fatalf("a dry run saved the socket: %v", err)
	}
	res, err := h.c.Import(h.ctx(), units, ImportOptions{Format: "systemd", Name: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 1 || len(dry.Items) != 1 || !dry.DryRun || res.DryRun {
		t.Fatalf("import: %+v; dry run: %+v", res, dry)
	}
	got := res.Items[0]
	want := socketd.NewSocket()
	want.Name, want.Description, want.Listen = "hello", "OCTOI HelloWorld Socket for Per-Connection Servers", []string{"13063"}
	want.Command, want.IgnoreExitStatus = []string{exe}, true
	// An import spells out the streams, as systemd's defaults for them
	// are not socketd's.
	want.StandardInput, want.StandardOutput, want.Stderr = socketd.StdinSocket, socketd.StdoutSocket, socketd.StderrNull
	if os.Geteuid() == 0 {
		want.Group = "nogroup"
	}
	stored, err := h.c.GetSocket(h.ctx(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]socketd.Socket{"returned": got, "stored": stored, "dry run": dry.Items[0]} {
		if s.Status == nil && what != "dry run" {
			t.Errorf("%s: no status", what)
		}
		s.CreatedAt, s.UpdatedAt, s.Status = want.CreatedAt, want.UpdatedAt, nil
		if !reflect.DeepEqual(s, want) {
			t.Errorf("%s socket\n got %#v\nwant %#v", what, s, want)
		}
	}
	var directives []string
	for _, u := range res.Unmapped {
		directives = append(directives, u.Directive)
		if u.Reason == "" || u.Line == 0 {
			t.Errorf("unmapped %+v: no reason or line", u)
		}
	}
	if !strings.Contains(strings.Join(directives, " "), "WantedBy") {
		t.Errorf("unmapped %v: WantedBy is not listed", directives)
	}
}

// TestImportInetd imports inetd.conf lines, one socket each.
func TestImportInetd(t *testing.T) {
	h := newHarness(t)
	exe := testCommand(t)
	conf := "# services\n" +
		"13063 stream tcp nowait root " + exe + " hello\n" +
		"13064 dgram udp wait root " + exe + " tftpd -s /srv\n"
	if os.Geteuid() != 0 {
		conf = strings.ReplaceAll(conf, " root ", " "+currentUser(t)+" ")
	}
	events := h.follow("", "")
	applies := h.rt.applyCount()
	res, err := h.c.Import(h.ctx(), conf, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 || res.Items[0].Accept != true || res.Items[1].Accept != false ||
		res.Items[1].Listen[0] != "udp:0.0.0.0:13064" || res.Items[1].Stdin() != socketd.StdinSocket {
		t.Fatalf("imported %+v", res.Items)
	}
	list, err := h.c.ListSockets(h.ctx())
	if err != nil || len(list) != 2 {
		t.Fatalf("%d sockets saved: %v", len(list), err)
	}
	if h.rt.applyCount() != applies+1 {
		t.Errorf("the import reconciled %d times, want once", h.rt.applyCount()-applies)
	}
	events.expect(socketd.EventSocketCreated, res.Items[0].Name)
	events.expect(socketd.EventSocketCreated, res.Items[1].Name)
	// Imported again, they are replaced, as PUT does.
	if _, err := h.c.Import(h.ctx(), conf, ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	events.expect(socketd.EventSocketChanged, res.Items[0].Name)
	events.expect(socketd.EventSocketChanged, res.Items[1].Name)
}

// currentUser names the user the test runs as.
func currentUser(t *testing.T) string {
	t.Helper()
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	t.Skip("USER is not set")
	return ""
}

// TestExportImportRoundTrip: a socket exported as systemd units and
// imported again is the same definition (with its durations in Go's
// canonical form, "5m" rather than "5m0s", as an import writes them).
func TestExportImportRoundTrip(t *testing.T) {
	h := newHarness(t)
	s := newSocket(t, "round")
	s.Description = "every field"
	s.Listen = []string{"127.0.0.1:0", "[::1]:0"}
	s.Command = append(s.Command, "an argument with spaces", `quotes "and" \backslashes`, "100%")
	s.Environment = map[string]string{"GREETING": "hello world", "EMPTY": ""}
	s.WorkingDirectory, s.IgnoreExitStatus = "/tmp", true
	s.StandardInput, s.StandardOutput, s.Stderr = socketd.StdinNull, socketd.StdoutLog, socketd.StderrInherit
	s.UMask, s.RuntimeMax, s.KillSignal, s.TimeoutStop = "0027", "1m30s", "SIGHUP", "5s"
	s.PassEnvironment = []string{"LANG", "TZ"}
	s.KeepAlive, s.KeepAliveTime, s.NoDelay, s.Backlog = true, "5m", true, 64
	if _, _, err := h.c.PutSocket(h.ctx(), s); err != nil {
		t.Fatal(err)
	}
	before, err := h.c.GetSocket(h.ctx(), "round")
	if err != nil {
		t.Fatal(err)
	}
	files, err := h.c.Export(h.ctx(), "round")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Name != "round.socket" || files[1].Name != "round@.service" {
		t.Fatalf("exported %d files: %+v", len(files), files)
	}
	res, err := h.c.Import(h.ctx(), files[0].Content+files[1].Content, ImportOptions{Format: "systemd", Name: "round"})
	if err != nil {
		t.Fatal(err)
	}
	after := res.Items[0]
	before.UpdatedAt, before.Status, after.UpdatedAt, after.Status = time.Time{}, nil, time.Time{}, nil
	if !reflect.DeepEqual(before, after) {
		t.Errorf("after export and import\n got %#v\nwant %#v\nfiles: %s%s", after, before, files[0].Content, files[1].Content)
	}
	// The [Install] section is for systemctl enable; socketd needs none.
	if len(res.Unmapped) != 1 || res.Unmapped[0].Directive != "WantedBy" {
		t.Errorf("an export re-imports with unmapped directives: %+v", res.Unmapped)
	}
}

// TestImportErrors: what cannot be imported is refused with the reason, and
// nothing is saved.
func TestImportErrors(t *testing.T) {
	h := newHarness(t)
	exe := testCommand(t)
	for _, c := range []struct {
		name, path, contentType, body string
		status                        int
		pointer, detail               string
	}{
		{"systemd without a name", "/v1/import", "text/plain", helloUnits(exe, ""), 422, "", "give name"},
		{"syntax error", "/v1/import?format=systemd&name=x", "text/plain",
			"[Socket]\nListenStream=80\n[Service]\nExecStart=\"unterminated\n", 422, "", "line 4"},
		{"an invalid definition", "/v1/import?format=inetd", "text/plain",
			"13063 stream tcp nowait root /nonexistent/program program\n", 422, "/items/0/command/0", "does not exist"},
		{"nothing to import", "/v1/import?format=inetd", "text/plain", "# nothing\n", 422, "", "no socket"},
		{"unknown format", "/v1/import?format=launchd", "text/plain", "x", 400, "", "launchd"},
		{"unknown parameter", "/v1/import?fromat=inetd", "text/plain", "x", 400, "", "fromat"},
		{"bad dry_run", "/v1/import?dry_run=maybe", "text/plain", "x", 400, "", "dry_run"},
		{"JSON body", "/v1/import", "application/json", "{}", 415, "", "text/plain"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := h.do(request{method: http.MethodPost, path: c.path, contentType: c.contentType,
				body: strings.NewReader(c.body), offSpec: c.status == 400 || c.status == 415})
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			p := problem(t, body)
			text := p.Detail
			for _, f := range p.Errors {
				text += " " + f.Pointer + ": " + f.Detail
			}
			if !strings.Contains(text, c.detail) || (c.pointer != "" && !strings.Contains(text, c.pointer+":")) {
				t.Errorf("problem %q, want %q at %q", text, c.detail, c.pointer)
			}
		})
	}
	if list, err := h.c.ListSockets(h.ctx()); err != nil || len(list) != 0 {
		t.Errorf("%d sockets saved by refused imports: %v", len(list), err)
	}
	resp, body := h.do(request{method: http.MethodGet, path: "/v1/sockets/nope/export"})
	if resp.StatusCode != 404 {
		t.Errorf("export of a missing socket: %d %s", resp.StatusCode, body)
	}
}

// TestValidateAllRepeatedName: two imported sockets of one name are
// refused, pointing at the second.
func TestValidateAllRepeatedName(t *testing.T) {
	a, b := newSocket(t, "same"), newSocket(t, "same")
	err := validateAll([]socketd.Socket{a, b})
	var e *socketd.Error
	if !errors.As(err, &e) || len(e.Fields) != 1 || e.Fields[0].Pointer != "/items/1/name" {
		t.Errorf("validateAll = %v, want /items/1/name refused", err)
	}
}
