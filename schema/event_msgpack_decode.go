package schema

import (
	"encoding/binary"
	"math"
	"strings"
	"time"
)

// decodeMsgpackFast decodes b as AppendMsgpack writes it, without
// reflection, into *e (which must be the zero Event). It reports false for
// anything else: a key it does not know or that repeats, a value of a type
// or form AppendMsgpack does not write there, an integer out of its field's
// range, bytes after the map. DecodeMsgpack then decodes b again on the
// reflection path, so that every input decodes (or fails) as on that path
// alone: what this one accepts, the reflection path decodes to the same
// Event.
//
// It accepts more than AppendMsgpack's exact bytes where the reflection
// path gives the same value: keys in any order, integers and lengths in
// forms larger than the smallest, empty maps and arrays. The event's
// strings (up to 65 of them) are pieces of one string, allocated once: only
// their bytes, not the whole of b. It never panics:
// every length is checked against the bytes left before it is used or
// allocated for.
func decodeMsgpackFast(b []byte, e *Event) bool {
	var d mpDecoder
	d.b = b
	d.event(e)
	if d.bad || d.i != len(b) {
		return false
	}
	e.ID = d.setStrings()
	return true
}

// mpDecoder reads MessagePack values from b at i. Its first failure sets
// bad; from then on every read returns a zero value and reads nothing, so
// that callers check bad once per map entry rather than after every read.
type mpDecoder struct {
	b   []byte
	i   int
	bad bool

	pending [64]mpString // strings to set once the event is read
	nstrs   int
	id      mpString // the event's id, set by the caller
	strLen  int      // the bytes of id and pending
}

// mpString is a string of b at at, n bytes long, to be stored in *dst.
type mpString struct {
	dst   *string
	at, n int
}

// peek returns the code at i, or fails when nothing is left.
func (d *mpDecoder) peek() (byte, bool) {
	if d.bad || d.i >= len(d.b) {
		d.bad = true
		return 0, false
	}
	return d.b[d.i], true
}

// length reads the n-byte big-endian length after the code at i, and moves
// i past both. It fails when the header is cut short.
func (d *mpDecoder) length(n int) uint64 {
	if len(d.b)-d.i-1 < n {
		d.bad = true
		return 0
	}
	p := d.b[d.i+1:]
	var l uint64
	switch n {
	case 1:
		l = uint64(p[0])
	case 2:
		l = uint64(binary.BigEndian.Uint16(p))
	case 4:
		l = uint64(binary.BigEndian.Uint32(p))
	case 8:
		l = binary.BigEndian.Uint64(p)
	}
	d.i += 1 + n
	return l
}

// mapLen reads a map header: fixmap, map 16 or map 32.
func (d *mpDecoder) mapLen() int {
	c, ok := d.peek()
	if !ok {
		return 0
	}
	var n uint64
	switch {
	case c&0xf0 == 0x80:
		n = uint64(c & 0x0f)
		d.i++
	case c == 0xde:
		n = d.length(2)
	case c == 0xdf:
		n = d.length(4)
	default:
		d.bad = true
	}
	// Every key and every value takes at least one byte.
	if d.bad || 2*n > uint64(len(d.b)-d.i) {
		d.bad = true
		return 0
	}
	return int(n)
}

// arrayLen reads an array header: fixarray, array 16 or array 32.
func (d *mpDecoder) arrayLen() int {
	c, ok := d.peek()
	if !ok {
		return 0
	}
	var n uint64
	switch {
	case c&0xf0 == 0x90:
		n = uint64(c & 0x0f)
		d.i++
	case c == 0xdc:
		n = d.length(2)
	case c == 0xdd:
		n = d.length(4)
	default:
		d.bad = true
	}
	if d.bad || n > uint64(len(d.b)-d.i) {
		d.bad = true
		return 0
	}
	return int(n)
}

