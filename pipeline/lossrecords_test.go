package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
)

// ledger is what a producer sent: raw events (numbered by Stream.Seq) and
// the loss records it made, by record number.
type ledger struct {
	raw     uint64
	missing uint64 // sum of the gap records' Missing: events the kernel sent that never arrived
	records map[uint64]schema.Event
}

func newLedger() *ledger { return &ledger{records: map[uint64]schema.Event{}} }

// gap returns a gap record of missing events, made by the producer.
func (l *ledger) gap(recs *schema.Records, missing uint64) schema.Event {
	e := recs.New(schema.KindGap)
	e.Stream = &schema.Stream{Seq: 0}
	e.Gap = &schema.GapInfo{Expected: 1, Got: uint32(1 + missing), Missing: missing}
	l.records[e.Record.Seq] = e
	l.missing += missing
	return e
}

// overrun returns an overrun record, made by the producer.
func (l *ledger) overrun(recs *schema.Records, drops uint64) schema.Event {
	e := recs.New(schema.KindOverrun)
	e.Overrun = &schema.OverrunInfo{KernelDrops: drops, ENOBUFS: 1}
	l.records[e.Record.Seq] = e
	return e
}

// audit checks the completeness identity over what a sink received,
// deduplicated on ids as a consumer does: delivered distinct raw events +
// the dropped records' counts == raw events sent, every loss record the
// producer made is delivered unchanged, so their missing counts add up
// exactly. It returns the distinct dropped records by reason.
func (l *ledger) audit(t *testing.T, got []schema.Event) map[string]uint64 {
	t.Helper()
	raw := map[uint32]bool{}
	records := map[uint64]schema.Event{}
	for _, e := range got {
		if e.Kind.IsLoss() {
			if prev, ok := records[e.Record.Seq]; ok && !cmp.Equal(prev, e) {
				t.Errorf("record %d delivered twice with different contents: %+v, %+v", e.Record.Seq, prev, e)
			}
			records[e.Record.Seq] = e
			continue
		}
		raw[e.Stream.Seq] = true
	}
	dropped := map[string]uint64{}
	var missing uint64
	for seq, e := range records {
		switch e.Kind {
		case schema.KindDropped:
			dropped[e.Dropped.Reason] += e.Dropped.Count
			continue
		case schema.KindGap:
			missing += e.Gap.Missing
		}
		want, ok := l.records[seq]
		if !ok {
			t.Errorf("record %d (%s) delivered, never made", seq, e.Kind)
			continue
		}
		if diff := cmp.Diff(want, e); diff != "" {
			t.Errorf("record %d changed on the way (-made +delivered):\n%s", seq, diff)
		}
	}
	for seq, e := range l.records {
		if _, ok := records[seq]; !ok {
			t.Errorf("loss record %d (%s) made and never delivered", seq, e.Kind)
		}
	}
	var droppedSum uint64
	for _, n := range dropped {
		droppedSum += n
	}
	if uint64(len(raw))+droppedSum != l.raw || missing != l.missing {
		t.Errorf("delivered distinct %d + dropped %d (%v) = %d, sent %d; gap missing delivered %d, made %d",
			len(raw), droppedSum, dropped, uint64(len(raw))+droppedSum, l.raw, missing, l.missing)
	}
	return dropped
}

