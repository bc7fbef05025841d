//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cnstream/cnstream/telemetry"
	"github.com/cnstream/cnstream/telemetry/promtext"
	"github.com/cnstream/cnstream/testenv/need"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The fixtures in testdata/top are scrapes of a real `cnstream run` (groups
// 10 with userspace_groups, cnstream send at 20k messages/s):
//
//	two-sinks-{1,2}.prom  files, and a kafka sink with a long name whose
//	                      broker (127.0.0.1:1) refuses connections and whose
//	                      20000-event drop_oldest queue is full; 1.013 s apart
//	two-sinks-idle.prom   the same configuration before any event (an
//	                      earlier process: no histograms yet)
//	enrich-{1,2}.prom     process events, enriched, and group 10, to files
//	*-readyz.json         /readyz at the second scrape
//
// The frames rendered from them are golden files, rewritten by
// go test ./cmd/cnstream -run TestTopRender -update-top.
var updateTop = flag.Bool("update-top", false, "rewrite testdata/top/*.golden")

// groupTop is the connector group of the top tests. Groups 1..10 are the
// kernel's, so the run accepts userspace senders on it explicitly
// (source.userspace_groups); otherwise every datagram is counted as forged.
const groupTop = 10

// Scrape times of the fixtures.
var (
	twoSinks1 = time.Unix(1795760623, 73054631)
	twoSinks2 = time.Unix(1795760624, 86052573)
	enrich1   = time.Unix(1795760641, 0)
	enrich2   = time.Unix(1795760642, 0)
)

func loadSnapshot(t *testing.T, at time.Time, prom, readyz string) *topSnapshot {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata/top", prom))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := promtext.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", prom, err)
	}
	s := &topSnapshot{At: at, Metrics: m, ReadyErr: errors.New("/readyz: 404 Not Found")}
	if readyz != "" {
		b, err := os.ReadFile(filepath.Join("testdata/top", readyz))
		if err != nil {
			t.Fatal(err)
		}
		s.Ready, s.ReadyErr = &telemetry.Readiness{}, nil
		if err := json.Unmarshal(b, s.Ready); err != nil {
			t.Fatalf("%s: %v", readyz, err)
		}
	}
	return s
}

func TestTopParseMetrics(t *testing.T) {
	s := loadSnapshot(t, twoSinks2, "two-sinks-2.prom", "")
	m := s.Metrics
	files := []string{"sink_name", "files", "sink_type", "file"}
	kafka := []string{"sink_name", "kafka-eu-west-1-audit-cluster-primary", "sink_type", "kafka"}
	for _, c := range []struct {
		name  string
		match []string
		want  float64
	}{
		{"cnstream_source_datagrams_total", nil, 70299},
		{"cnstream_source_queue_limit_bytes", nil, 134217728},
		{"cnstream_sink_delivered_total", files, 70200},
		{"cnstream_sink_delivered_total", nil, 70200}, // summed over sinks
		{"cnstream_sink_queue_events", kafka, 12545},
		{"process_start_time_seconds", nil, 1.79576061904e+09},
	} {
		if got, ok := m.Value(c.name, c.match...); !ok || got != c.want {
			t.Errorf("%s%v = %v, %v; want %v", c.name, c.match, got, ok, c.want)
		}
	}
	if _, ok := m.Value("cnstream_enrich_processes"); ok {
		t.Error("cnstream_enrich_processes found in a run without enrichment")
	}
	want := []topSink{{"files", "file"}, {"kafka-eu-west-1-audit-cluster-primary", "kafka"}}
	if diff := cmp.Diff(want, topSinks(m), cmp.AllowUnexported(topSink{})); diff != "" {
		t.Errorf("sinks (-want +got):\n%s", diff)
	}
	// A histogram: 18 bounds and +Inf, cumulative; outcomes are summed.
	h := m.Histogram("cnstream_event_latency_seconds", files...)
	if len(h) != 19 || h[0].LE != 0.0001 || !math.IsInf(h[18].LE, 1) || h[18].Count != 18720 {
		t.Errorf("event latency of files: %v", h)
	}
	w := m.Histogram("cnstream_sink_write_duration_seconds", kafka...)
	if len(w) != 19 || w[18].Count != 15 {
		t.Errorf("write duration of kafka (outcome retriable): %v", w)
	}
	if _, err := promtext.Parse(strings.NewReader("cnstream_x{a=\"b\" 1\n")); err == nil {
		t.Error("parse of a broken line: no error")
	}
}

