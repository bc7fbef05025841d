//go:build linux

package transform_test

import (
	"context"
	"math/rand/v2"
	"os/exec"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/testenv/need"
	"github.com/cnstream/cnstream/transform"
)

// Multicast groups of this package's tests (other packages use other
// groups, so that tests running in parallel do not share traffic).
const (
	groupRestart = 14
	groupFlood   = 25
)

var host = schema.Host{Hostname: "h", MachineID: "m", BootID: "b"}

func dial(t *testing.T, cfg source.Config) *source.Conn {
	t.Helper()
	c, err := source.Dial(cfg)
	if err != nil {
		t.Fatalf("Dial(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readEvents reads and transforms from c until done(events so far) or the
// deadline.
func readEvents(t *testing.T, c *source.Conn, tr *transform.Transformer, done func([]schema.Event) bool) []schema.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b := source.NewBatch(64, 0)
	var out []schema.Event
	for !done(out) {
		n, err := c.ReadBatch(ctx, b)
		if err != nil {
			t.Fatalf("ReadBatch: %v (stats %v, %d events)", err, c.Stats(), len(out))
		}
		out = tr.Batch(b, n, out)
	}
	return out
}

func testID() schema.CbID {
	return schema.CbID{Idx: 0x434e0000 | rand.Uint32N(0xffff), Val: rand.Uint32()}
}

func countRaw(id schema.CbID, evs []schema.Event) int {
	n := 0
	for _, e := range evs {
		if e.Kind == schema.KindRaw && e.Stream.Idx == id.Idx && e.Stream.Val == id.Val {
			n++
		}
	}
	return n
}

// TestRealSenderRestartDistinctIDs: a userspace sender on one port numbers
// 0..4, restarts at 0 twice; a later run (a new Transformer and socket)
// hears it restart once more. Every message has its own id.
func TestRealSenderRestartDistinctIDs(t *testing.T) {
	need.Root(t, "multicast on NETLINK_CONNECTOR needs CAP_NET_ADMIN")
	tx := dial(t, source.Config{ReadBuffer: -1})
	id := testID()
	ids := map[string]bool{}
	run := func(name string, numberings int) {
		rx := dial(t, source.Config{Groups: []uint32{groupRestart}})
		tr, err := transform.New(transform.Config{Host: host, Run: name})
		if err != nil {
			t.Fatal(err)
		}
		for range numberings {
			for seq := range uint32(5) {
				if err := tx.Send(schema.CnMsg{ID: id, Seq: seq, Data: []byte("m")}, groupRestart); err != nil {
					t.Fatal(err)
				}
			}
		}
		evs := readEvents(t, rx, tr, func(evs []schema.Event) bool { return countRaw(id, evs) == 5*numberings })
		for _, e := range evs {
			if e.Kind != schema.KindRaw || e.Stream.Idx != id.Idx {
				continue
			}
			if e.Stream.Sender != tx.PortID() {
				t.Errorf("sender %d, want %d", e.Stream.Sender, tx.PortID())
			}
			if ids[e.EventID()] {
				t.Errorf("%s: id %s repeats", name, e.EventID())
			}
			ids[e.EventID()] = true
		}
		if st := tr.Stats(); st.Restarts != uint64(numberings-1) || st.Gaps != 0 {
			t.Errorf("%s: stats %+v: want %d restarts, no gap", name, st, numberings-1)
		}
	}
	run("run1", 3)
	time.Sleep(5 * time.Millisecond) // past the epochs run 1 gave ahead of the clock
	run("run2", 1)
	if len(ids) != 20 {
		t.Errorf("%d distinct ids, want 20", len(ids))
	}
}

// TestRealSenderFlood: more senders than the cap, each on its own socket:
// the tracker follows at most the cap, and every eviction is counted and
// stated by a stream_closed record.
func TestRealSenderFlood(t *testing.T) {
	need.Root(t, "multicast on NETLINK_CONNECTOR needs CAP_NET_ADMIN")
	const senders, cap = 120, 40
	rx := dial(t, source.Config{Groups: []uint32{groupFlood}})
	tr, err := transform.New(transform.Config{Host: host, Streams: transform.TrackerConfig{MaxStreams: cap}})
	if err != nil {
		t.Fatal(err)
	}
	id := testID()
	for range senders {
		tx, err := source.Dial(source.Config{ReadBuffer: -1})
		if err != nil {
			t.Fatal(err)
		}
		for seq := range uint32(3) {
			if err := tx.Send(schema.CnMsg{ID: id, Seq: seq}, groupFlood); err != nil {
				t.Fatal(err)
			}
		}
		_ = tx.Close()
	}
	var closed int
	readEvents(t, rx, tr, func(evs []schema.Event) bool {
		closed = 0
		for _, e := range evs {
			if e.Kind == schema.KindClosed && e.Stream.Idx == id.Idx {
				closed++
				if e.Closed.Reason != "evicted" || e.Closed.First != 0 || e.Closed.Last != 2 {
					t.Fatalf("closed %+v: want evicted, 0..2", e.Closed)
				}
			}
		}
		if n := tr.Tracker().Len(); n > cap {
			t.Fatalf("%d streams followed, cap %d", n, cap)
		}
		return countRaw(id, evs) == 3*senders
	})
	if st := tr.Stats(); closed != senders-cap || st.Evicted != uint64(senders-cap) {
		t.Errorf("%d stream_closed records, stats %+v: want %d evictions", closed, st, senders-cap)
	}
}

// TestRealFilterAccounts: process events of the real kernel with a kinds
// filter on: per CPU stream, delivered + filtered + missing == the span of
// sequence numbers, exactly, from the events and records alone.
func TestRealFilterAccounts(t *testing.T) {
	need.Root(t, "listening to process events needs CAP_NET_ADMIN")
	c := dial(t, source.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Subscribe(ctx, source.SubscribeConfig{}); err != nil {
		t.Fatal(err)
	}
	tr, err := transform.New(transform.Config{Host: host, Filter: transform.Filter{Kinds: []schema.Kind{schema.KindExec}}})
	if err != nil {
		t.Fatal(err)
	}
	const children = 20
	pids := map[uint32]bool{}
	for range children {
		cmd := exec.Command("/bin/true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pids[uint32(cmd.Process.Pid)] = true
	}
	evs := readEvents(t, c, tr, func(evs []schema.Event) bool {
		n := 0
		for _, e := range evs {
			if e.Exec != nil && pids[e.Exec.TGID] {
				n++
			}
		}
		return n == children
	})

	type acct struct {
		delivered      map[uint64]bool
		filtered, miss uint64
		lo, hi         uint64
		seen           bool
	}
	streams := map[uint32]*acct{} // by cpu
	var filteredTotal uint64
	at := func(s *schema.Stream) *acct {
		a := streams[s.CPU]
		if a == nil {
			a = &acct{delivered: map[uint64]bool{}}
			streams[s.CPU] = a
		}
		return a
	}
	widen := func(a *acct, v uint64) {
		if !a.seen || v < a.lo {
			a.lo = v
		}
		if !a.seen || v > a.hi {
			a.hi = v
		}
		a.seen = true
	}
	pos := func(epoch, seq uint32) uint64 { return uint64(epoch)<<32 | uint64(seq) }
	for _, e := range evs {
		s := e.Stream
		switch {
		case s == nil || s.Idx != schema.ProcID.Idx || s.Val != schema.ProcID.Val || s.Sender != 0:
			if e.Kind == schema.KindOverrun {
				t.Fatalf("the kernel dropped: %+v; the identity then holds with overrun counts only", e.Overrun)
			}
		case e.Kind == schema.KindExec || e.Kind == schema.KindFork || e.Kind == schema.KindExit ||
			e.Kind == schema.KindAck || e.Kind == schema.KindUID || e.Kind == schema.KindGID ||
			e.Kind == schema.KindSID || e.Kind == schema.KindComm || e.Kind == schema.KindPtrace || e.Kind == schema.KindCoredump:
			if e.Kind != schema.KindExec {
				t.Fatalf("a %s event passed a filter for exec", e.Kind)
			}
			a := at(s)
			a.delivered[pos(s.Epoch, s.Seq)] = true
			widen(a, pos(s.Epoch, s.Seq))
		case e.Kind == schema.KindFiltered:
			a := at(s)
			a.filtered += e.Filtered.Count
			filteredTotal += e.Filtered.Count
			widen(a, pos(s.Epoch, e.Filtered.First))
			widen(a, pos(s.Epoch, e.Filtered.Last))
			if e.Filtered.Kinds["exec"] != 0 {
				t.Errorf("filtered record counts exec events: %+v", e.Filtered)
			}
		case e.Kind == schema.KindGap:
			a := at(s)
			a.miss += e.Gap.Missing
			widen(a, pos(s.Epoch, s.Seq))
		}
	}
	if filteredTotal < 2*children { // at least each child's fork and exit
		t.Errorf("%d events filtered, want at least %d", filteredTotal, 2*children)
	}
	if st := tr.Stats(); st.Filtered != filteredTotal {
		t.Errorf("Stats().Filtered %d, records say %d", st.Filtered, filteredTotal)
	}
	for cpu, a := range streams {
		span := a.hi - a.lo + 1
		if got := uint64(len(a.delivered)) + a.filtered + a.miss; got != span {
			t.Errorf("cpu %d: delivered %d + filtered %d + missing %d = %d, span %d", cpu, len(a.delivered), a.filtered, a.miss, got, span)
		}
	}
	// The tracker agrees (tail --summary shows these).
	for _, s := range tr.Tracker().Streams() {
		if a := streams[s.Key.CPU]; a != nil && s.Key.Sender == 0 && s.Key.Idx == schema.ProcID.Idx && s.Filtered != a.filtered {
			t.Errorf("cpu %d: tracker counts %d filtered, records %d", s.Key.CPU, s.Filtered, a.filtered)
		}
	}
}
