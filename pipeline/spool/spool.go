package spool

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/cnstream/cnstream/schema"
)

// WhenFull says what Append does when the spool holds MaxSize bytes.
type WhenFull uint8

const (
	// Block waits until the slowest sink acknowledged a segment that can
	// then be deleted: pressure goes back to the reader and the kernel,
	// whose drops become overrun and gap records.
	Block WhenFull = iota
	// DropOldest deletes the oldest segment to make room; every sink that
	// had not acknowledged its events gets a dropped record (reason
	// spool_full_drop_oldest) with their count. Loss records in it are
	// kept and delivered.
	DropOldest
)

func (w WhenFull) String() string { return [...]string{"block", "drop_oldest"}[w] }

// ParseWhenFull returns the WhenFull named s.
func ParseWhenFull(s string) (WhenFull, bool) {
	switch s {
	case "block":
		return Block, true
	case "drop_oldest":
		return DropOldest, true
	}
	return Block, false
}

// Fsync says when the spool makes its writes durable against a power loss
// (a crash of the process loses nothing that Append wrote, whatever the
// policy: the kernel holds it).
type Fsync uint8

const (
	// FsyncInterval (default) syncs every Config.FsyncInterval (Sync):
	// a power loss loses at most that much.
	FsyncInterval Fsync = iota
	// FsyncAlways syncs after every Append: nothing acknowledged by
	// Append is lost by a power loss; the slowest.
	FsyncAlways
	// FsyncNever leaves it to the kernel's writeback (about 30 s).
	FsyncNever
)

func (f Fsync) String() string { return [...]string{"interval", "always", "never"}[f] }

// ParseFsync returns the Fsync named s.
func ParseFsync(s string) (Fsync, bool) {
	for f := FsyncInterval; f <= FsyncNever; f++ {
		if f.String() == s {
			return f, true
		}
	}
	return FsyncInterval, false
}

// Defaults.
const (
	DefaultMaxSize       = 1 << 30
	DefaultFsyncInterval = time.Second
	DefaultSegmentSize   = 64 << 20
	DefaultCacheEvents   = 16384
	DefaultCacheBytes    = 16 << 20
	minMaxSize           = 1 << 20
)

// Config configures a Spool. The zero value of every field but Dir and
// Records works.
type Config struct {
	// Dir holds the spool's files; created (0750) if missing. Required.
	// One process at a time: Open takes an exclusive lock on it.
	Dir string
	// MaxSize bounds the bytes on disk. Default 1 GiB; at least 1 MiB.
	MaxSize int64
	// WhenFull: Block (default) or DropOldest.
	WhenFull WhenFull
	// Fsync policy; default FsyncInterval.
	Fsync Fsync
	// FsyncInterval is how often Sync is expected (the caller's timer,
	// see Interval); default 1 s.
	FsyncInterval time.Duration
	// SegmentSize is the size at which a new segment starts. Default
	// 64 MiB, at most MaxSize/4.
	SegmentSize int64
	// CacheEvents and CacheBytes bound the newest events kept in memory,
	// so that sinks that keep up never read the disk. Defaults 16384 and
	// 16 MiB (estimated): memory stays bounded whatever the spool's size.
	CacheEvents int
	CacheBytes  int64
	// Records numbers the records the spool makes (dropped, corrupt) and
	// gives the host: its BootID selects the streams Resume returns.
	// Required.
	Records *schema.Records
	// Logger receives write failures and recoveries, and what Open found.
	Logger *slog.Logger
}

// Stats is a snapshot of the spool.
type Stats struct {
	Bytes       int64  // on disk, segments
	Segments    int    // segment files
	Appended    uint64 // records appended by this process
	Next        uint64 // index of the next record
	WriteErrors uint64 // Appends that failed to write (their events were dropped, with records)
	WriteLost   uint64 // events those failures dropped
	FullDropped uint64 // events dropped by DropOldest (summed over sinks)
	FullWaits   uint64 // Appends that waited for room (Block)
	Corrupt     uint64 // corrupt regions met (at Open and by readers)
	LastError   string
}

