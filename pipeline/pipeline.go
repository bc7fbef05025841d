package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/transform"
)

// Source is what the pipeline reads: source.Conn satisfies it.
type Source interface {
	ReadBatch(ctx context.Context, b *source.Batch) (int, error)
	// CheckDrops reports kernel drops not yet seen by ReadBatch (called once
	// the reader stopped).
	CheckDrops() (uint64, error)
	// Close stops the subscription (IGNORE) and the socket.
	Close() error
}

// RetryConfig bounds the retries of a failed batch write: exponential
// backoff with jitter, until MaxElapsed; a permanent error is not retried.
type RetryConfig struct {
	Initial    time.Duration // first pause, default 100 ms
	Max        time.Duration // longest pause, default 5 s
	MaxElapsed time.Duration // give up after, default 30 s; events then become a dropped record
}

func (r RetryConfig) backoff(ctx context.Context) backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = or(r.Initial, 100*time.Millisecond)
	b.MaxInterval = or(r.Max, 5*time.Second)
	b.MaxElapsedTime = or(r.MaxElapsed, 30*time.Second)
	b.RandomizationFactor = 0.5
	return backoff.WithContext(b, ctx)
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// SinkConfig is one output: a sink behind its own bounded queue.
type SinkConfig struct {
	Name string    // for stats and dropped records; required
	Type string    // the backend ("kafka", "file"...): the sink.type attribute of its metrics
	Sink sink.Sink // required

	QueueEvents int   // queue bound in events, default 65536
	QueueBytes  int64 // queue bound in estimated bytes, default 64 MiB
	Policy      Policy

	BatchEvents int           // most events per WriteBatch, default 512
	BatchBytes  int64         // most estimated bytes per WriteBatch, default 1 MiB
	Linger      time.Duration // wait for a batch to fill, default 5 ms; negative: none

	Retry RetryConfig
}

// readQueueBudget bounds the memory of the batches between the reader and
// the transform when Config.ReadQueue is not set: 256 batches of 64
// process-event datagrams (8 MiB), or 32 of the connector's largest.
const readQueueBudget = 32 << 20

// Config configures a Pipeline.
type Config struct {
	Source    Source                 // required
	Transform *transform.Transformer // required
	Sinks     []SinkConfig           // at least one

	BatchLen   int // datagrams per recvmmsg, default 64
	DgramBytes int // buffer per datagram, default 512 (process events are 76 bytes)
	ReadQueue  int // batches between reader and transform, default as many as fit in 32 MiB, at most 256

	// DrainTimeout bounds the shutdown: flushing queues and closing sinks.
	// What is not delivered by then is counted and reported. Default 10 s.
	DrainTimeout time.Duration

	// Meter receives the pipeline's metrics (names in metrics.go): the
	// counters of the source (when it implements SourceStats), the
	// transform, Enrich and every sink, read at each collection, and the
	// write-duration and event-latency histograms. Default: none.
	Meter metric.Meter
	// Enrich is the enricher whose counters become metrics. Default: none.
	Enrich EnrichStats
	// Tracer receives a span per sink batch write (retries included).
	// Default: none.
	Tracer trace.Tracer
	// Logger receives the sinks' failures (each failed attempt at Warn,
	// a batch given up at Error) and recoveries (Info). Default: none.
	Logger *slog.Logger
}

// Syncer is a sink that can make what it acknowledged durable on demand
// (the file sink under sync: interval); the pipeline calls Sync every
// SyncEvery so that an idle sink's data does not wait for the next batch.
type Syncer interface {
	Sync(ctx context.Context) error
}

// SyncEvery is how often the pipeline calls a Syncer's Sync.
const SyncEvery = time.Second

// SinkStats are one sink's counters.
type SinkStats struct {
	Name          string
	Queued        int   // events in the queue now
	QueuedBytes   int64 // their estimated bytes
	Delivered     uint64
	Batches       uint64
	Retries       uint64
	Failed        uint64 // events given up after the retry budget or a permanent error
	PolicyDropped uint64 // events dropped by the queue policy
	Undelivered   uint64 // events still queued when the shutdown deadline passed
	LastError     string
}

