package schema

import (
	"encoding/binary"
	"math"
	"time"
)

// AppendMsgpack appends e as one MessagePack map and returns the extended
// buffer. It does not allocate beyond growing b.
//
// The map has the keys, order and omissions of AppendJSON (the json tags),
// with the id derived when e.ID is empty. Values take MessagePack's types:
// integers in their smallest form, strings as str (their bytes as they are,
// not checked or replaced as UTF-8), "kind" as the kind's name, []byte as
// bin (nil as nil), nil pointers as nil, and "time" and a process's
// "start_time" as the timestamp extension (type -1) in its smallest form
// (32, 64 or 96 bits). DecodeMsgpack,
// or github.com/vmihailenco/msgpack/v5 with SetCustomStructTag("json"),
// decodes it back to e. Strings and bins longer than 4 GiB are not supported.
func AppendMsgpack(b []byte, e *Event) []byte {
	n := 6 // v, id, kind, time, mono_ns, host
	for _, set := range [...]bool{
		e.Stream != nil, e.Record != nil,
		e.Fork != nil, e.Exec != nil, e.Exit != nil, e.UID != nil, e.GID != nil,
		e.SID != nil, e.Ptrace != nil, e.Comm != nil, e.Coredump != nil,
		e.Ack != nil, e.Raw != nil, e.Gap != nil, e.Overrun != nil,
		e.Malformed != nil, e.Forged != nil, e.Dropped != nil, e.Filtered != nil,
		e.Closed != nil, e.Corrupt != nil, e.Process != nil,
	} {
		if set {
			n++
		}
	}
	b = mpMap(b, n)
	b = mpKey(b, "v")
	b = mpInt(b, int64(e.Version))
	b = mpKey(b, "id")
	if e.ID != "" {
		b = mpStr(b, e.ID)
	} else {
		b = mpEventID(b, e)
	}
	b = mpKey(b, "kind")
	b = mpStr(b, e.Kind.String())
	b = mpKey(b, "time")
	b = mpTime(b, e.Time)
	b = mpKey(b, "mono_ns")
	b = mpUint(b, e.MonoNS)
	b = mpKey(b, "host")
	if h := e.Host; h == nil {
		b = append(b, mpNil)
	} else {
		b = mpMap(b, 3)
		b = mpKeyStr(b, "hostname", h.Hostname)
		b = mpKeyStr(b, "machine_id", h.MachineID)
		b = mpKeyStr(b, "boot_id", h.BootID)
	}
	if s := e.Stream; s != nil {
		b = mpKey(b, "stream")
		b = mpMap(b, 7)
		b = mpKeyUint(b, "idx", s.Idx)
		b = mpKeyUint(b, "val", s.Val)
		b = mpKeyUint(b, "cpu", s.CPU)
		b = mpKeyUint(b, "sender", s.Sender)
		b = mpKeyUint(b, "epoch", s.Epoch)
		b = mpKeyUint(b, "seq", s.Seq)
		b = mpKeyUint(b, "ack", s.Ack)
	}
	if r := e.Record; r != nil {
		b = mpKey(b, "record")
		b = mpMap(b, 2)
		b = mpKeyStr(b, "run", r.Run)
		b = mpKeyUint(b, "seq", r.Seq)
	}
	if f := e.Fork; f != nil {
		b = mpKey(b, "fork")
		b = mpMap(b, 4)
		b = mpKeyUint(b, "parent_pid", f.ParentPID)
		b = mpKeyUint(b, "parent_tgid", f.ParentTGID)
		b = mpKeyUint(b, "child_pid", f.ChildPID)
		b = mpKeyUint(b, "child_tgid", f.ChildTGID)
	}
	if x := e.Exec; x != nil {
		b = mpKey(b, "exec")
		b = mpMap(b, 2)
		b = mpKeyUint(b, "pid", x.PID)
		b = mpKeyUint(b, "tgid", x.TGID)
	}
	if x := e.Exit; x != nil {
		n := 7
		if x.ExitStatus != nil {
			n++
		}
		if x.Signal != nil {
			n++
		}
		b = mpKey(b, "exit")
		b = mpMap(b, n)
		b = mpKeyUint(b, "pid", x.PID)
		b = mpKeyUint(b, "tgid", x.TGID)
		b = mpKeyUint(b, "parent_pid", x.ParentPID)
		b = mpKeyUint(b, "parent_tgid", x.ParentTGID)
		b = mpKeyUint(b, "exit_code", x.ExitCode)
		if x.ExitStatus != nil {
			b = mpKey(b, "exit_status")
			b = mpInt(b, int64(*x.ExitStatus))
		}
		if x.Signal != nil {
			b = mpKey(b, "signal")
			b = mpInt(b, int64(*x.Signal))
		}
		b = mpKey(b, "core_dumped")
		b = mpBool(b, x.CoreDumped)
		b = mpKey(b, "exit_signal")
		b = mpInt(b, int64(x.ExitSignal))
	}
	if x := e.UID; x != nil {
		b = mpIDEvent(b, "uid", x)
	}
	if x := e.GID; x != nil {
		b = mpIDEvent(b, "gid", x)
	}
	if x := e.SID; x != nil {
		b = mpKey(b, "sid")
		b = mpMap(b, 2)
		b = mpKeyUint(b, "pid", x.PID)
		b = mpKeyUint(b, "tgid", x.TGID)
	}
	if x := e.Ptrace; x != nil {
		b = mpKey(b, "ptrace")
		b = mpMap(b, 4)
		b = mpKeyUint(b, "pid", x.PID)
		b = mpKeyUint(b, "tgid", x.TGID)
		b = mpKeyUint(b, "tracer_pid", x.TracerPID)
		b = mpKeyUint(b, "tracer_tgid", x.TracerTGID)
	}
	if x := e.Comm; x != nil {
		b = mpKey(b, "comm")
		b = mpMap(b, 3)
		b = mpKeyUint(b, "pid", x.PID)
		b = mpKeyUint(b, "tgid", x.TGID)
		b = mpKeyStr(b, "comm", x.Comm)
	}
	if x := e.Coredump; x != nil {
		b = mpKey(b, "coredump")
		b = mpMap(b, 4)
		b = mpKeyUint(b, "pid", x.PID)
		b = mpKeyUint(b, "tgid", x.TGID)
		b = mpKeyUint(b, "parent_pid", x.ParentPID)
		b = mpKeyUint(b, "parent_tgid", x.ParentTGID)
	}
	if x := e.Ack; x != nil {
		b = mpKey(b, "ack")
		b = mpMap(b, 1)
		b = mpKeyUint(b, "err", x.Err)
	}
	if x := e.Raw; x != nil {
		b = mpKey(b, "raw")
		b = mpMap(b, 2)
		b = mpKeyUint(b, "group", x.Group)
		b = mpKey(b, "payload")
		b = mpBin(b, x.Payload)
	}
	if x := e.Gap; x != nil {
		n := 3
		if x.Reason != "" {
			n++
		}
		b = mpKey(b, "gap")
		b = mpMap(b, n)
		b = mpKeyUint(b, "expected", x.Expected)
		b = mpKeyUint(b, "got", x.Got)
		b = mpKeyUint(b, "missing", x.Missing)
		b = mpOptStr(b, "reason", x.Reason)
	}
	if x := e.Overrun; x != nil {
		b = mpKey(b, "overrun")
		b = mpMap(b, 2)
		b = mpKeyUint(b, "kernel_drops", x.KernelDrops)
		b = mpKeyUint(b, "enobufs", x.ENOBUFS)
	}
	if x := e.Malformed; x != nil {
		b = mpKey(b, "malformed")
		b = mpMap(b, 3)
		b = mpKeyUint(b, "sender", x.Sender)
		b = mpKeyStr(b, "error", x.Error)
		b = mpKey(b, "data")
		b = mpBin(b, x.Data)
	}
	if x := e.Forged; x != nil {
		b = mpKey(b, "forged")
		b = mpMap(b, 1)
		b = mpKeyUint(b, "count", x.Count)
	}
	if x := e.Dropped; x != nil {
		n := 2
		if x.Sink != "" {
			n++
		}
		b = mpKey(b, "dropped")
		b = mpMap(b, n)
		b = mpKeyUint(b, "count", x.Count)
		b = mpKeyStr(b, "reason", x.Reason)
		b = mpOptStr(b, "sink", x.Sink)
	}
	if x := e.Filtered; x != nil {
		n := 3
		if len(x.Kinds) > 0 {
			n++
		}
		b = mpKey(b, "filtered")
		b = mpMap(b, n)
		b = mpKeyUint(b, "count", x.Count)
		b = mpKeyUint(b, "first", x.First)
		b = mpKeyUint(b, "last", x.Last)
		if len(x.Kinds) > 0 {
			b = mpKey(b, "kinds")
			b = mpMap(b, len(x.Kinds))
			var buf [24]string
			for _, k := range sortedKeys(buf[:0], x.Kinds) {
				b = mpStr(b, k)
				b = mpUint(b, x.Kinds[k])
			}
		}
	}
	if x := e.Closed; x != nil {
		b = mpKey(b, "stream_closed")
		b = mpMap(b, 3)
		b = mpKeyStr(b, "reason", x.Reason)
		b = mpKeyUint(b, "first", x.First)
		b = mpKeyUint(b, "last", x.Last)
	}
	if x := e.Corrupt; x != nil {
		b = mpKey(b, "corrupt")
		b = mpMap(b, 4)
		b = mpKeyStr(b, "file", x.File)
		b = mpKey(b, "offset")
		b = mpInt(b, x.Offset)
		b = mpKey(b, "bytes")
		b = mpInt(b, x.Bytes)
		b = mpKeyStr(b, "reason", x.Reason)
	}
	if p := e.Process; p != nil {
		b = mpKey(b, "process")
		b = mpProcess(b, p)
	}
	return b
}

