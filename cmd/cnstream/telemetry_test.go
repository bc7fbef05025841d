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

// TestSecretsNeverShown: passwords and tokens from the configuration (Kafka
// SASL, NATS, OTLP headers) appear neither in `validate` output, nor in
// configuration errors, nor in what `run` logs at debug level while its
// sinks fail.
func TestSecretsNeverShown(t *testing.T) {
	const kafkaPw, natsPw, otlpToken = "kafka-hunter2-secret", "nats-hunter2-secret", "otlp-hunter2-secret"
	dir := t.TempDir()
	closedPort := freeAddr(t) // nothing listens there
	cfgText := func(extra string) string {
		return fmt.Sprintf(`source:
  process_events: false
  groups: [%d]
transform:
  enrich: false
sinks:
  - name: kafka
    type: kafka
    retry: {max_elapsed: 1s}
    kafka:
      brokers: [%q]
      sasl: {mechanism: SCRAM-SHA-512, username: cnstream, password: %s}
%s
telemetry:
  listen: off
  otlp:
    endpoint: http://%s
    interval: 100ms
    headers: {authorization: "Bearer %s"}
log:
  level: debug
  format: json
`, groupRun, closedPort, kafkaPw, extra, closedPort, otlpToken)
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	check := func(what, out string) {
		t.Helper()
		for _, secret := range []string{kafkaPw, natsPw, otlpToken} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows a secret (%s):\n%s", what, secret, out)
			}
		}
	}

	good := write("good.yaml", cfgText(""))
	out, err := exec.Command(cnstreamBin, "validate", good).CombinedOutput()
	if err != nil {
		t.Fatalf("validate: %v: %s", err, out)
	}
	check("validate", string(out))

	// A configuration error in the section that holds the password.
	bad := write("bad.yaml", strings.Replace(cfgText(""), "SCRAM-SHA-512", "SCRAM-SHA-1024", 1))
	out, err = exec.Command(cnstreamBin, "validate", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "sinks[0].kafka") {
		t.Errorf("validate with an unknown SASL mechanism: %v: %s", err, out)
	}
	check("validate error", string(out))

	// A NATS sink whose server is unreachable: run fails at start, naming
	// the server, not the password.
	withNATS := write("nats.yaml", cfgText(fmt.Sprintf(`  - name: nats
    type: nats
    nats: {url: "nats://%s", user: cnstream, password: %s, timeout: 500ms}`, closedPort, natsPw)))
	out, err = exec.Command(cnstreamBin, "run", "--config", withNATS).CombinedOutput()
	if err == nil {
		t.Errorf("run with an unreachable NATS server succeeded: %s", out)
	}
	check("run with an unreachable NATS server", string(out))

	// run with the Kafka sink failing every write, and OTLP export failing,
	// at debug level.
	runCmd, stderr := startRun(t, good)
	id := testID()
	if out, err := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupRun), "--id", id.String(), "--count", "100", "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("send: %v: %s", err, out)
	}
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), `"level":"WARN"`); {
		if time.Now().After(deadline) {
			t.Fatalf("no warning logged while the Kafka sink fails; stderr: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the log with a deadline
	}
	if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = runCmd.Wait() // undelivered events make it fail: expected
	check("run's log", stderr.String())
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
