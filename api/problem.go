package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/socketd/socketd"
)

// ProblemTypeBase prefixes the code of an error to form the "type" of its
// problem document: "https://socketd.dev/problems/not_found". The type is an
// identifier; clients compare it (or, more simply, the code) and need not
// dereference it.
const ProblemTypeBase = "https://socketd.dev/problems/"

// CodeMethodNotAllowed is the code of a 405 problem. The root package has no
// code for it because only HTTP knows methods.
const CodeMethodNotAllowed socketd.Code = "method_not_allowed"

// problemContentType is the media type of every error body (RFC 9457).
const problemContentType = "application/problem+json"

// Problem is the body of every error response: an RFC 9457 problem document
// with the socketd error code and, for validation, the fields at fault.
type Problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Code   socketd.Code `json:"code"`
	// Errors points at the fields of the request body at fault.
	Errors []socketd.FieldError `json:"errors,omitempty"`
	// RequestID is the X-Request-Id of the request, under which the daemon
	// logs what it knows about the failure.
	RequestID string `json:"request_id,omitempty"`
}

// problemKinds maps each error code to its HTTP status and title.
var problemKinds = map[socketd.Code]struct {
	status int
	title  string
}{
	socketd.CodeInvalid:            {http.StatusUnprocessableEntity, "Invalid input"},
	socketd.CodeBadRequest:         {http.StatusBadRequest, "Bad request"},
	socketd.CodeNotFound:           {http.StatusNotFound, "Not found"},
	socketd.CodeConflict:           {http.StatusConflict, "Conflict"},
	socketd.CodePreconditionFailed: {http.StatusPreconditionFailed, "Precondition failed"},
	socketd.CodeUnauthorized:       {http.StatusUnauthorized, "Unauthorized"},
	socketd.CodeForbidden:          {http.StatusForbidden, "Forbidden"},
	socketd.CodeTooLarge:           {http.StatusRequestEntityTooLarge, "Request body too large"},
	socketd.CodeUnsupported:        {http.StatusUnsupportedMediaType, "Unsupported media type"},
	socketd.CodeUnavailable:        {http.StatusServiceUnavailable, "Service unavailable"},
	CodeMethodNotAllowed:           {http.StatusMethodNotAllowed, "Method not allowed"},
	socketd.CodeInternal:           {http.StatusInternalServerError, "Internal server error"},
}

// internalDetail is all a client learns of an internal error.
const internalDetail = "the daemon could not complete the request; its log has the cause under this request id"

// problemFor turns an error into the problem document that describes it. An
// error that is not a *socketd.Error, or whose code is unknown or internal,
// becomes a generic 500: its text may hold paths or SQL and stays in the log.
func problemFor(err error) Problem {
	var e *socketd.Error
	kind, known := problemKinds[socketd.ErrorCode(err)]
	if !errors.As(err, &e) || !known || e.Code == socketd.CodeInternal {
		kind := problemKinds[socketd.CodeInternal]
		return Problem{
			Type:   ProblemTypeBase + string(socketd.CodeInternal),
			Title:  kind.title,
			Status: kind.status,
			Detail: internalDetail,
			Code:   socketd.CodeInternal,
		}
	}
	return Problem{
		Type:   ProblemTypeBase + string(e.Code),
		Title:  kind.title,
		Status: kind.status,
		Detail: e.Message,
		Code:   e.Code,
		Errors: e.Fields,
	}
}

// writeError renders err as an application/problem+json response. It is the
// one place where an error becomes a status and a body; internal errors are
// logged here with the request id.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	p := problemFor(err)
	p.RequestID = requestID(r.Context())
	if p.Status == http.StatusInternalServerError {
		s.log.ErrorContext(r.Context(), "request failed",
			slog.String(logKeyRequestID, p.RequestID),
			slog.String(logKeyMethod, r.Method),
			slog.String(logKeyPath, r.URL.Path),
			slog.Any(logKeyErr, err))
	}
	body, mErr := json.Marshal(p)
	if mErr != nil {
		// A Problem holds only strings and ints; this cannot happen.
		panic(mErr)
	}
	h := w.Header()
	h.Set("Content-Type", problemContentType)
	h.Del("Content-Length")
	w.WriteHeader(p.Status)
	w.Write(append(body, '\n'))
}

// notFound answers a path the router does not know.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, socketd.Errorf(socketd.CodeNotFound, "no route for %s", r.URL.Path))
}
