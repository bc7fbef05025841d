//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/pipeline/spool"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
)

// groupSpool is the connector group of the spool test (the other tests of
// cmd/cnstream use 10, 12, 18 and 24-26; the benchmarks 18-19 by choice).
const groupSpool = 19

// TestRunSpool: `cnstream run` with spool.dir (the file sink's policy is
// then spool by default) takes 1000 datagrams of `cnstream send` into its
// files through the spool. After the run the spool holds its state
// (head, lock), no record unacknowledged by the sink, and the
// sender's stream to resume at its last number; a second run of the same
// configuration delivers nothing old again.
func TestRunSpool(t *testing.T) {
	const count = 1000
	dir := t.TempDir()
	spoolDir, dataDir := filepath.Join(dir, "spool"), filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "spool.yaml")
	yaml := fmt.Sprintf(`source:
  process_events: false
  groups: [%d]
transform:
  enrich: false
spool:
  dir: %s
sinks:
  - name: files
    type: file
    file: {dir: %s, sync: never, encoding: msgpack}
telemetry:
  listen: "off"
`, groupSpool, spoolDir, dataDir)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	id := testID()
	ours := func() map[uint32]int {
		t.Helper()
		events, err := file.ReadAll(file.Config{Dir: dataDir, Format: file.Msgpack})
		if err != nil && !os.IsNotExist(err) {
			t.Fatalf("read the files: %v", err)
		}
		seqs := map[uint32]int{}
		for i := range events {
			if s := events[i].Stream; events[i].Kind == schema.KindRaw && s != nil && s.Idx == id.Idx && s.Val == id.Val {
				seqs[s.Seq]++
			}
		}
		return seqs
	}
	stop := func(runCmd *exec.Cmd, stderr *syncBuffer) {
		t.Helper()
		if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if err := runCmd.Wait(); err != nil {
			t.Fatalf("run after SIGINT: %v; stderr: %s", err, stderr.String())
		}
	}

	runCmd, stderr := startRun(t, cfg)
	send := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupSpool), "--id", id.String(),
		"--count", fmt.Sprint(count), "--payload-size", "40", "--quiet")
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("send: %v: %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(ours()) < count {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events in the files after 30 s; stderr: %s", len(ours()), count, stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the files with a deadline
	}
	stop(runCmd, stderr)
	for seq := range uint32(count) {
		if n := ours()[seq]; n != 1 {
			t.Fatalf("seq %d is in the files %d times, want once", seq, n)
		}
	}
	out := stderr.String()
	for _, want := range []string{"spool opened", "cnstream run: spool " + spoolDir + ": ", "0 undelivered\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr: want %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "kept in the spool") {
		t.Errorf("stderr: events kept in the spool after a clean stop:\n%s", out)
	}

	// The spool's state: its files, nothing unacknowledged, the stream to
	// resume at the last number sent.
	for _, name := range []string{"head", "lock"} {
		if _, err := os.Stat(filepath.Join(spoolDir, name)); err != nil {
			t.Errorf("spool dir: %v", err)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "*.seg"))
	if len(segs) == 0 {
		t.Errorf("spool dir holds no segment")
	}
	host := schema.Host{BootID: bootID(t)}
	sp, err := spool.Open(spool.Config{Dir: spoolDir, Records: schema.NewRecords("", host)}, []string{"files"})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := sp.Cursor("files").Backlog(); n != 0 {
		t.Errorf("the spool holds %d records the sink did not acknowledge, want none", n)
	}
	resumed := false
	for _, s := range sp.Resume() {
		if s.Idx == id.Idx && s.Val == id.Val {
			resumed = true
			if s.Seq != count-1 {
				t.Errorf("resume stream %+v: want seq %d, the last sent", s, count-1)
			}
		}
	}
	if !resumed {
		t.Errorf("resume %+v: want the sender's stream %v", sp.Resume(), id)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	// A second run of the same configuration delivers nothing old.
	runCmd, stderr = startRun(t, cfg)
	time.Sleep(500 * time.Millisecond) // what it would deliver first is read at start
	stop(runCmd, stderr)
	seqs := ours()
	for seq, n := range seqs {
		if n != 1 {
			t.Errorf("after the second run seq %d is in the files %d times, want once", seq, n)
		}
	}
	if len(seqs) != count {
		t.Errorf("after the second run %d of our events in the files, want %d", len(seqs), count)
	}
	if !strings.Contains(stderr.String(), `to_deliver="files=0"`) {
		t.Errorf("second run: want nothing to deliver from the spool at start; stderr:\n%s", stderr.String())
	}
}

// bootID returns this boot's id (/proc/sys/kernel/random/boot_id).
func bootID(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
