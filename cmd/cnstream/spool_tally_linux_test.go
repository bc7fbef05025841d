//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
)

// Helpers of the crash tests of the disk spool (spool_crash_linux_test.go):
// a sender in the background, the run's config, and the completeness
// tally of one sender's stream read back from a sink.

// spoolSend is a `cnstream send` running in the background.
type spoolSend struct {
	cmd   *exec.Cmd
	out   syncBuffer
	done  chan struct{}
	err   error
	start time.Time
}

// startSpoolSend starts `cnstream send` of count datagrams at rate per
// second (0: as fast as it can) to group 19 as id, with 8-byte payloads.
func startSpoolSend(t *testing.T, id schema.CbID, count, rate int) *spoolSend {
	t.Helper()
	s := &spoolSend{done: make(chan struct{})}
	s.cmd = exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupSpool), "--id", id.String(),
		"--count", fmt.Sprint(count), "--rate", fmt.Sprint(rate), "--payload-size", "8")
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	s.start = time.Now()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { _ = s.cmd.Process.Kill(); <-s.done })
	return s
}

func (s *spoolSend) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

var sendReportRE = regexp.MustCompile(`cnstream send: (\d+) messages as id \S+ to group \d+, seq (\d+)\.\.(\d+) \((\d+) numbers skipped\)`)

// wait waits for the sender to end (at most d) and returns its report:
// the count sent and the first and last sequence numbers.
func (s *spoolSend) wait(t *testing.T, d time.Duration) (sent uint64, first, last uint32) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(d):
		t.Fatalf("send still running %v after it started", time.Since(s.start))
	}
	if s.err != nil {
		t.Fatalf("send: %v: %s", s.err, s.out.String())
	}
	m := sendReportRE.FindStringSubmatch(s.out.String())
	if m == nil || m[4] != "0" {
		t.Fatalf("send: no report of a contiguous run of numbers in %q", s.out.String())
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	f, _ := strconv.ParseUint(m[2], 10, 32)
	l, _ := strconv.ParseUint(m[3], 10, 32)
	if l-f+1 != n {
		t.Fatalf("send: %d messages but seq %d..%d", n, f, l)
	}
	return n, uint32(f), uint32(l)
}

// writeSpoolConfig writes a run config listening to group 19 with a
// spool in spoolDir (extra spool keys appended), a drain timeout of 60 s
// and the sinks given as YAML list items; it returns its path.
func writeSpoolConfig(t *testing.T, dir, name, spoolDir, spoolExtra, sinks string) string {
	return writeSpoolConfigDrain(t, dir, name, spoolDir, "60s", spoolExtra, sinks)
}

