package schema

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrEventVersion: an event's "v" is missing, or names a version this
// package does not read (newer than EventVersion).
var ErrEventVersion = errors.New("unsupported event version")

// maxMsgpackDepth bounds the nesting of a MessagePack event (an event nests
// four deep: event, process, ancestors, ancestor), so that hostile input
// cannot exhaust the stack of the recursive decoder.
const maxMsgpackDepth = 64

// DecodeJSON decodes one event written by AppendJSON (or by any writer of
// event version 1). Unknown fields are ignored, as the compatibility rule
// asks. "v" must be present and at most EventVersion, else the error
// matches ErrEventVersion and names the version; "kind" must be present and
// the member it names (e.g. "exec" for kind exec) set, so that a consumer
// can switch on Kind and use the member. Time and a process's StartTime are
// returned in UTC.
func DecodeJSON(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		// A newer version may fail to decode into this one's types: say so
		// rather than report the type error.
		var peek struct {
			V *int `json:"v"`
		}
		if json.Unmarshal(b, &peek) == nil && peek.V != nil {
			if verr := checkEventVersion(*peek.V); verr != nil {
				return Event{}, verr
			}
		}
		return Event{}, fmt.Errorf("schema: JSON event: %w", err)
	}
	return checkEvent(e)
}

// DecodeMsgpack decodes one event written by AppendMsgpack: exactly one
// MessagePack map, nothing after it, and checks "v", "kind" and the kind's
// member as DecodeJSON does. Time and a process's StartTime are returned in
// UTC.
//
// What AppendMsgpack writes is read by a decoder without reflection. Any
// other input (unknown fields, other types or forms) is decoded as a whole
// by the general path: a check that the input is well formed and nests at
// most 64 deep, then github.com/vmihailenco/msgpack/v5 by the json tags
// (SetCustomStructTag). Both give the same event, or the same error, for
// every input. The strings of an event from the first decoder are pieces
// of one allocation: keeping one keeps the bytes of all (a few hundred
// bytes for an enriched exec event).
func DecodeMsgpack(b []byte) (Event, error) {
	var e Event
	if decodeMsgpackFast(b, &e) {
		return checkEvent(e)
	}
	return decodeMsgpackReflect(b)
}

// decodeMsgpackReflect is DecodeMsgpack's general path, for any input.
func decodeMsgpackReflect(b []byte) (Event, error) {
	if err := checkMsgpack(b, maxMsgpackDepth); err != nil {
		return Event{}, err
	}
	if c := b[0]; c&0xf0 != 0x80 && c != 0xde && c != 0xdf {
		return Event{}, fmt.Errorf("schema: msgpack event: a value of code %#x, not a map", c)
	}
	var e Event
	if err := decodeMsgpack(b, &e); err != nil {
		var peek struct {
			V *int `json:"v"`
		}
		if decodeMsgpack(b, &peek) == nil && peek.V != nil {
			if verr := checkEventVersion(*peek.V); verr != nil {
				return Event{}, verr
			}
		}
		return Event{}, fmt.Errorf("schema: msgpack event: %w", err)
	}
	return checkEvent(e)
}

// decodeMsgpack decodes b into v with vmihailenco/msgpack. That decoder
// panics on some well-formed input (nil for "time": it calls
// reflect.Value.IsNil on the time.Time); the panic is returned as an error,
// so that no input crashes the caller.
func decodeMsgpack(b []byte, v any) (err error) {
	d := msgpack.GetDecoder()
	defer func() {
		if r := recover(); r != nil {
			// The decoder may be left in any state: not returned to the pool.
			err = fmt.Errorf("decoder failed: %v", r)
			return
		}
		msgpack.PutDecoder(d)
	}()
	d.Reset(bytes.NewReader(b))
	d.SetCustomStructTag("json")
	return d.Decode(v)
}

// checkEvent checks what a consumer relies on: a version it reads, a kind,
// and the member the kind names. It returns e with its time and its
// process's start time in UTC.
func checkEvent(e Event) (Event, error) {
	if err := checkEventVersion(e.Version); err != nil {
		return Event{}, err
	}
	if e.Kind == KindUnknown || int(e.Kind) >= len(kindNames) {
		return Event{}, errors.New("schema: event without kind")
	}
	if !e.hasMember() {
		return Event{}, fmt.Errorf("schema: %s event without its %q member", e.Kind, e.Kind)
	}
	e.Time = e.Time.UTC()
	if p := e.Process; p != nil {
		p.StartTime = p.StartTime.UTC()
	}
	return e, nil
}

