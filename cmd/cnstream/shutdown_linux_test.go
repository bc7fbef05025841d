//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/pipeline"
)

// groupShutdown is the connector group of TestRunShutdownBound and
// TestRunSenderRestartJetStream (other tests use 10-17 and 20-26; 18 was
// free).
const groupShutdown = 18

// TestRunShutdownBound: `cnstream run` with drain_timeout 1s and a Kafka
// sink that cannot deliver (a closed loopback port), load flowing, exits
// after SIGINT within drain_timeout + pipeline.ShutdownGrace +
// telemetryGrace (+ 3 s of margin: a bound, not a performance assertion),
// with the final report printed and the undelivered events counted.
func TestRunShutdownBound(t *testing.T) {
	const drain = time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close() // nothing listens there any more: every connection is refused
	dir := t.TempDir()
	cfg := filepath.Join(dir, "shutdown.yaml")
	yaml := fmt.Sprintf(`source:
  process_events: false
  groups: [%d]
transform:
  enrich: false
pipeline:
  drain_timeout: 1s
sinks:
  - name: kafka
    type: kafka
    kafka: {brokers: [%q], topic: cnstream-shutdown-test}
telemetry:
  listen: %s
`, groupShutdown, closed, freeAddr(t))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	runCmd, stderr := startRun(t, cfg)
	exited := make(chan error, 1)
	go func() { exited <- runCmd.Wait() }()

	// Load flowing while the signal comes: a sender that outlives the test's
	// interest in it (killed at the end).
	send := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupShutdown), "--id", testID().String(),
		"--count", "100000000", "--rate", "5000", "--quiet")
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = send.Process.Kill(); _ = send.Wait() })
	// Events reach the sink, which fails them and retries: the shutdown
	// starts with a write in flight and events queued.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), "sink write failed; retrying") {
		if time.Now().After(deadline) {
			t.Fatalf("no failing write within 20 s; stderr: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling its stderr with a deadline
	}

	bound := drain + pipeline.ShutdownGrace + telemetryGrace
	const margin = 3 * time.Second
	start := time.Now()
	if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var werr error
	select {
	case werr = <-exited:
	case <-time.After(bound + margin):
		t.Fatalf("run still running %v after SIGINT, want an exit within drain_timeout + ShutdownGrace + telemetryGrace = %v (+%v margin); stderr: %s",
			bound+margin, bound, margin, stderr.String())
	}
	took := time.Since(start)
	t.Logf("exited %v after SIGINT (bound %v): %v; stderr: %s", took, bound, werr, stderr.String())
	if ee, ok := werr.(*exec.ExitError); werr != nil && (!ok || ee.ExitCode() != 1) {
		t.Errorf("exit: %v, want 0 or 1 (undelivered reported)", werr)
	}
	out := stderr.String()
	if !strings.Contains(out, "cnstream run: sink kafka: ") || !strings.Contains(out, " undelivered") {
		t.Errorf("no final report for the sink in stderr: %s", out)
	}
}
