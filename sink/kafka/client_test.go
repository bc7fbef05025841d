package kafka_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/kafka"
	"github.com/cnstream/cnstream/sink/sinktest"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// TestHashPartitionMatchesKafkaGo: the franz-go partitioner picks, for
// every key and partition count, the partition kafka-go's Hash balancer
// picks, so that switching clients does not move keys.
func TestHashPartitionMatchesKafkaGo(t *testing.T) {
	var bal kafkago.Hash
	ids := make([]int, 0, 1000)
	keys := [][]byte{{}, {0}, {0xff}, []byte("host"), []byte(strings.Repeat("x", 300))}
	for i := range 5000 {
		keys = append(keys, fmt.Appendf(nil, "host-%d.example.com/%x", i, i*7919))
	}
	for _, n := range []int{1, 2, 3, 4, 6, 7, 12, 64, 100, 1000} {
		for len(ids) < n {
			ids = append(ids, len(ids))
		}
		for _, k := range keys {
			want := bal.Balance(kafkago.Message{Key: k}, ids[:n]...)
			if got := kafka.HashPartition(k, n); got != want {
				t.Fatalf("key %q, %d partitions: franz-go partitioner %d, kafka-go Hash %d", k, n, got, want)
			}
		}
	}
}

// TestSamePartitions writes the same events with each client to a topic of
// 6 partitions and checks that every event is in the same partition for
// both: the partition is the key's, whichever the client.
func TestSamePartitions(t *testing.T) {
	bootstrap := strings.Split(brokers.Kafka(t), ",")
	events := sinktest.NewGenerator(31).Batch(600)
	// Many keys: the host and the pid of the event.
	part := map[string]map[string]int{} // client -> event id -> partition
	for _, client := range clients {
		topic := uniqueTopic(t)
		createTopic(t, topic, 6)
		s, err := kafka.New(kafka.Config{Brokers: bootstrap, Topic: topic, Key: "{boot_id}-{host}-{kind}", Client: client})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteBatch(t.Context(), events); err != nil {
			t.Fatalf("%s: WriteBatch: %v", client, err)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		msgs, err := readMessages(t, topic)
		if err != nil {
			t.Fatal(err)
		}
		part[client] = map[string]int{}
		for i := range msgs {
			id, _ := header(&msgs[i], kafka.HeaderEventID)
			part[client][id] = msgs[i].Partition
		}
		if len(part[client]) != len(events) {
			t.Fatalf("%s: %d distinct events read back, %d written", client, len(part[client]), len(events))
		}
	}
	used := map[int]bool{}
	for _, e := range events {
		a, b := part[clients[0]][e.ID], part[clients[1]][e.ID]
		if a != b {
			t.Errorf("event %s: partition %d with %s, %d with %s", e.ID, a, clients[0], b, clients[1])
		}
		used[a] = true
	}
	if len(used) < 2 {
		t.Errorf("the events went to %d partition(s): the test needs keys spread over several", len(used))
	}
}

// TestOrderManyBatches writes 40 batches of 500 events with each client to
// a topic of 4 partitions and reads them back: every event once, in the
// order written per key (sinktest.Check).
func TestOrderManyBatches(t *testing.T) {
	forClients(t, func(t *testing.T, client string) {
		topic := uniqueTopic(t)
		createTopic(t, topic, partitions)
		s, err := kafka.New(kafka.Config{Brokers: strings.Split(brokers.Kafka(t), ","), Topic: topic, Client: client})
		if err != nil {
			t.Fatal(err)
		}
		g := sinktest.NewGenerator(17)
		var want []schema.Event
		for range 40 {
			batch := g.Batch(500)
			if err := s.WriteBatch(t.Context(), batch); err != nil {
				t.Fatalf("WriteBatch after %d events: %v", len(want), err)
			}
			want = append(want, batch...)
		}
		sinktest.Check(t, want, closeAndRead(t, s, topic), sinktest.CheckOptions{Key: hostName})
		if st := s.Stats(); st.Messages != uint64(len(want)) || st.Batches != 40 || st.Requests == 0 {
			t.Errorf("Stats = %+v, want %d messages in 40 batches", st, len(want))
		}
	})
}

// TestBrokerRestart: the only broker stops (testenv/kafka/stop --keep).
// WriteBatch fails with a retriable error within WriteTimeout; once the
// broker is back (start --restart), the pipeline's retry succeeds, and
// every event is in the topic at least once, the first copies in the
// order written.
func TestBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts and restarts a Kafka broker")
	}
	forClients(t, func(t *testing.T, client string) {
		out, dir := startPrivate(t, "kafka-restart", 2)
		bootstrap := strings.Split(out, ",")
		topic := uniqueTopic(t)
		c := &kafkago.Client{Addr: kafkago.TCP(bootstrap...), Timeout: 30 * time.Second}
		res, err := c.CreateTopics(t.Context(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
			{Topic: topic, NumPartitions: 2, ReplicationFactor: 1},
		}})
		if err == nil {
			err = res.Errors[topic]
		}
		if err != nil {
			t.Fatalf("CreateTopics: %v", err)
		}
		waitTopic(t, bootstrap[0], topic, 2)

		const timeout = 4 * time.Second
		s, err := kafka.New(kafka.Config{Brokers: bootstrap, Topic: topic, WriteTimeout: timeout, Client: client})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		g := sinktest.NewGenerator(23)
		var want []schema.Event
		before := g.Batch(300)
		if err := s.WriteBatch(t.Context(), before); err != nil {
			t.Fatalf("WriteBatch before the stop: %v", err)
		}
		want = append(want, before...)

		script, _ := filepath.Abs("../../testenv/kafka")
		if out, err := exec.Command(filepath.Join(script, "stop"), "--keep", "--dir", dir).CombinedOutput(); err != nil {
			t.Fatalf("testenv/kafka/stop --keep: %v\n%s", err, out)
		}
		during := g.Batch(300)
		start := time.Now()
		err = s.WriteBatch(t.Context(), during)
		d := time.Since(start)
		t.Logf("WriteBatch with the broker down, after %v: %v", d.Round(time.Millisecond), err)
		if err == nil || sink.IsPermanent(err) {
			t.Fatalf("WriteBatch with the broker down = %v, want a retriable error", err)
		}
		if d > timeout+time.Second {
			t.Errorf("WriteBatch with the broker down took %v, more than WriteTimeout %v", d, timeout)
		}

		cmd := exec.Command(filepath.Join(script, "start"), "--restart", "--dir", dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("testenv/kafka/start --restart: %v\n%s", err, out)
		}
		writeRetrying(t, s, during)
		want = append(want, during...)
		after := g.Batch(300)
		writeRetrying(t, s, after)
		want = append(want, after...)

		msgs, err := readMessagesAt(bootstrap[0], topic)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decode(msgs, "msgpack", hostName)
		if err != nil {
			t.Fatal(err)
		}
		// At least once: keep the first copy of each event.
		seen := map[string]bool{}
		var first []schema.Event
		for _, e := range got {
			if !seen[e.ID] {
				seen[e.ID] = true
				first = append(first, e)
			}
		}
		t.Logf("%d messages read back, %d distinct events", len(got), len(first))
		sinktest.Check(t, want, first, sinktest.CheckOptions{Key: hostName})
	})
}

