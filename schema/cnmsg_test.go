package schema

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// cnmsgBytes writes a cn_msg by hand, independently of the encoder, with the
// given len field (which need not match the data).
func cnmsgBytes(idx, val, seq, ack uint32, length, flags uint16, data []byte) []byte {
	ne := binary.NativeEndian
	b := ne.AppendUint32(nil, idx)
	b = ne.AppendUint32(b, val)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, ack)
	b = ne.AppendUint16(b, length)
	b = ne.AppendUint16(b, flags)
	return append(b, data...)
}

func TestConnectorConstants(t *testing.T) {
	// include/uapi/linux/connector.h and include/linux/connector.h.
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"CnMsgLen", CnMsgLen, 20},
		{"CnNetlinkUsers", CnNetlinkUsers, 11},
		{"MaxGroup", MaxGroup, 26},
		{"MaxMsgSize", MaxMsgSize, 16384},
		{"NetlinkHeaderLen", NetlinkHeaderLen, 16},
		{"ProcEventLen", ProcEventLen, 40},
		{"ProcInputLen", ProcInputLen, 8},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if ProcID != (CbID{Idx: 1, Val: 1}) {
		t.Errorf("ProcID = %v, want 1:1", ProcID)
	}
}

func TestCbID(t *testing.T) {
	for _, tt := range []struct {
		id     CbID
		str    string
		kernel bool
	}{
		{CbID{0, 0}, "0:0", false},
		{CbID{1, 1}, "1:1", true},
		{CbID{2, 1}, "2:1", true},   // CN_IDX_CIFS
		{CbID{10, 0}, "10:0", true}, // CN_VSS_IDX, the last kernel user
		{CbID{11, 7}, "11:7", false},
		{CbID{26, 1}, "26:1", false},
		{CbID{0xffffffff, 0xffffffff}, "4294967295:4294967295", false},
	} {
		if got := tt.id.String(); got != tt.str {
			t.Errorf("CbID%v.String() = %q, want %q", [2]uint32{tt.id.Idx, tt.id.Val}, got, tt.str)
		}
		if got := tt.id.KernelOwned(); got != tt.kernel {
			t.Errorf("%v.KernelOwned() = %v, want %v", tt.id, got, tt.kernel)
		}
	}
}

