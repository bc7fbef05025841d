package file

import (
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/sinktest"
)

// BenchmarkWriteBatch writes batches of 512 generated events (every kind,
// some enriched) with the default rotation (64 MiB) and compression (zstd,
// spread over the batches, or none), per format and fsync policy. B/op and allocs/op
// are per batch; events/s and MB/s (records' bytes) are throughput;
// max-µs/batch is the slowest batch.
func BenchmarkWriteBatch(b *testing.B) {
	const batch = 512
	g := sinktest.NewGenerator(1)
	batches := make([][]schema.Event, 32)
	for i := range batches {
		batches[i] = g.Batch(batch)
	}
	for _, format := range formats {
		for _, c := range []struct {
			policy SyncPolicy
			comp   Compression
		}{{SyncNever, Zstd}, {SyncNever, None}, {SyncAlways, Zstd}, {SyncAlways, None}} {
			policy := c.policy
			b.Run(string(format)+"/sync-"+string(policy)+"/"+string(c.comp), func(b *testing.B) {
				var bytes int
				for _, bt := range batches {
					bytes += int(recordEnds(format, bt)[batch-1])
				}
				b.SetBytes(int64(bytes / len(batches)))
				s, err := New(Config{Dir: b.TempDir(), Format: format, Sync: policy, Compression: c.comp})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				i := 0
				var slowest time.Duration
				for b.Loop() {
					start := time.Now()
					if err := s.WriteBatch(b.Context(), batches[i%len(batches)]); err != nil {
						b.Fatal(err)
					}
					slowest = max(slowest, time.Since(start))
					i++
				}
				// The slowest batch: a rotation, or the kernel's writeback;
				// compression is spread over the batches after a rotation.
				b.ReportMetric(float64(slowest.Microseconds()), "max-µs/batch")
				b.ReportMetric(float64(i*batch)/b.Elapsed().Seconds(), "events/s")
				if err := s.Close(b.Context()); err != nil {
					b.Fatal(err)
				}
				st := s.Stats()
				b.ReportMetric(float64(st.Rotations), "rotations")
			})
		}
	}
}