// TestMaxRequestBytes: an event whose message is larger than
// MaxRequestBytes is refused with a permanent error matching
// MessageSizeTooLarge, by both clients, before the broker sees it; the
// sink then writes smaller events.
func TestMaxRequestBytes(t *testing.T) {
	forClients(t, func(t *testing.T, client string) {
		topic := uniqueTopic(t)
		createTopic(t, topic, 1)
		s, err := kafka.New(kafka.Config{Brokers: strings.Split(brokers.Kafka(t), ","), Topic: topic, MaxRequestBytes: 1024, Client: client})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		big := sinktest.NewGenerator(3).Batch(1)
		big[0].Process = &schema.Process{Cmdline: []string{strings.Repeat("x", 2000)}}
		err = s.WriteBatch(t.Context(), big)
		if !sink.IsPermanent(err) || !errors.Is(err, kafkago.MessageSizeTooLarge) && !isAs[kafkago.MessageTooLargeError](err) {
			t.Fatalf("WriteBatch of a 2 kB event with MaxRequestBytes 1024 = %v, want a permanent message-too-large error", err)
		}
		small := sinktest.NewGenerator(4).Batch(20)
		for i := range small {
			small[i].Process = nil
		}
		if err := s.WriteBatch(t.Context(), small); err != nil {
			t.Fatalf("WriteBatch of small events after the refused one: %v", err)
		}
		msgs, err := readMessages(t, topic)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != len(small) {
			t.Errorf("the topic holds %d messages, want the %d small events", len(msgs), len(small))
		}
	})
}

