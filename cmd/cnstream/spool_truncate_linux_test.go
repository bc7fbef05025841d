//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/brokers"
	"github.com/cnstream/cnstream/testenv/need"
)

// TestSpoolTruncatedRestart: `cnstream run` with a Kafka sink to a port
// nobody listens on spools a sender's events unacknowledged and is
// SIGKILLed mid-stream; the spool's last segment is cut at a random offset
// (seeded and logged; the third case cuts at a random record boundary,
// where no record is torn) and run starts again at once with the same
// sink name (so the same cursor) to the suite's broker while the sender
// goes on: the numbers sent while run was down come back as a restart
// gap. Over the whole stream, read back with kcat: delivered distinct +
// gap missing + dropped (spool_corrupt, spool_missing) == sent, the
// dropped count is the number of records cut off, and a corrupt record
// says where when the cut tore a record.
func TestSpoolTruncatedRestart(t *testing.T) {
	need.Tool(t, "kcat", "it reads the topic back")
	addr := brokers.Kafka(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	for i := range 3 {
		t.Run(fmt.Sprintf("case%d", i+1), func(t *testing.T) {
			spoolTruncateCase(t, addr, rng, i == 2)
		})
	}
}

func spoolTruncateCase(t *testing.T, addr string, rng *rand.Rand, atBoundary bool) {
	const (
		count  = 300_000
		rate   = 100_000
		killAt = time.Second // about 100k events in the spool then
	)
	t0 := time.Now()
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "spool")
	topic := fmt.Sprintf("cnstream-spool-cut-%d", rand.Uint32())
	sinkOf := func(brokerAddr, topic string) string {
		return fmt.Sprintf("  - name: kafka\n    type: kafka\n    kafka: {brokers: [%q], topic: %s, encoding: json}", brokerAddr, topic)
	}
	cfgDead := writeSpoolConfig(t, dir, "dead.yaml", spoolDir, "", sinkOf("127.0.0.1:1", "never"))
	cfgLive := writeSpoolConfig(t, dir, "live.yaml", spoolDir, "", sinkOf(addr, topic))
	id := testID()

	// The spool holds the sender's first events, none acknowledged.
	runCmd, _ := startRun(t, cfgDead)
	send := startSpoolSend(t, id, count, rate)
	time.Sleep(time.Until(send.start.Add(killAt))) // the sender sends for a while: the test's time line
	if !send.running() {
		t.Fatalf("send ended %v after it started: before the kill", time.Since(send.start))
	}
	killRun(t, runCmd)
	down := time.Now()

	// Cut the last segment.
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "*.seg"))
	if len(segs) == 0 {
		t.Fatalf("no segment in %s", spoolDir)
	}
	sort.Strings(segs)
	seg := segs[len(segs)-1]
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	bounds := segmentBoundaries(t, data) // record starts, then the end of the last whole one
	records := len(bounds) - 1
	// SIGKILL can land between two writes of one record: what follows the
	// last whole record is such a torn tail. The cut below removes it
	// with the rest; its event's number is then in the restart gap, as
	// the spool resumes after its last whole record.
	size := bounds[len(bounds)-1]
	if torn := int64(len(data)) - size; torn > 0 {
		t.Logf("%s: a torn record of %d bytes after the last whole one (SIGKILL mid-write)", seg, torn)
	}
	if records < 10_000 {
		t.Fatalf("%s: %d bytes, %d records: want about %d (segments %v)", seg, size, records, int(killAt.Seconds()*rate), segs)
	}
	var cut int64
	if atBoundary {
		cut = bounds[rng.IntN(records)] // the start of a record: no record torn
	} else {
		cut = bounds[0] + rng.Int64N(size-bounds[0]) // after the header
	}
	kept := sort.Search(len(bounds), func(i int) bool { return bounds[i] > cut }) - 1 // records whole before the cut
	boundary := bounds[kept] == cut
	lost := uint64(records - kept)
	if err := os.Truncate(seg, cut); err != nil {
		t.Fatal(err)
	}

	// Restart with the sink working; the stream goes on.
	runCmd, stderr := startRun(t, cfgLive)
	t.Logf("%s (of %d segments): %d bytes, %d records; cut at offset %d: %d records kept, %d cut off, %s; run listening again after %.0f ms",
		filepath.Base(seg), len(segs), size, records, cut, kept, lost,
		map[bool]string{true: "at a record boundary", false: fmt.Sprintf("tearing a record (%d bytes of it kept)", cut-bounds[kept])}[boundary],
		time.Since(down).Seconds()*1000)
	sent, first, last := finishAfterRestart(t, send, runCmd, stderr)

	tl := newSpoolTally(id, "kafka")
	tl.readTopic(t, addr, topic)
	c := tl.check(t, sent, first, last)
	spoolLost := c.droppedByReason["spool_corrupt"] + c.droppedByReason["spool_missing"]
	t.Logf("case: cut at %d of %d bytes; delivered %d; dropped %v; corrupt records %d %+v; restart gap %d; duplicates %d; kernel drops %d",
		cut, size, c.delivered, c.droppedByReason, c.corrupt, tl.corrupt, c.restartMissing, c.duplicates, c.kernelDrops)
	if got := c.delivered + c.gapMissing + c.dropped; got != sent {
		t.Errorf("delivered %d + gap missing %d + dropped %d = %d, want %d sent", c.delivered, c.gapMissing, c.dropped, got, sent)
	}
	// Records appended after the head file was last written (the kill
	// between the two writes) are not known to be missing: the restart gap
	// states their numbers. Only these can make the count smaller.
	switch {
	case spoolLost > lost:
		t.Errorf("dropped spool_corrupt + spool_missing %d, more than the %d records cut off", spoolLost, lost)
	case spoolLost < lost:
		t.Logf("dropped spool_corrupt + spool_missing %d, %d records cut off: %d were appended after the head file was written", spoolLost, lost, lost-spoolLost)
	}
	if lost > 0 && spoolLost == 0 {
		t.Errorf("%d records cut off, no dropped record of reason spool_corrupt or spool_missing", lost)
	}
	for r := range c.droppedByReason {
		if r != "spool_corrupt" && r != "spool_missing" {
			t.Errorf("dropped records of reason %q: want only spool_corrupt and spool_missing", r)
		}
	}
	if c.restartMissing == 0 {
		t.Errorf("no restart gap: the numbers sent while run was down are not stated")
	}
	switch {
	case !boundary && c.corrupt != 1:
		t.Errorf("%d corrupt records, want 1: the cut tore a record", c.corrupt)
	case boundary && c.corrupt != 0:
		t.Errorf("%d corrupt records, want none: the cut fell between two records", c.corrupt)
	}
	if !boundary && c.corrupt == 1 {
		if ci := tl.corrupt[0]; ci.File != filepath.Base(seg) || ci.Offset != bounds[kept] || ci.Bytes != cut-bounds[kept] {
			t.Errorf("corrupt record %+v: want file %s, offset %d, %d bytes", ci, filepath.Base(seg), bounds[kept], cut-bounds[kept])
		}
	}
	t.Logf("wall time %.1f s", time.Since(t0).Seconds())
}

// segmentBoundaries returns the offsets of the records of a spool segment
// (a header of 18 bytes and the host's JSON, whose length is the u16 at
// 16, then records of a 17-byte header whose first 4 bytes are the
// payload's length), then the offset after the last whole record: a torn
// record after it (a process killed between two writes) is left out.
func segmentBoundaries(t *testing.T, data []byte) []int64 {
	t.Helper()
	if len(data) < 18 || string(data[:8]) != "CNSPOOL2" {
		t.Fatalf("not a spool segment: %q", data[:min(len(data), 18)])
	}
	off := int64(18) + int64(binary.LittleEndian.Uint16(data[16:]))
	bounds := []int64{off}
	for off+17 <= int64(len(data)) {
		end := off + 17 + int64(binary.LittleEndian.Uint32(data[off:]))
		if end > int64(len(data)) {
			break
		}
		off = end
		bounds = append(bounds, off)
	}
	return bounds
}
