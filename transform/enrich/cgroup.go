package enrich

import (
	"strings"

	"github.com/cnstream/cnstream/schema"
)

// Container runtimes ParseCgroup reports in schema.Container.Runtime.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimePodman     = "podman"
	RuntimeSystemd    = "systemd"
)

// ParseCgroup returns the container a cgroup path belongs to, or nil when the
// path names none. The path is a cgroup v2 path ("0::" line of
// /proc/PID/cgroup) or a v1 hierarchy's path, as the kernel writes it.
//
// Recognised layouts (<id> is 64 lowercase hex digits):
//
//	docker      /system.slice/docker-<id>.scope, /docker/<id>
//	containerd  .../cri-containerd-<id>.scope (systemd driver),
//	            /kubepods/<qos>/pod<uid>/<id> (cgroupfs driver)
//	cri-o       .../crio-<id>.scope, .../crio-<id> (cgroupfs driver)
//	podman      .../libpod-<id>.scope (rootful under machine.slice, rootless
//	            under user@UID.service), /libpod_parent/libpod-<id>
//	systemd     /machine.slice/machine-<name>.scope: a machine registered
//	            with systemd-machined, i.e. a systemd-nspawn container (ID is
//	            the machine name, unescaped). libvirt registers its VMs the
//	            same way; the process is then the VM's qemu.
//
// A bare <id> under a Kubernetes pod cgroup does not name its runtime; it is
// reported as containerd, the default CRI runtime since dockershim was
// removed (cri-dockerd with the cgroupfs driver looks the same).
//
// The Kubernetes pod UID is taken from the pod cgroup above the container
// (kubepods-<qos>-pod<uid>.slice, where systemd has replaced the dashes of the
// uid by underscores, or pod<uid>), with the dashes restored.
//
// Not containers, and so nil: plain systemd units (/system.slice/sshd.service),
// sessions, the root, pod cgroups without a container below them, and the
// runtimes' monitor processes (crio-conmon-<id>.scope, libpod-conmon-<id>.scope),
// which run beside the container, not in it. When containers are nested (a
// kind node is a docker container running Kubernetes pods) the innermost one
// is returned.
func ParseCgroup(path string) *schema.Container {
	var (
		found   *schema.Container
		kube    bool   // a kubepods segment was seen
		pod     string // pod uid seen since the last container
		prev    string // previous segment
		machine bool   // previous segment was machine.slice
	)
	for rest := path; rest != ""; {
		var seg string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			seg, rest = rest, ""
		}
		if seg == "" {
			continue
		}
		if c := containerSegment(seg, prev, kube, pod, machine); c != nil {
			found, pod, kube = c, "", false
		} else if uid, ok := podSegment(seg, kube); ok {
			pod = uid
		} else if seg == "kubepods" || seg == "kubepods.slice" {
			kube = true
		}
		machine = seg == "machine.slice"
		prev = seg
	}
	return found
}

// containerSegment recognises one path segment that names a container.
func containerSegment(seg, prev string, kube bool, pod string, machine bool) *schema.Container {
	name, scope := strings.CutSuffix(seg, ".scope")
	mk := func(runtime, id string) *schema.Container {
		c := &schema.Container{ID: id, Runtime: runtime}
		if runtime != RuntimeSystemd {
			c.PodUID = pod
		}
		return c
	}
	for _, p := range [...]struct{ prefix, runtime string }{
		{"docker-", RuntimeDocker},
		{"cri-containerd-", RuntimeContainerd},
		{"crio-", RuntimeCRIO},
		{"libpod-", RuntimePodman},
	} {
		if id, ok := strings.CutPrefix(name, p.prefix); ok && isContainerID(id) {
			return mk(p.runtime, id)
		}
	}
	if scope && machine {
		if n, ok := strings.CutPrefix(name, "machine-"); ok && n != "" {
			return mk(RuntimeSystemd, unescapeUnit(n))
		}
	}
	if !scope && isContainerID(seg) {
		switch {
		case prev == "docker":
			return mk(RuntimeDocker, seg)
		case kube && pod != "":
			return mk(RuntimeContainerd, seg)
		}
	}
	return nil
}

// podSegment recognises a Kubernetes pod cgroup: kubepods-pod<uid>.slice,
// kubepods-<qos>-pod<uid>.slice (systemd driver, dashes of the uid written
// as underscores) or pod<uid> below kubepods (cgroupfs driver).
func podSegment(seg string, kube bool) (string, bool) {
	var uid string
	if s, ok := strings.CutSuffix(seg, ".slice"); ok && strings.HasPrefix(s, "kubepods-") {
		i := strings.LastIndex(s, "-pod")
		if i < 0 {
			return "", false
		}
		uid = strings.ReplaceAll(s[i+len("-pod"):], "_", "-")
	} else if s, ok := strings.CutPrefix(seg, "pod"); ok && kube {
		uid = s
	} else {
		return "", false
	}
	if uid == "" {
		return "", false
	}
	for i := 0; i < len(uid); i++ {
		if c := uid[i]; !isHex(c) && c != '-' {
			return "", false
		}
	}
	return uid, true
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// isContainerID reports 64 lowercase hex digits, the id docker, containerd,
// cri-o and podman give containers.
func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// unescapeUnit undoes systemd's unit name escaping (\xNN, used for '-' and
// other bytes) in a unit name's instance part.
func unescapeUnit(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, ok := unhex2(s[i+2], s[i+3]); ok {
				b = append(b, v)
				i += 3
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

func unhex2(a, b byte) (byte, bool) {
	x, ok1 := unhex(a)
	y, ok2 := unhex(b)
	return x<<4 | y, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
