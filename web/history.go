package web

import (
	"encoding/csv"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/socketd/socketd"
)

// historyPageRows is how many connections a page of the history shows.
const historyPageRows = 50

// historyPage is what the history page shows besides the common parts.
type historyPage struct {
	// Filter holds the filters as typed, to show them again.
	Filter historyFilter
	// Errors holds what is wrong with a filter, by its field name.
	Errors  map[string]string
	Sockets []string
	// Known holds the sockets that exist: the history keeps the rows of
	// deleted ones, which have no page to link to.
	Known  map[string]bool
	States []socketd.ConnectionState
	Zone   string // the time zone the times are in
	Rows   []connRow
	// Query is the filters as a query string; Next the query of the next
	// (older) page, "" on the last; Older whether this page is not the
	// first, which alone follows new connections live. Both are made by
	// url.Values.Encode: template.URL keeps the template from escaping
	// their = and & again.
	Query, Next template.URL
	Older       bool
}

// historyFilter is the history's filter form: the query parameters socket,
// state, remote_ip, since and until.
type historyFilter struct {
	Socket, State, RemoteIP, Since, Until string
}

// inputTimeLayout is a datetime-local input's value, to the second.
const inputTimeLayout = "2006-01-02T15:04:05"

// timeLayouts are the times a filter takes: what a datetime-local input
// sends, in the daemon's time zone, or RFC 3339.
var timeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"}

// parseHistoryFilter reads the filters of q. Each value that does not parse
// gets an error under its field's name, and is left out of the filter.
func parseHistoryFilter(q url.Values) (historyFilter, socketd.ConnectionFilter, map[string]string) {
	hf := historyFilter{
		Socket: strings.TrimSpace(q.Get("socket")), State: q.Get("state"),
		RemoteIP: strings.TrimSpace(q.Get("remote_ip")),
		Since:    strings.TrimSpace(q.Get("since")), Until: strings.TrimSpace(q.Get("until")),
	}
	f := socketd.ConnectionFilter{Socket: hf.Socket}
	errs := map[string]string{}
	if hf.State != "" {
		if st := socketd.ConnectionState(hf.State); st.Valid() {
			f.State = st
		} else {
			errs["state"] = "Not a state: pick one of " + socketd.ConnectionStateList() + "."
		}
	}
	if hf.RemoteIP != "" {
		if ip, ok := socketd.HistoryIP(hf.RemoteIP); ok {
			f.RemoteIP = ip
		} else {
			errs["remote_ip"] = "Not an IP address, such as 192.0.2.7 or 2001:db8::7."
		}
	}
	for _, p := range []struct {
		name, v string
		t       *time.Time
	}{{"since", hf.Since, &f.Since}, {"until", hf.Until, &f.Until}} {
		if p.v == "" {
			continue
		}
		t, ok := parseFilterTime(p.v)
		if !ok {
			errs[p.name] = "Not a date and time such as 2006-01-02T15:04 (" + zoneName() + ")."
			continue
		}
		*p.t = t
	}
	// Shown again as the date and time inputs take them: an RFC 3339
	// time typed into the address bar would otherwise be blanked by the
	// input and dropped from the next search.
	if !f.Since.IsZero() {
		hf.Since = f.Since.In(time.Local).Format(inputTimeLayout)
	}
	if !f.Until.IsZero() {
		hf.Until = f.Until.In(time.Local).Format(inputTimeLayout)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		errs["until"] = "Must be after the start of the range."
		f.Until = time.Time{}
	}
	return hf, f, errs
}

func parseFilterTime(v string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, true
	}
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// zoneName names the daemon's time zone, which the history's times are
// shown and read in.
func zoneName() string {
	name, _ := time.Now().Zone()
	return name
}

