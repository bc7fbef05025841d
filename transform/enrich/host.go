package enrich

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cnstream/cnstream/schema"
)

// Where the machine id is read, in order: systemd's file, then D-Bus's.
var machineIDFiles = []string{"/etc/machine-id", "/var/lib/dbus/machine-id"}

// ReadHost reads the identity of this machine: its hostname, machine id
// (/etc/machine-id, else /var/lib/dbus/machine-id) and boot id
// (<procRoot>/sys/kernel/random/boot_id; procRoot "" is "/proc"). A missing
// or uninitialised machine id is left empty; the boot id is required, as
// every event id contains it.
func ReadHost(procRoot string) (schema.Host, error) {
	return readHost(procRoot, machineIDFiles)
}

func readHost(procRoot string, idFiles []string) (schema.Host, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	var h schema.Host
	name, err := os.Hostname()
	if err != nil {
		return h, fmt.Errorf("enrich: hostname: %w", err)
	}
	h.Hostname = name
	for _, f := range idFiles {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return h, fmt.Errorf("enrich: machine id: %w", err)
		}
		// systemd writes "uninitialized" until the first boot completes.
		if id := strings.TrimSpace(string(b)); id != "" && id != "uninitialized" {
			h.MachineID = id
			break
		}
	}
	p := filepath.Join(procRoot, "sys", "kernel", "random", "boot_id")
	b, err := os.ReadFile(p)
	if err != nil {
		return h, fmt.Errorf("enrich: boot id: %w", err)
	}
	if h.BootID = strings.TrimSpace(string(b)); h.BootID == "" {
		return h, fmt.Errorf("enrich: boot id: %s is empty", p)
	}
	return h, nil
}
