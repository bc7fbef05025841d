package audit

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/cnstream/cnstream/schema"
)

// Report is the audit of everything given to a Tally: one HostReport per
// (host, boot), sorted by hostname, then boot id, then machine id.
type Report struct {
	Hosts []HostReport `json:"hosts"`
}

// Complete reports whether every number of every stream is accounted for:
// no host has Unaccounted numbers. An empty report is complete.
func (r Report) Complete() bool {
	for _, h := range r.Hosts {
		if h.Unaccounted != 0 {
			return false
		}
	}
	return true
}

// HostReport is the audit of one host and boot. See the package
// documentation for what each number means.
type HostReport struct {
	Hostname  string `json:"hostname"`
	MachineID string `json:"machine_id"`
	BootID    string `json:"boot_id"`

	// Events counts the distinct delivered events (not loss or accounting
	// records): those of the streams and the Unnumbered ones.
	Events uint64 `json:"events"`
	// Unnumbered counts delivered events with no stream (counted in
	// Events, in no stream, never deduplicated).
	Unnumbered uint64 `json:"unnumbered"`
	// Duplicates counts events delivered again with a (stream, seq)
	// already seen.
	Duplicates uint64 `json:"duplicates"`
	// Records counts the distinct loss and accounting records by kind name.
	Records map[string]uint64 `json:"records,omitempty"`
	// RecordDuplicates counts records restated with an id already seen.
	RecordDuplicates uint64 `json:"record_duplicates"`
	// Invalid counts records that lack what their kind needs (a gap or a
	// filtered record without a stream or its info, a range whose end
	// precedes its start, a dropped record without its info): counted in
	// Records, left out of every sum.
	Invalid uint64 `json:"invalid"`
	// First and Last are the earliest and latest event times of the
	// host's events and records (zero times are ignored; absent from the
	// JSON when none had a time).
	First time.Time `json:"first,omitzero"`
	Last  time.Time `json:"last,omitzero"`

	Streams []StreamReport `json:"streams"`

	// GapMissing sums the gap records' missing counts (every reason).
	GapMissing uint64 `json:"gap_missing"`
	// Dropped sums the dropped records' counts; DroppedBy by reason.
	Dropped   uint64            `json:"dropped"`
	DroppedBy map[string]uint64 `json:"dropped_by,omitempty"`
	// Filtered sums the filtered records' counts.
	Filtered uint64 `json:"filtered"`
	// Overrun sums the overrun records' kernel drops (informational).
	Overrun uint64 `json:"overrun"`

	// Holes sums the streams' holes: numbers within a span neither
	// delivered nor counted by a gap or filtered record.
	Holes uint64 `json:"holes"`
	// Excess sums the streams' excess: counts beyond a stream's span.
	Excess uint64 `json:"excess"`
	// Unaccounted is Holes the dropped counts do not cover:
	// max(0, Holes - Dropped). Zero means complete.
	Unaccounted uint64 `json:"unaccounted"`
	// OverAccounted is the dropped counts beyond the holes:
	// max(0, Dropped - Holes). Allowed (sink_failed counts a whole batch).
	OverAccounted uint64 `json:"over_accounted"`
	// ProvablyLost is GapMissing + Dropped.
	ProvablyLost uint64 `json:"provably_lost"`
}

// StreamReport is the audit of one stream and epoch of a host and boot.
type StreamReport struct {
	Idx    uint32 `json:"idx"`
	Val    uint32 `json:"val"`
	CPU    uint32 `json:"cpu"`
	Sender uint32 `json:"sender"`
	Epoch  uint32 `json:"epoch"`
	// First and Last are the lowest and the highest number seen, in the
	// wrap order of the first number seen.
	First uint32 `json:"first"`
	Last  uint32 `json:"last"`
	// Span is Last - First + 1 in wrap order.
	Span uint64 `json:"span"`
	// Delivered counts the distinct numbers of delivered events.
	Delivered  uint64 `json:"delivered"`
	Duplicates uint64 `json:"duplicates"`
	GapMissing uint64 `json:"gap_missing"`
	Filtered   uint64 `json:"filtered"`
	// Holes is Span - Delivered - GapMissing - Filtered when positive.
	Holes uint64 `json:"holes"`
	// Excess is Delivered + GapMissing + Filtered - Span when positive: a
	// gap or filtered record counted numbers also delivered, or counted
	// more than its range holds.
	Excess uint64 `json:"excess"`
	// Closed is the reason of the stream's stream_closed record, if any.
	Closed string `json:"closed,omitempty"`
}

