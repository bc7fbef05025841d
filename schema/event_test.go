package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/events")

// eventCmp compares events, times by instant.
var eventCmp = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

func ptr[T any](v T) *T { return &v }

var goldenHost = &Host{
	Hostname:  "web-1.example.net",
	MachineID: "4f6c1d2e8a9b4c7d9e0f1a2b3c4d5e6f",
	BootID:    "8c5d9f3a-1b2e-4c7d-9a0f-3e4b5c6d7e8f",
}

// goldenStream is a process event's place: CPU 3 of the proc connector.
func goldenStream(seq uint32) *Stream {
	return &Stream{Idx: ProcID.Idx, Val: ProcID.Val, CPU: 3, Epoch: 0, Seq: seq}
}

func goldenTime(ns int) time.Time { return time.Date(2026, 3, 14, 9, 26, 53, ns, time.UTC) }

type namedEvent struct {
	name string // file name without extension: the kind, or kind-variant
	e    Event
}

// goldenEvents are the events of testdata/events: one per kind named after
// it, and variants named <kind>-<variant>.
func goldenEvents() []namedEvent {
	run := "5f0c3a9e7b214d68"
	procEvent := func(k Kind, seq uint32, ns int, mono uint64) Event {
		return Event{Version: EventVersion, Kind: k, Time: goldenTime(ns), MonoNS: mono, Host: goldenHost, Stream: goldenStream(seq)}
	}
	record := func(k Kind, seq uint64, ns int) Event {
		return Event{Version: EventVersion, Kind: k, Time: goldenTime(ns), Host: goldenHost, Record: &Record{Run: run, Seq: seq}}
	}
	var out []namedEvent
	add := func(name string, e Event) { out = append(out, namedEvent{name, e}) }

	e := procEvent(KindFork, 48213, 589793238, 73115998412345)
	e.Fork = &ForkEvent{ParentPID: 1204, ParentTGID: 1204, ChildPID: 48100, ChildTGID: 48100}
	add("fork", e)

	e = procEvent(KindFork, 48214, 589801000, 73115998420107)
	e.Fork = &ForkEvent{ParentPID: 48100, ParentTGID: 48100, ChildPID: 48101, ChildTGID: 48100}
	add("fork-thread", e)

	// A fully enriched exec: read from /proc, in a Kubernetes pod, with its
	// parent chain; the command line shows how strings are escaped.
	e = procEvent(KindExec, 48215, 590112400, 73115998739569)
	e.Exec = &ExecEvent{PID: 48100, TGID: 48100}
	e.Process = &Process{
		PID: 48100, TGID: 48100, PPID: 1204, Source: "proc",
		Comm: "sh", Exe: "/usr/bin/dash",
		Cmdline: []string{"sh", "-c", `echo "<b>ok</b>" && printf 'a\tb\n' > /tmp/out`, "café", "line\u2028sep"},
		Cwd:     "/srv/app",
		UID:     ptr[uint32](1000), EUID: ptr[uint32](0), GID: ptr[uint32](1000), EGID: ptr[uint32](1000),
		User: "deploy", Group: "deploy",
		Cgroup: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f8e3c2a_5b6d_4e7f_8a9b_1c2d3e4f5a6b.slice/cri-containerd-3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a.scope",
		Container: &Container{
			ID:      "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a",
			Runtime: "containerd",
			PodUID:  "0f8e3c2a-5b6d-4e7f-8a9b-1c2d3e4f5a6b",
		},
		Ancestors: []Ancestor{
			{PID: 1204, Comm: "bash", Exe: "/usr/bin/bash"},
			{PID: 1180, Comm: "containerd-shim", Exe: "/usr/bin/containerd-shim-runc-v2"},
			{PID: 1},
		},
	}
	add("exec", e)

	e = procEvent(KindExit, 48230, 812000000, 73116220299831)
	e.Exit = NewExitInfo(ExitEvent{PID: 48100, TGID: 48100, ExitCode: 1 << 8, ExitSignal: 17, ParentPID: 1204, ParentTGID: 1204})
	e.Process = &Process{PID: 48100, TGID: 48100, PPID: 1204, Source: "table", Comm: "sh", Exe: "/usr/bin/dash", Cmdline: []string{"sh", "-c", "false"}}
	add("exit", e)

	// Killed by SIGSEGV, core dumped; the process was gone before it could
	// be read, so only the kernel's fields are known.
	e = procEvent(KindExit, 48231, 813250000, 73116221549831)
	e.Exit = NewExitInfo(ExitEvent{PID: 48102, TGID: 48102, ExitCode: 11 | 0x80, ExitSignal: 17, ParentPID: 1204, ParentTGID: 1204})
	e.Process = &Process{PID: 48102, TGID: 48102, Source: "gone"}
	add("exit-signal-core", e)

	e = procEvent(KindExit, 48232, 813300000, 73116221599831)
	e.Exit = NewExitInfo(ExitEvent{PID: 48101, TGID: 48100, ExitCode: 0, ExitSignal: 0xffffffff})
	add("exit-thread", e)

	e = procEvent(KindUID, 48216, 590200000, 73116000000001)
	e.UID = &IDEvent{PID: 48103, TGID: 48103, Real: 1000, Effective: 0}
	add("uid", e)

	e = procEvent(KindGID, 48217, 590300000, 73116000100001)
	e.GID = &IDEvent{PID: 48103, TGID: 48103, Real: 1000, Effective: 27}
	add("gid", e)

	e = procEvent(KindSID, 48218, 590400000, 73116000200001)
	e.SID = &SIDEvent{PID: 48104, TGID: 48104}
	add("sid", e)

	e = procEvent(KindPtrace, 48219, 590500000, 73116000300001)
	e.Ptrace = &PtraceEvent{PID: 48105, TGID: 48105, TracerPID: 48106, TracerTGID: 48106}
	add("ptrace", e)

	e = procEvent(KindPtrace, 48220, 590600000, 73116000400001)
	e.Ptrace = &PtraceEvent{PID: 48105, TGID: 48105}
	add("ptrace-detach", e)

	e = procEvent(KindComm, 48221, 590700000, 73116000500001)
	e.Comm = &CommInfo{PID: 48107, TGID: 48100, Comm: "worker<1>"}
	add("comm", e)

	e = procEvent(KindCoredump, 48222, 813000000, 73116221299831)
	e.Coredump = &CoredumpEvent{PID: 48102, TGID: 48102, ParentPID: 1204, ParentTGID: 1204}
	add("coredump", e)

	e = procEvent(KindAck, 0, 0, 73115000000000)
	e.Stream.CPU = 0
	e.Stream.Ack = 1
	e.Ack = &AckInfo{Err: 0}
	add("ack", e)

	// A message of another connector id, from a userspace sender.
	e = Event{Version: EventVersion, Kind: KindRaw, Time: goldenTime(591000000), Host: goldenHost,
		Stream: &Stream{Idx: 11, Val: 77, Sender: 4242, Epoch: 1, Seq: 9, Ack: 0}}
	e.Raw = &RawInfo{Group: 11, Payload: []byte("hello\x00\x01\x02\xff connector")}
	add("raw", e)

	e = record(KindGap, 17, 592000000)
	e.Stream = goldenStream(48240)
	e.Gap = &GapInfo{Expected: 48223, Got: 48240, Missing: 17}
	add("gap", e)

	// cnstream restarted on the same boot: the previous run spooled 48300
	// of CPU 3 last, and the first event this run read was 48342.
	e = record(KindGap, 25, 600000000)
	e.Stream = goldenStream(48342)
	e.Gap = &GapInfo{Expected: 48301, Got: 48342, Missing: 41, Reason: GapRestart}
	add("gap-restart", e)

	e = record(KindOverrun, 18, 593000000)
	e.Overrun = &OverrunInfo{KernelDrops: 1532, ENOBUFS: 2}
	add("overrun", e)

	e = record(KindMalformed, 19, 594000000)
	e.Malformed = &MalformedInfo{Sender: 0, Error: "schema: proc_event at offset 0: short buffer: 24 bytes, need 40",
		Data: []byte{0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x39, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb4, 0x04, 0x00, 0x00, 0xb4, 0x04, 0x00, 0x00}}
	add("malformed", e)

	e = record(KindForged, 20, 595000000)
	e.Forged = &ForgedInfo{Count: 3}
	add("forged", e)

	e = record(KindDropped, 21, 596000000)
	e.Dropped = &DroppedInfo{Count: 250, Reason: "sink_failed", Sink: "kafka"}
	add("dropped", e)

	e = record(KindDropped, 22, 597000000)
	e.Dropped = &DroppedInfo{Count: 4096, Reason: "queue_full_drop_oldest", Sink: "files"}
	add("dropped-queue", e)

	// A uid filter removed 40 process events of CPU 3 in one batch.
	e = record(KindFiltered, 23, 598000000)
	e.Stream = goldenStream(48290)
	e.Filtered = &FilteredInfo{Count: 40, First: 48241, Last: 48290, Kinds: map[string]uint64{"exec": 12, "exit": 14, "fork": 14}}
	add("filtered", e)

	// A userspace sender fell silent; its stream was closed after the idle
	// timeout. The epoch is the one the stream had (a millisecond count).
	e = record(KindClosed, 24, 599000000)
	e.Stream = &Stream{Idx: 11, Val: 77, Sender: 4242, Epoch: 73115991, Seq: 311}
	e.Closed = &ClosedInfo{Reason: "idle", First: 0, Last: 311}
	add("stream_closed", e)

	// The spool found 4096 bytes that failed their checksum.
	e = record(KindCorrupt, 26, 601000000)
	e.Corrupt = &CorruptInfo{File: "/var/lib/cnstream/spool/00000000000000000042.seg", Offset: 1048576, Bytes: 4096, Reason: "crc mismatch"}
	add("corrupt", e)

	// An exec whose command line held secrets: transform/redact replaced
	// them, and redacted counts the arguments it changed.
	e = procEvent(KindExec, 48222, 602000000, 73116000600001)
	e.Exec = &ExecEvent{PID: 48110, TGID: 48110}
	e.Process = &Process{
		PID: 48110, TGID: 48110, PPID: 1204, Source: "proc",
		Comm: "mysql", Exe: "/usr/bin/mariadb",
		Cmdline:  []string{"mysql", "-uroot", "-p[redacted]", "--host=db", "mysql://app:[redacted]@db/prod"},
		Redacted: 2,
		UID:      ptr[uint32](1000), EUID: ptr[uint32](1000),
	}
	add("exec-redacted", e)

	// An exec in an unprivileged user namespace of its own (unshare -U -m
	// -n) by a user logged in over ssh (auid, session): the user, mnt and
	// net namespaces differ from pid 1's; root in its namespace, so its
	// effective set is full; no_new_privs read and off.
	e = procEvent(KindExec, 48230, 603000000, 73116000700001)
	e.Exec = &ExecEvent{PID: 48120, TGID: 48120}
	e.Process = &Process{
		PID: 48120, TGID: 48120, PPID: 48119, Source: "proc",
		Comm: "bash", Exe: "/usr/bin/bash", Cmdline: []string{"bash"},
		UID: ptr[uint32](0), EUID: ptr[uint32](0),
		Login:     &Login{AUID: ptr[uint32](1000), SessionID: ptr[uint32](7)},
		CapEffHex: "000001ffffffffff", CapFull: true, NoNewPrivs: ptr(false),
		NS: &Namespaces{PID: 4026531836, Mnt: 4026532301, Net: 4026532304, User: 4026532300,
			UTS: 4026531838, IPC: 4026531839, Cgroup: 4026531835, Differs: []string{"mnt", "net", "user"}},
	}
	add("exec-namespaces", e)

	// A daemon outside any login session (loginuid and sessionid unset: an
	// empty login), with two capabilities kept and no_new_privs set.
	e = procEvent(KindExec, 48231, 604000000, 73116000800001)
	e.Exec = &ExecEvent{PID: 48130, TGID: 48130}
	e.Process = &Process{
		PID: 48130, TGID: 48130, PPID: 1, Source: "proc",
		Comm: "chronyd", Exe: "/usr/sbin/chronyd", Cmdline: []string{"/usr/sbin/chronyd", "-F", "2"},
		UID: ptr[uint32](998), EUID: ptr[uint32](998),
		Login:     &Login{},
		CapEffHex: "0000000002000400", CapEff: []string{"CAP_NET_BIND_SERVICE", "CAP_SYS_TIME"}, NoNewPrivs: ptr(true),
		NS: &Namespaces{PID: 4026531836, Mnt: 4026531841, Net: 4026531840, User: 4026531837,
			UTS: 4026531838, IPC: 4026531839, Cgroup: 4026531835},
	}
	add("exec-credentials", e)

	// Exec ids: bash (pid 1204, in an ssh session) forks 48140, which
	// execs curl, which exits. The fork's child gets an id of its own
	// with the bash image's as parent_exec_id; the exec a new one, with
	// the child's fork image as prev_exec_id; the exit carries the curl
	// image's, so exec and exit join on exec_id. The start time is the
	// fork's, in ns (no suspend on this host: CLOCK_BOOTTIME =
	// CLOCK_MONOTONIC), and the exec keeps it.
	const (
		bashExecID = "Hk2cQ8vNw1fXoR4tLm7ZbA"
		forkExecID = "Vd8sR1aYp0cKx6JtWn3FgQ"
		curlExecID = "q3Jb0hV7Zc1mTn2kP9xY4w"
		forkMono   = 73116000900001
	)
	forkStart := goldenTime(605000000)
	bashAncestors := func() []Ancestor {
		return []Ancestor{
			{PID: 1204, ExecID: bashExecID, Comm: "bash", Exe: "/usr/bin/bash"},
			{PID: 1187, ExecID: "T0mW5eXk2LqB9uZr7NcJ3g", Comm: "sshd", Exe: "/usr/sbin/sshd"},
			{PID: 1, ExecID: "bF6yD1oP8sVa4HnQ0wKi5A", Comm: "systemd", Exe: "/usr/lib/systemd/systemd"},
		}
	}
	e = procEvent(KindFork, 48250, 605000000, forkMono)
	e.Fork = &ForkEvent{ParentPID: 1204, ParentTGID: 1204, ChildPID: 48140, ChildTGID: 48140}
	e.Process = &Process{
		PID: 48140, TGID: 48140, PPID: 1204, Source: "table",
		ExecID: forkExecID, ParentExecID: bashExecID, StartTime: forkStart, StartBootNS: forkMono,
		Comm: "bash", Exe: "/usr/bin/bash", Cmdline: []string{"-bash"},
		UID: ptr[uint32](1000), EUID: ptr[uint32](1000), GID: ptr[uint32](1000), EGID: ptr[uint32](1000),
		Ancestors: bashAncestors(),
	}
	add("fork-exec-ids", e)

	curl := func() *Process {
		return &Process{
			PID: 48140, TGID: 48140, PPID: 1204, Source: "proc",
			ExecID: curlExecID, ParentExecID: bashExecID, PrevExecID: forkExecID,
			StartTime: forkStart, StartBootNS: forkMono,
			Comm: "curl", Exe: "/usr/bin/curl", Cmdline: []string{"curl", "-fsS", "https://example.net/health"},
			UID: ptr[uint32](1000), EUID: ptr[uint32](1000), GID: ptr[uint32](1000), EGID: ptr[uint32](1000),
		}
	}
	e = procEvent(KindExec, 48251, 611200000, forkMono+6200000)
	e.Exec = &ExecEvent{PID: 48140, TGID: 48140}
	e.Process = curl()
	add("exec-exec-ids", e)

	e = procEvent(KindExit, 48252, 873400000, forkMono+268400000)
	e.Exit = NewExitInfo(ExitEvent{PID: 48140, TGID: 48140, ExitCode: 0, ExitSignal: 17, ParentPID: 1204, ParentTGID: 1204})
	e.Process = curl()
	e.Process.Source = "table"
	add("exit-exec-ids", e)

	for i := range out {
		out[i].e.ID = out[i].e.EventID()
	}
	return out
}

