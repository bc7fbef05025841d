package pipeline

// The delivery runtime. This file and queue.go import neither source nor
// transform (TestDeliveryImports checks): any producer can feed it.

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

	"github.com/cnstream/cnstream/pipeline/spool"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
)

// RetryConfig bounds the retries of a failed batch write: exponential
// backoff with jitter, until MaxElapsed; a permanent error is not retried.
type RetryConfig struct {
	Initial    time.Duration // first pause, default 100 ms
	Max        time.Duration // longest pause, default 5 s
	MaxElapsed time.Duration // give up after, default 30 s (spooled sinks: never; negative: never); events then become a dropped record
}

func (r RetryConfig) backoff(ctx context.Context, durable bool) backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = or(r.Initial, 100*time.Millisecond)
	b.MaxInterval = or(r.Max, 5*time.Second)
	def := 30 * time.Second
	if durable {
		def = -1 // the spool holds the events: retry until the sink recovers
	}
	b.MaxElapsedTime = max(0, or(r.MaxElapsed, def))
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
	// Policy Spool takes the events from DeliveryConfig.Spool's cursor of
	// this Name instead of a queue.
	// Queue replaces the memory queue (NewMemoryQueue(QueueEvents,
	// QueueBytes, Policy)), e.g. with a durable spool; QueueEvents and
	// QueueBytes then only state its bounds in the metrics, and Policy
	// names its drops in dropped records. Default: the memory queue.
	Queue Queue

	BatchEvents int           // most events per WriteBatch, default 512
	BatchBytes  int64         // most estimated bytes per WriteBatch, default 1 MiB
	Linger      time.Duration // wait for a batch to fill, default 5 ms; negative: none

	Retry RetryConfig
}

// Syncer is a sink that can make what it acknowledged durable on demand
// (the file sink under sync: interval); the delivery runtime calls Sync
// every SyncEvery so that an idle sink's data does not wait for the next
// batch.
type Syncer interface {
	Sync(ctx context.Context) error
}

// SyncEvery is how often the delivery runtime calls a Syncer's Sync.
const SyncEvery = time.Second

// SinkStats are one sink's counters.
type SinkStats struct {
	Name          string
	Queued        int   // events in the queue now
	QueuedBytes   int64 // their estimated bytes
	Delivered     uint64
	Batches       uint64
	Retries       uint64
	Failed        uint64 // events given up after the retry budget or a permanent error (loss records are restated, never counted here)
	PolicyDropped uint64 // events dropped by the queue policy
	Undelivered   uint64 // events (and loss records) still queued or unwritten when the shutdown deadline passed
	Kept          uint64 // events of a spooled sink not delivered by the shutdown deadline: kept in the spool for the next run (not lost)
	LastError     string
	// Lost counts, by reason, the events the sink lost by itself and
	// handed over (sink.LossReporter), each stated in a dropped record;
	// nil if none.
	Lost map[string]uint64
	// Backend are the sink's own counters (sink.StatsReporter); zero for
	// a sink without them (HasBackend false).
	Backend    sink.Counters
	HasBackend bool
}

// DeliveryConfig configures a Delivery.
type DeliveryConfig struct {
	Sinks []SinkConfig // at least one
	// Records numbers the dropped records the runtime makes; share the
	// producer's (transform.Transformer.Records) so that record ids stay
	// unique per run. Required.
	Records *schema.Records
	// DrainTimeout bounds the closing of the sinks in Close when its ctx
	// has no deadline: all of them together, from the moment the workers
	// stopped. Default 10 s. (Pipeline.Run gives Close one deadline for
	// all of it instead: the drain deadline plus ShutdownGrace.)
	DrainTimeout time.Duration
	// Meter receives the sinks' metrics (names in metrics.go): queue
	// gauges and counters read at each collection, write-duration and
	// event-latency histograms. Default: none.
	Meter metric.Meter
	// Tracer receives a span per sink batch write (retries included).
	// Default: none.
	Tracer trace.Tracer
	// Spool is the pipeline's disk spool, shared by the sinks of Policy
	// Spool (each through its cursor, named after the sink). Delivery owns
	// it from NewDelivery on: Push appends to it once for all of them,
	// Start syncs it every Spool.Interval, Close closes it. Default: none.
	Spool *spool.Spool
	// Logger receives the sinks' failures (each failed attempt at Warn,
	// a batch given up at Error) and recoveries (Info). Default: none.
	Logger *slog.Logger
}

