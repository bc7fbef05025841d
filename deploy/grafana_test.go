package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/need"
)

// dashboard is what the tests read of a Grafana dashboard.
type dashboard struct {
	dsVar  string   // default of the data source variable
	exprs  []string // PromQL: panel targets and template variable queries
	titles []string // panel titles
}

func readDashboard(t *testing.T, file string) dashboard {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name, Type string
				Query      any
				Definition string
				Current    struct {
					Value any
				}
			}
		}
		Panels []struct {
			Type, Title string
			Targets     []struct {
				Expr string
			}
		}
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var d dashboard
	for _, v := range raw.Templating.List {
		switch v.Type {
		case "datasource":
			d.dsVar, _ = v.Current.Value.(string)
		case "query":
			switch q := v.Query.(type) {
			case string:
				d.exprs = append(d.exprs, q)
			case map[string]any:
				s, _ := q["query"].(string)
				d.exprs = append(d.exprs, s)
			}
			d.exprs = append(d.exprs, v.Definition)
		}
	}
	for _, p := range raw.Panels {
		if p.Type == "row" {
			continue
		}
		d.titles = append(d.titles, p.Title)
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", file, p.Title)
		}
		for _, tg := range p.Targets {
			d.exprs = append(d.exprs, tg.Expr)
		}
	}
	return d
}

var (
	metricRef = regexp.MustCompile(`\b(?:cnstream|process|go)_[A-Za-z0-9_]+\b`)
	byClause  = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matchers  = regexp.MustCompile(`\{([^}]*)\}`)
	matcher   = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)`)
)

// scrape holds the metric names of a /metrics page and the labels each has.
type scrape map[string]map[string]bool

func parseScrape(r io.Reader) (scrape, error) {
	s := scrape{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	label := regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)="`)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if s[name] == nil {
			s[name] = map[string]bool{}
		}
		if strings.HasPrefix(rest, "{") {
			for _, m := range label.FindAllStringSubmatch(rest[:strings.LastIndexByte(rest, '}')+1], -1) {
				s[name][m[1]] = true
			}
		}
	}
	return s, sc.Err()
}

// TestDashboardMetrics checks every metric and label name the Grafana
// dashboard queries against a real scrape of cnstream run: names that
// cnstream does not export would draw empty panels without an error.
func TestDashboardMetrics(t *testing.T) {
	need.Root(t, "cnstream run joins connector group 9 and sends to it (CAP_NET_ADMIN)")
	d := readDashboard(t, filepath.Join(root, "deploy", "grafana", "dashboards", "cnstream.json"))
	s := scrapeRun(t)

	used := map[string]bool{}
	for _, e := range d.exprs {
		for _, m := range metricRef.FindAllString(e, -1) {
			used[m] = true
		}
	}
	var names []string
	for n := range used {
		names = append(names, n)
		if s[n] == nil {
			t.Errorf("dashboard queries %s, which cnstream does not export", n)
		}
	}
	sort.Strings(names)
	t.Logf("dashboard uses %d metrics: %s", len(names), strings.Join(names, " "))
	// What the dashboard is for (issue 6): events/s, kernel drops, gaps,
	// per-sink delivered, dropped and failed, queue fill, latency.
	for _, n := range []string{
		"cnstream_transform_events_total", "cnstream_source_kernel_drops_total",
		"cnstream_transform_gaps_total", "cnstream_transform_missing_total",
		"cnstream_sink_delivered_total", "cnstream_sink_dropped_total", "cnstream_sink_failed_total",
		"cnstream_sink_queue_events", "cnstream_sink_queue_max_events",
		"cnstream_event_latency_seconds_bucket", "cnstream_sink_write_duration_seconds_bucket",
	} {
		if !used[n] {
			t.Errorf("dashboard does not show %s", n)
		}
	}

	// Labels: those of the exported series, plus what Prometheus adds.
	labels := map[string]bool{"instance": true, "job": true}
	for _, ls := range s {
		for l := range ls {
			labels[l] = true
		}
	}
	for _, e := range d.exprs {
		var refs []string
		for _, m := range byClause.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(m[1], ",") {
				refs = append(refs, strings.TrimSpace(l))
			}
		}
		for _, m := range matchers.FindAllStringSubmatch(e, -1) {
			for _, l := range matcher.FindAllStringSubmatch(m[1], -1) {
				refs = append(refs, l[1])
			}
		}
		for _, l := range refs {
			if l != "" && !labels[l] {
				t.Errorf("dashboard query %q uses label %q, which no exported series has", e, l)
			}
		}
	}
}

// scrapeRun runs cnstream run on connector group 9 (other tests use
// 10-26) with enrichment and a file sink behind the disk spool, sends it
// 10 messages so that every counter and both histograms have samples, and
// scrapes /metrics.
func scrapeRun(t *testing.T) scrape {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	conf := fmt.Sprintf(`source:
  process_events: false
  groups: [9]
  userspace_groups: [9]   # cnstream send uses id 100:1 on a group below 11
transform:
  enrich: true
spool:
  dir: %s
sinks:
  - name: files
    type: file
    file:
      dir: %s
telemetry:
  listen: 127.0.0.1:%d
`, filepath.Join(dir, "spool"), filepath.Join(dir, "data"), port)
	cf := filepath.Join(dir, "cnstream.yaml")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr syncBuffer
	run := exec.CommandContext(ctx, cnstreamBin, "run", "--config", cf)
	run.Stderr = &stderr
	run.Cancel = func() error { return run.Process.Signal(syscall.SIGTERM) }
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = run.Process.Signal(syscall.SIGTERM)
		if err := run.Wait(); err != nil {
			t.Errorf("cnstream run: %v\n%s", err, stderr.String())
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, 20*time.Second, func() (bool, string) {
		code, body := get(base + "/readyz")
		return code == http.StatusOK, fmt.Sprintf("/readyz %d %s; stderr: %s", code, body, stderr.String())
	})
	send := exec.CommandContext(ctx, cnstreamBin, "send", "--group", "9", "--id", "100:1", "--count", "10")
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("cnstream send: %v\n%s", err, out)
	}
	var page string
	waitFor(t, 20*time.Second, func() (bool, string) {
		_, page = get(base + "/metrics")
		s, _ := parseScrape(strings.NewReader(page))
		n := 0.0
		for _, line := range strings.Split(page, "\n") {
			if strings.HasPrefix(line, "cnstream_sink_delivered_total{") {
				f := strings.Fields(line)
				n, _ = strconv.ParseFloat(f[len(f)-1], 64)
			}
		}
		return n >= 10 && s["cnstream_event_latency_seconds_bucket"] != nil, fmt.Sprintf("delivered %v of 10", n)
	})
	s, err := parseScrape(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(u string) (int, string) {
	c := http.Client{Timeout: 3 * time.Second}
	r, err := c.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

func waitFor(t *testing.T, d time.Duration, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not after %v: %s", d, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
