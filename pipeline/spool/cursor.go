package spool

import (
	"io"
	"path/filepath"

	"github.com/cnstream/cnstream/schema"
)

// Cursor is one sink's position in the spool: it takes events in order
// and moves its acknowledged position only on Ack. One goroutine (the
// sink's worker) takes and acks; Close and Abort are safe from any.
type Cursor struct {
	s    *Spool
	name string
	slot int // its slot in the head file

	// Under s.mu.
	next     uint64   // index of the next record to take
	acked    uint64   // index of the first record not acknowledged
	inflight []uint64 // per item taken and not acked: the position acking it moves to
	gen      uint64   // bumped when next moves under the cursor (DropOldest)
	closed   bool
	aborted  bool

	// The taking goroutine's.
	rd     *segReader
	rdSeg  string // path of rd's segment
	items  []schema.Event
	advs   []uint64
	readTo uint64 // the index readDisk read up to
}

// Name returns the sink's name.
func (c *Cursor) Name() string { return c.name }

// skipTo moves next forward to idx (s.mu held).
func (c *Cursor) skipTo(idx uint64) {
	if c.next < idx {
		c.next = idx
		c.gen++
	}
}

// Take appends up to max items (about maxBytes) to dst: first the records
// the spool made for this sink, then the records from the cursor's
// position on, from memory when the sink keeps up, from disk otherwise.
// It waits until there is one; ok is false once the cursor is closed and
// has nothing left, or aborted.
func (c *Cursor) Take(dst []schema.Event, max int, maxBytes int64) ([]schema.Event, bool) {
	return c.take(dst, max, maxBytes, true)
}

// TryTake is Take without waiting; max and maxBytes include what dst holds.
func (c *Cursor) TryTake(dst []schema.Event, max int, maxBytes int64) []schema.Event {
	if max <= len(dst) {
		return dst
	}
	var b int64
	for i := range dst {
		b += estSize(&dst[i])
	}
	out, _ := c.take(dst, max-len(dst), maxBytes-b, false)
	return out
}

func (c *Cursor) take(dst []schema.Event, max int, maxBytes int64, wait bool) ([]schema.Event, bool) {
	if max <= 0 {
		return dst, true
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if c.aborted {
			return dst, false
		}
		if c.next < s.next {
			if c.next >= s.cache.base && s.cache.n > 0 {
				return c.fromCache(dst, max, maxBytes), true
			}
			// From disk, without the lock.
			gen := c.gen
			segs := make([]segment, len(s.segs)) // sizes and ends as of now
			for i, sg := range s.segs {
				segs[i] = *sg
			}
			limitIdx := s.next
			if s.cache.n > 0 {
				limitIdx = min(limitIdx, s.cache.base)
			}
			from := c.next
			s.mu.Unlock()
			c.readDisk(segs, from, limitIdx, max, maxBytes)
			s.mu.Lock()
			if c.gen != gen || c.aborted {
				continue // moved under us: read again
			}
			if c.readTo > c.next {
				c.next = c.readTo
			}
			if len(c.items) == 0 {
				continue // only records for other sinks
			}
			dst = append(dst, c.items...)
			c.inflight = append(c.inflight, c.advs...)
			clear(c.items)
			return dst, true
		}
		if c.closed || !wait {
			return dst, !c.closed
		}
		s.notEmpty.Wait()
	}
}

// fromCache copies from the memory tail (s.mu held).
func (c *Cursor) fromCache(dst []schema.Event, max int, maxBytes int64) []schema.Event {
	q := &c.s.cache
	var b int64
	for max > 0 && c.next < c.s.next {
		k := int(c.next - q.base)
		if k >= q.n {
			break
		}
		i := (q.head + k) % len(q.ev)
		if !c.mine(&q.ev[i]) {
			c.next++
			continue
		}
		if b > 0 && b+int64(q.sz[i]) > maxBytes {
			break
		}
		dst = append(dst, q.ev[i])
		b += int64(q.sz[i])
		c.next++
		c.inflight = append(c.inflight, c.next)
		max--
	}
	return dst
}

// readDisk fills c.items and c.advs from the segments, from index from to
// limit (exclusive), at most max items: holes in the indices become
// dropped records, corrupt regions corrupt records (both with fixed ids).
func (c *Cursor) readDisk(segs []segment, from, limit uint64, max int, maxBytes int64) {
	c.items, c.advs = c.items[:0], c.advs[:0]
	exp := from
	var b int64
	sawCorrupt := false
	add := func(e schema.Event, adv uint64) {
		c.items = append(c.items, e)
		c.advs = append(c.advs, adv)
		b += estSize(&e)
	}
	hole := func(upTo uint64) {
		reason := "spool_missing"
		if sawCorrupt {
			reason = "spool_corrupt"
		}
		e := c.s.fixedRecord(schema.KindDropped, exp, 0)
		e.Dropped = &schema.DroppedInfo{Count: upTo - exp, Reason: reason, Sink: c.name}
		add(e, upTo)
		c.s.countCorrupt(0)
		exp = upTo
	}
	full := func() bool { return len(c.items) >= max || exp >= limit || (len(c.items) > 0 && b >= maxBytes) }
	for si := 0; si < len(segs) && !full(); si++ {
		seg := &segs[si]
		if seg.end <= exp {
			continue
		}
		if c.rd == nil || c.rdSeg != seg.path || (c.rd.seen && c.rd.last >= exp) {
			c.closeReader()
			r, err := openSegReader(seg.path, seg.size)
			if err != nil {
				continue // gone (deleted): a hole says it
			}
			if r.header() != nil {
				r.close()
				continue
			}
			c.rd, c.rdSeg = r, seg.path
		}
		c.rd.extend(seg.size)
		for !full() {
			rec, reg, err := c.rd.next()
			if reg != nil {
				sawCorrupt = true
				add(c.s.corruptRecord(reg, exp), exp)
				c.s.countCorrupt(1)
			}
			if err == io.EOF || rec == nil {
				break
			}
			if rec.index < exp {
				continue
			}
			if rec.index >= limit {
				hole(limit) // the records before limit are not there
				break
			}
			if rec.index > exp {
				hole(rec.index)
			}
			e, derr := c.rd.decode(rec)
			if derr != nil {
				reg := &corruptRegion{file: filepath.Base(c.rdSeg), off: rec.off, bytes: rec.size, reason: "undecodable: " + derr.Error()}
				sawCorrupt = true
				add(c.s.corruptRecord(reg, exp), exp)
				hole(rec.index + 1)
				continue
			}
			if c.mine(&e) {
				add(e, rec.index+1)
			}
			exp = rec.index + 1
		}
	}
	// Every segment read and records still missing before limit (a
	// segment gone, a tail cut): a hole.
	if !full() {
		hole(limit)
	}
	c.readTo = exp
}

