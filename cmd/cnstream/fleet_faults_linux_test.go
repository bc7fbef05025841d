//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/need"
)

// TestFleetArchiverFaults is issue 13's fault test, with everything real: a
// 3-node Kafka cluster (testenv/kafka/start --brokers 3: replication 3,
// min.insync.replicas 2), a topic of 6 partitions, three simulated hosts
// at 50k events/s each (testenv/cmd/fleetgen, through the real Kafka sink)
// of which the first has a real hole (numbers skipped without a gap
// record), and two `cnstream archive` of one group sharing the archive
// root. Mid-stream an archiver holding hosts is SIGKILLed, then one broker. The
// survivor takes the dead member's partitions once its session expires,
// repeats what the dead one had not committed, and removes the repeats.
// After a clean stop of the survivor every host's archive verifies
// (`cnstream verify`: intact, every file signed), holds every event sent
// exactly once (0 duplicates), and the audit says the two hosts without
// a hole are complete and the first has exactly the skipped numbers
// unaccounted (`cnstream audit`).
func TestFleetArchiverFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a 3-node Kafka cluster")
	}
	const (
		perHost   = 600_000
		rate      = 50_000 // per host
		skipEvery = 10_007
	)
	need.Tool(t, "java", "the test's Kafka cluster runs on it")
	need.Tool(t, "kcat", "testenv/kafka/start checks the brokers' readiness with it")
	base := t.TempDir()
	fleetgen := filepath.Join(base, "fleetgen")
	if out, err := exec.Command("go", "build", "-o", fleetgen, "../../testenv/cmd/fleetgen").CombinedOutput(); err != nil {
		t.Fatalf("build fleetgen: %v\n%s", err, out)
	}
	bootstrap, kdir := startKafkaCluster3(t, base)
	topic := fmt.Sprintf("fleet-faults-%d", rand.Uint32())
	key, pub := newTestKey(t, base, "fleet-faults")
	dir := filepath.Join(base, "archives")

	type archiver struct {
		cmd    *exec.Cmd
		listen string
		out    syncBuffer
		exited chan error
	}
	start := func(name string) *archiver {
		a := &archiver{listen: freeAddr(t), exited: make(chan error, 1)}
		cfg := filepath.Join(base, name+".yaml")
		text := fmt.Sprintf("archiver:\n  brokers: [%s]\n  topic: %s\n  group: g-%s\n  dir: %s\n  key: %s\n  max_size: 8MiB\ntelemetry:\n  listen: %s\n",
			strings.Join(bootstrap, ", "), topic, topic, dir, key, a.listen)
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		a.cmd = exec.Command(cnstreamBin, "archive", "--config", cfg)
		a.cmd.Stdout, a.cmd.Stderr = &a.out, &a.out
		if err := a.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { a.exited <- a.cmd.Wait() }()
		t.Cleanup(func() {
			if a.cmd.ProcessState == nil {
				a.cmd.Process.Kill()
				<-a.exited
			}
		})
		return a
	}
	// events archived by a, by host: the hosts it holds open.
	archived := func(a *archiver) map[string]uint64 {
		got := map[string]uint64{}
		for _, h := range getAudit(t, a.listen).Hosts {
			if h.Open {
				got[h.Hostname] = h.Events
			}
		}
		return got
	}

	// The topic first (fleetgen creates it with 6 partitions, replicas
	// 3), so that both archivers join one group over all its partitions.
	if out, err := exec.Command(fleetgen, "--brokers", strings.Join(bootstrap, ","), "--topic", topic,
		"--partitions", "6", "--replicas", "3", "--hosts", "3", "--events", "0").CombinedOutput(); err != nil {
		t.Fatalf("fleetgen (create the topic): %v\n%s", err, out)
	}
	a, b := start("a"), start("b")
	gen := exec.Command(fleetgen, "--brokers", strings.Join(bootstrap, ","), "--topic", topic,
		"--hosts", "3", "--events", strconv.Itoa(perHost), "--rate", strconv.Itoa(rate), "--skip-every", strconv.Itoa(skipEvery))
	var genOut syncBuffer
	gen.Stdout, gen.Stderr = &genOut, &genOut
	genDone := make(chan error, 1)
	if err := gen.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { genDone <- gen.Wait() }()
	t.Cleanup(func() {
		if gen.ProcessState == nil {
			gen.Process.Kill()
			<-genDone
		}
	})

	// Kill an archiver that archives (the hosts' partitions may all be
	// one member's: the partition of a host is its key's hash), while the
	// hosts still send; the other one survives.
	deadline := time.Now().Add(60 * time.Second)
	for len(archived(a))+len(archived(b)) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the archivers do not hold the 3 hosts within 60 s: a %v, b %v\n%s\n%s", archived(a), archived(b), a.out.String(), b.out.String())
		}
		time.Sleep(100 * time.Millisecond) // polling /audit with a deadline
	}
	t.Logf("archiver a holds %v, b holds %v", archived(a), archived(b))
	if len(archived(a)) == 0 {
		a, b = b, a // the victim is the one that archives
	}
	held := archived(a)
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.exited
	t.Logf("the archiver holding %v SIGKILLed", held)
	// Then one broker.
	node := filepath.Join(kdir, "node-2", "kafka.pid")
	pidText, err := os.ReadFile(node)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatalf("%s: %v", node, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill broker node 2 (pid %d): %v", pid, err)
	}
	t.Logf("broker node 2 SIGKILLed")
	select {
	case err := <-genDone:
		if err != nil {
			t.Fatalf("fleetgen: %v\n%s", err, genOut.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("fleetgen still sending after 3 minutes:\n%s", genOut.String())
	}
	sent := map[string]uint64{}
	skipped := map[string]uint64{}
	for _, m := range regexp.MustCompile(`(?m)^fleetgen: host (\S+) boot \S+: (\d+) events sent, (\d+) numbers skipped$`).FindAllStringSubmatch(genOut.String(), -1) {
		n, _ := strconv.ParseUint(m[2], 10, 64)
		k, _ := strconv.ParseUint(m[3], 10, 64)
		sent[m[1]], skipped[m[1]] = n, k
	}
	if len(sent) != 3 || skipped["fleet-host-1"] == 0 {
		t.Fatalf("fleetgen's report: %v sent, %v skipped\n%s", sent, skipped, genOut.String())
	}

	// The survivor gets every host once the dead member's session ends.
	deadline = time.Now().Add(3 * time.Minute)
	for fmt.Sprint(archived(b)) != fmt.Sprint(sent) {
		if time.Now().After(deadline) {
			t.Fatalf("archiver b holds %v, want %v, 3 minutes after the sender ended:\n%s", archived(b), sent, b.out.String())
		}
		time.Sleep(200 * time.Millisecond) // polling /audit with a deadline
	}
	if err := b.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-b.exited:
		if err != nil {
			t.Fatalf("archiver b after SIGINT: %v\n%s", err, b.out.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("archiver b still running 2 minutes after SIGINT:\n%s", b.out.String())
	}

	// Every host archive: intact, every event once, and the hole exactly.
	hosts, _ := filepath.Glob(filepath.Join(dir, "fleet-host-*", "*"))
	if len(hosts) != 3 {
		t.Fatalf("host archives %v, want 3", hosts)
	}
	for _, hd := range hosts {
		out, _ := exec.Command(cnstreamBin, "verify", hd, "--key", pub, "--json").Output()
		var r struct {
			Intact, Complete bool
			Problem          *verifyIssue
			Files            []struct{ Signed bool }
			Audit            struct {
				Hosts []struct {
					Hostname           string
					Events, Duplicates uint64
				}
			}
			Hosts []struct {
				Hostname    string
				Events      uint64
				Unaccounted uint64
			}
		}
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("verify %s --json: %v\n%s", hd, err, out)
		}
		if !r.Intact || len(r.Hosts) != 1 || len(r.Audit.Hosts) != 1 {
			t.Fatalf("verify %s: intact %v, problem %+v, hosts %+v", hd, r.Intact, r.Problem, r.Hosts)
		}
		for i, f := range r.Files {
			if !f.Signed {
				t.Errorf("%s: file %d not signed after the clean stop", hd, i)
			}
		}
		h := r.Hosts[0]
		if h.Events != sent[h.Hostname] || r.Audit.Hosts[0].Duplicates != 0 || h.Unaccounted != skipped[h.Hostname] || r.Complete != (skipped[h.Hostname] == 0) {
			t.Errorf("%s: %d events (sent %d), %d duplicates, %d unaccounted (skipped %d), complete %v",
				h.Hostname, h.Events, sent[h.Hostname], r.Audit.Hosts[0].Duplicates, h.Unaccounted, skipped[h.Hostname], r.Complete)
		}
	}
	code, tab := auditJSON(t, dir, "--key", pub)
	if code != 1 || tab.OK {
		t.Errorf("audit %s: exit %d, ok %v; want 1 (fleet-host-1 has a hole)", dir, code, tab.OK)
	}
	for _, r := range tab.Hosts {
		want := "OK"
		if skipped[r.Hostname] > 0 {
			want = "INCOMPLETE"
		}
		if r.Status != want || r.Unaccounted != skipped[r.Hostname] {
			t.Errorf("audit: %s %s, %d unaccounted; want %s, %d", r.Hostname, r.Status, r.Unaccounted, want, skipped[r.Hostname])
		}
	}
	t.Logf("sent %v, skipped %v; archiver b's log:\n%s", sent, skipped, lastLines(b.out.String(), 12))
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// startKafkaCluster3 starts a private 3-node Kafka cluster
// (testenv/kafka/start --brokers 3) on six free ports and returns its
// bootstrap list and state dir; it is stopped when the test ends, and by
// itself if the test binary dies.
func startKafkaCluster3(t *testing.T, base string) ([]string, string) {
	t.Helper()
	script, err := filepath.Abs("../../testenv/kafka/start")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "kafka3")
	port := freePortRange6(t)
	cmd := exec.Command(script, "--brokers", "3", "--dir", dir, "--watch-pid", strconv.Itoa(os.Getpid()))
	cmd.Env = append(os.Environ(), "CNSTREAM_KAFKA_PORT="+strconv.Itoa(port), "CNSTREAM_KAFKA_HEAP=512m")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := cmd.Output()
	t.Cleanup(func() {
		if out, err := exec.Command(filepath.Join(filepath.Dir(script), "stop"), "--dir", dir).CombinedOutput(); err != nil {
			t.Logf("testenv/kafka/stop: %v\n%s", err, out)
		}
	})
	if err != nil {
		t.Fatalf("testenv/kafka/start --brokers 3: %v\n%s", err, stderr.String())
	}
	t.Logf("3-node Kafka ready in %v", time.Since(t0).Round(time.Millisecond))
	return strings.Split(strings.TrimSpace(string(out)), ","), dir
}

// freePortRange6 returns p such that p..p+5 are free on 127.0.0.1.
func freePortRange6(t *testing.T) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p+6 > 65530 {
			continue
		}
		free := true
		for q := p; q < p+6 && free; q++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return p
		}
	}
	t.Fatal("no six consecutive free ports on 127.0.0.1")
	return 0
}
