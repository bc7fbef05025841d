package main

import (
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
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
	"github.com/cnstream/cnstream/testenv/brokers"
)

var replayBase = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// writeArchive writes n process events (fork, exec, exit; event i at
// replayBase + i s) with a gap and a dropped record every 40 events, through
// the real file sink: small files, rotated and compressed. It returns the
// events as the Reader reads them back.
func writeArchive(t testing.TB, dir string, format file.Format, n int, run string) []schema.Event {
	t.Helper()
	return writeArchiveSized(t, dir, format, n, run, 8<<10)
}

func writeArchiveSized(t testing.TB, dir string, format file.Format, n int, run string, maxSize int64) []schema.Event {
	t.Helper()
	s, err := file.New(file.Config{Dir: dir, Format: format, MaxSize: maxSize, Compression: file.Zstd, Sync: file.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	host := schema.Host{Hostname: "replay-host", MachineID: "0123456789abcdef", BootID: "boot-" + run}
	recs := schema.NewRecords(run, host)
	var batch []schema.Event
	for i := range n {
		at := replayBase.Add(time.Duration(i) * time.Second)
		st := schema.Stream{Idx: schema.ProcID.Idx, Val: schema.ProcID.Val, CPU: uint32(i % 2), Seq: uint32(i)}
		var e schema.Event
		switch {
		case i%40 == 13:
			e = recs.Gap(st, uint32(i-3), uint32(i), 3, "")
		case i%40 == 27:
			e = recs.Dropped(5, "queue_full_drop_newest", "kafka")
		default:
			e = schema.Event{Version: schema.EventVersion, Host: &host, Stream: &st, MonoNS: uint64(i) * 1000}
			pid := uint32(1000 + i)
			switch i % 3 {
			case 0:
				e.Kind, e.Fork = schema.KindFork, &schema.ForkEvent{ParentPID: 1, ParentTGID: 1, ChildPID: pid, ChildTGID: pid}
			case 1:
				e.Kind, e.Exec = schema.KindExec, &schema.ExecEvent{PID: pid, TGID: pid}
			default:
				e.Kind, e.Exit = schema.KindExit, &schema.ExitInfo{PID: pid, TGID: pid, ParentPID: 1, ParentTGID: 1}
			}
		}
		e.Time = at
		batch = append(batch, e)
		if len(batch) == 17 || i == n-1 {
			if err := s.WriteBatch(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := file.NewReader(file.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	zst := 0
	for _, f := range r.Files() {
		if strings.HasSuffix(f, ".zst") {
			zst++
		}
	}
	r.Close()
	if zst < 3 {
		t.Fatalf("archive %s: %d compressed files, want rotation and compression to be exercised", dir, zst)
	}
	events, err := file.ReadAll(file.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != n {
		t.Fatalf("archive: read back %d events, wrote %d", len(events), n)
	}
	return events
}

// fileSinkConfig writes a SINK_CONFIG with one file sink into out (and
// extra YAML sinks after it), returns its path.
func fileSinkConfig(t *testing.T, out, extra string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "sinks.yaml")
	text := fmt.Sprintf("sinks:\n  - name: files\n    type: file\n    batch: {events: 20}\n    file: {dir: %s, sync: never}\n%s", out, extra)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func ids(events []schema.Event) []string {
	out := make([]string, len(events))
	for i := range events {
		out[i] = events[i].EventID()
	}
	return out
}

func replay(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	err := replayCmd(ctx, args, &stdout, &stderr)
	return stderr.String(), err
}

// TestReplayToFiles: an archive written by the file sink (rotated,
// compressed, with gap and dropped records), JSON lines and msgpack,
// replayed to a file sink: the same events, the same ids, in the same
// order; the archive is left as it was and the state names the last event.
func TestReplayToFiles(t *testing.T) {
	for _, format := range []file.Format{file.JSONL, file.Msgpack} {
		t.Run(string(format), func(t *testing.T) {
			archive, out := t.TempDir(), t.TempDir()
			want := writeArchive(t, archive, format, 400, "r1")
			before := dirListing(t, archive)
			state := filepath.Join(t.TempDir(), "replay.state")
			stderr, err := replay(context.Background(), archive, "--to", fileSinkConfig(t, out, ""), "--state", state, "--progress", "none")
			if err != nil {
				t.Fatalf("replay: %v; stderr: %s", err, stderr)
			}
			got, err := file.ReadAll(file.Config{Dir: out})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ids(want), ids(got)); diff != "" {
				t.Errorf("ids (-archive +replayed):\n%s", diff)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("events (-archive +replayed):\n%s", diff)
			}
			if diff := cmp.Diff(before, dirListing(t, archive)); diff != "" {
				t.Errorf("the archive changed (-before +after):\n%s", diff)
			}
			if !strings.Contains(stderr, "400 events read from the archive (0 skipped") || !strings.Contains(stderr, "sink files: 400 events in 20 batches") {
				t.Errorf("summary %q: want 400 read, 400 sent to files in batches of 20", stderr)
			}
			var st replayState
			b, err := os.ReadFile(state)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatal(err)
			}
			if st.Read != 400 || st.LastID != want[399].EventID() || st.Archive != archive || st.Sent["files"] != 400 {
				t.Errorf("state %+v: want 400 read, last id %s, archive %s, 400 sent", st, want[399].EventID(), archive)
			}
		})
	}
}

// dirListing is the names, sizes and modes of dir's files.
func dirListing(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %d %v %v", e.Name(), info.Size(), info.Mode(), info.ModTime()))
	}
	return out
}

// TestReplayFilters: --kind and --since/--until send exactly the events of
// the archive that match (since <= time < until), in order; loss records
// are kept unless --kind leaves them out.
func TestReplayFilters(t *testing.T) {
	archive := t.TempDir()
	all := writeArchive(t, archive, file.JSONL, 200, "r1")
	since, until := replayBase.Add(50*time.Second), replayBase.Add(150*time.Second)
	for _, tc := range []struct {
		name string
		args []string
		keep func(e schema.Event) bool
	}{
		{"kinds", []string{"--kind", "fork,gap", "--kind", "DROPPED"}, func(e schema.Event) bool {
			return e.Kind == schema.KindFork || e.Kind == schema.KindGap || e.Kind == schema.KindDropped
		}},
		{"window", []string{"--since", since.Format(time.RFC3339), "--until", until.Format(time.RFC3339)}, func(e schema.Event) bool {
			return !e.Time.Before(since) && e.Time.Before(until)
		}},
		{"both", []string{"--kind", "exec,gap", "--since", since.Format(time.RFC3339)}, func(e schema.Event) bool {
			return (e.Kind == schema.KindExec || e.Kind == schema.KindGap) && !e.Time.Before(since)
		}},
		{"until a duration ago", []string{"--until", "1h"}, func(e schema.Event) bool { return e.Time.Before(time.Now().Add(-time.Hour)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			var want []schema.Event
			for _, e := range all {
				if tc.keep(e) {
					want = append(want, e)
				}
			}
			args := append([]string{archive, "--to", fileSinkConfig(t, out, ""), "--state", filepath.Join(t.TempDir(), "s"), "--progress", "none"}, tc.args...)
			stderr, err := replay(context.Background(), args...)
			if err != nil {
				t.Fatalf("replay: %v; stderr: %s", err, stderr)
			}
			got, err := file.ReadAll(file.Config{Dir: out})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ids(want), ids(got)); diff != "" {
				t.Errorf("ids (-want +replayed):\n%s", diff)
			}
			if s := fmt.Sprintf("%d left out by the filters, %d sent", 200-len(want), len(want)); !strings.Contains(stderr, s) {
				t.Errorf("summary %q: want %q", stderr, s)
			}
		})
	}
}

// gateWriter lets open writes through, then holds every write until ctx
// ends and fails it: a stdout sink on it stops acknowledging.
type gateWriter struct {
	ctx  context.Context
	open atomic.Int64
}

func (g *gateWriter) Write(p []byte) (int, error) {
	if g.open.Add(-1) >= 0 {
		return len(p), nil
	}
	<-g.ctx.Done()
	return 0, errors.New("gate closed")
}

// TestReplayResume: a replay cancelled (as SIGINT does) once its state file
// shows progress reports the interruption and keeps the state; the same
// command again resumes: it skips what was acknowledged, sends the rest, and
// every event of the archive is delivered at least once, in order.
func TestReplayResume(t *testing.T) {
	archive, out := t.TempDir(), t.TempDir()
	want := writeArchive(t, archive, file.JSONL, 300, "r1")
	// A second sink, stdout, on a writer that stops acknowledging after
	// three batches: the replay cannot finish before the cancellation.
	cfg := fileSinkConfig(t, out, "  - name: out\n    type: stdout\n    batch: {events: 20}\n")
	state := filepath.Join(t.TempDir(), "replay.state")
	args := []string{archive, "--to", cfg, "--state", state, "--progress", "log"}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gate := &gateWriter{ctx: ctx}
	gate.open.Store(3)
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- replayCmd(ctx, args, gate, &stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Three batches pass the gate; the state stops at 60.
		if st, err := loadReplayState(state); err == nil && st != nil && st.Read >= 60 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the state file did not reach 60 events within 10 s")
		}
		time.Sleep(5 * time.Millisecond) // polling the state file
	}
	cancel()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "interrupted after 60 events; run the same command again to resume") {
		t.Fatalf("cancelled replay: %v; want interrupted after 60 events (3 batches of 20); stderr: %s", err, stderr.String())
	}
	if err := replayCmd(context.Background(), []string{archive, "--to", cfg, "--state", state, "--progress", "none"}, io.Discard, &stderr); err != nil {
		t.Fatalf("second run: %v; stderr: %s", err, stderr.String())
	}
	if s := "resuming after 60 events acknowledged by an earlier run"; !strings.Contains(stderr.String(), s) {
		t.Errorf("second run's stderr %q: want %q", stderr.String(), s)
	}
	if s := "300 events read from the archive (60 skipped: acknowledged by an earlier run), 0 left out by the filters, 240 sent"; !strings.Contains(stderr.String(), s) {
		t.Errorf("second run's stderr %q: want %q", stderr.String(), s)
	}
	got, err := file.ReadAll(file.Config{Dir: out})
	if err != nil {
		t.Fatal(err)
	}
	// At least once, in order: the delivered ids with repeats of an
	// unacknowledged round removed are the archive's.
	var dedup []string
	seen := map[string]bool{}
	for _, id := range ids(got) {
		if !seen[id] {
			seen[id] = true
			dedup = append(dedup, id)
		}
	}
	if diff := cmp.Diff(ids(want), dedup); diff != "" {
		t.Errorf("delivered ids, first of each (-archive +delivered):\n%s", diff)
	}
	if len(got) < len(want) || len(got) > len(want)+20 {
		t.Errorf("%d events delivered for %d in the archive: want at most one round (20) sent twice", len(got), len(want))
	}
}

// TestReplayChangedArchive: a state is refused for another archive, and
// for its own archive once the event at its resume point is not the one
// it names.
func TestReplayChangedArchive(t *testing.T) {
	archive, other, out := t.TempDir(), t.TempDir(), t.TempDir()
	writeArchive(t, archive, file.JSONL, 100, "r1")
	writeArchive(t, other, file.JSONL, 100, "r2")
	cfg := fileSinkConfig(t, out, "")
	state := filepath.Join(t.TempDir(), "replay.state")
	if stderr, err := replay(context.Background(), archive, "--to", cfg, "--state", state, "--progress", "none"); err != nil {
		t.Fatalf("replay: %v; stderr: %s", err, stderr)
	}
	_, err := replay(context.Background(), other, "--to", cfg, "--state", state, "--progress", "none")
	if err == nil || !strings.Contains(err.Error(), "is for archive "+archive) {
		t.Errorf("another archive's state: %v; want a refusal naming the state's archive", err)
	}
	_, err = replay(context.Background(), archive, "--to", cfg, "--state", state, "--progress", "none", "--kind", "fork")
	if err == nil || !strings.Contains(err.Error(), "other filters") {
		t.Errorf("other filters: %v; want a refusal", err)
	}
	// The archive rewritten: as many events, other ids.
	ents, _ := os.ReadDir(archive)
	for _, e := range ents {
		os.Remove(filepath.Join(archive, e.Name()))
	}
	writeArchive(t, archive, file.JSONL, 100, "r3")
	_, err = replay(context.Background(), archive, "--to", cfg, "--state", state, "--progress", "none")
	if !errors.Is(err, errArchiveChanged) || !strings.Contains(err.Error(), "the archive changed since the state was written") {
		t.Errorf("rewritten archive: %v; want %v", err, errArchiveChanged)
	}
	// Shorter than the state says.
	ents, _ = os.ReadDir(archive)
	for _, e := range ents {
		os.Remove(filepath.Join(archive, e.Name()))
	}
	writeArchive(t, archive, file.JSONL, 90, "r1")
	_, err = replay(context.Background(), archive, "--to", cfg, "--state", state, "--progress", "none")
	if !errors.Is(err, errArchiveChanged) || !strings.Contains(err.Error(), "it holds 90 events") {
		t.Errorf("shortened archive: %v; want %v naming 90 events", err, errArchiveChanged)
	}
	// --restart sends it all.
	if stderr, err := replay(context.Background(), archive, "--to", cfg, "--state", state, "--progress", "none", "--restart"); err != nil || !strings.Contains(stderr, "90 sent") {
		t.Errorf("--restart: %v; stderr %s", err, stderr)
	}
}

// TestReplayErrors: bad flags are usage errors (exit status 2) naming
// what is wrong; a missing or empty archive and an invalid configuration
// are errors (exit status 1) saying so.
func TestReplayErrors(t *testing.T) {
	archive, empty := t.TempDir(), t.TempDir()
	writeArchive(t, archive, file.JSONL, 100, "r1")
	cfg := fileSinkConfig(t, t.TempDir(), "")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("sinks:\n  - name: k\n    type: kafka\n    kafka: {topic: x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	into := filepath.Join(t.TempDir(), "into.yaml")
	if err := os.WriteFile(into, []byte("sinks:\n  - name: f\n    type: file\n    file: {dir: "+archive+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := []string{"--state", filepath.Join(t.TempDir(), "s")}
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no dir", []string{"--to", cfg}, 2, "needs the archive DIR"},
		{"two dirs", []string{archive, empty, "--to", cfg}, 2, "takes one DIR"},
		{"no --to", []string{archive}, 2, "--to SINK_CONFIG is required"},
		{"unknown kind", []string{archive, "--to", cfg, "--kind", "fork,spawn"}, 2, `unknown kind "spawn"`},
		{"bad since", []string{archive, "--to", cfg, "--since", "yesterday"}, 2, `--since "yesterday": want an RFC 3339 time`},
		{"empty window", []string{archive, "--to", cfg, "--since", "2026-12-02T00:00:00Z", "--until", "2026-12-01T00:00:00Z"}, 2, "is not before --until"},
		{"bad progress", []string{archive, "--to", cfg, "--progress", "fancy"}, 2, `--progress "fancy"`},
		{"unknown flag", []string{archive, "--to", cfg, "--from", "1h"}, 2, "flag provided but not defined: -from"},
		{"missing dir", []string{filepath.Join(empty, "nope"), "--to", cfg}, 1, "no such file or directory"},
		{"no files", []string{empty, "--to", cfg}, 1, `no files of prefix "events"`},
		{"other prefix", []string{archive, "--to", cfg, "--prefix", "audit"}, 1, `no files of prefix "audit"`},
		{"missing config", []string{archive, "--to", filepath.Join(empty, "nope.yaml")}, 1, "read sink config"},
		{"invalid config", []string{archive, "--to", bad}, 1, "kafka.brokers"},
		{"sink into the archive", []string{archive, "--to", into}, 1, "writes into the archive directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// main's run maps a usage error to exit status 2, others to 1.
			_, err := replay(context.Background(), append(tc.args, state...)...)
			code := 1
			if errors.Is(err, errUsage) {
				code = 2
			}
			if err == nil || code != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %v (exit status %d); want %d and %q", err, code, tc.code, tc.msg)
			}
		})
	}
	before := dirListing(t, archive)
	if diff := cmp.Diff(before, dirListing(t, archive)); diff != "" {
		t.Errorf("archive changed:\n%s", diff)
	}
}

// recordingDisplay keeps every position a replay reports.
type recordingDisplay struct{ pos []int64 }

func (d *recordingDisplay) update(_ uint64, pos int64) { d.pos = append(d.pos, pos) }
func (d *recordingDisplay) finish()                    {}

// TestReplayPosition: the position a replay reports, in bytes of the
// archive's files on disk, never goes back, moves within files (from the
// leaves files of an archive; from the bytes of an uncompressed file; only
// at file ends for a compressed file without leaves), and ends at the
// total.
func TestReplayPosition(t *testing.T) {
	for _, c := range []struct {
		name    string
		write   func(t *testing.T, dir string)
		inFiles bool // positions strictly inside files are reported
	}{
		{"zst without leaves", func(t *testing.T, dir string) { writeArchiveSized(t, dir, file.JSONL, 3000, "p1", 64<<10) }, false},
		{"archive with leaves", func(t *testing.T, dir string) {
			key, _ := newTestKey(t, t.TempDir(), "pos")
			writeTestArchive(t, dir, key, "cnstream/hostA", file.Msgpack, file.Zstd, testArchiveEvents("hostA", 3000, nil, nil))
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.write(t, dir)
			a, err := file.OpenArchive(dir, "events")
			if err != nil {
				t.Fatal(err)
			}
			filter, err := newReplayFilter(time.Now(), "", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			d := &recordingDisplay{}
			rp := &replayer{files: a.Files, filter: filter, state: &replayState{Sent: map[string]uint64{}},
				statePath: filepath.Join(t.TempDir(), "state"), stderr: io.Discard, show: d}
			var ends []int64
			for _, f := range a.Files {
				rp.total += fileSize(f.Path)
				ends = append(ends, rp.total)
			}
			if err := rp.run(t.Context()); err != nil {
				t.Fatal(err)
			}
			if rp.read != rp.state.Read || rp.read < 3000 {
				t.Fatalf("read %d, state %d", rp.read, rp.state.Read)
			}
			// Inside the compressed files (all but the active file, which
			// is last and uncompressed).
			inside := 0
			for i, p := range d.pos {
				if i > 0 && p < d.pos[i-1] {
					t.Fatalf("position went back from %d to %d", d.pos[i-1], p)
				}
				if !slices.Contains(ends, p) && p != 0 && p < ends[len(ends)-2] {
					inside++
				}
			}
			if last := d.pos[len(d.pos)-1]; last != rp.total {
				t.Errorf("last position %d, want the total %d", last, rp.total)
			}
			if c.inFiles != (inside > 0) {
				t.Errorf("%d positions inside files of %d reported", inside, len(d.pos))
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	got := progressLine(10*time.Second, 5000, 7000, 1000, 3000, 10000)
	want := "cnstream replay: 7000 events, 500 events/s, 30.0% of 10000 bytes, ETA 1m10s"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if got := progressLine(time.Second, 0, 0, 0, 0, 100); !strings.Contains(got, "ETA unknown") {
		t.Errorf("no progress yet: %q", got)
	}
}

// TestReplayKafka: replays to a real Kafka broker (one for both subtests).
func TestReplayKafka(t *testing.T) {
	addr := brokers.Kafka(t)
	t.Run("ids", func(t *testing.T) { replayKafkaIDs(t, addr) })
	t.Run("refused", func(t *testing.T) { replayKafkaRefused(t, addr) })
}

// replayKafkaIDs: the archive replayed to Kafka; read back with kcat (an
// independent client), the messages' cnstream-event-id headers are the
// archive's ids in order and the keys its host.
func replayKafkaIDs(t *testing.T, addr string) {
	archive := t.TempDir()
	want := writeArchive(t, archive, file.Msgpack, 300, "r1")
	topic := fmt.Sprintf("cnstream-replay-test-%d", rand.Uint32())
	cfg := filepath.Join(t.TempDir(), "kafka.yaml")
	text := fmt.Sprintf("sinks:\n  - name: kafka\n    type: kafka\n    batch: {events: 100}\n    kafka: {brokers: [%q], topic: %s, encoding: json}\n", addr, topic)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stderr, err := replay(ctx, archive, "--to", cfg, "--state", filepath.Join(t.TempDir(), "s"), "--progress", "none")
	if err != nil {
		t.Fatalf("replay: %v; stderr: %s", err, stderr)
	}
	out, err := exec.Command("kcat", "-C", "-b", addr, "-t", topic, "-e", "-q", "-f", "%k\t%h\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	var keys, got []string
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		key, headers, _ := strings.Cut(l, "\t")
		keys = append(keys, key)
		id := ""
		for _, h := range strings.Split(headers, ",") {
			if v, ok := strings.CutPrefix(h, "cnstream-event-id="); ok {
				id = v
			}
		}
		got = append(got, id)
	}
	if diff := cmp.Diff(ids(want), got); diff != "" {
		t.Errorf("kafka ids (-archive +kcat):\n%s", diff)
	}
	for i, k := range keys {
		if k != "replay-host" {
			t.Errorf("message %d: key %q, want the archive's host replay-host", i, k)
			break
		}
	}
}

// replayKafkaRefused: an event the Kafka sink refuses for good (larger
// than max_request_bytes) stops the replay with an error naming the sink
// and the event; the events before it were delivered and the state does
// not go past it.
func replayKafkaRefused(t *testing.T, addr string) {
	archive := t.TempDir()
	s, err := file.New(file.Config{Dir: archive, Sync: file.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	host := schema.Host{Hostname: "replay-host", BootID: "boot-big"}
	var events []schema.Event
	for i := range 30 {
		st := schema.Stream{Idx: schema.ProcID.Idx, Val: schema.ProcID.Val, Seq: uint32(i)}
		e := schema.Event{Version: schema.EventVersion, Kind: schema.KindExec, Time: replayBase, Host: &host, Stream: &st,
			Exec: &schema.ExecEvent{PID: uint32(100 + i), TGID: uint32(100 + i)}}
		if i == 25 {
			e.Process = &schema.Process{Cmdline: []string{strings.Repeat("x", 4000)}}
		}
		events = append(events, e)
	}
	if err := s.WriteBatch(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	topic := fmt.Sprintf("cnstream-replay-refused-%d", rand.Uint32())
	cfg := filepath.Join(t.TempDir(), "kafka.yaml")
	text := fmt.Sprintf("sinks:\n  - name: kafka\n    type: kafka\n    batch: {events: 10}\n    kafka: {brokers: [%q], topic: %s, encoding: json, max_request_bytes: 2048}\n", addr, topic)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	state := filepath.Join(t.TempDir(), "s")
	stderr, err := replay(ctx, archive, "--to", cfg, "--state", state, "--progress", "none")
	want := fmt.Sprintf(`sink "kafka" refused event %s (event 26 of the archive, kind exec)`, events[25].EventID())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("replay: %v; want an error with %q; stderr: %s", err, want, stderr)
	}
	if st, err := loadReplayState(state); err != nil || st == nil || st.Read != 20 {
		t.Errorf("state %+v (%v): want 20 events read, the rounds before the refused event's", st, err)
	}
	out, err := exec.Command("kcat", "-C", "-b", addr, "-t", topic, "-e", "-q", "-f", "%h\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	for i := range 25 {
		if !strings.Contains(string(out), "cnstream-event-id="+events[i].EventID()+"\n") && !strings.Contains(string(out), "cnstream-event-id="+events[i].EventID()+",") {
			t.Errorf("event %d (%s) before the refused one not in the topic", i+1, events[i].EventID())
		}
	}
}

// TestReplayProgressBar: --progress bar draws the bar (here into a
// buffer, as it would on a terminal) and ends it at 100% of the archive's
// bytes with the events counted.
func TestReplayProgressBar(t *testing.T) {
	archive, out := t.TempDir(), t.TempDir()
	writeArchive(t, archive, file.JSONL, 200, "r1")
	stderr, err := replay(context.Background(), archive, "--to", fileSinkConfig(t, out, ""), "--state", filepath.Join(t.TempDir(), "s"), "--progress", "bar")
	if err != nil {
		t.Fatalf("replay: %v; stderr: %s", err, stderr)
	}
	if !strings.Contains(stderr, "replay: 200 events") || !strings.Contains(stderr, "100%") {
		t.Errorf("stderr %q: want the bar at 100%% with 200 events", stderr)
	}
}

// BenchmarkReplayToFile: events per second from a compressed JSON-lines
// archive to a file sink (batch 512, no fsync), progress tracked.
func BenchmarkReplayToFile(b *testing.B) {
	archive := b.TempDir()
	const n = 100000
	writeArchiveSized(b, archive, file.JSONL, n, "bench", 4<<20)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		out := filepath.Join(b.TempDir(), fmt.Sprint(i))
		cfg := filepath.Join(b.TempDir(), "sinks.yaml")
		if err := os.WriteFile(cfg, []byte("sinks:\n  - name: files\n    type: file\n    file: {dir: "+out+", sync: never}\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := replayCmd(context.Background(), []string{archive, "--to", cfg, "--state", filepath.Join(b.TempDir(), "s"), "--progress", "log"}, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
