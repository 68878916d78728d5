package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/socketd/socketd"
	"github.com/socketd/socketd/convert"
)

// Import formats, as the format query parameter names them.
const (
	formatSystemd = convert.FormatSystemd
	formatInetd   = convert.FormatInetd
	formatXinetd  = convert.FormatXinetd
)

// importQuery and exportQuery list the query parameters of the import and
// export routes.
var (
	importQuery = []string{"format", "name", "dry_run"}
	exportQuery = []string{"format"}
)

// importResult is the body of POST /v1/import.
type importResult struct {
	// Items are the sockets as saved (with their status), or as they
	// would be with dry_run.
	Items []socketd.Socket `json:"items"`
	// Unmapped lists every directive of the text the sockets do not
	// express.
	Unmapped []convert.Unmapped `json:"unmapped"`
	DryRun   bool               `json:"dry_run"`
}

// exportResult is the body of GET /v1/sockets/{name}/export.
type exportResult struct {
	Files []convert.File `json:"files"`
}

// importSockets answers POST /v1/import: the body, as text, is a systemd
// socket unit with its service (format systemd, which needs the name), an
// inetd.conf or an xinetd configuration; without a format the text tells
// which. Every socket it defines is validated first; then each is created
// or replaced, unless dry_run is true.
func (s *Server) importSockets(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, importQuery); err != nil {
		return err
	}
	dryRun := false
	if v := q.Get("dry_run"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return socketd.Errorf(socketd.CodeBadRequest, "dry_run %q is not true or false", v)
		}
		dryRun = b
	}
	if err := requireContentType(r, "text/plain"); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	out, err := s.importText(r.Context(), q.Get("format"), q.Get("name"), string(body), dryRun, nil)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// importText imports text in format ("" to tell from the text), as POST
// /v1/import and the dashboard's import page do: it converts the text,
// validates every socket, then creates or replaces them all in one store
// transaction, unless dryRun: all are saved, or none. When the sockets do
// not validate, it returns them as converted with the error, so that a page
// can show each socket beside its errors.
//
// versions, unless nil, says which definitions the import may replace: for
// each name, the updated_at of the stored definition the user was shown, or
// the zero time for a socket that did not exist. A socket stored otherwise
// (changed, created or deleted since, or existing and not in versions) is
// a conflict, checked inside the write, and nothing is saved; the error
// points at each such socket (/items/1). POST /v1/import passes nil: it
// replaces, as PUT does.
func (s *Server) importText(ctx context.Context, format, name, text string, dryRun bool, versions map[string]time.Time) (importResult, error) {
	if format == "" {
		format = convert.Detect(text)
	}
	var res convert.Result
	var err error
	switch format {
	case formatSystemd:
		if name == "" {
			return importResult{}, socketd.Errorf(socketd.CodeInvalid,
				"a systemd unit does not say its own name: give name, the .socket unit's name without .socket")
		}
		res, err = convert.Systemd(name, text)
	case formatInetd:
		res, err = convert.Inetd(text)
	case formatXinetd:
		res, err = convert.Xinetd(text)
	default:
		return importResult{}, socketd.Errorf(socketd.CodeBadRequest, "format %q is not systemd, inetd or xinetd", format)
	}
	if err != nil {
		var ce *convert.Error
		if errors.As(err, &ce) {
			return importResult{}, socketd.Errorf(socketd.CodeInvalid, "the %s text cannot be imported: %v", format, ce)
		}
		return importResult{}, err
	}
	if len(res.Sockets) == 0 {
		return importResult{}, socketd.Errorf(socketd.CodeInvalid, "the %s text defines no socket", format)
	}
	out := importResult{Items: res.Sockets, Unmapped: res.Unmapped, DryRun: dryRun}
	if out.Unmapped == nil {
		out.Unmapped = []convert.Unmapped{}
	}
	if err := validateAll(res.Sockets); err != nil {
		return out, err
	}
	if dryRun {
		return out, nil
	}
	var check func([]*socketd.Socket) error
	if versions != nil {
		check = func(stored []*socketd.Socket) error { return checkVersions(res.Sockets, stored, versions) }
	}
	saved, isNew, err := s.store.PutSockets(ctx, res.Sockets, check)
	if socketd.ErrorCode(err) == socketd.CodeConflict {
		return out, err
	}
	if err != nil {
		return importResult{}, err
	}
	var created, changed []string
	for i := range saved {
		if isNew[i] {
			created = append(created, saved[i].Name)
		} else {
			changed = append(changed, saved[i].Name)
		}
	}
	s.reconcile(ctx, socketd.EventSocketCreated, created...)
	for _, name := range changed {
		s.hub.Publish(socketd.Event{Type: socketd.EventSocketChanged, Socket: name})
	}
	for i := range saved {
		out.Items[i] = s.withStatus(saved[i])
	}
	return out, nil
}

