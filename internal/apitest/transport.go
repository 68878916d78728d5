package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
)

// The wire facts the checks rely on. They are api's; apitest repeats them
// rather than import api, and api's tests hold the two to each other.
const (
	// ProblemContentType is the media type of every error body (RFC 9457).
	ProblemContentType = "application/problem+json"
	// ProblemTypeBase prefixes a problem's code to form its type.
	ProblemTypeBase = "https://socketd.dev/problems/"
	// RequestIDHeader carries the request id both ways.
	RequestIDHeader = "X-Request-Id"
)

type offSpecKey struct{}

// OffSpec marks the requests made with ctx as sent against the spec on
// purpose (a bad input, a missing token, an unknown route): the spec may
// reject them, but their responses are still held to it.
func OffSpec(ctx context.Context) context.Context {
	return context.WithValue(ctx, offSpecKey{}, true)
}

// NewTransport returns a RoundTripper that sends each request through next
// (http.DefaultTransport if nil) and holds the request and its response to
// openapi.yaml, failing t on any mismatch:
//
//   - a request must be an operation of the spec and match it, unless its
//     context is marked with OffSpec;
//   - a response must have a status its operation documents, and match
//     that response's headers and schema; one the spec declares without
//     content must have no body;
//   - a request outside the spec may only be refused: 401, 403, 404, or
//     405 with an Allow header;
//   - every response has an X-Request-Id, Cache-Control: no-store and
//     X-Content-Type-Options: nosniff;
//   - an error (4xx, 5xx) is an application/problem+json Problem whose
//     status is the response's, whose type goes with its code and whose
//     request_id is the X-Request-Id.
//
// The response is returned as received, its body buffered, so a test goes
// on with its own checks.
func NewTransport(t testing.TB, next http.RoundTripper) http.RoundTripper {
	t.Helper()
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{t: t, spec: loadSpec(t), next: next}
}

// HTTPClient returns an http.Client whose requests go through NewTransport
// over a transport of its own, whose idle connections are closed when t
// ends. Its Timeout is a backstop, so that a bug fails instead of hanging.
func HTTPClient(t testing.TB) *http.Client {
	t.Helper()
	own := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(own.CloseIdleConnections)
	return &http.Client{Transport: NewTransport(t, own), Timeout: 30 * time.Second}
}

// transport is NewTransport's RoundTripper.
type transport struct {
	t    testing.TB
	spec *specRouter
	next http.RoundTripper
}

// bearerAuth satisfies the spec's bearer scheme with any bearer token: the
// server, not the spec, knows which tokens are good.
func bearerAuth(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecurityScheme.Type != "http" || !strings.EqualFold(in.SecurityScheme.Scheme, "bearer") {
		return fmt.Errorf("unexpected security scheme %s", in.SecuritySchemeName)
	}
	scheme, token, _ := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return errors.New("no bearer token")
	}
	return nil
}

func (st *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var reqBody []byte
	if req.Body != nil {
		var err error
		if reqBody, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	clone := func() *http.Request {
		r := req.Clone(ctx)
		if req.Body != nil {
			r.Body = io.NopCloser(bytes.NewReader(reqBody))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil }
		}
		return r
	}
	allowOff := ctx.Value(offSpecKey{}) != nil
	what := req.Method + " " + req.URL.RequestURI()

	vreq := clone()
	var input *openapi3filter.RequestValidationInput
	route, params, err := st.spec.router.FindRoute(vreq)
	if err == nil {
		input = &openapi3filter.RequestValidationInput{
			Request: vreq, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: bearerAuth, MultiError: true},
		}
		if err := openapi3filter.ValidateRequest(ctx, input); err != nil && !allowOff {
			st.t.Errorf("%s: the request does not match %s: %v", what, specFile, err)
		}
	} else if !allowOff {
		st.t.Errorf("%s: the request is not in %s: %v", what, specFile, err)
	}

	resp, err := st.next.RoundTrip(clone())
	if err != nil {
		return nil, err
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == "text/event-stream" {
		// A stream does not end: its headers are checked, and its body
		// is the caller's to read.
		for _, e := range st.checkStream(input, resp) {
			st.t.Errorf("%s: response %s: %v", what, resp.Status, e)
		}
		return resp, nil
	}
	respBody, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	for _, e := range st.checkResponse(ctx, input, resp, respBody) {
		st.t.Errorf("%s: response %s: %v\n%s", what, resp.Status, e, respBody)
	}
	return resp, nil
}

