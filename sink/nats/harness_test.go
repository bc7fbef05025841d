package natssink

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// TestMain keeps one nats-server for the package's tests ($CNSTREAM_NATS,
// or one started by brokers) and checks that no goroutine outlives them:
// Close must stop nats.go's connection goroutines.
func TestMain(m *testing.M) {
	code := brokers.Run(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// unique returns a fresh lowercase name: subject prefixes and streams of
// different tests never meet on the shared server.
func unique(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// connect returns a client connection for the test's own reading and
// stream administration, closed at the end of the test.
func connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("cnstream natssink test"))
	if err != nil {
		t.Fatalf("nats.Connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream.New: %v", err)
	}
	return nc, js
}

// decode returns the event of a message the sink published, checking its
// headers.
func decode(m *nats.Msg) (schema.Event, error) {
	var e schema.Event
	var err error
	switch ct := m.Header.Get(HeaderContentType); ct {
	case "application/msgpack":
		e, err = schema.DecodeMsgpack(m.Data)
	case "application/json":
		e, err = schema.DecodeJSON(m.Data)
	default:
		return e, fmt.Errorf("message on %s: Content-Type %q", m.Subject, ct)
	}
	if err != nil {
		return e, fmt.Errorf("message on %s: %w", m.Subject, err)
	}
	if id := m.Header.Get(HeaderMsgID); id != e.ID {
		return e, fmt.Errorf("message on %s: %s %q, event id %q", m.Subject, HeaderMsgID, id, e.ID)
	}
	if v := m.Header.Get(HeaderSchemaVersion); v != fmt.Sprint(e.Version) {
		return e, fmt.Errorf("message on %s: %s %q, event version %d", m.Subject, HeaderSchemaVersion, v, e.Version)
	}
	return e, nil
}

// decodeAll returns the events of a message: one, or those of a message
// of several (Config.EventsPerMessage), decoded as the package
// documentation tells consumers to, checking the headers.
func decodeAll(m *nats.Msg) ([]schema.Event, error) {
	ct := m.Header.Get(HeaderContentType)
	if ct != ContentTypeEventsMsgpack && ct != ContentTypeEventsJSONL {
		e, err := decode(m)
		return []schema.Event{e}, err
	}
	var events []schema.Event
	if ct == ContentTypeEventsJSONL {
		lines := bytes.Split(m.Data, []byte("\n"))
		if len(lines[len(lines)-1]) != 0 {
			return nil, fmt.Errorf("message on %s: JSON lines not ending with a newline", m.Subject)
		}
		for _, l := range lines[:len(lines)-1] {
			e, err := schema.DecodeJSON(l)
			if err != nil {
				return nil, fmt.Errorf("message on %s: %w", m.Subject, err)
			}
			events = append(events, e)
		}
	} else {
		// Any MessagePack library reads the array; each element is an
		// event as schema.DecodeMsgpack reads it.
		var raw []msgpack.RawMessage
		if err := msgpack.Unmarshal(m.Data, &raw); err != nil {
			return nil, fmt.Errorf("message on %s: %w", m.Subject, err)
		}
		for _, r := range raw {
			e, err := schema.DecodeMsgpack(r)
			if err != nil {
				return nil, fmt.Errorf("message on %s: %w", m.Subject, err)
			}
			events = append(events, e)
		}
	}
	if n := m.Header.Get(HeaderEvents); n != fmt.Sprint(len(events)) || len(events) == 0 {
		return nil, fmt.Errorf("message on %s: %s %q, %d events", m.Subject, HeaderEvents, n, len(events))
	}
	id := events[0].ID
	if len(events) > 1 {
		id += ".." + events[len(events)-1].ID
	}
	if got := m.Header.Get(HeaderMsgID); got != id {
		return nil, fmt.Errorf("message on %s: %s %q, want %q", m.Subject, HeaderMsgID, got, id)
	}
	for _, e := range events {
		if v := m.Header.Get(HeaderSchemaVersion); v != fmt.Sprint(e.Version) {
			return nil, fmt.Errorf("message on %s: %s %q, event version %d", m.Subject, HeaderSchemaVersion, v, e.Version)
		}
	}
	return events, nil
}

// subjectKey returns the ordering key of the sink: the subject an event
// gets from tmpl.
func subjectKeyOf(tmpl string) func(e *schema.Event) string {
	t, err := parseTemplate(tmpl)
	if err != nil {
		panic(err)
	}
	return func(e *schema.Event) string {
		var host, boot string
		if e.Host != nil {
			host, boot = e.Host.Hostname, e.Host.BootID
		}
		return string(t.appendSubject(nil, host, e.Kind, boot))
	}
}

// coreReader subscribes to prefix.> before the sink publishes (core NATS
// keeps nothing for a late subscriber) and buffers what arrives.
type coreReader struct {
	nc  *nats.Conn
	ch  chan *nats.Msg
	got []schema.Event
}

func newCoreReader(t testing.TB, url, prefix string) *coreReader {
	t.Helper()
	nc, _ := connect(t, url)
	r := &coreReader{nc: nc, ch: make(chan *nats.Msg, 1<<16)}
	if _, err := nc.ChanSubscribe(prefix+".>", r.ch); err != nil {
		t.Fatalf("subscribe %s.>: %v", prefix, err)
	}
	// The server has the subscription once the flush returns.
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return r
}

// read returns every message received so far. The sink's flush returned
// after the server had routed its messages to this connection; this
// connection's own flush returns after its reader has taken in everything
// the server sent before the PONG, the messages included.
func (r *coreReader) read() ([]schema.Event, error) {
	if err := r.nc.FlushTimeout(10 * time.Second); err != nil {
		return nil, err
	}
	for {
		select {
		case m := <-r.ch:
			e, err := decodeAll(m)
			if err != nil {
				return nil, err
			}
			r.got = append(r.got, e...)
		default:
			return append([]schema.Event(nil), r.got...), nil
		}
	}
}

// readStream returns every message of a stream, in stream order, decoded.
func readStream(ctx context.Context, js jetstream.JetStream, name string) ([]schema.Event, error) {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []schema.Event
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			return nil, fmt.Errorf("stream %s seq %d: %w", name, seq, err)
		}
		e, err := decodeAll(&nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data})
		if err != nil {
			return nil, err
		}
		out = append(out, e...)
	}
	return out, nil
}

// newJetStream returns a JetStream sink with a stream of its own (created
// by the sink through Config.Stream, deleted at the end of the test), and
// the subject prefix and stream name.
func newJetStream(t testing.TB, url string, cfg Config) (s *Sink, prefix, stream string) {
	t.Helper()
	_, js := connect(t, url)
	prefix = unique("cnt")
	stream = strings.ToUpper(prefix)
	cfg.URL, cfg.JetStream, cfg.Stream = url, true, stream
	if cfg.Subject == "" {
		cfg.Subject = prefix + ".{host}.{kind}"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		_ = s.Close(context.Background())
		if err := js.DeleteStream(context.Background(), stream); err != nil {
			t.Logf("deleting stream %s: %v", stream, err)
		}
	})
	return s, prefix, stream
}

func mustNew(t testing.TB, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

var _ sink.Sink = (*Sink)(nil)
