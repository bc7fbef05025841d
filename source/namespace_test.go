package source

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	statusHost = "Name:\tcnstream\nUmask:\t0022\nState:\tR (running)\nNSpid:\t4242\nCapInh:\t0000000000000000\n" +
		"CapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n"
	// setpriv --reuid=65534 ... with CAP_NET_ADMIN and CAP_SYS_PTRACE (bits 12 and 19).
	statusUnit   = "Name:\tcnstream\nNSpid:\t4242\nCapEff:\t0000000000081000\n"
	statusNoCaps = "Name:\tcnstream\nNSpid:\t4242\nCapEff:\t0000000000000000\n"
	statusPidNS  = "Name:\tcnstream\nNSpid:\t14386\t1\nCapEff:\t000001ffffffffff\n"
	statusNested = "Name:\tcnstream\nNSpid:\t9000\t300\t1\nCapEff:\t000001ffffffffff\n"
	uidMapHost   = "         0          0 4294967295\n"
	uidMapRoot   = "         0          0          1\n" // unshare -U -r
	uidMapRemap  = "         0     100000      65536\n" // userns-remap, rootless containers
)

func TestParsePrivileges(t *testing.T) {
	cases := []struct {
		name           string
		uidMap, status string
		want           Privileges
	}{
		{"host root", uidMapHost, statusHost, Privileges{UIDMap: "0 0 4294967295", NSpid: []string{"4242"}, CapEff: 0x1ffffffffff, CapKnown: true}},
		{"unit caps", uidMapHost, statusUnit, Privileges{UIDMap: "0 0 4294967295", NSpid: []string{"4242"}, CapEff: 1<<CapNetAdmin | 1<<CapSysPtrace, CapKnown: true}},
		{"user ns", uidMapRoot, statusHost, Privileges{UIDMap: "0 0 1", NSpid: []string{"4242"}, CapEff: 0x1ffffffffff, CapKnown: true}},
		{"pid ns", uidMapHost, statusPidNS, Privileges{UIDMap: "0 0 4294967295", NSpid: []string{"14386", "1"}, CapEff: 0x1ffffffffff, CapKnown: true}},
		{"unreadable", "", "", Privileges{}},
		{"bad CapEff", "", "CapEff:\tzz\n", Privileges{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, ParsePrivileges([]byte(tc.uidMap), []byte(tc.status))); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// TestNamespaceDiagnosis: each namespace the process is outside of is
// named, with what the kernel does and where to run instead; inside them
// nothing is said, and nothing ever suggests setcap in a user namespace.
func TestNamespaceDiagnosis(t *testing.T) {
	cases := []struct {
		name           string
		uidMap, status string
		want, notWant  []string
	}{
		{"host", uidMapHost, statusHost, nil, []string{"namespace"}},
		{"unreadable", "", "", nil, []string{"namespace"}},
		{"unshare -U -r", uidMapRoot, statusHost,
			[]string{`initial user namespace (uid_map "0 0 1")`, "root there has no CAP_NET_ADMIN", "host's user namespace", "unshare -U", "rootless", "userns-remap"},
			[]string{"pid namespace", "setcap"}},
		{"userns-remap", uidMapRemap, statusNoCaps, []string{`uid_map "0 100000 65536"`}, []string{"setcap"}},
		{"pid ns", uidMapHost, statusPidNS, []string{"initial pid namespace (NSpid 14386 1)", "hostPID"}, []string{"user namespace"}},
		{"nested pid ns", uidMapHost, statusNested, []string{"NSpid 9000 300 1"}, nil},
		{"both", uidMapRemap, statusPidNS, []string{"initial user namespace", "initial pid namespace"}, []string{"setcap"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := NamespaceDiagnosis([]byte(tc.uidMap), []byte(tc.status))
			if len(tc.want) == 0 && got != "" {
				t.Errorf("diagnosis %q, want none", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("diagnosis %q lacks %q", got, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("diagnosis %q contains %q", got, w)
				}
			}
		})
	}
}

func TestNetNamespaceDiagnosis(t *testing.T) {
	p := ParsePrivileges([]byte(uidMapHost), []byte(statusHost))
	p.NetNS, p.InitNetNS = "net:[4026532300]", "net:[4026531840]"
	if d := p.Diagnosis(); !strings.Contains(d, "initial network namespace (net:[4026532300]; pid 1: net:[4026531840])") || !strings.Contains(d, "hostNetwork") {
		t.Errorf("diagnosis %q: want the network namespaces named", d)
	}
	p.InitNetNS = p.NetNS
	if d := p.Diagnosis(); d != "" {
		t.Errorf("same network namespace as pid 1: diagnosis %q, want none", d)
	}
	// In another pid namespace pid 1 is not the host's init: no comparison.
	p = ParsePrivileges([]byte(uidMapHost), []byte(statusPidNS))
	p.NetNS, p.InitNetNS = "net:[1]", "net:[2]"
	if d := p.Diagnosis(); strings.Contains(d, "network") {
		t.Errorf("diagnosis %q: pid 1 of another pid namespace says nothing about the network namespace", d)
	}
}

// TestNetAdminHint: in the initial namespaces without CAP_NET_ADMIN the
// hint points to the unit's AmbientCapabilities or a group-restricted copy,
// never to setcap on a binary anyone can run; in a user namespace it is the
// namespace diagnosis; with the capability it blames an LSM or seccomp.
func TestNetAdminHint(t *testing.T) {
	noCaps := ParsePrivileges([]byte(uidMapHost), []byte(statusNoCaps)).NetAdminHint()
	for _, w := range []string{"CAP_NET_ADMIN", "AmbientCapabilities", "deploy/systemd/cnstream.service", "chmod 0750", "chgrp"} {
		if !strings.Contains(noCaps, w) {
			t.Errorf("hint without the capability %q lacks %q", noCaps, w)
		}
	}
	if strings.Contains(noCaps, "sudo setcap") {
		t.Errorf("hint %q suggests setcap on the binary", noCaps)
	}
	userNS := ParsePrivileges([]byte(uidMapRoot), []byte(statusHost)).NetAdminHint()
	if !strings.Contains(userNS, "initial user namespace") || strings.Contains(userNS, "setcap") || strings.Contains(userNS, "AmbientCapabilities") {
		t.Errorf("hint in a user namespace %q: want the namespace diagnosis only", userNS)
	}
	withCap := ParsePrivileges([]byte(uidMapHost), []byte(statusUnit)).NetAdminHint()
	if !strings.Contains(withCap, "seccomp") || strings.Contains(withCap, "setcap") {
		t.Errorf("hint with CAP_NET_ADMIN %q: want a security module or seccomp blamed", withCap)
	}
}

func TestPrivilegesLacks(t *testing.T) {
	p := ParsePrivileges(nil, []byte(statusUnit))
	if p.Lacks(CapNetAdmin) || p.Lacks(CapSysPtrace) || !p.Lacks(21 /* CAP_SYS_ADMIN */) {
		t.Errorf("CapEff %#x: Lacks wrong", p.CapEff)
	}
	if (Privileges{}).Lacks(CapNetAdmin) {
		t.Error("unknown capabilities reported as lacking")
	}
}
