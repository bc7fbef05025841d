package transform

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
)

// Enricher tells what is known of a process event's subject. Process is
// called once per proc event, in stream order, from the transform goroutine;
// it may update its own state (a process table) from the event. It must
// return within a small bound whatever the process does: the whole
// pipeline waits for it (enrich.Table waits at most its ProcReadTimeout for
// a /proc read and then says "timeout").
type Enricher interface {
	Process(ev *schema.ProcEvent) *schema.Process
}

// WallClock turns a kernel CLOCK_MONOTONIC timestamp into wall-clock time.
type WallClock interface {
	Wall(monoNS uint64) time.Time
}

// Config configures a Transformer.
type Config struct {
	// Host is the machine's identity; its BootID is part of every event id
	// and is required.
	Host schema.Host
	// Run identifies this run in the ids of the records the pipeline makes
	// (gap, overrun, ...). Default: 8 random bytes, hex. Ignored when
	// Records is set.
	Run string
	// Records numbers the records the transform makes; give the same one
	// to the pipeline's delivery runtime so that record ids stay unique per
	// run. Its host and run win over Host and Run. Default:
	// schema.NewRecords(Run, Host).
	Records *schema.Records
	// Clock converts kernel timestamps. Default: an offset measured once
	// with source.ClockOffset.
	Clock WallClock
	// Enricher adds process details. Default: none.
	Enricher Enricher
	// Filter keeps or drops events. Default: keep everything. What it
	// removes is stated per stream and batch by a filtered record.
	Filter Filter
	// Streams bounds the sequence tracker's userspace streams (idle
	// timeout, cap) and sets its clock. Default: TrackerConfig's defaults
	// (10 minutes, 16384 streams, CLOCK_MONOTONIC).
	Streams TrackerConfig
	// Resume continues the streams of a previous run of cnstream on this
	// boot: per stream, the last message that run handed to its spool
	// (Idx, Val, CPU and Sender name the stream; Epoch and Seq are its
	// epoch and number; Ack is ignored). Each is given to Tracker.Resume:
	// the stream's next message follows it in order, or is preceded by a
	// gap record of reason schema.GapRestart for the numbers that passed
	// while cnstream was not running, and keeps the epoch count, so event
	// ids continue the previous run's. The caller keeps only the streams of
	// the current boot id; a stream listed twice counts once (the first).
	// Default: none (every stream starts with its first message seen).
	Resume []schema.Stream
}

// Stats are the Transformer's counters.
type Stats struct {
	DecoderStats
	Events   uint64 // events produced (after filtering), records included
	Records  uint64 // records numbered by the run's schema.Records: the transform's (gap, overrun, malformed, forged) and the delivery's dropped records when it shares them
	Filtered uint64 // events the filter dropped (on purpose: not a loss), stated by filtered records
}

// A Transformer turns source batches into schema.Events: decoding, sequence
// tracking with gap records, wall-clock time, enrichment, filtering. It is
// owned by one goroutine; Stats may be called from any.
type Transformer struct {
	dec    *Decoder
	host   *schema.Host
	recs   *schema.Records
	clock  WallClock
	enrich Enricher
	filter *filter
	out    []schema.Event
	slab   []holder
	facc   []filterAcc // this batch's filtered events, per stream and epoch

	nevents, nfiltered uint64 // this batch's counts, published after it

	events, filtered atomic.Uint64
	decStats         atomic.Pointer[DecoderStats]
}

