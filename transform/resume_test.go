package transform

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
)

// TestTrackerResume: streams taken over from a previous run continue its
// numbering and epochs; the numbers that passed in between are a gap
// marked Resumed, and First is never returned.
func TestTrackerResume(t *testing.T) {
	cpu2 := StreamKey{Idx: 1, Val: 1, CPU: 2}
	sender := StreamKey{Idx: 11, Val: 77, Sender: 4242}
	type resume struct {
		k           StreamKey
		epoch, last uint32
	}
	type step struct {
		k    StreamKey
		seq  uint32
		want Observation
	}
	cases := []struct {
		name    string
		resume  []resume
		steps   []step
		streams []StreamStats // Tracker.Streams at the end
		// Tracker totals at the end
		gaps, missing, dups, restarts uint64
	}{
		{
			name:   "kernel stream continuing in order",
			resume: []resume{{cpu2, 3, 100}},
			steps: []step{
				{cpu2, 101, Observation{Verdict: InOrder, Epoch: 3, Resumed: true}},
				{cpu2, 102, Observation{Verdict: InOrder, Epoch: 3}},
			},
			streams: []StreamStats{{Key: cpu2, First: 100, Last: 102, Seen: 2, Epoch: 3}},
		},
		{
			name:   "kernel stream ahead by 5: a gap of the resumed epoch",
			resume: []resume{{cpu2, 3, 100}},
			steps: []step{
				{cpu2, 106, Observation{Verdict: Gap, Expected: 101, Missing: 5, Epoch: 3, Resumed: true}},
				{cpu2, 107, Observation{Verdict: InOrder, Epoch: 3}},
				{cpu2, 110, Observation{Verdict: Gap, Expected: 108, Missing: 2, Epoch: 3}}, // a gap of this run
			},
			streams: []StreamStats{{Key: cpu2, First: 100, Last: 110, Seen: 3, Missing: 7, Gaps: 2, Epoch: 3}},
			gaps:    2, missing: 7,
		},
		{
			name:   "kernel stream across the u32 wrap",
			resume: []resume{{cpu2, 7, 0xffffffff}},
			steps: []step{
				{cpu2, 0, Observation{Verdict: InOrder, Epoch: 8, Resumed: true}},
				{cpu2, 1, Observation{Verdict: InOrder, Epoch: 8}},
			},
			streams: []StreamStats{{Key: cpu2, First: 0xffffffff, Last: 1, Seen: 2, Epoch: 8}},
		},
		{
			name:   "kernel stream ahead across the wrap",
			resume: []resume{{cpu2, 7, 0xfffffffe}},
			steps: []step{
				{cpu2, 3, Observation{Verdict: Gap, Expected: 0xffffffff, Missing: 4, Epoch: 8, Resumed: true}},
			},
			streams: []StreamStats{{Key: cpu2, First: 0xfffffffe, Last: 3, Seen: 1, Missing: 4, Gaps: 1, Epoch: 8}},
			gaps:    1, missing: 4,
		},
		{
			name:   "kernel stream going back a little: a duplicate",
			resume: []resume{{cpu2, 3, 100}},
			steps: []step{
				{cpu2, 100, Observation{Verdict: Duplicate, Expected: 101, Epoch: 3, Resumed: true}},
				{cpu2, 101, Observation{Verdict: InOrder, Epoch: 3}},
			},
			streams: []StreamStats{{Key: cpu2, First: 100, Last: 101, Seen: 2, Duplicates: 1, Epoch: 3}},
			dups:    1,
		},
		{
			name:   "kernel stream going far back: a restart",
			resume: []resume{{cpu2, 3, 5_000_000}},
			steps: []step{
				{cpu2, 10, Observation{Verdict: Restart, Expected: 5_000_001, Epoch: 4, Resumed: true}},
			},
			streams:  []StreamStats{{Key: cpu2, First: 10, Last: 10, Seen: 1, Restarts: 1, Epoch: 4}},
			restarts: 1,
		},
		{
			name:   "userspace sender that restarted its numbering: a new, later epoch",
			resume: []resume{{sender, 5000, 311}},
			steps: []step{
				{sender, 0, Observation{Verdict: Restart, Expected: 312, Epoch: 5001, Resumed: true}},
				{sender, 1, Observation{Verdict: InOrder, Epoch: 5001}},
			},
			streams:  []StreamStats{{Key: sender, First: 0, Last: 1, Seen: 2, Restarts: 1, Epoch: 5001}},
			restarts: 1,
		},
		{
			name:   "userspace sender ahead",
			resume: []resume{{sender, 5000, 311}},
			steps: []step{
				{sender, 320, Observation{Verdict: Gap, Expected: 312, Missing: 8, Epoch: 5000, Resumed: true}},
			},
			streams: []StreamStats{{Key: sender, First: 311, Last: 320, Seen: 1, Missing: 8, Gaps: 1, Epoch: 5000}},
			gaps:    1, missing: 8,
		},
		{
			name:   "resuming a stream already followed is ignored",
			resume: []resume{{cpu2, 3, 100}, {cpu2, 9, 500}},
			steps: []step{
				{cpu2, 101, Observation{Verdict: InOrder, Epoch: 3, Resumed: true}},
			},
			streams: []StreamStats{{Key: cpu2, First: 100, Last: 101, Seen: 1, Epoch: 3}},
		},
		{
			name:   "streams not resumed start as before",
			resume: []resume{{cpu2, 3, 100}},
			steps: []step{
				{StreamKey{Idx: 1, Val: 1, CPU: 0}, 50, Observation{Verdict: First}},
				{cpu2, 101, Observation{Verdict: InOrder, Epoch: 3, Resumed: true}},
			},
			streams: []StreamStats{
				{Key: cpu2, First: 100, Last: 101, Seen: 1, Epoch: 3},
				{Key: StreamKey{Idx: 1, Val: 1, CPU: 0}, First: 50, Last: 50, Seen: 1},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A clock standing at 1 ms: a userspace epoch drawn from it is 1.
			tr := NewTrackerConfig(TrackerConfig{Now: func() uint64 { return 1e6 }})
			for _, r := range tc.resume {
				tr.Resume(r.k, r.epoch, r.last)
			}
			for i, s := range tc.steps {
				if diff := cmp.Diff(s.want, tr.Observe(s.k, s.seq)); diff != "" {
					t.Errorf("step %d (%+v seq %d) (-want +got):\n%s", i, s.k, s.seq, diff)
				}
			}
			if diff := cmp.Diff(tc.streams, tr.Streams()); diff != "" {
				t.Errorf("streams (-want +got):\n%s", diff)
			}
			gaps, missing, dups, restarts := tr.Totals()
			if diff := cmp.Diff([4]uint64{tc.gaps, tc.missing, tc.dups, tc.restarts}, [4]uint64{gaps, missing, dups, restarts}); diff != "" {
				t.Errorf("totals gaps, missing, duplicates, restarts (-want +got):\n%s", diff)
			}
		})
	}
}