// Delivery is the delivery runtime: events pushed in are fanned out to a
// queue per sink, and a worker per sink writes them in batches, with
// retries, stating every loss in a dropped record. See the package doc for
// its contract.
type Delivery struct {
	cfg     DeliveryConfig
	workers []*worker
	inst    instruments

	ctx      context.Context // the workers': ends at Abort
	abort    context.CancelFunc
	wg       sync.WaitGroup
	stopSync context.CancelFunc
	syncWG   sync.WaitGroup
	started  bool
	spooled  bool // a sink takes from cfg.Spool
}

type worker struct {
	cfg           SinkConfig
	inst          *instruments // nil without a Meter
	attrs         metric.MeasurementOption
	recOpts       []metric.RecordOption // attrs, as Record takes them
	tracer        trace.Tracer
	log           *slog.Logger
	failing       bool // the last write attempt failed (worker goroutine only)
	q             Queue
	recs          *schema.Records
	failedPending uint64 // events given up on, not yet stated by a record (worker goroutine only)
	// carry holds the loss records of batches given up (gap, overrun,
	// malformed, forged, filtered, stream_closed, dropped...): they are
	// restated, unchanged and with their ids, at the head of the next
	// batch until a write delivers them (worker goroutine only).
	carry []schema.Event
	// stalled: the last batch held no event of the queue (only records)
	// and was given up; the next one waits for an event (or the queue's
	// close) instead of retrying the records at once (worker goroutine
	// only).
	stalled    bool
	reporter   sink.StatsReporter // nil if the sink has no counters of its own
	losses     sink.LossReporter  // nil if the sink loses nothing by itself
	seenErrors uint64             // the reporter's Errors already logged (worker goroutine only)
	stats      struct {
		delivered, batches, retries, failed, undelivered, kept atomic.Uint64
		lastErr                                                atomic.Pointer[string]
		mu                                                     sync.Mutex
		lost                                                   map[string]uint64 // under mu
	}
}

// NewDelivery validates cfg; it starts nothing (Start does).
func NewDelivery(cfg DeliveryConfig) (*Delivery, error) {
	if len(cfg.Sinks) == 0 {
		return nil, errors.New("pipeline: at least one sink is required")
	}
	if cfg.Records == nil {
		return nil, errors.New("pipeline: DeliveryConfig.Records is required: it numbers the dropped records")
	}
	d := &Delivery{cfg: cfg}
	d.cfg.DrainTimeout = or(cfg.DrainTimeout, 10*time.Second)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
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
		q := sc.Queue
		if sc.Policy == Spool && q == nil {
			if cfg.Spool == nil {
				return nil, fmt.Errorf("pipeline: sink %q: queue policy spool needs a spool (DeliveryConfig.Spool)", sc.Name)
			}
			c := cfg.Spool.Cursor(sc.Name)
			if c == nil {
				return nil, fmt.Errorf("pipeline: sink %q: the spool has no cursor of that name (open it with every spooled sink's name)", sc.Name)
			}
			q = spoolQueue{sp: cfg.Spool, c: c}
			d.spooled = true
		}
		if q == nil {
			q = newMemQueue(sc.QueueEvents, sc.QueueBytes, sc.Policy)
		}
		w := &worker{cfg: sc, q: q, recs: cfg.Records, tracer: cfg.Tracer, log: log.With("sink", sc.Name)}
		w.reporter, _ = sc.Sink.(sink.StatsReporter)
		w.losses, _ = sc.Sink.(sink.LossReporter)
		d.workers = append(d.workers, w)
	}
	if cfg.Meter != nil {
		if err := d.registerMetrics(cfg.Meter); err != nil {
			return nil, fmt.Errorf("pipeline: metrics: %w", err)
		}
	}
	d.ctx, d.abort = context.WithCancel(context.Background())
	return d, nil
}

