package api

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/internal/apitest"
)

// TestBadInput sends each bad input and checks its status, code and, where
// there is one, the pointer at fault; then that nothing changed: the stored
// sockets are the same and the runtime was not asked to reconcile.
func TestBadInput(t *testing.T) {
	h := newHarness(t)
	exe := testCommand(t)
	base := newSocket(t, "base")
	base.Environment = map[string]string{"A": "1"}
	if _, _, err := h.c.PutSocket(h.ctx(), base); err != nil {
		t.Fatal(err)
	}
	// A running connection, for the kill cases.
	conn := beginConnection(t, h.db, socketd.Connection{Socket: "base", RemoteIP: "127.0.0.1"})

	// def returns a valid definition as JSON with fields changed; a nil
	// value removes the field.
	def := func(changes map[string]any) string {
		m := map[string]any{"listen": []string{"127.0.0.1:0"}, "command": []string{exe}}
		for k, v := range changes {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	huge := `{"description": "` + strings.Repeat("x", maxBodyBytes) + `"}`
	const (
		jsonCT  = "application/json"
		patchCT = "application/merge-patch+json"
	)

	for _, tc := range []struct {
		name         string
		method, path string
		contentType  string
		body         string
		chunked      bool // send without Content-Length
		status       int
		code         socketd.Code
		pointer      string // in errors, if set
	}{
		// Bodies that do not parse: 400.
		{name: "malformed JSON", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: `{"listen": ["0"], "command": [`, status: 400, code: socketd.CodeBadRequest},
		{name: "syntax error", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: `{"listen" ["0"]}`, status: 400, code: socketd.CodeBadRequest},
		{name: "empty body", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: ``, status: 400, code: socketd.CodeBadRequest},
		{name: "not an object", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: `["0"]`, status: 400, code: socketd.CodeBadRequest},
		{name: "null", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: `null`, status: 400, code: socketd.CodeBadRequest},
		{name: "unknown field", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"bogus": 1}), status: 400, code: socketd.CodeBadRequest, pointer: "/bogus"},
		{name: "field in another case", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"Enabled": false}), status: 400, code: socketd.CodeBadRequest, pointer: "/Enabled"},
		{name: "trailing garbage", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(nil) + " garbage", status: 400, code: socketd.CodeBadRequest},
		{name: "two values", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(nil) + def(nil), status: 400, code: socketd.CodeBadRequest},
		{name: "wrong type listen", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"listen": "13063"}), status: 400, code: socketd.CodeBadRequest, pointer: "/listen"},
		{name: "wrong type in list", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"listen": []int{13063}}), status: 400, code: socketd.CodeBadRequest, pointer: "/listen"},
		{name: "wrong type accept", method: "POST", path: "/v1/sockets", contentType: jsonCT,
			body: def(map[string]any{"name": "x", "accept": "yes"}), status: 400, code: socketd.CodeBadRequest, pointer: "/accept"},
		{name: "wrong type environment", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"environment": map[string]any{"N": 1}}), status: 400, code: socketd.CodeBadRequest, pointer: "/environment"},

		// Bodies that parse but break a rule: 422.
		{name: "bad name in URL", method: "PUT", path: "/v1/sockets/Bad_Name", contentType: jsonCT,
			body: def(nil), status: 422, code: socketd.CodeInvalid, pointer: "/name"},
		{name: "bad name in body", method: "POST", path: "/v1/sockets", contentType: jsonCT,
			body: def(map[string]any{"name": "-dash"}), status: 422, code: socketd.CodeInvalid, pointer: "/name"},
		{name: "no name in POST", method: "POST", path: "/v1/sockets", contentType: jsonCT,
			body: def(nil), status: 422, code: socketd.CodeInvalid, pointer: "/name"},
		{name: "body name differs from URL", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"name": "y"}), status: 422, code: socketd.CodeInvalid, pointer: "/name"},
		{name: "body name differs from existing", method: "PUT", path: "/v1/sockets/base", contentType: jsonCT,
			body: def(map[string]any{"name": "other"}), status: 422, code: socketd.CodeInvalid, pointer: "/name"},
		{name: "unknown user", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"user": "no-such-user-here"}), status: 422, code: socketd.CodeInvalid, pointer: "/user"},
		{name: "unknown supplementary group", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"supplementary_groups": []string{"no-such-group-here"}}), status: 422, code: socketd.CodeInvalid, pointer: "/supplementary_groups/0"},
		{name: "backlog not a number", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"backlog": "many"}), status: 400, code: socketd.CodeBadRequest, pointer: "/backlog"},
		{name: "keep-alive time without keep-alive", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"keep_alive_time": "5m"}), status: 422, code: socketd.CodeInvalid, pointer: "/keep_alive_time"},
		{name: "empty listen", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"listen": []string{}}), status: 422, code: socketd.CodeInvalid, pointer: "/listen"},
		{name: "no listen", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"listen": nil}), status: 422, code: socketd.CodeInvalid, pointer: "/listen"},
		{name: "port out of range", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"listen": []string{"99999"}}), status: 422, code: socketd.CodeInvalid, pointer: "/listen/0"},
		{name: "host name in listen", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"listen": []string{"127.0.0.1:0", "host.example:80"}}), status: 422, code: socketd.CodeInvalid, pointer: "/listen/1"},
		{name: "address without port", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"listen": []string{"1.2.3.4"}}), status: 422, code: socketd.CodeInvalid, pointer: "/listen/0"},
		{name: "datagram with accept", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"listen": []string{"udp:0"}}), status: 422, code: socketd.CodeInvalid, pointer: "/listen/0"},
		{name: "empty command", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"command": []string{}}), status: 422, code: socketd.CodeInvalid, pointer: "/command"},
		{name: "command not found", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"command": []string{"no-such-program-socketd"}}), status: 422, code: socketd.CodeInvalid, pointer: "/command/0"},
		{name: "relative command path", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"command": []string{"./bin/handler"}}), status: 422, code: socketd.CodeInvalid, pointer: "/command/0"},
		{name: "bad stderr", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"stderr": "file"}), status: 422, code: socketd.CodeInvalid, pointer: "/stderr"},
		{name: "environment key with =", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"environment": map[string]string{"A=B": "1"}}), status: 422, code: socketd.CodeInvalid, pointer: "/environment/A=B"},
		{name: "relative working directory", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: def(map[string]any{"working_directory": "tmp"}), status: 422, code: socketd.CodeInvalid, pointer: "/working_directory"},

		// Limits and media types.
		{name: "body over 1 MiB", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: huge, status: 413, code: socketd.CodeTooLarge},
		{name: "body over 1 MiB, chunked", method: "PUT", path: "/v1/sockets/x", contentType: jsonCT,
			body: huge, chunked: true, status: 413, code: socketd.CodeTooLarge},
		{name: "POST over 1 MiB", method: "POST", path: "/v1/sockets", contentType: jsonCT,
			body: huge, status: 413, code: socketd.CodeTooLarge},
		{name: "patch over 1 MiB", method: "PATCH", path: "/v1/sockets/base", contentType: patchCT,
			body: huge, status: 413, code: socketd.CodeTooLarge},
		{name: "wrong content type", method: "PUT", path: "/v1/sockets/x", contentType: "text/plain",
			body: def(nil), status: 415, code: socketd.CodeUnsupported},
		{name: "no content type", method: "POST", path: "/v1/sockets",
			body: def(map[string]any{"name": "x"}), status: 415, code: socketd.CodeUnsupported},
		{name: "form content type", method: "PATCH", path: "/v1/sockets/base", contentType: "application/x-www-form-urlencoded",
			body: `{"enabled": false}`, status: 415, code: socketd.CodeUnsupported},
		{name: "merge patch to PUT", method: "PUT", path: "/v1/sockets/x", contentType: patchCT,
			body: def(nil), status: 415, code: socketd.CodeUnsupported},

		// Conflicts.
		{name: "POST existing name", method: "POST", path: "/v1/sockets", contentType: jsonCT,
			body: def(map[string]any{"name": "base"}), status: 409, code: socketd.CodeConflict},

		// Patches.
		{name: "PATCH renaming", method: "PATCH", path: "/v1/sockets/base", contentType: patchCT,
			body: `{"name": "renamed"}`, status: 422, code: socketd.CodeInvalid, pointer: "/name"},
		{name: "PATCH with an invalid result", method: "PATCH", path: "/v1/sockets/base", contentType: patchCT,
			body: `{"listen": [], "stderr": "file"}`, status: 422, code: socketd.CodeInvalid, pointer: "/stderr"},
		{name: "PATCH removing the command", method: "PATCH", path: "/v1/sockets/base", contentType: patchCT,
			body: `{"command": null}`, status: 422, code: socketd.CodeInvalid, pointer: "/command"},
		{name: "PATCH with a relative command", method: "PATCH", path: "/v1/sockets/base", contentType: patchCT,
			body: `{"command": ["./x"]}`, status: 422, code: socketd.CodeInvalid, pointer: "/command/0"},
		{name: "PATCH unknown field", method: "PATCH", path: "/v1/sockets/base", contentType: patchCT,
			body: `{"bogus": true}`, status: 400, code: socketd.CodeBadRequest, pointer: "/bogus"},
		{name: "PATCH wrong type", method: "PATCH", path: "/v1/sockets/base", contentType: patchCT,
			body: `{"enabled": "no"}`, status: 400, code: socketd.CodeBadRequest, pointer: "/enabled"},
		{name: "PATCH not an object", method: "PATCH", path: "/v1/sockets/base", contentType: patchCT,
			body: `[{"op": "replace", "path": "/enabled", "value": false}]`, status: 400, code: socketd.CodeBadRequest},
		{name: "PATCH malformed", method: "PATCH", path: "/v1/sockets/base", contentType: patchCT,
			body: `{"enabled": fals}`, status: 400, code: socketd.CodeBadRequest},
		{name: "PATCH unknown socket", method: "PATCH", path: "/v1/sockets/nope", contentType: patchCT,
			body: `{"enabled": false}`, status: 404, code: socketd.CodeNotFound},

		// Unknown things.
		{name: "GET unknown socket", method: "GET", path: "/v1/sockets/nope", status: 404, code: socketd.CodeNotFound},
		{name: "DELETE unknown socket", method: "DELETE", path: "/v1/sockets/nope", status: 404, code: socketd.CodeNotFound},
		{name: "unknown connection id", method: "GET", path: "/v1/connections/987654", status: 404, code: socketd.CodeNotFound},
		{name: "unknown connection log", method: "GET", path: "/v1/connections/987654/log", status: 404, code: socketd.CodeNotFound},
		{name: "kill unknown connection", method: "DELETE", path: "/v1/connections/987654", status: 404, code: socketd.CodeNotFound},
		{name: "connection id not a number", method: "GET", path: "/v1/connections/abc", status: 400, code: socketd.CodeBadRequest},
		{name: "connection id zero", method: "DELETE", path: "/v1/connections/0", status: 400, code: socketd.CodeBadRequest},

		// Query parameters.
		{name: "limit not a number", method: "GET", path: "/v1/connections?limit=ten", status: 400, code: socketd.CodeBadRequest},
		{name: "limit zero", method: "GET", path: "/v1/connections?limit=0", status: 422, code: socketd.CodeInvalid},
		{name: "limit negative", method: "GET", path: "/v1/connections?limit=-1", status: 422, code: socketd.CodeInvalid},
		{name: "limit over max", method: "GET", path: "/v1/connections?limit=1001", status: 422, code: socketd.CodeInvalid},
		{name: "bad cursor", method: "GET", path: "/v1/connections?cursor=not-a-cursor", status: 422, code: socketd.CodeInvalid},
		{name: "bad since", method: "GET", path: "/v1/connections?since=yesterday", status: 400, code: socketd.CodeBadRequest},
		{name: "since without zone", method: "GET", path: "/v1/connections?since=2025-01-02T03:04:05", status: 400, code: socketd.CodeBadRequest},
		{name: "bad until", method: "GET", path: "/v1/connections?until=2025-13-01T00:00:00Z", status: 400, code: socketd.CodeBadRequest},
		{name: "bad state", method: "GET", path: "/v1/connections?state=sleeping", status: 422, code: socketd.CodeInvalid},
		{name: "bad remote_ip", method: "GET", path: "/v1/connections?remote_ip=example.com", status: 400, code: socketd.CodeBadRequest},
		{name: "unknown parameter", method: "GET", path: "/v1/connections?sokcet=base", status: 400, code: socketd.CodeBadRequest},
		{name: "repeated parameter", method: "GET", path: "/v1/connections?socket=a&socket=b", status: 400, code: socketd.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, h)
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // hides the length
			}
			if tc.body == "" && tc.method != "PUT" {
				body = nil
			}
			resp, out := h.do(request{method: tc.method, path: tc.path, contentType: tc.contentType, body: body, offSpec: true})
			if resp.StatusCode != tc.status {
				t.Fatalf("status %s, want %d\n%s", resp.Status, tc.status, out)
			}
			p := problem(t, out)
			if p.Code != tc.code {
				t.Errorf("code %q, want %q\n%s", p.Code, tc.code, out)
			}
			if p.Detail == "" {
				t.Errorf("no detail\n%s", out)
			}
			if tc.pointer != "" && !slices.ContainsFunc(p.Errors, func(f socketd.FieldError) bool { return f.Pointer == tc.pointer }) {
				t.Errorf("errors %+v do not point at %s", p.Errors, tc.pointer)
			}
			if after := snapshot(t, h); !reflect.DeepEqual(before, after) {
				t.Errorf("the request changed things:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
	// The connection the kill cases could have touched still runs.
	if got, _ := h.db.GetConnection(h.ctx(), conn.ID); got.State != socketd.ConnRunning {
		t.Errorf("connection %d is %s", conn.ID, got.State)
	}
}

// state is what a bad request must leave alone.
type state struct {
	Sockets []socketd.Socket
	Applies int
}

func snapshot(t *testing.T, h *harness) state {
	t.Helper()
	ss, err := h.db.ListSockets(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	return state{Sockets: ss, Applies: h.rt.applyCount()}
}

// TestClientErrors checks that the Client returns problems as
// *socketd.Error with their code, message and fields.
func TestClientErrors(t *testing.T) {
	h := newHarness(t)
	s := newSocket(t, "c")
	s.Listen = []string{"99999", "host.example:80"}
	s.Command = []string{"./relative"}
	_, _, err := h.c.PutSocket(apitest.OffSpec(h.ctx()), s)
	wantCode(t, err, socketd.CodeInvalid)
	e := err.(*socketd.Error)
	var pointers []string
	for _, f := range e.Fields {
		pointers = append(pointers, f.Pointer)
	}
	if !slices.Equal(pointers, []string{"/listen/0", "/listen/1", "/command/0"}) || e.Message == "" {
		t.Errorf("error %+v", e)
	}
	bad := NewClient(h.base, "wrong-token", WithHTTPClient(h.hc))
	_, err = bad.ListSockets(h.ctx())
	wantCode(t, err, socketd.CodeUnauthorized)
	_, err = h.c.PatchSocket(apitest.OffSpec(h.ctx()), "nope", bytes.Repeat([]byte("x"), 10))
	wantCode(t, err, socketd.CodeBadRequest)
}
