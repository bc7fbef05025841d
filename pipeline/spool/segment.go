package spool

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cnstream/cnstream/schema"
)

// Segment file format (little endian):
//
//	header  18 + h bytes: "CNSPOOL2", base index u64 (the index of its
//	        first record), h u16, the host of the run that wrote it (JSON
//	        of schema.Host, h bytes)
//	record  17 + n bytes: length n u32, CRC-32C u32 of the 9 + n bytes that
//	        follow it, index u64, kind u8 (bit 7: compact), payload (one
//	        event, MessagePack, schema.AppendMsgpack)
//
// Every record carries its index: indices increase by one per record
// appended to the spool, across segments, so that a record destroyed on
// disk leaves a hole whose size is known exactly. A compact record is an
// event of the segment's host whose id is its derived id (or empty): its
// payload leaves the host out and holds "~" (derived) or "." (empty) as
// its id, which saves about half of a record.
const (
	segMagic     = "CNSPOOL2"
	segHeaderLen = 18 // before the host
	compactFlag  = 0x80
	idDerived    = "~"
	idEmpty      = "."
	recHeaderLen = 17
	// maxPayload bounds a record's length: anything longer is corruption
	// (an event is at most a datagram plus its enrichment).
	maxPayload = 16 << 20
	segSuffix  = ".seg"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// segName is the file name of the segment whose first index is base.
func segName(base uint64) string { return fmt.Sprintf("%020d%s", base, segSuffix) }

// parseSegName returns the base index of a segment file name.
func parseSegName(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(s) != 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

// listSegments returns the segment files of dir by base index.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bases []uint64
	for _, e := range ents {
		if b, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			bases = append(bases, b)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	return bases, nil
}

func appendSegHeader(b []byte, base uint64, host *schema.Host) []byte {
	b = append(b, segMagic...)
	b = binary.LittleEndian.AppendUint64(b, base)
	hj, _ := json.Marshal(host)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(hj)))
	return append(b, hj...)
}

// appendRecord appends the record of e, numbered index, to b; compact
// when e is of host and its id is derived (scratch: a buffer for it).
func appendRecord(b []byte, index uint64, e *schema.Event, host *schema.Host, scratch *[]byte) []byte {
	start := len(b)
	b = append(b, make([]byte, recHeaderLen)...)
	kind := byte(e.Kind)
	if e.Host != nil && host != nil && (e.Host == host || *e.Host == *host) {
		id := ""
		if e.ID == "" {
			id = idEmpty
		} else if *scratch = schema.AppendEventID((*scratch)[:0], e); string(*scratch) == e.ID {
			id = idDerived
		}
		if id != "" {
			c := *e
			c.Host, c.ID = nil, id
			e = &c
			kind |= compactFlag
		}
	}
	b = schema.AppendMsgpack(b, e)
	n := len(b) - start - recHeaderLen
	h := b[start:]
	binary.LittleEndian.PutUint32(h[0:], uint32(n))
	binary.LittleEndian.PutUint64(h[8:], index)
	h[16] = kind
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(h[8:recHeaderLen+n], castagnoli))
	return b
}

// record is one record read back.
type record struct {
	index   uint64
	kind    schema.Kind
	compact bool   // host and id left out (see the format)
	payload []byte // valid until the next read
	off     int64  // byte offset of the record in its file
	size    int64  // header + payload
}

// corruptRegion is a run of bytes of a segment that holds no valid record.
type corruptRegion struct {
	file   string
	off    int64
	bytes  int64
	reason string
	tail   bool // it runs to the end of the file
}

// segReader reads the records of one segment file in order, skipping what
// does not hold valid records (reported as corrupt regions).
type segReader struct {
	path string
	f    *os.File
	r    *bufio.Reader
	lf   *limitedFile
	base uint64
	host *schema.Host // of the run that wrote the segment
	off  int64        // offset of the next byte r returns
	size int64        // file size when opened; reads stop there (limit)
	buf  []byte
	last uint64 // index of the last record returned; base-1 before any
	seen bool
}

// openSegReader opens path for reading up to limit bytes (< 0: its size).
func openSegReader(path string, limit int64) (*segReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if limit < 0 {
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		limit = st.Size()
	}
	s := &segReader{path: path, f: f, size: limit, lf: &limitedFile{f: f, limit: limit}}
	s.r = bufio.NewReaderSize(s.lf, 1<<20)
	return s, nil
}

// errBadHeader: the segment's header is not a spool header.
var errBadHeader = errors.New("not a spool segment header")

