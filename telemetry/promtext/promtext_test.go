package promtext

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	b := func(pairs ...float64) []Bucket {
		var bs []Bucket
		for i := 0; i < len(pairs); i += 2 {
			bs = append(bs, Bucket{pairs[i], pairs[i+1]})
		}
		return bs
	}
	// Values as Prometheus' histogram_quantile gives them.
	for _, c := range []struct {
		name string
		q    float64
		bs   []Bucket
		want float64
	}{
		{"empty", 0.5, b(1, 0, inf, 0), math.NaN()},
		{"no +Inf", 0.5, b(1, 5), math.NaN()},
		{"first bucket from 0", 0.5, b(1, 10, 2, 10, inf, 10), 0.5},
		{"interpolated", 0.5, b(0.1, 0, 0.2, 10, 0.4, 20, inf, 20), 0.2},
		{"interpolated 2", 0.75, b(0.1, 0, 0.2, 10, 0.4, 20, inf, 20), 0.3},
		{"p99 in +Inf: highest finite bound", 0.99, b(1, 50, 60, 90, inf, 100), 60},
		{"p50 at a bound", 0.5, b(1, 50, 2, 100, inf, 100), 1},
		{"non-monotonic fixed", 0.5, b(1, 6, 2, 4, inf, 10), 5.0 / 6},
		{"q > 1", 1.5, b(1, 1, inf, 1), inf},
		{"q < 0", -1, b(1, 1, inf, 1), math.Inf(-1)},
		{"negative first bound", 0.1, b(-1, 5, 1, 10, inf, 10), -1},
	} {
		got := Quantile(c.q, c.bs)
		if !(got == c.want || math.IsNaN(got) && math.IsNaN(c.want) || math.Abs(got-c.want) < 1e-12) {
			t.Errorf("%s: Quantile(%v, %v) = %v, want %v", c.name, c.q, c.bs, got, c.want)
		}
	}
	// Deltas between two scrapes: what happened in between; a count that
	// went down is a restart, counted from zero.
	prev := b(1, 5, 2, 8, inf, 9)
	if diff := cmp.Diff(b(1, 1, 2, 2, inf, 2), Delta(prev, b(1, 6, 2, 10, inf, 11))); diff != "" {
		t.Errorf("Delta (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(b(1, 1, 2, 1, inf, 1), Delta(prev, b(1, 1, 2, 1, inf, 1))); diff != "" {
		t.Errorf("Delta after a reset (-want +got):\n%s", diff)
	}
}

// TestName: the OpenTelemetry -> Prometheus name translation of the
// exporter's default (prometheus/otlptranslator with suffixes), on names
// like cnstream's and on the cases it treats specially.
func TestName(t *testing.T) {
	for _, c := range []struct {
		name, unit string
		kind       Kind
		want       string
	}{
		{"cnstream.sink.delivered", "{event}", Counter, "cnstream_sink_delivered_total"},
		{"cnstream.source.kernel_drops", "{datagram}", Counter, "cnstream_source_kernel_drops_total"},
		{"cnstream.source.bytes", "By", Counter, "cnstream_source_bytes_total"}, // has the unit's word
		{"cnstream.source.queue.usage", "By", Gauge, "cnstream_source_queue_usage_bytes"},
		{"cnstream.sink.queue.max_bytes", "By", Gauge, "cnstream_sink_queue_max_bytes"},
		{"cnstream.sink.queue.events", "{event}", Gauge, "cnstream_sink_queue_events"},
		{"cnstream.sink.write.duration", "s", Histogram, "cnstream_sink_write_duration_seconds"},
		{"rpc.duration", "ms", Histogram, "rpc_duration_milliseconds"},
		{"jobs.total", "{job}", Counter, "jobs_total"}, // _total once, last
		{"a.total.b", "", Counter, "a_b_total"},
		{"cpu.utilization", "1", Gauge, "cpu_utilization_ratio"},
		{"cpu.time", "1", Counter, "cpu_time_total"},
		{"weird..name-x", "m", Gauge, "weird_name_x_m"},
		{"ns:name", "", Gauge, "ns:name"},
	} {
		if got := Name(c.name, c.unit, c.kind); got != c.want {
			t.Errorf("Name(%q, %q, %v) = %q, want %q", c.name, c.unit, c.kind, got, c.want)
		}
	}
	if got := Label("sink.name"); got != "sink_name" {
		t.Errorf("Label(sink.name) = %q", got)
	}
}

// TestParse: samples by family and labels, summed over the labels not
// matched; histograms summed bucket by bucket, +Inf last; a broken line is
// an error.
func TestParse(t *testing.T) {
	m, err := Parse(strings.NewReader(`# TYPE d_total counter
d_total{sink="a",outcome="ok"} 3
d_total{sink="a",outcome="retry"} 2
d_total{sink="b",outcome="ok"} 5
# TYPE q gauge
q 7
# TYPE w histogram
w_bucket{sink="a",outcome="ok",le="1"} 1
w_bucket{sink="a",outcome="ok",le="+Inf"} 2
w_sum{sink="a",outcome="ok"} 3
w_count{sink="a",outcome="ok"} 2
w_bucket{sink="a",outcome="retry",le="1"} 0
w_bucket{sink="a",outcome="retry",le="+Inf"} 4
w_sum{sink="a",outcome="retry"} 9
w_count{sink="a",outcome="retry"} 4
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		match []string
		want  float64
		ok    bool
	}{
		{"d_total", nil, 10, true},
		{"d_total", []string{"sink", "a"}, 5, true},
		{"d_total", []string{"sink", "a", "outcome", "ok"}, 3, true},
		{"d_total", []string{"sink", "c"}, 0, false},
		{"q", nil, 7, true},
		{"absent", nil, 0, false},
	} {
		if got, ok := m.Value(c.name, c.match...); got != c.want || ok != c.ok {
			t.Errorf("Value(%s, %v) = %v, %v; want %v, %v", c.name, c.match, got, ok, c.want, c.ok)
		}
	}
	want := []Bucket{{1, 1}, {math.Inf(1), 6}}
	if diff := cmp.Diff(want, m.Histogram("w", "sink", "a")); diff != "" {
		t.Errorf("Histogram(w, sink a) (-want +got):\n%s", diff)
	}
	if _, err := Parse(strings.NewReader("x{a=\"b\" 1\n")); err == nil {
		t.Error("parse of a broken line: no error")
	}
}
