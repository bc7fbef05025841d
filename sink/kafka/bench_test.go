package kafka_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/kafka"
	"github.com/cnstream/cnstream/sink/sinktest"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// BenchmarkWriteBatch writes batches of enriched events (every one with a
// Process) to a real broker: msgpack, zstd, acks from all in-sync replicas,
// 4 partitions; keys spread over the generator's 3 hosts (up to 3
// partitions written in parallel), or one key (one partition, as one host
// with the default key writes).
func BenchmarkWriteBatch(b *testing.B) {
	for _, key := range []string{"{host}", "one-host"} {
		for _, n := range []int{1024, 4096, 16384} {
			name := "keys=3/" + strconv.Itoa(n)
			if key == "one-host" {
				name = "keys=1/" + strconv.Itoa(n)
			}
			b.Run(name, func(b *testing.B) { benchmarkWriteBatch(b, n, key) })
		}
	}
}

func benchmarkWriteBatch(b *testing.B, n int, key string) {
	topic := uniqueTopic(b)
	createTopic(b, topic, partitions)
	s, err := kafka.New(kafka.Config{
		Brokers: strings.Split(brokers.Kafka(b), ","), Topic: topic, Key: key,
		Encoding: "msgpack", Compression: "zstd", RequiredAcks: "all",
	})
	if err != nil {
		b.Fatal(err)
	}
	g := sinktest.NewGenerator(42)
	batch := make([]schema.Event, 0, n)
	for len(batch) < n {
		if e := g.Next(); e.Process != nil {
			batch = append(batch, e)
		}
	}
	// Warm up: metadata, connections, buffers.
	if err := s.WriteBatch(b.Context(), batch); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.WriteBatch(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	st := s.Stats()
	b.ReportMetric(float64(st.Bytes)/float64(st.Messages), "B/event")
	if err := s.Close(b.Context()); err != nil {
		b.Fatal(err)
	}
}
