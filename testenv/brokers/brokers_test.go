package brokers_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/need"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	kafka "github.com/segmentio/kafka-go"

	"github.com/cnstream/cnstream/testenv/brokers"
)

// One broker of each kind for all the tests of this package (or the ones named by
// CNSTREAM_KAFKA and CNSTREAM_NATS).
func TestMain(m *testing.M) { os.Exit(brokers.Run(m)) }

const messages = 1000

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// TestKafka produces 1000 messages with kafka-go (acks from all in-sync replicas),
// consumes them back with a kafka-go consumer group, and reads them once more with
// kcat (librdkafka), an independent client.
func TestKafka(t *testing.T) {
	bootstrap := brokers.Kafka(t)
	addrs := strings.Split(bootstrap, ",")
	topic := uniqueName("cnstream-testenv")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	createTopic(ctx, t, addrs[0], topic, 6)
	t.Cleanup(func() { deleteTopic(t, addrs[0], topic) })

	w := &kafka.Writer{
		Addr:         kafka.TCP(addrs...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond,
		BatchSize:    messages,
	}
	want := make(map[string]string, messages)
	batch := make([]kafka.Message, 0, messages)
	for i := range messages {
		k, v := "key-"+strconv.Itoa(i), "value-"+strconv.Itoa(i)
		want[k] = v
		batch = append(batch, kafka.Message{Key: []byte(k), Value: []byte(v)})
	}
	t0 := time.Now()
	if err := w.WriteMessages(ctx, batch...); err != nil {
		t.Fatalf("kafka-go WriteMessages to %s: %v", bootstrap, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("closing the kafka-go writer: %v", err)
	}
	t.Logf("produced %d messages with acks=all in %v", messages, time.Since(t0).Round(time.Millisecond))

	// kafka-go, as a consumer group member. On a fresh broker the first FindCoordinator
	// fails while __consumer_offsets is being created, and kafka-go then waits
	// JoinGroupBackoff (5 s by default) before trying again.
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:          addrs,
		GroupID:          uniqueName("cnstream-testenv-group"),
		Topic:            topic,
		StartOffset:      kafka.FirstOffset,
		MaxWait:          100 * time.Millisecond,
		JoinGroupBackoff: 200 * time.Millisecond,
		// Commit in the background: with 0 (the default) ReadMessage commits each
		// message synchronously, ~5 ms apiece on a 3-node cluster.
		CommitInterval: 100 * time.Millisecond,
	})
	t0 = time.Now()
	got := make(map[string]string, messages)
	for len(got) < messages {
		m, err := r.ReadMessage(ctx)
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.Temporary() && ctx.Err() == nil {
			// The Reader reports group errors and retries by itself: on a new cluster
			// the group coordinator moves (NOT_COORDINATOR) while __consumer_offsets settles.
			t.Logf("kafka-go consumer group: %v (retried)", err)
			continue
		}
		if err != nil {
			r.Close()
			t.Fatalf("kafka-go consumer group read after %d of %d messages: %v", len(got), messages, err)
		}
		if prev, dup := got[string(m.Key)]; dup {
			t.Errorf("kafka-go read key %s twice (%q, then %q at partition %d offset %d)", m.Key, prev, m.Value, m.Partition, m.Offset)
		}
		got[string(m.Key)] = string(m.Value)
	}
	if err := r.Close(); err != nil {
		t.Errorf("closing the kafka-go reader: %v", err)
	}
	t.Logf("consumed %d messages with a kafka-go consumer group in %v", messages, time.Since(t0).Round(time.Millisecond))
	compare(t, "kafka-go", want, got)

	// kcat, an independent client: every message of the topic, then exit (-e).
	kcat := need.Tool(t, "kcat", "it is the independent client of this test")
	cmd := exec.CommandContext(ctx, kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
		"-f", "%k\t%s\n")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%v: %s", err, ee.Stderr)
		}
		t.Fatalf("kcat -C: %v", err)
	}
	got = make(map[string]string, messages)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Fatalf("kcat printed %q, not key<TAB>value", sc.Text())
		}
		if _, dup := got[k]; dup {
			t.Errorf("kcat read key %s twice", k)
		}
		got[k] = v
	}
	compare(t, "kcat", want, got)
}

