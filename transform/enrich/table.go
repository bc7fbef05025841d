package enrich

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/transform/redact"
)

// Where a schema.Process came from (schema.Process.Source).
const (
	SourceProc  = "proc"  // read from /proc/PID while handling the event
	SourceTable = "table" // the process table, kept from earlier events
	SourceGone  = "gone"  // the process had exited: only the kernel's fields, and what a partial read got
	// SourceTimeout: reading /proc/PID did not finish within
	// Config.ProcReadTimeout (or was skipped, every read worker being
	// stuck): what was read before the read that hung (status, exe, cwd,
	// cgroup; not the command line), or only the kernel's fields. Later
	// events of the process, and its forks, say it again until its next
	// exec is read in full.
	SourceTimeout = "timeout"
)

// Defaults of Config.
const (
	DefaultProcRoot      = "/proc"
	DefaultMaxEntries    = 65536
	DefaultAncestorDepth = 4
	DefaultNameCacheSize = 4096
	DefaultNameTTL       = time.Minute
	DefaultMaxCmdline    = 4 << 10
	// DefaultProcReadTimeout: an event waits at most this long for /proc.
	// A healthy read of /proc/PID takes 20-40 µs; 100 ms rides out the
	// host's vCPU stalls of tens of ms, and 100 ms of the thread storm's
	// 170k events/s (17k datagrams) fits a 128 MiB socket buffer many
	// times over.
	DefaultProcReadTimeout = 100 * time.Millisecond
	DefaultProcReadWorkers = 4
)

// Config configures a Table. The zero value works.
type Config struct {
	// ProcRoot is where procfs is mounted. Default "/proc".
	ProcRoot string
	// MaxEntries bounds the table: threads and processes count one each.
	// Beyond it the least recently used entry is evicted. Default 65536.
	MaxEntries int
	// AncestorDepth is how many ancestors Enrich reports. Default 4;
	// negative: none.
	AncestorDepth int
	// NameCacheSize bounds each of the user and group name caches.
	// Default 4096.
	NameCacheSize int
	// NameTTL is how long a name, or the absence of one, is trusted,
	// measured on the events' timestamps. Default 1 minute.
	NameTTL time.Duration
	// MaxCmdline is how many bytes of /proc/PID/cmdline are read; an
	// argument cut at the limit is left out. With MaxEntries it bounds the
	// table's memory. Default 4 KiB (what /proc showed before Linux 4.2);
	// long Java class paths need more.
	MaxCmdline int
	// LookupUser and LookupGroup resolve ids to names; an error means "no
	// name" and is cached like a name. Default: os/user, which reads
	// /etc/passwd and /etc/group when built without cgo and asks the C
	// library (NSS: files, but also LDAP or sssd if so configured) with
	// cgo; a slow directory then slows the enrichment goroutine on cache
	// misses, once per id and NameTTL.
	LookupUser  func(uid uint32) (string, error)
	LookupGroup func(gid uint32) (string, error)
	// ProcReadTimeout is the longest an event waits for its /proc/PID
	// read. A read of /proc/PID/cmdline waits for the target's mmap lock,
	// without bound and without a way to cancel it, when the process is
	// stuck in a page fault (hung FUSE or NFS file); past the deadline the
	// event goes on with what was read (Source "timeout") and the read's
	// worker is written off until the kernel lets it go. Default 100 ms.
	ProcReadTimeout time.Duration
	// ProcReadWorkers bounds the reads in flight, stuck ones included:
	// each holds an OS thread and a file descriptor. When every worker is
	// stuck, reads are skipped at once (Source "timeout",
	// Stats.ProcSkipped). Default 4.
	ProcReadWorkers int
	// Redact replaces secrets in command lines as they are read from
	// /proc (before any event carries them), counted in
	// schema.Process.Redacted. Default nil: command lines as read.
	Redact *redact.Redactor
	// BootID goes into every exec id (schema.Process.ExecID), making ids
	// unique across boots and hosts. Default: read from
	// ProcRoot/sys/kernel/random/boot_id ("" when it cannot be: ids are
	// then unique per boot only).
	BootID string
	// Clock turns kernel timestamps into wall-clock time, for
	// schema.Process.StartTime: give the pipeline's, so that start times
	// and event times agree. Default: a Clock of NewClock, or no
	// StartTime where that fails.
	Clock interface{ Wall(monoNS uint64) time.Time }
}

func (c Config) procReadTimeout() time.Duration {
	if c.ProcReadTimeout == 0 {
		return DefaultProcReadTimeout
	}
	return c.ProcReadTimeout
}

func (c Config) procReadWorkers() int {
	if c.ProcReadWorkers == 0 {
		return DefaultProcReadWorkers
	}
	return c.ProcReadWorkers
}

func (c Config) procRoot() string {
	if c.ProcRoot == "" {
		return DefaultProcRoot
	}
	return filepath.Clean(c.ProcRoot)
}

func (c Config) maxEntries() int {
	if c.MaxEntries == 0 {
		return DefaultMaxEntries
	}
	return c.MaxEntries
}

func (c Config) ancestorDepth() int {
	switch {
	case c.AncestorDepth == 0:
		return DefaultAncestorDepth
	case c.AncestorDepth < 0:
		return 0
	}
	return c.AncestorDepth
}

func (c Config) nameCacheSize() int {
	if c.NameCacheSize == 0 {
		return DefaultNameCacheSize
	}
	return c.NameCacheSize
}