// Spool is the durable log between the producer and the sinks. See the
// package documentation.
type Spool struct {
	cfg  Config
	log  *slog.Logger
	recs *schema.Records
	id   []byte // 8 random bytes, kept in the head file
	run  string // "spool-<id>": run of the records with fixed ids
	boot [16]byte
	lock *os.File

	// Appender-owned (one goroutine calls Append).
	enc          []byte
	idBuf        []byte
	headMu       sync.Mutex // the head file's image and writes (Append, Sync)
	head         *headFile
	streams      map[streamKey]streamPos
	activeF      *os.File   // written by the appender; swapped under mu
	retired      []*os.File // segments no longer active, to sync and close (under mu)
	failing      bool
	owed         uint64         // events of failed writes not yet stated in the log (kept in the head file too)
	owedRecs     []schema.Event // loss records of failed writes, and Open's, not yet in the log
	prepend      []schema.Event // statements of DropOldest, written before the batch that made them
	reserved     bool           // the reserve file is there
	reserveTried time.Time

	mu       sync.Mutex
	notEmpty sync.Cond // an append, a close, an abort
	room     sync.Cond // a segment deleted, an abort
	segs     []*segment
	next     uint64
	size     int64
	cursors  []*Cursor
	cache    cache
	closed   bool
	aborted  bool
	stats    Stats
	dirty    bool           // appended since the last fsync
	openRecs []schema.Event // corrupt records found by Open, written to the log by Open
}

type segment struct {
	base uint64
	end  uint64 // index after the last record written (the active one grows)
	size int64
	path string
}