// writeSpoolConfigDrain is writeSpoolConfig with a drain timeout.
func writeSpoolConfigDrain(t *testing.T, dir, name, spoolDir, drain, spoolExtra, sinks string) string {
	t.Helper()
	cfg := filepath.Join(dir, name)
	yaml := fmt.Sprintf(`source:
  process_events: false
  groups: [%d]
transform:
  enrich: false
pipeline:
  drain_timeout: %s
spool:
  dir: %s
%ssinks:
%s
telemetry:
  listen: "off"
`, groupSpool, drain, spoolDir, spoolExtra, sinks)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// stopRun sends SIGINT to run and waits for it to exit (0 expected).
func stopRun(t *testing.T, runCmd *exec.Cmd, stderr *syncBuffer) {
	t.Helper()
	if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := runCmd.Wait(); err != nil {
		t.Fatalf("run after SIGINT: %v; stderr: %s", err, stderr.String())
	}
}

// killRun sends SIGKILL to run and waits for it to be gone.
func killRun(t *testing.T, runCmd *exec.Cmd) {
	t.Helper()
	if err := runCmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = runCmd.Wait()
}

// dirBytes is the total size of the regular files in dir.
func dirBytes(dir string) int64 {
	ents, _ := os.ReadDir(dir)
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// spoolTally is what a sink holds for one sender's stream: its events by
// sequence number (deduped on the event id), the loss records (each
// counted once, by id) that concern the stream, and the sink's dropped
// records by reason.
type spoolTally struct {
	id   schema.CbID
	sink string

	messages    int
	copies      map[uint32]int    // per sequence number of ours
	eventSeq    map[string]uint32 // our event ids
	duplicates  int               // copies of our events beyond the first
	records     map[string]bool   // loss record ids seen
	recordDups  int
	others      int // events of other streams
	gapMissing  map[string]uint64
	gapRanges   [][3]uint64 // expected, got, missing
	kernelDrops uint64
	overruns    int
	dropped     map[string]uint64 // the sink's dropped counts by reason
	corrupt     []schema.CorruptInfo
	bad         []string
}

func newSpoolTally(id schema.CbID, sink string) *spoolTally {
	return &spoolTally{id: id, sink: sink, copies: map[uint32]int{}, eventSeq: map[string]uint32{},
		records: map[string]bool{}, gapMissing: map[string]uint64{}, dropped: map[string]uint64{}}
}

func (tl *spoolTally) fail(format string, args ...any) {
	if len(tl.bad) < 20 {
		tl.bad = append(tl.bad, fmt.Sprintf(format, args...))
	}
}

func (tl *spoolTally) ours(s *schema.Stream) bool {
	return s != nil && s.Idx == tl.id.Idx && s.Val == tl.id.Val
}

func (tl *spoolTally) add(e *schema.Event) {
	tl.messages++
	if e.ID == "" {
		tl.fail("an event without an id: %+v", *e)
		return
	}
	if !e.Kind.IsLoss() {
		if e.Kind != schema.KindRaw || !tl.ours(e.Stream) {
			tl.others++
			return
		}
		seq := e.Stream.Seq
		if prev, ok := tl.eventSeq[e.ID]; ok {
			if prev != seq {
				tl.fail("event id %s holds seq %d and %d", e.ID, prev, seq)
			}
			tl.duplicates++
			tl.copies[seq]++
			return
		}
		tl.eventSeq[e.ID] = seq
		if tl.copies[seq]++; tl.copies[seq] > 1 {
			tl.fail("seq %d under two event ids (second %s)", seq, e.ID)
		}
		return
	}
	if tl.records[e.ID] {
		tl.recordDups++
		return
	}
	tl.records[e.ID] = true
	switch {
	case e.Kind == schema.KindGap && e.Gap != nil:
		if tl.ours(e.Stream) {
			tl.gapMissing[e.Gap.Reason] += e.Gap.Missing
			tl.gapRanges = append(tl.gapRanges, [3]uint64{uint64(e.Gap.Expected), uint64(e.Gap.Got), e.Gap.Missing})
		}
	case e.Kind == schema.KindOverrun && e.Overrun != nil:
		tl.overruns++
		tl.kernelDrops += e.Overrun.KernelDrops
	case e.Kind == schema.KindDropped && e.Dropped != nil:
		if e.Dropped.Sink == "" || e.Dropped.Sink == tl.sink {
			tl.dropped[e.Dropped.Reason] += e.Dropped.Count
		}
	case e.Kind == schema.KindCorrupt && e.Corrupt != nil:
		tl.corrupt = append(tl.corrupt, *e.Corrupt)
	case e.Kind == schema.KindClosed, e.Kind == schema.KindFiltered && !tl.ours(e.Stream):
	default:
		tl.fail("unexpected record: %+v", *e)
	}
}

// readFiles adds every event of the file sink's directory (JSON lines,
// rotated and compressed files too).
func (tl *spoolTally) readFiles(t *testing.T, dir string) {
	t.Helper()
	r, err := file.NewReader(file.Config{Dir: dir, Format: file.JSONL})
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	defer r.Close()
	for {
		e, err := r.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Errorf("read %s (files %v): %v", dir, r.Files(), err)
			var re *file.RecordError
			if errors.As(err, &re) {
				continue
			}
			return
		}
		tl.add(&e)
	}
}

// readTopic adds every message of a topic, read from the beginning to its
// end with kcat (an independent client), one JSON event per line.
func (tl *spoolTally) readTopic(t *testing.T, addr, topic string) {
	t.Helper()
	cmd := exec.Command("kcat", "-C", "-b", addr, "-t", topic, "-e", "-q", "-o", "beginning", "-f", "%s\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		if e, ok := quickRaw(sc.Bytes()); ok {
			tl.add(&e)
			continue
		}
		e, err := schema.DecodeJSON(sc.Bytes())
		if err != nil {
			tl.fail("message %q: %v", sc.Bytes(), err)
			continue
		}
		tl.add(&e)
	}
	if err := sc.Err(); err != nil {
		t.Errorf("kcat output: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kcat -C %s: %v: %s", topic, err, stderr.String())
	}
}

