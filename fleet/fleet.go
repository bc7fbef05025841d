package fleet

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/cnstream/cnstream/audit"
	"github.com/cnstream/cnstream/schema"
)

// Bounds of the consumer's memory and of the waits at the end of a round
// or of Run.
const (
	// Per fetch response, compressed: records are several times larger
	// once decompressed (7-10x for msgpack events with zstd), and a
	// fetched response stays in memory until polled.
	fetchMaxBytes          = 4 << 20
	fetchMaxPartitionBytes = 1 << 20
	maxConcurrentFetches   = 2 // so at most 8 MiB of compressed records are buffered
	commitTimeout          = 30 * time.Second
	closeTimeout           = 2 * time.Minute
)

// Archiver is a member of a Kafka consumer group that writes each host's
// events to its own tamper-evident archive. See the package documentation.
type Archiver struct {
	cfg  Config
	seed maphash.Seed

	mu    sync.Mutex // guards hosts (the map; each host has its own mu)
	hosts map[hostKey]*hostArchive

	// work serializes the worker (a round, closing idle archives, the
	// end of Run) and the rebalance callbacks: BlockRebalanceOnPoll keeps
	// the callbacks out of a round, not out of what Run does between
	// polls.
	work sync.Mutex

	// Used by Run and the rebalance callbacks only, which never run at
	// the same time (BlockRebalanceOnPoll).
	cl          *kgo.Client
	partHosts   map[topicPart]map[*hostArchive]struct{}
	uncommitted map[topicPart]kgo.EpochOffset // written, commit failed
	malformed   map[topicPart]*os.File
	running     atomic.Bool
	decoded     []schema.Event // a round's events, reused from round to round
	decodeErrs  []error

	st struct {
		messages, events, duplicates, malformed, rounds, commits, commitErrors, bytes, hostsOpen atomic.Uint64
	}

	// Test hooks: afterRound is called after each round's commit;
	// beforeCommit, when it returns an error, makes the round end Run
	// without committing (a crash between fsync and commit).
	afterRound   func()
	beforeCommit func() error
	afterTick    func()
}

type topicPart struct {
	topic string
	part  int32
}

// New checks cfg and returns an Archiver. It starts nothing: Run does.
func New(cfg Config) (*Archiver, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	return &Archiver{cfg: c, seed: maphash.MakeSeed(), hosts: map[hostKey]*hostArchive{}}, nil
}

// Run consumes the topic as a member of the group until ctx ends, then
// closes (signs) every open archive, commits what a failed commit left,
// and leaves the group. It returns nil when ctx ended and everything
// closed cleanly, and an error when a host archive cannot be written or
// closed, or the client cannot be made. Run may be called once.
func (a *Archiver) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("fleet: Run called twice")
	}
	a.partHosts = map[topicPart]map[*hostArchive]struct{}{}
	a.uncommitted = map[topicPart]kgo.EpochOffset{}
	a.malformed = map[topicPart]*os.File{}
	if err := os.MkdirAll(a.cfg.Dir, 0o750); err != nil {
		return fmt.Errorf("fleet: archive root: %w", err)
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(a.cfg.Brokers...),
		kgo.ConsumerGroup(a.cfg.Group),
		kgo.ConsumeTopics(a.cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(a.revoked),
		kgo.OnPartitionsLost(a.lost),
		kgo.FetchMaxBytes(fetchMaxBytes),
		kgo.FetchMaxPartitionBytes(fetchMaxPartitionBytes),
		kgo.MaxConcurrentFetches(maxConcurrentFetches),
	}
	cl, err := kgo.NewClient(append(opts, a.cfg.Opts...)...)
	if err != nil {
		return fmt.Errorf("fleet: kafka client: %w", err)
	}
	a.cl = cl
	runErr := a.loop(ctx)

	// The end: sign and close every archive, commit what is owed, leave.
	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	a.work.Lock()
	for _, h := range a.openHosts() {
		if err := a.closeHost(ctx, h, "end of run"); err != nil {
			errs = append(errs, err)
		}
	}
	var owed map[string]map[int32]kgo.EpochOffset
	if runErr == nil {
		owed = a.owed(nil)
	}
	a.work.Unlock()
	// Committed without holding work: a rebalance callback may wait for
	// it while the commit waits for the rebalance.
	if len(owed) > 0 {
		if err := a.commitOffsets(ctx, owed); err != nil {
			errs = append(errs, err)
		} else {
			a.work.Lock()
			a.paid(owed)
			a.work.Unlock()
		}
	}
	for tp, f := range a.malformed {
		if err := f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("fleet: closing the malformed log of %s-%d: %w", tp.topic, tp.part, err))
		}
	}
	a.malformed = map[topicPart]*os.File{}
	cl.Close()
	return errors.Join(errs...)
}

