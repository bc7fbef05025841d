package file

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/mod/sumdb/tlog"
)

// Archive names, beside the data files (see names.go):
//
//	<data file name>.leaves                     leaf hashes of its records (never compressed)
//	checkpoints/<prefix>-<log size>.note        signed checkpoints (log size: 10 digits or more)
//	checkpoints/<prefix>-<log size>.note.tmp    a checkpoint being written
const (
	leavesExt     = ".leaves"
	checkpointDir = "checkpoints"
	noteExt       = ".note"
)

func checkpointName(prefix string, size int64) string {
	return fmt.Sprintf("%s-%0*d%s", prefix, seqDigits, size, noteExt)
}

// parseCheckpointName returns the log size of a checkpoint's name (in
// checkpoints/) of prefix.
func parseCheckpointName(prefix, name string) (int64, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	digits, ok2 := strings.CutSuffix(rest, noteExt)
	if !ok || !ok2 || len(digits) < seqDigits || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// checkpointNames lists the checkpoints of prefix in dir (the checkpoints
// directory), in order of log size; regular files only.
func checkpointNames(dir fs.FS, prefix string) ([]string, error) {
	entries, err := fs.ReadDir(dir, ".")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type cp struct {
		name string
		size int64
	}
	var cps []cp
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if n, ok := parseCheckpointName(prefix, e.Name()); ok {
			cps = append(cps, cp{e.Name(), n})
		}
	}
	slices.SortFunc(cps, func(a, b cp) int { return cmpUint(uint64(a.size), uint64(b.size)) })
	out := make([]string, len(cps))
	for i, c := range cps {
		out[i] = c.name
	}
	return out, nil
}

// An Archive is the listing of a directory written by a Sink with Archive
// on, for the verifier and replay: see OpenArchive.
type Archive struct {
	Dir, Prefix string
	// Files are the rotated files in the order the sink wrote them
	// (sequence order), then the active file if present (Active true).
	Files []ArchiveFile
	// Checkpoints are the paths of checkpoints/<prefix>-*.note, in order
	// of log size.
	Checkpoints []string
}

// An ArchiveFile is one data file of an Archive.
type ArchiveFile struct {
	// Name is the rotated file's name without .zst (the name checkpoints
	// use), or the active file's name.
	Name   string
	Path   string // path on disk (with .zst when compressed)
	Format Format
	Active bool
	Leaves string // path of the leaves file, "" when there is none
}

// OpenArchive lists the archive of prefix ("" is "events") in dir: its
// data files (rotated, compressed or not, then the active file) and its
// checkpoints. Files of other prefixes, and entries that are not regular
// files (a symlink, a device), are not listed. It reads no record.
func OpenArchive(dir, prefix string) (*Archive, error) {
	c, err := Config{Dir: dir, Prefix: prefix}.resolve()
	if err != nil {
		return nil, err
	}
	st, err := scanDir(os.DirFS(c.Dir), c.Prefix)
	if err != nil {
		return nil, fmt.Errorf("file: reading the directory: %w", err)
	}
	a := &Archive{Dir: c.Dir, Prefix: c.Prefix}
	leaves := func(name string) string {
		p := filepath.Join(c.Dir, name+leavesExt)
		if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
			return ""
		}
		return p
	}
	for _, f := range st.rotated {
		p := filepath.Join(c.Dir, f.name)
		if !f.plain { // both forms only after a crash: the plain one is complete
			p += zstExt
		}
		a.Files = append(a.Files, ArchiveFile{Name: f.name, Path: p, Format: f.format, Leaves: leaves(f.name)})
	}
	for _, f := range st.active {
		name := activeName(c.Prefix, f)
		a.Files = append(a.Files, ArchiveFile{Name: name, Path: filepath.Join(c.Dir, name), Format: f, Active: true, Leaves: leaves(name)})
	}
	cdir := filepath.Join(c.Dir, checkpointDir)
	if fi, err := os.Lstat(cdir); err == nil && fi.IsDir() {
		names, err := checkpointNames(os.DirFS(cdir), c.Prefix)
		if err != nil {
			return nil, fmt.Errorf("file: reading the checkpoints: %w", err)
		}
		for _, n := range names {
			a.Checkpoints = append(a.Checkpoints, filepath.Join(cdir, n))
		}
	}
	return a, nil
}

// Records calls fn with each record of f in order, i counting from 0: a
// JSON line without its newline, or a msgpack value without its length
// prefix, exactly the bytes the archive hashes. A .zst file is
// decompressed as it is read. rec is valid only during the call. Records
// are not decoded. A framing that is torn (the file ends inside a record)
// or corrupt (a msgpack length of 0 or beyond 64 MiB, a line longer than
// that) returns a *RecordError matching ErrCorrupt (and ErrTorn for a torn
// end) naming the offset in the uncompressed data, after fn was called for
// every whole record before it. An error from fn is returned as it is.
func (f ArchiveFile) Records(fn func(i int64, rec []byte) error) error {
	fh, err := os.Open(f.Path)
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	defer fh.Close()
	if err := checkPath(f.Path, fh); err != nil {
		return err
	}
	return readRecords(fh, f.Path, f.Format, strings.HasSuffix(f.Path, zstExt), fn)
}