func mpIDEvent(b []byte, key string, x *IDEvent) []byte {
	b = mpKey(b, key)
	b = mpMap(b, 4)
	b = mpKeyUint(b, "pid", x.PID)
	b = mpKeyUint(b, "tgid", x.TGID)
	b = mpKeyUint(b, "real", x.Real)
	return mpKeyUint(b, "effective", x.Effective)
}

func mpProcess(b []byte, p *Process) []byte {
	n := 3 // pid, tgid, source
	for _, set := range [...]bool{
		p.PPID != 0, p.ExecID != "", p.ParentExecID != "", p.PrevExecID != "", !p.StartTime.IsZero(), p.StartBootNS != 0,
		p.Comm != "", p.Exe != "", len(p.Cmdline) > 0, p.Redacted != 0, p.Cwd != "",
		p.UID != nil, p.EUID != nil, p.GID != nil, p.EGID != nil,
		p.User != "", p.Group != "", p.Cgroup != "", p.Container != nil, len(p.Ancestors) > 0,
		p.Login != nil, p.CapEffHex != "", len(p.CapEff) > 0, p.CapFull, p.NoNewPrivs != nil, p.NS != nil,
	} {
		if set {
			n++
		}
	}
	b = mpMap(b, n)
	b = mpKeyUint(b, "pid", p.PID)
	b = mpKeyUint(b, "tgid", p.TGID)
	if p.PPID != 0 {
		b = mpKeyUint(b, "ppid", p.PPID)
	}
	b = mpKeyStr(b, "source", p.Source)
	b = mpOptStr(b, "exec_id", p.ExecID)
	b = mpOptStr(b, "parent_exec_id", p.ParentExecID)
	b = mpOptStr(b, "prev_exec_id", p.PrevExecID)
	if !p.StartTime.IsZero() {
		b = mpKey(b, "start_time")
		b = mpTime(b, p.StartTime)
	}
	if p.StartBootNS != 0 {
		b = mpKeyUint(b, "start_boot_ns", p.StartBootNS)
	}
	b = mpOptStr(b, "comm", p.Comm)
	b = mpOptStr(b, "exe", p.Exe)
	if len(p.Cmdline) > 0 {
		b = mpKey(b, "cmdline")
		b = mpArray(b, len(p.Cmdline))
		for _, a := range p.Cmdline {
			b = mpStr(b, a)
		}
	}
	if p.Redacted != 0 {
		b = mpKeyUint(b, "redacted", p.Redacted)
	}
	b = mpOptStr(b, "cwd", p.Cwd)
	b = mpOptUint(b, "uid", p.UID)
	b = mpOptUint(b, "euid", p.EUID)
	b = mpOptUint(b, "gid", p.GID)
	b = mpOptUint(b, "egid", p.EGID)
	b = mpOptStr(b, "user", p.User)
	b = mpOptStr(b, "group", p.Group)
	b = mpOptStr(b, "cgroup", p.Cgroup)
	if c := p.Container; c != nil {
		n := 2
		if c.PodUID != "" {
			n++
		}
		b = mpKey(b, "container")
		b = mpMap(b, n)
		b = mpKeyStr(b, "id", c.ID)
		b = mpKeyStr(b, "runtime", c.Runtime)
		b = mpOptStr(b, "pod_uid", c.PodUID)
	}
	if l := p.Login; l != nil {
		n := 0
		if l.AUID != nil {
			n++
		}
		if l.SessionID != nil {
			n++
		}
		b = mpKey(b, "login")
		b = mpMap(b, n)
		b = mpOptUint(b, "auid", l.AUID)
		b = mpOptUint(b, "session_id", l.SessionID)
	}
	b = mpOptStr(b, "cap_eff_hex", p.CapEffHex)
	if len(p.CapEff) > 0 {
		b = mpKey(b, "cap_eff")
		b = mpArray(b, len(p.CapEff))
		for _, a := range p.CapEff {
			b = mpStr(b, a)
		}
	}
	if p.CapFull {
		b = mpKey(b, "cap_full")
		b = mpBool(b, true)
	}
	if p.NoNewPrivs != nil {
		b = mpKey(b, "no_new_privs")
		b = mpBool(b, *p.NoNewPrivs)
	}
	if ns := p.NS; ns != nil {
		inodes := ns.Inodes()
		n := 0
		for _, v := range inodes {
			if v != 0 {
				n++
			}
		}
		if len(ns.Differs) > 0 {
			n++
		}
		b = mpKey(b, "ns")
		b = mpMap(b, n)
		for i, v := range inodes {
			if v != 0 {
				b = mpKeyUint(b, NamespaceNames[i], v)
			}
		}
		if len(ns.Differs) > 0 {
			b = mpKey(b, "differs")
			b = mpArray(b, len(ns.Differs))
			for _, a := range ns.Differs {
				b = mpStr(b, a)
			}
		}
	}
	if len(p.Ancestors) > 0 {
		b = mpKey(b, "ancestors")
		b = mpArray(b, len(p.Ancestors))
		for i := range p.Ancestors {
			a := &p.Ancestors[i]
			n := 1
			if a.ExecID != "" {
				n++
			}
			if a.Comm != "" {
				n++
			}
			if a.Exe != "" {
				n++
			}
			b = mpMap(b, n)
			b = mpKeyUint(b, "pid", a.PID)
			b = mpOptStr(b, "exec_id", a.ExecID)
			b = mpOptStr(b, "comm", a.Comm)
			b = mpOptStr(b, "exe", a.Exe)
		}
	}
	return b
}