// New returns a Transformer for cfg.
func New(cfg Config) (*Transformer, error) {
	recs := cfg.Records
	if recs == nil {
		recs = schema.NewRecords(cfg.Run, cfg.Host)
	}
	if recs.Host().BootID == "" {
		return nil, fmt.Errorf("transform: Config.Host.BootID is required: it is part of every event id")
	}
	f, err := cfg.Filter.compile()
	if err != nil {
		return nil, err
	}
	dec := &Decoder{Tracker: NewTrackerConfig(cfg.Streams)}
	for _, s := range cfg.Resume {
		dec.Tracker.Resume(StreamKey{Idx: s.Idx, Val: s.Val, CPU: s.CPU, Sender: s.Sender}, s.Epoch, s.Seq)
	}
	t := &Transformer{dec: dec, recs: recs, host: recs.Host(), clock: cfg.Clock, enrich: cfg.Enricher, filter: f}
	if t.clock == nil {
		off, err := source.ClockOffset()
		if err != nil {
			return nil, fmt.Errorf("transform: read clocks: %w", err)
		}
		t.clock = fixedClock(off)
	}
	t.decStats.Store(&DecoderStats{})
	return t, nil
}

type fixedClock time.Duration

func (c fixedClock) Wall(mono uint64) time.Time { return time.Unix(0, int64(mono)+int64(c)) }

// Host returns the host identity events carry.
func (t *Transformer) Host() *schema.Host { return t.host }

// Run returns the id of this run.
func (t *Transformer) Run() string { return t.recs.Run() }

// Records returns the numbering of this run's records: the delivery
// runtime takes it (by config) for the dropped records it makes.
func (t *Transformer) Records() *schema.Records { return t.recs }

// Tracker returns the sequence tracker (per-stream counters).
func (t *Transformer) Tracker() *Tracker { return t.dec.Tracker }

// Batch appends to out the events of the first n datagrams of b, in stream
// order, with records stating every loss where it was found.
func (t *Transformer) Batch(b *source.Batch, n int, out []schema.Event) []schema.Event {
	t.out = out
	t.dec.DecodeBatch(b, n, t.record)
	t.flushFiltered()
	out, t.out = t.out, nil
	t.events.Add(t.nevents)
	t.filtered.Add(t.nfiltered)
	t.nevents, t.nfiltered = 0, 0
	s := t.dec.Stats()
	t.decStats.Store(&s)
	return out
}

// Drops appends an overrun record for drops found outside a batch (the
// final SO_MEMINFO check at shutdown).
func (t *Transformer) Drops(drops uint64, out []schema.Event) []schema.Event {
	if drops == 0 {
		return out
	}
	return t.Batch(&source.Batch{Dropped: drops}, 0, out)
}

// Stats returns a snapshot of the counters.
func (t *Transformer) Stats() Stats {
	return Stats{DecoderStats: *t.decStats.Load(), Events: t.events.Load(), Records: t.recs.Made(), Filtered: t.filtered.Load()}
}

func (t *Transformer) newRecord(kind schema.Kind) schema.Event { return t.recs.New(kind) }

// holder is the storage of one event's members: events point into holders
// allocated in slabs, so a proc event costs no allocation of its own.
type holder struct {
	stream   schema.Stream
	fork     schema.ForkEvent
	exec     schema.ExecEvent
	id       schema.IDEvent
	sid      schema.SIDEvent
	ptrace   schema.PtraceEvent
	comm     schema.CommInfo
	coredump schema.CoredumpEvent
	exit     schema.ExitInfo
	ack      schema.AckInfo
	status   int
}

const slabLen = 256

func (t *Transformer) holder() *holder {
	if len(t.slab) == 0 {
		t.slab = make([]holder, slabLen)
	}
	h := &t.slab[0]
	t.slab = t.slab[1:]
	return h
}

func streamOf(r *Record) schema.Stream {
	return schema.Stream{Idx: r.Stream.Idx, Val: r.Stream.Val, CPU: r.Stream.CPU, Sender: r.Stream.Sender,
		Epoch: r.Obs.Epoch, Seq: r.Cn.Seq, Ack: r.Cn.Ack}
}

