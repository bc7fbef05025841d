// Package pipeline runs source -> transform -> sinks in two halves with one
// seam between them: the reader (Reader: the connector socket into the
// transform) hands batches of schema.Event to the delivery runtime
// (Delivery: queues, batching, retries, loss records, metrics), which any
// other producer can feed too (a replay of an archive, a consumer of
// Kafka). Pipeline.Run composes the two; cmd/cnstream's tail uses the
// reader alone, with the terminal as its consumer. Package assemble builds
// the reader's source and transform from one Config for both.
//
//	Source --ReadBatch--> [batch pool] --> Transform --Emit--> Delivery.Push
//	                                                             | fan-out
//	                                             Queue (per sink) --> worker --> sink.Sink
//
// # Reader
//
// Reader.Run reads on a goroutine of its own into a pool of ReadQueue
// batches, and transforms on the caller's goroutine: the reading goroutine
// never waits for anything but a free batch. Each batch's events go to an
// Emit; the slice is the reader's and is reused once Emit returns, so Emit
// copies what it keeps (Delivery.Push does). Emit returning false stops
// reading at once.
//
// Shutdown: when Run's context ends, a Quiescer source (source.Conn: IGNORE,
// leave its groups) stops taking datagrams and Run reads what its receive
// queue still holds until a read finds nothing (the drain); with
// StopAtOnce, or a source that cannot quiesce, reading stops at once. Cut
// (the drain deadline) ends reading in any case; batches read and not yet
// transformed, and what the receive queue then still holds (read for at
// most a second), are discarded and counted (Unread). Before
// returning, Run asks the source for drops nothing prompted a read to see
// (CheckDrops) and emits their overrun record. It does not close the
// source: its owner does, after Run.
//
// Loss records of the reader half are the transform's: gap, overrun,
// malformed, forged. Kernel drops are counted by the source.
//
// # Delivery
//
// NewDelivery starts nothing; Start starts a worker per sink (and a Sync
// loop per Syncer). Push, from one producer goroutine at a time, queues
// every event on every sink's Queue under its policy; it copies each Event
// (by value), so the producer's slice is its own again when Push returns;
// what an event points to is shared between sinks and must not change
// afterwards (the transform allocates it afresh). Each worker takes
// batches (BatchEvents, BatchBytes, waiting Linger for a batch to fill),
// writes them with retries (RetryConfig: exponential backoff with jitter;
// sink.Permanent is not retried) and acks them to the queue once delivered
// or given up and stated, so that a durable queue can advance its cursor.
//
// The delivery runtime makes its own loss records, numbered by the
// schema.Records the producer shares with it (DeliveryConfig.Records), so
// that record ids stay unique per run; it never calls back into the
// producer. Under Block (default) a full queue makes Push wait: the
// pressure goes back to the reader, then to the kernel's receive queue,
// whose overflow becomes counted kernel drops (overrun and gap records).
// DropNewest and DropOldest discard events, count them, and state them in a
// dropped record (reason queue_full_<policy>) at the head of the sink's
// next batch. They never discard a loss record: one pushed into a full
// queue takes the place of the newest (oldest) queued event, and a queue
// holding records only keeps them past its bound (their number follows
// the records the producer makes, not the event rate). A batch that still fails after the retry budget, or with a
// permanent error, is counted as failed and stated the same way (reason
// sink_failed, counting its events). The loss records in a batch given up
// (gap, overrun, malformed, forged, filtered, stream_closed, and earlier
// dropped records) are not events and are never folded into a count: they
// are kept in memory and restated, unchanged and with their ids, at the
// head of the next batch (at most a batch of them at a time), however many
// batches fail, so their counts survive any outage exactly; a batch of
// records alone that fails waits for the next event (or the shutdown) to be
// tried again. What a write that failed in part already stored comes again
// with the same id: consumers dedupe. Loss records still not written when
// the shutdown's writes give up are counted undelivered. What a sink lost by itself, where no write failed (a torn
// file tail cut at start), it hands over as a sink.Loss (sink.LossReporter):
// the worker takes them when it starts (and writes them at once), before
// each batch and at shutdown, states each in a dropped record with the
// sink's reason (torn_tail, corrupt_record, fsync_failed) at the head of
// the batch (at shutdown it calls a Syncer's Sync first, so that a failed
// fsync is still stated; a loss the sink finds in Close is counted, logged
// and returned by Delivery.Close, stated in no record), counts it
// (SinkStats.Lost, cnstream.sink.lost) and logs it. Nothing is dropped
// without a record and a counter. A sink's own counters
// (sink.StatsReporter: retries inside a write, errors no write returned,
// reconnections) are exported as metrics; errors it counts are logged
// with its last error before the next batch.
//
// Shutdown: Abort (the drain deadline; any goroutine) releases a Push
// waiting for room and stops the workers, who count what they still hold
// as undelivered (SinkStats.Undelivered). Close, once the producer has
// stopped, closes the queues, lets the workers deliver what is queued until
// its context ends (then Abort), writes the last loss records, and closes
// every sink, concurrently; with a ctx deadline all of it ends by that
// deadline + ShutdownGrace (a write or a Close still running then is left
// behind and named in the error), without one the Close calls get
// DrainTimeout. It returns an error counting what was not delivered.
//
// # Pipeline
//
// Run starts the delivery, runs the reader into it, and when its context
// is cancelled shuts down in order: the source quiesces, its receive queue
// is drained and transformed, the source is closed, every sink queue is
// flushed and the sinks are closed. DrainTimeout from the cancellation is
// the drain deadline for all of it (Reader.Cut and Delivery.Abort; from
// the source's failure if it fails first), and one deadline bounds what
// follows it, the discard of what the socket still holds and the sinks'
// Close: Run returns at most DrainTimeout + ShutdownGrace (2 s) after its
// context ends, whatever a sink does. Run returns the source's error and an
// error counting what could not be delivered (undelivered events, unread
// datagrams, a sink whose Close did not return).
//
// # Concurrency
//
// Constructors start nothing; Run (and Delivery.Start) start goroutines,
// and Run and Delivery.Close stop every one of them. Stats are safe to call
// while they run.
package pipeline
