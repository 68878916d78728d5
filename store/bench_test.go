package store

import (
	"context"
	"testing"

	"github.com/socketd/socketd"
)

// BenchmarkBeginFinish records connections from many goroutines at once, as
// a busy server does: each iteration is one row begun and finished, so
// rows/s is the history's throughput. The goal is at least 20,000 rows/s.
func BenchmarkBeginFinish(b *testing.B) {
	db := openTest(b)
	ctx := context.Background()
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := socketd.Connection{
				Socket: "bench", RemoteIP: "127.0.0.1", RemotePort: 40000,
				LocalIP: "127.0.0.1", LocalPort: 13063,
			}
			if err := db.BeginConnection(ctx, &c); err != nil {
				b.Error(err)
				return
			}
			code := 0
			c.State, c.ExitCode, c.PID, c.BytesIn, c.BytesOut = socketd.ConnExited, &code, 4242, 5, 12
			if err := db.FinishConnection(ctx, &c); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
