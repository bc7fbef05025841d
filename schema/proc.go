package schema

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// ProcEventLen is sizeof(struct proc_event): what, cpu, timestamp_ns and a
// 24-byte union.
const (
	ProcEventLen       = 40
	procEventHeaderLen = 16
	// ProcInputLen is sizeof(struct proc_input), the LISTEN/IGNORE request
	// of kernels since 6.6; older kernels take only the 4-byte op.
	ProcInputLen = 8
)

// ProcMcastOp is enum proc_cn_mcast_op.
type ProcMcastOp uint32

const (
	ProcMcastListen ProcMcastOp = 1 // PROC_CN_MCAST_LISTEN
	ProcMcastIgnore ProcMcastOp = 2 // PROC_CN_MCAST_IGNORE
)

// What is enum proc_cn_event, the type of a proc_event.
type What uint32

// Process event types. ProcEventNonzeroExit is a subscription filter flag,
// never the type of an event.
const (
	ProcEventNone        What = 0x00000000 // also the ACK to LISTEN/IGNORE
	ProcEventFork        What = 0x00000001
	ProcEventExec        What = 0x00000002
	ProcEventUID         What = 0x00000004
	ProcEventGID         What = 0x00000040
	ProcEventSID         What = 0x00000080
	ProcEventPtrace      What = 0x00000100
	ProcEventComm        What = 0x00000200
	ProcEventNonzeroExit What = 0x20000000
	ProcEventCoredump    What = 0x40000000
	ProcEventExit        What = 0x80000000

	// ProcEventAll is PROC_EVENT_ALL, the mask that subscribes to everything.
	ProcEventAll = ProcEventFork | ProcEventExec | ProcEventUID | ProcEventGID |
		ProcEventSID | ProcEventPtrace | ProcEventComm | ProcEventNonzeroExit |
		ProcEventCoredump | ProcEventExit
)

var whatNames = []struct {
	w    What
	name string
}{
	{ProcEventNone, "ack"}, {ProcEventFork, "fork"}, {ProcEventExec, "exec"},
	{ProcEventUID, "uid"}, {ProcEventGID, "gid"}, {ProcEventSID, "sid"},
	{ProcEventPtrace, "ptrace"}, {ProcEventComm, "comm"},
	{ProcEventCoredump, "coredump"}, {ProcEventExit, "exit"},
}

// String returns the lowercase kind name used on the command line and in
// JSON ("fork", "exec", ..., "ack" for PROC_EVENT_NONE).
func (w What) String() string {
	for _, n := range whatNames {
		if n.w == w {
			return n.name
		}
	}
	return fmt.Sprintf("what(%#x)", uint32(w))
}

// MarshalText encodes w as its kind name, so JSON shows "fork", not 1.
func (w What) MarshalText() ([]byte, error) { return []byte(w.String()), nil }

// UnmarshalText accepts a kind name or a number ("0x400").
func (w *What) UnmarshalText(b []byte) error {
	if v, ok := ParseWhat(string(b)); ok {
		*w = v
		return nil
	}
	s := strings.TrimSuffix(strings.TrimPrefix(string(b), "what("), ")")
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return fmt.Errorf("schema: unknown proc event kind %q", b)
	}
	*w = What(n)
	return nil
}

// ParseWhat is the inverse of What.String for the known event types.
func ParseWhat(s string) (What, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for _, n := range whatNames {
		if n.name == s {
			return n.w, true
		}
	}
	return 0, false
}

// KnownWhat reports whether w is an event type this package decodes.
func KnownWhat(w What) bool {
	for _, n := range whatNames {
		if n.w == w {
			return true
		}
	}
	return false
}

// ProcEvent is struct proc_event. Exactly one of the union members is set,
// the one What names; the others are zero.
type ProcEvent struct {
	What        What   `json:"what"`
	CPU         uint32 `json:"cpu"`
	TimestampNS uint64 `json:"timestamp_ns"` // CLOCK_MONOTONIC

	Ack      AckEvent      `json:"ack,omitzero"`
	Fork     ForkEvent     `json:"fork,omitzero"`
	Exec     ExecEvent     `json:"exec,omitzero"`
	ID       IDEvent       `json:"id,omitzero"` // UID and GID events
	SID      SIDEvent      `json:"sid,omitzero"`
	Ptrace   PtraceEvent   `json:"ptrace,omitzero"`
	Comm     CommEvent     `json:"comm,omitzero"`
	Coredump CoredumpEvent `json:"coredump,omitzero"`
	Exit     ExitEvent     `json:"exit,omitzero"`
}