// checkStream holds the headers of an event stream to the spec: its
// operation must answer its status with text/event-stream.
func (st *transport) checkStream(input *openapi3filter.RequestValidationInput, resp *http.Response) []error {
	var errs []error
	if resp.Header.Get(RequestIDHeader) == "" {
		errs = append(errs, errors.New("no "+RequestIDHeader))
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		errs = append(errs, errors.New("no Cache-Control: no-store or X-Content-Type-Options: nosniff"))
	}
	if input == nil {
		return append(errs, errors.New("an event stream for a request outside the spec"))
	}
	r := input.Route.Operation.Responses.Status(resp.StatusCode)
	if r == nil || r.Value == nil || r.Value.Content.Get("text/event-stream") == nil {
		errs = append(errs, fmt.Errorf("the spec has no text/event-stream response %d", resp.StatusCode))
	}
	return errs
}

// checkResponse holds a response to the spec: to its operation's if the
// request matched one, else to a problem of the server's routing or checks.
func (st *transport) checkResponse(ctx context.Context, input *openapi3filter.RequestValidationInput, resp *http.Response, body []byte) []error {
	var errs []error
	if resp.Header.Get(RequestIDHeader) == "" {
		errs = append(errs, errors.New("no "+RequestIDHeader))
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		errs = append(errs, errors.New("no Cache-Control: no-store or X-Content-Type-Options: nosniff"))
	}
	if resp.StatusCode >= 400 {
		errs = append(errs, checkProblem(st.spec.doc, resp, body)...)
	}
	if input == nil {
		// Routing answers 404 or 405; the Host and token checks, which
		// come first, 403 or 401.
		if !slices.Contains([]int{401, 403, 404, 405}, resp.StatusCode) {
			errs = append(errs, errors.New("a request outside the spec must get a 401, 403, 404 or 405"))
		}
		if resp.StatusCode == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
			errs = append(errs, errors.New("a 405 without an Allow header"))
		}
		return errs
	}
	err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("does not match %s: %w", specFile, err))
	}
	// The spec declares which responses have a body; one that declares
	// none must get none.
	if r := input.Route.Operation.Responses.Status(resp.StatusCode); r != nil && r.Value != nil &&
		len(r.Value.Content) == 0 && len(body) > 0 {
		errs = append(errs, errors.New("a body where the spec declares none"))
	}
	return errs
}

// problem is the part of api.Problem the checks look at.
type problem struct {
	Type      string `json:"type"`
	Status    int    `json:"status"`
	Code      string `json:"code"`
	RequestID string `json:"request_id"`
}

// checkProblem holds an error response to RFC 9457 and the spec's Problem,
// beyond what the spec can say: its status field is the HTTP status.
func checkProblem(doc *openapi3.T, resp *http.Response, body []byte) []error {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != ProblemContentType {
		return []error{fmt.Errorf("an error with Content-Type %q, not %s", resp.Header.Get("Content-Type"), ProblemContentType)}
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return []error{fmt.Errorf("a problem that is not JSON: %w", err)}
	}
	var errs []error
	if err := doc.Components.Schemas["Problem"].Value.VisitJSON(v); err != nil {
		errs = append(errs, fmt.Errorf("a problem that does not match the Problem schema: %w", err))
	}
	var p problem
	json.Unmarshal(body, &p)
	if p.Status != resp.StatusCode {
		errs = append(errs, fmt.Errorf("a problem whose status %d is not the response's", p.Status))
	}
	if p.Type != ProblemTypeBase+p.Code {
		errs = append(errs, fmt.Errorf("a problem whose type %q does not go with its code %q", p.Type, p.Code))
	}
	if p.RequestID != resp.Header.Get(RequestIDHeader) {
		errs = append(errs, fmt.Errorf("a problem whose request_id %q is not the %s", p.RequestID, RequestIDHeader))
	}
	return errs
}
