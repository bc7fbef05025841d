package file

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/cnstream/cnstream/schema"
)

// wholeRecords returns the size of the whole records at the start of f (of
// size bytes) and, when that is less than size, why the rest is not a
// record. The last whole record is decoded too: a record whose length made
// it to disk but whose bytes did not is cut as well.
func wholeRecords(f *os.File, size int64, format Format) (keep int64, reason string, corrupt []region, err error) {
	if format == JSONL {
		keep, reason, err := wholeLines(f, size)
		return keep, reason, nil, err
	}
	return wholeFrames(f, size)
}

func wholeLines(f *os.File, size int64) (int64, string, error) {
	nl, err := lastNewline(f, size)
	if err != nil {
		return 0, "", err
	}
	keep, reason := nl+1, ""
	if keep < size {
		reason = fmt.Sprintf("a line of %d bytes without its newline", size-keep)
	}
	if keep == 0 {
		return 0, reason, nil
	}
	start, err := lastNewline(f, keep-1)
	if err != nil {
		return 0, "", err
	}
	start++
	if keep-1-start > maxRecord {
		return start, fmt.Sprintf("a line of %d bytes, more than a record holds", keep-1-start), nil
	}
	line := make([]byte, keep-1-start)
	if _, err := f.ReadAt(line, start); err != nil {
		return 0, "", err
	}
	if _, err := schema.DecodeJSON(line); err != nil {
		return start, fmt.Sprintf("the last line does not decode: %v", err), nil
	}
	return keep, reason, nil
}

// lastNewline returns the offset of the last '\n' before end, or -1.
func lastNewline(f *os.File, end int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end > 0 {
		n := min(int64(len(buf)), end)
		b := buf[:n]
		if _, err := f.ReadAt(b, end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return end - n + int64(i), nil
		}
		end -= n
	}
	return -1, nil
}

// wholeFrames walks the frames of a msgpack file of size bytes. Where a
// frame's length is not a record's (zero, more than maxRecord, more than
// the bytes left), it looks for the next offset whose bytes are whole
// records again (resync): if there is one, the bytes in between are a
// corrupt region, kept as they are and returned in corrupt, and the walk
// goes on from there; if there is none, the rest is the torn tail and keep
// is where it starts. The last whole record is decoded too: one whose
// length made it to disk but whose bytes did not is cut as well.
func wholeFrames(f *os.File, size int64) (keep int64, reason string, corrupt []region, err error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), resyncWindow)
	off, last := int64(0), int64(-1)
	var lastLen uint32
	for off < size {
		if size-off < 4 {
			reason = fmt.Sprintf("a length prefix of %d bytes", size-off)
			break
		}
		hdr, err := r.Peek(4)
		if err != nil {
			return 0, "", nil, err
		}
		l := binary.BigEndian.Uint32(hdr)
		if l == 0 || l > maxRecord || size-off-4 < int64(l) {
			why := fmt.Sprintf("a record length of %d", l)
			if l != 0 && l <= maxRecord {
				why = fmt.Sprintf("a record of %d bytes with %d present", l, size-off-4)
			}
			skipped, found, err := resync(r)
			if err != nil {
				return 0, "", nil, err
			}
			if !found {
				reason = why
				break
			}
			corrupt = append(corrupt, region{Offset: off, Bytes: skipped, Reason: why})
			off += skipped
			continue
		}
		if _, err := r.Discard(4 + int(l)); err != nil {
			return 0, "", nil, err
		}
		last, lastLen = off, l
		off += 4 + int64(l)
	}
	if last >= 0 {
		rec := make([]byte, lastLen)
		if _, err := f.ReadAt(rec, last+4); err != nil {
			return 0, "", nil, err
		}
		if _, err := schema.DecodeMsgpack(rec); err != nil {
			return last, fmt.Sprintf("the last record does not decode: %v", err), corrupt, nil
		}
	}
	return off, reason, corrupt, nil
}

// region is a corrupt region in the middle of a msgpack file: bytes that
// are not whole records, followed by whole records.
type region struct {
	Offset, Bytes int64
	Reason        string
}

// resyncWindow is the most a resync point's two frames may take: records
// are a few KiB; a larger one cannot be a resync point.
const resyncWindow = 1 << 20

