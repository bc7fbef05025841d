package file

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"

	"github.com/cnstream/cnstream/schema"
)

// Reader reads back the events of a directory, for tests and tools: the
// rotated files in the order they were written (compressed or not), then
// the active file. Every record is checked: a record that does not decode
// is an error (matching ErrCorrupt), and so is a torn record at the end of
// a file (matching ErrTorn), both as a *RecordError naming the file and
// offset; the events before it have been returned whole. A Reader never
// returns part of a record.
//
// The files are listed when the Reader is made. Reading a directory a Sink
// is writing works, but may miss what was written or rotated after that,
// and may find a torn record at the end of the active file while a batch is
// being written. A Reader is not safe for concurrent use.
type Reader struct {
	dir   string
	files []readerFile
	i     int
	cur   *recordReader
	dec   *zstd.Decoder
	rbuf  *bufio.Reader
	rec   []byte
}

type readerFile struct {
	name   string // plain name
	format Format
	zst    bool // read name + ".zst"
	active bool
}

// NewReader lists the files of cfg.Dir for cfg.Prefix (their defaults as
// for New; the other fields are ignored).
func NewReader(cfg Config) (*Reader, error) {
	c, err := Config{Dir: cfg.Dir, Prefix: cfg.Prefix}.resolve()
	if err != nil {
		return nil, err
	}
	st, err := scanDir(os.DirFS(c.Dir), c.Prefix)
	if err != nil {
		return nil, fmt.Errorf("file: reading the directory: %w", err)
	}
	r := &Reader{dir: c.Dir}
	for _, f := range st.rotated {
		// Both forms exist only after a crash: the plain one is complete.
		r.files = append(r.files, readerFile{name: f.name, format: f.format, zst: !f.plain})
	}
	var active []readerFile
	for _, f := range st.active {
		active = append(active, readerFile{name: activeName(c.Prefix, f), format: f, active: true})
	}
	if len(active) == 2 {
		// Both formats' active files: a Sink changed format and has not
		// been opened since. Older first.
		a, errA := os.Stat(filepath.Join(c.Dir, active[0].name))
		b, errB := os.Stat(filepath.Join(c.Dir, active[1].name))
		if errA == nil && errB == nil && b.ModTime().Before(a.ModTime()) {
			active[0], active[1] = active[1], active[0]
		}
	}
	r.files = append(r.files, active...)
	return r, nil
}

// Files returns the names of the files the Reader reads, in order.
func (r *Reader) Files() []string {
	out := make([]string, len(r.files))
	for i, f := range r.files {
		out[i] = f.name
		if f.zst {
			out[i] += zstExt
		}
	}
	return out
}

// Next returns the next event, or io.EOF after the last one.
func (r *Reader) Next() (schema.Event, error) {
	for {
		if r.cur == nil {
			if r.i >= len(r.files) {
				return schema.Event{}, io.EOF
			}
			f := r.files[r.i]
			r.i++
			cur, err := r.open(f)
			if errors.Is(err, fs.ErrNotExist) && f.active {
				continue // rotated since the listing
			}
			if err != nil {
				return schema.Event{}, err
			}
			r.cur = cur
		}
		e, err := r.cur.next(&r.rec)
		if err == io.EOF {
			r.cur.close()
			r.cur = nil
			continue
		}
		return e, err
	}
}

func (r *Reader) open(f readerFile) (*recordReader, error) {
	name := f.name
	if f.zst {
		name += zstExt
	}
	fh, err := os.Open(filepath.Join(r.dir, name))
	if errors.Is(err, fs.ErrNotExist) && !f.zst && !f.active {
		// Compressed since the listing.
		name += zstExt
		f.zst = true
		fh, err = os.Open(filepath.Join(r.dir, name))
	}
	if err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	var src io.Reader = fh
	if f.zst {
		if r.dec == nil {
			// Concurrency 1: the decoder starts no goroutine.
			r.dec, err = zstd.NewReader(fh, zstd.WithDecoderConcurrency(1))
		} else {
			err = r.dec.Reset(fh)
		}
		if err != nil {
			fh.Close()
			return nil, fmt.Errorf("file: %s: %w", name, err)
		}
		src = r.dec
	}
	if r.rbuf == nil {
		r.rbuf = bufio.NewReaderSize(src, 256<<10)
	} else {
		r.rbuf.Reset(src)
	}
	return &recordReader{name: filepath.Join(r.dir, name), f: fh, r: r.rbuf, format: f.format}, nil
}

// Close releases the file being read.
func (r *Reader) Close() error {
	if r.cur != nil {
		r.cur.close()
		r.cur = nil
	}
	if r.dec != nil {
		r.dec.Close()
		r.dec = nil
	}
	r.i = len(r.files)
	return nil
}

