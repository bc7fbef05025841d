package enrich

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"github.com/cnstream/cnstream/schema"
)

// What readProc found of a process. Each have* flag says the field was read
// now; fields not read are zero and must not be filled from elsewhere.
type procRead struct {
	gone     bool // the process was not there (ENOENT, ESRCH, or its pid now names another thread group or a younger process)
	reused   bool // of gone: its pid names a process started after the event, or not the one the table knew
	timedOut bool // the read did not finish within Config.ProcReadTimeout (or was not started: every worker was stuck); what it got before is kept

	haveStatus  bool
	status      status
	haveStart   bool
	start       uint64 // start time, clock ticks after boot (field 22 of /proc/PID/stat)
	layout      uint64 // hash of the image's memory layout (parseStat); 0: not in stat
	haveCmdline bool   // at least one byte: an exiting process or a kernel thread has none
	cmdline     []string
	haveExe     bool
	exe         string
	haveCwd     bool
	cwd         string
	haveCgroup  bool
	cgroup      string
	container   *schema.Container
	haveLogin   bool // loginuid and sessionid both read
	auid        uint32
	sessID      uint32
	ns          [7]uint64 // of /proc/PID/ns, in the order of schema.NamespaceNames; 0: not read
}

// usable reports whether the read says something of the program: its
// command line or executable, or that it is a kernel thread (which has
// neither). A read cut short by the process's exit can still be usable.
func (r *procRead) usable() bool {
	return r.haveCmdline || r.haveExe || r.haveStatus && r.status.kthread
}

// status holds the lines of /proc/PID/status that enrichment uses.
type status struct {
	name       string
	haveName   bool
	tgid       uint32
	haveTgid   bool
	ppid       uint32
	havePPid   bool
	uid, euid  uint32
	haveUID    bool
	gid, egid  uint32
	haveGID    bool
	kthread    bool
	capEff     uint64
	haveCapEff bool
	nnp        bool
	haveNNP    bool
}

// procReader reads /proc files into one reused buffer. Each worker of the
// read pool has its own.
type procReader struct {
	root       string // "/proc"
	maxCmdline int
	buf        []byte
	path       []byte
}

