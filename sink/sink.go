// Package sink defines the contract between the pipeline and a backend
// (Kafka, NATS, files, stdout): a batch write that returns once the backend
// acknowledged it, and a Close that flushes.
//
// # Contract
//
// WriteBatch is called by one goroutine at a time, with events in stream
// order; a sink keeps their order per key (the pipeline's ordering unit: the
// host for Kafka, the subject for NATS, the file for files). It returns nil
// only when the backend has acknowledged every event of the batch (written
// and, per the sink's durability setting, synced). On error, none or some of
// the events may have been applied: the pipeline retries the whole batch,
// and consumers dedupe on the event id (schema.Event.ID), which stays the
// same across retries. WriteBatch honours ctx: cancellation returns promptly
// with ctx's error.
//
// Errors are retriable unless marked permanent (Permanent, IsPermanent):
// a permanent error (invalid configuration, a message the backend refuses
// for good) is not retried; the pipeline turns its events into counted
// loss records.
//
// A sink owns no goroutines for retries: the pipeline retries.
//
// Close flushes what WriteBatch accepted and releases the backend; it honours
// ctx as a deadline. WriteBatch after Close returns ErrClosed.
//
// # Optional abilities
//
// Found by type assertion: Pinger (readiness), StatsReporter (the sink's
// own counters: retries inside a write, errors no write returned,
// reconnections; the pipeline exports them as metrics), LossReporter
// (events the sink lost by itself, outside any failed write, such as a
// torn file tail cut at start: the pipeline states them in dropped records
// with the sink's reason).
package sink

import (
	"context"
	"errors"

	"github.com/cnstream/cnstream/schema"
)

// Sink is a backend the pipeline delivers events to.
type Sink interface {
	WriteBatch(ctx context.Context, events []schema.Event) error
	Close(ctx context.Context) error
}

// Pinger is a sink that can say whether its backend is reachable now,
// without writing: the readiness endpoint (/readyz) asks it. Ping honours
// ctx as a deadline and returns nil when the backend answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// ErrClosed is returned by WriteBatch after Close.
var ErrClosed = errors.New("sink: closed")

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err (or an error it wraps) was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
