package source

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Capabilities checked here and by callers (linux/capability.h).
const (
	CapNetAdmin  = 12 // SO_RCVBUFFORCE, joining connector groups, multicast, LISTEN before Linux 6.6
	CapSysPtrace = 19 // ptrace read access: /proc/PID/exe and cwd of other users' processes
)

// identityUIDMap is the uid_map of the initial user namespace.
const identityUIDMap = "0 0 4294967295"

// Privileges is what the kernel looks at before it lets a process use the
// connector: its user, pid and network namespaces and its effective
// capabilities. ReadPrivileges fills it from /proc; ParsePrivileges is the
// pure part. A fact that could not be read is empty and never produces a
// diagnosis.
type Privileges struct {
	// UIDMap is /proc/self/uid_map, its fields joined by single spaces:
	// "0 0 4294967295", the identity map, in the initial user namespace.
	UIDMap string
	// NSpid is this process's pid in each pid namespace it is in (the NSpid
	// line of /proc/self/status), outermost first: one field in the initial
	// pid namespace.
	NSpid []string
	// CapEff is the effective capability set (CapEff in /proc/self/status),
	// valid when CapKnown.
	CapEff   uint64
	CapKnown bool
	// NetNS and InitNetNS name the network namespaces of this process and of
	// pid 1 (/proc/self/ns/net and /proc/1/ns/net, "net:[4026531840]"),
	// empty when unreadable.
	NetNS, InitNetNS string
}

// ParsePrivileges reads the contents of /proc/self/uid_map and
// /proc/self/status (either may be nil: unknown).
func ParsePrivileges(uidMap, status []byte) Privileges {
	p := Privileges{UIDMap: strings.Join(strings.Fields(string(uidMap)), " ")}
	for _, line := range bytes.Split(status, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(k) {
		case "NSpid":
			p.NSpid = strings.Fields(string(v))
		case "CapEff":
			if c, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 16, 64); err == nil {
				p.CapEff, p.CapKnown = c, true
			}
		}
	}
	return p
}

// NamespaceDiagnosis explains, from the contents of /proc/self/uid_map and
// /proc/self/status, why the connector cannot serve this process; "" when
// it is in the initial user and pid namespaces (or nothing could be read).
func NamespaceDiagnosis(uidMap, status []byte) string {
	return ParsePrivileges(uidMap, status).Diagnosis()
}

// OutsideUserNS reports that the process is known not to be in the initial
// user namespace (its uid_map is not the identity map).
func (p Privileges) OutsideUserNS() bool { return p.UIDMap != "" && p.UIDMap != identityUIDMap }

// OutsidePIDNS reports that the process is known not to be in the initial
// pid namespace (NSpid has more than one field).
func (p Privileges) OutsidePIDNS() bool { return len(p.NSpid) > 1 }

// OutsideNetNS reports that the process is known not to be in the initial
// network namespace: pid 1, the initial pid namespace's init, is in another.
func (p Privileges) OutsideNetNS() bool {
	return !p.OutsidePIDNS() && p.NetNS != "" && p.InitNetNS != "" && p.NetNS != p.InitNetNS
}

// Lacks reports that capability c is known to be missing from the effective set.
func (p Privileges) Lacks(c int) bool { return p.CapKnown && p.CapEff&(1<<c) == 0 }

// Diagnosis says which initial namespace the process is outside of, what
// the kernel does about it and where cnstream must run instead; "" when
// nothing is known to be wrong.
func (p Privileges) Diagnosis() string {
	var causes []string
	if p.OutsideUserNS() {
		causes = append(causes, fmt.Sprintf("this process is not in the initial user namespace (uid_map %q): "+
			"root there has no CAP_NET_ADMIN over the connector, which belongs to the initial network namespace, "+
			"and the process-events connector ignores listeners of other user namespaces; "+
			"cnstream must run in the host's user namespace (not under unshare -U, in a rootless container or with userns-remap)", p.UIDMap))
	}
	if p.OutsidePIDNS() {
		causes = append(causes, fmt.Sprintf("this process is not in the initial pid namespace (NSpid %s): "+
			"the process-events connector ignores listeners of other pid namespaces; "+
			"run cnstream in the host's pid namespace (on the host, or with hostPID)", strings.Join(p.NSpid, " ")))
	}
	if p.OutsideNetNS() {
		causes = append(causes, fmt.Sprintf("this process is not in the initial network namespace (%s; pid 1: %s): "+
			"the kernel connector exists only in the initial one; run in the host network namespace (hostNetwork)", p.NetNS, p.InitNetNS))
	}
	return strings.Join(causes, "; ")
}

// NetAdminHint explains a refusal that CAP_NET_ADMIN would have allowed:
// the namespace diagnosis when the process is outside the initial
// namespaces (no capability granted there helps), otherwise how to grant
// the capability to cnstream alone.
func (p Privileges) NetAdminHint() string {
	if d := p.Diagnosis(); d != "" {
		return d
	}
	if p.CapKnown && !p.Lacks(CapNetAdmin) {
		return "refused although this process has CAP_NET_ADMIN in the initial namespaces: a security module (SELinux, AppArmor) or a seccomp filter forbids it"
	}
	return "needs CAP_NET_ADMIN, which this process does not have: run as root, " +
		"or as the systemd unit does (AmbientCapabilities=CAP_NET_ADMIN in deploy/systemd/cnstream.service), " +
		"or from a copy of the binary that only one group may run (chgrp that group, chmod 0750, then setcap cap_net_admin+ep on the copy); " +
		"a capability set on a binary every local user can run is every local user's"
}
