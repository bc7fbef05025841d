package audit

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
)

var (
	hostA1 = &schema.Host{Hostname: "a", MachineID: "m-a", BootID: "boot-a1"}
	hostA2 = &schema.Host{Hostname: "a", MachineID: "m-a", BootID: "boot-a2"}
	hostB1 = &schema.Host{Hostname: "b", MachineID: "m-b", BootID: "boot-b1"}
)

// at returns t0 plus s seconds.
func at(s int) time.Time { return time.Date(2026, 12, 1, 0, 0, s, 0, time.UTC) }

func st(cpu, epoch, seq uint32) *schema.Stream {
	return &schema.Stream{Idx: schema.ProcID.Idx, Val: schema.ProcID.Val, CPU: cpu, Epoch: epoch, Seq: seq}
}

// ev is a process event of host h, cpu 0, epoch 0.
func ev(h *schema.Host, seq uint32) *schema.Event { return evc(h, 0, 0, seq) }

func evc(h *schema.Host, cpu, epoch, seq uint32) *schema.Event {
	return &schema.Event{Version: 1, Kind: schema.KindFork, Host: h, Stream: st(cpu, epoch, seq), Fork: &schema.ForkEvent{}}
}

func rec(h *schema.Host, kind schema.Kind, n uint64) *schema.Event {
	return &schema.Event{Version: 1, Kind: kind, Host: h, Record: &schema.Record{Run: "run1", Seq: n}}
}

func gap(h *schema.Host, n uint64, cpu, expected, got uint32, reason string) *schema.Event {
	e := rec(h, schema.KindGap, n)
	e.Stream = st(cpu, 0, got)
	e.Gap = &schema.GapInfo{Expected: expected, Got: got, Missing: uint64(got - expected), Reason: reason}
	return e
}

func filtered(h *schema.Host, n uint64, cpu uint32, count uint64, first, last uint32) *schema.Event {
	e := rec(h, schema.KindFiltered, n)
	e.Stream = st(cpu, 0, last)
	e.Filtered = &schema.FilteredInfo{Count: count, First: first, Last: last}
	return e
}

func dropped(h *schema.Host, n, count uint64, reason string) *schema.Event {
	e := rec(h, schema.KindDropped, n)
	e.Dropped = &schema.DroppedInfo{Count: count, Reason: reason, Sink: "file"}
	return e
}

func closed(h *schema.Host, n uint64, cpu, first, last uint32) *schema.Event {
	e := rec(h, schema.KindClosed, n)
	e.Stream = st(cpu, 0, last)
	e.Closed = &schema.ClosedInfo{Reason: "idle", First: first, Last: last}
	return e
}

func seqs(h *schema.Host, ss ...uint32) []*schema.Event {
	out := make([]*schema.Event, len(ss))
	for i, s := range ss {
		out[i] = ev(h, s)
	}
	return out
}

func cat(parts ...any) []*schema.Event {
	var out []*schema.Event
	for _, p := range parts {
		switch p := p.(type) {
		case *schema.Event:
			out = append(out, p)
		case []*schema.Event:
			out = append(out, p...)
		default:
			panic(fmt.Sprintf("cat: %T", p))
		}
	}
	return out
}

// hr is a HostReport of h with the given streams; the host sums are
// filled in from the streams (Events, Duplicates, GapMissing, Filtered,
// Holes, Excess), and Unaccounted, OverAccounted, ProvablyLost from them
// and Dropped, so a case states the streams and what is not in them.
func hr(h *schema.Host, mod func(*HostReport), streams ...StreamReport) HostReport {
	r := HostReport{Hostname: h.Hostname, MachineID: h.MachineID, BootID: h.BootID, Streams: streams}
	if r.Streams == nil {
		r.Streams = []StreamReport{}
	}
	for _, s := range streams {
		r.Events += s.Delivered
		r.Duplicates += s.Duplicates
		r.GapMissing += s.GapMissing
		r.Filtered += s.Filtered
		r.Holes += s.Holes
		r.Excess += s.Excess
	}
	if mod != nil {
		mod(&r)
	}
	if r.Holes > r.Dropped {
		r.Unaccounted = r.Holes - r.Dropped
	} else {
		r.OverAccounted = r.Dropped - r.Holes
	}
	r.ProvablyLost = r.GapMissing + r.Dropped
	return r
}