// Open opens (or creates) the spool in cfg.Dir with a cursor per name in
// sinks. A cursor the head file does not know starts at the end (it gets
// new events only; at the oldest record when the spool knows no cursor at
// all); a cursor the head file knows and sinks do not name is
// forgotten. A torn or corrupt tail is cut off (a corrupt record says how
// many bytes, where); Open never refuses a spool for its contents, only
// for I/O errors (permission, a full disk, another process holding it).
func Open(cfg Config, sinks []string) (*Spool, error) {
	if cfg.Dir == "" {
		return nil, errors.New("spool: Config.Dir is required")
	}
	if cfg.Records == nil {
		return nil, errors.New("spool: Config.Records is required")
	}
	if len(sinks) == 0 {
		return nil, errors.New("spool: at least one sink is required")
	}
	cfg.MaxSize = or(cfg.MaxSize, DefaultMaxSize)
	if cfg.MaxSize < minMaxSize {
		return nil, fmt.Errorf("spool: max_size %d is below the minimum of 1 MiB", cfg.MaxSize)
	}
	cfg.FsyncInterval = or(cfg.FsyncInterval, DefaultFsyncInterval)
	cfg.SegmentSize = min(or(cfg.SegmentSize, DefaultSegmentSize), cfg.MaxSize/4)
	cfg.CacheEvents = or(cfg.CacheEvents, DefaultCacheEvents)
	cfg.CacheBytes = or(cfg.CacheBytes, DefaultCacheBytes)
	s := &Spool{cfg: cfg, recs: cfg.Records, log: cfg.Logger, boot: bootKey(cfg.Records.Host().BootID)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.notEmpty.L = &s.mu
	s.room.L = &s.mu
	s.cache.init(cfg.CacheEvents, cfg.CacheBytes)
	if err := s.open(sinks); err != nil {
		s.closeFiles()
		return nil, err
	}
	return s, nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (s *Spool) open(sinks []string) error {
	dir := s.cfg.Dir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("spool: create %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.lock = lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("spool: %s is in use by another process (lock: %w)", dir, err)
	}
	h, next, id, owed, streams, known, bad, err := openHead(filepath.Join(dir, headName))
	if err != nil {
		return fmt.Errorf("spool: head file: %w", err)
	}
	s.head = h
	s.owed = owed
	if bad > 0 {
		s.log.Warn("spool: head file slots failed their check: those streams start over", "slots", bad)
	}
	if b, err := hex.DecodeString(id); err == nil && len(b) == 8 {
		s.id = b
	} else {
		s.id = make([]byte, 8)
		_, _ = rand.Read(s.id)
	}
	s.run = "spool-" + hex.EncodeToString(s.id)
	// Streams of another boot start over.
	s.streams = map[streamKey]streamPos{}
	for k, p := range streams {
		if k.boot != s.boot {
			h.release(p.slot)
			continue
		}
		s.streams[k] = p
	}

	bases, err := listSegments(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, b := range bases {
		path := filepath.Join(dir, segName(b))
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.segs = append(s.segs, &segment{base: b, end: b, size: st.Size(), path: path})
		s.size += st.Size()
	}
	// The ends of the segments: the next one's base; the last one's is
	// found by reading it, cutting a torn or corrupt tail off.
	for i := 0; i+1 < len(s.segs); i++ {
		s.segs[i].end = s.segs[i+1].base
	}
	if n := len(s.segs); n > 0 {
		last := s.segs[n-1]
		end, err := s.recoverTail(last, next)
		if err != nil {
			return err
		}
		last.end = end
	}
	if n := len(s.segs); n > 0 {
		next = max(next, s.segs[n-1].end)
	}

	// Cursors.
	for _, p := range known {
		next = max(next, p.acked) // an acknowledged index was appended
	}
	s.next = next
	oldest := next
	if len(s.segs) > 0 {
		oldest = s.segs[0].base
	}
	for _, name := range sinks {
		p, ok := known[slotName(name)]
		if !ok {
			p.slot, p.acked = h.alloc(), next
			if len(known) == 0 {
				p.acked = oldest // no cursor at all: deliver what is there
			}
		}
		delete(known, slotName(name))
		c := &Cursor{s: s, name: name, slot: p.slot, acked: p.acked, next: p.acked}
		s.cursors = append(s.cursors, c)
	}
	for name, p := range known {
		s.log.Info("spool: a sink the spool knew is no longer configured: its cursor is forgotten", "sink", name)
		h.release(p.slot)
	}
	// A fresh segment for this run's appends.
	if err := s.rotate(); err != nil {
		return err
	}
	s.head.setNext(s.next, s.id, s.owed)
	if err := s.head.flush(); err != nil {
		return fmt.Errorf("spool: head file: %w", err)
	}
	if err := s.persistCursors(s.positions(), true); err != nil {
		return fmt.Errorf("spool: head file: %w", err)
	}
	s.deleteAcked()
	s.makeReserve()
	// What Open found (a corrupt tail) and what an earlier run could not
	// write (a full disk) go into the log first, like any event.
	s.owedRecs = append(s.owedRecs, s.openRecs...)
	if s.owed > 0 {
		s.log.Warn("spool: an earlier run dropped events it could not write (full disk) and could not yet state it: stated now", "events", s.owed)
	}
	if err := s.writeOwed(); err != nil {
		s.log.Error("spool: cannot write to the spool at start: the loss statements stay pending", "err", err)
	}
	return nil
}

// reserveName is a file of reserveSize bytes that the spool deletes when
// the disk is full, to make room for the statement of what it could not
// write.
const (
	reserveName = "reserve"
	reserveSize = 1 << 20
)

// makeReserve (re)creates the reserve file; best effort.
func (s *Spool) makeReserve() {
	if s.reserved {
		return
	}
	path := filepath.Join(s.cfg.Dir, reserveName)
	if st, err := os.Stat(path); err == nil && st.Size() == reserveSize {
		s.reserved = true
		return
	}
	if err := os.WriteFile(path, make([]byte, reserveSize), 0o640); err != nil {
		os.Remove(path)
		return
	}
	s.reserved = true
}

// recoverTail reads the last segment to its end, cuts off a torn or
// corrupt tail (a corrupt record for every cursor says where and how many
// bytes) and returns the index after its last valid record.
//
// Records at or after headNext were appended after the head file was last
// written (the process died between the two writes): the streams they
// advance are advanced now, so that a restart gap does not count them.
func (s *Spool) recoverTail(seg *segment, headNext uint64) (uint64, error) {
	r, err := openSegReader(seg.path, -1)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	defer r.close()
	if err := r.header(); err != nil {
		// Not even a header: the whole file is corrupt.
		s.noteCorrupt(&corruptRegion{file: filepath.Base(seg.path), off: 0, bytes: seg.size, reason: "bad segment header", tail: true}, seg.base)
		return seg.base, s.truncate(seg, 0)
	}
	end, good := seg.base, r.off
	for {
		rec, reg, err := r.next()
		if err != nil { // io.EOF
			break
		}
		if reg != nil && reg.tail {
			s.noteCorrupt(reg, end)
			return end, s.truncate(seg, good)
		}
		// A corrupt region before valid records is left for the
		// cursors, which report it when they read past it.
		end, good = rec.index+1, rec.off+rec.size
		if rec.index >= headNext {
			if e, err := r.decode(rec); err == nil && e.Host != nil && bootKey(e.Host.BootID) == s.boot {
				s.advanceStreams([]schema.Event{e}, rec.index)
			}
		}
	}
	return end, nil
}

// truncate cuts seg to size bytes (0: deletes it).
func (s *Spool) truncate(seg *segment, size int64) error {
	s.size -= seg.size - size
	if size == 0 {
		seg.size = 0
		if err := os.Remove(seg.path); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.segs = s.segs[:len(s.segs)-1]
		return nil
	}
	seg.size = size
	if err := os.Truncate(seg.path, size); err != nil {
		return fmt.Errorf("spool: cut the torn tail of %s: %w", seg.path, err)
	}
	return nil
}

// noteCorrupt logs a corrupt region found by Open and makes its record
// (fixed id: the index after it and the offset) for every cursor.
func (s *Spool) noteCorrupt(reg *corruptRegion, at uint64) {
	s.stats.Corrupt++
	s.log.Warn("spool: skipped bytes that hold no valid record", "file", reg.file, "offset", reg.off, "bytes", reg.bytes, "reason", reg.reason)
	s.openRecs = append(s.openRecs, s.corruptRecord(reg, at))
}

// fixedRecord returns a record of kind whose id is fixed by (at, tag), so
// that a record made again after a crash (the same hole found again) has
// the same id and consumers count it once.
func (s *Spool) fixedRecord(kind schema.Kind, at uint64, tag uint64) schema.Event {
	return schema.Event{Version: schema.EventVersion, Kind: kind, Time: time.Now(), Host: s.recs.Host(),
		Record: &schema.Record{Run: s.run, Seq: at<<2 | tag}}
}

func (s *Spool) corruptRecord(reg *corruptRegion, at uint64) schema.Event {
	e := s.fixedRecord(schema.KindCorrupt, at, 1)
	e.Corrupt = &schema.CorruptInfo{File: reg.file, Offset: reg.off, Bytes: reg.bytes, Reason: reg.reason}
	e.Record.Seq = at<<2 | 1 ^ uint64(reg.off)<<40 // distinct regions before one index
	return e
}

// rotate starts a new active segment at s.next (appender or Open).
func (s *Spool) rotate() error {
	path := filepath.Join(s.cfg.Dir, segName(s.next))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("spool: new segment: %w", err)
	}
	hdr := appendSegHeader(nil, s.next, s.recs.Host())
	if _, err := f.Write(hdr); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("spool: new segment: %w", err)
	}
	s.mu.Lock()
	if old := s.activeF; old != nil {
		s.retired = append(s.retired, old) // synced and closed by the next Sync
	}
	s.activeF = f
	// A segment left empty (a run that appended nothing) is replaced.
	if n := len(s.segs); n > 0 && s.segs[n-1].base == s.next && s.segs[n-1].path == path {
		s.size -= s.segs[n-1].size
		s.segs = s.segs[:n-1]
	}
	s.segs = append(s.segs, &segment{base: s.next, end: s.next, size: int64(len(hdr)), path: path})
	s.size += int64(len(hdr))
	s.mu.Unlock()
	return nil
}

// Resume returns, per sequence stream of this boot, the last number
// handed to the spool (by this run or an earlier one): give them to the
// transform (transform.Config.Resume) so that what the kernel numbered
// while cnstream was not running becomes a gap record of reason restart.
// Call it before the first Append.
func (s *Spool) Resume() []schema.Stream {
	var out []schema.Stream
	for k, p := range s.streams {
		if k.boot == s.boot {
			out = append(out, schema.Stream{Idx: k.idx, Val: k.val, CPU: k.cpu, Sender: k.sender, Epoch: p.epoch, Seq: p.seq})
		}
	}
	return out
}

// Cursor returns the cursor of the sink named name (one of Open's sinks),
// or nil.
func (s *Spool) Cursor(name string) *Cursor {
	for _, c := range s.cursors {
		if c.name == name {
			return c
		}
	}
	return nil
}

// Append writes events to the log, in order, one record each, and makes
// them available to every cursor. Under Block it waits for room until
// Abort (after Abort it writes nothing and reports false). A write that
// fails (a full disk) drops the events, leaving nothing half written, and
// reports false: a dropped record of reason spool_write_failed with their
// count, and the loss records among them, go into the log (the spool
// deletes its reserve file to make room for them; if even that fails the
// count waits in the head file and they go in with the next write that
// succeeds, in this run or the next). One goroutine appends.
func (s *Spool) Append(events []schema.Event) bool {
	if len(events) == 0 {
		return true
	}
	if s.owed > 0 || len(s.owedRecs) > 0 {
		if err := s.writeOwed(); err != nil {
			s.fail(events, err)
			return false
		}
	}
	var need int64
	for i := range events {
		need += estSize(&events[i])
	}
	if !s.waitRoom(need) {
		return false
	}
	batch := events
	if len(s.prepend) > 0 { // DropOldest's statements
		batch = append(s.prepend, events...)
		s.prepend = nil
	}
	if err := s.writeBatch(batch); err != nil {
		s.fail(batch, err)
		return false
	}
	if s.failing {
		s.failing = false
		s.log.Info("spool: writes again", "dir", s.cfg.Dir)
	}
	if !s.reserved && time.Since(s.reserveTried) > 10*time.Second {
		s.reserveTried = time.Now()
		s.makeReserve()
	}
	return true
}

// writeBatch writes batch at the end of the log and makes it available to
// the cursors; on failure nothing of it stays (appender).
func (s *Spool) writeBatch(batch []schema.Event) error {
	next := s.next // only the appender changes it
	buf := s.enc[:0]
	for i := range batch {
		buf = appendRecord(buf, next+uint64(i), &batch[i], s.recs.Host(), &s.idBuf)
	}
	s.enc = buf
	if act := s.active(); act.size+int64(len(buf)) > s.cfg.SegmentSize && act.end > act.base {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	act := s.active()
	off := act.size
	if _, err := s.activeF.WriteAt(buf, off); err != nil {
		// Nothing half-written stays: the next record starts where
		// this batch started.
		_ = s.activeF.Truncate(off)
		return err
	}
	s.headMu.Lock()
	s.advanceStreams(batch, next)
	s.head.setNext(next+uint64(len(batch)), s.id, s.owed)
	herr := s.head.flush()
	s.headMu.Unlock()
	if s.cfg.Fsync == FsyncAlways {
		herr = errors.Join(herr, s.activeF.Sync(), s.head.sync())
	}
	s.mu.Lock()
	s.next = next + uint64(len(batch))
	act.end = s.next
	act.size += int64(len(buf))
	s.size += int64(len(buf))
	s.stats.Appended += uint64(len(batch))
	s.dirty = s.cfg.Fsync != FsyncAlways
	if herr != nil {
		s.stats.LastError = "head/fsync: " + herr.Error()
	}
	for i := range batch {
		s.cache.push(next+uint64(i), &batch[i])
	}
	s.notEmpty.Broadcast()
	s.mu.Unlock()
	return nil
}

// fail states a batch that could not be written: its events are owed a
// dropped record, its loss records a place in the log. The reserve file
// makes room for them; if they still cannot be written, the count waits
// in the head file (written in place).
func (s *Spool) fail(batch []schema.Event, err error) {
	var n uint64
	for i := range batch {
		if batch[i].Kind.IsLoss() {
			s.owedRecs = append(s.owedRecs, batch[i])
		} else {
			n++
		}
	}
	s.owed += n
	if !s.failing {
		s.failing = true
		s.log.Error("spool: write failed: the events are dropped and a dropped record (reason spool_write_failed) goes to every sink; writes are tried again with the next batch",
			"dir", s.cfg.Dir, "events", n, "err", err)
	}
	s.mu.Lock()
	s.stats.WriteErrors++
	s.stats.WriteLost += n
	s.stats.LastError = err.Error()
	s.mu.Unlock()
	if s.reserved {
		os.Remove(filepath.Join(s.cfg.Dir, reserveName))
		s.reserved = false
	}
	if s.writeOwed() == nil {
		return
	}
	s.headMu.Lock()
	s.head.setNext(s.next, s.id, s.owed)
	_ = s.head.flush()
	s.headMu.Unlock()
}

// writeOwed writes the statements of failed writes into the log.
func (s *Spool) writeOwed() error {
	if s.owed == 0 && len(s.owedRecs) == 0 {
		return nil
	}
	var b []schema.Event
	if s.owed > 0 {
		b = append(b, s.recs.Dropped(s.owed, reasonWriteFailed, ""))
	}
	b = append(b, s.owedRecs...)
	owed := s.owed
	s.owed = 0 // the head file written with this batch says none is owed
	if err := s.writeBatch(b); err != nil {
		s.owed = owed
		return err
	}
	s.owedRecs = nil
	return nil
}

func (s *Spool) active() *segment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.segs[len(s.segs)-1]
}

// waitRoom makes room for n bytes under the WhenFull policy; false after
// Abort.
func (s *Spool) waitRoom(n int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	waited := false
	for !s.aborted && s.size+n > s.cfg.MaxSize {
		if s.deleteAckedLocked() {
			continue
		}
		if s.cfg.WhenFull == DropOldest && len(s.segs) > 1 {
			s.dropOldestLocked()
			continue
		}
		if len(s.segs) <= 1 {
			break // only the active segment: it must take the batch
		}
		if !waited {
			waited = true
			s.stats.FullWaits++
		}
		s.room.Wait()
	}
	return !s.aborted
}

// advanceStreams moves every stream the events advance (appender).
func (s *Spool) advanceStreams(events []schema.Event, first uint64) {
	for i := range events {
		e := &events[i]
		if e.Kind == schema.KindClosed && e.Stream != nil {
			k := streamKey{boot: s.boot, idx: e.Stream.Idx, val: e.Stream.Val, cpu: e.Stream.CPU, sender: e.Stream.Sender}
			if p, ok := s.streams[k]; ok && p.epoch == e.Stream.Epoch {
				s.head.release(p.slot)
				delete(s.streams, k)
			}
			continue
		}
		idx, val, cpu, sender, epoch, seq, ok := streamOf(e)
		if !ok {
			continue
		}
		k := streamKey{boot: s.boot, idx: idx, val: val, cpu: cpu, sender: sender}
		p, had := s.streams[k]
		if had && (epoch < p.epoch || (epoch == p.epoch && seq <= p.seq && e.Record != nil)) {
			continue // a filtered record behind what was kept
		}
		if !had {
			p.slot = s.head.alloc()
		}
		p.epoch, p.seq, p.index = epoch, seq, first+uint64(i)
		s.streams[k] = p
		s.head.set(k, p)
	}
}

// Sync makes the log and the cursors durable (as the Fsync policy says),
// then deletes the segments every cursor has passed. Call it every
// Config.FsyncInterval (the delivery runtime does) and at the end. The
// fsyncs run outside the spool's lock: Append and the cursors go on.
func (s *Spool) Sync() error {
	s.mu.Lock()
	f, dirty := s.activeF, s.dirty && s.cfg.Fsync == FsyncInterval
	s.dirty = false
	retired := s.retired
	s.retired = nil
	s.mu.Unlock()
	var errs []error
	if dirty && f != nil {
		errs = append(errs, f.Sync(), s.head.sync())
	}
	for _, old := range retired {
		if s.cfg.Fsync != FsyncNever {
			errs = append(errs, old.Sync())
		}
		errs = append(errs, old.Close())
	}
	// The cursors' positions, then the segments they all passed.
	s.mu.Lock()
	pos := s.positionsLocked()
	low := s.next
	s.mu.Unlock()
	serr := s.persistCursors(pos, s.cfg.Fsync != FsyncNever)
	errs = append(errs, serr)
	for _, a := range pos {
		low = min(low, a)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if serr == nil {
		s.deleteUpToLocked(low)
	}
	err := errors.Join(errs...)
	if err != nil {
		s.stats.LastError = "sync: " + err.Error()
	}
	return err
}

// Interval is how often Sync should run.
func (s *Spool) Interval() time.Duration { return s.cfg.FsyncInterval }

// positions returns every cursor's acknowledged index, in s.cursors' order.
func (s *Spool) positions() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.positionsLocked()
}

func (s *Spool) positionsLocked() []uint64 {
	out := make([]uint64, len(s.cursors))
	for i, c := range s.cursors {
		out[i] = c.acked
	}
	return out
}

// persistCursors writes the cursors' positions into their head slots, in
// place (no new blocks: a full disk does not stop it), fsync'd when sync.
func (s *Spool) persistCursors(pos []uint64, sync bool) error {
	s.headMu.Lock()
	for i, c := range s.cursors {
		s.head.setCursor(c.name, c.slot, pos[i])
	}
	err := s.head.flush()
	s.headMu.Unlock()
	if err == nil && sync {
		err = s.head.sync()
	}
	return err
}

// writeStateLocked makes the cursors' positions durable (s.mu held).
func (s *Spool) writeStateLocked(sync bool) error {
	return s.persistCursors(s.positionsLocked(), sync)
}

func (s *Spool) deleteAcked() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteAckedLocked()
}

