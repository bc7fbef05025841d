package sinktest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
)

// memSink is a fake sink: a slice of events guarded by a mutex, with a fault
// switch. It exists to test the suite itself, which needs a sink that obeys
// the contract by construction.
type memSink struct {
	mu     sync.Mutex
	events []schema.Event
	closed bool
	broken bool
}

func (m *memSink) WriteBatch(ctx context.Context, events []schema.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return sink.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.broken {
		return errors.New("memsink: broken")
	}
	for _, e := range events {
		// Round-trip through the JSON encoding, as a real backend would.
		d, err := schema.DecodeJSON(schema.AppendJSON(nil, &e))
		if err != nil {
			return err
		}
		m.events = append(m.events, d)
	}
	return nil
}

func (m *memSink) Close(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func TestRunMemSink(t *testing.T) {
	var cur *memSink
	Run(t, Harness{
		New: func(*testing.T) (sink.Sink, error) {
			cur = &memSink{}
			return cur, nil
		},
		Read: func(*testing.T) ([]schema.Event, error) {
			cur.mu.Lock()
			defer cur.mu.Unlock()
			return append([]schema.Event(nil), cur.events...), nil
		},
		Break: func(*testing.T) {
			cur.mu.Lock()
			cur.broken = true
			cur.mu.Unlock()
		},
	})
}

func TestGeneratorReproducible(t *testing.T) {
	a := NewGenerator(7).Batch(500)
	b := NewGenerator(7).Batch(500)
	if d := cmp.Diff(a, b, eventCmp); d != "" {
		t.Errorf("same seed, different events (-first +second):\n%s", d)
	}
	c := NewGenerator(8).Batch(500)
	if cmp.Equal(a, c, eventCmp) {
		t.Error("seeds 7 and 8 give the same events")
	}
}

func TestGeneratorEvents(t *testing.T) {
	g := NewGenerator(1)
	events := g.Batch(5000)
	kinds := map[schema.Kind]int{}
	hosts := map[string]int{}
	ids := map[string]bool{}
	enriched := 0
	for i := range events {
		e := &events[i]
		kinds[e.Kind]++
		hosts[e.Host.BootID]++
		if ids[e.ID] {
			t.Fatalf("event %d: duplicate id %q", i, e.ID)
		}
		ids[e.ID] = true
		if e.ID != string(schema.AppendEventID(nil, e)) {
			t.Errorf("event %d: id %q is not the derived id %q", i, e.ID, schema.AppendEventID(nil, e))
		}
		if e.Process != nil {
			enriched++
		}
		// Both encodings give the event back.
		j, err := schema.DecodeJSON(schema.AppendJSON(nil, e))
		if err != nil {
			t.Fatalf("event %d: DecodeJSON: %v", i, err)
		}
		m, err := schema.DecodeMsgpack(schema.AppendMsgpack(nil, e))
		if err != nil {
			t.Fatalf("event %d: DecodeMsgpack: %v", i, err)
		}
		if d := cmp.Diff(e, &j, eventCmp); d != "" {
			t.Fatalf("event %d: JSON round trip (-want +got):\n%s", i, d)
		}
		if d := cmp.Diff(e, &m, eventCmp); d != "" {
			t.Fatalf("event %d: msgpack round trip (-want +got):\n%s", i, d)
		}
	}
	for _, k := range schema.Kinds() {
		if kinds[k] == 0 {
			t.Errorf("no event of kind %v", k)
		}
	}
	for i, k := range schema.Kinds() {
		if events[i].Kind != k {
			t.Errorf("event %d is %v, want %v (one of each kind first)", i, events[i].Kind, k)
		}
	}
	if len(hosts) != 3 {
		t.Errorf("events from %d hosts, want 3", len(hosts))
	}
	if enriched == 0 {
		t.Error("no enriched event")
	}
}

// recorder is a testing.TB that records errors instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Error(args ...any)         { r.errs = append(r.errs, fmt.Sprint(args...)) }
func (r *recorder) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }

func TestCheck(t *testing.T) {
	want := NewGenerator(3).Batch(60)
	extra := NewGenerator(4).Batch(2)
	clone := func() []schema.Event { return append([]schema.Event(nil), want...) }
	// Index of the second event of want's first key, and of an event of
	// another key after it.
	k0 := HostKey(&want[0])
	second := -1
	for i := 1; i < len(want); i++ {
		if HostKey(&want[i]) == k0 {
			second = i
			break
		}
	}
	if second < 0 {
		t.Fatal("the first key has one event only")
	}
	for _, c := range []struct {
		name    string
		got     func() []schema.Event
		maybe   []schema.Event
		wantErr string // "" for no error
	}{
		{"same", clone, nil, ""},
		{"other keys interleaved differently", func() []schema.Event {
			g := clone()
			// Move every event of the first key to the end, keeping their order.
			var mine, rest []schema.Event
			for _, e := range g {
				if HostKey(&e) == k0 {
					mine = append(mine, e)
				} else {
					rest = append(rest, e)
				}
			}
			return append(rest, mine...)
		}, nil, ""},
		{"lost", func() []schema.Event { return clone()[1:] }, nil, "is lost"},
		{"duplicate", func() []schema.Event { g := clone(); return append(g, g[5]) }, nil, "read back 2 times"},
		{"unknown", func() []schema.Event { return append(clone(), extra[0]) }, nil, "never written"},
		{"maybe", func() []schema.Event { return append(clone(), extra[0]) }, extra, ""},
		{"maybe twice", func() []schema.Event { return append(clone(), extra[0], extra[0]) }, extra, "read back 2 times"},
		{"reordered within a key", func() []schema.Event {
			g := clone()
			g[0], g[second] = g[second], g[0]
			return g
		}, nil, "order of key"},
		{"changed", func() []schema.Event {
			g := clone()
			g[7].Time = g[7].Time.Add(1)
			return g
		}, nil, "differs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{TB: t}
			Check(r, want, c.got(), CheckOptions{Maybe: c.maybe})
			all := strings.Join(r.errs, "\n")
			switch {
			case c.wantErr == "" && len(r.errs) > 0:
				t.Errorf("Check reported:\n%s", all)
			case c.wantErr != "" && !strings.Contains(all, c.wantErr):
				t.Errorf("Check reported %q, want a report containing %q", all, c.wantErr)
			}
		})
	}
}