// sr is a stream report of cpu/epoch of the process connector.
func sr(cpu, epoch, first, last uint32, span, delivered, dups, missing, filt, holes uint64) StreamReport {
	return StreamReport{Idx: schema.ProcID.Idx, Val: schema.ProcID.Val, CPU: cpu, Epoch: epoch,
		First: first, Last: last, Span: span, Delivered: delivered, Duplicates: dups,
		GapMissing: missing, Filtered: filt, Holes: holes}
}

func records(kv ...any) func(*HostReport) {
	return func(r *HostReport) {
		r.Records = map[string]uint64{}
		for i := 0; i < len(kv); i += 2 {
			r.Records[kv[i].(string)] = uint64(kv[i+1].(int))
		}
	}
}

func TestTally(t *testing.T) {
	for _, tc := range []struct {
		name     string
		events   []*schema.Event
		want     []HostReport
		complete bool
	}{
		{
			name:     "complete stream",
			events:   seqs(hostA1, 10, 11, 12, 13, 14),
			want:     []HostReport{hr(hostA1, nil, sr(0, 0, 10, 14, 5, 5, 0, 0, 0, 0))},
			complete: true,
		},
		{
			name:     "gap record accounts for its range",
			events:   cat(seqs(hostA1, 10, 11), gap(hostA1, 1, 0, 12, 15, ""), seqs(hostA1, 15, 16)),
			want:     []HostReport{hr(hostA1, records("gap", 1), sr(0, 0, 10, 16, 7, 4, 0, 3, 0, 0))},
			complete: true,
		},
		{
			name: "gap ranges extend the span at both ends, every reason counts",
			events: cat(gap(hostA1, 1, 0, 5, 10, schema.GapRestart), seqs(hostA1, 10, 11),
				gap(hostA1, 2, 0, 12, 14, schema.GapSpoolCorrupt)),
			want:     []HostReport{hr(hostA1, records("gap", 2), sr(0, 0, 5, 13, 9, 2, 0, 7, 0, 0))},
			complete: true,
		},
		{
			name:   "hole with no record is unaccounted by exactly its size",
			events: seqs(hostA1, 10, 11, 14, 15, 20),
			want:   []HostReport{hr(hostA1, nil, sr(0, 0, 10, 20, 11, 5, 0, 0, 0, 6))},
		},
		{
			name:   "dropped count covering the holes",
			events: cat(seqs(hostA1, 10, 13), dropped(hostA1, 1, 2, "queue_full_drop_newest")),
			want: []HostReport{hr(hostA1, func(r *HostReport) {
				records("dropped", 1)(r)
				r.Dropped, r.DroppedBy = 2, map[string]uint64{"queue_full_drop_newest": 2}
			}, sr(0, 0, 10, 13, 4, 2, 0, 0, 0, 2))},
			complete: true,
		},
		{
			name: "dropped counts beyond the holes are over-accounted, by reason",
			events: cat(seqs(hostA1, 10, 13), dropped(hostA1, 1, 3, "sink_failed"),
				dropped(hostA1, 2, 1, "torn_tail"), dropped(hostA1, 3, 1, "sink_failed")),
			want: []HostReport{hr(hostA1, func(r *HostReport) {
				records("dropped", 3)(r)
				r.Dropped, r.DroppedBy = 5, map[string]uint64{"sink_failed": 4, "torn_tail": 1}
			}, sr(0, 0, 10, 13, 4, 2, 0, 0, 0, 2))},
			complete: true,
		},
		{
			name:   "dropped counts short of the holes",
			events: cat(seqs(hostA1, 10, 14), dropped(hostA1, 1, 1, "sink_failed")),
			want: []HostReport{hr(hostA1, func(r *HostReport) {
				records("dropped", 1)(r)
				r.Dropped, r.DroppedBy = 1, map[string]uint64{"sink_failed": 1}
			}, sr(0, 0, 10, 14, 5, 2, 0, 0, 0, 3))},
		},
		{
			name: "duplicate seqs and a restated record are counted once",
			events: cat(seqs(hostA1, 10, 11, 11, 10), gap(hostA1, 7, 0, 12, 14, ""), seqs(hostA1, 14, 14),
				gap(hostA1, 7, 0, 12, 14, "")),
			want: []HostReport{hr(hostA1, func(r *HostReport) {
				records("gap", 1)(r)
				r.RecordDuplicates = 1
			}, sr(0, 0, 10, 14, 5, 3, 3, 2, 0, 0))},
			complete: true,
		},
		{
			name: "a record restated with an explicit id",
			events: func() []*schema.Event {
				d1 := dropped(hostA1, 1, 2, "sink_failed")
				d1.ID, d1.Record = "boot-a1/r/x/1", nil
				d2 := *d1
				return cat(seqs(hostA1, 1, 4), d1, &d2)
			}(),
			want: []HostReport{hr(hostA1, func(r *HostReport) {
				records("dropped", 1)(r)
				r.RecordDuplicates = 1
				r.Dropped, r.DroppedBy = 2, map[string]uint64{"sink_failed": 2}
			}, sr(0, 0, 1, 4, 4, 2, 0, 0, 0, 2))},
			complete: true,
		},
		{
			name: "filtered records account for what they removed and extend the span",
			events: cat(seqs(hostA1, 10, 12), filtered(hostA1, 1, 0, 2, 11, 13),
				ev(hostA1, 14), filtered(hostA1, 2, 0, 2, 15, 16)),
			want:     []HostReport{hr(hostA1, records("filtered", 2), sr(0, 0, 10, 16, 7, 3, 0, 0, 4, 0))},
			complete: true,
		},
		{
			name: "two cpus, two boots and two hosts are separate",
			events: cat(evc(hostB1, 0, 0, 100), evc(hostA2, 1, 0, 7), evc(hostA1, 1, 0, 50),
				evc(hostA1, 0, 0, 3), evc(hostA1, 1, 0, 52), evc(hostA1, 0, 0, 4), evc(hostA2, 1, 0, 8),
				evc(hostB1, 0, 0, 101), dropped(hostB1, 1, 1, "sink_failed")),
			want: []HostReport{
				hr(hostA1, nil, sr(0, 0, 3, 4, 2, 2, 0, 0, 0, 0), sr(1, 0, 50, 52, 3, 2, 0, 0, 0, 1)),
				hr(hostA2, nil, sr(1, 0, 7, 8, 2, 2, 0, 0, 0, 0)),
				hr(hostB1, func(r *HostReport) {
					records("dropped", 1)(r)
					r.Dropped, r.DroppedBy = 1, map[string]uint64{"sink_failed": 1}
				}, sr(0, 0, 100, 101, 2, 2, 0, 0, 0, 0)),
			},
		},
		{
			name:     "epochs are separate streams",
			events:   cat(evc(hostA1, 0, 0, 1000), evc(hostA1, 0, 1, 1), evc(hostA1, 0, 0, 1001), evc(hostA1, 0, 1, 2)),
			want:     []HostReport{hr(hostA1, nil, sr(0, 0, 1000, 1001, 2, 2, 0, 0, 0, 0), sr(0, 1, 1, 2, 2, 2, 0, 0, 0, 0))},
			complete: true,
		},
		{
			name:     "u32 wrap within an epoch",
			events:   seqs(hostA1, 4294967294, 4294967295, 0, 1),
			want:     []HostReport{hr(hostA1, nil, sr(0, 0, 4294967294, 1, 4, 4, 0, 0, 0, 0))},
			complete: true,
		},
		{
			name:   "u32 wrap with a hole at 0, first seen after the wrap",
			events: seqs(hostA1, 1, 4294967295, 2),
			want:   []HostReport{hr(hostA1, nil, sr(0, 0, 4294967295, 2, 4, 3, 0, 0, 0, 1))},
		},
		{
			name:     "gap across the wrap",
			events:   cat(ev(hostA1, 4294967290), gap(hostA1, 1, 0, 4294967291, 3, ""), ev(hostA1, 3)),
			want:     []HostReport{hr(hostA1, records("gap", 1), sr(0, 0, 4294967290, 3, 10, 2, 0, 8, 0, 0))},
			complete: true,
		},
		{
			name:     "out of order: later seqs before earlier ones (redelivery after a restart)",
			events:   seqs(hostA1, 15, 16, 10, 11, 12, 13, 14, 15, 16),
			want:     []HostReport{hr(hostA1, nil, sr(0, 0, 10, 16, 7, 7, 2, 0, 0, 0))},
			complete: true,
		},
		{
			name:   "out of order with a hole",
			events: seqs(hostA1, 12, 10, 13),
			want:   []HostReport{hr(hostA1, nil, sr(0, 0, 10, 13, 4, 3, 0, 0, 0, 1))},
		},
		{
			name: "a gap counting numbers also delivered is excess, not cover for a hole elsewhere",
			events: cat(evc(hostA1, 0, 0, 1), evc(hostA1, 0, 0, 2), gap(hostA1, 1, 0, 1, 3, ""),
				evc(hostA1, 1, 0, 1), evc(hostA1, 1, 0, 3)),
			want: []HostReport{hr(hostA1, records("gap", 1),
				func() StreamReport { s := sr(0, 0, 1, 2, 2, 2, 0, 2, 0, 0); s.Excess = 2; return s }(),
				sr(1, 0, 1, 3, 3, 2, 0, 0, 0, 1))},
		},
		{
			name: "stream_closed extends the span to its last number",
			events: cat(
				&schema.Event{Kind: schema.KindRaw, Host: hostA1, Stream: &schema.Stream{Idx: 9, Val: 1, Sender: 4242, Seq: 10}},
				func() *schema.Event {
					e := closed(hostA1, 1, 0, 10, 13)
					e.Stream = &schema.Stream{Idx: 9, Val: 1, Sender: 4242, Seq: 13}
					return e
				}()),
			want: []HostReport{hr(hostA1, records("stream_closed", 1), StreamReport{
				Idx: 9, Val: 1, Sender: 4242, First: 10, Last: 13, Span: 4, Delivered: 1, Holes: 3, Closed: "idle"})},
		},
		{
			name: "events without a stream, overrun and other records",
			events: cat(
				&schema.Event{Kind: schema.KindExec, Host: hostA1},
				&schema.Event{Kind: schema.KindExec, Host: hostA1},
				func() *schema.Event {
					e := rec(hostA1, schema.KindOverrun, 1)
					e.Overrun = &schema.OverrunInfo{KernelDrops: 7, ENOBUFS: 1}
					return e
				}(),
				func() *schema.Event {
					e := rec(hostA1, schema.KindOverrun, 2)
					e.Overrun = &schema.OverrunInfo{KernelDrops: 3}
					return e
				}(),
				rec(hostA1, schema.KindMalformed, 3),
				rec(hostA1, schema.KindCorrupt, 4),
				rec(hostA1, schema.KindForged, 5)),
			want: []HostReport{hr(hostA1, func(r *HostReport) {
				records("overrun", 2, "malformed", 1, "corrupt", 1, "forged", 1)(r)
				r.Events, r.Unnumbered, r.Overrun = 2, 2, 10
			})},
			complete: true,
		},
		{
			name: "records lacking what their kind needs are invalid and left out of the sums",
			events: cat(ev(hostA1, 5),
				func() *schema.Event { e := gap(hostA1, 1, 0, 1, 5, ""); e.Stream = nil; return e }(),
				func() *schema.Event { e := gap(hostA1, 2, 0, 1, 5, ""); e.Gap.Got = 0; return e }(),
				func() *schema.Event { e := gap(hostA1, 3, 0, 6, 6, ""); e.Gap.Missing = 2; return e }(),
				gap(hostA1, 4, 0, 6, 6, ""), // empty and consistent: no effect
				filtered(hostA1, 5, 0, 3, 9, 8),
				rec(hostA1, schema.KindFiltered, 6),
				rec(hostA1, schema.KindDropped, 7),
				rec(hostA1, schema.KindGap, 8),
				func() *schema.Event { e := closed(hostA1, 9, 0, 7, 6); return e }()),
			want: []HostReport{hr(hostA1, func(r *HostReport) {
				records("gap", 5, "filtered", 2, "dropped", 1, "stream_closed", 1)(r)
				r.Invalid = 8
			}, sr(0, 0, 5, 5, 1, 1, 0, 0, 0, 0))},
			complete: true,
		},
		{
			name: "times over events and records; a host of nil",
			events: cat(
				&schema.Event{Kind: schema.KindExec, Time: at(5)},
				func() *schema.Event { e := ev(hostA1, 1); e.Time = at(3); return e }(),
				func() *schema.Event { e := dropped(hostA1, 1, 0, "sink_failed"); e.Time = at(9); return e }(),
				func() *schema.Event { e := ev(hostA1, 2); e.Time = at(1); return e }(),
				ev(hostA1, 3)),
			want: []HostReport{
				hr(&schema.Host{}, func(r *HostReport) { r.Events, r.Unnumbered, r.First, r.Last = 1, 1, at(5), at(5) }),
				hr(hostA1, func(r *HostReport) {
					records("dropped", 1)(r)
					r.DroppedBy = map[string]uint64{"sink_failed": 0}
					r.First, r.Last = at(1), at(9)
				}, sr(0, 0, 1, 3, 3, 3, 0, 0, 0, 0)),
			},
			complete: true,
		},
		{
			name:     "no events",
			want:     []HostReport{},
			complete: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ta Tally
			for _, e := range tc.events {
				ta.Add(e)
			}
			got := ta.Report()
			if diff := cmp.Diff(Report{Hosts: tc.want}, got); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			if got.Complete() != tc.complete {
				t.Errorf("Complete() = %v, want %v", got.Complete(), tc.complete)
			}
		})
	}
}