// goneErr reports the errors that mean the process does not exist (any
// more): ENOENT for its directory and ESRCH for a task released between
// open and read.
func goneErr(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// file returns "<root>/<pid>/<name>" (name may be "" for the directory).
func (r *procReader) file(pid uint32, name string) string {
	p := append(r.path[:0], r.root...)
	p = append(p, '/')
	p = strconv.AppendUint(p, uint64(pid), 10)
	if name != "" {
		p = append(p, '/')
		p = append(p, name...)
	}
	r.path = p
	return string(p)
}

// readFile reads up to max bytes of path into r.buf and returns them; the
// slice is valid until the next read.
func (r *procReader) readFile(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return r.readAll(f, max)
}

// readAt reads up to max bytes of file name of directory dir, as readFile.
func (r *procReader) readAt(dir *os.Root, name string, max int) ([]byte, error) {
	f, err := dir.Open(name)
	if err != nil {
		return nil, err
	}
	return r.readAll(f, max)
}

// readAll reads f up to max bytes into r.buf and closes it.
func (r *procReader) readAll(f *os.File, max int) ([]byte, error) {
	defer f.Close()
	if r.buf == nil {
		r.buf = make([]byte, 4096)
	}
	n := 0
	for {
		if n == len(r.buf) {
			if n >= max {
				break
			}
			nb := make([]byte, min(2*len(r.buf), max))
			copy(nb, r.buf[:n])
			r.buf = nb
		}
		m, err := f.Read(r.buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
	}
	return r.buf[:n], nil
}

const maxStatus = 64 << 10

// startCheck says which start times make a pid another process than the
// one an event is about: one started after notAfter (ticks after boot; 0:
// no bound), or, when known is not 0, one whose start time is not known.
type startCheck struct {
	notAfter uint64
	known    uint64
}

// reused reports whether a process started at start fails the check.
func (c startCheck) reused(start uint64) bool {
	return c.known != 0 && start != c.known || c.notAfter != 0 && start > c.notAfter
}

// read reads what enrichment wants of process (or thread) pid in one pass,
// every file through one descriptor of its /proc/PID directory, so that a
// pid reused during the pass cannot mix two processes (files opened through
// the directory of a process that exited fail with ENOENT or ESRCH, never
// show its successor). In order: status, stat (start time), exe, cwd,
// cgroup, loginuid and sessionid, the links of ns/, then cmdline, the one read that can block (it takes the target's
// mmap lock): before it, partial (when not nil) is called with what was
// read so far. No retries. A missing status or cmdline file means the
// process is gone and ends the pass. readlink of exe and cwd fails with
// ENOENT for a live kernel thread or a zombie too, so there ENOENT only
// leaves the field unread. When tgid is not 0, a status naming another
// thread group means the pid was reused: gone as well; and so does a start
// time that fails check.
func (r *procReader) read(pid, tgid uint32, check startCheck, partial func(*procRead)) procRead {
	var pr procRead
	dir, err := os.OpenRoot(r.file(pid, ""))
	if err != nil {
		pr.gone = goneErr(err)
		return pr
	}
	defer dir.Close()
	b, err := r.readAt(dir, "status", maxStatus)
	if err != nil {
		pr.gone = goneErr(err)
		if pr.gone {
			return pr
		}
	} else {
		pr.status, pr.haveStatus = parseStatus(b), true
		if tgid != 0 && pr.status.haveTgid && pr.status.tgid != tgid {
			return procRead{gone: true}
		}
	}
	if b, err := r.readAt(dir, "stat", maxStatus); err == nil {
		if start, layout, ok := parseStat(b); ok {
			if check.reused(start) {
				return procRead{gone: true, reused: true}
			}
			pr.start, pr.layout, pr.haveStart = start, layout, true
		}
	} else if goneErr(err) && !errors.Is(err, fs.ErrNotExist) {
		pr.gone = true // ESRCH: it exited during the pass
		return pr
	}
	if s, err := dir.Readlink("exe"); err == nil {
		pr.exe, pr.haveExe = s, true
	}
	if s, err := dir.Readlink("cwd"); err == nil {
		pr.cwd, pr.haveCwd = s, true
	}
	b, err = r.readAt(dir, "cgroup", maxStatus)
	if err != nil {
		if goneErr(err) {
			pr.gone = true
			return pr
		}
	} else if path, c, ok := parseCgroupFile(b); ok {
		pr.cgroup, pr.container, pr.haveCgroup = path, c, true
	}
	if b, err := r.readAt(dir, "loginuid", 32); err == nil {
		if auid, ok := parseU32(b); ok {
			if b, err := r.readAt(dir, "sessionid", 32); err == nil {
				pr.sessID, pr.haveLogin = parseU32(b)
				pr.auid = auid
			}
		}
	}
	if ns, err := dir.OpenRoot("ns"); err == nil {
		for i, n := range nsLinks {
			if s, err := ns.Readlink(n); err == nil {
				pr.ns[i], _ = parseNSLink(s)
			}
		}
		ns.Close()
	}
	if partial != nil {
		partial(&pr)
	}
	b, err = r.readAt(dir, "cmdline", r.maxCmdline+1)
	if err != nil {
		if goneErr(err) {
			pr.gone = true
			return pr
		}
	} else if len(b) > 0 {
		truncated := len(b) > r.maxCmdline
		if truncated {
			b = b[:r.maxCmdline]
		}
		if args := parseCmdline(b, truncated); len(args) > 0 {
			pr.cmdline, pr.haveCmdline = args, true
		}
	}
	return pr
}

// parseStartTime picks field 22 (starttime, clock ticks after boot) out of
// /proc/PID/stat.
func parseStartTime(b []byte) (uint64, bool) {
	start, _, ok := parseStat(b)
	return start, ok
}

// parseStat picks field 22 (starttime, clock ticks after boot) out of
// /proc/PID/stat, and hashes (FNV-1a) the fields an exec sets and nothing
// else changes, the image's memory layout: 26-28 (startcode, endcode,
// startstack) and 45-51 (start_data ... env_end; Linux 3.3 and 3.5). With
// address space randomization they differ from one exec to the next, so
// the hash tells two images of one process apart when nothing else read
// from /proc can; layout is 0 when none of those fields is there (a kernel
// thread's are zeros: a constant). The command name (field 2) is in
// parentheses and may hold spaces and parentheses: the fields are counted
// after the last ')'.
func parseStat(b []byte) (start, layout uint64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	b = b[i+1:]
	const (
		fnvOffset = 14695981039346656037
		fnvPrime  = 1099511628211
	)
	h, seen := uint64(fnvOffset), false
	for field := 3; ; field++ { // b starts with the space before field 3
		b = bytes.TrimLeft(b, " ")
		end := bytes.IndexByte(b, ' ')
		if end < 0 {
			end = len(b)
		}
		v := bytes.TrimSpace(b[:end])
		switch {
		case field == 22:
			n, err := strconv.ParseUint(string(v), 10, 64)
			if err != nil {
				return 0, 0, false
			}
			start, ok = n, true
		case field >= 26 && field <= 28 || field >= 45 && field <= 51:
			for _, c := range v {
				h = (h ^ uint64(c)) * fnvPrime
			}
			h = (h ^ ' ') * fnvPrime
			seen = true
		}
		if end == len(b) || field == 51 {
			break
		}
		b = b[end:]
	}
	if seen {
		layout = h
	}
	return start, layout, ok
}

// readStatus reads only status, for the threads of a seeded process.
func (r *procReader) readStatus(path string) (status, bool) {
	b, err := r.readFile(path, maxStatus)
	if err != nil {
		return status{}, false
	}
	return parseStatus(b), true
}

// parseStatus picks Name, Tgid, PPid, Uid, Gid, CapEff, NoNewPrivs and
// Kthread out of
// /proc/PID/status. Lines it does not understand are skipped; a field
// whose value does not parse stays unset.
func parseStatus(b []byte) status {
	var s status
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		switch string(key) {
		case "Name":
			// One tab follows the colon; the name itself may hold tabs
			// and spaces, and has newlines and backslashes escaped.
			val, _ = bytes.CutPrefix(val, []byte{'\t'})
			s.name, s.haveName = unescapeName(val), true
		case "Tgid":
			s.tgid, s.haveTgid = parseU32(val)
		case "PPid":
			s.ppid, s.havePPid = parseU32(val)
		case "Uid":
			s.uid, s.euid, s.haveUID = parseIDPair(val)
		case "Gid":
			s.gid, s.egid, s.haveGID = parseIDPair(val)
		case "CapEff":
			if v, err := strconv.ParseUint(string(bytes.TrimSpace(val)), 16, 64); err == nil {
				s.capEff, s.haveCapEff = v, true
			}
		case "NoNewPrivs":
			if v, ok := parseU32(val); ok {
				s.nnp, s.haveNNP = v == 1, true
			}
		case "Kthread":
			v, ok := parseU32(val)
			s.kthread = ok && v == 1
		}
	}
	return s
}

func parseU32(b []byte) (uint32, bool) {
	f, _ := nextField(b)
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(f), 10, 32)
	return uint32(v), err == nil
}

