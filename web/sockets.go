package web

import (
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/socketd/socketd"
)

// socketRow is a socket as the overview shows it.
type socketRow struct {
	Name, Description string
	State             socketd.SocketState
	Error             string
	Listen            []string
	Accepted          int64
	Connected         int64
	Refused           int64
	Enabled           bool
	Spark             template.HTML
}

// socketRows reads the sockets for the overview, by name.
func (d *Dashboard) socketRows(r *http.Request) ([]socketRow, error) {
	socks, err := d.backend.ListSockets(r.Context())
	if err != nil {
		return nil, err
	}
	slices.SortFunc(socks, func(a, b socketd.Socket) int { return strings.Compare(a.Name, b.Name) })
	rows := make([]socketRow, 0, len(socks))
	for _, s := range socks {
		row := socketRow{Name: s.Name, Description: s.Description, Listen: s.Listen, Enabled: s.Enabled,
			Spark: sparkline(d.backend.ConnectionsPerMinute(s.Name))}
		if st := s.Status; st != nil {
			row.State, row.Error = st.State, st.Error
			row.Accepted, row.Connected, row.Refused = st.Accepted, st.Connected, st.Refused
			if len(st.Listening) > 0 {
				row.Listen = st.Listening
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// socketsPage shows every socket.
func (d *Dashboard) socketsPage(w http.ResponseWriter, r *http.Request) {
	d.showSockets(w, r, "layout")
}

// socketsTable is the overview's table alone, which the page fetches again
// when an event says something changed.
func (d *Dashboard) socketsTable(w http.ResponseWriter, r *http.Request) {
	d.showSockets(w, r, "sockets-table")
}

// showSockets renders the sockets page's template name.
func (d *Dashboard) showSockets(w http.ResponseWriter, r *http.Request, name string) {
	rows, err := d.socketRows(r)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p := d.newPage(r, "Sockets", "sockets")
	p.Sockets = rows
	d.render(w, "sockets", name, http.StatusOK, p)
}

// setEnabled enables or disables the socket, then shows the overview.
func (d *Dashboard) setEnabled(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := d.backend.SetEnabled(r.Context(), chi.URLParam(r, "name"), on); err != nil {
			d.fail(w, r, err)
			return
		}
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	}
}

// sparkline draws counts as a small SVG line, the highest count at the
// top; with no count at all, a flat line at the bottom.
func sparkline(counts []int64) template.HTML {
	if len(counts) < 2 {
		return ""
	}
	const w, h = 120.0, 24.0
	top := slices.Max(counts)
	var pts strings.Builder
	for i, c := range counts {
		y := h - 1
		if top > 0 {
			y = h - 1 - (h-2)*float64(c)/float64(top)
		}
		fmt.Fprintf(&pts, "%.1f,%.1f ", w*float64(i)/float64(len(counts)-1), y)
	}
	var total int64
	for _, c := range counts {
		total += c
	}
	return template.HTML(fmt.Sprintf( // numbers only: nothing to escape
		`<svg class="spark" viewBox="0 0 %g %g" role="img" aria-label="%d connections in the last hour, at most %d a minute"><polyline points="%s"/></svg>`,
		w, h, total, top, strings.TrimSpace(pts.String())))
}
