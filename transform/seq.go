// Sequence tracking
//
// The kernel numbers connector messages per stream: the process-events
// connector keeps one counter per CPU (so a stream is idx, val, cpu), other
// connector users and userspace senders one per sender (idx, val, sender
// port). Counters are u32 and wrap. A Tracker follows each stream and says,
// for every message, whether it continues the stream, leaves a gap (and how
// many numbers are missing), repeats or arrives late, or restarts the stream.
// A Tracker is not safe for concurrent use: one goroutine owns it.
//
// # Bounded state
//
// Kernel streams (sender port 0: one per CPU for process events, one per
// kernel connector id otherwise) are few and followed for the Tracker's
// lifetime. Userspace senders are not bounded by anything but the senders:
// their streams are kept in a list ordered by last use, a stream idle for
// TrackerConfig.IdleTimeout is closed, and when TrackerConfig.MaxStreams are
// followed the least recently used one is evicted to make room. Each close
// is reported (Tracker.Closed, a stream_closed record) with the last number
// seen. Work per message and per batch is O(1) plus the streams closed: no
// batch scans all streams.
//
// # Epochs
//
// (boot, stream, epoch, seq) is an event's identity. For kernel streams the
// epoch counts the wraps (and restarts) of the counter since the Tracker
// started: the kernel's counters live as long as the boot, so a process
// event gets the same id from every run of cnstream within a boot. Only
// after a CPU's counter wrapped (2^32 events on that CPU) can a run started
// later give an id that a run before the wrap gave.
//
// For userspace senders the epoch is a time: the millisecond of
// CLOCK_MONOTONIC (mod 2^32) at which the Tracker began following this
// numbering, or one more than the stream's previous epoch when that is not
// earlier. A new epoch starts when the stream is first seen, when its counter
// wraps, when the sender restarts its numbering (any number at or behind the
// last one: netlink multicast never repeats a message, so a number going
// back is a restart), and when a closed stream reappears. Epochs of one
// stream strictly increase within a run, also across closes (a table of the
// highest epoch given to streams that were forgotten, by hash of the key),
// and a later run starts from a later millisecond, so ids do not repeat
// across runs or restarts of a sender's numbering. The limits: a stream
// restarting more than once a millisecond runs ahead of the clock, and a
// run started within that lead could meet its epochs again; epochs repeat
// after 2^32 ms (49.7 days), for the same sender port and number only.
//
// # Resuming a previous run
//
// A run of cnstream that restarts on the same boot can take over the streams
// of the run before it (Tracker.Resume, transform.Config.Resume): each
// stream is followed as if the last number the previous run handed to its
// spool had just been seen, in that run's epoch. The first message of a
// resumed stream is then in order, a gap of the numbers that passed while
// cnstream was not running (Observation.Resumed: a gap record of reason
// schema.GapRestart), or goes back (the rules above: a duplicate or a
// restart). A resumed stream never gets the verdict First, and kernel
// streams keep counting the previous run's epochs, so ids continue across
// the restart.

package transform

import (
	"cmp"
	"slices"
	"time"

	"github.com/cnstream/cnstream/source"
)

// StreamKey identifies a sequence stream.
type StreamKey struct {
	Idx, Val uint32
	// CPU is proc_event.cpu for the process-events connector, 0 otherwise.
	CPU uint32
	// Sender is the sender's port id for other connector ids, 0 for proc.
	Sender uint32
}

// Userspace reports whether the stream's sender is a userspace socket (a
// port id other than the kernel's 0).
func (k StreamKey) Userspace() bool { return k.Sender != 0 }

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
	// Epoch tells apart the stream's numberings: (stream, epoch, seq)
	// identifies a message, even after the u32 counter wraps or the sender
	// restarts it (see the package's Epochs section).
	Epoch uint32
	// Resumed is true for the first message of a stream taken over from a
	// previous run (Tracker.Resume), and only for it: with Gap, the missing
	// numbers passed while cnstream was not running.
	Resumed bool
}

// MaxGap is the largest jump forward taken as a gap; a larger one (more
// than a billion numbers missing: 18 minutes of total loss at 1M events/s)
// is taken as a restart of the sender's counter. u32 sequence numbers cannot
// tell the two apart; this bound keeps a restart from becoming a
// billions-long gap.
const MaxGap = 1 << 30

