package pipeline

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/transform/enrich"
)

// The names of every instrument cnstream exports, in one place
// (docs/METRICS.md describes them). They follow the OpenTelemetry naming
// conventions: lowercase, dot-separated, the unit in the instrument's unit
// and not in its name. The Prometheus exporter turns "cnstream.sink.delivered"
// with unit "{event}" into cnstream_sink_delivered_total, and units "By" and
// "s" into _bytes and _seconds suffixes.
const (
	// Source: the connector socket.
	MetricSourceDatagrams   = "cnstream.source.datagrams"    // counter {datagram}: datagrams read
	MetricSourceBytes       = "cnstream.source.bytes"        // counter By: their bytes
	MetricSourceReads       = "cnstream.source.reads"        // counter {call}: recvmmsg calls that returned datagrams (forged ones included)
	MetricSourceKernelDrops = "cnstream.source.kernel_drops" // counter {datagram}: SO_MEMINFO drops (receive queue full)
	MetricSourceENOBUFS     = "cnstream.source.enobufs"      // counter {error}: ENOBUFS met
	MetricSourceForged      = "cnstream.source.forged"       // counter {datagram}: refused by the sender check
	MetricSourceTruncated   = "cnstream.source.truncated"    // counter {datagram}: larger than their buffer
	MetricSourceQueueUsage  = "cnstream.source.queue.usage"  // gauge By: receive queue fill (SK_MEMINFO_RMEM_ALLOC)
	MetricSourceQueueLimit  = "cnstream.source.queue.limit"  // gauge By: receive buffer the kernel granted
	MetricSourceSubscribed  = "cnstream.source.subscribed"   // gauge {subscription}: 1 while the proc subscription is acknowledged

	// Transform: decoding, sequence tracking, filtering.
	MetricTransformMessages   = "cnstream.transform.messages"   // counter {message}: connector messages decoded
	MetricTransformEvents     = "cnstream.transform.events"     // counter {event}: events out, loss records included
	MetricTransformRecords    = "cnstream.transform.records"    // counter {record}: loss records made: gap, overrun, malformed, forged, and the sinks' dropped records
	MetricTransformFiltered   = "cnstream.transform.filtered"   // counter {event}: dropped by the filter (on purpose)
	MetricTransformMalformed  = "cnstream.transform.malformed"  // counter {message}: did not decode
	MetricTransformGaps       = "cnstream.transform.gaps"       // counter {gap}: sequence gaps found
	MetricTransformMissing    = "cnstream.transform.missing"    // counter {event}: sequence numbers missing in those gaps
	MetricTransformDuplicates = "cnstream.transform.duplicates" // counter {message}: sequence numbers seen again
	MetricTransformRestarts   = "cnstream.transform.restarts"   // counter {restart}: streams that restarted (boot, large jump)

	// Enrichment: the process table.
	MetricEnrichProcesses = "cnstream.enrich.processes"  // gauge {process}: threads and processes in the table
	MetricEnrichEvictions = "cnstream.enrich.evictions"  // counter {process}: evicted because the table was full
	MetricEnrichProcReads = "cnstream.enrich.proc_reads" // counter {read}: reads of /proc/PID
	MetricEnrichMisses    = "cnstream.enrich.misses"     // counter {read}: of those, the process was gone
	MetricEnrichTimeouts  = "cnstream.enrich.timeouts"   // counter {read}: of those, given up at the deadline or skipped (every worker stuck)
	MetricEnrichStuck     = "cnstream.enrich.stuck"      // gauge {read}: given-up reads still blocked in the kernel
	MetricEnrichRedacted  = "cnstream.enrich.redacted"   // counter {argument}: command-line arguments whose secret transform.redact replaced

	// Sinks, each with the attributes sink.name and sink.type.
	MetricSinkQueueEvents    = "cnstream.sink.queue.events"     // gauge {event}: events queued
	MetricSinkQueueBytes     = "cnstream.sink.queue.bytes"      // gauge By: their estimated bytes
	MetricSinkQueueMaxEvents = "cnstream.sink.queue.max_events" // gauge {event}: the queue's bound
	MetricSinkQueueMaxBytes  = "cnstream.sink.queue.max_bytes"  // gauge By: the queue's bound
	MetricSinkDelivered      = "cnstream.sink.delivered"        // counter {event}: acknowledged by the backend
	MetricSinkBatches        = "cnstream.sink.batches"          // counter {batch}: batches acknowledged
	MetricSinkRetries        = "cnstream.sink.retries"          // counter {retry}: failed batch writes retried (the last failure of a batch given up is not one)
	MetricSinkFailed         = "cnstream.sink.failed"           // counter {event}: given up after the retry budget or a permanent error
	MetricSinkDropped        = "cnstream.sink.dropped"          // counter {event}: dropped by the queue policy
	MetricSinkUndelivered    = "cnstream.sink.undelivered"      // counter {event}: still queued at the shutdown deadline
	MetricSinkKept           = "cnstream.sink.kept"             // counter {event}: of a spooled sink, not delivered by the shutdown deadline and kept in the spool for the next run (not lost)
	MetricSinkLost           = "cnstream.sink.lost"             // counter {event}: lost by the sink itself (sink.LossReporter), stated in dropped records; attribute reason
	MetricSinkWriteDuration  = "cnstream.sink.write.duration"   // histogram s: one WriteBatch call; attribute outcome
	MetricEventLatency       = "cnstream.event.latency"         // histogram s: kernel timestamp to sink acknowledgement, sampled (up to 32 events a batch)

	// The sinks' own counters (sink.StatsReporter), with sink.name and
	// sink.type; only for sinks that report them.
	MetricSinkBackendRetries    = "cnstream.sink.backend.retries"    // counter {request}: requests sent again inside one WriteBatch (Kafka partitions)
	MetricSinkBackendErrors     = "cnstream.sink.backend.errors"     // counter {error}: errors no WriteBatch returned (NATS asynchronous errors, file compression)
	MetricSinkBackendReconnects = "cnstream.sink.backend.reconnects" // counter {reconnect}: connections re-established (NATS)

	// The disk spool (pipeline/spool), when the delivery has one.
	MetricSpoolBytes       = "cnstream.spool.bytes"        // gauge By: segments on disk
	MetricSpoolSegments    = "cnstream.spool.segments"     // gauge {segment}: segment files
	MetricSpoolAppended    = "cnstream.spool.appended"     // counter {record}: records appended by this process
	MetricSpoolWriteErrors = "cnstream.spool.write_errors" // counter {error}: appends that failed to write (a full disk): their events dropped, with records
	MetricSpoolWriteLost   = "cnstream.spool.write_lost"   // counter {event}: events those failed appends dropped
	MetricSpoolFullDropped = "cnstream.spool.full_dropped" // counter {event}: dropped by when_full drop_oldest, summed over sinks
	MetricSpoolFullWaits   = "cnstream.spool.full_waits"   // counter {wait}: appends that waited for room (when_full block)
	MetricSpoolCorrupt     = "cnstream.spool.corrupt"      // counter {region}: corrupt regions met (at start and by readers)
)

