//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestArchiveSurvivesSIGKILL: `cnstream run` with the durable spool into a
// file sink with archive on (small files, so many are signed), SIGKILLed
// mid-stream at 200k datagrams/s and started again at once. The restarted
// run signs what the killed one left unsigned (its active file), and
// after a clean stop `cnstream verify` (the real binary, the public key)
// finds the archive intact and every number accounted for: delivered +
// the restart gap + any kernel loss == the sender's span, with the
// independent tally of the spool tests agreeing on the events delivered.
func TestArchiveSurvivesSIGKILL(t *testing.T) {
	const (
		count = 600_000
		rate  = 200_000
	)
	dir := t.TempDir()
	key, pub := newTestKey(t, dir, "sigkill-test")
	spoolDir, dataDir := filepath.Join(dir, "spool"), filepath.Join(dir, "archive")
	cfg := writeSpoolConfig(t, dir, "archive.yaml", spoolDir, "", fmt.Sprintf(
		"  - name: archive\n    type: file\n    file: {dir: %s, sync: always, max_size: 4MiB, archive: true, archive_key: %s}", dataDir, key))
	id := testID()

	runCmd, _ := startRun(t, cfg)
	send := startSpoolSend(t, id, count, rate)
	spoolKillPoint(t, send, dataDir, count/rate)
	killRun(t, runCmd)
	runCmd, stderr := startRun(t, cfg)
	sent, first, last := finishAfterRestart(t, send, runCmd, stderr)

	tl := newSpoolTally(id, "archive")
	tl.readFiles(t, dataDir)
	c := tl.check(t, sent, first, last)
	if c.restartMissing == 0 {
		t.Errorf("no restart gap: the numbers sent while run was down are not stated")
	}

	out, err := exec.Command(cnstreamBin, "verify", dataDir, "--key", pub, "--json").Output()
	var r struct {
		Intact, Complete bool
		Files            []struct{ Signed, Active bool }
		Problem          *verifyIssue
		Hosts            []struct {
			Events      uint64
			Lost        uint64 `json:"provably_lost"`
			Unaccounted uint64
		}
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		t.Fatalf("verify --json: %v (%v)\n%s", jerr, err, out)
	}
	if err != nil || !r.Intact || !r.Complete {
		t.Fatalf("verify after SIGKILL and restart: %v, intact %v, complete %v, problem %+v", err, r.Intact, r.Complete, r.Problem)
	}
	for i, f := range r.Files {
		if !f.Signed || f.Active {
			t.Errorf("file %d: signed %v, active %v: a clean stop leaves every file signed", i, f.Signed, f.Active)
		}
	}
	if len(r.Files) < 3 || len(r.Hosts) != 1 || r.Hosts[0].Unaccounted != 0 || r.Hosts[0].Events != c.delivered || r.Hosts[0].Lost < c.restartMissing {
		t.Fatalf("verify: %d files, hosts %+v; the tally: %v", len(r.Files), r.Hosts, c)
	}
	// The table, as a person reads it.
	var table bytes.Buffer
	v := exec.Command(cnstreamBin, "verify", dataDir, "--key", pub)
	v.Stdout = &table
	if err := v.Run(); err != nil || !bytes.Contains(table.Bytes(), []byte("OK: intact and every event accounted for")) {
		t.Fatalf("verify: %v\n%s", err, table.String())
	}
	t.Logf("%s", table.String())
	t.Logf("%v; %d files signed", c, len(r.Files))
}