// RestartWindow is how far behind the expected number a message of a kernel
// stream may be and still count as a duplicate or late arrival; anything
// further back is taken as a restart of the counter, never as a 4-billion
// gap. On a userspace sender's stream any number going back is a restart.
const RestartWindow = 1 << 20

// Defaults of TrackerConfig.
const (
	DefaultIdleTimeout = 10 * time.Minute
	DefaultMaxStreams  = 16384
)

// Reasons of a Closed stream.
const (
	ClosedIdle    = "idle"
	ClosedEvicted = "evicted"
)

// TrackerConfig bounds a Tracker's userspace streams.
type TrackerConfig struct {
	// IdleTimeout closes a userspace sender's stream that had no message
	// for this long. Default DefaultIdleTimeout (10 minutes); negative:
	// never.
	IdleTimeout time.Duration
	// MaxStreams caps the userspace senders' streams followed at once;
	// at the cap the least recently used one is evicted. Default
	// DefaultMaxStreams (16384, a few MiB); negative: no cap.
	MaxStreams int
	// Now returns CLOCK_MONOTONIC in nanoseconds: the clock of idle
	// timeouts and of userspace epochs. Default: source.Monotonic, read once
	// and advanced by Go's monotonic clock.
	Now func() uint64
}

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
	Filtered   uint64 // messages a filter removed (Tracker.AddFiltered)
	Epoch      uint32 // the current epoch
}

// Span is the count of numbers from First to Last inclusive: the messages
// the sender produced on this stream while it was watched.
func (s StreamStats) Span() uint64 { return uint64(s.Last-s.First) + 1 }

// Closed is a stream the Tracker stopped following.
type Closed struct {
	StreamStats
	Reason string // ClosedIdle or ClosedEvicted
}

type stream struct {
	StreamStats
	lastSeen   uint64 // Tracker.now at the last message
	born       uint64 // order of first appearance
	prev, next *stream
	resumed    bool // Resume made it and no message was observed since
}

// floorBuckets is the size of the table of epochs given to forgotten
// streams: 4096 buckets of 5 bytes.
const floorBuckets = 4096

// Tracker follows sequence streams.
type Tracker struct {
	streams map[StreamKey]*stream
	// head is the most recently used userspace stream, tail the least.
	head, tail *stream
	nuser      int
	idle       uint64 // ns; 0: never
	max        int    // 0: no cap
	clock      func() uint64
	now        uint64
	born       uint64
	closed     []Closed

	floor    [floorBuckets]uint32
	floorSet [floorBuckets]bool

	gaps, missing, duplicates, restarts, idleClosed, evicted uint64
}

// NewTracker returns an empty Tracker with the default TrackerConfig.
func NewTracker() *Tracker { return NewTrackerConfig(TrackerConfig{}) }

// NewTrackerConfig returns an empty Tracker bounded by c.
func NewTrackerConfig(c TrackerConfig) *Tracker {
	t := &Tracker{streams: make(map[StreamKey]*stream), clock: c.Now}
	switch {
	case c.IdleTimeout == 0:
		t.idle = uint64(DefaultIdleTimeout)
	case c.IdleTimeout > 0:
		t.idle = uint64(c.IdleTimeout)
	}
	switch {
	case c.MaxStreams == 0:
		t.max = DefaultMaxStreams
	case c.MaxStreams > 0:
		t.max = c.MaxStreams
	}
	if t.clock == nil {
		t.clock = monotonicClock()
	}
	t.now = t.clock()
	return t
}

// Advance reads the clock and closes the userspace streams idle for the
// idle timeout, oldest first; call it once per batch, before observing the
// batch's messages. The closes are reported by Closed.
func (t *Tracker) Advance() {
	t.now = t.clock()
	if t.idle == 0 {
		return
	}
	for s := t.tail; s != nil && t.now-s.lastSeen >= t.idle; s = t.tail {
		t.forget(s, ClosedIdle)
		t.idleClosed++
	}
}

