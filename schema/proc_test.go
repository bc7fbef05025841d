package schema

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kernelKinds lists enum proc_cn_event (include/uapi/linux/cn_proc.h) with
// the kind names of the command line and JSON.
var kernelKinds = []struct {
	w     What
	value uint32 // the kernel's number, written out
	name  string
}{
	{ProcEventNone, 0x00000000, "ack"},
	{ProcEventFork, 0x00000001, "fork"},
	{ProcEventExec, 0x00000002, "exec"},
	{ProcEventUID, 0x00000004, "uid"},
	{ProcEventGID, 0x00000040, "gid"},
	{ProcEventSID, 0x00000080, "sid"},
	{ProcEventPtrace, 0x00000100, "ptrace"},
	{ProcEventComm, 0x00000200, "comm"},
	{ProcEventCoredump, 0x40000000, "coredump"},
	{ProcEventExit, 0x80000000, "exit"},
}

// unionUsed is how many of the union's 24 bytes each event type uses
// (struct proc_event in include/uapi/linux/cn_proc.h); the kernel zeroes the
// rest.
var unionUsed = map[What]int{
	ProcEventNone:     4,  // ack: err
	ProcEventFork:     16, // parent pid, tgid, child pid, tgid
	ProcEventExec:     8,  // pid, tgid
	ProcEventUID:      16, // pid, tgid, ruid, euid
	ProcEventGID:      16, // pid, tgid, rgid, egid
	ProcEventSID:      8,  // pid, tgid
	ProcEventPtrace:   16, // pid, tgid, tracer pid, tgid
	ProcEventComm:     24, // pid, tgid, comm[16]
	ProcEventCoredump: 16, // pid, tgid, parent pid, tgid
	ProcEventExit:     24, // pid, tgid, exit_code, exit_signal, parent pid, tgid
}

func TestWhatConstants(t *testing.T) {
	for _, k := range kernelKinds {
		if uint32(k.w) != k.value {
			t.Errorf("%s = %#x, the kernel's value is %#x", k.name, uint32(k.w), k.value)
		}
	}
	if ProcEventNonzeroExit != 0x20000000 {
		t.Errorf("ProcEventNonzeroExit = %#x, want 0x20000000", uint32(ProcEventNonzeroExit))
	}
	// PROC_EVENT_ALL of include/uapi/linux/cn_proc.h.
	if ProcEventAll != 0xe00003c7 {
		t.Errorf("ProcEventAll = %#x, want 0xe00003c7", uint32(ProcEventAll))
	}
	if len(unionUsed) != len(kernelKinds) {
		t.Errorf("unionUsed has %d kinds, kernelKinds %d", len(unionUsed), len(kernelKinds))
	}
}

func TestWhatStringParse(t *testing.T) {
	for _, k := range kernelKinds {
		if got := k.w.String(); got != k.name {
			t.Errorf("What(%#x).String() = %q, want %q", k.value, got, k.name)
		}
		for _, s := range []string{k.name, strings.ToUpper(k.name), " " + k.name + "\t"} {
			w, ok := ParseWhat(s)
			if !ok || w != k.w {
				t.Errorf("ParseWhat(%q) = %#x, %v; want %#x, true", s, uint32(w), ok, k.value)
			}
		}
		if w, ok := ParseWhat(k.w.String()); !ok || w != k.w {
			t.Errorf("ParseWhat(What(%#x).String()) = %#x, %v: no round trip", k.value, uint32(w), ok)
		}
		if !KnownWhat(k.w) {
			t.Errorf("KnownWhat(%s) = false", k.name)
		}
	}
	// Not event types: the filter flag, combinations, unused bits.
	for _, w := range []What{ProcEventNonzeroExit, ProcEventFork | ProcEventExec, 0x8, 0x400, 0x10000000, ProcEventAll, 0xffffffff} {
		if KnownWhat(w) {
			t.Errorf("KnownWhat(%#x) = true", uint32(w))
		}
		s := w.String()
		if want := "what(" + hex(uint32(w)) + ")"; s != want {
			t.Errorf("What(%#x).String() = %q, want %q", uint32(w), s, want)
		}
		if got, ok := ParseWhat(s); ok {
			t.Errorf("ParseWhat(%q) = %#x, true; want false", s, uint32(got))
		}
	}
	for _, s := range []string{"", "none", "nonzero_exit", "forks", "0", "1"} {
		if w, ok := ParseWhat(s); ok {
			t.Errorf("ParseWhat(%q) = %#x, true; want false", s, uint32(w))
		}
	}
}

