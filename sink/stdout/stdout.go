package stdout

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
)

// Config configures a Sink. The zero value writes to os.Stdout.
type Config struct {
	// Writer receives the JSON lines. Default os.Stdout.
	Writer io.Writer

	// BufferSize is how many bytes are encoded before they are written to
	// Writer within a batch. Default 64 KiB.
	BufferSize int
}

const defaultBufferSize = 64 << 10

// Sink writes events as JSON lines to a writer. It implements sink.Sink;
// see the package documentation.
type Sink struct {
	w    io.Writer
	size int

	// turn is a mutex that a ctx can give up waiting for.
	turn   sink.Turn
	closed bool
	buf    []byte

	events, bytes, batches, errors atomic.Uint64
}

var _ sink.Sink = (*Sink)(nil)

// Stats is a snapshot of a Sink's counters since New.
type Stats struct {
	Events  uint64 // events acknowledged
	Bytes   uint64 // bytes written, acknowledged or not
	Batches uint64 // non-empty batches acknowledged
	Errors  uint64 // failed WriteBatch calls
}

// New returns a Sink for cfg.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{w: cfg.Writer, size: cfg.BufferSize, turn: sink.NewTurn()}
	if s.w == nil {
		s.w = os.Stdout
	}
	if s.size == 0 {
		s.size = defaultBufferSize
	}
	return s, nil
}

// Stats returns the counters; safe to call at any time.
func (s *Sink) Stats() Stats {
	return Stats{Events: s.events.Load(), Bytes: s.bytes.Load(), Batches: s.batches.Load(), Errors: s.errors.Load()}
}

// WriteBatch writes events as JSON lines and returns once all of them are
// written to the writer (and flushed, if it has a Flush method).
func (s *Sink) WriteBatch(ctx context.Context, events []schema.Event) error {
	if err := s.turn.Acquire(ctx); err != nil {
		return err
	}
	defer s.turn.Release()
	if s.closed {
		return sink.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	if err := s.write(ctx, events); err != nil {
		s.errors.Add(1)
		return err
	}
	s.events.Add(uint64(len(events)))
	s.batches.Add(1)
	return nil
}

func (s *Sink) write(ctx context.Context, events []schema.Event) error {
	buf := s.buf[:0]
	defer func() {
		if cap(buf) <= 4*s.size {
			s.buf = buf[:0]
		}
	}()
	for i := range events {
		buf = schema.AppendJSON(buf, &events[i])
		buf = append(buf, '\n')
		if len(buf) >= s.size || i == len(events)-1 {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := s.w.Write(buf)
			s.bytes.Add(uint64(n))
			if err == nil && n < len(buf) {
				err = io.ErrShortWrite
			}
			if err != nil {
				return fmt.Errorf("stdout: write: %w", err)
			}
			buf = buf[:0]
		}
	}
	if f, ok := s.w.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			return fmt.Errorf("stdout: flush: %w", err)
		}
	}
	return nil
}

// Close marks the sink closed; it does not close the writer. Nothing is
// buffered between batches, so there is nothing to flush. It waits for a
// WriteBatch in progress, or returns ctx's error if ctx ends first. A second
// Close returns nil.
func (s *Sink) Close(ctx context.Context) error {
	if err := s.turn.Acquire(ctx); err != nil {
		return err
	}
	defer s.turn.Release()
	s.closed = true
	s.buf = nil
	return nil
}
