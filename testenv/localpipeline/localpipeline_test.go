//go:build linux

package localpipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/need"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// What examples/container.yaml and deploy/compose/prometheus.yml name.
const (
	topic   = "cnstream-events"
	stream  = "CNSTREAM"
	promJob = "cnstream"
)

// event is what the test reads of an event v1 record (docs/EVENTS.md).
type event struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Exec *struct {
		PID int `json:"pid"`
	} `json:"exec"`
	Exit *struct {
		PID      int `json:"pid"`
		ExitCode int `json:"exit_code"`
	} `json:"exit"`
	Process *struct {
		PID     int      `json:"pid"`
		Cmdline []string `json:"cmdline"`
	} `json:"process"`
}

// child is a process the test spawns on the host and then looks for.
type child struct {
	argv  []string
	pid   int
	stdin io.WriteCloser
	cmd   *exec.Cmd
}

// seen collects what a read of a sink's data found: the distinct event ids
// and, per child pid, whether its exec and exit events were there (with the
// child's argv as the process' cmdline), and the last event of that pid
// with another cmdline (an earlier process with the same pid, or a wrong
// one).
type seen struct {
	ids   map[string]bool
	execs map[int]bool
	exits map[int]bool
	other map[int]string
}

func newSeen() *seen {
	return &seen{ids: map[string]bool{}, execs: map[int]bool{}, exits: map[int]bool{}, other: map[int]string{}}
}

func (s *seen) add(t *testing.T, data []byte, children []*child) {
	t.Helper()
	var e event
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatalf("not an event: %v: %.300s", err, data)
	}
	s.ids[e.ID] = true
	for _, c := range children {
		var pid int
		switch {
		case e.Kind == "exec" && e.Exec != nil:
			pid = e.Exec.PID
		case e.Kind == "exit" && e.Exit != nil:
			pid = e.Exit.PID
		}
		if pid != c.pid {
			continue
		}
		if e.Process == nil || !slices.Equal(e.Process.Cmdline, c.argv) {
			s.other[pid] = string(data)
			continue
		}
		if e.Kind == "exec" {
			s.execs[pid] = true
			continue
		}
		if e.Exit.ExitCode != 0 {
			t.Errorf("exit event of pid %d: exit_code %d, want 0: %s", pid, e.Exit.ExitCode, data)
		}
		s.exits[pid] = true
	}
}

// String describes what was found of the children.
func (s *seen) String() string {
	return fmt.Sprintf("%d events; of the children, exec events %v, exit events %v, events of their pids with another cmdline %v",
		len(s.ids), s.execs, s.exits, s.other)
}

func (s *seen) all(children []*child, exits bool) bool {
	for _, c := range children {
		if !s.execs[c.pid] || (exits && !s.exits[c.pid]) {
			return false
		}
	}
	return true
}

