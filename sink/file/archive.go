package file

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/cnstream/cnstream/archive"
	"github.com/cnstream/cnstream/sink"
)

// archiver is the archive state of a Sink (Config.Archive set), guarded by
// the Sink's turn.
type archiver struct {
	origin   string
	keyPath  string
	signer   note.Signer
	verifier note.Verifier

	// tree is the active file's tree; good is it as of the last
	// acknowledged batch, restored by rollback. dirty: they differ, or
	// pend holds hashes.
	tree, good archive.Tree
	dirty      bool
	pend       []byte   // leaf hashes of this batch not yet in lf
	lf         *os.File // the active file's leaves file (nil when s.f is)
	lname      string   // its name
	lsize      int64    // bytes written to lf

	// files is the log: every rotated file, in order; the first prev.Size
	// are in checkpoints, the others wait for the next one.
	files []archive.FileEntry
	prev  *archive.Checkpoint
	// intended: rotated files named in the intent file (see intend).
	intended []string
}

// loadKey reads the signer key file: it must exist, be one line holding a
// note signer key, and be readable by its owner only.
func loadKey(p string) (note.Signer, note.Verifier, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, fmt.Errorf("file: archive key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("file: archive key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("file: archive key %s: not a regular file", p)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, nil, fmt.Errorf("file: archive key %s: mode %#o lets group or others read or write the signer key: chmod 600 it", p, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4<<10))
	if err != nil {
		return nil, nil, fmt.Errorf("file: archive key: %w", err)
	}
	text := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if strings.ContainsAny(text, "\r\n") {
		return nil, nil, fmt.Errorf("file: archive key %s: more than one line: want the signer key alone", p)
	}
	signer, verifier, _, err := archive.ParseSignerKey(text)
	if err != nil {
		return nil, nil, fmt.Errorf("file: archive key %s: %w", p, err)
	}
	return signer, verifier, nil
}

// newArchiver loads the key (before anything in the directory changes).
func newArchiver(c *ArchiveConfig) (*archiver, error) {
	signer, verifier, err := loadKey(c.Key)
	if err != nil {
		return nil, sink.Permanent(err)
	}
	return &archiver{origin: c.Origin, keyPath: c.Key, signer: signer, verifier: verifier}, nil
}

// loadCheckpoints reads the chain of checkpoints of prefix: each must be
// signed by our key, be of our origin and follow the one before it. It
// rebuilds the log from their file lines. It changes nothing on disk.
func (a *archiver) loadCheckpoints(root *os.Root, dir, prefix string) error {
	if err := checkDirEntry(root, checkpointDir); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("file: archive: %w", err)
	}
	sub, err := root.OpenRoot(checkpointDir)
	if err != nil {
		return fmt.Errorf("file: archive: %w", err)
	}
	defer sub.Close()
	names, err := checkpointNames(sub.FS(), prefix)
	if err != nil {
		return fmt.Errorf("file: archive: reading the checkpoints: %w", err)
	}
	var log archive.Tree
	for _, name := range names {
		p := filepath.Join(dir, checkpointDir, name)
		broken := func(format string, args ...any) error {
			return sink.Permanent(fmt.Errorf("file: archive: checkpoint %s: %s: the archive is broken or the key changed (key %s); not starting a new chain over it", p, fmt.Sprintf(format, args...), a.keyPath))
		}
		msg, err := readSmall(sub, name, 1<<20)
		if err != nil {
			return fmt.Errorf("file: archive: %w", err)
		}
		c, err := archive.OpenCheckpoint(msg, a.verifier)
		if err != nil {
			return broken("%v", err)
		}
		size, _ := parseCheckpointName(prefix, name)
		var prevHash tlog.Hash
		if a.prev != nil {
			prevHash = a.prev.TextHash()
		}
		switch {
		case c.Origin != a.origin:
			return broken("origin %q, configured %q", c.Origin, a.origin)
		case c.Prev != prevHash:
			return broken("does not follow the checkpoint before it (prev %s, want %s)", c.Prev, prevHash)
		case c.Size != int64(len(a.files))+int64(len(c.Files)) || c.Size != size:
			return broken("log size %d for %d files before it and %d added", c.Size, len(a.files), len(c.Files))
		}
		for _, f := range c.Files {
			log.Add(f.Leaf())
		}
		if log.Root() != c.Root {
			return broken("root %s is not the root of the files it lists", c.Root)
		}
		a.files = append(a.files, c.Files...)
		a.prev = c
	}
	return nil
}

