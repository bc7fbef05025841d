package sink

// Optional abilities through which a sink tells the delivery runtime what
// only the sink sees: its own faults (Counters) and the events it lost by
// itself (Losses). The runtime finds them by type assertion.

// Counters are a sink's own counters since it was made: faults the
// pipeline's retries do not see. Each field is cumulative; a sink leaves
// at zero what it has no notion of. The delivery runtime exports them as
// metrics (pipeline/metrics.go) and logs LastError when Errors grows.
type Counters struct {
	// Retries counts requests a sink sent again inside one WriteBatch
	// (Kafka: a partition's produce request after a temporary error), so
	// as not to duplicate what the backend already acknowledged. The
	// pipeline's own retries of whole batches are not counted here.
	Retries uint64
	// Errors counts errors the backend or the sink met besides the ones a
	// WriteBatch returned: asynchronous errors (NATS: slow consumer,
	// permissions violations), background work (file: compressing a
	// rotated file). A request that failed and was sent again inside the
	// WriteBatch is a Retry, not an Error.
	Errors uint64
	// LastError is the latest of them, with secrets redacted; "" if none.
	LastError string
	// Reconnects counts connections to the backend re-established after
	// one was lost (NATS).
	Reconnects uint64
}

// StatsReporter is a sink that reports its own Counters. Counters is safe
// to call at any time, from any goroutine, and cheap enough to call before
// every batch.
type StatsReporter interface {
	Counters() Counters
}

// Loss is events a sink lost by itself, outside any WriteBatch's error:
// the pipeline's retries cannot see or repair them. The delivery runtime
// states each in a dropped record (schema.DroppedInfo) with Reason, at the
// head of the sink's next batch, counts it in a metric and logs Detail.
type Loss struct {
	// Count is how many events were lost, at least 1 (when the sink
	// cannot tell exactly, the least it knows of).
	Count uint64
	// Reason is the dropped record's reason, lowercase with underscores:
	// "torn_tail" (the file sink cut a torn record off the end of a file
	// at start, after a crash).
	Reason string
	// Detail says where and why, for the log; no secrets.
	Detail string
}

// LossReporter is a sink that hands over the losses it found. TakeLosses
// returns those not yet taken (nil if none) and forgets them; the delivery
// runtime calls it from the sink's worker before each batch, once the sink
// is made (for losses found by New) and at shutdown. Safe from any
// goroutine, concurrently with WriteBatch.
type LossReporter interface {
	TakeLosses() []Loss
}