// TestRequiredAcksOne writes with RequiredAcks "one" (franz-go: idempotence
// off, one request in flight per broker) and reads every event back in
// order per key.
func TestRequiredAcksOne(t *testing.T) {
	forClients(t, func(t *testing.T, client string) {
		topic := uniqueTopic(t)
		createTopic(t, topic, partitions)
		s, err := kafka.New(kafka.Config{Brokers: strings.Split(brokers.Kafka(t), ","), Topic: topic, RequiredAcks: "one", Client: client})
		if err != nil {
			t.Fatal(err)
		}
		g := sinktest.NewGenerator(8)
		var want []schema.Event
		for range 5 {
			b := g.Batch(400)
			if err := s.WriteBatch(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			want = append(want, b...)
		}
		sinktest.Check(t, want, closeAndRead(t, s, topic), sinktest.CheckOptions{Key: hostName})
	})
}

// closeAndRead closes s and returns the events of topic, read back with
// kafka-go and decoded from msgpack.
func closeAndRead(t *testing.T, s *kafka.Sink, topic string) []schema.Event {
	t.Helper()
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	msgs, err := readMessages(t, topic)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decode(msgs, "msgpack", hostName)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestStreamKey: with the key {host}-{stream} a host's events spread over
// the topic's partitions, and each stream's events stay in one partition
// in the order written (the ordering unit becomes the stream).
func TestStreamKey(t *testing.T) {
	forClients(t, func(t *testing.T, client string) {
		topic := uniqueTopic(t)
		createTopic(t, topic, partitions)
		s, err := kafka.New(kafka.Config{Brokers: strings.Split(brokers.Kafka(t), ","), Topic: topic, Key: "{host}-{stream}", Client: client})
		if err != nil {
			t.Fatal(err)
		}
		g := sinktest.NewGenerator(23)
		var want []schema.Event
		for range 10 {
			b := g.Batch(300)
			if err := s.WriteBatch(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			want = append(want, b...)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		msgs, err := readMessages(t, topic)
		if err != nil {
			t.Fatal(err)
		}
		// Positions written, per event id; partition and offset read back.
		pos := map[string]int{}
		for i := range want {
			pos[want[i].EventID()] = i
		}
		type at struct {
			part int
			off  int64
			pos  int
		}
		byKey := map[string][]at{}
		parts := map[int]bool{}
		for i := range msgs {
			m := &msgs[i]
			e, err := schema.DecodeMsgpack(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			p, ok := pos[e.EventID()]
			if !ok {
				t.Fatalf("message %d/%d: event %s was not written", m.Partition, m.Offset, e.EventID())
			}
			byKey[string(m.Key)] = append(byKey[string(m.Key)], at{m.Partition, m.Offset, p})
			parts[m.Partition] = true
		}
		if len(msgs) != len(want) {
			t.Errorf("%d messages, want %d", len(msgs), len(want))
		}
		if len(byKey) < 2 || len(parts) < 2 {
			t.Fatalf("%d keys over %d partitions: the test proves nothing", len(byKey), len(parts))
		}
		for k, as := range byKey {
			slices.SortFunc(as, func(a, b at) int { return cmp.Compare(a.off, b.off) })
			for i := 1; i < len(as); i++ {
				if as[i].part != as[0].part {
					t.Fatalf("key %s in partitions %d and %d", k, as[0].part, as[i].part)
				}
				if as[i].pos <= as[i-1].pos {
					t.Fatalf("key %s: offset %d holds event %d, after event %d: out of order", k, as[i].off, as[i].pos, as[i-1].pos)
				}
			}
		}
	})
}
