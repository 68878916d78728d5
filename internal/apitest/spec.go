// Package apitest holds tests to openapi.yaml, the contract of socketd's
// HTTP API: NewTransport returns an http.RoundTripper that validates every
// request a test sends and every response it gets against the spec, and
// fails the test on any mismatch. Any package's tests can put it under an
// api.Client (api.WithHTTPClient) or a raw http.Client.
//
// It is for tests only: the daemon never imports it. It does not import
// package api either, so that api's own tests can use it; the few facts of
// the wire format it needs (ProblemTypeBase, ...) are repeated here, and
// api's tests check that they agree.
package apitest

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// module is the module whose root holds openapi.yaml.
const module = "github.com/socketd/socketd"

// specFile is the contract's name in the module's root directory.
const specFile = "openapi.yaml"

// spec is openapi.yaml, found, loaded and validated once, with a router
// over it.
var spec = sync.OnceValues(func() (*specRouter, error) {
	path, err := specPath()
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("%s is not valid OpenAPI: %w", path, err)
	}
	// The spec's server is the default address; tests listen on ephemeral
	// ports, so routes are matched on the path alone.
	doc.Servers = nil
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", path, err)
	}
	return &specRouter{path: path, doc: doc, router: r}, nil
})

type specRouter struct {
	path   string
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

// Spec returns openapi.yaml as kin-openapi loaded and validated it, failing
// t if it cannot be found or is not valid OpenAPI. The document is shared
// by every caller: read it, never change it. Its Servers are cleared.
func Spec(t testing.TB) *openapi3.T {
	t.Helper()
	return loadSpec(t).doc
}

// SpecPath returns the path of openapi.yaml, for messages.
func SpecPath(t testing.TB) string {
	t.Helper()
	return loadSpec(t).path
}

// specPath returns the path of openapi.yaml, in the module's root: two
// directories above this file's source, which a test runs from.
func specPath() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("the source of package apitest cannot be located")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", specFile), nil
}