func (c Config) nameTTL() time.Duration {
	if c.NameTTL == 0 {
		return DefaultNameTTL
	}
	return c.NameTTL
}

func (c Config) maxCmdline() int {
	if c.MaxCmdline == 0 {
		return DefaultMaxCmdline
	}
	return c.MaxCmdline
}

// Stats are a Table's counters. Entries is current; the others count since
// New.
type Stats struct {
	Entries    int    // threads and processes in the table
	Evictions  uint64 // entries evicted because the table was full
	ProcReads  uint64 // reads of /proc/PID (exec events, and subjects missing from the table)
	ProcGone   uint64 // of those, reads that found the process gone (Source "gone")
	ProcReused uint64 // of those, reads that found the pid naming a younger process than the event's (start time, field 22 of stat)
	// ProcTimeouts counts reads of /proc/PID given up at
	// Config.ProcReadTimeout (Source "timeout"); ProcStuck is how many of
	// them are still blocked in the kernel now, each holding a worker;
	// ProcSkipped counts reads not even started because every worker was
	// stuck (Source "timeout" too).
	ProcTimeouts uint64
	ProcStuck    int
	ProcSkipped  uint64
	Seeded       uint64 // entries Seed added
	SeedSkipped  uint64 // threads Seed left out because the table was full
	NameHits     uint64 // user and group names found in the cache
	NameMisses   uint64 // names looked up (os/user), found or not
	NameErrors   uint64 // lookups that failed for another reason than "no such id"
	// Redacted counts the command lines read in which Config.Redact
	// replaced a secret, RedactedArgs the arguments it changed.
	Redacted     uint64
	RedactedArgs uint64
}

// entry is one thread or process. A process's threads share its info.
type entry struct {
	pid, tgid, ppid uint32
	start           uint64 // start time in clock ticks after boot, as /proc/PID/stat said; 0: not read
	// serial orders creation: 0 for entries Seed read, then increasing.
	// A parent is only believed when it is older than its child, which
	// keeps a reused pid out of an ancestry.
	serial  uint64
	comm    string
	uid     [2]uint32 // real, effective
	gid     [2]uint32
	haveUID bool
	haveGID bool
	// The exec image's identity (schema.Process.ExecID, ParentExecID,
	// PrevExecID; "": not known) and the process's start, ns after boot
	// (0: not known). A process's threads hold their leader's.
	execID, parentExecID, prevExecID string
	startNS                          uint64
	info                             *procInfo          // never nil; shared, never modified once set
	cred                             *credInfo          // nil: not read; shared, never modified
	ns                               *schema.Namespaces // nil: not read; shared, never modified

	leader  *entry   // a thread's group leader, when in the table
	threads []*entry // a leader's other threads in the table
	tidx    int      // index in leader.threads

	prev, next *entry // LRU ring
}

// procInfo is what all threads of a process share. It is immutable: events
// replace it, forks share it.
type procInfo struct {
	timedOut         bool // the read it came from timed out: cmdline at least is missing
	gone             bool // nothing was read: the process was gone at its exec
	exe, cwd, cgroup string
	cmdline          []string
	redacted         uint32 // elements of cmdline Config.Redact changed
	container        *schema.Container
}

var (
	emptyInfo   = &procInfo{}
	timeoutInfo = &procInfo{timedOut: true}
	goneInfo    = &procInfo{gone: true}
)

// Table is the process table: what is known of every thread and process,
// seeded from /proc and kept current by events. See the package
// documentation for its contract.
type Table struct {
	procRoot string
	max      int
	depth    int
	m        map[uint32]*entry
	lru      entry // ring sentinel; lru.next is the most recently used
	free     []*entry
	serial   uint64
	rd       procReader // Seed's directory listing; the reads go through pool
	pool     *readPool
	redact   *redact.Redactor
	hostNS   [7]uint64 // pid 1's namespaces, read by New; 0: unread
	capLast  int       // the kernel's highest capability
	caps     capCache  // effective sets described
	users    nameCache
	groups   nameCache

	bootOffset func() (int64, bool) // CLOCK_BOOTTIME - CLOCK_MONOTONIC, ns
	bootID     string
	clock      interface{ Wall(uint64) time.Time }
	// CLOCK_BOOTTIME - CLOCK_MONOTONIC to the ns (bootOff), measured at
	// monotonic time bootAt; measureBoot reads the clocks.
	bootNS      int64
	bootAt      uint64
	bootOK      bool
	measureBoot func() (time.Duration, error)
	offset      int64
	offsetOK    bool

	entries                          atomic.Int64
	evictions, procReads, procGone   atomic.Uint64
	procReused                       atomic.Uint64
	seededN, seedSkipped             atomic.Uint64
	nameHits, nameMisses, nameErrors atomic.Uint64
	redacted, redactedArgs           atomic.Uint64
}