// loop runs rounds until ctx ends (nil) or a round fails.
func (a *Archiver) loop(ctx context.Context) error {
	tick := min(max(a.cfg.IdleClose/4, 50*time.Millisecond), time.Second)
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, tick)
		fs := a.cl.PollRecords(pctx, a.cfg.Batch)
		cancel()
		if fs.IsClientClosed() {
			return nil
		}
		var fetchErr error
		fs.EachError(func(topic string, part int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			a.cfg.Log.Error("fleet: fetch", "topic", topic, "partition", part, "err", err)
			fetchErr = err
		})
		recs := fs.Records()
		if len(recs) > 0 {
			a.work.Lock()
			err := a.round(ctx, recs)
			a.work.Unlock()
			a.cl.AllowRebalance()
			if err != nil {
				return err
			}
			if a.afterRound != nil {
				a.afterRound()
			}
		} else {
			a.cl.AllowRebalance()
			if fetchErr != nil {
				// Do not spin on a broker that keeps failing.
				t := time.NewTimer(250 * time.Millisecond)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
		}
		a.work.Lock()
		a.closeIdle(ctx)
		a.work.Unlock()
		if a.afterTick != nil {
			a.afterTick()
		}
	}
	return nil
}

// errCrash is returned by the beforeCommit test hook's round.
var errCrash = errors.New("fleet: test crash before commit")

// round writes one poll's records: decoded, grouped by host and boot,
// deduplicated, written and fsynced per host, the malformed ones logged
// and fsynced; then it commits them. A round that began runs to its end
// even when ctx ends (but for waiting on a host's lock).
func (a *Archiver) round(ctx context.Context, recs []*kgo.Record) error {
	wctx := context.WithoutCancel(ctx)
	now := a.cfg.Now()
	type group struct {
		h      *hostArchive
		events []schema.Event
	}
	var order []hostKey
	groups := map[hostKey]*group{}
	var bad []topicPart
	// Decoding, in GOMAXPROCS slices of the round side by side.
	decoded := a.decoded[:0]
	decoded = slices.Grow(decoded, len(recs))[:len(recs)]
	errs := a.decodeErrs[:0]
	errs = slices.Grow(errs, len(recs))[:len(recs)]
	a.decoded, a.decodeErrs = decoded, errs
	defer func() { clear(decoded); clear(errs) }()
	procs := runtime.GOMAXPROCS(0)
	per := (len(recs) + procs - 1) / max(procs, 1)
	var dwg sync.WaitGroup
	for from := 0; from < len(recs); from += per {
		to := min(from+per, len(recs))
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			for i := from; i < to; i++ {
				decoded[i], errs[i] = decode(recs[i])
			}
		}()
	}
	dwg.Wait()
	for i, r := range recs {
		a.st.messages.Add(1)
		a.st.bytes.Add(uint64(len(r.Value)))
		e, err := decoded[i], errs[i]
		if err != nil {
			a.st.malformed.Add(1)
			tp := topicPart{r.Topic, r.Partition}
			if werr := a.writeMalformed(tp, r, err); werr != nil {
				return werr
			}
			if !slices.Contains(bad, tp) {
				bad = append(bad, tp)
			}
			continue
		}
		k := keyOf(&e)
		g := groups[k]
		if g == nil {
			g = &group{h: a.host(k, e.Host)}
			g.events = g.h.batch[:0] // the host's buffer of earlier rounds
			groups[k] = g
			order = append(order, k)
		}
		g.events = append(g.events, e)
		tp := topicPart{r.Topic, r.Partition}
		hs := a.partHosts[tp]
		if hs == nil {
			hs = map[*hostArchive]struct{}{}
			a.partHosts[tp] = hs
		}
		hs[g.h] = struct{}{}
	}
	// Archives are opened one after the other (a lock may be waited
	// for); the hosts' writes (encoding, hashing, fsync) then run side by
	// side, at most GOMAXPROCS at once: each host's archive, dedupe window
	// and audit are its own.
	for _, k := range order {
		if h := groups[k].h; h.sink == nil {
			if err := a.openHost(ctx, h); err != nil {
				if ctx.Err() != nil {
					return nil // ended while waiting for a lock: nothing of the round is committed
				}
				return err
			}
		}
	}
	werrs := make([]error, len(order))
	sem := make(chan struct{}, procs)
	var wg sync.WaitGroup
	for i, k := range order {
		g := groups[k]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			werrs[i] = a.writeHost(wctx, g.h, g.events, now)
		}()
	}
	wg.Wait()
	if err := errors.Join(werrs...); err != nil {
		return err
	}
	for _, tp := range bad {
		if err := a.malformed[tp].Sync(); err != nil {
			return fmt.Errorf("fleet: fsync of the malformed log of %s-%d: %w", tp.topic, tp.part, err)
		}
	}
	a.st.rounds.Add(1)
	if a.beforeCommit != nil {
		if err := a.beforeCommit(); err != nil {
			return err
		}
	}
	cctx, cancel := context.WithTimeout(wctx, commitTimeout)
	defer cancel()
	if err := a.cl.CommitRecords(cctx, recs...); err != nil {
		a.st.commitErrors.Add(1)
		a.cfg.Log.Error("fleet: commit failed: the records are archived and will come again (deduplicated)", "err", err)
		for _, r := range recs {
			tp := topicPart{r.Topic, r.Partition}
			eo := kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
			if at, ok := a.uncommitted[tp]; !ok || at.Less(eo) {
				a.uncommitted[tp] = eo
			}
		}
		return nil
	}
	a.st.commits.Add(1)
	for _, r := range recs {
		delete(a.uncommitted, topicPart{r.Topic, r.Partition})
	}
	return nil
}

