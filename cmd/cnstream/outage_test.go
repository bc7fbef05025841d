//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/need"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/cnstream/cnstream/schema"
)

// groupOutage is the connector group of TestRunKafkaBrokerOutage (other
// tests use 13-17 and 20-26, the benchmarks 18-19).
const groupOutage = 12

// TestRunKafkaBrokerOutage: `cnstream run` with a kafka sink (queue policy
// block, 60 s retry budget) takes 200k datagrams of `cnstream send` (10k/s
// for 20 s) while its private Kafka broker is stopped for 10 s mid-stream and
// started again from its kept data. Read back with kcat, every sequence
// number of the sender is in the topic or accounted for by a loss record:
// delivered (distinct) + kernel drops (overrun records) + dropped records +
// undelivered == sent. Duplicates are allowed (at-least-once) and counted.
// The sink must not lose anything: only the kernel's receive queue may
// overflow while the queue blocks, and that loss must be stated exactly.
func TestRunKafkaBrokerOutage(t *testing.T) {
	const (
		count   = 200000
		rate    = 10000
		payload = 16
		before  = 5 * time.Second  // sending before the broker stops
		outage  = 10 * time.Second // the fault under test
	)
	k := startPrivateKafka(t)
	telemetryAddr := freeAddr(t)
	topic := fmt.Sprintf("cnstream-outage-test-%d", rand.Uint32())
	cfg := filepath.Join(t.TempDir(), "outage.yaml")
	yaml := fmt.Sprintf(`source:
  process_events: false
  groups: [%d]
transform:
  enrich: false
sinks:
  - name: kafka
    type: kafka
    queue:
      policy: block
    retry:
      max_elapsed: 60s
    kafka:
      brokers: [%q]
      topic: %s
      encoding: json
telemetry:
  listen: %s
`, groupOutage, k.addr, topic, telemetryAddr)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	runCmd, stderr := startRun(t, cfg)

	id := testID()
	send := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupOutage), "--id", id.String(),
		"--count", fmt.Sprint(count), "--rate", fmt.Sprint(rate), "--payload-size", fmt.Sprint(payload), "--quiet")
	var sendOut bytes.Buffer
	send.Stdout, send.Stderr = &sendOut, &sendOut
	t0 := time.Now()
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	sendDone := make(chan error, 1)
	go func() { sendDone <- send.Wait() }()
	t.Cleanup(func() {
		_ = send.Process.Kill()
		<-sendDone
	})

	// Events reach the topic before the outage: the sink works.
	offs := newTopicOffsets(k.addr, topic)
	defer offs.close()
	var atStop int64
	for deadline := time.Now().Add(before + 10*time.Second); ; {
		n, err := offs.count()
		if err == nil && n > 0 && time.Since(t0) >= before {
			atStop = n
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: %d messages, %v, %v after send started; run stderr: %s", topic, n, err, time.Since(t0), stderr.String())
		}
		time.Sleep(100 * time.Millisecond) // polling the topic with a deadline
	}

	// /readyz: ready while the broker answers, 503 naming the sink while it
	// is down, ready again once it is back.
	waitReady(t, telemetryAddr, true, "", 10*time.Second)
	tStop := time.Now()
	k.stop(t, true)
	if out, err := exec.Command(k.script("status"), "--dir", k.dir).CombinedOutput(); err == nil {
		t.Fatalf("status after stop --keep says the broker runs: %s", out)
	}
	waitReady(t, telemetryAddr, false, `"name":"sink kafka","ok":false,"error":"kafka: ping`, outage)
	time.Sleep(time.Until(tStop.Add(outage))) // the outage itself: the fault being injected
	k.restart(t)
	waitReady(t, telemetryAddr, true, "", 30*time.Second)
	down := time.Since(tStop)
	t.Logf("broker stopped %.1f s after send started with %d messages in the topic; down %.1f s (restart included)",
		tStop.Sub(t0).Seconds(), atStop, down.Seconds())

	select {
	case err := <-sendDone:
		if err != nil {
			t.Fatalf("send: %v: %s", err, sendOut.String())
		}
		sendDone <- nil // for the cleanup
	case <-time.After(time.Until(t0.Add(count/rate*time.Second + 30*time.Second))):
		t.Fatalf("send still running %v after it started", time.Since(t0))
	}
	tSent := time.Now()

	// Wait for the backlog: the topic holds at least count messages (events,
	// records, duplicates), or stops growing when datagrams were lost.
	var last int64 = -1
	lastChange := time.Now()
	for deadline := time.Now().Add(60 * time.Second); ; {
		n, err := offs.count()
		if err == nil && n != last {
			last, lastChange = n, time.Now()
		}
		if last >= count || (last > 0 && time.Since(lastChange) > 8*time.Second) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s: %d messages (%v) 60 s after send ended; run stderr: %s", topic, last, err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond) // polling the topic with a deadline
	}
	caughtUp := time.Since(tSent)

	if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	runErr := runCmd.Wait()
	sum := parseRunReport(t, stderr.String())
	if runErr != nil {
		t.Errorf("run after SIGINT: %v; stderr: %s", runErr, stderr.String())
	}

	// The whole topic, read by an independent client.
	out, err := exec.Command("kcat", "-C", "-b", k.addr, "-t", topic, "-e", "-q", "-f", "%h\t%s\n").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		t.Fatalf("kcat -C %s: %v", topic, err)
	}
	tally := tallyTopic(t, out, id, count, payload)

	// Every sequence number not in the topic is inside a gap record's range,
	// or before the first or after the last one delivered: a drop there has
	// no number on its other side to reveal it, only the overrun count
	// states it (docs/DELIVERY.md).
	var inGaps, outside, unexplained uint64
	for seq := uint32(0); seq < count; seq++ {
		switch {
		case tally.copies[seq] > 0:
		case slices.ContainsFunc(tally.gapRanges, func(r [2]uint32) bool { return r[0] <= seq && seq < r[1] }):
			inGaps++
		case int64(seq) > tally.maxSeq || int64(seq) < tally.minSeq:
			outside++
		default:
			unexplained++
		}
	}
	missing := count - tally.delivered
	sinkLost := tally.droppedCount + sum.undelivered
	t.Logf("sent %d in %.1f s; topic: %d messages, %d of our events (%d distinct, %d duplicates), %d records (%d gap, %d overrun, %d dropped); caught up %.1f s after send ended",
		count, tSent.Sub(t0).Seconds(), tally.messages, tally.raws, tally.delivered, tally.duplicates,
		tally.records, tally.gaps, tally.overruns, tally.dropped, caughtUp.Seconds())
	t.Logf("missing %d: %d in gap records (%d stated), %d outside the delivered span, %d unexplained; kernel drops %d (overrun records); dropped records %d; run: %s",
		missing, inGaps, tally.gapMissing, outside, unexplained, tally.kernelDrops, tally.droppedCount, sum.sinkLine)

	if got := tally.delivered + tally.kernelDrops + sinkLost; got != count {
		t.Errorf("delivered %d + kernel drops %d + dropped %d + undelivered %d = %d, want %d sent",
			tally.delivered, tally.kernelDrops, tally.droppedCount, sum.undelivered, got, count)
	}
	// Without sink loss every missing number is a kernel drop: within the
	// delivered span exactly what the gap records state (delivered + gap
	// missing == span), outside it what only the overrun count states.
	if sinkLost == 0 && (unexplained != 0 || inGaps != tally.gapMissing || inGaps+outside != tally.kernelDrops) {
		t.Errorf("missing %d: %d in gaps (records state %d), %d outside the delivered span, %d unexplained: want gaps + outside == kernel drops %d",
			missing, inGaps, tally.gapMissing, outside, unexplained, tally.kernelDrops)
	}
	// The run's own counts agree with the records in the topic.
	if sum.missing != tally.gapMissing || sum.kernelDrops != tally.kernelDrops {
		t.Errorf("run reports %d missing, %d kernel drops; the topic's records %d, %d", sum.missing, sum.kernelDrops, tally.gapMissing, tally.kernelDrops)
	}
	// Acknowledged means in the topic: what the sink counts as delivered
	// is there, each at least once.
	if distinct := tally.delivered + tally.records; sum.delivered != distinct {
		t.Errorf("sink delivered %d events; the topic holds %d distinct (%d ours, %d records)", sum.delivered, distinct, tally.delivered, tally.records)
	}
	// Block and a 60 s budget outlast a 10 s outage: the sink loses nothing.
	if sum.failed != 0 || sum.policyDropped != 0 || sum.undelivered != 0 || tally.droppedCount != 0 {
		t.Errorf("sink lost events (%s; dropped records %d): want none with policy block and a 60 s retry budget",
			sum.sinkLine, tally.droppedCount)
	}
	if sum.delivered != sum.events {
		t.Errorf("sink delivered %d of the %d events the transform made", sum.delivered, sum.events)
	}
	if sum.retries == 0 {
		t.Errorf("sink retries 0: the outage was not felt (%s)", sum.sinkLine)
	}
}