func createTopic(ctx context.Context, t *testing.T, addr, topic string, partitions int) {
	t.Helper()
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("kafka-go Dial %s: %v", addr, err)
	}
	defer conn.Close()
	bs, err := conn.Brokers()
	if err != nil {
		t.Fatalf("kafka-go Brokers from %s: %v", addr, err)
	}
	ctrl, err := conn.Controller()
	if err != nil {
		t.Fatalf("kafka-go Controller from %s: %v", addr, err)
	}
	cc, err := kafka.DialContext(ctx, "tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		t.Fatalf("kafka-go Dial controller %s:%d: %v", ctrl.Host, ctrl.Port, err)
	}
	defer cc.Close()
	rf := 1
	if len(bs) >= 3 {
		rf = 3
	}
	if err := cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: rf}); err != nil {
		t.Fatalf("kafka-go CreateTopics %s: %v", topic, err)
	}
	// Wait until the broker reports a leader for every partition.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps, err := conn.ReadPartitions(topic)
		ready := err == nil && len(ps) == partitions
		for _, p := range ps {
			ready = ready && p.Leader.Host != ""
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: partitions not ready after 30 s: %v (%d of %d)", topic, err, len(ps), partitions)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func deleteTopic(t *testing.T, addr, topic string) {
	conn, err := kafka.Dial("tcp", addr)
	if err != nil {
		t.Logf("deleting topic %s: %v", topic, err)
		return
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil {
		t.Logf("deleting topic %s: %v", topic, err)
		return
	}
	cc, err := kafka.Dial("tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		t.Logf("deleting topic %s: %v", topic, err)
		return
	}
	defer cc.Close()
	if err := cc.DeleteTopics(topic); err != nil {
		t.Logf("deleting topic %s: %v", topic, err)
	}
}

func compare(t *testing.T, client string, want, got map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s read %d distinct keys, want %d", client, len(got), len(want))
	}
	bad := 0
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			if bad++; bad <= 5 {
				t.Errorf("%s: key %s: got %q (present %v), want %q", client, k, g, ok, v)
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d keys missing or wrong in all", client, bad)
	}
}

// TestNATS creates a JetStream stream, publishes 1000 messages asynchronously with
// Nats-Msg-Id headers, and checks that re-publishing an id is reported as a duplicate
// and not stored.
func TestNATS(t *testing.T) {
	url := brokers.NATS(t)
	nc, err := nats.Connect(url, nats.Name("cnstream testenv"))
	if err != nil {
		t.Fatalf("nats.Connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close) // after the stream's deletion below (cleanups run last first)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	name := strings.ReplaceAll(uniqueName("CNSTREAM_TESTENV"), "-", "_")
	subject := strings.ToLower(name)
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{subject + ".>"},
		Storage:    jetstream.FileStorage,
		Duplicates: time.Minute,
	})
	if err != nil {
		t.Fatalf("CreateStream %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := js.DeleteStream(context.Background(), name); err != nil {
			t.Logf("DeleteStream %s: %v", name, err)
		}
	})

	publish := func(i int) jetstream.PubAckFuture {
		t.Helper()
		msg := &nats.Msg{Subject: subject + ".events", Data: []byte("event " + strconv.Itoa(i))}
		f, err := js.PublishMsgAsync(msg, jetstream.WithMsgID("id-"+strconv.Itoa(i)))
		if err != nil {
			t.Fatalf("PublishMsgAsync %d: %v", i, err)
		}
		return f
	}
	t0 := time.Now()
	futures := make([]jetstream.PubAckFuture, messages)
	for i := range messages {
		futures[i] = publish(i)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatalf("%d async publishes still pending after a minute", js.PublishAsyncPending())
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				t.Errorf("message %d (first publish of its id) acknowledged as a duplicate", i)
			}
			if ack.Stream != name {
				t.Errorf("message %d stored in stream %q, want %q", i, ack.Stream, name)
			}
		case err := <-f.Err():
			t.Errorf("message %d: %v", i, err)
		}
	}
	t.Logf("published %d messages asynchronously with ids in %v", messages, time.Since(t0).Round(time.Millisecond))

	// The same id again, within the duplicate window.
	f := publish(7)
	select {
	case ack := <-f.Ok():
		if !ack.Duplicate {
			t.Errorf("re-published id-7 acknowledged as new (seq %d), want a duplicate", ack.Sequence)
		}
	case err := <-f.Err():
		t.Fatalf("re-publishing id-7: %v", err)
	case <-ctx.Done():
		t.Fatalf("no ack for the re-published id-7")
	}

	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.State.Msgs != messages {
		t.Errorf("stream holds %d messages, want %d (the duplicate must not be stored)", info.State.Msgs, messages)
	}
}