// Attribute keys.
const (
	AttrSinkName = attribute.Key("sink.name")
	AttrSinkType = attribute.Key("sink.type")
	AttrOutcome  = attribute.Key("outcome") // of a WriteBatch: "ok", "retriable", "permanent", "canceled"
	AttrReason   = attribute.Key("reason")  // of a sink's own loss: the dropped record's reason ("torn_tail")
)

// SourceStats is a Source that reports its counters (source.Conn does).
type SourceStats interface {
	Stats() source.Stats
}

// EnrichStats is an enricher that reports its counters (enrich.Table does).
type EnrichStats interface {
	Stats() enrich.Stats
}

// Latency buckets (seconds): from the 100 µs a quiet pipeline takes to a
// minute of a sink outage.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// instruments are the synchronous instruments the workers record into.
type instruments struct {
	writeDuration metric.Float64Histogram
	latency       metric.Float64Histogram
	spool         *spoolInstruments // nil without a spooled sink
}

// observables creates observable instruments on m, collecting the errors.
type observables struct {
	m    metric.Meter
	errs []error
}

func (o *observables) counter(name, unit, desc string) metric.Int64ObservableCounter {
	c, err := o.m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	o.errs = append(o.errs, err)
	return c
}

func (o *observables) gauge(name, unit, desc string) metric.Int64ObservableGauge {
	g, err := o.m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	o.errs = append(o.errs, err)
	return g
}

func observeCounter(o metric.Observer, i metric.Int64ObservableCounter, v uint64, opts ...metric.ObserveOption) {
	o.ObserveInt64(i, int64(v), opts...)
}