// freePorts returns n distinct free ports on 127.0.0.1, the first two of
// them consecutive (Kafka's client port and its controller's).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	free := func(p int) bool {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	anyPort := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	var ports []int
	for range 100 {
		p := anyPort()
		if p < 65534 && free(p+1) {
			ports = []int{p, p + 1}
			break
		}
	}
	if ports == nil {
		t.Fatal("no two consecutive free ports")
	}
	for len(ports) < n {
		if p := anyPort(); !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// lockedBuffer collects a child's output, read while it may still write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// script runs testenv/local-pipeline with args and returns its stdout and
// stderr, and its error.
func script(ctx context.Context, bin string, args ...string) (string, string, error) {
	var stdout, stderr lockedBuffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// pidFiles reads every *.pid file under dir: path to pid, and the command
// line the pid has now.
func pidFiles(t *testing.T, dir string) map[string]int {
	t.Helper()
	pids := map[string]int{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".pid") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		rel, _ := filepath.Rel(dir, path)
		pids[rel] = pid
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// cmdline is /proc/PID/cmdline with spaces, "" when the process is gone or
// a zombie (dead, not yet reaped).
func cmdline(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// promQuery asks Prometheus' HTTP API for an instant vector: each series'
// labels and value.
func promQuery(ctx context.Context, base, query string) ([]map[string]string, []float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, nil, fmt.Errorf("%s: %v", query, err)
	}
	if r.Status != "success" || r.Data.ResultType != "vector" {
		return nil, nil, fmt.Errorf("%s: status %q %s, result type %q", query, r.Status, r.Error, r.Data.ResultType)
	}
	var labels []map[string]string
	var values []float64
	for _, s := range r.Data.Result {
		v, ok := s.Value[1].(string)
		if !ok {
			return nil, nil, fmt.Errorf("%s: value %v", query, s.Value)
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", query, err)
		}
		labels = append(labels, s.Metric)
		values = append(values, f)
	}
	return labels, values, nil
}

// TestLocalPipeline: testenv/local-pipeline up on free ports (Prometheus
// scraping every second instead of the compose file's 5 s), processes
// spawned on the host found in Kafka and JetStream, Prometheus' scraped
// delivered counters at least the events read back, down, nothing left.
func TestLocalPipeline(t *testing.T) {
	need.Root(t, "cnstream run subscribes to the kernel's process events (CAP_NET_ADMIN)")
	prometheus := os.Getenv("CNSTREAM_PROMETHEUS")
	if prometheus == "" {
		prometheus = "/usr/bin/prometheus"
	}
	need.Tool(t, prometheus, "testenv/local-pipeline runs it to scrape cnstream")
	need.Tool(t, "java", "testenv/local-pipeline runs Kafka on it")
	need.Tool(t, "kcat", "the test reads the topic back with it")
	need.Tool(t, "curl", "testenv/local-pipeline checks readiness with it")
	need.Tool(t, "go", "cnstream is built from this tree")

	bin, err := filepath.Abs("../local-pipeline")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := freePorts(t, 6)
	kafkaPort, natsPort, monitorPort, telemetryPort, promPort := p[0], p[2], p[3], p[4], p[5]
	kafka := fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	promURL := fmt.Sprintf("http://127.0.0.1:%d", promPort)

	t0 := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			// Whatever happened, nothing is left running (the watcher of
			// --watch-pid would do it too, when the test binary exits).
			_, stderr, err := script(context.Background(), bin, "down", "--dir", dir)
			if err != nil {
				t.Errorf("down: %v\n%s", err, stderr)
			}
		}
	})
	stdout, stderr, err := script(ctx, bin, "up", "--dir", dir, "--watch-pid", strconv.Itoa(os.Getpid()),
		"--kafka-port", strconv.Itoa(kafkaPort), "--nats-port", strconv.Itoa(natsPort),
		"--nats-monitor-port", strconv.Itoa(monitorPort), "--telemetry-port", strconv.Itoa(telemetryPort),
		"--prometheus-port", strconv.Itoa(promPort), "--scrape-interval", "1s")
	if err != nil {
		t.Fatalf("up: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	tUp := time.Since(t0)
	t.Logf("up in %v:\n%s%s", tUp.Round(time.Millisecond), stderr, stdout)
	for _, want := range []string{kafka, fmt.Sprintf("nats://127.0.0.1:%d", natsPort),
		fmt.Sprintf("http://127.0.0.1:%d/metrics", telemetryPort), promURL} {
		if !strings.Contains(stdout, want) {
			t.Errorf("up's stdout does not show %s", want)
		}
	}

	// Every part has a pid file; they are checked again after down.
	pids := pidFiles(t, dir)
	cmdlines := map[string]string{}
	for _, f := range []string{"cnstream.pid", "prometheus.pid", "kafka/node-1/kafka.pid", "nats/nats.pid", "watch.pid"} {
		pid, ok := pids[f]
		if !ok {
			t.Fatalf("no %s in the state dir after up: %v", f, pids)
		}
		if cmdlines[f] = cmdline(pid); cmdlines[f] == "" {
			t.Fatalf("%s: pid %d is not running after up", f, pid)
		}
	}

	// status: every part up and ready.
	if out, _, err := script(ctx, bin, "status", "--dir", dir); err != nil {
		t.Errorf("status after up: %v\n%s", err, out)
	} else {
		for _, want := range []string{"answering: 1 brokers", "healthy, answers PING", "/readyz 200", "target cnstream up"} {
			if !strings.Contains(out, want) {
				t.Errorf("status does not say %q:\n%s", want, out)
			}
		}
	}
	// A second up over the running instance is refused, and leaves it alone.
	if _, stderr, err := script(ctx, bin, "up", "--dir", dir, "--kafka-port", strconv.Itoa(kafkaPort)); err == nil ||
		!strings.Contains(stderr, "already running") {
		t.Errorf("a second up over a running instance: %v, want a refusal:\n%s", err, stderr)
	}

	// Processes on the host: each waits on its stdin (a shell builtin, no
	// exec), so that cnstream reads its /proc entry while it lives, and exits
	// once its exec event is in Kafka.
	tag := make([]byte, 6)
	rand.Read(tag)
	var children []*child
	for i := range 5 {
		c := &child{argv: []string{"/bin/sh", "-c", "read -r _; exit 0", fmt.Sprintf("cnstream-local-test-%s-%d", hex.EncodeToString(tag), i)}}
		c.cmd = exec.Command(c.argv[0], c.argv[1:]...)
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c.pid = c.cmd.Process.Pid
		children = append(children, c)
	}
	t.Cleanup(func() {
		for _, c := range children {
			c.stdin.Close()
			c.cmd.Wait()
		}
	})

	// (a) Kafka, read with kcat from the start of the topic until the
	// children's exec events are there, then their exit events.
	tSpawn := time.Now()
	readKafka := func() *seen {
		t.Helper()
		out, err := exec.CommandContext(ctx, "kcat", "-C", "-b", kafka, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n").Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("kcat -C: %v\n%s", err, ee.Stderr)
			}
			t.Fatalf("kcat -C: %v", err)
		}
		s := newSeen()
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			if len(sc.Bytes()) > 0 {
				s.add(t, sc.Bytes(), children)
			}
		}
		return s
	}
	waitKafka := func(exits bool) *seen {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			s := readKafka()
			if s.all(children, exits) || t.Failed() {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 30 s, topic %s has %s (children's pids %v)", topic, s, pidsOf(children))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitKafka(false)
	tExec := time.Since(tSpawn)
	for _, c := range children {
		c.stdin.Close()
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("%q: %v", c.argv, err)
		}
	}
	kafkaSeen := waitKafka(true)
	tKafka := time.Since(tSpawn)
	t.Logf("Kafka: the exec events of the %d children after %v, their exit events after %v; %d events in topic %s",
		len(children), tExec.Round(time.Millisecond), tKafka.Round(time.Millisecond), len(kafkaSeen.ids), topic)

	// (a) JetStream: examples/container.yaml sends every event to the stream
	// CNSTREAM too.
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var natsSeen *seen
	var natsMsgs uint64
	for deadline := time.Now().Add(30 * time.Second); ; {
		natsSeen, natsMsgs = readStream(ctx, t, js, children)
		if natsSeen.all(children, true) || t.Failed() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, stream %s has %d messages: %s", stream, natsMsgs, natsSeen)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("JetStream: the children's exec and exit events among %d messages of stream %s", natsMsgs, stream)

	// (b) Prometheus has scraped cnstream: the job is up, and each sink's
	// delivered counter is at least what was read back from its backend
	// (distinct ids for Kafka, where at-least-once may repeat one; stored
	// messages for JetStream, which drops repeated ids).
	want := map[string]float64{"kafka": float64(len(kafkaSeen.ids)), "nats": float64(natsMsgs)}
	var got map[string]float64
	var lastErr error
	tProm := time.Now()
	for deadline := time.Now().Add(30 * time.Second); ; {
		got = map[string]float64{}
		lastErr = nil
		_, up, err := promQuery(ctx, promURL, fmt.Sprintf(`up{job=%q}`, promJob))
		if err == nil && (len(up) != 1 || up[0] != 1) {
			err = fmt.Errorf("up{job=%q} = %v, want one series of 1", promJob, up)
		}
		if err == nil {
			var labels []map[string]string
			var values []float64
			if labels, values, err = promQuery(ctx, promURL, "cnstream_sink_delivered_total"); err == nil {
				for i, l := range labels {
					if l["job"] != promJob || l["instance"] != fmt.Sprintf("127.0.0.1:%d", telemetryPort) {
						err = fmt.Errorf("series %v: not of job %s, instance 127.0.0.1:%d", l, promJob, telemetryPort)
					}
					got[l["sink_name"]] = values[i]
				}
			}
		}
		lastErr = err
		if err == nil && len(got) == len(want) && got["kafka"] >= want["kafka"] && got["nats"] >= want["nats"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, Prometheus has cnstream_sink_delivered_total %v, want at least %v (last error: %v)", got, want, lastErr)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("Prometheus: cnstream_sink_delivered_total %v >= events read back %v, after %v", got, want, time.Since(tProm).Round(time.Millisecond))

	// down: every process of the state dir is gone, and the dir too.
	tDown := time.Now()
	_, stderr, err = script(ctx, bin, "down", "--dir", dir)
	downDone = true
	if err != nil {
		t.Fatalf("down: %v\n%s", err, stderr)
	}
	t.Logf("down in %v:\n%s", time.Since(tDown).Round(time.Millisecond), stderr)
	// The watcher's process group ends with a signal: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); ; {
		var left []string
		for f, pid := range pids {
			if c := cmdline(pid); c != "" && c == cmdlines[f] {
				left = append(left, fmt.Sprintf("%s: pid %d (%s)", f, pid, c))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running after down: %s", strings.Join(left, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the state dir after down: %v, want it removed", err)
	}
	for _, port := range p {
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
			t.Errorf("port %d still taken after down: %v", port, err)
		} else {
			l.Close()
		}
	}
	t.Logf("in all %v", time.Since(t0).Round(time.Millisecond))
}

func pidsOf(children []*child) []int {
	var pids []int
	for _, c := range children {
		pids = append(pids, c.pid)
	}
	return pids
}

// readStream reads the whole stream CNSTREAM with an ordered consumer.
func readStream(ctx context.Context, t *testing.T, js jetstream.JetStream, children []*child) (*seen, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s := newSeen()
	for read := uint64(0); read < info.State.Msgs; {
		batch, err := c.Fetch(int(min(1000, info.State.Msgs-read)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			read++
			s.add(t, m.Data(), children)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("reading stream %s: %v", stream, err)
		}
		if n == 0 {
			t.Fatalf("reading stream %s: %d of %d messages, then nothing", stream, read, info.State.Msgs)
		}
	}
	return s, info.State.Msgs
}
