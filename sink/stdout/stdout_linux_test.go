package stdout

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/sinktest"
)

// TestSinktestFile runs the suite on a real file; Break puts /dev/full
// under the file's descriptor (dup3), so that the sink's next writes fail
// with a real ENOSPC while the file stays readable by its path.
func TestSinktestFile(t *testing.T) {
	var f *os.File
	var path string
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) (sink.Sink, error) {
			path = filepath.Join(t.TempDir(), "out.jsonl")
			var err error
			f, err = os.Create(path)
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { f.Close() })
			s, err := New(Config{Writer: f})
			if err != nil {
				return nil, err
			}
			return s, nil
		},
		Read: func(*testing.T) ([]schema.Event, error) {
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			return decodeLines(b)
		},
		Break: func(t *testing.T) {
			full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
			if err != nil {
				t.Skipf("stdout: /dev/full: %v", err)
			}
			defer full.Close()
			if err := syscall.Dup3(int(full.Fd()), int(f.Fd()), syscall.O_CLOEXEC); err != nil {
				t.Fatalf("dup3: %v", err)
			}
		},
	})
}

func TestENOSPC(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("stdout: /dev/full: %v", err)
	}
	defer full.Close()
	s, err := New(Config{Writer: full})
	if err != nil {
		t.Fatal(err)
	}
	err = s.WriteBatch(t.Context(), sinktest.NewGenerator(4).Batch(3))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("WriteBatch to /dev/full = %v, want ENOSPC", err)
	}
}
