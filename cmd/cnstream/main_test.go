//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/testenv/brokers"
	"github.com/cnstream/cnstream/transform"
)

// Groups used here; source's tests use 20..23.
const (
	groupSend = 24
	groupSkip = 25
	groupRun  = 26
)

var cnstreamBin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Stderr.WriteString("cmd/cnstream tests need root: they subscribe to process events and multicast on connector groups (CAP_NET_ADMIN)\n")
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "cnstream-test")
	if err != nil {
		panic(err)
	}
	cnstreamBin = filepath.Join(dir, "cnstream")
	if out, err := exec.Command("go", "build", "-o", cnstreamBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build cnstream: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testID() schema.CbID {
	return schema.CbID{Idx: 0x434e0000 | rand.Uint32N(0xffff), Val: rand.Uint32()}
}

// jsonLines starts cmd and returns a channel of its stdout JSON objects.
func jsonLines(t *testing.T, cmd *exec.Cmd) <-chan map[string]any {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan map[string]any, 1024)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"kind": "invalid-json", "line": sc.Text()}
			}
			ch <- m
		}
	}()
	return ch
}

// nextLine returns the next JSON object of lines (jsonLines), failing the
// test when the command stopped or ctx ended first.
func nextLine(t *testing.T, ctx context.Context, lines <-chan map[string]any, stderr *bytes.Buffer) map[string]any {
	t.Helper()
	select {
	case m, ok := <-lines:
		if !ok {
			t.Fatalf("tail stopped: %s", stderr.String())
		}
		return m
	case <-ctx.Done():
		t.Fatalf("timed out waiting for tail output; stderr: %s", stderr.String())
	}
	return nil
}

// num returns the number at the path of keys in a decoded JSON object.
func num(m map[string]any, path ...string) uint64 {
	for _, k := range path[:len(path)-1] {
		m, _ = m[k].(map[string]any)
	}
	f, _ := m[path[len(path)-1]].(float64)
	return uint64(f)
}

func parseSummary(t *testing.T, stderr []byte) tailSummary {
	t.Helper()
	for _, line := range bytes.Split(stderr, []byte("\n")) {
		var s map[string]tailSummary
		if bytes.HasPrefix(line, []byte(`{"summary"`)) && json.Unmarshal(line, &s) == nil {
			return s["summary"]
		}
	}
	t.Fatalf("no summary line in stderr:\n%s", stderr)
	return tailSummary{}
}