// New returns an empty Table for cfg.
func New(cfg Config) (*Table, error) {
	switch {
	case cfg.MaxEntries < 0:
		return nil, fmt.Errorf("enrich: Config.MaxEntries %d is negative", cfg.MaxEntries)
	case cfg.NameCacheSize < 0:
		return nil, fmt.Errorf("enrich: Config.NameCacheSize %d is negative", cfg.NameCacheSize)
	case cfg.NameTTL < 0:
		return nil, fmt.Errorf("enrich: Config.NameTTL %v is negative", cfg.NameTTL)
	case cfg.MaxCmdline < 0:
		return nil, fmt.Errorf("enrich: Config.MaxCmdline %d is negative", cfg.MaxCmdline)
	case cfg.ProcReadTimeout < 0:
		return nil, fmt.Errorf("enrich: Config.ProcReadTimeout %v is negative", cfg.ProcReadTimeout)
	case cfg.ProcReadWorkers < 0:
		return nil, fmt.Errorf("enrich: Config.ProcReadWorkers %d is negative", cfg.ProcReadWorkers)
	}
	t := &Table{
		procRoot: cfg.procRoot(),
		max:      cfg.maxEntries(),
		depth:    cfg.ancestorDepth(),
		m:        make(map[uint32]*entry),
		redact:   cfg.Redact,
		bootID:   cfg.BootID,
		clock:    cfg.Clock,
	}
	if t.bootID == "" {
		t.bootID = readBootID(t.procRoot)
	}
	if t.clock == nil {
		if c, err := NewClock(ClockConfig{}); err == nil {
			t.clock = c
		}
	}
	t.measureBoot = measureBoot
	t.hostNS = readHostNS(t.procRoot)
	t.capLast = readCapLast(t.procRoot)
	t.caps = make(capCache)
	t.lru.prev, t.lru.next = &t.lru, &t.lru
	t.rd = procReader{root: t.procRoot, maxCmdline: cfg.maxCmdline()}
	maxCmd := cfg.maxCmdline()
	t.pool = newReadPool(cfg.procReadWorkers(), cfg.procReadTimeout(), func() procReader {
		return procReader{maxCmdline: maxCmd}
	})
	t.bootOffset = procBootOffset
	lu, lg := cfg.LookupUser, cfg.LookupGroup
	if lu == nil {
		lu = lookupUser
	}
	if lg == nil {
		lg = lookupGroup
	}
	ttl := uint64(cfg.nameTTL())
	t.users.init(lu, cfg.nameCacheSize(), ttl)
	t.groups.init(lg, cfg.nameCacheSize(), ttl)
	return t, nil
}

// Stats returns the counters. It may be called from any goroutine.
func (t *Table) Stats() Stats {
	return Stats{
		Entries:      int(t.entries.Load()),
		Evictions:    t.evictions.Load(),
		ProcReads:    t.procReads.Load(),
		ProcGone:     t.procGone.Load(),
		ProcReused:   t.procReused.Load(),
		ProcTimeouts: t.pool.timeouts.Load(),
		ProcStuck:    int(t.pool.stuck.Load()),
		ProcSkipped:  t.pool.skipped.Load(),
		Seeded:       t.seededN.Load(),
		SeedSkipped:  t.seedSkipped.Load(),
		NameHits:     t.nameHits.Load(),
		NameMisses:   t.nameMisses.Load(),
		NameErrors:   t.nameErrors.Load(),
		Redacted:     t.redacted.Load(),
		RedactedArgs: t.redactedArgs.Load(),
	}
}

// ---- LRU and entry bookkeeping ----