func goldenPath(name, ext string) string { return filepath.Join("testdata", "events", name+ext) }

// TestEventGolden compares the encodings of the golden events with
// testdata/events; -update rewrites them.
func TestEventGolden(t *testing.T) {
	events := goldenEvents()
	seen := map[string]bool{}
	for _, g := range events {
		seen[g.name] = true
		t.Run(g.name, func(t *testing.T) {
			js := append(AppendJSON(nil, &g.e), '\n')
			mp := AppendMsgpack(nil, &g.e)
			for _, f := range []struct {
				ext  string
				data []byte
			}{{".json", js}, {".msgpack", mp}} {
				path := goldenPath(g.name, f.ext)
				if *update {
					if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, f.data, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./schema -run Golden -update)", err)
				}
				if !bytes.Equal(want, f.data) {
					t.Errorf("%s differs from the encoding:\nwant %q\ngot  %q", path, want, f.data)
				}
			}

			// The files decode to the event.
			if got, err := DecodeJSON(bytes.TrimSuffix(js, []byte("\n"))); err != nil {
				t.Errorf("DecodeJSON: %v", err)
			} else if diff := cmp.Diff(g.e, got, eventCmp); diff != "" {
				t.Errorf("DecodeJSON (-want +got):\n%s", diff)
			}
			if got, err := DecodeMsgpack(mp); err != nil {
				t.Errorf("DecodeMsgpack: %v", err)
			} else if diff := cmp.Diff(g.e, got, eventCmp); diff != "" {
				t.Errorf("DecodeMsgpack (-want +got):\n%s", diff)
			}
		})
	}
	for _, k := range Kinds() {
		if !seen[k.String()] {
			t.Errorf("no golden event named %q", k)
		}
	}
	// No stale files.
	files, _ := filepath.Glob(filepath.Join("testdata", "events", "*"))
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(f), ".json"), ".msgpack")
		if !seen[name] {
			t.Errorf("%s belongs to no golden event", f)
		}
	}
}

