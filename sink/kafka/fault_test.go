package kafka_test

// Fault-injection tests of the sink against kfake, a FAKE Kafka broker
// (github.com/twmb/franz-go/pkg/kfake) run in the test process. The real
// broker of the other tests cannot be made to answer a produce request with
// an error of our choice, nor to store a request and then answer it with an
// error: the fake can (kfake.Fault). Everything else about the sink is tested
// against the real broker; these tests only cover how it reacts to broker
// errors. They need no service and run with or without CNSTREAM_KAFKA.

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/kafka"
	"github.com/cnstream/cnstream/sink/sinktest"
)

const (
	fakeTopic        = "cnstream-fault"
	fakeWriteTimeout = 3 * time.Second
)

// newFakeBroker starts a one-broker fake Kafka cluster holding fakeTopic with
// the given partitions; it is closed when the test ends.
func newFakeBroker(t *testing.T, partitions int32) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, fakeTopic))
	if err != nil {
		t.Fatalf("kfake.NewCluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// newFakeSink returns a Sink writing to fakeTopic of the fake cluster c; it
// is closed when the test ends.
func newFakeSink(t *testing.T, c *kfake.Cluster) *kafka.Sink {
	t.Helper()
	return newFakeSinkClient(t, c, kafka.ClientKafkaGo)
}

// newFakeSinkClient is newFakeSink with Config.Client client.
func newFakeSinkClient(t *testing.T, c *kfake.Cluster, client string) *kafka.Sink {
	t.Helper()
	s, err := kafka.New(kafka.Config{
		Brokers:      c.ListenAddrs(),
		Topic:        fakeTopic,
		RequiredAcks: "all",
		WriteTimeout: fakeWriteTimeout,
		Client:       client,
	})
	if err != nil {
		t.Fatalf("kafka.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// observeProduce counts the produce requests the fake broker receives. It
// must be installed before the faults: the first fault that matches answers.
func observeProduce(c *kfake.Cluster) *kfake.FaultHandle {
	return c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Observe: true, Count: -1})
}

// produceFault fails produce requests to fakeTopic (those partitions, or
// all when none are given) with e: count requests, -1 until removed.
func produceFault(c *kfake.Cluster, e *kerr.Error, count int, partitions ...int32) *kfake.FaultHandle {
	return c.Fault(kfake.Fault{
		Keys:       []kmsg.Key{kmsg.Produce},
		Topic:      fakeTopic,
		Partitions: partitions,
		Err:        e,
		Count:      count,
	})
}

// writeLikePipeline calls WriteBatch until it succeeds, as the pipeline
// does, and returns the errors of the failed calls. Every error must be
// retriable; the test fails after max calls.
func writeLikePipeline(t *testing.T, s *kafka.Sink, events []schema.Event, max int) []error {
	t.Helper()
	var errs []error
	for range max {
		err := s.WriteBatch(context.Background(), events)
		if err == nil {
			return errs
		}
		if sink.IsPermanent(err) {
			t.Fatalf("WriteBatch: %v: permanent, want retriable", err)
		}
		errs = append(errs, err)
	}
	t.Fatalf("WriteBatch failed %d times, last with %v", max, errs[len(errs)-1])
	return nil
}

// fakeRecords reads every record of fakeTopic from the fake cluster with
// franz-go's consumer, up to the partitions' high watermarks.
func fakeRecords(t *testing.T, c *kfake.Cluster) []*kgo.Record {
	t.Helper()
	var want int64
	for _, p := range c.PartitionInfos(fakeTopic) {
		want += p.HighWatermark - p.LogStartOffset
	}
	if want == 0 {
		return nil
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumeTopics(fakeTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for int64(len(recs)) < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of the %d records of %s: %v", len(recs), want, fakeTopic, err)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch %s/%d: %v", topic, p, err)
		})
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// recordHeader returns the value of r's header key and how many it has.
func recordHeader(r *kgo.Record, key string) (string, int) {
	var v string
	n := 0
	for _, h := range r.Headers {
		if h.Key == key {
			v, n = string(h.Value), n+1
		}
	}
	return v, n
}

// copiesByID checks that every record of recs is one of events, byte for
// byte (key, msgpack value, headers), and that every event is there at
// least once; it returns how many copies of each event id the topic holds.
func copiesByID(t *testing.T, events []schema.Event, recs []*kgo.Record) map[string]int {
	t.Helper()
	byID := make(map[string]*schema.Event, len(events))
	for i := range events {
		byID[events[i].ID] = &events[i]
	}
	copies := make(map[string]int)
	for _, r := range recs {
		id, n := recordHeader(r, kafka.HeaderEventID)
		if n != 1 {
			t.Errorf("record %d/%d: %d %s headers, want 1", r.Partition, r.Offset, n, kafka.HeaderEventID)
			continue
		}
		e := byID[id]
		if e == nil {
			t.Errorf("record %d/%d: %s %q is no event of the batch", r.Partition, r.Offset, kafka.HeaderEventID, id)
			continue
		}
		copies[id]++
		if string(r.Key) != e.Host.Hostname {
			t.Errorf("record %d/%d (event %s): key %q, want %q", r.Partition, r.Offset, id, r.Key, e.Host.Hostname)
		}
		if want := schema.AppendMsgpack(nil, e); !bytes.Equal(r.Value, want) {
			t.Errorf("record %d/%d (event %s): value is not the event's msgpack encoding", r.Partition, r.Offset, id)
		}
		if ct, _ := recordHeader(r, kafka.HeaderContentType); ct != kafka.ContentTypeMsgpack {
			t.Errorf("record %d/%d (event %s): %s %q, want %q", r.Partition, r.Offset, id, kafka.HeaderContentType, ct, kafka.ContentTypeMsgpack)
		}
	}
	for _, e := range events {
		if copies[e.ID] == 0 {
			t.Errorf("event %s is not in the topic", e.ID)
		}
	}
	return copies
}

// TestFakeBrokerRetriableErrors: a produce request refused with a retriable
// error (the fake broker rejects it before storing anything) makes
// WriteBatch either succeed after the sink sent the request again within it,
// or fail with a retriable error that keeps the Kafka error reachable; the
// pipeline's retry then succeeds, and every event is in the topic, as it was
// faultThenWrite makes the fake broker answer count produce requests with
// e (every one until the first WriteBatch returns, which must then fail
// with a retriable error, when untilFirstReturn), writes events as the
// pipeline does, and checks that every error on the way keeps want
// reachable (or is ErrWriteTimeout). It returns the fault, and the errors
// of the failed WriteBatch calls.
func faultThenWrite(t *testing.T, c *kfake.Cluster, s *kafka.Sink, events []schema.Event, e *kerr.Error, want kafkago.Error, count int, untilFirstReturn bool) (*kfake.FaultHandle, []error) {
	t.Helper()
	f := produceFault(c, e, count)
	var errs []error
	if untilFirstReturn {
		err := s.WriteBatch(context.Background(), events)
		f.Remove()
		if err == nil {
			t.Fatalf("WriteBatch succeeded while the fake broker answered every produce request with %v", e)
		}
		if sink.IsPermanent(err) {
			t.Fatalf("WriteBatch: %v: permanent, want retriable", err)
		}
		errs = append(errs, err)
	}
	errs = append(errs, writeLikePipeline(t, s, events, 5)...)
	for _, err := range errs {
		if !errors.Is(err, want) && !errors.Is(err, kafka.ErrWriteTimeout) {
			t.Errorf("WriteBatch: %v: want errors.Is(err, kafkago.%s) (or ErrWriteTimeout)", err, want.Title())
		}
	}
	return f, errs
}

// written.
func TestFakeBrokerRetriableErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  *kerr.Error
		want kafkago.Error
		// untilFirstReturn keeps the fault on every produce request until
		// the first WriteBatch returns, which therefore must fail; else the
		// fault answers the first two requests only.
		untilFirstReturn bool
	}{
		{"NotLeaderForPartition/twice", kerr.NotLeaderForPartition, kafkago.NotLeaderForPartition, false},
		{"NotEnoughReplicas/twice", kerr.NotEnoughReplicas, kafkago.NotEnoughReplicas, false},
		{"LeaderNotAvailable/twice", kerr.LeaderNotAvailable, kafkago.LeaderNotAvailable, false},
		{"BrokerNotAvailable/twice", kerr.BrokerNotAvailable, kafkago.BrokerNotAvailable, false},
		{"ReplicaNotAvailable/twice", kerr.ReplicaNotAvailable, kafkago.ReplicaNotAvailable, false},
		{"NotLeaderForPartition/untilFirstReturn", kerr.NotLeaderForPartition, kafkago.NotLeaderForPartition, true},
		{"NotEnoughReplicas/untilFirstReturn", kerr.NotEnoughReplicas, kafkago.NotEnoughReplicas, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forClients(t, func(t *testing.T, client string) {
				c := newFakeBroker(t, 4)
				s := newFakeSinkClient(t, c, client)
				events := sinktest.NewGenerator(1).Batch(200)

				count := 2
				if tc.untilFirstReturn {
					count = -1
				}
				f, errs := faultThenWrite(t, c, s, events, tc.err, tc.want, count, tc.untilFirstReturn)
				if hits := f.Hits(); hits == 0 || !tc.untilFirstReturn && hits != count {
					t.Errorf("the fault answered %d produce requests, want %d", hits, count)
				}

				copies := copiesByID(t, events, fakeRecords(t, c))
				if len(errs) == 0 {
					// The refused requests stored nothing and no WriteBatch
					// was repeated: each event is there once.
					for id, n := range copies {
						if n != 1 {
							t.Errorf("event %s: %d copies, want 1 (no WriteBatch failed)", id, n)
						}
					}
				}
			})
		})
	}
}

