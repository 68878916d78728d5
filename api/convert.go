package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/socketd/socketd"
	"github.com/socketd/socketd/convert"
)

// Import formats, as the format query parameter names them.
const (
	formatSystemd = "systemd"
	formatInetd   = "inetd"
	formatXinetd  = "xinetd"
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
	out, err := s.importText(r.Context(), q.Get("format"), q.Get("name"), string(body), dryRun)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// importText imports text in format ("" to tell from the text), as POST
// /v1/import and the dashboard's import page do: it converts the text,
// validates every socket, then creates or replaces each unless dryRun.
// When the sockets do not validate, it returns them as converted with the
// error, so that a page can show each socket beside its errors.
func (s *Server) importText(ctx context.Context, format, name, text string, dryRun bool) (importResult, error) {
	if format == "" {
		format = detectFormat(text)
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
	if !dryRun {
		var created, changed []string
		for i, sock := range res.Sockets {
			saved, isNew, err := s.store.PutSocket(ctx, sock)
			if err != nil {
				return importResult{}, err
			}
			out.Items[i] = saved
			if isNew {
				created = append(created, saved.Name)
			} else {
				changed = append(changed, saved.Name)
			}
		}
		s.reconcile(ctx, socketd.EventSocketCreated, created...)
		for _, name := range changed {
			s.hub.Publish(socketd.Event{Type: socketd.EventSocketChanged, Socket: name})
		}
		for i := range out.Items {
			out.Items[i] = s.withStatus(out.Items[i])
		}
	}
	return out, nil
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

// detectFormat tells which format text is in: systemd units have [Socket]
// or [Service] sections, xinetd's services are blocks, and anything else
// is read as inetd.conf lines.
func detectFormat(text string) string {
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "[Socket]" || line == "[Service]" || line == "[Unit]":
			return formatSystemd
		case strings.HasPrefix(line, "service ") && strings.Contains(text, "{"),
			strings.HasPrefix(line, "defaults") && strings.Contains(text, "{"):
			return formatXinetd
		}
	}
	return formatInetd
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
