package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/socketd/socketd"
)

// socketList is the body of GET /v1/sockets.
type socketList struct {
	Items []socketd.Socket `json:"items"`
}

// socketPath returns the URL path of a socket.
func socketPath(name string) string { return "/v1/sockets/" + url.PathEscape(name) }

// listSockets answers GET /v1/sockets: every definition, by name, with its
// live status.
func (s *Server) listSockets(w http.ResponseWriter, r *http.Request) error {
	items, err := s.socketsWithStatus(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, socketList{Items: items})
}

// socketsWithStatus returns every definition with its live status.
func (s *Server) socketsWithStatus(ctx context.Context) ([]socketd.Socket, error) {
	list, err := s.store.ListSockets(ctx)
	if err != nil {
		return nil, err
	}
	items := make([]socketd.Socket, 0, len(list))
	for _, sock := range list {
		items = append(items, s.withStatus(sock))
	}
	return items, nil
}

// socketWithStatus returns the named definition with its live status.
func (s *Server) socketWithStatus(ctx context.Context, name string) (socketd.Socket, error) {
	sock, err := s.store.GetSocket(ctx, name)
	if err != nil {
		return socketd.Socket{}, err
	}
	return s.withStatus(sock), nil
}

// getSocket answers GET /v1/sockets/{name}.
func (s *Server) getSocket(w http.ResponseWriter, r *http.Request) error {
	sock, err := s.socketWithStatus(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	setETag(w, sock)
	return writeJSON(w, http.StatusOK, sock)
}

// putSocket answers PUT /v1/sockets/{name}: it creates the socket (201) or
// replaces its definition (200). The name in the URL is the socket's; a body
// may leave it out but may not name another.
func (s *Server) putSocket(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "name")
	sock, err := readSocket(r)
	if err != nil {
		return err
	}
	if err := nameFromURL(&sock, name); err != nil {
		return err
	}
	if version, ok, err := ifMatch(r, name); err != nil {
		return err
	} else if ok {
		// Only the version the client read is replaced.
		saved, err := s.replaceSocket(r.Context(), name, sock, version)
		switch socketd.ErrorCode(err) {
		case "":
		case socketd.CodeConflict:
			var se *socketd.Error
			errors.As(err, &se)
			return socketd.Errorf(socketd.CodePreconditionFailed, "%s", se.Message)
		case socketd.CodeNotFound:
			return socketd.Errorf(socketd.CodePreconditionFailed, "socket %q no longer exists: it was deleted after If-Match's version was read", name)
		default:
			return err
		}
		setETag(w, saved)
		return writeJSON(w, http.StatusOK, s.withStatus(saved))
	}
	if err := sock.Validate(); err != nil {
		return err
	}
	saved, created, err := s.store.PutSocket(r.Context(), sock)
	if err != nil {
		return err
	}
	s.reconcile(r.Context(), changedOrCreated(created), saved.Name)
	setETag(w, saved)
	status := http.StatusOK
	if created {
		w.Header().Set("Location", socketPath(saved.Name))
		status = http.StatusCreated
	}
	return writeJSON(w, status, s.withStatus(saved))
}

// nameFromURL gives sock the name its URL names, which the body may leave
// out but may not contradict.
func nameFromURL(sock *socketd.Socket, name string) error {
	switch sock.Name {
	case "":
		sock.Name = name
	case name:
	default:
		return &socketd.Error{
			Code:    socketd.CodeInvalid,
			Message: "the name in the body differs from the name in the URL",
			Fields: []socketd.FieldError{{
				Pointer: "/name",
				Detail:  fmt.Sprintf("is %q but the URL names %q; leave it out or make them equal", sock.Name, name),
			}},
		}
	}
	return nil
}

// createSocket answers POST /v1/sockets: it creates the socket the body
// names, or fails with a conflict if the name is taken.
func (s *Server) createSocket(w http.ResponseWriter, r *http.Request) error {
	sock, err := readSocket(r)
	if err != nil {
		return err
	}
	saved, err := s.addSocket(r.Context(), sock)
	if err != nil {
		return err
	}
	w.Header().Set("Location", socketPath(saved.Name))
	return writeJSON(w, http.StatusCreated, s.withStatus(saved))
}