// Stats is a snapshot of the pipeline.
type Stats struct {
	Transform transform.Stats
	Sinks     []SinkStats
	// Unread counts the datagrams the receive queue still held when the
	// shutdown deadline passed: read and discarded, delivered to no sink.
	Unread uint64
}

// Pipeline runs source -> transform -> sinks.
type Pipeline struct {
	cfg     Config
	workers []*worker
	inst    instruments
	unread  atomic.Uint64 // datagrams left in the receive queue at the drain deadline
}

type worker struct {
	cfg           SinkConfig
	inst          *instruments // nil without a Meter
	attrs         metric.MeasurementOption
	recOpts       []metric.RecordOption // attrs, as Record takes them
	tracer        trace.Tracer
	log           *slog.Logger
	failing       bool // the last write attempt failed (worker goroutine only)
	q             *queue
	tr            *transform.Transformer
	failedPending uint64 // events given up on, not yet stated by a record (worker goroutine only)
	stats         struct {
		delivered, batches, retries, failed, undelivered atomic.Uint64
		lastErr                                          atomic.Pointer[string]
	}
}

// New validates cfg; it starts nothing (Run does).
func New(cfg Config) (*Pipeline, error) {
	if cfg.Source == nil || cfg.Transform == nil {
		return nil, errors.New("pipeline: Config.Source and Config.Transform are required")
	}
	if len(cfg.Sinks) == 0 {
		return nil, errors.New("pipeline: at least one sink is required")
	}
	p := &Pipeline{cfg: cfg}
	names := map[string]bool{}
	for i, sc := range cfg.Sinks {
		if sc.Name == "" || sc.Sink == nil {
			return nil, fmt.Errorf("pipeline: sinks[%d]: Name and Sink are required", i)
		}
		if names[sc.Name] {
			return nil, fmt.Errorf("pipeline: sinks[%d]: name %q used twice", i, sc.Name)
		}
		names[sc.Name] = true
		if sc.QueueEvents < 0 || sc.QueueBytes < 0 || sc.BatchEvents < 0 || sc.BatchBytes < 0 {
			return nil, fmt.Errorf("pipeline: sink %q: queue and batch limits must not be negative", sc.Name)
		}
		sc.QueueEvents = or(sc.QueueEvents, 65536)
		sc.QueueBytes = or(sc.QueueBytes, 64<<20)
		sc.BatchEvents = or(sc.BatchEvents, 512)
		sc.BatchBytes = or(sc.BatchBytes, 1<<20)
		sc.Linger = or(sc.Linger, 5*time.Millisecond)
		p.workers = append(p.workers, &worker{cfg: sc, q: newQueue(sc.QueueEvents, sc.QueueBytes, sc.Policy), tr: cfg.Transform})
	}
	p.cfg.BatchLen = or(cfg.BatchLen, 64)
	p.cfg.DgramBytes = or(cfg.DgramBytes, 512)
	p.cfg.ReadQueue = max(2, or(cfg.ReadQueue, min(256, readQueueBudget/(p.cfg.BatchLen*p.cfg.DgramBytes))))
	p.cfg.DrainTimeout = or(cfg.DrainTimeout, 10*time.Second)
	for _, w := range p.workers {
		w.tracer = cfg.Tracer
		w.log = cfg.Logger
		if w.log == nil {
			w.log = slog.New(slog.DiscardHandler)
		}
		w.log = w.log.With("sink", w.cfg.Name)
	}
	if cfg.Meter != nil {
		if err := p.registerMetrics(); err != nil {
			return nil, fmt.Errorf("pipeline: metrics: %w", err)
		}
	}
	return p, nil
}

