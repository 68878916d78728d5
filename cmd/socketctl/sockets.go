package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/api"
)

func runList(ctx context.Context, c *cli, args []string) int {
	c.outputFlag("table", "json")
	if _, status, ok := c.parse(args, 0, 0); !ok {
		return status
	}
	socks, err := c.client.ListSockets(ctx)
	if err != nil {
		return c.fail(err)
	}
	if c.output == "json" {
		return c.printJSON(socks)
	}
	t := newTable(c.stdout, "NAME", "STATE", "LISTEN", "ACCEPTED", "CONNECTED", "REFUSED", "DESCRIPTION")
	for _, s := range socks {
		st := status(s)
		t.row(s.Name, string(st.State), strings.Join(listening(s), ","), st.Accepted, st.Connected, st.Refused, s.Description)
	}
	return t.flush()
}

// status returns s's status, or a zero one.
func status(s socketd.Socket) socketd.SocketStatus {
	if s.Status != nil {
		return *s.Status
	}
	return socketd.SocketStatus{}
}

// listening returns the addresses s is bound to, or those it asks for.
func listening(s socketd.Socket) []string {
	if st := status(s); len(st.Listening) > 0 {
		return st.Listening
	}
	return s.Listen
}

// statusReport is what status prints of a socket with -o json.
type statusReport struct {
	Socket socketd.Socket       `json:"socket"`
	Live   []socketd.Connection `json:"live"`
	Recent []socketd.Connection `json:"recent"`
}

// recentStderr is how many recent connections status shows the stderr of,
// and how many of its last lines.
const (
	recentStderr      = 3
	recentStderrLines = 5
)

func runStatus(ctx context.Context, c *cli, args []string) int {
	c.outputFlag("text", "json")
	names, status, ok := c.parse(args, 1, -1)
	if !ok {
		return status
	}
	worst := exitOK
	for i, name := range names {
		r, err := c.readStatus(ctx, name)
		if err != nil {
			worst = worse(worst, c.fail(err))
			continue
		}
		if r.Socket.Status == nil || r.Socket.Status.State != socketd.SocketListening {
			worst = worse(worst, exitNotRunning)
		}
		if c.output == "json" {
			c.printJSON(r)
			continue
		}
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		c.printStatus(ctx, r)
	}
	return worst
}

func (c *cli) readStatus(ctx context.Context, name string) (statusReport, error) {
	s, err := c.client.GetSocket(ctx, name)
	if err != nil {
		return statusReport{}, err
	}
	r := statusReport{Socket: s}
	if r.Live, _, err = c.client.ListConnections(ctx, socketd.ConnectionFilter{Socket: name, State: socketd.ConnRunning, Limit: 100}); err != nil {
		return r, err
	}
	recent, _, err := c.client.ListConnections(ctx, socketd.ConnectionFilter{Socket: name, Limit: 20})
	if err != nil {
		return r, err
	}
	for _, conn := range recent {
		if conn.State != socketd.ConnRunning {
			r.Recent = append(r.Recent, conn)
		}
	}
	return r, nil
}

// printStatus prints r as systemctl status prints a unit.
func (c *cli) printStatus(ctx context.Context, r statusReport) {
	s, st := r.Socket, status(r.Socket)
	dot := "●"
	title := s.Name
	if s.Description != "" {
		title += " - " + s.Description
	}
	fmt.Fprintf(c.stdout, "%s %s\n", dot, title)
	field := func(name, format string, args ...any) {
		fmt.Fprintf(c.stdout, "%12s: %s\n", name, fmt.Sprintf(format, args...))
	}
	state := string(st.State)
	if state == "" {
		state = "unknown"
	}
	if !st.Since.IsZero() {
		state += fmt.Sprintf(" since %s; %s ago", st.Since.Local().Format("Mon 2006-01-02 15:04:05 MST"), ago(st.Since))
	}
	field("State", "%s", state)
	if st.PausedUntil != nil {
		field("Paused", "until %s (rate limit)", st.PausedUntil.Local().Format("15:04:05"))
	}
	field("Listen", "%s", strings.Join(listening(s), " "))
	field("Command", "%s", shellJoin(s.Command))
	refused := strconv.FormatInt(st.Refused, 10)
	if len(st.RefusedByReason) > 0 {
		var rs []string
		for _, k := range slices.Sorted(maps.Keys(st.RefusedByReason)) {
			rs = append(rs, fmt.Sprintf("%s %d", k, st.RefusedByReason[k]))
		}
		refused += " (" + strings.Join(rs, ", ") + ")"
	}
	field("Connections", "%d accepted, %d connected, %s refused", st.Accepted, st.Connected, refused)
	if st.ServicePID != 0 {
		field("Service", "pid %d", st.ServicePID)
	}
	if st.Error != "" {
		field("Error", "%s", st.Error)
	}
	if len(r.Live) > 0 {
		fmt.Fprintln(c.stdout)
		t := newTable(c.stdout, "  ID", "PID", "REMOTE", "AGE")
		for _, conn := range r.Live {
			t.row("  "+strconv.FormatInt(conn.ID, 10), pidOf(conn), remote(conn), ago(conn.StartedAt))
		}
		t.flush()
	}
	shown := 0
	for _, conn := range r.Recent {
		if shown == recentStderr {
			break
		}
		log, err := c.client.ConnectionLog(ctx, conn.ID)
		if err != nil || len(bytes.TrimSpace(log)) == 0 {
			continue
		}
		if shown == 0 {
			fmt.Fprintln(c.stdout)
		}
		shown++
		fmt.Fprintf(c.stdout, "%s connection %d (%s, %s):\n", conn.StartedAt.Local().Format("Jan 02 15:04:05"), conn.ID, conn.State, outcome(conn))
		lines := strings.Split(strings.TrimRight(strings.ToValidUTF8(string(log), "\uFFFD"), "\n"), "\n")
		if len(lines) > recentStderrLines {
			lines = lines[len(lines)-recentStderrLines:]
		}
		for _, l := range lines {
			fmt.Fprintf(c.stdout, "  %s\n", l)
		}
	}
}

