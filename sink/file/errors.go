package file

import (
	"errors"
	"fmt"
)

// ErrTorn: a file ends with part of a record (a line without its newline,
// a length prefix with fewer bytes after it), as a crash while writing
// leaves it. New cuts such a tail off the active file; a Reader reports it.
var ErrTorn = errors.New("torn record")

// ErrCorrupt: a record is whole by its framing but does not hold an event
// (it does not decode, or its length is out of range).
var ErrCorrupt = errors.New("corrupt record")

// maxRecord bounds one record: an event's encoding is a few KiB; a length
// prefix beyond this is corruption, not an event.
const maxRecord = 64 << 20

// RecordError reports a record a Reader could not return: in which file, at
// which offset (of the uncompressed data), and why (matching ErrTorn or
// ErrCorrupt with errors.Is, and the decoder's error).
type RecordError struct {
	File   string
	Offset int64
	Err    error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("file: %s: record at offset %d: %v", e.File, e.Offset, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }
