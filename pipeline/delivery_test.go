package pipeline

import (
	"context"
	"errors"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
)

// recordingSink is a test double of a sink (not a backend): it keeps what
// it is given, and can be told to wait (gate) or to fail.
type recordingSink struct {
	mu     sync.Mutex
	events []schema.Event
	gate   chan struct{} // WriteBatch waits for it to close, if set
	fail   func(write int) error
	writes int
	closed bool
}

func (s *recordingSink) WriteBatch(ctx context.Context, events []schema.Event) error {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return sink.ErrClosed
	}
	s.writes++
	if s.fail != nil {
		if err := s.fail(s.writes); err != nil {
			return err
		}
	}
	s.events = append(s.events, events...)
	return nil
}

func (s *recordingSink) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func (s *recordingSink) snapshot() []schema.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]schema.Event(nil), s.events...)
}

// split returns the sink's raw events' seqs and its dropped records.
func split(events []schema.Event) (raw []uint32, dropped []schema.Event) {
	raw = []uint32{}
	for _, e := range events {
		if e.Kind == schema.KindDropped {
			dropped = append(dropped, e)
		} else {
			raw = append(raw, e.Stream.Seq)
		}
	}
	return raw, dropped
}

var testHost = schema.Host{Hostname: "test", BootID: "00000000-0000-4000-8000-000000000000"}

