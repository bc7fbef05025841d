package pipeline

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cnstream/cnstream/pipeline/spool"
	"github.com/cnstream/cnstream/schema"
)

func spoolEvents(recs *schema.Records, from, n int) []schema.Event {
	out := make([]schema.Event, n)
	for i := range out {
		out[i] = schema.Event{Version: schema.EventVersion, Kind: schema.KindRaw, Host: recs.Host(), Time: time.Unix(1, 0).UTC(),
			Stream: &schema.Stream{Idx: 20, Val: 1, Sender: 77, Seq: uint32(from + i)}, Raw: &schema.RawInfo{Group: 20, Payload: []byte("x")}}
		out[i].ID = out[i].EventID()
	}
	return out
}

func openSpool(t *testing.T, dir string, recs *schema.Records, sinks ...string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(spool.Config{Dir: dir, Records: recs, FsyncInterval: 20 * time.Millisecond}, sinks)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// TestDeliverySpoolOutage: a spooled sink that fails for a while loses
// nothing (no retry budget: it is retried until it recovers), and a memory
// sink beside it gets everything too.
func TestDeliverySpoolOutage(t *testing.T) {
	recs := schema.NewRecords("test-run", testHost)
	sp := openSpool(t, t.TempDir(), recs, "spooled")
	down := time.Now().Add(300 * time.Millisecond)
	flaky := &recordingSink{fail: func(int) error {
		if time.Now().Before(down) {
			return errors.New("broker down")
		}
		return nil
	}}
	mem := &recordingSink{}
	d, err := NewDelivery(DeliveryConfig{Records: recs, Spool: sp, Sinks: []SinkConfig{
		{Name: "spooled", Sink: flaky, Policy: Spool, Retry: RetryConfig{Initial: time.Millisecond, Max: 5 * time.Millisecond}},
		{Name: "memory", Sink: mem},
	}})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	for i := range 20 {
		d.Push(spoolEvents(recs, i*100, 100))
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, s := range []*recordingSink{flaky, mem} {
		got := s.snapshot()
		if len(got) != 2000 || slices.ContainsFunc(got, func(e schema.Event) bool { return e.Kind == schema.KindDropped }) {
			t.Fatalf("got %d events (want 2000, no dropped record)", len(got))
		}
	}
	if st := d.Stats()[0]; st.Retries == 0 || st.Failed != 0 || st.Kept != 0 {
		t.Fatalf("stats %+v: want retries, nothing failed or kept", st)
	}
}

// TestDeliverySpoolKeptForTheNextRun: what a sink did not acknowledge by
// the shutdown deadline is kept, and the next run delivers it first, in
// order, with the same ids, before its own events.
func TestDeliverySpoolKeptForTheNextRun(t *testing.T) {
	dir := t.TempDir()
	recs := schema.NewRecords("run-1", testHost)
	sp := openSpool(t, dir, recs, "k")
	stuck := &recordingSink{gate: make(chan struct{})} // never answers
	d, err := NewDelivery(DeliveryConfig{Records: recs, Spool: sp, Sinks: []SinkConfig{{Name: "k", Sink: stuck, Policy: Spool}}})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	first := spoolEvents(recs, 0, 500)
	d.Push(first)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = d.Close(ctx)
	if st := d.Stats()[0]; st.Kept != 500 || st.Undelivered != 0 {
		t.Fatalf("stats %+v (close: %v): want 500 kept, 0 undelivered", st, err)
	}

	recs2 := schema.NewRecords("run-2", testHost)
	sp = openSpool(t, dir, recs2, "k")
	if r := sp.Resume(); len(r) != 1 || r[0].Seq != 499 || r[0].Sender != 77 {
		t.Fatalf("Resume = %+v, want sender 77 at 499", r)
	}
	ok := &recordingSink{}
	d, err = NewDelivery(DeliveryConfig{Records: recs2, Spool: sp, Sinks: []SinkConfig{{Name: "k", Sink: ok, Policy: Spool}}})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	second := spoolEvents(recs2, 500, 100)
	d.Push(second)
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := ok.snapshot()
	want := append(append([]schema.Event(nil), first...), second...)
	if len(got) != len(want) {
		t.Fatalf("next run delivered %d, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].EventID() != want[i].EventID() {
			t.Fatalf("event %d: id %s, want %s (the kept ones first, in order)", i, got[i].EventID(), want[i].EventID())
		}
	}
}

// TestDeliverySpoolPolicyNeedsSpool: a config error, not a panic.
func TestDeliverySpoolPolicyNeedsSpool(t *testing.T) {
	_, err := NewDelivery(DeliveryConfig{Records: schema.NewRecords("", testHost), Sinks: []SinkConfig{{Name: "k", Sink: &recordingSink{}, Policy: Spool}}})
	if err == nil {
		t.Fatal("NewDelivery accepted policy spool without a spool")
	}
}
