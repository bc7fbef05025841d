// Package enrich tells what is known of the process behind each kernel
// process event: the host's identity, the event's wall-clock time, and the
// subject process's program, arguments, ids, names, cgroup, container,
// login session, capabilities, namespaces and ancestors.
//
// # What it does
//
// ReadHost reads the machine's identity once at start. A Clock turns the
// kernel's CLOCK_MONOTONIC timestamps into wall-clock time (see Clock for
// its accuracy). A Table is the process table: Seed fills it from /proc,
// and every process event then keeps it current and is described by it.
// Enrich (or Process, the transform.Enricher method) applies one event and
// returns a schema.Process for its subject:
//
//	fork      the child: a new process has its parent's program (exe,
//	          cmdline, cwd, cgroup) until its exec; a new thread shares
//	          what is known of its process
//	exec      the process read from /proc/PID right away: status, stat,
//	          exe, cwd, cgroup, loginuid, sessionid, ns/*, cmdline, in one
//	          pass, within a deadline, without retries
//	exit      the entry as it was, so the exit carries the last known
//	          program; then the entry goes (a group leader's exit takes the
//	          whole thread group)
//	comm      the entry with its new name
//	uid, gid  the entry with its new real and effective ids (a uid event
//	          drops the capabilities: a uid change changes them)
//	others    the entry (sid, ptrace, coredump)
//
// A subject missing from the table (not seeded, evicted, or its events
// lost) is read from /proc when the event comes, except for exit. Names of
// users and groups come from os/user through a bounded cache that remembers
// missing ids too. Containers are recognised from cgroup paths
// (ParseCgroup). Ancestors are followed in the table up to
// Config.AncestorDepth, parent first.
//
// Command lines are redacted as they are read from /proc (Seed and every
// read of an event), when Config.Redact is set (a transform/redact
// Redactor; cmd/cnstream sets it unless transform.redact.enabled is false):
// the table holds only the redacted argv, so every event that carries it
// (the exec, later events, a fork's child, the exit) carries it redacted,
// with schema.Process.Redacted counting the elements changed, and the raw
// argv never leaves the table's read. The cost is paid once per read, not
// per event.
//
// # Login session, capabilities, namespaces
//
// Each read of /proc/PID also takes the audit login session (loginuid and
// sessionid: schema.Process.Login, members absent when the kernel says
// unset, 4294967295), the effective capabilities and NoNewPrivs from the
// status it reads anyway (CapEffHex always, CapEff names unless the set is
// empty or CapFull: every capability up to the kernel's cap_last_cap, read
// by New), and the inode numbers of the seven namespaces of /proc/PID/ns
// (schema.Process.NS). New reads the host's namespaces once: pid 1's, or
// where those cannot be read (readlink of another process's ns/ needs
// ptrace access to it, which a cnstream with fewer capabilities than pid 1
// lacks) this process's own; NS.Differs names the namespaces that are not
// the host's. All are kept in the table like the program: threads share
// them, a forked process keeps its parent's login, capabilities and
// no_new_privs (fork copies them) but not its namespaces (clone may have
// made new ones: NS is absent until its exec is read). Nothing that
// changes them without an exec (capset, prctl, setns, unshare) raises an
// event, so they describe the process at its last read.
//
// # Exec ids and start times
//
// Every exec image the table knows has an id (schema.Process.ExecID): 16
// bytes of SHA-256, base64url, over the boot id (Config.BootID), the tgid
// and what made the image: the fork event's kernel timestamp for a process
// whose fork the table saw, the exec event's for an exec, and for a
// process found running (Seed, or first named by a later event) its start
// time and a hash of its memory layout from /proc/PID/stat (the fields an
// exec sets: they differ between two images of one process under address
// space randomization), so that such ids are the same for every run of
// cnstream on the boot. A fork's child gets its own id and ParentExecID,
// the forking image's; an exec a new one, PrevExecID naming the image it
// replaced, and keeps ParentExecID and the start time; threads share their
// process's. Uid, gid, comm and exit events carry the id of the image in
// the table, so that they join its exec after the pid is reused; an exec
// whose process is gone before its read keeps an entry with its id for its
// exit. An event of a process the table never had is described "gone"
// with the id the event itself gives (fork, exec) or none. StartBootNS is
// the fork event's time on CLOCK_BOOTTIME (ns) or /proc's start time (10
// ms ticks); StartTime is it in wall time through Config.Clock.
//
// Apply is Enrich without the description, for events that are filtered out
// but must still keep the table current. Call exactly one of them for every
// process event, in the order the events arrived.
//
// # Concurrency
//
// A Table is owned by one goroutine, the enrichment stage, which calls Seed,
// Apply, Enrich, Process and Ancestors. Its /proc reads run on a small pool
// of workers (Config.ProcReadWorkers, default 4: a goroutine started per
// read, none left when the reads are done) and the enrichment goroutine
// waits for each at most Config.ProcReadTimeout (default 100 ms): reading
// /proc/PID/cmdline takes the target's mmap lock, which a process stuck in
// a page fault on a hung FUSE or NFS file can hold without bound, and such
// a read cannot be cancelled. A read past the deadline is written off
// (Stats.ProcTimeouts; Stats.ProcStuck while it stays in the kernel; its
// worker returns when the kernel lets it go); when every worker is stuck,
// reads are skipped at once (Stats.ProcSkipped). So no event waits longer
// than the deadline, and the stuck reads hold at most ProcReadWorkers OS
// threads and file descriptors. Stats may be called from any goroutine (the
// counters are atomics). A Process returned belongs to the caller, who may
// change it or hand it to another goroutine: the table keeps no reference
// to it, its slices (Cmdline, Ancestors) or its pointers (ids, Container).
// A Clock may be used from any goroutine.
//
// # Source, and what "gone" and "timeout" mean
//
// schema.Process.Source says where the description came from: "table"
// (kept from earlier events and the seed), "proc" (read from /proc during
// this event), or "gone". "gone" means the process could not be read: its
// /proc directory no longer existed (ENOENT, or ESRCH between open and
// read), or its pid already named another thread group or a younger
// process (Stats.ProcReused): the start time in /proc/PID/stat (field 22,
// ticks of the boot clock) is later than the event (its CLOCK_MONOTONIC
// timestamp plus the boot-monotonic offset measured through /proc/uptime,
// within 30 ms; not checked for events without a timestamp), or differs
// from the one the table read earlier for that process. Every file of one
// read is opened through one descriptor of the /proc/PID directory, so a
// pid reused during the read cannot mix two processes. Such a Process
// holds only what the kernel's event said (pid and tgid; the parent when
// the event names one, with that parent's ancestors from the table; a comm
// event's name; a uid or gid event's ids), never a guess and never data of
// the process before its exec. A read that got
// part of the files before the process exited keeps what it got, and says
// "proc" only when it got the command line or the executable (or the
// status of a kernel thread, which has neither); otherwise "gone". Every
// read that ends "gone" is counted in Stats.ProcGone.
//
// "timeout" means the read did not finish within Config.ProcReadTimeout, or
// was skipped because every worker was stuck. The files are read in the
// order status, stat, exe, cwd, cgroup, loginuid, sessionid, ns/*, cmdline, so that the one read that
// can hang comes last: such a Process holds what was read before it (name,
// ids, parent, exe, cwd, cgroup, container), never a command line. The
// entry is kept with what was read, so the stuck process's later events
// (and its forks) come from the table without waiting again, and say
// "timeout" too until an exec of it is read in full.
//
// What is read describes the process when it was read, which is after the
// event: a process that calls exec twice in quick succession may show the
// second program at the first exec. The fork of a thread names the parent
// of its process, not the thread that created it, so a new thread takes
// its name and ids from the group leader until its own comm, uid or gid
// events say otherwise.
//
// # Bounds
//
// The table holds at most Config.MaxEntries threads and processes (default
// 65536); beyond that the least recently used entry is evicted (a group
// leader after its threads) and counted in Stats.Evictions. Seed fills the
// table with processes first and threads while room remains, and counts
// the threads it leaves out. Each name cache holds at most
// Config.NameCacheSize ids (default 4096), found or not, for Config.NameTTL
// of event time (default 1 minute). Command lines are read up to
// Config.MaxCmdline bytes (default 4 KiB), the argument cut at the limit
// left out. An entry costs about 160 bytes plus its process's strings
// (command line, exe, cwd, cgroup; shared by the threads of a process and
// by a fork's child until its exec): measured at about 500 bytes for a
// process with 150 bytes of such text, so about 32 MiB for a full table,
// and MaxEntries × MaxCmdline (256 MiB with the defaults) at the very
// worst. A process read also keeps its credentials and namespaces (about
// 150 bytes more, estimated from the structs' sizes, not measured; shared by
// its threads, the credentials by its forks too, and capability names by
// every process with the same set). Ancestry stops at Config.AncestorDepth (default 4), at pid 1, at a
// parent missing from the table, and at a parent newer than its child (its
// pid was reused), and cannot loop.
package enrich
