package transform

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
)

// fakeClock is an injected CLOCK_MONOTONIC (a fake: the idle timeout cannot
// be waited for in a test).
type fakeClock struct{ ns uint64 }

func (c *fakeClock) now() uint64             { return c.ns }
func (c *fakeClock) advance(d time.Duration) { c.ns += uint64(d) }

// userDatagram is a message of connector id 11.77 from userspace port.
func userDatagram(port, seq uint32) source.Datagram {
	return source.Datagram{Data: schema.AppendDatagram(nil, port, schema.CnMsg{ID: schema.CbID{Idx: 11, Val: 77}, Seq: seq, Data: []byte("x")}),
		Addr: source.Addr{PortID: port, Groups: 1 << 13}}
}

func userBatch(port uint32, seqs ...uint32) *source.Batch {
	b := &source.Batch{}
	for _, s := range seqs {
		b.Datagrams = append(b.Datagrams, userDatagram(port, s))
	}
	return b
}

func newTestTransformer(t *testing.T, cfg Config) *Transformer {
	t.Helper()
	cfg.Host, cfg.Clock = testHost, clock0{}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestSenderRestartDistinctIDs: a sender that restarts its numbering at 0
// on the same port, twice, gets distinct ids each time, and so does the
// same numbering seen by a later run (a new Transformer).
func TestSenderRestartDistinctIDs(t *testing.T) {
	clk := &fakeClock{ns: 5e9}
	ids := map[string]int{}
	check := func(evs []schema.Event) {
		t.Helper()
		for _, e := range evs {
			if e.Kind != schema.KindRaw {
				continue
			}
			id := e.EventID()
			if ids[id]++; ids[id] > 1 {
				t.Errorf("id %s repeats", id)
			}
		}
	}
	run1 := newTestTransformer(t, Config{Run: "r1", Streams: TrackerConfig{Now: clk.now}})
	for range 3 { // the numbering and two restarts, a millisecond apart
		check(run1.Batch(userBatch(4242, 0, 1, 2), 3, nil))
		clk.advance(time.Millisecond)
	}
	// Within one millisecond the epochs still differ (they run ahead of the
	// clock, see the package's Epochs section).
	check(run1.Batch(userBatch(4242, 0, 1, 0, 1), 4, nil))
	if st := run1.Stats(); st.Restarts != 4 || st.Duplicates != 0 {
		t.Errorf("stats %+v: want 4 restarts, no duplicates", st)
	}
	clk.advance(2 * time.Millisecond) // a later run, past the lead
	run2 := newTestTransformer(t, Config{Run: "r2", Streams: TrackerConfig{Now: clk.now}})
	check(run2.Batch(userBatch(4242, 0, 1, 2), 3, nil))
	if len(ids) != 16 {
		t.Errorf("%d distinct ids, want 16", len(ids))
	}
}

// TestIdleClose: a userspace stream silent for the idle timeout is closed
// with a record naming its last number; kernel streams are never closed;
// the stream's next message starts a later epoch.
func TestIdleClose(t *testing.T) {
	clk := &fakeClock{ns: 1e12}
	tr := newTestTransformer(t, Config{Streams: TrackerConfig{Now: clk.now, IdleTimeout: time.Minute}})
	exec := schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: 7, TGID: 7}}
	b := userBatch(4242, 0, 1, 2)
	b.Datagrams = append(b.Datagrams, userDatagram(4343, 9), source.Datagram{Data: procDatagram(1, 10, exec)})
	first := tr.Batch(b, len(b.Datagrams), nil)
	epoch := first[0].Stream.Epoch

	clk.advance(30 * time.Second)
	tr.Batch(userBatch(4343, 10), 1, nil) // keeps 4343 alive
	clk.advance(30 * time.Second)
	evs := tr.Batch(userBatch(4242, 3), 1, nil)
	var got []string
	for _, e := range evs {
		s := e.Stream
		got = append(got, fmt.Sprintf("%s s%d/%d", e.Kind, s.Sender, s.Seq))
		if e.Kind == schema.KindClosed {
			if c := e.Closed; c.Reason != "idle" || c.First != 0 || c.Last != 2 || s.Epoch != epoch || e.Record == nil {
				t.Errorf("closed record %+v stream %+v: want idle, 0..2, epoch %d", c, s, epoch)
			}
		} else if s.Epoch <= epoch {
			t.Errorf("reopened stream epoch %d, want after %d", s.Epoch, epoch)
		}
	}
	if diff := cmp.Diff([]string{"stream_closed s4242/2", "raw s4242/3"}, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	st := tr.Stats()
	if st.Closed != 1 || st.Evicted != 0 || st.Streams != 3 { // 4242 again, 4343, cpu 1
		t.Errorf("stats %+v: want 1 closed, 3 streams", st)
	}
	clk.advance(time.Hour)
	tr.Batch(&source.Batch{}, 0, nil)
	if st := tr.Stats(); st.Closed != 3 || st.Streams != 1 {
		t.Errorf("after an hour: stats %+v: want 3 closed, the cpu stream left", st)
	}
}