func TestTopFormat(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{human(0), "0"}, {human(7), "7"}, {human(6.94), "6.9"}, {human(9.96), "10"},
		{human(9999), "9999"}, {human(10000), "10.0k"}, {human(12345), "12.3k"},
		{human(99949), "99.9k"}, {human(99960), "100k"}, {human(123456), "123k"},
		{human(999600), "1.0M"}, {human(1.234e6), "1.2M"}, {human(4.5e9), "4.5G"},
		{human(math.NaN()), "-"}, {human(-12345), "-12.3k"},
		{humanBytes(512), "512B"}, {humanBytes(1536), "1.5KiB"}, {humanBytes(1 << 20), "1MiB"},
		{humanBytes(1.02408192e+08), "97.7MiB"}, {humanBytes(1 << 27), "128MiB"}, {humanBytes(3 << 30), "3GiB"},
		{fmtSeconds(96e-6), "96µs"}, {fmtSeconds(0.0042123), "4.21ms"}, {fmtSeconds(0.0421), "42.1ms"},
		{fmtSeconds(0.421), "421ms"}, {fmtSeconds(1.234), "1.23s"}, {fmtSeconds(60), "60.0s"},
		{fmtSeconds(999.6e-6), "1.00ms"}, {fmtSeconds(math.NaN()), "-"},
		{fmtPercent(0), "0.0%"}, {fmtPercent(2.54), "2.5%"}, {fmtPercent(42.4), "42%"}, {fmtPercent(100), "100%"},
		{fmtUptime(42 * time.Second), "42s"}, {fmtUptime(192 * time.Second), "3m12s"},
		{fmtUptime(2*time.Hour + 5*time.Minute), "2h05m"}, {fmtUptime(76 * time.Hour), "3d04h"},
		{truncate("kafka-eu-west-1-audit", 15), "kafka-eu-west-…"}, {truncate("files", 15), "files"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	// Widths the table counts on.
	for _, v := range []float64{0, 1, 9.99, 9999, 99999, 999999, 1e7, 1e10, 1e13} {
		if s := human(v); len(s) > 5 {
			t.Errorf("human(%v) = %q: more than 5 characters", v, s)
		}
	}
	for _, v := range []float64{1e-7, 9.9999e-4, 0.0099999, 0.099999, 0.99999, 9.9999, 60} {
		if s := fmtSeconds(v); utf8.RuneCountInString(s) > 6 {
			t.Errorf("fmtSeconds(%v) = %q: more than 6 characters", v, s)
		}
	}
}

func TestTopBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:9464":          "http://127.0.0.1:9464",
		"127.0.0.1:9464":                 "http://127.0.0.1:9464",
		"http://127.0.0.1:9464/metrics":  "http://127.0.0.1:9464",
		"https://host:1/prefix/metrics/": "https://host:1/prefix",
		"ftp://host:1":                   "",
		"http://":                        "",
	} {
		got, err := topBaseURL(in)
		if want == "" && err == nil || want != "" && got != want {
			t.Errorf("topBaseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, args := range [][]string{{"top", "--interval", "0s"}, {"top", "--url", "ftp://x:1"}, {"top", "extra"}} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 || stderr.Len() == 0 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, stderr.String())
		}
	}
}

// sinkRow returns the fields of the table row of sink name in a frame.
func sinkRow(lines []string, name string) []string {
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 11 && f[0] == name {
			return f
		}
	}
	return nil
}