// deleteAckedLocked deletes the segments (not the active one) that every
// cursor acknowledged, after making the cursors durable (a deleted segment
// must never be wanted again). It reports whether it deleted any.
func (s *Spool) deleteAckedLocked() bool {
	low := s.next
	for _, c := range s.cursors {
		low = min(low, c.acked)
	}
	if len(s.segs) < 2 || s.segs[0].end > low {
		return false
	}
	if err := s.writeStateLocked(true); err != nil {
		s.stats.LastError = err.Error()
		return false
	}
	return s.deleteUpToLocked(low)
}

// deleteUpToLocked deletes the segments (not the active one) that end at
// or before low, a position every cursor acknowledged durably.
func (s *Spool) deleteUpToLocked(low uint64) bool {
	n := 0
	for n < len(s.segs)-1 && s.segs[n].end <= low {
		n++
	}
	if n == 0 {
		return false
	}
	var paths []string
	for _, seg := range s.segs[:n] {
		paths = append(paths, seg.path)
		s.size -= seg.size
	}
	s.segs = append(s.segs[:0], s.segs[n:]...)
	s.room.Broadcast()
	// Unlinking 64 MiB files takes milliseconds: not under the lock. No
	// one reads them any more; a reader that has one open keeps it.
	s.mu.Unlock()
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("spool: delete an acknowledged segment", "err", err)
		}
	}
	s.mu.Lock()
	return true
}