// MessagePack format bytes.
const (
	mpNil   = 0xc0
	mpFalse = 0xc2
	mpTrue  = 0xc3
)

// mpKey appends a map key; keys are short ASCII names (fixstr).
func mpKey(b []byte, k string) []byte {
	b = append(b, 0xa0|byte(len(k)))
	return append(b, k...)
}

func mpKeyStr(b []byte, k, s string) []byte {
	return mpStr(mpKey(b, k), s)
}

func mpKeyUint[T uint32 | uint64](b []byte, k string, v T) []byte {
	return mpUint(mpKey(b, k), uint64(v))
}

// mpOptStr appends key and s unless s is empty (omitempty).
func mpOptStr(b []byte, k, s string) []byte {
	if s == "" {
		return b
	}
	return mpKeyStr(b, k, s)
}

// mpOptUint appends key and *v unless v is nil (omitempty).
func mpOptUint(b []byte, k string, v *uint32) []byte {
	if v == nil {
		return b
	}
	return mpKeyUint(b, k, *v)
}

func mpBool(b []byte, v bool) []byte {
	if v {
		return append(b, mpTrue)
	}
	return append(b, mpFalse)
}

// mpUint appends v in its smallest form: positive fixint, uint 8, 16, 32, 64.
func mpUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

// mpInt appends v in its smallest form: as mpUint when not negative, else
// negative fixint, int 8, 16, 32, 64.
func mpInt(b []byte, v int64) []byte {
	switch {
	case v >= 0:
		return mpUint(b, uint64(v))
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}

// mpStrHeader appends the header of a str of n bytes.
func mpStrHeader(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
}

func mpStr(b []byte, s string) []byte {
	return append(mpStrHeader(b, len(s)), s...)
}

// mpBin appends v as bin 8, 16 or 32, or nil when v is nil.
func mpBin(b, v []byte) []byte {
	n := len(v)
	switch {
	case v == nil:
		return append(b, mpNil)
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, v...)
}

func mpMap(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
}

func mpArray(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

// mpTime appends t as the timestamp extension (type -1): timestamp 32
// (fixext 4) for whole seconds in 0..2^32-1, timestamp 64 (fixext 8) for
// seconds in 0..2^34-1, else timestamp 96 (ext 8 of 12 bytes).
func mpTime(b []byte, t time.Time) []byte {
	sec, nsec := t.Unix(), uint64(t.Nanosecond())
	if uint64(sec)>>34 == 0 {
		data := nsec<<34 | uint64(sec)
		if data>>32 == 0 {
			return binary.BigEndian.AppendUint32(append(b, 0xd6, 0xff), uint32(data))
		}
		return binary.BigEndian.AppendUint64(append(b, 0xd7, 0xff), data)
	}
	b = binary.BigEndian.AppendUint32(append(b, 0xc7, 12, 0xff), uint32(nsec))
	return binary.BigEndian.AppendUint64(b, uint64(sec))
}

// mpEventID appends the derived id of e as a str. The id is built after
// room for the largest header (5 bytes) and moved down over the room its
// header does not need.
func mpEventID(b []byte, e *Event) []byte {
	const room = 5
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0)
	b = AppendEventID(b, e)
	n := len(b) - start - room
	// b[start:start] has the room as capacity: the header is written in place.
	h := len(mpStrHeader(b[start:start], n))
	if h < room {
		copy(b[start+h:], b[start+room:])
		b = b[:len(b)-(room-h)]
	}
	return b
}