// Stats returns a snapshot; safe while Run runs.
func (p *Pipeline) Stats() Stats {
	s := Stats{Transform: p.cfg.Transform.Stats(), Unread: p.unread.Load()}
	for _, w := range p.workers {
		n, b, dropped := w.q.len()
		ss := SinkStats{Name: w.cfg.Name, Queued: n, QueuedBytes: b,
			Delivered: w.stats.delivered.Load(), Batches: w.stats.batches.Load(), Retries: w.stats.retries.Load(),
			Failed: w.stats.failed.Load(), PolicyDropped: dropped, Undelivered: w.stats.undelivered.Load()}
		if e := w.stats.lastErr.Load(); e != nil {
			ss.LastError = *e
		}
		s.Sinks = append(s.Sinks, ss)
	}
	return s
}

// Quiescer is a Source that can stop taking new datagrams while what it
// has queued stays readable (source.Conn: IGNORE, and leave its groups).
// Run uses it to drain the receive queue at shutdown.
type Quiescer interface {
	Quiesce() error
}

// drainIdle is how long a read at shutdown waits before the receive queue
// counts as drained.
const drainIdle = 50 * time.Millisecond

// discardBudget bounds the reading of what is left in the receive queue
// after the drain deadline.
const discardBudget = 5 * time.Second

// discard reads what the source still holds, without transforming it, and
// returns how many datagrams that was.
func (p *Pipeline) discard() uint64 {
	b := source.NewBatch(p.cfg.BatchLen, p.cfg.DgramBytes)
	var n uint64
	for deadline := time.Now().Add(discardBudget); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), drainIdle)
		k, err := p.cfg.Source.ReadBatch(ctx, b)
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

// Run reads until ctx is cancelled or the source fails, then shuts down in
// order: stop reading, close the source (IGNORE), transform what was read,
// flush every sink queue and close the sinks under DrainTimeout. It returns
// the source's error, and an error counting what could not be delivered.
func (p *Pipeline) Run(ctx context.Context) error {
	// Reading stops in two steps when ctx ends: a source that can
	// (Quiescer) stops taking new datagrams, and the reader drains what
	// its receive queue holds (normal ends, read goes on until a read finds
	// nothing for drainIdle); or, without Quiesce, at once. The drain
	// deadline ends reading in any case.
	readCtx, stopReading := context.WithCancel(context.Background())
	defer stopReading()
	normalCtx, stopNormal := context.WithCancel(readCtx)
	defer stopNormal()
	var quiesceErr error
	var quiesced atomic.Bool
	quiesceDone := make(chan struct{})
	stopQuiesce := context.AfterFunc(ctx, func() {
		defer close(quiesceDone)
		q, ok := p.cfg.Source.(Quiescer)
		if !ok {
			stopReading()
			return
		}
		quiesceErr = q.Quiesce()
		quiesced.Store(true)
		stopNormal()
	})
	defer stopQuiesce()

	free := make(chan *source.Batch, p.cfg.ReadQueue)
	for range p.cfg.ReadQueue {
		free <- source.NewBatch(p.cfg.BatchLen, p.cfg.DgramBytes)
	}
	full := make(chan readResult, p.cfg.ReadQueue)
	var cut atomic.Bool // the drain deadline ended reading before the receive queue was empty
	go func() {         // the reader: never waits for anything but a free batch
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
			n, err := p.cfg.Source.ReadBatch(rctx, b)
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

	// Sink workers run until their queue is closed and drained, or the
	// drain deadline passes.
	drainCtx, cancelDrain := context.WithCancel(context.Background())
	defer cancelDrain()
	var wg sync.WaitGroup
	syncCtx, stopSync := context.WithCancel(drainCtx)
	var syncWG sync.WaitGroup
	for _, w := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(drainCtx)
		}()
		if s, ok := w.cfg.Sink.(Syncer); ok {
			syncWG.Add(1)
			go func() {
				defer syncWG.Done()
				w.syncLoop(syncCtx, s)
			}()
		}
	}

	// Once ctx ends, the drain deadline starts.
	drainTimer := time.AfterFunc(time.Hour, func() {
		cut.Store(quiesced.Load())
		stopReading()
		// Queues first: a worker that stops on the cancelled ctx counts
		// what is queued, and nothing is queued after that.
		for _, w := range p.workers {
			w.q.abort()
		}
		cancelDrain()
	})
	drainTimer.Stop()
	armed := make(chan struct{})
	stopArming := context.AfterFunc(ctx, func() {
		drainTimer.Reset(p.cfg.DrainTimeout)
		close(armed)
	})
	defer func() {
		if !stopArming() {
			<-armed
		}
		drainTimer.Stop()
	}()

	// The transform goroutine is this one.
	var readErr error
	var events []schema.Event
	for r := range full {
		if r.err != nil {
			if !errors.Is(r.err, context.Canceled) && !errors.Is(r.err, source.ErrClosed) {
				readErr = r.err
				stopReading()
			}
			continue
		}
		events = p.cfg.Transform.Batch(r.b, r.n, events[:0])
		free <- r.b
		p.fanout(events)
	}
	if d, err := p.cfg.Source.CheckDrops(); err == nil && d > 0 {
		p.fanout(p.cfg.Transform.Drops(d, events[:0]))
	}
	if cut.Load() {
		// The deadline passed before the receive queue was drained: what
		// it still holds is read and counted, not delivered.
		p.unread.Store(p.discard())
	}
	if !stopQuiesce() {
		<-quiesceDone // ctx ended: quiesceErr is set
	}
	closeErr := errors.Join(quiesceErr, p.cfg.Source.Close())
	for _, w := range p.workers {
		w.q.close()
	}
	wg.Wait()
	stopSync()
	syncWG.Wait()

	// Close the sinks under what is left of the deadline.
	cctx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
	defer cancel()
	var errs []error
	for _, w := range p.workers {
		if err := w.cfg.Sink.Close(cctx); err != nil {
			errs = append(errs, fmt.Errorf("pipeline: close sink %q: %w", w.cfg.Name, err))
		}
		if u := w.stats.undelivered.Load(); u > 0 {
			errs = append(errs, fmt.Errorf("pipeline: sink %q: %d events undelivered at shutdown (deadline %v)", w.cfg.Name, u, p.cfg.DrainTimeout))
		}
	}
	if u := p.unread.Load(); u > 0 {
		errs = append(errs, fmt.Errorf("pipeline: %d datagrams still in the socket's receive queue at the shutdown deadline (%v): read and discarded, not delivered", u, p.cfg.DrainTimeout))
	}
	return errors.Join(append([]error{readErr, closeErr}, errs...)...)
}

