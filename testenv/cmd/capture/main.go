//go:build linux

// Command capture records real process-events connector datagrams from the
// running kernel into schema/testdata/datagrams: one datagram per event kind
// (and a few exit variants), each triggered by an action of this program on a
// child it started, and each with a JSON sidecar holding what the program
// knew before decoding anything: the pids it started, the ids it set, the
// wait status wait4 returned, the LISTEN request it sent.
//
// Run it as root on the host (initial user, pid and network namespaces), from
// the repository root:
//
//	go run ./testenv/cmd/capture -out schema/testdata/datagrams
//
// It subscribes with its own LISTEN request (so it can recognise the ACK to
// it among those of other listeners), keeps only datagrams from the kernel
// (port id 0) about processes it started, and sends IGNORE before it exits.
// The output directory's *.bin and *.json files are replaced only when every
// capture succeeded.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
)

// childArg makes the program act as one of its own children (see child).
const childArg = "-capture-child"

// commName is what the comm child writes to /proc/self/comm: 15 bytes, the
// longest name the kernel keeps (TASK_COMM_LEN 16 with the NUL).
const commName = "cnstream-comm15"

// Ids the uid and gid children switch to; real and effective differ so that a
// decoder swapping them is caught.
const (
	realID      = 65534
	effectiveID = 65533
)

func init() {
	// The main goroutine stays on the main thread, whose thread id is the
	// pid: the forks, the ptrace requests, and in the children the setsid
	// and comm changes all come from it, so the events' pid fields are
	// known in advance.
	runtime.LockOSThread()
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == childArg {
		os.Exit(child(os.Args[2], os.Args[3:]))
	}
	out := flag.String("out", "schema/testdata/datagrams", "directory to write <kind>.bin, <kind>.json and README.md to")
	timeout := flag.Duration("timeout", 10*time.Second, "how long to wait for each expected event")
	flag.Parse()
	if err := run(*out, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "capture:", err)
		os.Exit(1)
	}
}