// writeHost writes the events of a round not in h's dedupe window to h's
// archive (fsynced: SyncAlways) and adds them to its audit; events is
// kept as h's buffer for the next round.
func (a *Archiver) writeHost(ctx context.Context, h *hostArchive, events []schema.Event, now time.Time) error {
	kept := events[:0]
	var dups uint64
	for i := range events {
		if h.win.add(a.idHash(h, &events[i])) {
			kept = append(kept, events[i])
		} else {
			dups++
		}
	}
	if len(kept) > 0 {
		if err := h.sink.WriteBatch(ctx, kept); err != nil {
			return fmt.Errorf("fleet: writing to the archive of %s: %w", h.dir, err)
		}
	}
	a.st.events.Add(uint64(len(kept)))
	a.st.duplicates.Add(dups)
	h.mu.Lock()
	for i := range kept {
		h.tally.Add(&kept[i])
	}
	h.dups += dups
	h.lastEvent = now
	h.mu.Unlock()
	// Kept for the next round, without this round's events (their
	// strings would stay reachable).
	clear(events)
	h.batch = events[:0]
	return nil
}

// decode returns the event of a record's value: by its content-type
// header, else sniffed ('{': JSON, else msgpack).
func decode(r *kgo.Record) (schema.Event, error) {
	var ct []byte
	for _, h := range r.Headers {
		if h.Key == "content-type" {
			ct = h.Value
			break
		}
	}
	switch {
	case string(ct) == "application/json":
		return schema.DecodeJSON(r.Value)
	case string(ct) == "application/msgpack":
		return schema.DecodeMsgpack(r.Value)
	case len(r.Value) > 0 && r.Value[0] == '{':
		return schema.DecodeJSON(r.Value)
	case len(r.Value) == 0:
		return schema.Event{}, errors.New("fleet: empty value")
	}
	return schema.DecodeMsgpack(r.Value)
}

