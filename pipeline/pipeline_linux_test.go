//go:build linux

package pipeline

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/testenv/need"
	"github.com/cnstream/cnstream/transform"
	"github.com/cnstream/cnstream/transform/enrich"
)

// Connector groups of this package's tests (source uses 20..23, cmd 24..25).
const (
	groupOrder  = 13
	groupPolicy = 14
	groupBlock  = 15
	groupRetry  = 16
	groupStop   = 17
	groupMetric = 11
)

// memSink is a test sink (not a backend): it keeps what it is given, and
// can be told to wait or to fail, to exercise the pipeline's policies.
type memSink struct {
	mu     sync.Mutex
	events []schema.Event
	cond   *sync.Cond
	gate   chan struct{} // WriteBatch waits for it to close, if set
	fail   func(n int) error
	writes int
	closed bool
}

func newMemSink() *memSink {
	s := &memSink{}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *memSink) WriteBatch(ctx context.Context, events []schema.Event) error {
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
	s.cond.Broadcast()
	return nil
}

func (s *memSink) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

// waitFor blocks until cond holds on the sink's events, or fails the test.
func (s *memSink) waitFor(t *testing.T, d time.Duration, cond func([]schema.Event) bool) {
	t.Helper()
	if !s.waitUntil(d, cond) {
		t.Fatalf("condition not met within %v (%d events in the sink)", d, len(s.snapshot()))
	}
}

// waitUntil blocks until cond holds on the sink's events or d passes.
func (s *memSink) waitUntil(d time.Duration, cond func([]schema.Event) bool) bool {
	expired := false // under s.mu: set by the timer, so no wakeup is missed
	timer := time.AfterFunc(d, func() { s.mu.Lock(); expired = true; s.cond.Broadcast(); s.mu.Unlock() })
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !cond(s.events) {
		if expired {
			return false
		}
		s.cond.Wait()
	}
	return true
}

func (s *memSink) snapshot() []schema.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]schema.Event(nil), s.events...)
}

type setup struct {
	id   schema.CbID
	tx   *source.Conn
	rx   *source.Conn
	tr   *transform.Transformer
	done chan error
	stop context.CancelFunc
	p    *Pipeline
}

// start runs a pipeline reading group g into sinks; the test sends with tx.
func start(t *testing.T, g uint32, rcvbuf int, sinks ...SinkConfig) *setup {
	t.Helper()
	return startWith(t, g, rcvbuf, nil, sinks...)
}