// child runs one action as a child process and returns its exit status.
func child(mode string, args []string) int {
	err := func() error {
		switch mode {
		case "exit": // exit with the given status
			n, err := strconv.Atoi(args[0])
			if err != nil {
				return err
			}
			os.Exit(n)
		case "wait": // say ready, then block until stdin is closed
			if _, err := os.Stdout.WriteString("ready\n"); err != nil {
				return err
			}
			_, err := io.Copy(io.Discard, os.Stdin)
			return err
		case "setresuid", "setresgid":
			var ids [3]int
			for i := range ids {
				n, err := strconv.Atoi(args[i])
				if err != nil {
					return err
				}
				ids[i] = n
			}
			if mode == "setresuid" {
				return syscall.Setresuid(ids[0], ids[1], ids[2])
			}
			return syscall.Setresgid(ids[0], ids[1], ids[2])
		case "setsid":
			_, err := syscall.Setsid()
			return err
		case "comm":
			// Writing /proc/self/comm renames the thread-group leader and
			// makes the kernel send a COMM event (like prctl PR_SET_NAME).
			f, err := os.OpenFile("/proc/self/comm", os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if _, err := f.WriteString(args[0]); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}
		return fmt.Errorf("unknown mode %q", mode)
	}()
	if err != nil {
		fmt.Fprintf(os.Stderr, "capture child %s: %v\n", mode, err)
		return 100
	}
	return 0
}

// sidecar is the <name>.json file next to <name>.bin. Fields uses the member
// names of struct proc_event in include/uapi/linux/cn_proc.h.
type sidecar struct {
	File       string            `json:"file"`
	Kind       string            `json:"kind"` // schema.What.String() of the event
	Synthetic  bool              `json:"synthetic,omitempty"`
	Action     string            `json:"action"`
	Kernel     string            `json:"kernel"`
	CPULimit   uint32            `json:"cpu_limit"`      // every cpu id of this machine is below it
	MonoBefore uint64            `json:"mono_before_ns"` // CLOCK_MONOTONIC before the action
	MonoAfter  uint64            `json:"mono_after_ns"`  // CLOCK_MONOTONIC after the datagram was read
	Fields     map[string]uint32 `json:"fields"`
	Comm       string            `json:"comm,omitempty"`
	Exit       *exitIntent       `json:"exit,omitempty"`
	Request    *request          `json:"request,omitempty"`
}

// exitIntent is how the process ended, as the capture program caused it and
// wait4 confirmed it.
type exitIntent struct {
	Exited     bool `json:"exited"`
	Status     int  `json:"status"`
	Signaled   bool `json:"signaled"`
	Signal     int  `json:"signal"`
	CoreDumped bool `json:"core_dumped"`
}

// request is the LISTEN the ACK answers.
type request struct {
	ID     schema.CbID `json:"id"`
	Seq    uint32      `json:"seq"`
	Ack    uint32      `json:"ack"`
	Op     uint32      `json:"op"`
	Mask   uint32      `json:"mask"`
	Legacy bool        `json:"legacy"` // the 4-byte op form
}

type output struct {
	name string
	raw  []byte
	sc   sidecar
}

// record is a datagram about one of our processes.
type record struct {
	raw    []byte
	cn     schema.CnMsg
	ev     schema.ProcEvent
	readAt uint64 // CLOCK_MONOTONIC after it was read
}

type capturer struct {
	conn    *source.Conn
	batch   *source.Batch
	msgs    []schema.NetlinkMessage
	timeout time.Duration

	self     string // this executable
	pid, tid uint32
	kernel   string
	cpuLimit uint32

	ours    map[uint32]bool // tgids whose events are kept: ours and our children's
	ackWant uint32          // the ack of the ACK we wait for
	pending []*record       // kept, not yet matched
	lost    uint64          // ENOBUFS and kernel drops met while reading
	outputs []output
}

func run(out string, timeout time.Duration) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	kernel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return err
	}
	cpuLimit, err := readCPULimit()
	if err != nil {
		return err
	}
	conn, err := source.Dial(source.Config{Groups: []uint32{schema.ProcID.Idx}})
	if err != nil {
		return err
	}
	defer conn.Close()
	c := &capturer{
		conn:     conn,
		batch:    source.NewBatch(0, 0),
		timeout:  timeout,
		self:     self,
		pid:      uint32(os.Getpid()),
		tid:      uint32(syscall.Gettid()),
		kernel:   strings.TrimSpace(string(kernel)),
		cpuLimit: cpuLimit,
	}
	c.ours = map[uint32]bool{c.pid: true}
	if c.pid != c.tid {
		return fmt.Errorf("main goroutine runs on thread %d, not the main thread %d", c.tid, c.pid)
	}

	req, err := c.listen()
	if err != nil {
		return err
	}
	defer c.ignore(req)

	steps := []struct {
		name string
		fn   func() error
	}{
		{"fork, exec, exit with status 3", c.captureExitStatus},
		{"death by SIGKILL, thread exit", c.captureKill},
		{"SIGQUIT with core dump", c.captureCoredump},
		{"setresuid", func() error { return c.captureID(schema.ProcEventUID) }},
		{"setresgid", func() error { return c.captureID(schema.ProcEventGID) }},
		{"setsid", c.captureSID},
		{"comm", c.captureComm},
		{"ptrace attach and detach", c.capturePtrace},
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return c.write(out)
}

// listen sends LISTEN (the 8-byte proc_input form, then the legacy 4-byte
// one) and captures the kernel's ACK to it.
func (c *capturer) listen() (request, error) {
	var errs []error
	for _, legacy := range []bool{false, true} {
		req := request{ID: schema.ProcID, Seq: rand.Uint32(), Ack: rand.Uint32(),
			Op: uint32(schema.ProcMcastListen), Mask: uint32(schema.ProcEventAll), Legacy: legacy}
		msg := schema.CnMsg{ID: req.ID, Seq: req.Seq, Ack: req.Ack,
			Data: schema.AppendProcInput(nil, schema.ProcMcastListen, schema.ProcEventAll, legacy)}
		c.ackWant = req.Ack + 1
		before := mono()
		if err := c.conn.Send(msg, 0); err != nil {
			return req, err
		}
		r, err := c.await("the ACK to LISTEN", func(r *record) bool {
			return r.ev.What == schema.ProcEventNone && schema.IsReply(msg, r.cn)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("legacy=%v: %w", legacy, err))
			continue
		}
		form := "the 8-byte proc_input{LISTEN, PROC_EVENT_ALL}"
		if legacy {
			form = "the legacy 4-byte LISTEN op"
		}
		c.save(schema.ProcEventNone, "", r, before,
			fmt.Sprintf("sent %s to the kernel (cn_msg seq %d ack %d); the kernel answered with a NONE event, ack + 1, err 0", form, req.Seq, req.Ack),
			map[string]uint32{"err": 0}, func(sc *sidecar) { sc.Request = &req })
		return req, nil
	}
	return request{}, fmt.Errorf("no ACK to LISTEN: %w", errors.Join(errs...))
}

