package kafka_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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

	"github.com/google/go-cmp/cmp"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/kafka"
	"github.com/cnstream/cnstream/sink/sinktest"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// One broker for all the tests of this package: $CNSTREAM_KAFKA, or one
// started by the brokers package.
func TestMain(m *testing.M) { os.Exit(brokers.Run(m)) }

const partitions = 4

// clients are the Config.Client values: the behavioural tests run with
// each.
var clients = []string{kafka.ClientKafkaGo, kafka.ClientFranzGo}

// forClients runs f as a subtest per client.
func forClients(t *testing.T, f func(t *testing.T, client string)) {
	t.Helper()
	for _, c := range clients {
		t.Run(c, func(t *testing.T) { f(t, c) })
	}
}

func uniqueTopic(t testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "cnstream-test-" + hex.EncodeToString(b)
}

// admin returns the bootstrap address and a kafka-go admin client.
func admin(t testing.TB) (string, *kafkago.Client) {
	t.Helper()
	addr := strings.Split(brokers.Kafka(t), ",")[0]
	return addr, &kafkago.Client{Addr: kafkago.TCP(addr), Timeout: 30 * time.Second}
}

// createTopic creates topic with n partitions and waits until each has a
// leader; the topic is deleted when the test ends.
func createTopic(t testing.TB, topic string, n int) {
	t.Helper()
	addr, c := admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: topic, NumPartitions: n, ReplicationFactor: 1},
	}})
	if err != nil {
		t.Fatalf("CreateTopics %s: %v", topic, err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatalf("CreateTopics %s: %v", topic, err)
	}
	t.Cleanup(func() { deleteTopics(t, topic) })
	waitTopic(t, addr, topic, n)
}

func waitTopic(t testing.TB, addr, topic string, n int) {
	t.Helper()
	conn, err := kafkago.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("Dial %s: %v", addr, err)
	}
	defer conn.Close()
	// Poll the metadata until every partition has a leader: the broker
	// announces no event for it.
	deadline := time.Now().Add(30 * time.Second)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		ps, err := conn.ReadPartitions(topic)
		ready := err == nil && len(ps) == n
		for _, p := range ps {
			// A leader in the metadata may not serve the partition yet
			// (NOT_LEADER): ask it for the offsets.
			ready = ready && p.Leader.Host != "" && partitionReady(topic, p)
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: %d of %d partitions ready after 30 s: %v", topic, len(ps), n, err)
		}
		time.Sleep(delay)
	}
}

func partitionReady(topic string, p kafkago.Partition) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := kafkago.DialLeader(ctx, "tcp", net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port)), topic, p.ID)
	if err != nil {
		return false
	}
	defer conn.Close()
	_, _, err = conn.ReadOffsets()
	return err == nil
}

// writeRetrying calls WriteBatch as the pipeline does: again while the
// error is retriable, until ctx's deadline. A topic the broker creates on
// first use fails the first write with UNKNOWN_TOPIC_OR_PARTITION.
func writeRetrying(t *testing.T, s *kafka.Sink, events []schema.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		err := s.WriteBatch(ctx, events)
		if err == nil {
			return
		}
		if sink.IsPermanent(err) || ctx.Err() != nil {
			t.Fatalf("WriteBatch: %v", err)
		}
		t.Logf("WriteBatch: %v (retrying, as the pipeline does)", err)
		time.Sleep(delay) // the pipeline's backoff
	}
}

func deleteTopics(t testing.TB, topics ...string) {
	_, c := admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: topics}); err != nil {
		t.Logf("DeleteTopics %v: %v", topics, err)
	}
}

// readMessages reads every message of topic, partition by partition from
// the first offset to the last, with a connection to each leader.
func readMessages(t testing.TB, topic string) ([]kafkago.Message, error) {
	t.Helper()
	addr, _ := admin(t)
	return readMessagesAt(addr, topic)
}

