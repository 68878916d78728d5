// Package web is socketd's dashboard. For now it is a placeholder page that
// points at the REST API; the dashboard proper (html/template with vendored
// htmx and uPlot, no build step) comes later. The api package mounts it at /
// behind the same token check as the API.
package web

import (
	_ "embed"
	"net/http"
	"strconv"
)

//go:embed index.html
var index []byte

// Handler returns the handler of the dashboard. The caller routes to it (the
// api package sends it GET /) and checks the token; it answers each request
// it is given with the placeholder page.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(index)))
		// The page runs no script and loads nothing; say so, and keep it
		// out of frames.
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(index)
		}
	})
}