// TestTailProcessEvents runs `cnstream tail --json`, starts a child with
// known argv and exit status, and finds its fork, exec and exit; SIGINT then
// stops tail cleanly, and the kernel's ACK to its IGNORE proves the
// subscription was cancelled.
func TestTailProcessEvents(t *testing.T) {
	// Our own listener, to see the ACK of tail's IGNORE.
	watch, err := source.Dial(source.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := watch.Subscribe(ctx, source.SubscribeConfig{}); err != nil {
		t.Fatal(err)
	}

	tail := exec.Command(cnstreamBin, "tail", "--json", "--summary")
	var stderr bytes.Buffer
	tail.Stderr = &stderr
	lines := jsonLines(t, tail)
	defer tail.Process.Kill()

	// Any event means tail is reading; a child started after that is seen.
	next := func() map[string]any { return nextLine(t, ctx, lines, &stderr) }
	for first := true; first; first = false {
		go exec.Command("/bin/true").Run() // make sure something happens
		next()
	}
	// The child moves itself into a cgroup named like a docker container's,
	// then execs a shell that waits for a line on stdin, so that it is alive
	// when tail reads /proc on that exec; then it exits with status 5.
	cgDir, cgPath, containerID := dockerLikeCgroup(t)
	child := exec.Command("/bin/sh", "-c", `echo $$ > "$1/cgroup.procs" && exec /bin/sh -c "read x; exit 5" sh cnstream-tail-test`, "sh", cgDir)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	pid := uint64(child.Process.Pid)
	seen := map[string]map[string]any{}
	for len(seen) < 3 {
		m := next()
		kind, _ := m["kind"].(string)
		if kind == "invalid-json" {
			t.Fatalf("tail printed invalid JSON: %v", m["line"])
		}
		switch {
		case kind == "fork" && num(m, "fork", "child_pid") == pid,
			kind == "exit" && num(m, "exit", "pid") == pid:
			seen[kind] = m
		case kind == "exec" && num(m, "exec", "pid") == pid:
			// The second exec, into the waiting shell, is the one to check:
			// its last argument is the marker (the first exec's is the
			// cgroup directory).
			proc, _ := m["process"].(map[string]any)
			if args, _ := proc["cmdline"].([]any); len(args) > 0 && args[len(args)-1] == "cnstream-tail-test" {
				seen[kind] = m
			}
		}
		if kind == "exec" && seen["exec"] != nil && seen["exit"] == nil {
			stdin.Close() // tail has read /proc: let the child exit
		}
	}
	var exitErr *exec.ExitError
	if err := child.Wait(); !errors.As(err, &exitErr) || exitErr.ExitCode() != 5 {
		t.Fatalf("child: %v, want exit status 5", err)
	}
	self := uint64(os.Getpid())
	if e := seen["exit"]; num(e, "exit", "exit_status") != 5 || num(e, "exit", "tgid") != pid || num(e, "exit", "parent_tgid") != self {
		t.Errorf("exit event %v: want status 5, tgid %d, parent %d", e, pid, self)
	}
	if f := seen["fork"]; num(f, "fork", "parent_tgid") != self {
		t.Errorf("fork event %v: want parent %d", f, self)
	}
	for kind, m := range seen {
		if ts, _ := m["time"].(string); !strings.HasPrefix(ts, time.Now().UTC().Format("2006-01-02")) {
			t.Errorf("%s event time %q is not today", kind, ts)
		}
		if v, _ := m["v"].(float64); v != 1 {
			t.Errorf("%s event version %v, want 1", kind, m["v"])
		}
		if id, _ := m["id"].(string); !strings.Contains(id, "/1.1/c") {
			t.Errorf("%s event id %q: want <boot>/1.1/c<cpu>/<epoch>/<seq>", kind, id)
		}
	}
	// Enrichment of the exec: the process was alive, so /proc was read.
	proc, _ := seen["exec"]["process"].(map[string]any)
	wantExe, _ := filepath.EvalSymlinks("/bin/sh")
	var cmdline []string
	if cl, ok := proc["cmdline"].([]any); ok {
		for _, a := range cl {
			s, _ := a.(string)
			cmdline = append(cmdline, s)
		}
	}
	if proc["source"] != "proc" || proc["exe"] != wantExe || strings.Join(cmdline, " ") != "/bin/sh -c read x; exit 5 sh cnstream-tail-test" {
		t.Errorf("exec enrichment %v: want source proc, exe %s, the child's argv", proc, wantExe)
	}
	if proc["uid"] != 0.0 || proc["user"] != "root" || proc["cwd"] == nil {
		t.Errorf("exec enrichment %v: want uid 0 (root) and a cwd", proc)
	}
	ctr, _ := proc["container"].(map[string]any)
	if proc["cgroup"] != cgPath || ctr["id"] != containerID || ctr["runtime"] != "docker" {
		t.Errorf("exec enrichment cgroup %v container %v: want %s, docker %s", proc["cgroup"], ctr, cgPath, containerID)
	}
	if xp, _ := seen["exit"]["process"].(map[string]any); xp["exe"] != wantExe || xp["source"] == "gone" {
		t.Errorf("exit enrichment %v: want the exiting process's exe %s from the table", xp, wantExe)
	}
	if anc, _ := proc["ancestors"].([]any); len(anc) == 0 || num(anc[0].(map[string]any), "pid") != self {
		t.Errorf("exec ancestors %v: want this test process (%d) first", proc["ancestors"], self)
	}

	if err := tail.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines { // drain until tail closes stdout
	}
	if err := tail.Wait(); err != nil {
		t.Fatalf("tail after SIGINT: %v; stderr: %s", err, stderr.String())
	}
	sum := parseSummary(t, stderr.Bytes())
	if sum.Subscription == nil || !sum.Subscription.IgnoreSent {
		t.Fatalf("summary %+v: IGNORE not sent", sum)
	}
	if sum.Events == 0 || sum.Missing != 0 || sum.KernelDrops != 0 {
		t.Errorf("summary %+v: want events, no loss", sum)
	}
	// The kernel answers IGNORE with ack + 1, broadcast to listeners.
	want := sum.Subscription.IgnoreAck + 1
	var acked bool
	b := source.NewBatch(64, 0)
	dec := transform.NewDecoder()
	for !acked {
		n, err := watch.ReadBatch(ctx, b)
		if err != nil {
			t.Fatalf("waiting for the ACK of tail's IGNORE (ack %d): %v", want, err)
		}
		dec.DecodeBatch(b, n, func(r *transform.Record) {
			acked = acked || (r.Kind == transform.KindProc && r.Proc.What == schema.ProcEventNone && r.Cn.Ack == want)
		})
	}
}

// TestSend100kOnGroup: 100k messages from `cnstream send` arrive complete,
// in order, with no gap.
func TestSend100kOnGroup(t *testing.T) {
	const count = 100000
	rx, err := source.Dial(source.Config{Groups: []uint32{groupSend}})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	id := testID()
	send := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupSend), "--id", id.String(),
		"--count", fmt.Sprint(count), "--payload-size", "40", "--quiet")
	send.Stderr = os.Stderr
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := source.NewBatch(256, 256)
	dec := transform.NewDecoder()
	var got, outOfOrder uint64
	next := uint32(0)
	for got < count {
		n, err := rx.ReadBatch(ctx, b)
		if err != nil {
			t.Fatalf("after %d messages: %v (stats %v)", got, err, rx.Stats())
		}
		dec.DecodeBatch(b, n, func(r *transform.Record) {
			if r.Kind != transform.KindRaw || r.Cn.ID != id {
				return
			}
			if r.Cn.Seq != next || len(r.Cn.Data) != 40 {
				outOfOrder++
			}
			next = r.Cn.Seq + 1
			got++
		})
	}
	if err := send.Wait(); err != nil {
		t.Fatalf("send: %v", err)
	}
	ds := dec.Stats()
	if outOfOrder != 0 || ds.Gaps != 0 || ds.Missing != 0 || ds.Duplicates != 0 || rx.Stats().KernelDrops != 0 {
		t.Errorf("got %d, out of order %d, decoder %+v, kernel drops %d: want all %d in order, no loss",
			got, outOfOrder, ds, rx.Stats().KernelDrops, count)
	}
}