func lineWith(lines []string, s string) string {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// checkFrame fails unless every line of a frame fits 80 columns (ANSI
// sequences take none).
func checkFrame(t *testing.T, lines []string) {
	t.Helper()
	ansi := regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]`)
	for i, l := range lines {
		if n := utf8.RuneCountInString(ansi.ReplaceAllString(l, "")); n > topWidth {
			t.Errorf("line %d is %d columns: %q", i, n, l)
		}
	}
}

func TestTopRender(t *testing.T) {
	ts1 := loadSnapshot(t, twoSinks1, "two-sinks-1.prom", "")
	ts2 := loadSnapshot(t, twoSinks2, "two-sinks-2.prom", "two-sinks-readyz.json")
	idle := loadSnapshot(t, twoSinks1, "two-sinks-idle.prom", "")
	en1 := loadSnapshot(t, enrich1, "enrich-1.prom", "")
	en2 := loadSnapshot(t, enrich2, "enrich-2.prom", "enrich-readyz.json")
	url := "http://127.0.0.1:19464"
	down := &topSnapshot{At: twoSinks2, Err: errors.New(`unreachable: Get "http://127.0.0.1:19464/metrics": dial tcp 127.0.0.1:19464: connect: connection refused`)}
	for _, c := range []struct {
		name string
		v    topView
	}{
		{"two-sinks", topView{URL: url, Prev: ts1, Cur: ts2}},
		{"two-sinks-first", topView{URL: url, Cur: ts2}},
		{"two-sinks-restarted", topView{URL: url, Prev: idle, Cur: ts2}},
		{"two-sinks-short", topView{URL: url, Prev: ts1, Cur: ts2, Height: 10}},
		{"two-sinks-narrow", topView{URL: url, Prev: ts1, Cur: ts2, Width: 60}},
		{"two-sinks-bold", topView{URL: url, Prev: ts1, Cur: ts2, Bold: true}},
		{"enrich", topView{URL: url, Prev: en1, Cur: en2}},
		{"unreachable", topView{URL: url, Interval: time.Second, Prev: ts2, Cur: down}},
	} {
		t.Run(c.name, func(t *testing.T) {
			lines := renderTop(c.v)
			checkFrame(t, lines)
			if c.v.Height > 0 && len(lines) > c.v.Height {
				t.Errorf("%d lines for a %d-line terminal", len(lines), c.v.Height)
			}
			for i, l := range lines {
				if c.v.Width > 0 && utf8.RuneCountInString(l) > c.v.Width {
					t.Errorf("line %d wider than %d: %q", i, c.v.Width, l)
				}
			}
			got := strings.Join(lines, "\n") + "\n"
			golden := filepath.Join("testdata/top", c.name+".golden")
			if *updateTop {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./cmd/cnstream -run TestTopRender -update-top writes it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("frame (-want +got):\n%s", diff)
			}
		})
	}

	// The numbers, computed from the fixtures here rather than trusted to
	// the golden files.
	lines := renderTop(topView{URL: url, Prev: ts1, Cur: ts2})
	dt := twoSinks2.Sub(twoSinks1).Seconds()
	files := sinkRow(lines, "files")
	wantRate := human((70200 - 49986) / dt) // cnstream_sink_delivered_total of files
	if files == nil || files[1] != "file" || files[2] != wantRate || files[2] != "20.0k" {
		t.Errorf("files row %q: want type file, %s delivered/s", files, wantRate)
	}
	kafka := sinkRow(lines, "kafka-eu-west-…")
	if kafka == nil {
		t.Fatalf("no kafka row in %q", lines)
	}
	// Queue 12545 of 20000 events (3.7 MB of 64 MiB), dropped 41242,
	// failed 8322, retries 15, nothing undelivered.
	if diff := cmp.Diff([]string{"kafka-eu-west-…", "kafka", "0", "63%", "41.2k", "8322", "15", "0"}, kafka[:8]); diff != "" {
		t.Errorf("kafka row (-want +got):\n%s", diff)
	}
	// Write duration of kafka in the interval: its 4 failed writes between
	// the scrapes; no event latency, nothing was delivered.
	kafkaLabels := []string{"sink_name", "kafka-eu-west-1-audit-cluster-primary"}
	wd := promtext.Delta(ts1.Metrics.Histogram("cnstream_sink_write_duration_seconds", kafkaLabels...),
		ts2.Metrics.Histogram("cnstream_sink_write_duration_seconds", kafkaLabels...))
	if wd[len(wd)-1].Count != 4 || kafka[8] != fmtSeconds(promtext.Quantile(0.5, wd)) || kafka[9] != fmtSeconds(promtext.Quantile(0.99, wd)) || kafka[10] != "-" {
		t.Errorf("kafka row %q: want write p50 %s, p99 %s of the 4 writes in the interval, no event latency", kafka,
			fmtSeconds(promtext.Quantile(0.5, wd)), fmtSeconds(promtext.Quantile(0.99, wd)))
	}
	if l := lineWith(lines, "datagrams/s"); !strings.Contains(l, human((70299-50040)/dt)+" datagrams/s") ||
		!strings.Contains(l, human((70299.0-50040)/(6179-4466))+" datagrams/read") {
		t.Errorf("source line %q", l)
	}
	if l := lineWith(lines, "kernel drops"); !strings.Contains(l, "kernel drops 0 (0/s)") || !strings.Contains(l, "ENOBUFS 0") {
		t.Errorf("drops line %q", l)
	}
	if l := lines[0]; !strings.Contains(l, "cpu "+fmt.Sprintf("%.1f%%", (0.59-0.41)/dt*100)) || !strings.Contains(l, "up 5s") {
		t.Errorf("header %q: want cpu from process_cpu_seconds_total, uptime 5s", l)
	}
	if l := lineWith(lines, "NOT READY"); !strings.Contains(l, "sink kafka-eu-west-1-audit-cluster-primary") {
		t.Errorf("readiness line %q: want the failing sink named", l)
	}
	if l := lineWith(lines, "connection refused"); l == "" {
		t.Errorf("frame %q: want the reason of the failing check", lines)
	}

	lines = renderTop(topView{URL: url, Prev: en1, Cur: en2})
	if l := lineWith(lines, "processes"); !strings.Contains(l, "processes 230") {
		t.Errorf("transform line %q: want the process table size", l)
	}
	if l := lineWith(lines, "enrich misses"); !strings.Contains(l, "enrich misses 303") {
		t.Errorf("transform lines %q: want enrichment misses", lines)
	}
	if lines[1] != "ready" {
		t.Errorf("readiness line %q, want ready", lines[1])
	}
	files = sinkRow(lines, "files")
	// The event latency p99 of files between the scrapes, by hand from
	// the bucket deltas of enrich-{1,2}.prom.
	if files == nil || files[10] != fmtSeconds(promtext.Quantile(0.99, promtext.Delta(
		en1.Metrics.Histogram("cnstream_event_latency_seconds", "sink_name", "files"),
		en2.Metrics.Histogram("cnstream_event_latency_seconds", "sink_name", "files")))) || files[10] == "-" {
		t.Errorf("files row %q: event latency p99", files)
	}
}

// parseHuman reads a number human wrote.
func parseHuman(s string) (float64, error) {
	mult := 1.0
	for suffix, m := range map[string]float64{"k": 1e3, "M": 1e6, "G": 1e9} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	return v * mult, err
}

// startTopRun starts `cnstream run` on groupTop to files, its telemetry
// endpoint on a port of the kernel's choosing, and returns the endpoint's
// URL.
func startTopRun(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "top.yaml")
	yaml := fmt.Sprintf(`source: {process_events: false, groups: [%d], userspace_groups: [%d]}
transform: {enrich: false}
sinks:
  - name: files
    type: file
    file: {dir: %s, sync: never, encoding: msgpack}
telemetry: {listen: "127.0.0.1:0"}
`, groupTop, groupTop, filepath.Join(dir, "data"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr := startRun(t, cfg)
	m := regexp.MustCompile(`msg="telemetry endpoint" addr=(\S+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no telemetry endpoint address in the run's log: %s", stderr.String())
	}
	return "http://" + m[1]
}