// marshalStd is what AppendJSON must write: encoding/json's Marshal of e
// with the id derived and the times (the event's, its process's start) in
// UTC.
func marshalStd(e *Event) ([]byte, error) {
	c := *e
	c.ID = e.EventID()
	c.Time = e.Time.UTC()
	if e.Process != nil {
		p := *e.Process
		p.StartTime = p.StartTime.UTC()
		c.Process = &p
	}
	return json.Marshal(&c)
}

// rfc3339Year reports whether t has an RFC 3339 form in UTC (encoding/json
// refuses the others).
func rfc3339Year(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

// checkJSONStd fails unless AppendJSON(e) equals marshalStd(e), appended
// after prefix to check that AppendJSON appends.
func checkJSONStd(t *testing.T, e *Event) {
	t.Helper()
	prefix := []byte("prefix")
	got := AppendJSON(bytes.Clone(prefix), e)
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("AppendJSON overwrote the buffer: %q", got)
	}
	got = got[len(prefix):]
	want, err := marshalStd(e)
	if err != nil {
		// Only a time outside years 0..9999 makes json.Marshal fail.
		if rfc3339Year(e.Time) && (e.Process == nil || rfc3339Year(e.Process.StartTime)) {
			t.Fatalf("json.Marshal: %v", err)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON differs from json.Marshal:\nwant %s\ngot  %s", want, got)
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, g := range goldenEvents() {
		t.Run(g.name, func(t *testing.T) {
			checkJSONStd(t, &g.e)
			e := g.e
			e.ID = "" // derived
			checkJSONStd(t, &e)
		})
	}
	t.Run("random", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for i := range 2000 {
			src := &eventSource{r: r, strs: trickyStrings, data: []byte("\x00\xff binary")}
			e := genEvent(src, Kinds()[i%len(Kinds())])
			if i%3 == 0 {
				wildEvent(src, &e)
			}
			checkJSONStd(t, &e)
		}
	})
}

// trickyStrings exercise every escaping rule of encoding/json.
var trickyStrings = []string{
	"", "plain", `quote " and \ backslash`, "<script>&amp;</script>",
	"ctl \x00\x01\x07\x08\x0c\x0b\x1f\x7f", "\t\n\r", "é ü 日本 🎉",
	"\u2028\u2029", "bad \xff utf8 \xc3", "\xe2\x80", "\xed\xa0\x80 surrogate",
	"\xf4\x90\x80\x80 too big", "a/b", strings.Repeat("long<", 40),
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range trickyStrings {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("string %q: got %s, want %s", s, got, want)
		}
		if got := appendJSONString(nil, []byte(s)); !bytes.Equal(got, want) {
			t.Errorf("[]byte %q: got %s, want %s", s, got, want)
		}
	}
	// Every single byte and every pair of bytes.
	for i := range 256 {
		for j := range 257 {
			s := string([]byte{byte(i), byte(j)})
			if j == 256 {
				s = s[:1]
			}
			want, _ := json.Marshal(s)
			if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
				t.Fatalf("%q: got %s, want %s", s, got, want)
			}
		}
	}
}

