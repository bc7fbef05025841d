// Package need states what a test needs from the machine (root, a tool on the
// PATH) and stops the test at once, naming what is missing and the one
// command that installs it, when the machine does not have it.
//
// A missing need fails the test: the suite never skips silently. The only
// way to skip instead is the environment variable CNSTREAM_TEST_SKIP_MISSING=1
// (documented in README.md), for a developer who knowingly runs part of the
// suite on a machine without the tools; CI and testenv/check never set it.
package need

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// SkipEnv names the environment variable that turns a missing need into a
// skip (value "1") instead of a failure.
const SkipEnv = "CNSTREAM_TEST_SKIP_MISSING"

// Setup is the one command that installs every tool the suite needs.
const Setup = "testenv/setup"

// packages maps a tool to the Debian package that has it.
var packages = map[string]string{
	"kcat":            "kcat",
	"java":            "openjdk-17-jre-headless",
	"mvn":             "maven",
	"curl":            "curl",
	"openssl":         "openssl",
	"prometheus":      "prometheus",
	"tmux":            "tmux",
	"unshare":         "util-linux",
	"setpriv":         "util-linux",
	"taskset":         "util-linux",
	"flock":           "util-linux",
	"setsid":          "util-linux",
	"systemd-analyze": "systemd",
}

// Tool stops the test unless name is an executable on the PATH (or, when it
// contains a slash, an executable file at that path), and returns its path.
// why says what the test needs it for.
func Tool(t testing.TB, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found: %s; install it with %s", name, why, Setup)
	if pkg, ok := packages[baseName(name)]; ok {
		msg += fmt.Sprintf(" (or: apt-get install %s)", pkg)
	}
	missing(t, msg)
	return ""
}

// Root stops the test unless it runs as root; why says what needs it.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root: "+why+"; run the suite as root (testenv/check refuses to run otherwise)")
	}
}

// RootMain is Root for a TestMain: it exits with status 1 (or 0 with
// CNSTREAM_TEST_SKIP_MISSING=1, having said so) unless the process is root.
func RootMain(pkg, why string) {
	if os.Geteuid() == 0 {
		return
	}
	msg := pkg + " tests need root: " + why + "; run the suite as root"
	if os.Getenv(SkipEnv) == "1" {
		fmt.Fprintf(os.Stderr, "%s: skipping every test (%s=1)\n", msg, SkipEnv)
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "%s (or set %s=1 to skip them knowingly)\n", msg, SkipEnv)
	os.Exit(1)
}

func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv(SkipEnv) == "1" {
		t.Skipf("%s (skipped: %s=1)", msg, SkipEnv)
	}
	t.Fatalf("%s (or set %s=1 to skip such tests knowingly)", msg, SkipEnv)
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}
