package schema

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// nlmsg writes a netlink message by hand, independently of the encoders:
// nlmsg_len = 16 + len(payload), no padding.
func nlmsg(typ NetlinkType, flags uint16, seq, port uint32, payload []byte) []byte {
	ne := binary.NativeEndian
	b := ne.AppendUint32(nil, uint32(NetlinkHeaderLen+len(payload)))
	b = ne.AppendUint16(b, uint16(typ))
	b = ne.AppendUint16(b, flags)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, port)
	return append(b, payload...)
}

// padWith pads b to a multiple of 4 bytes with the given byte.
func padWith(b []byte, pad byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, pad)
	}
	return b
}

// setLen overwrites the nlmsg_len of the message at off.
func setLen(b []byte, off int, n uint32) []byte {
	b = bytes.Clone(b)
	binary.NativeEndian.PutUint32(b[off:], n)
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// captureNamed returns one captured datagram.
func captureNamed(tb testing.TB, name string) captured {
	tb.Helper()
	for _, c := range loadCaptured(tb) {
		if c.name == name {
			return c
		}
	}
	tb.Fatalf("no captured datagram %s in %s", name, datagramDir)
	return captured{}
}

func TestDecodeNetlinkHeader(t *testing.T) {
	b := nlmsg(NLMsgError, 0x0305, 0xdeadbeef, 0x01020304, nil)
	want := NetlinkHeader{Len: 16, Type: NLMsgError, Flags: 0x0305, Seq: 0xdeadbeef, PortID: 0x01020304}
	got, err := DecodeNetlinkHeader(append(b, 0xff))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if enc := AppendNetlinkHeader(nil, want); !bytes.Equal(enc, b) {
		t.Errorf("AppendNetlinkHeader = %x, want %x", enc, b)
	}
}

func TestNetlinkTypeString(t *testing.T) {
	for typ, want := range map[NetlinkType]string{1: "NOOP", 2: "ERROR", 3: "DONE", 4: "OVERRUN", 0: "type(0)", 16: "type(16)"} {
		if got := typ.String(); got != want {
			t.Errorf("NetlinkType(%d).String() = %q, want %q", uint16(typ), got, want)
		}
	}
}

// TestParseNetlinkSequence parses a datagram holding one message of each
// kind a netlink socket can see: NOOP (with an unaligned payload and
// non-zero padding), DONE carrying a real cn_msg, ERROR carrying an
// nlmsgerr, and OVERRUN.
func TestParseNetlinkSequence(t *testing.T) {
	fork := captureNamed(t, "fork")
	cnPayload := fork.raw[NetlinkHeaderLen:]
	nlerr := binary.NativeEndian.AppendUint32(nil, uint32(0xffffffff)) // -EPERM
	nlerr = append(nlerr, nlmsg(0x10, 0x0005, 42, 1234, nil)...)       // the request's header
	binary.NativeEndian.PutUint32(nlerr[4:], 36)                       // its nlmsg_len

	datagram := cat(
		padWith(nlmsg(NLMsgNoop, 0, 1, 0, []byte{0xa, 0xb, 0xc}), 0xee),
		nlmsg(NLMsgDone, 0, 2, 0, cnPayload),
		nlmsg(NLMsgError, 0x0100, 3, 0, nlerr),
		nlmsg(NLMsgOverrun, 0, 4, 0, nil),
	)
	want := []NetlinkMessage{
		{Header: NetlinkHeader{Len: 19, Type: NLMsgNoop, Seq: 1}, Data: []byte{0xa, 0xb, 0xc}},
		{Header: NetlinkHeader{Len: 76, Type: NLMsgDone, Seq: 2}, Data: cnPayload},
		{Header: NetlinkHeader{Len: 36, Type: NLMsgError, Flags: 0x0100, Seq: 3}, Data: nlerr},
		{Header: NetlinkHeader{Len: 16, Type: NLMsgOverrun, Seq: 4}, Data: []byte{}},
	}
	got, err := ParseNetlink(datagram, nil)
	if err != nil {
		t.Fatalf("ParseNetlink: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}

	cn, err := DecodeCnMsg(got[1].Data)
	if err != nil {
		t.Fatalf("DecodeCnMsg of the DONE message: %v", err)
	}
	if cn.ID != ProcID || cn.Len != ProcEventLen {
		t.Errorf("DONE message: cn_msg id %v len %d, want 1:1 len 40", cn.ID, cn.Len)
	}
	ne, err := DecodeNetlinkError(got[2].Data)
	if err != nil {
		t.Fatalf("DecodeNetlinkError: %v", err)
	}
	wantErr := NetlinkError{Errno: -1, Request: NetlinkHeader{Len: 36, Type: 0x10, Flags: 5, Seq: 42, PortID: 1234}}
	if diff := cmp.Diff(wantErr, ne); diff != "" {
		t.Errorf("nlmsgerr (-want +got):\n%s", diff)
	}
	if enc := AppendNetlinkError(nil, ne); !bytes.Equal(enc, nlerr) {
		t.Errorf("AppendNetlinkError = %x, want %x", enc, nlerr)
	}

	// Appending to dst keeps what it held and reuses its storage.
	dst := make([]NetlinkMessage, 1, 8)
	dst[0].Header.Seq = 99
	got, err = ParseNetlink(datagram, dst)
	if err != nil || len(got) != 5 || got[0].Header.Seq != 99 || &got[0] != &dst[0] {
		t.Errorf("ParseNetlink(datagram, dst with 1 element) = %d messages, %v; want dst's element then 4 more in the same array", len(got), err)
	}

	// Data is capped: appending to one message cannot overwrite the next.
	before := bytes.Clone(datagram)
	msgs, _ := ParseNetlink(datagram, nil)
	for _, m := range msgs {
		_ = append(m.Data, 0x55, 0x55, 0x55, 0x55)
	}
	if !bytes.Equal(datagram, before) {
		t.Error("appending to a message's Data changed the datagram")
	}
}

// TestParseNetlinkPadding: the padding after the last message may be
// absent; padding between messages is skipped whatever it holds.
func TestParseNetlinkPadding(t *testing.T) {
	last := nlmsg(NLMsgDone, 0, 7, 0, []byte{1, 2, 3, 4, 5}) // nlmsg_len 21
	want := NetlinkMessage{Header: NetlinkHeader{Len: 21, Type: NLMsgDone, Seq: 7}, Data: []byte{1, 2, 3, 4, 5}}
	first := nlmsg(NLMsgNoop, 0, 6, 0, []byte{9})
	wantFirst := NetlinkMessage{Header: NetlinkHeader{Len: 17, Type: NLMsgNoop, Seq: 6}, Data: []byte{9}}
	tests := []struct {
		name string
		in   []byte
		want []NetlinkMessage
	}{
		{"padded", padWith(last, 0), []NetlinkMessage{want}},
		{"unpadded last", last, []NetlinkMessage{want}},
		{"non-zero padding", padWith(last, 0xff), []NetlinkMessage{want}},
		{"two, unpadded last", cat(padWith(first, 0), last), []NetlinkMessage{wantFirst, want}},
		{"two, padded", cat(padWith(first, 0xab), padWith(last, 0)), []NetlinkMessage{wantFirst, want}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNetlink(tt.in, nil)
			if err != nil {
				t.Fatalf("ParseNetlink: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseNetlinkErrors: malformed lengths are never trusted; the messages
// before the bad one are returned with a *FormatError saying where.
func TestParseNetlinkErrors(t *testing.T) {
	good := nlmsg(NLMsgDone, 0, 1, 0, []byte{1, 2, 3, 4})
	goodMsg := NetlinkMessage{Header: NetlinkHeader{Len: 20, Type: NLMsgDone, Seq: 1}, Data: []byte{1, 2, 3, 4}}
	second := nlmsg(NLMsgDone, 0, 2, 0, []byte{5, 6, 7, 8, 9, 10, 11, 12})
	type tcase struct {
		name   string
		in     []byte
		want   []NetlinkMessage
		err    error
		offset int
	}
	var tests []tcase
	for n := uint32(0); n < NetlinkHeaderLen; n++ {
		tests = append(tests,
			tcase{fmt.Sprintf("nlmsg_len %d", n), setLen(second, 0, n), nil, ErrLength, 0},
			tcase{fmt.Sprintf("second nlmsg_len %d", n), cat(good, setLen(second, 0, n)), []NetlinkMessage{goodMsg}, ErrLength, 20},
		)
	}
	for _, n := range []uint32{uint32(len(second)) + 1, uint32(len(second)) + 4, 0x7fffffff, 0x80000000, 0xffffffff} {
		tests = append(tests,
			tcase{fmt.Sprintf("nlmsg_len %d past the end", n), setLen(second, 0, n), nil, ErrLength, 0},
			tcase{fmt.Sprintf("second nlmsg_len %d past the end", n), cat(good, setLen(second, 0, n)), []NetlinkMessage{goodMsg}, ErrLength, 20},
		)
	}
	for n := 1; n < NetlinkHeaderLen; n++ {
		tests = append(tests,
			tcase{fmt.Sprintf("%d bytes", n), second[:n], nil, ErrShort, 0},
			tcase{fmt.Sprintf("%d trailing bytes", n), cat(good, second[:n]), []NetlinkMessage{goodMsg}, ErrShort, 20},
		)
	}
	// A header whose nlmsg_len is not a multiple of 4 and runs exactly to
	// the end, followed by nothing: fine. Followed by a partial header: not.
	tests = append(tests, tcase{"unpadded message then bytes", cat(nlmsg(NLMsgNoop, 0, 1, 0, []byte{1}), []byte{0, 0, 0, 0xff, 0xff}),
		[]NetlinkMessage{{Header: NetlinkHeader{Len: 17, Type: NLMsgNoop, Seq: 1}, Data: []byte{1}}}, ErrShort, 20})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNetlink(tt.in, nil)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseNetlink: err = %v, want %v", err, tt.err)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("ParseNetlink: err = %#v, want a *FormatError", err)
			}
			if fe.What != "nlmsghdr" || fe.Offset != tt.offset {
				t.Errorf("FormatError %q at offset %d, want nlmsghdr at offset %d", fe.What, fe.Offset, tt.offset)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("messages before the error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendNetlinkMessage(t *testing.T) {
	for n := 0; n <= 8; n++ {
		payload := bytes.Repeat([]byte{0xaa}, n)
		// The header's Len is ignored: it is computed.
		got := AppendNetlinkMessage([]byte("xy"), NetlinkHeader{Len: 999, Type: NLMsgDone, Flags: 1, Seq: 2, PortID: 3}, payload)
		want := cat([]byte("xy"), padWith(nlmsg(NLMsgDone, 1, 2, 3, payload), 0))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("payload of %d bytes (-want +got):\n%s", n, diff)
		}
	}
}

func TestDecodeNetlinkError(t *testing.T) {
	req := nlmsg(0x20, 0x0301, 77, 4242, nil)
	b := cat(binary.NativeEndian.AppendUint32(nil, uint32(0xffffffea)), req, []byte("original payload"))
	got, err := DecodeNetlinkError(b)
	if err != nil {
		t.Fatal(err)
	}
	want := NetlinkError{Errno: -22, Request: NetlinkHeader{Len: 16, Type: 0x20, Flags: 0x0301, Seq: 77, PortID: 4242}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if enc := AppendNetlinkError(nil, want); !bytes.Equal(enc, b[:20]) {
		t.Errorf("AppendNetlinkError = %x, want %x", enc, b[:20])
	}
}
