package file

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
)

// Sink writes events to files in a directory. It implements sink.Sink; see
// the package documentation.
type Sink struct {
	cfg Config

	// root is the directory: every file is opened, created, renamed and
	// removed relative to it (see safe.go). Closed by Close.
	root *os.Root

	// turn is a mutex that a ctx can give up waiting for: WriteBatch, Sync
	// and Close hold it.
	turn sink.Turn

	// Guarded by turn.
	closed   bool
	f        *os.File  // active file; nil until the first write after New or a rotation
	name     string    // active file's name in root
	path     string    // active file's path, for messages
	size     int64     // bytes in the active file
	good     int64     // bytes of the active file that were acknowledged
	opened   time.Time // when the active file was created or found
	dirty    bool      // written since the last fsync
	lastSync time.Time
	// unsynced counts the events acknowledged since the last good fsync
	// of the active file, from syncedAt on: a failed fsync may have lost
	// them (Linux reports a writeback error once), so they become a
	// "fsync_failed" loss.
	unsynced uint64
	syncedAt int64
	// fsync is the active file's fsync; nil: (*os.File).Sync. Tests
	// replace it with a fake that fails.
	fsync   func(*os.File) error
	nextSeq uint64 // sequence of the next rotated file
	written int64  // bytes written by the current batch
	buf     []byte
	cz      compressor
	ar      *archiver // nil: archive off

	st struct {
		events, bytes, batches, syncs, rotations, compressed, torn, tornBytes, errors atomic.Uint64
		bgErrors, corrupt, fsyncLost, checkpoints                                     atomic.Uint64
		lastBgErr                                                                     atomic.Pointer[string]
	}

	lossMu sync.Mutex
	losses []sink.Loss // found by New, not yet taken (under lossMu)
}

// Stats is a snapshot of a Sink's counters since New.
type Stats struct {
	Events     uint64 // events acknowledged
	Bytes      uint64 // bytes of their records (uncompressed, with framing)
	Batches    uint64 // non-empty batches acknowledged
	Syncs      uint64 // fsyncs of the active file
	Rotations  uint64 // files rotated
	Compressed uint64 // rotated files compressed
	Torn       uint64 // torn tails New cut
	TornBytes  uint64 // bytes they held
	// Corrupt counts the corrupt regions New found in the middle of a
	// msgpack active file (kept; records after them are read again).
	Corrupt uint64
	// FsyncLost counts events acknowledged and then exposed by a failed
	// fsync (each handed over as a "fsync_failed" loss).
	FsyncLost uint64
	Errors    uint64 // failed WriteBatch, Sync and Close calls, and errors reported to OnError
	// BackgroundErrors counts, of Errors, those that failed no call (the
	// ones reported to OnError).
	BackgroundErrors uint64
	// Checkpoints counts the signed checkpoints written (archive on).
	Checkpoints uint64
}

// Stats returns the counters. It is safe to call at any time, from any
// goroutine.
func (s *Sink) Stats() Stats {
	return Stats{
		Events: s.st.events.Load(), Bytes: s.st.bytes.Load(), Batches: s.st.batches.Load(),
		Syncs: s.st.syncs.Load(), Rotations: s.st.rotations.Load(), Compressed: s.st.compressed.Load(),
		Torn: s.st.torn.Load(), TornBytes: s.st.tornBytes.Load(), Corrupt: s.st.corrupt.Load(),
		FsyncLost: s.st.fsyncLost.Load(), Errors: s.st.errors.Load(),
		BackgroundErrors: s.st.bgErrors.Load(), Checkpoints: s.st.checkpoints.Load(),
	}
}

// Counters reports the errors that failed no call (sink.StatsReporter):
// compressing rotated files. Safe at any time, from any goroutine.
func (s *Sink) Counters() sink.Counters {
	c := sink.Counters{Errors: s.st.bgErrors.Load()}
	if p := s.st.lastBgErr.Load(); p != nil {
		c.LastError = *p
	}
	return c
}

// TakeLosses returns the losses not yet taken (sink.LossReporter): torn
// tails New cut ("torn_tail", the records cut), corrupt regions New found
// in the middle of a msgpack file ("corrupt_record", at least one record
// each), and events acknowledged before an fsync that failed
// ("fsync_failed"). Safe at any time, from any goroutine.
func (s *Sink) TakeLosses() []sink.Loss {
	s.lossMu.Lock()
	defer s.lossMu.Unlock()
	l := s.losses
	s.losses = nil
	return l
}

