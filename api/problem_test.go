package api

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/socketd/socketd"
)

// TestProblemFor checks the mapping from errors to problems.
func TestProblemFor(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   socketd.Code
		detail string
	}{
		{socketd.Errorf(socketd.CodeInvalid, "m"), 422, socketd.CodeInvalid, "m"},
		{socketd.Errorf(socketd.CodeBadRequest, "m"), 400, socketd.CodeBadRequest, "m"},
		{socketd.Errorf(socketd.CodeNotFound, "m"), 404, socketd.CodeNotFound, "m"},
		{socketd.Errorf(socketd.CodeConflict, "m"), 409, socketd.CodeConflict, "m"},
		{socketd.Errorf(socketd.CodeUnauthorized, "m"), 401, socketd.CodeUnauthorized, "m"},
		{socketd.Errorf(socketd.CodeForbidden, "m"), 403, socketd.CodeForbidden, "m"},
		{socketd.Errorf(socketd.CodeTooLarge, "m"), 413, socketd.CodeTooLarge, "m"},
		{socketd.Errorf(socketd.CodeUnsupported, "m"), 415, socketd.CodeUnsupported, "m"},
		{socketd.Errorf(socketd.CodeUnavailable, "m"), 503, socketd.CodeUnavailable, "m"},
		{&socketd.Error{Code: CodeMethodNotAllowed, Message: "m"}, 405, CodeMethodNotAllowed, "m"},
		// A wrapped *socketd.Error keeps its code; its own message is what
		// the client sees, not the wrapping.
		{fmt.Errorf("put socket: %w", socketd.Errorf(socketd.CodeConflict, "m")), 409, socketd.CodeConflict, "m"},
		// Anything else is a generic 500: the cause stays in the log.
		{socketd.Errorf(socketd.CodeInternal, "secret"), 500, socketd.CodeInternal, internalDetail},
		{socketd.Errorf("weird", "secret"), 500, socketd.CodeInternal, internalDetail},
		{errors.New("secret"), 500, socketd.CodeInternal, internalDetail},
	} {
		p := problemFor(tc.err)
		if p.Status != tc.status || p.Code != tc.code || p.Detail != tc.detail ||
			p.Type != ProblemTypeBase+string(tc.code) || p.Title == "" {
			t.Errorf("problemFor(%v) = %+v, want %d %s %q", tc.err, p, tc.status, tc.code, tc.detail)
		}
	}
	fields := []socketd.FieldError{{Pointer: "/listen/0", Detail: "d"}}
	p := problemFor(&socketd.Error{Code: socketd.CodeInvalid, Message: "m", Fields: fields})
	if len(p.Errors) != 1 || p.Errors[0] != fields[0] {
		t.Errorf("errors = %+v", p.Errors)
	}
	if p.Status != http.StatusUnprocessableEntity {
		t.Errorf("status %d", p.Status)
	}
}
