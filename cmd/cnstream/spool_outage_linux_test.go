//go:build linux

package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSpoolKafkaBrokerStopped: `cnstream run` with a Kafka sink (JSON) to
// a private broker and a spool of 2 GiB (fsync interval) takes a sender at
// 100k datagrams/s for the whole test; once events reach the topic the
// broker is SIGKILLed, stays down for 60 s and is started again on the
// same dirs. The spool keeps what the sink could not deliver, so the
// reader never blocks: read back with kcat after a clean stop, the topic
// holds every number sent, delivered distinct + gap missing + dropped ==
// sent with nothing dropped and no gap but what the kernel dropped
// (overrun records). Duplicates (at-least-once) are counted.
//
// A record of this raw event takes about 190 bytes in the spool (compact
// records leave the host and the derived id out; 346 before): 2 GiB hold
// 11M of them, 110 s at 100k/s, more than the outage and the broker's
// restart (about 70 s).
func TestSpoolKafkaBrokerStopped(t *testing.T) {
	const (
		rate   = 100_000
		before = 5 * time.Second  // sending before the broker dies, at least
		outage = 60 * time.Second // the broker is down (its restart not included)
		count  = 9_000_000        // 90 s at rate: the sender outlasts the outage and the broker's restart (up to 70 s under load)
	)
	k := startPrivateKafka(t)
	t0 := time.Now()
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "spool")
	topic := fmt.Sprintf("cnstream-spool-outage-%d", rand.Uint32())
	cfg := writeSpoolConfigDrain(t, dir, "outage.yaml", spoolDir, "300s", "  max_size: 2GiB\n  fsync: interval\n", fmt.Sprintf(
		"  - name: kafka\n    type: kafka\n    kafka: {brokers: [%q], topic: %s, encoding: json}", k.addr, topic))
	id := testID()

	runCmd, stderr := startRun(t, cfg)
	send := startSpoolSend(t, id, count, rate)
	offs := newTopicOffsets(k.addr, topic)
	defer offs.close()
	for deadline := time.Now().Add(before + 20*time.Second); ; {
		n, _ := offs.count()
		if n > 0 && time.Since(send.start) >= before {
			break
		}
		if time.Now().After(deadline) || !send.running() {
			t.Fatalf("topic %s empty while the sender ran (%v since it started); run stderr: %s", topic, time.Since(send.start), stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the topic with a deadline
	}
	atKill, _ := offs.count()
	killAt := time.Since(send.start)
	killPrivateKafka(t, k)
	tKill := time.Now()
	time.Sleep(time.Until(tKill.Add(outage))) // the outage itself: the fault being injected
	spoolAtRestart := dirBytes(spoolDir)
	k.restart(t)
	down := time.Since(tKill)
	t.Logf("broker SIGKILLed %.1f s after send started (%d messages in the topic); down %.1f s (restart included); spool %d bytes at the restart",
		killAt.Seconds(), atKill, down.Seconds(), spoolAtRestart)
	if !send.running() {
		t.Errorf("send ended before the broker was back: the sender did not outlast the outage")
	}

	sent, first, last := send.wait(t, 120*time.Second)
	tSent := time.Now()
	// The backlog: the topic holds at least as many messages as were sent
	// (our events, records, duplicates), or stops growing (some were lost:
	// the check below says how).
	var n, lastN int64 = 0, -1
	lastChange := time.Now()
	for deadline := time.Now().Add(300 * time.Second); ; {
		var err error
		if n, err = offs.count(); err == nil && n >= int64(sent) {
			break
		}
		if n != lastN {
			lastN, lastChange = n, time.Now()
		} else if time.Since(lastChange) > 20*time.Second {
			t.Errorf("topic %s: %d messages, no more for 20 s; %d sent", topic, n, sent)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: %d messages (%v) 300 s after send ended, %d sent; run stderr: %s", topic, n, err, sent, stderr.String())
		}
		time.Sleep(200 * time.Millisecond) // polling the topic with a deadline
	}
	t.Logf("sent %d in %.1f s; the topic held %d messages %.1f s after send ended", sent, tSent.Sub(send.start).Seconds(), n, time.Since(tSent).Seconds())
	stopRun(t, runCmd, stderr)
	spoolCleanStop(t, stderr.String())

	tRead := time.Now()
	tl := newSpoolTally(id, "kafka")
	tl.readTopic(t, k.addr, topic)
	c := tl.check(t, sent, first, last)
	t.Logf("read back in %.1f s: %d duplicates", time.Since(tRead).Seconds(), c.duplicates)
	if got := c.delivered + c.gapMissing + c.dropped; got != sent {
		t.Errorf("delivered %d + gap missing %d + dropped %d = %d, want %d sent", c.delivered, c.gapMissing, c.dropped, got, sent)
	}
	if c.dropped != 0 {
		t.Errorf("dropped %d (%v): want none, the spool holds what the broker could not take", c.dropped, c.droppedByReason)
	}
	if c.gapMissing != c.kernelDrops {
		t.Errorf("gap missing %d, kernel drops %d: want equal (with the spool the reader never blocks: both 0)", c.gapMissing, c.kernelDrops)
	}
	if c.gapMissing != 0 || c.kernelDrops != 0 {
		t.Logf("NOTE: the kernel dropped %d datagrams (gap missing %d) although the spool never blocks the reader", c.kernelDrops, c.gapMissing)
	}
	t.Logf("wall time %.1f s", time.Since(t0).Seconds())
}

// killPrivateKafka SIGKILLs every node of the private broker (a crash, not
// a clean stop) and waits for them to be gone; its dirs stay for
// k.restart.
func killPrivateKafka(t *testing.T, k *privateKafka) {
	t.Helper()
	pidFiles, _ := filepath.Glob(filepath.Join(k.dir, "node-*", "kafka.pid"))
	if len(pidFiles) == 0 {
		t.Fatalf("no kafka.pid under %s", k.dir)
	}
	for _, f := range pidFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !strings.Contains(string(cmdline), "kafka.Kafka") {
			t.Fatalf("pid %d of %s is not a Kafka broker: %q", pid, f, cmdline)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; {
			if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
				break
			}
			// A killed process that is not our child is gone once its
			// parent reaps it; a zombie still answers kill 0.
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(st), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("broker pid %d still there 10 s after SIGKILL", pid)
			}
			time.Sleep(20 * time.Millisecond) // polling for the exit of a process that is not our child
		}
	}
}