// ignore undoes our LISTEN: the kernel counts listeners and does not
// decrement the count when the socket closes.
func (c *capturer) ignore(req request) {
	msg := schema.CnMsg{ID: schema.ProcID, Seq: req.Seq + 1, Ack: rand.Uint32(),
		Data: schema.AppendProcInput(nil, schema.ProcMcastIgnore, schema.ProcEventAll, req.Legacy)}
	if err := c.conn.Send(msg, 0); err != nil {
		fmt.Fprintln(os.Stderr, "capture: send IGNORE:", err)
	}
}

// captureExitStatus: a child that exits with status 3 gives the fork, exec
// and exit datagrams.
func (c *capturer) captureExitStatus() error {
	before := mono()
	p, err := c.start(c.self, []string{childArg, "exit", "3"}, "")
	if err != nil {
		return err
	}
	defer p.kill()
	pid := p.pid
	fork, err := c.await("fork", func(r *record) bool {
		return r.ev.What == schema.ProcEventFork && r.ev.Fork.ChildPID == pid
	})
	if err != nil {
		return err
	}
	execR, err := c.await("exec", func(r *record) bool {
		return r.ev.What == schema.ProcEventExec && r.ev.Exec.PID == pid
	})
	if err != nil {
		return err
	}
	exit, err := c.await("exit", func(r *record) bool {
		return r.ev.What == schema.ProcEventExit && r.ev.Exit.PID == pid
	})
	if err != nil {
		return err
	}
	ws, err := c.reap(p)
	if err != nil {
		return err
	}
	if !ws.Exited() || ws.ExitStatus() != 3 {
		return fmt.Errorf("child %d: wait status %#x, want exit status 3", pid, uint32(ws))
	}
	c.save(schema.ProcEventFork, "", fork, before,
		fmt.Sprintf("the capture program (pid %d, main thread) started child %d with os.StartProcess (clone)", c.pid, pid),
		map[string]uint32{"parent_pid": c.tid, "parent_tgid": c.pid, "child_pid": pid, "child_tgid": pid}, nil)
	c.save(schema.ProcEventExec, "", execR, before,
		fmt.Sprintf("child %d executed %s", pid, filepath.Base(c.self)),
		map[string]uint32{"process_pid": pid, "process_tgid": pid}, nil)
	c.save(schema.ProcEventExit, "", exit, before,
		fmt.Sprintf("child %d called exit(3); wait4 returned status %#x", pid, uint32(ws)),
		c.exitFields(pid, pid, ws, uint32(syscall.SIGCHLD)),
		func(sc *sidecar) { sc.Exit = intent(ws) })
	return nil
}

// captureKill: a child killed by SIGKILL gives the exit of a process killed
// by a signal and the exit of one of its other threads.
func (c *capturer) captureKill() error {
	p, err := c.start(c.self, []string{childArg, "wait"}, "")
	if err != nil {
		return err
	}
	defer p.kill()
	pid := p.pid
	if err := c.ready(p); err != nil {
		return err
	}
	tid, err := otherThread(pid)
	if err != nil {
		return err
	}
	before := mono()
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		return err
	}
	leader, err := c.await("exit of the killed process", func(r *record) bool {
		return r.ev.What == schema.ProcEventExit && r.ev.Exit.PID == pid
	})
	if err != nil {
		return err
	}
	thread, err := c.await(fmt.Sprintf("exit of its thread %d", tid), func(r *record) bool {
		return r.ev.What == schema.ProcEventExit && r.ev.Exit.PID == tid
	})
	if err != nil {
		return err
	}
	ws, err := c.reap(p)
	if err != nil {
		return err
	}
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL || ws.CoreDump() {
		return fmt.Errorf("child %d: wait status %#x, want death by SIGKILL", pid, uint32(ws))
	}
	c.save(schema.ProcEventExit, "signal", leader, before,
		fmt.Sprintf("the capture program sent SIGKILL to child %d; wait4 returned status %#x", pid, uint32(ws)),
		c.exitFields(pid, pid, ws, uint32(syscall.SIGCHLD)),
		func(sc *sidecar) { sc.Exit = intent(ws) })
	// A thread's exit_signal is -1 and its exit_code the group's exit code.
	// Its parent fields are 0: do_exit calls exit_notify, which releases an
	// exiting non-leader thread at once (autoreap, detach_pid), before
	// proc_exit_connector, whose pid_alive(task) check then fails.
	fields := c.exitFields(tid, pid, ws, ^uint32(0))
	fields["parent_pid"], fields["parent_tgid"] = 0, 0
	c.save(schema.ProcEventExit, "thread", thread, before,
		fmt.Sprintf("thread %d of child %d died with it (SIGKILL); wait4 returned status %#x for the process; a released thread reports parent 0", tid, pid, uint32(ws)),
		fields, func(sc *sidecar) { sc.Exit = intent(ws) })
	return nil
}

