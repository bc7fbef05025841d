package spool

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cnstream/cnstream/testenv/need"
)

// TestDiskFull fills a small tmpfs under the spool: Append reports the
// failure, every cursor gets a dropped record of reason spool_write_failed
// with the exact count, nothing panics; once space is freed (the cursor
// acknowledged, the spool deleted its segments; or the tmpfs grown),
// appends succeed again.
func TestDiskFull(t *testing.T) {
	need.Root(t, "mounts a small tmpfs to fill the disk under the spool")
	need.Tool(t, "mount", "mounts the tmpfs")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	recs := testRecords(testBoot)
	s := open(t, Config{Dir: dir, Records: recs, MaxSize: 64 << 20, SegmentSize: 256 << 10, CacheEvents: 128}, "k")
	appended, failed := 0, 0
	for i := 0; failed < 3 && i < 1000; i++ {
		if s.Append(forks(recs, 0, uint32(i*100), 100)) {
			appended += 100
		} else {
			failed += 100
		}
	}
	st := s.Stats()
	if failed == 0 || st.WriteErrors == 0 || !strings.Contains(st.LastError, "no space left on device") {
		t.Fatalf("stats %+v: want write errors naming ENOSPC", st)
	}
	// The statements are in the log: a restart before any sink took them
	// still delivers them.
	if err := s.Close(); err != nil {
		t.Logf("close on a full disk: %v", err)
	}
	s = open(t, Config{Dir: dir, Records: recs, MaxSize: 64 << 20, SegmentSize: 256 << 10, CacheEvents: 128}, "k")
	defer s.Close()
	c := s.Cursor("k")
	got := takeAll(t, c)
	n, dropped, _ := tally(got)
	if n != appended || dropped["spool_write_failed"] != uint64(failed) {
		t.Fatalf("took %d events (appended %d), dropped %v (failed %d)", n, appended, dropped, failed)
	}
	// Everything acknowledged: the next Sync deletes the segments, in
	// spite of the full disk, and appends work again.
	if err := s.Sync(); err != nil {
		t.Logf("sync on a full disk: %v", err)
	}
	if !s.Append(forks(recs, 0, 1_000_000, 100)) {
		t.Fatalf("append after the acknowledged segments were deleted failed: %+v", s.Stats())
	}
	if got := takeAll(t, c); len(got) != 100 {
		t.Fatalf("took %d after recovery, want 100", len(got))
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
