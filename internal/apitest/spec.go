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
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(root, specFile)
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

// moduleRoot finds the directory of the module's go.mod by walking up from
// the working directory, which for a test is its package's directory.
func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		ok, err := isModuleRoot(dir)
		if err != nil {
			return "", err
		}
		if ok {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s in %s or above; %s lives beside it", module, wd, specFile)
		}
		dir = parent
	}
}

// isModuleRoot reports whether dir holds the go.mod of module. Another
// module's go.mod (a nested one) is walked past.
func isModuleRoot(dir string) (bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == module, nil
		}
	}
	return false, nil
}