// Start starts a worker per sink (and a Sync loop per Syncer). Call it
// once, before Push.
func (d *Delivery) Start() {
	if d.started {
		return
	}
	d.started = true
	var syncCtx context.Context
	syncCtx, d.stopSync = context.WithCancel(d.ctx)
	if d.spooled {
		d.syncWG.Add(1)
		go func() {
			defer d.syncWG.Done()
			t := time.NewTicker(d.cfg.Spool.Interval())
			defer t.Stop()
			for {
				select {
				case <-syncCtx.Done():
					return
				case <-t.C:
					if err := d.cfg.Spool.Sync(); err != nil {
						d.log().Warn("spool sync failed", "err", err)
					}
				}
			}
		}()
	}
	for _, w := range d.workers {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			w.run(d.ctx)
		}()
		if s, ok := w.cfg.Sink.(Syncer); ok {
			d.syncWG.Add(1)
			go func() {
				defer d.syncWG.Done()
				w.syncLoop(syncCtx, s)
			}()
		}
	}
}

// Push queues every event on every sink, under each queue's policy. It
// copies each Event (by value) into the queues: the slice is the caller's
// again when Push returns; what the events point to is shared and must not
// change (the transform allocates it afresh). Under Block it waits for
// room until Abort. One goroutine pushes at a time.
func (d *Delivery) Push(events []schema.Event) {
	if d.spooled && !d.cfg.Spool.Append(events) && d.ctx.Err() != nil {
		for _, w := range d.workers {
			if durable(w.q) {
				w.stats.undelivered.Add(uint64(len(events)))
			}
		}
	}
	for i := range events {
		for _, w := range d.workers {
			if durable(w.q) {
				continue
			}
			if !w.q.Push(&events[i]) && w.q.Aborted() {
				w.stats.undelivered.Add(1) // policy drops are counted by the queue
			}
		}
	}
}

// Abort is the shutdown deadline: a Push waiting for room returns, later
// pushes are counted undelivered, the workers stop writing and count what
// they still hold as undelivered. Safe from any goroutine, at any time.
func (d *Delivery) Abort() {
	// Queues first: a worker that stops on the cancelled ctx counts what
	// is queued, and nothing is queued after that.
	for _, w := range d.workers {
		w.q.Abort()
	}
	if d.spooled {
		d.cfg.Spool.Abort()
	}
	d.abort()
}

func (d *Delivery) log() *slog.Logger {
	if d.cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.cfg.Logger
}

// ShutdownGrace is what a shutdown may take beyond its drain deadline
// (DrainTimeout): reading and counting what the socket still holds (at
// most a second of it), and closing the sinks, all of them at once, under
// one deadline. Pipeline.Run returns at most DrainTimeout + ShutdownGrace
// after its context ends, whatever a sink does; Delivery.Close returns at
// most ShutdownGrace after its ctx's deadline.
const ShutdownGrace = 2 * time.Second

// Close ends the pushes (call it once the producer has stopped), lets the
// workers deliver what is queued until ctx ends (then Abort), stops them,
// and closes every sink, concurrently. With a ctx deadline, all of it ends
// by that deadline + ShutdownGrace: a worker or a sink's Close still
// running then is left behind and named in the error. Without one, the
// workers deliver until ctx ends and the sinks' Close calls get
// DrainTimeout. It returns the sinks' close errors and an error per sink
// counting what was not delivered.
func (d *Delivery) Close(ctx context.Context) error {
	var hard time.Time
	if dl, ok := ctx.Deadline(); ok {
		hard = dl.Add(ShutdownGrace)
	}
	return d.closeBy(ctx, hard)
}