// dropOldestLocked deletes the oldest segment although some cursor has
// not acknowledged it (DropOldest): such a cursor skips it, and a dropped
// record addressed to it (reason spool_full_drop_oldest, Sink its name)
// with the count of events it had not taken, and the loss records of the
// segment, are written to the log before the batch that needed the room.
func (s *Spool) dropOldestLocked() {
	seg := s.segs[0]
	from := seg.end
	for _, c := range s.cursors {
		if c.next < seg.end {
			from = min(from, max(c.next, seg.base))
		}
	}
	if from < seg.end {
		counts, loss := s.rescue(seg, from)
		for _, c := range s.cursors {
			if c.next >= seg.end {
				continue
			}
			n := counts(max(c.next, seg.base))
			c.skipTo(seg.end)
			if n > 0 {
				s.prepend = append(s.prepend, s.recs.Dropped(n, reasonFullDropOldest, c.name))
				s.stats.FullDropped += n
			}
		}
		s.prepend = append(s.prepend, loss...)
	}
	if err := s.writeStateLocked(true); err != nil {
		s.stats.LastError = err.Error()
	}
	_ = os.Remove(seg.path)
	s.size -= seg.size
	s.segs = s.segs[1:]
	s.log.Warn("spool: full: the oldest segment was deleted before every sink had it (when_full drop_oldest)", "segment", filepath.Base(seg.path), "records", seg.end-seg.base)
	s.room.Broadcast()
	s.notEmpty.Broadcast()
}