// TestFakeBrokerPermanentErrors: a produce request refused for good makes
// WriteBatch fail with a permanent error (the pipeline counts the batch as
// lost rather than retrying it) from which the Kafka error is reachable with
// errors.Is; the sink does not send the request again, and nothing is
// written.
func TestFakeBrokerPermanentErrors(t *testing.T) {
	for _, tc := range []struct {
		err  *kerr.Error
		want kafkago.Error
	}{
		{kerr.MessageTooLarge, kafkago.MessageSizeTooLarge},
		{kerr.TopicAuthorizationFailed, kafkago.TopicAuthorizationFailed},
		{kerr.InvalidTopicException, kafkago.InvalidTopic},
		{kerr.RecordListTooLarge, kafkago.RecordListTooLarge},
		{kerr.InvalidRecord, kafkago.InvalidRecord},
	} {
		t.Run(tc.err.Message, func(t *testing.T) {
			forClients(t, func(t *testing.T, client string) {
				c := newFakeBroker(t, 1) // one partition: one request per WriteBatch
				s := newFakeSinkClient(t, c, client)
				events := sinktest.NewGenerator(2).Batch(20)

				requests := observeProduce(c)
				f := produceFault(c, tc.err, -1)
				err := s.WriteBatch(context.Background(), events)
				if err == nil {
					t.Fatalf("WriteBatch succeeded while the fake broker answered %v", tc.err)
				}
				if !sink.IsPermanent(err) {
					t.Errorf("WriteBatch: %v: retriable, want permanent", err)
				}
				if !errors.Is(err, tc.want) {
					t.Errorf("WriteBatch: %v: want errors.Is(err, kafkago.%s)", err, tc.want.Title())
				}
				if n := requests.Hits(); n != 1 {
					t.Errorf("the fake broker received %d produce requests, want 1 (a permanent error is not retried)", n)
				}
				if n := f.Hits(); n != 1 {
					t.Errorf("the fault answered %d produce requests, want 1", n)
				}
				if recs := fakeRecords(t, c); len(recs) != 0 {
					t.Errorf("the topic holds %d records, want none", len(recs))
				}
				st := s.Stats()
				if st.Errors != 1 || st.Messages != 0 || st.Batches != 0 {
					t.Errorf("Stats: Errors %d, Messages %d, Batches %d; want 1, 0, 0", st.Errors, st.Messages, st.Batches)
				}
			})
		})
	}
}