// readMessagesAt is readMessages from the cluster of the broker at addr.
func readMessagesAt(addr, topic string) ([]kafkago.Message, error) {
	conn, err := kafkago.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	ps, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("ReadPartitions %s: %w", topic, err)
	}
	var out []kafkago.Message
	for _, p := range ps {
		msgs, err := readPartition(topic, p)
		if err != nil {
			return nil, err
		}
		out = append(out, msgs...)
	}
	return out, nil
}

func readPartition(topic string, p kafkago.Partition) ([]kafkago.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port))
	conn, err := kafkago.DialLeader(ctx, "tcp", leader, topic, p.ID)
	if err != nil {
		return nil, fmt.Errorf("DialLeader %s/%d: %w", topic, p.ID, err)
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return nil, fmt.Errorf("ReadOffsets %s/%d: %w", topic, p.ID, err)
	}
	var out []kafkago.Message
	next := first
	for next < last {
		if _, err := conn.Seek(next, kafkago.SeekAbsolute); err != nil {
			return nil, fmt.Errorf("Seek %s/%d to %d: %w", topic, p.ID, next, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := conn.ReadBatch(1, 16<<20)
		for {
			m, err := b.ReadMessage()
			if err != nil {
				break
			}
			if m.Offset >= next {
				out = append(out, m)
				next = m.Offset + 1
			}
		}
		if err := b.Close(); err != nil {
			return nil, fmt.Errorf("reading %s/%d at %d of %d: %w", topic, p.ID, next, last, err)
		}
	}
	return out, nil
}

func header(m *kafkago.Message, key string) (string, int) {
	v, n := "", 0
	for _, h := range m.Headers {
		if h.Key == key {
			v = string(h.Value)
			n++
		}
	}
	return v, n
}

// decode decodes messages written with encoding and checks their headers
// and keys (keyOf gives the key the sink's Key template makes).
func decode(msgs []kafkago.Message, encoding string, keyOf func(*schema.Event) string) ([]schema.Event, error) {
	out := make([]schema.Event, 0, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		var e schema.Event
		var err error
		wantCT := kafka.ContentTypeMsgpack
		if encoding == "json" {
			e, err = schema.DecodeJSON(m.Value)
			wantCT = kafka.ContentTypeJSON
		} else {
			e, err = schema.DecodeMsgpack(m.Value)
		}
		if err != nil {
			return nil, fmt.Errorf("partition %d offset %d: %w", m.Partition, m.Offset, err)
		}
		for _, h := range []struct{ key, want string }{
			{kafka.HeaderContentType, wantCT},
			{kafka.HeaderSchemaVersion, "1"},
			{kafka.HeaderEventID, e.ID},
		} {
			if v, n := header(m, h.key); n != 1 || v != h.want {
				return nil, fmt.Errorf("partition %d offset %d: header %s = %q (%d times), want %q once", m.Partition, m.Offset, h.key, v, n, h.want)
			}
		}
		if want := keyOf(&e); string(m.Key) != want {
			return nil, fmt.Errorf("partition %d offset %d: key %q, want %q", m.Partition, m.Offset, m.Key, want)
		}
		out = append(out, e)
	}
	return out, nil
}

func hostName(e *schema.Event) string {
	if e.Host == nil {
		return ""
	}
	return e.Host.Hostname
}

func TestConformance(t *testing.T) {
	forClients(t, testConformance)
}

func testConformance(t *testing.T, client string) {
	for _, enc := range []string{"msgpack", "json"} {
		t.Run(enc, func(t *testing.T) {
			bootstrap := brokers.Kafka(t)
			var topic string
			sinktest.Run(t, sinktest.Harness{
				New: func(t *testing.T) (sink.Sink, error) {
					topic = uniqueTopic(t)
					createTopic(t, topic, partitions)
					return kafka.New(kafka.Config{
						Brokers:  strings.Split(bootstrap, ","),
						Topic:    topic,
						Encoding: enc,
						Client:   client,
					})
				},
				Read: func(t *testing.T) ([]schema.Event, error) {
					msgs, err := readMessages(t, topic)
					if err != nil {
						return nil, err
					}
					return decode(msgs, enc, hostName)
				},
				// A real fault the broker makes for good: the topic now
				// refuses record batches over 64 bytes (MESSAGE_TOO_LARGE).
				Break: func(t *testing.T) { limitMessageBytes(t, topic, 64) },
				Key:   hostName,
			})
		})
	}
}

// limitMessageBytes sets the topic's max.message.bytes and waits until the
// broker reports it.
func limitMessageBytes(t *testing.T, topic string, n int) {
	t.Helper()
	_, c := admin(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	want := strconv.Itoa(n)
	res, err := c.IncrementalAlterConfigs(ctx, &kafkago.IncrementalAlterConfigsRequest{
		Resources: []kafkago.IncrementalAlterConfigsRequestResource{{
			ResourceType: kafkago.ResourceTypeTopic,
			ResourceName: topic,
			Configs: []kafkago.IncrementalAlterConfigsRequestConfig{
				{Name: "max.message.bytes", Value: want, ConfigOperation: kafkago.ConfigOperationSet},
			},
		}},
	})
	if err == nil && len(res.Resources) == 1 {
		err = res.Resources[0].Error
	}
	if err != nil {
		t.Fatalf("setting max.message.bytes of %s: %v", topic, err)
	}
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		d, err := c.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{
			Resources: []kafkago.DescribeConfigRequestResource{{
				ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"max.message.bytes"},
			}},
		})
		if err != nil {
			t.Fatalf("DescribeConfigs %s: %v", topic, err)
		}
		for _, r := range d.Resources {
			for _, e := range r.ConfigEntries {
				if e.ConfigName == "max.message.bytes" && e.ConfigValue == want {
					return
				}
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("max.message.bytes of %s not %s after 30 s", topic, want)
		}
		time.Sleep(delay) // polling the broker's state, not waiting for a guess
	}
}

