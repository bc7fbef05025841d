package schema

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The datagrams in testdata/datagrams were captured from a real kernel by
// testenv/cmd/capture (see testdata/datagrams/README.md). Each has a JSON
// sidecar holding what the capture program knew without decoding it: the
// pids it started, the ids it set, the wait status wait4 returned.

const datagramDir = "testdata/datagrams"

// sidecar mirrors the capture program's <name>.json. Fields uses the member
// names of struct proc_event (include/uapi/linux/cn_proc.h).
type sidecar struct {
	File       string            `json:"file"`
	Kind       string            `json:"kind"`
	Synthetic  bool              `json:"synthetic"`
	Action     string            `json:"action"`
	Kernel     string            `json:"kernel"`
	CPULimit   uint32            `json:"cpu_limit"`
	MonoBefore uint64            `json:"mono_before_ns"`
	MonoAfter  uint64            `json:"mono_after_ns"`
	Fields     map[string]uint32 `json:"fields"`
	Comm       string            `json:"comm"`
	Exit       *struct {
		Exited     bool `json:"exited"`
		Status     int  `json:"status"`
		Signaled   bool `json:"signaled"`
		Signal     int  `json:"signal"`
		CoreDumped bool `json:"core_dumped"`
	} `json:"exit"`
	Request *struct {
		ID     CbID   `json:"id"`
		Seq    uint32 `json:"seq"`
		Ack    uint32 `json:"ack"`
		Op     uint32 `json:"op"`
		Mask   uint32 `json:"mask"`
		Legacy bool   `json:"legacy"`
	} `json:"request"`
}

type captured struct {
	name string // file name without .bin
	raw  []byte
	sc   sidecar
}

// littleEndian reports whether this machine has the byte order of the
// captures (amd64).
func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

// loadCaptured reads every captured datagram and its sidecar. Missing files
// fail the test: the captures are part of the repository.
func loadCaptured(tb testing.TB) []captured {
	tb.Helper()
	if !littleEndian() {
		tb.Skip("the captured datagrams are little endian (amd64) and schema decodes in host byte order: they cannot be decoded on this big-endian machine")
	}
	files, err := filepath.Glob(filepath.Join(datagramDir, "*.bin"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Fatalf("no captured datagrams in %s: run go run ./testenv/cmd/capture as root", datagramDir)
	}
	var out []captured
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		js, err := os.ReadFile(strings.TrimSuffix(f, ".bin") + ".json")
		if err != nil {
			tb.Fatalf("sidecar of %s: %v", f, err)
		}
		var sc sidecar
		if err := json.Unmarshal(js, &sc); err != nil {
			tb.Fatalf("sidecar of %s: %v", f, err)
		}
		if sc.File != filepath.Base(f) {
			tb.Fatalf("sidecar of %s describes %q", f, sc.File)
		}
		out = append(out, captured{name: strings.TrimSuffix(filepath.Base(f), ".bin"), raw: raw, sc: sc})
	}
	return out
}

// field returns a sidecar field that must be present.
func (c captured) field(t *testing.T, name string) uint32 {
	t.Helper()
	v, ok := c.sc.Fields[name]
	if !ok {
		t.Fatalf("%s: sidecar has no field %q", c.name, name)
	}
	return v
}

