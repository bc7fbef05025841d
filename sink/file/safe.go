package file

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
)

// The sink often runs as root and writes into a directory that others may
// be able to write to. Every file it opens, creates, renames or removes is
// named relative to an os.Root of the directory (openat on the directory's
// fd: nothing escapes it, and no symlink pointing outside it is followed),
// and:
//
//   - files it creates are created with O_CREATE|O_EXCL, which never
//     follows a symlink (a link planted under the name makes the create
//     fail with EEXIST, reported as ErrUnsafeFile);
//   - files it opens that already exist (the active file at New, rotated
//     files to compress) are checked after the open: the entry must be a
//     regular file, not a symlink, and the very file that was opened
//     (os.SameFile of the fd's stat and the entry's lstat, which also
//     catches a swap between the two); the active file must also have a
//     single link, so that a hard link planted under its name is not
//     appended to;
//   - modes are set with fchmod on the new file's fd, so they do not depend
//     on the umask.

// ErrUnsafeFile: a name the sink writes or reads is a symlink, a hard link
// or not a regular file. The sink refuses to go through it; the entry must
// be removed by the operator (the sink never removes what it did not make).
var ErrUnsafeFile = errors.New("not a regular file of the sink's own (a symlink, a hard link or a special file): refusing to go through it")

// createFile creates name in root with flag|O_CREATE|O_EXCL and sets its
// mode to exactly mode, whatever the umask.
func createFile(root *os.Root, name string, flag int, mode fs.FileMode) (*os.File, error) {
	f, err := root.OpenFile(name, flag|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			if li, lerr := root.Lstat(name); lerr == nil && !li.Mode().IsRegular() {
				return nil, fmt.Errorf("%s: %w (it is %s)", name, ErrUnsafeFile, kindOf(li.Mode()))
			}
		}
		return nil, err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		root.Remove(name)
		return nil, err
	}
	return f, nil
}

// openFile opens name, an existing entry of root, and checks that the file
// opened is the regular file the entry names, not one a symlink points to;
// with single, that it has no other link either.
func openFile(root *os.Root, name string, flag int, single bool) (*os.File, error) {
	f, err := root.OpenFile(name, flag, 0)
	if err != nil {
		return nil, err
	}
	if err := checkEntry(root, name, f, single, false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func checkEntry(root *os.Root, name string, f *os.File, single, dir bool) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	li, err := root.Lstat(name)
	if err != nil {
		return err
	}
	kind := li.Mode().IsRegular()
	if dir {
		kind = li.IsDir()
	}
	switch {
	case !kind || !os.SameFile(fi, li):
		return fmt.Errorf("%s: %w (it is %s)", name, ErrUnsafeFile, kindOf(li.Mode()))
	case single && linkCount(fi) > 1:
		return fmt.Errorf("%s: %w (it has %d links)", name, ErrUnsafeFile, linkCount(fi))
	}
	return nil
}

func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsRegular():
		return "another file than the one opened"
	}
	return "not a regular file"
}

// mkdirAll creates dir and its missing parents with mode exactly (set with
// fchmod on the new directory, whatever the umask). Directories that exist
// are left as they are.
func mkdirAll(dir string, mode fs.FileMode) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: errors.New("not a directory")}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent, base := filepath.Split(filepath.Clean(dir))
	if parent == "" {
		parent = "."
	}
	if parent != dir {
		if err := mkdirAll(parent, mode); err != nil {
			return err
		}
	}
	root, err := os.OpenRoot(parent)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.Mkdir(base, mode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Made by someone else meanwhile: not ours to change.
			return nil
		}
		return err
	}
	d, err := root.Open(base)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := checkEntry(root, base, d, false, true); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return d.Chmod(mode)
}

var pingSeq atomic.Uint64

// pingName is the name of Ping's temporary file.
func pingName() string {
	return ".cnstream-ping-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(pingSeq.Add(1), 10)
}
