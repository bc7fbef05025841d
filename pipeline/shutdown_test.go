package pipeline

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/transform"
)

// floodSource is a test double of a source whose receive queue is always
// full: every read returns a whole batch of datagrams (garbage, which the
// transform states as malformed records), before and after Quiesce, so the
// drain never finds it empty.
type floodSource struct{}

func (floodSource) ReadBatch(ctx context.Context, b *source.Batch) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	for i := range b.Datagrams {
		b.Datagrams[i].Data = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	}
	return len(b.Datagrams), nil
}
func (floodSource) CheckDrops() (uint64, error) { return 0, nil }
func (floodSource) Close() error                { return nil }
func (floodSource) Quiesce() error              { return nil }

// stuckSink is a test double of a sink that never acknowledges a write
// (WriteBatch returns only when its ctx ends) and whose Close blocks,
// ignoring its ctx, until released.
type stuckSink struct {
	release chan struct{} // closed by the test
	closed  chan struct{} // closed when Close returns
}

func (s *stuckSink) WriteBatch(ctx context.Context, _ []schema.Event) error {
	<-ctx.Done()
	return ctx.Err()
}

func (s *stuckSink) Close(context.Context) error {
	defer close(s.closed)
	<-s.release
	return nil
}

// TestRunShutdownBound: with a source that never runs dry and a sink that
// neither writes nor closes, Run returns within DrainTimeout +
// ShutdownGrace of its context's end, counting what it did not deliver
// and naming the sink whose Close did not return. (A bound, measured with
// a margin, not a timing.)
func TestRunShutdownBound(t *testing.T) {
	tr, err := transform.New(transform.Config{Host: testHost})
	if err != nil {
		t.Fatal(err)
	}
	const drain = 300 * time.Millisecond
	s := &stuckSink{release: make(chan struct{}), closed: make(chan struct{})}
	p, err := New(Config{Source: floodSource{}, Transform: tr, DrainTimeout: drain, BatchLen: 8, ReadQueue: 4,
		Sinks: []SinkConfig{{Name: "stuck", Sink: s, QueueEvents: 64, Linger: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	time.Sleep(100 * time.Millisecond) // the queue fills, the producer blocks
	cancel()
	start := time.Now()
	bound := drain + ShutdownGrace
	var runErr error
	select {
	case runErr = <-done:
	case <-time.After(bound + 20*time.Second):
		close(s.release)
		<-done
		t.Fatalf("Run still running %v after its context ended; bound %v", time.Since(start), bound)
	}
	took := time.Since(start)
	close(s.release)
	<-s.closed                    // the Close left behind ends (goleak)
	if took > bound+time.Second { // margin for a loaded machine
		t.Errorf("Run returned %v after its context ended, want at most DrainTimeout + ShutdownGrace = %v", took, bound)
	}
	if runErr == nil || !strings.Contains(runErr.Error(), "undelivered") || !strings.Contains(runErr.Error(), `close sink "stuck"`) {
		t.Errorf("Run = %v, want errors counting undelivered events and naming the sink whose Close did not return", runErr)
	}
	st := p.Stats()
	if st.Sinks[0].Undelivered == 0 || st.Unread == 0 {
		t.Errorf("stats %+v: want undelivered events and unread datagrams counted", st)
	}
	t.Logf("Run returned %v after cancel (bound %v): %v", took.Round(time.Millisecond), bound, runErr)
}
