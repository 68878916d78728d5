package activator

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/socketd/socketd"
)

// instrumentation names the activator's meter and tracer.
const instrumentation = "github.com/socketd/socketd/activator"

// Attribute keys. No peer address is ever an attribute of a metric: its
// values are unbounded.
const (
	attrSocket    = attribute.Key("socketd.socket")
	attrReason    = attribute.Key("socketd.refusal.reason")
	attrState     = attribute.Key("socketd.connection.state")
	attrDirection = attribute.Key("network.io.direction")
)

// telemetry is the activator's instruments and tracer. The counts of
// connections are the sockets' own counters, observed when metrics are
// collected, so that accepting costs nothing more; durations are recorded
// per connection.
type telemetry struct {
	// tracer makes a span per connection; nil without a TracerProvider.
	tracer   trace.Tracer
	duration metric.Float64Histogram
	spawn    metric.Float64Histogram
}

// durationBuckets bound the histogram of connection durations, in seconds:
// from a handler that answers at once to a session of hours.
var durationBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600, 14400}

// spawnBuckets bound the histogram of the time from accept to a running
// handler, in seconds.
var spawnBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1}

// instrument sets up the activator's telemetry on the providers of cfg.
func (a *Activator) instrument() error {
	if tp := a.cfg.TracerProvider; tp != nil {
		a.tel.tracer = tp.Tracer(instrumentation)
	}
	mp := a.cfg.MeterProvider
	if mp == nil {
		return nil
	}
	m := mp.Meter(instrumentation)
	var err error
	if a.tel.duration, err = m.Float64Histogram("socketd.connection.duration", metric.WithUnit("s"),
		metric.WithDescription("How long connections lasted, from accept to their row's end, by socket and final state."),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return err
	}
	if a.tel.spawn, err = m.Float64Histogram("socketd.spawn.duration", metric.WithUnit("s"),
		metric.WithDescription("How long from accepting a connection to its handler running, by socket."),
		metric.WithExplicitBucketBoundaries(spawnBuckets...)); err != nil {
		return err
	}
	accepted, err := m.Int64ObservableCounter("socketd.connections.accepted", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections accepted, by socket."))
	if err != nil {
		return err
	}
	refused, err := m.Int64ObservableCounter("socketd.connections.refused", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections refused, by socket and reason."))
	if err != nil {
		return err
	}
	active, err := m.Int64ObservableUpDownCounter("socketd.connections.active", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections open now, by socket."))
	if err != nil {
		return err
	}
	io, err := m.Int64ObservableCounter("socketd.connection.io", metric.WithUnit("By"),
		metric.WithDescription("Bytes received from and sent to clients, by socket, counted when connections end."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		a.mu.RLock()
		defer a.mu.RUnlock()
		for _, s := range a.sockets {
			attrs := metric.WithAttributeSet(s.attrs)
			o.ObserveInt64(accepted, s.accepted.Load(), attrs)
			o.ObserveInt64(active, s.connected.Load(), attrs)
			for reason, n := range s.refusals.counts() {
				o.ObserveInt64(refused, n, metric.WithAttributes(attrSocket.String(s.name), attrReason.String(reason)))
			}
			o.ObserveInt64(io, s.bytesIn.Load(), metric.WithAttributes(attrSocket.String(s.name), attrDirection.String("receive")))
			o.ObserveInt64(io, s.bytesOut.Load(), metric.WithAttributes(attrSocket.String(s.name), attrDirection.String("transmit")))
		}
		return nil
	}, accepted, refused, active, io)
	return err
}

// transport is the network.transport of c: "tcp" or "unix"; "" for a
// service (accept: false), which may have sockets of both.
func (c *conn) transport() string {
	switch {
	case c.fd < 0:
		return ""
	case !c.remote.IsValid():
		return "unix"
	}
	return "tcp"
}

// startSpan starts c's span, from its accept, when there is a tracer.
func (c *conn) startSpan() {
	t := c.a.tel.tracer
	if t == nil {
		return
	}
	attrs := []attribute.KeyValue{attrSocket.String(c.s.name)}
	if tr := c.transport(); tr != "" {
		attrs = append(attrs, attribute.String("network.transport", tr))
	}
	_, c.span = t.Start(context.Background(), "connection "+c.s.name,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(c.start), trace.WithAttributes(attrs...))
}

// endSpan ends c's span with row, as recorded (the peer's address as the
// definition keeps it), at end.
func (c *conn) endSpan(row *socketd.Connection, end time.Time) {
	if c.span == nil {
		return
	}
	endSpan(c.span, row, end)
}

func endSpan(span trace.Span, row *socketd.Connection, end time.Time) {
	attrs := []attribute.KeyValue{attribute.Int64("socketd.connection.id", row.ID), attrState.String(string(row.State))}
	if row.RemoteIP != "" {
		attrs = append(attrs, attribute.String("network.peer.address", row.RemoteIP))
		if row.RemotePort != 0 {
			attrs = append(attrs, attribute.Int("network.peer.port", row.RemotePort))
		}
	}
	if row.PID != 0 {
		attrs = append(attrs, attribute.Int("process.pid", row.PID))
	}
	if row.ExitCode != nil {
		attrs = append(attrs, attribute.Int("process.exit.code", *row.ExitCode))
	}
	switch row.State {
	case socketd.ConnExited, socketd.ConnRunning:
	default:
		// error.type: why it did not end well, in few values.
		errType := string(row.State)
		switch {
		case row.Reason != "":
			errType = row.Reason
		case row.Signal != "":
			errType = row.Signal
		}
		attrs = append(attrs, attribute.String("error.type", errType))
		span.SetStatus(codes.Error, row.Error)
	}
	span.SetAttributes(attrs...)
	span.End(trace.WithTimestamp(end))
}

// endSpanRefused ends c's span, if it has one, as refused for reason: the
// row was never begun.
func (c *conn) endSpanRefused(reason, detail string) {
	if c.span == nil {
		return
	}
	row := c.rec
	row.State, row.Reason, row.Error = socketd.ConnRefused, reason, detail
	endSpan(c.span, &row, time.Now())
}

// refusalSpan records the span of a connection refused without a handler,
// from its accept to now.
func (a *Activator) refusalSpan(s *socket, row *socketd.Connection, now time.Time) {
	if a.tel.tracer == nil {
		return
	}
	transport := "tcp"
	if row.PeerUID != nil {
		transport = "unix"
	}
	_, span := a.tel.tracer.Start(context.Background(), "connection "+s.name,
		trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(row.StartedAt),
		trace.WithAttributes(attrSocket.String(s.name), attribute.String("network.transport", transport)))
	endSpan(span, row, now)
}

// logContext is the context of c's log records: its span's, so that they
// carry its trace id.
func (c *conn) logContext() context.Context {
	if c.span == nil {
		return context.Background()
	}
	return trace.ContextWithSpan(context.Background(), c.span)
}

// recordSpawn records how long c took from accept to a running handler.
func (c *conn) recordSpawn() {
	if h := c.a.tel.spawn; h != nil {
		h.Record(context.Background(), time.Since(c.start).Seconds(), metric.WithAttributeSet(c.s.attrs))
	}
}

// recordDuration records c's duration, from its accept to end.
func (c *conn) recordDuration(end time.Time) {
	if h := c.a.tel.duration; h != nil {
		h.Record(context.Background(), end.Sub(c.start).Seconds(), c.s.stateAttrs[c.rec.State])
	}
}

// stateAttrs makes the attributes of the durations of socket's
// connections, one set by final state, once: not one per connection.
func stateAttrs(socket string) map[socketd.ConnectionState]metric.MeasurementOption {
	m := make(map[socketd.ConnectionState]metric.MeasurementOption, len(socketd.ConnectionStates))
	for _, st := range socketd.ConnectionStates {
		m[st] = metric.WithAttributeSet(attribute.NewSet(attrSocket.String(socket), attrState.String(string(st))))
	}
	return m
}