// captureCoredump: sleep(1) killed by SIGQUIT with RLIMIT_CORE raised gives
// the COREDUMP event and the exit of a process that dumped core. The kernel
// sends COREDUMP before it tries to dump, so that datagram is real even when
// dumping fails; the exit with WCOREDUMP set is made with the encoder
// (synthetic-exit-coredump) only if no core was dumped.
func (c *capturer) captureCoredump() error {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cnstream-capture-core-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CORE, &old); err != nil {
		return err
	}
	unlimited := syscall.Rlimit{Cur: ^uint64(0), Max: ^uint64(0)}
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &unlimited); err != nil {
		return fmt.Errorf("raise RLIMIT_CORE: %w", err)
	}
	p, err := c.start(sleep, []string{"60"}, dir)
	_ = syscall.Setrlimit(syscall.RLIMIT_CORE, &old)
	if err != nil {
		return err
	}
	defer p.kill()
	pid := p.pid
	if _, err := c.await("exec of sleep", func(r *record) bool {
		return r.ev.What == schema.ProcEventExec && r.ev.Exec.PID == pid
	}); err != nil {
		return err
	}
	before := mono()
	if err := syscall.Kill(int(pid), syscall.SIGQUIT); err != nil {
		return err
	}
	core, err := c.await("coredump", func(r *record) bool {
		return r.ev.What == schema.ProcEventCoredump && r.ev.Coredump.PID == pid
	})
	if err != nil {
		return err
	}
	exit, err := c.await("exit after SIGQUIT", func(r *record) bool {
		return r.ev.What == schema.ProcEventExit && r.ev.Exit.PID == pid
	})
	if err != nil {
		return err
	}
	ws, err := c.reap(p)
	if err != nil {
		return err
	}
	if !ws.Signaled() || ws.Signal() != syscall.SIGQUIT {
		return fmt.Errorf("sleep %d: wait status %#x, want death by SIGQUIT", pid, uint32(ws))
	}
	pattern, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
	how := fmt.Sprintf("the capture program started sleep(1) as child %d with RLIMIT_CORE unlimited (core_pattern %q) and sent it SIGQUIT",
		pid, strings.TrimSpace(string(pattern)))
	c.save(schema.ProcEventCoredump, "", core, before, how,
		map[string]uint32{"process_pid": pid, "process_tgid": pid, "parent_pid": c.tid, "parent_tgid": c.pid}, nil)
	fields := c.exitFields(pid, pid, ws, uint32(syscall.SIGCHLD))
	if ws.CoreDump() {
		c.save(schema.ProcEventExit, "coredump", exit, before,
			fmt.Sprintf("%s; wait4 returned status %#x (core dumped)", how, uint32(ws)),
			fields, func(sc *sidecar) { sc.Exit = intent(ws) })
		return nil
	}
	// No core was dumped here: keep the real exit, and make the one with
	// WCOREDUMP set from it with the encoder.
	c.save(schema.ProcEventExit, "sigquit", exit, before,
		fmt.Sprintf("%s; wait4 returned status %#x: no core was dumped", how, uint32(ws)),
		fields, func(sc *sidecar) { sc.Exit = intent(ws) })
	ev := exit.ev
	ev.Exit.ExitCode |= 0x80
	raw := schema.AppendDatagram(nil, 0, schema.CnMsg{ID: exit.cn.ID, Seq: exit.cn.Seq, Ack: exit.cn.Ack, Flags: exit.cn.Flags,
		Data: schema.AppendProcEvent(nil, ev)})
	syn := *exit
	syn.raw = raw
	synFields := c.exitFields(pid, pid, ws|0x80, uint32(syscall.SIGCHLD))
	c.saveAs("synthetic-exit-coredump", schema.ProcEventExit, &syn, before,
		"made with the encoder from exit-sigquit.bin with the WCOREDUMP bit (0x80) set, because core dumps are disabled on the capturing machine",
		synFields, func(sc *sidecar) {
			sc.Synthetic = true
			sc.Exit = intent(ws | 0x80)
		})
	return nil
}

