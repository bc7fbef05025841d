//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/fleet"
	"github.com/cnstream/cnstream/schema"
	kafkasink "github.com/cnstream/cnstream/sink/kafka"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// TestArchiveCmd: the real binary, `cnstream archive`, against a real
// broker's topic of two partitions holding two hosts' events (hostA's
// first 300 events sent twice, as a producer's retry would): GET /audit
// serves the live report as JSON until both hosts show every event;
// /metrics has the per-host gauges; SIGINT ends it with exit status 0 and
// the final report; then every host archive verifies with `cnstream
// verify` and `cnstream audit DIR --key` finds the fleet OK.
func TestArchiveCmd(t *testing.T) {
	addr := brokers.Kafka(t)
	topic := fmt.Sprintf("cnstream-archive-test-%d", rand.Uint32())
	createTopic(t, addr, topic, 2)
	s, err := kafkasink.New(kafkasink.Config{Brokers: []string{addr}, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	a := testArchiveEvents("archive-hostA", 2000, nil, map[int]bool{501: true})
	b := testArchiveEvents("archive-hostB", 1200, nil, nil)
	for _, batch := range [][]schema.Event{a[:1000], a[:300], a[1000:], b} {
		if err := s.WriteBatch(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}

	base := t.TempDir()
	key, pub := newTestKey(t, base, "archiver-key")
	dir := filepath.Join(base, "fleet")
	listen := freeAddr(t)
	cfg := filepath.Join(base, "archiver.yaml")
	text := fmt.Sprintf("archiver:\n  brokers: [%q]\n  topic: %s\n  group: g-%s\n  dir: %s\n  key: %s\n  encoding: json\n  batch: 500\n  max_size: 32KiB\ntelemetry:\n  listen: %s\n",
		addr, topic, topic, dir, key, listen)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errb := runValidate(t, cfg); code != 0 {
		t.Fatalf("validate %s: exit %d: %s%s", cfg, code, out, errb)
	}
	cmd := exec.Command(cnstreamBin, "archive", "--config", cfg)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	}()

	want := map[string]uint64{"archive-hostA": 1999, "archive-hostB": 1200}
	var rep fleet.Report
	deadline := time.Now().Add(90 * time.Second)
	for {
		rep = getAudit(t, listen)
		got := map[string]uint64{}
		for _, h := range rep.Hosts {
			got[h.Hostname] = h.Events
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("cnstream archive exited (%v) before the hosts were archived: %s", err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /audit: events per host %v, want %v after 90 s; log:\n%s", got, want, stderr.String())
		}
	}
	for _, h := range rep.Hosts {
		if h.Unaccounted != 0 || h.Dir == "" || !h.Open {
			t.Errorf("GET /audit: %s: unaccounted %d, dir %q, open %v; want 0, its dir, open", h.Hostname, h.Unaccounted, h.Dir, h.Open)
		}
		if h.Hostname == "archive-hostA" && (h.ProvablyLost != 1 || h.DuplicatesRemoved != 300) {
			t.Errorf("GET /audit: hostA: provably lost %d, duplicates removed %d; want 1 (its gap record), 300", h.ProvablyLost, h.DuplicatesRemoved)
		}
	}
	metrics := httpGet(t, "http://"+listen+"/metrics")
	for _, line := range []string{
		`cnstream_archive_events{boot="boot-archive-hostA",host="archive-hostA"} 1999`,
		`cnstream_archive_events{boot="boot-archive-hostB",host="archive-hostB"} 1200`,
		`cnstream_archive_provably_lost{boot="boot-archive-hostA",host="archive-hostA"} 1`,
		`cnstream_archive_unaccounted{boot="boot-archive-hostB",host="archive-hostB"} 0`,
		`cnstream_archive_hosts_open 2`,
		`cnstream_archive_duplicates_total 300`,
		`cnstream_archive_malformed_total 0`,
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("/metrics: no line %q", line)
		}
	}
	// Silence runs from when the archiver received a host's last event
	// (5m by default): neither host is silent yet.
	for _, h := range []string{"archive-hostA", "archive-hostB"} {
		if !regexpMatch(`(?m)^cnstream_archive_silent\{host="`+h+`"\} 0$`, metrics) {
			t.Errorf("/metrics: no cnstream_archive_silent{host=%q} 0", h)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("cnstream archive after SIGINT: %v, want exit 0; log:\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("cnstream archive still running 60 s after SIGINT; log:\n%s", stderr.String())
	}
	for _, re := range []string{
		`(?m)^archived 3200 events and loss records of 3500 messages \(300 duplicates removed, 0 malformed\)`,
		`(?m)^archive-hostA +boot-archive-hostA +1999 +300 +1 +0 +no `,
		`(?m)^archive-hostB +boot-archive-hostB +1200 +0 +0 +0 +no `,
	} {
		if !regexpMatch(re, stdout.String()) {
			t.Errorf("final report: no line matching %s in:\n%s", re, stdout.String())
		}
	}
	for _, h := range []string{"archive-hostA", "archive-hostB"} {
		if !regexpMatch(`msg="host seen" host=`+h+` `, stderr.String()) {
			t.Errorf("log: no 'host seen' of %s in:\n%s", h, stderr.String())
		}
	}
	for _, h := range rep.Hosts {
		out, err := exec.Command(cnstreamBin, "verify", h.Dir, "--key", pub).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "OK: intact and every event accounted for") {
			t.Errorf("verify %s: %v\n%s", h.Dir, err, out)
		}
	}
	code, tab := auditJSON(t, dir, "--key", pub)
	if code != 0 || !tab.OK || len(tab.Hosts) != 2 || tab.Hosts[0].Events != 1999 || tab.Hosts[1].Events != 1200 {
		t.Errorf("audit %s --key: exit %d, table %+v; want 0, OK, 1999 and 1200 events", dir, code, tab)
	}
}

func runValidate(t *testing.T, path string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	code := run(t.Context(), []string{"validate", path}, &out, &errb)
	return code, out.String(), errb.String()
}

func getAudit(t *testing.T, addr string) fleet.Report {
	t.Helper()
	var r fleet.Report
	body := httpGet(t, "http://"+addr+"/audit")
	if body == "" {
		return r
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("GET /audit: not the report as JSON: %v\n%s", err, body)
	}
	return r
}

// httpGet returns the body of a 200 answer, "" while nothing listens.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v: %s", url, resp.StatusCode, err, b)
	}
	return string(b)
}

// TestRunRefusesArchiverConfig: run given the fleet archiver's config (no
// sinks) says which command it is for, before it subscribes.
func TestRunRefusesArchiverConfig(t *testing.T) {
	var out, errb syncBuffer
	code := run(t.Context(), []string{"run", "--config", "../../examples/fleet-archiver.yaml"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "run it with cnstream archive --config FILE") {
		t.Fatalf("run --config examples/fleet-archiver.yaml: exit %d: %s", code, errb.String())
	}
}