// header reads and checks the segment header.
func (s *segReader) header() error {
	var h [segHeaderLen]byte
	if _, err := io.ReadFull(s.r, h[:]); err != nil {
		return errBadHeader
	}
	if string(h[:8]) != segMagic {
		return errBadHeader
	}
	s.base = binary.LittleEndian.Uint64(h[8:])
	hj := make([]byte, binary.LittleEndian.Uint16(h[16:]))
	if _, err := io.ReadFull(s.r, hj); err != nil {
		return errBadHeader
	}
	var host schema.Host
	if json.Unmarshal(hj, &host) != nil {
		return errBadHeader
	}
	s.host = &host
	s.off = segHeaderLen + int64(len(hj))
	return nil
}

// decode returns the event of rec, with the host and id of a compact one.
func (s *segReader) decode(rec *record) (schema.Event, error) {
	e, err := schema.DecodeMsgpack(rec.payload)
	if err != nil || !rec.compact {
		return e, err
	}
	e.Host = s.host
	switch e.ID {
	case idEmpty:
		e.ID = ""
	case idDerived:
		e.ID = ""
		e.ID = e.EventID()
	}
	return e, nil
}

// extend lets the reader see the file up to limit bytes (an active
// segment that grew since the reader opened it).
func (s *segReader) extend(limit int64) {
	if limit > s.size {
		s.size, s.lf.limit = limit, limit
	}
}

// limitedFile reads a file sequentially up to a limit that may grow.
type limitedFile struct {
	f          *os.File
	pos, limit int64
}

func (l *limitedFile) Read(p []byte) (int, error) {
	if l.pos >= l.limit {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), l.limit-l.pos)]
	n, err := l.f.ReadAt(p, l.pos)
	l.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// next returns the next valid record; a corrupt region found on the way is
// returned too (with rec nil when the file ends in it). io.EOF at the end.
func (s *segReader) next() (*record, *corruptRegion, error) {
	start := s.off
	var reg *corruptRegion
	for {
		rec, reason := s.try()
		if rec != nil {
			if reg != nil {
				reg.bytes = rec.off - reg.off
			}
			s.last, s.seen = rec.index, true
			return rec, reg, nil
		}
		if reason == "" { // clean end of file
			if reg != nil {
				reg.bytes, reg.tail = s.off-reg.off, true
				return nil, reg, nil
			}
			return nil, nil, io.EOF
		}
		if reg == nil {
			reg = &corruptRegion{file: filepath.Base(s.path), off: start, reason: reason}
		}
		// Skip one byte and look for the next valid record.
		if _, err := s.r.Discard(1); err != nil {
			reg.bytes, reg.tail = s.off-reg.off, true
			return nil, reg, nil
		}
		s.off++
	}
}

// try reads a record at the current offset. On success it consumes it; on
// failure it consumes nothing and says why ("" at a clean end of file).
func (s *segReader) try() (*record, string) {
	h, err := s.r.Peek(recHeaderLen)
	if len(h) == 0 && err != nil {
		return nil, ""
	}
	if len(h) < recHeaderLen {
		return nil, "torn tail"
	}
	n := int(binary.LittleEndian.Uint32(h[0:]))
	if n > maxPayload || int64(n) > s.size-s.off-recHeaderLen {
		if int64(n) <= maxPayload {
			return nil, "torn tail"
		}
		return nil, "bad length"
	}
	sum := binary.LittleEndian.Uint32(h[4:])
	index := binary.LittleEndian.Uint64(h[8:])
	// h is not valid after the next Peek (bufio may slide its buffer):
	// take what it holds now.
	kind := schema.Kind(h[16] &^ compactFlag)
	compact := h[16]&compactFlag != 0
	total := recHeaderLen + n
	var b []byte
	if total <= s.r.Size() {
		if b, err = s.r.Peek(total); err != nil {
			return nil, "torn tail"
		}
	} else { // larger than the buffer: read it through a copy
		if cap(s.buf) < total {
			s.buf = make([]byte, total)
		}
		b = s.buf[:total]
		if _, err := s.f.ReadAt(b, s.off); err != nil {
			return nil, "torn tail"
		}
	}
	if crc32.Checksum(b[8:total], castagnoli) != sum {
		return nil, "crc mismatch"
	}
	if kind == schema.KindUnknown || (s.seen && index <= s.last) || index < s.base {
		return nil, "bad index"
	}
	rec := &record{index: index, kind: kind, compact: compact, payload: b[recHeaderLen:total], off: s.off, size: int64(total)}
	if total > s.r.Size() {
		s.lf.pos = s.off + int64(total)
		s.r.Reset(s.lf)
	} else {
		// Copy out before Discard invalidates the peeked bytes.
		if cap(s.buf) < n {
			s.buf = make([]byte, max(n, 4096))
		}
		rec.payload = append(s.buf[:0], rec.payload...)
		s.r.Discard(total)
	}
	s.off += int64(total)
	return rec, ""
}

func (s *segReader) close() error { return s.f.Close() }