// fanout queues every event on every sink, under each queue's policy.
func (p *Pipeline) fanout(events []schema.Event) {
	for i := range events {
		for _, w := range p.workers {
			if !w.q.push(&events[i]) && w.q.wasAborted() {
				w.stats.undelivered.Add(1) // policy drops are counted by the queue
			}
		}
	}
}

// run takes batches from the queue and writes them, with retries, until the
// queue is closed and empty or ctx (the drain deadline) ends.
func (w *worker) run(ctx context.Context) {
	batch := make([]schema.Event, 0, w.cfg.BatchEvents)
	for {
		var ok bool
		if w.failedPending > 0 {
			// A failure to state: do not wait for new events.
			batch, ok = w.q.tryTake(batch[:0], w.cfg.BatchEvents, w.cfg.BatchBytes), true
		} else {
			batch, ok = w.q.take(batch[:0], w.cfg.BatchEvents, w.cfg.BatchBytes)
		}
		if !ok {
			w.finalRecords(ctx)
			return
		}
		if len(batch) > 0 && len(batch) < w.cfg.BatchEvents && w.cfg.Linger > 0 {
			t := time.NewTimer(w.cfg.Linger)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			batch = w.q.tryTake(batch, w.cfg.BatchEvents, w.cfg.BatchBytes)
		}
		// Losses since the last batch travel first, as records.
		var lost []schema.Event
		if d := w.q.takeDropped(); d > 0 {
			lost = append(lost, w.tr.Dropped(d, "queue_full_"+w.cfg.Policy.String(), w.cfg.Name))
		}
		if w.failedPending > 0 {
			lost = append(lost, w.tr.Dropped(w.failedPending, "sink_failed", w.cfg.Name))
			w.failedPending = 0
		}
		if lost != nil {
			batch = append(lost, batch...)
		}
		if ctx.Err() != nil {
			w.stats.undelivered.Add(uint64(len(batch) + w.q.drain()))
			return
		}
		w.write(ctx, batch)
	}
}

