//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// TestRunSenderRestartJetStream: a userspace sender on one connector id
// sends 50 messages numbered from 0, then again from 0 (a restart of its
// numbering), to `cnstream run` with one JetStream sink that publishes with
// Nats-Msg-Id = the event id into a stream with a duplicate window. Read back
// with nats.go, the stream keeps all 100 data messages with 100 distinct ids:
// no id repeated, so the dedupe dropped none of them.
func TestRunSenderRestartJetStream(t *testing.T) {
	const count = 50
	natsURL := brokers.NATS(t)
	tag := fmt.Sprint(rand.Uint32())
	stream, subject := "CNSTREAM_RESTART_TEST_"+tag, "cnstream-restart-test-"+tag
	dir := t.TempDir()
	cfg := filepath.Join(dir, "restart.yaml")
	yaml := fmt.Sprintf(`source:
  process_events: false
  groups: [%d]
  userspace_groups: [%d]
transform:
  enrich: false
sinks:
  - name: nats
    type: nats
    nats: {url: %q, jetstream: true, stream: %s, subject: "%s.{kind}"}
`, groupShutdown, groupShutdown, natsURL, stream, subject)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	js := jetStreamFor(t, natsURL, stream)

	runCmd, stderr := startRun(t, cfg)
	id := testID()
	for range 2 { // the same sender, its numbering restarted at 0
		if out, err := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupShutdown), "--id", id.String(),
			"--count", fmt.Sprint(count), "--seq", "0", "--quiet").CombinedOutput(); err != nil {
			t.Fatalf("send: %v: %s", err, out)
		}
	}
	// Wait until the stream holds both sends (or the deadline), then stop:
	// run flushes what it holds before it exits.
	raw := subject + "." + schema.KindRaw.String()
	deadline := time.Now().Add(30 * time.Second)
	for stored(t, js, stream, raw) < 2*count && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling the stream with a deadline
	}
	stopRun(t, runCmd, stderr)

	// Every data message of the stream, read back with nats.go.
	ctx, st, info := openStream(t, js, stream)
	if d := info.Config.Duplicates; d <= 0 {
		t.Fatalf("stream %s has no duplicate window (%v): the test proves nothing", stream, d)
	}
	ids := map[string]bool{}
	n := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("GetMsg %d: %v", seq, err)
		}
		if m.Subject != raw {
			continue // loss or restart records, if any
		}
		n++
		mid := m.Header.Get(jetstream.MsgIDHeader)
		if mid == "" || ids[mid] {
			t.Errorf("message %d: Nats-Msg-Id %q empty or repeated", seq, mid)
		}
		ids[mid] = true
	}
	if n != 2*count || len(ids) != 2*count {
		t.Errorf("stream %s: %d data messages with %d distinct ids, want %d of each (a repeated id is dropped by the dedupe); stderr: %s",
			stream, n, len(ids), 2*count, stderr.String())
	}
}

// stored returns how many messages of subject the stream holds (0 while it
// does not exist).
func stored(t *testing.T, js jetstream.JetStream, stream, subject string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0
	}
	return info.State.Subjects[subject]
}