// checkPath checks that fh is the regular file the entry at path names.
func checkPath(path string, fh *os.File) error {
	fi, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	li, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	if !li.Mode().IsRegular() || !os.SameFile(fi, li) {
		return fmt.Errorf("file: %s: %w (it is %s)", path, ErrUnsafeFile, kindOf(li.Mode()))
	}
	return nil
}

// ReadLeaves returns the leaf hashes of f's leaves file: 32 bytes a record,
// in order. It fails when f has no leaves file or when its size is not a
// multiple of 32.
func (f ArchiveFile) ReadLeaves() ([]tlog.Hash, error) {
	if f.Leaves == "" {
		return nil, fmt.Errorf("file: %s has no leaves file", f.Path)
	}
	b, err := os.ReadFile(f.Leaves)
	if err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	if len(b)%tlog.HashSize != 0 {
		return nil, fmt.Errorf("file: %s: %d bytes, not a multiple of %d: %w", f.Leaves, len(b), tlog.HashSize, ErrCorrupt)
	}
	out := make([]tlog.Hash, len(b)/tlog.HashSize)
	for i := range out {
		copy(out[i][:], b[i*tlog.HashSize:])
	}
	return out, nil
}

// recordsBuf is the read buffer of readRecords: records are read in place
// from it, and it grows only for a record larger than half of it.
const recordsBuf = 1 << 20

// readRecords reads the records of r (a data file; zst: compressed) and
// calls fn with each; name is for errors. See ArchiveFile.Records.
func readRecords(r io.Reader, name string, format Format, zst bool, fn func(int64, []byte) error) error {
	if zst {
		// Concurrency 1: the decoder starts no goroutine.
		dec, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("file: %s: %w", name, err)
		}
		defer dec.Close()
		r = dec
	}
	var (
		buf      = make([]byte, recordsBuf)
		lo, hi   int   // unread bytes: buf[lo:hi]
		base     int64 // offset of buf[0] in the data
		i        int64
		eof      bool
		need     = 1 // bytes that must be in buf[lo:hi] to go on
		fail     = func(off int64, err error) error { return &RecordError{File: name, Offset: off, Err: err} }
		scanFrom int // JSONL: buf[lo:scanFrom] holds no newline
	)
	for {
		if hi-lo < need && !eof {
			// Make room: move the unread bytes to the front, grow for a
			// record larger than the buffer.
			if lo > 0 {
				copy(buf, buf[lo:hi])
				base += int64(lo)
				hi -= lo
				scanFrom -= lo
				lo = 0
			}
			if need > len(buf) {
				nb := make([]byte, max(need, 2*len(buf)))
				copy(nb, buf[:hi])
				buf = nb
			}
			n, err := io.ReadAtLeast(r, buf[hi:], need-hi)
			hi += n
			switch {
			case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
				eof = true
			case err != nil:
				return fail(base+int64(hi), err)
			}
			continue
		}
		if lo == hi && eof {
			return nil
		}
		off := base + int64(lo)
		if format == JSONL {
			j := bytes.IndexByte(buf[max(lo, scanFrom):hi], '\n')
			if j < 0 {
				scanFrom = hi
				if eof {
					return fail(off, fmt.Errorf("%w: %w: %d bytes without a newline", ErrCorrupt, ErrTorn, hi-lo))
				}
				if hi-lo > maxRecord {
					return fail(off, fmt.Errorf("%w: a line longer than %d bytes", ErrCorrupt, maxRecord))
				}
				need = hi - lo + 1 // one more byte, at least
				continue
			}
			end := max(lo, scanFrom) + j
			if err := fn(i, buf[lo:end]); err != nil {
				return err
			}
			i++
			lo, scanFrom, need = end+1, end+1, 1
			continue
		}
		if hi-lo < 4 {
			if eof {
				return fail(off, fmt.Errorf("%w: %w: a length prefix of %d bytes", ErrCorrupt, ErrTorn, hi-lo))
			}
			need = 4
			continue
		}
		l := int(binary.BigEndian.Uint32(buf[lo:]))
		if l == 0 || l > maxRecord {
			return fail(off, fmt.Errorf("%w: a record length of %d", ErrCorrupt, l))
		}
		if hi-lo < 4+l {
			if eof {
				return fail(off, fmt.Errorf("%w: %w: a record of %d bytes with %d present", ErrCorrupt, ErrTorn, l, hi-lo-4))
			}
			need = 4 + l
			continue
		}
		if err := fn(i, buf[lo+4:lo+4+l]); err != nil {
			return err
		}
		i++
		lo += 4 + l
		need = 1
	}
}