// TestEventIDEscaped: a derived id holding characters to escape is written
// as encoding/json writes the id string, in both encodings.
func TestEventIDEscaped(t *testing.T) {
	for _, boot := range []string{`"<&>"`, "\xff", strings.Repeat("\\", 300), strings.Repeat("x", 70000)} {
		e := goldenEvents()[0].e
		e.ID = ""
		e.Host = &Host{BootID: boot}
		checkJSONStd(t, &e)
		e.Record = &Record{Run: "r\"un", Seq: 1}
		checkJSONStd(t, &e)

		got, err := DecodeMsgpack(AppendMsgpack(nil, &e))
		if err != nil {
			t.Fatal(err)
		}
		if want := e.EventID(); got.ID != want {
			t.Errorf("msgpack id %q, want %q", got.ID, want)
		}
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var events []namedEvent
	events = append(events, goldenEvents()...)
	for i := range 1000 {
		src := &eventSource{r: r, strs: validStrings, data: []byte("\x00\x01payload"), valid: true}
		events = append(events, namedEvent{"random", genEvent(src, Kinds()[i%len(Kinds())])})
	}
	for _, g := range events {
		want := g.e
		want.ID = want.EventID()
		got, err := DecodeJSON(AppendJSON(nil, &g.e))
		if err != nil {
			t.Fatalf("%s: DecodeJSON: %v", g.name, err)
		}
		if diff := cmp.Diff(want, got, eventCmp); diff != "" {
			t.Fatalf("%s: DecodeJSON(AppendJSON(e)) (-want +got):\n%s", g.name, diff)
		}
		got, err = DecodeMsgpack(AppendMsgpack(nil, &g.e))
		if err != nil {
			t.Fatalf("%s: DecodeMsgpack: %v", g.name, err)
		}
		if diff := cmp.Diff(want, got, eventCmp); diff != "" {
			t.Fatalf("%s: DecodeMsgpack(AppendMsgpack(e)) (-want +got):\n%s", g.name, diff)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	exec := goldenEvents()[2].e
	if exec.Kind != KindExec {
		t.Fatal("golden event 2 is not the exec event")
	}
	withV := func(v int) Event { e := exec; e.Version = v; return e }
	noMember := exec
	noMember.Exec = nil
	unknownKind := exec
	unknownKind.Kind = Kind(200)

	// A version 2 event whose fields no longer decode into version 1's.
	v2JSON := []byte(`{"v":2,"id":"x","kind":"spawn","time":"2026-03-14T09:26:53Z","host":{"hostname":1}}`)
	v2Msgpack := []byte{0x83, 0xa1, 'v', 0x02, 0xa4, 'k', 'i', 'n', 'd', 0xa5, 's', 'p', 'a', 'w', 'n', 0xa4, 'h', 'o', 's', 't', 0x01}

	for _, tt := range []struct {
		name    string
		e       *Event
		json    []byte
		msgpack []byte
		want    string // in the error
		version bool   // matches ErrEventVersion
	}{
		{name: "v2", e: ptr(withV(2)), want: "event version 2 is newer than version 1", version: true},
		{name: "v2 other types", json: v2JSON, msgpack: v2Msgpack, want: "event version 2 is newer", version: true},
		{name: "v0", e: ptr(withV(0)), want: "without version", version: true},
		{name: "v negative", e: ptr(withV(-3)), want: "version -3", version: true},
		{name: "no member", e: &noMember, want: `exec event without its "exec" member`},
		{name: "unknown kind", e: &unknownKind, want: "unknown event kind"},
		{name: "no kind", json: []byte(`{"v":1,"exec":{"pid":1,"tgid":1}}`), msgpack: []byte{0x81, 0xa1, 'v', 0x01}, want: "without kind"},
		{name: "not an object", json: []byte(`[1]`), msgpack: []byte{0x91, 0x01}, want: "schema:"},
		{name: "not a map", msgpack: []byte{0x91, 0x01}, want: "not a map"},
		{name: "empty", json: []byte{}, msgpack: []byte{}, want: "schema:"},
		{name: "truncated", json: AppendJSON(nil, &exec)[:50], msgpack: AppendMsgpack(nil, &exec)[:50], want: "schema:"},
		{name: "trailing data", json: append(AppendJSON(nil, &exec), '{'), msgpack: append(AppendMsgpack(nil, &exec), 0xc0), want: "after"},
		{name: "deep", msgpack: bytes.Repeat([]byte{0x91}, 20000), want: "deep"},
		{name: "huge length", msgpack: []byte{0x81, 0xa1, 'v', 0xdd, 0xff, 0xff, 0xff, 0xff}, want: "truncated"},
		{name: "bad code", msgpack: []byte{0x81, 0xa1, 'v', 0xc1}, want: "invalid code"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			js, mp := tt.json, tt.msgpack
			if tt.e != nil {
				js, mp = AppendJSON(nil, tt.e), AppendMsgpack(nil, tt.e)
			}
			for _, c := range []struct {
				enc    string
				in     []byte
				decode func([]byte) (Event, error)
			}{{"json", js, DecodeJSON}, {"msgpack", mp, DecodeMsgpack}} {
				if c.in == nil {
					continue
				}
				_, err := c.decode(c.in)
				if err == nil {
					t.Errorf("%s: no error", c.enc)
					continue
				}
				t.Logf("%s: %v", c.enc, err)
				if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "schema: ") {
					t.Errorf("%s: error %q, want it to contain %q", c.enc, err, tt.want)
				}
				if got := errors.Is(err, ErrEventVersion); got != tt.version {
					t.Errorf("%s: errors.Is(%v, ErrEventVersion) = %v, want %v", c.enc, err, got, tt.version)
				}
			}
		})
	}
}

// TestDecodeIgnoresUnknownFields: the compatibility rule's reader side.
func TestDecodeIgnoresUnknownFields(t *testing.T) {
	g := goldenEvents()[0].e
	js := AppendJSON(nil, &g)
	js = append(js[:len(js)-1], `,"future":{"a":[1,2,{"b":null}]},"fork2":"x"}`...)
	got, err := DecodeJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g, got, eventCmp); diff != "" {
		t.Errorf("DecodeJSON (-want +got):\n%s", diff)
	}

	mp := AppendMsgpack(nil, &g)
	mp[0]++ // one more key in the fixmap
	mp = append(mp, 0xa6, 'f', 'u', 't', 'u', 'r', 'e', 0x92, 0x01, 0x81, 0xa1, 'b', 0xc0)
	got, err = DecodeMsgpack(mp)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(g, got, eventCmp); diff != "" {
		t.Errorf("DecodeMsgpack (-want +got):\n%s", diff)
	}
}

