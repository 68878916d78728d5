package web

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/socketd/socketd"
)

// connectionPage is what a connection's page shows besides the common
// parts.
type connectionPage struct {
	connRow
	// Log is the captured standard error, as text; "" if nothing was
	// captured (or stderr did not go to the log).
	Log string
	// SocketGone is set when the socket has been deleted since: the
	// history keeps its rows.
	SocketGone bool
}

// readConnectionPage reads connection id, with the bytes it has carried so
// far while it runs, and its captured standard error.
func (d *Dashboard) readConnectionPage(r *http.Request) (*connectionPage, error) {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return nil, socketd.Errorf(socketd.CodeNotFound, "no connection %q", chi.URLParam(r, "id"))
	}
	c, err := d.backend.GetConnection(r.Context(), id)
	if err != nil {
		return nil, err
	}
	cp := &connectionPage{connRow: newConnRow(c, time.Now())}
	// A running handler's stderr is kept once it ends: nothing to read yet.
	var log []byte
	if c.State != socketd.ConnRunning {
		if log, err = d.backend.ConnectionLog(r.Context(), id); err != nil {
			return nil, err
		}
	}
	cp.Log = strings.ToValidUTF8(string(log), "\uFFFD")
	if _, err := d.backend.GetSocket(r.Context(), c.Socket); socketd.ErrorCode(err) == socketd.CodeNotFound {
		cp.SocketGone = true
	} else if err != nil {
		return nil, err
	}
	return cp, nil
}

// connectionPageHandler shows every field of a connection and its
// captured standard error; while it runs, a kill button.
func (d *Dashboard) connectionPageHandler(w http.ResponseWriter, r *http.Request) {
	d.showConnection(w, r, "layout")
}

// connectionDetail is the connection page's live part alone, which the
// page fetches again when an event of its socket comes while it runs.
func (d *Dashboard) connectionDetail(w http.ResponseWriter, r *http.Request) {
	d.showConnection(w, r, "connection-detail")
}

func (d *Dashboard) showConnection(w http.ResponseWriter, r *http.Request, name string) {
	cp, err := d.readConnectionPage(r)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	p := d.newPage(r, "Connection "+strconv.FormatInt(cp.ID, 10), "history")
	p.Connection = cp
	p.Events = "socket=" + cp.Socket + "&"
	d.render(w, "connection", name, http.StatusOK, p)
}
