package natssink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/sinktest"
)

// The reconnect tests crash a nats-server of their own (SIGKILL) and start
// it again on the same port with the same JetStream store: the shared
// server of brokers.NATS cannot be stopped. The server is the binary that
// testenv/nats/fetch builds (the one brokers runs), not an embedded one:
// embedding github.com/nats-io/nats-server/v2 would add five modules to
// go.mod for the tests of one package.

// outage is how long the server stays down.
const outage = 2 * time.Second

// TestReconnectJetStream: the server crashes while a batch is being
// published and comes back with its store. WriteBatch calls meanwhile fail
// at once with retriable errors (nothing is buffered while reconnecting);
// retried as the pipeline does, every event ends in the stream exactly
// once, in order per subject: the re-published copies of what the crashed
// server had stored are dropped on their Nats-Msg-Id.
func TestReconnectJetStream(t *testing.T) {
	for _, perMessage := range []int{1, 8} {
		t.Run(map[int]string{1: "one-event-per-message", 8: "events-per-message-8"}[perMessage], func(t *testing.T) {
			testReconnectJetStream(t, perMessage)
		})
	}
}

// testReconnectJetStream is TestReconnectJetStream with
// Config.EventsPerMessage perMessage: with several events per message, the
// retried batches make the same messages, dropped as duplicates too.
func testReconnectJetStream(t *testing.T, perMessage int) {
	srv := startTestServer(t)
	const timeout = 2 * time.Second
	s, prefix, stream := newJetStream(t, srv.url, Config{Timeout: timeout, ReconnectWait: 50 * time.Millisecond, EventsPerMessage: perMessage})
	w := startWriter(t, s, 1000)
	o := w.throughOutage(t, srv, 3, 3)

	checkAttempts(t, w, timeout, o)
	_, js := connect(t, srv.url)
	got, stored := readAll(t, js, stream)
	checkOnce(t, w.written(), got, sinktest.CheckOptions{Key: subjectKeyOf(prefix + ".{host}.{kind}")})
	if perMessage > 1 {
		// Messages, not events: Published counts each batch's messages
		// once per attempt; the stream holds the successful attempts'.
		if info := streamInfo(t, js, stream); info.State.Msgs == 0 || info.State.Msgs >= uint64(len(w.written())) {
			t.Errorf("stream %s holds %d messages for %d events", stream, info.State.Msgs, len(w.written()))
		}
		if st := s.Stats(); st.Reconnects == 0 || st.Disconnects == 0 {
			t.Errorf("Stats.Reconnects or Disconnects zero after the server was killed and restarted (%+v)", st)
		}
		t.Logf("%d events in %d batches; %+v", len(w.written()), len(w.batches), s.Stats())
		return
	}
	if info := streamInfo(t, js, stream); info.State.Msgs != uint64(len(w.written())) {
		t.Errorf("stream %s holds %d messages, want %d (one per event)", stream, info.State.Msgs, len(w.written()))
	}

	// The events of the batches retried after the crash that the crashed
	// server had stored were published again, and acknowledged as
	// duplicates.
	retried := map[string]bool{}
	for _, b := range w.batches {
		if len(b.failed) > 0 {
			for i := range b.events {
				retried[b.events[i].ID] = true
			}
		}
	}
	before := 0
	for i := range got {
		if retried[got[i].ID] && stored[i].Before(o.restarted) {
			before++
		}
	}
	st := s.Stats()
	if st.Duplicates < uint64(before) {
		t.Errorf("Stats.Duplicates = %d, want at least %d: the retried events the crashed server had stored (%+v)", st.Duplicates, before, st)
	}
	if st.Reconnects == 0 || st.Disconnects == 0 || st.LastAsyncError == "" {
		t.Errorf("Stats.Reconnects, Disconnects or LastAsyncError zero after the server was killed and restarted (%+v)", st)
	}
	t.Logf("%d events in %d batches, %d retried, %d of them stored before the crash; %+v",
		len(w.written()), len(w.batches), len(retried), before, st)
}