// payload returns the next n bytes and moves past them.
func (d *mpDecoder) payload(n uint64) []byte {
	if d.bad || n > uint64(len(d.b)-d.i) {
		d.bad = true
		return nil
	}
	p := d.b[d.i : d.i+int(n)]
	d.i += int(n)
	return p
}

// strBytes reads a str (fixstr, str 8, 16 or 32) and returns its bytes in
// b; not nil, not bin.
func (d *mpDecoder) strBytes() []byte {
	c, ok := d.peek()
	if !ok {
		return nil
	}
	var n uint64
	switch {
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
		d.i++
	case c == 0xd9:
		n = d.length(1)
	case c == 0xda:
		n = d.length(2)
	case c == 0xdb:
		n = d.length(4)
	default:
		d.bad = true
		return nil
	}
	return d.payload(n)
}

// str reads a str into *dst. The strings of an event share one
// allocation: str notes where the bytes are and where they go, and
// setStrings makes them all once the event has been read; past the first
// len(d.pending) strings, each gets its own.
func (d *mpDecoder) str(dst *string) {
	p := d.strBytes()
	switch {
	case len(p) == 0:
		*dst = ""
	case d.nstrs < len(d.pending):
		d.pending[d.nstrs] = mpString{dst, d.i - len(p), len(p)}
		d.nstrs++
		d.strLen += len(p)
	default:
		*dst = string(p)
	}
}

// setStrings sets the strings str noted, from one allocation, and returns
// the event's id.
func (d *mpDecoder) setStrings() (id string) {
	if d.strLen == 0 {
		return ""
	}
	var sb strings.Builder
	sb.Grow(d.strLen)
	sb.Write(d.b[d.id.at : d.id.at+d.id.n])
	for _, s := range d.pending[:d.nstrs] {
		sb.Write(d.b[s.at : s.at+s.n])
	}
	all := sb.String()
	at := d.id.n
	for _, s := range d.pending[:d.nstrs] {
		*s.dst = all[at : at+s.n]
		at += s.n
	}
	return all[:d.id.n]
}

// bin reads nil as nil, or a bin (8, 16 or 32) into a new slice, empty but
// not nil for a bin of no bytes: what the reflection path makes.
func (d *mpDecoder) bin() []byte {
	c, ok := d.peek()
	if !ok {
		return nil
	}
	var n uint64
	switch c {
	case mpNil:
		d.i++
		return nil
	case 0xc4:
		n = d.length(1)
	case 0xc5:
		n = d.length(2)
	case 0xc6:
		n = d.length(4)
	default:
		d.bad = true
		return nil
	}
	p := d.payload(n)
	if d.bad {
		return nil
	}
	return append(make([]byte, 0, len(p)), p...)
}

// isNil reads a nil if one is next.
func (d *mpDecoder) isNil() bool {
	if !d.bad && d.i < len(d.b) && d.b[d.i] == mpNil {
		d.i++
		return true
	}
	return false
}

// uint reads an unsigned integer (positive fixint, uint 8 to 64) of at most
// max.
func (d *mpDecoder) uint(max uint64) uint64 {
	c, ok := d.peek()
	if !ok {
		return 0
	}
	var v uint64
	switch c {
	case 0xcc:
		v = d.length(1)
	case 0xcd:
		v = d.length(2)
	case 0xce:
		v = d.length(4)
	case 0xcf:
		v = d.length(8)
	default:
		if c > 0x7f {
			d.bad = true
			return 0
		}
		v = uint64(c)
		d.i++
	}
	if v > max {
		d.bad = true
		return 0
	}
	return v
}

func (d *mpDecoder) u32() uint32 { return uint32(d.uint(math.MaxUint32)) }
func (d *mpDecoder) u64() uint64 { return d.uint(math.MaxUint64) }

