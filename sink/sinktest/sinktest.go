package sinktest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
)

// Harness connects the suite to one sink backend.
//
// Run calls New, Read and Break with the t of one subtest, and runs its
// subtests one at a time, never in parallel: a harness may keep the backend
// of the last sink New made in a variable and have Read and Break use it.
type Harness struct {
	// New returns a fresh sink writing to a backend of its own (an empty
	// directory, a new topic), so that Read sees only the events of the
	// subtest. Required.
	New func(t *testing.T) (sink.Sink, error)

	// Read returns every event the backend of the last sink New made holds
	// so far, decoded, in the order a consumer reads them. It must not
	// return a record it cannot decode whole: such a record is an error.
	// Read is called before and after Close, and after Break. Required.
	Read func(t *testing.T) ([]schema.Event, error)

	// Break, when set, makes the backend of the last sink New made fail for
	// real (a full file system, a stopped broker) so that the sink's next
	// writes return errors. Read must still work afterwards. Optional: the
	// Errors subtest is skipped without it.
	Break func(t *testing.T)

	// Key returns the ordering key of an event: the unit within which the
	// sink keeps the order of WriteBatch calls (see sink.Sink). Default:
	// the host's boot id, the coarsest key a sink keeps order by (a file
	// keeps one order for everything).
	Key func(e *schema.Event) string

	// Seed seeds the Generator of the events; the same seed gives the same
	// events. Default: 1.
	Seed uint64
}

// HostKey is the default Harness.Key: the host's boot id.
func HostKey(e *schema.Event) string {
	if e.Host == nil {
		return ""
	}
	return e.Host.BootID
}

// Run runs the conformance suite against the sink h makes. Its subtests:
//
//   - EmptyBatch: a nil or empty batch is a no-op: nil error, nothing written.
//   - Acknowledged: once WriteBatch returned nil, Read has every event of the
//     batch, before Close.
//   - OrderPerKey: events of several hosts and kinds, interleaved, are read
//     back in the order they were written, per Key.
//   - NothingLost: batches of varied sizes (1 to 1000 events); every event
//     is read back exactly once and equal to what was written, and the
//     events given to WriteBatch are left as they were.
//   - CloseFlushes: events written just before Close are readable after it.
//   - WriteAfterClose: WriteBatch after Close returns sink.ErrClosed, for
//     full and empty batches, and writes nothing; a second Close returns
//     (nil or sink.ErrClosed).
//   - ContextCancelled: a cancelled or expired ctx makes WriteBatch return
//     ctx's error promptly; the events written before stay intact, and the
//     sink keeps working with a live ctx.
//   - Errors (needs Break): after Break, WriteBatch returns an error within
//     a few batches; every event acknowledged before is read back exactly
//     once, nothing that was never written appears, and nothing read back
//     is half a record.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil || h.Read == nil {
		t.Fatal("sinktest: Harness.New and Harness.Read are required")
	}
	if h.Key == nil {
		h.Key = HostKey
	}
	if h.Seed == 0 {
		h.Seed = 1
	}
	s := &suite{h: h}
	t.Run("EmptyBatch", s.emptyBatch)
	t.Run("Acknowledged", s.acknowledged)
	t.Run("OrderPerKey", s.orderPerKey)
	t.Run("NothingLost", s.nothingLost)
	t.Run("CloseFlushes", s.closeFlushes)
	t.Run("WriteAfterClose", s.writeAfterClose)
	t.Run("ContextCancelled", s.contextCancelled)
	t.Run("Errors", s.errors)
}

type suite struct{ h Harness }

// closeTimeout bounds Close and every call that must return promptly.
const closeTimeout = 30 * time.Second

func (s *suite) gen(t *testing.T) *Generator {
	// A seed per subtest, so that events of different subtests differ even
	// if a backend were shared.
	var sum uint64
	for _, c := range t.Name() {
		sum = sum*31 + uint64(c)
	}
	return NewGenerator(s.h.Seed ^ sum)
}

func (s *suite) newSink(t *testing.T) sink.Sink {
	t.Helper()
	sk, err := s.h.New(t)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if sk == nil {
		t.Fatal("New returned a nil sink and no error")
	}
	return sk
}

func (s *suite) read(t *testing.T) []schema.Event {
	t.Helper()
	got, err := s.h.Read(t)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return got
}

func (s *suite) write(t *testing.T, sk sink.Sink, batch []schema.Event) {
	t.Helper()
	if err := sk.WriteBatch(t.Context(), batch); err != nil {
		t.Fatalf("WriteBatch of %d events: %v", len(batch), err)
	}
}