// Tally accumulates events for a Report. Its zero value is ready to use;
// it is not safe for concurrent use.
type Tally struct {
	hosts   map[hostKey]*host
	last    *host
	records map[string]struct{}
}

// New returns an empty Tally.
func New() *Tally { return new(Tally) }

type hostKey struct{ hostname, machineID, bootID string }

type streamKey struct{ idx, val, cpu, sender, epoch uint32 }

type host struct {
	key                        hostKey
	events, unnumbered         uint64
	recordDups, invalid        uint64
	records                    map[string]uint64
	first, last                time.Time
	streams                    map[streamKey]*stream
	recent                     [8]*stream // by cpu, then sender, mod 8: most lookups skip the map
	dropped, overrun, filtered uint64
	gapMissing                 uint64
	droppedBy                  map[string]uint64
}

type stream struct {
	key    streamKey
	ref    uint32 // the first number seen: offsets are int32(seq - ref)
	lo, hi int64  // lowest and highest offset seen
	distinct, dups,
	missing, filtered uint64
	closed string
	set    seqSet
}

// Add counts e. A nil e is ignored. Add keeps no reference to e.
func (t *Tally) Add(e *schema.Event) {
	if e == nil {
		return
	}
	h := t.host(e.Host)
	h.seen(e.Time)
	if e.Kind.IsLoss() {
		t.addRecord(h, e)
		return
	}
	if e.Stream == nil {
		h.events++
		h.unnumbered++
		return
	}
	s := h.stream(e.Stream, e.Stream.Seq)
	off := s.offset(e.Stream.Seq)
	s.extend(off)
	if s.set.add(off) {
		s.distinct++
		h.events++
	} else {
		s.dups++
	}
}

func (h *host) seen(at time.Time) {
	if at.IsZero() {
		return
	}
	if h.first.IsZero() || at.Before(h.first) {
		h.first = at
	}
	if at.After(h.last) {
		h.last = at
	}
}

func (t *Tally) host(hp *schema.Host) *host {
	var k hostKey
	if hp != nil {
		k = hostKey{hp.Hostname, hp.MachineID, hp.BootID}
	}
	if h := t.last; h != nil && h.key == k {
		return h
	}
	if t.hosts == nil {
		t.hosts = make(map[hostKey]*host)
	}
	h := t.hosts[k]
	if h == nil {
		h = &host{key: k, streams: make(map[streamKey]*stream)}
		t.hosts[k] = h
	}
	t.last = h
	return h
}

// stream returns the stream of sp, creating it with first as its
// reference number.
func (h *host) stream(sp *schema.Stream, first uint32) *stream {
	k := streamKey{sp.Idx, sp.Val, sp.CPU, sp.Sender, sp.Epoch}
	slot := &h.recent[(k.cpu^k.sender)&7]
	if s := *slot; s != nil && s.key == k {
		return s
	}
	s := h.streams[k]
	if s == nil {
		s = &stream{key: k, ref: first}
		h.streams[k] = s
	}
	*slot = s
	return s
}

func (s *stream) offset(seq uint32) int64 { return int64(int32(seq - s.ref)) }

func (s *stream) extend(off int64) {
	if off < s.lo {
		s.lo = off
	}
	if off > s.hi {
		s.hi = off
	}
}

// extendRange extends the span by the numbers a .. b (wrap order).
func (s *stream) extendRange(a, b uint32) {
	s.extend(s.offset(a))
	s.extend(s.offset(b))
}

// ordered reports whether b does not precede a in wrap order.
func ordered(a, b uint32) bool { return int32(b-a) >= 0 }