// delivered is cnstream_sink_delivered_total of the files sink now.
func delivered(t *testing.T, url string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m, err := promtext.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := m.Value(promSinkDelivered, promSinkName, "files")
	return v
}

// startSend sends count messages at rate on groupTop in the background.
func startSend(t *testing.T, count, rate int) *exec.Cmd {
	t.Helper()
	send := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupTop), "--id", testID().String(),
		"--count", fmt.Sprint(count), "--rate", fmt.Sprint(rate), "--payload-size", "40", "--quiet")
	send.Stderr = os.Stderr
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = send.Process.Kill(); _ = send.Wait() })
	return send
}

// TestTopOnce: `cnstream top --once` against a real run, before and while
// `cnstream send` delivers 20000 messages to its file sink.
func TestTopOnce(t *testing.T) {
	url := startTopRun(t)
	top := func() []string {
		t.Helper()
		out, err := exec.Command(cnstreamBin, "top", "--once", "--url", url, "--interval", "500ms").CombinedOutput()
		if err != nil {
			t.Fatalf("top --once: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		checkFrame(t, lines)
		if bytes.Contains(out, []byte("\x1b")) {
			t.Errorf("top --once to a pipe wrote ANSI sequences: %q", out)
		}
		return lines
	}
	lines := top()
	if len(lines) < 2 || lines[1] != "ready" || !strings.HasPrefix(lines[0], "cnstream top  "+url+"  up ") {
		t.Errorf("idle frame: want the url, uptime and ready:\n%s", strings.Join(lines, "\n"))
	}
	if row := sinkRow(lines, "files"); row == nil || row[2] != "0" {
		t.Errorf("idle frame: want the files sink delivering 0/s:\n%s", strings.Join(lines, "\n"))
	}

	const count, rate = 20000, 5000
	send := startSend(t, count, rate)
	deadline := time.Now().Add(10 * time.Second)
	for delivered(t, url) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("nothing delivered 10 s after send started")
		}
		time.Sleep(20 * time.Millisecond) // polling /metrics with a deadline
	}
	lines = top()
	frame := strings.Join(lines, "\n")
	row := sinkRow(lines, "files")
	if row == nil {
		t.Fatalf("no files row:\n%s", frame)
	}
	if r, err := parseHuman(row[2]); err != nil || r < rate/5 || r > rate*3 {
		t.Errorf("files delivered %q/s, want about %d/s:\n%s", row[2], rate, frame)
	}
	if !strings.Contains(frame, "kernel drops 0 (0/s)") || lines[1] != "ready" {
		t.Errorf("want ready and 0 kernel drops:\n%s", frame)
	}
	if err := send.Wait(); err != nil {
		t.Fatalf("send: %v", err)
	}
	for delivered(t, url) != count {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("%v of %d delivered", delivered(t, url), count)
		}
		time.Sleep(20 * time.Millisecond) // polling /metrics with a deadline
	}
}