// Closed appends to dst the streams closed since the last call, and
// forgets them.
func (t *Tracker) Closed(dst []Closed) []Closed {
	dst = append(dst, t.closed...)
	clear(t.closed)
	t.closed = t.closed[:0]
	return dst
}

// Observe records seq on stream k.
func (t *Tracker) Observe(k StreamKey, seq uint32) Observation {
	user := k.Userspace()
	s := t.streams[k]
	if s == nil {
		s = t.add(k, seq, seq)
		s.Seen = 1
		if user {
			s.Epoch = t.newEpoch(k, 0, false)
		}
		return Observation{Verdict: First, Epoch: s.Epoch}
	}
	s.Seen++
	s.lastSeen = t.now
	if user && t.head != s {
		t.unlink(s)
		t.pushFront(s)
	}
	resumed := s.resumed
	s.resumed = false
	next := s.Last + 1
	switch d := seq - next; {
	case d == 0:
		t.advance(s, seq)
		return Observation{Verdict: InOrder, Epoch: s.Epoch, Resumed: resumed}
	case d < MaxGap: // ahead of the expected number (u32 arithmetic handles wrap)
		t.advance(s, seq)
		s.Missing += uint64(d)
		s.Gaps++
		t.missing += uint64(d)
		t.gaps++
		return Observation{Verdict: Gap, Expected: next, Missing: uint64(d), Epoch: s.Epoch, Resumed: resumed}
	case !user && next-seq <= RestartWindow:
		s.Duplicates++
		t.duplicates++
		e := s.Epoch
		if seq > s.Last && e > 0 { // from before the last wrap
			e--
		}
		return Observation{Verdict: Duplicate, Expected: next, Epoch: e, Resumed: resumed}
	default:
		s.Restarts++
		t.restarts++
		s.Epoch = t.nextEpoch(s)
		s.First, s.Last = seq, seq
		return Observation{Verdict: Restart, Expected: next, Epoch: s.Epoch, Resumed: resumed}
	}
}

// add starts following stream k at first .. last (Seen and Epoch zero): a
// userspace stream goes to the front of the list, evicting the least
// recently used one at the cap.
func (t *Tracker) add(k StreamKey, first, last uint32) *stream {
	user := k.Userspace()
	if user && t.max > 0 && t.nuser >= t.max {
		t.forget(t.tail, ClosedEvicted)
		t.evicted++
	}
	t.born++
	s := &stream{StreamStats: StreamStats{Key: k, First: first, Last: last}, lastSeen: t.now, born: t.born}
	if user {
		t.pushFront(s)
		t.nuser++
	}
	t.streams[k] = s
	return s
}

// Resume follows stream k as if last had just been seen in epoch: the
// stream a previous run of cnstream on this boot followed, last being the
// last number that run handed on (see the package's Resuming section). Its
// counters start at First = Last = last, Seen 0 (so Span counts last,
// which the previous run saw). A userspace stream enters the list of
// recently used streams like a new one (evicting one at the cap, stated by
// a stream_closed record in the next batch), and its epoch raises the
// table of epochs given out, so that later epochs of k stay above it. A
// stream already followed is left as it is. Call Resume before the first
// batch.
func (t *Tracker) Resume(k StreamKey, epoch, last uint32) {
	if t.streams[k] != nil {
		return
	}
	s := t.add(k, last, last)
	s.Epoch = epoch
	s.resumed = true
	if k.Userspace() {
		t.raiseFloor(k, epoch)
	}
}

// advance moves the stream forward to seq, starting a new epoch when the
// counter wraps past 2^32.
func (t *Tracker) advance(s *stream, seq uint32) {
	if seq < s.Last {
		s.Epoch = t.nextEpoch(s)
	}
	s.Last = seq
}

func (t *Tracker) nextEpoch(s *stream) uint32 {
	if !s.Key.Userspace() {
		return s.Epoch + 1
	}
	return t.newEpoch(s.Key, s.Epoch, true)
}