// int reads an integer (fixint, uint 8 to 64, int 8 to 64) in min..max.
func (d *mpDecoder) int(min, max int64) int64 {
	c, ok := d.peek()
	if !ok {
		return 0
	}
	var v int64
	switch c {
	case 0xcc, 0xcd, 0xce, 0xcf:
		u := d.uint(math.MaxInt64)
		v = int64(u)
	case 0xd0:
		v = int64(int8(d.length(1)))
	case 0xd1:
		v = int64(int16(d.length(2)))
	case 0xd2:
		v = int64(int32(d.length(4)))
	case 0xd3:
		v = int64(d.length(8))
	default:
		if c > 0x7f && c < 0xe0 {
			d.bad = true
			return 0
		}
		v = int64(int8(c))
		d.i++
	}
	if d.bad || v < min || v > max {
		d.bad = true
		return 0
	}
	return v
}

func (d *mpDecoder) bool() bool {
	c, ok := d.peek()
	if !ok {
		return false
	}
	if c != mpTrue && c != mpFalse {
		d.bad = true
		return false
	}
	d.i++
	return c == mpTrue
}

// time reads the timestamp extension (type -1) in the forms mpTime writes:
// timestamp 32 (fixext 4), 64 (fixext 8) and 96 (ext 8 of 12 bytes). It
// builds the time as the reflection path does: time.Unix.
func (d *mpDecoder) time() time.Time {
	if _, ok := d.peek(); !ok {
		return time.Time{}
	}
	p := d.b[d.i:]
	switch {
	case len(p) >= 6 && p[0] == 0xd6 && p[1] == 0xff:
		d.i += 6
		return time.Unix(int64(binary.BigEndian.Uint32(p[2:])), 0)
	case len(p) >= 10 && p[0] == 0xd7 && p[1] == 0xff:
		d.i += 10
		data := binary.BigEndian.Uint64(p[2:])
		return time.Unix(int64(data&(1<<34-1)), int64(data>>34))
	case len(p) >= 15 && p[0] == 0xc7 && p[1] == 12 && p[2] == 0xff:
		d.i += 15
		return time.Unix(int64(binary.BigEndian.Uint64(p[7:])), int64(binary.BigEndian.Uint32(p[3:])))
	}
	d.bad = true
	return time.Time{}
}

// kind reads a kind's name.
func (d *mpDecoder) kind() Kind {
	name := d.strBytes()
	if d.bad {
		return KindUnknown
	}
	for i := 1; i < len(kindNames); i++ {
		if string(name) == kindNames[i] {
			return Kind(i)
		}
	}
	// Unknown names are the reflection path's to report.
	d.bad = true
	return KindUnknown
}

// once marks field number bit in seen; a field seen before fails.
func (d *mpDecoder) once(seen *uint32, bit uint) {
	if *seen&(1<<bit) != 0 {
		d.bad = true
	}
	*seen |= 1 << bit
}

// u32Fields reads a map of uint32 values whose keys are among names into
// the field of the same index.
func (d *mpDecoder) u32Fields(names []string, fields ...*uint32) {
	n := d.mapLen()
	var seen uint32
	for range n {
		k := d.strBytes()
		if d.bad {
			return
		}
		j := 0
		for j < len(names) && string(k) != names[j] {
			j++
		}
		if j == len(names) {
			d.bad = true
			return
		}
		d.once(&seen, uint(j))
		*fields[j] = d.u32()
	}
}

var (
	mpStreamKeys   = []string{"idx", "val", "cpu", "sender", "epoch", "seq", "ack"}
	mpForkKeys     = []string{"parent_pid", "parent_tgid", "child_pid", "child_tgid"}
	mpPIDKeys      = []string{"pid", "tgid"}
	mpIDKeys       = []string{"pid", "tgid", "real", "effective"}
	mpPtraceKeys   = []string{"pid", "tgid", "tracer_pid", "tracer_tgid"}
	mpCoredumpKeys = []string{"pid", "tgid", "parent_pid", "parent_tgid"}
	mpAckKeys      = []string{"err"}
)

