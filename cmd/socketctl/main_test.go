package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/api"
	"github.com/socketd/socketd/internal/testhandler"
)

// daemonBinary is socketd, built once for the tests.
var daemonBinary string

func TestMain(m *testing.M) {
	testhandler.Main()
	dir, err := os.MkdirTemp("", "socketctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	daemonBinary = filepath.Join(dir, "socketd")
	build := exec.Command("go", "build", "-o", daemonBinary, "github.com/socketd/socketd/cmd/socketd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build socketd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a socketd running for a test.
type daemon struct {
	addr, dataDir string
	client        *api.Client
	stop          func() // SIGTERM, and wait for it to exit
}

// startDaemon runs socketd on a free port with a data directory of the
// test's, and stops it when the test ends.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	return startDaemonAt(t, testhandler.FreePort(t), t.TempDir())
}

// startDaemonAt runs socketd on addr with data directory dataDir; stop
// ends it before the test does.
func startDaemonAt(t *testing.T, addr, dataDir string) *daemon {
	t.Helper()
	d := &daemon{addr: addr, dataDir: dataDir}
	var logs testhandler.Buffer
	cmd := exec.Command(daemonBinary, "--api-addr", d.addr, "--data-dir", d.dataDir, "--stop-timeout", "2s",
		"--dynamic-users", "62200-62299")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("socketd's log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		token, err := os.ReadFile(filepath.Join(d.dataDir, "admin.token"))
		if err == nil {
			d.client = api.NewClient("http://"+d.addr, strings.TrimSpace(string(token)))
			if d.client.Health(t.Context()) == nil {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("socketd did not come up:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result is what a run of socketctl did.
type result struct {
	code           int
	stdout, stderr string
}

// ctl runs socketctl in-process against d, finding it through the
// environment as a user would, with stdin as its input.
func (d *daemon) ctl(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return d.ctlEnv(t, t.Context(), stdin, nil, args...)
}

func (d *daemon) ctlEnv(t *testing.T, ctx context.Context, stdin string, extra map[string]string, args ...string) result {
	t.Helper()
	var out, errOut testhandler.Buffer
	vars := map[string]string{envAddr: d.addr, envDataDir: d.dataDir}
	for k, v := range extra {
		vars[k] = v
	}
	code := run(ctx, args, &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
		getenv: func(k string) string { return vars[k] }})
	return result{code, out.String(), errOut.String()}
}

// want fails t unless r exited with code and its stdout holds every one
// of outs.
func (r result) want(t *testing.T, what string, code int, outs ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what, r.code, code, r.stdout, r.stderr)
	}
	for _, o := range outs {
		if !strings.Contains(r.stdout, o) {
			t.Fatalf("%s: stdout lacks %q\nstdout:\n%s\nstderr:\n%s", what, o, r.stdout, r.stderr)
		}
	}
}

// definitionJSON is a socket served by this test binary as handler.
func definitionJSON(t *testing.T, name, handler, listen string, edit func(*socketd.Socket)) string {
	t.Helper()
	s := testhandler.Socket(name, handler, listen)
	if edit != nil {
		edit(&s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestApplyIsIdempotent: apply creates, then leaves alone what has not
// changed, then configures what has; bad definitions are refused with the
// daemon's reasons and apply nothing of theirs.
func TestApplyIsIdempotent(t *testing.T) {
	d := startDaemon(t)
	d.ctl(t, "", "list").want(t, "list of none", exitOK, "NAME")

	portA, portB := testhandler.FreePort(t), testhandler.FreePort(t)
	two := "[" + definitionJSON(t, "a", testhandler.Hello, portA, nil) + "," +
		definitionJSON(t, "b", testhandler.Hello, portB, func(s *socketd.Socket) { s.Description = "the second" }) + "]"
	file := filepath.Join(t.TempDir(), "sockets.json")
	if err := os.WriteFile(file, []byte(two), 0o600); err != nil {
		t.Fatal(err)
	}
	d.ctl(t, "", "apply", "-f", file).want(t, "first apply", exitOK, "a created\n", "b created\n")
	first, _ := d.client.GetSocket(t.Context(), "a")
	d.ctl(t, "", "apply", "-f", file).want(t, "second apply", exitOK, "a unchanged\n", "b unchanged\n")
	if again, _ := d.client.GetSocket(t.Context(), "a"); !again.UpdatedAt.Equal(first.UpdatedAt) {
		t.Errorf("an unchanged apply rewrote a: updated at %v, then %v", first.UpdatedAt, again.UpdatedAt)
	}
	// From stdin, as the API lists them.
	changed := `{"items": [` + definitionJSON(t, "b", testhandler.Hello, portB, func(s *socketd.Socket) { s.Description = "changed" }) + `]}`
	d.ctl(t, changed, "apply", "-f", "-").want(t, "apply of a change", exitOK, "b configured\n")
	if b, _ := d.client.GetSocket(t.Context(), "b"); b.Description != "changed" {
		t.Errorf("b's description is %q after apply", b.Description)
	}
	if got := testhandler.Answer(t, portA); got != "Hello World\n" {
		t.Errorf("a says %q", got)
	}
	r := d.ctl(t, "", "list")
	r.want(t, "list", exitOK, "a ", "listening", portA, "changed")

	bad := definitionJSON(t, "c", testhandler.Hello, "not-an-address", func(s *socketd.Socket) { s.Command = nil })
	r = d.ctl(t, bad, "apply", "-f", "-")
	r.want(t, "apply of a bad definition", exitFailure)
	if !strings.Contains(r.stderr, "/listen/0") || !strings.Contains(r.stderr, "/command") {
		t.Errorf("the daemon's reasons are not shown:\n%s", r.stderr)
	}
	r = d.ctl(t, `{"name": "c", "listen": ["1234"], "command": ["/bin/true"], "lisen": []}`, "apply", "-f", "-")
	r.want(t, "apply of an unknown field", exitFailure)
	if !strings.Contains(r.stderr, `"lisen"`) {
		t.Errorf("the unknown field is not named:\n%s", r.stderr)
	}
	if _, err := d.client.GetSocket(t.Context(), "c"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("a refused definition was saved: %v", err)
	}
	d.ctl(t, "", "apply").want(t, "apply without a file", exitUsage)
	d.ctl(t, "", "apply", "-f", filepath.Join(t.TempDir(), "none.json")).want(t, "apply of a missing file", exitFailure)
}

// TestStatusEnableDisableRemove: status reads like systemctl's and its exit
// status says whether the socket listens; enable, disable and rm change it.
func TestStatusEnableDisableRemove(t *testing.T) {
	d := startDaemon(t)
	port := testhandler.FreePort(t)
	d.ctl(t, definitionJSON(t, "chatty", testhandler.Stderr, port, func(s *socketd.Socket) { s.Description = "says things" }),
		"apply", "-f", "-").want(t, "apply", exitOK)
	if got := testhandler.Answer(t, port); got != "done\n" {
		t.Fatalf("chatty says %q", got)
	}
	d.ctl(t, "", "status", "chatty").want(t, "status", exitOK,
		"● chatty - says things\n", "State: listening since ", "Listen: "+port, "1 accepted, 0 connected, 0 refused",
		"connection 1 (exited, exit 0):\n  hello stderr\n")
	r := d.ctl(t, "", "status", "chatty", "-o", "json")
	r.want(t, "status as JSON", exitOK)
	var report statusReport
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil || report.Socket.Name != "chatty" || len(report.Recent) != 1 {
		t.Errorf("status as JSON: %+v, %v\n%s", report, err, r.stdout)
	}

	d.ctl(t, "", "disable", "chatty").want(t, "disable", exitOK, "chatty disabled\n")
	d.ctl(t, "", "status", "chatty").want(t, "status of a disabled socket", exitNotRunning, "State: disabled")
	if _, err := net.DialTimeout("tcp", port, time.Second); err == nil {
		t.Error("a disabled socket still accepts")
	}
	d.ctl(t, "", "enable", "chatty").want(t, "enable", exitOK, "chatty enabled\n")
	d.ctl(t, "", "status", "chatty").want(t, "status once enabled again", exitOK, "State: listening")

	// A live connection shows with its handler's pid, its remote and age.
	hangPort := testhandler.FreePort(t)
	d.ctl(t, definitionJSON(t, "hang", testhandler.ReadyHang, hangPort, nil), "apply", "-f", "-").want(t, "apply hang", exitOK)
	live, err := net.DialTimeout("tcp", hangPort, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	live.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(live, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	r = d.ctl(t, "", "status", "hang")
	r.want(t, "status with a live connection", exitOK, "1 accepted, 1 connected", "  ID", "PID", "REMOTE", "AGE")
	row := regexp.MustCompile(`(?m)^  \d+ +(\S+) +127\.0\.0\.1:\d+ +\d+s$`).FindStringSubmatch(r.stdout)
	if row == nil || row[1] == "-" {
		t.Errorf("the live connection's row lacks its pid:\n%s", r.stdout)
	}

	r = d.ctl(t, "", "status", "chatty", "nope")
	r.want(t, "status of a socket and of none", exitNotFound, "● chatty")
	if !strings.Contains(r.stderr, `"nope" not found`) {
		t.Errorf("status of none: %s", r.stderr)
	}
	d.ctl(t, "", "rm", "chatty").want(t, "rm", exitOK, "chatty removed\n")
	d.ctl(t, "", "rm", "chatty").want(t, "rm of none", exitNotFound)
	d.ctl(t, "", "status").want(t, "status without a name", exitUsage)
	d.ctl(t, "", "status", "-o", "yaml", "x").want(t, "an unknown output", exitUsage)
	d.ctl(t, "", "frobnicate").want(t, "an unknown command", exitUsage)
}

// TestHistoryAndKill: history in each output, filtered, following new
// connections as they end; kill ends a running one.
func TestHistoryAndKill(t *testing.T) {
	d := startDaemon(t)
	hello, other, hang := testhandler.FreePort(t), testhandler.FreePort(t), testhandler.FreePort(t)
	d.ctl(t, "["+definitionJSON(t, "hello", testhandler.Hello, hello, nil)+","+
		definitionJSON(t, "other", testhandler.Hello, other, nil)+","+
		definitionJSON(t, "hang", testhandler.ReadyHang, hang, nil)+"]", "apply", "-f", "-").want(t, "apply", exitOK)
	for range 3 {
		testhandler.Answer(t, hello)
	}
	r := d.ctl(t, "", "history", "--socket", "hello", "-n", "2")
	r.want(t, "history", exitOK, "ID ", "hello", "exited", "exit 0")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "2 ") || !strings.HasPrefix(lines[2], "3 ") {
		t.Errorf("history -n 2: want the newest two, oldest first:\n%s", r.stdout)
	}
	r = d.ctl(t, "", "history", "-o", "json")
	r.want(t, "history as JSON lines", exitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var conn socketd.Connection
	if len(lines) != 3 || json.Unmarshal([]byte(lines[2]), &conn) != nil || conn.ID != 3 || conn.State != socketd.ConnExited {
		t.Errorf("history -o json: %s", r.stdout)
	}
	d.ctl(t, "", "history", "-o", "csv", "--state", "exited", "--since", "1h").want(t, "history as CSV", exitOK,
		strings.Join(socketd.ConnectionCSVHeader, ",")+"\n", "\n3,hello,exited,127.0.0.1,")
	d.ctl(t, "", "history", "--since", "2999-01-01 00:00").want(t, "history of the future", exitOK)
	d.ctl(t, "", "history", "--since", "yesterday").want(t, "history since nonsense", exitUsage)
	d.ctl(t, "", "history", "--remote-ip", "banana").want(t, "history from nonsense", exitUsage)

	// --follow prints the connections as they end, from the stream it
	// opened before it read the history, until interrupted.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var followed result
	done := make(chan struct{})
	var out testhandler.Buffer
	go func() {
		defer close(done)
		followed.code = run(ctx, []string{"history", "-f", "--socket", "hello", "-o", "json", "-n", "1"}, &env{
			stdin: strings.NewReader(""), stdout: &out, stderr: io.Discard,
			getenv: func(k string) string { return map[string]string{envAddr: d.addr, envDataDir: d.dataDir}[k] },
		})
	}()
	waitFor(t, "the last connection", func() bool { return strings.Count(out.String(), "\n") == 1 })
	testhandler.Answer(t, other) // another socket's: not followed
	testhandler.Answer(t, hello)
	waitFor(t, "the new connection", func() bool { return strings.Contains(out.String(), `"id":5,`) })
	cancel()
	<-done
	if followed.code != exitOK || strings.Contains(out.String(), `"socket":"other"`) || strings.Count(out.String(), "\n") != 2 {
		t.Errorf("history --follow: exit %d\n%s", followed.code, out.String())
	}

	// kill: the hanging connection ends killed.
	conn5, err := net.DialTimeout("tcp", hang, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn5.Close()
	conn5.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn5, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	running, _, err := d.client.ListConnections(t.Context(), socketd.ConnectionFilter{Socket: "hang", State: socketd.ConnRunning})
	if err != nil || len(running) != 1 {
		t.Fatalf("running: %v, %v", running, err)
	}
	id := fmt.Sprint(running[0].ID)
	d.ctl(t, "", "kill", id).want(t, "kill", exitOK, "connection "+id+" killed (SIGTERM)\n")
	d.ctl(t, "", "kill", id).want(t, "kill of an ended connection", exitFailure)
	d.ctl(t, "", "kill", "99999").want(t, "kill of none", exitNotFound)
	d.ctl(t, "", "kill", "x").want(t, "kill of nonsense", exitUsage)
}

// waitFor polls cond until it holds, or fails t after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: timed out", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEdit: edit opens the definition in $EDITOR, shows the daemon's
// reasons when it refuses the result, and applies it once fixed.
func TestEdit(t *testing.T) {
	d := startDaemon(t)
	port := testhandler.FreePort(t)
	d.ctl(t, definitionJSON(t, "hello", testhandler.Hello, port, nil), "apply", "-f", "-").want(t, "apply", exitOK)

	dir := t.TempDir()
	// The editor breaks the listen address first; shown the reason, it
	// fixes it and adds a description. Each of its runs is kept.
	editor := filepath.Join(dir, "editor")
	script := `#!/bin/sh
n=$(ls "` + dir + `" | grep -c '^run')
cp "$1" "` + dir + `/run$n"
if grep -q 'It was not applied' "$1"; then
  sed -i 's/"no-such-port"/"` + port + `"/; s/"accept": true/"accept": true, "description": "edited"/' "$1"
else
  sed -i 's/"` + port + `"/"no-such-port"/' "$1"
fi
`
	if err := os.WriteFile(editor, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := d.ctlEnv(t, t.Context(), "", map[string]string{"EDITOR": editor}, "edit", "hello")
	r.want(t, "edit", exitOK, "hello configured\n")
	second, err := os.ReadFile(filepath.Join(dir, "run1"))
	if err != nil || !strings.Contains(string(second), "# It was not applied:") || !strings.Contains(string(second), "/listen/0") {
		t.Errorf("the second run of the editor was not told why: %s, %v", second, err)
	}
	if s, _ := d.client.GetSocket(t.Context(), "hello"); s.Description != "edited" || s.Listen[0] != port {
		t.Errorf("after edit: %+v", s)
	}

	// An editor that changes nothing changes nothing.
	r = d.ctlEnv(t, t.Context(), "", map[string]string{"EDITOR": "true"}, "edit", "hello")
	r.want(t, "edit without a change", exitOK, "hello unchanged\n")
	// One that renames is refused, then gives up by saving it unchanged.
	rename := filepath.Join(dir, "rename")
	os.WriteFile(rename, []byte("#!/bin/sh\ngrep -q 'It was not applied' \"$1\" || sed -i 's/\"name\": \"hello\"/\"name\": \"other\"/' \"$1\"\n"), 0o755)
	r = d.ctlEnv(t, t.Context(), "", map[string]string{"VISUAL": rename}, "edit", "hello")
	r.want(t, "edit that renames", exitFailure)
	if !strings.Contains(r.stderr, "nothing was applied") {
		t.Errorf("edit that renames: %s", r.stderr)
	}
	if _, err := d.client.GetSocket(t.Context(), "other"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("a rename created a socket: %v", err)
	}
	// A change made while the editor is open is not overwritten: the
	// editor tells the test it is open, and waits for the change.
	racer := filepath.Join(dir, "racer")
	os.WriteFile(racer, []byte("#!/bin/sh\ntouch '"+dir+"/open'\nwhile [ ! -e '"+dir+"/changed' ]; do sleep 0.01; done\n"+
		"sed -i 's/\"edited\"/\"mine\"/' \"$1\"\n"), 0o755)
	go func() {
		for {
			if _, err := os.Stat(filepath.Join(dir, "open")); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := d.client.PatchSocket(context.Background(), "hello", map[string]string{"description": "theirs"}); err != nil {
			t.Error(err)
		}
		os.WriteFile(filepath.Join(dir, "changed"), nil, 0o600)
	}()
	r = d.ctlEnv(t, t.Context(), "", map[string]string{"EDITOR": racer}, "edit", "hello")
	r.want(t, "edit during another change", exitFailure)
	if s, _ := d.client.GetSocket(t.Context(), "hello"); s.Description != "theirs" || !strings.Contains(r.stderr, "changed or deleted by someone else") {
		t.Errorf("edit during another change: description %q\n%s", s.Description, r.stderr)
	}
	// The edit is not lost: the file stays, and socketctl says where.
	kept := regexp.MustCompile(`your edit is kept in (\S+)`).FindStringSubmatch(r.stderr)
	if kept == nil {
		t.Fatalf("edit during another change does not say where the edit is:\n%s", r.stderr)
	}
	if b, err := os.ReadFile(kept[1]); err != nil || !strings.Contains(string(b), `"mine"`) {
		t.Errorf("the kept edit: %s, %v", b, err)
	}
	os.RemoveAll(filepath.Dir(kept[1]))
	d.ctlEnv(t, t.Context(), "", map[string]string{"EDITOR": "true"}, "edit", "nope").want(t, "edit of none", exitNotFound)
}

// TestImportExportWatch: import and export units; watch prints events.
func TestImportExportWatch(t *testing.T) {
	d := startDaemon(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var watched testhandler.Buffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"watch"}, &env{stdin: strings.NewReader(""), stdout: &watched, stderr: io.Discard,
			getenv: func(k string) string { return map[string]string{envAddr: d.addr, envDataDir: d.dataDir}[k] }})
	}()

	port := testhandler.FreePort(t)
	_, p, _ := net.SplitHostPort(port)
	exe, _ := os.Executable()
	dir := t.TempDir()
	unitSocket := filepath.Join(dir, "greeter.socket")
	unitService := filepath.Join(dir, "greeter@.service")
	os.WriteFile(unitSocket, []byte("[Socket]\nListenStream=127.0.0.1:"+p+"\nAccept=yes\n"), 0o644)
	os.WriteFile(unitService, []byte("[Service]\nExecStart="+exe+"\nEnvironment=SOCKETD_TEST_HANDLER=hello\nStandardInput=socket\nNice=1\nCPUWeight=50\n"), 0o644)

	r := d.ctl(t, "", "import", "--dry-run", unitSocket, unitService)
	r.want(t, "import dry run", exitOK, "greeter would be imported (dry run)")
	if !strings.Contains(r.stderr, "CPUWeight=50 not imported") {
		t.Errorf("the unmapped directive is not listed:\n%s", r.stderr)
	}
	if _, err := d.client.GetSocket(t.Context(), "greeter"); socketd.ErrorCode(err) != socketd.CodeNotFound {
		t.Errorf("a dry run saved: %v", err)
	}
	d.ctl(t, "", "import", unitSocket, unitService).want(t, "import", exitOK, "greeter imported")
	if got := testhandler.Answer(t, port); got != "Hello World\n" {
		t.Errorf("greeter says %q", got)
	}
	d.ctl(t, "", "export", "greeter").want(t, "export", exitOK, "# greeter.socket\n[Socket]\n", "ListenStream=127.0.0.1:"+p, "# greeter@.service\n", "Nice=1")
	out := t.TempDir()
	d.ctl(t, "", "export", "-d", out, "greeter").want(t, "export to a directory", exitOK, filepath.Join(out, "greeter.socket"))
	if b, err := os.ReadFile(filepath.Join(out, "greeter@.service")); err != nil || !strings.Contains(string(b), "ExecStart=") {
		t.Errorf("exported service: %s, %v", b, err)
	}
	d.ctl(t, "", "import", filepath.Join(dir, "none")).want(t, "import of a missing file", exitFailure)

	waitFor(t, "the events", func() bool {
		s := watched.String()
		return strings.Contains(s, "socket.created    greeter") && strings.Contains(s, "connection.closed greeter #1 127.0.0.1:")
	})
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("watch exited %d", code)
	}
}

// TestFindsTheDaemon: the token comes from a flag, the environment, a file
// or the daemon's data directory; errors say what to do.
func TestFindsTheDaemon(t *testing.T) {
	d := startDaemon(t)
	token, err := os.ReadFile(filepath.Join(d.dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	tfile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tfile, token, 0o600)
	none := map[string]string{envDataDir: t.TempDir()} // no token there
	d.ctlEnv(t, t.Context(), "", none, "list", "--token", strings.TrimSpace(string(token))).want(t, "--token", exitOK, "NAME")
	d.ctlEnv(t, t.Context(), "", map[string]string{envDataDir: t.TempDir(), envToken: strings.TrimSpace(string(token))}, "list").want(t, envToken, exitOK)
	d.ctlEnv(t, t.Context(), "", none, "list", "--token-file", tfile).want(t, "--token-file", exitOK)
	d.ctlEnv(t, t.Context(), "", none, "list", "--data-dir", d.dataDir).want(t, "--data-dir", exitOK)

	r := d.ctlEnv(t, t.Context(), "", none, "list")
	r.want(t, "no token", exitFailure)
	if !strings.Contains(r.stderr, "no API token: pass --token") {
		t.Errorf("no token: %s", r.stderr)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	r = d.ctlEnv(t, t.Context(), "", none, "list", "--token-file", empty)
	r.want(t, "an empty token file", exitFailure)
	if !strings.Contains(r.stderr, empty+" is empty") {
		t.Errorf("an empty token file: %s", r.stderr)
	}
	r = d.ctl(t, "", "list", "--token", "wrong")
	r.want(t, "a wrong token", exitFailure)
	if !strings.Contains(r.stderr, "refused the token") {
		t.Errorf("a wrong token: %s", r.stderr)
	}
	r = d.ctl(t, "", "list", "--addr", testhandler.FreePort(t))
	r.want(t, "no daemon", exitFailure)
	if !strings.Contains(r.stderr, "socketd is not running at 127.0.0.1:") {
		t.Errorf("no daemon: %s", r.stderr)
	}
	if r := d.ctl(t, "", "help"); r.code != exitOK || !strings.Contains(r.stdout, "Commands:") {
		t.Errorf("help: %+v", r)
	}
	if r := d.ctl(t, "", "history", "-h"); r.code != exitOK || !strings.Contains(r.stderr, "-follow") {
		t.Errorf("history -h: %+v", r)
	}
}

// TestWatchSurvivesRestart: watch follows the events across a restart of
// socketd, saying on stderr that it lost them and follows them again.
func TestWatchSurvivesRestart(t *testing.T) {
	d := startDaemon(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut testhandler.Buffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"watch"}, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
			getenv: func(k string) string { return map[string]string{envAddr: d.addr, envDataDir: d.dataDir}[k] }})
	}()
	put := func(d *daemon, name string) {
		t.Helper()
		// The stream may be a moment behind: put until watch has seen it.
		waitFor(t, "watch to see "+name, func() bool {
			if _, _, err := d.client.PutSocket(t.Context(), testhandler.Socket(name, testhandler.Hello, "127.0.0.1:0")); err != nil {
				t.Fatal(err)
			}
			return strings.Contains(out.String(), "socket.created    "+name) || strings.Contains(out.String(), "socket.changed    "+name)
		})
	}
	put(d, "before")
	d.stop()
	again := startDaemonAt(t, d.addr, d.dataDir)
	put(again, "after")
	waitFor(t, "watch to say it follows again", func() bool {
		return strings.Contains(errOut.String(), "lost socketd's events") && strings.Contains(errOut.String(), "following socketd's events again")
	})
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("watch exited %d\n%s", code, errOut.String())
	}
}
