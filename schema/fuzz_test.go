package schema

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Fuzz tests for every decoder of bytes from outside, seeded from the real
// datagrams in testdata/datagrams. The property: nothing panics; errors are
// *FormatErrors matching one sentinel; whatever decodes re-encodes to bytes
// that decode to the same value (and, for fixed layouts, to the input's own
// bytes except where the format says they do not matter).

// addSeeds adds every captured datagram, from byte from on.
func addSeeds(f *testing.F, from int) {
	for _, c := range loadCaptured(f) {
		f.Add(bytes.Clone(c.raw[from:]))
	}
}

// checkFormatError fails unless err is a *FormatError matching exactly one
// of the sentinels.
func checkFormatError(t *testing.T, err error) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	n := 0
	for _, s := range []error{ErrShort, ErrLength, ErrUnknownType} {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %v matches %d sentinels, want 1", err, n)
	}
}

func FuzzParseNetlink(f *testing.F) {
	addSeeds(f, 0)
	f.Add(cat(
		padWith(nlmsg(NLMsgNoop, 0, 1, 0, []byte{1, 2, 3}), 0xee),
		nlmsg(NLMsgError, 0, 2, 0, make([]byte, 20)),
		nlmsg(NLMsgOverrun, 0, 3, 0, nil),
		nlmsg(NLMsgDone, 0, 4, 0, []byte{1}),
	))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := ParseNetlink(b, nil)
		if err != nil {
			checkFormatError(t, err)
			// The messages returned are those of the bytes before the bad
			// one, which parse cleanly on their own.
			var fe *FormatError
			errors.As(err, &fe)
			if fe.Offset < 0 || (len(b) > 0 && fe.Offset >= len(b)) {
				t.Fatalf("error offset %d outside the %d-byte datagram", fe.Offset, len(b))
			}
			if fe.Offset == 0 {
				if len(msgs) != 0 {
					t.Fatalf("error at offset 0 but %d messages returned", len(msgs))
				}
				return
			}
			prefix, perr := ParseNetlink(b[:fe.Offset], nil)
			if perr != nil {
				t.Fatalf("the %d bytes before the error do not parse: %v", fe.Offset, perr)
			}
			if diff := cmp.Diff(prefix, msgs); diff != "" {
				t.Fatalf("messages before the error differ from those of the bytes before it (-want +got):\n%s", diff)
			}
			return
		}

		// Re-encode: the same bytes, except that padding becomes zero and the
		// last message is padded.
		var enc []byte
		want := bytes.Clone(b)
		off := 0
		for _, m := range msgs {
			if m.Header.Len != uint32(NetlinkHeaderLen+len(m.Data)) {
				t.Fatalf("message at %d: nlmsg_len %d with %d data bytes", off, m.Header.Len, len(m.Data))
			}
			enc = AppendNetlinkMessage(enc, m.Header, m.Data)
			end := off + int(m.Header.Len)
			next := (end + 3) &^ 3
			clear(want[end:min(next, len(want))])
			off = next
		}
		if len(enc) != (len(b)+3)&^3 {
			t.Fatalf("re-encoded %d bytes from %d", len(enc), len(b))
		}
		if !bytes.Equal(enc[:len(b)], want) || !bytes.Equal(enc[len(b):], make([]byte, len(enc)-len(b))) {
			t.Fatalf("re-encoded %x\nwant     %x (padding zeroed)", enc, want)
		}
		again, err := ParseNetlink(enc, nil)
		if err != nil {
			t.Fatalf("re-encoded datagram does not parse: %v", err)
		}
		if diff := cmp.Diff(msgs, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func FuzzDecodeCnMsg(f *testing.F) {
	addSeeds(f, NetlinkHeaderLen)
	f.Add(cnmsgBytes(11, 1, 2, 3, 0, 0, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeCnMsg(b)
		if err != nil {
			checkFormatError(t, err)
			return
		}
		if int(m.Len) != len(m.Data) || CnMsgLen+int(m.Len) > len(b) {
			t.Fatalf("Len %d with %d data bytes from %d input bytes", m.Len, len(m.Data), len(b))
		}
		enc := AppendCnMsg(nil, m)
		if want := b[:CnMsgLen+int(m.Len)]; !bytes.Equal(enc, want) {
			t.Fatalf("re-encoded %x\nwant     %x", enc, want)
		}
		again, err := DecodeCnMsg(enc)
		if err != nil {
			t.Fatalf("re-encoded cn_msg does not decode: %v", err)
		}
		if diff := cmp.Diff(m, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// canonicalProcEvent is the first 40 bytes of b with the union bytes that an
// event of type w does not use set to zero, as the kernel sends them.
func canonicalProcEvent(b []byte, w What) []byte {
	out := bytes.Clone(b[:ProcEventLen])
	clear(out[16+unionUsed[w]:]) // unknown types use none
	return out
}

func FuzzDecodeProcEvent(f *testing.F) {
	addSeeds(f, NetlinkHeaderLen+CnMsgLen)
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := DecodeProcEvent(b)
		switch {
		case err == nil:
			if !KnownWhat(ev.What) {
				t.Fatalf("decoded an event of unknown type %#x", uint32(ev.What))
			}
		case errors.Is(err, ErrUnknownType):
			checkFormatError(t, err)
			if len(b) < ProcEventLen || KnownWhat(ev.What) {
				t.Fatalf("ErrUnknownType for type %#x from %d bytes", uint32(ev.What), len(b))
			}
			// The header fields are returned, the union is not.
			ne := binary.NativeEndian
			want := ProcEvent{What: What(ne.Uint32(b[0:])), CPU: ne.Uint32(b[4:]), TimestampNS: ne.Uint64(b[8:])}
			if diff := cmp.Diff(want, ev); diff != "" {
				t.Fatalf("unknown type (-want +got):\n%s", diff)
			}
		default:
			checkFormatError(t, err)
			if !errors.Is(err, ErrShort) || len(b) >= ProcEventLen {
				t.Fatalf("DecodeProcEvent of %d bytes: %v", len(b), err)
			}
			return
		}

		enc := AppendProcEvent(nil, ev)
		if want := canonicalProcEvent(b, ev.What); !bytes.Equal(enc, want) {
			t.Fatalf("re-encoded %x\nwant     %x (unused union bytes zeroed)", enc, want)
		}
		again, err2 := DecodeProcEvent(enc)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("first decode: %v; decode of the re-encoding: %v", err, err2)
		}
		if diff := cmp.Diff(ev, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// decodedMsg is one netlink message decoded as far as cnstream decodes it:
// a DONE message as a cn_msg, and one from the proc connector down to its
// event. Other messages keep their payload.
type decodedMsg struct {
	Header NetlinkHeader
	Data   []byte
	Cn     *CnMsg
	Event  *ProcEvent
}

// decodeDatagram is the end-to-end decoder: ParseNetlink, DecodeCnMsg,
// DecodeProcEvent.
func decodeDatagram(b []byte) ([]decodedMsg, error) {
	msgs, err := ParseNetlink(b, nil)
	if err != nil {
		return nil, err
	}
	out := make([]decodedMsg, 0, len(msgs))
	for _, m := range msgs {
		d := decodedMsg{Header: m.Header}
		if m.Header.Type != NLMsgDone {
			d.Data = m.Data
			out = append(out, d)
			continue
		}
		cn, err := DecodeCnMsg(m.Data)
		if err != nil {
			return nil, err
		}
		d.Cn = &cn
		if cn.ID == ProcID {
			ev, err := DecodeProcEvent(cn.Data)
			if err != nil {
				return nil, err
			}
			d.Event = &ev
		}
		out = append(out, d)
	}
	return out, nil
}

// encodeDatagram encodes decoded messages back: proc events as 40 bytes,
// cn_msgs without the bytes after their declared payload.
func encodeDatagram(ds []decodedMsg) []byte {
	var b []byte
	for _, d := range ds {
		payload := d.Data
		if d.Cn != nil {
			cn := *d.Cn
			if d.Event != nil {
				cn.Data = AppendProcEvent(nil, *d.Event)
			}
			payload = AppendCnMsg(nil, cn)
		}
		b = AppendNetlinkMessage(b, d.Header, payload)
	}
	return b
}

// canonical drops what encoding canonicalises: lengths, and the raw bytes
// of a proc event (compared as the decoded event).
func canonical(ds []decodedMsg) []decodedMsg {
	out := make([]decodedMsg, len(ds))
	for i, d := range ds {
		d.Header.Len = 0
		if d.Cn != nil {
			cn := *d.Cn
			if d.Event != nil {
				cn.Len, cn.Data = 0, nil
			}
			d.Cn = &cn
		}
		out[i] = d
	}
	return out
}

func FuzzDatagram(f *testing.F) {
	addSeeds(f, 0)
	fork := captureNamed(f, "fork")
	f.Add(cat(
		nlmsg(NLMsgNoop, 0, 1, 0, nil),
		fork.raw,
		padWith(nlmsg(NLMsgDone, 0, 2, 0, cnmsgBytes(11, 3, 2, 0, 3, 0, []byte{7, 8, 9})), 0),
		nlmsg(NLMsgOverrun, 0, 3, 0, nil),
	))
	f.Fuzz(func(t *testing.T, b []byte) {
		first, err := decodeDatagram(b)
		if err != nil {
			checkFormatError(t, err)
			return
		}
		msgs, _ := ParseNetlink(b, nil)
		for i, d := range first {
			if d.Event != nil {
				if want, got := canonicalProcEvent(msgs[i].Data[CnMsgLen:], d.Event.What), AppendProcEvent(nil, *d.Event); !bytes.Equal(got, want) {
					t.Fatalf("message %d: re-encoded event %x\nwant                   %x", i, got, want)
				}
			}
		}
		enc := encodeDatagram(first)
		second, err := decodeDatagram(enc)
		if err != nil {
			t.Fatalf("re-encoded datagram does not decode: %v", err)
		}
		if diff := cmp.Diff(canonical(first), canonical(second)); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		if again := encodeDatagram(second); !bytes.Equal(again, enc) {
			t.Fatalf("encoding is not a fixed point:\n%x\n%x", enc, again)
		}
	})
}
