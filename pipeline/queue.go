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
	// Spool takes the sink's events from the pipeline's disk spool
	// (DeliveryConfig.Spool), through a cursor of its own that moves on
	// the sink's acknowledgements: what the sink did not acknowledge is
	// delivered again after a restart; a failing sink is retried until
	// it recovers or the shutdown deadline, never given up on. The
	// spool's when_full says what a full spool does.
	Spool
)

func (p Policy) String() string {
	return [...]string{"block", "drop_newest", "drop_oldest", "spool"}[p]
}

// ParsePolicy returns the Policy named s.
func ParsePolicy(s string) (Policy, bool) {
	for p := Block; p <= Spool; p++ {
		if p.String() == s {
			return p, true
		}
	}
	return Block, false
}

// Queue is one sink's buffer between Delivery.Push and the sink's worker:
// one producer (the goroutine calling Push) and one consumer (the worker).
// The memory queue (NewMemoryQueue) is the default; a durable spool can
// implement it too, advancing its cursor on Ack.
type Queue interface {
	// Push adds a copy of *e under the queue's policy and reports whether
	// it was kept. A policy drop is counted by the queue (TakeDropped,
	// Stats); after Abort nothing is kept and the caller counts e
	// undelivered. With Block it waits for room until Abort. A policy
	// never drops a loss record (schema.Kind.IsLoss): under DropNewest
	// and DropOldest it takes the place of a queued event (the newest,
	// the oldest), which is counted dropped, or, when the queue holds
	// records only, it is kept beyond the bound.
	Push(e *schema.Event) bool
	// Take appends up to max events (and about maxBytes) to dst, waiting
	// until at least one is queued; ok is false once the queue is closed
	// and empty.
	Take(dst []schema.Event, max int, maxBytes int64) (out []schema.Event, ok bool)
	// TryTake is Take without waiting; max and maxBytes include what dst
	// already holds.
	TryTake(dst []schema.Event, max int, maxBytes int64) []schema.Event
	// Ack says the oldest n events taken and not yet acked are done:
	// delivered, or given up and stated by a dropped record. Events taken
	// and never acked (the shutdown deadline) are what a durable queue
	// delivers again on its next run. The memory queue forgets events when
	// they are taken: Ack is a no-op there.
	Ack(n int)
	// TakeDropped returns, and resets, the policy's drops since the last
	// call: the consumer states them in a dropped record.
	TakeDropped() uint64
	// Stats returns what is queued now and the policy's drops so far.
	Stats() QueueStats
	// Close ends pushes: the consumer takes what is queued, then Take
	// reports !ok.
	Close()
	// Abort is the shutdown deadline: it releases a Push waiting for room,
	// and later pushes keep nothing.
	Abort()
	// Aborted reports whether Abort was called.
	Aborted() bool
	// Drain removes what is still queued (not delivered: the deadline
	// passed) and returns how many events that was.
	Drain() int
}

// QueueStats is a snapshot of a Queue.
type QueueStats struct {
	Events  int    // queued now
	Bytes   int64  // their estimated bytes
	Dropped uint64 // by the policy, since the start
}

// memQueue is a bounded FIFO of events in memory, limited in events and in
// (estimated) bytes, with counters of what its policy dropped.
type memQueue struct {
	mu        sync.Mutex
	notEmpty  sync.Cond
	notFull   sync.Cond
	buf       []schema.Event // ring; grows past maxEvents only for loss records
	head, n   int
	bytes     int64
	maxEvents int
	maxBytes  int64
	policy    Policy
	closed    bool // no more pushes; the consumer drains
	aborted   bool // the producer gives up waiting (shutdown deadline)

	// dropped counts events discarded by the policy since the consumer last
	// took them (TakeDropped), so that it can emit a dropped record;
	// droppedTotal since the start.
	dropped, droppedTotal uint64
}

// NewMemoryQueue returns a memory Queue of at most maxEvents events and
// about maxBytes estimated bytes (at least one event is always taken) under
// policy p. The queue keeps copies of the events (struct copies: what they
// point to is shared, and must not change).
func NewMemoryQueue(maxEvents int, maxBytes int64, p Policy) Queue {
	return newMemQueue(maxEvents, maxBytes, p)
}

func newMemQueue(maxEvents int, maxBytes int64, p Policy) *memQueue {
	q := &memQueue{buf: make([]schema.Event, max(1, maxEvents)), maxEvents: max(1, maxEvents), maxBytes: maxBytes, policy: p}
	q.notEmpty.L = &q.mu
	q.notFull.L = &q.mu
	return q
}

