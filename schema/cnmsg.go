package schema

import (
	"encoding/binary"
	"fmt"
)

// Connector constants (include/uapi/linux/connector.h).
const (
	CnMsgLen = 20 // sizeof(struct cn_msg) without data

	// CnNetlinkUsers is CN_NETLINK_USERS: indexes below it belong to kernel
	// connector users (proc, cifs, w1, v86d, dm, drbd, hv kvp/vss...), whose
	// messages come from the kernel, port id 0.
	CnNetlinkUsers = 11
	// MaxGroup is the highest connector multicast group userspace can join
	// (CN_NETLINK_USERS + 0xf).
	MaxGroup = CnNetlinkUsers + 0xf
	// MaxMsgSize is CONNECTOR_MAX_MSG_SIZE, the largest cn_msg payload the
	// kernel accepts.
	MaxMsgSize = 16384
)

// CbID is struct cb_id, the address of a connector user.
type CbID struct {
	Idx uint32 `json:"idx"`
	Val uint32 `json:"val"`
}

// ProcID is the process-events connector (CN_IDX_PROC, CN_VAL_PROC).
var ProcID = CbID{Idx: 1, Val: 1}

func (id CbID) String() string { return fmt.Sprintf("%d:%d", id.Idx, id.Val) }

// KernelOwned reports whether id belongs to a kernel connector user, so that
// its messages must come from the kernel (port id 0).
func (id CbID) KernelOwned() bool { return id.Idx >= 1 && id.Idx < CnNetlinkUsers }

// CnMsg is struct cn_msg. Data aliases the decoded buffer.
type CnMsg struct {
	ID    CbID
	Seq   uint32
	Ack   uint32
	Len   uint16 // payload length as sent; equals len(Data) after decoding
	Flags uint16
	Data  []byte
}

// DecodeCnMsg decodes a cn_msg from the payload of a netlink message. Bytes
// after the cn_msg's declared payload (alignment padding) are ignored; a
// declared length longer than the bytes present is an error.
func DecodeCnMsg(b []byte) (CnMsg, error) {
	if len(b) < CnMsgLen {
		return CnMsg{}, formatErr("cn_msg", 0, ErrShort, "%d bytes, need %d", len(b), CnMsgLen)
	}
	m := CnMsg{
		ID:    CbID{Idx: binary.NativeEndian.Uint32(b[0:4]), Val: binary.NativeEndian.Uint32(b[4:8])},
		Seq:   binary.NativeEndian.Uint32(b[8:12]),
		Ack:   binary.NativeEndian.Uint32(b[12:16]),
		Len:   binary.NativeEndian.Uint16(b[16:18]),
		Flags: binary.NativeEndian.Uint16(b[18:20]),
	}
	if int(m.Len) > len(b)-CnMsgLen {
		return m, formatErr("cn_msg", 16, ErrLength, "len %d but %d payload bytes present", m.Len, len(b)-CnMsgLen)
	}
	end := CnMsgLen + int(m.Len)
	m.Data = b[CnMsgLen:end:end]
	return m, nil
}

// AppendCnMsg appends the encoding of m with m.Data as payload; the Len
// field is taken from len(m.Data), which must fit its 16 bits (the kernel
// accepts at most MaxMsgSize bytes; source.Conn.Send checks that).
func AppendCnMsg(b []byte, m CnMsg) []byte {
	b = binary.NativeEndian.AppendUint32(b, m.ID.Idx)
	b = binary.NativeEndian.AppendUint32(b, m.ID.Val)
	b = binary.NativeEndian.AppendUint32(b, m.Seq)
	b = binary.NativeEndian.AppendUint32(b, m.Ack)
	b = binary.NativeEndian.AppendUint16(b, uint16(len(m.Data)))
	b = binary.NativeEndian.AppendUint16(b, m.Flags)
	return append(b, m.Data...)
}

// AppendDatagram appends a whole connector datagram as the kernel frames it:
// one NLMSG_DONE netlink message carrying m, with nlmsg_seq = m.Seq and the
// given sender port id.
func AppendDatagram(b []byte, portID uint32, m CnMsg) []byte {
	h := NetlinkHeader{Type: NLMsgDone, Seq: m.Seq, PortID: portID}
	h.Len = uint32(NetlinkHeaderLen + CnMsgLen + len(m.Data))
	b = AppendNetlinkHeader(b, h)
	b = AppendCnMsg(b, m)
	for pad := nlAlign(int(h.Len)) - int(h.Len); pad > 0; pad-- {
		b = append(b, 0)
	}
	return b
}

// IsReply applies the connector's reply rule (Documentation/driver-api/
// connector.rst) to a received message: a reply carries the request's id and
// seq and an ack of the request's ack + 1; anything else is a new message.
//
// One exception is built in: the process-events connector rewrites seq with
// its per-CPU counter when it sends the ACK to a LISTEN/IGNORE, so for
// ProcID only the ack is compared.
func IsReply(req, got CnMsg) bool {
	if got.ID != req.ID || got.Ack != req.Ack+1 {
		return false
	}
	return got.ID == ProcID || got.Seq == req.Seq
}
