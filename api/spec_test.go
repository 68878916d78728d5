package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/go-chi/chi/v5"
)

// specPath is the contract the tests hold the server to.
const specPath = "../openapi.yaml"

// spec is openapi.yaml, loaded and validated once, with a router over it.
var spec = sync.OnceValues(func() (*specRouter, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", specPath, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("%s is not valid OpenAPI: %w", specPath, err)
	}
	// The spec's server is the default address; the tests listen on
	// ephemeral ports, so routes are matched on the path alone.
	doc.Servers = nil
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", specPath, err)
	}
	return &specRouter{doc: doc, router: r}, nil
})

type specRouter struct {
	doc    *openapi3.T
	router routers.Router
}

func loadSpec(t testing.TB) *specRouter {
	t.Helper()
	s, err := spec()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSpecIsValid fails on a spec kin-openapi does not accept.
func TestSpecIsValid(t *testing.T) {
	loadSpec(t)
}

type offSpecKey struct{}

// offSpec marks the requests made with ctx as sent against the spec on
// purpose (a bad input, a missing token, an unknown route): the spec may
// reject them, but their responses are still held to it.
func offSpec(ctx context.Context) context.Context {
	return context.WithValue(ctx, offSpecKey{}, true)
}

// specTransport validates every request a test sends and every response it
// gets against openapi.yaml; any mismatch fails the test.
type specTransport struct {
	t    testing.TB
	spec *specRouter
	next http.RoundTripper
}

func newSpecTransport(t testing.TB) *specTransport {
	return &specTransport{t: t, spec: loadSpec(t), next: http.DefaultTransport}
}

// bearerAuth satisfies the spec's bearer scheme with any bearer token: the
// server, not the spec, knows which tokens are good.
func bearerAuth(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecurityScheme.Type != "http" || !strings.EqualFold(in.SecurityScheme.Scheme, "bearer") {
		return fmt.Errorf("unexpected security scheme %s", in.SecuritySchemeName)
	}
	token, ok := bearerToken(in.RequestValidationInput.Request.Header.Get("Authorization"))
	if !ok || token == "" {
		return errors.New("no bearer token")
	}
	return nil
}

func (st *specTransport) RoundTrip(req *http.Request) (*http.Response, error) {
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
			st.t.Errorf("%s: the request does not match %s: %v", what, specPath, err)
		}
	} else if !allowOff {
		st.t.Errorf("%s: the request is not in %s: %v", what, specPath, err)
	}

	resp, err := st.next.RoundTrip(clone())
	if err != nil {
		return nil, err
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

// checkResponse holds a response to the spec: to its operation's if the
// request matched one, else to a problem of the server's routing or checks.
func (st *specTransport) checkResponse(ctx context.Context, input *openapi3filter.RequestValidationInput, resp *http.Response, body []byte) []error {
	var errs []error
	if resp.Header.Get(requestIDHeader) == "" {
		errs = append(errs, errors.New("no X-Request-Id"))
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
		errs = append(errs, fmt.Errorf("does not match %s: %w", specPath, err))
	}
	// The spec declares which responses have a body; one that declares
	// none must get none.
	if r := input.Route.Operation.Responses.Status(resp.StatusCode); r != nil && r.Value != nil &&
		len(r.Value.Content) == 0 && len(body) > 0 {
		errs = append(errs, errors.New("a body where the spec declares none"))
	}
	return errs
}

// checkProblem holds an error response to RFC 9457 and the spec's Problem,
// beyond what the spec can say: its status field is the HTTP status.
func checkProblem(doc *openapi3.T, resp *http.Response, body []byte) []error {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != problemContentType {
		return []error{fmt.Errorf("an error with Content-Type %q, not %s", resp.Header.Get("Content-Type"), problemContentType)}
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return []error{fmt.Errorf("a problem that is not JSON: %w", err)}
	}
	var errs []error
	if err := doc.Components.Schemas["Problem"].Value.VisitJSON(v); err != nil {
		errs = append(errs, fmt.Errorf("a problem that does not match the Problem schema: %w", err))
	}
	var p Problem
	json.Unmarshal(body, &p)
	if p.Status != resp.StatusCode {
		errs = append(errs, fmt.Errorf("a problem whose status %d is not the response's", p.Status))
	}
	if p.Type != ProblemTypeBase+string(p.Code) {
		errs = append(errs, fmt.Errorf("a problem whose type %q does not go with its code %q", p.Type, p.Code))
	}
	if p.RequestID != resp.Header.Get(requestIDHeader) {
		errs = append(errs, fmt.Errorf("a problem whose request_id %q is not the X-Request-Id", p.RequestID))
	}
	return errs
}

// pathParam matches a path parameter in a route, {name} in both chi and
// OpenAPI syntax.
var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// TestRoutesMatchSpec checks that every route the router serves is in the
// spec and every operation of the spec is served.
func TestRoutesMatchSpec(t *testing.T) {
	sp := loadSpec(t)
	norm := func(method, path string) string {
		return method + " " + pathParam.ReplaceAllString(path, "{}")
	}
	var served []string
	s := New(Config{})
	err := chi.Walk(s.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served = append(served, norm(method, route))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var specified []string
	for path, item := range sp.doc.Paths.Map() {
		for method := range item.Operations() {
			specified = append(specified, norm(method, path))
		}
	}
	slices.Sort(served)
	slices.Sort(specified)
	for _, r := range served {
		if !slices.Contains(specified, r) {
			t.Errorf("%s is served but not in %s", r, specPath)
		}
	}
	for _, r := range specified {
		if !slices.Contains(served, r) {
			t.Errorf("%s is in %s but not served", r, specPath)
		}
	}
	if len(served) < 12 {
		t.Errorf("the router serves only %d routes: %v", len(served), served)
	}
}