// record is the Decoder's emit callback.
func (t *Transformer) record(r *Record) {
	// Build the event in place at the end of out: an Event is large, copies
	// show on the hot path.
	t.out = append(t.out, schema.Event{})
	e := &t.out[len(t.out)-1]
	switch r.Kind {
	case KindProc:
		t.procEvent(r, e)
	case KindRaw:
		h := t.holder()
		h.stream = streamOf(r)
		*e = schema.Event{Version: schema.EventVersion, Kind: schema.KindRaw, Time: time.Now(), Host: t.host, Stream: &h.stream,
			Raw: &schema.RawInfo{Group: r.Addr.Group(), Payload: append([]byte(nil), r.Cn.Data...)}}
	case KindGap:
		*e = t.newRecord(schema.KindGap)
		h := t.holder()
		h.stream = schema.Stream{Idx: r.Stream.Idx, Val: r.Stream.Val, CPU: r.Stream.CPU, Sender: r.Stream.Sender, Epoch: r.Obs.Epoch, Seq: r.Seq}
		e.Stream = &h.stream
		e.Gap = &schema.GapInfo{Expected: r.Obs.Expected, Got: r.Seq, Missing: r.Obs.Missing}
		if r.Obs.Resumed {
			e.Gap.Reason = schema.GapRestart
		}
	case KindOverrun:
		*e = t.newRecord(schema.KindOverrun)
		e.Overrun = &schema.OverrunInfo{KernelDrops: r.Drops, ENOBUFS: r.ENOBUFS}
	case KindForged:
		*e = t.newRecord(schema.KindForged)
		e.Forged = &schema.ForgedInfo{Count: r.Count}
	case KindClosed:
		*e = t.newRecord(schema.KindClosed)
		c := &r.Closed
		h := t.holder()
		h.stream = schema.Stream{Idx: c.Key.Idx, Val: c.Key.Val, CPU: c.Key.CPU, Sender: c.Key.Sender, Epoch: c.Epoch, Seq: c.Last}
		e.Stream = &h.stream
		e.Closed = &schema.ClosedInfo{Reason: c.Reason, First: c.First, Last: c.Last}
	case KindMalformed, KindNetlinkError:
		*e = t.newRecord(schema.KindMalformed)
		msg := ""
		if r.Err != nil {
			msg = r.Err.Error()
		} else {
			msg = fmt.Sprintf("netlink error message: errno %d", -r.Errno)
		}
		e.Malformed = &schema.MalformedInfo{Sender: r.Addr.PortID, Error: msg, Data: append([]byte(nil), r.Data...)}
	default:
		t.out = t.out[:len(t.out)-1]
		return
	}
	if !t.filter.keep(e) {
		t.nfiltered++
		t.countFiltered(e)
		t.out = t.out[:len(t.out)-1]
		return
	}
	t.nevents++
}

// filterAcc counts the events a filter removed from one stream and epoch
// in one batch.
type filterAcc struct {
	key         StreamKey
	epoch       uint32
	count       uint64
	first, last uint32
	kinds       [32]uint64 // by schema.Kind
}

// countFiltered adds the removed event e to its stream's count.
func (t *Transformer) countFiltered(e *schema.Event) {
	s := e.Stream
	if s == nil { // only events with a stream are ever filtered
		return
	}
	k := StreamKey{Idx: s.Idx, Val: s.Val, CPU: s.CPU, Sender: s.Sender}
	var a *filterAcc
	for i := len(t.facc) - 1; i >= 0; i-- {
		if t.facc[i].key == k && t.facc[i].epoch == s.Epoch {
			a = &t.facc[i]
			break
		}
	}
	if a == nil {
		t.facc = append(t.facc, filterAcc{key: k, epoch: s.Epoch, first: s.Seq})
		a = &t.facc[len(t.facc)-1]
	}
	a.count++
	a.last = s.Seq
	if int(e.Kind) < len(a.kinds) {
		a.kinds[e.Kind]++
	}
}

