package store

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// commitBuckets bound the histogram of history commits, in seconds.
var commitBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5}

// Instrument reports the history writer's metrics to mp: the rows queued
// and not yet committed, and how long each commit takes.
func (db *DB) Instrument(mp metric.MeterProvider) error {
	m := mp.Meter("github.com/socketd/socketd/store")
	commits, err := m.Float64Histogram("socketd.history.commit.duration", metric.WithUnit("s"),
		metric.WithDescription("How long each commit of the connection history takes, for the rows of a batch."),
		metric.WithExplicitBucketBoundaries(commitBuckets...))
	if err != nil {
		return err
	}
	queue, err := m.Int64ObservableGauge("socketd.history.queue", metric.WithUnit("{request}"),
		metric.WithDescription("Rows (begins and finishes) queued for the history and not yet committed."))
	if err != nil {
		return err
	}
	if _, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(queue, db.hist.pending.Load())
		return nil
	}, queue); err != nil {
		return err
	}
	db.hist.commits.Store(&commits)
	return nil
}

// recordCommit records a commit that took from start until now.
func (w *writer) recordCommit(start time.Time) {
	if h := w.commits.Load(); h != nil {
		(*h).Record(context.Background(), time.Since(start).Seconds())
	}
}