func (t *Table) unlinkLRU(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (t *Table) pushFront(e *entry) {
	e.prev, e.next = &t.lru, t.lru.next
	t.lru.next.prev = e
	t.lru.next = e
}

// touch marks e used, and its leader after it, so that a leader is always
// more recently used than its threads and is evicted after them.
func (t *Table) touch(e *entry) {
	if t.lru.next != e {
		t.unlinkLRU(e)
		t.pushFront(e)
	}
	if l := e.leader; l != nil && t.lru.next != l {
		t.unlinkLRU(l)
		t.pushFront(l)
	}
}

func (t *Table) newEntry() *entry {
	if n := len(t.free); n > 0 {
		e := t.free[n-1]
		t.free = t.free[:n-1]
		return e
	}
	return new(entry)
}

const maxFree = 1024

// insert adds e (not yet in the table), replacing whatever had its pid,
// links it to leader (when not nil and not e), and evicts beyond the cap.
func (t *Table) insert(e *entry, leader *entry) {
	if old := t.m[e.pid]; old != nil {
		t.removeGroup(old)
	}
	t.m[e.pid] = e
	t.entries.Add(1)
	t.pushFront(e)
	if leader != nil && leader != e && leader.pid == e.tgid && t.m[leader.pid] == leader {
		e.leader = leader
		e.tidx = len(leader.threads)
		leader.threads = append(leader.threads, e)
	}
	t.touch(e)
	for len(t.m) > t.max {
		v := t.lru.prev
		if v == &t.lru || v == e || v == e.leader {
			break // never the entry being added or its leader
		}
		t.remove(v)
		t.evictions.Add(1)
	}
}

// remove takes one entry out. A leader's remaining threads stay, detached.
func (t *Table) remove(e *entry) {
	if t.m[e.pid] == e {
		delete(t.m, e.pid)
		t.entries.Add(-1)
	}
	if e.prev != nil {
		t.unlinkLRU(e)
	}
	if l := e.leader; l != nil {
		last := l.threads[len(l.threads)-1]
		l.threads[e.tidx] = last
		last.tidx = e.tidx
		l.threads[len(l.threads)-1] = nil
		l.threads = l.threads[:len(l.threads)-1]
	}
	for _, th := range e.threads {
		th.leader = nil
	}
	clear(e.threads)
	threads := e.threads[:0]
	if cap(threads) > 16 {
		threads = nil // a big group's list is not kept for reuse
	}
	*e = entry{threads: threads}
	if len(t.free) < maxFree {
		t.free = append(t.free, e)
	}
}

// removeGroup removes e and, when it leads a thread group, every thread of
// the group.
func (t *Table) removeGroup(e *entry) {
	for len(e.threads) > 0 {
		t.remove(e.threads[len(e.threads)-1])
	}
	t.remove(e)
}

// lookup returns the entry of pid when it belongs to thread group tgid (0:
// any). An entry of another group is stale, from missed events: it is
// removed.
func (t *Table) lookup(pid, tgid uint32) *entry {
	e := t.m[pid]
	if e == nil {
		return nil
	}
	if tgid != 0 && e.tgid != tgid {
		t.removeGroup(e)
		return nil
	}
	t.touch(e)
	return e
}

// leaderOf returns the table's entry for the leader of thread group tgid.
func (t *Table) leaderOf(tgid uint32) *entry {
	if l := t.m[tgid]; l != nil && l.tgid == tgid {
		return l
	}
	return nil
}

// ---- reading /proc ----

// readProc reads pid now, within the deadline, and counts it. known is
// the start time the table knows for the process (0: none); mono the
// event's timestamp (0: unknown): a process that started after it is not
// the event's.
func (t *Table) readProc(pid, tgid uint32, known, mono uint64) procRead {
	t.procReads.Add(1)
	check := startCheck{known: known, notAfter: t.startBound(mono)}
	r := t.pool.read(t.rd.root, pid, tgid, check)
	if r.reused && check.notAfter != 0 && check.known == 0 {
		// Maybe the clocks moved apart (a suspend adds to the boot
		// clock): measure again and check once more.
		t.offsetOK = false
		if nb := t.startBound(mono); nb > check.notAfter {
			check.notAfter = nb
			r = t.pool.read(t.rd.root, pid, tgid, check)
		}
	}
	switch {
	case r.timedOut:
	case r.reused:
		t.procReused.Add(1)
		t.procGone.Add(1)
	case !r.usable():
		t.procGone.Add(1)
	}
	return r
}

// Start times in /proc/PID/stat are in clock ticks (USER_HZ, 100 on every
// Linux architecture) of CLOCK_BOOTTIME; event timestamps are
// CLOCK_MONOTONIC ns. startSlack covers the tick's truncation and the
// resolution of /proc/uptime, through which the offset is measured.
const (
	tickNS     = uint64(time.Second / 100)
	startSlack = 3
)

// startBound returns the latest start time (ticks after boot) a process
// alive at monotonic time mono can have, or 0 when unknown.
func (t *Table) startBound(mono uint64) uint64 {
	if mono == 0 {
		return 0
	}
	if !t.offsetOK {
		off, ok := t.bootOffset()
		if !ok {
			return 0
		}
		t.offset, t.offsetOK = off, true
	}
	boot := int64(mono) + t.offset
	if boot < 0 {
		return 0
	}
	return uint64(boot)/tickNS + startSlack
}

// procBootOffset measures CLOCK_BOOTTIME - CLOCK_MONOTONIC in ns, to 10 ms:
// /proc/uptime against source.Monotonic.
//
// The monotonic clock is read first: a stall between the two reads (this
// host's vCPUs stall for up to half a second) then makes the offset larger,
// never smaller, so a process is never taken for a successor of itself; it
// only widens the window in which a reused pid goes unnoticed.
func procBootOffset() (int64, bool) {
	mono, err := source.Monotonic()
	if err != nil {
		return 0, false
	}
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, false
	}
	f, _, _ := strings.Cut(string(b), " ")
	secs, frac, _ := strings.Cut(f, ".")
	s, err1 := strconv.ParseUint(secs, 10, 63)
	c, err2 := strconv.ParseUint((frac + "00")[:2], 10, 8)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	// uptime is truncated to its 10 ms: the next tick bounds the true value.
	return int64(s*uint64(time.Second)+(c+1)*tickNS) - int64(mono), true
}

// fill sets e from a read: only what was read, nothing kept from before.
func (e *entry) fill(r *procRead, t *Table) {
	rd := t.redact
	e.cred = newCredInfo(r, t.capLast, t.caps)
	e.ns = newNSInfo(&r.ns, &t.hostNS)
	st := &r.status
	e.ppid, e.comm = 0, ""
	e.haveUID, e.haveGID = false, false
	e.uid, e.gid = [2]uint32{}, [2]uint32{}
	if r.haveStatus {
		if st.havePPid {
			e.ppid = st.ppid
		}
		if st.haveName {
			e.comm = st.name
		}
		if st.haveUID {
			e.uid, e.haveUID = [2]uint32{st.uid, st.euid}, true
		}
		if st.haveGID {
			e.gid, e.haveGID = [2]uint32{st.gid, st.egid}, true
		}
	}
	e.start = 0
	if r.haveStart {
		e.start = r.start
	}
	switch {
	case r.haveCmdline || r.haveExe || r.haveCwd || r.haveCgroup:
		var n uint32
		if rd != nil && len(r.cmdline) > 0 {
			// The read's cmdline is its own (parseCmdline made it): redacted
			// in place, once per read, for every event that carries it.
			n = uint32(rd.Redact(r.cmdline, r.exe))
			if n > 0 {
				t.redacted.Add(1)
				t.redactedArgs.Add(uint64(n))
			}
		}
		e.info = &procInfo{timedOut: r.timedOut, exe: r.exe, cwd: r.cwd, cgroup: r.cgroup, cmdline: r.cmdline, redacted: n, container: r.container}
	case r.timedOut:
		e.info = timeoutInfo
	default:
		e.info = emptyInfo
	}
}