// readSmall reads a whole regular file of root of at most limit bytes.
func readSmall(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := openFile(root, name, os.O_RDONLY, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("%s: larger than %d bytes", name, limit)
	}
	return b, err
}

// checkDirEntry checks that name in root is a directory, not a symlink.
func checkDirEntry(root *os.Root, name string) error {
	li, err := root.Lstat(name)
	if err != nil {
		return err
	}
	if !li.IsDir() {
		return fmt.Errorf("%s: %w (it is %s)", name, ErrUnsafeFile, kindOf(li.Mode()))
	}
	return nil
}

// add hashes one record (the bytes in the file, without framing).
func (a *archiver) add(rec []byte) {
	h := a.tree.Add(rec)
	a.pend = append(a.pend, h[:]...)
	a.dirty = true
}

// flushLeaves writes the pending leaf hashes to the leaves file.
func (a *archiver) flushLeaves() error {
	if len(a.pend) == 0 || a.lf == nil {
		return nil
	}
	n, err := a.lf.Write(a.pend)
	a.lsize += int64(n)
	a.pend = a.pend[:0]
	if err != nil {
		return fmt.Errorf("file: writing the leaves: %w", err)
	}
	return nil
}

// commit marks the tree as acknowledged.
func (a *archiver) commit() {
	if a.dirty {
		a.good, a.dirty = a.tree, false
	}
}

// rollback restores the tree and the leaves file to the last acknowledged
// batch.
func (a *archiver) rollback() error {
	want := a.good.Size() * tlog.HashSize
	if !a.dirty && a.lsize == want {
		return nil
	}
	a.tree, a.pend, a.dirty = a.good, a.pend[:0], false
	if a.lf != nil && a.lsize != want {
		if err := a.lf.Truncate(want); err != nil {
			a.dirty = true // try again
			return fmt.Errorf("file: cutting a failed batch off the leaves: %w", err)
		}
		a.lsize = want
	}
	return nil
}

// reset starts the tree of a new active file.
func (a *archiver) reset() {
	a.tree, a.good, a.dirty, a.pend, a.lsize = archive.Tree{}, archive.Tree{}, false, a.pend[:0], 0
}

// createLeaves creates the leaves file of the active file, replacing a
// stale entry (the entry, never what it may link to).
func (s *Sink) createLeaves() error {
	a := s.ar
	a.lname = s.name + leavesExt
	if err := s.root.Remove(a.lname); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file: removing a stale leaves file: %w", err)
	}
	lf, err := createFile(s.root, a.lname, os.O_WRONLY|os.O_APPEND, s.cfg.FileMode)
	if err != nil {
		return fmt.Errorf("file: creating the leaves file in %s: %w", s.cfg.Dir, err)
	}
	// The tree is already the new file's: reset at rotation, and
	// holding the hashes of the records encoded for it before this.
	a.lf, a.lsize = lf, 0
	return nil
}

// closeLeaves closes the active file's leaves file.
func (a *archiver) closeLeaves() error {
	if a.lf == nil {
		return nil
	}
	err := a.lf.Close()
	a.lf = nil
	return err
}

