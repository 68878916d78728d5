package api

import (
	"cmp"
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/socketd/socketd"
)

// connectionList is the body of GET /v1/connections.
type connectionList struct {
	Items []socketd.Connection `json:"items"`
	// NextCursor is the cursor of the next page; "" on the last one.
	NextCursor string `json:"next_cursor"`
}

// connectionQuery lists the query parameters of GET /v1/connections. Any
// other is refused, so that a misspelt filter does not silently match all.
var connectionQuery = []string{"socket", "state", "remote_ip", "since", "until", "limit", "cursor"}

// listConnections answers GET /v1/connections: the history, newest first,
// one page at a time.
func (s *Server) listConnections(w http.ResponseWriter, r *http.Request) error {
	f, err := parseConnectionFilter(r.URL.Query())
	if err != nil {
		return err
	}
	items, next, err := s.store.ListConnections(r.Context(), f)
	if err != nil {
		return err
	}
	if items == nil {
		items = []socketd.Connection{}
	}
	s.withLive(items)
	return writeJSON(w, http.StatusOK, connectionList{Items: items, NextCursor: next})
}

// parseConnectionFilter reads the filter of GET /v1/connections. A value that
// does not parse is a bad_request; one that parses but breaks a rule (an
// unknown state, a limit out of range) is invalid, as in a request body.
func parseConnectionFilter(q url.Values) (socketd.ConnectionFilter, error) {
	var f socketd.ConnectionFilter
	if err := checkQuery(q, connectionQuery); err != nil {
		return f, err
	}
	f.Socket = q.Get("socket")
	f.Cursor = q.Get("cursor")
	if v := q.Get("state"); v != "" {
		f.State = socketd.ConnectionState(v)
		if !f.State.Valid() {
			return f, socketd.Errorf(socketd.CodeInvalid, "state %q is not one of %s", v, socketd.ConnectionStateList())
		}
	}
	if v := q.Get("remote_ip"); v != "" {
		ip, ok := socketd.HistoryIP(v)
		if !ok {
			return f, socketd.Errorf(socketd.CodeBadRequest, "remote_ip %q is not an IP address", v)
		}
		f.RemoteIP = ip
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return f, socketd.Errorf(socketd.CodeBadRequest,
				"%s %q is not an RFC 3339 time such as 2006-01-02T15:04:05Z", p.name, v)
		}
		*p.t = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return f, socketd.Errorf(socketd.CodeBadRequest, "limit %q is not an integer", v)
		}
		if n < 1 || n > socketd.MaxListLimit {
			return f, socketd.Errorf(socketd.CodeInvalid, "limit %d is out of range 1-%d", n, socketd.MaxListLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// connectionID reads the {id} of a connection route.
func connectionID(r *http.Request) (int64, error) {
	v := chi.URLParam(r, "id")
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return 0, socketd.Errorf(socketd.CodeBadRequest, "connection id %q is not a positive integer", v)
	}
	return id, nil
}

// getConnection answers GET /v1/connections/{id}.
func (s *Server) getConnection(w http.ResponseWriter, r *http.Request) error {
	id, err := connectionID(r)
	if err != nil {
		return err
	}
	c, err := s.store.GetConnection(r.Context(), id)
	if err != nil {
		return err
	}
	one := []socketd.Connection{c}
	s.withLive(one)
	return writeJSON(w, http.StatusOK, one[0])
}

// withLive fills in, for the running rows of cs, what the runtime knows
// and the row does not hold until the connection ends: the handler's pid
// and the bytes carried so far.
func (s *Server) withLive(cs []socketd.Connection) {
	live := map[string]map[int64]socketd.Connection{}
	for i := range cs {
		c := &cs[i]
		if c.State != socketd.ConnRunning {
			continue
		}
		bySocket, ok := live[c.Socket]
		if !ok {
			bySocket = map[int64]socketd.Connection{}
			for _, lc := range s.runtime.Connections(c.Socket) {
				bySocket[lc.ID] = lc
			}
			live[c.Socket] = bySocket
		}
		if lc, ok := bySocket[c.ID]; ok {
			c.PID, c.BytesIn, c.BytesOut = cmp.Or(c.PID, lc.PID), lc.BytesIn, lc.BytesOut
		}
	}
}

// connectionLog answers GET /v1/connections/{id}/log with the handler's
// captured standard error, as text.
func (s *Server) connectionLog(w http.ResponseWriter, r *http.Request) error {
	id, err := connectionID(r)
	if err != nil {
		return err
	}
	log, err := s.store.ConnectionLog(r.Context(), id)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(log)))
	w.WriteHeader(http.StatusOK)
	w.Write(log)
	return nil
}

// killConnection answers DELETE /v1/connections/{id}: it terminates a running
// connection's handler (SIGTERM to its process group, SIGKILL after the
// activator's stop timeout) and answers 200 with the final row once the
// handler is dead and recorded. The history row itself stays. A connection
// that is not running is a conflict.
func (s *Server) killConnection(w http.ResponseWriter, r *http.Request) error {
	id, err := connectionID(r)
	if err != nil {
		return err
	}
	// Killing waits for the handler to die, for up to the activator's stop
	// timeout, which can exceed the server's write timeout; the activator
	// bounds it. It goes on if the client goes away: half a kill helps no one.
	http.NewResponseController(w).SetWriteDeadline(time.Time{})
	ctx := context.WithoutCancel(r.Context())
	if err := s.runtime.Kill(ctx, id); socketd.ErrorCode(err) == socketd.CodeNotFound {
		c, err := s.store.GetConnection(ctx, id)
		if err != nil {
			return err
		}
		if c.State == socketd.ConnRunning {
			return socketd.Errorf(socketd.CodeConflict, "connection %d is already ending", id)
		}
		return socketd.Errorf(socketd.CodeConflict, "connection %d is not running; it is %s", id, c.State)
	} else if err != nil {
		return err
	}
	c, err := s.store.GetConnection(ctx, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

// checkQuery refuses a query parameter not in known, so that a misspelt one
// is not silently ignored, and one given more than once.
func checkQuery(q url.Values, known []string) error {
	for k, vs := range q {
		if !slices.Contains(known, k) {
			return socketd.Errorf(socketd.CodeBadRequest,
				"unknown query parameter %q; this takes %s", k, strings.Join(known, ", "))
		}
		if len(vs) > 1 {
			return socketd.Errorf(socketd.CodeBadRequest, "query parameter %s is given %d times", k, len(vs))
		}
	}
	return nil
}
