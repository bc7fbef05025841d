package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/brokers"
)

// BenchmarkArchiver: one archiver consumes a pre-filled topic (3 hosts,
// msgpack values written by the Kafka sink, 3 partitions) into archives,
// fresh group and Dir per iteration; events/s over the whole consumption
// (group join included), B/op and allocs/op per pass of the topic.
func BenchmarkArchiver(b *testing.B) {
	bootstrap := brokers.Kafka(b)
	topic := newTopic(b, bootstrap, 3)
	key, _ := keyFile(b)
	hs := simHosts("bench", 3)
	events := gen(hs, 50000, 10000, nil)
	produce(b, bootstrap, topic, events)
	total := uint64(len(events))
	b.ReportAllocs()
	b.ResetTimer()
	var elapsed time.Duration
	for i := 0; b.Loop(); i++ {
		cfg := baseConfig(b, bootstrap, topic, key)
		cfg.Group = topic + "-bench-" + time.Now().Format("150405.000000000")
		cfg.Batch = 8192
		cfg.MaxSize = 64 << 20
		t0 := time.Now()
		a, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		a.afterTick = func() {
			if a.Stats().Messages >= total {
				cancel()
			}
		}
		if err := a.Run(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		elapsed += time.Since(t0)
		if st := a.Stats(); st.Events != total {
			b.Fatalf("archived %d events, want %d", st.Events, total)
		}
	}
	b.ReportMetric(float64(total)*float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}