// captureID: a child calls setresuid or setresgid(65534, 65533, 0).
func (c *capturer) captureID(what schema.What) error {
	mode, r, e := "setresuid", "ruid", "euid"
	if what == schema.ProcEventGID {
		mode, r, e = "setresgid", "rgid", "egid"
	}
	before := mono()
	p, err := c.start(c.self, []string{childArg, mode, strconv.Itoa(realID), strconv.Itoa(effectiveID), "0"}, "")
	if err != nil {
		return err
	}
	defer p.kill()
	pid := p.pid
	// Go changes the ids of every thread; each thread's change is an event.
	// The main thread's (pid == tgid) is the one kept.
	ev, err := c.await(mode, func(r *record) bool {
		return r.ev.What == what && r.ev.ID.PID == pid
	})
	if err != nil {
		return err
	}
	if err := c.reapOK(p); err != nil {
		return err
	}
	c.save(what, "", ev, before,
		fmt.Sprintf("child %d called %s(%d, %d, 0)", pid, mode, realID, effectiveID),
		map[string]uint32{"process_pid": pid, "process_tgid": pid, r: realID, e: effectiveID}, nil)
	return nil
}

// captureSID: a child calls setsid.
func (c *capturer) captureSID() error {
	before := mono()
	p, err := c.start(c.self, []string{childArg, "setsid"}, "")
	if err != nil {
		return err
	}
	defer p.kill()
	pid := p.pid
	ev, err := c.await("setsid", func(r *record) bool {
		return r.ev.What == schema.ProcEventSID && r.ev.SID.TGID == pid
	})
	if err != nil {
		return err
	}
	if err := c.reapOK(p); err != nil {
		return err
	}
	c.save(schema.ProcEventSID, "", ev, before,
		fmt.Sprintf("child %d called setsid() on its main thread", pid),
		map[string]uint32{"process_pid": pid, "process_tgid": pid}, nil)
	return nil
}

// captureComm: a child writes its new name to /proc/self/comm.
func (c *capturer) captureComm() error {
	before := mono()
	p, err := c.start(c.self, []string{childArg, "comm", commName}, "")
	if err != nil {
		return err
	}
	defer p.kill()
	pid := p.pid
	ev, err := c.await("comm", func(r *record) bool {
		return r.ev.What == schema.ProcEventComm && r.ev.Comm.TGID == pid
	})
	if err != nil {
		return err
	}
	if err := c.reapOK(p); err != nil {
		return err
	}
	c.save(schema.ProcEventComm, "", ev, before,
		fmt.Sprintf("child %d wrote %q to /proc/self/comm", pid, commName),
		map[string]uint32{"process_pid": pid, "process_tgid": pid}, func(sc *sidecar) { sc.Comm = commName })
	return nil
}

