package transform

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTrackerObserve(t *testing.T) {
	cpu0 := StreamKey{Idx: 1, Val: 1, CPU: 0}
	cpu1 := StreamKey{Idx: 1, Val: 1, CPU: 1}
	sender := StreamKey{Idx: 11, Val: 77, Sender: 4242}
	kernelID := StreamKey{Idx: 11, Val: 77} // another kernel connector: sender 0
	type step struct {
		k    StreamKey
		seq  uint32
		want Observation
	}
	cases := []struct {
		name  string
		steps []step
		// per-stream totals at the end
		missing, gaps, dups, restarts uint64
	}{
		{"in order", []step{
			{cpu0, 10, Observation{Verdict: First}},
			{cpu0, 11, Observation{Verdict: InOrder}},
			{cpu0, 12, Observation{Verdict: InOrder}},
		}, 0, 0, 0, 0},
		{"gap", []step{
			{cpu0, 10, Observation{Verdict: First}},
			{cpu0, 15, Observation{Verdict: Gap, Expected: 11, Missing: 4}},
			{cpu0, 16, Observation{Verdict: InOrder}},
		}, 4, 1, 0, 0},
		{"wrap at 2^32 is not a gap, and starts a new epoch", []step{
			{cpu0, 0xfffffffe, Observation{Verdict: First}},
			{cpu0, 0xffffffff, Observation{Verdict: InOrder}},
			{cpu0, 0, Observation{Verdict: InOrder, Epoch: 1}},
			{cpu0, 1, Observation{Verdict: InOrder, Epoch: 1}},
			{cpu0, 0xffffffff, Observation{Verdict: Duplicate, Expected: 2, Epoch: 0}},
		}, 0, 0, 1, 0},
		{"gap across the wrap", []step{
			{cpu0, 0xfffffffd, Observation{Verdict: First}},
			{cpu0, 2, Observation{Verdict: Gap, Expected: 0xfffffffe, Missing: 4, Epoch: 1}},
		}, 4, 1, 0, 0},
		{"interleaved cpus are separate streams", []step{
			{cpu0, 100, Observation{Verdict: First}},
			{cpu1, 7, Observation{Verdict: First}},
			{cpu0, 101, Observation{Verdict: InOrder}},
			{cpu1, 8, Observation{Verdict: InOrder}},
			{cpu1, 10, Observation{Verdict: Gap, Expected: 9, Missing: 1}},
			{cpu0, 102, Observation{Verdict: InOrder}},
		}, 1, 1, 0, 0},
		{"duplicate and late arrival on a kernel stream", []step{
			{kernelID, 5, Observation{Verdict: First}},
			{kernelID, 6, Observation{Verdict: InOrder}},
			{kernelID, 6, Observation{Verdict: Duplicate, Expected: 7}},
			{kernelID, 3, Observation{Verdict: Duplicate, Expected: 7}},
			{kernelID, 7, Observation{Verdict: InOrder}},
		}, 0, 0, 2, 0},
		{"a userspace sender going back restarted its numbering: a new epoch", []step{
			{sender, 5, Observation{Verdict: First}},
			{sender, 6, Observation{Verdict: InOrder}},
			{sender, 6, Observation{Verdict: Restart, Expected: 7, Epoch: 1}},
			{sender, 0, Observation{Verdict: Restart, Expected: 7, Epoch: 2}},
			{sender, 1, Observation{Verdict: InOrder, Epoch: 2}},
		}, 0, 0, 0, 2},
		{"large backward jump restarts, never a 4-billion gap", []step{
			{sender, 3_000_000_000, Observation{Verdict: First}},
			{sender, 0, Observation{Verdict: Restart, Expected: 3_000_000_001, Epoch: 1}},
			{sender, 1, Observation{Verdict: InOrder, Epoch: 1}},
		}, 0, 0, 0, 1},
		{"the ACK consumes a number on its cpu", []step{
			{cpu1, 500, Observation{Verdict: First}},   // fork
			{cpu1, 501, Observation{Verdict: InOrder}}, // ACK to someone's LISTEN
			{cpu1, 502, Observation{Verdict: InOrder}}, // exit
		}, 0, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A clock standing at 0: userspace epochs count from 0.
			tr := NewTrackerConfig(TrackerConfig{Now: func() uint64 { return 0 }})
			for i, s := range tc.steps {
				if diff := cmp.Diff(s.want, tr.Observe(s.k, s.seq)); diff != "" {
					t.Errorf("step %d (%+v seq %d) (-want +got):\n%s", i, s.k, s.seq, diff)
				}
			}
			gaps, missing, dups, restarts := tr.Totals()
			if gaps != tc.gaps || missing != tc.missing || dups != tc.dups || restarts != tc.restarts {
				t.Errorf("totals gaps %d missing %d dups %d restarts %d; want %d %d %d %d",
					gaps, missing, dups, restarts, tc.gaps, tc.missing, tc.dups, tc.restarts)
			}
		})
	}
}

func TestTrackerReset(t *testing.T) {
	tr := NewTracker()
	k := StreamKey{Idx: 1, Val: 1}
	tr.Observe(k, 100)
	tr.Reset() // a new boot: numbering starts over without a gap or restart
	if got := tr.Observe(k, 0); got.Verdict != First {
		t.Errorf("after Reset: %+v, want First", got)
	}
	if n := len(tr.Streams()); n != 1 {
		t.Errorf("%d streams after Reset and one message, want 1", n)
	}
}

func TestStreamSpan(t *testing.T) {
	tr := NewTracker()
	k := StreamKey{Idx: 1, Val: 1}
	for _, s := range []uint32{0xfffffff0, 0xfffffff1, 5} {
		tr.Observe(k, s)
	}
	st := tr.Streams()[0]
	// 0xfffffff0 .. 5 across the wrap: 16 + 6 numbers.
	if st.Span() != 22 || st.Seen != 3 || st.Missing != 19 {
		t.Errorf("stream %+v span %d: want span 22, seen 3, missing 19", st, st.Span())
	}
	if st.Span() != st.Seen+st.Missing {
		t.Errorf("span %d != seen %d + missing %d", st.Span(), st.Seen, st.Missing)
	}
}