// TestSkipEveryGapsReported: `send --skip-every K` leaves out one sequence
// number after every K messages; `tail --group --id` reports each gap.
func TestSkipEveryGapsReported(t *testing.T) {
	const count, every = 10000, 100
	id := testID()
	tail := exec.Command(cnstreamBin, "tail", "--group", fmt.Sprint(groupSkip), "--id", id.String(),
		"--json", "--summary")
	var stderr bytes.Buffer
	tail.Stderr = &stderr
	lines := jsonLines(t, tail)
	defer tail.Process.Kill()

	// tail is listening once it receives a probe; send probes until one shows.
	probeID := id
	deadline := time.Now().Add(20 * time.Second)
	ready := false
	var probes uint32
	for !ready && time.Now().Before(deadline) {
		probes++
		if out, err := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupSkip), "--id", probeID.String(), "--seq", "4000000000", "--quiet").CombinedOutput(); err != nil {
			t.Fatalf("probe: %v: %s", err, out)
		}
		select {
		case m := <-lines:
			ready = m["kind"] == "raw"
		case <-time.After(200 * time.Millisecond): // poll interval, not a synchronisation
		}
	}
	if !ready {
		t.Fatalf("tail never showed a probe; stderr: %s", stderr.String())
	}
	out, err := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupSkip), "--id", id.String(),
		"--count", fmt.Sprint(count), "--skip-every", fmt.Sprint(every), "--payload", "x").CombinedOutput()
	if err != nil {
		t.Fatalf("send: %v: %s", err, out)
	}
	want := uint64((count - 1) / every)
	lastSeq := uint64(count-1) + want
	var raws, gaps, missing uint64
	for done := false; !done; {
		var m map[string]any
		select {
		case m = <-lines:
		case <-time.After(20 * time.Second):
			t.Fatalf("tail output stalled after %d messages; stderr: %s", raws, stderr.String())
		}
		switch m["kind"] {
		case "raw":
			if num(m, "stream", "seq") < 4000000000 {
				raws++
				done = num(m, "stream", "seq") == lastSeq
			}
		case "gap":
			gaps++
			missing += num(m, "gap", "missing")
			if num(m, "gap", "missing") != 1 || (num(m, "gap", "got")%(every+1)) != 0 {
				t.Errorf("gap %v: want 1 missing before every %dth+1 seq", m, every)
			}
		case nil:
			t.Fatalf("tail stopped; stderr: %s", stderr.String())
		}
	}
	if err := tail.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := tail.Wait(); err != nil {
		t.Fatalf("tail: %v: %s", err, stderr.String())
	}
	if raws != count || gaps != want || missing != want {
		t.Errorf("messages %d, gaps %d, missing %d: want %d messages and %d gaps of 1", raws, gaps, missing, count, want)
	}
	sum := parseSummary(t, stderr.Bytes())
	if sum.Missing != want || sum.Gaps != want {
		t.Errorf("summary gaps %d missing %d: want %d", sum.Gaps, sum.Missing, want)
	}
}

