package activator_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/socketd/socketd"
	"github.com/socketd/socketd/activator"
	"github.com/socketd/socketd/internal/testhandler"
)

// TestTelemetry: the activator counts connections accepted, refused by
// reason, active, and their bytes, records their durations and spawn times,
// and makes a span of each connection with the semantic conventions'
// attributes (the peer's address as the history keeps it).
func TestTelemetry(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	hello := handlerSocket("hello", testhandler.Hello)
	exit3 := handlerSocket("exit3", testhandler.Exit3)
	exit3.RecordRemoteIP = socketd.RecordRemotePrefix
	denied := handlerSocket("denied", testhandler.Hello)
	denied.IPAddressDeny = []string{"any"}
	echo := handlerSocket("echo", testhandler.Echo)
	hang := handlerSocket("hang", testhandler.ReadyHang)
	h := start(t, activator.Config{MeterProvider: mp, TracerProvider: tp}, hello, exit3, denied, echo, hang)

	for _, name := range []string{"hello", "hello", "exit3", "denied"} {
		c := dial(t, h.addr(t, name))
		io.ReadAll(c)
		c.Close()
	}
	c := dial(t, h.addr(t, "echo"))
	c.Write([]byte("ping\n"))
	c.CloseWrite()
	io.ReadAll(c)
	c.Close()
	// One connection stays open while the metrics are read.
	open := dial(t, h.addr(t, "hang"))
	defer open.Close()
	if _, err := io.ReadFull(open, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	h.rec.waitFor(t, "five rows", func() bool { return len(h.rec.finished) == 5 })
	eventually(t, "every connection but one to end", func() bool {
		return h.status(t, "hello").Connected == 0 && h.status(t, "exit3").Connected == 0 && h.status(t, "echo").Connected == 0
	})

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}        // name + attributes -> value
	histograms := map[string]uint64{} // name + attributes -> count
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range data.DataPoints {
					sums[m.Name+" "+attrString(p.Attributes)] = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range data.DataPoints {
					histograms[m.Name+" "+attrString(p.Attributes)] = p.Count
				}
			}
		}
	}
	for key, want := range map[string]int64{
		"socketd.connections.accepted socketd.socket=hello":                               2,
		"socketd.connections.accepted socketd.socket=exit3":                               1,
		"socketd.connections.active socketd.socket=hello":                                 0,
		"socketd.connections.active socketd.socket=hang":                                  1,
		"socketd.connection.io network.io.direction=receive,socketd.socket=echo":          5,
		"socketd.connection.io network.io.direction=transmit,socketd.socket=echo":         5,
		"socketd.connections.refused socketd.refusal.reason=denied,socketd.socket=denied": 1,
		"socketd.connection.io network.io.direction=transmit,socketd.socket=hello":        2 * int64(len("Hello World\n")),
		"socketd.connection.io network.io.direction=receive,socketd.socket=hello":         0,
		"socketd.connections.accepted socketd.socket=denied":                              1,
		"socketd.connection.io network.io.direction=transmit,socketd.socket=denied":       0,
	} {
		if got, ok := sums[key]; !ok || got != want {
			t.Errorf("%s = %d (%v), want %d", key, got, ok, want)
		}
	}
	for key, want := range map[string]uint64{
		"socketd.connection.duration socketd.connection.state=exited,socketd.socket=hello": 2,
		"socketd.connection.duration socketd.connection.state=failed,socketd.socket=exit3": 1,
		"socketd.spawn.duration socketd.socket=hello":                                      2,
	} {
		if got := histograms[key]; got != want {
			t.Errorf("%s has %d values, want %d (all: %v)", key, got, want, histograms)
		}
	}
	for key := range sums {
		if strings.Contains(key, "127.0.0.1") || strings.Contains(key, "network.peer") {
			t.Errorf("a metric has the peer's address: %s", key)
		}
	}

	ended := spans.Ended()
	if len(ended) != 5 {
		t.Fatalf("%d spans ended, want 5 (the open connection's has not)", len(ended))
	}
	bySocket := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range ended {
		attrs := attribute.NewSet(s.Attributes()...)
		v, _ := attrs.Value("socketd.socket")
		bySocket[v.AsString()] = append(bySocket[v.AsString()], s)
	}
	check := func(s sdktrace.ReadOnlySpan, want map[string]string, absent ...string) {
		t.Helper()
		attrs := attribute.NewSet(s.Attributes()...)
		for k, w := range want {
			if v, ok := attrs.Value(attribute.Key(k)); !ok || v.Emit() != w {
				t.Errorf("span %s: %s = %q, want %q (all: %s)", s.Name(), k, v.Emit(), w, attrString(attrs))
			}
		}
		for _, k := range absent {
			if _, ok := attrs.Value(attribute.Key(k)); ok {
				t.Errorf("span %s has %s: %s", s.Name(), k, attrString(attrs))
			}
		}
		if !s.StartTime().Before(s.EndTime()) {
			t.Errorf("span %s from %v to %v", s.Name(), s.StartTime(), s.EndTime())
		}
	}
	for _, s := range bySocket["hello"] {
		check(s, map[string]string{"network.transport": "tcp", "network.peer.address": "127.0.0.1",
			"process.exit.code": "0", "socketd.connection.state": "exited"}, "error.type")
		if attrs := attribute.NewSet(s.Attributes()...); !attrs.HasValue("process.pid") || !attrs.HasValue("network.peer.port") {
			t.Errorf("hello's span lacks a pid or a port: %s", attrString(attrs))
		}
	}
	for _, s := range bySocket["exit3"] {
		check(s, map[string]string{"network.peer.address": "127.0.0.0", "process.exit.code": "3", "error.type": "failed"},
			"network.peer.port")
	}
	for _, s := range bySocket["denied"] {
		check(s, map[string]string{"error.type": "denied", "socketd.connection.state": "refused"}, "process.pid")
	}
	if len(bySocket["hello"]) != 2 || len(bySocket["exit3"]) != 1 || len(bySocket["denied"]) != 1 {
		t.Errorf("spans by socket: %d hello, %d exit3, %d denied", len(bySocket["hello"]), len(bySocket["exit3"]), len(bySocket["denied"]))
	}
}

func attrString(s attribute.Set) string {
	var out []string
	for _, kv := range s.ToSlice() {
		out = append(out, string(kv.Key)+"="+kv.Value.Emit())
	}
	return strings.Join(out, ",")
}
