package archive

import (
	"testing"
)

// BenchmarkTree hashes records of ~300 bytes into a file tree on one core;
// records/s and MB/s are reported.
func BenchmarkTree(b *testing.B) {
	recs := make([][]byte, 1<<10)
	size := 0
	for i := range recs {
		recs[i] = record(int64(i) * 1e6)
		size += len(recs[i])
	}
	b.ReportAllocs()
	b.SetBytes(int64(size / len(recs)))
	var t Tree
	for i := 0; b.Loop(); i++ {
		t.Add(recs[i&(len(recs)-1)])
	}
	_ = t.Root()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkHashRecords1M hashes one file of 1M records of ~300 bytes.
func BenchmarkHashRecords1M(b *testing.B) {
	recs := make([][]byte, 1_000_000)
	size := 0
	for i := range recs {
		recs[i] = record(int64(i))
		size += len(recs[i])
	}
	b.ReportAllocs()
	b.SetBytes(int64(size))
	for b.Loop() {
		HashRecords(recs)
	}
	b.ReportMetric(float64(len(recs))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
