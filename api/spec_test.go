package api

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/socketd/socketd/internal/apitest"
)

// TestWireFactsAgree holds apitest's copies of the wire format's facts,
// which it repeats so as not to import this package, to the originals.
func TestWireFactsAgree(t *testing.T) {
	for _, c := range []struct{ name, api, apitest string }{
		{"ProblemTypeBase", ProblemTypeBase, apitest.ProblemTypeBase},
		{"problemContentType", problemContentType, apitest.ProblemContentType},
		{"requestIDHeader", requestIDHeader, apitest.RequestIDHeader},
	} {
		if c.api != c.apitest {
			t.Errorf("%s is %q here and %q in apitest", c.name, c.api, c.apitest)
		}
	}
}

// pathParam matches a path parameter in a route, {name} in both chi and
// OpenAPI syntax.
var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// TestRoutesMatchSpec checks that every route the router serves is in the
// spec and every operation of the spec is served. The dashboard's pages
// under /ui/ are HTML for browsers, not the API: the spec leaves them out.
func TestRoutesMatchSpec(t *testing.T) {
	doc, specPath := apitest.Spec(t), apitest.SpecPath(t)
	norm := func(method, path string) string {
		return method + " " + pathParam.ReplaceAllString(path, "{}")
	}
	var served []string
	s := New(Config{})
	err := chi.Walk(s.router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !strings.HasPrefix(route, dashboardPrefix+"/") {
			served = append(served, norm(method, route))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var specified []string
	for path, item := range doc.Paths.Map() {
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
