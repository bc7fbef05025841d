package archive

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// VerifyFile checks that records are exactly the records of the file that
// want describes. A short or long list names the first missing or extra
// record; records that do not hash to want.Root fail with Record -1 (the
// root alone cannot tell which record changed). Errors are *FileError.
func VerifyFile(records [][]byte, want FileEntry) error {
	n := int64(len(records))
	switch {
	case n < want.Records:
		return &FileError{File: want.Name, Record: n, Err: fmt.Errorf("%w: %d of %d records", ErrTruncated, n, want.Records)}
	case n > want.Records:
		return &FileError{File: want.Name, Record: want.Records, Err: fmt.Errorf("%w: %d records, signed %d", ErrExtra, n, want.Records)}
	}
	if got := HashRecords(records); got != want.Root {
		return &FileError{File: want.Name, Record: -1, Err: fmt.Errorf("%w: records hash to %s, signed root %s", ErrEdited, got, want.Root)}
	}
	return nil
}

// VerifyFileLeaves is VerifyFile with the file's leaf hashes (as returned
// by Tree.Add, kept beside the file by the writer): the leaves are first
// checked against want.Root, then a changed record is named by its index.
// Leaves that do not hash to want.Root fail with Record -1 and ErrEdited.
func VerifyFileLeaves(records [][]byte, leaves []tlog.Hash, want FileEntry) error {
	var t Tree
	for _, h := range leaves {
		t.AddHash(h)
	}
	if t.Size() != want.Records || t.Root() != want.Root {
		return &FileError{File: want.Name, Record: -1, Err: fmt.Errorf("%w: %d leaf hashes do not hash to the signed root %s of %d records", ErrEdited, t.Size(), want.Root, want.Records)}
	}
	var h Tree
	for i, r := range records {
		if i >= len(leaves) {
			return &FileError{File: want.Name, Record: want.Records, Err: fmt.Errorf("%w: %d records, signed %d", ErrExtra, len(records), want.Records)}
		}
		if got := h.Add(r); got != leaves[i] {
			return &FileError{File: want.Name, Record: int64(i), Err: fmt.Errorf("%w: record hash %s, signed leaf %s", ErrEdited, got, leaves[i])}
		}
	}
	if n := int64(len(records)); n < want.Records {
		return &FileError{File: want.Name, Record: n, Err: fmt.Errorf("%w: %d of %d records", ErrTruncated, n, want.Records)}
	}
	return nil
}

// VerifyChain checks that checkpoints (opened, in order, first to last)
// form one chain of origin and that files (the archive's files in log
// order, each with the entry computed from its records) are exactly the
// files they sign. It returns the first broken link, in this order: a
// *CheckpointError for the chain itself (ErrOrigin, ErrChain, or a root
// that is not that of the entries listed: ErrEdited); then a *FileError
// for a file no checkpoint lists (ErrUnsigned: one slipped into the
// archive, wherever it sorts); then for the first signed entry whose file
// is absent (ErrMissing), elsewhere (ErrReordered) or different
// (ErrEdited).
func VerifyChain(origin string, checkpoints []*Checkpoint, files []FileEntry) error {
	var (
		log    Tree // the log over the signed entries
		size   int64
		prev   *Checkpoint
		signed []FileEntry
	)
	for i, c := range checkpoints {
		cerr := func(format string, args ...any) error {
			return &CheckpointError{Index: i, Size: c.Size, Err: fmt.Errorf(format, args...)}
		}
		if c.Origin != origin {
			return cerr("origin %q, want %q: %w", c.Origin, origin, ErrOrigin)
		}
		switch {
		case prev == nil && c.Prev != (tlog.Hash{}):
			return cerr("first checkpoint names a previous one (%s): %w", c.Prev, ErrChain)
		case prev != nil && c.Prev != prev.TextHash():
			return cerr("prev %s is not the hash %s of checkpoint %d: %w", c.Prev, prev.TextHash(), i-1, ErrChain)
		case c.Size != size+int64(len(c.Files)):
			return cerr("adds %d files to %d: %w", len(c.Files), size, ErrChain)
		}
		for _, e := range c.Files {
			log.Add(e.Leaf())
			size++
		}
		if got := log.Root(); got != c.Root {
			return cerr("root %s, the files it lists hash to %s: %w", c.Root, got, ErrEdited)
		}
		signed = append(signed, c.Files...)
		prev = c
	}
	listed := make(map[string]bool, len(signed))
	for _, e := range signed {
		listed[e.Name] = true
	}
	for i, f := range files {
		if !listed[f.Name] {
			return &FileError{File: f.Name, Record: -1, Err: fmt.Errorf("file %d of %d: %w", i, len(files), ErrUnsigned)}
		}
	}
	pos := make(map[string]int, len(files))
	for i, f := range files {
		pos[f.Name] = i
	}
	for i, e := range signed {
		if err := checkEntry(e, int64(i), files, pos); err != nil {
			return err
		}
	}
	return nil
}

// checkEntry compares the signed entry e of file i with the archive's.
func checkEntry(e FileEntry, i int64, files []FileEntry, pos map[string]int) error {
	ferr := func(format string, args ...any) error {
		return &FileError{File: e.Name, Record: -1, Err: fmt.Errorf(format, args...)}
	}
	j, ok := pos[e.Name]
	switch {
	case !ok:
		return ferr("file %d of the log: %w", i, ErrMissing)
	case int64(j) != i:
		return ferr("file %d of the log is at position %d: %w", i, j, ErrReordered)
	}
	f := files[j]
	switch {
	case f.Records != e.Records:
		return ferr("%d records, signed %d: %w", f.Records, e.Records, ErrEdited)
	case f.Root != e.Root:
		return ferr("root %s, signed %s: %w", f.Root, e.Root, ErrEdited)
	}
	return nil
}
