package api

import (
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestRequestTelemetry: each request gets a span named after its route,
// in the trace of a caller that sends one, and the HTTP server metrics;
// the health check and the scrapes get none. GET /metrics needs a token.
func TestRequestTelemetry(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	scrape := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte("socketd_up 1\n"))
	})
	h := newHarness(t, withConfig(func(c *Config) {
		c.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
		c.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		c.Metrics = scrape
	}))
	if _, _, err := h.c.PutSocket(h.ctx(), newSocket(t, "hello")); err != nil {
		t.Fatal(err)
	}
	const parent = "4bf92f3577b34da6a3ce929d0e0e4736"
	resp, _ := h.do(request{method: "GET", path: "/v1/sockets/hello", header: http.Header{"Traceparent": {"00-" + parent + "-00f067aa0ba902b7-01"}}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %s", resp.Status)
	}
	h.do(request{method: "GET", path: "/healthz", noToken: true})
	if resp, _ := h.do(request{method: "GET", path: "/metrics", noToken: true, offSpec: true}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %s", resp.Status)
	}
	resp, body := h.do(request{method: "GET", path: "/metrics"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "socketd_up 1") {
		t.Errorf("/metrics: %s %q", resp.Status, body)
	}

	names := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans.Ended() {
		names[s.Name()] = s
	}
	put, ok := names["PUT /v1/sockets/{name}"]
	if !ok {
		t.Fatalf("no span named after the PUT's route: %v", keys(names))
	}
	attrs := attribute.NewSet(put.Attributes()...)
	if v, _ := attrs.Value("http.route"); v.AsString() != "/v1/sockets/{name}" {
		t.Errorf("http.route %q", v.AsString())
	}
	get := names["GET /v1/sockets/{name}"]
	if get == nil || get.SpanContext().TraceID().String() != parent {
		t.Errorf("the GET's span is not in the caller's trace: %v", get)
	}
	for name := range names {
		if strings.Contains(name, "healthz") || strings.Contains(name, "metrics") {
			t.Errorf("a span of %s", name)
		}
	}
	if len(names) != 2 {
		t.Errorf("spans %v, want the PUT's and the GET's", keys(names))
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(h.ctx(), &rm); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok || m.Name != "http.server.request.duration" {
				continue
			}
			found = true
			// Not the Host a client sends: that would let any client add
			// series without end.
			for _, p := range h.DataPoints {
				if v, _ := p.Attributes.Value("server.address"); v.AsString() != "socketd" || p.Attributes.HasValue("server.port") {
					t.Errorf("request metric with server.address %q (and a port: %v)", v.AsString(), p.Attributes.HasValue("server.port"))
				}
			}
		}
	}
	if !found {
		t.Error("no http.server.request.duration metric")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