// TestAppendMsgpackForms checks the smallest forms against the MessagePack
// specification's byte layouts.
func TestAppendMsgpackForms(t *testing.T) {
	for _, tt := range []struct {
		got, want []byte
	}{
		{mpUint(nil, 0), []byte{0x00}},
		{mpUint(nil, 127), []byte{0x7f}},
		{mpUint(nil, 128), []byte{0xcc, 0x80}},
		{mpUint(nil, 255), []byte{0xcc, 0xff}},
		{mpUint(nil, 256), []byte{0xcd, 0x01, 0x00}},
		{mpUint(nil, 65536), []byte{0xce, 0x00, 0x01, 0x00, 0x00}},
		{mpUint(nil, 1<<32), []byte{0xcf, 0, 0, 0, 1, 0, 0, 0, 0}},
		{mpInt(nil, -1), []byte{0xff}},
		{mpInt(nil, -32), []byte{0xe0}},
		{mpInt(nil, -33), []byte{0xd0, 0xdf}},
		{mpInt(nil, -129), []byte{0xd1, 0xff, 0x7f}},
		{mpInt(nil, -32769), []byte{0xd2, 0xff, 0xff, 0x7f, 0xff}},
		{mpInt(nil, -1<<31-1), []byte{0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff}},
		{mpInt(nil, 200), []byte{0xcc, 200}},
		{mpStr(nil, "abc"), []byte{0xa3, 'a', 'b', 'c'}},
		{mpStr(nil, strings.Repeat("x", 32))[:2], []byte{0xd9, 32}},
		{mpStr(nil, strings.Repeat("x", 256))[:3], []byte{0xda, 1, 0}},
		{mpStr(nil, strings.Repeat("x", 65536))[:5], []byte{0xdb, 0, 1, 0, 0}},
		{mpBin(nil, nil), []byte{0xc0}},
		{mpBin(nil, []byte{}), []byte{0xc4, 0}},
		{mpBin(nil, make([]byte, 256))[:3], []byte{0xc5, 1, 0}},
		{mpBin(nil, make([]byte, 65536))[:5], []byte{0xc6, 0, 1, 0, 0}},
		{mpMap(nil, 15), []byte{0x8f}},
		{mpMap(nil, 16), []byte{0xde, 0, 16}},
		{mpArray(nil, 15), []byte{0x9f}},
		{mpArray(nil, 16), []byte{0xdc, 0, 16}},
		{mpTime(nil, time.Unix(1, 0)), []byte{0xd6, 0xff, 0, 0, 0, 1}},
		{mpTime(nil, time.Unix(1, 1)), []byte{0xd7, 0xff, 0, 0, 0, 0x04, 0, 0, 0, 1}},
		{mpTime(nil, time.Unix(1<<34, 0)), []byte{0xc7, 12, 0xff, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0}},
		{mpTime(nil, time.Unix(-1, 5)), []byte{0xc7, 12, 0xff, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	} {
		if !bytes.Equal(tt.got, tt.want) {
			t.Errorf("got % x, want % x", tt.got, tt.want)
		}
	}
}

// TestAppendMsgpackMaps: events with many members and processes with every
// field take map 16 headers where they need them and still decode.
func TestAppendMsgpackMaps(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	src := &eventSource{r: r, strs: validStrings, data: []byte{1}, valid: true}
	e := genEvent(src, KindFork)
	for _, k := range Kinds() {
		m := genEvent(src, k)
		setMember(&e, &m, k)
	}
	e.Process = fullProcess(src)
	b := AppendMsgpack(nil, &e)
	if b[0] != 0xde {
		t.Fatalf("event with every member starts with %#x, want map 16", b[0])
	}
	if err := checkMsgpack(b, maxMsgpackDepth); err != nil {
		t.Fatal(err)
	}
	var got Event
	if err := decodeMsgpack(b, &got); err != nil {
		t.Fatal(err)
	}
	want := e
	want.ID = e.EventID()
	if diff := cmp.Diff(want, got, eventCmp); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestAppendZeroAlloc: both encoders allocate nothing with a reused buffer.
func TestAppendZeroAlloc(t *testing.T) {
	for _, g := range goldenEvents() {
		e := g.e
		e.ID = "" // the derived id is built in place, too
		buf := make([]byte, 0, 4096)
		if n := testing.AllocsPerRun(100, func() { buf = AppendJSON(buf[:0], &e) }); n != 0 {
			t.Errorf("%s: AppendJSON: %v allocations", g.name, n)
		}
		if n := testing.AllocsPerRun(100, func() { buf = AppendMsgpack(buf[:0], &e) }); n != 0 {
			t.Errorf("%s: AppendMsgpack: %v allocations", g.name, n)
		}
	}
}

// ---- random events ----

// eventSource draws the parts of random events: numbers from r, strings
// from strs (and their pieces), bytes from data.
type eventSource struct {
	r     *rand.Rand
	strs  []string
	data  []byte
	valid bool // cut strings into pieces only at rune boundaries
}

var validStrings = []string{"", "sh", "/usr/bin/python3", "日本", `q"uote`, "<tag>&", "tab\there", "\u2028", "x"}

func (s *eventSource) str() string {
	if len(s.strs) == 0 {
		return ""
	}
	v := s.strs[s.r.IntN(len(s.strs))]
	if len(v) > 1 && s.r.IntN(4) == 0 { // a piece, which may cut a rune
		if i := s.r.IntN(len(v)); !s.valid || utf8.ValidString(v[i:]) {
			v = v[i:]
		}
	}
	return v
}

// nonEmpty returns a non-empty string.
func (s *eventSource) nonEmpty() string {
	if v := s.str(); v != "" {
		return v
	}
	return "n"
}

// word is a string without '/', for boot ids and runs (the id's separator).
func (s *eventSource) word() string {
	return strings.ReplaceAll(s.str(), "/", "_")
}

func (s *eventSource) bin() []byte {
	switch s.r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []byte{}
	}
	if len(s.data) == 0 {
		return []byte{}
	}
	i := s.r.IntN(len(s.data))
	return bytes.Clone(s.data[i:])
}

// u32 favours the edges of the range and small values.
func (s *eventSource) u32() uint32 {
	switch s.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return 1<<32 - 1
	case 2:
		return uint32(s.r.IntN(128))
	}
	return s.r.Uint32()
}

func (s *eventSource) u64() uint64 {
	switch s.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return 1<<64 - 1
	case 2:
		return uint64(s.r.IntN(300))
	}
	return s.r.Uint64() >> s.r.IntN(64)
}

