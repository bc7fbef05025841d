package file

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cnstream/cnstream/testenv/need"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/sinktest"
)

// mountTmpfs mounts a tmpfs of the given size ("64k") on a temporary
// directory for the test: a real file system that runs out of space.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	need.Root(t, "mounting a tmpfs to make ENOSPC needs CAP_SYS_ADMIN")
	dir := t.TempDir()
	if err := syscall.Mount("cnstream-test", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			return p
		}
	}
}

// tmpfsHarness runs a sink with cfg on a tmpfs of its own; Break fills the
// tmpfs.
func tmpfsHarness(cfg Config) sinktest.Harness {
	var dir string
	return sinktest.Harness{
		New: func(t *testing.T) (sink.Sink, error) {
			dir = mountTmpfs(t, "32m")
			c := cfg
			c.Dir = filepath.Join(dir, "data")
			s, err := New(c)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
		Read: func(t *testing.T) ([]schema.Event, error) {
			return ReadAll(Config{Dir: filepath.Join(dir, "data"), Prefix: cfg.Prefix})
		},
		Break: func(t *testing.T) { fill(t, dir) },
	}
}

func TestSinktestTmpfs(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"jsonl", Config{}},
		{"msgpack-rotating", Config{Format: Msgpack, MaxSize: 32 << 10}},
	} {
		t.Run(c.name, func(t *testing.T) { sinktest.Run(t, tmpfsHarness(c.cfg)) })
	}
}

// TestENOSPC writes until a tiny tmpfs is full: the write fails with ENOSPC,
// the file keeps every acknowledged record and no part of the failed batch,
// and once space is freed the retried batch goes through.
func TestENOSPC(t *testing.T) {
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			root := mountTmpfs(t, "256k")
			// Leave about 64 KiB.
			filler := filepath.Join(root, "filler")
			if err := os.WriteFile(filler, make([]byte, 192<<10), 0o600); err != nil {
				t.Fatal(err)
			}
			var errs []error
			cfg := Config{Dir: filepath.Join(root, "data"), Format: format, MaxSize: 16 << 10,
				OnError: func(err error) { errs = append(errs, err) }}
			s := mustNew(t, cfg)
			g := sinktest.NewGenerator(13)
			var acked, failed []schema.Event
			for i := 0; ; i++ {
				if i == 1000 {
					t.Fatal("no error after 1000 batches on a 256 KiB tmpfs")
				}
				b := g.Batch(20)
				err := s.WriteBatch(t.Context(), b)
				if err == nil {
					acked = append(acked, b...)
					continue
				}
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("WriteBatch = %v, want an error matching ENOSPC", err)
				}
				if sink.IsPermanent(err) {
					t.Errorf("ENOSPC is permanent: %v", err)
				}
				t.Logf("after %d events: %v", len(acked), err)
				failed = b
				break
			}
			if len(acked) == 0 {
				t.Fatal("the first batch failed")
			}
			if st := s.Stats(); st.Errors != 1+uint64(len(errs)) || st.Events != uint64(len(acked)) {
				t.Errorf("Stats %+v: want Errors 1 + %d compression errors, Events %d", st, len(errs), len(acked))
			}
			// Nothing acknowledged is lost, nothing half-written is read.
			sinktest.Check(t, acked, mustReadAll(t, cfg), sinktest.CheckOptions{Maybe: failed})

			// Retrying without space fails again and changes nothing.
			if err := s.WriteBatch(t.Context(), failed); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("retry on a full disk = %v, want ENOSPC", err)
			}
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			if err := s.WriteBatch(t.Context(), failed); err != nil {
				t.Fatalf("retry after freeing space: %v", err)
			}
			more := g.Batch(20)
			mustWrite(t, s, more)
			mustClose(t, s)
			// A batch that failed midway may have left whole records in a
			// file rotated during it: those come back twice at most, which
			// the contract allows; here the retry is read back once more.
			got := mustReadAll(t, cfg)
			dedup := got[:0:0]
			seen := map[string]bool{}
			for _, e := range got {
				if !seen[e.ID] {
					seen[e.ID] = true
					dedup = append(dedup, e)
				}
			}
			want := append(append(acked[:len(acked):len(acked)], failed...), more...)
			sinktest.Check(t, want, dedup, sinktest.CheckOptions{})
		})
	}
}