// ago says how long ago t was, in whole seconds.
func ago(t time.Time) string {
	return time.Since(t).Truncate(time.Second).String()
}

// shellJoin writes argv as a shell would read it back.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@%+,", r))
		}) < 0 {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// readDefinitions reads socket definitions from JSON: one object, an array
// of them, or {"items": [...]} as the API lists them. Fields the API does
// not know are refused, as the API refuses them.
func readDefinitions(b []byte) ([]socketd.Socket, error) {
	var raws []json.RawMessage
	trimmed := bytes.TrimSpace(b)
	switch {
	case len(trimmed) == 0:
		return nil, fmt.Errorf("no definition")
	case trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, err
		}
	default:
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if json.Unmarshal(trimmed, &list) == nil && list.Items != nil {
			raws = list.Items
		} else {
			raws = []json.RawMessage{trimmed}
		}
	}
	socks := make([]socketd.Socket, 0, len(raws))
	for i, raw := range raws {
		s := socketd.NewSocket()
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			if len(raws) > 1 {
				return nil, fmt.Errorf("definition %d: %w", i+1, err)
			}
			return nil, err
		}
		if s.Name == "" {
			return nil, fmt.Errorf("definition %d has no name", i+1)
		}
		socks = append(socks, s)
	}
	return socks, nil
}

// definition returns s without what the daemon fills in, as JSON.
func definition(s socketd.Socket) []byte {
	s.Status, s.CreatedAt, s.UpdatedAt = nil, time.Time{}, time.Time{}
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}

func runApply(ctx context.Context, c *cli, args []string) int {
	var files []string
	c.flags.Func("f", "JSON `file` of one definition, an array of them, or {\"items\": [...]}; - for stdin (repeatable)", func(v string) error {
		files = append(files, v)
		return nil
	})
	rest, status, ok := c.parse(args, 0, -1)
	if !ok {
		return status
	}
	files = append(files, rest...)
	if len(files) == 0 {
		return c.usageError("no file: socketctl apply -f FILE")
	}
	var socks []socketd.Socket
	for _, f := range files {
		b, err := c.readFile(f)
		if err != nil {
			fmt.Fprintf(c.stderr, "socketctl: %v\n", err)
			return exitFailure
		}
		s, err := readDefinitions(b)
		if err != nil {
			fmt.Fprintf(c.stderr, "socketctl: %s: %v\n", f, err)
			return exitFailure
		}
		socks = append(socks, s...)
	}
	worst := exitOK
	for _, s := range socks {
		what, err := c.apply(ctx, s, time.Time{})
		if err != nil {
			fmt.Fprintf(c.stderr, "socketctl: %s: not applied\n", s.Name)
			worst = worse(worst, c.fail(err))
			continue
		}
		fmt.Fprintf(c.stdout, "%s %s\n", s.Name, what)
	}
	return worst
}