// time returns a UTC time in years 0..9999: mostly recent, sometimes whole
// seconds (timestamp 32) or far away (timestamp 96).
func (s *eventSource) time() time.Time {
	const minSec, maxSec = -62167219200, 253402300799 // 0000-01-01, 9999-12-31T23:59:59
	var sec int64
	switch s.r.IntN(4) {
	case 0:
		sec = minSec + s.r.Int64N(maxSec-minSec+1)
	default:
		sec = 1_700_000_000 + s.r.Int64N(100_000_000)
	}
	nsec := int64(0)
	if s.r.IntN(3) > 0 {
		nsec = s.r.Int64N(1e9)
	}
	return time.Unix(sec, nsec).UTC()
}

// execID returns "" (absent) half the time, else an exec id: 22
// characters of base64url, as the enricher makes them.
func (s *eventSource) execID() string {
	if s.r.IntN(2) == 0 {
		return ""
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var b [22]byte
	for i := range b {
		b[i] = alphabet[s.r.IntN(len(alphabet))]
	}
	return string(b[:])
}

// startTime returns the zero time (absent) half the time, else a time as
// time does.
func (s *eventSource) startTime() time.Time {
	if s.r.IntN(2) == 0 {
		return time.Time{}
	}
	return s.time()
}

// optU64 is 0 (absent) half the time.
func (s *eventSource) optU64() uint64 {
	if s.r.IntN(2) == 0 {
		return 0
	}
	return s.u64()
}

func (s *eventSource) optU32() *uint32 {
	if s.r.IntN(2) == 0 {
		return nil
	}
	return ptr(s.u32())
}

// optRedacted is 0 (absent) half the time.
func (s *eventSource) optRedacted() uint32 {
	if s.r.IntN(2) == 0 {
		return 0
	}
	return s.u32()
}

func (s *eventSource) strings() []string {
	n := s.r.IntN(5)
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = s.str()
	}
	return out
}

// genEvent returns a valid version 1 event of kind k: the member k names,
// a stream for connector messages, a record for the pipeline's records,
// sometimes a process.
func genEvent(s *eventSource, k Kind) Event {
	e := Event{Version: EventVersion, Kind: k, Time: s.time(), MonoNS: s.u64(),
		Host: &Host{Hostname: s.str(), MachineID: s.str(), BootID: s.word()}}
	if s.r.IntN(4) == 0 {
		e.ID = s.nonEmpty()
	}
	stream := func() *Stream {
		st := &Stream{Idx: s.u32(), Val: s.u32(), CPU: s.u32(), Sender: s.u32(), Epoch: s.u32(), Seq: s.u32(), Ack: s.u32()}
		if s.r.IntN(2) == 0 {
			st.Idx, st.Val, st.Sender = ProcID.Idx, ProcID.Val, 0
		}
		return st
	}
	if k.IsLoss() {
		e.Record = &Record{Run: s.word(), Seq: s.u64()}
		if k == KindGap || k == KindFiltered || k == KindClosed || k != KindCorrupt && s.r.IntN(4) == 0 {
			e.Stream = stream()
		}
	} else {
		e.Stream = stream()
	}
	switch k {
	case KindFork:
		e.Fork = &ForkEvent{ParentPID: s.u32(), ParentTGID: s.u32(), ChildPID: s.u32(), ChildTGID: s.u32()}
	case KindExec:
		e.Exec = &ExecEvent{PID: s.u32(), TGID: s.u32()}
	case KindExit:
		e.Exit = NewExitInfo(ExitEvent{PID: s.u32(), TGID: s.u32(), ExitCode: s.u32() & 0xffff, ExitSignal: s.u32(), ParentPID: s.u32(), ParentTGID: s.u32()})
	case KindUID:
		e.UID = &IDEvent{PID: s.u32(), TGID: s.u32(), Real: s.u32(), Effective: s.u32()}
	case KindGID:
		e.GID = &IDEvent{PID: s.u32(), TGID: s.u32(), Real: s.u32(), Effective: s.u32()}
	case KindSID:
		e.SID = &SIDEvent{PID: s.u32(), TGID: s.u32()}
	case KindPtrace:
		e.Ptrace = &PtraceEvent{PID: s.u32(), TGID: s.u32(), TracerPID: s.u32(), TracerTGID: s.u32()}
	case KindComm:
		e.Comm = &CommInfo{PID: s.u32(), TGID: s.u32(), Comm: s.str()}
	case KindCoredump:
		e.Coredump = &CoredumpEvent{PID: s.u32(), TGID: s.u32(), ParentPID: s.u32(), ParentTGID: s.u32()}
	case KindAck:
		e.Ack = &AckInfo{Err: s.u32()}
	case KindRaw:
		e.Raw = &RawInfo{Group: s.u32(), Payload: s.bin()}
	case KindGap:
		e.Gap = &GapInfo{Expected: s.u32(), Got: s.u32(), Missing: s.u64()}
		if s.r.IntN(2) == 0 {
			e.Gap.Reason = [...]string{GapRestart, GapSpoolCorrupt, s.str()}[s.r.IntN(3)]
		}
	case KindOverrun:
		e.Overrun = &OverrunInfo{KernelDrops: s.u64(), ENOBUFS: s.u64()}
	case KindMalformed:
		e.Malformed = &MalformedInfo{Sender: s.u32(), Error: s.str(), Data: s.bin()}
	case KindForged:
		e.Forged = &ForgedInfo{Count: s.u64()}
	case KindDropped:
		e.Dropped = &DroppedInfo{Count: s.u64(), Reason: s.str(), Sink: s.str()}
	case KindFiltered:
		e.Filtered = &FilteredInfo{Count: s.u64(), First: s.u32(), Last: s.u32()}
		for range s.r.IntN(4) {
			if e.Filtered.Kinds == nil {
				e.Filtered.Kinds = map[string]uint64{}
			}
			e.Filtered.Kinds[s.nonEmpty()] = s.u64()
		}
	case KindClosed:
		e.Closed = &ClosedInfo{Reason: s.str(), First: s.u32(), Last: s.u32()}
	case KindCorrupt:
		e.Corrupt = &CorruptInfo{File: s.str(), Offset: int64(s.u64() >> 1), Bytes: int64(s.u64() >> 1), Reason: s.str()}
	}
	if !k.IsLoss() && k != KindAck && k != KindRaw && s.r.IntN(2) == 0 {
		e.Process = s.process()
	}
	return e
}

