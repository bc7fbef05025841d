package schema

import (
	"encoding/binary"
	"fmt"
)

// Netlink message framing (include/uapi/linux/netlink.h).
const (
	NetlinkHeaderLen = 16 // sizeof(struct nlmsghdr)
	netlinkAlignTo   = 4  // NLMSG_ALIGNTO
)

// NetlinkType is nlmsghdr.nlmsg_type. The connector sends its messages with
// type NLMSG_DONE.
type NetlinkType uint16

// Control message types below NLMSG_MIN_TYPE.
const (
	NLMsgNoop    NetlinkType = 1 // NLMSG_NOOP: skip
	NLMsgError   NetlinkType = 2 // NLMSG_ERROR: an nlmsgerr follows
	NLMsgDone    NetlinkType = 3 // NLMSG_DONE: the connector's messages use it
	NLMsgOverrun NetlinkType = 4 // NLMSG_OVERRUN: data lost
)

func (t NetlinkType) String() string {
	switch t {
	case NLMsgNoop:
		return "NOOP"
	case NLMsgError:
		return "ERROR"
	case NLMsgDone:
		return "DONE"
	case NLMsgOverrun:
		return "OVERRUN"
	}
	return fmt.Sprintf("type(%d)", uint16(t))
}

// NetlinkHeader is struct nlmsghdr.
type NetlinkHeader struct {
	Len    uint32      // nlmsg_len: header plus payload, unaligned
	Type   NetlinkType // nlmsg_type
	Flags  uint16      // nlmsg_flags
	Seq    uint32      // nlmsg_seq
	PortID uint32      // nlmsg_pid: sending port, 0 for the kernel
}

// NetlinkMessage is one message of a datagram. Data aliases the datagram.
type NetlinkMessage struct {
	Header NetlinkHeader
	Data   []byte // payload: Header.Len - 16 bytes
}

// NetlinkError is the payload of an NLMSG_ERROR message (struct nlmsgerr):
// a negative errno (0 is an acknowledgement) and the header of the request.
type NetlinkError struct {
	Errno   int32
	Request NetlinkHeader
}

func nlAlign(n int) int { return (n + netlinkAlignTo - 1) &^ (netlinkAlignTo - 1) }

// DecodeNetlinkHeader decodes the 16-byte nlmsghdr at the start of b.
func DecodeNetlinkHeader(b []byte) (NetlinkHeader, error) {
	if len(b) < NetlinkHeaderLen {
		return NetlinkHeader{}, formatErr("nlmsghdr", 0, ErrShort, "%d bytes, need %d", len(b), NetlinkHeaderLen)
	}
	return NetlinkHeader{
		Len:    binary.NativeEndian.Uint32(b[0:4]),
		Type:   NetlinkType(binary.NativeEndian.Uint16(b[4:6])),
		Flags:  binary.NativeEndian.Uint16(b[6:8]),
		Seq:    binary.NativeEndian.Uint32(b[8:12]),
		PortID: binary.NativeEndian.Uint32(b[12:16]),
	}, nil
}

// AppendNetlinkHeader appends the 16-byte encoding of h.
func AppendNetlinkHeader(b []byte, h NetlinkHeader) []byte {
	b = binary.NativeEndian.AppendUint32(b, h.Len)
	b = binary.NativeEndian.AppendUint16(b, uint16(h.Type))
	b = binary.NativeEndian.AppendUint16(b, h.Flags)
	b = binary.NativeEndian.AppendUint32(b, h.Seq)
	return binary.NativeEndian.AppendUint32(b, h.PortID)
}

// ParseNetlink splits a datagram into its netlink messages and appends them
// to dst (pass dst[:0] to reuse its storage). An empty datagram is an error. Messages are 4-byte aligned;
// the padding after the last one may be absent. On a malformed message it
// returns the messages decoded before it and a *FormatError: a length below
// the header size, or one that runs past the datagram, is never trusted.
func ParseNetlink(b []byte, dst []NetlinkMessage) ([]NetlinkMessage, error) {
	if len(b) == 0 {
		return dst, formatErr("nlmsghdr", 0, ErrShort, "empty datagram")
	}
	off := 0
	for off < len(b) {
		h, err := DecodeNetlinkHeader(b[off:])
		if err != nil {
			return dst, &FormatError{What: "nlmsghdr", Offset: off, Err: ErrShort,
				Detail: fmt.Sprintf("%d trailing bytes, need %d", len(b)-off, NetlinkHeaderLen)}
		}
		if h.Len < NetlinkHeaderLen {
			return dst, formatErr("nlmsghdr", off, ErrLength, "nlmsg_len %d below the header size %d", h.Len, NetlinkHeaderLen)
		}
		if uint64(h.Len) > uint64(len(b)-off) {
			return dst, formatErr("nlmsghdr", off, ErrLength, "nlmsg_len %d but %d bytes remain", h.Len, len(b)-off)
		}
		end := off + int(h.Len)
		dst = append(dst, NetlinkMessage{Header: h, Data: b[off+NetlinkHeaderLen : end : end]})
		off += nlAlign(int(h.Len)) // past the end when the last padding is absent
	}
	return dst, nil
}

// AppendNetlinkMessage appends a netlink message holding payload, setting
// Header.Len and padding the result to 4 bytes.
func AppendNetlinkMessage(b []byte, h NetlinkHeader, payload []byte) []byte {
	h.Len = uint32(NetlinkHeaderLen + len(payload))
	b = AppendNetlinkHeader(b, h)
	b = append(b, payload...)
	for pad := nlAlign(len(payload)) - len(payload); pad > 0; pad-- {
		b = append(b, 0)
	}
	return b
}

// DecodeNetlinkError decodes the payload of an NLMSG_ERROR message.
func DecodeNetlinkError(b []byte) (NetlinkError, error) {
	if len(b) < 4+NetlinkHeaderLen {
		return NetlinkError{}, formatErr("nlmsgerr", 0, ErrShort, "%d bytes, need %d", len(b), 4+NetlinkHeaderLen)
	}
	h, _ := DecodeNetlinkHeader(b[4:])
	return NetlinkError{Errno: int32(binary.NativeEndian.Uint32(b[0:4])), Request: h}, nil
}

// AppendNetlinkError appends the 20-byte payload of an NLMSG_ERROR message.
func AppendNetlinkError(b []byte, e NetlinkError) []byte {
	b = binary.NativeEndian.AppendUint32(b, uint32(e.Errno))
	return AppendNetlinkHeader(b, e.Request)
}