// TestTopMetricNames: every family top reads, named from pipeline's
// constants by promName, is in a real scrape of `cnstream run` (process
// events, enriched, and messages on groupTop, to files) with its kind, and
// the per-sink ones carry the sink labels.
func TestTopMetricNames(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "names.yaml")
	yaml := fmt.Sprintf(`source: {process_events: true, groups: [%d], userspace_groups: [%d]}
transform: {enrich: true}
sinks:
  - name: files
    type: file
    file: {dir: %s, sync: never, encoding: msgpack}
telemetry: {listen: "127.0.0.1:0"}
`, groupTop, groupTop, filepath.Join(dir, "data"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr := startRun(t, cfg)
	addr := regexp.MustCompile(`msg="telemetry endpoint" addr=(\S+)`).FindStringSubmatch(stderr.String())
	if addr == nil {
		t.Fatalf("no telemetry endpoint address in the run's log: %s", stderr.String())
	}
	url := "http://" + addr[1]
	// Events make the histograms appear.
	if err := startSend(t, 100, 10000).Wait(); err != nil {
		t.Fatalf("send: %v", err)
	}
	scrape := func() map[string]*dto.MetricFamily {
		t.Helper()
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return fams
	}
	// Wait for the 100 messages by the metric's literal name: a wrong
	// promName must not stall the test, it must fail the checks below.
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		fams = scrape()
		var n float64
		for _, mt := range fams["cnstream_sink_delivered_total"].GetMetric() {
			n += mt.GetCounter().GetValue()
		}
		if n >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v of 100 delivered after 10 s", n)
		}
		time.Sleep(20 * time.Millisecond) // polling /metrics with a deadline
	}
	for _, c := range []struct {
		name string
		typ  dto.MetricType
	}{
		{promSourceDatagrams, dto.MetricType_COUNTER},
		{promSourceReads, dto.MetricType_COUNTER},
		{promSourceKernelDrops, dto.MetricType_COUNTER},
		{promSourceENOBUFS, dto.MetricType_COUNTER},
		{promSourceForged, dto.MetricType_COUNTER},
		{promSourceTruncated, dto.MetricType_COUNTER},
		{promSourceQueueUsage, dto.MetricType_GAUGE},
		{promSourceQueueLimit, dto.MetricType_GAUGE},
		{promTransformEvents, dto.MetricType_COUNTER},
		{promTransformGaps, dto.MetricType_COUNTER},
		{promTransformMissing, dto.MetricType_COUNTER},
		{promTransformMalformed, dto.MetricType_COUNTER},
		{promTransformFiltered, dto.MetricType_COUNTER},
		{promEnrichProcesses, dto.MetricType_GAUGE},
		{promEnrichMisses, dto.MetricType_COUNTER},
		{promSinkQueueEvents, dto.MetricType_GAUGE},
		{promSinkQueueMaxEvents, dto.MetricType_GAUGE},
		{promSinkQueueBytes, dto.MetricType_GAUGE},
		{promSinkQueueMaxBytes, dto.MetricType_GAUGE},
		{promSinkDelivered, dto.MetricType_COUNTER},
		{promSinkDropped, dto.MetricType_COUNTER},
		{promSinkFailed, dto.MetricType_COUNTER},
		{promSinkRetries, dto.MetricType_COUNTER},
		{promSinkUndelivered, dto.MetricType_COUNTER},
		{promSinkWriteDuration, dto.MetricType_HISTOGRAM},
		{promEventLatency, dto.MetricType_HISTOGRAM},
	} {
		f, ok := fams[c.name]
		if !ok {
			t.Errorf("%s: not in the scrape", c.name)
			continue
		}
		if f.GetType() != c.typ {
			t.Errorf("%s: type %v, want %v", c.name, f.GetType(), c.typ)
		}
	}
	for _, name := range promSinkFamilies {
		for _, mt := range fams[name].GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels[promSinkName] != "files" || labels[promSinkType] != "file" {
				t.Errorf("%s: labels %v, want %s=files and %s=file", name, labels, promSinkName, promSinkType)
			}
		}
	}
}