func (s *suite) close(t *testing.T, sk sink.Sink) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), closeTimeout)
	defer cancel()
	if err := sk.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func (s *suite) emptyBatch(t *testing.T) {
	sk := s.newSink(t)
	for _, b := range [][]schema.Event{nil, {}} {
		if err := sk.WriteBatch(t.Context(), b); err != nil {
			t.Errorf("WriteBatch(%#v) = %v, want nil", b, err)
		}
	}
	if got := s.read(t); len(got) != 0 {
		t.Errorf("Read after empty batches: %d events, want 0", len(got))
	}
	s.close(t, sk)
	if got := s.read(t); len(got) != 0 {
		t.Errorf("Read after Close: %d events, want 0", len(got))
	}
}

func (s *suite) acknowledged(t *testing.T) {
	g := s.gen(t)
	sk := s.newSink(t)
	var want []schema.Event
	for _, n := range []int{1, 17, 300} {
		b := g.Batch(n)
		s.write(t, sk, b)
		want = append(want, b...)
		Check(t, want, s.read(t), CheckOptions{Key: s.h.Key})
		if t.Failed() {
			t.Fatalf("after a batch of %d acknowledged events", n)
		}
	}
	s.close(t, sk)
	Check(t, want, s.read(t), CheckOptions{Key: s.h.Key})
}

func (s *suite) orderPerKey(t *testing.T) {
	g := s.gen(t)
	sk := s.newSink(t)
	var want []schema.Event
	for range 20 {
		b := g.Batch(100)
		s.write(t, sk, b)
		want = append(want, b...)
	}
	s.close(t, sk)
	got := s.read(t)
	Check(t, want, got, CheckOptions{Key: s.h.Key})

	// The events must come from several keys, else the test shows nothing.
	keys := map[string]bool{}
	for i := range want {
		keys[s.h.Key(&want[i])] = true
	}
	if len(keys) < 2 {
		t.Errorf("the events have %d keys; the test needs several", len(keys))
	}
}

func (s *suite) nothingLost(t *testing.T) {
	g, mirror := s.gen(t), s.gen(t)
	sk := s.newSink(t)
	var want, same []schema.Event
	for _, n := range []int{1, 2, 3, 7, 64, 100, 255, 256, 257, 511, 512, 513, 1000, 1, 5} {
		b := g.Batch(n)
		s.write(t, sk, b)
		want = append(want, b...)
		same = append(same, mirror.Batch(n)...)
	}
	s.close(t, sk)
	Check(t, want, s.read(t), CheckOptions{Key: s.h.Key})
	// The events are the caller's: a sink only reads them.
	if d := cmp.Diff(same, want, eventCmp); d != "" {
		t.Errorf("WriteBatch changed the events it was given (-before +after):\n%s", d)
	}
}

func (s *suite) closeFlushes(t *testing.T) {
	g := s.gen(t)
	sk := s.newSink(t)
	want := g.Batch(200)
	s.write(t, sk, want[:150])
	s.write(t, sk, want[150:])
	s.close(t, sk) // straight after the writes: whatever is buffered must be flushed
	Check(t, want, s.read(t), CheckOptions{Key: s.h.Key})
}

