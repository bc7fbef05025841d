package deploy_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/need"
)

const unitFile = "systemd/cnstream.service"

// unit is a systemd unit file: section: key: values, in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: %q", file, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// TestSystemdUnit runs systemd-analyze verify on the unit (pointed at the
// binary built here: verify checks that ExecStart exists) and wants no
// warning at all, asks systemd-analyze security for its exposure, and
// checks the settings cnstream depends on.
func TestSystemdUnit(t *testing.T) {
	need.Tool(t, "systemd-analyze", "it verifies the unit file and rates its exposure")
	u := parseUnit(t, unitFile)
	exec0 := strings.Fields(u.get("Service", "ExecStart"))
	if len(exec0) != 4 || exec0[0] != "/usr/local/bin/cnstream" || exec0[1] != "run" || exec0[2] != "--config" {
		t.Fatalf("ExecStart %q: want /usr/local/bin/cnstream run --config FILE", exec0)
	}
	conf := exec0[3]
	if conf != "/etc/cnstream/cnstream.yaml" || u.get("Service", "ConfigurationDirectory") != "cnstream" {
		t.Errorf("configuration %s, ConfigurationDirectory=%s: want /etc/cnstream/cnstream.yaml and cnstream", conf, u.get("Service", "ConfigurationDirectory"))
	}

	// systemd-analyze verify: the unit as written, ExecStart aside.
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "cnstream.service")
	text := strings.Replace(string(b), "ExecStart="+exec0[0], "ExecStart="+mustAbs(t, cnstreamBin), 1)
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", tmp).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=true", tmp).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for cnstream.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Errorf("systemd-analyze security --offline=true: %v\n%s", err, out)
	} else if e, _ := strconv.ParseFloat(string(m[1]), 64); e > 3 {
		t.Errorf("systemd-analyze security: exposure %.1f, more than 3.0 (\"OK\"):\n%s", e, out)
	} else {
		t.Logf("systemd-analyze security: exposure %.1f", e)
	}

	// Least privilege, and what cnstream cannot do without.
	want := map[string]string{
		"Type":                    "simple",
		"DynamicUser":             "yes",
		"CapabilityBoundingSet":   "CAP_NET_ADMIN CAP_SYS_PTRACE",
		"AmbientCapabilities":     "CAP_NET_ADMIN CAP_SYS_PTRACE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"StateDirectory":          "cnstream",
		"RestrictAddressFamilies": "AF_NETLINK AF_UNIX AF_INET AF_INET6",
		"SystemCallArchitectures": "native",
		"ProtectKernelModules":    "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectControlGroups":    "yes",
		"Restart":                 "on-failure",
	}
	for k, v := range want {
		if got := u.get("Service", k); got != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	for k, why := range map[string]string{
		"PrivateNetwork": "the connector socket exists only in the initial network namespace",
		"PrivateUsers":   "only processes in the initial user namespace are heard",
		"PrivatePIDs":    "only processes in the initial pid namespace are heard",
		"ProtectProc":    "enrichment reads every /proc/PID",
		"ProcSubset":     "the boot id is read from /proc/sys/kernel/random/boot_id",
		"User":           "the dynamic user owns only /var/lib/cnstream",
	} {
		if v := u.get("Service", k); v != "" {
			t.Errorf("%s=%s: %s", k, v, why)
		}
	}

	// The example configuration validates and writes into the state directory.
	validate(t, "systemd/cnstream.yaml", nil)
	c := readConfig(t, "systemd/cnstream.yaml")
	for _, s := range c.Sinks {
		if s.File != nil && !strings.HasPrefix(s.File.Dir, "${STATE_DIRECTORY:-/var/lib/cnstream}") {
			t.Errorf("sink %s: dir %s: want under ${STATE_DIRECTORY:-/var/lib/cnstream}, the only writable place (ProtectSystem=strict)", s.Name, s.File.Dir)
		}
	}
}

// TestSystemdPrivileges runs cnstream as the unit does, as far as privileges
// go: a user that is not root, no new privileges, and only the unit's
// ambient capabilities. With them it must subscribe to process events, get
// its 64 MiB receive buffer (SO_RCVBUFFORCE: CAP_NET_ADMIN) and read exe and
// cwd of a process of root (ptrace read access: CAP_SYS_PTRACE).
func TestSystemdPrivileges(t *testing.T) {
	need.Root(t, "it changes to another user with chosen capabilities")
	need.Tool(t, "setpriv", "it runs cnstream as another user with the unit's capabilities")
	u := parseUnit(t, unitFile)
	var caps []string
	for _, c := range strings.Fields(u.get("Service", "AmbientCapabilities")) {
		caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	set := "-all," + strings.Join(caps, ",")
	// The binary must be reachable by the unprivileged user.
	bin := filepath.Join(t.TempDir(), "cnstream")
	if _, err := copyFile(cnstreamBin, bin); err != nil {
		t.Fatal(err)
	}
	// t.TempDir makes <tmp>/<test>/<n> with mode 0700: open both.
	for _, d := range []string{filepath.Dir(bin), filepath.Dir(filepath.Dir(bin))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	tail := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set, "--no-new-privs",
		bin, "tail", "--json", "--kinds", "exec")
	stdout, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	tail.Stderr = &stderr
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	defer func() {
		if !done {
			_ = tail.Process.Kill()
			_ = tail.Wait()
		}
	}()
	events := make(chan map[string]any, 1024)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e map[string]any
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
	}()

	// A root process in a directory of its own, exec'd until tail hears it
	// (tail needs a moment to subscribe).
	cwd := t.TempDir()
	want, err := filepath.EvalSymlinks("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	var got map[string]any
	for got == nil && time.Now().Before(deadline) {
		child := exec.Command("/bin/sleep", "0.05")
		child.Dir = cwd
		if err := child.Run(); err != nil {
			t.Fatal(err)
		}
		pid := float64(child.ProcessState.Pid())
		timeout := time.After(500 * time.Millisecond)
	wait:
		for {
			select {
			case e, ok := <-events:
				if !ok {
					t.Fatalf("tail ended: %s", stderr.String())
				}
				if p, _ := e["process"].(map[string]any); p != nil && p["pid"] == pid {
					got = p
					break wait
				}
			case <-timeout:
				break wait
			}
		}
	}
	if got == nil {
		t.Fatalf("no exec event of the child within 15 s; stderr: %s", stderr.String())
	}
	if got["exe"] != want || got["cwd"] != cwd {
		t.Errorf("exec event of a root process seen by cnstream as uid 65534 with %s: exe %v, cwd %v; want %s, %s\n%v",
			u.get("Service", "AmbientCapabilities"), got["exe"], got["cwd"], want, cwd, got)
	}
	go func() { // keep tail's stdout flowing until it exits
		for range events {
		}
	}()
	_ = tail.Process.Signal(syscall.SIGINT)
	err = tail.Wait()
	done = true
	if err != nil {
		t.Errorf("tail: %v\n%s", err, stderr.String())
	}
	if s := stderr.String(); strings.Contains(s, "warning: receive buffer limited") || !strings.Contains(s, "receive buffer 134217728 bytes") {
		t.Errorf("tail without the 64 MiB receive buffer (SO_RCVBUFFORCE needs CAP_NET_ADMIN):\n%s", s)
	}
}