// TestSendWaitReplyListen: LISTEN to 1:1 with --wait-reply prints the
// kernel's ACK, matched by the reply rule.
func TestSendWaitReplyListen(t *testing.T) {
	out, err := exec.Command(cnstreamBin, "send", "--id", "1:1", "--hex", "0100000000000000", "--ack", "77", "--wait-reply", "5s", "--json", "--quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("send: %v: %s", err, out)
	}
	var m map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(out), &m); err != nil {
		t.Fatalf("reply %q: %v", out, err)
	}
	if m["kind"] != "ack" || num(m, "stream", "ack") != 78 || num(m, "ack", "err") != 0 {
		t.Errorf("reply %v: want the ACK with ack 78, err 0", m)
	}
}

// TestNamespaceErrors: outside the initial namespaces the kernel refuses
// the join of group 1 (this kernel build in a user namespace), ignores
// LISTEN without an answer (other builds, other pid namespaces) or has no
// connector (other network namespaces); whichever step fails, tail and
// send explain the namespace, exit non-zero, and never advise setcap
// (no capability granted inside a user namespace reaches the connector).
func TestNamespaceErrors(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare (util-linux) is needed to create namespaces")
	}
	tail := []string{"tail", "--count", "1"}
	listen := []string{"send", "--id", "1:1", "--hex", "0100000000000000"}
	cases := []struct {
		name    string
		ns, cmd []string
		want    []string
	}{
		{"user", []string{"-U", "-r"}, tail, []string{"initial user namespace", `uid_map "0 0 1"`, "root there has no CAP_NET_ADMIN", "host's user namespace"}},
		{"user-send", []string{"-U", "-r"}, listen, []string{"initial user namespace", "host's user namespace"}},
		{"user-send-wait", []string{"-U", "-r"}, append(listen[:len(listen):len(listen)], "--wait-reply", "1s"), []string{"initial user namespace", "host's user namespace"}},
		{"pid", []string{"-p", "-f"}, tail, []string{"initial pid namespace", "hostPID"}},
		{"pid-send", []string{"-p", "-f"}, listen, []string{"initial pid namespace"}},
		{"net", []string{"-n"}, tail, []string{"initial one; run in the host network namespace"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append(append(append([]string(nil), tc.ns...), cnstreamBin), tc.cmd...)
			cmd := exec.Command("unshare", args...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("%s: %v, want exit status 1; output: %s", cmd, err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("%s: output %q does not explain %q", cmd, out, w)
				}
			}
			if strings.Contains(string(out), "setcap") {
				t.Errorf("%s: output %q advises setcap, which cannot help outside the initial namespaces", cmd, out)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	cases := [][]string{
		{"tail", "--kinds", "fork,bogus"},
		{"tail", "--id", "1:1"},
		{"tail", "--kernel-filter", "fork,bogus"},
		{"tail", "--container", "abc"},
		{"tail", "--comm", "["},
		{"tail", "--uid", "root"},
		{"tail", "--group", "99"},
		{"tail", "--userspace-group", "0"},
		{"send"},
		{"send", "--id", "1"},
		{"send", "--id", "1:1", "--payload", "a", "--hex", "00"},
		{"send", "--id", "1:1", "--hex", "zz"},
		{"send", "--id", "1:1", "--payload-size", "20000"},
		{"bogus"},
	}
	for _, args := range cases {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
		if stderr.Len() == 0 {
			t.Errorf("%q: no message", args)
		}
	}
}

// TestTailClosedPipe: a reader that closes the pipe (cnstream tail | head)
// ends tail through its normal path: exit status 0, IGNORE sent.
func TestTailClosedPipe(t *testing.T) {
	tail := exec.Command(cnstreamBin, "tail", "--summary")
	var stderr bytes.Buffer
	tail.Stderr = &stderr
	out, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	// Read one line, then close the pipe while events keep coming.
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("first line: %v; stderr: %s", err, stderr.String())
	}
	out.Close()
	stop := make(chan struct{})
	generated := make(chan struct{})
	go func() { // keep events coming until tail notices the closed pipe
		defer close(generated)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = exec.Command("/bin/true").Run()
		}
	}()
	err = tail.Wait()
	close(stop)
	<-generated
	if err != nil {
		t.Fatalf("tail after the pipe closed: %v (first line %q); stderr: %s", err, line, stderr.String())
	}
	if sum := parseSummary(t, stderr.Bytes()); sum.Subscription == nil || !sum.Subscription.IgnoreSent {
		t.Errorf("summary %+v: IGNORE not sent", sum)
	}
}

// dockerLikeCgroup creates <cgroup2>/cnstream-test-<rand>/docker-<id>.scope
// and returns its directory, its path as /proc/PID/cgroup shows it, and the
// container id; it is removed at cleanup.
func dockerLikeCgroup(t *testing.T) (dir, path, id string) {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mnt := ""
	for _, line := range strings.Split(string(mi), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if f, pf := strings.Fields(post), strings.Fields(pre); ok && len(f) > 0 && f[0] == "cgroup2" && len(pf) >= 5 && pf[3] == "/" {
			mnt = pf[4]
			break
		}
	}
	if mnt == "" {
		t.Fatal("no cgroup2 hierarchy mounted (see /proc/self/mountinfo)")
	}
	var b [32]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	id = fmt.Sprintf("%x", b)
	top := fmt.Sprintf("cnstream-test-%d", rand.Uint32())
	path = "/" + top + "/docker-" + id + ".scope"
	dir = filepath.Join(mnt, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = os.Remove(dir)
		_ = os.Remove(filepath.Join(mnt, top))
	})
	return dir, path, id
}