// capturePtrace: the capture program attaches to a child with PTRACE_ATTACH,
// waits for it to stop, and detaches.
func (c *capturer) capturePtrace() error {
	p, err := c.start(c.self, []string{childArg, "wait"}, "")
	if err != nil {
		return err
	}
	defer p.kill()
	pid := p.pid
	if err := c.ready(p); err != nil {
		return err
	}
	before := mono()
	if err := syscall.PtraceAttach(int(pid)); err != nil {
		return fmt.Errorf("PTRACE_ATTACH %d: %w", pid, err)
	}
	var ws syscall.WaitStatus
	if _, err := wait4(pid, &ws, syscall.WALL); err != nil {
		return err
	}
	if !ws.Stopped() || ws.StopSignal() != syscall.SIGSTOP {
		return fmt.Errorf("traced child %d: wait status %#x, want stopped by SIGSTOP", pid, uint32(ws))
	}
	attach, err := c.await("ptrace attach", func(r *record) bool {
		return r.ev.What == schema.ProcEventPtrace && r.ev.Ptrace.PID == pid && r.ev.Ptrace.TracerPID != 0
	})
	if err != nil {
		return err
	}
	beforeDetach := mono()
	if err := syscall.PtraceDetach(int(pid)); err != nil {
		return fmt.Errorf("PTRACE_DETACH %d: %w", pid, err)
	}
	detach, err := c.await("ptrace detach", func(r *record) bool {
		return r.ev.What == schema.ProcEventPtrace && r.ev.Ptrace.PID == pid && r.ev.Ptrace.TracerPID == 0
	})
	if err != nil {
		return err
	}
	// The attach's SIGSTOP leaves the child group-stopped after the detach.
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		return err
	}
	if _, err := c.reap(p); err != nil {
		return err
	}
	c.save(schema.ProcEventPtrace, "", attach, before,
		fmt.Sprintf("the capture program (pid %d, main thread) called PTRACE_ATTACH on child %d", c.pid, pid),
		map[string]uint32{"process_pid": pid, "process_tgid": pid, "tracer_pid": c.tid, "tracer_tgid": c.pid}, nil)
	c.save(schema.ProcEventPtrace, "detach", detach, beforeDetach,
		fmt.Sprintf("the capture program called PTRACE_DETACH on child %d", pid),
		map[string]uint32{"process_pid": pid, "process_tgid": pid, "tracer_pid": 0, "tracer_tgid": 0}, nil)
	return nil
}

func (c *capturer) exitFields(pid, tgid uint32, ws syscall.WaitStatus, exitSignal uint32) map[string]uint32 {
	return map[string]uint32{
		"process_pid": pid, "process_tgid": tgid,
		"exit_code": uint32(ws), "exit_signal": exitSignal,
		"parent_pid": c.tid, "parent_tgid": c.pid,
	}
}

func intent(ws syscall.WaitStatus) *exitIntent {
	e := &exitIntent{Exited: ws.Exited(), Signaled: ws.Signaled(), CoreDumped: ws.CoreDump()}
	if e.Exited {
		e.Status = ws.ExitStatus()
	}
	if e.Signaled {
		e.Signal = int(ws.Signal())
	}
	return e
}

func (c *capturer) save(what schema.What, variant string, r *record, before uint64, action string, fields map[string]uint32, more func(*sidecar)) {
	name := what.String()
	if variant != "" {
		name += "-" + variant
	}
	c.saveAs(name, what, r, before, action, fields, more)
}

func (c *capturer) saveAs(name string, what schema.What, r *record, before uint64, action string, fields map[string]uint32, more func(*sidecar)) {
	sc := sidecar{
		File: name + ".bin", Kind: what.String(), Action: action, Kernel: c.kernel, CPULimit: c.cpuLimit,
		MonoBefore: before, MonoAfter: r.readAt, Fields: fields,
	}
	if more != nil {
		more(&sc)
	}
	c.outputs = append(c.outputs, output{name: name, raw: r.raw, sc: sc})
}