// TestBrokerRejects checks that a write the broker refuses for good is a
// permanent error and that the sink keeps working for other topics.
func TestBrokerRejects(t *testing.T) { forClients(t, testBrokerRejects) }

func testBrokerRejects(t *testing.T, client string) {
	topic := uniqueTopic(t)
	createTopic(t, topic, 1)
	limitMessageBytes(t, topic, 64)
	s, err := kafka.New(kafka.Config{Brokers: []string{brokers.Kafka(t)}, Topic: topic, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	err = s.WriteBatch(t.Context(), sinktest.NewGenerator(3).Batch(20))
	if !sink.IsPermanent(err) || !errors.Is(err, kafkago.MessageSizeTooLarge) {
		t.Fatalf("WriteBatch to a topic with max.message.bytes=64 = %v, want a permanent error matching MessageSizeTooLarge", err)
	}
	msg := kafkago.MessageSizeTooLarge.Error()
	if client == kafka.ClientFranzGo {
		msg = kerr.MessageTooLarge.Message // franz-go's text
	}
	if strings.Count(err.Error(), msg) != 1 {
		t.Errorf("error repeats the per-message error: %v", err)
	}
	if st := s.Stats(); st.Errors != 1 || st.Messages != 0 {
		t.Errorf("Stats = %+v, want 1 error and no message", st)
	}
}

// TestKcat reads what the sink wrote with kcat (librdkafka), an independent
// client: keys, headers and values.
func TestKcat(t *testing.T) { forClients(t, testKcat) }

func testKcat(t *testing.T, client string) {
	kcat := need.Tool(t, "kcat", "it is the independent client of this test")
	bootstrap := brokers.Kafka(t)
	topic := uniqueTopic(t)
	createTopic(t, topic, partitions)
	s, err := kafka.New(kafka.Config{Brokers: strings.Split(bootstrap, ","), Topic: topic, Key: "{host}/{kind}", Client: client})
	if err != nil {
		t.Fatal(err)
	}
	want := sinktest.NewGenerator(7).Batch(300)
	if err := s.WriteBatch(t.Context(), want); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%v: %s", err, ee.Stderr)
		}
		t.Fatalf("kcat -C -J: %v", err)
	}
	type kcatMsg struct {
		Partition int      `json:"partition"`
		Offset    int64    `json:"offset"`
		Key       string   `json:"key"`
		Payload   string   `json:"payload"`
		Headers   []string `json:"headers"` // name, value, name, value...
	}
	byID := map[string]*schema.Event{}
	for i := range want {
		byID[want[i].ID] = &want[i]
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	var got []schema.Event
	for dec.More() {
		var m kcatMsg
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("kcat -J output: %v", err)
		}
		hdr := map[string][]string{}
		for i := 0; i+1 < len(m.Headers); i += 2 {
			hdr[m.Headers[i]] = append(hdr[m.Headers[i]], m.Headers[i+1])
		}
		id := ""
		if v := hdr[kafka.HeaderEventID]; len(v) == 1 {
			id = v[0]
		}
		w, ok := byID[id]
		if !ok {
			t.Fatalf("kcat: message at %d/%d has event id header %q, not one written (headers %v)", m.Partition, m.Offset, hdr[kafka.HeaderEventID], m.Headers)
		}
		if wantKey := w.Host.Hostname + "/" + w.Kind.String(); m.Key != wantKey {
			t.Errorf("kcat: event %s: key %q, want %q", id, m.Key, wantKey)
		}
		for name, v := range map[string]string{kafka.HeaderContentType: kafka.ContentTypeMsgpack, kafka.HeaderSchemaVersion: "1"} {
			if h := hdr[name]; len(h) != 1 || h[0] != v {
				t.Errorf("kcat: event %s: header %s = %q, want [%q]", id, name, h, v)
			}
		}
		// kcat -J prints a binary payload as a JSON string with the bytes
		// that are not UTF-8 replaced: check only that the value is there.
		if len(m.Payload) == 0 {
			t.Errorf("kcat: event %s: empty payload", id)
		}
		got = append(got, *w)
	}
	// Everything once, in order per key.
	sinktest.Check(t, want, got, sinktest.CheckOptions{Key: func(e *schema.Event) string { return e.Host.Hostname + "/" + e.Kind.String() }})
}

