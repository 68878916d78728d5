package web

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/socketd/socketd"
)

// recentRows is how many rows of its history a socket's page shows.
const recentRows = 20

// socketPage is what the socket's page shows besides the common parts.
type socketPage struct {
	Socket     socketd.Socket
	Status     socketd.SocketStatus
	Definition string // the definition as the API takes it
	Live       []connRow
	Recent     []connRow
}

// connRow is a connection as a table shows it.
type connRow struct {
	socketd.Connection
	Remote   string
	Age      string // of a running connection
	Duration string // of a finished one
	Outcome  string // exit code or signal
}

func newConnRow(c socketd.Connection, now time.Time) connRow {
	r := connRow{Connection: c, Remote: c.RemoteIP}
	switch {
	case c.PeerUID != nil:
		r.Remote = fmt.Sprintf("uid %d", *c.PeerUID)
	case c.RemoteIP != "":
		r.Remote = fmt.Sprintf("%s:%d", c.RemoteIP, c.RemotePort)
	}
	if c.State == socketd.ConnRunning {
		r.Age = now.Sub(c.StartedAt).Truncate(time.Second).String()
	}
	if c.DurationMS != nil {
		r.Duration = (time.Duration(*c.DurationMS) * time.Millisecond).String()
	}
	switch {
	case c.Signal != "":
		r.Outcome = c.Signal
	case c.ExitCode != nil:
		r.Outcome = "exit " + strconv.Itoa(*c.ExitCode)
	case c.Reason != "":
		r.Outcome = c.Reason
	}
	return r
}

// readSocketPage reads what the socket's page shows.
func (d *Dashboard) readSocketPage(ctx context.Context, name string) (*socketPage, error) {
	s, err := d.backend.GetSocket(ctx, name)
	if err != nil {
		return nil, err
	}
	sp := &socketPage{Socket: s}
	if s.Status != nil {
		sp.Status = *s.Status
	}
	sp.Definition = definitionText(s)
	now := time.Now()
	for _, c := range d.backend.LiveConnections(name) {
		sp.Live = append(sp.Live, newConnRow(c, now))
	}
	recent, _, err := d.backend.ListConnections(ctx, socketd.ConnectionFilter{Socket: name, Limit: recentRows})
	if err != nil {
		return nil, err
	}
	for _, c := range recent {
		sp.Recent = append(sp.Recent, newConnRow(c, now))
	}
	return sp, nil
}

// socketPageHandler shows one socket: its definition, its status, its live
// connections, each with a kill button, and its recent history.
func (d *Dashboard) socketPageHandler(w http.ResponseWriter, r *http.Request) {
	d.showSocket(w, r, "layout")
}

// socketLive is the socket page's live part alone, which the page fetches
// again when an event of the socket comes.
func (d *Dashboard) socketLive(w http.ResponseWriter, r *http.Request) {
	d.showSocket(w, r, "socket-live")
}