// topicTally is what the topic holds for one sender.
type topicTally struct {
	messages     int
	raws         int      // our events, duplicates included
	copies       []uint16 // per sequence number
	delivered    uint64   // sequence numbers present
	duplicates   int
	minSeq       int64 // lowest present, count for none
	maxSeq       int64 // highest present, -1 for none
	records      uint64
	gaps         int
	overruns     int
	dropped      int
	gapMissing   uint64
	gapRanges    [][2]uint32 // [expected, got)
	kernelDrops  uint64
	droppedCount uint64
}

// tallyTopic decodes kcat's "<headers>\t<JSON value>" lines.
func tallyTopic(t *testing.T, out []byte, id schema.CbID, count, payload int) topicTally {
	t.Helper()
	tl := topicTally{copies: make([]uint16, count), minSeq: int64(count), maxSeq: -1}
	seen := make(map[string]bool, count)
	bad := 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for line := range bytes.Lines(out) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		if len(line) == 0 {
			continue
		}
		tl.messages++
		headers, value, _ := bytes.Cut(line, []byte("\t"))
		var e schema.Event
		if err := json.Unmarshal(value, &e); err != nil {
			fail("message %q: %v", line, err)
			continue
		}
		if !bytes.Contains(headers, []byte("cnstream-event-id="+e.ID)) {
			fail("headers %q: want the event id %s", headers, e.ID)
		}
		dup := seen[e.ID]
		seen[e.ID] = true
		ours := e.Stream != nil && e.Stream.Idx == id.Idx && e.Stream.Val == id.Val
		if e.Kind == schema.KindRaw && ours {
			tl.raws++
			seq := int(e.Stream.Seq)
			if seq >= count || e.Raw == nil || e.Raw.Group != groupOutage || len(e.Raw.Payload) != payload {
				fail("event %s: want seq < %d, a %d-byte payload on group %d: %+v", e.ID, count, payload, groupOutage, e.Raw)
				continue
			}
			if tl.copies[seq]++; tl.copies[seq] == 1 {
				tl.delivered++
				tl.minSeq, tl.maxSeq = min(tl.minSeq, int64(seq)), max(tl.maxSeq, int64(seq))
			} else {
				tl.duplicates++
			}
			if dup != (tl.copies[seq] > 1) {
				fail("event %s: event id and sequence number disagree on duplicates", e.ID)
			}
			continue
		}
		if dup {
			tl.duplicates++
			continue
		}
		tl.records++
		switch {
		case e.Kind == schema.KindGap && ours && e.Gap != nil:
			tl.gaps++
			tl.gapMissing += e.Gap.Missing
			tl.gapRanges = append(tl.gapRanges, [2]uint32{e.Gap.Expected, e.Gap.Got})
		case e.Kind == schema.KindOverrun && e.Overrun != nil:
			tl.overruns++
			tl.kernelDrops += e.Overrun.KernelDrops
		case e.Kind == schema.KindDropped && e.Dropped != nil:
			tl.dropped++
			tl.droppedCount += e.Dropped.Count
			t.Logf("dropped record %s: %+v", e.ID, *e.Dropped)
		default:
			fail("unexpected event in the topic: %s", value)
		}
	}
	return tl
}