// TestRunDefaultConfig: `cnstream run` with the embedded default writes
// enriched process events to ./cnstream-data; SIGINT stops it cleanly.
func TestRunDefaultConfig(t *testing.T) {
	dir := t.TempDir()
	runCmd := exec.Command(cnstreamBin, "run")
	runCmd.Dir = dir
	var stderr bytes.Buffer
	runCmd.Stderr = &stderr
	if err := runCmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer runCmd.Process.Kill()
	data := filepath.Join(dir, "cnstream-data")
	// Children until one of them is in the files: the first proves the
	// subscription is up, the check is on its own exec event.
	deadline := time.Now().Add(20 * time.Second)
	var found *schema.Event
	for found == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no exec event of a child in %s within 20 s; stderr: %s", data, stderr.String())
		}
		child := exec.Command("/bin/sh", "-c", "read x", "cnstream-run-test")
		stdin, _ := child.StdinPipe()
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		pid := uint32(child.Process.Pid)
		for wait := time.Now().Add(time.Second); found == nil && time.Now().Before(wait); {
			events, _ := file.ReadAll(file.Config{Dir: data}) // a batch being written may show as torn: read again
			for i := range events {
				if e := &events[i]; e.Exec != nil && e.Exec.PID == pid && e.Process != nil && e.Process.Source == "proc" {
					found = e
				}
			}
			if found == nil {
				time.Sleep(20 * time.Millisecond) // polling the files with a deadline
			}
		}
		stdin.Close()
		_ = child.Wait()
	}
	if got := strings.Join(found.Process.Cmdline, " "); got != "/bin/sh -c read x cnstream-run-test" {
		t.Errorf("exec cmdline %q", got)
	}
	if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := runCmd.Wait(); err != nil {
		t.Fatalf("run after SIGINT: %v; stderr: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "0 undelivered") {
		t.Errorf("stderr %q: want the final report with nothing undelivered", stderr.String())
	}
	events, err := file.ReadAll(file.Config{Dir: data})
	if err != nil {
		t.Fatalf("read %s after shutdown: %v", data, err)
	}
	seen := map[string]bool{}
	for _, e := range events {
		if seen[e.ID] {
			t.Errorf("event %s written twice", e.ID)
		}
		seen[e.ID] = true
	}
}