// TestTrackerResumeUserspaceBounds: a resumed userspace stream is one of
// the streams the cap and the idle timeout bound, and once closed its key
// comes back in an epoch above the resumed one.
func TestTrackerResumeUserspaceBounds(t *testing.T) {
	clk := &fakeClock{ns: 1e6} // 1 ms: epochs drawn from the clock are far below the resumed one
	tr := NewTrackerConfig(TrackerConfig{Now: clk.now, MaxStreams: 2, IdleTimeout: time.Minute})
	a := StreamKey{Idx: 11, Val: 77, Sender: 1}
	b := StreamKey{Idx: 11, Val: 77, Sender: 2}
	c := StreamKey{Idx: 11, Val: 77, Sender: 3}
	tr.Resume(a, 90000, 10)
	tr.Resume(b, 90000, 20)
	tr.Resume(c, 90000, 30) // at the cap: a, the least recently used, is evicted
	if n := tr.Len(); n != 2 {
		t.Fatalf("%d streams followed, want 2", n)
	}
	closed := tr.Closed(nil)
	want := []Closed{{StreamStats: StreamStats{Key: a, First: 10, Last: 10, Epoch: 90000}, Reason: ClosedEvicted}}
	if diff := cmp.Diff(want, closed); diff != "" {
		t.Errorf("closed (-want +got):\n%s", diff)
	}
	if _, evicted := tr.Closes(); evicted != 1 {
		t.Errorf("%d evicted, want 1", evicted)
	}
	// a comes back (evicting b): a new stream, in an epoch above the one it
	// was resumed in, though the clock says 1 ms.
	if diff := cmp.Diff(Observation{Verdict: First, Epoch: 90001}, tr.Observe(a, 11)); diff != "" {
		t.Errorf("a after eviction (-want +got):\n%s", diff)
	}
	// c (resumed, never seen) and a, idle for the timeout, are closed.
	clk.advance(2 * time.Minute)
	tr.Advance()
	var got []string
	for _, c := range tr.Closed(closed[:0]) {
		got = append(got, fmt.Sprintf("%d %s", c.Key.Sender, c.Reason))
	}
	if diff := cmp.Diff([]string{"2 evicted", "3 idle", "1 idle"}, got); diff != "" {
		t.Errorf("closed (-want +got):\n%s", diff)
	}
}

