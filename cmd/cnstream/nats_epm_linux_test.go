//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/cnstream/cnstream/schema"
	natssink "github.com/cnstream/cnstream/sink/nats"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// groupEPM is the connector group of TestRunJetStreamEventsPerMessage.
const groupEPM = 23

// TestRunJetStreamEventsPerMessage: `cnstream run` with one JetStream sink
// configured with `events_per_message: 16` takes 3000 datagrams of
// `cnstream send` on a connector group. Read back from the stream with
// nats.go, as the package documentation of sink/nats tells consumers to
// (Content-Type, a MessagePack array, Cnstream-Events): every event id is
// there exactly once, in the order sent (sequence numbers 0..2999); every
// message holds 1..16 events, says how many in Cnstream-Events, and those
// counts sum to the events; Nats-Msg-Id is "first..last" of its events (the
// one id for a message of one); and fewer messages than events were stored,
// so the option took effect.
func TestRunJetStreamEventsPerMessage(t *testing.T) {
	const (
		count      = 3000
		perMessage = 16
	)
	natsURL := brokers.NATS(t)
	tag := fmt.Sprint(rand.Uint32())
	stream, subject := "CNSTREAM_EPM_TEST_"+tag, "cnstream-epm-test-"+tag
	dir := t.TempDir()
	cfg := filepath.Join(dir, "epm.yaml")
	// A 50 ms linger gathers the burst into batches of many events, which
	// the sink cuts into messages of up to 16.
	yaml := fmt.Sprintf(`source:
  process_events: false
  groups: [%d]
transform:
  enrich: false
sinks:
  - name: nats
    type: nats
    batch: {linger: 50ms}
    nats: {url: %q, jetstream: true, stream: %s, subject: "%s.{kind}", events_per_message: %d}
`, groupEPM, natsURL, stream, subject, perMessage)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	js := jetStreamFor(t, natsURL, stream)

	runCmd, stderr := startRun(t, cfg)
	id := testID()
	if out, err := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupEPM), "--id", id.String(),
		"--count", fmt.Sprint(count), "--seq", "0", "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("send: %v: %s", err, out)
	}
	// The events arrive in order: the last one sent is in the stream once
	// the subject's last message ends with its id (or the deadline passes:
	// the checks below then say what is missing). Then stop: run flushes
	// what it holds before it exits.
	raw := subject + "." + schema.KindRaw.String()
	lastID := fmt.Sprintf("/%d", count-1)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.HasSuffix(lastMsgID(js, stream, raw), lastID) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling the stream with a deadline
	}
	stopRun(t, runCmd, stderr)

	ctx, st, info := openStream(t, js, stream)
	seen := map[string]bool{}
	msgs, events, headerSum := 0, 0, 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("GetMsg %d: %v", seq, err)
		}
		if m.Subject != raw {
			continue // loss records, if any (the checks below count them as missing events)
		}
		msgs++
		n, err := strconv.Atoi(m.Header.Get(natssink.HeaderEvents))
		if err != nil || n < 1 || n > perMessage {
			t.Fatalf("message %d: %s %q: want 1..%d", seq, natssink.HeaderEvents, m.Header.Get(natssink.HeaderEvents), perMessage)
		}
		headerSum += n
		got, err := decodeEvents(m)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if len(got) != n {
			t.Fatalf("message %d: %s %d, %d events in its payload", seq, natssink.HeaderEvents, n, len(got))
		}
		wantMsgID := got[0].ID
		if n > 1 {
			wantMsgID += ".." + got[n-1].ID
		}
		if mid := m.Header.Get(jetstream.MsgIDHeader); mid != wantMsgID {
			t.Errorf("message %d: Nats-Msg-Id %q, want %q (its events' first..last)", seq, mid, wantMsgID)
		}
		for _, e := range got {
			if e.Kind != schema.KindRaw || e.Stream == nil {
				t.Fatalf("message %d: event %s of kind %v, want raw with its stream", seq, e.ID, e.Kind)
			}
			if e.Stream.Seq != uint32(events) {
				t.Fatalf("message %d: event %s has sequence number %d, want %d (every event once, in order)", seq, e.ID, e.Stream.Seq, events)
			}
			if e.ID == "" || seen[e.ID] {
				t.Fatalf("message %d: event id %q empty or repeated", seq, e.ID)
			}
			seen[e.ID] = true
			events++
		}
	}
	if events != count || headerSum != count {
		t.Errorf("stream %s: %d events in %d messages (Cnstream-Events sum %d), want %d; stderr: %s",
			stream, events, msgs, headerSum, count, stderr.String())
	}
	if msgs >= events {
		t.Errorf("stream %s: %d messages for %d events: events_per_message %d did not group any", stream, msgs, events, perMessage)
	}
	t.Logf("%d events in %d messages", events, msgs)
}

// lastMsgID returns the Nats-Msg-Id of the last message of subject in the
// stream, "" when there is none (yet).
func lastMsgID(js jetstream.JetStream, stream, subject string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return ""
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return ""
	}
	return m.Header.Get(jetstream.MsgIDHeader)
}

// decodeEvents reads a message of several events as sink/nats's package
// documentation tells consumers to: by its Content-Type, a MessagePack array
// whose elements schema.DecodeMsgpack reads.
func decodeEvents(m *jetstream.RawStreamMsg) ([]schema.Event, error) {
	if ct := m.Header.Get(natssink.HeaderContentType); ct != natssink.ContentTypeEventsMsgpack {
		return nil, fmt.Errorf("Content-Type %q, want %q", ct, natssink.ContentTypeEventsMsgpack)
	}
	var elems []msgpack.RawMessage
	if err := msgpack.Unmarshal(m.Data, &elems); err != nil {
		return nil, fmt.Errorf("payload is not a MessagePack array: %w", err)
	}
	if len(elems) == 0 {
		return nil, errors.New("empty array")
	}
	events := make([]schema.Event, 0, len(elems))
	for i, b := range elems {
		e, err := schema.DecodeMsgpack(b)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		e.ID = e.EventID()
		events = append(events, e)
	}
	return events, nil
}
