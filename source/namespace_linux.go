//go:build linux

package source

import "os"

// ReadPrivileges reads this process's namespaces and capabilities from
// /proc (see Privileges); what cannot be read stays unknown.
func ReadPrivileges() Privileges {
	uidMap, _ := os.ReadFile("/proc/self/uid_map")
	status, _ := os.ReadFile("/proc/self/status")
	p := ParsePrivileges(uidMap, status)
	p.NetNS, _ = os.Readlink("/proc/self/ns/net")
	p.InitNetNS, _ = os.Readlink("/proc/1/ns/net") // needs ptrace read access to pid 1
	return p
}