// rotated records the rotation of the active file (already renamed to
// name, and synced): its leaves file is synced and renamed beside it, the
// file joins the log, and a checkpoint is signed. Nothing here puts an
// event at stake (the file is written and synced), so failures go to
// OnError; a checkpoint not written is written with the next one (every
// file after the last checkpoint is listed in the next), at the latest by
// Close or the next New.
func (s *Sink) rotated(name string) {
	a := s.ar
	entry := archive.FileEntry{Name: name, Records: a.tree.Size(), Root: a.tree.Root()}
	err := a.flushLeaves()
	if err == nil && a.lf != nil {
		err = a.lf.Sync()
	}
	if cerr := a.closeLeaves(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.Rename(a.lname, name+leavesExt)
	}
	if err != nil {
		// Derived data: without it the file still verifies (by its root).
		s.root.Remove(a.lname)
		s.reportErr(fmt.Errorf("file: archive: leaves of %s: %w", filepath.Join(s.cfg.Dir, name), err))
	}
	a.reset()
	a.files = append(a.files, entry)
	if err := s.syncDir(); err != nil {
		s.reportErr(fmt.Errorf("file: archive: checkpoint of %s not written: %w", name, err))
		return
	}
	if err := s.checkpoint(); err != nil {
		s.reportErr(err)
	}
}

// checkpoint signs and writes the checkpoint of the log, if files were
// added since the last: checkpoints/<prefix>-<size>.note, written to a
// .tmp, fsynced, renamed, and the directory fsynced.
func (s *Sink) checkpoint() error {
	a := s.ar
	var from int64
	if a.prev != nil {
		from = a.prev.Size
	}
	if int64(len(a.files)) == from {
		return nil
	}
	fail := func(err error) error {
		return fmt.Errorf("file: archive: checkpoint of %d files: %w", len(a.files), err)
	}
	text, err := archive.NewCheckpoint(a.origin, a.files, a.prev)
	if err != nil {
		return fail(err)
	}
	msg, err := archive.Sign(text, a.signer)
	if err != nil {
		return fail(err)
	}
	c, err := archive.OpenCheckpoint(msg, a.verifier)
	if err != nil {
		return fail(err)
	}
	if err := s.ensureCheckpointDir(); err != nil {
		return fail(err)
	}
	name := path.Join(checkpointDir, checkpointName(s.cfg.Prefix, int64(len(a.files))))
	if err := writeAtomic(s.root, name, msg, s.cfg.FileMode); err != nil {
		return fail(err)
	}
	a.prev = c
	s.st.checkpoints.Add(1)
	// Every file intended is listed now.
	if err := removeIfThere(s.root, intentName(s.cfg.Prefix)); err != nil {
		s.reportErr(fmt.Errorf("file: archive: removing %s: %w", filepath.Join(s.cfg.Dir, intentName(s.cfg.Prefix)), err))
	}
	a.intended = nil
	return nil
}

// intentName is the file naming the rotated files of prefix that the sink
// made and that no checkpoint lists yet.
func intentName(prefix string) string { return path.Join(checkpointDir, prefix+".unsigned") }

// intend records, before the rename that makes it, that the rotated file
// name is the sink's own and owed a checkpoint: the intent file lists it
// with the others not signed yet (written atomically, fsynced). New signs
// an unlisted rotated file only when the intent file names it (or when no
// chain exists yet): a file put into the directory by anyone else is
// never signed, and cnstream verify reports it.
func (s *Sink) intend(name string) error {
	a := s.ar
	if err := s.ensureCheckpointDir(); err != nil {
		return fmt.Errorf("file: archive: %w", err)
	}
	names := append(slices.Clone(a.intended), name)
	if err := writeAtomic(s.root, intentName(s.cfg.Prefix), []byte(strings.Join(names, "\n")+"\n"), s.cfg.FileMode); err != nil {
		return fmt.Errorf("file: archive: recording the rotation of %s: %w", name, err)
	}
	a.intended = names
	return nil
}

// loadIntent reads the intent file: the rotated files the sink made that
// a crash may have left unsigned.
func (s *Sink) loadIntent() (map[string]bool, error) {
	b, err := readSmall(s.root, intentName(s.cfg.Prefix), 1<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("file: archive: reading %s: %w", intentName(s.cfg.Prefix), err)
	}
	out := map[string]bool{}
	for l := range strings.SplitSeq(string(b), "\n") {
		if l != "" {
			out[l] = true
		}
	}
	return out, nil
}