// TestReconnectCore: the same crash under core NATS. The package
// documentation promises that a nil WriteBatch means the server received
// every message of the batch, even when the connection was lost while the
// batch was being published, and that WriteBatch fails at once, retriably,
// while the connection is down.
//
// The witness is a stream on the sink's subjects, created by the test: the
// restarted server recovers its streams before it accepts clients, so the
// stream stores everything the restarted server receives, once (the
// Nats-Msg-Id dedupe applies to core publishes too). What the crashed
// server received may be lost with it (core NATS keeps nothing, and a
// stream stores a core publish after the server answered the flush), so the
// events of batches acknowledged before the restart may be missing; those
// acknowledged after it must all be there. The crash comes while a batch is
// being published: a flush answered by the restarted server says nothing
// of the messages written to the crashed one.
func TestReconnectCore(t *testing.T) {
	srv := startTestServer(t)
	_, js := connect(t, srv.url)
	prefix := unique("cnt")
	stream := strings.ToUpper(prefix)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: stream, Subjects: []string{prefix + ".>"}, Storage: jetstream.FileStorage, Duplicates: duplicateWindow,
	}); err != nil {
		t.Fatalf("creating the witness stream: %v", err)
	}
	const timeout = 5 * time.Second // longer than the outage: no call may wait for the reconnection
	s := mustNew(t, Config{URL: srv.url, Subject: prefix + ".{host}.{kind}", Timeout: timeout, ReconnectWait: 50 * time.Millisecond})
	w := startWriter(t, s, 2000)
	o := w.throughOutage(t, srv, 2, 3)

	checkAttempts(t, w, timeout, o)
	var want, maybe []schema.Event
	for _, b := range w.batches {
		if b.ok.end.After(o.restarted) {
			want = append(want, b.events...)
		} else {
			maybe = append(maybe, b.events...)
		}
	}

	// The stream stores what it receives after the server answered: a
	// message of the test's own, acknowledged by the stream, comes after
	// every message the server received before it.
	if _, err := js.Publish(t.Context(), prefix+"."+sentinel, nil); err != nil {
		t.Fatalf("publishing the sentinel: %v", err)
	}
	got, _ := readAll(t, js, stream)
	checkOnce(t, want, got, sinktest.CheckOptions{Key: subjectKeyOf(prefix + ".{host}.{kind}"), Maybe: maybe})
	if st := s.Stats(); st.Reconnects == 0 {
		t.Errorf("Stats.Reconnects = 0 after the server restarted (%+v)", st)
	}
	t.Logf("%d events in %d batches, %d acknowledged after the restart; %d read back; %+v",
		len(w.written()), len(w.batches), len(want), len(got), s.Stats())
}

// TestMaxReconnectsExhausted: once the connection gives up reconnecting
// (Config.MaxReconnects attempts), WriteBatch fails with a permanent error,
// promptly, and Close still succeeds.
func TestMaxReconnectsExhausted(t *testing.T) {
	for _, js := range []bool{false, true} {
		t.Run(map[bool]string{false: "core", true: "jetstream"}[js], func(t *testing.T) {
			srv := startTestServer(t)
			prefix := unique("cnt")
			cfg := Config{
				URL: srv.url, Subject: prefix + ".{kind}",
				MaxReconnects: 1, ReconnectWait: 50 * time.Millisecond, Timeout: time.Second,
			}
			if js {
				cfg.JetStream, cfg.Stream = true, strings.ToUpper(prefix)
			}
			s := mustNew(t, cfg)
			g := sinktest.NewGenerator(5)
			if err := s.WriteBatch(t.Context(), g.Batch(10)); err != nil {
				t.Fatalf("WriteBatch before the crash: %v", err)
			}
			srv.kill(t)

			start := time.Now()
			deadline := start.Add(5 * time.Second)
			var err error
			calls := 0
			for {
				calls++
				callStart := time.Now()
				err = s.WriteBatch(t.Context(), g.Batch(10))
				if d := time.Since(callStart); d > cfg.Timeout+time.Second {
					t.Errorf("WriteBatch took %v, Config.Timeout is %v", d, cfg.Timeout)
				}
				if err == nil {
					t.Fatalf("WriteBatch %d succeeded with the server down", calls)
				}
				if sink.IsPermanent(err) || time.Now().After(deadline) {
					break
				}
				t.Logf("call %d: retriable: %v", calls, err)
				time.Sleep(20 * time.Millisecond) // the pipeline's back-off
			}
			if !sink.IsPermanent(err) {
				t.Fatalf("WriteBatch still fails with a retriable error %v after %v with MaxReconnects 1 (%d calls)", err, time.Since(start), calls)
			}
			if errors.Is(err, sink.ErrClosed) {
				t.Errorf("WriteBatch = %v: sink.ErrClosed is for a closed Sink", err)
			}
			if !s.nc.IsClosed() {
				t.Errorf("permanent error %v while the connection is not closed", err)
			}
			t.Logf("permanent after %v and %d calls: %v", time.Since(start).Round(time.Millisecond), calls, err)
			if err := s.Close(t.Context()); err != nil {
				t.Errorf("Close after the connection closed for good: %v", err)
			}
		})
	}
}