func (s *suite) writeAfterClose(t *testing.T) {
	g := s.gen(t)
	sk := s.newSink(t)
	want := g.Batch(10)
	s.write(t, sk, want)
	s.close(t, sk)
	for _, b := range [][]schema.Event{g.Batch(10), nil} {
		if err := sk.WriteBatch(t.Context(), b); !errors.Is(err, sink.ErrClosed) {
			t.Errorf("WriteBatch of %d events after Close = %v, want sink.ErrClosed", len(b), err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), closeTimeout)
	defer cancel()
	if err := sk.Close(ctx); err != nil && !errors.Is(err, sink.ErrClosed) {
		t.Errorf("second Close = %v, want nil or sink.ErrClosed", err)
	}
	Check(t, want, s.read(t), CheckOptions{Key: s.h.Key})
}

func (s *suite) contextCancelled(t *testing.T) {
	g := s.gen(t)
	sk := s.newSink(t)
	before := g.Batch(100)
	s.write(t, sk, before)

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel2()
	var maybe []schema.Event // may or may not have been applied
	for _, c := range []struct {
		name string
		ctx  context.Context
		want error
	}{{"cancelled", cancelled, context.Canceled}, {"expired", expired, context.DeadlineExceeded}} {
		b := g.Batch(300)
		maybe = append(maybe, b...)
		start := time.Now()
		err := sk.WriteBatch(c.ctx, b)
		if !errors.Is(err, c.want) {
			t.Errorf("WriteBatch with a %s ctx = %v, want an error matching %v", c.name, err, c.want)
		}
		if d := time.Since(start); d > closeTimeout {
			t.Errorf("WriteBatch with a %s ctx took %v", c.name, d)
		}
	}

	after := g.Batch(100)
	s.write(t, sk, after)
	s.close(t, sk)
	Check(t, append(before, after...), s.read(t), CheckOptions{Key: s.h.Key, Maybe: maybe})
}

func (s *suite) errors(t *testing.T) {
	if s.h.Break == nil {
		t.Skip("sinktest: the harness has no Break: this sink's error path is not tested by the suite")
	}
	g := s.gen(t)
	sk := s.newSink(t)
	acked := g.Batch(50)
	s.write(t, sk, acked)
	s.h.Break(t)

	var maybe []schema.Event
	var werr error
	for i := 0; i < 16 && werr == nil; i++ {
		b := g.Batch(256)
		werr = sk.WriteBatch(t.Context(), b)
		if werr == nil {
			acked = append(acked, b...)
		} else {
			maybe = append(maybe, b...)
		}
	}
	if werr == nil {
		t.Fatal("WriteBatch returned no error in 16 batches after Break")
	}
	if errors.Is(werr, sink.ErrClosed) {
		t.Errorf("WriteBatch after Break = %v: ErrClosed is for a closed sink", werr)
	}
	t.Logf("WriteBatch after Break: %v", werr)
	ctx, cancel := context.WithTimeout(t.Context(), closeTimeout)
	defer cancel()
	if err := sk.Close(ctx); err != nil {
		t.Logf("Close after Break: %v", err)
	}
	Check(t, acked, s.read(t), CheckOptions{Key: s.h.Key, Maybe: maybe})
}

// CheckOptions tunes Check.
type CheckOptions struct {
	// Key is the ordering key (default HostKey): within a key, got must
	// keep the order of want.
	Key func(e *schema.Event) string
	// Maybe are events that got may hold at most once each (a failed or
	// cancelled batch), anywhere.
	Maybe []schema.Event
}

// Check reports through t where got, the events read back from a sink,
// differs from want, the events acknowledged: every event of want must be
// in got exactly once and equal to it (Equal), in want's order within each
// key; got may also hold each event of o.Maybe once, and nothing else.
func Check(t testing.TB, want, got []schema.Event, o CheckOptions) {
	t.Helper()
	if o.Key == nil {
		o.Key = HostKey
	}
	wantByID := make(map[string]*schema.Event, len(want))
	for i := range want {
		wantByID[want[i].ID] = &want[i]
	}
	maybeByID := make(map[string]*schema.Event, len(o.Maybe))
	for i := range o.Maybe {
		maybeByID[o.Maybe[i].ID] = &o.Maybe[i]
	}
	seen := make(map[string]int, len(got))
	var errs []string
	report := func(format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, args...))
		} else if len(errs) == 20 {
			errs = append(errs, "...")
		}
	}
	gotOrder := map[string][]string{} // key -> ids of want, in got's order
	for i := range got {
		e := &got[i]
		seen[e.ID]++
		if n := seen[e.ID]; n > 1 {
			report("event %q read back %d times (at index %d)", e.ID, n, i)
			continue
		}
		w, ok := wantByID[e.ID]
		if !ok {
			w, ok = maybeByID[e.ID]
			if !ok {
				report("event %q at index %d was never written", e.ID, i)
				continue
			}
		} else {
			k := o.Key(w)
			gotOrder[k] = append(gotOrder[k], e.ID)
		}
		if d := cmp.Diff(w, e, eventCmp); d != "" {
			report("event %q read back differs (-want +got):\n%s", e.ID, d)
		}
	}
	wantOrder := map[string][]string{}
	for i := range want {
		e := &want[i]
		if seen[e.ID] == 0 {
			report("event %q (index %d of %d acknowledged) is lost", e.ID, i, len(want))
			continue
		}
		k := o.Key(e)
		wantOrder[k] = append(wantOrder[k], e.ID)
	}
	for k, w := range wantOrder {
		if d := cmp.Diff(w, gotOrder[k]); d != "" {
			report("order of key %q differs (-want +got):\n%s", k, d)
		}
	}
	if len(errs) > 0 {
		t.Errorf("sinktest: %d events acknowledged, %d read back:", len(want), len(got))
		for _, e := range errs {
			t.Error(e)
		}
	}
}

// eventCmp compares times by instant (a decoded time is in UTC).
var eventCmp = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

// Equal reports whether two events are equal as Check compares them: every
// field, times by instant.
func Equal(a, b *schema.Event) bool { return cmp.Equal(a, b, eventCmp) }
