package file

import (
	"crypto/sha256"
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

// BenchmarkArchiveHashFloor is the reference for BenchmarkWriteBatchArchive:
// the least RFC 6962 asks per record of the same batches, measured bare:
// SHA-256 of 0x00 and the record (its leaf hash, crypto/sha256 with the
// CPU's SHA extensions when it has them) and one SHA-256 of 65 bytes (a
// tree node: a tree of n leaves has n-1), nothing else. cpu-ns/event here
// beside the difference between the two WriteBatch benchmarks is the
// overhead of the archive over the hashing RFC 6962 requires.
func BenchmarkArchiveHashFloor(b *testing.B) {
	const batch = 512
	g := sinktest.NewGenerator(1)
	for _, format := range formats {
		b.Run(string(format), func(b *testing.B) {
			s := &Sink{cfg: Config{Format: format}}
			var records [][]byte
			var bytes int
			for range 32 {
				for _, e := range g.Batch(batch) {
					rec := s.encode(nil, &e)
					if format == JSONL {
						rec = rec[:len(rec)-1]
					} else {
						rec = rec[4:]
					}
					records = append(records, rec)
					bytes += len(rec)
				}
			}
			b.SetBytes(int64(bytes / len(records) * batch))
			h := sha256.New()
			var node [65]byte
			node[0] = 0x01
			var sum []byte
			i := 0
			cpu0 := cpuTime()
			for b.Loop() {
				for range batch {
					h.Reset()
					h.Write([]byte{0x00})
					h.Write(records[i%len(records)])
					sum = h.Sum(sum[:0])
					copy(node[1:33], sum)
					leaf := sha256.Sum256(node[:])
					copy(node[33:], leaf[:])
					i++
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(i), "cpu-ns/event")
		})
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
