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
func wholeRecords(f *os.File, size int64, format Format) (keep int64, reason string, err error) {
	if format == JSONL {
		return wholeLines(f, size)
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

func wholeFrames(f *os.File, size int64) (int64, string, error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	var hdr [4]byte
	off, last := int64(0), int64(-1)
	var lastLen uint32
	reason := ""
	for off < size {
		if size-off < 4 {
			reason = fmt.Sprintf("a length prefix of %d bytes", size-off)
			break
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return 0, "", err
		}
		l := binary.BigEndian.Uint32(hdr[:])
		if l == 0 || l > maxRecord {
			reason = fmt.Sprintf("a record length of %d", l)
			break
		}
		if size-off-4 < int64(l) {
			reason = fmt.Sprintf("a record of %d bytes with %d present", l, size-off-4)
			break
		}
		if _, err := r.Discard(int(l)); err != nil {
			return 0, "", err
		}
		last, lastLen = off, l
		off += 4 + int64(l)
	}
	if last >= 0 {
		rec := make([]byte, lastLen)
		if _, err := f.ReadAt(rec, last+4); err != nil {
			return 0, "", err
		}
		if _, err := schema.DecodeMsgpack(rec); err != nil {
			return last, fmt.Sprintf("the last record does not decode: %v", err), nil
		}
	}
	return off, reason, nil
}

// recoverFile cuts the torn tail of the file at path (open as f), if any,
// and returns its size after the cut and what was cut (nil if nothing).
func recoverFile(f *os.File, path string, format Format) (int64, *Torn, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	size := fi.Size()
	keep, reason, err := wholeRecords(f, size, format)
	if err != nil {
		return 0, nil, fmt.Errorf("file: checking %s: %w", path, err)
	}
	if keep == size {
		return size, nil, nil
	}
	records, err := cutRecords(f, keep, size, format)
	if err != nil {
		return 0, nil, fmt.Errorf("file: checking %s: %w", path, err)
	}
	if err := f.Truncate(keep); err != nil {
		return 0, nil, fmt.Errorf("file: cutting the torn tail of %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return 0, nil, fmt.Errorf("file: cutting the torn tail of %s: %w", path, err)
	}
	return keep, &Torn{File: path, Offset: keep, Bytes: size - keep, Records: records, Reason: reason}, nil
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