// addSocket validates sock and creates it, or fails with a conflict if its
// name is taken, then reconciles and publishes socket.created. POST
// /v1/sockets and the dashboard's form create sockets through it.
func (s *Server) addSocket(ctx context.Context, sock socketd.Socket) (socketd.Socket, error) {
	if err := sock.Validate(); err != nil {
		return socketd.Socket{}, err
	}
	saved, err := s.store.CreateSocket(ctx, sock)
	if err != nil {
		return socketd.Socket{}, err
	}
	s.reconcile(ctx, socketd.EventSocketCreated, saved.Name)
	return saved, nil
}

// readSocket reads a socket definition from a PUT or POST body.
func readSocket(r *http.Request) (socketd.Socket, error) {
	if err := requireContentType(r, jsonContentType); err != nil {
		return socketd.Socket{}, err
	}
	body, err := readBody(r)
	if err != nil {
		return socketd.Socket{}, err
	}
	return decodeSocket(body, true)
}

// patchSocket answers PATCH /v1/sockets/{name} with a JSON merge patch
// (RFC 7396). The patch is applied to the stored definition and the result
// is decoded and validated as a PUT body would be, in one store transaction;
// null resets a field to its default. application/json is taken as a merge
// patch too, since it is what curl --json sends.
func (s *Server) patchSocket(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "name")
	if err := requireContentType(r, mergePatchContentType, jsonContentType); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	patch, err := decodePatch(body)
	if err != nil {
		return err
	}
	saved, err := s.updateSocket(r.Context(), name, patch)
	if err != nil {
		return err
	}
	s.reconcile(r.Context(), socketd.EventSocketChanged, saved.Name)
	setETag(w, saved)
	return writeJSON(w, http.StatusOK, s.withStatus(saved))
}

// errChangedMeanwhile says that a definition changed between reading it and
// writing its patched form.
var errChangedMeanwhile = errors.New("the socket changed meanwhile")

// updateSocket applies patch to the stored definition. The patched
// definition is validated outside the store's transaction, because
// validation looks at the file system and the write lock is shared with the
// connection history; the write then succeeds only if the definition has
// not changed since it was read, and is retried a few times if it has.
func (s *Server) updateSocket(ctx context.Context, name string, patch map[string]any) (socketd.Socket, error) {
	for range 3 {
		cur, err := s.store.GetSocket(ctx, name)
		if err != nil {
			return socketd.Socket{}, err
		}
		next, err := applyPatch(cur, patch)
		if err != nil {
			return socketd.Socket{}, err
		}
		saved, err := s.store.UpdateSocket(ctx, name, func(stored *socketd.Socket) error {
			if !stored.UpdatedAt.Equal(cur.UpdatedAt) {
				return errChangedMeanwhile
			}
			*stored = next
			return nil
		})
		if !errors.Is(err, errChangedMeanwhile) {
			return saved, err
		}
	}
	return socketd.Socket{}, socketd.Errorf(socketd.CodeConflict,
		"socket %q keeps changing under this patch; try again", name)
}

// replaceSocket replaces the definition of the socket name with sock, as
// PUT does, but only while the stored definition is the one updated at
// since, and never creates the socket: the dashboard's edit form saves
// through it, so that a change made while the form was open is not
// overwritten unseen. A later change is a conflict error; a deleted socket
// is not found.
func (s *Server) replaceSocket(ctx context.Context, name string, sock socketd.Socket, since time.Time) (socketd.Socket, error) {
	if err := nameFromURL(&sock, name); err != nil {
		return socketd.Socket{}, err
	}
	if err := sock.Validate(); err != nil {
		return socketd.Socket{}, err
	}
	saved, err := s.store.UpdateSocket(ctx, name, func(stored *socketd.Socket) error {
		if !stored.UpdatedAt.Equal(since) {
			return socketd.Errorf(socketd.CodeConflict, "socket %q was changed at %s, after this edit began",
				name, stored.UpdatedAt.Format(time.RFC3339))
		}
		*stored = sock
		return nil
	})
	if err != nil {
		return socketd.Socket{}, err
	}
	s.reconcile(ctx, socketd.EventSocketChanged, saved.Name)
	return saved, nil
}