// runReport is the final report of `cnstream run` on stderr.
type runReport struct {
	events, missing, kernelDrops                           uint64
	delivered, retries, failed, policyDropped, undelivered uint64
	sinkLine                                               string
}

var (
	runEventsRE = regexp.MustCompile(`cnstream run: (\d+) events \(\d+ records of loss: \d+ gaps, (\d+) missing, (\d+) kernel drops`)
	runSinkRE   = regexp.MustCompile(`cnstream run: sink kafka: (\d+) delivered in \d+ batches, (\d+) retries, (\d+) failed, (\d+) dropped by policy, (\d+) undelivered`)
)

func parseRunReport(t *testing.T, stderr string) runReport {
	t.Helper()
	ev, sk := runEventsRE.FindStringSubmatch(stderr), runSinkRE.FindStringSubmatch(stderr)
	if ev == nil || sk == nil {
		t.Fatalf("no final report (events and sink kafka lines) in run's stderr:\n%s", stderr)
	}
	n := func(s string) uint64 {
		v, _ := strconv.ParseUint(s, 10, 64)
		return v
	}
	return runReport{events: n(ev[1]), missing: n(ev[2]), kernelDrops: n(ev[3]),
		delivered: n(sk[1]), retries: n(sk[2]), failed: n(sk[3]), policyDropped: n(sk[4]), undelivered: n(sk[5]),
		sinkLine: strings.TrimPrefix(sk[0], "cnstream run: ")}
}