// TestRunToKafkaNATSAndFiles: one `cnstream run` with three sinks (a real
// Apache Kafka broker, a real nats-server with JetStream, and files)
// delivers a spawned child's exec event to each: read back from Kafka with
// kcat (an independent client) and kafka-go's Reader, from the JetStream
// stream with nats.go, and from the files; the same event id everywhere,
// in the Kafka header and as the JetStream Nats-Msg-Id.
func TestRunToKafkaNATSAndFiles(t *testing.T) {
	kafkaAddr, natsURL := brokers.Kafka(t), brokers.NATS(t)
	tag := fmt.Sprintf("%d", rand.Uint32())
	topic, stream, subject := "cnstream-run-test-"+tag, "CNSTREAM_RUN_TEST_"+tag, "cnstream-run-test-"+tag
	dir := t.TempDir()
	cfg := filepath.Join(dir, "three.yaml")
	yaml := fmt.Sprintf(`transform:
  filter:
    kinds: [exec]
sinks:
  - name: kafka
    type: kafka
    kafka: {brokers: [%q], topic: %s, encoding: json}
  - name: nats
    type: nats
    nats: {url: %q, jetstream: true, stream: %s, subject: "%s.{kind}"}
  - name: files
    type: file
    file: {dir: %s, sync: always}
`, kafkaAddr, topic, natsURL, stream, subject, filepath.Join(dir, "data"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	js := jetStreamFor(t, natsURL, stream)

	runCmd, stderr := startRun(t, cfg)

	// A child per attempt until its exec event is in Kafka (kcat): the first
	// may come before the sinks' first connection; later ones prove it.
	deadline := time.Now().Add(60 * time.Second)
	var line string
	var pid int
	for line == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no exec event of a child in topic %s within 60 s; stderr: %s", topic, stderr.String())
		}
		// The child waits on its stdin, so that its /proc entry is there
		// to enrich the exec event.
		child := exec.Command("/bin/sh", "-c", "read x", "cnstream-kafka-test")
		stdin, err := child.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		pid = child.Process.Pid
		want := fmt.Sprintf(`"exec":{"pid":%d,`, pid)
		for wait := time.Now().Add(3 * time.Second); line == "" && time.Now().Before(wait); {
			// kcat prints each message as "<headers>\t<value>".
			out, _ := exec.Command("kcat", "-C", "-b", kafkaAddr, "-t", topic, "-e", "-q", "-f", "%h\t%s\n").Output()
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, want) {
					line = l
				}
			}
		}
		stdin.Close()
		_ = child.Wait()
	}
	headers, value, _ := strings.Cut(line, "\t")
	var e schema.Event
	if err := json.Unmarshal([]byte(value), &e); err != nil {
		t.Fatalf("value %q: %v", value, err)
	}
	if !strings.Contains(headers, "cnstream-event-id="+e.ID) || !strings.Contains(headers, "cnstream-schema-version=1") {
		t.Errorf("kcat: headers %q: want the event id %s and schema version 1", headers, e.ID)
	}
	if e.Process == nil || e.Process.Source != "proc" || strings.Join(e.Process.Cmdline, " ") != "/bin/sh -c read x cnstream-kafka-test" {
		t.Errorf("kafka event %s not enriched from /proc: %+v", e.ID, e.Process)
	}

	// kafka-go's Reader: the same event, the same id header.
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	found := false
	conn, err := kafkago.DialContext(rctx, "tcp", kafkaAddr)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		pr := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{kafkaAddr}, Topic: topic, Partition: p.ID, MaxWait: 100 * time.Millisecond})
		last, err := lastOffset(rctx, kafkaAddr, topic, p.ID)
		if err != nil {
			pr.Close()
			t.Fatal(err)
		}
		for off := int64(0); off < last && !found; off++ {
			m, err := pr.ReadMessage(rctx)
			if err != nil {
				pr.Close()
				t.Fatalf("kafka-go Reader %s/%d: %v", topic, p.ID, err)
			}
			for _, h := range m.Headers {
				if h.Key == "cnstream-event-id" && string(h.Value) == e.ID {
					found = bytes.Equal(bytes.TrimSpace(m.Value), []byte(value))
				}
			}
		}
		pr.Close()
	}
	if !found {
		t.Errorf("kafka-go Reader: no message with event id %s and the value kcat read", e.ID)
	}

	// JetStream: the message with Nats-Msg-Id = the event id.
	var inStream bool
	for !inStream {
		if time.Now().After(deadline) {
			t.Fatalf("event %s not in JetStream stream %s; stderr: %s", e.ID, stream, stderr.String())
		}
		jctx, jcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if st, err := js.Stream(jctx, stream); err == nil {
			if info, err := st.Info(jctx); err == nil {
				for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
					m, err := st.GetMsg(jctx, seq)
					if err == nil && m.Header.Get("Nats-Msg-Id") == e.ID && m.Subject == subject+".exec" {
						inStream = true
					}
				}
			}
		}
		jcancel()
		if !inStream {
			time.Sleep(20 * time.Millisecond) // polling the stream with a deadline
		}
	}

	// Files: written with sync always, so there once run acknowledged it.
	var inFiles bool
	for !inFiles && time.Now().Before(deadline) {
		events, _ := file.ReadAll(file.Config{Dir: filepath.Join(dir, "data")})
		for i := range events {
			if events[i].ID == e.ID && events[i].Exec != nil && int(events[i].Exec.PID) == pid {
				inFiles = true
			}
		}
		if !inFiles {
			time.Sleep(20 * time.Millisecond) // polling the files with a deadline
		}
	}
	if !inFiles {
		t.Errorf("event %s not in the files", e.ID)
	}

	if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := runCmd.Wait(); err != nil {
		t.Fatalf("run after SIGINT: %v; stderr: %s", err, stderr.String())
	}
	for _, name := range []string{"kafka", "nats", "files"} {
		if !strings.Contains(stderr.String(), "sink "+name+": ") {
			t.Errorf("stderr %q: no final report of sink %s", stderr.String(), name)
		}
	}
}