func (w *worker) write(ctx context.Context, batch []schema.Event) {
	var span trace.Span
	if w.tracer != nil {
		ctx, span = w.tracer.Start(ctx, "cnstream.sink.write", trace.WithAttributes(
			AttrSinkName.String(w.cfg.Name), AttrSinkType.String(w.cfg.Type),
			attribute.Int("cnstream.batch.events", len(batch))))
	}
	retries := 0
	op := func() error {
		start := time.Now()
		err := w.cfg.Sink.WriteBatch(ctx, batch)
		if err == nil {
			w.recordWrite(ctx, start, batch, "ok")
			return nil
		}
		msg := err.Error()
		w.stats.lastErr.Store(&msg)
		if sink.IsPermanent(err) || ctx.Err() != nil {
			outcome := "permanent"
			if ctx.Err() != nil {
				outcome = "canceled"
			}
			w.recordWrite(ctx, start, batch, outcome)
			return backoff.Permanent(err)
		}
		w.recordWrite(ctx, start, batch, "retriable")
		w.failing = true
		return err
	}
	// Called only when a retry follows: the last failure of a batch given
	// up is not a retry.
	notify := func(err error, wait time.Duration) {
		w.stats.retries.Add(1)
		retries++
		w.log.Warn("sink write failed; retrying", "events", len(batch), "retry", retries, "in", wait.Round(time.Millisecond), "err", err)
	}
	err := backoff.RetryNotify(op, w.cfg.Retry.backoff(ctx), notify)
	if span != nil {
		span.SetAttributes(attribute.Int("cnstream.batch.retries", retries))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetStatus(codes.Ok, "")
		}
		span.End()
	}
	if err == nil {
		w.stats.batches.Add(1)
		w.stats.delivered.Add(uint64(len(batch)))
		if w.failing {
			w.failing = false
			w.log.Info("sink writes again", "events", len(batch), "retries", retries)
		}
		return
	}
	w.failing = true
	if ctx.Err() == nil {
		w.log.Error("sink write given up: the events become a dropped record (reason sink_failed)", "events", len(batch), "retries", retries, "permanent", sink.IsPermanent(err), "err", err)
	}
	if ctx.Err() != nil {
		w.stats.undelivered.Add(uint64(len(batch)))
		return
	}
	// Given up: the events become a dropped record at the head of the next
	// batch, and a metric. Loss records in the batch are counted, not
	// restated.
	var n uint64
	for i := range batch {
		if !batch[i].Kind.IsLoss() {
			n++
		}
	}
	w.stats.failed.Add(uint64(len(batch)))
	w.failedPending += n
}

// finalRecords writes the records of losses not yet stated when the queue
// has closed (one attempt set, within the drain deadline).
func (w *worker) finalRecords(ctx context.Context) {
	var lost []schema.Event
	if d := w.q.takeDropped(); d > 0 {
		lost = append(lost, w.tr.Dropped(d, "queue_full_"+w.cfg.Policy.String(), w.cfg.Name))
	}
	if w.failedPending > 0 {
		lost = append(lost, w.tr.Dropped(w.failedPending, "sink_failed", w.cfg.Name))
		w.failedPending = 0
	}
	if len(lost) > 0 && ctx.Err() == nil {
		w.write(ctx, lost)
	}
}

// syncLoop calls s.Sync every SyncEvery until ctx ends; errors are kept as
// the sink's last error (the next WriteBatch reports them too).
func (w *worker) syncLoop(ctx context.Context, s Syncer) {
	t := time.NewTicker(SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
				msg := "sync: " + err.Error()
				w.stats.lastErr.Store(&msg)
			}
		}
	}
}