// readNew reads pid (of thread group tgid) from /proc into a new entry,
// returning nil when the process is gone with nothing read. The entry is
// new to the table: younger than everything already there.
func (t *Table) readNew(pid, tgid uint32, mono uint64) (*entry, string) {
	r := t.readProc(pid, tgid, 0, mono)
	if r.reused || r.gone && !r.haveStatus {
		return nil, SourceGone
	}
	e := t.newEntry()
	e.pid, e.tgid = pid, tgid
	if tgid == 0 {
		e.tgid = r.status.tgid
		if !r.status.haveTgid {
			e.tgid = pid
		}
	}
	e.fill(&r, t)
	t.serial++
	e.serial = t.serial
	t.insert(e, t.leaderOf(e.tgid))
	t.identify(e, &r)
	switch {
	case r.timedOut:
		// Kept, so that the next events of a stuck process do not wait
		// for it again.
		return e, SourceTimeout
	case r.usable():
		return e, SourceProc
	}
	return e, SourceGone
}

// ---- events ----

// Apply updates the table with ev, as Enrich does, without describing the
// subject. Use it for events whose enrichment is not wanted (filtered out):
// call exactly one of Apply and Enrich per event, in stream order.
func (t *Table) Apply(ev schema.ProcEvent) { t.apply(&ev, false) }

// Enrich applies ev to the table and describes its subject: for fork the
// child, for exec the process as /proc shows it now, for exit the entry as
// it was before removal, for the other events the table's entry, read from
// /proc if missing. It returns nil for events without a subject (ACK,
// unknown types). The returned Process belongs to the caller: the table
// keeps no reference to it or to its slices and pointers.
func (t *Table) Enrich(ev schema.ProcEvent) *schema.Process { return t.apply(&ev, true) }

// Process is Enrich through a pointer, for transform.Enricher.
func (t *Table) Process(ev *schema.ProcEvent) *schema.Process { return t.apply(ev, true) }

func (t *Table) apply(ev *schema.ProcEvent, describe bool) *schema.Process {
	switch ev.What {
	case schema.ProcEventFork:
		return t.fork(ev, describe)
	case schema.ProcEventExec:
		return t.exec(ev, describe)
	case schema.ProcEventExit:
		return t.exit(ev, describe)
	case schema.ProcEventComm:
		e, src := t.subject(ev.Comm.PID, ev.Comm.TGID, ev.TimestampNS)
		if e == nil {
			return t.gone(ev, describe, ev.Comm.PID, ev.Comm.TGID, 0)
		}
		e.comm = ev.Comm.Name()
		return t.describe(ev, describe, e, src, 0)
	case schema.ProcEventUID, schema.ProcEventGID:
		id := ev.ID
		e, src := t.subject(id.PID, id.TGID, ev.TimestampNS)
		if e == nil {
			return t.gone(ev, describe, id.PID, id.TGID, 0)
		}
		if ev.What == schema.ProcEventUID {
			e.uid, e.haveUID = [2]uint32{id.Real, id.Effective}, true
			e.cred = e.cred.withoutCaps() // a uid change changes the capabilities
		} else {
			e.gid, e.haveGID = [2]uint32{id.Real, id.Effective}, true
		}
		return t.describe(ev, describe, e, src, 0)
	case schema.ProcEventSID:
		return t.other(ev, describe, ev.SID.PID, ev.SID.TGID, 0)
	case schema.ProcEventPtrace:
		return t.other(ev, describe, ev.Ptrace.PID, ev.Ptrace.TGID, 0)
	case schema.ProcEventCoredump:
		return t.other(ev, describe, ev.Coredump.PID, ev.Coredump.TGID, ev.Coredump.ParentTGID)
	}
	return nil
}

// subject finds pid in the table, or reads it from /proc.
func (t *Table) subject(pid, tgid uint32, mono uint64) (*entry, string) {
	if e := t.lookup(pid, tgid); e != nil {
		return e, SourceTable
	}
	return t.readNew(pid, tgid, mono)
}

func (t *Table) other(ev *schema.ProcEvent, describe bool, pid, tgid, ppid uint32) *schema.Process {
	e, src := t.subject(pid, tgid, ev.TimestampNS)
	if e == nil {
		return t.gone(ev, describe, pid, tgid, ppid)
	}
	return t.describe(ev, describe, e, src, ppid)
}