// lastOffset returns the offset after the last message of a partition.
func lastOffset(ctx context.Context, addr, topic string, partition int) (int64, error) {
	conn, err := kafkago.DialLeader(ctx, "tcp", addr, topic, partition)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.ReadLastOffset()
}

// jetStreamFor connects to natsURL and returns its JetStream API; when the
// test ends, stream is deleted and the connection closed.
func jetStreamFor(t *testing.T, natsURL, stream string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), stream) })
	return js
}

// openStream returns stream's handle and info, and a context of 30 s (for
// reading it back) that ends with the test.
func openStream(t *testing.T, js jetstream.JetStream, stream string) (context.Context, jetstream.Stream, *jetstream.StreamInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, st, info
}

// startRun starts `cnstream run --config cfg` and waits for its "listening"
// line: from then on the source hears its groups. It returns the command and
// its stderr so far and to come.
func startRun(t *testing.T, cfg string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	runCmd := exec.Command(cnstreamBin, "run", "--config", cfg)
	stderr := &syncBuffer{}
	runCmd.Stderr = stderr
	if err := runCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = runCmd.Process.Kill(); _ = runCmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), "cnstream run: listening to ") {
		if time.Now().After(deadline) {
			t.Fatalf("run did not start listening within 20 s; stderr: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling its stderr with a deadline
	}
	return runCmd, stderr
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestRunFromGroup: `cnstream run` with source.groups (no process events)
// takes 50k datagrams of `cnstream send` into a file sink: every one is a
// raw event with its sequence number, none missing, none twice, and the
// final report counts them.
func TestRunFromGroup(t *testing.T) {
	const count = 50000
	dir := t.TempDir()
	cfg := filepath.Join(dir, "group.yaml")
	yaml := fmt.Sprintf("source:\n  process_events: false\n  groups: [%d]\ntransform:\n  enrich: false\nsinks:\n  - name: files\n    type: file\n    file:\n      dir: %s\n      sync: never\n      encoding: msgpack\n", groupRun, filepath.Join(dir, "data"))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	runCmd, stderr := startRun(t, cfg)
	id := testID()
	send := exec.Command(cnstreamBin, "send", "--group", fmt.Sprint(groupRun), "--id", id.String(),
		"--count", fmt.Sprint(count), "--payload-size", "40", "--quiet")
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("send: %v: %s", err, out)
	}
	// The last datagram in the files, then a clean stop.
	deadline := time.Now().Add(30 * time.Second)
	for {
		events, _ := file.ReadAll(file.Config{Dir: filepath.Join(dir, "data"), Format: file.Msgpack})
		n := 0
		for i := range events {
			if s := events[i].Stream; events[i].Kind == schema.KindRaw && s != nil && s.Idx == id.Idx && s.Val == id.Val {
				n++
			}
		}
		if n == count {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events in the files after 30 s; stderr: %s", n, count, stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling the files with a deadline
	}
	if err := runCmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := runCmd.Wait(); err != nil {
		t.Fatalf("run after SIGINT: %v; stderr: %s", err, stderr.String())
	}
	events, err := file.ReadAll(file.Config{Dir: filepath.Join(dir, "data"), Format: file.Msgpack})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[uint32]bool, count)
	for i := range events {
		e := &events[i]
		if e.Kind == schema.KindGap || e.Kind == schema.KindOverrun || e.Kind == schema.KindDropped {
			t.Errorf("loss record %s: none expected at this rate", e.ID)
		}
		if s := e.Stream; e.Kind == schema.KindRaw && s != nil && s.Idx == id.Idx && s.Val == id.Val {
			if seen[s.Seq] || e.Raw == nil || e.Raw.Group != groupRun || len(e.Raw.Payload) != 40 {
				t.Errorf("event %s: duplicate, or not a 40-byte payload on group %d: %+v", e.ID, groupRun, e.Raw)
			}
			seen[s.Seq] = true
		}
	}
	for seq := range uint32(count) {
		if !seen[seq] {
			t.Errorf("seq %d missing", seq)
			break
		}
	}
	if !strings.Contains(stderr.String(), "listening to group 26; sinks: files") || !strings.Contains(stderr.String(), "0 undelivered") {
		t.Errorf("stderr %q: want the groups and sinks named and nothing undelivered", stderr.String())
	}
}