// await returns the first datagram about our processes that match accepts,
// reading the socket until one arrives or the timeout passes. Datagrams read
// on the way are kept for later calls.
func (c *capturer) await(what string, match func(*record) bool) (*record, error) {
	for i, r := range c.pending {
		if match(r) {
			c.pending = slices.Delete(c.pending, i, i+1)
			return r, nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	for {
		n, err := c.conn.ReadBatch(ctx, c.batch)
		c.lost += c.batch.ENOBUFS + c.batch.Dropped
		if err != nil {
			return nil, fmt.Errorf("waiting for %s: %w (%d datagrams about our processes kept, %d ENOBUFS/drops met)",
				what, err, len(c.pending), c.lost)
		}
		now := mono()
		var found *record
		for _, d := range c.batch.Datagrams[:n] {
			r := c.keep(d)
			if r == nil {
				continue
			}
			r.readAt = now
			if found == nil && match(r) {
				found = r
				continue
			}
			c.pending = append(c.pending, r)
		}
		if found != nil {
			return found, nil
		}
	}
}

// keep decodes d and returns a record when it is a kernel proc event about
// one of our processes, or the ACK we wait for.
func (c *capturer) keep(d source.Datagram) *record {
	if d.Addr.PortID != 0 || d.Truncated {
		return nil
	}
	var err error
	c.msgs, err = schema.ParseNetlink(d.Data, c.msgs[:0])
	if err != nil || len(c.msgs) != 1 {
		return nil
	}
	cn, err := schema.DecodeCnMsg(c.msgs[0].Data)
	if err != nil || cn.ID != schema.ProcID {
		return nil
	}
	ev, err := schema.DecodeProcEvent(cn.Data)
	if err != nil {
		return nil
	}
	var ours bool
	switch ev.What {
	case schema.ProcEventNone:
		ours = cn.Ack == c.ackWant
	case schema.ProcEventFork:
		ours = c.ours[ev.Fork.ParentTGID] || c.ours[ev.Fork.ChildTGID]
	case schema.ProcEventExec:
		ours = c.ours[ev.Exec.TGID]
	case schema.ProcEventUID, schema.ProcEventGID:
		ours = c.ours[ev.ID.TGID]
	case schema.ProcEventSID:
		ours = c.ours[ev.SID.TGID]
	case schema.ProcEventPtrace:
		ours = c.ours[ev.Ptrace.TGID]
	case schema.ProcEventComm:
		ours = c.ours[ev.Comm.TGID]
	case schema.ProcEventCoredump:
		ours = c.ours[ev.Coredump.TGID]
	case schema.ProcEventExit:
		ours = c.ours[ev.Exit.TGID]
	}
	if !ours {
		return nil
	}
	// d.Data is overwritten by the next read: keep a copy, and a cn_msg
	// whose Data points into it.
	raw := bytes.Clone(d.Data)
	if cn, err = schema.DecodeCnMsg(raw[schema.NetlinkHeaderLen:]); err != nil {
		return nil
	}
	return &record{raw: raw, cn: cn, ev: ev}
}

// proc is a child process with a pipe on its stdin and stdout.
type proc struct {
	p      *os.Process
	pid    uint32
	stdin  *os.File
	stdout *bufio.Reader
	out    *os.File
	reaped bool
}

func (c *capturer) start(path string, args []string, dir string) (*proc, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	argv := append([]string{path}, args...)
	p, err := os.StartProcess(path, argv, &os.ProcAttr{Dir: dir, Files: []*os.File{inR, outW, os.Stderr}})
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	pid := uint32(p.Pid)
	c.ours[pid] = true
	return &proc{p: p, pid: pid, stdin: inW, stdout: bufio.NewReader(outR), out: outR}, nil
}

// ready waits until a "wait" child has started its runtime and says so.
func (c *capturer) ready(p *proc) error {
	if err := p.out.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return err
	}
	line, err := p.stdout.ReadString('\n')
	if err != nil {
		return fmt.Errorf("child %d did not say ready: %w", p.pid, err)
	}
	if line != "ready\n" {
		return fmt.Errorf("child %d said %q, want ready", p.pid, line)
	}
	return nil
}

// reap waits for the child with wait4 (not os.Process.Wait, which rebuilds
// the status from waitid) so the status is the kernel's own encoding. Its
// events are no longer kept afterwards: the pid may be reused.
func (c *capturer) reap(p *proc) (syscall.WaitStatus, error) {
	p.stdin.Close()
	watchdog := time.AfterFunc(c.timeout, func() { _ = p.p.Kill() })
	var ws syscall.WaitStatus
	_, err := wait4(p.pid, &ws, 0)
	watchdog.Stop()
	if err != nil {
		return 0, err
	}
	p.reaped = true
	_ = p.p.Release()
	p.out.Close()
	delete(c.ours, p.pid)
	c.pending = slices.DeleteFunc(c.pending, func(r *record) bool { return tgidOf(r.ev) == p.pid })
	return ws, nil
}

// reapOK reaps a child that must exit with status 0.
func (c *capturer) reapOK(p *proc) error {
	ws, err := c.reap(p)
	if err != nil {
		return err
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("child %d failed: wait status %#x", p.pid, uint32(ws))
	}
	return nil
}

// kill ends a child left behind by a failed step.
func (p *proc) kill() {
	if p.reaped {
		return
	}
	_ = syscall.Kill(int(p.pid), syscall.SIGKILL)
	var ws syscall.WaitStatus
	_, _ = wait4(p.pid, &ws, 0)
	_ = p.p.Release()
	p.stdin.Close()
	p.out.Close()
}

func wait4(pid uint32, ws *syscall.WaitStatus, options int) (int, error) {
	for {
		wpid, err := syscall.Wait4(int(pid), ws, options, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return wpid, fmt.Errorf("wait4 %d: %w", pid, err)
		}
		return wpid, nil
	}
}

func tgidOf(ev schema.ProcEvent) uint32 {
	switch ev.What {
	case schema.ProcEventFork:
		return ev.Fork.ChildTGID
	case schema.ProcEventExec:
		return ev.Exec.TGID
	case schema.ProcEventUID, schema.ProcEventGID:
		return ev.ID.TGID
	case schema.ProcEventSID:
		return ev.SID.TGID
	case schema.ProcEventPtrace:
		return ev.Ptrace.TGID
	case schema.ProcEventComm:
		return ev.Comm.TGID
	case schema.ProcEventCoredump:
		return ev.Coredump.TGID
	case schema.ProcEventExit:
		return ev.Exit.TGID
	}
	return 0
}

// otherThread returns the lowest thread id of process pid other than pid.
func otherThread(pid uint32) (uint32, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var tids []uint32
	for _, e := range ents {
		n, err := strconv.ParseUint(e.Name(), 10, 32)
		if err == nil && uint32(n) != pid {
			tids = append(tids, uint32(n))
		}
	}
	if len(tids) == 0 {
		return 0, fmt.Errorf("process %d has a single thread", pid)
	}
	return slices.Min(tids), nil
}

// readCPULimit returns one more than the highest possible cpu id.
func readCPULimit() (uint32, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return 0, err
	}
	var hi uint64
	for _, f := range strings.FieldsFunc(strings.TrimSpace(string(b)), func(r rune) bool { return r == ',' || r == '-' }) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("parse /sys/devices/system/cpu/possible %q: %w", b, err)
		}
		hi = max(hi, n)
	}
	return uint32(hi) + 1, nil
}