// AckEvent is the answer to LISTEN/IGNORE: a positive errno, 0 for success.
type AckEvent struct {
	Err uint32 `json:"err"`
}

// ForkEvent: a process or thread was created (clone, fork, vfork,
// pthread_create).
type ForkEvent struct {
	ParentPID  uint32 `json:"parent_pid"`
	ParentTGID uint32 `json:"parent_tgid"`
	ChildPID   uint32 `json:"child_pid"`
	ChildTGID  uint32 `json:"child_tgid"`
}

// ExecEvent: a process called execve successfully.
type ExecEvent struct {
	PID  uint32 `json:"pid"`
	TGID uint32 `json:"tgid"`
}

// IDEvent: a process changed its real/effective uid (What == UID) or gid
// (What == GID).
type IDEvent struct {
	PID       uint32 `json:"pid"`
	TGID      uint32 `json:"tgid"`
	Real      uint32 `json:"real"`
	Effective uint32 `json:"effective"`
}

// SIDEvent: a process called setsid.
type SIDEvent struct {
	PID  uint32 `json:"pid"`
	TGID uint32 `json:"tgid"`
}

// PtraceEvent: a tracer attached (TracerPID != 0) or detached (0).
type PtraceEvent struct {
	PID        uint32 `json:"pid"`
	TGID       uint32 `json:"tgid"`
	TracerPID  uint32 `json:"tracer_pid"`
	TracerTGID uint32 `json:"tracer_tgid"`
}

// CommEvent: a task changed its name (prctl PR_SET_NAME, exec).
type CommEvent struct {
	PID  uint32   `json:"pid"`
	TGID uint32   `json:"tgid"`
	Comm [16]byte `json:"-"`
}

// MarshalJSON includes the command name, which the Comm array does not show.
func (c CommEvent) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		PID  uint32 `json:"pid"`
		TGID uint32 `json:"tgid"`
		Comm string `json:"comm"`
	}{c.PID, c.TGID, c.Name()})
}

// Name returns the command name up to the first NUL.
func (c CommEvent) Name() string {
	if i := bytes.IndexByte(c.Comm[:], 0); i >= 0 {
		return string(c.Comm[:i])
	}
	return string(c.Comm[:])
}

// CoredumpEvent: a process is dumping core.
type CoredumpEvent struct {
	PID        uint32 `json:"pid"`
	TGID       uint32 `json:"tgid"`
	ParentPID  uint32 `json:"parent_pid"`
	ParentTGID uint32 `json:"parent_tgid"`
}

// ExitEvent: a task exited. ExitCode is the wait status (see the methods);
// ExitSignal is the signal sent to the parent (SIGCHLD for processes,
// 0xffffffff (-1) for threads). A thread other than the main one has
// ParentPID and ParentTGID 0: the kernel has detached it from its parent
// before it reports the exit.
type ExitEvent struct {
	PID        uint32 `json:"pid"`
	TGID       uint32 `json:"tgid"`
	ExitCode   uint32 `json:"exit_code"`
	ExitSignal uint32 `json:"exit_signal"`
	ParentPID  uint32 `json:"parent_pid"`
	ParentTGID uint32 `json:"parent_tgid"`
}

// Exited reports a normal exit (WIFEXITED).
func (e ExitEvent) Exited() bool { return e.ExitCode&0x7f == 0 }

// Status is the exit status when Exited (WEXITSTATUS).
func (e ExitEvent) Status() int { return int(e.ExitCode>>8) & 0xff }

// Signaled reports termination by a signal (WIFSIGNALED).
func (e ExitEvent) Signaled() bool {
	s := e.ExitCode & 0x7f
	return s != 0 && s != 0x7f
}

// Signal is the terminating signal when Signaled (WTERMSIG).
func (e ExitEvent) Signal() int { return int(e.ExitCode & 0x7f) }

// CoreDumped reports a core dump (WCOREDUMP).
func (e ExitEvent) CoreDumped() bool { return e.Signaled() && e.ExitCode&0x80 != 0 }