// ensureCheckpointDir creates checkpoints/ (with DirMode, set exactly) if
// it is missing.
func (s *Sink) ensureCheckpointDir() error {
	err := checkDirEntry(s.root, checkpointDir)
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := s.root.Mkdir(checkpointDir, s.cfg.DirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	d, err := s.root.Open(checkpointDir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := checkEntry(s.root, checkpointDir, d, false, true); err != nil {
		return err
	}
	if err := d.Chmod(s.cfg.DirMode); err != nil {
		return err
	}
	return s.syncDir()
}

// writeAtomic writes b to name in root: to name.tmp (a stale entry
// removed first), fsynced, renamed over name, and name's directory fsynced.
func writeAtomic(root *os.Root, name string, b []byte, mode fs.FileMode) error {
	tmp := name + tmpExt
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := createFile(root, tmp, os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
		return err
	}
	d, err := root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// recoverArchive finishes, at New, what a crash interrupted: the active
// file found with records is rotated (it was never signed), every rotated
// file no checkpoint lists is hashed (its leaves file rewritten) and
// signed in one checkpoint, in sequence order, and stale leaves and
// checkpoint .tmp files are removed. Each step can be redone: the
// checkpoint is written last, and a file it lists is not listed again.
func (s *Sink) recoverArchive(now time.Time) error {
	c, a := s.cfg, s.ar
	fromActive := "" // the active file's rotated name: its corrupt regions are already reported
	// The rotations of the sink a crash may have left unsigned: kept in
	// the intent file until a checkpoint lists them.
	intended, err := s.loadIntent()
	if err != nil {
		return err
	}
	listed := make(map[string]bool, len(a.files))
	for _, f := range a.files {
		listed[f.Name] = true
	}
	for name := range intended {
		if !listed[name] {
			a.intended = append(a.intended, name)
		}
	}
	slices.Sort(a.intended)
	if s.f != nil {
		var err error
		if s.size > 0 {
			name := rotatedName(c.Prefix, s.nextSeq, now, c.Format)
			fromActive = name
			err = s.f.Sync()
			if err == nil {
				err = s.intend(name)
			}
			if err == nil {
				err = s.root.Rename(s.name, name)
			}
			if err == nil {
				s.nextSeq++
				s.st.rotations.Add(1)
				if c.Compression == Zstd {
					s.cz.queue = append(s.cz.queue, name)
				}
			}
		} else {
			err = s.root.Remove(s.name)
		}
		if cerr := s.f.Close(); err == nil {
			err = cerr
		}
		s.f, s.size, s.good, s.syncedAt = nil, 0, 0, 0
		if err != nil {
			return fmt.Errorf("file: archive: closing the active file found at New: %w", err)
		}
	}
	for _, f := range formats {
		if err := removeIfThere(s.root, activeName(c.Prefix, f)+leavesExt); err != nil {
			return fmt.Errorf("file: archive: removing a stale leaves file: %w", err)
		}
	}
	if err := s.finishSalvages(); err != nil {
		return err
	}
	st, err := scanDir(s.root.FS(), c.Prefix)
	if err != nil {
		return fmt.Errorf("file: reading the directory: %w", err)
	}
	intended = map[string]bool{}
	for _, name := range a.intended {
		intended[name] = true
	}
	data := map[string]bool{}
	for _, r := range st.rotated {
		data[r.name] = true
		if listed[r.name] {
			continue
		}
		if a.prev != nil && !intended[r.name] {
			// Not the sink's (or rotated with the archive off): signing
			// it would vouch for bytes the sink never wrote.
			s.reportErr(fmt.Errorf("file: archive: %s is in no checkpoint and not a rotation of this sink's that a crash left unsigned: left unsigned (cnstream verify reports it)", filepath.Join(c.Dir, r.name)))
			continue
		}
		e, err := s.hashFile(r)
		if errors.Is(err, ErrCorrupt) {
			// Records that cannot be framed cannot be signed: keep the
			// file aside as it is, sign its whole records.
			var regions int
			regions, err = s.salvage(r)
			if err == nil {
				s.salvaged(r.name, regions, r.name != fromActive)
				r.plain, r.zst = true, false
				e, err = s.hashFile(r)
			}
		}
		if err != nil {
			return err
		}
		a.files = append(a.files, e)
	}
	// Leaves files whose data file is gone, and checkpoint .tmp files.
	entries, err := fs.ReadDir(s.root.FS(), ".")
	if err != nil {
		return fmt.Errorf("file: reading the directory: %w", err)
	}
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), leavesExt)
		if !ok || !e.Type().IsRegular() || data[base] {
			continue
		}
		if _, _, ok := parseRotated(c.Prefix, base); ok {
			if err := removeIfThere(s.root, e.Name()); err != nil {
				return fmt.Errorf("file: archive: removing a leaves file without its data file: %w", err)
			}
		}
	}
	if cps, err := fs.ReadDir(s.root.FS(), checkpointDir); err == nil {
		for _, e := range cps {
			base, ok := strings.CutSuffix(e.Name(), tmpExt)
			if _, isCp := parseCheckpointName(c.Prefix, base); ok && isCp && e.Type().IsRegular() {
				if err := removeIfThere(s.root, path.Join(checkpointDir, e.Name())); err != nil {
					return fmt.Errorf("file: archive: removing an unfinished checkpoint: %w", err)
				}
			}
		}
	}
	if err := s.syncDir(); err != nil {
		return err
	}
	// As at rotation, a checkpoint not written fails nothing (the files
	// are in the log, the next rotation or Close writes it); failing New
	// would drop the losses found above, which are not found again.
	if err := s.checkpoint(); err != nil {
		s.reportErr(err)
	}
	return nil
}