// TestFakeBrokerMixedErrors: when the messages of a batch fail with
// different errors, the batch is permanent only if every failure is. The
// fake broker refuses one partition's request with MESSAGE_TOO_LARGE and,
// in the first case, another's with NOT_ENOUGH_REPLICAS.
func TestFakeBrokerMixedErrors(t *testing.T) {
	const partitions = 4
	events := sinktest.NewGenerator(3).Batch(100)
	// The partition of each host, as the sink picks it: kafka-go's Hash
	// balancer over the key, the host name.
	ids := []int{0, 1, 2, 3}
	var bal kafkago.Hash
	byPart := make(map[int]string)
	for _, e := range events {
		byPart[bal.Balance(kafkago.Message{Key: []byte(e.Host.Hostname)}, ids...)] = e.Host.Hostname
	}
	if len(byPart) < 2 {
		t.Fatalf("the events' hosts %v all hash to one partition: pick another seed", byPart)
	}
	var used []int32
	for p := range byPart {
		used = append(used, int32(p))
	}
	slices.Sort(used)
	tooLarge, notEnough := used[0], used[1]

	t.Run("permanent+retriable", func(t *testing.T) {
		c := newFakeBroker(t, partitions)
		s := newFakeSink(t, c)
		f1 := produceFault(c, kerr.MessageTooLarge, -1, tooLarge)
		f2 := produceFault(c, kerr.NotEnoughReplicas, -1, notEnough)
		err := s.WriteBatch(context.Background(), events)
		if err == nil {
			t.Fatal("WriteBatch succeeded while the fake broker refused two partitions")
		}
		if sink.IsPermanent(err) {
			t.Errorf("WriteBatch: %v: permanent, want retriable (one partition failed with a retriable error)", err)
		}
		if f1.Hits() == 0 || f2.Hits() == 0 {
			t.Fatalf("the faults answered %d and %d requests, want both > 0", f1.Hits(), f2.Hits())
		}
		for _, want := range []kafkago.Error{kafkago.MessageSizeTooLarge, kafkago.NotEnoughReplicas} {
			if !errors.Is(err, want) {
				t.Errorf("WriteBatch: %v: want errors.Is(err, kafkago.%s)", err, want.Title())
			}
		}
	})
	t.Run("permanent", func(t *testing.T) {
		c := newFakeBroker(t, partitions)
		s := newFakeSink(t, c)
		produceFault(c, kerr.MessageTooLarge, -1, tooLarge)
		err := s.WriteBatch(context.Background(), events)
		if err == nil {
			t.Fatal("WriteBatch succeeded while the fake broker refused a partition")
		}
		if !sink.IsPermanent(err) {
			t.Errorf("WriteBatch: %v: retriable, want permanent (every failure is)", err)
		}
		if !errors.Is(err, kafkago.MessageSizeTooLarge) {
			t.Errorf("WriteBatch: %v: want errors.Is(err, kafkago.MessageSizeTooLarge)", err)
		}
	})
}