// closeBy is Close with its hard deadline (zero: none for the workers,
// DrainTimeout for the sinks' Close from when the workers stopped).
func (d *Delivery) closeBy(ctx context.Context, hard time.Time) error {
	stop := context.AfterFunc(ctx, d.Abort)
	defer stop()
	for _, w := range d.workers {
		w.q.Close()
	}
	var errs []error
	if !waitBy(&d.wg, hard) {
		d.Abort()
		errs = append(errs, errors.New("pipeline: a sink write did not return by the shutdown deadline (its sink ignores its context): left behind"))
	}
	if d.stopSync != nil {
		d.stopSync()
	}
	if !waitBy(&d.syncWG, hard) {
		errs = append(errs, errors.New("pipeline: a sink Sync did not return by the shutdown deadline: left behind"))
	}
	if hard.IsZero() {
		hard = time.Now().Add(d.cfg.DrainTimeout)
	}
	cctx, cancel := context.WithDeadline(context.Background(), hard)
	defer cancel()
	closed := make([]chan error, len(d.workers))
	for i, w := range d.workers {
		closed[i] = make(chan error, 1)
		go func() { closed[i] <- w.cfg.Sink.Close(cctx) }()
	}
	timeout := time.NewTimer(time.Until(hard))
	defer timeout.Stop()
	late := false
	for i, w := range d.workers {
		var err error
		if late {
			select {
			case err = <-closed[i]:
			default:
				err = errCloseLate
			}
		} else {
			select {
			case err = <-closed[i]:
			case <-timeout.C:
				late, err = true, errCloseLate
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("pipeline: close sink %q: %w", w.cfg.Name, err))
		}
		if w.losses != nil && err != errCloseLate {
			// Found by Close (its last fsync failed): too late for a
			// record; counted, logged and returned.
			for _, l := range w.losses.TakeLosses() {
				if l.Count == 0 {
					continue
				}
				reason := or(l.Reason, "sink_lost")
				w.log.Error("the sink lost events while closing: no record can state them", "reason", reason, "events", l.Count, "detail", l.Detail)
				w.countLost(reason, l.Count)
				errs = append(errs, fmt.Errorf("pipeline: sink %q lost %d events while closing (%s), stated in no record: %s", w.cfg.Name, l.Count, reason, l.Detail))
			}
		}
		if k := w.stats.kept.Load(); k > 0 {
			w.log.Info("events not delivered by the shutdown deadline stay in the spool for the next run", "events", k)
		}
		if u := w.stats.undelivered.Load(); u > 0 {
			errs = append(errs, fmt.Errorf("pipeline: sink %q: %d events undelivered at shutdown (deadline %v)", w.cfg.Name, u, d.cfg.DrainTimeout))
		}
	}
	if d.spooled {
		if err := d.cfg.Spool.Close(); err != nil {
			errs = append(errs, fmt.Errorf("pipeline: close the spool: %w", err))
		}
	}
	d.abort() // releases the context's resources
	return errors.Join(errs...)
}

var errCloseLate = errors.New("did not return by the shutdown deadline (it ignores its context): left behind")