// event reads the event's map. The members' pointers are set as their maps
// are read, so that only present members are allocated.
func (d *mpDecoder) event(e *Event) {
	n := d.mapLen()
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "v":
			d.once(&seen, 0)
			e.Version = int(d.int(math.MinInt, math.MaxInt))
		case "id":
			d.once(&seen, 1)
			// Noted apart: a pointer into *e, noted in d, would move the
			// caller's Event to the heap.
			p := d.strBytes()
			d.id = mpString{nil, d.i - len(p), len(p)}
			d.strLen += len(p)
		case "kind":
			d.once(&seen, 2)
			e.Kind = d.kind()
		case "time":
			d.once(&seen, 3)
			e.Time = d.time()
		case "mono_ns":
			d.once(&seen, 4)
			e.MonoNS = d.u64()
		case "host":
			d.once(&seen, 5)
			if !d.isNil() {
				e.Host = d.host()
			}
		case "stream":
			d.once(&seen, 6)
			s := new(Stream)
			d.u32Fields(mpStreamKeys, &s.Idx, &s.Val, &s.CPU, &s.Sender, &s.Epoch, &s.Seq, &s.Ack)
			e.Stream = s
		case "record":
			d.once(&seen, 7)
			e.Record = d.record()
		case "fork":
			d.once(&seen, 8)
			x := new(ForkEvent)
			d.u32Fields(mpForkKeys, &x.ParentPID, &x.ParentTGID, &x.ChildPID, &x.ChildTGID)
			e.Fork = x
		case "exec":
			d.once(&seen, 9)
			x := new(ExecEvent)
			d.u32Fields(mpPIDKeys, &x.PID, &x.TGID)
			e.Exec = x
		case "exit":
			d.once(&seen, 10)
			e.Exit = d.exit()
		case "uid":
			d.once(&seen, 11)
			x := new(IDEvent)
			d.u32Fields(mpIDKeys, &x.PID, &x.TGID, &x.Real, &x.Effective)
			e.UID = x
		case "gid":
			d.once(&seen, 12)
			x := new(IDEvent)
			d.u32Fields(mpIDKeys, &x.PID, &x.TGID, &x.Real, &x.Effective)
			e.GID = x
		case "sid":
			d.once(&seen, 13)
			x := new(SIDEvent)
			d.u32Fields(mpPIDKeys, &x.PID, &x.TGID)
			e.SID = x
		case "ptrace":
			d.once(&seen, 14)
			x := new(PtraceEvent)
			d.u32Fields(mpPtraceKeys, &x.PID, &x.TGID, &x.TracerPID, &x.TracerTGID)
			e.Ptrace = x
		case "comm":
			d.once(&seen, 15)
			e.Comm = d.comm()
		case "coredump":
			d.once(&seen, 16)
			x := new(CoredumpEvent)
			d.u32Fields(mpCoredumpKeys, &x.PID, &x.TGID, &x.ParentPID, &x.ParentTGID)
			e.Coredump = x
		case "ack":
			d.once(&seen, 17)
			x := new(AckInfo)
			d.u32Fields(mpAckKeys, &x.Err)
			e.Ack = x
		case "raw":
			d.once(&seen, 18)
			e.Raw = d.raw()
		case "gap":
			d.once(&seen, 19)
			e.Gap = d.gap()
		case "overrun":
			d.once(&seen, 20)
			e.Overrun = d.overrun()
		case "malformed":
			d.once(&seen, 21)
			e.Malformed = d.malformed()
		case "forged":
			d.once(&seen, 22)
			e.Forged = d.forged()
		case "dropped":
			d.once(&seen, 23)
			e.Dropped = d.dropped()
		case "filtered":
			d.once(&seen, 24)
			e.Filtered = d.filtered()
		case "stream_closed":
			d.once(&seen, 25)
			e.Closed = d.closed()
		case "corrupt":
			d.once(&seen, 26)
			e.Corrupt = d.corrupt()
		case "process":
			d.once(&seen, 27)
			e.Process = d.process()
		default:
			d.bad = true
		}
		if d.bad {
			return
		}
	}
}