func (t *Tally) addRecord(h *host, e *schema.Event) {
	if id := recordID(e); id != "" {
		if t.records == nil {
			t.records = make(map[string]struct{})
		}
		if _, dup := t.records[id]; dup {
			h.recordDups++
			return
		}
		t.records[id] = struct{}{}
	}
	if h.records == nil {
		h.records = make(map[string]uint64)
	}
	h.records[e.Kind.String()]++
	switch e.Kind {
	case schema.KindGap:
		g := e.Gap
		if g == nil || e.Stream == nil || !ordered(g.Expected, g.Got) || g.Got == g.Expected && g.Missing != 0 {
			h.invalid++
			return
		}
		if g.Got == g.Expected {
			return // an empty gap: nothing missing
		}
		s := h.stream(e.Stream, g.Expected)
		s.extendRange(g.Expected, g.Got-1)
		s.missing = satAdd(s.missing, g.Missing)
		h.gapMissing = satAdd(h.gapMissing, g.Missing)
	case schema.KindFiltered:
		f := e.Filtered
		if f == nil || e.Stream == nil || !ordered(f.First, f.Last) {
			h.invalid++
			return
		}
		s := h.stream(e.Stream, f.First)
		s.extendRange(f.First, f.Last)
		s.filtered = satAdd(s.filtered, f.Count)
		h.filtered = satAdd(h.filtered, f.Count)
	case schema.KindClosed:
		c := e.Closed
		if c == nil || e.Stream == nil || !ordered(c.First, c.Last) {
			h.invalid++
			return
		}
		s := h.stream(e.Stream, c.First)
		s.extendRange(c.First, c.Last)
		s.closed = c.Reason
	case schema.KindDropped:
		d := e.Dropped
		if d == nil {
			h.invalid++
			return
		}
		h.dropped = satAdd(h.dropped, d.Count)
		if h.droppedBy == nil {
			h.droppedBy = make(map[string]uint64)
		}
		h.droppedBy[d.Reason] = satAdd(h.droppedBy[d.Reason], d.Count)
	case schema.KindOverrun:
		if o := e.Overrun; o != nil {
			h.overrun = satAdd(h.overrun, o.KernelDrops)
		}
	}
}

// recordID is the id a record is deduplicated by: its ID, or the id
// derived from its Record member; "" when it has neither.
func recordID(e *schema.Event) string {
	if e.ID != "" {
		return e.ID
	}
	if e.Record == nil {
		return ""
	}
	return e.EventID()
}

func satAdd(a, b uint64) uint64 {
	if c := a + b; c >= a {
		return c
	}
	return math.MaxUint64
}

// Report returns the audit of everything added so far. The Tally stays
// usable: later Adds go on from here.
func (t *Tally) Report() Report {
	r := Report{Hosts: make([]HostReport, 0, len(t.hosts))}
	for _, h := range t.hosts {
		r.Hosts = append(r.Hosts, h.report())
	}
	slices.SortStableFunc(r.Hosts, func(a, b HostReport) int {
		return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.BootID, b.BootID), cmp.Compare(a.MachineID, b.MachineID))
	})
	return r
}

func (h *host) report() HostReport {
	hr := HostReport{
		Hostname: h.key.hostname, MachineID: h.key.machineID, BootID: h.key.bootID,
		Events: h.events, Unnumbered: h.unnumbered,
		RecordDuplicates: h.recordDups, Invalid: h.invalid,
		First: h.first, Last: h.last,
		Streams:    make([]StreamReport, 0, len(h.streams)),
		GapMissing: h.gapMissing, Dropped: h.dropped, Filtered: h.filtered, Overrun: h.overrun,
	}
	if len(h.records) > 0 {
		hr.Records = maps.Clone(h.records)
	}
	if len(h.droppedBy) > 0 {
		hr.DroppedBy = maps.Clone(h.droppedBy)
	}
	for _, s := range h.streams {
		sr := s.report()
		hr.Duplicates += sr.Duplicates
		hr.Holes = satAdd(hr.Holes, sr.Holes)
		hr.Excess = satAdd(hr.Excess, sr.Excess)
		hr.Streams = append(hr.Streams, sr)
	}
	slices.SortFunc(hr.Streams, func(a, b StreamReport) int {
		return cmp.Or(cmp.Compare(a.Idx, b.Idx), cmp.Compare(a.Val, b.Val), cmp.Compare(a.CPU, b.CPU),
			cmp.Compare(a.Sender, b.Sender), cmp.Compare(a.Epoch, b.Epoch))
	})
	if hr.Holes > hr.Dropped {
		hr.Unaccounted = hr.Holes - hr.Dropped
	} else {
		hr.OverAccounted = hr.Dropped - hr.Holes
	}
	hr.ProvablyLost = satAdd(hr.GapMissing, hr.Dropped)
	return hr
}

func (s *stream) report() StreamReport {
	sr := StreamReport{
		Idx: s.key.idx, Val: s.key.val, CPU: s.key.cpu, Sender: s.key.sender, Epoch: s.key.epoch,
		First: s.ref + uint32(s.lo), Last: s.ref + uint32(s.hi),
		Span:      uint64(s.hi - s.lo + 1),
		Delivered: s.distinct, Duplicates: s.dups, GapMissing: s.missing, Filtered: s.filtered,
		Closed: s.closed,
	}
	acc := satAdd(satAdd(s.distinct, s.missing), s.filtered)
	if acc < sr.Span {
		sr.Holes = sr.Span - acc
	} else {
		sr.Excess = acc - sr.Span
	}
	return sr
}