// TestCompression writes with every codec and reads back with kafka-go and
// with kcat.
func TestCompression(t *testing.T) { forClients(t, testCompression) }

func testCompression(t *testing.T, client string) {
	bootstrap := brokers.Kafka(t)
	codecs := []string{"none", "gzip", "snappy", "lz4", "zstd"}
	if client == kafka.ClientFranzGo {
		codecs = append(codecs, "zstd-1", "zstd-19", "gzip-1") // compression_level
	}
	for _, codec := range codecs {
		t.Run(codec, func(t *testing.T) {
			topic := uniqueTopic(t)
			createTopic(t, topic, 2)
			name, level, _ := strings.Cut(codec, "-")
			lv, _ := strconv.Atoi(level)
			s, err := kafka.New(kafka.Config{Brokers: strings.Split(bootstrap, ","), Topic: topic, Compression: name, CompressionLevel: lv, Encoding: "json", Client: client})
			if err != nil {
				t.Fatal(err)
			}
			want := sinktest.NewGenerator(11).Batch(40)
			if err := s.WriteBatch(t.Context(), want); err != nil {
				t.Fatalf("WriteBatch: %v", err)
			}
			if err := s.Close(t.Context()); err != nil {
				t.Fatalf("Close: %v", err)
			}
			msgs, err := readMessages(t, topic)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decode(msgs, "json", hostName)
			if err != nil {
				t.Fatal(err)
			}
			sinktest.Check(t, want, got, sinktest.CheckOptions{Key: hostName})

			// kcat decompresses on its own: the JSON values must come back.
			out, err := exec.CommandContext(t.Context(), "kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n").Output()
			if err != nil {
				t.Fatalf("kcat: %v", err)
			}
			lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if len(lines) != len(want) {
				t.Fatalf("kcat read %d messages, want %d", len(lines), len(want))
			}
			for _, l := range lines {
				if _, err := schema.DecodeJSON([]byte(l)); err != nil {
					t.Errorf("kcat value does not decode: %v: %q", err, l)
				}
			}
		})
	}
}