func hex(v uint32) string {
	const digits = "0123456789abcdef"
	if v == 0 {
		return "0x0"
	}
	var b []byte
	for ; v > 0; v >>= 4 {
		b = append([]byte{digits[v&0xf]}, b...)
	}
	return "0x" + string(b)
}

// procEventBytes writes a proc_event by hand, independently of the encoder.
func procEventBytes(what, cpu uint32, ts uint64, union ...uint32) []byte {
	b := make([]byte, ProcEventLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], what)
	ne.PutUint32(b[4:], cpu)
	ne.PutUint64(b[8:], ts)
	for i, v := range union {
		ne.PutUint32(b[16+4*i:], v)
	}
	return b
}

// TestDecodeProcEvent decodes hand-written events with distinct values in
// every union word, so a field read from the wrong offset shows.
func TestDecodeProcEvent(t *testing.T) {
	u := []uint32{0x11111111, 0x22222222, 0x33333333, 0x44444444, 0x55555555, 0x66666666}
	const cpu, ts = 7, 0x0102030405060708
	hdr := func(w What) ProcEvent { return ProcEvent{What: w, CPU: cpu, TimestampNS: ts} }
	with := func(ev ProcEvent, f func(*ProcEvent)) ProcEvent { f(&ev); return ev }
	var comm [16]byte
	copy(comm[:], "bash\x00\x00\x00\x00ignored!")
	commUnion := append([]uint32{u[0], u[1]}, words(comm[:])...)

	tests := []struct {
		name  string
		in    []byte
		want  ProcEvent
		named string // CommEvent.Name
	}{
		{"ack", procEventBytes(0, cpu, ts, u...), with(hdr(ProcEventNone), func(e *ProcEvent) { e.Ack.Err = u[0] }), ""},
		{"fork", procEventBytes(1, cpu, ts, u...), with(hdr(ProcEventFork), func(e *ProcEvent) { e.Fork = ForkEvent{u[0], u[1], u[2], u[3]} }), ""},
		{"exec", procEventBytes(2, cpu, ts, u...), with(hdr(ProcEventExec), func(e *ProcEvent) { e.Exec = ExecEvent{u[0], u[1]} }), ""},
		{"uid", procEventBytes(4, cpu, ts, u...), with(hdr(ProcEventUID), func(e *ProcEvent) { e.ID = IDEvent{u[0], u[1], u[2], u[3]} }), ""},
		{"gid", procEventBytes(0x40, cpu, ts, u...), with(hdr(ProcEventGID), func(e *ProcEvent) { e.ID = IDEvent{u[0], u[1], u[2], u[3]} }), ""},
		{"sid", procEventBytes(0x80, cpu, ts, u...), with(hdr(ProcEventSID), func(e *ProcEvent) { e.SID = SIDEvent{u[0], u[1]} }), ""},
		{"ptrace", procEventBytes(0x100, cpu, ts, u...), with(hdr(ProcEventPtrace), func(e *ProcEvent) { e.Ptrace = PtraceEvent{u[0], u[1], u[2], u[3]} }), ""},
		{"comm", procEventBytes(0x200, cpu, ts, commUnion...), with(hdr(ProcEventComm), func(e *ProcEvent) { e.Comm = CommEvent{u[0], u[1], comm} }), "bash"},
		{"comm without NUL", procEventBytes(0x200, cpu, ts, append([]uint32{1, 2}, words([]byte("0123456789abcdef"))...)...),
			with(hdr(ProcEventComm), func(e *ProcEvent) { e.Comm = CommEvent{PID: 1, TGID: 2, Comm: [16]byte([]byte("0123456789abcdef"))} }), "0123456789abcdef"},
		{"coredump", procEventBytes(0x40000000, cpu, ts, u...), with(hdr(ProcEventCoredump), func(e *ProcEvent) { e.Coredump = CoredumpEvent{u[0], u[1], u[2], u[3]} }), ""},
		{"exit", procEventBytes(0x80000000, cpu, ts, u...), with(hdr(ProcEventExit), func(e *ProcEvent) { e.Exit = ExitEvent{u[0], u[1], u[2], u[3], u[4], u[5]} }), ""},
		{"trailing bytes ignored", append(procEventBytes(2, cpu, ts, 9, 10), 0xff, 0xff), with(hdr(ProcEventExec), func(e *ProcEvent) { e.Exec = ExecEvent{9, 10} }), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeProcEvent(tt.in)
			if err != nil {
				t.Fatalf("DecodeProcEvent: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if got.What == ProcEventComm && got.Comm.Name() != tt.named {
				t.Errorf("Comm.Name() = %q, want %q", got.Comm.Name(), tt.named)
			}
		})
	}
}