// TestStreamCap: a flood of short-lived senders stays within the cap, every
// eviction is counted and stated, and ports coming back restarting their
// numbering still get ids never given before.
func TestStreamCap(t *testing.T) {
	const cap, senders = 100, 5000
	clk := &fakeClock{ns: 1e12}
	tr := newTestTransformer(t, Config{Streams: TrackerConfig{Now: clk.now, MaxStreams: cap}})
	ids := map[string]bool{}
	var closed uint64
	for round := range 2 {
		for p := uint32(1); p <= senders; p++ {
			for _, e := range tr.Batch(userBatch(p, 0, 1), 2, nil) {
				switch e.Kind {
				case schema.KindClosed:
					closed++
					if e.Closed.Reason != "evicted" || e.Closed.Last != 1 {
						t.Fatalf("closed %+v: want evicted at 1", e.Closed)
					}
				case schema.KindRaw:
					if ids[e.EventID()] {
						t.Fatalf("round %d: id %s repeats", round, e.EventID())
					}
					ids[e.EventID()] = true
				}
			}
			if n := tr.Tracker().Len(); n > cap {
				t.Fatalf("%d streams followed, cap %d", n, cap)
			}
		}
	}
	st := tr.Stats()
	if want := uint64(2*senders - cap); st.Evicted != want || closed != want || st.Streams != cap {
		t.Errorf("stats %+v, %d closed records: want %d evicted, %d streams", st, closed, want, cap)
	}
}

// TestFilteredRecords: what a filter removes is stated per stream and
// epoch with count, range and kinds, so that per stream delivered +
// missing + filtered == span.
func TestFilteredRecords(t *testing.T) {
	tr := newTestTransformer(t, Config{Run: "r1", Filter: Filter{Kinds: []schema.Kind{schema.KindExit}}})
	exec := schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: 7, TGID: 7}}
	fork := schema.ProcEvent{What: schema.ProcEventFork, Fork: schema.ForkEvent{ChildPID: 8, ChildTGID: 8}}
	exit := schema.ProcEvent{What: schema.ProcEventExit, Exit: schema.ExitEvent{PID: 7, TGID: 7}}
	b := batchOf(procDatagram(0, 10, exec), procDatagram(0, 11, exit), procDatagram(1, 5, fork), procDatagram(0, 12, fork),
		procDatagram(0, 15, exec), procDatagram(0, 16, exit))
	var got []string
	for _, e := range tr.Batch(b, len(b.Datagrams), nil) {
		s := e.Stream
		line := fmt.Sprintf("%s c%d/%d", e.Kind, s.CPU, s.Seq)
		if f := e.Filtered; f != nil {
			line += fmt.Sprintf(" count=%d %d..%d %v", f.Count, f.First, f.Last, f.Kinds)
		}
		got = append(got, line)
	}
	want := []string{
		"exit c0/11", "gap c0/15", "exit c0/16",
		"filtered c0/15 count=3 10..15 map[exec:2 fork:1]",
		"filtered c1/5 count=1 5..5 map[fork:1]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// cpu 0: 2 delivered + 2 missing + 3 filtered == 10..16.
	for _, s := range tr.Tracker().Streams() {
		if s.Key.CPU == 0 && (s.Filtered != 3 || s.Seen-s.Filtered+s.Missing+s.Filtered != s.Span()) {
			t.Errorf("stream %+v: want 3 filtered, seen + missing == span", s)
		}
	}
	if st := tr.Stats(); st.Filtered != 4 || st.Events != 5 {
		t.Errorf("stats %+v: want 4 filtered, 5 events", st)
	}
}