// TestFakeBrokerMetadataErrors: the fake broker answers the metadata of the
// topic, which the sink asks for before it produces, with a topic error
// until the first WriteBatch returns. WriteBatch fails with the Kafka error
// reachable, permanent only when retrying cannot help, and writes nothing;
// once the broker answers again, the pipeline's retry (or, after a permanent
// error, the next batch) is written.
func TestFakeBrokerMetadataErrors(t *testing.T) {
	for _, tc := range []struct {
		err       *kerr.Error
		want      kafkago.Error
		permanent bool
	}{
		// What a broker answers while it creates the topic.
		{kerr.UnknownTopicOrPartition, kafkago.UnknownTopicOrPartition, false},
		{kerr.LeaderNotAvailable, kafkago.LeaderNotAvailable, false},
		{kerr.TopicAuthorizationFailed, kafkago.TopicAuthorizationFailed, true},
		{kerr.InvalidTopicException, kafkago.InvalidTopic, true},
	} {
		t.Run(tc.err.Message, func(t *testing.T) {
			c := newFakeBroker(t, 4)
			s := newFakeSink(t, c)
			events := sinktest.NewGenerator(6).Batch(100)

			f := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Metadata}, Topic: fakeTopic, Err: tc.err, Count: -1})
			err := s.WriteBatch(context.Background(), events)
			f.Remove()
			if err == nil {
				t.Fatalf("WriteBatch succeeded while the fake broker answered the topic's metadata with %v", tc.err)
			}
			if f.Hits() == 0 {
				t.Fatal("the fault answered no metadata request")
			}
			if got := sink.IsPermanent(err); got != tc.permanent {
				t.Errorf("WriteBatch: %v: permanent %v, want %v", err, got, tc.permanent)
			}
			if !errors.Is(err, tc.want) && (tc.permanent || !errors.Is(err, kafka.ErrWriteTimeout)) {
				t.Errorf("WriteBatch: %v: want errors.Is(err, kafkago.%s)", err, tc.want.Title())
			}
			if recs := fakeRecords(t, c); len(recs) != 0 {
				t.Errorf("the topic holds %d records after the failed WriteBatch, want none", len(recs))
			}

			writeLikePipeline(t, s, events, 5)
			for id, n := range copiesByID(t, events, fakeRecords(t, c)) {
				if n != 1 {
					t.Errorf("event %s: %d copies, want 1 (the failed WriteBatch produced nothing)", id, n)
				}
			}
		})
	}
}

