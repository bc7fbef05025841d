// Sequence tracking
//
// The kernel numbers connector messages per stream: the process-events
// connector keeps one counter per CPU (so a stream is idx, val, cpu), other
// connector users and userspace senders one per sender (idx, val, sender
// port). Counters are u32 and wrap. A Tracker follows each stream and says,
// for every message, whether it continues the stream, leaves a gap (and how
// many numbers are missing), repeats or arrives late, or restarts the stream.
// A Tracker is not safe for concurrent use: one goroutine owns it.

package transform

// StreamKey identifies a sequence stream.
type StreamKey struct {
	Idx, Val uint32
	// CPU is proc_event.cpu for the process-events connector, 0 otherwise.
	CPU uint32
	// Sender is the sender's port id for other connector ids, 0 for proc.
	Sender uint32
}

// Verdict classifies one observed sequence number.
type Verdict uint8

const (
	InOrder   Verdict = iota // the expected next number
	First                    // the first number seen on the stream
	Gap                      // numbers were skipped: Observation.Missing of them
	Duplicate                // at or behind the expected number, within the window
	Restart                  // far behind: the sender restarted; the stream starts over
)

func (v Verdict) String() string {
	return [...]string{"in_order", "first", "gap", "duplicate", "restart"}[v]
}

// Observation is the Tracker's answer for one message.
type Observation struct {
	Verdict  Verdict
	Expected uint32 // the number that was expected (Gap, Duplicate, Restart)
	Missing  uint64 // numbers skipped (Gap)
	// Epoch counts the stream's wraps past 2^32 and restarts before this
	// message: (stream, epoch, seq) identifies a message for the lifetime of
	// the Tracker, even after the u32 counter wraps.
	Epoch uint32
}

// MaxGap is the largest jump forward taken as a gap; a larger one (more
// than a billion numbers missing: 18 minutes of total loss at 1M events/s)
// is taken as a restart of the sender's counter. u32 sequence numbers cannot
// tell the two apart; this bound keeps a restart from becoming a
// billions-long gap.
const MaxGap = 1 << 30

// RestartWindow is how far behind the expected number a message may be and
// still count as a duplicate or late arrival; anything further back is taken
// as a restart of the sender's counter, never as a 4-billion gap.
const RestartWindow = 1 << 20

// StreamStats are the counters of one stream.
type StreamStats struct {
	Key        StreamKey
	First      uint32 // first number seen (after the last restart)
	Last       uint32 // highest number seen, in u32 wrap order
	Seen       uint64 // messages observed (duplicates included)
	Missing    uint64 // numbers skipped, summed over all gaps
	Gaps       uint64 // gap count
	Duplicates uint64
	Restarts   uint64
	Epoch      uint32 // wraps and restarts so far
}

// Span is the count of numbers from First to Last inclusive: the messages
// the sender produced on this stream while it was watched.
func (s StreamStats) Span() uint64 { return uint64(s.Last-s.First) + 1 }

// Tracker follows sequence streams.
type Tracker struct {
	streams map[StreamKey]*StreamStats
	order   []StreamKey
}

// NewTracker returns an empty Tracker.
func NewTracker() *Tracker { return &Tracker{streams: make(map[StreamKey]*StreamStats)} }

// Observe records seq on stream k.
func (t *Tracker) Observe(k StreamKey, seq uint32) Observation {
	s := t.streams[k]
	if s == nil {
		s = &StreamStats{Key: k, First: seq, Last: seq, Seen: 1}
		t.streams[k] = s
		t.order = append(t.order, k)
		return Observation{Verdict: First}
	}
	s.Seen++
	next := s.Last + 1
	switch d := seq - next; {
	case d == 0:
		s.advance(seq)
		return Observation{Verdict: InOrder, Epoch: s.Epoch}
	case d < MaxGap: // ahead of the expected number (u32 arithmetic handles wrap)
		s.advance(seq)
		s.Missing += uint64(d)
		s.Gaps++
		return Observation{Verdict: Gap, Expected: next, Missing: uint64(d), Epoch: s.Epoch}
	case next-seq <= RestartWindow:
		s.Duplicates++
		e := s.Epoch
		if seq > s.Last && e > 0 { // from before the last wrap
			e--
		}
		return Observation{Verdict: Duplicate, Expected: next, Epoch: e}
	default:
		s.Restarts++
		s.Epoch++
		s.First, s.Last = seq, seq
		return Observation{Verdict: Restart, Expected: next, Epoch: s.Epoch}
	}
}

// advance moves the stream forward to seq, counting a wrap past 2^32.
func (s *StreamStats) advance(seq uint32) {
	if seq < s.Last {
		s.Epoch++
	}
	s.Last = seq
}

// Reset forgets every stream: call it when the numbering changed for all of
// them, such as a new boot id.
func (t *Tracker) Reset() {
	clear(t.streams)
	t.order = t.order[:0]
}

// Streams returns the counters of every stream, in order of first appearance.
func (t *Tracker) Streams() []StreamStats {
	out := make([]StreamStats, 0, len(t.order))
	for _, k := range t.order {
		out = append(out, *t.streams[k])
	}
	return out
}

// Totals sums the counters over all streams.
func (t *Tracker) Totals() (gaps, missing, duplicates, restarts uint64) {
	for _, s := range t.streams {
		gaps += s.Gaps
		missing += s.Missing
		duplicates += s.Duplicates
		restarts += s.Restarts
	}
	return
}
