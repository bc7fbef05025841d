package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cnstream/cnstream/audit"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
)

// hostKey names one host and boot's archive.
type hostKey struct{ hostname, boot string }

func keyOf(e *schema.Event) hostKey {
	if e.Host == nil {
		return hostKey{}
	}
	return hostKey{e.Host.Hostname, e.Host.BootID}
}

// unknownDir holds the events without a hostname; noneName stands for an
// empty boot id. Names from events never start with '_' (it is escaped),
// so these cannot collide with a host's.
const (
	unknownDir   = "_unknown"
	malformedDir = "_malformed"
	noneName     = "_none"
	lockName     = ".lock"
	archPrefix   = "events"
)

// dirNames returns the path components of k's archive: <host>/<boot>, or
// _unknown/<boot> for events without a hostname.
func (k hostKey) dirNames() (string, string) {
	h := unknownDir
	if k.hostname != "" {
		h = component(k.hostname)
	}
	b := noneName
	if k.boot != "" {
		b = component(k.boot)
	}
	return h, b
}

// component makes s (from an event: outside input) a safe file name: bytes
// other than [A-Za-z0-9-.:@+=,_] are %XX-escaped, as are a leading '.' or
// '_' (no ".", "..", hidden or reserved names), and a name longer than 200
// bytes is cut to 180 and given the hex of its SHA-256's first 8 bytes.
// Usual host names and boot ids are kept as they are.
func component(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == ':' || c == '@' || c == '+' || c == '=' || c == ',' ||
			(c == '.' || c == '_') && i > 0
		if ok {
			b = append(b, c)
		} else {
			b = fmt.Appendf(b, "%%%02X", c)
		}
	}
	if len(b) > 200 {
		sum := sha256.Sum256([]byte(s))
		b = append(b[:180:180], '~')
		b = hex.AppendEncode(b, sum[:8])
	}
	return string(b)
}

// window remembers the hashes of the last n event ids of a host: a ring
// and a set. 8 bytes in the ring and about 10-20 in the map (a Swiss
// table of uint64 keys, 7/8 full at most, doubling) per id.
type window struct {
	n    int
	ring []uint64
	pos  int
	set  map[uint64]struct{}
}

func newWindow(n int) *window { return &window{n: n, set: make(map[uint64]struct{})} }

// add remembers h and reports whether it was new.
func (w *window) add(h uint64) bool {
	if _, ok := w.set[h]; ok {
		return false
	}
	if len(w.ring) < w.n {
		w.ring = append(w.ring, h)
	} else {
		delete(w.set, w.ring[w.pos])
		w.ring[w.pos] = h
		w.pos = (w.pos + 1) % w.n
	}
	w.set[h] = struct{}{}
	return true
}

// hostArchive is one host and boot's archive. The fields under "worker"
// are used by the goroutine of Run and by the rebalance callbacks, which
// never run at the same time (BlockRebalanceOnPoll); mu guards what
// Report reads.
type hostArchive struct {
	key  hostKey
	dir  string
	host schema.Host // of the first event that opened it

	// worker
	batch []schema.Event // this round's events, reused from round to round
	idBuf []byte         // a derived event id, for its hash
	sink  *file.Sink
	lock  *os.File
	win   *window
	recs  *schema.Records

	mu        sync.Mutex
	tally     *audit.Tally // nil while closed
	snapshot  []audit.HostReport
	lastEvent time.Time
	dups      uint64
	open      bool
}

