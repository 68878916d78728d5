package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/socketd/socketd"
)

// metricsPath serves the daemon's metrics in the Prometheus text format,
// to a client with a token like every route of the API.
const metricsPath = "/metrics"

// instrumented wraps h so that every request but the health check and the
// metrics' scrape gets a span and the HTTP server metrics (otelhttp), and
// takes up the trace of a caller that sends one (W3C traceparent).
func (s *Server) instrumented(h http.Handler, cfg Config) http.Handler {
	tp, mp := cfg.TracerProvider, cfg.MeterProvider
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	return otelhttp.NewHandler(h, "socketd.api",
		otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		// The metrics' server.address is socketd, with no port: taken from
		// the Host header, as by default, any client could add series
		// without end, before its token is even looked at.
		otelhttp.WithServerName("socketd:0"),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != healthPath && r.URL.Path != metricsPath }),
		// Named again once routed (nameSpan); until then, by the method.
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }))
}

// nameSpan names a request's span after the route it took, as
// "PUT /v1/sockets/{name}", and sets its http.route: names of few values,
// whatever the names in the paths.
func nameSpan(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		span := trace.SpanFromContext(r.Context())
		if !span.IsRecording() {
			return
		}
		if pattern := chi.RouteContext(r.Context()).RoutePattern(); pattern != "" {
			span.SetName(r.Method + " " + pattern)
			span.SetAttributes(attribute.String("http.route", pattern))
		}
	})
}

// metrics answers GET /metrics with the handler the daemon gave, if any.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	if s.metricsHandler == nil {
		return socketd.Errorf(socketd.CodeNotFound, "this server collects no metrics")
	}
	s.metricsHandler.ServeHTTP(w, r)
	return nil
}