func words(b []byte) []uint32 {
	var w []uint32
	for i := 0; i+4 <= len(b); i += 4 {
		w = append(w, binary.NativeEndian.Uint32(b[i:]))
	}
	return w
}

// TestDecodeProcEventUnknown: an unknown type returns the header fields and
// an error matching ErrUnknownType, from real datagrams with their type
// replaced.
func TestDecodeProcEventUnknown(t *testing.T) {
	for _, c := range loadCaptured(t) {
		for _, what := range []uint32{0x8, 0x3, uint32(ProcEventNonzeroExit), 0x400, 0xffffffff} {
			b := bytes.Clone(c.raw[36:])
			binary.NativeEndian.PutUint32(b, what)
			got, err := DecodeProcEvent(b)
			if !errors.Is(err, ErrUnknownType) {
				t.Errorf("%s with what %#x: err = %v, want ErrUnknownType", c.name, what, err)
				continue
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.What != "proc_event" || fe.Offset != 0 {
				t.Errorf("%s with what %#x: err = %#v, want a *FormatError for proc_event at offset 0", c.name, what, err)
			}
			want := ProcEvent{What: What(what), CPU: binary.NativeEndian.Uint32(b[4:]), TimestampNS: binary.NativeEndian.Uint64(b[8:])}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s with what %#x (-want +got):\n%s", c.name, what, diff)
			}
		}
	}
}

// TestProcEventRoundTrip encodes events with every union field set, as the
// encoder's callers build them, and decodes them back.
func TestProcEventRoundTrip(t *testing.T) {
	var comm [16]byte
	copy(comm[:], "kworker/u8:1")
	events := []ProcEvent{
		{What: ProcEventNone, CPU: 1, TimestampNS: 2, Ack: AckEvent{Err: 1}},
		{What: ProcEventFork, CPU: 1, TimestampNS: 2, Fork: ForkEvent{3, 4, 5, 6}},
		{What: ProcEventExec, CPU: 1, TimestampNS: 2, Exec: ExecEvent{3, 4}},
		{What: ProcEventUID, CPU: 1, TimestampNS: 2, ID: IDEvent{3, 4, 5, 6}},
		{What: ProcEventGID, CPU: 1, TimestampNS: 2, ID: IDEvent{3, 4, 5, 6}},
		{What: ProcEventSID, CPU: 1, TimestampNS: 2, SID: SIDEvent{3, 4}},
		{What: ProcEventPtrace, CPU: 1, TimestampNS: 2, Ptrace: PtraceEvent{3, 4, 5, 6}},
		{What: ProcEventComm, CPU: 1, TimestampNS: 2, Comm: CommEvent{3, 4, comm}},
		{What: ProcEventCoredump, CPU: 1, TimestampNS: 2, Coredump: CoredumpEvent{3, 4, 5, 6}},
		{What: ProcEventExit, CPU: 1, TimestampNS: 2, Exit: ExitEvent{3, 4, 0x300, 17, 5, 6}},
	}
	for _, ev := range events {
		b := AppendProcEvent(nil, ev)
		if len(b) != ProcEventLen {
			t.Errorf("%v: AppendProcEvent wrote %d bytes, want %d", ev.What, len(b), ProcEventLen)
			continue
		}
		for i := 16 + unionUsed[ev.What]; i < ProcEventLen; i++ {
			if b[i] != 0 {
				t.Errorf("%v: unused union byte %d = %#x, want 0", ev.What, i, b[i])
			}
		}
		got, err := DecodeProcEvent(b)
		if err != nil {
			t.Errorf("%v: DecodeProcEvent: %v", ev.What, err)
			continue
		}
		if diff := cmp.Diff(ev, got); diff != "" {
			t.Errorf("%v (-want +got):\n%s", ev.What, diff)
		}
	}
}