func (s *eventSource) process() *Process {
	if s.r.IntN(3) == 0 {
		return &Process{PID: s.u32(), TGID: s.u32(), Source: "gone"}
	}
	p := &Process{PID: s.u32(), TGID: s.u32(), PPID: s.u32(), Source: [...]string{"proc", "table"}[s.r.IntN(2)],
		ExecID: s.execID(), ParentExecID: s.execID(), PrevExecID: s.execID(),
		StartTime: s.startTime(), StartBootNS: s.optU64(),
		Comm: s.str(), Exe: s.str(), Cmdline: s.strings(), Redacted: s.optRedacted(), Cwd: s.str(),
		UID: s.optU32(), EUID: s.optU32(), GID: s.optU32(), EGID: s.optU32(),
		User: s.str(), Group: s.str(), Cgroup: s.str()}
	if s.r.IntN(2) == 0 {
		p.Container = &Container{ID: s.str(), Runtime: s.str(), PodUID: s.str()}
	}
	if s.r.IntN(2) == 0 {
		p.Login = &Login{AUID: s.optU32(), SessionID: s.optU32()}
	}
	if s.r.IntN(2) == 0 {
		p.CapEffHex, p.CapEff, p.CapFull = s.str(), s.strings(), s.r.IntN(2) == 0
		if s.r.IntN(2) == 0 {
			p.NoNewPrivs = ptr(s.r.IntN(2) == 0)
		}
	}
	if s.r.IntN(2) == 0 {
		p.NS = &Namespaces{}
		for _, f := range [...]*uint64{&p.NS.PID, &p.NS.Mnt, &p.NS.Net, &p.NS.User, &p.NS.UTS, &p.NS.IPC, &p.NS.Cgroup} {
			if s.r.IntN(2) == 0 {
				*f = s.u64()
			}
		}
		for _, n := range NamespaceNames {
			if s.r.IntN(3) == 0 {
				p.NS.Differs = append(p.NS.Differs, n)
			}
		}
	}
	for range s.r.IntN(4) {
		p.Ancestors = append(p.Ancestors, Ancestor{PID: s.u32(), ExecID: s.execID(), Comm: s.str(), Exe: s.str()})
	}
	return p
}

// fullProcess returns a process with every field set.
func fullProcess(s *eventSource) *Process {
	return &Process{PID: 1, TGID: 2, PPID: 3, Source: "proc",
		ExecID: "q3Jb0hV7Zc1mTn2kP9xY4w", ParentExecID: s.nonEmpty(), PrevExecID: "Vd8sR1aYp0cKx6JtWn3FgQ",
		StartTime: time.Unix(1_773_480_000, 5).UTC(), StartBootNS: 12,
		Comm: "c", Exe: "e",
		Cmdline: []string{"a", s.nonEmpty()}, Redacted: 1, Cwd: "w", UID: ptr[uint32](4), EUID: ptr[uint32](5),
		GID: ptr[uint32](6), EGID: ptr[uint32](7), User: "u", Group: "g", Cgroup: "cg",
		Container: &Container{ID: "i", Runtime: "r", PodUID: "p"},
		Login:     &Login{AUID: ptr[uint32](10), SessionID: ptr[uint32](11)},
		CapEffHex: "x", CapEff: []string{"CAP_CHOWN"}, CapFull: true, NoNewPrivs: ptr(true),
		NS:        &Namespaces{PID: 1, Mnt: 2, Net: 3, User: 4, UTS: 5, IPC: 6, Cgroup: 7, Differs: []string{"net"}},
		Ancestors: []Ancestor{{PID: 8, ExecID: "Hk2cQ8vNw1fXoR4tLm7ZbA", Comm: "c", Exe: "e"}, {PID: 9}}}
}

// setMember copies the member kind k names from src to dst.
func setMember(dst, src *Event, k Kind) {
	switch k {
	case KindFork:
		dst.Fork = src.Fork
	case KindExec:
		dst.Exec = src.Exec
	case KindExit:
		dst.Exit = src.Exit
	case KindUID:
		dst.UID = src.UID
	case KindGID:
		dst.GID = src.GID
	case KindSID:
		dst.SID = src.SID
	case KindPtrace:
		dst.Ptrace = src.Ptrace
	case KindComm:
		dst.Comm = src.Comm
	case KindCoredump:
		dst.Coredump = src.Coredump
	case KindAck:
		dst.Ack = src.Ack
	case KindRaw:
		dst.Raw = src.Raw
	case KindGap:
		dst.Gap = src.Gap
	case KindOverrun:
		dst.Overrun = src.Overrun
	case KindMalformed:
		dst.Malformed = src.Malformed
	case KindForged:
		dst.Forged = src.Forged
	case KindDropped:
		dst.Dropped = src.Dropped
	case KindFiltered:
		dst.Filtered = src.Filtered
	case KindClosed:
		dst.Closed = src.Closed
	case KindCorrupt:
		dst.Corrupt = src.Corrupt
	}
}

