package transform

import (
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
)

// RecordKind says what a Record holds.
type RecordKind uint8

const (
	KindProc         RecordKind = iota + 1 // a process event (Proc)
	KindRaw                                // a message of another connector id (Cn)
	KindGap                                // sequence numbers missing on Stream (Obs)
	KindOverrun                            // the kernel dropped datagrams (Drops, ENOBUFS)
	KindForged                             // datagrams rejected by the sender check (Count)
	KindMalformed                          // a datagram that does not decode (Err)
	KindNetlinkError                       // an NLMSG_ERROR message (Errno)
	KindClosed                             // the Tracker stopped following a stream (Closed)
)

var kindNames = [...]string{"", "proc", "raw", "gap", "overrun", "forged", "malformed", "netlink_error", "closed"}

func (k RecordKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Record is one item of the decoded stream: an event or a statement about
// loss. Only the fields of its Kind are meaningful. Slices alias the batch's
// buffers: use a Record before the next ReadBatch, or copy what you keep.
type Record struct {
	Kind    RecordKind
	Addr    source.Addr
	Netlink schema.NetlinkHeader
	Cn      schema.CnMsg
	Proc    schema.ProcEvent
	Stream  StreamKey
	Obs     Observation // sequence verdict of Proc/Raw; details of Gap
	Seq     uint32      // for Gap: the number that revealed it

	Drops   uint64 // Overrun: datagrams the kernel dropped
	ENOBUFS uint64 // Overrun: ENOBUFS errors reported
	Count   uint64 // Forged: datagrams rejected
	Errno   int32  // NetlinkError
	Err     error  // Malformed
	Data    []byte // Malformed: the datagram
	Closed  Closed // Closed: the stream, its last counters and why
}

// DecoderStats are a Decoder's counters.
type DecoderStats struct {
	Messages   uint64 // connector messages decoded
	Malformed  uint64 // datagrams or messages that did not decode
	Gaps       uint64
	Missing    uint64
	Duplicates uint64
	Restarts   uint64
	Drops      uint64 // kernel drops reported by the source
	ENOBUFS    uint64
	Forged     uint64
	Closed     uint64 // userspace streams closed after the idle timeout
	Evicted    uint64 // userspace streams evicted at the cap on streams
	Streams    uint64 // streams followed now
}

// A Decoder turns source batches into Records, tracking sequence streams.
// It is owned by one goroutine.
type Decoder struct {
	Tracker *Tracker
	msgs    []schema.NetlinkMessage
	rec     Record
	closed  []Closed
	stats   DecoderStats
}

// NewDecoder returns a Decoder with a new Tracker.
func NewDecoder() *Decoder { return &Decoder{Tracker: NewTracker()} }

// Stats returns the counters so far.
func (d *Decoder) Stats() DecoderStats {
	s := d.stats
	s.Gaps, s.Missing, s.Duplicates, s.Restarts = d.Tracker.Totals()
	s.Closed, s.Evicted = d.Tracker.Closes()
	s.Streams = uint64(d.Tracker.Len())
	return s
}

// DecodeBatch decodes the first n datagrams of b, calling emit for each
// Record in stream order: the streams closed for being idle first, loss
// statements next (the kernel dropped before this batch was read), then
// each message, preceded by a Gap record when its sequence number reveals
// missing messages, and by a Closed record when a new stream evicted one.
// The *Record passed to emit is reused: copy it to keep it.
func (d *Decoder) DecodeBatch(b *source.Batch, n int, emit func(*Record)) {
	d.Tracker.Advance()
	d.emitClosed(emit)
	if b.Dropped > 0 || b.ENOBUFS > 0 {
		d.stats.Drops += b.Dropped
		d.stats.ENOBUFS += b.ENOBUFS
		d.rec = Record{Kind: KindOverrun, Drops: b.Dropped, ENOBUFS: b.ENOBUFS}
		emit(&d.rec)
	}
	if b.Forged > 0 {
		d.stats.Forged += b.Forged
		d.rec = Record{Kind: KindForged, Count: b.Forged}
		emit(&d.rec)
	}
	for i := range b.Datagrams[:n] {
		d.DecodeDatagram(&b.Datagrams[i], emit)
	}
}

// DecodeDatagram decodes one datagram (see DecodeBatch).
func (d *Decoder) DecodeDatagram(dg *source.Datagram, emit func(*Record)) {
	if dg.Truncated {
		d.malformed(dg, errTruncated, emit)
		return
	}
	var err error
	d.msgs, err = schema.ParseNetlink(dg.Data, d.msgs[:0])
	for _, m := range d.msgs {
		switch m.Header.Type {
		case schema.NLMsgNoop:
			continue
		case schema.NLMsgError:
			ne, err := schema.DecodeNetlinkError(m.Data)
			if err != nil {
				d.malformed(dg, err, emit)
				continue
			}
			d.rec = Record{Kind: KindNetlinkError, Addr: dg.Addr, Netlink: m.Header, Errno: ne.Errno}
			emit(&d.rec)
			continue
		case schema.NLMsgOverrun:
			d.rec = Record{Kind: KindOverrun, Addr: dg.Addr, Netlink: m.Header}
			emit(&d.rec)
			continue
		}
		cn, err := schema.DecodeCnMsg(m.Data)
		if err != nil {
			d.malformed(dg, err, emit)
			continue
		}
		d.stats.Messages++
		// Fill the reused record field by field: resetting the whole (large)
		// struct per message shows on the hot path. Fields that do not belong
		// to the record's Kind are unspecified.
		r := &d.rec
		r.Kind, r.Addr, r.Netlink, r.Cn = KindRaw, dg.Addr, m.Header, cn
		if cn.ID == schema.ProcID && dg.Addr.PortID == 0 {
			if r.Proc, err = schema.DecodeProcEvent(cn.Data); err != nil {
				d.malformed(dg, err, emit)
				continue
			}
			r.Kind = KindProc
			r.Stream = StreamKey{Idx: cn.ID.Idx, Val: cn.ID.Val, CPU: r.Proc.CPU}
		} else {
			r.Stream = StreamKey{Idx: cn.ID.Idx, Val: cn.ID.Val, Sender: dg.Addr.PortID}
		}
		r.Obs = d.Tracker.Observe(r.Stream, cn.Seq)
		if r.Obs.Verdict == First && r.Stream.Userspace() {
			d.emitClosed(emit) // an eviction made room; r is not touched
		}
		if r.Obs.Verdict == Gap {
			g := Record{Kind: KindGap, Addr: dg.Addr, Stream: r.Stream, Obs: r.Obs, Seq: cn.Seq}
			emit(&g)
		}
		emit(r)
	}
	if err != nil {
		d.malformed(dg, err, emit)
	}
}

// emitClosed emits a Closed record for each stream the Tracker closed.
func (d *Decoder) emitClosed(emit func(*Record)) {
	d.closed = d.Tracker.Closed(d.closed[:0])
	for i := range d.closed {
		c := Record{Kind: KindClosed, Stream: d.closed[i].Key, Closed: d.closed[i]}
		emit(&c)
	}
}

func (d *Decoder) malformed(dg *source.Datagram, err error, emit func(*Record)) {
	d.stats.Malformed++
	d.rec = Record{Kind: KindMalformed, Addr: dg.Addr, Err: err, Data: dg.Data}
	emit(&d.rec)
}

type decodeError string

func (e decodeError) Error() string { return string(e) }

const errTruncated = decodeError("transform: datagram truncated: larger than the receive buffer")
