package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
	kafkasink "github.com/cnstream/cnstream/sink/kafka"
	"github.com/cnstream/cnstream/testenv/brokers"
)

func runAudit(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), append([]string{"audit"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// auditJSON runs audit --json and decodes its table.
func auditJSON(t *testing.T, args ...string) (int, auditTable) {
	t.Helper()
	code, out, errb := runAudit(t, append(args, "--json")...)
	var tab auditTable
	if err := json.Unmarshal([]byte(out), &tab); err != nil {
		t.Fatalf("audit %v: exit %d, output not JSON: %v\n%s\nstderr: %s", args, code, err, out, errb)
	}
	return code, tab
}

// rowSummary is what the tests compare of a row.
type rowSummary struct {
	Host, Boot                            string
	Files                                 bool // at least one
	Events, Duplicates, Lost, Unaccounted uint64
	Status                                string
	ProblemHas                            string
}

func summarize(tab auditTable, problemHas map[string]string) []rowSummary {
	var out []rowSummary
	for _, r := range tab.Hosts {
		s := rowSummary{Host: r.Hostname, Boot: r.BootID, Files: r.Files > 0, Events: r.Events, Duplicates: r.Duplicates,
			Lost: r.Lost, Unaccounted: r.Unaccounted, Status: r.Status}
		if want := problemHas[r.Hostname]; want != "" && strings.Contains(r.Problem, want) {
			s.ProblemHas = want
		}
		out = append(out, s)
	}
	return out
}

// fleetArchives writes the archiver's layout with the real file sink,
// archive on: <dir>/hostA/boot-hostA (2000 numbers, two of them stated by
// gap records: 1998 events, 2 provably lost) and <dir>/hostB/boot-hostB
// (1500 numbers, three left out with no record: 1497 events, 3
// unaccounted). JSON lines without compression, so that a test can edit a
// record in place.
func fleetArchives(t *testing.T) (dir, pub string) {
	t.Helper()
	base := t.TempDir()
	key, pub := newTestKey(t, base, "fleet-key")
	dir = filepath.Join(base, "fleet")
	writeTestArchive(t, filepath.Join(dir, "hostA", "boot-hostA"), key, "cnstream/hostA", file.JSONL, file.None,
		testArchiveEvents("hostA", 2000, nil, map[int]bool{101: true, 700: true}))
	writeTestArchive(t, filepath.Join(dir, "hostB", "boot-hostB"), key, "cnstream/hostB", file.JSONL, file.None,
		testArchiveEvents("hostB", 1500, map[int]bool{500: true, 501: true, 900: true}, nil))
	return dir, pub
}

// TestAuditDir: the fleet table over two hosts' archives, one of them with
// an unaccounted hole: exact counts per host, INCOMPLETE for that host and
// exit status 1, with and without signatures; with hostB's archive
// removed, exit 0. An edited record is BROKEN with --key, and invisible to
// the completeness-only audit (which says signatures were not checked).
func TestAuditDir(t *testing.T) {
	dir, pub := fleetArchives(t)
	want := []rowSummary{
		{Host: "hostA", Boot: "boot-hostA", Files: true, Events: 1998, Lost: 2, Status: statusOK},
		{Host: "hostB", Boot: "boot-hostB", Files: true, Events: 1497, Unaccounted: 3, Status: statusIncomplete},
	}
	for _, args := range [][]string{{dir, "--key", pub}, {dir}} {
		code, tab := auditJSON(t, args...)
		if code != 1 {
			t.Errorf("audit %v: exit %d, want 1 (hostB incomplete)", args, code)
		}
		if diff := cmp.Diff(want, summarize(tab, nil)); diff != "" {
			t.Errorf("audit %v: rows (-want +got):\n%s", args, diff)
		}
		if tab.OK || tab.Archives != 2 || tab.Signatures != (len(args) == 3) {
			t.Errorf("audit %v: ok %v, archives %d, signatures_checked %v", args, tab.OK, tab.Archives, tab.Signatures)
		}
		for _, r := range tab.Hosts {
			// The fixture's events are of 2026-12-06 12:00 UTC.
			if wantSilent := time.Since(r.Last) > defaultSilence; r.Silent != wantSilent {
				t.Errorf("audit %v: %s silent %v, last event %v ago (silence %v)", args, r.Hostname, r.Silent, time.Since(r.Last), defaultSilence)
			}
		}
	}

	// The table.
	code, out, errb := runAudit(t, dir, "--key", pub, "--silence", "876000h")
	if code != 1 || !strings.Contains(errb, "1 of 2 hosts and boots not OK") {
		t.Errorf("audit table: exit %d, stderr %q", code, errb)
	}
	for _, re := range []string{
		`signatures checked with key fleet-key\+`,
		`(?m)^HOST +BOOT +FILES +EVENTS +FIRST +LAST +PROVABLY LOST +UNACCOUNTED +SILENT +STATUS$`,
		`(?m)^hostA +boot-hos +\d+ +1998 +2026-12-06T12:00:00Z +2026-12-06T12:00:01Z +2 +0 +no +OK$`,
		`(?m)^hostB +boot-hos +\d+ +1497 +2026-12-06T12:00:00Z +2026-12-06T12:00:01Z +0 +3 +no +INCOMPLETE$`,
		`(?m)^NOT OK`,
	} {
		if !regexpMatch(re, out) {
			t.Errorf("audit table: no line matching %s in:\n%s", re, out)
		}
	}
	code, out, _ = runAudit(t, dir)
	if code != 1 || !strings.Contains(out, "signatures not checked") {
		t.Errorf("audit without --key: exit %d, want 1 and 'signatures not checked' in:\n%s", code, out)
	}

	// hostA alone: every archive OK.
	if err := os.RemoveAll(filepath.Join(dir, "hostB")); err != nil {
		t.Fatal(err)
	}
	if code, out, errb := runAudit(t, dir, "--key", pub); code != 0 || !strings.Contains(out, "OK: every host and boot complete, every archive intact") {
		t.Errorf("audit of hostA alone: exit %d, want 0\n%s%s", code, out, errb)
	}

	// An edited record of a closed file: a fork's child pid changed.
	files := dataFiles(t, filepath.Join(dir, "hostA", "boot-hostA"))
	b, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte(`"child_pid":1`))
	if i < 0 {
		t.Fatalf("no child_pid in %s", files[1])
	}
	b[i+len(`"child_pid":1`)] = '9'
	if err := os.WriteFile(files[1], b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, tab := auditJSON(t, dir, "--key", pub)
	wantBroken := []rowSummary{{Host: "hostA", Boot: "boot-hostA", Files: true, Events: 1998, Lost: 2, Status: statusBroken, ProblemHas: filepath.Base(files[1])}}
	if diff := cmp.Diff(wantBroken, summarize(tab, map[string]string{"hostA": filepath.Base(files[1])})); code != 1 || diff != "" {
		t.Errorf("edited record, with --key: exit %d (want 1), rows (-want +got):\n%s", code, diff)
	}
	if code, tab := auditJSON(t, dir); code != 0 || !tab.OK || tab.Signatures {
		t.Errorf("edited record, completeness only: exit %d, ok %v, signatures_checked %v: want 0, true, false (the edit keeps every number)", code, tab.OK, tab.Signatures)
	}
}

// TestAuditDirErrors: what audit refuses, and an archive with nothing in it.
func TestAuditDirErrors(t *testing.T) {
	empty := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "audit takes the archiver's DIR, or --kafka"},
		{[]string{empty}, 1, "holds no archives: want <hostname>/<boot_id>/ directories"},
		{[]string{filepath.Join(empty, "missing")}, 1, "archives directory"},
		{[]string{empty, "--kafka", "127.0.0.1:9"}, 2, "not both"},
		{[]string{empty, "--topic", "t"}, 2, "--topic is for --kafka"},
		{[]string{"--kafka", "127.0.0.1:9", "--key", "x"}, 2, "--key is for archives"},
		{[]string{"--kafka", "127.0.0.1:9", "--from-beginning=false"}, 2, "there is no other starting point"},
		{[]string{empty, "--silence", "-1s"}, 2, "negative"},
		{[]string{"--config", filepath.Join(empty, "none.yaml")}, 1, "read config"},
	} {
		code, _, errb := runAudit(t, c.args...)
		if code != c.code || !strings.Contains(errb, c.want) {
			t.Errorf("audit %q: exit %d, stderr %q; want %d and %q", c.args, code, errb, c.code, c.want)
		}
	}
	// A host/boot directory with no archive files is a BROKEN row.
	if err := os.MkdirAll(filepath.Join(empty, "hostZ", "boot-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, tab := auditJSON(t, empty)
	want := []rowSummary{{Host: "hostZ", Boot: "boot-1", Status: statusBroken, ProblemHas: "holds no archive files"}}
	if diff := cmp.Diff(want, summarize(tab, map[string]string{"hostZ": "holds no archive files"})); code != 1 || diff != "" {
		t.Errorf("empty archive: exit %d (want 1), rows (-want +got):\n%s", code, diff)
	}
}

// TestAuditKafka: the table from a real broker's topic of three
// partitions, written by the kafka sink: two hosts, one with three
// numbers never sent (unaccounted), a batch of the other written twice
// (499 duplicate events; its gap record is a duplicate record, not an
// event), and a message that is not an event.
func TestAuditKafka(t *testing.T) {
	addr := brokers.Kafka(t)
	topic := fmt.Sprintf("cnstream-audit-test-%d", rand.Uint32())
	createTopic(t, addr, topic, 3)
	s, err := kafkasink.New(kafkasink.Config{Brokers: []string{addr}, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	a := testArchiveEvents("kafka-hostA", 3000, nil, map[int]bool{10: true})
	b := testArchiveEvents("kafka-hostB", 2000, map[int]bool{100: true, 101: true, 1500: true}, nil)
	for _, batch := range [][]schema.Event{a[:1000], a[1000:], a[:500], b[:1000], b[1000:]} {
		if err := s.WriteBatch(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}

	code, tab := auditJSON(t, "--kafka", addr, "--topic", topic, "--from-beginning")
	want := []rowSummary{
		{Host: "kafka-hostA", Boot: "boot-kafka-hostA", Events: 2999, Duplicates: 499, Lost: 1, Status: statusOK},
		{Host: "kafka-hostB", Boot: "boot-kafka-hostB", Events: 1997, Unaccounted: 3, Status: statusIncomplete},
	}
	if diff := cmp.Diff(want, summarize(tab, nil)); code != 1 || diff != "" {
		t.Errorf("audit --kafka: exit %d (want 1), rows (-want +got):\n%s", code, diff)
	}
	if tab.Messages != 3000+500+1997 || tab.Malformed != 0 {
		t.Errorf("audit --kafka: %d messages, %d malformed; want %d, 0", tab.Messages, tab.Malformed, 3000+500+1997)
	}

	// The table, and a message that is not an event.
	code, out, _ := runAudit(t, "--kafka", addr, "--topic", topic)
	if code != 1 || !regexpMatch(`(?m)^kafka-hostB +boot-kaf +- +1997 .* 0 +3 +yes +INCOMPLETE$`, out) {
		t.Errorf("audit --kafka table: exit %d:\n%s", code, out)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Value: []byte("not an event")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if _, tab := auditJSON(t, "--kafka", addr, "--topic", topic); tab.Malformed != 1 || tab.OK {
		t.Errorf("audit --kafka after a stray message: %d malformed, ok %v; want 1, false", tab.Malformed, tab.OK)
	}

	// An unknown topic is an error, not an empty table.
	if code, _, errb := runAudit(t, "--kafka", addr, "--topic", topic+"-none"); code != 1 || !strings.Contains(errb, "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("audit --kafka of an unknown topic: exit %d, stderr %q", code, errb)
	}
}

// createTopic creates topic with n partitions on the broker at addr.
func createTopic(t *testing.T, addr, topic string, n int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, n, 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 30000
	resp, err := req.RequestWith(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range resp.Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
	}
}

// TestArchiverConfig: the archiver: section's errors name archiver.<key>
// with the file and line; a file with only archiver: validates.
func TestArchiverConfig(t *testing.T) {
	base := "archiver:\n  brokers: 127.0.0.1:9092\n  dir: /tmp/fleet\n  key: /tmp/k\n"
	for _, c := range []struct{ name, yaml, want string }{
		{"no brokers", "archiver:\n  dir: /tmp/fleet\n  key: /k\n", "c.yaml:1: archiver.brokers: required"},
		{"no dir", "archiver:\n  brokers: b:9092\n  key: /k\n", "c.yaml:1: archiver.dir: required"},
		{"no key", "archiver:\n  brokers: b:9092\n  dir: /d\n", "c.yaml:1: archiver.key: required"},
		{"unknown key", base + "  colour: red\n", "c.yaml:5: unknown key \"colour\""},
		{"encoding", base + "  encoding: jsonl\n", "c.yaml:5: archiver.encoding: \"jsonl\": want json (files are JSON lines) or msgpack"},
		{"compression", base + "  compression: lz4\n", "c.yaml:5: archiver.compression: \"lz4\": want zstd or none"},
		{"topic", base + "  topic: \"a b\"\n", "c.yaml:5: archiver.topic: \"a b\" is not a Kafka topic name"},
		{"silence", base + "  silence: -1s\n", "c.yaml:5: archiver.silence: -1s: must be positive"},
		{"idle_close", base + "  idle_close: -1s\n", "c.yaml:5: archiver.idle_close: -1s: must be positive"},
		{"batch", base + "  batch: -1\n", "c.yaml:5: archiver.batch: -1: must be positive"},
		{"dedupe_window", base + "  dedupe_window: -5\n", "c.yaml:5: archiver.dedupe_window: -5: must be positive"},
		{"max_size", base + "  max_size: nine\n", "c.yaml:5"},
		{"max_size negative", base + "  max_size: -1\n", "c.yaml:5: archiver.max_size: -1: must be positive"},
		{"origin", base + "  origin: \" x\"\n", "c.yaml:5: archiver.origin"},
		{"tls without enable", base + "  tls:\n    ca_file: /ca.pem\n", "c.yaml:6: archiver.tls.ca_file: set while tls.enable is false"},
		{"plain without tls", base + "  sasl: {mechanism: PLAIN, username: u, password: p4ssw0rd}\n", "c.yaml:5: archiver.sasl.mechanism: PLAIN without TLS"},
		{"sasl mechanism", base + "  sasl: {mechanism: GSSAPI, username: u, password: p4ssw0rd}\n", "archiver.sasl.mechanism: \"GSSAPI\""},
		{"no sinks, no archiver", "log: {level: info}\n", "sinks: no sink"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadConfig("c.yaml", []byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "p4ssw0rd") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
	c, err := LoadConfig("c.yaml", []byte(base+"  group: g1\n  silence: 2m\n  encoding: msgpack\n  compression: none\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Archiver; a.Group != "g1" || time.Duration(a.Silence) != 2*time.Minute || a.Encoding != "msgpack" || len(c.Sinks) != 0 {
		t.Errorf("archiver section: %+v", a)
	}
	p := filepath.Join(t.TempDir(), "a.yaml")
	if err := os.WriteFile(p, []byte(base+"  tls: {enable: true, insecure_skip_verify: true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"validate", p}, &out, &errb); code != 0 || !strings.Contains(out.String(), ": ok") ||
		!strings.Contains(out.String(), "warning: archiver.tls.insecure_skip_verify") {
		t.Errorf("validate an archiver-only file: exit %d: %s%s", code, out.String(), errb.String())
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