// TestReportReusable: a report shares no map with the Tally, and Adds after
// a Report go on from where it was.
func TestReportReusable(t *testing.T) {
	ta := New()
	ta.Add(ev(hostA1, 1))
	ta.Add(dropped(hostA1, 1, 1, "sink_failed"))
	r1 := ta.Report()
	r1.Hosts[0].Records["dropped"] = 99
	r1.Hosts[0].DroppedBy["sink_failed"] = 99
	ta.Add(ev(hostA1, 3))
	r2 := ta.Report()
	want := hr(hostA1, func(r *HostReport) {
		records("dropped", 1)(r)
		r.Dropped, r.DroppedBy = 1, map[string]uint64{"sink_failed": 1}
	}, sr(0, 0, 1, 3, 3, 2, 0, 0, 0, 1))
	if diff := cmp.Diff(Report{Hosts: []HostReport{want}}, r2); diff != "" {
		t.Errorf("second report (-want +got):\n%s", diff)
	}
}

func TestAddNil(t *testing.T) {
	var ta Tally
	ta.Add(nil)
	if r := ta.Report(); len(r.Hosts) != 0 {
		t.Errorf("Add(nil) made hosts: %+v", r.Hosts)
	}
}

// TestJSONNames checks the snake_case names `cnstream verify --json` prints.
func TestJSONNames(t *testing.T) {
	var ta Tally
	ta.Add(&schema.Event{Kind: schema.KindExec, Host: hostB1}) // no time: no first, last
	e := ev(hostA1, 1)
	e.Time = at(1)
	ta.Add(e)
	ta.Add(dropped(hostA1, 1, 1, "sink_failed"))
	b, err := json.Marshal(ta.Report())
	if err != nil {
		t.Fatal(err)
	}
	var top map[string][]map[string]any
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	h := top["hosts"][0]
	wantHost := []string{"boot_id", "dropped", "dropped_by", "duplicates", "events", "excess", "filtered", "first",
		"gap_missing", "holes", "hostname", "invalid", "last", "machine_id", "over_accounted", "overrun",
		"provably_lost", "record_duplicates", "records", "streams", "unaccounted", "unnumbered"}
	if diff := cmp.Diff(wantHost, slices.Sorted(maps.Keys(h))); diff != "" {
		t.Errorf("host keys (-want +got):\n%s", diff)
	}
	s := h["streams"].([]any)[0].(map[string]any)
	wantStream := []string{"cpu", "delivered", "duplicates", "epoch", "excess", "filtered", "first", "gap_missing",
		"holes", "idx", "last", "sender", "span", "val"}
	if diff := cmp.Diff(wantStream, slices.Sorted(maps.Keys(s))); diff != "" {
		t.Errorf("stream keys (-want +got):\n%s", diff)
	}
	if _, ok := top["hosts"][1]["first"]; ok {
		t.Errorf("host without times has a first time: %v", top["hosts"][1])
	}
	if got := h["first"]; got != "2026-12-01T00:00:01Z" {
		t.Errorf("first = %v, want 2026-12-01T00:00:01Z", got)
	}
}

