package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/transform"
)

// Source is what the reader reads: source.Conn satisfies it.
type Source interface {
	ReadBatch(ctx context.Context, b *source.Batch) (int, error)
	// CheckDrops reports kernel drops not yet seen by ReadBatch (called once
	// the reader stopped).
	CheckDrops() (uint64, error)
	// Close stops the subscription (IGNORE) and the socket.
	Close() error
}

// Quiescer is a Source that can stop taking new datagrams while what it
// has queued stays readable (source.Conn: IGNORE, and leave its groups).
// The reader uses it to drain the receive queue at shutdown.
type Quiescer interface {
	Quiesce() error
}

// readQueueBudget bounds the memory of the batches between the reader and
// the transform when ReadQueue is not set: 256 batches of 64
// process-event datagrams (8 MiB), or 32 of the connector's largest.
const readQueueBudget = 32 << 20

// ReaderConfig configures a Reader.
type ReaderConfig struct {
	Source    Source                 // required
	Transform *transform.Transformer // required

	BatchLen   int // datagrams per recvmmsg, default 64
	DgramBytes int // buffer per datagram, default 512 (process events are 76 bytes)
	ReadQueue  int // batches between reader and transform, default as many as fit in 32 MiB, at most 256, at least 2

	// StopAtOnce stops reading as soon as Run's context ends, leaving
	// what the receive queue holds unread (tail). Default: a Quiescer
	// stops taking datagrams and what it holds is read (the drain).
	StopAtOnce bool
}

// Emit receives the events of one read batch, in stream order. events is
// the reader's: it is reused once Emit returns, so Emit copies what it
// keeps (Delivery.Push does). more reports that another batch is already
// read and waiting (a printer flushes when it is false). Returning false
// stops reading at once; Emit is not called again.
type Emit func(events []schema.Event, more bool) bool

// Reader is the reader half: a goroutine reading the source into a pool
// of batches, and the transform on Run's goroutine handing the events of
// each batch to an Emit. See the package doc for its contract.
type Reader struct {
	cfg ReaderConfig

	mu          sync.Mutex
	stopReading context.CancelFunc // set while Run runs
	cutAsked    bool
	stopNow     atomic.Bool // Cut: batches read and not yet transformed are discarded
	quiesced    atomic.Bool
	cut         atomic.Bool   // the drain deadline ended reading before the receive queue was empty
	unread      atomic.Uint64 // datagrams left in the receive queue at the drain deadline
}

// NewReader validates cfg; it starts nothing (Run does).
func NewReader(cfg ReaderConfig) (*Reader, error) {
	if cfg.Source == nil || cfg.Transform == nil {
		return nil, errors.New("pipeline: Config.Source and Config.Transform are required")
	}
	cfg.BatchLen = or(cfg.BatchLen, 64)
	cfg.DgramBytes = or(cfg.DgramBytes, 512)
	cfg.ReadQueue = max(2, or(cfg.ReadQueue, min(256, readQueueBudget/(cfg.BatchLen*cfg.DgramBytes))))
	return &Reader{cfg: cfg}, nil
}

// Unread returns how many datagrams the receive queue still held when Cut
// ended the drain: read and discarded, emitted to no one.
func (r *Reader) Unread() uint64 { return r.unread.Load() }

// Cut is the drain deadline: reading stops at once; if the source was
// draining (quiesced), what its receive queue still holds is read and
// counted (Unread) before Run returns. Safe from any goroutine.
func (r *Reader) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cutAsked = true
	r.stopNow.Store(true)
	r.cut.Store(r.quiesced.Load())
	if r.stopReading != nil {
		r.stopReading()
	}
}

// drainIdle is how long a read at shutdown waits before the receive queue
// counts as drained.
const drainIdle = 50 * time.Millisecond

// discardBudget bounds the reading of what is left in the receive queue
// after the drain deadline (within ShutdownGrace).
const discardBudget = time.Second

// discard reads what the source still holds, without transforming it, and
// returns how many datagrams that was.
func (r *Reader) discard() uint64 {
	b := source.NewBatch(r.cfg.BatchLen, r.cfg.DgramBytes)
	var n uint64
	for deadline := time.Now().Add(discardBudget); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), drainIdle)
		k, err := r.cfg.Source.ReadBatch(ctx, b)
		cancel()
		n += uint64(k)
		if err != nil {
			break
		}
	}
	return n
}