// resync discards bytes of r, at least one, until r is at a resync point:
// a frame whose record decodes, followed by the end of the data, by a
// torn frame (shorter than its length says), or by another frame whose
// record decodes. It returns how many bytes it discarded and whether it
// found one (false: it discarded everything). Both frames must fit in r's
// buffer.
func resync(r *bufio.Reader) (skipped int64, found bool, err error) {
	for {
		n, err := r.Discard(1)
		skipped += int64(n)
		if err == io.EOF {
			return skipped, false, nil
		}
		if err != nil {
			return skipped, false, err
		}
		first, st := peekFrame(r, 0)
		if st != frameOK {
			if st == frameEnd {
				return skipped, false, nil
			}
			continue
		}
		if _, st := peekFrame(r, first); st != frameBad {
			return skipped, true, nil
		}
	}
}

type frameStatus int

const (
	frameOK   frameStatus = iota // a whole frame whose record decodes
	frameEnd                     // no byte left
	frameTorn                    // fewer bytes left than the frame needs
	frameBad                     // a length out of range, a record that does not decode, or too large to check
)

// peekFrame looks at the frame at offset at of r's unread bytes without
// reading it: its end (offset) and what it is.
func peekFrame(r *bufio.Reader, at int) (end int, st frameStatus) {
	hdr, err := r.Peek(at + 4)
	if len(hdr) <= at && err != nil {
		return at, frameEnd
	}
	if len(hdr) < at+4 {
		return at, frameTorn
	}
	l := int(binary.BigEndian.Uint32(hdr[at:]))
	if l == 0 || l > maxRecord {
		return at, frameBad
	}
	if at+4+l > r.Size() {
		return at, frameBad
	}
	b, err := r.Peek(at + 4 + l)
	if len(b) < at+4+l {
		if err == io.EOF {
			return at, frameTorn
		}
		return at, frameBad
	}
	if c := b[at+4]; c&0xf0 != 0x80 && c != 0xde && c != 0xdf { // not a map: not an event
		return at, frameBad
	}
	if _, err := schema.DecodeMsgpack(b[at+4:]); err != nil {
		return at, frameBad
	}
	return at + 4 + l, frameOK
}

// recoverFile cuts the torn tail of the file at path (open as f), if any,
// and returns its size after the cut, what was cut (nil if nothing) and
// the corrupt regions found before it (msgpack), which stay.
func recoverFile(f *os.File, path string, format Format) (int64, *Torn, []region, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, nil, err
	}
	size := fi.Size()
	keep, reason, corrupt, err := wholeRecords(f, size, format)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("file: checking %s: %w", path, err)
	}
	if keep == size {
		return size, nil, corrupt, nil
	}
	records, err := cutRecords(f, keep, size, format)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("file: checking %s: %w", path, err)
	}
	if err := f.Truncate(keep); err != nil {
		return 0, nil, nil, fmt.Errorf("file: cutting the torn tail of %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return 0, nil, nil, fmt.Errorf("file: cutting the torn tail of %s: %w", path, err)
	}
	return keep, &Torn{File: path, Offset: keep, Bytes: size - keep, Records: records, Reason: reason}, corrupt, nil
}

// cutRecords counts the records whose bytes lie in [from, size) of f, at
// least 1: JSONL, the lines (a last one without its newline included);
// msgpack, the frames, a partial or corrupt one counting as one and ending
// the count (what follows a corrupt length cannot be told apart).
func cutRecords(f *os.File, from, size int64, format Format) (uint64, error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, from, size-from), 1<<20)
	var n uint64
	if format == JSONL {
		buf := make([]byte, 64<<10)
		var last byte
		for {
			k, err := r.Read(buf)
			n += uint64(bytes.Count(buf[:k], []byte{'\n'}))
			if k > 0 {
				last = buf[k-1]
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return 0, err
			}
		}
		if last != '\n' {
			n++
		}
		return max(n, 1), nil
	}
	var hdr [4]byte
	for off := from; off < size; {
		n++
		if size-off < 4 {
			break
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0, err
		}
		l := binary.BigEndian.Uint32(hdr[:])
		if l == 0 || l > maxRecord || size-off-4 < int64(l) {
			break
		}
		if _, err := r.Discard(int(l)); err != nil {
			return 0, err
		}
		off += 4 + int64(l)
	}
	return max(n, 1), nil
}