// TestMemory10M adds 10M events over 2 streams (one Event reused: Add keeps
// no reference) and checks the heap the Tally holds: the bitmaps of 2 x 5M
// numbers are about 1.3 MB; the bound is 100 MB.
func TestMemory10M(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 10M events")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ta := New()
	e := evc(hostA1, 0, 0, 0)
	base := uint32(4294967295 - 1_000_000) // wraps on the way
	for i := range uint32(10_000_000) {
		e.Stream.CPU = i & 1
		e.Stream.Seq = base + i/2
		ta.Add(e)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	r := ta.Report()
	runtime.KeepAlive(ta)
	if got := r.Hosts[0].Events; got != 10_000_000 {
		t.Fatalf("events = %d, want 10000000", got)
	}
	if !r.Complete() || r.Hosts[0].Holes != 0 {
		t.Errorf("not complete: %+v", r.Hosts[0])
	}
	t.Logf("heap held by the tally: %.1f MB", float64(held)/1e6)
	if held > 100e6 {
		t.Errorf("tally holds %d bytes of heap for 10M events, want < 100 MB", held)
	}
}

// TestSparseMemory: a stream of which a filter kept one number in 50000
// over the whole u32 range (epoch wraps aside) holds arrays, not 8 KiB
// bitmaps per kept event.
func TestSparseMemory(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ta := New()
	e := ev(hostA1, 0)
	n := 0
	for s := uint64(0); s < 1<<31-1; s += 50000 {
		e.Stream.Seq = uint32(s)
		ta.Add(e)
		n++
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	runtime.KeepAlive(ta)
	if got := ta.Report().Hosts[0].Events; got != uint64(n) {
		t.Fatalf("events = %d, want %d", got, n)
	}
	t.Logf("%d events, %d bytes held: %.0f B/event", n, held, float64(held)/float64(n))
	if held > int64(n)*1024 {
		t.Errorf("%d bytes held for %d sparse events, want < 1 KiB each", held, n)
	}
}

// TestChunk checks the chunk against a map through the array-to-bitmap
// switch, with numbers added in random order and repeated.
func TestChunk(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var c chunk
	ref := map[uint16]bool{}
	for i := range 20000 {
		v := uint16(r.IntN(12000))
		if i%3 == 0 {
			v = uint16(i) // ascending runs: the append path
		}
		if got, want := c.add(v), !ref[v]; got != want {
			t.Fatalf("add(%d) #%d = %v, want %v (bitmap %v)", v, i, got, want, c.bits != nil)
		}
		ref[v] = true
		if c.bits == nil && !slices.IsSorted(c.arr) {
			t.Fatalf("array not sorted after add(%d)", v)
		}
	}
	if c.bits == nil {
		t.Fatalf("%d members and still an array", len(ref))
	}
	for v := range 1 << 16 {
		if in := c.bits[v>>6]&(1<<(v&63)) != 0; in != ref[uint16(v)] {
			t.Fatalf("member %d = %v, want %v", v, in, ref[uint16(v)])
		}
	}
}

// TestAddAllocs: adding an event of a known stream whose chunk is a bitmap
// allocates nothing, on either of two interleaved streams.
func TestAddAllocs(t *testing.T) {
	ta := New()
	e := evc(hostA1, 0, 0, 0)
	seq := uint32(0)
	add := func() {
		e.Stream.CPU = seq & 1
		e.Stream.Seq = seq / 2
		ta.Add(e)
		seq++
	}
	for range 2 * arrayMax {
		add() // both streams' first chunks become bitmaps
	}
	if n := testing.AllocsPerRun(1000, add); n != 0 {
		t.Errorf("Add allocates %v times per event, want 0", n)
	}
	if ev := ta.Report().Hosts[0].Events; ev != uint64(seq) {
		t.Errorf("events = %d, want %d", ev, seq)
	}
}