func TestDecodeCnMsg(t *testing.T) {
	data := []byte("payload!")
	tests := []struct {
		name string
		in   []byte
		want CnMsg
	}{
		{"exact", cnmsgBytes(11, 2, 3, 4, 8, 0x0102, data),
			CnMsg{ID: CbID{11, 2}, Seq: 3, Ack: 4, Len: 8, Flags: 0x0102, Data: data}},
		{"padding after the payload ignored", cnmsgBytes(11, 2, 3, 4, 5, 0, data),
			CnMsg{ID: CbID{11, 2}, Seq: 3, Ack: 4, Len: 5, Data: data[:5]}},
		{"empty payload", cnmsgBytes(0xffffffff, 0xfffffffe, 0xfffffffd, 0xfffffffc, 0, 0xffff, nil),
			CnMsg{ID: CbID{0xffffffff, 0xfffffffe}, Seq: 0xfffffffd, Ack: 0xfffffffc, Len: 0, Flags: 0xffff, Data: []byte{}}},
		{"empty payload, padding", cnmsgBytes(1, 1, 0, 0, 0, 0, []byte{1, 2, 3, 4}),
			CnMsg{ID: ProcID, Data: []byte{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeCnMsg(tt.in)
			if err != nil {
				t.Fatalf("DecodeCnMsg: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if cap(got.Data) != len(got.Data) {
				t.Errorf("Data has capacity %d beyond its %d bytes: appending would overwrite the input", cap(got.Data), len(got.Data))
			}
			// The encoder takes Len from the data, and reproduces the
			// bytes up to the declared payload.
			enc := AppendCnMsg(nil, got)
			if want := tt.in[:CnMsgLen+int(got.Len)]; !bytes.Equal(enc, want) {
				t.Errorf("AppendCnMsg = %x, want %x", enc, want)
			}
		})
	}
}

func TestAppendCnMsgLenFromData(t *testing.T) {
	got := AppendCnMsg([]byte{0xff}, CnMsg{ID: CbID{3, 4}, Seq: 5, Ack: 6, Len: 999, Flags: 7, Data: []byte{1, 2, 3}})
	want := cat([]byte{0xff}, cnmsgBytes(3, 4, 5, 6, 3, 7, []byte{1, 2, 3}))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestDecodeCnMsgLength: a len field longer than the data present is an
// error, on real cn_msgs with their len raised.
func TestDecodeCnMsgLength(t *testing.T) {
	for _, c := range loadCaptured(t) {
		payload := c.raw[NetlinkHeaderLen:]
		for _, l := range []uint16{ProcEventLen + 1, ProcEventLen + 4, 0x7fff, 0xffff} {
			b := bytes.Clone(payload)
			binary.NativeEndian.PutUint16(b[16:], l)
			_, err := DecodeCnMsg(b)
			if !errors.Is(err, ErrLength) {
				t.Errorf("%s with len %d: err = %v, want ErrLength", c.name, l, err)
				continue
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.What != "cn_msg" || fe.Offset != 16 {
				t.Errorf("%s with len %d: err = %#v, want a *FormatError for cn_msg at offset 16 (the len field)", c.name, l, err)
			}
		}
		// Shorter than the data: the rest is padding.
		b := bytes.Clone(payload)
		binary.NativeEndian.PutUint16(b[16:], 39)
		got, err := DecodeCnMsg(b)
		if err != nil || got.Len != 39 || !bytes.Equal(got.Data, payload[20:59]) {
			t.Errorf("%s with len 39: Len %d, %d data bytes, err %v; want the first 39 bytes", c.name, got.Len, len(got.Data), err)
		}
	}
}

// TestIsReply is the connector's reply rule (Documentation/driver-api/
// connector.rst): same id, same seq, ack = request's ack + 1, with the
// documented exception that the proc connector's ACK carries its own seq.
func TestIsReply(t *testing.T) {
	other := CbID{Idx: 11, Val: 5}
	req := CnMsg{ID: other, Seq: 10, Ack: 100, Data: []byte("request")}
	procReq := CnMsg{ID: ProcID, Seq: 10, Ack: 100, Data: AppendProcInput(nil, ProcMcastListen, ProcEventAll, false)}
	tests := []struct {
		name     string
		req, got CnMsg
		want     bool
	}{
		{"reply", req, CnMsg{ID: other, Seq: 10, Ack: 101}, true},
		{"reply with payload, len and flags", req, CnMsg{ID: other, Seq: 10, Ack: 101, Len: 3, Flags: 9, Data: []byte{1, 2, 3}}, true},
		{"other seq is a new message", req, CnMsg{ID: other, Seq: 11, Ack: 101}, false},
		{"same ack is a new message", req, CnMsg{ID: other, Seq: 10, Ack: 100}, false},
		{"ack + 2", req, CnMsg{ID: other, Seq: 10, Ack: 102}, false},
		{"ack - 1", req, CnMsg{ID: other, Seq: 10, Ack: 99}, false},
		{"ack = seq + 1 is not the rule", req, CnMsg{ID: other, Seq: 10, Ack: 11}, false},
		{"other idx", req, CnMsg{ID: CbID{12, 5}, Seq: 10, Ack: 101}, false},
		{"other val", req, CnMsg{ID: CbID{11, 6}, Seq: 10, Ack: 101}, false},
		{"ack wraps", CnMsg{ID: other, Seq: 1, Ack: 0xffffffff}, CnMsg{ID: other, Seq: 1, Ack: 0}, true},
		{"ack does not saturate", CnMsg{ID: other, Seq: 1, Ack: 0xffffffff}, CnMsg{ID: other, Seq: 1, Ack: 0xffffffff}, false},
		{"proc: seq rewritten by the kernel", procReq, CnMsg{ID: ProcID, Seq: 777, Ack: 101}, true},
		{"proc: same seq", procReq, CnMsg{ID: ProcID, Seq: 10, Ack: 101}, true},
		{"proc: wrong ack", procReq, CnMsg{ID: ProcID, Seq: 10, Ack: 100}, false},
		{"proc: ack from another listener's request", procReq, CnMsg{ID: ProcID, Seq: 777, Ack: 5}, false},
		{"proc request, reply from another id", procReq, CnMsg{ID: other, Seq: 10, Ack: 101}, false},
		{"request to another id, reply from proc", req, CnMsg{ID: ProcID, Seq: 10, Ack: 101}, false},
		{"the exception is for 1:1 only", CnMsg{ID: CbID{1, 2}, Seq: 10, Ack: 100}, CnMsg{ID: CbID{1, 2}, Seq: 777, Ack: 101}, false},
	}
	for _, tt := range tests {
		if got := IsReply(tt.req, tt.got); got != tt.want {
			t.Errorf("%s: IsReply(%s, %s) = %v, want %v", tt.name, describe(tt.req), describe(tt.got), got, tt.want)
		}
	}
}

func describe(m CnMsg) string { return fmt.Sprintf("{%v seq %d ack %d}", m.ID, m.Seq, m.Ack) }

func TestAppendDatagram(t *testing.T) {
	for n := 0; n <= 5; n++ {
		data := bytes.Repeat([]byte{0xcc}, n)
		m := CnMsg{ID: CbID{11, 1}, Seq: 0x01020304, Ack: 5, Flags: 6, Data: data}
		got := AppendDatagram(nil, 4321, m)
		want := padWith(nlmsg(NLMsgDone, 0, 0x01020304, 4321, cnmsgBytes(11, 1, 0x01020304, 5, uint16(n), 6, data)), 0)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%d data bytes (-want +got):\n%s", n, diff)
		}
	}
}