// TestTopUnreachable: --once exits 1 naming the endpoint; the live view
// shows the error and keeps retrying until SIGTERM, which ends it with
// status 0.
func TestTopUnreachable(t *testing.T) {
	url := "http://127.0.0.1:1"
	out, err := exec.Command(cnstreamBin, "top", "--once", "--url", url).CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 ||
		!strings.HasPrefix(string(out), `cnstream top: unreachable: Get "http://127.0.0.1:1/metrics"`) {
		t.Errorf("top --once on a closed port: %v, %q; want exit 1 and the error", err, out)
	}

	live := exec.Command(cnstreamBin, "top", "--url", url, "--interval", "50ms")
	var stdout syncBuffer
	live.Stdout = &stdout
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer live.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(stdout.String(), "unreachable: ") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("want 3 frames saying unreachable within 10 s, got %q", stdout.String())
		}
		time.Sleep(10 * time.Millisecond) // polling its output with a deadline
	}
	if err := live.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := live.Wait(); err != nil {
		t.Errorf("top after SIGTERM: %v", err)
	}
	if !strings.Contains(stdout.String(), ansiHome+ansiClear+"cnstream top  "+url+"\r\n") {
		t.Errorf("live frames %q: want clear-screen and home before each", stdout.String())
	}
}