// wildEvent makes e invalid in ways an encoder must still write: other
// versions and kinds, extra members, no host, a time zone, odd exit values.
func wildEvent(s *eventSource, e *Event) {
	switch s.r.IntN(3) {
	case 0:
		e.Version = s.r.IntN(1<<20) - 1<<19
	case 1:
		e.Version = int(int64(s.u64()))
	}
	if s.r.IntN(3) == 0 {
		e.Kind = Kind(s.r.IntN(256))
	}
	if s.r.IntN(4) == 0 {
		e.Host = nil
	}
	if s.r.IntN(3) == 0 {
		e.Time = e.Time.In(time.FixedZone("x", s.r.IntN(48*3600)-24*3600))
	}
	for range s.r.IntN(4) {
		k := Kinds()[s.r.IntN(len(Kinds()))]
		m := genEvent(s, k)
		setMember(e, &m, k)
	}
	if s.r.IntN(3) == 0 {
		e.Process = fullProcess(s)
	}
	if s.r.IntN(3) == 0 {
		e.Stream, e.Record = nil, nil
	}
	if e.Corrupt != nil && s.r.IntN(2) == 0 {
		e.Corrupt.Offset, e.Corrupt.Bytes = -int64(s.u64()>>1)-1, int64(s.u64())
	}
	if e.Exit != nil && s.r.IntN(2) == 0 {
		e.Exit.ExitStatus = ptr(int(int64(s.u64())))
		e.Exit.Signal = ptr(-int(s.u32()))
		e.Exit.ExitSignal = int32(s.u32())
	}
	if e.Process != nil && s.r.IntN(2) == 0 {
		e.Process.Cmdline = []string{} // empty, not nil: omitted like nil
		e.Process.Ancestors = []Ancestor{}
	}
	if p := e.Process; p != nil && s.r.IntN(2) == 0 {
		// Exec ids that are any string, a start time in a time zone (the
		// zero instant in a zone is still zero: omitted).
		p.ExecID, p.ParentExecID, p.PrevExecID = s.str(), s.str(), s.str()
		zone := time.FixedZone("y", s.r.IntN(48*3600)-24*3600)
		p.StartTime = [...]time.Time{time.Time{}.In(zone), s.time().In(zone), s.time()}[s.r.IntN(3)]
		for i := range p.Ancestors {
			p.Ancestors[i].ExecID = s.str()
		}
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendDecimal(t *testing.T) {
	vals := []uint64{0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 65535, 1<<32 - 1, 1 << 32, 1<<63 - 1, 1 << 63, 1<<64 - 1}
	for i := range pow10 {
		vals = append(vals, pow10[i]-1, pow10[i], pow10[i]+1)
	}
	r := rand.New(rand.NewPCG(9, 10))
	for range 10000 {
		vals = append(vals, r.Uint64()>>r.IntN(64))
	}
	for _, v := range vals {
		if got, want := appendDecimal([]byte("x"), v), strconv.AppendUint([]byte("x"), v, 10); !bytes.Equal(got, want) {
			t.Errorf("appendDecimal(%d) = %s, want %s", v, got, want)
		}
		i := int64(v)
		if got, want := appendDecimalInt(nil, i), strconv.AppendInt(nil, i, 10); !bytes.Equal(got, want) {
			t.Errorf("appendDecimalInt(%d) = %s, want %s", i, got, want)
		}
	}
}

// TestAppendRFC3339 compares appendRFC3339 with time.Time.MarshalJSON over
// the range of years 0..9999 and with AppendFormat outside it.
func TestAppendRFC3339(t *testing.T) {
	const minSec, maxSec = -62167219200, 253402300799
	secs := []int64{minSec - 1, minSec, minSec + 86400*59, minSec + 86400*60, 0, -1, 951782400, 4107542400, maxSec, maxSec + 1, -1 << 40, 1 << 40}
	r := rand.New(rand.NewPCG(11, 12))
	for range 100000 {
		secs = append(secs, minSec+r.Int64N(maxSec-minSec+1))
	}
	for day := int64(0); day < 366*5; day++ { // every day of 0000..0004 (0000 and 0004 are leap years)
		secs = append(secs, minSec+day*86400+day%86400)
	}
	for i, sec := range secs {
		ns := [...]int{0, 1, 10, 999999999, 500000000, r.IntN(1e9)}[i%6]
		tm := time.Unix(sec, int64(ns)).In(time.FixedZone("z", 3600*(i%25-12)))
		got := appendRFC3339(nil, tm)
		want, err := tm.UTC().MarshalJSON()
		if err != nil {
			want = tm.UTC().AppendFormat(nil, time.RFC3339Nano)
		} else {
			want = want[1 : len(want)-1]
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d.%09d: got %s, want %s", sec, ns, got, want)
		}
	}
}

// TestJSONUnsafe8: the word test agrees with jsonSafeSet for each byte
// value at each position among safe bytes.
func TestJSONUnsafe8(t *testing.T) {
	for pos := range 8 {
		for c := range 256 {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			if got, want := jsonUnsafe8(load64(w, 0)), !jsonSafeSet[c]; got != want {
				t.Errorf("byte %#x at %d: unsafe %v, want %v", c, pos, got, want)
			}
			s := string(w) + string(w) + "z"
			if got, want := appendJSONString(nil, s), must(json.Marshal(s)); !bytes.Equal(got, want) {
				t.Errorf("%q: got %s, want %s", s, got, want)
			}
		}
	}
	// Pairs of unsafe bytes, for borrows between them.
	for c := range 256 {
		for d := range 256 {
			if jsonSafeSet[c] && jsonSafeSet[d] {
				continue
			}
			w := []byte("abcdefgh")
			w[3], w[4] = byte(c), byte(d)
			if !jsonUnsafe8(load64(w, 0)) {
				t.Fatalf("bytes %#x %#x: not unsafe", c, d)
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestEventsDocExamples: docs/EVENTS.md shows every golden JSON line as it
// is, so that its examples cannot drift from the encoder.
func TestEventsDocExamples(t *testing.T) {
	doc := string(mustReadFile(t, filepath.Join("..", "docs", "EVENTS.md")))
	for _, g := range goldenEvents() {
		line := string(mustReadFile(t, goldenPath(g.name, ".json")))
		if !strings.Contains(doc, "```json\n"+line+"```") {
			t.Errorf("docs/EVENTS.md lacks the example %s", goldenPath(g.name, ".json"))
		}
	}
}
