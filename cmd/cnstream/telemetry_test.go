//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// scrape reads http://addr/metrics into a map from the series as printed
// ("name{labels}") to its value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", addr, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: line %q: %v", addr, line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRunMetricsEndpoint: after a known load from `cnstream send` through
// `cnstream run`, a real scrape of /metrics counts it exactly, /healthz and
// /readyz answer, and the endpoint is gone after the shutdown.
func TestRunMetricsEndpoint(t *testing.T) {
	const count = 20000
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "metrics.yaml")
	yaml := fmt.Sprintf(`source:
  process_events: false
  groups: [%d]
transform:
  enrich: false
sinks:
  - name: files
    type: file
    batch: {events: 1000}
    file: {dir: %s, sync: never}
telemetry:
  listen: %s
`, groupRun, filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	runCmd, stderr := startRun(t, cfg)
	id := testID()
	if out, err := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupRun), "--id", id.String(),
		"--count", fmt.Sprint(count), "--payload-size", "40", "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("send: %v: %s", err, out)
	}
	const sk = `{sink_name="files",sink_type="file"}`
	var m map[string]float64
	for deadline := time.Now().Add(20 * time.Second); ; {
		m = scrape(t, addr)
		if m["cnstream_sink_delivered_total"+sk] >= count {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivered %v of %d after 20 s; stderr: %s", m["cnstream_sink_delivered_total"+sk], count, stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the endpoint with a deadline
	}
	for name, want := range map[string]float64{
		"cnstream_source_datagrams_total":     count,
		"cnstream_source_bytes_total":         count * (16 + 20 + 40),
		"cnstream_source_kernel_drops_total":  0,
		"cnstream_transform_messages_total":   count,
		"cnstream_transform_events_total":     count,
		"cnstream_transform_gaps_total":       0,
		"cnstream_transform_missing_total":    0,
		"cnstream_sink_delivered_total" + sk:  count,
		"cnstream_sink_failed_total" + sk:     0,
		"cnstream_sink_dropped_total" + sk:    0,
		"cnstream_sink_queue_events" + sk:     0,
		"cnstream_sink_queue_max_events" + sk: 65536,
		"cnstream_sink_queue_max_bytes" + sk:  64 << 20,
		"cnstream_source_subscribed":          0,
		"cnstream_source_queue_limit_bytes":   128 << 20, // 64 MiB asked, doubled by the kernel
		`cnstream_sink_write_duration_seconds_count{outcome="retriable",sink_name="files",sink_type="file"}`: 0,
	} {
		if got, ok := m[name]; (!ok && want != 0) || got != want {
			t.Errorf("%s = %v (present: %v), want %v", name, got, ok, want)
		}
	}
	batches := m["cnstream_sink_batches_total"+sk]
	writes := m[`cnstream_sink_write_duration_seconds_count{outcome="ok",sink_name="files",sink_type="file"}`]
	samples := m["cnstream_event_latency_seconds_count"+sk]
	if batches < count/1000 || writes != batches || samples < batches || samples > 32*batches {
		t.Errorf("%v batches, %v ok writes, %v latency samples: want a write per batch and 1..32 samples each", batches, writes, samples)
	}
	if reads := m["cnstream_source_reads_total"]; reads < 1 || reads > count {
		t.Errorf("%v recvmmsg calls for %d datagrams", reads, count)
	}
	if m["process_resident_memory_bytes"] == 0 || m["go_goroutines"] == 0 {
		t.Errorf("no process or Go runtime metrics (process_resident_memory_bytes %v, go_goroutines %v)", m["process_resident_memory_bytes"], m["go_goroutines"])
	}
	for path, want := range map[string]string{"/healthz": `{"status":"alive"}`, "/readyz": `{"ready":true,"checks":[{"name":"sink files","ok":true}]}`} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != want {
			t.Errorf("%s: %s %s, want 200 %s", path, resp.Status, body, want)
		}
	}
	if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := runCmd.Wait(); err != nil {
		t.Fatalf("run after SIGINT: %v; stderr: %s", err, stderr.String())
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Errorf("the endpoint still answers after run exited")
	}
}

// otlpReceiver is an OTLP/HTTP endpoint for the test (what an OpenTelemetry
// collector offers): it keeps the metric names and span names it receives.
type otlpReceiver struct {
	mu      sync.Mutex
	metrics map[string]bool
	spans   map[string]int
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch req.URL.Path {
	case "/v1/metrics":
		var m colmetrics.ExportMetricsServiceRequest
		if err := proto.Unmarshal(body, &m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rm := range m.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, mt := range sm.Metrics {
					r.metrics[mt.Name] = true
				}
			}
		}
		out, _ := proto.Marshal(&colmetrics.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	case "/v1/traces":
		var tr coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &tr); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rs := range tr.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					r.spans[sp.Name]++
				}
			}
		}
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	default:
		http.NotFound(w, req)
	}
}