// topicOffsets counts the messages of a topic (the sum of its partitions'
// end offsets) with kafka-go.
type topicOffsets struct {
	tr     *kafkago.Transport
	client *kafkago.Client
	topic  string
}

func newTopicOffsets(addr, topic string) *topicOffsets {
	tr := &kafkago.Transport{DialTimeout: 2 * time.Second}
	return &topicOffsets{tr: tr, client: &kafkago.Client{Addr: kafkago.TCP(addr), Transport: tr, Timeout: 5 * time.Second}, topic: topic}
}

func (o *topicOffsets) close() { o.tr.CloseIdleConnections() }

func (o *topicOffsets) count() (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	md, err := o.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{o.topic}})
	if err != nil {
		return 0, err
	}
	var reqs []kafkago.OffsetRequest
	for _, tp := range md.Topics {
		if tp.Error != nil {
			return 0, tp.Error
		}
		for _, p := range tp.Partitions {
			reqs = append(reqs, kafkago.LastOffsetOf(p.ID))
		}
	}
	if len(reqs) == 0 {
		return 0, fmt.Errorf("topic %s: no partitions", o.topic)
	}
	res, err := o.client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{o.topic: reqs}})
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range res.Topics[o.topic] {
		if p.Error != nil {
			return 0, p.Error
		}
		n += p.LastOffset
	}
	return n, nil
}

// privateKafka is a single-node broker of one test, started with
// testenv/kafka/start on free ports; stopped when the test ends, and by
// itself if the test binary dies (--watch-pid).
type privateKafka struct {
	dir, addr, scripts string
	env                []string
}

func startPrivateKafka(t *testing.T) *privateKafka {
	t.Helper()
	need.Tool(t, "java", "the test's private Kafka broker runs on it")
	need.Tool(t, "kcat", "it reads the topic back")
	scripts, err := filepath.Abs("../../testenv/kafka")
	if err != nil {
		t.Fatal(err)
	}
	port := freePortPair(t)
	k := &privateKafka{dir: filepath.Join(t.TempDir(), "kafka"), scripts: scripts,
		env: append(os.Environ(), "CNSTREAM_KAFKA_PORT="+strconv.Itoa(port), "CNSTREAM_KAFKA_HEAP=512m")}
	t.Cleanup(func() {
		if out, err := exec.Command(k.script("stop"), "--dir", k.dir).CombinedOutput(); err != nil {
			t.Errorf("testenv/kafka/stop: %v\n%s", err, out)
		}
	})
	k.addr = k.start(t)
	if want := "127.0.0.1:" + strconv.Itoa(port); k.addr != want {
		t.Fatalf("testenv/kafka/start printed %q, want %q", k.addr, want)
	}
	return k
}

func (k *privateKafka) script(name string) string { return filepath.Join(k.scripts, name) }

func (k *privateKafka) start(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(k.script("start"), append([]string{"--dir", k.dir, "--watch-pid", strconv.Itoa(os.Getpid())}, args...)...)
	cmd.Env = k.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testenv/kafka/start %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// restart starts the broker again from the data stop(t, true) kept.
func (k *privateKafka) restart(t *testing.T) {
	t.Helper()
	if addr := k.start(t, "--restart"); addr != k.addr {
		t.Fatalf("testenv/kafka/start --restart printed %q, want %q", addr, k.addr)
	}
}

func (k *privateKafka) stop(t *testing.T, keep bool) {
	t.Helper()
	args := []string{"--dir", k.dir}
	if keep {
		args = append(args, "--keep")
	}
	if out, err := exec.Command(k.script("stop"), args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv/kafka/stop %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// freePortPair returns a port p such that p and p+1 (PLAINTEXT and
// CONTROLLER) are free on 127.0.0.1 now.
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l.Close()
		if err == nil {
			l2.Close()
			if p+1 <= 65530 {
				return p
			}
		}
	}
	t.Fatal("no two consecutive free ports on 127.0.0.1")
	return 0
}

// freeAddr returns a 127.0.0.1 address with a port free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitReady polls http://addr/readyz until its status is 200 (ready) or 503
// (not ready) and, for 503, the body contains want; it fails the test after
// d.
func waitReady(t *testing.T, addr string, ready bool, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
			if ready && resp.StatusCode == http.StatusOK {
				return
			}
			if !ready && resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), want) {
				return
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not %v within %v; last answer: %s", map[bool]string{true: "ready", false: "503 with " + want}[ready], d, last)
		}
		time.Sleep(100 * time.Millisecond) // polling the endpoint with a deadline
	}
}