// TestFakeBrokerAppliedThenFailed: the fake broker stores a produce request
// and then answers it with an error, as a real broker does when the request
// timed out or the in-sync replicas shrank after the append. kafka-go has no
// idempotent producer, so the sink's retries (of a request within WriteBatch,
// then the pipeline's of the whole batch) write the messages again: the
// topic holds duplicates. Each copy is the same message, with the same
// cnstream-event-id header: consumers dedupe on it, as the package
// documentation says.
func TestFakeBrokerAppliedThenFailed(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  *kerr.Error
		want kafkago.Error
		// untilFirstReturn keeps the fault on every produce request until
		// the first WriteBatch returns, which therefore must fail and be
		// retried whole; else the fault answers one request only.
		untilFirstReturn bool
	}{
		{"NotEnoughReplicasAfterAppend/once", kerr.NotEnoughReplicasAfterAppend, kafkago.NotEnoughReplicasAfterAppend, false},
		{"RequestTimedOut/once", kerr.RequestTimedOut, kafkago.RequestTimedOut, false},
		{"NotEnoughReplicasAfterAppend/untilFirstReturn", kerr.NotEnoughReplicasAfterAppend, kafkago.NotEnoughReplicasAfterAppend, true},
		{"RequestTimedOut/untilFirstReturn", kerr.RequestTimedOut, kafkago.RequestTimedOut, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeBroker(t, 4)
			s := newFakeSink(t, c)
			events := sinktest.NewGenerator(4).Batch(200)

			count := 1
			if tc.untilFirstReturn {
				count = -1
			}
			f, _ := faultThenWrite(t, c, s, events, tc.err, tc.want, count, tc.untilFirstReturn)
			if f.Hits() == 0 {
				t.Fatal("the fault answered no produce request")
			}

			recs := fakeRecords(t, c)
			copies := copiesByID(t, events, recs)
			if len(recs) <= len(events) {
				t.Errorf("the topic holds %d records for %d events, want duplicates: the fake broker stored the requests it failed", len(recs), len(events))
			}
			dups := 0
			for _, n := range copies {
				if n > 1 {
					dups++
				}
			}
			if dups == 0 {
				t.Error("no event id has several copies")
			}
			if tc.untilFirstReturn && dups != len(events) {
				// Every partition's first request was stored and failed,
				// and the whole batch was written again.
				t.Errorf("%d of %d events have several copies, want all", dups, len(events))
			}
		})
	}
}