// readHistoryPage reads the page of the history the request's query asks
// for.
func (d *Dashboard) readHistoryPage(r *http.Request) (*historyPage, error) {
	q := r.URL.Query()
	hf, f, errs := parseHistoryFilter(q)
	hp := &historyPage{Filter: hf, Errors: errs, States: socketd.ConnectionStates, Zone: zoneName()}
	socks, err := d.backend.ListSockets(r.Context())
	if err != nil {
		return nil, err
	}
	hp.Known = map[string]bool{}
	for _, s := range socks {
		hp.Sockets = append(hp.Sockets, s.Name)
		hp.Known[s.Name] = true
	}
	slices.Sort(hp.Sockets)
	if hf.Socket != "" && !slices.Contains(hp.Sockets, hf.Socket) {
		// The history keeps the rows of deleted sockets.
		hp.Sockets = append(hp.Sockets, hf.Socket)
	}
	query := url.Values{}
	for k, v := range map[string]string{"socket": hf.Socket, "state": hf.State, "remote_ip": hf.RemoteIP, "since": hf.Since, "until": hf.Until} {
		if v != "" {
			query.Set(k, v)
		}
	}
	hp.Query = template.URL(query.Encode())
	if len(errs) > 0 {
		return hp, nil
	}
	f.Limit, f.Cursor = historyPageRows, q.Get("cursor")
	hp.Older = f.Cursor != ""
	cs, next, err := d.backend.ListConnections(r.Context(), f)
	if socketd.ErrorCode(err) == socketd.CodeInvalid && f.Cursor != "" {
		hp.Errors["cursor"] = "That page is not one of this history's: start again from the newest."
		return hp, nil
	}
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, c := range cs {
		hp.Rows = append(hp.Rows, newConnRow(c, now))
	}
	if next != "" {
		query.Set("cursor", next)
		hp.Next = template.URL(query.Encode())
	}
	return hp, nil
}

// historyPageHandler shows the history: filters, a page of connections
// newest first, links to older pages and to the CSV of every match.
func (d *Dashboard) historyPageHandler(w http.ResponseWriter, r *http.Request) {
	d.showHistory(w, r, "layout")
}

// historyTable is the history's table alone, which the first page fetches
// again when a connection opens or closes.
func (d *Dashboard) historyTable(w http.ResponseWriter, r *http.Request) {
	d.showHistory(w, r, "history-table")
}

func (d *Dashboard) showHistory(w http.ResponseWriter, r *http.Request, name string) {
	hp, err := d.readHistoryPage(r)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p := d.newPage(r, "History", "history")
	p.History = hp
	if hf := hp.Filter; hf.Socket != "" {
		p.Events = "socket=" + url.QueryEscape(hf.Socket) + "&"
	}
	status := http.StatusOK
	if len(hp.Errors) > 0 {
		status = http.StatusUnprocessableEntity
	}
	d.render(w, "history", name, status, p)
}

// historyCSV sends every connection the filters select, newest first, as
// CSV: the pages are read one after the other as the file is written.
func (d *Dashboard) historyCSV(w http.ResponseWriter, r *http.Request) {
	_, f, errs := parseHistoryFilter(r.URL.Query())
	if len(errs) > 0 {
		var msg []string
		for k, v := range errs {
			msg = append(msg, k+": "+v)
		}
		slices.Sort(msg)
		http.Error(w, strings.Join(msg, "\n"), http.StatusUnprocessableEntity)
		return
	}
	f.Limit = socketd.MaxListLimit
	cs, next, err := d.backend.ListConnections(r.Context(), f)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	// A long history takes longer to send than a response may usually
	// take; each page's write gets its own deadline instead.
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="socketd-history.csv"`)
	cw := csv.NewWriter(w)
	cw.Write(socketd.ConnectionCSVHeader)
	for {
		rc.SetWriteDeadline(time.Now().Add(time.Minute))
		for _, c := range cs {
			cw.Write(c.CSVRecord())
		}
		cw.Flush()
		if next == "" || cw.Error() != nil {
			return
		}
		f.Cursor = next
		if cs, next, err = d.backend.ListConnections(r.Context(), f); err != nil {
			// The status is sent: the file ends short, and the log says why.
			if r.Context().Err() == nil {
				d.log.Error("history csv", "err", err)
			}
			return
		}
	}
}
