//go:build linux

package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/brokers"
	"github.com/cnstream/cnstream/testenv/need"
)

// The crash tests of the disk spool: `cnstream run` killed, its broker
// stopped, its disk full, its spool cut, and every number a sender sent on
// group 19 (groupSpool) is in the sink or stated by a loss record. Each
// test sends as an id of its own (testID: random, so that two test runs at
// once do not mix).

// TestSpoolSurvivesSIGKILLFile: a sender at 200k datagrams/s; `cnstream
// run` (file sink, spool) is SIGKILLed once its files hold events and
// started again at once with the same config while the sender goes on.
// After a clean stop the files hold every number sent or a record of its
// loss: delivered (distinct) + gap missing (the restart gap included) +
// dropped == sent. Duplicates (at-least-once after the kill) are counted.
func TestSpoolSurvivesSIGKILLFile(t *testing.T) {
	const (
		count = 1_000_000
		rate  = 200_000
	)
	t0 := time.Now()
	dir := t.TempDir()
	spoolDir, dataDir := filepath.Join(dir, "spool"), filepath.Join(dir, "data")
	cfg := writeSpoolConfig(t, dir, "kill-file.yaml", spoolDir, "", fmt.Sprintf(
		"  - name: files\n    type: file\n    file: {dir: %s, sync: never, max_size: 32MiB}", dataDir))
	id := testID()

	runCmd, _ := startRun(t, cfg)
	send := startSpoolSend(t, id, count, rate)
	killAt := spoolKillPoint(t, send, dataDir, count/rate)
	killRun(t, runCmd)
	down := time.Now()
	runCmd, stderr := startRun(t, cfg)
	t.Logf("SIGKILL %.2f s after send started (%d bytes in the files); listening again after %.0f ms",
		killAt.Seconds(), dirBytes(dataDir), time.Since(down).Seconds()*1000)
	if !send.running() {
		t.Fatalf("send ended before run was back: the restart gap is not tested")
	}
	sent, first, last := send.wait(t, 60*time.Second)
	stopRun(t, runCmd, stderr)
	spoolCleanStop(t, stderr.String())

	tl := newSpoolTally(id, "files")
	tl.readFiles(t, dataDir)
	c := tl.check(t, sent, first, last)
	if c.restartMissing == 0 {
		t.Errorf("no restart gap: the numbers sent while run was down are not stated")
	}
	t.Logf("wall time %.1f s", time.Since(t0).Seconds())
}

// TestSpoolSurvivesSIGKILLKafka is TestSpoolSurvivesSIGKILLFile with a
// Kafka sink (JSON, a topic of its own) to the suite's broker, read back
// with kcat.
func TestSpoolSurvivesSIGKILLKafka(t *testing.T) {
	const (
		count = 1_000_000
		rate  = 200_000
	)
	need.Tool(t, "kcat", "it reads the topic back")
	addr := brokers.Kafka(t)
	t0 := time.Now()
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "spool")
	topic := fmt.Sprintf("cnstream-spool-kill-%d", rand.Uint32())
	cfg := writeSpoolConfig(t, dir, "kill-kafka.yaml", spoolDir, "", fmt.Sprintf(
		"  - name: kafka\n    type: kafka\n    kafka: {brokers: [%q], topic: %s, encoding: json}", addr, topic))
	id := testID()

	runCmd, _ := startRun(t, cfg)
	send := startSpoolSend(t, id, count, rate)
	offs := newTopicOffsets(addr, topic)
	defer offs.close()
	deadline := time.Now().Add(count / rate * time.Second)
	for {
		n, _ := offs.count()
		if n > 0 && time.Since(send.start) >= count/rate*time.Second*2/5 {
			break
		}
		if time.Now().After(deadline) || !send.running() {
			t.Fatalf("topic %s empty while the sender ran (%v since it started)", topic, time.Since(send.start))
		}
		time.Sleep(10 * time.Millisecond) // polling the topic with a deadline
	}
	killAt := time.Since(send.start)
	atKill, _ := offs.count()
	killRun(t, runCmd)
	down := time.Now()
	runCmd, stderr := startRun(t, cfg)
	t.Logf("SIGKILL %.2f s after send started (%d messages in the topic); listening again after %.0f ms",
		killAt.Seconds(), atKill, time.Since(down).Seconds()*1000)
	if !send.running() {
		t.Fatalf("send ended before run was back: the restart gap is not tested")
	}
	sent, first, last := send.wait(t, 60*time.Second)
	stopRun(t, runCmd, stderr)
	spoolCleanStop(t, stderr.String())

	tl := newSpoolTally(id, "kafka")
	tl.readTopic(t, addr, topic)
	c := tl.check(t, sent, first, last)
	if c.restartMissing == 0 {
		t.Errorf("no restart gap: the numbers sent while run was down are not stated")
	}
	t.Logf("wall time %.1f s", time.Since(t0).Seconds())
}

// spoolKillPoint waits until the sink's dir holds data and the sender has
// sent for 40%% of its secs, and returns when that was after its start.
// The sender must still be running then.
func spoolKillPoint(t *testing.T, send *spoolSend, dataDir string, secs int) time.Duration {
	t.Helper()
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for dirBytes(dataDir) == 0 || time.Since(send.start) < time.Duration(secs)*time.Second*2/5 {
		if time.Now().After(deadline) || !send.running() {
			t.Fatalf("no event in %s while the sender ran (%v since it started)", dataDir, time.Since(send.start))
		}
		time.Sleep(10 * time.Millisecond) // polling the files with a deadline
	}
	return time.Since(send.start)
}

// spoolCleanStop checks run's final report after SIGINT: nothing left
// undelivered or kept in the spool.
func spoolCleanStop(t *testing.T, stderr string) {
	t.Helper()
	if !strings.Contains(stderr, " 0 undelivered\n") || strings.Contains(stderr, "kept in the spool") {
		t.Errorf("run did not deliver everything before it stopped:\n%s", stderr)
	}
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "cnstream run: ") && !strings.Contains(l, "listening") {
			t.Log(l)
		}
	}
}
