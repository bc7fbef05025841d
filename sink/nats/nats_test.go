package natssink

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/sinktest"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// TestSinktestCore runs the conformance suite on core NATS. Core NATS keeps
// nothing: the harness subscribes to the sink's subjects when it makes the
// sink and Read returns what arrived. It has no Break: the shared server
// cannot be stopped, and core NATS reports no per-message failure.
func TestSinktestCore(t *testing.T) {
	url := brokers.NATS(t)
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"msgpack", Config{}},
		{"json", Config{Encoding: JSON}},
		// Several events per message.
		{"json-events-per-message-8", Config{Encoding: JSON, EventsPerMessage: 8}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmpl := "PREFIX.{host}.{kind}"
			var r *coreReader
			sinktest.Run(t, sinktest.Harness{
				New: func(t *testing.T) (sink.Sink, error) {
					prefix := unique("cnt")
					r = newCoreReader(t, url, prefix)
					cfg := c.cfg
					cfg.URL, cfg.Subject = url, prefix+".{host}.{kind}"
					return New(cfg)
				},
				Read: func(t *testing.T) ([]schema.Event, error) { return r.read() },
				Key:  subjectKeyOf(tmpl),
			})
		})
	}
}

// TestSinktestJetStream runs the conformance suite on JetStream, each
// subtest with a stream of its own that the sink creates. Break lowers the
// stream's MaxMsgs to what it holds, with the discard-new policy: the
// server then refuses every new message ("maximum messages exceeded").
func TestSinktestJetStream(t *testing.T) {
	url := brokers.NATS(t)
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"msgpack", Config{}},
		// A batch larger than MaxPending is published in windows.
		{"json-maxpending-64", Config{Encoding: JSON, MaxPending: 64}},
		// Several events per message, in windows of a few messages.
		{"msgpack-events-per-message-16", Config{EventsPerMessage: 16, MaxPending: 4}},
		{"json-events-per-message-3", Config{Encoding: JSON, EventsPerMessage: 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stream string
			var js jetstream.JetStream
			sinktest.Run(t, sinktest.Harness{
				New: func(t *testing.T) (sink.Sink, error) {
					_, js = connect(t, url)
					var s *Sink
					s, _, stream = newJetStream(t, url, c.cfg)
					return s, nil
				},
				Read: func(t *testing.T) ([]schema.Event, error) { return readStream(t.Context(), js, stream) },
				Break: func(t *testing.T) {
					fillStream(t, js, stream)
				},
				Key: subjectKeyOf("PREFIX.{host}.{kind}"),
			})
		})
	}
}

// fillStream makes the stream full: MaxMsgs is what it holds, new messages
// are refused.
func fillStream(t *testing.T, js jetstream.JetStream, stream string) {
	t.Helper()
	st, err := js.Stream(t.Context(), stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	cfg := info.Config
	cfg.MaxMsgs = int64(max(info.State.Msgs, 1))
	cfg.Discard = jetstream.DiscardNew
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatalf("updating stream %s: %v", stream, err)
	}
}

// TestStreamFull: a full stream with the discard-new policy fails the
// batch with the server's error, retriable (the stream may drain), and
// what was acknowledged before stays stored once.
func TestStreamFull(t *testing.T) {
	url := brokers.NATS(t)
	s, _, stream := newJetStream(t, url, Config{})
	_, js := connect(t, url)
	g := sinktest.NewGenerator(7)
	first := g.Batch(20)
	if err := s.WriteBatch(t.Context(), first); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	fillStream(t, js, stream)
	err := s.WriteBatch(t.Context(), g.Batch(20))
	if err == nil {
		t.Fatal("WriteBatch into a full stream succeeded")
	}
	var api *jetstream.APIError
	if !errors.As(err, &api) {
		t.Errorf("error %v (%T) does not wrap a *jetstream.APIError", err, err)
	}
	if sink.IsPermanent(err) {
		t.Errorf("error %v is permanent, want retriable", err)
	}
	t.Logf("full stream: %v", err)
	if st := s.Stats(); st.Errors != 1 || st.Acked != 20 {
		t.Errorf("Stats = %+v, want Errors 1, Acked 20", st)
	}
	got, err := readStream(t.Context(), js, stream)
	if err != nil {
		t.Fatal(err)
	}
	sinktest.Check(t, first, got, sinktest.CheckOptions{})
}

