package pipeline

import (
	"github.com/cnstream/cnstream/pipeline/spool"
	"github.com/cnstream/cnstream/schema"
)

// spoolQueue is a sink's Queue over its cursor of the shared spool: the
// delivery runtime appends once to the spool (Delivery.Push), every spooled
// sink takes from its own cursor and acks what the sink acknowledged.
type spoolQueue struct {
	sp *spool.Spool
	c  *spool.Cursor
}

// Push appends e to the spool for every spooled sink; the runtime appends
// batches itself and does not call it.
func (q spoolQueue) Push(e *schema.Event) bool { return q.sp.Append([]schema.Event{*e}) }

func (q spoolQueue) Take(dst []schema.Event, max int, maxBytes int64) ([]schema.Event, bool) {
	return q.c.Take(dst, max, maxBytes)
}

func (q spoolQueue) TryTake(dst []schema.Event, max int, maxBytes int64) []schema.Event {
	return q.c.TryTake(dst, max, maxBytes)
}

func (q spoolQueue) Ack(n int) { q.c.Ack(n) }

// TakeDropped is 0: the spool states its losses in records of its own
// (spool_full_drop_oldest, spool_write_failed, spool_corrupt).
func (q spoolQueue) TakeDropped() uint64 { return 0 }

func (q spoolQueue) Stats() QueueStats {
	n, b := q.c.Queued()
	return QueueStats{Events: n, Bytes: b}
}

func (q spoolQueue) Close()        { q.c.Close() }
func (q spoolQueue) Abort()        { q.c.Abort() }
func (q spoolQueue) Aborted() bool { return q.c.Aborted() }

// Drain counts what the cursor has not taken: it stays in the spool for
// the next run.
func (q spoolQueue) Drain() int {
	n, _ := q.c.Queued()
	return n
}

// durable reports whether q keeps what is not acknowledged across runs.
func durable(q Queue) bool {
	_, ok := q.(spoolQueue)
	return ok
}
