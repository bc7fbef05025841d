package enrich

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cnstream/cnstream/schema"
)

// capNames are the kernel's capability names by bit (include/uapi/linux/
// capability.h, up to CAP_CHECKPOINT_RESTORE of Linux 5.9).
var capNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// CapNames returns the names of the capabilities set in mask, in bit
// order; a bit without a known name is "CAP_<n>".
func CapNames(mask uint64) []string {
	var out []string
	for i := range 64 {
		if mask&(1<<i) == 0 {
			continue
		}
		if i < len(capNames) {
			out = append(out, capNames[i])
		} else {
			out = append(out, "CAP_"+strconv.Itoa(i))
		}
	}
	return out
}

// credInfo is what the table knows of a process's credentials beyond its
// ids: immutable once made, shared by its threads and forks.
type credInfo struct {
	haveLogin    bool
	auid, sessID uint32 // schema.AUIDUnset: unset
	haveCap      bool
	capSet       *capSet // when haveCap
	haveNNP      bool
	nnp          bool
}

// withoutCaps returns c without its capabilities (a uid change changes
// them).
func (c *credInfo) withoutCaps() *credInfo {
	if c == nil || !c.haveCap {
		return c
	}
	d := *c
	d.haveCap, d.capSet = false, nil
	if !d.haveLogin && !d.haveNNP {
		return nil
	}
	return &d
}

// nsLinks are the names of /proc/PID/ns links, in the order of
// schema.NamespaceNames.
var nsLinks = schema.NamespaceNames

// parseNSLink reads the inode of a namespace link: "<type>:[<inode>]".
func parseNSLink(s string) (uint64, bool) {
	i := strings.IndexByte(s, '[')
	if i < 0 || !strings.HasSuffix(s, "]") {
		return 0, false
	}
	v, err := strconv.ParseUint(s[i+1:len(s)-1], 10, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return v, true
}

// readHostNS reads the host's namespaces from procRoot: pid 1's, and for
// those of pid 1 that cannot be read (readlink of another process's ns
// needs ptrace access: a cnstream whose capabilities are fewer than pid
// 1's is refused with EACCES) this process's own; 0 for those neither
// gives.
func readHostNS(procRoot string) [7]uint64 {
	var ns [7]uint64
	for i, n := range nsLinks {
		for _, pid := range [...]string{"1", "self"} {
			if s, err := os.Readlink(filepath.Join(procRoot, pid, "ns", n)); err == nil {
				if ns[i], _ = parseNSLink(s); ns[i] != 0 {
					break
				}
			}
		}
	}
	return ns
}

// readCapLast reads the highest capability of the running kernel from
// procRoot/sys/kernel/cap_last_cap; the last one capNames knows when it
// cannot.
func readCapLast(procRoot string) int {
	b, err := os.ReadFile(filepath.Join(procRoot, "sys", "kernel", "cap_last_cap"))
	if err == nil {
		if v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 8); err == nil && v < 64 {
			return int(v)
		}
	}
	return len(capNames) - 1
}

// newCredInfo makes the credentials of a read; nil when nothing was read.
// capLast is the kernel's highest capability; caps (may be nil) caches the
// sets described.
func newCredInfo(r *procRead, capLast int, caps capCache) *credInfo {
	st := &r.status
	if !r.haveLogin && !st.haveCapEff && !st.haveNNP {
		return nil
	}
	c := &credInfo{haveLogin: r.haveLogin, auid: r.auid, sessID: r.sessID, haveNNP: st.haveNNP, nnp: st.nnp}
	if st.haveCapEff {
		c.haveCap = true
		c.capSet = capSetOf(st.capEff, capLast, caps)
	}
	return c
}

// capSet is an effective set as described: immutable, shared by every
// credInfo of that set.
type capSet struct {
	hex   string
	names []string // nil when empty or full
	full  bool
}

// capCache maps sets already described to their description: a host has
// few distinct sets, so a read costs no allocation for them. It belongs to
// the Table (one goroutine); at most maxCapCache sets.
type capCache map[uint64]*capSet

const maxCapCache = 256

func capSetOf(mask uint64, capLast int, cache capCache) *capSet {
	if s := cache[mask]; s != nil {
		return s
	}
	full := uint64(1)<<(capLast+1) - 1
	if capLast >= 63 {
		full = ^uint64(0)
	}
	s := &capSet{hex: capHex(mask)}
	switch {
	case mask&full == full:
		s.full = true
	case mask != 0:
		s.names = CapNames(mask)
	}
	if cache != nil && len(cache) < maxCapCache {
		cache[mask] = s
	}
	return s
}

var (
	capHexZero = "0000000000000000"
	capHexRoot = "000001ffffffffff"
)

// capHex writes mask as 16 lowercase hex digits, as the kernel does; the
// two common sets without an allocation.
func capHex(mask uint64) string {
	switch mask {
	case 0:
		return capHexZero
	case 1<<41 - 1:
		return capHexRoot
	}
	s := strconv.FormatUint(mask, 16)
	return strings.Repeat("0", 16-len(s)) + s
}

// newNSInfo makes the namespaces of a read, with those differing from
// host's named; nil when none was read.
func newNSInfo(ns *[7]uint64, host *[7]uint64) *schema.Namespaces {
	n := &schema.Namespaces{}
	any := false
	for i, v := range ns {
		if v == 0 {
			continue
		}
		any = true
		if host[i] != 0 && v != host[i] {
			n.Differs = append(n.Differs, nsLinks[i])
		}
	}
	if !any {
		return nil
	}
	n.PID, n.Mnt, n.Net, n.User, n.UTS, n.IPC, n.Cgroup = ns[0], ns[1], ns[2], ns[3], ns[4], ns[5], ns[6]
	return n
}