func (t *Table) fork(ev *schema.ProcEvent, describe bool) *schema.Process {
	f := ev.Fork
	if old := t.m[f.ChildPID]; old != nil {
		t.removeGroup(old) // the pid is new: whatever had it is gone
	}
	// The kernel reports a new thread with the parent of its process (the
	// creating thread is not named), a new process with the thread that
	// forked it (or its parent, with CLONE_PARENT).
	var from, leader *entry
	if f.ChildPID != f.ChildTGID {
		leader = t.leaderOf(f.ChildTGID)
		from = leader
	} else {
		from = t.lookup(f.ParentPID, f.ParentTGID)
		if from == nil {
			from = t.leaderOf(f.ParentTGID)
		}
	}
	if from == nil {
		e, src := t.readNew(f.ChildPID, f.ChildTGID, 0) // the child is younger than its fork event
		if e == nil {
			return t.gone(ev, describe, f.ChildPID, f.ChildTGID, f.ParentTGID)
		}
		if e.pid == e.tgid {
			// Made by this fork, whatever /proc says: the same id as
			// when the parent is known.
			e.execID = t.execID(e.tgid, originFork, ev.TimestampNS, 0)
			e.startNS = t.startOfFork(ev.TimestampNS)
		}
		return t.describe(ev, describe, e, src, 0)
	}
	e := t.newEntry()
	e.pid, e.tgid = f.ChildPID, f.ChildTGID
	e.ppid = f.ParentTGID // for a thread too: its process's parent, as of now
	e.comm, e.info, e.cred = from.comm, from.info, from.cred
	if leader != nil {
		e.ns = from.ns // a thread shares its process's namespaces
	} // a new process's may be new (clone flags): unknown until its exec
	e.uid, e.gid, e.haveUID, e.haveGID = from.uid, from.gid, from.haveUID, from.haveGID
	if leader != nil {
		e.execID, e.parentExecID, e.prevExecID, e.startNS = leader.execID, leader.parentExecID, leader.prevExecID, leader.startNS
	} else {
		e.execID = t.execID(f.ChildTGID, originFork, ev.TimestampNS, 0)
		e.parentExecID = from.execID
		e.startNS = t.startOfFork(ev.TimestampNS)
	}
	t.serial++
	e.serial = t.serial
	t.insert(e, leader)
	return t.describe(ev, describe, e, SourceTable, 0)
}

func (t *Table) exec(ev *schema.ProcEvent, describe bool) *schema.Process {
	pid, tgid := ev.Exec.PID, ev.Exec.TGID
	old := t.m[pid]
	var known uint64
	if old != nil && old.tgid == tgid {
		known = old.start // exec keeps the start time
	}
	r := t.readProc(pid, tgid, known, ev.TimestampNS)
	// The image this exec replaced, when the table knew the process.
	var prevID, parentID string
	var ppid uint32
	var startNS uint64
	if old != nil && old.tgid == tgid {
		prevID, parentID, ppid, startNS = old.execID, old.parentExecID, old.ppid, old.startNS
	}
	if r.reused {
		// The pid names a younger process: the exec's is gone, and the
		// old entry's data is stale. Forget it.
		if old != nil {
			t.removeGroup(old)
		}
		return t.gone(ev, describe, pid, tgid, 0)
	}
	if r.gone && !r.haveStatus {
		// Gone before it could be read: nothing of the new program is
		// known and the old one's data is stale. The entry keeps only the
		// image's identity, so that its exit still names it.
		e := t.fresh(old, pid, tgid)
		e.ppid, e.info, e.comm, e.cred, e.ns = ppid, goneInfo, "", nil, nil
		e.haveUID, e.haveGID = false, false
		e.execID, e.prevExecID, e.parentExecID, e.startNS = t.execID(tgid, originExec, ev.TimestampNS, 0), prevID, parentID, startNS
		return t.describe(ev, describe, e, SourceGone, 0)
	}
	e := t.fresh(old, pid, tgid)
	e.fill(&r, t)
	e.execID, e.prevExecID = t.execID(tgid, originExec, ev.TimestampNS, 0), prevID
	e.parentExecID = parentID
	if old == nil || old.tgid != tgid || old != e {
		e.parentExecID = t.parentImage(e)
	}
	e.startNS = startNS
	if startNS == 0 && r.haveStart {
		e.startNS = r.start * tickNS
	}
	src := SourceProc
	switch {
	case r.timedOut:
		src = SourceTimeout
	case !r.usable():
		src = SourceGone
	}
	return t.describe(ev, describe, e, src, 0)
}

// fresh returns the entry an exec of pid (thread group tgid) fills: old,
// the process's, with its other threads removed (exec ends them; their
// exits came first), or a new one in the table in place of old.
func (t *Table) fresh(old *entry, pid, tgid uint32) *entry {
	var e *entry
	if old != nil && old.tgid == tgid {
		// exec ends every other thread (their exits came first).
		for len(old.threads) > 0 {
			t.remove(old.threads[len(old.threads)-1])
		}
		e = old
		t.touch(e)
	} else {
		if old != nil {
			t.removeGroup(old)
		}
		e = t.newEntry()
		e.pid, e.tgid = pid, tgid
		t.serial++
		e.serial = t.serial
		t.insert(e, nil)
	}
	return e
}

// identify gives an entry just read from /proc, whose creation the table
// did not see, its identity: a thread its leader's (none when the leader
// is not in the table); a process the exec id of its start time and
// memory layout (stable across restarts of cnstream), its start time,
// and its parent's image as parent.
func (t *Table) identify(e *entry, r *procRead) {
	e.execID, e.parentExecID, e.prevExecID, e.startNS = "", "", "", 0
	if e.pid != e.tgid {
		if l := e.leader; l != nil {
			e.execID, e.parentExecID, e.prevExecID, e.startNS = l.execID, l.parentExecID, l.prevExecID, l.startNS
		}
		return
	}
	if r.haveStart {
		e.execID = t.execID(e.tgid, originProc, r.start, r.layout)
		e.startNS = r.start * tickNS
	}
	e.parentExecID = t.parentImage(e)
}

// parentImage returns the exec id of e's parent process, when the table
// has it and it is older than e.
func (t *Table) parentImage(e *entry) string {
	if e.ppid == 0 {
		return ""
	}
	if p := t.m[e.ppid]; p != nil && p.pid == p.tgid && p != e && olderThan(p.serial, e.serial) {
		return p.execID
	}
	return ""
}