// waitBy waits for wg until hard (zero: no limit) and reports whether it
// is done.
func waitBy(wg *sync.WaitGroup, hard time.Time) bool {
	if hard.IsZero() {
		wg.Wait()
		return true
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(time.Until(hard))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Stats returns a snapshot of every sink's counters, in the order of
// Sinks; safe while the runtime runs.
func (d *Delivery) Stats() []SinkStats {
	out := make([]SinkStats, 0, len(d.workers))
	for _, w := range d.workers {
		qs := w.q.Stats()
		ss := SinkStats{Name: w.cfg.Name, Queued: qs.Events, QueuedBytes: qs.Bytes,
			Delivered: w.stats.delivered.Load(), Batches: w.stats.batches.Load(), Retries: w.stats.retries.Load(),
			Failed: w.stats.failed.Load(), PolicyDropped: qs.Dropped, Undelivered: w.stats.undelivered.Load(), Kept: w.stats.kept.Load()}
		if e := w.stats.lastErr.Load(); e != nil {
			ss.LastError = *e
		}
		w.stats.mu.Lock()
		if len(w.stats.lost) > 0 {
			ss.Lost = make(map[string]uint64, len(w.stats.lost))
			for r, n := range w.stats.lost {
				ss.Lost[r] = n
			}
		}
		w.stats.mu.Unlock()
		if w.reporter != nil {
			ss.Backend, ss.HasBackend = w.reporter.Counters(), true
		}
		out = append(out, ss)
	}
	return out
}

// run takes batches from the queue and writes them, with retries, until the
// queue is closed and empty or ctx (the drain deadline) ends.
func (w *worker) run(ctx context.Context) {
	// What the sink lost before the first event (a torn file tail found
	// by New) is stated at once, not at the first event.
	if lost := w.lossRecords(); len(lost) > 0 && ctx.Err() == nil {
		w.write(ctx, lost)
	}
	batch := make([]schema.Event, 0, w.cfg.BatchEvents)
	for {
		// Loss records of batches given up travel first, at most a
		// batch of them at a time; the events taken fill the rest (at
		// least one).
		head := w.carry
		w.carry = nil
		if len(head) > w.cfg.BatchEvents {
			w.carry = append([]schema.Event(nil), head[w.cfg.BatchEvents:]...)
			head = head[:w.cfg.BatchEvents]
		}
		room := max(1, w.cfg.BatchEvents-len(head))
		var ok bool
		if (w.failedPending > 0 || len(head) > 0) && !w.stalled {
			// A failure to state: do not wait for new events.
			batch, ok = w.q.TryTake(batch[:0], room, w.cfg.BatchBytes), true
		} else {
			batch, ok = w.q.Take(batch[:0], room, w.cfg.BatchBytes)
		}
		if !ok {
			w.carry = append(head, w.carry...)
			if durable(w.q) {
				// Aborted: what the cursor did not take stays in the
				// spool for the next run.
				w.stats.kept.Add(uint64(w.q.Drain()))
			}
			w.finalRecords(ctx)
			return
		}
		if len(batch) > 0 && len(batch) < room && w.cfg.Linger > 0 {
			t := time.NewTimer(w.cfg.Linger)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			batch = w.q.TryTake(batch, room, w.cfg.BatchBytes)
		}
		taken := len(batch)
		// Losses since the last batch travel first, as records.
		if lost := w.lossRecords(); lost != nil || len(head) > 0 {
			batch = append(append(head, lost...), batch...)
		}
		if ctx.Err() != nil {
			if durable(w.q) {
				// Taken and not acked, or not taken: the spool keeps
				// them for the next run.
				w.stats.kept.Add(uint64(taken + w.q.Drain()))
				w.stats.undelivered.Add(uint64(len(batch) - taken + len(w.carry)))
			} else {
				w.stats.undelivered.Add(uint64(len(batch) + len(w.carry) + w.q.Drain()))
			}
			w.carry = nil
			return
		}
		delivered := w.write(ctx, batch)
		w.stalled = taken == 0 && len(w.carry) > 0
		if delivered {
			w.q.Ack(taken)
		}
	}
}

// countLost adds n events a sink lost by itself to SinkStats.Lost.
func (w *worker) countLost(reason string, n uint64) {
	w.stats.mu.Lock()
	defer w.stats.mu.Unlock()
	if w.stats.lost == nil {
		w.stats.lost = map[string]uint64{}
	}
	w.stats.lost[reason] += n
}

// lossRecords returns the dropped records of the losses not yet stated:
// the queue policy's drops, the events given up on, and what the sink lost
// by itself (sink.LossReporter). It also logs the sink's own errors
// (sink.StatsReporter) reported since the last call.
func (w *worker) lossRecords() []schema.Event {
	w.logBackendErrors()
	var lost []schema.Event
	if w.losses != nil {
		for _, l := range w.losses.TakeLosses() {
			if l.Count == 0 {
				continue
			}
			reason := or(l.Reason, "sink_lost")
			w.log.Error("the sink lost events by itself: they become a dropped record", "reason", reason, "events", l.Count, "detail", l.Detail)
			w.countLost(reason, l.Count)
			lost = append(lost, w.recs.Dropped(l.Count, reason, w.cfg.Name))
		}
	}
	if d := w.q.TakeDropped(); d > 0 {
		lost = append(lost, w.recs.Dropped(d, "queue_full_"+w.cfg.Policy.String(), w.cfg.Name))
	}
	if w.failedPending > 0 {
		lost = append(lost, w.recs.Dropped(w.failedPending, "sink_failed", w.cfg.Name))
		w.failedPending = 0
	}
	return lost
}

// logBackendErrors logs the errors the sink counted since the last call
// that no WriteBatch returned (asynchronous errors, background work).
func (w *worker) logBackendErrors() {
	if w.reporter == nil {
		return
	}
	c := w.reporter.Counters()
	if c.Errors > w.seenErrors {
		w.log.Warn("the sink reports errors outside its writes", "errors", c.Errors-w.seenErrors, "last", c.LastError)
		w.seenErrors = c.Errors
	}
}

// write writes batch with retries. It reports whether the batch is done:
// delivered, or given up and to be stated in a dropped record; not when
// the deadline (ctx) ended it (counted undelivered).
func (w *worker) write(ctx context.Context, batch []schema.Event) bool {
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
	err := backoff.RetryNotify(op, w.cfg.Retry.backoff(ctx, durable(w.q)), notify)
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
		return true
	}
	w.failing = true
	if ctx.Err() != nil {
		if durable(w.q) {
			w.stats.kept.Add(uint64(len(batch))) // not acked: delivered again by the next run
		} else {
			w.stats.undelivered.Add(uint64(len(batch)))
		}
		return false
	}
	// Given up: the events become a dropped record at the head of the next
	// batch, and a metric. The loss records in the batch are not events:
	// they are kept, unchanged, and restated at the head of the next
	// batch (with the same ids: a consumer that got them from a write
	// that failed in part dedupes them), however many batches fail.
	var n uint64
	for i := range batch {
		if batch[i].Kind.IsLoss() {
			w.carry = append(w.carry, batch[i])
		} else {
			n++
		}
	}
	w.log.Error("sink write given up: the events become a dropped record (reason sink_failed), its loss records go with the next batch",
		"events", n, "records", uint64(len(batch))-n, "retries", retries, "permanent", sink.IsPermanent(err), "err", err)
	w.stats.failed.Add(n)
	w.failedPending += n
	return true
}

// finalRecords writes the loss records not yet delivered when the queue
// has closed: those of batches given up and of losses not yet stated (one
// attempt set, within the drain deadline). What it cannot write is
// counted undelivered, so that Close reports it.
func (w *worker) finalRecords(ctx context.Context) {
	if s, ok := w.cfg.Sink.(Syncer); ok && ctx.Err() == nil {
		// Make what was acknowledged durable while a loss it reveals (a
		// failed fsync) can still be stated.
		if err := s.Sync(ctx); err != nil {
			msg := "sync: " + err.Error()
			w.stats.lastErr.Store(&msg)
		}
	}
	lost := append(w.carry, w.lossRecords()...)
	w.carry = nil
	if len(lost) > 0 && ctx.Err() == nil {
		w.write(ctx, lost) // counts what the deadline cut; carries what it gave up
		lost = w.carry
		w.carry = nil
	}
	if len(lost) > 0 {
		w.stats.undelivered.Add(uint64(len(lost)))
		w.log.Error("loss records not written at shutdown", "records", len(lost))
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
