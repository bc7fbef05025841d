//go:build linux

package source_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
)

const groupBench = 23

// BenchmarkReadBatch drains a pre-filled receive queue: the sender fills it
// while the timer is stopped, then ReadBatch drains it. ns/datagram is the
// receive cost (CPU-bound: the queue is never empty while timed). The
// side-by-side comparison with a C recvmmsg receiver and mdlayher/netlink's
// Receive is testenv/bench-source (docs/BENCHMARKS.md).
func BenchmarkReadBatch(b *testing.B) {
	for _, size := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			rx, err := source.Dial(source.Config{Groups: []uint32{groupBench}})
			if err != nil {
				b.Fatal(err)
			}
			defer rx.Close()
			tx, err := source.Dial(source.Config{ReadBuffer: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Close()
			id := testID()
			batch := source.NewBatch(size, 256)
			payload := make([]byte, 40)
			ctx := context.Background()
			const chunk = 100000 // fits the 64 MiB queue (~161k datagrams)
			b.ReportAllocs()
			b.ResetTimer()
			b.StopTimer()
			for done := 0; done < b.N; {
				n := min(chunk, b.N-done)
				for i := range n {
					if err := tx.Send(schema.CnMsg{ID: id, Seq: uint32(done + i), Data: payload}, groupBench); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				for got := 0; got < n; {
					k, err := rx.ReadBatch(ctx, batch)
					if err != nil {
						b.Fatal(err)
					}
					got += k
				}
				b.StopTimer()
				done += n
			}
			if st := rx.Stats(); st.KernelDrops != 0 {
				b.Fatalf("kernel dropped %d datagrams: the measurement is invalid", st.KernelDrops)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/datagram")
		})
	}
}