// TestDedupe: the same batch written twice (the pipeline's retry) is stored
// once; the second batch is acknowledged as duplicates.
func TestDedupe(t *testing.T) {
	url := brokers.NATS(t)
	s, _, stream := newJetStream(t, url, Config{})
	_, js := connect(t, url)
	batch := sinktest.NewGenerator(3).Batch(300)
	for i := range 2 {
		if err := s.WriteBatch(t.Context(), batch); err != nil {
			t.Fatalf("WriteBatch %d: %v", i+1, err)
		}
	}
	got, err := readStream(t.Context(), js, stream)
	if err != nil {
		t.Fatal(err)
	}
	sinktest.Check(t, batch, got, sinktest.CheckOptions{})
	want := Stats{Published: 600, Acked: 600, Duplicates: 300}
	if d := cmp.Diff(want, s.Stats()); d != "" {
		t.Errorf("Stats (-want +got):\n%s", d)
	}
}

// TestNoStream: JetStream publishing to a subject no stream stores is a
// configuration error: permanent.
func TestNoStream(t *testing.T) {
	url := brokers.NATS(t)
	s := mustNew(t, Config{URL: url, JetStream: true, Subject: unique("cnt") + ".{kind}"})
	err := s.WriteBatch(t.Context(), sinktest.NewGenerator(1).Batch(3))
	if err == nil || !sink.IsPermanent(err) || !errors.Is(err, jetstream.ErrNoStreamResponse) || !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("WriteBatch with no stream = %v, want a permanent error wrapping jetstream.ErrNoStreamResponse and nats.ErrNoResponders", err)
	}
	t.Logf("%v", err)
	if st := s.Stats(); st.Errors != 1 || st.Acked != 0 {
		t.Errorf("Stats = %+v, want Errors 1, Acked 0", st)
	}
}

// TestSubjects: messages go to the subject the template renders for their
// host, boot id and kind, with dots and spaces of the host name replaced.
func TestSubjects(t *testing.T) {
	url := brokers.NATS(t)
	prefix := unique("cnt")
	r := newCoreReader(t, url, prefix)
	ch := r.ch
	s := mustNew(t, Config{URL: url, Subject: prefix + ".{host}.x-{boot_id}.{kind}"})
	host := &schema.Host{Hostname: "web 1.example.net", BootID: "b-1"}
	var events []schema.Event
	for _, k := range []schema.Kind{schema.KindFork, schema.KindExit, schema.KindGap} {
		e := schema.Event{Version: schema.EventVersion, Kind: k, Host: host, Record: &schema.Record{Run: "r", Seq: uint64(k)}}
		switch k {
		case schema.KindFork:
			e.Fork = &schema.ForkEvent{}
		case schema.KindExit:
			e.Exit = schema.NewExitInfo(schema.ExitEvent{})
		case schema.KindGap:
			e.Gap = &schema.GapInfo{}
		}
		e.ID = e.EventID()
		events = append(events, e)
	}
	events = append(events, events[0])
	events[3].Host = nil
	if err := s.WriteBatch(t.Context(), events); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(ch) > 0 {
		got = append(got, (<-ch).Subject)
	}
	want := []string{
		prefix + ".web_1_example_net.x-b-1.fork",
		prefix + ".web_1_example_net.x-b-1.exit",
		prefix + ".web_1_example_net.x-b-1.gap",
		prefix + ".unknown.x-unknown.fork",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("subjects (-want +got):\n%s", d)
	}
}

func TestTemplate(t *testing.T) {
	for _, c := range []struct {
		tmpl, host, boot, want, wildcard string
	}{
		{"cnstream.{host}.{kind}", "a.b c", "id", "cnstream.a_b_c.exec", "cnstream.>"},
		{"{host}.events", "h*>", "", "h__.events", "*.events"},
		{"a.b-{boot_id}.{kind}", "", "", "a.b-unknown.exec", "a.>"},
		{"fixed.subject", "h", "b", "fixed.subject", "fixed.subject"},
		{"{kind}", "h", "b", "exec", "*"},
	} {
		tp, err := parseTemplate(c.tmpl)
		if err != nil {
			t.Errorf("parseTemplate(%q): %v", c.tmpl, err)
			continue
		}
		if got := string(tp.appendSubject(nil, c.host, schema.KindExec, c.boot)); got != c.want {
			t.Errorf("%q with host %q: %q, want %q", c.tmpl, c.host, got, c.want)
		}
		if got := tp.wildcard(); got != c.wildcard {
			t.Errorf("%q: wildcard %q, want %q", c.tmpl, got, c.wildcard)
		}
	}
}