func (d *Dashboard) showSocket(w http.ResponseWriter, r *http.Request, name string) {
	sp, err := d.readSocketPage(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p := d.newPage(r, sp.Socket.Name, "sockets")
	p.Socket = sp
	if name == "layout" {
		if p.Charts, err = d.readCharts(r.Context(), sp.Socket.Name, r.URL.Query().Get("range")); err != nil {
			d.fail(w, r, err)
			return
		}
	}
	p.Events = "socket=" + sp.Socket.Name + "&"
	d.render(w, "socket", name, http.StatusOK, p)
}

// kill terminates a running connection, then shows its socket's page, or
// its own when the form says back=connection.
func (d *Dashboard) kill(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		http.Error(w, "no such connection", http.StatusNotFound)
		return
	}
	// Kill returns once the handler is dead, which can take its stop
	// timeout: longer than a response may usually take.
	http.NewResponseController(w).SetWriteDeadline(time.Time{})
	if err := d.backend.Kill(r.Context(), id); err != nil && socketd.ErrorCode(err) != socketd.CodeNotFound {
		d.fail(w, r, err)
		return
	}
	back := "/ui/"
	switch s := r.PostFormValue("socket"); {
	case r.PostFormValue("back") == "connection":
		back = "/ui/connections/" + strconv.FormatInt(id, 10)
	case s != "":
		back = "/ui/sockets/" + url.PathEscape(s)
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// chartRange is a time range the socket page's charts can show.
type chartRange struct {
	Name, Label string
	Span, Step  time.Duration
	StepLabel   string // "minute": a step is a bar of the chart
}

// chartRanges are the ranges the charts offer; the first is the default.
var chartRanges = []chartRange{
	{"1h", "Last hour", time.Hour, time.Minute, "minute"},
	{"24h", "Last 24 hours", 24 * time.Hour, 15 * time.Minute, "15 minutes"},
	{"7d", "Last 7 days", 7 * 24 * time.Hour, 2 * time.Hour, "2 hours"},
}

// socketCharts is what the socket page's charts show.
type socketCharts struct {
	Socket string
	Range  chartRange
	Ranges []chartRange
	Stats  socketd.ConnectionStats
	// Accepted and Refused are the totals of the range; Peak the most
	// connections of a step.
	Accepted, Refused, Peak int64
	// PerStep and Durations are the uPlot data of the two charts, as
	// JSON: [[x...], [y...]...].
	PerStep, Durations string
	// DurationLabels names the duration buckets by their upper bounds
	// (the last has none: "longer"), as JSON; DurationRows
	// are the same counts as a table, for screen readers.
	DurationLabels string
	DurationRows   []barRow
	Finished       int64 // connections with a duration
	Outcomes       []barRow
	Reasons        []barRow
}

// barRow is a row of a bar list: a label, its count and the list's
// largest count.
type barRow struct {
	Label  string
	N, Max int64
}

// barRows returns counts as bar rows, the largest first.
func barRows(counts map[string]int64) []barRow {
	rows := make([]barRow, 0, len(counts))
	var top int64
	for label, n := range counts {
		rows = append(rows, barRow{Label: label, N: n})
		top = max(top, n)
	}
	slices.SortFunc(rows, func(a, b barRow) int {
		return cmp.Or(cmp.Compare(b.N, a.N), strings.Compare(a.Label, b.Label))
	})
	for i := range rows {
		rows[i].Max = top
	}
	return rows
}

// readCharts reads the stats of a socket's charts over the range named
// rangeName ("" for the first).
func (d *Dashboard) readCharts(ctx context.Context, socket, rangeName string) (*socketCharts, error) {
	cr := chartRanges[0]
	for _, r := range chartRanges {
		if r.Name == rangeName {
			cr = r
		}
	}
	until := truncateLocal(time.Now(), cr.Step).Add(cr.Step)
	st, err := d.backend.ConnectionStats(ctx, socket, until.Add(-cr.Span), until, cr.Step)
	if err != nil {
		return nil, err
	}
	sc := &socketCharts{Socket: socket, Range: cr, Ranges: chartRanges, Stats: st,
		Outcomes: barRows(st.Outcomes), Reasons: barRows(st.Refused)}
	xs := make([]int64, len(st.Steps))
	accepted := make([]int64, len(st.Steps))
	refused := make([]int64, len(st.Steps))
	for i, s := range st.Steps {
		xs[i], accepted[i], refused[i] = s.Start.Unix(), s.Accepted, s.Refused
		sc.Accepted += s.Accepted
		sc.Refused += s.Refused
		sc.Peak = max(sc.Peak, s.Accepted+s.Refused)
	}
	sc.PerStep = jsonString([][]int64{xs, accepted, refused})
	buckets := make([]int64, len(st.Durations))
	labels := make([]string, len(st.Durations))
	for i := range buckets {
		buckets[i] = int64(i)
		if i < len(socketd.DurationBuckets) {
			labels[i] = shortDuration(socketd.DurationBuckets[i])
		} else {
			labels[i] = "longer"
		}
	}
	for i, n := range st.Durations {
		sc.DurationRows = append(sc.DurationRows, barRow{Label: labels[i], N: n})
		sc.Finished += n
	}
	sc.Durations = jsonString([][]int64{buckets, st.Durations})
	sc.DurationLabels = jsonString(labels)
	return sc, nil
}

// truncateLocal rounds t down to a multiple of step since its local
// midnight, so that steps start on the local clock's quarter hours and
// even hours whatever the zone's offset.
func truncateLocal(t time.Time, step time.Duration) time.Time {
	t = t.In(time.Local)
	midnight := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.Local)
	return midnight.Add(t.Sub(midnight) / step * step)
}

// shortDuration writes d as "10ms", "1s", "10m", "1h".
func shortDuration(d time.Duration) string {
	s := d.String()
	for _, unit := range []string{"h0m0s", "m0s"} {
		s = strings.Replace(s, unit, unit[:1], 1)
	}
	return s
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// socketChartsHandler is the socket page's charts alone, which the page
// fetches for another range, and again as connections end.
func (d *Dashboard) socketChartsHandler(w http.ResponseWriter, r *http.Request) {
	sc, err := d.readCharts(r.Context(), chi.URLParam(r, "name"), r.URL.Query().Get("range"))
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p := d.newPage(r, sc.Socket, "sockets")
	p.Charts = sc
	d.render(w, "socket", "socket-charts", http.StatusOK, p)
}