// writeMalformed appends r, raw, to <Dir>/_malformed/<topic>-<partition>.log:
// a header line, the value's bytes, a newline.
func (a *Archiver) writeMalformed(tp topicPart, r *kgo.Record, why error) error {
	f := a.malformed[tp]
	if f == nil {
		dir := filepath.Join(a.cfg.Dir, malformedDir)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		var err error
		f, err = os.OpenFile(filepath.Join(dir, tp.topic+"-"+strconv.Itoa(int(tp.part))+".log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("fleet: opening the malformed log: %w", err)
		}
		a.malformed[tp] = f
	}
	reason := strings.ReplaceAll(why.Error(), "\n", " ")
	b := fmt.Appendf(nil, "topic=%s partition=%d offset=%d bytes=%d error=%q\n", r.Topic, r.Partition, r.Offset, len(r.Value), reason)
	b = append(append(b, r.Value...), '\n')
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("fleet: writing the malformed log: %w", err)
	}
	return nil
}

// host returns the archive of k, made (closed) on first sight.
func (a *Archiver) host(k hostKey, hp *schema.Host) *hostArchive {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.hosts[k]
	if h == nil {
		hn, bn := k.dirNames()
		h = &hostArchive{key: k, dir: filepath.Join(a.cfg.Dir, hn, bn)}
		if hp != nil {
			h.host = *hp
		}
		a.hosts[k] = h
	}
	return h
}

func (a *Archiver) openHosts() []*hostArchive {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*hostArchive
	for _, h := range a.hosts {
		if h.sink != nil {
			out = append(out, h)
		}
	}
	return out
}

// closeIdle closes the archives with no event for IdleClose.
func (a *Archiver) closeIdle(ctx context.Context) {
	now := a.cfg.Now()
	for _, h := range a.openHosts() {
		h.mu.Lock()
		idle := now.Sub(h.lastEvent) >= a.cfg.IdleClose
		h.mu.Unlock()
		if idle {
			a.closeHost(ctx, h, "idle")
			a.forget(h)
		}
	}
}

// forget removes h from the partitions' host lists.
func (a *Archiver) forget(h *hostArchive) {
	for _, hs := range a.partHosts {
		delete(hs, h)
	}
}

// revoked is OnPartitionsRevoked: commit what a failed commit left for
// those partitions, then close the archives of the hosts seen on them, so
// that the partitions' next owner can lock them.
func (a *Archiver) revoked(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	a.work.Lock()
	defer a.work.Unlock()
	a.commitOwed(ctx, lost)
	a.release(ctx, lost, "partitions revoked")
}

// lost is OnPartitionsLost: nothing can be committed; the archives are
// closed, and the next owner gets the uncommitted records again and
// dedupes them.
func (a *Archiver) lost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	a.work.Lock()
	defer a.work.Unlock()
	for t, ps := range lost {
		for _, p := range ps {
			delete(a.uncommitted, topicPart{t, p})
		}
	}
	a.release(ctx, lost, "partitions lost")
}

func (a *Archiver) release(ctx context.Context, parts map[string][]int32, why string) {
	for t, ps := range parts {
		for _, p := range ps {
			tp := topicPart{t, p}
			for h := range a.partHosts[tp] {
				a.closeHost(ctx, h, why)
				a.forget(h)
			}
			delete(a.partHosts, tp)
		}
	}
}

// commitOwed commits the offsets written whose commit failed, of the
// partitions in only (nil: all). The caller holds work.
func (a *Archiver) commitOwed(ctx context.Context, only map[string][]int32) error {
	owed := a.owed(only)
	if len(owed) == 0 {
		return nil
	}
	if err := a.commitOffsets(ctx, owed); err != nil {
		return err
	}
	a.paid(owed)
	return nil
}

// owed returns the offsets of a.uncommitted of the partitions in only
// (nil: all), as CommitOffsetsSync takes them. The caller holds work.
func (a *Archiver) owed(only map[string][]int32) map[string]map[int32]kgo.EpochOffset {
	owed := map[string]map[int32]kgo.EpochOffset{}
	for tp, eo := range a.uncommitted {
		if only != nil && !slices.Contains(only[tp.topic], tp.part) {
			continue
		}
		if owed[tp.topic] == nil {
			owed[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		owed[tp.topic][tp.part] = eo
	}
	return owed
}

// paid forgets the offsets of owed that a.uncommitted still holds as
// they were. The caller holds work.
func (a *Archiver) paid(owed map[string]map[int32]kgo.EpochOffset) {
	for t, ps := range owed {
		for p, eo := range ps {
			if a.uncommitted[topicPart{t, p}] == eo {
				delete(a.uncommitted, topicPart{t, p})
			}
		}
	}
}

// commitOffsets commits owed and waits for the answer.
func (a *Archiver) commitOffsets(ctx context.Context, owed map[string]map[int32]kgo.EpochOffset) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	var err error
	a.cl.CommitOffsetsSync(cctx, owed, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, e error) {
		err = e
		if e == nil {
			err = commitRespErr(resp)
		}
	})
	if err != nil {
		a.st.commitErrors.Add(1)
		return fmt.Errorf("fleet: commit of written offsets: %w", err)
	}
	a.st.commits.Add(1)
	return nil
}