// apply puts s unless the daemon holds the same definition, and says what
// it did: created, configured or unchanged. A non-zero base is the
// updated_at of the definition s was edited from: the daemon replaces that
// version only (If-Match), so that a change made meanwhile, or a delete, is
// never overwritten.
func (c *cli) apply(ctx context.Context, s socketd.Socket, base time.Time) (string, error) {
	old, err := c.client.GetSocket(ctx, s.Name)
	switch {
	case err == nil && bytes.Equal(definition(old), definition(s)):
		return "unchanged", nil
	case err != nil && socketd.ErrorCode(err) != socketd.CodeNotFound:
		return "", err
	}
	if !base.IsZero() {
		_, err := c.client.ReplaceSocket(ctx, s, base)
		if socketd.ErrorCode(err) == socketd.CodePreconditionFailed {
			return "", &socketd.Error{Code: socketd.CodeConflict, Message: fmt.Sprintf(
				"%s was changed or deleted by someone else while you edited it: nothing was applied (%v)", s.Name, err)}
		}
		if err != nil {
			return "", err
		}
		return "configured", nil
	}
	_, created, err := c.client.PutSocket(ctx, s)
	if err != nil {
		return "", err
	}
	if created {
		return "created", nil
	}
	return "configured", nil
}

func (c *cli) readFile(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(c.stdin)
	}
	return os.ReadFile(name)
}

func runEnable(on bool) func(context.Context, *cli, []string) int {
	return func(ctx context.Context, c *cli, args []string) int {
		names, status, ok := c.parse(args, 1, -1)
		if !ok {
			return status
		}
		worst := exitOK
		for _, name := range names {
			if _, err := c.client.PatchSocket(ctx, name, map[string]bool{"enabled": on}); err != nil {
				worst = worse(worst, c.fail(err))
				continue
			}
			fmt.Fprintf(c.stdout, "%s %s\n", name, map[bool]string{true: "enabled", false: "disabled"}[on])
		}
		return worst
	}
}

func runRemove(ctx context.Context, c *cli, args []string) int {
	names, status, ok := c.parse(args, 1, -1)
	if !ok {
		return status
	}
	worst := exitOK
	for _, name := range names {
		if err := c.client.DeleteSocket(ctx, name); err != nil {
			worst = worse(worst, c.fail(err))
			continue
		}
		fmt.Fprintf(c.stdout, "%s removed\n", name)
	}
	return worst
}

func runExport(ctx context.Context, c *cli, args []string) int {
	var dir string
	c.flags.StringVar(&dir, "d", "", "write the unit files into `directory` instead of printing them")
	names, status, ok := c.parse(args, 1, 1)
	if !ok {
		return status
	}
	files, err := c.client.Export(ctx, names[0])
	if err != nil {
		return c.fail(err)
	}
	for i, f := range files {
		if dir != "" {
			path := filepath.Join(dir, filepath.Base(f.Name))
			if err := os.WriteFile(path, []byte(f.Content), 0o644); err != nil {
				fmt.Fprintf(c.stderr, "socketctl: %v\n", err)
				return exitFailure
			}
			fmt.Fprintln(c.stdout, path)
			continue
		}
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		fmt.Fprintf(c.stdout, "# %s\n%s", f.Name, f.Content)
		if !strings.HasSuffix(f.Content, "\n") {
			fmt.Fprintln(c.stdout)
		}
	}
	return exitOK
}

func runImport(ctx context.Context, c *cli, args []string) int {
	var o api.ImportOptions
	c.flags.StringVar(&o.Format, "format", "", "systemd, inetd or xinetd; by default the text tells")
	c.flags.StringVar(&o.Name, "name", "", "the socket's `name` for systemd units (default: the .socket file's name)")
	c.flags.BoolVar(&o.DryRun, "dry-run", false, "show what would be imported, and save nothing")
	c.outputFlag("table", "json")
	files, status, ok := c.parse(args, 1, -1)
	if !ok {
		return status
	}
	var text strings.Builder
	for _, f := range files {
		b, err := c.readFile(f)
		if err != nil {
			fmt.Fprintf(c.stderr, "socketctl: %v\n", err)
			return exitFailure
		}
		if o.Name == "" && strings.HasSuffix(f, ".socket") {
			o.Name = strings.TrimSuffix(filepath.Base(f), ".socket")
		}
		text.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			text.WriteByte('\n')
		}
	}
	res, err := c.client.Import(ctx, text.String(), o)
	if err != nil {
		return c.fail(err)
	}
	if c.output == "json" {
		return c.printJSON(res)
	}
	what := "imported"
	if o.DryRun {
		what = "would be imported (dry run)"
	}
	for _, s := range res.Items {
		fmt.Fprintf(c.stdout, "%s %s: %s on %s\n", s.Name, what, shellJoin(s.Command), strings.Join(s.Listen, " "))
	}
	for _, u := range res.Unmapped {
		fmt.Fprintf(c.stderr, "%s:%d: %s=%s not imported: %s\n", u.Source, u.Line, u.Directive, u.Value, u.Reason)
	}
	return exitOK
}
