package enrich

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
)

const (
	id1 = "3f1c2a9b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3"
	id2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	pod = "8b2d5c1e-3f4a-4b6c-9d7e-0a1b2c3d4e5f"
	// pod with systemd's underscores
	podU = "8b2d5c1e_3f4a_4b6c_9d7e_0a1b2c3d4e5f"
)

func TestParseCgroup(t *testing.T) {
	tests := []struct {
		name, path string
		want       *schema.Container
	}{
		{"docker systemd driver", "/system.slice/docker-" + id1 + ".scope", &schema.Container{ID: id1, Runtime: "docker"}},
		{"docker cgroupfs driver", "/docker/" + id1, &schema.Container{ID: id1, Runtime: "docker"}},
		{"docker cgroupfs, process in a child cgroup", "/docker/" + id1 + "/init.scope", &schema.Container{ID: id1, Runtime: "docker"}},
		{"containerd CRI systemd burstable",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podU + ".slice/cri-containerd-" + id1 + ".scope",
			&schema.Container{ID: id1, Runtime: "containerd", PodUID: pod}},
		{"containerd CRI systemd besteffort",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + podU + ".slice/cri-containerd-" + id1 + ".scope",
			&schema.Container{ID: id1, Runtime: "containerd", PodUID: pod}},
		{"containerd CRI systemd guaranteed (no QoS slice)",
			"/kubepods.slice/kubepods-pod" + podU + ".slice/cri-containerd-" + id1 + ".scope",
			&schema.Container{ID: id1, Runtime: "containerd", PodUID: pod}},
		{"CRI cgroupfs driver", "/kubepods/burstable/pod" + pod + "/" + id1,
			&schema.Container{ID: id1, Runtime: "containerd", PodUID: pod}},
		{"CRI cgroupfs guaranteed", "/kubepods/pod" + pod + "/" + id1,
			&schema.Container{ID: id1, Runtime: "containerd", PodUID: pod}},
		{"static pod: uid is a hash", "/kubepods/besteffort/pod0f1e2d3c4b5a69788796a5b4c3d2e1f0/" + id1,
			&schema.Container{ID: id1, Runtime: "containerd", PodUID: "0f1e2d3c4b5a69788796a5b4c3d2e1f0"}},
		{"docker under kubernetes (systemd driver)",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podU + ".slice/docker-" + id1 + ".scope",
			&schema.Container{ID: id1, Runtime: "docker", PodUID: pod}},
		{"cri-o systemd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podU + ".slice/crio-" + id1 + ".scope",
			&schema.Container{ID: id1, Runtime: "cri-o", PodUID: pod}},
		{"cri-o cgroupfs", "/kubepods/burstable/pod" + pod + "/crio-" + id1,
			&schema.Container{ID: id1, Runtime: "cri-o", PodUID: pod}},
		{"cri-o conmon is beside the container", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podU + ".slice/crio-conmon-" + id1 + ".scope", nil},
		{"cri-o outside kubernetes", "/system.slice/crio-" + id1 + ".scope", &schema.Container{ID: id1, Runtime: "cri-o"}},
		{"podman rootful", "/machine.slice/libpod-" + id1 + ".scope", &schema.Container{ID: id1, Runtime: "podman"}},
		{"podman rootful, container subgroup", "/machine.slice/libpod-" + id1 + ".scope/container", &schema.Container{ID: id1, Runtime: "podman"}},
		{"podman rootless", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + id1 + ".scope", &schema.Container{ID: id1, Runtime: "podman"}},
		{"podman cgroupfs", "/libpod_parent/libpod-" + id1, &schema.Container{ID: id1, Runtime: "podman"}},
		{"podman conmon", "/machine.slice/libpod-conmon-" + id1 + ".scope", nil},
		{"systemd-nspawn", "/machine.slice/machine-debian.scope", &schema.Container{ID: "debian", Runtime: "systemd"}},
		{"systemd-nspawn, escaped name, payload", `/machine.slice/machine-debian\x2d12.scope/payload/system.slice/sshd.service`, &schema.Container{ID: "debian-12", Runtime: "systemd"}},
		{"kind: kubernetes inside docker, innermost wins",
			"/system.slice/docker-" + id2 + ".scope/kubepods/burstable/pod" + pod + "/" + id1,
			&schema.Container{ID: id1, Runtime: "containerd", PodUID: pod}},
		{"docker in docker", "/docker/" + id2 + "/docker/" + id1, &schema.Container{ID: id1, Runtime: "docker"}},
		{"docker container's pod uid does not leak to a later one", "/kubepods/pod" + pod + "/" + id2 + "/docker/" + id1, &schema.Container{ID: id1, Runtime: "docker"}},

		{"plain service", "/system.slice/sshd.service", nil},
		{"user session", "/user.slice/user-1000.slice/session-3.scope", nil},
		{"user manager", "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service", nil},
		{"root", "/", nil},
		{"empty", "", nil},
		{"init scope", "/init.scope", nil},
		{"pod without container", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podU + ".slice", nil},
		{"bare id without runtime parent", "/" + id1, nil},
		{"short id", "/system.slice/docker-abc123.scope", nil},
		{"uppercase id", "/docker/3F1C2A9B8E7D6C5B4A39281706F5E4D3C2B1A09F8E7D6C5B4A39281706F5E4D3", nil},
		{"machine scope not under machine.slice", "/system.slice/machine-foo.scope", nil},
		{"lxc is not recognised", "/lxc.payload.web", nil},
		{"pod segment outside kubepods", "/pod" + pod + "/" + id1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ParseCgroup(tt.path)); diff != "" {
				t.Errorf("ParseCgroup(%q) (-want +got):\n%s", tt.path, diff)
			}
		})
	}
}

func TestParseCgroupFile(t *testing.T) {
	hybrid, err := os.ReadFile("testdata/cgroup-hybrid.txt")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file string
		path       string
		want       *schema.Container
		ok         bool
	}{
		{"v2", "0::/system.slice/docker-" + id1 + ".scope\n", "/system.slice/docker-" + id1 + ".scope", &schema.Container{ID: id1, Runtime: "docker"}, true},
		{"v2 root", "0::/\n", "/", nil, true},
		{"hybrid: v1 line names the container", string(hybrid), "/docker/" + id1, &schema.Container{ID: id1, Runtime: "docker"}, true},
		{"hybrid: v2 used", "1:name=systemd:/user.slice\n0::/system.slice/sshd.service\n", "/system.slice/sshd.service", nil, true},
		{"hybrid: systemd line before other v1", "3:memory:/foo\n1:name=systemd:/system.slice/cron.service\n0::/\n", "/system.slice/cron.service", nil, true},
		{"hybrid: container from a line not chosen", "4:memory:/docker/" + id1 + "\n1:name=systemd:/system.slice/x.service\n0::/\n",
			"/system.slice/x.service", &schema.Container{ID: id1, Runtime: "docker"}, true},
		{"colon in path", "0::/a:b\n", "/a:b", nil, true},
		{"no trailing newline", "0::/x", "/x", nil, true},
		{"empty", "", "", nil, false},
		{"garbage", "no colons here\n", "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, c, ok := parseCgroupFile([]byte(tt.file))
			if path != tt.path || ok != tt.ok {
				t.Errorf("path, ok = %q, %v; want %q, %v", path, ok, tt.path, tt.ok)
			}
			if diff := cmp.Diff(tt.want, c); diff != "" {
				t.Errorf("container (-want +got):\n%s", diff)
			}
		})
	}
}