// ReadAll returns every event of the directory cfg names, in order; see
// Reader.
func ReadAll(cfg Config) ([]schema.Event, error) {
	r, err := NewReader(cfg)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []schema.Event
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
}

type recordReader struct {
	name   string
	f      *os.File
	r      *bufio.Reader
	format Format
	off    int64
}

func (rr *recordReader) close() { rr.f.Close() }

func (rr *recordReader) fail(off int64, err error) error {
	return &RecordError{File: rr.name, Offset: off, Err: err}
}

// skipCorrupt is called at a msgpack length that is not a record's (at
// offset start, not read; short: longer than what is left): it resyncs to the next whole records, if
// any, so that the next call reads them, and returns the error for the
// bytes in between: ErrCorrupt when records follow, ErrTorn when none do
// (the rest was read and dropped).
func (rr *recordReader) skipCorrupt(start int64, why string, short bool) error {
	skipped, found, err := resync(rr.r)
	rr.off = start + skipped
	switch {
	case err != nil:
		return rr.fail(start, err)
	case found:
		return rr.fail(start, fmt.Errorf("%w: %s; %d bytes skipped to the next whole records", ErrCorrupt, why, skipped))
	case short:
		return rr.fail(start, fmt.Errorf("%w: %s", ErrTorn, why))
	}
	return rr.fail(start, fmt.Errorf("%w: %s", ErrCorrupt, why))
}

func (rr *recordReader) next(buf *[]byte) (schema.Event, error) {
	start := rr.off
	rec := (*buf)[:0]
	if rr.format == JSONL {
		for {
			frag, err := rr.r.ReadSlice('\n')
			rec = append(rec, frag...)
			if errors.Is(err, bufio.ErrBufferFull) {
				if len(rec) > maxRecord {
					return schema.Event{}, rr.fail(start, fmt.Errorf("%w: a line longer than %d bytes", ErrCorrupt, maxRecord))
				}
				continue
			}
			if err == io.EOF {
				if len(rec) == 0 {
					return schema.Event{}, io.EOF
				}
				return schema.Event{}, rr.fail(start, fmt.Errorf("%w: %d bytes without a newline", ErrTorn, len(rec)))
			}
			if err != nil {
				return schema.Event{}, rr.fail(start, err)
			}
			break
		}
		*buf = rec
		rr.off += int64(len(rec))
		e, err := schema.DecodeJSON(rec[:len(rec)-1])
		if err != nil {
			return schema.Event{}, rr.fail(start, fmt.Errorf("%w: %w", ErrCorrupt, err))
		}
		return e, nil
	}
	hdr, err := rr.r.Peek(4)
	switch {
	case len(hdr) == 0 && err == io.EOF:
		return schema.Event{}, io.EOF
	case len(hdr) < 4 && err == io.EOF:
		n, _ := rr.r.Discard(len(hdr))
		rr.off += int64(n)
		return schema.Event{}, rr.fail(start, fmt.Errorf("%w: a length prefix of %d bytes", ErrTorn, n))
	case err != nil:
		return schema.Event{}, rr.fail(start, err)
	}
	l := binary.BigEndian.Uint32(hdr)
	if l == 0 || l > maxRecord {
		return schema.Event{}, rr.skipCorrupt(start, fmt.Sprintf("a record length of %d", l), false)
	}
	if 4+int(l) <= rr.r.Size() {
		// Look before reading: a length longer than what is left is a
		// torn tail, or a corrupt length with records after it.
		if b, _ := rr.r.Peek(4 + int(l)); len(b) < 4+int(l) {
			return schema.Event{}, rr.skipCorrupt(start, fmt.Sprintf("a record of %d bytes with %d present", l, len(b)-4), true)
		}
	}
	if _, err := rr.r.Discard(4); err != nil {
		return schema.Event{}, rr.fail(start, err)
	}
	if cap(rec) < int(l) {
		rec = make([]byte, l)
	}
	rec = rec[:l]
	n, err := io.ReadFull(rr.r, rec)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF:
		return schema.Event{}, rr.fail(start, fmt.Errorf("%w: a record of %d bytes with %d present", ErrTorn, l, n))
	case err != nil:
		return schema.Event{}, rr.fail(start, err)
	}
	*buf = rec
	rr.off += 4 + int64(l)
	e, err := schema.DecodeMsgpack(rec)
	if err != nil {
		return schema.Event{}, rr.fail(start, fmt.Errorf("%w: %w", ErrCorrupt, err))
	}
	return e, nil
}
