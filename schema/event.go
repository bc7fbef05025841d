package schema

import (
	"fmt"
	"time"
)

// EventVersion is the version of Event this package writes (field "v").
//
// # Compatibility rule
//
// Within a version, fields are only ever added, never renamed, retyped or
// given a new meaning; readers must ignore fields they do not know, and a
// field's absence means "not known", never a zero value that was measured
// (fields that can be measured as zero are always written). Anything else,
// and any change of the event id's format, is a new version; a new version is
// announced in the Kafka/NATS header "cnstream-schema-version" and in "v", so
// consumers can route by it. event.schema.json describes version 1; it
// allows additional properties so that additive changes stay valid.
const EventVersion = 1

// Kind is what an Event reports.
type Kind uint8

// Event kinds: the process events, other connector messages (raw), and the
// records the pipeline makes about loss.
const (
	KindUnknown Kind = iota
	KindFork
	KindExec
	KindExit
	KindUID
	KindGID
	KindSID
	KindPtrace
	KindComm
	KindCoredump
	KindAck
	KindRaw
	KindGap       // sequence numbers missing on a stream
	KindOverrun   // the kernel dropped datagrams (receive queue full)
	KindMalformed // a datagram or message that does not decode
	KindForged    // datagrams rejected by the sender check
	KindDropped   // events the pipeline dropped (queue policy, sink failure)
	KindFiltered  // events of a stream a filter removed on purpose (not a loss)
	KindClosed    // a stream cnstream stopped following (idle, or evicted at the cap)
	KindCorrupt   // bytes of the disk spool that held no valid records (events destroyed)
)

var kindNames = [...]string{"unknown", "fork", "exec", "exit", "uid", "gid", "sid", "ptrace", "comm", "coredump", "ack", "raw", "gap", "overrun", "malformed", "forged", "dropped", "filtered", "stream_closed", "corrupt"}