// rescue reads seg from index from on: it returns a function counting
// the events (not loss records) at or after an index, and the loss records
// (decoded: they are few).
func (s *Spool) rescue(seg *segment, from uint64) (func(uint64) uint64, []schema.Event) {
	var idx []uint64 // indices of the events, ascending
	var loss []schema.Event
	r, err := openSegReader(seg.path, seg.size)
	if err == nil {
		defer r.close()
		err = r.header()
	}
	if err != nil {
		return func(at uint64) uint64 { return seg.end - at }, nil
	}
	for {
		rec, _, err := r.next()
		if err != nil || rec == nil {
			break
		}
		if rec.index < from {
			continue
		}
		if rec.kind.IsLoss() {
			if e, err := r.decode(rec); err == nil {
				loss = append(loss, e)
				continue
			}
		}
		idx = append(idx, rec.index)
	}
	return func(at uint64) uint64 {
		k, _ := slices.BinarySearch(idx, at)
		return uint64(len(idx) - k)
	}, loss
}

// Stats returns a snapshot.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Bytes, st.Segments, st.Next = s.size, len(s.segs), s.next
	return st
}

// Abort releases an Append waiting for room and every cursor's Take;
// later Appends write nothing.
func (s *Spool) Abort() {
	s.mu.Lock()
	s.aborted = true
	for _, c := range s.cursors {
		c.aborted = true
	}
	s.room.Broadcast()
	s.notEmpty.Broadcast()
	s.mu.Unlock()
}

