package store

import (
	"context"
	"sync/atomic"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/socketd/socketd"
)

// TestInstrument: the history writer reports its commits' durations and
// its queue.
func TestInstrument(t *testing.T) {
	db := openTest(t)
	// Batches pass unless held, which the test does below.
	var hold atomic.Pointer[chan struct{}]
	db.hist.beforeBatch = func([]*request) {
		if ch := hold.Load(); ch != nil {
			<-*ch
		}
	}
	reader := sdkmetric.NewManualReader()
	if err := db.Instrument(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := db.BeginConnection(testCtx(t), &socketd.Connection{Socket: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	// A held batch: its requests show in the queue until it commits.
	held := make(chan struct{})
	hold.Store(&held)
	done := make(chan error, 1)
	go func() { done <- db.BeginConnection(context.Background(), &socketd.Connection{Socket: "a"}) }()
	var rm metricdata.ResourceMetrics
	var queued int64
	for queued == 0 {
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		queued = gauge(rm, "socketd.history.queue")
	}
	close(held)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if n := gauge(rm, "socketd.history.queue"); queued != 1 || n != 0 {
		t.Errorf("queue %d while a begin waited, %d after; want 1, 0", queued, n)
	}
	var commits uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == "socketd.history.commit.duration" {
				for _, p := range h.DataPoints {
					commits += p.Count
				}
			}
		}
	}
	if commits < 4 {
		t.Errorf("%d commits recorded, want at least 4 (one a begin waited for)", commits)
	}
}

// gauge returns the value of the int64 gauge name, -1 if absent.
func gauge(rm metricdata.ResourceMetrics, name string) int64 {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == name && len(g.DataPoints) == 1 {
				return g.DataPoints[0].Value
			}
		}
	}
	return -1
}