// newEpoch returns a userspace stream's next epoch: the current millisecond,
// unless that is not after the stream's current epoch (cur, when has) or
// the highest epoch given to a forgotten stream of the same hash bucket:
// then one more than that.
func (t *Tracker) newEpoch(k StreamKey, cur uint32, has bool) uint32 {
	e := uint32(t.now / 1e6)
	// ahead reports whether b is at or after a by less than 2^30 ms (12
	// days): older values, across the 49.7-day wrap, no longer count.
	ahead := func(a, b uint32) bool { return b-a < 1<<30 }
	if has && ahead(e, cur) {
		e = cur + 1
	}
	if h := bucket(k); t.floorSet[h] && ahead(e, t.floor[h]) {
		e = t.floor[h] + 1
	}
	return e
}

func bucket(k StreamKey) int {
	h := uint32(2166136261)
	for _, v := range [...]uint32{k.Idx, k.Val, k.CPU, k.Sender} {
		h = (h ^ v) * 16777619
	}
	return int(h>>16^h) % floorBuckets
}

// forget closes s: it leaves the map and the list, its epoch raises its
// bucket's floor, and a Closed is queued.
func (t *Tracker) forget(s *stream, reason string) {
	delete(t.streams, s.Key)
	t.unlink(s)
	t.nuser--
	t.raiseFloor(s.Key, s.Epoch)
	t.closed = append(t.closed, Closed{StreamStats: s.StreamStats, Reason: reason})
}

// raiseFloor makes epoch the floor of k's bucket unless the floor is later.
func (t *Tracker) raiseFloor(k StreamKey, epoch uint32) {
	h := bucket(k)
	if !t.floorSet[h] || epoch-t.floor[h] < 1<<31 {
		t.floor[h], t.floorSet[h] = epoch, true
	}
}

func (t *Tracker) pushFront(s *stream) {
	s.prev, s.next = nil, t.head
	if t.head != nil {
		t.head.prev = s
	}
	t.head = s
	if t.tail == nil {
		t.tail = s
	}
}

func (t *Tracker) unlink(s *stream) {
	if s.prev != nil {
		s.prev.next = s.next
	} else if t.head == s {
		t.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else if t.tail == s {
		t.tail = s.prev
	}
	s.prev, s.next = nil, nil
}

// AddFiltered counts n messages of stream k that a filter removed; a
// stream no longer followed is ignored.
func (t *Tracker) AddFiltered(k StreamKey, n uint64) {
	if s := t.streams[k]; s != nil {
		s.Filtered += n
	}
}

// Reset forgets every stream: call it when the numbering changed for all of
// them, such as a new boot id. Nothing is reported closed.
func (t *Tracker) Reset() {
	clear(t.streams)
	t.head, t.tail, t.nuser = nil, nil, 0
	t.floor, t.floorSet = [floorBuckets]uint32{}, [floorBuckets]bool{}
}

// Len returns the number of streams followed.
func (t *Tracker) Len() int { return len(t.streams) }

// Streams returns the counters of the streams followed now (closed ones are
// gone), in order of first appearance. It sorts: call it for reports, not
// per batch.
func (t *Tracker) Streams() []StreamStats {
	all := make([]*stream, 0, len(t.streams))
	for _, s := range t.streams {
		all = append(all, s)
	}
	slices.SortFunc(all, func(a, b *stream) int { return cmp.Compare(a.born, b.born) })
	out := make([]StreamStats, len(all))
	for i, s := range all {
		out[i] = s.StreamStats
	}
	return out
}

// Totals sums the counters over all streams the Tracker followed, closed
// ones included. It is O(1).
func (t *Tracker) Totals() (gaps, missing, duplicates, restarts uint64) {
	return t.gaps, t.missing, t.duplicates, t.restarts
}

// Closes returns how many userspace streams were closed for being idle and
// how many were evicted at the cap.
func (t *Tracker) Closes() (idle, evicted uint64) { return t.idleClosed, t.evicted }

// monotonicClock returns CLOCK_MONOTONIC in nanoseconds, read once and
// advanced by Go's monotonic clock (no system call per batch). Where the
// kernel clock cannot be read, it counts from 0 at the call.
func monotonicClock() func() uint64 {
	base, err := source.Monotonic()
	if err != nil {
		base = 0
	}
	start := time.Now()
	return func() uint64 { return base + uint64(time.Since(start)) }
}