// Close syncs (whatever the policy), writes the cursors and closes the
// files. What the cursors did not acknowledge stays for the next Open.
func (s *Spool) Close() error {
	s.mu.Lock()
	s.closed = true
	s.aborted = true
	s.room.Broadcast()
	s.notEmpty.Broadcast()
	s.mu.Unlock()
	var errs []error
	if s.activeF != nil {
		errs = append(errs, s.activeF.Sync())
	}
	for _, old := range s.retired {
		errs = append(errs, old.Sync(), old.Close())
	}
	s.retired = nil
	if s.head != nil {
		s.headMu.Lock()
		errs = append(errs, s.head.flush())
		s.headMu.Unlock()
		errs = append(errs, s.head.sync())
	}
	s.mu.Lock()
	s.deleteAckedLocked()
	errs = append(errs, s.writeStateLocked(true))
	s.mu.Unlock()
	for _, c := range s.cursors {
		c.closeReader()
	}
	errs = append(errs, s.closeFiles())
	return errors.Join(errs...)
}

func (s *Spool) closeFiles() error {
	var errs []error
	if s.activeF != nil {
		errs = append(errs, s.activeF.Close())
		s.activeF = nil
	}
	if s.head != nil {
		errs = append(errs, s.head.close())
		s.head = nil
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close()) // releases the flock
		s.lock = nil
	}
	return errors.Join(errs...)
}