func removeIfThere(root *os.Root, name string) error {
	if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// hashFile hashes the records of a rotated file that no checkpoint lists
// and rewrites its leaves file.
func (s *Sink) hashFile(r rotatedFile) (archive.FileEntry, error) {
	name, zst := r.name, !r.plain
	if zst {
		name += zstExt
	}
	p := filepath.Join(s.cfg.Dir, name)
	f, err := openFile(s.root, name, os.O_RDONLY, false)
	if err != nil {
		return archive.FileEntry{}, fmt.Errorf("file: archive: hashing %s: %w", p, err)
	}
	defer f.Close()
	lname := r.name + leavesExt
	if err := removeIfThere(s.root, lname); err != nil {
		return archive.FileEntry{}, fmt.Errorf("file: archive: removing a stale leaves file: %w", err)
	}
	lf, err := createFile(s.root, lname, os.O_WRONLY, s.cfg.FileMode)
	if err != nil {
		return archive.FileEntry{}, fmt.Errorf("file: archive: leaves of %s: %w", p, err)
	}
	defer lf.Close()
	w := bufio.NewWriterSize(lf, 64<<10)
	var t archive.Tree
	err = readRecords(f, p, r.format, zst, func(_ int64, rec []byte) error {
		h := t.Add(rec)
		_, err := w.Write(h[:])
		return err
	})
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = lf.Sync()
	}
	if err != nil {
		return archive.FileEntry{}, fmt.Errorf("file: archive: hashing %s: %w", p, err)
	}
	return archive.FileEntry{Name: r.name, Records: t.Size(), Root: t.Root()}, nil
}

// corruptExt ends the name of a rotated file whose records could not all
// be framed, kept aside as it was ("<name>[.zst].corrupt"); no Reader or
// Archive lists it.
const corruptExt = ".corrupt"

// salvage sets aside a rotated file no checkpoint lists whose framing is
// broken (a corrupt msgpack region the active file kept, a torn end of a
// file rotated without the archive), renaming it to "<its name>.corrupt",
// and writes its whole records as the rotated file (see rewrite), which
// can then be signed. It returns the number of corrupt regions dropped.
func (s *Sink) salvage(r rotatedFile) (int, error) {
	src := r.name
	if !r.plain {
		src += zstExt
	}
	if err := s.root.Rename(src, src+corruptExt); err != nil {
		return 0, fmt.Errorf("file: archive: setting %s aside: %w", filepath.Join(s.cfg.Dir, src), err)
	}
	if err := s.syncDir(); err != nil {
		return 0, err
	}
	return s.rewrite(r.name, src+corruptExt, r.format)
}

