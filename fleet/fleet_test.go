package fleet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/mod/sumdb/note"

	"github.com/cnstream/cnstream/archive"
	"github.com/cnstream/cnstream/audit"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/file"
	"github.com/cnstream/cnstream/sink/kafka"
	"github.com/cnstream/cnstream/testenv/brokers"
)

func TestMain(m *testing.M) { os.Exit(brokers.Run(m)) }

// waitLimit bounds every wait of these tests: reaching it is a failure
// (something hung), never a timed assertion.
const waitLimit = 90 * time.Second

// newTopic creates a topic of parts partitions with a name of its own.
func newTopic(t testing.TB, bootstrap string, parts int32) string {
	t.Helper()
	var rb [4]byte
	rand.Read(rb[:])
	name := "fleet-" + strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()) + "-" + hex.EncodeToString(rb[:])
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, parts, -1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 30000
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	return name
}

// keyFile writes a signer key and returns its path and verifier.
func keyFile(t testing.TB) (string, note.Verifier) {
	t.Helper()
	skey, vkey, err := archive.GenerateKey("fleet-test")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "archive.key")
	if err := os.WriteFile(p, []byte(skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return p, v
}

// simHost is a simulated host (after testenv/cmd/fleetgen): one boot, two
// CPU streams of contiguous numbers from 1.
type simHost struct {
	h      *schema.Host
	recs   *schema.Records
	seq    [2]uint32
	events int    // connector events made
	gaps   uint64 // numbers a gap record accounts for
	holes  uint64 // numbers skipped with no record
}

func simHosts(prefix string, n int) []*simHost {
	hs := make([]*simHost, n)
	for i := range hs {
		name := fmt.Sprintf("%s-%d", prefix, i+1)
		h := &schema.Host{Hostname: name, MachineID: fmt.Sprintf("%032x", i+1), BootID: "boot-" + name}
		hs[i] = &simHost{h: h, recs: schema.NewRecords("", *h)}
	}
	return hs
}

// gen makes per events of each host, interleaved. Every gapEvery-th event
// of a host (0: never) is preceded by a gap record of 2 numbers on CPU 1;
// hole(host index, cpu, seq) true skips that number with no record.
func gen(hs []*simHost, per, gapEvery int, hole func(h int, cpu, seq uint32) bool) []schema.Event {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var out []schema.Event
	for range per {
		for hi, h := range hs {
			i := h.events
			cpu := uint32(i % 2)
			h.seq[cpu]++
			st := schema.Stream{Idx: schema.ProcID.Idx, Val: schema.ProcID.Val, CPU: cpu}
			if gapEvery > 0 && cpu == 1 && i%gapEvery == gapEvery-1 {
				expected := h.seq[1]
				h.seq[1] += 2
				out = append(out, h.recs.Gap(st, expected, h.seq[1], 2, ""))
				h.gaps += 2
			}
			if hole != nil && hole(hi, cpu, h.seq[cpu]) {
				h.seq[cpu]++
				h.holes++
			}
			st.Seq = h.seq[cpu]
			pid := uint32(1000 + i%30000)
			e := schema.Event{Version: schema.EventVersion, Kind: schema.KindFork, Time: t0.Add(time.Duration(i) * time.Microsecond),
				MonoNS: uint64(i) * 1000, Host: h.h, Stream: &st,
				Fork: &schema.ForkEvent{ParentPID: 1, ParentTGID: 1, ChildPID: pid, ChildTGID: pid}}
			if i%2 == 1 {
				status := 0
				e.Kind, e.Fork = schema.KindExit, nil
				e.Exit = &schema.ExitInfo{PID: pid, TGID: pid, ParentPID: 1, ParentTGID: 1, ExitStatus: &status, ExitSignal: 17}
			}
			out = append(out, e)
			h.events++
		}
	}
	return out
}

// produce sends events with the real Kafka sink (msgpack, key {host}).
func produce(t testing.TB, bootstrap, topic string, events []schema.Event) {
	t.Helper()
	s, err := kafka.New(kafka.Config{Brokers: strings.Split(bootstrap, ","), Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for len(events) > 0 {
		n := min(len(events), 2000)
		for try := 0; ; try++ {
			err := s.WriteBatch(ctx, events[:n])
			if err == nil {
				break
			}
			if sink.IsPermanent(err) || try == 50 || ctx.Err() != nil {
				t.Fatalf("producing: %v", err)
			}
			time.Sleep(200 * time.Millisecond) // a new topic's metadata: the sink's retriable UNKNOWN_TOPIC_OR_PARTITION
		}
		events = events[n:]
	}
}

// run is an Archiver running in a goroutine.
type run struct {
	a      *Archiver
	cancel context.CancelFunc
	done   chan error
}

// start runs cfg's archiver; until, when set, is checked after every
// round and every empty poll (afterTick) and ends the run (cancels its
// ctx) once true; hook, when set, may set other test hooks.
func start(t testing.TB, cfg Config, until func(*Archiver) bool, hook func(*Archiver)) *run {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{a: a, cancel: cancel, done: make(chan error, 1)}
	if until != nil {
		a.afterTick = func() {
			if until(a) {
				cancel()
			}
		}
	}
	if hook != nil {
		hook(a)
	}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(waitLimit):
		}
	})
	return r
}