// TestDeliveryOutageKeepsLossRecords: a sink in an outage several times
// longer than the retry budget (MaxElapsed), while the producer keeps
// sending events with gap and overrun records among them: every batch is
// given up, each carrying the loss records of the one before (and the
// sink_failed record stating it). When the sink is back, every loss
// record reaches it, unchanged, and the identity holds exactly: delivered
// distinct + sink_failed counts == sent, gap missing delivered == made.
func TestDeliveryOutageKeepsLossRecords(t *testing.T) {
	const budget = 200 * time.Millisecond
	outageEnds := time.Now().Add(6 * budget)
	// A test double of a sink in an outage: every write fails until the
	// outage ends.
	s := &recordingSink{fail: func(int) error {
		if time.Now().Before(outageEnds) {
			return errors.New("outage: broker unreachable")
		}
		return nil
	}}
	d, recs := newTestDelivery(t, SinkConfig{Name: "down", Sink: s, BatchEvents: 8, Linger: -1,
		Retry: RetryConfig{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, MaxElapsed: budget}})
	d.Start()
	l := newLedger()
	var seq uint32
	for end := outageEnds.Add(2 * budget); time.Now().Before(end); {
		batch := []schema.Event{}
		for range 5 {
			batch = append(batch, ev(seq, 8))
			seq++
			l.raw++
		}
		batch = append(batch, l.gap(recs, uint64(seq%7+1)))
		if seq%3 == 0 {
			batch = append(batch, l.overrun(recs, uint64(seq)))
		}
		d.Push(batch)
		time.Sleep(15 * time.Millisecond) // the producer's pace
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	dropped := l.audit(t, s.snapshot())
	st := d.Stats()[0]
	if st.Failed == 0 || dropped["sink_failed"] != st.Failed {
		t.Errorf("sink_failed records state %d events, stats count %d failed: want equal, not 0", dropped["sink_failed"], st.Failed)
	}
	// Distinct records only: a sink_failed record restated after a
	// failure is the same record.
	gaveUp := map[uint64]bool{}
	for _, e := range s.snapshot() {
		if e.Kind == schema.KindDropped {
			gaveUp[e.Record.Seq] = true
		}
	}
	if len(gaveUp) < 3 {
		t.Errorf("%d sink_failed records: want the outage to outlast the budget at least 3 times", len(gaveUp))
	}
	t.Logf("sent %d raw, %d loss records; %d batches given up; stats %+v", l.raw, len(l.records), len(gaveUp), st)
}

// TestDeliveryDropPoliciesKeepLossRecords: a stalled sink behind a small
// queue under drop_newest and drop_oldest, fed events with gap and overrun
// records among them: the policy drops events only, never a loss record
// (each is delivered, unchanged), and delivered distinct + the policy's
// dropped counts == sent, exactly.
func TestDeliveryDropPoliciesKeepLossRecords(t *testing.T) {
	for _, p := range []Policy{DropNewest, DropOldest} {
		t.Run(p.String(), func(t *testing.T) {
			s := &recordingSink{gate: make(chan struct{})}
			d, recs := newTestDelivery(t, SinkConfig{Name: "slow", Sink: s, Policy: p, QueueEvents: 10, BatchEvents: 4, Linger: -1})
			d.Start()
			l := newLedger()
			var seq uint32
			for i := range 50 {
				batch := []schema.Event{}
				for range 3 {
					batch = append(batch, ev(seq, 8))
					seq++
					l.raw++
				}
				batch = append(batch, l.gap(recs, uint64(i%5+1)))
				if i%4 == 0 {
					batch = append(batch, l.overrun(recs, uint64(i)))
				}
				d.Push(batch)
			}
			close(s.gate)
			if err := d.Close(context.Background()); err != nil {
				t.Fatalf("Close: %v", err)
			}
			dropped := l.audit(t, s.snapshot())
			st := d.Stats()[0]
			if dropped["queue_full_"+p.String()] != st.PolicyDropped || st.PolicyDropped == 0 || len(dropped) != 1 {
				t.Errorf("dropped records %v, stats %d dropped by policy: want one reason, equal, not 0", dropped, st.PolicyDropped)
			}
		})
	}
}

// closeLossSink is a test double of a sink whose Close finds a loss (as
// the file sink does when its last fsync fails).
type closeLossSink struct{ lossySink }

func (s *closeLossSink) Close(ctx context.Context) error {
	s.lose(sink.Loss{Count: 7, Reason: "fsync_failed", Detail: "events.jsonl: EIO"})
	return s.recordingSink.Close(ctx)
}

// TestDeliveryLossAtClose: a loss a sink finds while closing, when no
// record can be written any more, is counted (SinkStats.Lost) and makes
// Close fail naming it: never silent.
func TestDeliveryLossAtClose(t *testing.T) {
	s := &closeLossSink{}
	d, _ := newTestDelivery(t, SinkConfig{Name: "file", Sink: s, Linger: -1})
	d.Start()
	d.Push([]schema.Event{ev(1, 8)})
	err := d.Close(context.Background())
	if err == nil || !strings.Contains(err.Error(), "lost 7 events while closing (fsync_failed)") {
		t.Errorf("Close = %v, want it to name the 7 events lost to fsync_failed", err)
	}
	if lost := d.Stats()[0].Lost; lost["fsync_failed"] != 7 {
		t.Errorf("Lost = %v, want fsync_failed 7", lost)
	}
}
