package file

import (
	"io"
	"os"
	"path/filepath"
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
func BenchmarkWriteBatch(b *testing.B) { benchWriteBatch(b, nil) }

// BenchmarkWriteBatchArchive is BenchmarkWriteBatch with the archive on
// (same events, sizes and sub-benchmarks): the difference per event is the
// cost of hashing records, writing their leaves and signing a checkpoint
// per rotation.
func BenchmarkWriteBatchArchive(b *testing.B) {
	key, _ := newKeyFile(b, "bench-host")
	benchWriteBatch(b, &ArchiveConfig{Key: key, Origin: testOrigin})
}

func benchWriteBatch(b *testing.B, ar *ArchiveConfig) {
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
				s, err := New(Config{Dir: b.TempDir(), Format: format, Sync: policy, Compression: c.comp, Archive: ar})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				i := 0
				var slowest time.Duration
				cpu0 := cpuTime()
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
				// CPU of the whole process (the sink runs in this goroutine;
				// the GC too) per event: steadier than wall time on a
				// shared host, and what the archive's cost is judged by.
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(i*batch), "cpu-ns/event")
				if err := s.Close(b.Context()); err != nil {
					b.Fatal(err)
				}
				st := s.Stats()
				b.ReportMetric(float64(st.Rotations), "rotations")
			})
		}
	}
}

// BenchmarkArchiveRecords reads the raw records of one 64 MiB file (as the
// sink rotates it by default), plain and compressed, per format: records/s
// and MB/s of uncompressed data (b.SetBytes) on one core.
func BenchmarkArchiveRecords(b *testing.B) {
	g := sinktest.NewGenerator(2)
	for _, format := range formats {
		dir := b.TempDir()
		s, err := New(Config{Dir: dir, Format: format, Sync: SyncNever, Compression: None, MaxSize: -1})
		if err != nil {
			b.Fatal(err)
		}
		for s.size < 64<<20 {
			if err := s.WriteBatch(b.Context(), g.Batch(512)); err != nil {
				b.Fatal(err)
			}
		}
		size := s.size
		if err := s.Close(b.Context()); err != nil {
			b.Fatal(err)
		}
		plain := filepath.Join(dir, activeName("events", format))
		zst := plain + zstExt
		compressFile(b, plain, zst)
		for _, f := range []ArchiveFile{{Path: plain, Format: format}, {Path: zst, Format: format}} {
			name := string(format) + "/plain"
			if f.Path == zst {
				name = string(format) + "/zstd"
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(size)
				b.ReportAllocs()
				var n int64
				for b.Loop() {
					if err := f.Records(func(int64, []byte) error { n++; return nil }); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

func compressFile(b *testing.B, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	enc, err := newEncoder()
	if err != nil {
		b.Fatal(err)
	}
	enc.Reset(out)
	if _, err := io.Copy(enc, in); err != nil {
		b.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		b.Fatal(err)
	}
}