func newTestDelivery(t *testing.T, sinks ...SinkConfig) (*Delivery, *schema.Records) {
	t.Helper()
	recs := schema.NewRecords("test-run", testHost)
	d, err := NewDelivery(DeliveryConfig{Sinks: sinks, Records: recs, DrainTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return d, recs
}

// TestDeliveryFromAnyProducer: events made here, not read from a socket,
// reach every sink in order; Push copies them, so the producer reuses its
// slice at once.
func TestDeliveryFromAnyProducer(t *testing.T) {
	a, b := &recordingSink{}, &recordingSink{}
	d, _ := newTestDelivery(t, SinkConfig{Name: "a", Sink: a}, SinkConfig{Name: "b", Sink: b, BatchEvents: 7, Linger: -1})
	d.Start()
	const n, per = 1000, 10
	batch := make([]schema.Event, per)
	want := []uint32{}
	for i := 0; i < n; i += per {
		for k := range batch {
			batch[k] = ev(uint32(i+k), 8)
			want = append(want, uint32(i+k))
		}
		d.Push(batch)
		for k := range batch { // the producer reuses its slice
			batch[k] = schema.Event{}
		}
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, s := range map[string]*recordingSink{"a": a, "b": b} {
		raw, dropped := split(s.snapshot())
		if diff := cmp.Diff(want, raw); diff != "" || dropped != nil {
			t.Errorf("sink %s: dropped records %v; events (-want +got):\n%s", name, dropped, diff)
		}
	}
	for _, ss := range d.Stats() {
		if ss.Delivered != n || ss.Failed+ss.PolicyDropped+ss.Undelivered != 0 || ss.Queued != 0 {
			t.Errorf("stats %+v", ss)
		}
		if ss.Name == "b" && ss.Batches < n/7 {
			t.Errorf("sink b: %d batches, want at least %d (7 events a batch)", ss.Batches, n/7)
		}
	}
}

// TestDeliveryDroppedRecords: a stalled sink behind a small drop_newest
// queue; what the policy drops is stated in one dropped record, numbered
// in the run's record sequence shared with the producer.
func TestDeliveryDroppedRecords(t *testing.T) {
	s := &recordingSink{gate: make(chan struct{})}
	d, recs := newTestDelivery(t, SinkConfig{Name: "slow", Sink: s, Policy: DropNewest, QueueEvents: 10, BatchEvents: 5, Linger: -1})
	d.Start()
	producerRecord := recs.New(schema.KindGap) // the producer's own record: seq 1
	events := make([]schema.Event, 100)
	for i := range events {
		events[i] = ev(uint32(i), 1)
	}
	d.Push(events)
	close(s.gate)
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	raw, dropped := split(s.snapshot())
	st := d.Stats()[0]
	var stated uint64
	for _, r := range dropped {
		stated += r.Dropped.Count
		if r.Dropped.Sink != "slow" || r.Dropped.Reason != "queue_full_drop_newest" || r.Record.Run != "test-run" ||
			r.Record.Seq <= producerRecord.Record.Seq || r.Host.BootID != testHost.BootID {
			t.Errorf("dropped record %+v %+v", *r.Dropped, *r.Record)
		}
	}
	if uint64(len(raw))+stated != 100 || stated != st.PolicyDropped || st.PolicyDropped == 0 {
		t.Errorf("delivered %d + stated dropped %d != 100 pushed (stats %+v)", len(raw), stated, st)
	}
	if recs.Made() != uint64(1+len(dropped)) {
		t.Errorf("records made %d, want the producer's 1 + %d dropped", recs.Made(), len(dropped))
	}
}

// TestDeliverySinkFailed: retries, then a permanent failure: the batch
// becomes a sink_failed record at the head of the next write.
func TestDeliverySinkFailed(t *testing.T) {
	s := &recordingSink{fail: func(write int) error {
		switch {
		case write <= 2:
			return errors.New("transient")
		case write == 3:
			return sink.Permanent(errors.New("refused for good"))
		}
		return nil
	}}
	d, _ := newTestDelivery(t, SinkConfig{Name: "flaky", Sink: s, BatchEvents: 10, Linger: -1,
		Retry: RetryConfig{Initial: time.Millisecond, Max: 2 * time.Millisecond}})
	first := make([]schema.Event, 10)
	for i := range first {
		first[i] = ev(uint32(i), 1)
	}
	d.Push(first) // before Start: the worker's first batch is all ten
	d.Start()
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	raw, dropped := split(s.snapshot())
	if len(raw) != 0 || len(dropped) != 1 || dropped[0].Dropped.Reason != "sink_failed" || dropped[0].Dropped.Count != 10 {
		t.Fatalf("got raw %v, dropped %v: want one sink_failed record of 10", raw, dropped)
	}
	st := d.Stats()[0]
	if st.Retries != 2 || st.Failed != 10 || !strings.Contains(st.LastError, "refused") {
		t.Errorf("stats %+v: want 2 retries, 10 failed and the error", st)
	}
}

// TestDeliveryCloseDeadline: a sink that never answers behind a full Block
// queue: Abort releases the producer, Close returns within its deadline
// counting every event it did not deliver.
func TestDeliveryCloseDeadline(t *testing.T) {
	s := &recordingSink{gate: make(chan struct{})} // never opened
	d, _ := newTestDelivery(t, SinkConfig{Name: "stuck", Sink: s, QueueEvents: 10, BatchEvents: 5, Linger: -1})
	d.Start()
	events := make([]schema.Event, 50)
	for i := range events {
		events[i] = ev(uint32(i), 1)
	}
	pushed := make(chan struct{})
	go func() {
		d.Push(events) // blocks: 5 in the sink, 10 queued
		close(pushed)
	}()
	time.Sleep(50 * time.Millisecond) // let the producer block (Abort releases it either way)
	d.Abort()
	<-pushed
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := d.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "undelivered") {
		t.Errorf("Close = %v, want an error counting undelivered events", err)
	}
	if st := d.Stats()[0]; st.Undelivered != 50 || st.Delivered != 0 || time.Since(start) > 5*time.Second {
		t.Errorf("stats %+v after %v: want all 50 undelivered, at once", st, time.Since(start))
	}
}

// ackQueue is a memory queue that counts acks (a test double of a durable
// queue's cursor).
type ackQueue struct {
	Queue
	acked atomic.Int64
}

func (q *ackQueue) Ack(n int) { q.acked.Add(int64(n)) }

// TestDeliveryAcks: a queue is acked for every event delivered or given up
// (stated by a record), never for loss records or what the deadline cut.
func TestDeliveryAcks(t *testing.T) {
	q := &ackQueue{Queue: NewMemoryQueue(100, 1<<20, Block)}
	s := &recordingSink{fail: func(write int) error {
		if write == 1 {
			return sink.Permanent(errors.New("no"))
		}
		return nil
	}}
	d, _ := newTestDelivery(t, SinkConfig{Name: "acked", Sink: s, Queue: q, BatchEvents: 4, Linger: -1})
	d.Start()
	events := make([]schema.Event, 20)
	for i := range events {
		events[i] = ev(uint32(i), 1)
	}
	d.Push(events)
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := d.Stats()[0]
	if q.acked.Load() != 20 || st.Failed+st.Delivered-1 != 20 { // Delivered counts the sink_failed record
		t.Errorf("acked %d, stats %+v: want 20 acked", q.acked.Load(), st)
	}
}

// TestDeliveryImports: the delivery half imports neither source nor
// transform: any producer can feed it, and nothing in it calls back up the
// data flow.
func TestDeliveryImports(t *testing.T) {
	for _, f := range []string{"delivery.go", "queue.go", "spoolqueue.go"} {
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range file.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/cnstream/cnstream/") &&
				p != "github.com/cnstream/cnstream/schema" && p != "github.com/cnstream/cnstream/sink" &&
				p != "github.com/cnstream/cnstream/pipeline/spool" {
				t.Errorf("%s imports %s: the delivery half may import schema, sink and pipeline/spool only", f, p)
			}
		}
	}
}

// nopSink acknowledges everything at once (a test double).
type nopSink struct{}

func (nopSink) WriteBatch(context.Context, []schema.Event) error { return nil }
func (nopSink) Close(context.Context) error                      { return nil }

// BenchmarkDelivery: events pushed in batches into one sink that
// acknowledges at once: the cost of fan-out, queue, batching and the
// write path, per event.
func BenchmarkDelivery(b *testing.B) {
	for _, size := range []int{1, 64, 512} {
		b.Run("push="+strconv.Itoa(size), func(b *testing.B) {
			d, err := NewDelivery(DeliveryConfig{Sinks: []SinkConfig{{Name: "nop", Sink: nopSink{}, Linger: -1}},
				Records: schema.NewRecords("bench", testHost)})
			if err != nil {
				b.Fatal(err)
			}
			events := make([]schema.Event, size)
			for i := range events {
				events[i] = ev(uint32(i), 40)
			}
			d.Start()
			b.ReportAllocs()
			for b.Loop() {
				d.Push(events)
			}
			if err := d.Close(context.Background()); err != nil {
				b.Fatal(err)
			}
			el := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N*size)/el, "events/s")
			b.ReportMetric(el*1e9/float64(b.N*size), "ns/event")
		})
	}
}