func (t *Table) exit(ev *schema.ProcEvent, describe bool) *schema.Process {
	x := ev.Exit
	e := t.m[x.PID]
	if e == nil || e.tgid != x.TGID {
		if e != nil {
			t.removeGroup(e)
		}
		return t.gone(ev, describe, x.PID, x.TGID, x.ParentTGID)
	}
	// The kernel's parent is current (after any reparenting).
	p := t.describe(ev, describe, e, SourceTable, x.ParentTGID)
	if x.PID == x.TGID {
		t.removeGroup(e) // a leader's exit: keep nothing of the group
	} else {
		t.remove(e)
	}
	return p
}

// ---- describing ----

// procBox holds a Process and the storage its pointers, arguments and
// ancestors use, so that a description costs one allocation (two for a
// command line of more than 8 arguments or more than 4 ancestors).
type procBox struct {
	p     schema.Process
	ids   [4]uint32
	cont  schema.Container
	login schema.Login
	ids2  [2]uint32 // auid, session id
	nnp   bool
	ns    schema.Namespaces
	args  [8]string
	anc   [DefaultAncestorDepth]schema.Ancestor
}

// gone describes a subject nothing could be read of: the kernel's fields
// (the name of a comm event, the ids of a uid or gid event), and the
// ancestors of the kernel's parent when the event names one.
func (t *Table) gone(ev *schema.ProcEvent, describe bool, pid, tgid, ppid uint32) *schema.Process {
	if !describe {
		return nil
	}
	b := new(procBox)
	p := &b.p
	p.PID, p.TGID, p.PPID, p.Source = pid, tgid, ppid, SourceGone
	switch ev.What {
	case schema.ProcEventExec:
		p.ExecID = t.execID(tgid, originExec, ev.TimestampNS, 0) // the event names the image
	case schema.ProcEventFork:
		if pid == tgid {
			p.ExecID = t.execID(tgid, originFork, ev.TimestampNS, 0)
			if st := t.startOfFork(ev.TimestampNS); st != 0 {
				p.StartBootNS, p.StartTime = st, t.startWall(st, ev.TimestampNS)
			}
		}
	case schema.ProcEventComm:
		p.Comm = ev.Comm.Name()
	case schema.ProcEventUID:
		b.ids[0], b.ids[1] = ev.ID.Real, ev.ID.Effective
		p.UID, p.EUID = &b.ids[0], &b.ids[1]
		p.User = t.name(&t.users, ev.ID.Real, ev.TimestampNS)
	case schema.ProcEventGID:
		b.ids[2], b.ids[3] = ev.ID.Real, ev.ID.Effective
		p.GID, p.EGID = &b.ids[2], &b.ids[3]
		p.Group = t.name(&t.groups, ev.ID.Real, ev.TimestampNS)
	}
	if ppid != 0 {
		p.Ancestors = t.ancestors(b.anc[:0], pid, ppid, ^uint64(0), t.depth)
	}
	return p
}

func (t *Table) describe(ev *schema.ProcEvent, describe bool, e *entry, src string, ppid uint32) *schema.Process {
	if !describe {
		return nil
	}
	b := new(procBox)
	p := &b.p
	in := e.info
	if src == SourceTable && in.timedOut {
		src = SourceTimeout
	}
	if src == SourceTable && in.gone {
		src = SourceGone
	}
	p.PID, p.TGID, p.PPID, p.Source = e.pid, e.tgid, e.ppid, src
	if ppid != 0 {
		p.PPID = ppid
	}
	p.ExecID, p.ParentExecID, p.PrevExecID = e.execID, e.parentExecID, e.prevExecID
	p.StartBootNS = e.startNS
	p.StartTime = t.startWall(e.startNS, ev.TimestampNS)
	p.Comm = e.comm
	p.Exe, p.Cwd, p.Cgroup = in.exe, in.cwd, in.cgroup
	// The Process is the caller's to change: its slices and pointers are
	// its own, not the table's (strings are immutable and shared).
	if n := len(in.cmdline); n > 0 {
		if n <= len(b.args) {
			p.Cmdline = b.args[:n:n]
		} else {
			p.Cmdline = make([]string, n)
		}
		copy(p.Cmdline, in.cmdline)
		p.Redacted = in.redacted
	}
	if in.container != nil {
		b.cont = *in.container
		p.Container = &b.cont
	}
	now := ev.TimestampNS
	if e.haveUID {
		b.ids[0], b.ids[1] = e.uid[0], e.uid[1]
		p.UID, p.EUID = &b.ids[0], &b.ids[1]
		p.User = t.name(&t.users, e.uid[0], now)
	}
	if e.haveGID {
		b.ids[2], b.ids[3] = e.gid[0], e.gid[1]
		p.GID, p.EGID = &b.ids[2], &b.ids[3]
		p.Group = t.name(&t.groups, e.gid[0], now)
	}
	if c := e.cred; c != nil {
		if c.haveLogin {
			p.Login = &b.login
			if c.auid != schema.AUIDUnset {
				b.ids2[0] = c.auid
				b.login.AUID = &b.ids2[0]
			}
			if c.sessID != schema.AUIDUnset {
				b.ids2[1] = c.sessID
				b.login.SessionID = &b.ids2[1]
			}
		}
		if c.haveCap {
			p.CapEffHex, p.CapFull = c.capSet.hex, c.capSet.full
			if len(c.capSet.names) > 0 {
				p.CapEff = slices.Clone(c.capSet.names)
			}
		}
		if c.haveNNP {
			b.nnp = c.nnp
			p.NoNewPrivs = &b.nnp
		}
	}
	if n := e.ns; n != nil {
		b.ns = *n
		b.ns.Differs = slices.Clone(n.Differs)
		p.NS = &b.ns
	}
	if p.PPID != 0 {
		p.Ancestors = t.ancestors(b.anc[:0], e.tgid, p.PPID, e.serial, t.depth)
	}
	return p
}

