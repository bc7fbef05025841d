package enrich

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadHostFake(t *testing.T) {
	dir := t.TempDir()
	proc := filepath.Join(dir, "proc")
	if err := os.MkdirAll(filepath.Join(proc, "sys/kernel/random"), 0o755); err != nil {
		t.Fatal(err)
	}
	bootFile := filepath.Join(proc, "sys/kernel/random/boot_id")
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.WriteFile(bootFile, []byte("03503a06-b563-4c14-9190-4d9236f8fed0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	etc := write("etc-machine-id", "3d1219c7c4c5404aaa1f6d2a48adfda4\n")
	dbus := write("dbus-machine-id", "ffffffffffffffffffffffffffffffff\n")
	uninit := write("uninit", "uninitialized\n")
	empty := write("empty", "")
	missing := filepath.Join(dir, "missing")
	hostname, _ := os.Hostname()

	for _, tt := range []struct {
		name    string
		files   []string
		machine string
	}{
		{"etc", []string{etc, dbus}, "3d1219c7c4c5404aaa1f6d2a48adfda4"},
		{"dbus fallback", []string{missing, dbus}, "ffffffffffffffffffffffffffffffff"},
		{"uninitialized falls back", []string{uninit, dbus}, "ffffffffffffffffffffffffffffffff"},
		{"empty falls back", []string{empty, dbus}, "ffffffffffffffffffffffffffffffff"},
		{"none: empty, no error", []string{missing, missing}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := readHost(proc, tt.files)
			if err != nil {
				t.Fatal(err)
			}
			if h.MachineID != tt.machine || h.BootID != "03503a06-b563-4c14-9190-4d9236f8fed0" || h.Hostname != hostname {
				t.Errorf("got %+v", h)
			}
		})
	}
	t.Run("unreadable machine id is an error", func(t *testing.T) {
		if _, err := readHost(proc, []string{dir}); err == nil { // a directory
			t.Error("no error")
		}
	})
	t.Run("boot id is required", func(t *testing.T) {
		if _, err := readHost(filepath.Join(dir, "noproc"), []string{etc}); err == nil {
			t.Error("no error for a missing boot id")
		}
		if err := os.WriteFile(bootFile, []byte("\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readHost(proc, []string{etc}); err == nil {
			t.Error("no error for an empty boot id")
		}
	})
}