// spoolCheck is the outcome of the completeness check.
type spoolCheck struct {
	sent, delivered, duplicates        uint64
	gapMissing, restartMissing         uint64
	inGaps, unexplained, outside       uint64
	kernelDrops, dropped, tornTail     uint64
	droppedByReason                    map[string]uint64
	corrupt                            int
	firstDelivered, lastDelivered      int64
	recordDups, others, messages, gaps int
}

func (c spoolCheck) String() string {
	var reasons []string
	for r, n := range c.droppedByReason {
		reasons = append(reasons, fmt.Sprintf("%s=%d", r, n))
	}
	sort.Strings(reasons)
	return fmt.Sprintf("sent %d; delivered %d distinct (seq %d..%d), %d duplicates; gap missing %d in %d gap records (restart %d), %d in their ranges; dropped %d [%s] (torn_tail %d, a bound, not counted); %d unexplained; %d outside the delivered span; kernel drops %d; %d corrupt records; %d repeated records; %d messages, %d of other streams",
		c.sent, c.delivered, c.firstDelivered, c.lastDelivered, c.duplicates, c.gapMissing, c.gaps, c.restartMissing, c.inGaps,
		c.dropped, strings.Join(reasons, " "), c.tornTail, c.unexplained, c.outside, c.kernelDrops, c.corrupt, c.recordDups, c.messages, c.others)
}

// check asserts the completeness identity for the sender's numbers
// first..last (sent of them): delivered distinct + gap missing + the
// sink's dropped counts (torn_tail excluded: it is an upper bound of what
// the file lost, and the spool delivers the cut records again) == sent,
// but for numbers the kernel dropped outside the delivered span (only the
// overrun count can state those: at most the kernel drops and the numbers
// outside the span); and the gap records state exactly the numbers in
// their ranges.
func (tl *spoolTally) check(t *testing.T, sent uint64, first, last uint32) spoolCheck {
	t.Helper()
	for _, b := range tl.bad {
		t.Error(b)
	}
	c := spoolCheck{sent: sent, duplicates: uint64(tl.duplicates), kernelDrops: tl.kernelDrops, droppedByReason: tl.dropped,
		corrupt: len(tl.corrupt), recordDups: tl.recordDups, others: tl.others, messages: tl.messages, gaps: len(tl.gapRanges),
		firstDelivered: -1, lastDelivered: -1}
	for seq := range tl.copies {
		if seq < first || seq > last {
			t.Errorf("seq %d delivered, outside the %d..%d sent", seq, first, last)
			continue
		}
		c.delivered++
		if c.firstDelivered < 0 || int64(seq) < c.firstDelivered {
			c.firstDelivered = int64(seq)
		}
		c.lastDelivered = max(c.lastDelivered, int64(seq))
	}
	for r, n := range tl.gapMissing {
		c.gapMissing += n
		if r == schema.GapRestart {
			c.restartMissing += n
		}
	}
	for r, n := range tl.dropped {
		if r == "torn_tail" {
			c.tornTail += n
			continue
		}
		c.dropped += n
	}
	ranges := slices.Clone(tl.gapRanges)
	sort.Slice(ranges, func(i, j int) bool { return ranges[i][0] < ranges[j][0] })
	for i, r := range ranges {
		if r[1]-r[0] != r[2] {
			t.Errorf("gap record [%d, %d) states %d missing", r[0], r[1], r[2])
		}
		if i > 0 && r[0] < ranges[i-1][1] {
			t.Errorf("gap records overlap: [%d, %d) and [%d, %d)", ranges[i-1][0], ranges[i-1][1], r[0], r[1])
		}
	}
	inGap := func(seq uint32) bool {
		i := sort.Search(len(ranges), func(i int) bool { return ranges[i][1] > uint64(seq) })
		return i < len(ranges) && ranges[i][0] <= uint64(seq)
	}
	for seq := uint64(first); seq <= uint64(last); seq++ {
		switch s := uint32(seq); {
		case tl.copies[s] > 0:
			if inGap(s) {
				t.Errorf("seq %d delivered and inside a gap record's range", s)
			}
		case inGap(s):
			c.inGaps++
		case int64(s) < c.firstDelivered || int64(s) > c.lastDelivered:
			c.outside++
		default:
			c.unexplained++
		}
	}
	t.Logf("identity: %v", c)
	k := int64(sent) - int64(c.delivered+c.gapMissing+c.dropped)
	if k < 0 || uint64(k) > min(c.outside, c.kernelDrops) {
		t.Errorf("delivered %d + gap missing %d + dropped %d = %d, want %d sent (%d unaccounted; at most %d could be kernel drops outside the delivered span)",
			c.delivered, c.gapMissing, c.dropped, c.delivered+c.gapMissing+c.dropped, sent, k, min(c.outside, c.kernelDrops))
	}
	if c.inGaps != c.gapMissing {
		t.Errorf("gap records state %d missing, their ranges hold %d numbers not delivered", c.gapMissing, c.inGaps)
	}
	return c
}