// eventSize estimates an event's memory and encoded size.
func eventSize(e *schema.Event) int64 { return e.SizeEstimate() }

func (q *memQueue) full(size int64) bool {
	return q.n >= q.maxEvents || (q.n > 0 && q.bytes+size > q.maxBytes)
}

// at returns the k-th queued event (0 the oldest).
func (q *memQueue) at(k int) *schema.Event { return &q.buf[(q.head+k)%len(q.buf)] }

// dropEvent drops the newest (or the oldest) queued event that is not a
// loss record, moving the loss records queued after (or before) it by one
// so that order is kept, and counts it. It reports false if the queue
// holds loss records only.
func (q *memQueue) dropEvent(newest bool) bool {
	k := -1
	if newest {
		for i := q.n - 1; i >= 0 && k < 0; i-- {
			if !q.at(i).Kind.IsLoss() {
				k = i
			}
		}
	} else {
		for i := 0; i < q.n && k < 0; i++ {
			if !q.at(i).Kind.IsLoss() {
				k = i
			}
		}
	}
	if k < 0 {
		return false
	}
	q.bytes -= eventSize(q.at(k))
	if newest {
		for i := k; i < q.n-1; i++ {
			*q.at(i) = *q.at(i + 1)
		}
		*q.at(q.n - 1) = schema.Event{}
	} else {
		for i := k; i > 0; i-- {
			*q.at(i) = *q.at(i - 1)
		}
		*q.at(0) = schema.Event{}
		q.head = (q.head + 1) % len(q.buf)
	}
	q.n--
	q.dropped++
	q.droppedTotal++
	return true
}

// grow doubles the ring (a queue of loss records only, past its bound).
func (q *memQueue) grow() {
	buf := make([]schema.Event, 2*len(q.buf))
	for i := range q.n {
		buf[i] = *q.at(i)
	}
	q.buf, q.head = buf, 0
}

// Push adds e under the queue's policy. It returns false if e was dropped;
// with Block it waits for room (false only when the queue was aborted).
// After abort it takes nothing: the consumer may be gone.
func (q *memQueue) Push(e *schema.Event) bool {
	size := eventSize(e)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.aborted {
		return false // the caller counts it undelivered
	}
	loss := e.Kind.IsLoss()
room:
	for q.full(size) {
		switch q.policy {
		case DropNewest, DropOldest:
			if loss {
				// A loss record is never dropped: it takes an event's
				// place, or goes past the bound.
				if !q.dropEvent(q.policy == DropNewest) {
					break room
				}
				continue
			}
			if q.policy == DropNewest || !q.dropEvent(false) {
				q.dropped++
				q.droppedTotal++
				return false
			}
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
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = *e
	q.n++
	q.bytes += size
	q.notEmpty.Signal()
	return true
}

// Take moves up to max events (and about maxBytes) into dst, waiting until
// at least one is queued or the queue is closed and empty (ok false).
func (q *memQueue) Take(dst []schema.Event, max int, maxBytes int64) ([]schema.Event, bool) {
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

// TryTake is Take without waiting.
func (q *memQueue) TryTake(dst []schema.Event, max int, maxBytes int64) []schema.Event {
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
	more, _ := q.Take(dst, max-len(dst), maxBytes-bytes)
	return more
}

// Aborted reports whether the shutdown deadline aborted the queue.
func (q *memQueue) Aborted() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.aborted
}

// Stats returns the queued events and bytes, and the policy's drops so far.
func (q *memQueue) Stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return QueueStats{Events: q.n, Bytes: q.bytes, Dropped: q.droppedTotal}
}

// Ack is a no-op: taken events are already gone from memory.
func (q *memQueue) Ack(int) {}

// TakeDropped returns and resets the policy's drop count.
func (q *memQueue) TakeDropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.dropped
	q.dropped = 0
	return d
}

// Close ends pushes; the consumer drains what is queued.
func (q *memQueue) Close() {
	q.mu.Lock()
	q.closed = true
	q.notEmpty.Broadcast()
	q.mu.Unlock()
}

// Abort releases a producer blocked on a full queue (shutdown).
func (q *memQueue) Abort() {
	q.mu.Lock()
	q.aborted = true
	q.notFull.Broadcast()
	q.mu.Unlock()
}

// Drain removes everything still queued and returns how many events.
func (q *memQueue) Drain() int {
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