// applyPatch returns cur with patch merged into it, decoded strictly and
// validated. It refuses to rename the socket.
func applyPatch(cur socketd.Socket, patch map[string]any) (socketd.Socket, error) {
	cur.Status = nil
	doc, err := json.Marshal(cur)
	if err != nil {
		return socketd.Socket{}, fmt.Errorf("encode socket %s: %w", cur.Name, err)
	}
	var target any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&target); err != nil {
		return socketd.Socket{}, fmt.Errorf("decode socket %s: %w", cur.Name, err)
	}
	merged, err := json.Marshal(mergePatch(target, patch))
	if err != nil {
		return socketd.Socket{}, fmt.Errorf("encode patched socket %s: %w", cur.Name, err)
	}
	next, err := decodeSocket(merged, false)
	if err != nil {
		return socketd.Socket{}, err
	}
	switch next.Name {
	case "":
		next.Name = cur.Name
	case cur.Name:
	default:
		return socketd.Socket{}, &socketd.Error{
			Code:    socketd.CodeInvalid,
			Message: "a socket cannot be renamed",
			Fields: []socketd.FieldError{{
				Pointer: "/name",
				Detail:  fmt.Sprintf("cannot change from %q; create %q and delete %q instead", cur.Name, next.Name, cur.Name),
			}},
		}
	}
	if err := next.Validate(); err != nil {
		return socketd.Socket{}, err
	}
	next.CreatedAt, next.UpdatedAt = cur.CreatedAt, cur.UpdatedAt
	return next, nil
}

// deleteSocket answers DELETE /v1/sockets/{name}.
func (s *Server) deleteSocket(w http.ResponseWriter, r *http.Request) error {
	if err := s.removeSocket(r.Context(), chi.URLParam(r, "name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// removeSocket deletes the named socket, then reconciles and publishes
// socket.deleted. The listener closes at the reconcile; connections in
// flight finish normally, and a running service (accept false) gets its
// kill_signal. DELETE and the dashboard delete sockets through it.
func (s *Server) removeSocket(ctx context.Context, name string) error {
	if err := s.store.DeleteSocket(ctx, name); err != nil {
		return err
	}
	s.reconcile(ctx, socketd.EventSocketDeleted, name)
	return nil
}

// reconcile asks the runtime to reconcile after a write of the named
// sockets made in ctx (a request's), then publishes an event of type typ
// for each. The write stands if the reconcile fails: the activator's
// periodic resync retries, so the failure is only logged. It runs even if
// the client has gone, bounded by applyTimeout.
func (s *Server) reconcile(ctx context.Context, typ socketd.EventType, names ...string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	defer func() {
		for _, name := range names {
			s.hub.Publish(socketd.Event{Type: typ, Socket: name})
		}
	}()
	if err := s.runtime.Apply(ctx); err != nil {
		s.log.WarnContext(ctx, "reconcile after a write failed; the periodic resync will retry",
			slog.String(logKeyRequestID, requestID(ctx)),
			slog.Any(logKeyErr, err))
	}
}

// changedOrCreated is the event of a PUT.
func changedOrCreated(created bool) socketd.EventType {
	if created {
		return socketd.EventSocketCreated
	}
	return socketd.EventSocketChanged
}

// withStatus returns sock with its live status from the runtime, if the
// runtime knows it.
func (s *Server) withStatus(sock socketd.Socket) socketd.Socket {
	sock.Status = nil
	if st, ok := s.runtime.Status(sock.Name); ok {
		// Empty lists and maps show as [] and {}, never null.
		if st.Listening == nil {
			st.Listening = []string{}
		}
		if st.RefusedByReason == nil {
			st.RefusedByReason = map[string]int64{}
		}
		if st.Sources == nil {
			st.Sources = []socketd.SourceCount{}
		}
		sock.Status = &st
	}
	return sock
}