// nextField returns the first field of b (separated by spaces, tabs or
// newlines) and what follows it, without allocating.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !isSpace(b[j]) {
		j++
	}
	return b[i:j], b[j:]
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// parseIDPair reads the real and effective ids of a "Uid:" or "Gid:" line
// (real, effective, saved, filesystem).
func parseIDPair(b []byte) (real, eff uint32, ok bool) {
	f1, rest := nextField(b)
	f2, _ := nextField(rest)
	if len(f1) == 0 || len(f2) == 0 {
		return 0, 0, false
	}
	r, err1 := strconv.ParseUint(string(f1), 10, 32)
	e, err2 := strconv.ParseUint(string(f2), 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint32(r), uint32(e), true
}

// unescapeName undoes the escaping of the Name line: the kernel writes
// '\n' as "\n" and '\' as "\\" (older kernels escaped more, as C escapes
// and octal \ooo, which are undone too). A lone trailing backslash is kept.
func unescapeName(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' || i+1 == len(b) {
			out = append(out, c)
			continue
		}
		i++
		switch e := b[i]; e {
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case 'r':
			out = append(out, '\r')
		case 'v':
			out = append(out, '\v')
		case 'f':
			out = append(out, '\f')
		case 'a':
			out = append(out, '\a')
		case 'e':
			out = append(out, 0x1b)
		case '\\', '"':
			out = append(out, e)
		default:
			if i+2 < len(b) && isOct(e) && isOct(b[i+1]) && isOct(b[i+2]) {
				out = append(out, (e-'0')<<6|(b[i+1]-'0')<<3|(b[i+2]-'0'))
				i += 2
			} else {
				out = append(out, '\\', e)
			}
		}
	}
	return string(out)
}

