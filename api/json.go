package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"unicode"

	"github.com/socketd/socketd"
)

// maxBodyBytes bounds a request body: a socket definition is a few hundred
// bytes, and the API can start programs, so it reads no more than it needs.
const maxBodyBytes = 1 << 20

// Media types of request bodies.
const (
	jsonContentType       = "application/json"
	mergePatchContentType = "application/merge-patch+json"
)

// requireContentType returns an unsupported error unless the request's
// Content-Type is one of types (parameters such as charset are allowed).
func requireContentType(r *http.Request, types ...string) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && slices.Contains(types, strings.ToLower(mt)) {
		return nil
	}
	if ct == "" {
		ct = "none"
	}
	return socketd.Errorf(socketd.CodeUnsupported,
		"a body of type %s is not accepted here; send %s", ct, strings.Join(types, " or "))
}

// readBody reads the whole request body, at most maxBodyBytes of it.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > maxBodyBytes {
		return nil, tooLarge()
	}
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge()
	case err != nil:
		return nil, socketd.Errorf(socketd.CodeBadRequest, "reading the request body: %v", err)
	}
	return b, nil
}

func tooLarge() error {
	return socketd.Errorf(socketd.CodeTooLarge, "the request body is larger than %d bytes", maxBodyBytes)
}

// socketFields are the JSON names of a socket's fields, from its struct tags.
var socketFields = jsonFieldNames(reflect.TypeFor[socketd.Socket]())

func jsonFieldNames(t reflect.Type) map[string]bool {
	names := map[string]bool{}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			// encoding/json flattens an embedded struct's fields.
			maps.Copy(names, jsonFieldNames(f.Type))
		case f.IsExported() && name != "-" && name != "":
			names[name] = true
		}
	}
	return names
}

// socketInput is what a socket definition is decoded into. The fields the
// daemon sets (status, created_at, updated_at) shadow the Socket's, so that
// they take any value and are dropped: a definition read with GET can be
// sent back as it is.
type socketInput struct {
	socketd.Socket
	Status    json.RawMessage `json:"status"`
	CreatedAt json.RawMessage `json:"created_at"`
	UpdatedAt json.RawMessage `json:"updated_at"`
}

// decodeSocket decodes a socket definition strictly over the defaults of
// socketd.NewSocket: the body must be one JSON object whose keys are
// exactly the names of a socket's fields and whose values have the right
// types. Any other input is a bad_request error that says where it went
// wrong, with byte offsets if offsets is set (they mean nothing in a
// document the client did not send). The definition is not validated here.
func decodeSocket(body []byte, offsets bool) (socketd.Socket, error) {
	obj, err := decodeObject(body, offsets)
	if err != nil {
		return socketd.Socket{}, err
	}
	// encoding/json matches keys case-insensitively; a definition's keys
	// are matched exactly, so that "Enabled" is an unknown field and not a
	// second spelling of "enabled".
	var unknown []socketd.FieldError
	for k := range obj {
		if !socketFields[k] {
			unknown = append(unknown, socketd.FieldError{
				Pointer: "/" + socketd.EscapePointer(k), Detail: "is not a field of a socket",
			})
		}
	}
	if len(unknown) > 0 {
		slices.SortFunc(unknown, func(a, b socketd.FieldError) int { return strings.Compare(a.Pointer, b.Pointer) })
		return socketd.Socket{}, &socketd.Error{
			Code:    socketd.CodeBadRequest,
			Message: fmt.Sprintf("the body has unknown field %s", unknown[0].Pointer),
			Fields:  unknown,
		}
	}
	in := socketInput{Socket: socketd.NewSocket()}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		// The path of a field in socketInput starts with the names of the
		// embedded structs (Socket, SocketOptions), which the client never
		// sees: Go names, where every JSON name is lower case.
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			for typ.Field != "" && unicode.IsUpper(rune(typ.Field[0])) {
				_, typ.Field, _ = strings.Cut(typ.Field, ".")
			}
		}
		return socketd.Socket{}, jsonError(err, offsets)
	}
	return in.Socket, nil
}

// decodeObject checks that body holds exactly one JSON object and nothing
// after it, and returns its members.
func decodeObject(body []byte, offsets bool) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&obj); err != nil {
		return nil, jsonError(err, offsets)
	}
	if obj == nil {
		return nil, socketd.Errorf(socketd.CodeBadRequest, "the body must be a JSON object, not null")
	}
	if err := checkTrailing(body, dec); err != nil {
		return nil, err
	}
	return obj, nil
}

// checkTrailing returns a bad_request error if body has more than white
// space after the value dec decoded.
func checkTrailing(body []byte, dec *json.Decoder) error {
	off := dec.InputOffset()
	rest := body[off:]
	if i := bytes.IndexFunc(rest, func(r rune) bool { return !strings.ContainsRune(" \t\r\n", r) }); i >= 0 {
		return socketd.Errorf(socketd.CodeBadRequest,
			"the body has data after its JSON value, at offset %d", off+int64(i))
	}
	return nil
}

// jsonError turns an error of encoding/json into a bad_request error that
// says which field or, if offsets is set, which byte offset is at fault.
func jsonError(err error, offsets bool) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return socketd.Errorf(socketd.CodeBadRequest, "the body is empty; it must be a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return socketd.Errorf(socketd.CodeBadRequest, "the body ends in the middle of its JSON value")
	case errors.As(err, &syntax):
		return socketd.Errorf(socketd.CodeBadRequest, "the body is not valid JSON at offset %d: %v", syntax.Offset, strings.TrimPrefix(err.Error(), "json: "))
	case errors.As(err, &typ) && typ.Field == "":
		return socketd.Errorf(socketd.CodeBadRequest, "the body must be a JSON object, not %s", article(typ.Value))
	case errors.As(err, &typ):
		pointer := "/" + strings.ReplaceAll(typ.Field, ".", "/")
		detail := fmt.Sprintf("must be %s, not %s", jsonKind(typ.Type), article(typ.Value))
		if offsets {
			detail += fmt.Sprintf(" (at offset %d)", typ.Offset)
		}
		return &socketd.Error{
			Code:    socketd.CodeBadRequest,
			Message: fmt.Sprintf("field %s %s", pointer, detail),
			Fields:  []socketd.FieldError{{Pointer: pointer, Detail: detail}},
		}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// decodeSocket catches unknown top-level keys first; this is
		// one nested in an object field.
		return socketd.Errorf(socketd.CodeBadRequest, "the body has %s", strings.TrimPrefix(err.Error(), "json: "))
	default:
		return socketd.Errorf(socketd.CodeBadRequest, "the body is not a valid socket definition: %v", err)
	}
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	default:
		return t.String()
	}
}

// article puts "a" or "an" before a JSON type name from encoding/json.
func article(v string) string {
	switch {
	case v == "":
		return "this value"
	case strings.ContainsRune("aeiou", rune(v[0])):
		return "an " + v
	default:
		return "a " + v
	}
}

// writeJSON writes v as a JSON response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", jsonContentType)
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
	return nil
}

// decodePatch decodes a JSON merge patch for a socket: one JSON object,
// nothing after it. Numbers stay json.Number, so that merging and
// re-encoding loses no precision.
func decodePatch(body []byte) (map[string]any, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, jsonError(err, true)
	}
	if err := checkTrailing(body, dec); err != nil {
		return nil, err
	}
	patch, ok := v.(map[string]any)
	if !ok {
		return nil, socketd.Errorf(socketd.CodeBadRequest, "a merge patch of a socket must be a JSON object")
	}
	return patch, nil
}