// TestConfigErrors: each bad field is named, and the error is permanent.
func TestConfigErrors(t *testing.T) {
	const url = "nats://127.0.0.1:4222"
	for _, c := range []struct {
		field string
		cfg   Config
	}{
		{"url", Config{}},
		{"url", Config{URL: "nats://a:1,,nats://b:2"}},
		{"url", Config{URL: "http://host:4222"}},
		{"subject", Config{URL: url, Subject: "a.{hostname}"}},
		{"subject", Config{URL: url, Subject: "a..{kind}"}},
		{"subject", Config{URL: url, Subject: "a.*.{kind}"}},
		{"subject", Config{URL: url, Subject: "a.{kind"}},
		{"subject", Config{URL: url, Subject: "a b.{kind}"}},
		{"stream", Config{URL: url, Stream: "S"}},
		{"stream", Config{URL: url, JetStream: true, Stream: "a.b"}},
		{"max_pending", Config{URL: url, MaxPending: -1}},
		{"events_per_message", Config{URL: url, EventsPerMessage: -1}},
		{"events_per_message", Config{URL: url, EventsPerMessage: 1 << 16}},
		{"encoding", Config{URL: url, Encoding: "xml"}},
		{"nkey_file", Config{URL: url, CredsFile: "/dev/null", NKeyFile: "/dev/null"}},
		{"creds_file", Config{URL: url, CredsFile: "/nonexistent/creds"}},
		{"token", Config{URL: url, Token: "t", User: "u"}},
		{"password", Config{URL: url, Password: "p"}},
		{"tls.ca_file", Config{URL: url, TLS: TLS{CAFile: "/nonexistent/ca.pem"}}},
		{"tls.ca_file", Config{URL: url, TLS: TLS{CAFile: "/dev/null"}}},
		{"tls.key_file", Config{URL: url, TLS: TLS{CertFile: "/dev/null"}}},
		{"reconnect_wait", Config{URL: url, ReconnectWait: -1}},
		{"timeout", Config{URL: url, Timeout: -1}},
	} {
		s, err := New(c.cfg)
		if err == nil {
			s.Close(context.Background())
			t.Errorf("New(%+v) succeeded, want an error naming %s", c.cfg, c.field)
			continue
		}
		if !strings.HasPrefix(err.Error(), "nats."+c.field+": ") {
			t.Errorf("New(%+v) = %v, want an error naming nats.%s", c.cfg, err, c.field)
		}
		if !sink.IsPermanent(err) {
			t.Errorf("New(%+v) = %v: not permanent", c.cfg, err)
		}
	}
}

// TestSecretsNotInErrors: passwords and tokens, in the Config or in the
// URL, appear in no error of New.
func TestSecretsNotInErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String() // nothing listens there once l is closed
	l.Close()
	const secret = "s3cr3t-Zq9"
	for _, cfg := range []Config{
		{URL: "nats://" + secret + "@" + closed},
		{URL: "nats://user:" + secret + "@" + closed},
		{URL: "nats://user:" + secret + "@" + closed + ",nats://" + secret + "@:bad"},
		{URL: "nats://" + closed, User: "user", Password: secret},
		{URL: "nats://" + closed, Token: secret},
		{URL: "nats://" + closed, Token: secret, Encoding: "xml"},
		{URL: "ftp://" + secret + "@" + closed},
	} {
		s, err := New(cfg)
		if err == nil {
			s.Close(context.Background())
			t.Errorf("New succeeded with nothing listening at %s", closed)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("New error shows the secret: %v", err)
		}
		t.Logf("%v", err)
	}
}

// TestWriteAfterCloseCounts: WriteBatch after Close is sink.ErrClosed; a
// second Close is nil.
func TestWriteAfterCloseCounts(t *testing.T) {
	url := brokers.NATS(t)
	s := mustNew(t, Config{URL: url, Subject: unique("cnt") + ".{kind}"})
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(t.Context(), sinktest.NewGenerator(1).Batch(1)); !errors.Is(err, sink.ErrClosed) {
		t.Errorf("WriteBatch after Close = %v, want sink.ErrClosed", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestCloseWaitsForTurn: Close waits for a WriteBatch in progress only until its
// ctx ends.
func TestCloseWaitsForTurn(t *testing.T) {
	url := brokers.NATS(t)
	s := mustNew(t, Config{URL: url, Subject: unique("cnt") + ".{kind}"})
	_ = s.turn.Acquire(context.Background()) // a WriteBatch in progress
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Close while the sink is busy, with a cancelled ctx = %v, want context.Canceled", err)
	}
	s.turn.Release()
}

// TestPing: a connected sink answers, core and JetStream; a closed one
// says its connection is closed.
func TestPing(t *testing.T) {
	url := brokers.NATS(t)
	core := mustNew(t, Config{URL: url})
	if err := core.Ping(t.Context()); err != nil {
		t.Errorf("core Ping: %v", err)
	}
	js, _, _ := newJetStream(t, url, Config{})
	if err := js.Ping(t.Context()); err != nil {
		t.Errorf("JetStream Ping: %v", err)
	}
	if err := core.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := core.Ping(t.Context()); err == nil || !strings.Contains(err.Error(), "CLOSED") {
		t.Errorf("Ping after Close = %v, want the connection's CLOSED status", err)
	}
}
