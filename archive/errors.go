package archive

import (
	"errors"
	"fmt"
)

// Sentinel errors; every verification error wraps one of them.
var (
	// ErrTruncated: a file has fewer records than its signed entry.
	ErrTruncated = errors.New("truncated")
	// ErrExtra: a file has more records than its signed entry.
	ErrExtra = errors.New("records beyond the signed size")
	// ErrEdited: a file's records do not hash to its signed root, or a
	// file's entry differs from the signed one.
	ErrEdited = errors.New("edited")
	// ErrMissing: a file named by a checkpoint is not in the archive.
	ErrMissing = errors.New("missing")
	// ErrReordered: a file named by a checkpoint is at another position.
	ErrReordered = errors.New("reordered")
	// ErrUnsigned: a file no checkpoint covers.
	ErrUnsigned = errors.New("not covered by any checkpoint")
	// ErrOrigin: a checkpoint of another origin (another host's log).
	ErrOrigin = errors.New("another origin")
	// ErrChain: a checkpoint does not follow the one before it.
	ErrChain = errors.New("broken chain")
	// ErrMalformed: text that is not a checkpoint or a file entry.
	ErrMalformed = errors.New("malformed")
)

// A FileError names the file, and the record when it is known, where
// verification failed.
type FileError struct {
	File   string
	Record int64 // index of the first bad record; -1 when unknown
	Err    error // wraps a sentinel
}

func (e *FileError) Error() string {
	if e.Record < 0 {
		return fmt.Sprintf("archive: file %s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("archive: file %s: record %d: %v", e.File, e.Record, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// A CheckpointError names the checkpoint (its index in the chain, 0 first)
// where verification failed.
type CheckpointError struct {
	Index int
	Size  int64 // the checkpoint's tree size; 0 when not parsed
	Err   error
}

func (e *CheckpointError) Error() string {
	return fmt.Sprintf("archive: checkpoint %d (size %d): %v", e.Index, e.Size, e.Err)
}

func (e *CheckpointError) Unwrap() error { return e.Err }
