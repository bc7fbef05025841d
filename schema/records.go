package schema

import (
	"crypto/rand"
	hexenc "encoding/hex"
	"sync/atomic"
	"time"
)

// Records numbers the records a run makes itself (gap, overrun, malformed,
// forged, dropped, filtered, stream_closed, corrupt): each gets the run's id and the next number of one
// sequence shared by every maker, so that (run, seq) is unique per run
// whoever made the record. Create one per run and give it to every maker
// (the transform, the delivery runtime). Safe for concurrent use.
type Records struct {
	run  string
	host *Host
	seq  atomic.Uint64
}

// NewRecords returns the numbering of a run on host. run identifies the run
// in record ids; empty: 8 random bytes, hex.
func NewRecords(run string, host Host) *Records {
	if run == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		run = hexenc.EncodeToString(b[:])
	}
	return &Records{run: run, host: &host}
}

// Run returns the run's id.
func (r *Records) Run() string { return r.run }

// Host returns the host identity every record carries (one pointer, shared).
func (r *Records) Host() *Host { return r.host }

// Made returns how many records were numbered so far.
func (r *Records) Made() uint64 { return r.seq.Load() }

// New returns a record of kind, timed now and numbered; the caller sets
// the kind's member (Gap, Overrun, ...).
func (r *Records) New(kind Kind) Event {
	return Event{Version: EventVersion, Kind: kind, Time: time.Now(), Host: r.host,
		Record: &Record{Run: r.run, Seq: r.seq.Add(1)}}
}

// Dropped returns a record stating that count events were not delivered to
// the sink named sink, for reason (queue_full_<policy>, sink_failed).
func (r *Records) Dropped(count uint64, reason, sink string) Event {
	e := r.New(KindDropped)
	e.Dropped = &DroppedInfo{Count: count, Reason: reason, Sink: sink}
	return e
}

// Gap returns a record stating that the numbers expected .. got-1 of
// stream s (its epoch; Seq is set to got) are missing, missing of them, for
// reason ("" within a run, GapRestart, GapSpoolCorrupt).
func (r *Records) Gap(s Stream, expected, got uint32, missing uint64, reason string) Event {
	e := r.New(KindGap)
	s.Seq, s.Ack = got, 0
	e.Stream = &s
	e.Gap = &GapInfo{Expected: expected, Got: got, Missing: missing, Reason: reason}
	return e
}

// Corrupt returns a record stating that the spool skipped bytes bytes of
// file from byte offset on that held no valid records, for reason ("crc
// mismatch", "torn tail", "bad length", ...).
func (r *Records) Corrupt(file string, offset, bytes int64, reason string) Event {
	e := r.New(KindCorrupt)
	e.Corrupt = &CorruptInfo{File: file, Offset: offset, Bytes: bytes, Reason: reason}
	return e
}

// SizeEstimate estimates the bytes e takes in memory and encoded, for the
// bounds of queues and batches: 256, plus what its variable parts hold.
func (e *Event) SizeEstimate() int64 {
	n := int64(256)
	if p := e.Process; p != nil {
		n += int64(len(p.Exe) + len(p.Cwd) + len(p.Cgroup) + 64*len(p.Ancestors))
		n += int64(len(p.ExecID) + len(p.ParentExecID) + len(p.PrevExecID)) // 22 bytes each when set
		for _, a := range p.Cmdline {
			n += int64(len(a)) + 16
		}
		for i := range p.Ancestors {
			n += int64(len(p.Ancestors[i].ExecID))
		}
	}
	if e.Raw != nil {
		n += int64(len(e.Raw.Payload))
	}
	if e.Malformed != nil {
		n += int64(len(e.Malformed.Data))
	}
	return n
}