// open locks the archive's directory (waiting, with backoff, while another
// archiver holds it, until ctx ends), opens its file sink (whose New
// finishes what a crash left), rebuilds the dedupe window and the audit
// from the archive, and writes the sink's losses as dropped records.
func (a *Archiver) openHost(ctx context.Context, h *hostArchive) error {
	if err := os.MkdirAll(h.dir, 0o750); err != nil {
		return fmt.Errorf("fleet: %s: %w", h.dir, err)
	}
	lockPath := filepath.Join(h.dir, lockName)
	delay := 50 * time.Millisecond
	for waited := false; ; {
		lf, held, err := tryLock(lockPath)
		if err != nil {
			return err
		}
		if !held {
			h.lock = lf
			if waited {
				a.cfg.Log.Info("fleet: got the lock of a host archive", "dir", h.dir)
			}
			break
		}
		if !waited {
			a.cfg.Log.Warn("fleet: another archiver holds a host archive: waiting for it to close it", "dir", h.dir)
			waited = true
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("fleet: waiting for the lock of %s: %w", h.dir, context.Cause(ctx))
		case <-t.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
	hn, bn := h.key.dirNames()
	origin := a.cfg.Origin + "/" + hn + "/" + bn
	s, err := file.New(file.Config{
		Dir: h.dir, Prefix: archPrefix, Format: a.cfg.Format, MaxSize: a.cfg.MaxSize, MaxAge: a.cfg.MaxAge,
		Compression: a.cfg.Compression, Sync: file.SyncAlways, Now: a.cfg.Now,
		OnError: func(err error) { a.cfg.Log.Error("fleet: host archive", "dir", h.dir, "err", err) },
		Archive: &file.ArchiveConfig{Key: a.cfg.Key, Origin: origin},
	})
	if err != nil {
		unlock(h.lock)
		h.lock = nil
		return fmt.Errorf("fleet: opening the archive of %s: %w", h.dir, err)
	}
	h.sink = s
	tally, win, err := a.rebuild(h)
	if err != nil {
		h.sink.Close(context.WithoutCancel(ctx))
		unlock(h.lock)
		h.sink, h.lock = nil, nil
		return err
	}
	h.win = win
	h.recs = schema.NewRecords("", h.host)
	var lost []schema.Event
	for _, l := range s.TakeLosses() {
		if l.Count == 0 {
			continue
		}
		reason := l.Reason
		if reason == "" {
			reason = "sink_lost"
		}
		if reason == "torn_tail" {
			// A torn tail holds only records of a round that was being
			// written when the writer died: written with SyncAlways and
			// fsynced before the round is committed, so none of them
			// was committed, and Kafka delivers them again (the dedupe
			// window, rebuilt from what is left, lets them in). Stating
			// them as dropped would count, per host, against holes that
			// no record explains and hide them.
			a.cfg.Log.Info("fleet: cut a torn tail a crash left; its records were not committed and come again from Kafka", "dir", h.dir, "records", l.Count, "detail", l.Detail)
			continue
		}
		a.cfg.Log.Warn("fleet: the host archive lost records (a crash): they become a dropped record", "dir", h.dir, "reason", reason, "records", l.Count, "detail", l.Detail)
		lost = append(lost, h.recs.Dropped(l.Count, reason, "archive"))
	}
	if len(lost) > 0 {
		if err := s.WriteBatch(context.WithoutCancel(ctx), lost); err != nil {
			h.sink.Close(context.WithoutCancel(ctx))
			unlock(h.lock)
			h.sink, h.lock = nil, nil
			return fmt.Errorf("fleet: writing the losses of %s: %w", h.dir, err)
		}
		for i := range lost {
			tally.Add(&lost[i])
		}
	}
	h.mu.Lock()
	h.tally, h.open = tally, true
	h.mu.Unlock()
	a.st.hostsOpen.Add(1)
	return nil
}

// rebuild reads the whole archive of h: every record goes to a new Tally,
// and the ids of the last DedupeWindow records to a new window.
func (a *Archiver) rebuild(h *hostArchive) (*audit.Tally, *window, error) {
	ar, err := file.OpenArchive(h.dir, archPrefix)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet: listing the archive of %s: %w", h.dir, err)
	}
	tally := audit.New()
	win := newWindow(a.cfg.DedupeWindow)
	var d audit.Decoder
	var bad int
	for _, f := range ar.Files {
		err := f.Records(func(_ int64, rec []byte) error {
			var e *schema.Event
			var err error
			if f.Format == file.JSONL {
				e, err = d.JSON(rec)
			} else {
				e, err = d.Msgpack(rec)
			}
			if err != nil {
				bad++
				return nil
			}
			tally.Add(e)
			win.add(a.idHash(h, e))
			return nil
		})
		if err != nil && !errors.Is(err, file.ErrCorrupt) {
			return nil, nil, fmt.Errorf("fleet: reading the archive of %s: %w", h.dir, err)
		}
		if err != nil {
			a.cfg.Log.Error("fleet: a host archive's file does not frame", "file", f.Path, "err", err)
		}
	}
	if bad > 0 {
		a.cfg.Log.Error("fleet: records of a host archive do not decode: not in its audit", "dir", h.dir, "records", bad)
	}
	return tally, win, nil
}

func (a *Archiver) idHash(h *hostArchive, e *schema.Event) uint64 {
	if e.ID != "" {
		return maphash.String(a.seed, e.ID)
	}
	h.idBuf = schema.AppendEventID(h.idBuf[:0], e)
	return maphash.Bytes(a.seed, h.idBuf)
}

// closeHost signs and closes h's archive and releases its lock; h stays
// listed in Report with its last audit.
func (a *Archiver) closeHost(ctx context.Context, h *hostArchive, why string) error {
	if h.sink == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	err := h.sink.Close(cctx)
	if err != nil {
		err = fmt.Errorf("fleet: closing the archive of %s: %w", h.dir, err)
		a.cfg.Log.Error("fleet: closing a host archive", "dir", h.dir, "err", err)
	}
	if uerr := unlock(h.lock); uerr != nil && err == nil {
		err = fmt.Errorf("fleet: unlocking %s: %w", h.dir, uerr)
	}
	h.sink, h.lock, h.win, h.recs = nil, nil, nil, nil
	h.mu.Lock()
	h.snapshot = h.tally.Report().Hosts
	h.tally, h.open = nil, false
	h.mu.Unlock()
	a.st.hostsOpen.Add(^uint64(0))
	a.cfg.Log.Info("fleet: closed a host archive", "dir", h.dir, "why", why)
	return err
}