// startWith is start with a change to the pipeline's Config.
func startWith(t *testing.T, g uint32, rcvbuf int, edit func(*Config), sinks ...SinkConfig) *setup {
	t.Helper()
	need.Root(t, "the pipeline reads the kernel connector and the test multicasts on connector groups (CAP_NET_ADMIN)")
	rx, err := source.Dial(source.Config{Groups: []uint32{g}, ReadBuffer: rcvbuf})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := source.Dial(source.Config{ReadBuffer: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	host, err := enrich.ReadHost("/proc")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := transform.New(transform.Config{Host: host})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Source: rx, Transform: tr, Sinks: sinks, DrainTimeout: 5 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &setup{id: schema.CbID{Idx: 0x434e0000 | rand.Uint32N(0xffff), Val: rand.Uint32()}, tx: tx, rx: rx, tr: tr,
		done: make(chan error, 1), stop: cancel, p: p}
	go func() { s.done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

func (s *setup) send(t *testing.T, g uint32, n int) {
	t.Helper()
	for i := range n {
		if err := s.tx.Send(schema.CnMsg{ID: s.id, Seq: uint32(i), Data: []byte("x")}, g); err != nil {
			t.Fatal(err)
		}
	}
}

// ours returns the sink's raw events of this test's id, and the sum of its
// dropped records.
func (s *setup) ours(events []schema.Event) (raw []schema.Event, dropped uint64) {
	for _, e := range events {
		switch {
		case e.Kind == schema.KindRaw && e.Stream.Idx == s.id.Idx && e.Stream.Val == s.id.Val:
			raw = append(raw, e)
		case e.Kind == schema.KindDropped:
			dropped += e.Dropped.Count
		}
	}
	return raw, dropped
}

func (s *setup) shutdown(t *testing.T) error {
	t.Helper()
	s.stop()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20 s after cancel")
		return nil
	}
}

func TestDeliversInOrderToEverySink(t *testing.T) {
	a, b := newMemSink(), newMemSink()
	s := start(t, groupOrder, 0, SinkConfig{Name: "a", Sink: a}, SinkConfig{Name: "b", Sink: b, BatchEvents: 7})
	const n = 5000
	s.send(t, groupOrder, n)
	for _, m := range []*memSink{a, b} {
		m.waitFor(t, 20*time.Second, func(ev []schema.Event) bool { raw, _ := s.ours(ev); return len(raw) == n })
	}
	if err := s.shutdown(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for name, m := range map[string]*memSink{"a": a, "b": b} {
		raw, _ := s.ours(m.snapshot())
		for i, e := range raw {
			if e.Stream.Seq != uint32(i) {
				t.Fatalf("sink %s: event %d has seq %d: order lost", name, i, e.Stream.Seq)
			}
		}
	}
	st := s.p.Stats()
	for _, ss := range st.Sinks {
		if ss.Delivered < n || ss.Failed != 0 || ss.PolicyDropped != 0 || ss.Undelivered != 0 {
			t.Errorf("sink stats %+v", ss)
		}
	}
}

// TestDropPolicies: a stalled sink behind a small queue; every event sent is
// either delivered or stated in a dropped record, and the counts agree.
func TestDropPolicies(t *testing.T) {
	for _, pol := range []Policy{DropNewest, DropOldest} {
		t.Run(pol.String(), func(t *testing.T) {
			m := newMemSink()
			m.gate = make(chan struct{})
			const n, qlen = 2000, 100
			s := start(t, groupPolicy, 0, SinkConfig{Name: "slow", Sink: m, Policy: pol, QueueEvents: qlen, BatchEvents: 10, Linger: -1})
			s.send(t, groupPolicy, n)
			// Wait until the transform has queued or dropped every message.
			deadline := time.Now().Add(20 * time.Second)
			for {
				st := s.p.Stats()
				if st.Sinks[0].PolicyDropped > 0 && uint64(st.Sinks[0].Queued)+st.Sinks[0].PolicyDropped+10 >= uint64(n) && st.Transform.Messages >= n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("transform did not take all %d messages: %+v", n, st)
				}
				time.Sleep(10 * time.Millisecond) // polling a counter with a deadline
			}
			close(m.gate)
			m.waitFor(t, 20*time.Second, func(ev []schema.Event) bool {
				raw, dropped := s.ours(ev)
				return uint64(len(raw))+dropped >= n
			})
			if err := s.shutdown(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			raw, dropped := s.ours(m.snapshot())
			st := s.p.Stats().Sinks[0]
			if uint64(len(raw))+dropped != n || dropped != st.PolicyDropped {
				t.Errorf("delivered %d + stated dropped %d != sent %d (stats dropped %d)", len(raw), dropped, n, st.PolicyDropped)
			}
			if pol == DropOldest && (len(raw) == 0 || raw[len(raw)-1].Stream.Seq != n-1) {
				t.Errorf("drop_oldest: the newest event (seq %d) must be delivered", n-1)
			}
			if pol == DropNewest && (len(raw) == 0 || raw[0].Stream.Seq != 0) {
				t.Errorf("drop_newest: the first event (seq 0) must be delivered")
			}
		})
	}
}

// TestBlockMovesLossToKernel: under Block a stalled sink stops the reader;
// the kernel's drops then show as gap records, and delivered + missing
// equals what was sent.
func TestBlockMovesLossToKernel(t *testing.T) {
	m := newMemSink()
	m.gate = make(chan struct{})
	const n = 3000
	// Two read batches between the reader and the transform: the reader
	// stalls soon after the queue is full, and the socket overflows.
	s := startWith(t, groupBlock, 64<<10, func(c *Config) { c.ReadQueue = 2 },
		SinkConfig{Name: "slow", Sink: m, QueueEvents: 50, BatchEvents: 10, Linger: -1})
	s.send(t, groupBlock, n)
	close(m.gate)
	// A marker after the burst reveals every drop before it as a gap; the
	// marker itself may be dropped, so send markers until one arrives.
	gotMarker := func() bool {
		raw, _ := s.ours(m.snapshot())
		return len(raw) > 0 && raw[len(raw)-1].Stream.Seq >= n
	}
	for seq := uint32(n); !gotMarker(); seq++ {
		if seq > n+100 {
			t.Fatal("no marker arrived after 100 attempts")
		}
		if err := s.tx.Send(schema.CnMsg{ID: s.id, Seq: seq}, groupBlock); err != nil {
			t.Fatal(err)
		}
		m.waitUntil(200*time.Millisecond, func(ev []schema.Event) bool {
			raw, _ := s.ours(ev)
			return len(raw) > 0 && raw[len(raw)-1].Stream.Seq >= n
		})
	}
	if err := s.shutdown(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	raw, _ := s.ours(m.snapshot())
	var missing uint64 // numbers below n that gap records state missing
	for _, e := range m.snapshot() {
		if e.Kind == schema.KindGap && e.Stream.Idx == s.id.Idx && e.Stream.Val == s.id.Val && e.Gap.Expected < n {
			missing += uint64(min(e.Gap.Got, n) - e.Gap.Expected)
		}
	}
	seen := uint64(0)
	for _, e := range raw {
		if e.Stream.Seq < n {
			seen++
		}
	}
	if missing == 0 {
		t.Fatalf("no kernel loss under block with a stalled sink: the test did not stall")
	}
	if seen+missing != n {
		t.Errorf("delivered %d + missing %d != sent %d", seen, missing, n)
	}
}

func TestRetriesThenPermanentFailure(t *testing.T) {
	m := newMemSink()
	m.fail = func(write int) error {
		switch {
		case write <= 2:
			return errors.New("transient")
		case write == 3:
			return sink.Permanent(errors.New("refused for good"))
		}
		return nil
	}
	s := start(t, groupRetry, 0, SinkConfig{Name: "flaky", Sink: m, BatchEvents: 1000, Linger: 100 * time.Millisecond,
		Retry: RetryConfig{Initial: time.Millisecond, Max: 5 * time.Millisecond}})
	const n = 50
	s.send(t, groupRetry, n)
	// The first batch fails twice, then permanently: its events become a
	// dropped record (sink_failed) at the head of the next batch.
	if err := s.tx.Send(schema.CnMsg{ID: s.id, Seq: n}, groupRetry); err != nil {
		t.Fatal(err)
	}
	m.waitFor(t, 20*time.Second, func(ev []schema.Event) bool {
		_, dropped := s.ours(ev)
		return dropped > 0
	})
	for i := n + 1; ; i++ { // keep the records flowing until every message is accounted for
		raw, dropped := s.ours(m.snapshot())
		if uint64(len(raw))+dropped >= n+1 {
			break
		}
		if err := s.tx.Send(schema.CnMsg{ID: s.id, Seq: uint32(i)}, groupRetry); err != nil {
			t.Fatal(err)
		}
		m.waitFor(t, 5*time.Second, func(ev []schema.Event) bool { r, _ := s.ours(ev); return len(r) > len(raw) })
	}
	if err := s.shutdown(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := s.p.Stats().Sinks[0]
	if st.Retries != 2 || st.Failed == 0 || st.LastError == "" {
		t.Errorf("stats %+v: want 2 retries, a failed batch and its error", st)
	}
	var reasons []string
	for _, e := range m.snapshot() {
		if e.Kind == schema.KindDropped {
			reasons = append(reasons, e.Dropped.Reason)
		}
	}
	if len(reasons) != 1 || reasons[0] != "sink_failed" {
		t.Errorf("dropped records %v: want one sink_failed", reasons)
	}
}

// TestShutdownDeadline: a sink that never answers; Run returns within the
// drain deadline, counting what it could not deliver, and leaks nothing.
func TestShutdownDeadline(t *testing.T) {
	m := newMemSink()
	m.gate = make(chan struct{}) // never opened
	s := start(t, groupStop, 0, SinkConfig{Name: "stuck", Sink: m, QueueEvents: 100, BatchEvents: 10, Linger: -1})
	s.send(t, groupStop, 50)
	deadline := time.Now().Add(10 * time.Second)
	for s.p.Stats().Transform.Messages < 50 {
		if time.Now().After(deadline) {
			t.Fatal("messages not transformed")
		}
		time.Sleep(10 * time.Millisecond) // polling a counter with a deadline
	}
	start := time.Now()
	err := s.shutdown(t)
	if err == nil {
		t.Fatal("Run returned nil with events undelivered")
	}
	st := s.p.Stats().Sinks[0]
	if st.Undelivered < 50 || time.Since(start) > 15*time.Second {
		t.Errorf("undelivered %d after %v (err %v): want >= 50 within the 5 s deadline", st.Undelivered, time.Since(start), err)
	}
}

// backlog sends n datagrams to a pipeline whose only sink is stalled
// behind a small blocking queue, and waits until the transform is stuck
// and the rest waits in the socket's receive queue.
func backlog(t *testing.T, n int, drain time.Duration) (*setup, *memSink) {
	t.Helper()
	m := newMemSink()
	m.gate = make(chan struct{})
	s := startWith(t, groupStop, 0, func(c *Config) { c.DrainTimeout, c.ReadQueue = drain, 2 },
		SinkConfig{Name: "stalled", Sink: m, QueueEvents: 100, BatchEvents: 10, Linger: -1})
	s.send(t, groupStop, n)
	deadline := time.Now().Add(10 * time.Second)
	for s.rx.Stats().QueuedBytes == 0 || s.p.Stats().Sinks[0].Queued < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("no backlog in the socket: %+v", s.rx.Stats())
		}
		time.Sleep(10 * time.Millisecond) // polling counters with a deadline
	}
	return s, m
}

// TestShutdownDrainsSocket: at shutdown the source stops taking datagrams
// (IGNORE, groups left) and what its receive queue holds is still read,
// transformed and delivered: nothing the kernel queued is left behind.
func TestShutdownDrainsSocket(t *testing.T) {
	const n = 3000
	s, m := backlog(t, n, 20*time.Second)
	queued := s.rx.Stats().QueuedBytes
	s.stop()
	close(m.gate) // the sink answers again while Run drains
	if err := s.shutdown(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	raw, _ := s.ours(m.snapshot())
	st := s.p.Stats()
	if len(raw) != n || st.Unread != 0 || st.Sinks[0].Undelivered != 0 {
		t.Errorf("%d of %d delivered (%d bytes were queued in the socket at shutdown), unread %d, undelivered %d", len(raw), n, queued, st.Unread, st.Sinks[0].Undelivered)
	}
	for i, e := range raw {
		if e.Stream.Seq != uint32(i) {
			t.Fatalf("event %d has seq %d: order lost", i, e.Stream.Seq)
		}
	}
}

// TestShutdownDeadlineCountsUnread: when the drain deadline passes with
// datagrams still in the receive queue, they are read and counted
// (Stats.Unread, and Run's error), so that every datagram sent is either
// undelivered-counted or unread-counted: none is left out.
func TestShutdownDeadlineCountsUnread(t *testing.T) {
	const n = 3000
	s, _ := backlog(t, n, 500*time.Millisecond)
	err := s.shutdown(t)
	st := s.p.Stats()
	if err == nil || !strings.Contains(err.Error(), "datagrams still in the socket's receive queue") {
		t.Errorf("Run = %v, want an error counting the unread datagrams", err)
	}
	if got := st.Sinks[0].Undelivered + st.Unread; st.Unread == 0 || got != n {
		t.Errorf("undelivered %d + unread %d = %d, want all %d sent (transform: %+v; source: %+v)", st.Sinks[0].Undelivered, st.Unread, got, n, st.Transform, s.rx.Stats())
	}
}

// syncSink is a memSink that counts Sync calls (a test sink).
type syncSink struct {
	*memSink
	syncs chan struct{}
}

func (s *syncSink) Sync(ctx context.Context) error {
	select {
	case s.syncs <- struct{}{}:
	default:
	}
	return nil
}

func TestSyncerSyncedWhileIdle(t *testing.T) {
	ss := &syncSink{memSink: newMemSink(), syncs: make(chan struct{}, 1)}
	s := start(t, groupOrder, 0, SinkConfig{Name: "syncer", Sink: ss})
	select {
	case <-ss.syncs:
	case <-time.After(10 * SyncEvery):
		t.Fatalf("Sync not called within %v of an idle pipeline", 10*SyncEvery)
	}
	if err := s.shutdown(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
