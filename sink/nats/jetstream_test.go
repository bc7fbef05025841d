package natssink

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/sinktest"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// TestTwoStreams: batches of fork, exec and exit events whose subjects
// belong to two streams (exec events to one, forks and exits to the
// other). Each stream stores and acknowledges on its own goroutine, so the
// acks of a batch may come out of publish order; each is mapped to its
// message: the batch succeeds once all came, and each stream holds its
// events once, in order. Several
// batches, and a MaxPending smaller than a batch, so that windows and
// batches follow each other.
func TestTwoStreams(t *testing.T) {
	url := brokers.NATS(t)
	_, js := connect(t, url)
	prefix := unique("cnt")
	execs, others := strings.ToUpper(prefix)+"_EXEC", strings.ToUpper(prefix)+"_OTHER"
	for name, subjects := range map[string][]string{execs: {prefix + ".exec"}, others: {prefix + ".fork", prefix + ".exit"}} {
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: subjects, Storage: jetstream.FileStorage, Duplicates: duplicateWindow}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	}
	s := mustNew(t, Config{URL: url, JetStream: true, Subject: prefix + ".{kind}", MaxPending: 100})
	g := sinktest.NewGenerator(23)
	var exec, rest []schema.Event
	for range 3 {
		var batch []schema.Event
		for len(batch) < 700 {
			e := g.Next()
			if e.Kind != schema.KindFork && e.Kind != schema.KindExec && e.Kind != schema.KindExit {
				continue
			}
			batch = append(batch, e)
			if e.Kind == schema.KindExec {
				exec = append(exec, e)
			} else {
				rest = append(rest, e)
			}
		}
		if err := s.WriteBatch(t.Context(), batch); err != nil {
			t.Fatalf("WriteBatch: %v", err)
		}
	}
	if len(exec) == 0 || len(rest) == 0 {
		t.Fatalf("%d exec and %d other events: the batch does not span both streams", len(exec), len(rest))
	}
	for _, c := range []struct {
		stream string
		want   []schema.Event
	}{{execs, exec}, {others, rest}} {
		got, err := readStream(t.Context(), js, c.stream)
		if err != nil {
			t.Fatal(err)
		}
		sinktest.Check(t, c.want, got, sinktest.CheckOptions{})
	}
	if st := s.Stats(); st.Published != 2100 || st.Acked != 2100 || st.Duplicates != 0 || st.Errors != 0 {
		t.Errorf("Stats = %+v, want Published and Acked 2100", st)
	}
}

// TestErrorAck: a message larger than the stream's MaxMsgSize is refused
// with an error PubAck (err_code 10054): the batch fails permanently with
// the server's *jetstream.APIError, and the messages of the batch the
// stream took before and after it are stored.
func TestErrorAck(t *testing.T) {
	url := brokers.NATS(t)
	s, _, stream := newJetStream(t, url, Config{})
	_, js := connect(t, url)
	st, err := js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	g := sinktest.NewGenerator(29)
	batch := g.Batch(50)
	// One event made larger than the others: a long command line.
	batch[20].Process = &schema.Process{Cmdline: []string{strings.Repeat("x", 4096)}}
	maxSize := 0
	for i := range batch {
		if i != 20 {
			maxSize = max(maxSize, len(schema.AppendMsgpack(nil, &batch[i])))
		}
	}
	cfg := info.Config
	cfg.MaxMsgSize = int32(maxSize + 1024) // the headers count too
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	err = s.WriteBatch(t.Context(), batch)
	var api *jetstream.APIError
	if !errors.As(err, &api) || api.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum || !sink.IsPermanent(err) {
		t.Fatalf("WriteBatch with a message over the stream's MaxMsgSize = %v, want a permanent error wrapping the server's err_code 10054", err)
	}
	if !strings.Contains(err.Error(), s.msgs[20].Subject) {
		t.Errorf("error %v does not name the refused message's subject %s", err, s.msgs[20].Subject)
	}
	t.Logf("%v", err)
	// A batch without it goes through; the refused one's other messages
	// were stored by the first call (or now, as duplicates they are not).
	rest := append(append([]schema.Event(nil), batch[:20]...), batch[21:]...)
	if err := s.WriteBatch(t.Context(), rest); err != nil {
		t.Fatalf("WriteBatch of the batch without the large message: %v", err)
	}
	got, err := readStream(t.Context(), js, stream)
	if err != nil {
		t.Fatal(err)
	}
	// Stored once each; those after the refused one may have been stored
	// by either call, so only membership is checked.
	ids := map[string]int{}
	for _, e := range got {
		ids[e.ID]++
	}
	for _, e := range rest {
		if ids[e.ID] != 1 {
			t.Errorf("event %s stored %d times, want once", e.ID, ids[e.ID])
		}
	}
	if len(got) != len(rest) {
		t.Errorf("stream holds %d messages, want %d", len(got), len(rest))
	}
}

