package file

import (
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"
)

// File names:
//
//	<prefix>.<ext>                                active file
//	<prefix>-<seq>-<time>.<ext>                   rotated file
//	<prefix>-<seq>-<time>.<ext>.zst               rotated file, compressed
//	<prefix>-<seq>-<time>.<ext>.zst.tmp           compression in progress
//
// seq is a decimal of at least 10 digits (zero-padded), one more than the
// highest found in the directory, so that names sort in the order the files
// were written even if the clock steps back; time is the UTC time of the
// rotation, 20060102T150405Z.

const (
	zstExt     = ".zst"
	tmpExt     = ".tmp"
	timeLayout = "20060102T150405Z"
	seqDigits  = 10
)

var formats = [...]Format{JSONL, Msgpack}

func activeName(prefix string, f Format) string { return prefix + f.ext() }

func rotatedName(prefix string, seq uint64, t time.Time, f Format) string {
	return fmt.Sprintf("%s-%0*d-%s%s", prefix, seqDigits, seq, t.UTC().Format(timeLayout), f.ext())
}

// rotatedFile is a rotated file found in the directory.
type rotatedFile struct {
	name   string // without .zst
	seq    uint64
	format Format
	plain  bool // name exists
	zst    bool // name + ".zst" exists
}

// parseRotated parses a rotated file's name without ".zst".
func parseRotated(prefix, name string) (seq uint64, f Format, ok bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return 0, "", false
	}
	digits, rest, ok := strings.Cut(rest, "-")
	if !ok || len(digits) < seqDigits {
		return 0, "", false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, "", false
	}
	if len(rest) < len(timeLayout) {
		return 0, "", false
	}
	if _, err := time.Parse(timeLayout, rest[:len(timeLayout)]); err != nil {
		return 0, "", false
	}
	for _, f := range formats {
		if rest[len(timeLayout):] == f.ext() {
			return seq, f, true
		}
	}
	return 0, "", false
}

// dirState is what a directory holds for a prefix.
type dirState struct {
	active  []Format      // formats whose active file exists
	rotated []rotatedFile // by seq
	tmp     []string      // unfinished compressions
	nextSeq uint64
}

func scanDir(dir fs.FS, prefix string) (dirState, error) {
	var st dirState
	entries, err := fs.ReadDir(dir, ".")
	if err != nil {
		return st, err
	}
	byName := map[string]*rotatedFile{}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		for _, f := range formats {
			if name == activeName(prefix, f) {
				st.active = append(st.active, f)
			}
		}
		base, isTmp := strings.CutSuffix(name, zstExt+tmpExt)
		if isTmp {
			if _, _, ok := parseRotated(prefix, base); ok {
				st.tmp = append(st.tmp, name)
			}
			continue
		}
		base, isZst := strings.CutSuffix(name, zstExt)
		seq, f, ok := parseRotated(prefix, base)
		if !ok {
			continue
		}
		r := byName[base]
		if r == nil {
			r = &rotatedFile{name: base, seq: seq, format: f}
			byName[base] = r
		}
		if isZst {
			r.zst = true
		} else {
			r.plain = true
		}
		st.nextSeq = max(st.nextSeq, seq+1)
	}
	for _, r := range byName {
		st.rotated = append(st.rotated, *r)
	}
	slices.SortFunc(st.rotated, func(a, b rotatedFile) int {
		if c := cmpUint(a.seq, b.seq); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	return st, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