func isOct(c byte) bool { return '0' <= c && c <= '7' }

// parseCmdline splits /proc/PID/cmdline: arguments each ended by a NUL.
// Exactly one final NUL is dropped, so an empty last argument survives and
// a process that rewrote its arguments (setproctitle) and padded them with
// NULs shows the padding as empty arguments, as it is. When truncated (the
// read stopped at the size limit) the last, cut, argument is dropped.
func parseCmdline(b []byte, truncated bool) []string {
	if truncated {
		if i := bytes.LastIndexByte(b, 0); i >= 0 {
			b = b[:i+1]
		} else {
			return nil
		}
	}
	b, _ = bytes.CutSuffix(b, []byte{0})
	n := bytes.Count(b, []byte{0}) + 1
	args := make([]string, 0, n)
	// One string for all arguments, sliced: one allocation for the text.
	s := string(b)
	for {
		i := indexByteString(s, 0)
		if i < 0 {
			return append(args, s)
		}
		args = append(args, s[:i])
		s = s[i+1:]
	}
}

func indexByteString(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// parseCgroupFile picks the cgroup path of /proc/PID/cgroup and the
// container it names. The cgroup v2 line ("0::<path>") wins unless it is
// the root "/" (on a hybrid system the unified hierarchy may be unused);
// then the v1 name=systemd line, then the first v1 line with a path other
// than "/". The container is that of the chosen path, else of the first
// line whose path names one.
func parseCgroupFile(b []byte) (path string, c *schema.Container, ok bool) {
	var v2, systemd, other, any string
	haveV2, haveAny := false, false
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		// hierarchy-ID:controller-list:cgroup-path; the path may hold ':'.
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		j := bytes.IndexByte(line[i+1:], ':')
		if j < 0 {
			continue
		}
		id, ctrl, p := line[:i], line[i+1:i+1+j], string(line[i+2+j:])
		if !haveAny {
			any, haveAny = p, true
		}
		if c == nil {
			c = ParseCgroup(p)
		}
		switch {
		case string(id) == "0" && len(ctrl) == 0:
			v2, haveV2 = p, true
		case string(ctrl) == "name=systemd":
			systemd = p
		case other == "" && p != "/":
			other = p
		}
	}
	switch {
	case haveV2 && v2 != "/":
		path = v2
	case systemd != "" && systemd != "/":
		path = systemd
	case other != "":
		path = other
	case haveV2:
		path = v2
	default:
		path = any
	}
	if !haveAny {
		return "", nil, false
	}
	if pc := ParseCgroup(path); pc != nil {
		c = pc
	}
	return path, c, true
}