// quickRaw reads the id and the stream of a raw event's JSON line (what
// the tally needs of it) without encoding/json: millions of lines under
// the race detector took minutes. Anything else (records, another
// layout) is left to schema.DecodeJSON.
func quickRaw(line []byte) (schema.Event, bool) {
	if !bytes.Contains(line, []byte(`"kind":"raw"`)) {
		return schema.Event{}, false
	}
	id, ok := jsonStr(line, `"id":`)
	if !ok {
		return schema.Event{}, false
	}
	i := bytes.Index(line, []byte(`"stream":{`))
	if i < 0 {
		return schema.Event{}, false
	}
	st := line[i:]
	if j := bytes.IndexByte(st, '}'); j >= 0 {
		st = st[:j]
	}
	var s schema.Stream
	for _, f := range []struct {
		key string
		v   *uint32
	}{{`"idx":`, &s.Idx}, {`"val":`, &s.Val}, {`"cpu":`, &s.CPU}, {`"sender":`, &s.Sender}, {`"epoch":`, &s.Epoch}, {`"seq":`, &s.Seq}} {
		v, ok := jsonUint(st, f.key)
		if !ok {
			return schema.Event{}, false
		}
		*f.v = v
	}
	return schema.Event{Version: schema.EventVersion, ID: id, Kind: schema.KindRaw, Stream: &s, Raw: &schema.RawInfo{}}, true
}

func jsonStr(b []byte, key string) (string, bool) {
	i := bytes.Index(b, []byte(key+`"`))
	if i < 0 {
		return "", false
	}
	b = b[i+len(key)+1:]
	j := bytes.IndexByte(b, '"')
	if j < 0 || bytes.IndexByte(b[:j], '\\') >= 0 {
		return "", false
	}
	return string(b[:j]), true
}

func jsonUint(b []byte, key string) (uint32, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	var v uint64
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' && n < 11 {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	if n == 0 || v > 1<<32-1 {
		return 0, false
	}
	return uint32(v), true
}

// TestQuickRaw: quickRaw reads what schema.DecodeJSON reads of a raw
// event's id and stream, and leaves records to it.
func TestQuickRaw(t *testing.T) {
	e := schema.Event{Version: schema.EventVersion, Kind: schema.KindRaw, Time: time.Unix(1, 0),
		Host:   &schema.Host{Hostname: "h", BootID: "b"},
		Stream: &schema.Stream{Idx: 19, Val: 201, Sender: 4000000001, Epoch: 123456789, Seq: 4294967295},
		Raw:    &schema.RawInfo{Group: 19, Payload: []byte(`"kind":"gap"`)}}
	e.ID = e.EventID()
	line := schema.AppendJSON(nil, &e)
	q, ok := quickRaw(line)
	d, err := schema.DecodeJSON(line)
	if !ok || err != nil || q.ID != d.ID || *q.Stream != *d.Stream {
		t.Fatalf("quickRaw %+v %v (ok %v), DecodeJSON %+v %v (err %v)", q, q.Stream, ok, d, d.Stream, err)
	}
	g := schema.NewRecords("r", *e.Host).Gap(*e.Stream, 1, 5, 4, "")
	if _, ok := quickRaw(schema.AppendJSON(nil, &g)); ok {
		t.Fatal("quickRaw took a gap record")
	}
}
