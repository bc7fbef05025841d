//go:build linux

package enrich

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/transform/redact"
)

func secretToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "s3cr" + hex.EncodeToString(b)
}

// startBlocked starts path with argv (argv[0] first) blocked on reading
// its stdin, a pipe closed at cleanup.
func startBlocked(t *testing.T, path string, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := &exec.Cmd{Path: path, Args: argv}
	w, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRealRedact: real processes holding secrets in their arguments (a
// shell with --password=X and TOKEN=X, a copy of the shell named mysql
// with -pX) are described with the secrets replaced and counted, whether
// the table got them from Seed, from the exec's /proc read, or from a
// fork of them; without Config.Redact the arguments are as they were.
func TestRealRedact(t *testing.T) {
	pw, tok, my := secretToken(t), secretToken(t), secretToken(t)
	sh := startBlocked(t, "/bin/sh", "/bin/sh", "-c", "read x", "sh", "--password="+pw, "TOKEN="+tok)
	mysql := filepath.Join(t.TempDir(), "mysql")
	copyFile(t, "/bin/sh", mysql)
	my1 := startBlocked(t, mysql, mysql, "-c", "read x", "-p"+my)

	tab, err := New(Config{Redact: redact.Default()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	plain, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Seed(""); err != nil {
		t.Fatal(err)
	}
	shPID, myPID := uint32(sh.Process.Pid), uint32(my1.Process.Pid)
	wantSh := []string{"/bin/sh", "-c", "read x", "sh", "--password=[redacted]", "TOKEN=[redacted]"}
	wantMy := []string{mysql, "-c", "read x", "-p[redacted]"}
	check := func(what string, p *schema.Process, want []string, n uint32) {
		t.Helper()
		if !slices.Equal(p.Cmdline, want) || p.Redacted != n {
			t.Errorf("%s: cmdline %q redacted %d, want %q and %d", what, p.Cmdline, p.Redacted, want, n)
		}
		for _, s := range []string{pw, tok, my} {
			if strings.Contains(strings.Join(p.Cmdline, "\x00"), s) {
				t.Errorf("%s: the secret %s is in %q", what, s, p.Cmdline)
			}
		}
	}
	// Seeded: a fork of each is described from the table.
	check("seeded sh's fork", tab.Enrich(forkEv(shPID, shPID, 4000001, 4000001)), wantSh, 2)
	check("seeded mysql's fork", tab.Enrich(forkEv(myPID, myPID, 4000002, 4000002)), wantMy, 1)
	// An exec reads /proc again, and is counted.
	s0 := tab.Stats()
	check("sh exec", tab.Enrich(execEv(shPID)), wantSh, 2)
	check("mysql exec", tab.Enrich(execEv(myPID)), wantMy, 1)
	if s := tab.Stats(); s.Redacted != s0.Redacted+2 || s.RedactedArgs != s0.RedactedArgs+3 {
		t.Errorf("stats: redacted %d -> %d, args %d -> %d; want +2 command lines, +3 arguments", s0.Redacted, s.Redacted, s0.RedactedArgs, s.RedactedArgs)
	}
	// Without a Redactor: as read.
	if p := plain.Enrich(execEv(shPID)); p.Redacted != 0 || !slices.Contains(p.Cmdline, "--password="+pw) {
		t.Errorf("without Redact: cmdline %q redacted %d", p.Cmdline, p.Redacted)
	}
	if s := plain.Stats(); s.Redacted != 0 || s.RedactedArgs != 0 {
		t.Errorf("without Redact: stats %+v", s)
	}
}
