package socketd

import (
	"errors"
	"fmt"
)

// Code classifies an Error; the API maps each code to an HTTP status.
type Code string

// Error codes.
const (
	CodeInvalid    Code = "invalid"     // a definition or parameter breaks a rule
	CodeBadRequest Code = "bad_request" // the request itself is malformed
	CodeNotFound   Code = "not_found"   // no such socket or connection
	CodeConflict   Code = "conflict"    // the name exists, or the state forbids it
	// CodePreconditionFailed: the socket is not the version If-Match names.
	CodePreconditionFailed Code = "precondition_failed"
	CodeUnauthorized       Code = "unauthorized" // no or wrong token
	CodeForbidden          Code = "forbidden"    // the request is refused as it stands
	CodeTooLarge           Code = "too_large"    // the request body is over the limit
	CodeUnsupported        Code = "unsupported"  // a media type the route does not take
	CodeUnavailable        Code = "unavailable"  // the daemon cannot do it now
	CodeInternal           Code = "internal"     // a bug or an I/O failure; details are logged
)

// FieldError points at one field of the input that is wrong. Pointer is a
// JSON Pointer (RFC 6901) into the request body, such as "/listen/0".
type FieldError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// Error is an error that carries a code for clients, a message safe to show
// them and, for validation, the fields at fault.
type Error struct {
	Code    Code
	Message string
	Fields  []FieldError
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	s := e.Message
	for _, f := range e.Fields {
		s += fmt.Sprintf("; %s: %s", f.Pointer, f.Detail)
	}
	return s
}

// ErrorCode returns the code of the first *Error in err's chain, CodeInternal
// for any other error, and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}