// hasMember reports whether the member e.Kind names is set.
func (e *Event) hasMember() bool {
	switch e.Kind {
	case KindFork:
		return e.Fork != nil
	case KindExec:
		return e.Exec != nil
	case KindExit:
		return e.Exit != nil
	case KindUID:
		return e.UID != nil
	case KindGID:
		return e.GID != nil
	case KindSID:
		return e.SID != nil
	case KindPtrace:
		return e.Ptrace != nil
	case KindComm:
		return e.Comm != nil
	case KindCoredump:
		return e.Coredump != nil
	case KindAck:
		return e.Ack != nil
	case KindRaw:
		return e.Raw != nil
	case KindGap:
		return e.Gap != nil
	case KindOverrun:
		return e.Overrun != nil
	case KindMalformed:
		return e.Malformed != nil
	case KindForged:
		return e.Forged != nil
	case KindDropped:
		return e.Dropped != nil
	case KindFiltered:
		return e.Filtered != nil
	case KindClosed:
		return e.Closed != nil
	case KindCorrupt:
		return e.Corrupt != nil
	}
	return false
}

func checkEventVersion(v int) error {
	switch {
	case v == 0:
		return fmt.Errorf("schema: event without version (field v): %w", ErrEventVersion)
	case v < 0:
		return fmt.Errorf("schema: event version %d: %w", v, ErrEventVersion)
	case v > EventVersion:
		return fmt.Errorf("schema: event version %d is newer than version %d, the newest this reader knows: %w",
			v, EventVersion, ErrEventVersion)
	}
	return nil
}

// checkMsgpack checks that b holds exactly one well-formed MessagePack value
// whose arrays and maps nest at most maxDepth deep. It works iteratively,
// in time linear in len(b).
func checkMsgpack(b []byte, maxDepth int) error {
	var stack [maxMsgpackDepth]uint64 // values left to read in each open container
	depth := 0
	left := uint64(1) // values left to read at the current depth
	i := 0
	fail := func(at int, what string) error {
		return fmt.Errorf("schema: msgpack event: %s at offset %d", what, at)
	}
	for {
		for left == 0 {
			if depth == 0 {
				if i != len(b) {
					return fail(i, "data after the event")
				}
				return nil
			}
			depth--
			left = stack[depth]
		}
		left--
		if i >= len(b) {
			return fail(i, "truncated")
		}
		at, c := i, b[i]
		i++
		var skip, items uint64 // payload bytes after the header; values inside
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c <= 0x8f:
			items = 2 * uint64(c&0x0f)
		case c <= 0x9f:
			items = uint64(c & 0x0f)
		case c <= 0xbf:
			skip = uint64(c & 0x1f)
		case c == 0xc1:
			return fail(at, "invalid code 0xc1")
		default:
			var n int // length field bytes
			var ext bool
			switch c {
			case 0xc4, 0xd9: // bin8, str8
				n = 1
			case 0xc5, 0xda:
				n = 2
			case 0xc6, 0xdb:
				n = 4
			case 0xc7, 0xc8, 0xc9: // ext 8, 16, 32
				n, ext = 1<<(c-0xc7), true
			case 0xca, 0xd2, 0xce:
				skip = 4
			case 0xcb, 0xcf, 0xd3:
				skip = 8
			case 0xcc, 0xd0:
				skip = 1
			case 0xcd, 0xd1:
				skip = 2
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16 and its type
				skip = 1 + 1<<(c-0xd4)
			case 0xdc, 0xde:
				n = 2
			case 0xdd, 0xdf:
				n = 4
			}
			if n > 0 {
				if len(b)-i < n {
					return fail(at, "truncated header")
				}
				var l uint64
				switch n {
				case 1:
					l = uint64(b[i])
				case 2:
					l = uint64(binary.BigEndian.Uint16(b[i:]))
				case 4:
					l = uint64(binary.BigEndian.Uint32(b[i:]))
				}
				i += n
				switch {
				case c >= 0xdc && c <= 0xdd:
					items = l
				case c >= 0xde:
					items = 2 * l
				case ext:
					skip = 1 + l
				default:
					skip = l
				}
			}
		}
		if skip > uint64(len(b)-i) {
			return fail(at, "truncated")
		}
		i += int(skip)
		if items > 0 {
			// Every value takes at least one byte.
			if items > uint64(len(b)-i) {
				return fail(at, "truncated")
			}
			if depth >= maxDepth || depth >= len(stack) {
				return fail(at, "nested too deep")
			}
			stack[depth] = left
			depth++
			left = items
		}
	}
}