// Kinds lists every kind but KindUnknown, in order.
func Kinds() []Kind {
	out := make([]Kind, 0, len(kindNames)-1)
	for k := KindFork; int(k) < len(kindNames); k++ {
		out = append(out, k)
	}
	return out
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// ParseKind returns the Kind named s.
func ParseKind(s string) (Kind, bool) {
	for i, n := range kindNames {
		if n == s && i != 0 {
			return Kind(i), true
		}
	}
	return KindUnknown, false
}

// IsLoss reports the records a completeness audit counts: the records of
// loss (gap, overrun, malformed, forged, dropped, corrupt) and of accounting
// (filtered: events removed on purpose; stream_closed: where cnstream
// stopped following a stream). A filter never removes them, a queue policy
// must not drop them, and they are never counted as events.
func (k Kind) IsLoss() bool {
	return k >= KindGap && k <= KindCorrupt
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	v, ok := ParseKind(string(b))
	if !ok {
		return fmt.Errorf("schema: unknown event kind %q", b)
	}
	*k = v
	return nil
}

// KindOf maps a proc event type to its Kind.
func KindOf(w What) Kind {
	switch w {
	case ProcEventNone:
		return KindAck
	case ProcEventFork:
		return KindFork
	case ProcEventExec:
		return KindExec
	case ProcEventUID:
		return KindUID
	case ProcEventGID:
		return KindGID
	case ProcEventSID:
		return KindSID
	case ProcEventPtrace:
		return KindPtrace
	case ProcEventComm:
		return KindComm
	case ProcEventCoredump:
		return KindCoredump
	case ProcEventExit:
		return KindExit
	}
	return KindUnknown
}

// Host identifies the machine an event comes from; read once at start.
type Host struct {
	Hostname  string `json:"hostname" msgpack:"hostname"`
	MachineID string `json:"machine_id" msgpack:"machine_id"` // /etc/machine-id
	BootID    string `json:"boot_id" msgpack:"boot_id"`       // /proc/sys/kernel/random/boot_id
}

// Stream locates a connector message: its id, its sequence stream (per CPU
// for process events, per sender for other ids), its number, and the
// stream's epoch: how many times the stream's counter restarted or wrapped
// since cnstream started, so that (boot, stream, epoch, seq) never repeats.
type Stream struct {
	Idx    uint32 `json:"idx" msgpack:"idx"`
	Val    uint32 `json:"val" msgpack:"val"`
	CPU    uint32 `json:"cpu" msgpack:"cpu"`
	Sender uint32 `json:"sender" msgpack:"sender"`
	Epoch  uint32 `json:"epoch" msgpack:"epoch"`
	Seq    uint32 `json:"seq" msgpack:"seq"`
	Ack    uint32 `json:"ack" msgpack:"ack"`
}

// Record identifies an event the pipeline made (gap, overrun, malformed,
// forged, dropped, filtered, stream_closed, corrupt): the run (random per
// cnstream start) and a counter.
type Record struct {
	Run string `json:"run" msgpack:"run"`
	Seq uint64 `json:"seq" msgpack:"seq"`
}

// Event is the record every sink receives: version 1. Exactly one of the
// kind-specific members is set, the one Kind names.
type Event struct {
	Version int       `json:"v" msgpack:"v"`
	ID      string    `json:"id" msgpack:"id"` // see EventID; derived when empty
	Kind    Kind      `json:"kind" msgpack:"kind"`
	Time    time.Time `json:"time" msgpack:"time"`       // wall clock
	MonoNS  uint64    `json:"mono_ns" msgpack:"mono_ns"` // CLOCK_MONOTONIC of the kernel event; 0 for records
	Host    *Host     `json:"host" msgpack:"host"`
	Stream  *Stream   `json:"stream,omitempty" msgpack:"stream,omitempty"` // connector messages and gaps
	Record  *Record   `json:"record,omitempty" msgpack:"record,omitempty"` // records the pipeline made

	Fork      *ForkEvent     `json:"fork,omitempty" msgpack:"fork,omitempty"`
	Exec      *ExecEvent     `json:"exec,omitempty" msgpack:"exec,omitempty"`
	Exit      *ExitInfo      `json:"exit,omitempty" msgpack:"exit,omitempty"`
	UID       *IDEvent       `json:"uid,omitempty" msgpack:"uid,omitempty"`
	GID       *IDEvent       `json:"gid,omitempty" msgpack:"gid,omitempty"`
	SID       *SIDEvent      `json:"sid,omitempty" msgpack:"sid,omitempty"`
	Ptrace    *PtraceEvent   `json:"ptrace,omitempty" msgpack:"ptrace,omitempty"`
	Comm      *CommInfo      `json:"comm,omitempty" msgpack:"comm,omitempty"`
	Coredump  *CoredumpEvent `json:"coredump,omitempty" msgpack:"coredump,omitempty"`
	Ack       *AckInfo       `json:"ack,omitempty" msgpack:"ack,omitempty"`
	Raw       *RawInfo       `json:"raw,omitempty" msgpack:"raw,omitempty"`
	Gap       *GapInfo       `json:"gap,omitempty" msgpack:"gap,omitempty"`
	Overrun   *OverrunInfo   `json:"overrun,omitempty" msgpack:"overrun,omitempty"`
	Malformed *MalformedInfo `json:"malformed,omitempty" msgpack:"malformed,omitempty"`
	Forged    *ForgedInfo    `json:"forged,omitempty" msgpack:"forged,omitempty"`
	Dropped   *DroppedInfo   `json:"dropped,omitempty" msgpack:"dropped,omitempty"`
	Filtered  *FilteredInfo  `json:"filtered,omitempty" msgpack:"filtered,omitempty"`
	Closed    *ClosedInfo    `json:"stream_closed,omitempty" msgpack:"stream_closed,omitempty"`
	Corrupt   *CorruptInfo   `json:"corrupt,omitempty" msgpack:"corrupt,omitempty"`
	Process   *Process       `json:"process,omitempty" msgpack:"process,omitempty"` // enrichment of the subject process
}

// ExitInfo is an exit event with its wait status decoded: ExitStatus for a
// normal exit, Signal and CoreDumped for death by a signal.
type ExitInfo struct {
	PID        uint32 `json:"pid" msgpack:"pid"`
	TGID       uint32 `json:"tgid" msgpack:"tgid"`
	ParentPID  uint32 `json:"parent_pid" msgpack:"parent_pid"`
	ParentTGID uint32 `json:"parent_tgid" msgpack:"parent_tgid"`
	ExitCode   uint32 `json:"exit_code" msgpack:"exit_code"`                         // the raw wait status
	ExitStatus *int   `json:"exit_status,omitempty" msgpack:"exit_status,omitempty"` // WEXITSTATUS when exited normally
	Signal     *int   `json:"signal,omitempty" msgpack:"signal,omitempty"`           // WTERMSIG when killed by a signal
	CoreDumped bool   `json:"core_dumped" msgpack:"core_dumped"`
	ExitSignal int32  `json:"exit_signal" msgpack:"exit_signal"` // signal to the parent; -1 for threads
}

// NewExitInfo decodes e's wait status.
func NewExitInfo(e ExitEvent) *ExitInfo {
	x := &ExitInfo{PID: e.PID, TGID: e.TGID, ParentPID: e.ParentPID, ParentTGID: e.ParentTGID,
		ExitCode: e.ExitCode, ExitSignal: int32(e.ExitSignal), CoreDumped: e.CoreDumped()}
	switch {
	case e.Exited():
		s := e.Status()
		x.ExitStatus = &s
	case e.Signaled():
		s := e.Signal()
		x.Signal = &s
	}
	return x
}

// CommInfo is a comm event with the name as a string.
type CommInfo struct {
	PID  uint32 `json:"pid" msgpack:"pid"`
	TGID uint32 `json:"tgid" msgpack:"tgid"`
	Comm string `json:"comm" msgpack:"comm"`
}

// AckInfo is the ACK to a LISTEN/IGNORE: a positive errno, 0 for success.
type AckInfo struct {
	Err uint32 `json:"err" msgpack:"err"`
}

// RawInfo is a message of a connector id other than the proc connector.
type RawInfo struct {
	Group   uint32 `json:"group" msgpack:"group"` // multicast group it arrived on, 0 for unicast
	Payload []byte `json:"payload" msgpack:"payload"`
}

// GapInfo: the numbers Expected .. Got-1 of Stream never arrived. Reason
// says where they went: "" for a gap seen while cnstream ran (the kernel or
// the sender skipped them, or they were lost before cnstream read them),
// GapRestart for the numbers the stream advanced while cnstream was not
// running, GapSpoolCorrupt for events destroyed in the disk spool.
type GapInfo struct {
	Expected uint32 `json:"expected" msgpack:"expected"`
	Got      uint32 `json:"got" msgpack:"got"`
	Missing  uint64 `json:"missing" msgpack:"missing"`
	Reason   string `json:"reason,omitempty" msgpack:"reason,omitempty"`
}

// Reasons of a GapInfo; the empty reason is a gap seen within a run.
const (
	// GapRestart: the first message of a stream after a restart of
	// cnstream on the same boot does not follow the last one the previous
	// run handed to its spool; the numbers in between passed while
	// cnstream was not running.
	GapRestart = "restart"
	// GapSpoolCorrupt: the events were in the disk spool, in records that
	// failed their checksum.
	GapSpoolCorrupt = "spool_corrupt"
)

// OverrunInfo: the kernel dropped datagrams because the socket's receive
// queue was full (SO_MEMINFO drops), and how many ENOBUFS reported it.
type OverrunInfo struct {
	KernelDrops uint64 `json:"kernel_drops" msgpack:"kernel_drops"`
	ENOBUFS     uint64 `json:"enobufs" msgpack:"enobufs"`
}

// MalformedInfo: a datagram (or one of its messages) that did not decode.
type MalformedInfo struct {
	Sender uint32 `json:"sender" msgpack:"sender"`
	Error  string `json:"error" msgpack:"error"`
	Data   []byte `json:"data" msgpack:"data"`
}

// ForgedInfo: datagrams rejected because a userspace sender used a
// kernel-owned connector id or group.
type ForgedInfo struct {
	Count uint64 `json:"count" msgpack:"count"`
}

// DroppedInfo: events the pipeline could not deliver.
type DroppedInfo struct {
	Count  uint64 `json:"count" msgpack:"count"`
	Reason string `json:"reason" msgpack:"reason"` // "queue_full_drop_newest", "queue_full_drop_oldest", "sink_failed", "torn_tail", "sink_lost", ...
	Sink   string `json:"sink,omitempty" msgpack:"sink,omitempty"`
}

// FilteredInfo: a filter removed Count events of the record's stream (and
// epoch), numbered First .. Last in the stream's wrap order; not every number
// in between was removed (kept events interleave). Kinds counts them by kind
// name. With it, delivered + missing + dropped + filtered == the seq span.
type FilteredInfo struct {
	Count uint64            `json:"count" msgpack:"count"`
	First uint32            `json:"first" msgpack:"first"`
	Last  uint32            `json:"last" msgpack:"last"`
	Kinds map[string]uint64 `json:"kinds,omitempty" msgpack:"kinds,omitempty"`
}

// ClosedInfo: cnstream stopped following the record's stream (and epoch):
// Reason "idle" (no message for the idle timeout) or "evicted" (the number of
// streams reached its cap and this one was the least recently seen). First
// and Last are the first and the last number seen in this epoch; a later
// message on the same stream starts a new epoch.
type ClosedInfo struct {
	Reason string `json:"reason" msgpack:"reason"`
	First  uint32 `json:"first" msgpack:"first"`
	Last   uint32 `json:"last" msgpack:"last"`
}

// CorruptInfo: the disk spool skipped Bytes bytes of File, from byte
// Offset on, that did not hold valid records; the events in them are lost.
// Reason says why, e.g. "crc mismatch", "torn tail", "bad length".
type CorruptInfo struct {
	File   string `json:"file" msgpack:"file"`
	Offset int64  `json:"offset" msgpack:"offset"`
	Bytes  int64  `json:"bytes" msgpack:"bytes"`
	Reason string `json:"reason" msgpack:"reason"`
}

// Process is what cnstream knows of an event's subject process. Source says
// where it came from: "proc" (read from /proc/PID at the event), "table"
// (the process table kept from earlier events), or "gone" (the process had
// exited before it could be read, or its pid already named a younger
// process: only what the kernel's event says and what a partial read got
// before the process vanished), or "timeout" (reading /proc/PID did not
// finish within the enricher's deadline, e.g. its command line waits for a
// process stuck in a page fault: what was read before, never the command
// line; said again by later events of the process until its next exec is
// read). Fields that could not be read are absent, never guessed. Strings are valid UTF-8: bytes that are
// not are replaced by U+FFFD.
type Process struct {
	PID    uint32 `json:"pid" msgpack:"pid"`
	TGID   uint32 `json:"tgid" msgpack:"tgid"`
	PPID   uint32 `json:"ppid,omitempty" msgpack:"ppid,omitempty"`
	Source string `json:"source" msgpack:"source"`
	// ExecID names this exec image of this process, unique per host and
	// boot, so that exec, uid/gid and exit events join on it whatever
	// happens to the pid afterwards: 22 characters, base64url of a hash of
	// the boot id, the tgid and what made the image (the fork or exec
	// event's kernel timestamp; for a process found running, its start
	// time and memory layout). A fork's child gets its own; an exec gets
	// a new one (PrevExecID links the image it replaced); the threads of
	// a process share it. Absent when the image is not known (a process
	// gone before it was read, a thread whose process is not in the
	// table).
	ExecID string `json:"exec_id,omitempty" msgpack:"exec_id,omitempty"`
	// ParentExecID is the ExecID of the image that forked this process
	// (for a process found running: its parent's as found then); absent
	// when not known.
	ParentExecID string `json:"parent_exec_id,omitempty" msgpack:"parent_exec_id,omitempty"`
	// PrevExecID is, for an image an exec made, the ExecID of the image of
	// the same process it replaced; absent when the process has not
	// exec'd since it was known, or its previous image was not known.
	PrevExecID string `json:"prev_exec_id,omitempty" msgpack:"prev_exec_id,omitempty"`
	// StartTime is when the process (thread group) started, in wall-clock
	// time through the pipeline's clock; StartBootNS the same instant in
	// ns since boot (CLOCK_BOOTTIME). From the fork event when cnstream
	// saw it (ns resolution), else /proc/PID/stat's start time (10 ms
	// resolution). Absent (zero) when not known.
	StartTime   time.Time `json:"start_time,omitzero" msgpack:"start_time,omitempty"`
	StartBootNS uint64    `json:"start_boot_ns,omitempty" msgpack:"start_boot_ns,omitempty"`
	Comm        string    `json:"comm,omitempty" msgpack:"comm,omitempty"`
	Exe         string    `json:"exe,omitempty" msgpack:"exe,omitempty"`
	Cmdline     []string  `json:"cmdline,omitempty" msgpack:"cmdline,omitempty"`
	// Redacted is how many elements of Cmdline had a secret replaced by
	// "[redacted]" (transform/redact); 0 (absent): none, or no redaction.
	Redacted  uint32     `json:"redacted,omitempty" msgpack:"redacted,omitempty"`
	Cwd       string     `json:"cwd,omitempty" msgpack:"cwd,omitempty"`
	UID       *uint32    `json:"uid,omitempty" msgpack:"uid,omitempty"`
	EUID      *uint32    `json:"euid,omitempty" msgpack:"euid,omitempty"`
	GID       *uint32    `json:"gid,omitempty" msgpack:"gid,omitempty"`
	EGID      *uint32    `json:"egid,omitempty" msgpack:"egid,omitempty"`
	User      string     `json:"user,omitempty" msgpack:"user,omitempty"`   // name of UID
	Group     string     `json:"group,omitempty" msgpack:"group,omitempty"` // name of GID
	Cgroup    string     `json:"cgroup,omitempty" msgpack:"cgroup,omitempty"`
	Container *Container `json:"container,omitempty" msgpack:"container,omitempty"`
	// Login is the audit login session (/proc/PID/loginuid and
	// /proc/PID/sessionid), present when both were read; its members are
	// absent when unset (the kernel's 4294967295).
	Login *Login `json:"login,omitempty" msgpack:"login,omitempty"`
	// CapEffHex is the effective capability set (CapEff of
	// /proc/PID/status) as the kernel writes it: 16 lowercase hex digits.
	// Present whenever it was read.
	CapEffHex string `json:"cap_eff_hex,omitempty" msgpack:"cap_eff_hex,omitempty"`
	// CapEff names the effective capabilities ("CAP_CHOWN", ...; a bit
	// the list does not know as "CAP_<n>"), in bit order; absent when the
	// set is empty or full.
	CapEff []string `json:"cap_eff,omitempty" msgpack:"cap_eff,omitempty"`
	// CapFull is true when the effective set holds every capability the
	// running kernel has (root's full set); CapEff is then absent.
	CapFull bool `json:"cap_full,omitempty" msgpack:"cap_full,omitempty"`
	// NoNewPrivs is NoNewPrivs of /proc/PID/status, present when read.
	NoNewPrivs *bool `json:"no_new_privs,omitempty" msgpack:"no_new_privs,omitempty"`
	// NS holds the process's namespaces (/proc/PID/ns/*), present when at
	// least one was read.
	NS        *Namespaces `json:"ns,omitempty" msgpack:"ns,omitempty"`
	Ancestors []Ancestor  `json:"ancestors,omitempty" msgpack:"ancestors,omitempty"` // parent first
}

// AUIDUnset is the kernel's value of loginuid and sessionid for a process
// outside any audit login session: written as an absent member of Login.
const AUIDUnset = 4294967295

// Login is a process's audit login session.
type Login struct {
	AUID      *uint32 `json:"auid,omitempty" msgpack:"auid,omitempty"`             // the login uid; absent: unset
	SessionID *uint32 `json:"session_id,omitempty" msgpack:"session_id,omitempty"` // the audit session id; absent: unset
}

// Namespaces are the inode numbers of a process's namespaces; 0 (absent):
// not read. Differs names, in the order of the fields, those that were read
// for the process and for the host (pid 1's, read once when the enricher
// started; cnstream's own where pid 1's cannot be read) and are not the
// host's: absent when none differ or the host's could not be read.
type Namespaces struct {
	PID     uint64   `json:"pid,omitempty" msgpack:"pid,omitempty"`
	Mnt     uint64   `json:"mnt,omitempty" msgpack:"mnt,omitempty"`
	Net     uint64   `json:"net,omitempty" msgpack:"net,omitempty"`
	User    uint64   `json:"user,omitempty" msgpack:"user,omitempty"`
	UTS     uint64   `json:"uts,omitempty" msgpack:"uts,omitempty"`
	IPC     uint64   `json:"ipc,omitempty" msgpack:"ipc,omitempty"`
	Cgroup  uint64   `json:"cgroup,omitempty" msgpack:"cgroup,omitempty"`
	Differs []string `json:"differs,omitempty" msgpack:"differs,omitempty"`
}

// NamespaceNames are the namespaces of Namespaces, in its order: the names
// of /proc/PID/ns and of Namespaces.Differs.
var NamespaceNames = [7]string{"pid", "mnt", "net", "user", "uts", "ipc", "cgroup"}

// Inodes returns the seven inode numbers in the order of NamespaceNames.
func (n *Namespaces) Inodes() [7]uint64 {
	return [7]uint64{n.PID, n.Mnt, n.Net, n.User, n.UTS, n.IPC, n.Cgroup}
}

// Container is derived from a cgroup path.
type Container struct {
	ID      string `json:"id" msgpack:"id"`
	Runtime string `json:"runtime" msgpack:"runtime"` // docker, containerd, cri-o, podman, systemd
	PodUID  string `json:"pod_uid,omitempty" msgpack:"pod_uid,omitempty"`
}

// Ancestor is one step of a process's parent chain, from the process table.
type Ancestor struct {
	PID    uint32 `json:"pid" msgpack:"pid"`
	ExecID string `json:"exec_id,omitempty" msgpack:"exec_id,omitempty"` // the ancestor's current image (Process.ExecID)
	Comm   string `json:"comm,omitempty" msgpack:"comm,omitempty"`
	Exe    string `json:"exe,omitempty" msgpack:"exe,omitempty"`
}

// AppendEventID appends the id of e: stable across retries and unique per
// host boot.
//
//	connector messages: <boot_id>/<idx>.<val>/c<cpu>/<epoch>/<seq>   (process events: per CPU)
//	                    <boot_id>/<idx>.<val>/s<sender>/<epoch>/<seq> (other ids: per sender port)
//	pipeline records:   <boot_id>/r/<run>/<seq>
func AppendEventID(b []byte, e *Event) []byte {
	if e.Host != nil {
		b = append(b, e.Host.BootID...)
	}
	if e.Record != nil {
		b = append(b, "/r/"...)
		b = append(b, e.Record.Run...)
		b = append(b, '/')
		return appendDecimal(b, e.Record.Seq)
	}
	s := e.Stream
	if s == nil {
		return b
	}
	b = append(b, '/')
	b = appendDecimal(b, uint64(s.Idx))
	b = append(b, '.')
	b = appendDecimal(b, uint64(s.Val))
	if s.Idx == ProcID.Idx && s.Val == ProcID.Val && s.Sender == 0 {
		b = append(b, "/c"...)
		b = appendDecimal(b, uint64(s.CPU))
	} else {
		b = append(b, "/s"...)
		b = appendDecimal(b, uint64(s.Sender))
	}
	b = append(b, '/')
	b = appendDecimal(b, uint64(s.Epoch))
	b = append(b, '/')
	return appendDecimal(b, uint64(s.Seq))
}

// EventID returns e.ID, or the id derived from e when ID is empty.
func (e *Event) EventID() string {
	if e.ID != "" {
		return e.ID
	}
	return string(AppendEventID(nil, e))
}
