package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/cnstream/cnstream/pipeline/spool"
	"github.com/cnstream/cnstream/schema"
)

// collectInt64 returns every int64 sum and gauge of reader by name, or by
// name/sink for those with a sink.name.
func collectInt64(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var dps []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				dps = d.DataPoints
			case metricdata.Gauge[int64]:
				dps = d.DataPoints
			}
			for _, dp := range dps {
				key := m.Name
				if name, ok := dp.Attributes.Value(AttrSinkName); ok {
					key += "/" + name.AsString()
				}
				out[key] = dp.Value
			}
		}
	}
	return out
}

// spoolDelivery returns a Delivery whose sinks all take from a spool in a
// temporary directory, with a manual metric reader.
func spoolDelivery(t *testing.T, sinks ...SinkConfig) (*Delivery, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	recs := schema.NewRecords("test-run", testHost)
	var names []string
	for i := range sinks {
		sinks[i].Policy = Spool
		names = append(names, sinks[i].Name)
	}
	sp, err := spool.Open(spool.Config{Dir: t.TempDir(), Records: recs}, names)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDelivery(DeliveryConfig{Sinks: sinks, Records: recs, DrainTimeout: 5 * time.Second, Spool: sp, Meter: mp.Meter("cnstream")})
	if err != nil {
		_ = sp.Close()
		t.Fatal(err)
	}
	return d, reader
}

// TestMetricsSpool: a Delivery with a spool exports the spool's counters
// and gauges and each sink's kept events, read from Stats at collection.
func TestMetricsSpool(t *testing.T) {
	a := &recordingSink{}
	d, reader := spoolDelivery(t, SinkConfig{Name: "a", Type: "memory", Sink: a})
	d.Start()
	const n = 100
	batch := make([]schema.Event, 0, n)
	for i := range n {
		batch = append(batch, ev(uint32(i), 16))
	}
	d.Push(batch)
	deadline := time.Now().Add(10 * time.Second)
	for len(a.snapshot()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	running := collectInt64(t, reader)
	if running[MetricSpoolBytes] <= 0 || running[MetricSpoolSegments] < 1 {
		t.Errorf("while running: spool bytes %d, segments %d: want the segment holding %d events", running[MetricSpoolBytes], running[MetricSpoolSegments], n)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := collectInt64(t, reader)
	want := map[string]int64{
		MetricSpoolAppended:        n,
		MetricSpoolWriteErrors:     0,
		MetricSpoolWriteLost:       0,
		MetricSpoolFullDropped:     0,
		MetricSpoolFullWaits:       0,
		MetricSpoolCorrupt:         0,
		MetricSinkDelivered + "/a": n,
		MetricSinkKept + "/a":      0,
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s = %d (reported: %v), want %d", name, g, ok, w)
		}
	}
	if st := d.cfg.Spool.Stats(); got[MetricSpoolBytes] != st.Bytes || got[MetricSpoolSegments] != int64(st.Segments) {
		t.Errorf("spool bytes %d segments %d, want the spool's Stats %+v", got[MetricSpoolBytes], got[MetricSpoolSegments], st)
	}
}

// TestMetricsSpoolKept: events a spooled sink has not delivered by the
// shutdown deadline are counted kept, not undelivered.
func TestMetricsSpoolKept(t *testing.T) {
	stuck := &recordingSink{gate: make(chan struct{})} // never opened: no write returns before the deadline
	d, reader := spoolDelivery(t, SinkConfig{Name: "stuck", Type: "memory", Sink: stuck})
	d.Start()
	const n = 50
	batch := make([]schema.Event, 0, n)
	for i := range n {
		batch = append(batch, ev(uint32(i), 16))
	}
	d.Push(batch)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = d.Close(ctx) // reports what was not delivered
	ss := d.Stats()[0]
	got := collectInt64(t, reader)
	if diff := cmp.Diff(map[string]int64{"kept": n, "undelivered": 0, "delivered": 0}, map[string]int64{
		"kept": got[MetricSinkKept+"/stuck"], "undelivered": got[MetricSinkUndelivered+"/stuck"], "delivered": got[MetricSinkDelivered+"/stuck"],
	}); diff != "" {
		t.Errorf("metrics (-want +got):\n%s\nstats %+v", diff, ss)
	}
	if int64(ss.Kept) != got[MetricSinkKept+"/stuck"] {
		t.Errorf("kept metric %d, Stats.Kept %d", got[MetricSinkKept+"/stuck"], ss.Kept)
	}
}