// testServer is a nats-server with JetStream, run by the test on a fixed
// port and store dir so that it can be crashed and started again.
type testServer struct {
	bin, dir, conf, url string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// serverProcAttr is set where the platform can kill the server with the
// test process (reconnect_linux_test.go).
var serverProcAttr *syscall.SysProcAttr

func startTestServer(t *testing.T) *testServer { return startTestServerConf(t, "") }

// startTestServerConf starts a testServer with extra lines in its
// configuration file (authorization, ...).
func startTestServerConf(t *testing.T, extra string) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &testServer{bin: natsServerBinary(t), dir: t.TempDir(), url: "nats://127.0.0.1:" + strconv.Itoa(port)}
	s.conf = filepath.Join(s.dir, "nats.conf")
	conf := fmt.Sprintf("server_name: cnstream-reconnect-test\nlisten: 127.0.0.1:%d\n"+
		"jetstream {\n  store_dir: %q\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}\n",
		port, filepath.Join(s.dir, "jetstream")) + extra
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.kill(t) })
	s.start(t)
	return s
}

// start runs the server and returns once it accepts clients and answers
// JetStream requests.
func (s *testServer) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.dir, "nats.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(s.bin, "-c", s.conf)
	cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = logf, logf, serverProcAttr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", s.bin, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.exited)

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-s.exited:
			t.Fatalf("nats-server exited during startup:\n%s", s.logTail())
		default:
		}
		err := s.ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server at %s not ready after 15 s: %v\n%s", s.url, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

func (s *testServer) ready() error {
	nc, err := nats.Connect(s.url, nats.NoReconnect(), nats.Timeout(time.Second), nats.Name("cnstream reconnect test probe"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// kill crashes the server (SIGKILL: no goodbye to the clients, nothing
// flushed beyond what the store has written) and waits for its exit. It
// does nothing when the server is not running.
func (s *testServer) kill(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("killing nats-server: %v", err)
	}
	<-s.exited
	s.cmd = nil
}

func (s *testServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "nats.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "---- " + s.dir + "/nats.log\n" + strings.Join(lines, "\n")
}

var natsBin struct {
	once sync.Once
	path string
	err  error
}

// natsServerBinary returns the nats-server that testenv/nats/fetch builds
// (or $CNSTREAM_NATS_SERVER), building it if needed.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsBin.once.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			natsBin.err = err
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "testenv", "nats", "fetch")); err == nil {
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				natsBin.err = errors.New("testenv/nats/fetch not found above the package directory")
				return
			}
			dir = parent
		}
		var stderr bytes.Buffer
		fetch := exec.Command(filepath.Join(dir, "testenv", "nats", "fetch"))
		fetch.Stderr = &stderr
		if err := fetch.Run(); err != nil {
			natsBin.err = fmt.Errorf("testenv/nats/fetch: %v\n%s", err, stderr.String())
			return
		}
		out, err := exec.Command("bash", "-c", `. "$1" && printf %s "$NATS_BIN"`, "_",
			filepath.Join(dir, "testenv", "nats", "lib.sh")).Output()
		if err != nil || len(out) == 0 {
			natsBin.err = fmt.Errorf("reading NATS_BIN from testenv/nats/lib.sh: %v", err)
			return
		}
		natsBin.path = string(out)
	})
	if natsBin.err != nil {
		t.Fatalf("a nats-server binary is needed to crash and restart a server: %v", natsBin.err)
	}
	return natsBin.path
}