// wantEvent builds the proc_event the capture program expects, from its
// sidecar. CPU and TimestampNS, which the capture program cannot know
// exactly, are taken from got and checked separately.
func (c captured) wantEvent(t *testing.T, got ProcEvent) ProcEvent {
	t.Helper()
	w, ok := ParseWhat(c.sc.Kind)
	if !ok {
		t.Fatalf("%s: sidecar kind %q is not an event kind", c.name, c.sc.Kind)
	}
	f := func(name string) uint32 { return c.field(t, name) }
	ev := ProcEvent{What: w, CPU: got.CPU, TimestampNS: got.TimestampNS}
	switch w {
	case ProcEventNone:
		ev.Ack = AckEvent{Err: f("err")}
	case ProcEventFork:
		ev.Fork = ForkEvent{ParentPID: f("parent_pid"), ParentTGID: f("parent_tgid"), ChildPID: f("child_pid"), ChildTGID: f("child_tgid")}
	case ProcEventExec:
		ev.Exec = ExecEvent{PID: f("process_pid"), TGID: f("process_tgid")}
	case ProcEventUID:
		ev.ID = IDEvent{PID: f("process_pid"), TGID: f("process_tgid"), Real: f("ruid"), Effective: f("euid")}
	case ProcEventGID:
		ev.ID = IDEvent{PID: f("process_pid"), TGID: f("process_tgid"), Real: f("rgid"), Effective: f("egid")}
	case ProcEventSID:
		ev.SID = SIDEvent{PID: f("process_pid"), TGID: f("process_tgid")}
	case ProcEventPtrace:
		ev.Ptrace = PtraceEvent{PID: f("process_pid"), TGID: f("process_tgid"), TracerPID: f("tracer_pid"), TracerTGID: f("tracer_tgid")}
	case ProcEventComm:
		ev.Comm = CommEvent{PID: f("process_pid"), TGID: f("process_tgid")}
		if len(c.sc.Comm) == 0 || len(c.sc.Comm) > 15 {
			t.Fatalf("%s: sidecar comm %q is not a task name", c.name, c.sc.Comm)
		}
		copy(ev.Comm.Comm[:], c.sc.Comm) // the kernel pads the name with NULs
	case ProcEventCoredump:
		ev.Coredump = CoredumpEvent{PID: f("process_pid"), TGID: f("process_tgid"), ParentPID: f("parent_pid"), ParentTGID: f("parent_tgid")}
	case ProcEventExit:
		ev.Exit = ExitEvent{PID: f("process_pid"), TGID: f("process_tgid"), ExitCode: f("exit_code"), ExitSignal: f("exit_signal"),
			ParentPID: f("parent_pid"), ParentTGID: f("parent_tgid")}
	default:
		t.Fatalf("%s: no expectations for kind %v", c.name, w)
	}
	return ev
}

// TestCapturedKinds checks that every event kind has a captured datagram,
// and that every one of them is real except where the sidecar says why not.
func TestCapturedKinds(t *testing.T) {
	have := map[string]bool{}
	for _, c := range loadCaptured(t) {
		prefix := strings.TrimPrefix(c.name, "synthetic-")
		if kind, _, _ := strings.Cut(prefix, "-"); kind != c.sc.Kind {
			t.Errorf("%s: file name says %q, sidecar says kind %q", c.name, kind, c.sc.Kind)
		}
		if c.sc.Synthetic != strings.HasPrefix(c.name, "synthetic-") {
			t.Errorf("%s: synthetic is %v: only files named synthetic-* may be made with the encoder", c.name, c.sc.Synthetic)
		}
		if !c.sc.Synthetic {
			have[c.sc.Kind] = true
		}
	}
	for _, k := range kernelKinds {
		if !have[k.name] {
			t.Errorf("no real captured datagram of kind %q (%#x)", k.name, uint32(k.w))
		}
	}
}