// TestFakeBrokerStats: the fake broker refuses produce requests, and the
// sink's counters say so: every request the broker received is counted,
// every refused one as a request error, and the retries within a WriteBatch
// (or the failed WriteBatch calls) as what made up for them.
func TestFakeBrokerStats(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   *kerr.Error
		want  kafkago.Error
		count int
	}{
		// A temporary error: the sink may send the request again within
		// WriteBatch.
		{"NotEnoughReplicas", kerr.NotEnoughReplicas, kafkago.NotEnoughReplicas, 2},
		// UNKNOWN_SERVER_ERROR: not temporary for kafka-go, yet retriable
		// for the sink (the broker may recover).
		{"UnknownServerError", kerr.UnknownServerError, kafkago.Unknown, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeBroker(t, 1) // one partition: the requests are counted one by one
			s := newFakeSink(t, c)
			events := sinktest.NewGenerator(5).Batch(50)

			requests := observeProduce(c)
			f := produceFault(c, tc.err, tc.count)
			errs := writeLikePipeline(t, s, events, 5)
			for _, err := range errs {
				if !errors.Is(err, tc.want) {
					t.Errorf("WriteBatch: %v: want errors.Is(err, kafkago.%s)", err, tc.want.Title())
				}
			}
			if f.Hits() != tc.count {
				t.Fatalf("the fault answered %d produce requests, want %d", f.Hits(), tc.count)
			}
			copiesByID(t, events, fakeRecords(t, c))

			st := s.Stats()
			t.Logf("%d failed WriteBatch calls; Stats %+v", len(errs), st)
			if got, want := st.Requests, uint64(requests.Hits()); got != want {
				t.Errorf("Stats.Requests = %d, want %d (the produce requests the fake broker received)", got, want)
			}
			if got, want := st.RequestErrors, uint64(tc.count); got != want {
				t.Errorf("Stats.RequestErrors = %d, want %d (the requests the fake broker refused)", got, want)
			}
			if got, want := st.Errors, uint64(len(errs)); got != want {
				t.Errorf("Stats.Errors = %d, want %d (the failed WriteBatch calls)", got, want)
			}
			// Each refused request was sent again: within its WriteBatch
			// (a retry), or by the next WriteBatch.
			if got, want := st.Retries+st.Errors, uint64(tc.count); got != want {
				t.Errorf("Stats.Retries %d + Stats.Errors %d = %d, want %d (one per refused request)", st.Retries, st.Errors, got, want)
			}
			if st.Messages != uint64(len(events)) || st.Batches != 1 {
				t.Errorf("Stats: Messages %d, Batches %d; want %d, 1", st.Messages, st.Batches, len(events))
			}
		})
	}
}

// TestFakeBrokerAppliedThenFailedFranz: as TestFakeBrokerAppliedThenFailed,
// with franz-go. Its idempotent producer sends a failed request again with
// the same producer id and sequence numbers, and the broker (here the fake
// one) drops what it already stored: within a WriteBatch that succeeds,
// each event is there once.
func TestFakeBrokerAppliedThenFailedFranz(t *testing.T) {
	for _, tc := range []struct {
		err  *kerr.Error
		want kafkago.Error
	}{
		{kerr.NotEnoughReplicasAfterAppend, kafkago.NotEnoughReplicasAfterAppend},
		{kerr.RequestTimedOut, kafkago.RequestTimedOut},
	} {
		t.Run(tc.err.Message, func(t *testing.T) {
			c := newFakeBroker(t, 4)
			s := newFakeSinkClient(t, c, kafka.ClientFranzGo)
			events := sinktest.NewGenerator(4).Batch(200)
			f, errs := faultThenWrite(t, c, s, events, tc.err, tc.want, 1, false)
			if f.Hits() != 1 {
				t.Fatalf("the fault answered %d produce requests, want 1", f.Hits())
			}
			copies := copiesByID(t, events, fakeRecords(t, c))
			if len(errs) == 0 {
				for id, n := range copies {
					if n != 1 {
						t.Errorf("event %s: %d copies, want 1 (idempotent producer, no WriteBatch failed)", id, n)
					}
				}
			}
			t.Logf("%d failed WriteBatch calls; Stats %+v", len(errs), s.Stats())
		})
	}
}
