//go:build linux

package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
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
	sent, first, last := finishAfterRestart(t, send, runCmd, stderr)

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
	// The topic exists before run starts: what is measured is the spool
	// across a SIGKILL, not how soon a loaded machine's broker creates a
	// topic on first use (that took more than the sender's 5 s once in
	// the full suite under -race).
	createTopic(t, addr, topic, 1)

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
	sent, first, last := finishAfterRestart(t, send, runCmd, stderr)

	tl := newSpoolTally(id, "kafka")
	tl.readTopic(t, addr, topic)
	c := tl.check(t, sent, first, last)
	if c.restartMissing == 0 {
		t.Errorf("no restart gap: the numbers sent while run was down are not stated")
	}
	t.Logf("wall time %.1f s", time.Since(t0).Seconds())
}

// TestSpoolDiskFull: the spool's dir is a 4 MiB tmpfs (spool.max_size 64
// MiB: the disk fills first); a Kafka sink to a port nobody listens on
// never acknowledges, so the spool fills while the file sink (in another
// dir) keeps up. run does not crash, logs the failed write naming the
// dir and ENOSPC, and the file sink gets dropped records of reason
// spool_write_failed that account for what was lost: the identity holds
// for the file sink. Once the tmpfs is grown, the spool writes again (it
// says so) and a later sender's events reach the files.
func TestSpoolDiskFull(t *testing.T) {
	need.Root(t, "it mounts a tmpfs for the spool")
	const (
		count = 300_000
		rate  = 100_000
	)
	t0 := time.Now()
	dir := t.TempDir()
	spoolDir, dataDir := filepath.Join(dir, "spool"), filepath.Join(dir, "data")
	if err := os.Mkdir(spoolDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", spoolDir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", spoolDir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", spoolDir, err, out)
		}
	})
	cfg := writeSpoolConfigDrain(t, dir, "full.yaml", spoolDir, "3s", "  max_size: 64MiB\n", fmt.Sprintf(
		"  - name: files\n    type: file\n    file: {dir: %s, sync: never}\n"+
			"  - name: stalled\n    type: kafka\n    kafka: {brokers: [\"127.0.0.1:1\"], topic: never, encoding: json}", dataDir))
	id, later := testID(), testID()

	runCmd, stderr := startRun(t, cfg)
	send := startSpoolSend(t, id, count, rate)
	sent, first, last := send.wait(t, 60*time.Second)
	// The file sink takes what the spool still holds in memory: wait
	// until it has the failure's record.
	const failed = "spool: write failed"
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), failed) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in run's stderr after %d datagrams into a 4 MiB spool:\n%s", failed, sent, stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling its stderr with a deadline
	}
	if runCmd.ProcessState != nil {
		t.Fatalf("run exited: %v", runCmd.ProcessState)
	}
	var logLine string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, failed) {
			logLine = l
			break
		}
	}
	t.Logf("run's log: %s", logLine)
	if !strings.Contains(logLine, spoolDir) || !strings.Contains(logLine, "no space left on device") {
		t.Errorf("the failed write's log line names neither the spool dir %s nor ENOSPC: %s", spoolDir, logLine)
	}

	// Space again: the spool writes again and a later sender's events
	// reach the files.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", spoolDir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	const again = "spool: writes again"
	send2 := startSpoolSend(t, later, 1000, 0)
	sent2, first2, last2 := send2.wait(t, 30*time.Second)
	deadline = time.Now().Add(30 * time.Second)
	for {
		tl2 := newSpoolTally(later, "files")
		tl2.readFiles(t, dataDir)
		if uint64(len(tl2.copies)) == sent2 && strings.Contains(stderr.String(), again) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the remount: %d of %d events of the later sender in the files, %q in the log: %v; stderr:\n%s",
				len(tl2.copies), sent2, again, strings.Contains(stderr.String(), again), stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the files with a deadline
	}
	stopRun(t, runCmd, stderr)
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(l, "cnstream run: ") && !strings.Contains(l, "listening") {
			t.Log(l)
		}
	}

	tl := newSpoolTally(id, "files")
	tl.readFiles(t, dataDir)
	c := tl.check(t, sent, first, last)
	if c.droppedByReason["spool_write_failed"] == 0 {
		t.Errorf("no dropped record of reason spool_write_failed for the file sink")
	}
	// The later sender: every event delivered (the dropped records in the
	// files are the first sender's: they are not per stream).
	tl2 := newSpoolTally(later, "none")
	tl2.readFiles(t, dataDir)
	for seq := first2; seq <= last2; seq++ {
		if tl2.copies[seq] == 0 {
			t.Errorf("later sender: seq %d not delivered (%d of %d delivered)", seq, len(tl2.copies), sent2)
			break
		}
	}

	// The stalled sink's turn: the next run reaches its broker (the
	// suite's; the same sink name, so the same cursor) and delivers what
	// the spool kept for it. The events lost to the failed writes must be
	// stated to it too: the identity holds for it as for the files.
	need.Tool(t, "kcat", "it reads the topic back")
	addr := brokers.Kafka(t)
	topic := fmt.Sprintf("cnstream-spool-full-%d", rand.Uint32())
	cfg = writeSpoolConfig(t, dir, "full-recovered.yaml", spoolDir, "  max_size: 64MiB\n", fmt.Sprintf(
		"  - name: files\n    type: file\n    file: {dir: %s, sync: never}\n"+
			"  - name: stalled\n    type: kafka\n    kafka: {brokers: [%q], topic: %s, encoding: json}", dataDir, addr, topic))
	runCmd, stderr = startRun(t, cfg)
	stopRun(t, runCmd, stderr)
	spoolCleanStop(t, stderr.String())
	tl3 := newSpoolTally(id, "stalled")
	tl3.readTopic(t, addr, topic)
	c3 := tl3.check(t, sent, first, last)
	if c3.droppedByReason["spool_write_failed"] == 0 {
		t.Errorf("the stalled sink got no dropped record of reason spool_write_failed: the %d events the spool failed to write are lost to it silently",
			c.droppedByReason["spool_write_failed"])
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

// finishAfterRestart is the end of a restart test: the sender must still
// be sending (else the restart gap goes untested); it lets the sender
// finish, stops run with SIGINT and checks that it delivered everything.
func finishAfterRestart(t *testing.T, send *spoolSend, runCmd *exec.Cmd, stderr *syncBuffer) (sent uint64, first, last uint32) {
	t.Helper()
	if !send.running() {
		t.Fatalf("send ended before run was back: the restart gap is not tested")
	}
	sent, first, last = send.wait(t, 60*time.Second)
	stopRun(t, runCmd, stderr)
	spoolCleanStop(t, stderr.String())
	return sent, first, last
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
