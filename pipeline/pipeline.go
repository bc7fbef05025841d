package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/cnstream/cnstream/pipeline/spool"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/transform"
)

// Config configures a Pipeline: a Reader and a Delivery.
type Config struct {
	Source    Source                 // required
	Transform *transform.Transformer // required; its Records number the delivery's dropped records too
	Sinks     []SinkConfig           // at least one

	BatchLen   int // datagrams per recvmmsg, default 64
	DgramBytes int // buffer per datagram, default 512 (process events are 76 bytes)
	ReadQueue  int // batches between reader and transform, default as many as fit in 32 MiB, at most 256

	// DrainTimeout bounds the shutdown: draining the receive queue and
	// flushing queues end by then; reading and counting what is left and
	// closing the sinks take at most ShutdownGrace more, so Run returns
	// at most DrainTimeout + ShutdownGrace after its context ends. What
	// is not delivered is counted and reported. Default 10 s.
	DrainTimeout time.Duration

	// Meter receives the pipeline's metrics (names in metrics.go): the
	// counters of the source (when it implements SourceStats), the
	// transform, Enrich and every sink, read at each collection, and the
	// write-duration and event-latency histograms. Default: none.
	Meter metric.Meter
	// Enrich is the enricher whose counters become metrics. Default: none.
	Enrich EnrichStats
	// Spool is the disk spool of the sinks of Policy Spool, given to the
	// Delivery (DeliveryConfig.Spool), which owns it once New returned
	// without error (on an error the caller closes it). Default: none.
	Spool *spool.Spool
	// Tracer receives a span per sink batch write (retries included).
	// Default: none.
	Tracer trace.Tracer
	// Logger receives the sinks' failures (each failed attempt at Warn,
	// a batch given up at Error) and recoveries (Info). Default: none.
	Logger *slog.Logger
}

// Stats is a snapshot of the pipeline.
type Stats struct {
	Transform transform.Stats
	Sinks     []SinkStats
	// Unread counts the datagrams the receive queue still held when the
	// shutdown deadline passed: read and discarded, delivered to no sink.
	Unread uint64
}

// Pipeline runs source -> transform -> sinks: a Reader whose events a
// Delivery takes.
type Pipeline struct {
	cfg      Config
	reader   *Reader
	delivery *Delivery
}

// New validates cfg; it starts nothing (Run does).
func New(cfg Config) (*Pipeline, error) {
	if cfg.Source == nil || cfg.Transform == nil {
		return nil, errors.New("pipeline: Config.Source and Config.Transform are required")
	}
	cfg.DrainTimeout = or(cfg.DrainTimeout, 10*time.Second)
	r, err := NewReader(ReaderConfig{Source: cfg.Source, Transform: cfg.Transform,
		BatchLen: cfg.BatchLen, DgramBytes: cfg.DgramBytes, ReadQueue: cfg.ReadQueue})
	if err != nil {
		return nil, err
	}
	d, err := NewDelivery(DeliveryConfig{Sinks: cfg.Sinks, Records: cfg.Transform.Records(), DrainTimeout: cfg.DrainTimeout,
		Meter: cfg.Meter, Tracer: cfg.Tracer, Logger: cfg.Logger, Spool: cfg.Spool})
	if err != nil {
		return nil, err
	}
	p := &Pipeline{cfg: cfg, reader: r, delivery: d}
	if cfg.Meter != nil {
		if err := p.registerReaderMetrics(cfg.Meter); err != nil {
			return nil, fmt.Errorf("pipeline: metrics: %w", err)
		}
	}
	return p, nil
}

// Stats returns a snapshot; safe while Run runs.
func (p *Pipeline) Stats() Stats {
	return Stats{Transform: p.cfg.Transform.Stats(), Sinks: p.delivery.Stats(), Unread: p.reader.Unread()}
}

// Run reads until ctx is cancelled or the source fails, then shuts down in
// order: stop reading (quiesce, drain the receive queue), close the source
// (IGNORE), flush every sink queue and close the sinks; the drain deadline
// (DrainTimeout from ctx's end, or from the source's failure) cuts the
// drain and the flush, and Run returns at most ShutdownGrace after it. It
// returns the source's error, and an error counting what could not be
// delivered.
func (p *Pipeline) Run(ctx context.Context) error {
	p.delivery.Start()

	// Once ctx ends, the drain deadline starts.
	drainCtx, cancelDrain := context.WithCancel(context.Background())
	defer cancelDrain()
	drainTimer := time.AfterFunc(time.Hour, func() {
		p.reader.Cut()
		p.delivery.Abort()
		cancelDrain()
	})
	drainTimer.Stop()
	var deadline time.Time // the drain deadline, set once by arm
	var armOnce sync.Once
	arm := func() {
		armOnce.Do(func() {
			deadline = time.Now().Add(p.cfg.DrainTimeout)
			drainTimer.Reset(p.cfg.DrainTimeout)
		})
	}
	stopArming := context.AfterFunc(ctx, arm)
	defer func() {
		stopArming()
		drainTimer.Stop()
	}()

	readErr := p.reader.Run(ctx, func(events []schema.Event, _ bool) bool {
		p.delivery.Push(events)
		return true
	})
	arm() // the source failed before ctx ended: the drain starts now
	closeErr := p.cfg.Source.Close()
	deliveryErr := p.delivery.closeBy(drainCtx, deadline.Add(ShutdownGrace))
	var unreadErr error
	if u := p.reader.Unread(); u > 0 {
		unreadErr = fmt.Errorf("pipeline: %d datagrams still in the socket's receive queue at the shutdown deadline (%v): read and discarded, not delivered", u, p.cfg.DrainTimeout)
	}
	return errors.Join(readErr, closeErr, deliveryErr, unreadErr)
}