type readResult struct {
	b   *source.Batch
	n   int
	err error
}

// Run reads and transforms until ctx ends (then quiesces and drains, unless
// StopAtOnce), Cut, emit returns false, or the source fails; then it states
// the kernel drops nothing prompted a read to see (CheckDrops) and, after
// Cut, discards and counts what is left. It does not close the source. It
// returns the source's read error and the Quiesce error.
func (r *Reader) Run(ctx context.Context, emit Emit) error {
	// Reading stops in two steps when ctx ends: a source that can
	// (Quiescer) stops taking new datagrams, and the reader drains what
	// its receive queue holds (normal ends, read goes on until a read finds
	// nothing for drainIdle); or, without Quiesce, at once. Cut ends
	// reading in any case.
	readCtx, stopReading := context.WithCancel(context.Background())
	defer stopReading()
	r.mu.Lock()
	r.stopReading = stopReading
	if r.cutAsked {
		stopReading()
	}
	r.mu.Unlock()
	normalCtx, stopNormal := context.WithCancel(readCtx)
	defer stopNormal()
	var quiesceErr error
	quiesceDone := make(chan struct{})
	stopQuiesce := context.AfterFunc(ctx, func() {
		defer close(quiesceDone)
		q, ok := r.cfg.Source.(Quiescer)
		if !ok || r.cfg.StopAtOnce {
			stopReading()
			return
		}
		quiesceErr = q.Quiesce()
		r.quiesced.Store(true)
		stopNormal()
	})

	free := make(chan *source.Batch, r.cfg.ReadQueue)
	for range r.cfg.ReadQueue {
		free <- source.NewBatch(r.cfg.BatchLen, r.cfg.DgramBytes)
	}
	full := make(chan readResult, r.cfg.ReadQueue)
	go func() { // the reader: never waits for anything but a free batch
		defer close(full)
		draining := false
		for {
			var b *source.Batch
			select {
			case b = <-free:
			case <-readCtx.Done():
				return
			}
			rctx, cancel := normalCtx, context.CancelFunc(func() {})
			if draining {
				rctx, cancel = context.WithTimeout(readCtx, drainIdle)
			}
			n, err := r.cfg.Source.ReadBatch(rctx, b)
			cancel()
			if err != nil && readCtx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
				// Quiesced (normal ended), or drained (a read found
				// nothing): the batch still carries drop counts.
				full <- readResult{b, n, nil}
				if draining {
					return
				}
				draining = true
				continue
			}
			full <- readResult{b, n, err}
			if err != nil {
				return
			}
		}
	}()

	// The transform goroutine is this one.
	var readErr error
	var events []schema.Event
	stopped := false   // emit said stop
	var skipped uint64 // datagrams read before Cut, not transformed after it
	for res := range full {
		if stopped {
			free <- res.b
			continue
		}
		if r.stopNow.Load() {
			// The deadline passed: what was read is counted, not
			// transformed (nothing would deliver it).
			skipped += uint64(res.n)
			free <- res.b
			continue
		}
		if res.err != nil {
			if !errors.Is(res.err, context.Canceled) && !errors.Is(res.err, source.ErrClosed) {
				readErr = res.err
				stopReading()
			}
			continue
		}
		events = r.cfg.Transform.Batch(res.b, res.n, events[:0])
		free <- res.b
		if !emit(events, len(full) > 0) {
			stopped = true
			stopReading()
		}
	}
	// The reader has stopped: state the drops nothing prompted it to read.
	if d, err := r.cfg.Source.CheckDrops(); err == nil && d > 0 && !stopped {
		emit(r.cfg.Transform.Drops(d, events[:0]), false)
	}
	if r.cut.Load() {
		// The deadline passed before the receive queue was drained: what
		// it still holds is read and counted, not delivered.
		skipped += r.discard()
	}
	r.unread.Add(skipped)
	if !stopQuiesce() {
		<-quiesceDone // ctx ended: quiesceErr is set
	}
	r.mu.Lock()
	r.stopReading = nil
	r.mu.Unlock()
	return errors.Join(readErr, quiesceErr)
}
