package kafka_test

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/kafka"
	"github.com/cnstream/cnstream/sink/sinktest"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// BenchmarkWriteBatch writes batches of enriched events (every one with a
// Process) to a real broker: msgpack, zstd, acks from all in-sync replicas,
// 4 partitions; keys spread over the generator's 3 hosts (up to 3
// partitions written in parallel), or one key (one partition, as one host
// with the default key writes). Each case runs with each client, side by
// side; cpu-us/event is the CPU time of the benchmark process (user and
// system, every goroutine: encoding, compression, the client) per event.
func BenchmarkWriteBatch(b *testing.B) {
	for _, key := range []string{"{host}", "one-host"} {
		for _, n := range []int{1024, 4096, 16384} {
			name := "keys=3/" + strconv.Itoa(n)
			if key == "one-host" {
				name = "keys=1/" + strconv.Itoa(n)
			}
			for _, client := range clients {
				b.Run(name+"/"+client, func(b *testing.B) { benchmarkWriteBatch(b, n, key, client) })
			}
		}
	}
}

// cpuTime is the CPU time the process used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchmarkWriteBatch(b *testing.B, n int, key, client string) {
	topic := uniqueTopic(b)
	createTopic(b, topic, partitions)
	s, err := kafka.New(kafka.Config{
		Brokers: strings.Split(brokers.Kafka(b), ","), Topic: topic, Key: key,
		Encoding: "msgpack", Compression: "zstd", RequiredAcks: "all", Client: client,
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
	cpu0 := cpuTime(b)
	for b.Loop() {
		if err := s.WriteBatch(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(cpu.Seconds()*1e6/float64(b.N*n), "cpu-us/event")
	st := s.Stats()
	b.ReportMetric(float64(st.Bytes)/float64(st.Messages), "B/event")
	if err := s.Close(b.Context()); err != nil {
		b.Fatal(err)
	}
}
