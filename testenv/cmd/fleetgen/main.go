// Command fleetgen sends the events of simulated hosts to Kafka with the
// real Kafka sink (sink/kafka: the messages cnstream run writes: msgpack
// values, key {host}, content-type and event-id headers), for the fleet
// archiver's tests and benchmark:
//
//	fleetgen --brokers B --topic T [--hosts 3] [--events N] [--rate R] [--skip-every K] [--prefix P] [--partitions N [--replicas R]]
//
// With --partitions it first creates the topic (an existing one is kept).
// Each host (P-1, P-2, ...; one boot each) has two CPU streams with
// contiguous seqs from 1; --rate is events per second per host (0: as fast
// as the broker takes them). --skip-every K leaves out every K-th number of
// host 1's CPU 0 stream without a gap record: a real hole, unaccounted.
// At the end it prints one line per host:
//
//	fleetgen: host P-1 boot B: 100000 events sent, 25 numbers skipped
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/kafka"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:19092", "Kafka bootstrap brokers, comma-separated")
	topic := flag.String("topic", "cnstream-events", "topic")
	hosts := flag.Int("hosts", 3, "simulated hosts")
	events := flag.Int("events", 100000, "events per host")
	rate := flag.Int("rate", 0, "events per second per host (0: as fast as possible)")
	skipEvery := flag.Int("skip-every", 0, "leave out every K-th number of host 1's CPU 0 stream, without a gap record")
	prefix := flag.String("prefix", "fleet-host", "host name prefix")
	batch := flag.Int("batch", 2048, "events per WriteBatch")
	partitions := flag.Int("partitions", 0, "create the topic with this many partitions first (0: leave it to the broker)")
	replicas := flag.Int("replicas", 1, "replication factor of the topic --partitions creates")
	flag.Parse()
	if *partitions > 0 {
		if err := createTopic(strings.Split(*brokers, ","), *topic, *partitions, *replicas); err != nil {
			fail(err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s, err := kafka.New(kafka.Config{Brokers: strings.Split(*brokers, ","), Topic: *topic})
	if err != nil {
		fail(err)
	}
	defer s.Close(context.Background())

	type host struct {
		h       *schema.Host
		seq     [2]uint32
		sent    int
		skipped int
	}
	hs := make([]*host, *hosts)
	for i := range hs {
		name := fmt.Sprintf("%s-%d", *prefix, i+1)
		hs[i] = &host{h: &schema.Host{Hostname: name, MachineID: fmt.Sprintf("%032x", i+1), BootID: fmt.Sprintf("boot-%s", name)}}
	}
	t0 := time.Now()
	buf := make([]schema.Event, 0, *batch)
	total := 0
	for round := 0; total < *events**hosts; round++ {
		buf = buf[:0]
		for len(buf) < *batch && total < *events**hosts {
			h := hs[total%*hosts]
			total++
			i := h.sent + h.skipped
			cpu := uint32(i % 2)
			h.seq[cpu]++
			if *skipEvery > 0 && h == hs[0] && cpu == 0 && h.seq[0]%uint32(*skipEvery) == 0 {
				h.seq[0]++ // the number is never sent, and no record says so
				h.skipped++
			}
			pid := uint32(1000 + i%30000)
			e := schema.Event{Version: schema.EventVersion, Kind: schema.KindFork, Time: t0.Add(time.Duration(i) * time.Microsecond).UTC(),
				MonoNS: uint64(i) * 1000, Host: h.h, Stream: &schema.Stream{Idx: schema.ProcID.Idx, Val: schema.ProcID.Val, CPU: cpu, Seq: h.seq[cpu]},
				Fork: &schema.ForkEvent{ParentPID: 1, ParentTGID: 1, ChildPID: pid, ChildTGID: pid}}
			if i%2 == 1 {
				st := 0
				e.Kind, e.Fork = schema.KindExit, nil
				e.Exit = &schema.ExitInfo{PID: pid, TGID: pid, ParentPID: 1, ParentTGID: 1, ExitStatus: &st, ExitSignal: 17}
			}
			buf = append(buf, e)
			h.sent++
		}
		for {
			err := s.WriteBatch(ctx, buf)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				fail(fmt.Errorf("interrupted after %d events: %w", total-len(buf), err))
			}
			fmt.Fprintf(os.Stderr, "fleetgen: %v; retrying\n", err)
			time.Sleep(200 * time.Millisecond) // a broker down: retry the same batch (the sink's ids make a repeat a duplicate to dedupe)
		}
		if *rate > 0 {
			// Pace: total events so far over hosts*rate per second.
			due := t0.Add(time.Duration(float64(total) / float64(*rate**hosts) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					fail(ctx.Err())
				}
			}
		}
	}
	for _, h := range hs {
		fmt.Printf("fleetgen: host %s boot %s: %d events sent, %d numbers skipped\n", h.h.Hostname, h.h.BootID, h.sent, h.skipped)
	}
	fmt.Printf("fleetgen: %d events in %.1f s\n", total, time.Since(t0).Seconds())
}

// createTopic creates topic, unless it exists.
func createTopic(brokers []string, topic string, partitions, replicas int) error {
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 30 * time.Second}
	res, err := c.CreateTopics(context.Background(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: topic, NumPartitions: partitions, ReplicationFactor: replicas}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if errors.Is(err, kafkago.TopicAlreadyExists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fleetgen:", err)
	os.Exit(1)
}