// DecodeProcEvent decodes the payload of a proc connector cn_msg. It needs
// the whole 40-byte structure. An unknown What returns the header fields
// (What, CPU, TimestampNS) with an error matching ErrUnknownType.
func DecodeProcEvent(b []byte) (ProcEvent, error) {
	if len(b) < ProcEventLen {
		return ProcEvent{}, formatErr("proc_event", 0, ErrShort, "%d bytes, need %d", len(b), ProcEventLen)
	}
	ne := binary.NativeEndian
	ev := ProcEvent{
		What:        What(ne.Uint32(b[0:4])),
		CPU:         ne.Uint32(b[4:8]),
		TimestampNS: ne.Uint64(b[8:16]),
	}
	d := b[procEventHeaderLen:ProcEventLen]
	u := func(i int) uint32 { return ne.Uint32(d[4*i : 4*i+4]) }
	switch ev.What {
	case ProcEventNone:
		ev.Ack = AckEvent{Err: u(0)}
	case ProcEventFork:
		ev.Fork = ForkEvent{ParentPID: u(0), ParentTGID: u(1), ChildPID: u(2), ChildTGID: u(3)}
	case ProcEventExec:
		ev.Exec = ExecEvent{PID: u(0), TGID: u(1)}
	case ProcEventUID, ProcEventGID:
		ev.ID = IDEvent{PID: u(0), TGID: u(1), Real: u(2), Effective: u(3)}
	case ProcEventSID:
		ev.SID = SIDEvent{PID: u(0), TGID: u(1)}
	case ProcEventPtrace:
		ev.Ptrace = PtraceEvent{PID: u(0), TGID: u(1), TracerPID: u(2), TracerTGID: u(3)}
	case ProcEventComm:
		ev.Comm = CommEvent{PID: u(0), TGID: u(1)}
		copy(ev.Comm.Comm[:], d[8:24])
	case ProcEventCoredump:
		ev.Coredump = CoredumpEvent{PID: u(0), TGID: u(1), ParentPID: u(2), ParentTGID: u(3)}
	case ProcEventExit:
		ev.Exit = ExitEvent{PID: u(0), TGID: u(1), ExitCode: u(2), ExitSignal: u(3), ParentPID: u(4), ParentTGID: u(5)}
	default:
		return ev, formatErr("proc_event", 0, ErrUnknownType, "what %#x", uint32(ev.What))
	}
	return ev, nil
}

// AppendProcEvent appends the 40-byte encoding of ev; union bytes not used by
// its type are zero, as the kernel sends them.
func AppendProcEvent(b []byte, ev ProcEvent) []byte {
	ne := binary.NativeEndian
	b = ne.AppendUint32(b, uint32(ev.What))
	b = ne.AppendUint32(b, ev.CPU)
	b = ne.AppendUint64(b, ev.TimestampNS)
	var u [6]uint32
	var comm []byte
	switch ev.What {
	case ProcEventNone:
		u[0] = ev.Ack.Err
	case ProcEventFork:
		f := ev.Fork
		u = [6]uint32{f.ParentPID, f.ParentTGID, f.ChildPID, f.ChildTGID}
	case ProcEventExec:
		u = [6]uint32{ev.Exec.PID, ev.Exec.TGID}
	case ProcEventUID, ProcEventGID:
		i := ev.ID
		u = [6]uint32{i.PID, i.TGID, i.Real, i.Effective}
	case ProcEventSID:
		u = [6]uint32{ev.SID.PID, ev.SID.TGID}
	case ProcEventPtrace:
		p := ev.Ptrace
		u = [6]uint32{p.PID, p.TGID, p.TracerPID, p.TracerTGID}
	case ProcEventComm:
		u = [6]uint32{ev.Comm.PID, ev.Comm.TGID}
		comm = ev.Comm.Comm[:]
	case ProcEventCoredump:
		c := ev.Coredump
		u = [6]uint32{c.PID, c.TGID, c.ParentPID, c.ParentTGID}
	case ProcEventExit:
		e := ev.Exit
		u = [6]uint32{e.PID, e.TGID, e.ExitCode, e.ExitSignal, e.ParentPID, e.ParentTGID}
	}
	if comm != nil {
		b = ne.AppendUint32(b, u[0])
		b = ne.AppendUint32(b, u[1])
		return append(b, comm...)
	}
	for _, v := range u {
		b = ne.AppendUint32(b, v)
	}
	return b
}

// AppendProcInput appends a LISTEN/IGNORE request payload: the 8-byte
// struct proc_input (op, event mask) or, when legacy is set, the 4-byte op
// that kernels before 6.6 require.
func AppendProcInput(b []byte, op ProcMcastOp, mask What, legacy bool) []byte {
	b = binary.NativeEndian.AppendUint32(b, uint32(op))
	if legacy {
		return b
	}
	return binary.NativeEndian.AppendUint32(b, uint32(mask))
}
