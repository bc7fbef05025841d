package schema

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// noPanic runs f and turns a panic into an error.
func noPanic(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// TestShortBuffers truncates every captured datagram, and each structure in
// it, to every length below its size: each decoder must return an error
// matching ErrShort or ErrLength, as a *FormatError, and never panic. The
// truncated input is a fresh copy, so nothing past its end can be read.
func TestShortBuffers(t *testing.T) {
	decoders := []struct {
		name string
		from int // where the structure starts in the datagram
		fn   func(b []byte) error
	}{
		{"ParseNetlink", 0, func(b []byte) error { _, err := ParseNetlink(b, nil); return err }},
		{"DecodeNetlinkHeader", 0, func(b []byte) error { _, err := DecodeNetlinkHeader(b); return err }},
		{"DecodeNetlinkError", 16, func(b []byte) error { _, err := DecodeNetlinkError(b); return err }},
		{"DecodeCnMsg", 16, func(b []byte) error { _, err := DecodeCnMsg(b); return err }},
		{"DecodeProcEvent", 36, func(b []byte) error { _, err := DecodeProcEvent(b); return err }},
		{"datagram", 0, func(b []byte) error { _, err := decodeDatagram(b); return err }},
	}
	for _, c := range loadCaptured(t) {
		for _, d := range decoders {
			whole := c.raw[d.from:]
			size := len(whole)
			switch d.name {
			case "DecodeNetlinkHeader":
				size = NetlinkHeaderLen
			case "DecodeNetlinkError":
				size = 4 + NetlinkHeaderLen
			}
			for n := 0; n < size; n++ {
				err := noPanic(func() error { return d.fn(bytes.Clone(whole[:n])) })
				var fe *FormatError
				if !errors.Is(err, ErrShort) && !errors.Is(err, ErrLength) || !errors.As(err, &fe) {
					t.Errorf("%s: %s of %d of %d bytes: err = %v, want a *FormatError matching ErrShort or ErrLength", c.name, d.name, n, size, err)
				}
			}
		}
	}
}