// TestCapturedDatagrams decodes every captured datagram fully and compares
// it with the kernel's framing rules and the capture program's sidecar.
func TestCapturedDatagrams(t *testing.T) {
	for _, c := range loadCaptured(t) {
		t.Run(c.name, func(t *testing.T) {
			// The kernel sends one 76-byte message per datagram: 16-byte
			// nlmsghdr, 20-byte cn_msg, 40-byte proc_event.
			if len(c.raw) != NetlinkHeaderLen+CnMsgLen+ProcEventLen {
				t.Fatalf("datagram of %d bytes, want %d", len(c.raw), NetlinkHeaderLen+CnMsgLen+ProcEventLen)
			}
			msgs, err := ParseNetlink(c.raw, nil)
			if err != nil {
				t.Fatalf("ParseNetlink: %v", err)
			}
			if len(msgs) != 1 {
				t.Fatalf("ParseNetlink: %d messages, want 1", len(msgs))
			}
			cn, err := DecodeCnMsg(msgs[0].Data)
			if err != nil {
				t.Fatalf("DecodeCnMsg: %v", err)
			}
			ev, err := DecodeProcEvent(cn.Data)
			if err != nil {
				t.Fatalf("DecodeProcEvent: %v", err)
			}

			// cn_netlink_send_mult: nlmsg_put(skb, 0, msg->seq, NLMSG_DONE, size, 0).
			wantHeader := NetlinkHeader{Len: uint32(len(c.raw)), Type: NLMsgDone, Flags: 0, Seq: cn.Seq, PortID: 0}
			if diff := cmp.Diff(wantHeader, msgs[0].Header); diff != "" {
				t.Errorf("netlink header (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.raw[NetlinkHeaderLen:], msgs[0].Data); diff != "" {
				t.Errorf("netlink payload (-want +got):\n%s", diff)
			}

			// Events carry ack 0; the ACK carries the request's ack + 1.
			wantCn := CnMsg{ID: CbID{Idx: 1, Val: 1}, Seq: cn.Seq, Ack: 0, Len: ProcEventLen, Flags: 0,
				Data: c.raw[NetlinkHeaderLen+CnMsgLen:]}
			if c.sc.Kind == "ack" {
				if c.sc.Request == nil {
					t.Fatal("the ACK's sidecar has no request")
				}
				wantCn.Ack = c.sc.Request.Ack + 1
			}
			if diff := cmp.Diff(wantCn, cn); diff != "" {
				t.Errorf("cn_msg (-want +got):\n%s", diff)
			}

			if diff := cmp.Diff(c.wantEvent(t, ev), ev); diff != "" {
				t.Errorf("proc_event (-want +got):\n%s", diff)
			}
			if ev.What.String() != c.sc.Kind {
				t.Errorf("What.String() = %q, want %q", ev.What.String(), c.sc.Kind)
			}
			if ev.CPU >= c.sc.CPULimit {
				t.Errorf("cpu %d, but the capturing machine's cpu ids are below %d", ev.CPU, c.sc.CPULimit)
			}
			if ev.TimestampNS < c.sc.MonoBefore || ev.TimestampNS > c.sc.MonoAfter {
				t.Errorf("timestamp_ns %d outside the CLOCK_MONOTONIC window [%d, %d] of the capture", ev.TimestampNS, c.sc.MonoBefore, c.sc.MonoAfter)
			}
			if ev.What == ProcEventComm && ev.Comm.Name() != c.sc.Comm {
				t.Errorf("Comm.Name() = %q, want %q", ev.Comm.Name(), c.sc.Comm)
			}
			if ev.What == ProcEventExit {
				checkExitIntent(t, c, ev.Exit)
			}
		})
	}
}

// checkExitIntent compares the exit helpers with how the capture program
// ended the process (confirmed by wait4).
func checkExitIntent(t *testing.T, c captured, e ExitEvent) {
	t.Helper()
	x := c.sc.Exit
	if x == nil {
		t.Fatal("exit sidecar without exit intent")
	}
	type helpers struct {
		Exited     bool
		Status     int
		Signaled   bool
		Signal     int
		CoreDumped bool
	}
	want := helpers{Exited: x.Exited, Status: x.Status, Signaled: x.Signaled, Signal: x.Signal, CoreDumped: x.CoreDumped}
	got := helpers{Exited: e.Exited(), Signaled: e.Signaled(), CoreDumped: e.CoreDumped()}
	if got.Exited {
		got.Status = e.Status()
	}
	if got.Signaled {
		got.Signal = e.Signal()
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("exit helpers (-want +got):\n%s", diff)
	}
}

// TestCapturedAckIsReply applies the reply rule to the real ACK and the
// LISTEN it answered: the kernel replaced the seq with its per-cpu counter,
// which the ProcID exception must tolerate.
func TestCapturedAckIsReply(t *testing.T) {
	var found bool
	for _, c := range loadCaptured(t) {
		if c.sc.Kind != "ack" {
			continue
		}
		found = true
		r := c.sc.Request
		if r == nil {
			t.Fatalf("%s: no request in the sidecar", c.name)
		}
		req := CnMsg{ID: r.ID, Seq: r.Seq, Ack: r.Ack, Data: AppendProcInput(nil, ProcMcastOp(r.Op), What(r.Mask), r.Legacy)}
		msgs, err := ParseNetlink(c.raw, nil)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: ParseNetlink: %d messages, %v", c.name, len(msgs), err)
		}
		got, err := DecodeCnMsg(msgs[0].Data)
		if err != nil {
			t.Fatalf("%s: DecodeCnMsg: %v", c.name, err)
		}
		if !IsReply(req, got) {
			t.Errorf("%s: IsReply(LISTEN seq %d ack %d, ACK seq %d ack %d) = false, want true", c.name, req.Seq, req.Ack, got.Seq, got.Ack)
		}
		other := req
		other.Ack++
		if IsReply(other, got) {
			t.Errorf("%s: the ACK also counts as the reply to a request with ack %d", c.name, other.Ack)
		}
	}
	if !found {
		t.Fatal("no captured ACK")
	}
}