// checkVersions returns a conflict error, pointing at each socket of socks
// that versions does not expect as stored now, or nil.
func checkVersions(socks []socketd.Socket, stored []*socketd.Socket, versions map[string]time.Time) error {
	const when = "2006-01-02 15:04:05 MST"
	var fields []socketd.FieldError
	for i, sock := range socks {
		want, shown := versions[sock.Name]
		cur := stored[i]
		var detail string
		switch {
		case cur == nil && !want.IsZero():
			detail = "was deleted after the preview: import again to define it again"
		case cur == nil:
			continue
		case !shown:
			detail = fmt.Sprintf("exists already, last changed at %s, and importing replaces its definition: "+
				"check the preview, then import again to replace it", cur.UpdatedAt.Format(when))
		case want.IsZero():
			detail = fmt.Sprintf("was created at %s, after the preview: check it, then import again to replace it",
				cur.UpdatedAt.Format(when))
		case !cur.UpdatedAt.Equal(want):
			detail = fmt.Sprintf("was changed at %s, after the preview: check it, then import again to replace it",
				cur.UpdatedAt.Format(when))
		default:
			continue
		}
		fields = append(fields, socketd.FieldError{Pointer: fmt.Sprintf("/items/%d", i), Detail: detail})
	}
	if len(fields) == 0 {
		return nil
	}
	return &socketd.Error{Code: socketd.CodeConflict, Fields: fields,
		Message: "nothing was imported: it would replace definitions other than those the preview showed"}
}

// validateAll validates imported sockets, with every field error pointing
// into the items of the result: "/items/1/command/0".
func validateAll(socks []socketd.Socket) error {
	var fields []socketd.FieldError
	seen := map[string]int{}
	for i := range socks {
		prefix := fmt.Sprintf("/items/%d", i)
		if j, ok := seen[socks[i].Name]; ok {
			fields = append(fields, socketd.FieldError{Pointer: prefix + "/name",
				Detail: fmt.Sprintf("%q repeats /items/%d: each socket is defined once", socks[i].Name, j)})
		}
		seen[socks[i].Name] = i
		var e *socketd.Error
		if err := socks[i].Validate(); errors.As(err, &e) {
			for _, f := range e.Fields {
				fields = append(fields, socketd.FieldError{Pointer: prefix + f.Pointer, Detail: f.Detail})
			}
		} else if err != nil {
			return err
		}
	}
	if len(fields) > 0 {
		return &socketd.Error{Code: socketd.CodeInvalid, Message: "the imported definitions are not valid", Fields: fields}
	}
	return nil
}

// exportSocket answers GET /v1/sockets/{name}/export: the socket as systemd
// units, its .socket and its @.service (accept) or .service.
func (s *Server) exportSocket(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, exportQuery); err != nil {
		return err
	}
	if f := q.Get("format"); f != "" && f != formatSystemd {
		return socketd.Errorf(socketd.CodeBadRequest, "format %q: exports are in systemd format only", f)
	}
	sock, err := s.store.GetSocket(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, exportResult{Files: convert.ExportSystemd(&sock)})
}
