package schema

import (
	"errors"
	"fmt"
)

// Sentinel errors; every decoding error wraps exactly one of them.
var (
	// ErrShort: the buffer ends before the structure it should hold.
	ErrShort = errors.New("short buffer")
	// ErrLength: a length field disagrees with the bytes present or with the
	// structure it describes.
	ErrLength = errors.New("length field does not match the data")
	// ErrUnknownType: a type field holds a value this version does not know.
	ErrUnknownType = errors.New("unknown type")
)

// A FormatError reports malformed input: which structure, at which byte
// offset of the buffer handed to the decoder, and why.
type FormatError struct {
	What   string // "nlmsghdr", "cn_msg", "proc_event", ...
	Offset int    // byte offset within the decoded buffer
	Err    error  // ErrShort, ErrLength or ErrUnknownType
	Detail string // what exactly disagreed
}

func (e *FormatError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("schema: %s at offset %d: %v", e.What, e.Offset, e.Err)
	}
	return fmt.Sprintf("schema: %s at offset %d: %v: %s", e.What, e.Offset, e.Err, e.Detail)
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(what string, off int, err error, format string, args ...any) error {
	return &FormatError{What: what, Offset: off, Err: err, Detail: fmt.Sprintf(format, args...)}
}