var (
	_ sink.Sink          = (*Sink)(nil)
	_ sink.StatsReporter = (*Sink)(nil)
	_ sink.LossReporter  = (*Sink)(nil)
)

const (
	flushSize         = 1 << 20   // write to the file when this much is encoded
	maxKeptBuf        = 4 << 20   // keep an encoding buffer up to this size between batches
	minCompressBudget = 256 << 10 // bytes compressed after a batch, at least
)

// New validates cfg and opens the directory: it creates the directory if
// needed, finishes what a crash interrupted (removes unfinished .zst.tmp
// files and files whose .zst is complete, queues uncompressed rotated files
// for compression), cuts a torn record off the end of the active file
// (reported to OnTorn and in Stats), and rotates an active file of the other
// format. It starts no goroutine; the active file is created by the first
// write. With Config.Archive set it first loads the key and checks the
// chain of checkpoints, then signs what a crash left unsigned (see
// # Archive in the package documentation).
func New(cfg Config) (*Sink, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, sink.Permanent(err)
	}
	var ar *archiver
	if c.Archive != nil {
		// Before anything in the directory changes.
		if ar, err = newArchiver(c.Archive); err != nil {
			return nil, err
		}
	}
	if err := mkdirAll(c.Dir, c.DirMode); err != nil {
		return nil, fmt.Errorf("file: creating the directory: %w", err)
	}
	root, err := os.OpenRoot(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("file: opening the directory: %w", err)
	}
	if ar != nil {
		if err := ar.loadCheckpoints(root, c.Dir, c.Prefix); err != nil {
			root.Close()
			return nil, err
		}
	}
	s, err := open(c, root, ar)
	if err != nil {
		root.Close()
		return nil, err
	}
	return s, nil
}

func open(c Config, root *os.Root, ar *archiver) (*Sink, error) {
	st, err := scanDir(root.FS(), c.Prefix)
	if err != nil {
		return nil, fmt.Errorf("file: reading the directory: %w", err)
	}
	now := c.Now()
	s := &Sink{
		cfg:      c,
		root:     root,
		turn:     sink.NewTurn(),
		name:     activeName(c.Prefix, c.Format),
		path:     filepath.Join(c.Dir, activeName(c.Prefix, c.Format)),
		nextSeq:  st.nextSeq,
		lastSync: now,
		ar:       ar,
	}
	changed := false
	for _, name := range st.tmp {
		if err := root.Remove(name); err != nil {
			return nil, fmt.Errorf("file: removing an unfinished compression: %w", err)
		}
		changed = true
	}
	for _, r := range st.rotated {
		switch {
		case r.plain && r.zst:
			// The .zst is renamed into place only once complete and synced.
			if err := root.Remove(r.name); err != nil {
				return nil, fmt.Errorf("file: removing a compressed file's original: %w", err)
			}
			changed = true
		case r.plain && c.Compression == Zstd:
			s.cz.queue = append(s.cz.queue, r.name)
		}
	}
	for _, format := range st.active {
		name := activeName(c.Prefix, format)
		p := filepath.Join(c.Dir, name)
		f, err := openFile(root, name, os.O_RDWR|os.O_APPEND, true)
		if err != nil {
			s.closeActive()
			return nil, fmt.Errorf("file: opening the active file: %w", err)
		}
		size, torn, corrupt, err := recoverFile(f, p, format)
		if err != nil {
			f.Close()
			s.closeActive()
			return nil, err
		}
		for _, c := range corrupt {
			s.st.corrupt.Add(1)
			s.losses = append(s.losses, sink.Loss{Count: 1, Reason: "corrupt_record",
				Detail: fmt.Sprintf("%s: %d bytes at offset %d are not records (%s), whole records follow: kept, skipped by readers; at least one record lost", p, c.Bytes, c.Offset, c.Reason)})
		}
		if torn != nil {
			s.st.torn.Add(1)
			s.st.tornBytes.Add(uint64(torn.Bytes))
			s.losses = append(s.losses, sink.Loss{Count: torn.Records, Reason: "torn_tail",
				Detail: fmt.Sprintf("%s: cut %d bytes (%d records) at offset %d: %s", torn.File, torn.Bytes, torn.Records, torn.Offset, torn.Reason)})
			if c.OnTorn != nil {
				c.OnTorn(*torn)
			}
		}
		if format == c.Format {
			s.f, s.size, s.good, s.opened, s.syncedAt = f, size, size, now, size
			continue
		}
		// The other format's active file: rotate it, so that its events
		// keep their place before the ones this sink writes.
		err = f.Close()
		if err == nil && size == 0 {
			err = root.Remove(name)
		} else if err == nil {
			name := rotatedName(c.Prefix, s.nextSeq, now, format)
			err = root.Rename(activeName(c.Prefix, format), name)
			s.nextSeq++
			if c.Compression == Zstd {
				s.cz.queue = append(s.cz.queue, name)
			}
		}
		if err != nil {
			s.closeActive()
			return nil, fmt.Errorf("file: rotating the %s active file: %w", format, err)
		}
		changed = true
	}
	if changed && c.Sync != SyncNever {
		if err := s.syncDir(); err != nil {
			s.closeActive()
			return nil, err
		}
	}
	if ar != nil {
		if err := s.recoverArchive(now); err != nil {
			s.closeActive()
			return nil, err
		}
	}
	return s, nil
}

func (s *Sink) closeActive() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// WriteBatch appends events to the active file, rotating it as needed, and
// returns once they are written (and fsynced under SyncAlways). On error
// the active file is cut back to its size before the batch, so that no
// half record stays in it; events that went into a file rotated during the
// batch stay there (the pipeline's retry may duplicate them, as the
// contract allows). After a successful write it compresses part of a
// rotated file (see the package documentation). A ctx that ends while
// waiting for the sink, or before the write is complete, returns ctx's
// error.
func (s *Sink) WriteBatch(ctx context.Context, events []schema.Event) error {
	if err := s.turn.Acquire(ctx); err != nil {
		return err
	}
	defer s.turn.Release()
	if s.closed {
		return sink.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	n, err := s.writeBatch(ctx, events)
	if err != nil {
		s.st.errors.Add(1)
		if rerr := s.rollback(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	}
	if s.dirty {
		s.unsynced += uint64(len(events)) // acknowledged, not yet fsynced
	}
	s.st.events.Add(uint64(len(events)))
	s.st.bytes.Add(uint64(n))
	s.st.batches.Add(1)
	s.compress(ctx, max(2*n, minCompressBudget))
	return nil
}

func (s *Sink) writeBatch(ctx context.Context, events []schema.Event) (int64, error) {
	// A failed batch whose cut failed too: cut it now, or write nothing.
	if err := s.rollback(); err != nil {
		return 0, err
	}
	s.written = 0
	now := s.cfg.Now()
	if s.size > 0 && s.cfg.MaxAge > 0 && now.Sub(s.opened) >= s.cfg.MaxAge {
		if err := s.rotate(now); err != nil {
			return 0, err
		}
	}
	buf := s.buf[:0]
	for i := range events {
		if i&255 == 255 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		start := len(buf)
		buf = s.encode(buf, &events[i])
		n := len(buf) - start
		if n > maxRecord {
			return 0, sink.Permanent(fmt.Errorf("file: event %s: its record of %d bytes is larger than %d", events[i].EventID(), n, maxRecord))
		}
		if s.cfg.MaxSize > 0 && s.size+int64(len(buf)) > s.cfg.MaxSize && s.size+int64(start) > 0 {
			// The record does not fit: finish this file with the records
			// before it, and start the next one with it.
			if err := s.append(buf[:start]); err != nil {
				return 0, err
			}
			if err := s.rotate(now); err != nil {
				return 0, err
			}
			buf = buf[:copy(buf, buf[start:])]
		}
		if s.ar != nil {
			// The record's bytes in the file, without framing: hashed into
			// the tree of the file it goes to.
			rec := buf[len(buf)-n:]
			if s.cfg.Format == JSONL {
				rec = rec[:n-1]
			} else {
				rec = rec[4:]
			}
			s.ar.add(rec)
		}
		if len(buf) >= flushSize {
			if err := s.append(buf); err != nil {
				return 0, err
			}
			buf = buf[:0]
		}
	}
	err := s.append(buf)
	if cap(buf) <= maxKeptBuf {
		s.buf = buf[:0]
	}
	if err == nil && s.ar != nil {
		err = s.ar.flushLeaves()
	}
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	switch s.cfg.Sync {
	case SyncAlways:
		err = s.sync(now)
	case SyncInterval:
		if now.Sub(s.lastSync) >= s.cfg.SyncInterval {
			err = s.sync(now)
		}
	}
	if err != nil {
		return 0, err
	}
	s.good = s.size
	if s.ar != nil {
		s.ar.commit()
	}
	return s.written, nil
}

func (s *Sink) encode(b []byte, e *schema.Event) []byte {
	if s.cfg.Format == JSONL {
		b = schema.AppendJSON(b, e)
		return append(b, '\n')
	}
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	b = schema.AppendMsgpack(b, e)
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b
}

// append writes b to the active file, creating it if needed.
func (s *Sink) append(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if s.f == nil {
		if err := s.create(); err != nil {
			return err
		}
	}
	n, err := s.f.Write(b)
	s.size += int64(n)
	s.written += int64(n)
	if n > 0 {
		s.dirty = true
	}
	if err != nil {
		return fmt.Errorf("file: writing: %w", err)
	}
	return nil
}

func (s *Sink) create() error {
	f, err := createFile(s.root, s.name, os.O_RDWR|os.O_APPEND, s.cfg.FileMode)
	if err != nil {
		return fmt.Errorf("file: creating the active file in %s: %w", s.cfg.Dir, err)
	}
	s.f, s.size, s.good, s.dirty, s.opened, s.syncedAt = f, 0, 0, false, s.cfg.Now(), 0
	if s.ar != nil {
		if err := s.createLeaves(); err != nil {
			f.Close()
			s.root.Remove(s.name)
			s.f = nil
			return err
		}
	}
	if s.cfg.Sync != SyncNever || s.ar != nil {
		return s.syncDir()
	}
	return nil
}

// rotate renames the active file to its rotated name and queues it for
// compression; the next write creates a new active file. With the archive
// on, the file is fsynced whatever the policy, and signed (s.rotated).
func (s *Sink) rotate(now time.Time) error {
	if s.f == nil || s.size == 0 {
		return nil
	}
	if s.cfg.Sync != SyncNever || s.ar != nil {
		if err := s.sync(now); err != nil {
			return err
		}
	}
	name := rotatedName(s.cfg.Prefix, s.nextSeq, now, s.cfg.Format)
	if s.ar != nil {
		// Named before it exists: a crash before its checkpoint leaves
		// a file the next New knows to be the sink's, and signs.
		if err := s.intend(name); err != nil {
			return err
		}
	}
	if err := s.root.Rename(s.name, name); err != nil {
		return fmt.Errorf("file: rotating: %w", err)
	}
	s.nextSeq++
	if err := s.f.Close(); err != nil {
		// Written, and synced as the policy says: nothing is at stake.
		s.reportErr(fmt.Errorf("file: closing %s: %w", filepath.Join(s.cfg.Dir, name), err))
	}
	s.f, s.size, s.good, s.dirty, s.unsynced, s.syncedAt = nil, 0, 0, false, 0, 0
	s.st.rotations.Add(1)
	if s.cfg.Compression == Zstd {
		s.cz.queue = append(s.cz.queue, name)
	}
	if s.ar != nil {
		s.rotated(name) // syncs the directory
		return nil
	}
	if s.cfg.Sync != SyncNever {
		return s.syncDir()
	}
	return nil
}

// sync fsyncs the active file. When the fsync fails, the events
// acknowledged since the last good one (under SyncInterval) may be lost
// from the page cache, and Linux reports the error only once, so the next
// fsync succeeds: they become a "fsync_failed" loss at once, never a
// silent acknowledgement. The batch being written, not yet acknowledged,
// is cut off and retried by the caller.
func (s *Sink) sync(now time.Time) error {
	if s.f == nil || !s.dirty {
		return nil
	}
	fsync := s.fsync
	if fsync == nil {
		fsync = (*os.File).Sync
	}
	if err := fsync(s.f); err != nil {
		if s.unsynced > 0 {
			s.st.fsyncLost.Add(s.unsynced)
			s.lossMu.Lock()
			s.losses = append(s.losses, sink.Loss{Count: s.unsynced, Reason: "fsync_failed",
				Detail: fmt.Sprintf("%s: fsync failed (%v): %d events acknowledged since the last good fsync (bytes %d to %d) may not be on disk", s.path, err, s.unsynced, s.syncedAt, s.good)})
			s.lossMu.Unlock()
			s.unsynced = 0
		}
		return fmt.Errorf("file: fsync: %w", err)
	}
	s.dirty, s.lastSync, s.unsynced, s.syncedAt = false, now, 0, s.size
	s.st.syncs.Add(1)
	return nil
}

// rollback cuts the active file back to its acknowledged size, and the
// archive's tree and leaves back to the same records.
func (s *Sink) rollback() error {
	if s.ar != nil {
		if err := s.ar.rollback(); err != nil {
			return err
		}
	}
	if s.f == nil || s.size == s.good {
		return nil
	}
	if err := s.f.Truncate(s.good); err != nil {
		return fmt.Errorf("file: cutting a failed batch off the active file: %w", err)
	}
	s.size = s.good
	return nil
}

// Sync fsyncs the active file if anything was written since the last fsync,
// whatever the policy: under SyncInterval the pipeline may call it on a
// timer, so that an idle sink's data does not wait for the next batch.
func (s *Sink) Sync(ctx context.Context) error {
	if err := s.turn.Acquire(ctx); err != nil {
		return err
	}
	defer s.turn.Release()
	if s.closed {
		return sink.ErrClosed
	}
	if err := s.sync(s.cfg.Now()); err != nil {
		s.st.errors.Add(1)
		return err
	}
	return nil
}

// Ping checks that the directory is still there and writable.
func (s *Sink) Ping(context.Context) error {
	name := pingName()
	f, err := createFile(s.root, name, os.O_WRONLY, s.cfg.FileMode)
	if err != nil {
		return fmt.Errorf("file: ping: %w", err)
	}
	f.Close()
	if err := s.root.Remove(name); err != nil {
		return fmt.Errorf("file: ping: %w", err)
	}
	return nil
}

var _ sink.Pinger = (*Sink)(nil)

// Close fsyncs the active file (unless the policy is SyncNever), closes it,
// and compresses the rotated files still waiting, for as long as ctx lets
// it: compression left undone is reported to OnError and finished by the
// next New, and costs no event, so it does not fail Close. With the
// archive on, it first rotates the active file if it holds records and
// writes the checkpoint still owed, so that every file is signed; failing
// that fails Close (the next New signs what is left). A second Close
// returns nil.
func (s *Sink) Close(ctx context.Context) error {
	if err := s.turn.Acquire(ctx); err != nil {
		return err
	}
	defer s.turn.Release()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if err := s.rollback(); err != nil {
		errs = append(errs, err)
	}
	if s.ar != nil && len(errs) == 0 {
		// Sign what was written: the active file is rotated, and a
		// checkpoint an earlier rotation failed to write is written now.
		if err := s.rotate(s.cfg.Now()); err != nil {
			errs = append(errs, err)
		} else if err := s.checkpoint(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.cfg.Sync != SyncNever {
		if err := s.sync(s.cfg.Now()); err != nil {
			errs = append(errs, err)
		}
	}
	if s.f != nil {
		if err := s.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("file: closing the active file: %w", err))
		}
		s.f = nil
	}
	if s.ar != nil {
		if err := s.ar.closeLeaves(); err != nil {
			errs = append(errs, fmt.Errorf("file: closing the leaves file: %w", err))
		}
	}
	s.compress(ctx, -1)
	if n := s.cz.pending(); n > 0 {
		s.cz.abort()
		s.reportErr(fmt.Errorf("file: close: compression of %d rotated files left for the next New: %w", n, context.Cause(ctx)))
	}
	s.buf, s.cz.buf = nil, nil
	if err := s.root.Close(); err != nil {
		errs = append(errs, fmt.Errorf("file: closing the directory: %w", err))
	}
	if len(errs) > 0 {
		s.st.errors.Add(1)
	}
	return errors.Join(errs...)
}

func (s *Sink) reportErr(err error) {
	s.st.errors.Add(1)
	s.st.bgErrors.Add(1)
	msg := err.Error()
	s.st.lastBgErr.Store(&msg)
	if s.cfg.OnError != nil {
		s.cfg.OnError(err)
	}
}

func (s *Sink) syncDir() error { return syncRoot(s.root) }

func syncRoot(root *os.Root) error {
	d, err := root.Open(".")
	if err != nil {
		return fmt.Errorf("file: fsync of the directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("file: fsync of the directory: %w", err)
	}
	return nil
}

// newEncoder returns the zstd encoder of rotated files: one stream at a
// time, synchronous (concurrency 1 starts no goroutine), fastest level.
func newEncoder() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
}
