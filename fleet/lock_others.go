//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package fleet

import (
	"fmt"
	"os"
	"runtime"
)

func tryLock(path string) (*os.File, bool, error) {
	return nil, false, fmt.Errorf("fleet: locking %s: not supported on %s/%s (no flock)", path, runtime.GOOS, runtime.GOARCH)
}

func unlock(f *os.File) error { return f.Close() }
