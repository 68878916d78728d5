package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// telemetry is the daemon's OpenTelemetry: metrics always (GET /metrics
// reads them), pushed too where OTEL_METRICS_EXPORTER asks; traces only
// where OTEL_TRACES_EXPORTER (or an OTLP endpoint) asks. With no OTEL_*
// variable set nothing is exported, so nothing is ever retried.
type telemetry struct {
	Meters  *metric.MeterProvider
	Tracers *sdktrace.TracerProvider // nil without a trace exporter
	// Metrics serves the Prometheus text format.
	Metrics http.Handler
}

// exports is where telemetry goes, as the standard OTEL_* variables say:
// the exporters of traces and of metrics besides GET /metrics (otlp,
// console), read and checked by ParseConfig.
type exports struct {
	Traces, Metrics []string
}

// parseExports reads the OTEL_* variables that choose the exporters, and
// refuses what socketd cannot do.
func parseExports(getenv func(string) string) (exports, error) {
	var e exports
	for _, sig := range []struct {
		signal string
		names  *[]string
		known  []string
	}{{"TRACES", &e.Traces, []string{"otlp", "console"}}, {"METRICS", &e.Metrics, []string{"otlp", "console", "prometheus"}}} {
		for _, name := range exporters(getenv, sig.signal) {
			switch {
			case !slices.Contains(sig.known, name):
				return e, fmt.Errorf("OTEL_%s_EXPORTER: %q is not %s or none", sig.signal, name, strings.Join(sig.known, ", "))
			case name == "otlp":
				if err := otlpOverHTTP(getenv, sig.signal); err != nil {
					return e, err
				}
			case name == "prometheus":
				continue // GET /metrics, always
			}
			*sig.names = append(*sig.names, name)
		}
	}
	return e, nil
}

// newTelemetry sets up the providers for e (the OTLP exporters read their
// own variables, such as OTEL_EXPORTER_OTLP_ENDPOINT). Console output goes
// to stdout.
func newTelemetry(ctx context.Context, e exports, stdout io.Writer) (*telemetry, error) {
	// socketd, unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say
	// otherwise (the later option wins).
	res, err := resource.New(ctx, resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", "socketd")), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	registry := prometheus.NewRegistry()
	prom, err := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	meterOpts := []metric.Option{metric.WithResource(res), metric.WithReader(prom)}
	for _, name := range e.Metrics {
		var exp metric.Exporter
		if name == "otlp" {
			exp, err = otlpmetrichttp.New(ctx)
		} else {
			exp, err = stdoutmetric.New(stdoutmetric.WithWriter(stdout))
		}
		if err != nil {
			return nil, fmt.Errorf("metrics exporter %s: %w", name, err)
		}
		meterOpts = append(meterOpts, metric.WithReader(metric.NewPeriodicReader(exp)))
	}
	t := &telemetry{
		Meters:  metric.NewMeterProvider(meterOpts...),
		Metrics: promhttp.HandlerFor(registry, promhttp.HandlerOpts{}),
	}
	var traceOpts []sdktrace.TracerProviderOption
	for _, name := range e.Traces {
		var exp sdktrace.SpanExporter
		if name == "otlp" {
			exp, err = otlptracehttp.New(ctx)
		} else {
			exp, err = stdouttrace.New(stdouttrace.WithWriter(stdout))
		}
		if err != nil {
			return nil, fmt.Errorf("trace exporter %s: %w", name, err)
		}
		traceOpts = append(traceOpts, sdktrace.WithBatcher(exp))
	}
	if len(traceOpts) > 0 {
		t.Tracers = sdktrace.NewTracerProvider(append(traceOpts, sdktrace.WithResource(res))...)
	}
	return t, nil
}

// exporters reads OTEL_<SIGNAL>_EXPORTER, a comma-separated list; none at
// all with OTEL_SDK_DISABLED=true. Unset, it is otlp if an OTLP endpoint
// is set, else none: socketd exports nothing
// it was not asked to (the specification's default, otlp to localhost,
// would retry a collector that most hosts do not run).
func exporters(getenv func(string) string, signal string) []string {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return nil // GET /metrics stays: it is socketd's own
	}
	v := getenv("OTEL_" + signal + "_EXPORTER")
	if v == "" && (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != "") {
		v = "otlp"
	}
	var names []string
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" && n != "none" {
			names = append(names, n)
		}
	}
	return names
}

// otlpOverHTTP refuses an OTLP protocol other than http/protobuf, the one
// socketd has.
func otlpOverHTTP(getenv func(string) string, signal string) error {
	p := getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL")
	if p == "" {
		p = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if p != "" && p != "http/protobuf" {
		return fmt.Errorf("OTLP protocol %q: socketd exports OTLP over http/protobuf (port 4318) only", p)
	}
	return nil
}

// TracerProvider returns the tracer provider, nil (not a typed nil) when
// nothing traces.
func (t *telemetry) TracerProvider() trace.TracerProvider {
	if t.Tracers == nil {
		return nil
	}
	return t.Tracers
}

// Shutdown flushes what is still to be exported, within ctx.
func (t *telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.Tracers != nil {
		errs = append(errs, t.Tracers.Shutdown(ctx))
	}
	errs = append(errs, t.Meters.Shutdown(ctx))
	return errors.Join(errs...)
}

// traceHandler adds the trace and span ids to the records logged within a
// span (with a context that holds one).
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