// TestTopicTemplate routes by kind to topics the broker creates on first use.
func TestTopicTemplate(t *testing.T) { forClients(t, testTopicTemplate) }

func testTopicTemplate(t *testing.T, client string) {
	prefix := uniqueTopic(t)
	s, err := kafka.New(kafka.Config{Brokers: []string{brokers.Kafka(t)}, Topic: prefix + ".{kind}", Client: client})
	if err != nil {
		t.Fatal(err)
	}
	events := sinktest.NewGenerator(5).Batch(len(schema.Kinds()))
	var topics []string
	for _, k := range schema.Kinds() {
		topics = append(topics, prefix+"."+k.String())
	}
	t.Cleanup(func() { deleteTopics(t, topics...) })
	writeRetrying(t, s, events)
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, k := range schema.Kinds() {
		// A new topic's partitions may still be electing leaders: read
		// again until the deadline.
		var msgs []kafkago.Message
		for deadline := time.Now().Add(30 * time.Second); ; {
			msgs, err = readMessages(t, topics[i])
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond) // polling the new topic with a deadline
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := decode(msgs, "msgpack", hostName)
		if err != nil {
			t.Fatal(err)
		}
		// At least once: a batch that failed in part (a new topic's
		// partition without a leader yet) is written again whole, so
		// an event may be there twice, with the same id.
		distinct := map[string]bool{}
		for j := range got {
			distinct[got[j].ID] = true
		}
		if len(distinct) != 1 || got[0].Kind != k || !sinktest.Equal(&got[0], &events[i]) {
			t.Errorf("topic %s holds %d events (%v), want the one %s event", topics[i], len(got), got, k)
		}
	}
	if st := s.Stats(); st.Messages != uint64(len(events)) || st.Batches != 1 || st.Bytes == 0 || st.Requests == 0 {
		t.Errorf("Stats = %+v, want %d messages in 1 batch", st, len(events))
	}
}