// TestTransformerResume: a Transformer given the streams of a previous run
// states the numbers that passed while it was not running as a gap record
// of reason restart, in the resumed epoch, and counts it.
func TestTransformerResume(t *testing.T) {
	tr := newTestTransformer(t, Config{Run: "r2", Resume: []schema.Stream{
		{Idx: 1, Val: 1, CPU: 1, Epoch: 2, Seq: 100, Ack: 9}, // ahead by 5
		{Idx: 1, Val: 1, CPU: 3, Epoch: 1, Seq: 40},          // in order
		{Idx: 11, Val: 77, Sender: 4242, Epoch: 7000, Seq: 8},
	}})
	exec := schema.ProcEvent{What: schema.ProcEventExec, TimestampNS: 5e9, Exec: schema.ExecEvent{PID: 7, TGID: 7}}
	b := batchOf(procDatagram(1, 106, exec), procDatagram(3, 41, exec), procDatagram(1, 107, exec))
	b.Datagrams = append(b.Datagrams, userDatagram(4242, 12))
	evs := tr.Batch(b, len(b.Datagrams), nil)

	type ev struct {
		ID     string
		Kind   string
		Stream schema.Stream
		Gap    *schema.GapInfo
	}
	var got []ev
	for _, e := range evs {
		got = append(got, ev{ID: e.EventID(), Kind: e.Kind.String(), Stream: *e.Stream, Gap: e.Gap})
	}
	want := []ev{
		{ID: "b1/r/r2/1", Kind: "gap", Stream: schema.Stream{Idx: 1, Val: 1, CPU: 1, Epoch: 2, Seq: 106},
			Gap: &schema.GapInfo{Expected: 101, Got: 106, Missing: 5, Reason: schema.GapRestart}},
		{ID: "b1/1.1/c1/2/106", Kind: "exec", Stream: schema.Stream{Idx: 1, Val: 1, CPU: 1, Epoch: 2, Seq: 106}},
		{ID: "b1/1.1/c3/1/41", Kind: "exec", Stream: schema.Stream{Idx: 1, Val: 1, CPU: 3, Epoch: 1, Seq: 41}},
		{ID: "b1/1.1/c1/2/107", Kind: "exec", Stream: schema.Stream{Idx: 1, Val: 1, CPU: 1, Epoch: 2, Seq: 107}},
		{ID: "b1/r/r2/2", Kind: "gap", Stream: schema.Stream{Idx: 11, Val: 77, Sender: 4242, Epoch: 7000, Seq: 12},
			Gap: &schema.GapInfo{Expected: 9, Got: 12, Missing: 3, Reason: schema.GapRestart}},
		{ID: "b1/11.77/s4242/7000/12", Kind: "raw", Stream: schema.Stream{Idx: 11, Val: 77, Sender: 4242, Epoch: 7000, Seq: 12}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// A later gap on a resumed stream is one of this run: no reason.
	evs = tr.Batch(batchOf(procDatagram(1, 110, exec)), 1, nil)
	if len(evs) != 2 || evs[0].Gap == nil || evs[0].Gap.Reason != "" || evs[0].Gap.Missing != 2 {
		t.Errorf("second batch %+v: want a gap of 2 without a reason, then the exec", evs)
	}

	gaps, missing, _, _ := tr.Tracker().Totals()
	st := tr.Stats()
	if gaps != 3 || missing != 10 || st.Gaps != 3 || st.Missing != 10 {
		t.Errorf("tracker totals gaps %d missing %d, stats %+v: want 3 gaps, 10 missing", gaps, missing, st)
	}
}