// attempt is one WriteBatch call of a writer.
type attempt struct {
	start, end time.Time
	err        error
}

// batch is a batch a writer wrote: the calls that failed, then the one
// that returned nil.
type batch struct {
	events []schema.Event
	failed []attempt
	ok     attempt
}

// writer writes batches of generated events, each retried until WriteBatch
// returns nil as the pipeline does (after a short back-off; a permanent
// error stops it), until it is told to stop.
type writer struct {
	s    *Sink
	g    *sinktest.Generator
	size int

	done     atomic.Int64  // batches written
	pubStart atomic.Uint64 // Stats.Published when the current call began
	// perBatch is how many messages a batch makes at least (size, or
	// size/EventsPerMessage).
	perBatch int
	stop     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{}

	// Read after stopped is closed.
	batches []batch
	err     error // the permanent error, or the last one at the deadline
}

func startWriter(t *testing.T, s *Sink, size int) *writer {
	w := &writer{s: s, g: sinktest.NewGenerator(11), size: size, perBatch: size / max(1, s.cfg.EventsPerMessage), stop: make(chan struct{}), stopped: make(chan struct{})}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	go func() {
		defer close(w.stopped)
		defer cancel()
		w.run(ctx)
	}()
	t.Cleanup(func() {
		w.halt()
		<-w.stopped
	})
	return w
}

func (w *writer) run(ctx context.Context) {
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		b := batch{events: w.g.Batch(w.size)}
		for {
			a := attempt{start: time.Now()}
			w.pubStart.Store(w.s.Stats().Published)
			a.err = w.s.WriteBatch(ctx, b.events)
			a.end = time.Now()
			if a.err == nil {
				b.ok = a
				break
			}
			b.failed = append(b.failed, a)
			if sink.IsPermanent(a.err) || ctx.Err() != nil {
				w.err = a.err
				return
			}
			select {
			case <-time.After(50 * time.Millisecond): // the pipeline's back-off
			case <-ctx.Done():
				w.err = a.err
				return
			}
		}
		w.batches = append(w.batches, b)
		w.done.Add(1)
	}
}

func (w *writer) halt() { w.stopOnce.Do(func() { close(w.stop) }) }

// written returns the events of every batch written, in order.
func (w *writer) written() []schema.Event {
	var out []schema.Event
	for _, b := range w.batches {
		out = append(out, b.events...)
	}
	return out
}

// times of an outage: the kill was asked for at killing and the server had
// exited at killed; it was started again at restarted.
type times struct{ killing, killed, restarted time.Time }

// throughOutage lets w write `before` batches, crashes the server while the
// next one is being published, keeps it down for outage, starts it again
// and lets w write `after` more batches, then stops w.
func (w *writer) throughOutage(t *testing.T, srv *testServer, before, after int64) times {
	t.Helper()
	w.waitBatches(t, before)
	// In the middle of a batch: Stats.Published counts the messages
	// handed to the connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := int64(w.s.Stats().Published) - int64(w.pubStart.Load())
		if n >= int64(w.perBatch)/8 && n <= int64(w.perBatch)/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw the writer in the middle of a batch (Stats %+v, %d batches)", w.s.Stats(), w.done.Load())
		}
		time.Sleep(50 * time.Microsecond) // poll interval
	}
	var o times
	o.killing = time.Now()
	srv.kill(t)
	o.killed = time.Now()
	time.Sleep(outage) // the fault itself, not a synchronisation
	o.restarted = time.Now()
	srv.start(t)
	w.waitBatches(t, w.done.Load()+after)
	w.halt()
	<-w.stopped
	if w.err != nil {
		t.Fatalf("writer: %v (permanent: %v)", w.err, sink.IsPermanent(w.err))
	}
	return o
}