func TestConfigErrors(t *testing.T) {
	b := []string{"127.0.0.1:9092"}
	for _, c := range []struct {
		cfg   kafka.Config
		field string
	}{
		{kafka.Config{}, "kafka.brokers"},
		{kafka.Config{Brokers: []string{""}}, "kafka.brokers"},
		{kafka.Config{Brokers: []string{"b1:9092,,b2:9092"}}, "kafka.brokers"},
		{kafka.Config{Brokers: []string{"b1:9092 b2:9092"}}, "kafka.brokers"},
		{kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Mechanism: "PLAIN", Username: "u", Password: "hunter2-secret"}}, "kafka.sasl.mechanism"},
		{kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Mechanism: "plain", Username: "u", Password: "hunter2-secret"}}, "kafka.sasl.mechanism"},
		{kafka.Config{Brokers: b, Topic: "a b"}, "kafka.topic"},
		{kafka.Config{Brokers: b, Topic: "x.{nope}"}, "kafka.topic"},
		{kafka.Config{Brokers: b, Topic: "x.{kind"}, "kafka.topic"},
		{kafka.Config{Brokers: b, Topic: strings.Repeat("a", 250)}, "kafka.topic"},
		{kafka.Config{Brokers: b, Key: "{pid}"}, "kafka.key"},
		{kafka.Config{Brokers: b, RequiredAcks: "two"}, "kafka.required_acks"},
		{kafka.Config{Brokers: b, Compression: "brotli"}, "kafka.compression"},
		{kafka.Config{Brokers: b, Encoding: "xml"}, "kafka.encoding"},
		{kafka.Config{Brokers: b, MaxRequestBytes: -1}, "kafka.max_request_bytes"},
		{kafka.Config{Brokers: b, MaxRequestBytes: 100}, "kafka.max_request_bytes"},
		{kafka.Config{Brokers: b, WriteTimeout: -1}, "kafka.timeout"},
		{kafka.Config{Brokers: b, MetadataTTL: -1}, "kafka.metadata_ttl"},
		{kafka.Config{Brokers: b, Client: "sarama"}, "kafka.client"},
		{kafka.Config{Brokers: b, TLS: kafka.TLSConfig{CAFile: "/x"}}, "kafka.tls.ca_file"},
		{kafka.Config{Brokers: b, TLS: kafka.TLSConfig{Enable: true, CAFile: "/nonexistent/ca.pem"}}, "kafka.tls.ca_file"},
		{kafka.Config{Brokers: b, TLS: kafka.TLSConfig{Enable: true, CertFile: "/x.pem"}}, "kafka.tls.key_file"},
		{kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Mechanism: "GSSAPI", Username: "u", Password: "hunter2-secret"}}, "kafka.sasl.mechanism"},
		{kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Username: "u", Password: "hunter2-secret"}}, "kafka.sasl.mechanism"},
		{kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Mechanism: "PLAIN", Password: "hunter2-secret"}}, "kafka.sasl.username"},
		{kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "u"}}, "kafka.sasl.password"},
	} {
		s, err := kafka.New(c.cfg)
		if err == nil {
			s.Close(context.Background())
			t.Errorf("New(%v) = nil error, want one naming %s", c.cfg, c.field)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.field+": ") {
			t.Errorf("New(%v) = %q, want an error starting with %q", c.cfg, err, c.field+": ")
		}
		if !sink.IsPermanent(err) {
			t.Errorf("New(%v) = %v: not permanent", c.cfg, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("New(%v) error shows the password: %v", c.cfg, err)
		}
	}
}

// TestBrokerListsAndPlaintext: an element of Brokers may be a
// comma-separated list (KAFKA_BROKERS=b1:9092,b2:9092 in one list item);
// SASL PLAIN is accepted over TLS, or without it only when AllowPlaintext
// says so.
func TestBrokerListsAndPlaintext(t *testing.T) {
	s, err := kafka.New(kafka.Config{Brokers: []string{" b1:9092, b2:9092 ", "b3:9092"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"b1:9092", "b2:9092", "b3:9092"}, s.Config().Brokers); diff != "" {
		t.Errorf("Brokers (-want +got):\n%s", diff)
	}
	s.Close(context.Background())
	for _, c := range []kafka.Config{
		{Brokers: []string{"b1:9092"}, SASL: kafka.SASLConfig{Mechanism: "PLAIN", Username: "u", Password: "p", AllowPlaintext: true}},
		{Brokers: []string{"b1:9092"}, TLS: kafka.TLSConfig{Enable: true}, SASL: kafka.SASLConfig{Mechanism: "PLAIN", Username: "u", Password: "p"}},
		{Brokers: []string{"b1:9092"}, SASL: kafka.SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%v) = %v, want nil", c, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	s, err := kafka.New(kafka.Config{Brokers: []string{"127.0.0.1:9092"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	got := s.Config()
	want := kafka.Config{
		Brokers: []string{"127.0.0.1:9092"}, Topic: "cnstream-events", Key: "{host}", RequiredAcks: "all",
		Compression: "zstd", Encoding: "msgpack", MaxRequestBytes: 1_000_000,
		WriteTimeout: 10 * time.Second, MetadataTTL: 500 * time.Millisecond, Client: "franz-go",
	}
	if got.String() != want.String() {
		t.Errorf("defaults:\n got %v\nwant %v", got, want)
	}
}

func TestSecretsNotShown(t *testing.T) { forClients(t, testSecretsNotShown) }

func testSecretsNotShown(t *testing.T, client string) {
	const pw = "hunter2-secret"
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		cfg := kafka.Config{
			Brokers: []string{unreachable(t)}, Topic: "t", WriteTimeout: 2 * time.Second, Client: client,
			SASL: kafka.SASLConfig{Mechanism: mech, Username: "user", Password: pw, AllowPlaintext: mech == "PLAIN"},
		}
		for _, s := range []string{cfg.String(), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg), fmt.Sprintf("%v %#v", cfg.SASL, cfg.SASL)} {
			if strings.Contains(s, pw) {
				t.Errorf("printing the Config shows the password: %s", s)
			}
		}
		s, err := kafka.New(cfg)
		if err != nil {
			t.Fatalf("New with SASL %s: %v", mech, err)
		}
		err = s.WriteBatch(t.Context(), sinktest.NewGenerator(1).Batch(3))
		if err == nil || strings.Contains(err.Error(), pw) {
			t.Errorf("WriteBatch with SASL %s to a closed port = %v, want an error without the password", mech, err)
		}
		s.Close(context.Background())
	}
}

