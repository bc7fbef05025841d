//go:build linux

package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cnstream/cnstream/schema"
)

// TestMetricsAfterKnownLoad: n datagrams through a real connector socket
// into two sinks, one of which fails its first write once: the collected
// metrics (sdkmetric.NewManualReader) count exactly what happened, and each
// batch write is a span.
func TestMetricsAfterKnownLoad(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())

	good, flaky := newMemSink(), newMemSink()
	flaky.fail = func(n int) error {
		if n == 1 {
			return errors.New("first write fails")
		}
		return nil
	}
	s := startWith(t, groupMetric, 0, func(c *Config) {
		c.Meter = mp.Meter("cnstream")
		c.Tracer = tp.Tracer("cnstream")
	},
		SinkConfig{Name: "good", Type: "memory", Sink: good, BatchEvents: latencySamples},
		SinkConfig{Name: "flaky", Type: "memory", Sink: flaky, BatchEvents: 100, Retry: RetryConfig{Initial: time.Millisecond}})
	const n = 1000
	s.send(t, groupMetric, n)
	for _, m := range []*memSink{good, flaky} {
		m.waitFor(t, 20*time.Second, func(ev []schema.Event) bool { raw, _ := s.ours(ev); return len(raw) == n })
	}
	if err := s.shutdown(t); err != nil {
		t.Fatalf("Run: %v", err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}      // name -> value (no attributes)
	perSink := map[string]int64{}   // name/sink -> value
	hist := map[string]uint64{}     // name/sink -> count
	outcomes := map[string]uint64{} // sink/outcome -> write count
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					if name, ok := dp.Attributes.Value(AttrSinkName); ok {
						perSink[m.Name+"/"+name.AsString()] = dp.Value
					} else {
						sums[m.Name] = dp.Value
					}
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					if name, ok := dp.Attributes.Value(AttrSinkName); ok {
						perSink[m.Name+"/"+name.AsString()] = dp.Value
					} else {
						sums[m.Name] = dp.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					name, _ := dp.Attributes.Value(AttrSinkName)
					hist[m.Name+"/"+name.AsString()] += dp.Count
					if o, ok := dp.Attributes.Value(AttrOutcome); ok {
						outcomes[name.AsString()+"/"+o.AsString()] += dp.Count
					}
				}
			}
		}
	}
	// The group hears only this test's datagrams (and, rarely, another
	// test's on the same group: none uses 11).
	st := s.p.Stats()
	for name, want := range map[string]int64{
		MetricSourceDatagrams:     n,
		MetricSourceKernelDrops:   0,
		MetricTransformMessages:   n,
		MetricTransformEvents:     int64(st.Transform.Events),
		MetricTransformGaps:       0,
		MetricTransformMissing:    0,
		MetricSourceSubscribed:    0, // no process-events subscription here
		MetricSourceQueueLimit:    int64(s.rx.Stats().ReadBuffer),
		MetricTransformFiltered:   0,
		MetricTransformMalformed:  0,
		MetricTransformDuplicates: 0,
	} {
		if got, ok := sums[name]; !ok || got != want {
			t.Errorf("%s = %d (reported: %v), want %d", name, got, ok, want)
		}
	}
	if st.Transform.Events < n {
		t.Errorf("transform events %d < %d", st.Transform.Events, n)
	}
	for _, sk := range []string{"good", "flaky"} {
		delivered := perSink[MetricSinkDelivered+"/"+sk]
		if delivered < n || delivered != int64(st.Transform.Events) {
			t.Errorf("sink %s delivered %d, want the %d events out of the transform", sk, delivered, st.Transform.Events)
		}
		if got := perSink[MetricSinkQueueEvents+"/"+sk]; got != 0 {
			t.Errorf("sink %s queue %d after the drain, want 0", sk, got)
		}
		if got := perSink[MetricSinkQueueMaxEvents+"/"+sk]; got != 65536 {
			t.Errorf("sink %s queue bound %d, want the default 65536", sk, got)
		}
		batches := perSink[MetricSinkBatches+"/"+sk]
		samples := hist[MetricEventLatency+"/"+sk]
		switch sk {
		case "good": // batches of up to latencySamples: every event
			if samples != uint64(delivered) {
				t.Errorf("sink %s: %d latency samples, want one per delivered event (%d)", sk, samples, delivered)
			}
		case "flaky": // batches of up to 100: up to latencySamples each
			if samples < uint64(batches) || samples > uint64(batches*latencySamples) || samples >= uint64(delivered) {
				t.Errorf("sink %s: %d latency samples for %d events in %d batches", sk, samples, delivered, batches)
			}
		}
		if got := outcomes[sk+"/ok"]; int64(got) != batches || batches == 0 {
			t.Errorf("sink %s: %d ok writes recorded, %d batches counted", sk, got, batches)
		}
	}
	if got := perSink[MetricSinkRetries+"/flaky"]; got != 1 {
		t.Errorf("flaky retries = %d, want 1", got)
	}
	if got := outcomes["flaky/retriable"]; got != 1 {
		t.Errorf("flaky: %d retriable writes recorded, want 1", got)
	}
	if got := perSink[MetricSinkRetries+"/good"]; got != 0 {
		t.Errorf("good retries = %d, want 0", got)
	}

	// One span per batch: for the flaky sink, its first has a retry.
	var okSpans, retried int
	for _, sp := range spans.Ended() {
		if sp.Name() != "cnstream.sink.write" {
			continue
		}
		attrs := attribute.NewSet(sp.Attributes()...)
		if v, _ := attrs.Value("cnstream.batch.retries"); v.AsInt64() > 0 {
			retried++
		}
		if sp.Status().Code == codes.Ok {
			okSpans++
		}
	}
	batches := perSink[MetricSinkBatches+"/good"] + perSink[MetricSinkBatches+"/flaky"]
	if int64(okSpans) != batches || retried != 1 {
		t.Errorf("%d ok spans (%d batches), %d with retries (want 1)", okSpans, batches, retried)
	}
}
