package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
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
	def := s
	def.Status, def.CreatedAt, def.UpdatedAt = nil, time.Time{}, time.Time{}
	b, _ := json.MarshalIndent(def, "", "  ")
	sp.Definition = string(b)
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
	p.Events = "socket=" + sp.Socket.Name + "&"
	d.render(w, "socket", name, http.StatusOK, p)
}

// kill terminates a running connection, then shows its socket's page.
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
	if s := r.PostFormValue("socket"); s != "" {
		back = "/ui/sockets/" + s
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}