// wait returns Run's result; Run must end within waitLimit.
func (r *run) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(waitLimit):
		r.cancel()
		t.Fatalf("the archiver did not finish within %v: stats %+v", waitLimit, r.a.Stats())
		return nil
	}
}

func messages(a *Archiver) uint64 { return a.Stats().Messages }

// checked is what checkHost found in one host's archive.
type checked struct {
	report  audit.HostReport
	records int
	dupIDs  int
}

// checkHost verifies the archive of one host and boot with the archive
// package (every checkpoint opens with the key's verifier, VerifyChain
// over the files' records and roots, no unsigned active file) and audits
// its records, counting ids seen twice.
func checkHost(t *testing.T, root string, h *schema.Host, v note.Verifier) checked {
	t.Helper()
	dir := filepath.Join(root, h.Hostname, h.BootID)
	ar, err := file.OpenArchive(dir, archPrefix)
	if err != nil {
		t.Fatal(err)
	}
	var cps []*archive.Checkpoint
	for _, p := range ar.Checkpoints {
		msg, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		c, err := archive.OpenCheckpoint(msg, v)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		cps = append(cps, c)
	}
	if len(cps) == 0 {
		t.Fatalf("%s: no checkpoint", dir)
	}
	var c checked
	var entries []archive.FileEntry
	tally := audit.New()
	ids := map[string]bool{}
	for _, f := range ar.Files {
		if f.Active {
			t.Errorf("%s: an active (unsigned) file after Run ended", f.Path)
		}
		var recs [][]byte
		if err := f.Records(func(_ int64, rec []byte) error {
			recs = append(recs, bytes.Clone(rec))
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		for _, rec := range recs {
			e, err := schema.DecodeMsgpack(rec)
			if err != nil {
				t.Fatalf("%s: a record does not decode: %v", f.Path, err)
			}
			id := e.EventID()
			if ids[id] {
				c.dupIDs++
			}
			ids[id] = true
			tally.Add(&e)
			c.records++
		}
		entries = append(entries, archive.FileEntry{Name: f.Name, Records: int64(len(recs)), Root: archive.HashRecords(recs)})
	}
	origin := defaultOrigin + "/" + h.Hostname + "/" + h.BootID
	if err := archive.VerifyChain(origin, cps, entries); err != nil {
		t.Errorf("%s: VerifyChain: %v", dir, err)
	}
	rep := tally.Report()
	if len(rep.Hosts) != 1 {
		t.Fatalf("%s: audit of %d hosts, want 1", dir, len(rep.Hosts))
	}
	c.report = rep.Hosts[0]
	return c
}

func baseConfig(t testing.TB, bootstrap, topic, key string) Config {
	return Config{
		Brokers: strings.Split(bootstrap, ","), Topic: topic, Group: topic + "-group",
		Dir: t.TempDir(), Key: key, MaxSize: 256 << 10, Batch: 1000,
	}
}

// TestArchive: one archiver, 3 hosts x 20k events with gap records: every
// host's archive verifies, holds every event once, and its audit (from
// the archive, and the live Report) has 0 unaccounted and exactly the
// events and gap numbers sent.
func TestArchive(t *testing.T) {
	bootstrap := brokers.Kafka(t)
	topic := newTopic(t, bootstrap, 3)
	key, v := keyFile(t)
	hs := simHosts("arch", 3)
	events := gen(hs, 20000, 5000, nil)
	produce(t, bootstrap, topic, events)
	cfg := baseConfig(t, bootstrap, topic, key)
	r := start(t, cfg, func(a *Archiver) bool { return messages(a) >= uint64(len(events)) }, nil)
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := r.a.Stats()
	if st.Messages != uint64(len(events)) || st.Events != uint64(len(events)) || st.Duplicates != 0 || st.Malformed != 0 || st.HostsOpen != 0 {
		t.Errorf("stats %+v: want %d messages and events, no duplicates, none malformed, no host open", st, len(events))
	}
	if st.Commits == 0 || st.CommitErrors != 0 {
		t.Errorf("stats %+v: want commits and no commit error", st)
	}
	rep := r.a.Report()
	if len(rep.Hosts) != len(hs) {
		t.Fatalf("Report lists %d hosts, want %d", len(rep.Hosts), len(hs))
	}
	for i, h := range hs {
		c := checkHost(t, cfg.Dir, h.h, v)
		if c.dupIDs != 0 || c.report.Events != uint64(h.events) || c.report.Unaccounted != 0 || c.report.GapMissing != h.gaps || c.report.Holes != 0 {
			t.Errorf("%s: archive audit: %d duplicate ids, events %d (want %d), unaccounted %d, gap missing %d (want %d), holes %d",
				h.h.Hostname, c.dupIDs, c.report.Events, h.events, c.report.Unaccounted, c.report.GapMissing, h.gaps, c.report.Holes)
		}
		hsr := rep.Hosts[i]
		if hsr.Hostname != h.h.Hostname || hsr.Events != uint64(h.events) || hsr.Unaccounted != 0 || hsr.Open || hsr.Silent ||
			hsr.Dir != filepath.Join(cfg.Dir, h.h.Hostname, h.h.BootID) || hsr.LastEvent.IsZero() {
			t.Errorf("Report host %d: %+v", i, hsr)
		}
	}
}

// TestDuplicates: the same messages produced twice (a producer's retry)
// are written once; DuplicatesRemoved counts the repeats exactly.
func TestDuplicates(t *testing.T) {
	bootstrap := brokers.Kafka(t)
	topic := newTopic(t, bootstrap, 2)
	key, v := keyFile(t)
	hs := simHosts("dup", 3)
	events := gen(hs, 5000, 0, nil)
	again := events[3000:9000]
	produce(t, bootstrap, topic, events)
	produce(t, bootstrap, topic, again)
	repeats := map[string]uint64{}
	for _, e := range again {
		repeats[e.Host.Hostname]++
	}
	cfg := baseConfig(t, bootstrap, topic, key)
	total := uint64(len(events) + len(again))
	r := start(t, cfg, func(a *Archiver) bool { return messages(a) >= total }, nil)
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := r.a.Stats(); st.Duplicates != uint64(len(again)) || st.Events != uint64(len(events)) {
		t.Errorf("stats %+v: want %d duplicates, %d events", st, len(again), len(events))
	}
	for _, hsr := range r.a.Report().Hosts {
		if hsr.DuplicatesRemoved != repeats[hsr.Hostname] || hsr.Duplicates != 0 {
			t.Errorf("%s: duplicates removed %d, want %d; audit duplicates %d, want 0", hsr.Hostname, hsr.DuplicatesRemoved, repeats[hsr.Hostname], hsr.Duplicates)
		}
	}
	for _, h := range hs {
		c := checkHost(t, cfg.Dir, h.h, v)
		if c.dupIDs != 0 || c.records != h.events || c.report.Unaccounted != 0 {
			t.Errorf("%s: %d duplicate ids, %d records (want %d), unaccounted %d", h.h.Hostname, c.dupIDs, c.records, h.events, c.report.Unaccounted)
		}
	}
}

// TestRestart: an archiver that dies between the fsync and the commit of
// a round, and a new one on the same Dir and group: the new one gets the
// round again and writes none of it twice (its dedupe window came from
// the archive), its Report is the whole archive's, every event once, 0
// unaccounted.
func TestRestart(t *testing.T) {
	bootstrap := brokers.Kafka(t)
	topic := newTopic(t, bootstrap, 2)
	key, v := keyFile(t)
	hs := simHosts("restart", 3)
	events := gen(hs, 10000, 3000, nil)
	produce(t, bootstrap, topic, events)
	cfg := baseConfig(t, bootstrap, topic, key)
	cfg.Batch = 500

	var committed, crashed uint64
	rounds := 0
	first := start(t, cfg, nil, func(a *Archiver) {
		a.beforeCommit = func() error {
			rounds++
			if rounds == 6 {
				crashed = a.Stats().Messages - committed
				return errCrash
			}
			committed = a.Stats().Messages
			return nil
		}
	})
	if err := first.wait(t); !errors.Is(err, errCrash) {
		t.Fatalf("first Run: %v, want the test crash", err)
	}
	if crashed == 0 {
		t.Fatal("the crashed round had no record")
	}
	rest := uint64(len(events)) - committed
	second := start(t, cfg, func(a *Archiver) bool { return messages(a) >= rest }, nil)
	if err := second.wait(t); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if st := second.a.Stats(); st.Duplicates != crashed || st.Messages != rest {
		t.Errorf("second archiver: stats %+v: want %d duplicates (the crashed round) of %d messages", st, crashed, rest)
	}
	for _, hsr := range second.a.Report().Hosts {
		if hsr.Unaccounted != 0 {
			t.Errorf("Report: %s: %d unaccounted", hsr.Hostname, hsr.Unaccounted)
		}
	}
	for i, h := range hs {
		c := checkHost(t, cfg.Dir, h.h, v)
		if c.dupIDs != 0 || c.report.Events != uint64(h.events) || c.report.Unaccounted != 0 {
			t.Errorf("%s: %d duplicate ids, events %d (want %d), unaccounted %d", h.h.Hostname, c.dupIDs, c.report.Events, h.events, c.report.Unaccounted)
		}
		if got := second.a.Report().Hosts[i].Events; got != uint64(h.events) {
			t.Errorf("Report after restart: %s: %d events, want %d (the archive's, not only this run's)", h.h.Hostname, got, h.events)
		}
	}
}

// TestTwoArchivers: two archivers of one group share Dir on a 4-partition
// topic; the first is cancelled mid-stream once the second has written;
// after the second finishes, every archive verifies, holds every event
// once, 0 unaccounted.
func TestTwoArchivers(t *testing.T) {
	bootstrap := brokers.Kafka(t)
	topic := newTopic(t, bootstrap, 4)
	key, v := keyFile(t)
	hs := simHosts("two", 3)
	events := gen(hs, 15000, 4000, nil)
	produce(t, bootstrap, topic, events)
	cfg := baseConfig(t, bootstrap, topic, key)
	cfg.Batch = 300
	total := uint64(len(events))

	var aEnded atomic.Bool
	bReady := make(chan struct{})
	startB := make(chan struct{})
	var aRef *Archiver
	a := start(t, cfg, nil, func(x *Archiver) {
		aRef = x
		rounds := 0
		x.afterRound = func() {
			if rounds++; rounds != 2 {
				return
			}
			// Mid-stream: the second member joins (a's partitions it
			// takes are revoked here: their archives closed), and a
			// waits for it to run before the test cancels it.
			close(startB)
			select {
			case <-bReady:
			case <-time.After(waitLimit):
			}
		}
	})
	<-startB
	var once sync.Once
	ticks := 0
	b := start(t, cfg, func(x *Archiver) bool {
		if ticks++; x.Stats().Rounds > 0 || ticks >= 10 {
			once.Do(func() { close(bReady) })
		}
		return aEnded.Load() && aRef.Stats().Messages+x.Stats().Messages >= total
	}, nil)
	<-bReady
	a.cancel()
	if err := a.wait(t); err != nil {
		t.Fatalf("first archiver: %v", err)
	}
	aEnded.Store(true)
	if err := b.wait(t); err != nil {
		t.Fatalf("second archiver: %v", err)
	}
	sa, sb := aRef.Stats(), b.a.Stats()
	if sa.Events == 0 || sb.Events == 0 {
		t.Errorf("each archiver should have written: first %+v, second %+v", sa, sb)
	}
	for _, h := range hs {
		c := checkHost(t, cfg.Dir, h.h, v)
		if c.dupIDs != 0 || c.report.Events != uint64(h.events) || c.report.Unaccounted != 0 || c.report.GapMissing != h.gaps {
			t.Errorf("%s: %d duplicate ids, events %d (want %d), unaccounted %d, gap missing %d (want %d)",
				h.h.Hostname, c.dupIDs, c.report.Events, h.events, c.report.Unaccounted, c.report.GapMissing, h.gaps)
		}
	}
}

// TestHole: a producer that skips numbers with no gap record: the host's
// audit says Unaccounted == the exact count; the other hosts 0.
func TestHole(t *testing.T) {
	bootstrap := brokers.Kafka(t)
	topic := newTopic(t, bootstrap, 1)
	key, _ := keyFile(t)
	hs := simHosts("hole", 3)
	events := gen(hs, 6000, 2000, func(h int, cpu, seq uint32) bool { return h == 0 && cpu == 0 && seq%250 == 0 })
	produce(t, bootstrap, topic, events)
	if hs[0].holes == 0 {
		t.Fatal("the generator skipped nothing")
	}
	cfg := baseConfig(t, bootstrap, topic, key)
	r := start(t, cfg, func(a *Archiver) bool { return messages(a) >= uint64(len(events)) }, nil)
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rep := r.a.Report()
	for i, h := range hs {
		got := rep.Hosts[i]
		if got.Hostname != h.h.Hostname || got.Unaccounted != h.holes || got.Events != uint64(h.events) || got.GapMissing != h.gaps {
			t.Errorf("%s: unaccounted %d (want %d), events %d (want %d), gap missing %d (want %d)",
				got.Hostname, got.Unaccounted, h.holes, got.Events, h.events, got.GapMissing, h.gaps)
		}
	}
}

// TestMalformed: values that do not decode are counted and logged raw,
// with their offsets, in _malformed; the events around them are archived.
func TestMalformed(t *testing.T) {
	bootstrap := brokers.Kafka(t)
	topic := newTopic(t, bootstrap, 1)
	key, v := keyFile(t)
	hs := simHosts("junk", 2)
	events := gen(hs, 3000, 0, nil)
	produce(t, bootstrap, topic, events[:3000])
	junk := []*kgo.Record{
		{Topic: topic, Value: []byte("{not json"), Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte("application/json")}}},
		{Topic: topic, Value: []byte{0xc1, 0x00, 0xff, 'x'}},
		{Topic: topic, Value: []byte(`{"v":1,"kind":"nonsense"}`)},
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := cl.ProduceSync(ctx, junk...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	produce(t, bootstrap, topic, events[3000:])
	cfg := baseConfig(t, bootstrap, topic, key)
	total := uint64(len(events) + len(junk))
	r := start(t, cfg, func(a *Archiver) bool { return messages(a) >= total }, nil)
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := r.a.Stats(); st.Malformed != uint64(len(junk)) || st.Events != uint64(len(events)) {
		t.Errorf("stats %+v: want %d malformed, %d events", st, len(junk), len(events))
	}
	log, err := os.ReadFile(filepath.Join(cfg.Dir, malformedDir, topic+"-0.log"))
	if err != nil {
		t.Fatal(err)
	}
	for i, j := range junk {
		hdr := fmt.Sprintf("topic=%s partition=0 offset=%d bytes=%d ", topic, 3000+i, len(j.Value))
		at := bytes.Index(log, []byte(hdr))
		if at < 0 {
			t.Errorf("the malformed log lacks %q:\n%q", hdr, log)
			continue
		}
		line := log[at:]
		body := line[bytes.IndexByte(line, '\n')+1:]
		if !bytes.HasPrefix(body, append(bytes.Clone(j.Value), '\n')) {
			t.Errorf("malformed record %d: logged %q, want the raw value %q", i, body[:min(len(body), 40)], j.Value)
		}
	}
	for _, h := range hs {
		c := checkHost(t, cfg.Dir, h.h, v)
		if c.report.Events != uint64(h.events) || c.report.Unaccounted != 0 || c.dupIDs != 0 {
			t.Errorf("%s: events %d (want %d), unaccounted %d, duplicate ids %d", h.h.Hostname, c.report.Events, h.events, c.report.Unaccounted, c.dupIDs)
		}
	}
}

// fakeClock is a Now that the test moves.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestSilence: with a fake clock, hosts are not silent after their
// events, all are once Silence passed (and stay listed), a host that sends
// again is not; past IdleClose the silent hosts' archives are closed while
// the one sending stays open.
func TestSilence(t *testing.T) {
	bootstrap := brokers.Kafka(t)
	topic := newTopic(t, bootstrap, 1)
	key, _ := keyFile(t)
	hs := simHosts("quiet", 3)
	first := gen(hs, 1000, 0, nil)
	produce(t, bootstrap, topic, first)
	clock := &fakeClock{}
	clock.ns.Store(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	cfg := baseConfig(t, bootstrap, topic, key)
	cfg.Now, cfg.Silence, cfg.IdleClose = clock.now, time.Minute, 3*time.Minute

	var phase atomic.Int32 // 0: first events; 1: host 2's; 2: idle close
	reached := make(chan struct{}, 1)
	var second []schema.Event
	r := start(t, cfg, func(a *Archiver) bool {
		st := a.Stats()
		ok := false
		switch phase.Load() {
		case 0:
			ok = st.Messages >= uint64(len(first))
		case 1:
			ok = st.Messages >= uint64(len(first)+len(second))
		case 2:
			ok = st.HostsOpen == 1
		}
		if ok {
			select {
			case reached <- struct{}{}:
			default:
			}
		}
		return false
	}, nil)
	await := func(what string) {
		t.Helper()
		select {
		case <-reached:
		case <-time.After(waitLimit):
			t.Fatalf("waiting for %s: stats %+v", what, r.a.Stats())
		}
	}
	await("the first events")
	for _, h := range r.a.Report().Hosts {
		if h.Silent || !h.Open {
			t.Errorf("%s just sent: silent %v, open %v", h.Hostname, h.Silent, h.Open)
		}
	}
	clock.advance(2 * time.Minute)
	rep := r.a.Report()
	if len(rep.Hosts) != 3 {
		t.Fatalf("Report lists %d hosts, want 3", len(rep.Hosts))
	}
	for _, h := range rep.Hosts {
		if !h.Silent {
			t.Errorf("%s: not silent %v after its last event", h.Hostname, rep.At.Sub(h.LastEvent))
		}
	}
	second = gen(hs[1:2], 500, 0, nil)
	phase.Store(1)
	produce(t, bootstrap, topic, second)
	await("host 2's events")
	for _, h := range r.a.Report().Hosts {
		if want := h.Hostname != hs[1].h.Hostname; h.Silent != want {
			t.Errorf("%s: silent %v, want %v", h.Hostname, h.Silent, want)
		}
	}
	clock.advance(2 * time.Minute) // hosts 1 and 3: 4 min idle; host 2: 2 min
	phase.Store(2)
	await("the idle archives closed")
	for _, h := range r.a.Report().Hosts {
		if want := h.Hostname == hs[1].h.Hostname; h.Open != want || !h.Silent {
			t.Errorf("%s: open %v (want %v), silent %v (want true)", h.Hostname, h.Open, want, h.Silent)
		}
		if h.Events == 0 {
			t.Errorf("%s: a closed host keeps its audit: %+v", h.Hostname, h.HostReport)
		}
	}
	r.cancel()
	if err := r.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Brokers: []string{"127.0.0.1:9092"}, Dir: "/tmp/x", Key: "/tmp/k"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range []struct {
		field string
		edit  func(*Config)
	}{
		{"archiver.brokers", func(c *Config) { c.Brokers = nil }},
		{"archiver.brokers", func(c *Config) { c.Brokers = []string{""} }},
		{"archiver.topic", func(c *Config) { c.Topic = "a/b" }},
		{"archiver.dir", func(c *Config) { c.Dir = "" }},
		{"archiver.key", func(c *Config) { c.Key = "" }},
		{"archiver.origin", func(c *Config) { c.Origin = "a\nb" }},
		{"archiver.encoding", func(c *Config) { c.Format = "xml" }},
		{"archiver.compression", func(c *Config) { c.Compression = "lz4" }},
		{"archiver.batch", func(c *Config) { c.Batch = -1 }},
		{"archiver.dedupe_window", func(c *Config) { c.DedupeWindow = -1 }},
		{"archiver.silence", func(c *Config) { c.Silence = -time.Second }},
		{"archiver.idle_close", func(c *Config) { c.IdleClose = -time.Second }},
		{"archiver.max_size", func(c *Config) { c.MaxSize = -1 }},
		{"archiver.max_age", func(c *Config) { c.MaxAge = -1 }},
	} {
		c := ok
		tc.edit(&c)
		err := c.Validate()
		var ce *sink.ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field || !sink.IsPermanent(err) {
			t.Errorf("%s: Validate: %v, want a permanent *sink.ConfigError of that field", tc.field, err)
		}
		if _, err := New(c); !errors.As(err, &ce) {
			t.Errorf("%s: New: %v, want the same error", tc.field, err)
		}
	}
}

// TestComponent: names from events cannot leave Dir or take a reserved
// name, and usual names are kept.
func TestComponent(t *testing.T) {
	for in, want := range map[string]string{
		"web-1.example.com":                    "web-1.example.com",
		"0b1c2d3e-aaaa-bbbb-cccc-0123456789ab": "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab",
		"..":                                   "%2E.",
		".":                                    "%2E",
		"../../etc":                            "%2E.%2F..%2Fetc",
		"_unknown":                             "%5Funknown",
		"a b\x00/c":                            "a%20b%00%2Fc",
	} {
		if got := component(in); got != want {
			t.Errorf("component(%q) = %q, want %q", in, got, want)
		}
	}
	long := component(strings.Repeat("x", 300))
	if len(long) > 200 || long == component(strings.Repeat("x", 301)) {
		t.Errorf("long names: %q (%d bytes) must be short and distinct", long, len(long))
	}
}

// TestWindow: the dedupe window forgets the oldest id once full.
func TestWindow(t *testing.T) {
	w := newWindow(3)
	for i, c := range []struct {
		h   uint64
		new bool
	}{{1, true}, {2, true}, {1, false}, {3, true}, {4, true}, {1, true}, {3, false}, {2, true}} {
		if got := w.add(c.h); got != c.new {
			t.Errorf("step %d: add(%d) = %v, want %v", i, c.h, got, c.new)
		}
	}
	if len(w.set) != 3 || len(w.ring) != 3 {
		t.Errorf("window holds %d ids in a ring of %d, want 3", len(w.set), len(w.ring))
	}
}
