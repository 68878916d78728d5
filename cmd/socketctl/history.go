package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/api"
)

// historyFlags are history's filters, as typed.
type historyFlags struct {
	socket, state, remote, since, until string
	limit                               int
	follow                              bool
}

func runHistory(ctx context.Context, c *cli, args []string) int {
	var hf historyFlags
	c.flags.StringVar(&hf.socket, "socket", "", "only this socket's connections")
	c.flags.StringVar(&hf.state, "state", "", "only connections in this state: "+socketd.ConnectionStateList())
	c.flags.StringVar(&hf.remote, "remote-ip", "", "only connections from this address")
	c.flags.StringVar(&hf.since, "since", "", "only connections started at or after this `time`: RFC 3339, \"2006-01-02 15:04\" (local), or a duration ago such as 1h")
	c.flags.StringVar(&hf.until, "until", "", "only connections started before this `time`, as --since")
	c.flags.IntVar(&hf.limit, "n", defaultHistoryN, "how many connections, the newest; 0 for all")
	c.flags.BoolVar(&hf.follow, "follow", false, "then print connections as they end, until interrupted")
	c.flags.BoolVar(&hf.follow, "f", false, "short for --follow")
	c.outputFlag("table", "json", "csv")
	if _, status, ok := c.parse(args, 0, 0); !ok {
		return status
	}
	f, err := hf.filter(time.Now())
	if err != nil {
		return c.usageError("%v", err)
	}
	if hf.follow && !f.Until.IsZero() {
		return c.usageError("--follow follows new connections: it takes no --until")
	}
	out := newHistoryWriter(c.stdout, c.output)

	// The stream is opened before the history is read, so that no
	// connection that ends in between is missed.
	var events chan socketd.Event
	streamErr := make(chan error, 1)
	if hf.follow {
		events = make(chan socketd.Event, 1024)
		opened := make(chan struct{})
		go func() {
			streamErr <- c.followEvents(ctx, f.Socket, func() { close(opened) }, func(e socketd.Event) {
				select {
				case events <- e:
				case <-ctx.Done():
				}
			})
		}()
		select {
		case <-opened:
		case err := <-streamErr:
			return c.fail(err)
		}
	}
	shown, err := c.readHistory(ctx, f, hf.limit)
	if err != nil {
		return c.fail(err)
	}
	// The rows shown finished may come again as events from the stream
	// opened before they were read: they are not written twice.
	done := map[int64]bool{}
	for i := len(shown) - 1; i >= 0; i-- {
		out.write(shown[i])
		if shown[i].State != socketd.ConnRunning {
			done[shown[i].ID] = true
		}
	}
	if err := out.flush(); err != nil {
		fmt.Fprintf(c.stderr, "socketctl: %v\n", err)
		return exitFailure
	}
	if !hf.follow {
		return exitOK
	}
	for {
		select {
		case e := <-events:
			conn := e.Connection
			if e.Type == api.EventMissed {
				fmt.Fprintln(c.stderr, "socketctl: some events were lost: connections may be missing here; socketctl history lists them all")
				continue
			}
			if e.Type != socketd.EventConnectionClosed || conn == nil || !matches(f, *conn) {
				continue
			}
			if done[conn.ID] {
				delete(done, conn.ID)
				continue
			}
			out.write(*conn)
			if err := out.flush(); err != nil {
				fmt.Fprintf(c.stderr, "socketctl: %v\n", err)
				return exitFailure
			}
		case err := <-streamErr:
			if errors.Is(err, context.Canceled) {
				return exitOK
			}
			return c.fail(err)
		}
	}
}

// filter turns the flags into the API's filter; times are read relative to
// now.
func (hf historyFlags) filter(now time.Time) (socketd.ConnectionFilter, error) {
	f := socketd.ConnectionFilter{Socket: hf.socket, State: socketd.ConnectionState(hf.state)}
	if f.State != "" && !f.State.Valid() {
		return f, fmt.Errorf("--state %s: the state is one of %s", hf.state, socketd.ConnectionStateList())
	}
	if hf.remote != "" {
		ip, ok := socketd.HistoryIP(hf.remote)
		if !ok {
			return f, fmt.Errorf("--remote-ip %s is not an IP address", hf.remote)
		}
		f.RemoteIP = ip
	}
	var err error
	if f.Since, err = parseTime("since", hf.since, now); err != nil {
		return f, err
	}
	if f.Until, err = parseTime("until", hf.until, now); err != nil {
		return f, err
	}
	if hf.limit < 0 {
		return f, fmt.Errorf("-n %d: the count is 0 (all) or more", hf.limit)
	}
	return f, nil
}

