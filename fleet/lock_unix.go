//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package fleet

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// tryLock takes an exclusive flock on the file at path (created if
// missing) without waiting. It returns the locked file, or held true when
// another open file (another archiver, in this process or another) holds
// the lock.
func tryLock(path string) (f *os.File, held bool, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, false, fmt.Errorf("fleet: opening the lock file: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, true, nil
		}
		return nil, false, fmt.Errorf("fleet: flock %s: %w", path, err)
	}
	return f, false, nil
}

// unlock releases the lock of f and closes it.
func unlock(f *os.File) error {
	// Closing the only descriptor of the open file releases the flock.
	return f.Close()
}
