package file

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cnstream/cnstream/sink/sinktest"
)

// victim makes a file the sink must never write: outside the directory
// (absolute and relative links) or inside it.
func victim(t *testing.T, dir string) (path string, content []byte) {
	t.Helper()
	content = []byte("root:secret:do not touch\n")
	path = filepath.Join(dir, "victim")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, content
}

func checkVictim(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("victim %s was changed: %q, want %q", path, got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("victim %s: mode %v, want 0600", path, fi.Mode().Perm())
	}
}

// TestPlantedSymlinkActiveFile: a symlink planted under the active file's
// name is never written through, whether it points outside the directory
// (absolutely or relatively) or at another file inside it. The write fails
// with ErrUnsafeFile and the link stays.
func TestPlantedSymlinkActiveFile(t *testing.T) {
	for _, c := range []struct {
		name   string
		target func(outside, inside string) string
	}{
		{"absolute-outside", func(outside, _ string) string { return outside }},
		{"relative-outside", func(_, _ string) string { return "../victim" }},
		{"inside", func(_, _ string) string { return "victim" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			top := t.TempDir()
			dir := filepath.Join(top, "data")
			if err := os.Mkdir(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			outside, content := victim(t, top)
			inside, _ := victim(t, dir)
			link := filepath.Join(dir, "events.jsonl")
			if err := os.Symlink(c.target(outside, inside), link); err != nil {
				t.Fatal(err)
			}
			for _, sync := range []SyncPolicy{SyncAlways, SyncNever} {
				s := mustNew(t, Config{Dir: dir, Sync: sync})
				err := s.WriteBatch(ctxT(t), sinktest.NewGenerator(1).Batch(10))
				if !errors.Is(err, ErrUnsafeFile) || !strings.Contains(err.Error(), "symlink") {
					t.Errorf("WriteBatch through a planted symlink = %v, want ErrUnsafeFile naming a symlink", err)
				}
				mustClose(t, s)
			}
			checkVictim(t, outside, content)
			checkVictim(t, inside, content)
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the planted link: %v, %v: want it left in place", fi, err)
			}
		})
	}
}

// TestPlantedHardLinkActiveFile: an active file found at New with another
// link (a victim hard linked under its name) is neither cut nor appended to.
func TestPlantedHardLinkActiveFile(t *testing.T) {
	dir := t.TempDir()
	v, content := victim(t, dir)
	if err := os.Link(v, filepath.Join(dir, "events.jsonl")); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Dir: dir})
	if !errors.Is(err, ErrUnsafeFile) {
		if s != nil {
			mustClose(t, s)
		}
		t.Fatalf("New with a hard-linked active file = %v, want ErrUnsafeFile", err)
	}
	checkVictim(t, v, content)
}

// TestPlantedSymlinkCompression: symlinks planted under the names the
// compression writes (<rotated>.zst.tmp) and reads (a rotated file) are
// not followed: the victim stays as it is, and the sink's own rotated file
// is compressed.
func TestPlantedSymlinkCompression(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "data")
	clock := newClock()
	cfg := Config{Dir: dir, MaxSize: 4096, Now: clock.Now}
	s := mustNew(t, cfg)
	outside, content := victim(t, top)
	first := rotatedName("events", 0, clock.Now(), JSONL)
	if err := os.Symlink(outside, filepath.Join(dir, first+zstExt+tmpExt)); err != nil {
		t.Fatal(err)
	}
	// A rotated name the sink will not reach, linked to the victim: New
	// skips it (it is not a regular file) and never compresses it.
	stray := rotatedName("events", 99, clock.Now(), JSONL)
	if err := os.Symlink(outside, filepath.Join(dir, stray)); err != nil {
		t.Fatal(err)
	}
	events := sinktest.NewGenerator(2).Batch(100)
	mustWrite(t, s, events)
	mustClose(t, s)
	checkVictim(t, outside, content)
	if _, err := os.Stat(filepath.Join(dir, first+zstExt)); err != nil {
		t.Errorf("the first rotated file was not compressed: %v (files %v)", err, names(t, dir))
	}
	s = mustNew(t, cfg)
	mustClose(t, s)
	checkVictim(t, outside, content)
}

// TestModesWhateverUmask: files and directories get exactly their modes
// under any umask. syscall.Umask is process-wide: not parallel.
func TestModesWhateverUmask(t *testing.T) {
	for _, umask := range []int{0, 0o022, 0o077} {
		old := syscall.Umask(umask)
		for _, c := range []struct {
			cfg            Config
			fileMode, dirM os.FileMode
		}{
			{Config{}, 0o640, 0o750},
			{Config{FileMode: 0o600, DirMode: 0o700}, 0o600, 0o700},
		} {
			root := t.TempDir()
			c.cfg.Dir = filepath.Join(root, "a", "b")
			c.cfg.MaxSize = 4096
			s := mustNew(t, c.cfg)
			if err := s.Ping(ctxT(t)); err != nil {
				t.Errorf("Ping: %v", err)
			}
			mustWrite(t, s, sinktest.NewGenerator(9).Batch(50))
			mustClose(t, s)
			for _, d := range []string{filepath.Join(root, "a"), c.cfg.Dir} {
				fi, err := os.Stat(d)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != c.dirM {
					t.Errorf("umask %#o: %s: mode %v, want %v", umask, d, fi.Mode().Perm(), c.dirM)
				}
			}
			n := names(t, c.cfg.Dir)
			if len(n) < 3 {
				t.Fatalf("files %v: want rotated and compressed files", n)
			}
			for _, name := range n {
				fi, err := os.Stat(filepath.Join(c.cfg.Dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != c.fileMode {
					t.Errorf("umask %#o: %s: mode %v, want %v", umask, name, fi.Mode().Perm(), c.fileMode)
				}
			}
		}
		syscall.Umask(old)
	}
}