// TestCapturedEncode checks that the encoders reproduce every captured
// datagram byte for byte from its decoded values: the kernel zeroes the
// union bytes an event type does not use, and so do the encoders.
func TestCapturedEncode(t *testing.T) {
	for _, c := range loadCaptured(t) {
		t.Run(c.name, func(t *testing.T) {
			msgs, err := ParseNetlink(c.raw, nil)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("ParseNetlink: %d messages, %v", len(msgs), err)
			}
			h := msgs[0].Header
			cn, err := DecodeCnMsg(msgs[0].Data)
			if err != nil {
				t.Fatalf("DecodeCnMsg: %v", err)
			}
			ev, err := DecodeProcEvent(cn.Data)
			if err != nil {
				t.Fatalf("DecodeProcEvent: %v", err)
			}
			evBytes := AppendProcEvent(nil, ev)
			for _, tc := range []struct {
				name      string
				got, want []byte
			}{
				{"AppendProcEvent", evBytes, c.raw[36:]},
				{"AppendCnMsg", AppendCnMsg(nil, CnMsg{ID: cn.ID, Seq: cn.Seq, Ack: cn.Ack, Flags: cn.Flags, Data: evBytes}), c.raw[16:]},
				{"AppendNetlinkHeader", AppendNetlinkHeader(nil, h), c.raw[:16]},
				{"AppendNetlinkMessage", AppendNetlinkMessage(nil, NetlinkHeader{Type: h.Type, Flags: h.Flags, Seq: h.Seq, PortID: h.PortID}, msgs[0].Data), c.raw},
				{"AppendDatagram", AppendDatagram(nil, h.PortID, CnMsg{ID: cn.ID, Seq: cn.Seq, Ack: cn.Ack, Flags: cn.Flags, Data: evBytes}), c.raw},
			} {
				if diff := cmp.Diff(tc.want, tc.got); diff != "" {
					t.Errorf("%s (-want +got):\n%s", tc.name, diff)
				}
			}

			// Appending keeps what the buffer held.
			prefix := []byte("prefix")
			got := AppendDatagram(bytes.Clone(prefix), 0, CnMsg{ID: cn.ID, Seq: cn.Seq, Ack: cn.Ack, Flags: cn.Flags, Data: evBytes})
			if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], c.raw) {
				t.Errorf("AppendDatagram to a non-empty buffer = %x, want %x followed by the datagram", got, prefix)
			}
			got = AppendProcEvent(bytes.Clone(prefix), ev)
			if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], c.raw[36:]) {
				t.Errorf("AppendProcEvent to a non-empty buffer = %x", got)
			}
		})
	}
}