// TestOTLPExport: with telemetry.otlp.endpoint, `cnstream run` pushes its
// metrics and a span per sink batch over OTLP/HTTP.
func TestOTLPExport(t *testing.T) {
	rcv := &otlpReceiver{metrics: map[string]bool{}, spans: map[string]int{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "otlp.yaml")
	yaml := fmt.Sprintf(`source:
  process_events: false
  groups: [%d]
transform:
  enrich: false
sinks:
  - name: files
    type: file
    file: {dir: %s, sync: never}
telemetry:
  listen: off
  otlp: {endpoint: %s, interval: 200ms}
`, groupRun, filepath.Join(dir, "data"), srv.URL)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	runCmd, stderr := startRun(t, cfg)
	id := testID()
	if out, err := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupRun), "--id", id.String(), "--count", "1000", "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("send: %v: %s", err, out)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		rcv.mu.Lock()
		done := rcv.metrics["cnstream.sink.delivered"] && rcv.metrics["cnstream.event.latency"] && rcv.metrics["cnstream.source.datagrams"]
		rcv.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics received: %v; stderr: %s", rcv.metrics, stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the receiver with a deadline
	}
	if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := runCmd.Wait(); err != nil {
		t.Fatalf("run after SIGINT: %v; stderr: %s", err, stderr.String())
	}
	// The tracer provider is flushed at shutdown.
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.spans["cnstream.sink.write"] == 0 {
		t.Errorf("no cnstream.sink.write span received: %v", rcv.spans)
	}
}

// TestRunTelemetryPort: a second `cnstream run` on the telemetry port of a
// running one fails at once, before it subscribes, naming the address, the
// key telemetry.listen and the ways out; with telemetry.listen 127.0.0.1:0
// run picks a free port and says which.
func TestRunTelemetryPort(t *testing.T) {
	dir := t.TempDir()
	conf := func(name, listen string, pprof ...bool) string {
		p := filepath.Join(dir, name)
		text := fmt.Sprintf("source:\n  process_events: false\n  groups: [%d]\ntransform:\n  enrich: false\nsinks:\n  - {name: files, type: file, file: {dir: %s, sync: never}}\ntelemetry:\n  listen: %s\n  pprof: %v\n",
			groupRun, filepath.Join(dir, name+".data"), listen, len(pprof) > 0 && pprof[0])
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	addr := freeAddr(t)
	first, stderr := startRun(t, conf("first.yaml", addr))

	start := time.Now()
	out, err := exec.Command(cnstreamBin, "run", "--config", conf("second.yaml", addr)).CombinedOutput()
	if err == nil {
		t.Fatalf("second run on %s succeeded: %s", addr, out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second run failed after %v, want at once", d)
	}
	for _, want := range []string{addr, "telemetry.listen", "127.0.0.1:0", "off", "address already in use"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("second run's error does not name %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "listening to") {
		t.Errorf("second run subscribed before failing:\n%s", out)
	}

	// Port 0: a free port, said in the start line and the log.
	anyPort, anyStderr := startRun(t, conf("any.yaml", "127.0.0.1:0", true))
	m := regexp.MustCompile(`telemetry on http://(127\.0\.0\.1:[0-9]+)`).FindStringSubmatch(anyStderr.String())
	if m == nil || m[1] == "127.0.0.1:0" || m[1] == addr {
		t.Fatalf("run with telemetry.listen 127.0.0.1:0 does not say the port it bound:\n%s", anyStderr.String())
	}
	if !strings.Contains(anyStderr.String(), "addr="+m[1]) {
		t.Errorf("no log of the bound address %s:\n%s", m[1], anyStderr.String())
	}
	resp, err := http.Get("http://" + m[1] + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz on the bound port: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz on %s: %s", m[1], resp.Status)
	}
	// telemetry.pprof: Go's profiles on the endpoint that asked for them
	// only.
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + m[1] + "/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("pprof: true: /debug/pprof/heap: %d %.200s", code, body)
	}
	if code, _ := get("http://" + addr + "/debug/pprof/heap?debug=1"); code != http.StatusNotFound {
		t.Errorf("pprof off: /debug/pprof/heap answered %d, want 404", code)
	}
	for _, c := range []*exec.Cmd{first, anyPort} {
		if err := c.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(); err != nil {
			t.Errorf("run after SIGINT: %v; first: %s; any: %s", err, stderr.String(), anyStderr.String())
		}
	}
}