// flushFiltered appends one filtered record per stream and epoch that had
// events removed in this batch.
func (t *Transformer) flushFiltered() {
	for i := range t.facc {
		a := &t.facc[i]
		t.dec.Tracker.AddFiltered(a.key, a.count)
		kinds := make(map[string]uint64, 4)
		for k, n := range a.kinds {
			if n > 0 {
				kinds[schema.Kind(k).String()] = n
			}
		}
		t.out = append(t.out, t.newRecord(schema.KindFiltered))
		e := &t.out[len(t.out)-1]
		h := t.holder()
		h.stream = schema.Stream{Idx: a.key.Idx, Val: a.key.Val, CPU: a.key.CPU, Sender: a.key.Sender, Epoch: a.epoch, Seq: a.last}
		e.Stream = &h.stream
		e.Filtered = &schema.FilteredInfo{Count: a.count, First: a.first, Last: a.last, Kinds: kinds}
		t.nevents++
	}
	t.facc = t.facc[:0]
}

func (t *Transformer) procEvent(r *Record, e *schema.Event) {
	ev := &r.Proc
	h := t.holder()
	h.stream = streamOf(r)
	*e = schema.Event{Version: schema.EventVersion, Kind: schema.KindOf(ev.What), MonoNS: ev.TimestampNS,
		Time: t.clock.Wall(ev.TimestampNS), Host: t.host, Stream: &h.stream}
	switch ev.What {
	case schema.ProcEventNone:
		h.ack = schema.AckInfo{Err: ev.Ack.Err}
		e.Ack = &h.ack
	case schema.ProcEventFork:
		h.fork = ev.Fork
		e.Fork = &h.fork
	case schema.ProcEventExec:
		h.exec = ev.Exec
		e.Exec = &h.exec
	case schema.ProcEventUID:
		h.id = ev.ID
		e.UID = &h.id
	case schema.ProcEventGID:
		h.id = ev.ID
		e.GID = &h.id
	case schema.ProcEventSID:
		h.sid = ev.SID
		e.SID = &h.sid
	case schema.ProcEventPtrace:
		h.ptrace = ev.Ptrace
		e.Ptrace = &h.ptrace
	case schema.ProcEventComm:
		h.comm = schema.CommInfo{PID: ev.Comm.PID, TGID: ev.Comm.TGID, Comm: validUTF8(ev.Comm.Name())}
		e.Comm = &h.comm
	case schema.ProcEventCoredump:
		h.coredump = ev.Coredump
		e.Coredump = &h.coredump
	case schema.ProcEventExit:
		x := ev.Exit
		h.exit = schema.ExitInfo{PID: x.PID, TGID: x.TGID, ParentPID: x.ParentPID, ParentTGID: x.ParentTGID,
			ExitCode: x.ExitCode, ExitSignal: int32(x.ExitSignal), CoreDumped: x.CoreDumped()}
		switch {
		case x.Exited():
			h.status = x.Status()
			h.exit.ExitStatus = &h.status
		case x.Signaled():
			h.status = x.Signal()
			h.exit.Signal = &h.status
		}
		e.Exit = &h.exit
	}
	if t.enrich != nil && ev.What != schema.ProcEventNone {
		e.Process = t.enrich.Process(ev)
		sanitize(e.Process)
	}
}

// validUTF8 replaces invalid UTF-8 (names and paths are bytes to the
// kernel) with U+FFFD, so that every encoding carries the same string.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func sanitize(p *schema.Process) {
	if p == nil {
		return
	}
	p.Comm, p.Exe, p.Cwd, p.Cgroup = validUTF8(p.Comm), validUTF8(p.Exe), validUTF8(p.Cwd), validUTF8(p.Cgroup)
	for i, a := range p.Cmdline {
		p.Cmdline[i] = validUTF8(a)
	}
	for i := range p.Ancestors {
		p.Ancestors[i].Comm, p.Ancestors[i].Exe = validUTF8(p.Ancestors[i].Comm), validUTF8(p.Ancestors[i].Exe)
	}
}