// Stats counts since New. Safe at any time, from any goroutine.
type Stats struct {
	Messages     uint64 // Kafka records polled
	Events       uint64 // events written to archives
	Duplicates   uint64 // events not written: their id was in the host's dedupe window
	Malformed    uint64 // records that did not decode (in <Dir>/_malformed)
	Rounds       uint64 // poll-write-fsync rounds
	Commits      uint64 // successful offset commits
	CommitErrors uint64 // failed offset commits (the records come again)
	Bytes        uint64 // bytes of the records' values
	HostsOpen    uint64 // host archives open now
}

// Stats returns the counters.
func (a *Archiver) Stats() Stats {
	return Stats{
		Messages: a.st.messages.Load(), Events: a.st.events.Load(), Duplicates: a.st.duplicates.Load(),
		Malformed: a.st.malformed.Load(), Rounds: a.st.rounds.Load(), Commits: a.st.commits.Load(),
		CommitErrors: a.st.commitErrors.Load(), Bytes: a.st.bytes.Load(), HostsOpen: a.st.hostsOpen.Load(),
	}
}

// Report is the live audit of every host and boot this archiver has
// received events of.
type Report struct {
	Hosts []HostStatus `json:"hosts"` // sorted by hostname, boot
	At    time.Time    `json:"at"`
}

// HostStatus is one host and boot's audit and state. While its archive is
// open, the audit is that of the whole archive (read at open) and of what
// was written since; once closed, the audit at the close.
type HostStatus struct {
	audit.HostReport
	Dir       string    `json:"dir"`
	LastEvent time.Time `json:"last_event"` // when this archiver last received an event of it
	Silent    bool      `json:"silent"`     // LastEvent is older than Config.Silence
	// DuplicatesRemoved counts events whose id was seen again within the
	// dedupe window and not written, by this archiver.
	DuplicatesRemoved uint64 `json:"duplicates_removed"`
	Open              bool   `json:"open"` // this archiver holds the archive open now
}

// Report returns the live audit. Safe at any time, from any goroutine.
func (a *Archiver) Report() Report {
	now := a.cfg.Now()
	a.mu.Lock()
	hosts := make([]*hostArchive, 0, len(a.hosts))
	for _, h := range a.hosts {
		hosts = append(hosts, h)
	}
	a.mu.Unlock()
	r := Report{At: now, Hosts: []HostStatus{}}
	for _, h := range hosts {
		h.mu.Lock()
		var hr []audit.HostReport
		if h.tally != nil {
			hr = h.tally.Report().Hosts
		} else {
			hr = h.snapshot
		}
		if len(hr) == 0 {
			hr = []audit.HostReport{{Hostname: h.key.hostname, BootID: h.key.boot, MachineID: h.host.MachineID}}
		}
		for _, x := range hr {
			r.Hosts = append(r.Hosts, HostStatus{
				HostReport: x, Dir: h.dir, LastEvent: h.lastEvent,
				Silent:            !h.lastEvent.IsZero() && now.Sub(h.lastEvent) > a.cfg.Silence,
				DuplicatesRemoved: h.dups, Open: h.open,
			})
		}
		h.mu.Unlock()
	}
	slices.SortFunc(r.Hosts, func(x, y HostStatus) int {
		if c := strings.Compare(x.Hostname, y.Hostname); c != 0 {
			return c
		}
		if c := strings.Compare(x.BootID, y.BootID); c != 0 {
			return c
		}
		return strings.Compare(x.MachineID, y.MachineID)
	})
	return r
}

// commitRespErr returns the first partition error of an offset commit's
// response.
func commitRespErr(resp *kmsg.OffsetCommitResponse) error {
	if resp == nil {
		return nil
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("%s-%d: %w", t.Topic, p.Partition, err)
			}
		}
	}
	return nil
}
