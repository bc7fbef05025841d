package pipeline

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/cnstream/cnstream/schema"
)

// BenchmarkRecordWrite: the metrics of one acknowledged batch of 1024
// events (a write duration and a latency sample per event), per event.
func BenchmarkRecordWrite(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(context.Background())
	d := &Delivery{}
	m := mp.Meter("bench")
	var err error
	if d.inst.writeDuration, err = m.Float64Histogram(MetricSinkWriteDuration); err != nil {
		b.Fatal(err)
	}
	if d.inst.latency, err = m.Float64Histogram(MetricEventLatency, metric.WithExplicitBucketBoundaries(latencyBuckets...)); err != nil {
		b.Fatal(err)
	}
	w := &worker{inst: &d.inst, attrs: metric.WithAttributeSet(attribute.NewSet(AttrSinkName.String("s"), AttrSinkType.String("file")))}
	w.recOpts = []metric.RecordOption{w.attrs}
	batch := make([]schema.Event, 1024)
	now := time.Now()
	for i := range batch {
		batch[i].Time = now.Add(-time.Duration(i) * time.Microsecond)
	}
	b.ReportAllocs()
	for b.Loop() {
		w.recordWrite(context.Background(), now, batch, "ok")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/event")
}
