package audit

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cnstream/cnstream/schema"
)

// scenario is a random set of streams with what became of each number,
// the events and records a pipeline would have delivered for it, and the
// report's numbers that follow.
type scenario struct {
	events []*schema.Event
	want   map[string]hostWant // by boot id
}

type hostWant struct {
	events, dups, missing, filtered, holes, declared uint64
	streams                                          map[streamKey][2]uint32 // first, last
}

// genScenario makes 1-3 hosts (boots) of 1-3 streams each. Each number of a
// stream is delivered (sometimes twice), in a gap record, removed by a
// filter, dropped by the pipeline or lost without a trace; the first and
// the last are delivered so the span is the stream's range. Dropped
// numbers are declared by dropped records whose counts sum to the
// dropped numbers plus a random error (short or beyond). Records are
// restated at random, and everything arrives shuffled.
func genScenario(seed uint64) scenario {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	sc := scenario{want: map[string]hostWant{}}
	var recN uint64
	newRec := func(h *schema.Host, k schema.Kind) *schema.Event {
		recN++
		return &schema.Event{Kind: k, Host: h, Record: &schema.Record{Run: "run", Seq: recN}}
	}
	for hi := range 1 + r.IntN(3) {
		h := &schema.Host{Hostname: fmt.Sprintf("h%d", hi%2), MachineID: "m", BootID: fmt.Sprintf("boot%d", hi)}
		w := hostWant{streams: map[streamKey][2]uint32{}}
		var droppedNums uint64
		for si := range 1 + r.IntN(3) {
			k := streamKey{idx: 1, val: 1, cpu: uint32(si), epoch: uint32(r.IntN(2))}
			if _, dup := w.streams[k]; dup {
				continue
			}
			base := r.Uint32()
			if r.IntN(3) == 0 {
				base = -uint32(r.IntN(100)) // wraps
			}
			n := 1 + r.IntN(3000)
			w.streams[k] = [2]uint32{base, base + uint32(n-1)}
			sp := func(seq uint32) *schema.Stream {
				return &schema.Stream{Idx: k.idx, Val: k.val, CPU: k.cpu, Epoch: k.epoch, Seq: seq}
			}
			var gapStart, gapLen uint32
			flushGap := func() {
				if gapLen > 0 {
					e := newRec(h, schema.KindGap)
					e.Stream = sp(gapStart + gapLen)
					e.Gap = &schema.GapInfo{Expected: gapStart, Got: gapStart + gapLen, Missing: uint64(gapLen)}
					sc.events = append(sc.events, e)
					w.missing += uint64(gapLen)
					gapLen = 0
				}
			}
			var fCount uint64
			var fFirst, fLast uint32
			flushFiltered := func() {
				if fCount > 0 {
					e := newRec(h, schema.KindFiltered)
					e.Stream = sp(fLast)
					e.Filtered = &schema.FilteredInfo{Count: fCount, First: fFirst, Last: fLast}
					sc.events = append(sc.events, e)
					w.filtered += fCount
					fCount = 0
				}
			}
			mode := r.IntN(4) // some streams dense, some full of loss
			for i := range n {
				seq := base + uint32(i)
				c := r.IntN(100)
				if i == 0 || i == n-1 {
					c = 0
				}
				if mode == 0 {
					c /= 4
				}
				if c >= 40 && c < 55 { // in a gap
					if gapLen == 0 || gapStart+gapLen != seq || r.IntN(10) == 0 {
						flushGap()
						gapStart = seq
					}
					gapLen++
					continue
				}
				flushGap()
				switch {
				case c < 40: // delivered, sometimes twice
					sc.events = append(sc.events, &schema.Event{Kind: schema.KindExit, Host: h, Stream: sp(seq)})
					w.events++
					if r.IntN(20) == 0 {
						sc.events = append(sc.events, &schema.Event{Kind: schema.KindExit, Host: h, Stream: sp(seq)})
						w.dups++
					}
				case c < 70: // filtered; kept events interleave
					if fCount == 0 {
						fFirst = seq
					}
					fCount++
					fLast = seq
					if r.IntN(8) == 0 {
						flushFiltered()
					}
				case c < 85: // dropped by the pipeline
					droppedNums++
				default: // lost without a trace
					w.holes++
				}
			}
			flushGap()
			flushFiltered()
		}
		w.holes += droppedNums
		w.declared = droppedNums
		switch r.IntN(3) {
		case 0:
			w.declared += uint64(r.IntN(5)) // sink_failed counts whole batches
		case 1:
			w.declared -= uint64(r.IntN(int(droppedNums) + 1)) // a drop went unrecorded
		}
		for left := w.declared; left > 0; {
			c := min(left, 1+uint64(r.IntN(50)))
			e := newRec(h, schema.KindDropped)
			e.Dropped = &schema.DroppedInfo{Count: c, Reason: "queue_full_drop_newest"}
			sc.events = append(sc.events, e)
			left -= c
		}
		sc.want[h.BootID] = w
	}
	// Restate records (same id), then shuffle everything.
	for _, e := range sc.events {
		if e.Kind.IsLoss() && r.IntN(5) == 0 {
			c := *e
			sc.events = append(sc.events, &c)
		}
	}
	r.Shuffle(len(sc.events), func(i, j int) { sc.events[i], sc.events[j] = sc.events[j], sc.events[i] })
	return sc
}

