package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/cnstream/cnstream/archive"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
)

// archiveFixture is a real archive written by the file sink with archive
// on: events of host "hostA" on two CPUs, several closed files.
type archiveFixture struct {
	dir, key, pub string
	events        int
}

// testArchiveEvents returns n connector events of host on two CPU
// streams, seqs contiguous per CPU from 1, except those in skip (left out);
// gapped ones (in gap) are left out and stated by a gap record.
func testArchiveEvents(host string, n int, skip, gap map[int]bool) []schema.Event {
	h := &schema.Host{Hostname: host, MachineID: "m-" + host, BootID: "boot-" + host}
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var out []schema.Event
	for i := range n {
		cpu := uint32(i % 2)
		seq := uint32(i/2 + 1)
		st := &schema.Stream{Idx: 1, Val: 1, CPU: cpu, Seq: seq}
		if gap[i] {
			out = append(out, schema.Event{Version: 1, Kind: schema.KindGap, Time: t0.Add(time.Duration(i) * time.Millisecond), Host: h,
				Stream: &schema.Stream{Idx: 1, Val: 1, CPU: cpu, Seq: seq + 1},
				Record: &schema.Record{Run: "run-" + host, Seq: uint64(i)}, Gap: &schema.GapInfo{Expected: seq, Got: seq + 1, Missing: 1}})
			continue
		}
		if skip[i] {
			continue
		}
		out = append(out, schema.Event{Version: 1, Kind: schema.KindFork, Time: t0.Add(time.Duration(i) * time.Millisecond), MonoNS: uint64(i),
			Host: h, Stream: st, Fork: &schema.ForkEvent{ParentPID: 1, ParentTGID: 1, ChildPID: uint32(1000 + i), ChildTGID: uint32(1000 + i)}})
	}
	return out
}

func newTestKey(t *testing.T, dir, name string) (key, pub string) {
	t.Helper()
	key = filepath.Join(dir, name+".key")
	var out, errb bytes.Buffer
	if code := run(t.Context(), []string{"keygen", "--out", key, "--name", name}, &out, &errb); code != 0 {
		t.Fatalf("keygen: %s", errb.String())
	}
	return key, key + ".pub"
}

