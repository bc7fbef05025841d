//go:build linux

package main

import (
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// plant returns a unique random string to plant as a secret.
func plant(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := crand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "planted" + hex.EncodeToString(b)
}

// startAtExec starts path with argv traced (PTRACE_TRACEME): it stops
// right after its exec, before running, and stays there, so that its
// /proc/PID can be read however short the program (sh -c 'exit 0',
// /bin/true). The caller holds its OS thread (the tracer) until stopAtExec.
func startAtExec(t *testing.T, path string, argv ...string) *exec.Cmd {
	t.Helper()
	c := &exec.Cmd{Path: path, Args: argv, SysProcAttr: &syscall.SysProcAttr{Ptrace: true}}
	if err := c.Start(); err != nil { // returns once the exec succeeded
		t.Fatal(err)
	}
	return c
}

func stopAtExec(c *exec.Cmd) {
	_ = c.Process.Kill()
	_ = c.Wait()
}

// TestRunRedactsSecrets: `cnstream run` (file sink with zstd-compressed
// rotations and a Kafka sink, through the disk spool) and `cnstream tail --json`, both with
// the default configuration, watch real execs of `sh -c 'exit 0'
// --password=X` and of a copy of /bin/true named mysql with -pY: the exec
// events show the arguments as [redacted] with redacted counting them, and
// the planted secrets appear nowhere: not in any byte of any file the run
// wrote (sink files, decompressed .zst rotations, the spool), nor in tail's
// output, nor in the Kafka topic (a real broker, read back with kcat), where
// the exec events are redacted alike.
func TestRunRedactsSecrets(t *testing.T) {
	pw, my := plant(t), plant(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cfgPath := filepath.Join(dir, "c.yaml")
	kafkaAddr := brokers.Kafka(t)
	topic := "cnstream-redact-test-" + plant(t)[len("planted"):]
	cfg := fmt.Sprintf("spool:\n  dir: %s\ntelemetry:\n  listen: \"off\"\nsinks:\n  - name: files\n    type: file\n    file:\n      dir: %s\n      max_size: 16KiB\n      compression: zstd\n"+
		"  - name: kafka\n    type: kafka\n    kafka: {brokers: [%q], topic: %s, encoding: json}\n",
		filepath.Join(dir, "spool"), out, kafkaAddr, topic)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	mysql := filepath.Join(t.TempDir(), "mysql")
	if b, err := os.ReadFile("/bin/true"); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(mysql, b, 0o755); err != nil {
		t.Fatal(err)
	}

	runCmd := exec.Command(cnstreamBin, "run", "--config", cfgPath)
	var runErr bytes.Buffer
	runCmd.Stderr = &runErr
	if err := runCmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer runCmd.Process.Kill()
	tailOut := filepath.Join(t.TempDir(), "tail.jsonl")
	tf, err := os.Create(tailOut)
	if err != nil {
		t.Fatal(err)
	}
	defer tf.Close()
	tail := exec.Command(cnstreamBin, "tail", "--json")
	tail.Stdout = tf
	var tailErr bytes.Buffer
	tail.Stderr = &tailErr
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	defer tail.Process.Kill()

	wantSh := []string{"sh", "-c", "exit 0", "--password=[redacted]"}
	wantMy := []string{mysql, "-p[redacted]"}
	// execOf finds the exec event of pid read from /proc among events.
	execOf := func(events []schema.Event, pid uint32) *schema.Event {
		for i := range events {
			if e := &events[i]; e.Exec != nil && e.Exec.PID == pid && e.Process != nil && e.Process.Source == "proc" {
				return e
			}
		}
		return nil
	}
	tailEvents := func() []schema.Event {
		b, _ := os.ReadFile(tailOut)
		var evs []schema.Event
		for _, l := range bytes.Split(b, []byte("\n")) {
			if e, err := schema.DecodeJSON(l); err == nil { // the last line may be partial
				evs = append(evs, e)
			}
		}
		return evs
	}

	// Pairs of traced execs until both are in the files and in tail's
	// output: the first ones may come before the subscriptions are up.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	deadline := time.Now().Add(30 * time.Second)
	var fileSh, fileMy, tailSh, tailMy *schema.Event
	for fileSh == nil || fileMy == nil || tailSh == nil || tailMy == nil {
		if time.Now().After(deadline) {
			t.Fatalf("exec events not found within 30 s (files: sh %v mysql %v; tail: sh %v mysql %v); run: %s; tail: %s",
				fileSh != nil, fileMy != nil, tailSh != nil, tailMy != nil, runErr.String(), tailErr.String())
		}
		fileSh, fileMy, tailSh, tailMy = nil, nil, nil, nil
		sh := startAtExec(t, "/bin/sh", "sh", "-c", "exit 0", "--password="+pw)
		m := startAtExec(t, mysql, mysql, "-p"+my)
		shPID, myPID := uint32(sh.Process.Pid), uint32(m.Process.Pid)
		for wait := time.Now().Add(2 * time.Second); time.Now().Before(wait); {
			events, _ := file.ReadAll(file.Config{Dir: out}) // a batch being written may show as torn: read again
			fileSh, fileMy = execOf(events, shPID), execOf(events, myPID)
			tev := tailEvents()
			tailSh, tailMy = execOf(tev, shPID), execOf(tev, myPID)
			if fileSh != nil && fileMy != nil && tailSh != nil && tailMy != nil {
				break
			}
			time.Sleep(20 * time.Millisecond) // polling files with a deadline
		}
		stopAtExec(sh)
		stopAtExec(m)
	}
	for _, c := range []struct {
		where string
		e     *schema.Event
		want  []string
	}{{"file sink, sh", fileSh, wantSh}, {"file sink, mysql", fileMy, wantMy}, {"tail, sh", tailSh, wantSh}, {"tail, mysql", tailMy, wantMy}} {
		if p := c.e.Process; !slices.Equal(p.Cmdline, c.want) || p.Redacted != 1 {
			t.Errorf("%s: cmdline %q redacted %d, want %q and 1", c.where, p.Cmdline, p.Redacted, c.want)
		}
	}
	// More events, so that the 16 KiB files rotate and get compressed.
	for range 100 {
		_ = exec.Command("/bin/true").Run()
	}
	if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := runCmd.Wait(); err != nil {
		t.Fatalf("run after SIGINT: %v; stderr: %s", err, runErr.String())
	}
	if err := tail.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = tail.Wait()

	// Every byte the run and tail wrote, .zst files decompressed.
	files, zst := 0, 0
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	check := func(path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files++
		if strings.HasSuffix(path, ".zst") {
			zst++
			if b, err = dec.DecodeAll(b, nil); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		for _, s := range []string{pw, my} {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds the planted secret %s", path, s)
			}
		}
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && path != cfgPath {
			check(path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check(tailOut)

	// Kafka, read back with kcat: the same redacted events, no secret in
	// any byte of the topic's messages and headers.
	kc := exec.Command("kcat", "-C", "-b", kafkaAddr, "-t", topic, "-e", "-q", "-f", "%h\t%s\n")
	var kcErr bytes.Buffer
	kc.Stderr = &kcErr
	raw, err := kc.Output()
	if err != nil {
		t.Fatalf("kcat: %v: %s", err, kcErr.String())
	}
	for _, s := range []string{pw, my} {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("topic %s holds the planted secret %s", topic, s)
		}
	}
	var kev []schema.Event
	for _, l := range bytes.Split(raw, []byte("\n")) {
		if _, v, ok := bytes.Cut(l, []byte("\t")); ok {
			if e, err := schema.DecodeJSON(v); err == nil {
				kev = append(kev, e)
			}
		}
	}
	for _, c := range []struct {
		where string
		e     *schema.Event
		want  []string
	}{{"kafka, sh", execOf(kev, fileSh.Exec.PID), wantSh}, {"kafka, mysql", execOf(kev, fileMy.Exec.PID), wantMy}} {
		if c.e == nil {
			t.Errorf("%s: no exec event in topic %s (%d events read)", c.where, topic, len(kev))
		} else if p := c.e.Process; !slices.Equal(p.Cmdline, c.want) || p.Redacted != 1 {
			t.Errorf("%s: cmdline %q redacted %d, want %q and 1", c.where, p.Cmdline, p.Redacted, c.want)
		}
	}
	t.Logf("%d files checked, %d of them zstd", files, zst)
	if files < 3 {
		t.Errorf("only %d files checked: the run wrote less than expected", files)
	}
}