// waitBatches waits until w has written n batches.
func (w *writer) waitBatches(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.done.Load() < n {
		select {
		case <-w.stopped:
			t.Fatalf("writer stopped after %d batches, before %d: %v", w.done.Load(), n, w.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("writer wrote %d batches in 10 s, want %d (Stats %+v)", w.done.Load(), n, w.s.Stats())
		}
		time.Sleep(time.Millisecond) // poll interval
	}
}

// checkAttempts checks that every call returned within Config.Timeout (and
// some slack) with nil or a retriable error, that calls were made while the
// server was down, and that those made after the crash and before the
// restart failed at once with an error wrapping nats.ErrDisconnected.
func checkAttempts(t *testing.T, w *writer, timeout time.Duration, o times) {
	t.Helper()
	during, failed, logged := 0, 0, 0
	for i, b := range w.batches {
		for _, a := range append(b.failed, b.ok) {
			if d := a.end.Sub(a.start); d > timeout+time.Second {
				t.Errorf("batch %d: a call took %v, Config.Timeout is %v (err %v)", i, d, timeout, a.err)
			}
			if a.err != nil {
				failed++
				if sink.IsPermanent(a.err) {
					t.Errorf("batch %d: permanent error %v", i, a.err)
				}
			}
			if a.start.Before(o.restarted) && a.end.After(o.killing) {
				during++
			}
			if a.start.After(o.killed) && a.end.Before(o.restarted) {
				if a.err == nil {
					t.Errorf("batch %d: a call made with the server down returned nil", i)
				} else if !errors.Is(a.err, nats.ErrDisconnected) {
					t.Errorf("batch %d: a call made with the server down = %v, want an error wrapping nats.ErrDisconnected", i, a.err)
				}
				if d := a.end.Sub(a.start); d > 500*time.Millisecond {
					t.Errorf("batch %d: a call made with the server down took %v to fail", i, d)
				}
			}
			if (a.err != nil || a.end.After(o.killing) && a.start.Before(o.restarted)) && (logged < 3 || a.err == nil) {
				logged++
				t.Logf("batch %d: call at %+.3fs from the crash took %v: %v", i, a.start.Sub(o.killing).Seconds(), a.end.Sub(a.start).Round(time.Millisecond), a.err)
			}
		}
	}
	t.Logf("%d calls during the outage, %d failed", during, failed)
	if during == 0 || failed == 0 {
		t.Errorf("%d WriteBatch calls during the outage, %d failed: the crash went unnoticed", during, failed)
	}
}

// checkOnce checks that got holds every event of want exactly once, equal
// to it, in order per key, and nothing else but events of o.Maybe, once.
func checkOnce(t *testing.T, want, got []schema.Event, o sinktest.CheckOptions) {
	t.Helper()
	ids := map[string]bool{}
	for i := range got {
		ids[got[i].ID] = true
	}
	if len(ids) != len(got) {
		t.Errorf("read back %d messages with %d distinct ids", len(got), len(ids))
	}
	if len(o.Maybe) == 0 && len(got) != len(want) {
		t.Errorf("read back %d messages, want %d", len(got), len(want))
	}
	sinktest.Check(t, want, got, o)
}

// sentinel is the last token of the subject of the test's own message in a
// witness stream, which readAll skips.
const sentinel = "sentinel"

// readAll returns every message of a stream, in stream order, decoded,
// and when the stream stored each: readStream with an ordered consumer, for
// streams of thousands. It skips the sentinel.
func readAll(t *testing.T, js jetstream.JetStream, name string) ([]schema.Event, []time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	events := make([]schema.Event, 0, info.State.Msgs)
	var stored []time.Time
	for read := uint64(0); read < info.State.Msgs; {
		batch, err := c.Fetch(int(min(1000, info.State.Msgs-read)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			read++
			if strings.HasSuffix(m.Subject(), "."+sentinel) {
				continue
			}
			e, err := decodeAll(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
			if err != nil {
				t.Fatal(err)
			}
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, e...)
			for range e {
				stored = append(stored, md.Timestamp)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("reading stream %s: %v", name, err)
		}
		if n == 0 {
			t.Fatalf("reading stream %s: %d of %d messages, then nothing", name, read, info.State.Msgs)
		}
	}
	return events, stored
}

func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	st, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info
}
