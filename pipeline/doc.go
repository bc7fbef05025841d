// Package pipeline runs source -> transform -> sinks: a reader goroutine
// draining the connector socket into a bounded queue of batches, the
// transform on its own goroutine, and per sink a bounded queue (limits in
// events and estimated bytes) and a worker that batches (max events, max
// bytes, linger) and writes with retries.
//
// # Backpressure and loss
//
// The reader never waits on a sink: it waits only for a free batch buffer.
// When a sink queue is full its policy decides: Block (default) stops the
// transform, then the reader, and the kernel's receive queue absorbs the
// rest; what it cannot hold becomes counted kernel drops, which appear as
// overrun and gap records. DropNewest and DropOldest discard events, count
// them, and state them in a dropped record at the head of the sink's next
// batch. A batch that still fails after the retry budget (exponential
// backoff with jitter, RetryConfig), or with a permanent error
// (sink.Permanent), is counted as failed and stated the same way (reason
// sink_failed). Nothing is dropped without a record and a counter.
//
// # Shutdown
//
// Cancelling Run's context stops the source from taking new datagrams
// (a Quiescer, like source.Conn, sends IGNORE and leaves its groups), reads
// what its receive queue still holds until a read finds nothing, transforms
// it, flushes every sink queue and closes the sinks, all within
// DrainTimeout. What is still undelivered then is counted
// (SinkStats.Undelivered), what the receive queue still held is read and
// counted (Stats.Unread), and Run returns an error saying how much.
//
// # Concurrency
//
// New starts nothing; Run starts and stops every goroutine it uses. Stats is
// safe to call while Run runs.
package pipeline
