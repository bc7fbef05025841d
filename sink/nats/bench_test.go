package natssink

import (
	"testing"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/sinktest"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// BenchmarkWriteBatch publishes batches of 1024 generated events (every
// kind, some enriched), MessagePack, to the real server: JetStream with a
// Nats-Msg-Id per message, each batch waiting for every PubAck, and core
// NATS, each batch ending with a flush. B/op and allocs/op are per batch;
// events/s is the throughput. Every event is new (no duplicate), so the
// stream grows by b.N*1024 messages.
func BenchmarkWriteBatch(b *testing.B) {
	const batch = 1024
	url := brokers.NATS(b)
	for _, mode := range []string{"jetstream", "core"} {
		b.Run(mode+"/msgpack/1024", func(b *testing.B) {
			var s *Sink
			if mode == "jetstream" {
				s, _, _ = newJetStream(b, url, Config{})
			} else {
				s = mustNew(b, Config{URL: url, Subject: unique("cnt") + ".{host}.{kind}"})
			}
			g := sinktest.NewGenerator(1)
			next := func() []schema.Event { return g.Batch(batch) }
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				b.StopTimer()
				events := next()
				b.StartTimer()
				if err := s.WriteBatch(b.Context(), events); err != nil {
					b.Fatal(err)
				}
				n += batch
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