// TestAckTimeout: the server stops (SIGSTOP) with a batch in flight. The
// batch fails with a retriable error wrapping ErrAckTimeout once
// Config.Timeout has passed; the server resumes (SIGCONT) and sends the
// acks it owed, to a batch that is no longer waiting: they are ignored.
// The retry succeeds and the stream holds every event once (the
// first publish's copies, the retry's being duplicates).
func TestAckTimeout(t *testing.T) {
	srv := startTestServer(t)
	const timeout = time.Second
	s, _, stream := newJetStream(t, srv.url, Config{Timeout: timeout})
	g := sinktest.NewGenerator(31)
	first := g.Batch(100)
	if err := s.WriteBatch(t.Context(), first); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	resume := func() {
		if stopped {
			if err := srv.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT: %v", err)
			}
			stopped = false
		}
	}
	t.Cleanup(resume)
	batch := g.Batch(500)
	start := time.Now()
	err := s.WriteBatch(t.Context(), batch)
	took := time.Since(start)
	if !errors.Is(err, ErrAckTimeout) || sink.IsPermanent(err) {
		t.Fatalf("WriteBatch with the server stopped = %v, want a retriable error wrapping ErrAckTimeout", err)
	}
	if took < timeout || took > timeout+2*time.Second {
		t.Errorf("WriteBatch failed after %v, Config.Timeout is %v", took, timeout)
	}
	t.Logf("after %v: %v", took.Round(time.Millisecond), err)
	resume()
	// The retry, as the pipeline makes it.
	for i := 0; ; i++ {
		err := s.WriteBatch(t.Context(), batch)
		if err == nil {
			break
		}
		if sink.IsPermanent(err) || i == 20 {
			t.Fatalf("retry %d: %v", i+1, err)
		}
		t.Logf("retry %d: %v", i+1, err)
	}
	_, js := connect(t, srv.url)
	got, _ := readAll(t, js, stream)
	checkOnce(t, append(first, batch...), got, sinktest.CheckOptions{})
	if st := s.Stats(); st.Duplicates != uint64(len(batch)) {
		t.Errorf("Stats.Duplicates = %d, want %d: the stopped server stored the first publish of every message (%+v)", st.Duplicates, len(batch), st)
	}
}

// TestEventsPerMessage: with Config.EventsPerMessage the events that share
// a subject go in messages of up to that many, in order, cut before the
// server's max_payload (16 KiB here); the stream holds every event once,
// in order per subject; the pipeline's retry of the same batch makes the
// same messages, all acknowledged as duplicates.
func TestEventsPerMessage(t *testing.T) {
	srv := startTestServerConf(t, "max_payload: 16384\n")
	const perMessage = 1000 // more than max_payload holds
	s, prefix, stream := newJetStream(t, srv.url, Config{EventsPerMessage: perMessage, MaxPending: 8})
	g := sinktest.NewGenerator(37)
	var all []schema.Event
	for range 3 {
		batch := g.Batch(2000)
		if err := s.WriteBatch(t.Context(), batch); err != nil {
			t.Fatalf("WriteBatch: %v", err)
		}
		all = append(all, batch...)
	}
	st := s.Stats()
	if st.Published == 0 || st.Published >= uint64(len(all))/4 || st.Acked != st.Published {
		t.Errorf("Stats = %+v: want a few messages for %d events, all acknowledged", st, len(all))
	}
	_, js := connect(t, srv.url)
	got, _ := readAll(t, js, stream)
	checkOnce(t, all, got, sinktest.CheckOptions{Key: subjectKeyOf(prefix + ".{host}.{kind}")})
	info := streamInfo(t, js, stream)
	if info.State.Msgs != st.Published {
		t.Errorf("stream holds %d messages, the sink published %d", info.State.Msgs, st.Published)
	}
	if avg := info.State.Bytes / info.State.Msgs; avg < 4096 {
		t.Errorf("%d bytes per message on average: the groups are small", avg)
	}
	for i := range s.msgs {
		if len(s.msgs[i].Data) > 16384-groupSlack {
			t.Errorf("message %d: %d bytes of payload, the server takes 16384 with the headers", i, len(s.msgs[i].Data))
		}
	}
	// The retry of the last batch.
	last := all[len(all)-2000:]
	before := s.Stats()
	if err := s.WriteBatch(t.Context(), last); err != nil {
		t.Fatalf("WriteBatch again: %v", err)
	}
	after := s.Stats()
	if n := after.Published - before.Published; n == 0 || after.Duplicates-before.Duplicates != n {
		t.Errorf("the retried batch: %d messages, %d duplicates; want all duplicates", n, after.Duplicates-before.Duplicates)
	}
	if info := streamInfo(t, js, stream); info.State.Msgs != st.Published {
		t.Errorf("after the retry the stream holds %d messages, want %d", info.State.Msgs, st.Published)
	}
}
