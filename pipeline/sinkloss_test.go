package pipeline

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/file"
)

// lossySink is a test double (not a backend): a recordingSink that also
// reports counters of its own and losses it was told of.
type lossySink struct {
	recordingSink
	lmu      sync.Mutex
	losses   []sink.Loss
	counters sink.Counters
}

func (s *lossySink) lose(l sink.Loss) {
	s.lmu.Lock()
	s.losses = append(s.losses, l)
	s.lmu.Unlock()
}

func (s *lossySink) TakeLosses() []sink.Loss {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	l := s.losses
	s.losses = nil
	return l
}

func (s *lossySink) Counters() sink.Counters {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.counters
}

// collect returns the int64 sums of reader's metrics by name and
// attributes ("name sink.name=a,reason=x"), and the names with data points.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if d, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range d.DataPoints {
					key := m.Name
					for _, kv := range dp.Attributes.ToSlice() {
						if kv.Key != AttrSinkType {
							key += " " + string(kv.Key) + "=" + kv.Value.String()
						}
					}
					out[key] = dp.Value
				}
			}
		}
	}
	return out
}

// waitEvents waits until s holds at least n events.
func waitEvents(t *testing.T, s *recordingSink, n int) []schema.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := s.snapshot()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink holds %d events after 10 s, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// TestDeliverySinkLosses: what a sink lost by itself (sink.LossReporter)
// becomes a dropped record with its reason: a loss known before the first
// event is written at once, a later one at the head of the next batch;
// both are counted by reason in cnstream.sink.lost, and the sink's own
// counters (sink.StatsReporter) are exported; a sink without them has no
// such data points.
func TestDeliverySinkLosses(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	lossy, plain := &lossySink{}, &recordingSink{}
	lossy.lose(sink.Loss{Count: 3, Reason: "torn_tail", Detail: "before the start"})
	lossy.counters = sink.Counters{Retries: 7, Errors: 2, LastError: "compressing: EIO", Reconnects: 1}
	recs := schema.NewRecords("test-run", testHost)
	d, err := NewDelivery(DeliveryConfig{Records: recs, DrainTimeout: 5 * time.Second, Meter: mp.Meter("cnstream"),
		Sinks: []SinkConfig{{Name: "lossy", Type: "test", Sink: lossy, Linger: -1}, {Name: "plain", Type: "test", Sink: plain, Linger: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()

	// Stated before any event is pushed.
	got := waitEvents(t, &lossy.recordingSink, 1)
	if got[0].Kind != schema.KindDropped || *got[0].Dropped != (schema.DroppedInfo{Count: 3, Reason: "torn_tail", Sink: "lossy"}) {
		t.Fatalf("first write %+v, want the torn_tail record", got[0])
	}

	d.Push([]schema.Event{ev(1, 8)})
	waitEvents(t, &lossy.recordingSink, 2)
	lossy.lose(sink.Loss{Count: 5, Reason: "torn_tail"})
	lossy.lose(sink.Loss{Count: 0, Reason: "nothing"}) // nothing lost: no record
	lossy.lose(sink.Loss{Count: 2})                    // no reason: sink_lost
	d.Push([]schema.Event{ev(2, 8), ev(3, 8)})
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}

	type rec struct {
		Seq    uint32
		Reason string
		Count  uint64
	}
	var seen []rec
	for _, e := range lossy.snapshot() {
		if e.Kind == schema.KindDropped {
			seen = append(seen, rec{Reason: e.Dropped.Reason, Count: e.Dropped.Count})
		} else {
			seen = append(seen, rec{Seq: e.Stream.Seq})
		}
	}
	want := []rec{{Reason: "torn_tail", Count: 3}, {Seq: 1}, {Reason: "torn_tail", Count: 5}, {Reason: "sink_lost", Count: 2}, {Seq: 2}, {Seq: 3}}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("lossy sink's stream (-want +got):\n%s", diff)
	}
	if raw, dropped := split(plain.snapshot()); len(raw) != 3 || dropped != nil {
		t.Errorf("plain sink: %v, dropped %v; want 3 events and no record", raw, dropped)
	}
	st := d.Stats()
	if diff := cmp.Diff(map[string]uint64{"torn_tail": 8, "sink_lost": 2}, st[0].Lost); diff != "" || !st[0].HasBackend || st[1].HasBackend || st[1].Lost != nil {
		t.Errorf("stats %+v; lost (-want +got):\n%s", st, diff)
	}

	m := collect(t, reader)
	for key, want := range map[string]int64{
		MetricSinkLost + " reason=torn_tail sink.name=lossy": 8,
		MetricSinkLost + " reason=sink_lost sink.name=lossy": 2,
		MetricSinkBackendRetries + " sink.name=lossy":        7,
		MetricSinkBackendErrors + " sink.name=lossy":         2,
		MetricSinkBackendReconnects + " sink.name=lossy":     1,
		MetricSinkDelivered + " sink.name=lossy":             6,
		MetricSinkDelivered + " sink.name=plain":             3,
	} {
		if got, ok := m[key]; !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", key, got, ok, want)
		}
	}
	for key := range m {
		for _, name := range []string{MetricSinkLost, MetricSinkBackendRetries, MetricSinkBackendErrors, MetricSinkBackendReconnects} {
			if strings.HasPrefix(key, name+" ") && strings.HasSuffix(key, " sink.name=plain") {
				t.Errorf("%s: the plain sink reports no counters or losses of its own", key)
			}
		}
	}
}

// TestDeliveryFileTornTail: the file sink's active file is truncated at a
// random offset inside a record (a crash mid-write); a new file sink cuts
// the torn record, and the delivery runtime states it in a torn_tail
// dropped record, counted in cnstream.sink.lost, before the new events.
func TestDeliveryFileTornTail(t *testing.T) {
	for _, format := range []file.Format{file.JSONL, file.Msgpack} {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			cfg := file.Config{Dir: dir, Format: format, MaxSize: -1, Compression: file.None}
			event := func(seq uint32) schema.Event {
				e := ev(seq, 16+int(seq%32))
				e.Host, e.Time, e.ID = &testHost, time.Now(), "test-"+string(rune('a'+seq%26))
				return e
			}
			first, err := file.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			const n = 50
			var written []schema.Event
			for i := range uint32(n) {
				written = append(written, event(i))
			}
			if err := first.WriteBatch(t.Context(), written); err != nil {
				t.Fatal(err)
			}
			if err := first.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "events."+string(format))
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ends := recordEnds(data, format)
			if len(ends) != n {
				t.Fatalf("%d records in the file, want %d", len(ends), n)
			}

			// A random offset inside record k (not at its start).
			seed := uint64(time.Now().UnixNano())
			r := rand.New(rand.NewPCG(seed, 19))
			k := r.IntN(n)
			start := int64(0)
			if k > 0 {
				start = ends[k-1]
			}
			cut := start + 1 + r.Int64N(ends[k]-start-1)
			t.Logf("seed %d: cut at %d, inside record %d [%d, %d)", seed, cut, k, start, ends[k])
			if err := os.Truncate(path, cut); err != nil {
				t.Fatal(err)
			}

			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			defer mp.Shutdown(context.Background())
			s, err := file.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			recs := schema.NewRecords("test-run", testHost)
			d, err := NewDelivery(DeliveryConfig{Records: recs, DrainTimeout: 5 * time.Second, Meter: mp.Meter("cnstream"),
				Sinks: []SinkConfig{{Name: "files", Type: "file", Sink: s}}})
			if err != nil {
				t.Fatal(err)
			}
			d.Start()
			more := []schema.Event{event(100), event(101)}
			d.Push(more)
			if err := d.Close(context.Background()); err != nil {
				t.Fatalf("Close: %v", err)
			}

			got, err := file.ReadAll(cfg)
			if err != nil {
				t.Fatalf("reading back: %v", err)
			}
			var seqs []uint32
			var dropped []schema.DroppedInfo
			for _, e := range got {
				if e.Kind == schema.KindDropped {
					dropped = append(dropped, *e.Dropped)
					seqs = append(seqs, 1<<31) // where the record is
				} else {
					seqs = append(seqs, e.Stream.Seq)
				}
			}
			var want []uint32
			for i := range uint32(k) {
				want = append(want, i)
			}
			want = append(want, 1<<31, 100, 101)
			if diff := cmp.Diff(want, seqs); diff != "" {
				t.Errorf("file after the restart (1<<31: the dropped record) (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]schema.DroppedInfo{{Count: 1, Reason: "torn_tail", Sink: "files"}}, dropped); diff != "" {
				t.Errorf("dropped records (-want +got):\n%s", diff)
			}
			key := MetricSinkLost + " reason=torn_tail sink.name=files"
			if v := collect(t, reader)[key]; v != 1 {
				t.Errorf("%s = %d, want 1", key, v)
			}
		})
	}
}

// recordEnds returns the end offset of each record in a file's data.
func recordEnds(data []byte, format file.Format) []int64 {
	var ends []int64
	if format == file.JSONL {
		for i, b := range data {
			if b == '\n' {
				ends = append(ends, int64(i+1))
			}
		}
		return ends
	}
	for off := 0; off+4 <= len(data); {
		l := int(data[off])<<24 | int(data[off+1])<<16 | int(data[off+2])<<8 | int(data[off+3])
		off += 4 + l
		ends = append(ends, int64(off))
	}
	return ends
}