// registerReaderMetrics creates the instruments of the reader half (the
// source, the transform, the enricher) on m: observable ones that read
// their Stats at each collection.
func (p *Pipeline) registerReaderMetrics(m metric.Meter) error {
	ob := &observables{m: m}
	counter, gauge := ob.counter, ob.gauge

	srcDatagrams := counter(MetricSourceDatagrams, "{datagram}", "Datagrams read from the connector socket.")
	srcBytes := counter(MetricSourceBytes, "By", "Bytes of the datagrams read.")
	srcReads := counter(MetricSourceReads, "{call}", "recvmmsg calls that returned datagrams, forged ones included.")
	srcDrops := counter(MetricSourceKernelDrops, "{datagram}", "Datagrams the kernel dropped because the socket's receive queue was full (SO_MEMINFO).")
	srcENOBUFS := counter(MetricSourceENOBUFS, "{error}", "ENOBUFS errors met (one can stand for many drops).")
	srcForged := counter(MetricSourceForged, "{datagram}", "Datagrams refused by the sender check.")
	srcTrunc := counter(MetricSourceTruncated, "{datagram}", "Datagrams larger than their receive buffer.")
	srcQUsage := gauge(MetricSourceQueueUsage, "By", "Bytes in the socket's receive queue.")
	srcQLimit := gauge(MetricSourceQueueLimit, "By", "Receive buffer the kernel granted.")
	srcSub := gauge(MetricSourceSubscribed, "{subscription}", "1 while the process-events subscription is acknowledged.")

	trMessages := counter(MetricTransformMessages, "{message}", "Connector messages decoded.")
	trEvents := counter(MetricTransformEvents, "{event}", "Events produced, loss records included.")
	trRecords := counter(MetricTransformRecords, "{record}", "Loss records made: gap, overrun, malformed, forged, and the sinks' dropped records.")
	trFiltered := counter(MetricTransformFiltered, "{event}", "Events dropped by the filter, on purpose.")
	trMalformed := counter(MetricTransformMalformed, "{message}", "Datagrams or messages that did not decode.")
	trGaps := counter(MetricTransformGaps, "{gap}", "Sequence gaps found.")
	trMissing := counter(MetricTransformMissing, "{event}", "Sequence numbers missing in gaps.")
	trDups := counter(MetricTransformDuplicates, "{message}", "Sequence numbers seen again.")
	trRestarts := counter(MetricTransformRestarts, "{restart}", "Streams that restarted.")

	enProcs := gauge(MetricEnrichProcesses, "{process}", "Threads and processes in the process table.")
	enEvict := counter(MetricEnrichEvictions, "{process}", "Process table entries evicted because it was full.")
	enReads := counter(MetricEnrichProcReads, "{read}", "Reads of /proc/PID.")
	enMisses := counter(MetricEnrichMisses, "{read}", "Reads of /proc/PID that found the process gone.")
	enTimeouts := counter(MetricEnrichTimeouts, "{read}", "Reads of /proc/PID given up at the deadline or skipped because every worker was stuck.")
	enStuck := gauge(MetricEnrichStuck, "{read}", "Reads of /proc/PID given up and still blocked in the kernel.")
	enRedacted := counter(MetricEnrichRedacted, "{argument}", "Command-line arguments whose secret transform.redact replaced with [redacted].")
	if err := errors.Join(ob.errs...); err != nil {
		return err
	}

	observed := []metric.Observable{
		srcDatagrams, srcBytes, srcReads, srcDrops, srcENOBUFS, srcForged, srcTrunc, srcQUsage, srcQLimit, srcSub,
		trMessages, trEvents, trRecords, trFiltered, trMalformed, trGaps, trMissing, trDups, trRestarts,
		enProcs, enEvict, enReads, enMisses, enTimeouts, enStuck, enRedacted,
	}
	src, _ := p.cfg.Source.(SourceStats)
	en := p.cfg.Enrich
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c := func(i metric.Int64ObservableCounter, v uint64) { observeCounter(o, i, v) }
		if src != nil {
			s := src.Stats()
			c(srcDatagrams, s.Datagrams)
			c(srcBytes, s.Bytes)
			c(srcReads, s.Reads)
			c(srcDrops, s.KernelDrops)
			c(srcENOBUFS, s.ENOBUFS)
			c(srcForged, s.Forged)
			c(srcTrunc, s.Truncated)
			o.ObserveInt64(srcQUsage, int64(s.QueuedBytes))
			o.ObserveInt64(srcQLimit, int64(s.ReadBuffer))
			sub := int64(0)
			if s.Subscription.Active {
				sub = 1
			}
			o.ObserveInt64(srcSub, sub)
		}
		ts := p.cfg.Transform.Stats()
		c(trMessages, ts.Messages)
		c(trEvents, ts.Events)
		c(trRecords, ts.Records)
		c(trFiltered, ts.Filtered)
		c(trMalformed, ts.Malformed)
		c(trGaps, ts.Gaps)
		c(trMissing, ts.Missing)
		c(trDups, ts.Duplicates)
		c(trRestarts, ts.Restarts)
		if en != nil {
			es := en.Stats()
			o.ObserveInt64(enProcs, int64(es.Entries))
			c(enEvict, es.Evictions)
			c(enReads, es.ProcReads)
			c(enMisses, es.ProcGone)
			c(enTimeouts, es.ProcTimeouts+es.ProcSkipped)
			o.ObserveInt64(enStuck, int64(es.ProcStuck))
			c(enRedacted, es.RedactedArgs)
		}
		return nil
	}, observed...)
	return err
}