func TestAppendProcInput(t *testing.T) {
	ne := binary.NativeEndian
	tests := []struct {
		op     ProcMcastOp
		mask   What
		legacy bool
		want   []byte
	}{
		{ProcMcastListen, ProcEventAll, false, ne.AppendUint32(ne.AppendUint32(nil, 1), 0xe00003c7)},
		{ProcMcastIgnore, ProcEventAll, false, ne.AppendUint32(ne.AppendUint32(nil, 2), 0xe00003c7)},
		{ProcMcastListen, ProcEventFork | ProcEventExit, false, ne.AppendUint32(ne.AppendUint32(nil, 1), 0x80000001)},
		{ProcMcastListen, ProcEventAll, true, ne.AppendUint32(nil, 1)},
		{ProcMcastIgnore, 0, true, ne.AppendUint32(nil, 2)},
	}
	for _, tt := range tests {
		got := AppendProcInput(nil, tt.op, tt.mask, tt.legacy)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("AppendProcInput(%d, %#x, legacy %v) (-want +got):\n%s", tt.op, uint32(tt.mask), tt.legacy, diff)
		}
		if n := len(got); (tt.legacy && n != 4) || (!tt.legacy && n != ProcInputLen) {
			t.Errorf("AppendProcInput(legacy %v) wrote %d bytes", tt.legacy, n)
		}
	}
}

// waitStatuses are wait statuses with the kernel's encoding written out
// (include/linux/wait.h, kernel/exit.c): exit status << 8 for an exit, the
// signal for a death by signal, | 0x80 when a core was dumped; 0x7f in the
// low bits is a stop.
var waitStatuses = []struct {
	name       string
	status     uint32
	exited     bool
	exitStatus int
	signaled   bool
	signal     int
	core       bool
}{
	{"exit 0", 0x0000, true, 0, false, 0, false},
	{"exit 1", 0x0100, true, 1, false, 0, false},
	{"exit 3", 0x0300, true, 3, false, 0, false},
	{"exit 255", 0xff00, true, 255, false, 0, false},
	{"SIGHUP", 0x0001, false, 0, true, 1, false},
	{"SIGKILL", 0x0009, false, 0, true, 9, false},
	{"SIGTERM", 0x000f, false, 0, true, 15, false},
	{"SIGQUIT core", 0x0083, false, 0, true, 3, true},
	{"SIGABRT core", 0x0086, false, 0, true, 6, true},
	{"SIGSEGV core", 0x008b, false, 0, true, 11, true},
	{"SIGRTMAX", 0x0040, false, 0, true, 64, false},
	{"signal 126", 0x007e, false, 0, true, 126, false},
	{"stopped SIGSTOP", 0x137f, false, 0, false, 0, false},
	{"stopped with core bit", 0x13ff, false, 0, false, 0, false},
	{"continued", 0xffff, false, 0, false, 0, false},
	{"exit with core bit", 0x0180, true, 1, false, 0, false},
	{"bits above 16", 0x10300, true, 3, false, 0, false},
}

func TestExitHelpers(t *testing.T) {
	type helpers struct {
		Exited     bool
		Status     int
		Signaled   bool
		Signal     int
		CoreDumped bool
	}
	for _, ws := range waitStatuses {
		e := ExitEvent{ExitCode: ws.status}
		want := helpers{Exited: ws.exited, Status: ws.exitStatus, Signaled: ws.signaled, Signal: ws.signal, CoreDumped: ws.core}
		got := helpers{Exited: e.Exited(), Signaled: e.Signaled(), CoreDumped: e.CoreDumped()}
		// Status and Signal are defined only when Exited and Signaled.
		if got.Exited {
			got.Status = e.Status()
		}
		if got.Signaled {
			got.Signal = e.Signal()
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (%#x) (-want +got):\n%s", ws.name, ws.status, diff)
		}
	}
}