func (t *Table) name(c *nameCache, id uint32, now uint64) string {
	n, hit, failed := c.get(id, now)
	switch {
	case hit:
		t.nameHits.Add(1)
	case failed:
		t.nameMisses.Add(1)
		t.nameErrors.Add(1)
	default:
		t.nameMisses.Add(1)
	}
	return n
}

// Ancestors returns the parent chain of process tgid from the table, parent
// first: at most depth entries, ending at pid 1, at a parent missing from
// the table, or at one younger than its child (the pid was reused).
func (t *Table) Ancestors(tgid uint32, depth int) []schema.Ancestor {
	e := t.m[tgid]
	if e == nil || e.ppid == 0 || depth <= 0 {
		return nil
	}
	return t.ancestors(nil, e.tgid, e.ppid, e.serial, depth)
}

// ancestors appends the chain of process self starting at its parent ppid;
// self was created at serial (^0: of unknown age, any parent is believed).
func (t *Table) ancestors(out []schema.Ancestor, self, ppid uint32, serial uint64, depth int) []schema.Ancestor {
	start := len(out)
	if self == 1 {
		return nilIfEmpty(out, start) // where every chain ends
	}
	for ppid != 0 && ppid != self && len(out)-start < depth {
		p := t.m[ppid]
		if p == nil || p.pid != p.tgid || !olderThan(p.serial, serial) {
			break
		}
		for _, a := range out[start:] { // a loop: impossible, but never spin
			if a.PID == ppid {
				return nilIfEmpty(out, start)
			}
		}
		t.touch(p)
		out = append(out, schema.Ancestor{PID: p.pid, ExecID: p.execID, Comm: p.comm, Exe: p.info.exe})
		if ppid == 1 {
			break
		}
		ppid, serial = p.ppid, p.serial
	}
	return nilIfEmpty(out, start)
}

func nilIfEmpty(out []schema.Ancestor, start int) []schema.Ancestor {
	if len(out) == start {
		return nil
	}
	return out
}

// olderThan: a parent created at p can be the parent of a child created at
// c. Seeded entries (0) were alive at the start; a later entry cannot be
// the parent of one seeded.
func olderThan(p, c uint64) bool {
	return p == 0 || (c != 0 && p < c)
}

// ---- seeding ----

// Seed adds every process and thread of procRoot (Config.ProcRoot when
// empty) to the table: processes first, then their threads while there is
// room. Entries already in the table (from events) are kept. It fails only
// when procRoot cannot be listed; processes that exit meanwhile are left
// out. Call it once, before the first event.
func (t *Table) Seed(procRoot string) error {
	rd := &t.rd
	if procRoot != "" {
		defer func(root string) { rd.root = root }(rd.root)
		rd.root = filepath.Clean(procRoot)
	}
	dirs, err := os.ReadDir(rd.root)
	if err != nil {
		return fmt.Errorf("enrich: seed: %w", err)
	}
	var leaders []*entry
	for _, d := range dirs {
		tgid, ok := parsePID(d.Name())
		if !ok || t.m[tgid] != nil {
			continue
		}
		r := t.pool.read(rd.root, tgid, tgid, startCheck{})
		if r.gone || !r.haveStatus {
			continue
		}
		if len(t.m) >= t.max {
			t.seedSkipped.Add(1)
			continue
		}
		e := t.newEntry()
		e.pid, e.tgid = tgid, tgid
		e.fill(&r, t)
		t.insert(e, nil)
		t.identify(e, &r)
		t.seededN.Add(1)
		leaders = append(leaders, e)
	}
	for _, l := range leaders { // every leader is in: now their parents' images
		l.parentExecID = t.parentImage(l)
	}
	for _, l := range leaders {
		if t.m[l.pid] != l {
			continue
		}
		tasks, err := os.ReadDir(rd.file(l.pid, "task"))
		if err != nil {
			continue
		}
		for _, d := range tasks {
			tid, ok := parsePID(d.Name())
			if !ok || tid == l.pid || t.m[tid] != nil {
				continue
			}
			if len(t.m) >= t.max {
				t.seedSkipped.Add(1)
				continue
			}
			st, ok := t.pool.readStatus(filepath.Join(rd.root, strconv.FormatUint(uint64(l.pid), 10), "task", d.Name(), "status"))
			if !ok || st.haveTgid && st.tgid != l.pid {
				continue
			}
			e := t.newEntry()
			e.pid, e.tgid, e.ppid, e.info, e.cred, e.ns = tid, l.pid, l.ppid, l.info, l.cred, l.ns
			e.execID, e.parentExecID, e.prevExecID, e.startNS = l.execID, l.parentExecID, l.prevExecID, l.startNS
			e.comm = st.name
			if st.haveUID {
				e.uid, e.haveUID = [2]uint32{st.uid, st.euid}, true
			}
			if st.haveGID {
				e.gid, e.haveGID = [2]uint32{st.gid, st.egid}, true
			}
			t.insert(e, l)
			t.seededN.Add(1)
		}
	}
	return nil
}

func parsePID(s string) (uint32, bool) {
	if s == "" || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err == nil
}