// TestTopTmux drives the live view in a real 80x24 terminal (tmux): the
// frame fits, shows the run, and q (or Ctrl-C, a byte in raw mode) ends top
// with the terminal restored: the shell's next commands run, and stty finds
// canonical mode back.
func TestTopTmux(t *testing.T) {
	need.Tool(t, "tmux", "the live view is tested in a real terminal")
	url := startTopRun(t)
	send := startSend(t, 1000000, 10000) // load for the whole test
	for _, key := range []string{"q", "C-c"} {
		t.Run(key, func(t *testing.T) { tmuxTop(t, url, key) })
	}
	_ = send.Process.Kill()
}

func tmuxTop(t *testing.T, url, key string) {
	socket := fmt.Sprintf("cnstream-top-test-%d-%s", os.Getpid(), key)
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-L", socket, "-f", "/dev/null"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %q: %v: %s", args, err, out)
		}
		return string(out)
	}
	shell := cnstreamBin + " top --url " + url + " --interval 200ms; st=$?; " +
		"if stty -a | grep -q -- -icanon; then echo TTY-RAW; else echo TTY-SANE; fi; echo TOP-EXITED $st; sleep 5"
	tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", "top", shell)
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", socket, "kill-server").Run() })
	if size := strings.TrimSpace(tmux("display", "-p", "-t", "top", "#{pane_width}x#{pane_height}")); size != "80x24" {
		t.Fatalf("pane is %s, want 80x24", size)
	}
	pane := func() []string {
		return strings.Split(strings.TrimSuffix(tmux("capture-pane", "-p", "-t", "top"), "\n"), "\n")
	}

	deadline := time.Now().Add(20 * time.Second)
	var lines []string
	for {
		lines = pane()
		if row := sinkRow(lines, "files"); row != nil && row[2] != "0" && row[2] != "-" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no files row delivering within 20 s; pane:\n%s", strings.Join(lines, "\n"))
		}
		time.Sleep(50 * time.Millisecond) // polling the pane with a deadline
	}
	frame := strings.Join(lines, "\n")
	if len(lines) != 24 {
		t.Errorf("pane has %d lines, want 24:\n%s", len(lines), frame)
	}
	checkFrame(t, lines)
	for _, want := range []string{"cnstream top  " + url + "  up ", "\nready\n", "datagrams/s", "kernel drops 0 (0/s)", "SINK", "forged 0"} {
		if !strings.Contains(frame, want) {
			t.Errorf("pane lacks %q:\n%s", want, frame)
		}
	}

	tmux("send-keys", "-t", "top", key)
	for {
		frame = strings.Join(pane(), "\n")
		if strings.Contains(frame, "TOP-EXITED") {
			break
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("top still running after %s; pane:\n%s", key, frame)
		}
		time.Sleep(50 * time.Millisecond) // polling the pane with a deadline
	}
	if !strings.Contains(frame, "TOP-EXITED 0") || !strings.Contains(frame, "TTY-SANE") {
		t.Errorf("after %s: want exit status 0 and the terminal out of raw mode; pane:\n%s", key, frame)
	}
	// The last frame stays above the shell's lines.
	if !strings.Contains(frame, "SINK") {
		t.Errorf("after %s: the last frame is gone; pane:\n%s", key, frame)
	}
}