func byteOrder() string {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return "little"
	}
	return "big"
}

func mono() uint64 {
	ns, err := source.Monotonic()
	if err != nil {
		panic(err) // CLOCK_MONOTONIC cannot fail on Linux
	}
	return ns
}

// write replaces the *.bin and *.json files of dir with the captures, and
// rewrites README.md.
func (c *capturer) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, pat := range []string{"*.bin", "*.json"} {
		old, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return err
		}
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	sort.Slice(c.outputs, func(i, j int) bool { return c.outputs[i].name < c.outputs[j].name })
	for _, o := range c.outputs {
		if err := os.WriteFile(filepath.Join(dir, o.name+".bin"), o.raw, 0o644); err != nil {
			return err
		}
		js, err := json.MarshalIndent(o.sc, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, o.name+".json"), append(js, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Printf("%-28s %3d bytes  %s\n", o.name+".bin", len(o.raw), o.sc.Action)
	}
	return os.WriteFile(filepath.Join(dir, "README.md"), c.readme(), 0o644)
}

func (c *capturer) readme() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Captured process-events connector datagrams

Each `+"`<name>.bin`"+` is one datagram exactly as this kernel sent it to a
NETLINK_CONNECTOR socket subscribed to the process-events connector (cn_msg id
1:1): netlink header, cn_msg and the 40-byte proc_event, in the byte order of
the capturing machine (%s, %s endian).

Captured on Linux %s (`+"`uname -r`"+`), %s, as root on the host, with:

    go run ./testenv/cmd/capture -out schema/testdata/datagrams

The capture program (testenv/cmd/capture) sends its own LISTEN, starts
children and acts on them, keeps only kernel datagrams (port id 0) about the
processes it started, and sends IGNORE when done. Each `+"`<name>.json`"+` says
what it did and what it knew without decoding: the pids it started, the ids it
set, the wait status wait4 returned (fields named as in struct proc_event of
include/uapi/linux/cn_proc.h), the CLOCK_MONOTONIC window around the event,
and for the ACK the LISTEN request. The schema tests compare the decoded
datagrams with these sidecars.

Re-run the command to refresh the files; it replaces every .bin and .json here
only when all captures succeed. Files named `+"`synthetic-*`"+` were made with
the encoder because the machine could not produce the real event.

| file | action |
|---|---|
`, runtime.GOARCH, byteOrder(), c.kernel, runtime.GOARCH)
	for _, o := range c.outputs {
		fmt.Fprintf(&b, "| %s | %s |\n", o.sc.File, strings.ReplaceAll(o.sc.Action, "|", `\|`))
	}
	return b.Bytes()
}