func checkScenario(t *testing.T, seed uint64) {
	t.Helper()
	sc := genScenario(seed)
	var ta Tally
	for _, e := range sc.events {
		ta.Add(e)
	}
	rep := ta.Report()
	if len(rep.Hosts) != len(sc.want) {
		t.Fatalf("seed %d: %d hosts, want %d", seed, len(rep.Hosts), len(sc.want))
	}
	complete := true
	for _, h := range rep.Hosts {
		w := sc.want[h.BootID]
		var unacc, over uint64
		if w.holes > w.declared {
			unacc = w.holes - w.declared
			complete = false
		} else {
			over = w.declared - w.holes
		}
		got := [...]uint64{h.Events, h.Duplicates, h.GapMissing, h.Filtered, h.Dropped, h.Holes, h.Unaccounted, h.OverAccounted, h.ProvablyLost, h.Excess}
		want := [...]uint64{w.events, w.dups, w.missing, w.filtered, w.declared, w.holes, unacc, over, w.missing + w.declared, 0}
		if got != want {
			t.Errorf("seed %d host %s: events, dups, missing, filtered, dropped, holes, unaccounted, over, lost, excess =\n got %v\nwant %v", seed, h.BootID, got, want)
		}
		if len(h.Streams) != len(w.streams) {
			t.Errorf("seed %d host %s: %d streams, want %d", seed, h.BootID, len(h.Streams), len(w.streams))
		}
		for _, s := range h.Streams {
			k := streamKey{s.Idx, s.Val, s.CPU, s.Sender, s.Epoch}
			if fl := w.streams[k]; [2]uint32{s.First, s.Last} != fl {
				t.Errorf("seed %d host %s stream %+v: first, last = %d, %d, want %v", seed, h.BootID, k, s.First, s.Last, fl)
			}
			if s.Delivered+s.GapMissing+s.Filtered+s.Holes != s.Span {
				t.Errorf("seed %d stream %+v: identity broken: %+v", seed, k, s)
			}
		}
	}
	if rep.Complete() != complete {
		t.Errorf("seed %d: Complete() = %v, want %v", seed, rep.Complete(), complete)
	}
}

// TestProperty: Unaccounted == the holes made (lost and dropped numbers)
// minus the drops declared, over random scenarios.
func TestProperty(t *testing.T) {
	n := uint64(300)
	if testing.Short() {
		n = 30
	}
	for seed := range n {
		checkScenario(t, seed)
	}
}

func FuzzProperty(f *testing.F) {
	for _, s := range []uint64{0, 1, 42, 1 << 40} {
		f.Add(s)
	}
	f.Fuzz(checkScenario)
}

// FuzzAdd feeds events with arbitrary fields (kinds, ranges that wrap or
// run backwards, counts near 2^64): Add never panics, and each report's
// numbers stay consistent with each other.
func FuzzAdd(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("\x0c\x00\x00\x00\x01\x00\x00\x00\x05\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\x10\x01\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		hosts := []*schema.Host{nil, {Hostname: "a", BootID: "1"}, {Hostname: "a", BootID: "2"}}
		var ta Tally
		const size = 22
		for len(data) >= size {
			d := data[:size]
			data = data[size:]
			e := &schema.Event{Kind: schema.Kind(d[0] % 21), Host: hosts[int(d[1])%len(hosts)]}
			a := binary.LittleEndian.Uint32(d[4:])
			b := binary.LittleEndian.Uint32(d[8:])
			c := binary.LittleEndian.Uint64(d[12:])
			if d[2]&1 != 0 {
				e.Stream = &schema.Stream{Idx: 1, Val: 1, CPU: uint32(d[3] % 3), Epoch: uint32(d[2] >> 6), Seq: a}
			}
			if d[2]&2 != 0 {
				e.Record = &schema.Record{Run: "r", Seq: uint64(d[20])}
			}
			if d[2]&4 != 0 {
				switch e.Kind {
				case schema.KindGap:
					e.Gap = &schema.GapInfo{Expected: a, Got: b, Missing: c}
				case schema.KindFiltered:
					e.Filtered = &schema.FilteredInfo{Count: c, First: a, Last: b}
				case schema.KindClosed:
					e.Closed = &schema.ClosedInfo{First: a, Last: b}
				case schema.KindDropped:
					e.Dropped = &schema.DroppedInfo{Count: c, Reason: string(d[21:22])}
				case schema.KindOverrun:
					e.Overrun = &schema.OverrunInfo{KernelDrops: c}
				}
			}
			ta.Add(e)
		}
		rep := ta.Report()
		for _, h := range rep.Hosts {
			if h.Unaccounted != 0 && h.OverAccounted != 0 {
				t.Errorf("host %q: both unaccounted %d and over-accounted %d", h.BootID, h.Unaccounted, h.OverAccounted)
			}
			if h.Holes < h.Unaccounted {
				t.Errorf("host %q: unaccounted %d > holes %d", h.BootID, h.Unaccounted, h.Holes)
			}
			for _, s := range h.Streams {
				if s.Span == 0 || s.Span > 1<<32 {
					t.Errorf("stream %+v: span out of range", s)
				}
				if s.Holes != 0 && s.Excess != 0 {
					t.Errorf("stream %+v: both holes and excess", s)
				}
				if s.Delivered > s.Span || s.Holes > s.Span {
					t.Errorf("stream %+v: more delivered or holes than its span", s)
				}
			}
		}
	})
}