// parseTime reads a --since or --until: RFC 3339, a local date and time,
// or a duration before now.
func parseTime(flag, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--%s %s: not a time such as 2006-01-02T15:04:05Z, \"2006-01-02 15:04\" or 1h (ago)", flag, v)
}

// readHistory reads the newest limit connections f selects (0: all),
// newest first.
func (c *cli) readHistory(ctx context.Context, f socketd.ConnectionFilter, limit int) ([]socketd.Connection, error) {
	var all []socketd.Connection
	for {
		f.Limit = socketd.MaxListLimit
		if limit > 0 {
			f.Limit = min(limit-len(all), socketd.MaxListLimit)
		}
		page, next, err := c.client.ListConnections(ctx, f)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" || (limit > 0 && len(all) >= limit) {
			return all, nil
		}
		f.Cursor = next
	}
}

// matches reports whether conn passes f's filters, as the daemon applies
// them.
func matches(f socketd.ConnectionFilter, conn socketd.Connection) bool {
	return (f.Socket == "" || conn.Socket == f.Socket) && (f.State == "" || conn.State == f.State) &&
		(f.RemoteIP == "" || conn.RemoteIP == f.RemoteIP) && (f.Since.IsZero() || !conn.StartedAt.Before(f.Since))
}

// followEvents follows the event stream of socket ("" for all), calling
// opened once it is first taken and fn with each event, until ctx ends. A
// stream that ends or breaks once it has been taken (a restart of socketd,
// a connection that died) is taken up again where it stopped, trying
// again with a growing pause and saying so on stderr; an error before it
// was ever taken, or a refusal (the token, say), is returned.
func (c *cli) followEvents(ctx context.Context, socket string, opened func(), fn func(socketd.Event)) error {
	first := true
	lost := false
	o := api.EventsOptions{Socket: socket}
	o.Opened = func() {
		if first {
			first = false
			if opened != nil {
				opened()
			}
		} else if lost {
			lost = false
			fmt.Fprintln(c.stderr, "socketctl: following socketd's events again")
		}
	}
	pause := time.Second
	for {
		err := c.stream.Events(ctx, o, func(e socketd.Event) error {
			if e.ID > 0 {
				o.After = e.ID
			}
			pause = time.Second
			fn(e)
			return nil
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var se *socketd.Error
		if first || (errors.As(err, &se) && se.Code != socketd.CodeUnavailable && se.Code != socketd.CodeInternal) {
			if err == nil {
				err = errors.New("socketd ended the event stream at once")
			}
			return err
		}
		if !lost {
			lost = true
			reason := "socketd ended it"
			if err != nil {
				reason = err.Error()
			}
			fmt.Fprintf(c.stderr, "socketctl: lost socketd's events (%s); trying again\n", reason)
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return ctx.Err()
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// historyWriter writes connections as a table, JSON lines or CSV.
type historyWriter struct {
	format string
	w      io.Writer
	csv    *csv.Writer
	enc    *json.Encoder
	err    error // the first write that failed
}

func newHistoryWriter(w io.Writer, format string) *historyWriter {
	hw := &historyWriter{format: format, w: w}
	switch format {
	case "json":
		hw.enc = json.NewEncoder(w)
	case "csv":
		hw.csv = csv.NewWriter(w)
		hw.csv.Write(socketd.ConnectionCSVHeader)
	default:
		hw.row("ID", "STARTED", "SOCKET", "STATE", "REMOTE", "DURATION", "OUTCOME", "IN", "OUT")
	}
	return hw
}

// historyColumns are the widths of the history table's columns, fixed so
// that the rows that --follow adds one by one line up with the first ones;
// a longer value pushes the rest of its row along.
var historyColumns = []int{7, 19, 14, 11, 22, 9, 10, 8, 0}

func (hw *historyWriter) row(cells ...any) {
	var b strings.Builder
	for i, c := range cells {
		v := strings.Map(func(r rune) rune {
			if r < ' ' {
				return ' '
			}
			return r
		}, fmt.Sprint(c))
		if i < len(cells)-1 {
			fmt.Fprintf(&b, "%-*s ", historyColumns[i], v)
		} else {
			b.WriteString(v)
		}
	}
	if _, err := fmt.Fprintln(hw.w, b.String()); err != nil && hw.err == nil {
		hw.err = err
	}
}

func (hw *historyWriter) write(conn socketd.Connection) {
	switch {
	case hw.enc != nil:
		if err := hw.enc.Encode(conn); err != nil && hw.err == nil {
			hw.err = err
		}
	case hw.csv != nil:
		hw.csv.Write(conn.CSVRecord())
	default:
		duration := ""
		if conn.DurationMS != nil {
			duration = (time.Duration(*conn.DurationMS) * time.Millisecond).String()
		}
		hw.row(conn.ID, conn.StartedAt.Local().Format("2006-01-02 15:04:05"), conn.Socket, string(conn.State),
			remote(conn), duration, outcome(conn), conn.BytesIn, conn.BytesOut)
	}
}

// flush writes out what is buffered and returns the first error of any
// write so far: a full disk fails the command.
func (hw *historyWriter) flush() error {
	if hw.csv != nil {
		hw.csv.Flush()
		if err := hw.csv.Error(); err != nil && hw.err == nil {
			hw.err = err
		}
	}
	return hw.err
}

// outcome says how a connection ended: its exit code or signal, or why it
// was refused or failed.
func outcome(conn socketd.Connection) string {
	switch {
	case conn.Signal != "":
		return conn.Signal
	case conn.ExitCode != nil:
		return "exit " + strconv.Itoa(*conn.ExitCode)
	case conn.Reason != "":
		return conn.Reason
	case conn.Error != "":
		return conn.Error
	}
	return ""
}

// remote names the peer: its address, or the credentials of a unix peer.
func remote(conn socketd.Connection) string {
	switch {
	case conn.PeerUID != nil:
		s := "uid " + strconv.Itoa(*conn.PeerUID)
		if conn.PeerPID != nil {
			s += " pid " + strconv.Itoa(*conn.PeerPID)
		}
		return s
	case conn.RemoteIP == "":
		return "-"
	}
	addr, err := netip.ParseAddr(conn.RemoteIP)
	if err != nil {
		return conn.RemoteIP
	}
	return netip.AddrPortFrom(addr, uint16(conn.RemotePort)).String()
}

func pidOf(conn socketd.Connection) string {
	if conn.PID == 0 {
		return "-"
	}
	return strconv.Itoa(conn.PID)
}

func runWatch(ctx context.Context, c *cli, args []string) int {
	var socket string
	c.flags.StringVar(&socket, "socket", "", "only this socket's events")
	c.outputFlag("text", "json")
	if _, status, ok := c.parse(args, 0, 0); !ok {
		return status
	}
	enc := json.NewEncoder(c.stdout)
	err := c.followEvents(ctx, socket, nil, func(e socketd.Event) {
		if c.output == "json" {
			enc.Encode(e)
			return
		}
		fmt.Fprintln(c.stdout, describeEvent(e))
	})
	if errors.Is(err, context.Canceled) {
		return exitOK
	}
	return c.fail(err)
}

// describeEvent writes an event as a line for people.
func describeEvent(e socketd.Event) string {
	if e.Type == api.EventMissed {
		return "-- some events were lost; what follows is from now on --"
	}
	at := e.Time.Local().Format("15:04:05.000")
	line := fmt.Sprintf("%s %-17s %s", at, e.Type, e.Socket)
	switch {
	case e.Connection != nil:
		conn := *e.Connection
		line += fmt.Sprintf(" #%d %s %s", conn.ID, remote(conn), conn.State)
		if o := outcome(conn); o != "" {
			line += " " + o
		}
	case e.Status != nil:
		line += " " + string(e.Status.State)
		if e.Status.Error != "" {
			line += ": " + e.Status.Error
		}
	}
	return line
}

func runKill(ctx context.Context, c *cli, args []string) int {
	ids, status, ok := c.parse(args, 1, -1)
	if !ok {
		return status
	}
	var nums []int64
	for _, v := range ids {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			return c.usageError("%q is not a connection id", v)
		}
		nums = append(nums, id)
	}
	worst := exitOK
	for _, id := range slices.Compact(nums) {
		conn, err := c.client.KillConnection(ctx, id)
		if err != nil {
			worst = worse(worst, c.fail(err))
			continue
		}
		fmt.Fprintf(c.stdout, "connection %d %s (%s)\n", id, conn.State, strings.TrimSpace(outcome(conn)))
	}
	return worst
}