// mine reports whether e is for this cursor's sink: everything but the
// dropped records the spool addressed to another sink (DropOldest).
func (c *Cursor) mine(e *schema.Event) bool {
	return e.Kind != schema.KindDropped || e.Dropped == nil || e.Dropped.Reason != reasonFullDropOldest || e.Dropped.Sink == c.name
}

// Reasons of the spool's dropped records.
const (
	reasonFullDropOldest = "spool_full_drop_oldest"
	reasonWriteFailed    = "spool_write_failed"
)

func (c *Cursor) closeReader() {
	if c.rd != nil {
		c.rd.close()
		c.rd, c.rdSeg = nil, ""
	}
}

// Ack says the oldest n items taken and not yet acknowledged are done.
func (c *Cursor) Ack(n int) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	n = min(n, len(c.inflight))
	if n == 0 {
		return
	}
	if a := c.inflight[n-1]; a > c.acked {
		c.acked = a
		// Into the head file at once (a pwrite, no fsync): a crash of
		// the process repeats at most the batches in flight. Sync makes
		// it durable against a power loss.
		s.headMu.Lock()
		s.head.setCursor(c.name, c.slot, a)
		if err := s.head.flush(); err != nil {
			s.stats.LastError = "head: " + err.Error()
		}
		s.headMu.Unlock()
	}
	c.inflight = append(c.inflight[:0], c.inflight[n:]...)
	s.room.Broadcast()
}

// Close ends the cursor's input: Take reports !ok once it has taken what
// there is.
func (c *Cursor) Close() {
	c.s.mu.Lock()
	c.closed = true
	c.s.notEmpty.Broadcast()
	c.s.mu.Unlock()
}

// Abort makes Take return at once, !ok.
func (c *Cursor) Abort() {
	c.s.mu.Lock()
	c.aborted = true
	c.s.notEmpty.Broadcast()
	c.s.room.Broadcast()
	c.s.mu.Unlock()
}

// Aborted reports whether Abort (or the spool's) was called.
func (c *Cursor) Aborted() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.aborted
}

// Backlog returns the records after the cursor's acknowledged position
// (what a restart would deliver again) and how many of them it took.
func (c *Cursor) Backlog() (records uint64, taken int) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.s.next - c.acked, len(c.inflight)
}

// Queued returns the records not yet taken and an estimate of their bytes
// on disk.
func (c *Cursor) Queued() (events int, bytes int64) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	events = int(s.next - c.next)
	for _, seg := range s.segs {
		if seg.end > c.next {
			if span := seg.end - seg.base; span > 0 && c.next > seg.base {
				bytes += seg.size * int64(seg.end-c.next) / int64(span)
			} else {
				bytes += seg.size
			}
		}
	}
	return events, bytes
}

func (s *Spool) countCorrupt(n uint64) {
	s.mu.Lock()
	s.stats.Corrupt += n
	s.mu.Unlock()
}

// estSize estimates an event's bytes (batch bounds, the memory tail).
func estSize(e *schema.Event) int64 { return e.SizeEstimate() }

// cache is the newest records, in memory, with their indices.
type cache struct {
	ev       []schema.Event
	sz       []int32
	head, n  int
	base     uint64 // index of ev[head]
	bytes    int64
	maxBytes int64
}

func (q *cache) init(events int, bytes int64) {
	q.ev = make([]schema.Event, events)
	q.sz = make([]int32, events)
	q.maxBytes = bytes
}

// push adds the record index (the next after the newest cached).
func (q *cache) push(index uint64, e *schema.Event) {
	size := int32(estSize(e))
	if q.n > 0 && q.base+uint64(q.n) != index {
		q.reset()
	}
	for q.n > 0 && (q.n == len(q.ev) || q.bytes+int64(size) > q.maxBytes) {
		q.ev[q.head] = schema.Event{}
		q.bytes -= int64(q.sz[q.head])
		q.head = (q.head + 1) % len(q.ev)
		q.base++
		q.n--
	}
	if q.n == 0 {
		q.base = index
	}
	i := (q.head + q.n) % len(q.ev)
	q.ev[i], q.sz[i] = *e, size
	q.n++
	q.bytes += int64(size)
}

func (q *cache) reset() {
	clear(q.ev)
	q.head, q.n, q.bytes = 0, 0, 0
}