func (d *mpDecoder) host() *Host {
	n := d.mapLen()
	x := new(Host)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "hostname":
			d.once(&seen, 0)
			d.str(&x.Hostname)
		case "machine_id":
			d.once(&seen, 1)
			d.str(&x.MachineID)
		case "boot_id":
			d.once(&seen, 2)
			d.str(&x.BootID)
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) record() *Record {
	n := d.mapLen()
	x := new(Record)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "run":
			d.once(&seen, 0)
			d.str(&x.Run)
		case "seq":
			d.once(&seen, 1)
			x.Seq = d.u64()
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) exit() *ExitInfo {
	n := d.mapLen()
	x := new(ExitInfo)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "pid":
			d.once(&seen, 0)
			x.PID = d.u32()
		case "tgid":
			d.once(&seen, 1)
			x.TGID = d.u32()
		case "parent_pid":
			d.once(&seen, 2)
			x.ParentPID = d.u32()
		case "parent_tgid":
			d.once(&seen, 3)
			x.ParentTGID = d.u32()
		case "exit_code":
			d.once(&seen, 4)
			x.ExitCode = d.u32()
		case "exit_status":
			d.once(&seen, 5)
			x.ExitStatus = d.intPtr()
		case "signal":
			d.once(&seen, 6)
			x.Signal = d.intPtr()
		case "core_dumped":
			d.once(&seen, 7)
			x.CoreDumped = d.bool()
		case "exit_signal":
			d.once(&seen, 8)
			x.ExitSignal = int32(d.int(math.MinInt32, math.MaxInt32))
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

// intPtr reads an int into a new *int (the reflection path leaves a nil
// pointer nil; AppendMsgpack omits it, so nil fails here).
func (d *mpDecoder) intPtr() *int {
	v := int(d.int(math.MinInt, math.MaxInt))
	if d.bad {
		return nil
	}
	return &v
}

func (d *mpDecoder) comm() *CommInfo {
	n := d.mapLen()
	x := new(CommInfo)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "pid":
			d.once(&seen, 0)
			x.PID = d.u32()
		case "tgid":
			d.once(&seen, 1)
			x.TGID = d.u32()
		case "comm":
			d.once(&seen, 2)
			d.str(&x.Comm)
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) raw() *RawInfo {
	n := d.mapLen()
	x := new(RawInfo)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "group":
			d.once(&seen, 0)
			x.Group = d.u32()
		case "payload":
			d.once(&seen, 1)
			x.Payload = d.bin()
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) gap() *GapInfo {
	n := d.mapLen()
	x := new(GapInfo)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "expected":
			d.once(&seen, 0)
			x.Expected = d.u32()
		case "got":
			d.once(&seen, 1)
			x.Got = d.u32()
		case "missing":
			d.once(&seen, 2)
			x.Missing = d.u64()
		case "reason":
			d.once(&seen, 3)
			d.str(&x.Reason)
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) overrun() *OverrunInfo {
	n := d.mapLen()
	x := new(OverrunInfo)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "kernel_drops":
			d.once(&seen, 0)
			x.KernelDrops = d.u64()
		case "enobufs":
			d.once(&seen, 1)
			x.ENOBUFS = d.u64()
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) malformed() *MalformedInfo {
	n := d.mapLen()
	x := new(MalformedInfo)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "sender":
			d.once(&seen, 0)
			x.Sender = d.u32()
		case "error":
			d.once(&seen, 1)
			d.str(&x.Error)
		case "data":
			d.once(&seen, 2)
			x.Data = d.bin()
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) forged() *ForgedInfo {
	n := d.mapLen()
	x := new(ForgedInfo)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "count":
			d.once(&seen, 0)
			x.Count = d.u64()
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) dropped() *DroppedInfo {
	n := d.mapLen()
	x := new(DroppedInfo)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "count":
			d.once(&seen, 0)
			x.Count = d.u64()
		case "reason":
			d.once(&seen, 1)
			d.str(&x.Reason)
		case "sink":
			d.once(&seen, 2)
			d.str(&x.Sink)
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) filtered() *FilteredInfo {
	n := d.mapLen()
	x := new(FilteredInfo)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "count":
			d.once(&seen, 0)
			x.Count = d.u64()
		case "first":
			d.once(&seen, 1)
			x.First = d.u32()
		case "last":
			d.once(&seen, 2)
			x.Last = d.u32()
		case "kinds":
			d.once(&seen, 3)
			x.Kinds = d.kindCounts()
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

// kindCounts reads Filtered's map of counts by kind name: a map even when
// empty, and a repeated name counted by its last entry, as the reflection
// path does.
func (d *mpDecoder) kindCounts() map[string]uint64 {
	n := d.mapLen()
	if d.bad {
		return nil
	}
	m := make(map[string]uint64, n)
	for range n {
		k := string(d.strBytes())
		v := d.u64()
		if d.bad {
			return nil
		}
		m[k] = v
	}
	return m
}

func (d *mpDecoder) closed() *ClosedInfo {
	n := d.mapLen()
	x := new(ClosedInfo)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "reason":
			d.once(&seen, 0)
			d.str(&x.Reason)
		case "first":
			d.once(&seen, 1)
			x.First = d.u32()
		case "last":
			d.once(&seen, 2)
			x.Last = d.u32()
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) corrupt() *CorruptInfo {
	n := d.mapLen()
	x := new(CorruptInfo)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "file":
			d.once(&seen, 0)
			d.str(&x.File)
		case "offset":
			d.once(&seen, 1)
			x.Offset = d.int(math.MinInt64, math.MaxInt64)
		case "bytes":
			d.once(&seen, 2)
			x.Bytes = d.int(math.MinInt64, math.MaxInt64)
		case "reason":
			d.once(&seen, 3)
			d.str(&x.Reason)
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) process() *Process {
	n := d.mapLen()
	p := new(Process)
	var ids *[4]uint32 // uid, euid, gid, egid: one allocation for the four
	id := func(j int) *uint32 {
		if ids == nil {
			ids = new([4]uint32)
		}
		ids[j] = d.u32()
		return &ids[j]
	}
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "pid":
			d.once(&seen, 0)
			p.PID = d.u32()
		case "tgid":
			d.once(&seen, 1)
			p.TGID = d.u32()
		case "ppid":
			d.once(&seen, 2)
			p.PPID = d.u32()
		case "source":
			d.once(&seen, 3)
			d.str(&p.Source)
		case "comm":
			d.once(&seen, 4)
			d.str(&p.Comm)
		case "exe":
			d.once(&seen, 5)
			d.str(&p.Exe)
		case "cmdline":
			d.once(&seen, 6)
			p.Cmdline = d.strs()
		case "cwd":
			d.once(&seen, 7)
			d.str(&p.Cwd)
		case "uid":
			d.once(&seen, 8)
			p.UID = id(0)
		case "euid":
			d.once(&seen, 9)
			p.EUID = id(1)
		case "gid":
			d.once(&seen, 10)
			p.GID = id(2)
		case "egid":
			d.once(&seen, 11)
			p.EGID = id(3)
		case "user":
			d.once(&seen, 12)
			d.str(&p.User)
		case "group":
			d.once(&seen, 13)
			d.str(&p.Group)
		case "cgroup":
			d.once(&seen, 14)
			d.str(&p.Cgroup)
		case "container":
			d.once(&seen, 15)
			p.Container = d.container()
		case "ancestors":
			d.once(&seen, 16)
			p.Ancestors = d.ancestors()
		case "redacted":
			d.once(&seen, 17)
			p.Redacted = d.u32()
		case "login":
			d.once(&seen, 18)
			p.Login = d.login()
		case "cap_eff_hex":
			d.once(&seen, 19)
			d.str(&p.CapEffHex)
		case "cap_eff":
			d.once(&seen, 20)
			p.CapEff = d.strs()
		case "cap_full":
			d.once(&seen, 21)
			p.CapFull = d.bool()
		case "no_new_privs":
			d.once(&seen, 22)
			v := d.bool()
			p.NoNewPrivs = &v
		case "ns":
			d.once(&seen, 23)
			p.NS = d.namespaces()
		case "exec_id":
			d.once(&seen, 24)
			d.str(&p.ExecID)
		case "parent_exec_id":
			d.once(&seen, 25)
			d.str(&p.ParentExecID)
		case "prev_exec_id":
			d.once(&seen, 26)
			d.str(&p.PrevExecID)
		case "start_time":
			d.once(&seen, 27)
			p.StartTime = d.time()
		case "start_boot_ns":
			d.once(&seen, 28)
			p.StartBootNS = d.u64()
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return p
}

// strs reads an array of str: empty but not nil for an empty array, as the
// reflection path makes it.
func (d *mpDecoder) strs() []string {
	n := d.arrayLen()
	if d.bad {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		d.str(&out[i])
	}
	return out
}

func (d *mpDecoder) container() *Container {
	n := d.mapLen()
	x := new(Container)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "id":
			d.once(&seen, 0)
			d.str(&x.ID)
		case "runtime":
			d.once(&seen, 1)
			d.str(&x.Runtime)
		case "pod_uid":
			d.once(&seen, 2)
			d.str(&x.PodUID)
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) login() *Login {
	n := d.mapLen()
	x := new(Login)
	var seen uint32
	for range n {
		switch string(d.strBytes()) {
		case "auid":
			d.once(&seen, 0)
			v := d.u32()
			x.AUID = &v
		case "session_id":
			d.once(&seen, 1)
			v := d.u32()
			x.SessionID = &v
		default:
			d.bad = true
		}
		if d.bad {
			break
		}
	}
	return x
}

func (d *mpDecoder) namespaces() *Namespaces {
	n := d.mapLen()
	x := new(Namespaces)
	fields := [7]*uint64{&x.PID, &x.Mnt, &x.Net, &x.User, &x.UTS, &x.IPC, &x.Cgroup}
	var seen uint32
	for range n {
		k := d.strBytes()
		if d.bad {
			break
		}
		if string(k) == "differs" {
			d.once(&seen, 7)
			x.Differs = d.strs()
		} else {
			j := 0
			for j < len(NamespaceNames) && string(k) != NamespaceNames[j] {
				j++
			}
			if j == len(NamespaceNames) {
				d.bad = true
				break
			}
			d.once(&seen, uint(j))
			*fields[j] = d.u64()
		}
		if d.bad {
			break
		}
	}
	return x
}

// ancestors reads an array of ancestor maps: empty but not nil for an empty
// array, as the reflection path makes it.
func (d *mpDecoder) ancestors() []Ancestor {
	n := d.arrayLen()
	if d.bad {
		return nil
	}
	out := make([]Ancestor, n)
	for i := range out {
		a := &out[i]
		m := d.mapLen()
		var seen uint32
		for range m {
			switch string(d.strBytes()) {
			case "pid":
				d.once(&seen, 0)
				a.PID = d.u32()
			case "comm":
				d.once(&seen, 1)
				d.str(&a.Comm)
			case "exe":
				d.once(&seen, 2)
				d.str(&a.Exe)
			case "exec_id":
				d.once(&seen, 3)
				d.str(&a.ExecID)
			default:
				d.bad = true
			}
			if d.bad {
				return nil
			}
		}
	}
	return out
}