// unreachable returns 127.0.0.1:<a port nothing listens on>.
func unreachable(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestUnreachable(t *testing.T) { forClients(t, testUnreachable) }

func testUnreachable(t *testing.T, client string) {
	const timeout = 3 * time.Second
	s, err := kafka.New(kafka.Config{Brokers: []string{unreachable(t)}, WriteTimeout: timeout, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	start := time.Now()
	err = s.WriteBatch(t.Context(), sinktest.NewGenerator(1).Batch(10))
	d := time.Since(start)
	if err == nil {
		t.Fatal("WriteBatch to a closed port = nil")
	}
	if sink.IsPermanent(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sink.ErrClosed) {
		t.Errorf("WriteBatch to a closed port = %v, want a retriable error that is not ctx's", err)
	}
	if d > timeout+time.Second {
		t.Errorf("WriteBatch to a closed port took %v, more than WriteTimeout %v", d, timeout)
	}
	t.Logf("after %v: %v", d.Round(time.Millisecond), err)
}

func TestStats(t *testing.T) { forClients(t, testStats) }

func testStats(t *testing.T, client string) {
	topic := uniqueTopic(t)
	createTopic(t, topic, partitions)
	s, err := kafka.New(kafka.Config{Brokers: []string{brokers.Kafka(t)}, Topic: topic, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	g := sinktest.NewGenerator(9)
	for range 3 {
		if err := s.WriteBatch(t.Context(), g.Batch(100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	msgs, err := readMessages(t, topic)
	if err != nil {
		t.Fatal(err)
	}
	var bytes uint64
	for _, m := range msgs {
		bytes += uint64(len(m.Key) + len(m.Value))
	}
	if st.Messages != 300 || st.Batches != 3 || st.Errors != 0 || st.Bytes != bytes || st.Requests < 3 {
		t.Errorf("Stats = %+v, want 300 messages, 3 batches, %d bytes, no error, at least 3 requests", st, bytes)
	}
}

// TestPing: the real broker answers; a closed port does not, within ctx.
func TestPing(t *testing.T) { forClients(t, testPing) }

func testPing(t *testing.T, client string) {
	s, err := kafka.New(kafka.Config{Brokers: strings.Split(brokers.Kafka(t), ","), Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping the test broker: %v", err)
	}
	down, err := kafka.New(kafka.Config{Brokers: []string{unreachable(t)}, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close(context.Background())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := down.Ping(ctx); err == nil || !strings.HasPrefix(err.Error(), "kafka: ping ") {
		t.Errorf("Ping a closed port = %v, want a kafka: ping error", err)
	}
}