// registerMetrics creates the instruments of the delivery runtime on m:
// observable ones that read the sinks' Stats at each collection, and the
// histograms the workers record into.
func (d *Delivery) registerMetrics(m metric.Meter) error {
	ob := &observables{m: m}
	counter, gauge := ob.counter, ob.gauge
	skQEvents := gauge(MetricSinkQueueEvents, "{event}", "Events in the sink's queue.")
	skQBytes := gauge(MetricSinkQueueBytes, "By", "Estimated bytes of the events in the sink's queue.")
	skQMaxEvents := gauge(MetricSinkQueueMaxEvents, "{event}", "The sink queue's bound in events.")
	skQMaxBytes := gauge(MetricSinkQueueMaxBytes, "By", "The sink queue's bound in bytes.")
	skDelivered := counter(MetricSinkDelivered, "{event}", "Events the sink's backend acknowledged.")
	skBatches := counter(MetricSinkBatches, "{batch}", "Batches the sink's backend acknowledged.")
	skRetries := counter(MetricSinkRetries, "{retry}", "Failed batch writes that were retried.")
	skFailed := counter(MetricSinkFailed, "{event}", "Events given up after the retry budget or a permanent error.")
	skDropped := counter(MetricSinkDropped, "{event}", "Events dropped by the queue policy.")
	skUndelivered := counter(MetricSinkUndelivered, "{event}", "Events still queued when the shutdown deadline passed.")
	skKept := counter(MetricSinkKept, "{event}", "Events of a spooled sink not delivered by the shutdown deadline: kept in the disk spool for the next run, not lost.")
	skLost := counter(MetricSinkLost, "{event}", "Events the sink lost by itself (a torn file tail cut at start), each stated in a dropped record with the reason.")
	bkRetries := counter(MetricSinkBackendRetries, "{request}", "Requests the sink sent again inside one batch write (Kafka, per partition).")
	bkErrors := counter(MetricSinkBackendErrors, "{error}", "Errors the sink met that no batch write returned: asynchronous (NATS) or background work (file compression).")
	bkReconnects := counter(MetricSinkBackendReconnects, "{reconnect}", "Connections to the sink's backend re-established (NATS).")

	var spoolObs []metric.Observable
	if d.spooled {
		spoolObs = d.spoolObservables(ob)
	}

	errs := ob.errs
	var err error
	d.inst.writeDuration, err = m.Float64Histogram(MetricSinkWriteDuration, metric.WithUnit("s"),
		metric.WithDescription("Duration of one batch write to a sink, until the backend acknowledged or failed."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	errs = append(errs, err)
	d.inst.latency, err = m.Float64Histogram(MetricEventLatency, metric.WithUnit("s"),
		metric.WithDescription("Time from the kernel's event timestamp (or a record's creation) to the sink's acknowledgement: every event of a batch of up to 32, else 32 evenly spaced."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return err
	}

	for _, w := range d.workers {
		w.attrs = metric.WithAttributeSet(attribute.NewSet(AttrSinkName.String(w.cfg.Name), AttrSinkType.String(w.cfg.Type)))
		w.recOpts = []metric.RecordOption{w.attrs}
		w.inst = &d.inst
	}

	observed := []metric.Observable{
		skQEvents, skQBytes, skQMaxEvents, skQMaxBytes, skDelivered, skBatches, skRetries, skFailed, skDropped, skUndelivered,
		skKept, skLost, bkRetries, bkErrors, bkReconnects,
	}
	observed = append(observed, spoolObs...)
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if d.spooled {
			d.observeSpool(o)
		}
		for i, ss := range d.Stats() {
			w := d.workers[i]
			a := w.attrs
			c := func(i metric.Int64ObservableCounter, v uint64) { observeCounter(o, i, v, a) }
			o.ObserveInt64(skQEvents, int64(ss.Queued), a)
			o.ObserveInt64(skQBytes, ss.QueuedBytes, a)
			o.ObserveInt64(skQMaxEvents, int64(w.cfg.QueueEvents), a)
			o.ObserveInt64(skQMaxBytes, w.cfg.QueueBytes, a)
			c(skDelivered, ss.Delivered)
			c(skBatches, ss.Batches)
			c(skRetries, ss.Retries)
			c(skFailed, ss.Failed)
			c(skDropped, ss.PolicyDropped)
			c(skUndelivered, ss.Undelivered)
			c(skKept, ss.Kept)
			for reason, n := range ss.Lost {
				observeCounter(o, skLost, n, a, metric.WithAttributes(AttrReason.String(reason)))
			}
			if ss.HasBackend {
				c(bkRetries, ss.Backend.Retries)
				c(bkErrors, ss.Backend.Errors)
				c(bkReconnects, ss.Backend.Reconnects)
			}
		}
		return nil
	}, observed...)
	return err
}

// spoolInstruments are the observable instruments of the disk spool.
type spoolInstruments struct {
	bytes, segments                                                   metric.Int64ObservableGauge
	appended, writeErrors, writeLost, fullDropped, fullWaits, corrupt metric.Int64ObservableCounter
}

// spoolObservables creates the spool's instruments (d.inst.spool) and
// returns them for the callback's registration.
func (d *Delivery) spoolObservables(ob *observables) []metric.Observable {
	si := &spoolInstruments{
		bytes:       ob.gauge(MetricSpoolBytes, "By", "Bytes of the disk spool's segments."),
		segments:    ob.gauge(MetricSpoolSegments, "{segment}", "Segment files of the disk spool."),
		appended:    ob.counter(MetricSpoolAppended, "{record}", "Records appended to the disk spool by this process."),
		writeErrors: ob.counter(MetricSpoolWriteErrors, "{error}", "Appends to the disk spool that failed to write (a full disk): their events were dropped, each sink got a dropped record (spool_write_failed)."),
		writeLost:   ob.counter(MetricSpoolWriteLost, "{event}", "Events dropped by failed appends to the disk spool."),
		fullDropped: ob.counter(MetricSpoolFullDropped, "{event}", "Events dropped from the full disk spool (when_full drop_oldest), summed over the sinks that had not taken them."),
		fullWaits:   ob.counter(MetricSpoolFullWaits, "{wait}", "Appends that waited for room in the full disk spool (when_full block)."),
		corrupt:     ob.counter(MetricSpoolCorrupt, "{region}", "Corrupt regions of the disk spool met at start or by a sink's cursor, each stated in a corrupt or dropped record."),
	}
	d.inst.spool = si
	return []metric.Observable{si.bytes, si.segments, si.appended, si.writeErrors, si.writeLost, si.fullDropped, si.fullWaits, si.corrupt}
}

// observeSpool observes the spool's Stats.
func (d *Delivery) observeSpool(o metric.Observer) {
	si := d.inst.spool
	if si == nil {
		return
	}
	st := d.cfg.Spool.Stats()
	o.ObserveInt64(si.bytes, st.Bytes)
	o.ObserveInt64(si.segments, int64(st.Segments))
	observeCounter(o, si.appended, st.Appended)
	observeCounter(o, si.writeErrors, st.WriteErrors)
	observeCounter(o, si.writeLost, st.WriteLost)
	observeCounter(o, si.fullDropped, st.FullDropped)
	observeCounter(o, si.fullWaits, st.FullWaits)
	observeCounter(o, si.corrupt, st.Corrupt)
}

// latencySamples bounds the latency samples taken of one batch: recording
// costs about 200 ns a sample, too much for every event at 300k events/s.
const latencySamples = 32

// recordWrite records one WriteBatch call and, when it succeeded, the
// latency of the batch's events: every event of a batch of up to
// latencySamples, else that many evenly spaced, the first and last
// included.
func (w *worker) recordWrite(ctx context.Context, start time.Time, batch []schema.Event, outcome string) {
	if w.inst == nil {
		return
	}
	now := time.Now()
	w.inst.writeDuration.Record(ctx, now.Sub(start).Seconds(), w.attrs, metric.WithAttributes(AttrOutcome.String(outcome)))
	if outcome != "ok" || len(batch) == 0 {
		return
	}
	opts := w.recOpts[:1:1] // no allocation per call
	n := min(len(batch), latencySamples)
	for k := range n {
		i := k
		if n < len(batch) && n > 1 {
			i = k * (len(batch) - 1) / (n - 1)
		}
		if t := batch[i].Time; !t.IsZero() {
			w.inst.latency.Record(ctx, now.Sub(t).Seconds(), opts...)
		}
	}
}
