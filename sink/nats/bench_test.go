package natssink

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/sinktest"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// BenchmarkWriteBatch publishes batches of 1024 generated events (every
// kind, some enriched), MessagePack, to the real server: JetStream with a
// Nats-Msg-Id per message, each batch waiting for every PubAck, and core
// NATS, each batch ending with a flush. B/op and allocs/op are per batch;
// events/s is the throughput. Every event is new (no duplicate), so the
// stream grows by b.N*1024 messages. events-per-message-16 sets
// Config.EventsPerMessage.
//
// cpu-us/event is this process's CPU time (user and system, all its
// threads: nats.go's reader and flusher included) during the WriteBatch
// calls, per event: the generator's work between the calls is not in it.
// On a shared machine it is steadier than events/s. When
// $CNSTREAM_NATS_PID names the server's process (testenv/nats/start
// writes it to nats.pid; set CNSTREAM_NATS to that server's URL),
// srv-us/event is the server's CPU time over the whole run, per event.
func BenchmarkWriteBatch(b *testing.B) {
	const batch = 1024
	url := brokers.NATS(b)
	for _, c := range []struct {
		mode   string
		perMsg int
		name   string
	}{{"jetstream", 0, "jetstream/msgpack/1024"}, {"core", 0, "core/msgpack/1024"},
		{"jetstream", 16, "jetstream/msgpack/1024/events-per-message-16"}} {
		b.Run(c.name, func(b *testing.B) {
			var s *Sink
			if c.mode == "jetstream" {
				s, _, _ = newJetStream(b, url, Config{EventsPerMessage: c.perMsg})
			} else {
				s = mustNew(b, Config{URL: url, Subject: unique("cnt") + ".{host}.{kind}"})
			}
			g := sinktest.NewGenerator(1)
			next := func() []schema.Event { return g.Batch(batch) }
			b.ReportAllocs()
			n := 0
			var cpu time.Duration
			srv0 := serverCPU(b)
			for b.Loop() {
				b.StopTimer()
				events := next()
				b.StartTimer()
				c0 := processCPU()
				if err := s.WriteBatch(b.Context(), events); err != nil {
					b.Fatal(err)
				}
				cpu += processCPU() - c0
				n += batch
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(n), "cpu-us/event")
			if srv0 >= 0 {
				b.ReportMetric(float64((serverCPU(b)-srv0).Nanoseconds())/1e3/float64(n), "srv-us/event")
			}
		})
	}
}

// processCPU returns the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU returns the CPU time of the process $CNSTREAM_NATS_PID
// (utime+stime of /proc/PID/stat, in clock ticks of 10 ms), or -1 when
// the variable is not set.
func serverCPU(b *testing.B) time.Duration {
	pid := os.Getenv("CNSTREAM_NATS_PID")
	if pid == "" {
		return -1
	}
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		b.Fatalf("$CNSTREAM_NATS_PID: %v", err)
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		b.Fatalf("/proc/%s/stat: %d fields after the command", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%s/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