// writeTestArchive writes events with the real file sink, archive on,
// rotating every ~20 KiB, and closes it (every file signed).
func writeTestArchive(t *testing.T, dir, key, origin string, format file.Format, compression file.Compression, events []schema.Event) {
	t.Helper()
	s, err := file.New(file.Config{Dir: dir, Format: format, MaxSize: 20 << 10, Compression: compression,
		Archive: &file.ArchiveConfig{Key: key, Origin: origin}})
	if err != nil {
		t.Fatal(err)
	}
	for len(events) > 0 {
		n := min(len(events), 100)
		if err := s.WriteBatch(t.Context(), events[:n]); err != nil {
			t.Fatal(err)
		}
		events = events[n:]
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func newArchiveFixture(t *testing.T, format file.Format, compression file.Compression) archiveFixture {
	t.Helper()
	base := t.TempDir()
	key, pub := newTestKey(t, base, "hostA-key")
	dir := filepath.Join(base, "archive")
	evs := testArchiveEvents("hostA", 2000, nil, map[int]bool{101: true, 700: true})
	writeTestArchive(t, dir, key, "cnstream/hostA", format, compression, evs)
	return archiveFixture{dir: dir, key: key, pub: pub, events: 1998}
}

func runVerify(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), append([]string{"verify"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// dataFiles returns the archive's closed data files (not leaves), in order.
func dataFiles(t *testing.T, dir string) []string {
	t.Helper()
	a, err := file.OpenArchive(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range a.Files {
		if !f.Active {
			out = append(out, f.Path)
		}
	}
	if len(out) < 4 {
		t.Fatalf("the fixture has %d closed files; the tests need at least 4", len(out))
	}
	return out
}

// TestVerifyIntact: an archive as the sink leaves it verifies, in both
// encodings, compressed or not; the table and the JSON report say what
// it holds.
func TestVerifyIntact(t *testing.T) {
	for _, c := range []struct {
		format file.Format
		comp   file.Compression
	}{{file.JSONL, file.None}, {file.JSONL, file.Zstd}, {file.Msgpack, file.Zstd}} {
		t.Run(string(c.format)+"-"+string(c.comp), func(t *testing.T) {
			fx := newArchiveFixture(t, c.format, c.comp)
			code, out, errs := runVerify(t, fx.dir, "--key", fx.pub)
			if code != 0 {
				t.Fatalf("verify: exit %d\n%s\n%s", code, out, errs)
			}
			for _, want := range []string{"hostA", "boot-hos", fmt.Sprint(fx.events), "OK: intact and every event accounted for", "2026-12-06T12:00:00Z"} {
				if !strings.Contains(out, want) {
					t.Errorf("table lacks %q:\n%s", want, out)
				}
			}
			code, out, _ = runVerify(t, fx.dir, "--key", fx.pub, "--json")
			var r struct {
				Intact, Complete bool
				Records          int64
				Hosts            []struct {
					Hostname    string
					Events      uint64
					Lost        uint64 `json:"provably_lost"`
					Unaccounted uint64
				}
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 {
				t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
			}
			if !r.Intact || !r.Complete || r.Records != 2000 || len(r.Hosts) != 1 || r.Hosts[0].Events != uint64(fx.events) || r.Hosts[0].Lost != 2 || r.Hosts[0].Unaccounted != 0 {
				t.Fatalf("report: %+v", r)
			}
		})
	}
}

// TestVerifyDetects: each kind of damage is found, named (file, record or
// checkpoint, reason) and fails with exit status 1.
func TestVerifyDetects(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, fx archiveFixture) string // returns what the message must name
		want   []string
	}{
		{"flipped byte", func(t *testing.T, fx archiveFixture) string {
			f := dataFiles(t, fx.dir)[2]
			b, _ := os.ReadFile(f)
			// The 6th line's first digit of its mono_ns.
			lines := bytes.SplitAfter(b, []byte("\n"))
			off := 0
			for _, l := range lines[:5] {
				off += len(l)
			}
			i := off + bytes.Index(lines[5], []byte(`"mono_ns":`)) + len(`"mono_ns":`)
			b[i] ^= 0x01
			os.WriteFile(f, b, 0o640)
			return filepath.Base(f)
		}, []string{"record 5", "edited"}},
		{"truncated file", func(t *testing.T, fx archiveFixture) string {
			f := dataFiles(t, fx.dir)[1]
			b, _ := os.ReadFile(f)
			lines := bytes.SplitAfter(b, []byte("\n"))
			keep := 0
			for _, l := range lines[:10] {
				keep += len(l)
			}
			os.Truncate(f, int64(keep))
			return filepath.Base(f)
		}, []string{"truncated", "10 of"}},
		{"missing middle file", func(t *testing.T, fx archiveFixture) string {
			f := dataFiles(t, fx.dir)[2]
			os.Remove(f)
			return filepath.Base(f)
		}, []string{"missing"}},
		{"re-signed checkpoint", func(t *testing.T, fx archiveFixture) string {
			// The attacker's key, of the same name: the text is kept, the
			// signature is the attacker's.
			other, _ := newTestKey(t, t.TempDir(), "hostA-key")
			sk, _ := os.ReadFile(other)
			signer, err := note.NewSigner(strings.TrimSpace(string(sk)))
			if err != nil {
				t.Fatal(err)
			}
			cps, _ := filepath.Glob(filepath.Join(fx.dir, "checkpoints", "*.note"))
			sort.Strings(cps)
			msg, _ := os.ReadFile(cps[1])
			text, _, _ := strings.Cut(string(msg), "\n\n")
			resigned, err := archive.Sign([]byte(text+"\n"), signer)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(cps[1], resigned, 0o640)
			return "checkpoint 1"
		}, []string{"not signed by the key given"}},
		{"checkpoint deleted", func(t *testing.T, fx archiveFixture) string {
			cps, _ := filepath.Glob(filepath.Join(fx.dir, "checkpoints", "*.note"))
			sort.Strings(cps)
			os.Remove(cps[2])
			return "checkpoint 2"
		}, []string{"broken chain"}},
		{"checkpoint edited", func(t *testing.T, fx archiveFixture) string {
			cps, _ := filepath.Glob(filepath.Join(fx.dir, "checkpoints", "*.note"))
			sort.Strings(cps)
			msg, _ := os.ReadFile(cps[3])
			// One more record claimed for the file it adds.
			i := bytes.Index(msg, []byte("\nfile ")) + len("\nfile ")
			msg[i]++
			os.WriteFile(cps[3], msg, 0o640)
			return "checkpoint 3"
		}, []string{"invalid signature"}},
		{"file from another host", func(t *testing.T, fx archiveFixture) string {
			// hostB's archive, with its own key: its first file is put
			// into hostA's archive under the next name.
			base := t.TempDir()
			kb, _ := newTestKey(t, base, "hostB-key")
			bdir := filepath.Join(base, "b")
			writeTestArchive(t, bdir, kb, "cnstream/hostB", file.JSONL, file.None, testArchiveEvents("hostB", 300, nil, nil))
			bf := dataFiles(t, bdir)[0]
			b, _ := os.ReadFile(bf)
			last := dataFiles(t, fx.dir)
			name := filepath.Base(last[len(last)-1])
			// events-<seq>-<time>.jsonl: the next seq.
			var seq int
			fmt.Sscanf(strings.TrimPrefix(name, "events-"), "%d", &seq)
			next := fmt.Sprintf("events-%010d-20261206T130000Z.jsonl", seq+1)
			os.WriteFile(filepath.Join(fx.dir, next), b, 0o640)
			return next
		}, []string{"not covered by any checkpoint"}},
		{"reordered files", func(t *testing.T, fx archiveFixture) string {
			fs := dataFiles(t, fx.dir)
			a, b := fs[1], fs[2]
			ab, _ := os.ReadFile(a)
			bb, _ := os.ReadFile(b)
			os.WriteFile(a, bb, 0o640)
			os.WriteFile(b, ab, 0o640)
			return filepath.Base(a)
		}, []string{"file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fx := newArchiveFixture(t, file.JSONL, file.None)
			named := c.damage(t, fx)
			code, out, errs := runVerify(t, fx.dir, "--key", fx.pub)
			if code != 1 {
				t.Fatalf("verify of a damaged archive: exit %d\n%s\n%s", code, out, errs)
			}
			for _, want := range append(c.want, named) {
				if !strings.Contains(errs, want) {
					t.Errorf("error lacks %q: %s", want, errs)
				}
			}
			if !strings.Contains(out, "BROKEN") {
				t.Errorf("table does not say BROKEN:\n%s", out)
			}
		})
	}
}

// TestVerifyUnaccounted: an intact archive whose streams have holes that
// no record explains fails as incomplete, with the exact count.
func TestVerifyUnaccounted(t *testing.T) {
	base := t.TempDir()
	key, pub := newTestKey(t, base, "k")
	dir := filepath.Join(base, "a")
	skip := map[int]bool{10: true, 11: true, 500: true} // 3 numbers gone, no record
	writeTestArchive(t, dir, key, "cnstream/hostA", file.JSONL, file.Zstd, testArchiveEvents("hostA", 1000, skip, nil))
	code, out, errs := runVerify(t, dir, "--key", pub, "--json")
	if code != 1 || !strings.Contains(errs, "unaccounted") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r struct {
		Intact, Complete bool
		Hosts            []struct{ Unaccounted uint64 }
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Intact || r.Complete || len(r.Hosts) != 1 || r.Hosts[0].Unaccounted != 3 {
		t.Fatalf("report: %+v", r)
	}
}

// TestVerifyUsage: what keeps verify from starting is a clear error.
func TestVerifyUsage(t *testing.T) {
	fx := newArchiveFixture(t, file.JSONL, file.None)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{fx.dir}, 2, "--key PUB is required"},
		{[]string{fx.dir, "--key", fx.key}, 1, "signer (private) key"},
		{[]string{fx.dir, "--key", filepath.Join(fx.dir, "nope.pub")}, 1, "no such file"},
		{[]string{filepath.Join(fx.dir, "nothing-here"), "--key", fx.pub}, 1, "archive directory: stat"},
		{[]string{filepath.Join(fx.dir, "checkpoints"), "--key", fx.pub}, 1, "no archive files"},
		{[]string{"--key", fx.pub}, 2, "DIR"},
	} {
		code, _, errs := runVerify(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("verify %q: exit %d (want %d): %s", c.args, code, c.code, errs)
		}
	}
}

// BenchmarkVerify: verifyArchive over an archive of 200,000 fork events
// (about 330 bytes each as JSON), compressed and not: records/s and MB/s
// of records read, hashed and audited. testenv/bench-archive measures a
// 10M-event archive with the real binary on one core.
func BenchmarkVerify(b *testing.B) {
	for _, c := range []struct {
		format file.Format
		comp   file.Compression
	}{{file.JSONL, file.None}, {file.JSONL, file.Zstd}, {file.Msgpack, file.Zstd}} {
		b.Run(string(c.format)+"-"+string(c.comp), func(b *testing.B) {
			base := b.TempDir()
			key := filepath.Join(base, "k")
			skey, vkey, err := archive.GenerateKey("bench")
			if err != nil {
				b.Fatal(err)
			}
			os.WriteFile(key, []byte(skey+"\n"), 0o600)
			verifier, err := note.NewVerifier(vkey)
			if err != nil {
				b.Fatal(err)
			}
			dir := filepath.Join(base, "a")
			evs := testArchiveEvents("hostA", 200_000, nil, nil)
			s, err := file.New(file.Config{Dir: dir, Format: c.format, Compression: c.comp, Sync: file.SyncNever, MaxSize: 16 << 20,
				Archive: &file.ArchiveConfig{Key: key, Origin: "cnstream/hostA"}})
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < len(evs); i += 1000 {
				if err := s.WriteBatch(b.Context(), evs[i:i+1000]); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.Close(b.Context()); err != nil {
				b.Fatal(err)
			}
			var r *verifyReport
			b.ResetTimer()
			for b.Loop() {
				if r, err = verifyArchive(dir, "events", "", verifier); err != nil || r.Problem != nil || !r.Complete {
					b.Fatalf("%v %+v", err, r)
				}
			}
			b.SetBytes(r.Bytes)
			b.ReportMetric(float64(r.Records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(r.Records)/float64(b.N), "ns/record")
		})
	}
}

// TestVerifyFleetOrigin: an archive of the fleet archiver (origin
// cnstream-archive/<host>/<boot>) holds that host and boot's events only:
// one signed with another boot in its origin is named.
func TestVerifyFleetOrigin(t *testing.T) {
	base := t.TempDir()
	key, pub := newTestKey(t, base, "fleet")
	evs := testArchiveEvents("hostA", 300, nil, nil)
	good, bad := filepath.Join(base, "good"), filepath.Join(base, "bad")
	writeTestArchive(t, good, key, "cnstream-archive/hostA/boot-hostA", file.JSONL, file.Zstd, evs)
	writeTestArchive(t, bad, key, "cnstream-archive/hostA/boot-other", file.JSONL, file.Zstd, evs)
	if code, out, errs := runVerify(t, good, "--key", pub); code != 0 {
		t.Fatalf("fleet archive: exit %d\n%s%s", code, out, errs)
	}
	code, _, errs := runVerify(t, bad, "--key", pub)
	if code != 1 || !strings.Contains(errs, `an event of host "hostA" boot "boot-hostA" in the archive of "hostA" (origin cnstream-archive/hostA/boot-other)`) {
		t.Fatalf("another boot's events: exit %d: %s", code, errs)
	}
}