// rewrite writes the whole records of kept (a file set aside, read as a
// Reader would: corrupt regions skipped) to name, through name.tmp,
// fsynced and renamed. kept is never changed, so a crash is finished by
// the next New (finishSalvages).
func (s *Sink) rewrite(name, kept string, format Format) (regions int, err error) {
	p := filepath.Join(s.cfg.Dir, kept)
	fail := func(err error) (int, error) {
		return 0, fmt.Errorf("file: archive: rewriting the whole records of %s: %w", p, err)
	}
	in, err := openFile(s.root, kept, os.O_RDONLY, false)
	if err != nil {
		return fail(err)
	}
	defer in.Close()
	var src io.Reader = in
	if strings.HasSuffix(kept, zstExt+corruptExt) {
		dec, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fail(err)
		}
		defer dec.Close()
		src = dec
	}
	tmp := name + tmpExt
	if err := removeIfThere(s.root, tmp); err != nil {
		return fail(err)
	}
	out, err := createFile(s.root, tmp, os.O_WRONLY, s.cfg.FileMode)
	if err != nil {
		return fail(err)
	}
	defer func() {
		out.Close()
		if err != nil {
			s.root.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(out, 1<<20)
	rr := &recordReader{name: p, f: in, r: bufio.NewReaderSize(src, 1<<20), format: format}
	var rec []byte
	for {
		_, err := rr.next(&rec)
		if err == io.EOF {
			break
		}
		if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTorn) {
			regions++
			continue
		}
		if err != nil {
			return fail(err)
		}
		if format == Msgpack {
			w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(rec))))
		}
		w.Write(rec) // a JSON line with its newline
	}
	err = w.Flush()
	if err == nil {
		err = out.Sync()
	}
	if err == nil {
		err = s.root.Rename(tmp, name)
	}
	if err == nil {
		err = s.syncDir()
	}
	if err != nil {
		return fail(err)
	}
	if s.cfg.Compression == Zstd && !slices.Contains(s.cz.queue, name) {
		s.cz.queue = append(s.cz.queue, name)
	}
	return regions, nil
}

// finishSalvages rewrites the records of a file set aside whose rewrite a
// crash interrupted (its .corrupt is there, its data file is not).
func (s *Sink) finishSalvages() error {
	entries, err := fs.ReadDir(s.root.FS(), ".")
	if err != nil {
		return fmt.Errorf("file: reading the directory: %w", err)
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name()] = true
	}
	for _, e := range entries {
		kept, ok := strings.CutSuffix(e.Name(), corruptExt)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		name := strings.TrimSuffix(kept, zstExt)
		_, format, ok := parseRotated(s.cfg.Prefix, name)
		if !ok || have[name] || have[name+zstExt] {
			continue
		}
		regions, err := s.rewrite(name, e.Name(), format)
		if err != nil {
			return err
		}
		s.salvaged(name, regions, true)
	}
	return nil
}

// salvaged reports the corrupt regions a rewrite dropped (as a loss unless
// New already reported them: the active file's).
func (s *Sink) salvaged(name string, regions int, report bool) {
	if !report || regions == 0 {
		return
	}
	s.st.corrupt.Add(uint64(regions))
	s.lossMu.Lock()
	s.losses = append(s.losses, sink.Loss{Count: uint64(regions), Reason: "corrupt_record",
		Detail: fmt.Sprintf("%s: %d regions that are not whole records (a torn end, a corrupt length) were dropped to sign its whole records; the file as it was is kept as %s[%s]%s; at least one record lost each", filepath.Join(s.cfg.Dir, name), regions, name, zstExt, corruptExt)})
	s.lossMu.Unlock()
}
