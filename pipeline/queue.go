package pipeline

import (
	"sync"

	"github.com/cnstream/cnstream/schema"
)

// Policy says what a full sink queue does with the next event.
type Policy uint8

const (
	// Block (default) waits for room: pressure goes back to the reader and
	// then to the kernel, whose drops become overrun and gap records.
	Block Policy = iota
	// DropNewest discards the incoming event.
	DropNewest
	// DropOldest discards the oldest queued event to make room.
	DropOldest
)

func (p Policy) String() string {
	return [...]string{"block", "drop_newest", "drop_oldest"}[p]
}

// ParsePolicy returns the Policy named s.
func ParsePolicy(s string) (Policy, bool) {
	for p := Block; p <= DropOldest; p++ {
		if p.String() == s {
			return p, true
		}
	}
	return Block, false
}

// queue is a bounded FIFO of events, limited in events and in (estimated)
// bytes, with counters of what its policy dropped. One producer (the
// transform goroutine) and one consumer (the sink worker).
type queue struct {
	mu       sync.Mutex
	notEmpty sync.Cond
	notFull  sync.Cond
	buf      []schema.Event // ring
	head, n  int
	bytes    int64
	maxBytes int64
	policy   Policy
	closed   bool // no more pushes; the consumer drains
	aborted  bool // the producer gives up waiting (shutdown deadline)

	// dropped counts events discarded by the policy since the consumer last
	// took them (takeDropped), so that it can emit a dropped record;
	// droppedTotal since the start.
	dropped, droppedTotal uint64
}

func newQueue(maxEvents int, maxBytes int64, p Policy) *queue {
	q := &queue{buf: make([]schema.Event, maxEvents), maxBytes: maxBytes, policy: p}
	q.notEmpty.L = &q.mu
	q.notFull.L = &q.mu
	return q
}

// eventSize estimates an event's memory and encoded size.
func eventSize(e *schema.Event) int64 {
	n := int64(256)
	if p := e.Process; p != nil {
		n += int64(len(p.Exe) + len(p.Cwd) + len(p.Cgroup) + 64*len(p.Ancestors))
		for _, a := range p.Cmdline {
			n += int64(len(a)) + 16
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

func (q *queue) full(size int64) bool {
	return q.n == len(q.buf) || (q.n > 0 && q.bytes+size > q.maxBytes)
}

// push adds e under the queue's policy. It returns false if e was dropped;
// with Block it waits for room (false only when the queue was aborted).
// After abort it takes nothing: the consumer may be gone.
func (q *queue) push(e *schema.Event) bool {
	size := eventSize(e)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.aborted {
		return false // the caller counts it undelivered
	}
	for q.full(size) {
		switch q.policy {
		case DropNewest:
			q.dropped++
			q.droppedTotal++
			return false
		case DropOldest:
			old := &q.buf[q.head]
			q.bytes -= eventSize(old)
			*old = schema.Event{}
			q.head = (q.head + 1) % len(q.buf)
			q.n--
			q.dropped++
			q.droppedTotal++
		default:
			if q.aborted {
				return false // the caller counts it undelivered
			}
			q.notFull.Wait()
		}
	}
	if q.aborted {
		return false // aborted while waiting for room: the consumer may be gone
	}
	q.buf[(q.head+q.n)%len(q.buf)] = *e
	q.n++
	q.bytes += size
	q.notEmpty.Signal()
	return true
}

// take moves up to max events (and about maxBytes) into dst, waiting until
// at least one is queued or the queue is closed and empty (ok false).
func (q *queue) take(dst []schema.Event, max int, maxBytes int64) ([]schema.Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n == 0 && !q.closed {
		q.notEmpty.Wait()
	}
	if q.n == 0 {
		return dst, false
	}
	var bytes int64
	for q.n > 0 && max > 0 {
		e := &q.buf[q.head]
		size := eventSize(e)
		if bytes > 0 && bytes+size > maxBytes {
			break
		}
		dst = append(dst, *e)
		*e = schema.Event{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		q.bytes -= size
		bytes += size
		max--
	}
	q.notFull.Broadcast()
	return dst, true
}

// tryTake is take without waiting.
func (q *queue) tryTake(dst []schema.Event, max int, maxBytes int64) []schema.Event {
	q.mu.Lock()
	empty := q.n == 0
	q.mu.Unlock()
	if empty || max <= len(dst) {
		return dst
	}
	var bytes int64
	for i := range dst {
		bytes += eventSize(&dst[i])
	}
	more, _ := q.take(dst, max-len(dst), maxBytes-bytes)
	return more
}

// wasAborted reports whether the shutdown deadline aborted the queue.
func (q *queue) wasAborted() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.aborted
}

// len returns the queued events and bytes, and the policy's drops so far.
func (q *queue) len() (int, int64, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n, q.bytes, q.droppedTotal
}

// takeDropped returns and resets the policy's drop count.
func (q *queue) takeDropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dropped
	q.dropped = 0
	return d
}

// close ends pushes; the consumer drains what is queued.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.notEmpty.Broadcast()
	q.mu.Unlock()
}

// abort releases a producer blocked on a full queue (shutdown).
func (q *queue) abort() {
	q.mu.Lock()
	q.aborted = true
	q.notFull.Broadcast()
	q.mu.Unlock()
}

// drain removes everything still queued and returns how many events.
func (q *queue) drain() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.n
	for q.n > 0 {
		q.buf[q.head] = schema.Event{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	q.bytes = 0
	q.notFull.Broadcast()
	return n
}
