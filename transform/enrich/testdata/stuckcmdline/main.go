// Command stuckcmdline is a process whose /proc/PID/cmdline cannot be read,
// for TestStuckCmdline: the situation of a process stuck on a hung FUSE or
// NFS file, made on purpose.
//
// It mounts a FUSE file system it serves itself, maps a file of it, and
// has one thread read that page through /proc/self/mem: the kernel faults
// the page in holding the process's mmap lock for reading and waits for
// the READ, which the server never answers. Then another thread calls
// mmap, which waits for the lock for writing (state D); from then on every
// reader of the lock waits behind that writer: a read of
// /proc/PID/cmdline (access_remote_vm takes the lock), ps, and this
// process's own page faults. (A read of cmdline never faults a file page
// itself: it reads anonymous memory only, FOLL_ANON; and a userfaultfd
// fault drops the lock while it waits, so neither blocks it.) status,
// stat, exe, cwd and cgroup do not take the lock and stay readable.
//
// Usage: stuckcmdline DIR, DIR an empty directory to mount on, run in a
// mount namespace of its own (the test sets CLONE_NEWNS). It prints
// "ready" just before the writer thread starts and exits when its
// standard input is closed or it is killed; its exit closes /dev/fuse,
// which aborts the connection and lets every waiter go. Needs root
// (mount, /dev/fuse).
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"
)

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "stuckcmdline: %s: %v\n", what, err)
	os.Exit(1)
}

// FUSE opcodes (include/uapi/linux/fuse.h).
const (
	opLookup      = 1
	opForget      = 2
	opGetattr     = 3
	opOpen        = 14
	opRead        = 15
	opRelease     = 18
	opFlush       = 25
	opInit        = 26
	opInterrupt   = 36
	opBatchForget = 42
)

const fileSize = 1 << 20

var le = binary.LittleEndian // the FUSE ABI is host order: amd64 and arm64 are little-endian

// attr is a struct fuse_attr (88 bytes).
func attr(ino uint64, mode uint32, size uint64) []byte {
	b := make([]byte, 88)
	le.PutUint64(b[0:], ino)
	le.PutUint64(b[8:], size)
	le.PutUint64(b[16:], (size+511)/512)
	le.PutUint32(b[60:], mode)
	le.PutUint32(b[64:], 1)    // nlink
	le.PutUint32(b[80:], 4096) // blksize
	return b
}

var stalled = make(chan struct{}, 1)

func serve(fd int) {
	buf := make([]byte, 1<<17)
	reply := func(unique uint64, errno int32, body []byte) {
		out := make([]byte, 16+len(body))
		le.PutUint32(out[0:], uint32(len(out)))
		le.PutUint32(out[4:], uint32(errno))
		le.PutUint64(out[8:], unique)
		copy(out[16:], body)
		if _, err := syscall.Write(fd, out); err != nil {
			fmt.Fprintln(os.Stderr, "stuckcmdline: reply:", err)
		}
	}
	for {
		n, err := syscall.Read(fd, buf)
		if err != nil {
			if err == syscall.EINTR || err == syscall.EAGAIN {
				continue
			}
			return // ENODEV: unmounted or aborted
		}
		if n < 40 {
			continue
		}
		op, unique, node := le.Uint32(buf[4:]), le.Uint64(buf[8:]), le.Uint64(buf[16:])
		in := buf[40:n]
		switch op {
		case opInit:
			b := make([]byte, 64)
			le.PutUint32(b[0:], 7)
			le.PutUint32(b[4:], 31)
			le.PutUint32(b[8:], 0)     // max_readahead
			le.PutUint16(b[16:], 12)   // max_background
			le.PutUint16(b[18:], 9)    // congestion_threshold
			le.PutUint32(b[20:], 4096) // max_write
			le.PutUint32(b[24:], 1)    // time_gran
			reply(unique, 0, b)
		case opLookup:
			name := strings.TrimRight(string(in), "\x00")
			if node != 1 || name != "f" {
				reply(unique, -int32(syscall.ENOENT), nil)
				continue
			}
			b := make([]byte, 40)
			le.PutUint64(b[0:], 2)     // nodeid
			le.PutUint64(b[16:], 3600) // entry_valid
			le.PutUint64(b[24:], 3600) // attr_valid
			reply(unique, 0, append(b, attr(2, syscall.S_IFREG|0o444, fileSize)...))
		case opGetattr:
			b := make([]byte, 16)
			le.PutUint64(b[0:], 3600)
			if node == 1 {
				reply(unique, 0, append(b, attr(1, syscall.S_IFDIR|0o755, 0)...))
			} else {
				reply(unique, 0, append(b, attr(2, syscall.S_IFREG|0o444, fileSize)...))
			}
		case opOpen:
			reply(unique, 0, make([]byte, 16))
		case opRead:
			select {
			case stalled <- struct{}{}:
			default:
			}
		case opRelease, opFlush:
			reply(unique, 0, nil)
		case opForget, opBatchForget, opInterrupt:
		default:
			reply(unique, -int32(syscall.ENOSYS), nil)
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fail("usage", fmt.Errorf("stuckcmdline DIR"))
	}
	dir := os.Args[1]
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		fail("open /dev/fuse", err)
	}
	opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0", fd)
	if err := syscall.Mount("cnstream-stuckcmdline", dir, "fuse", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		fail("mount fuse", err)
	}
	go serve(fd)
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		fail("stat", err)
	}
	conn := st.Dev&0xff | st.Dev>>12&0xfff00 // minor(st_dev): the name of the connection in fusectl
	file, err := os.Open(filepath.Join(dir, "f"))
	if err != nil {
		fail("open", err)
	}
	mem, err := syscall.Mmap(int(file.Fd()), 0, 4096, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		fail("mmap", err)
	}
	addr := uintptr(unsafe.Pointer(&mem[0]))
	// A thread of ours reads the mapped page through /proc/self/mem: the
	// kernel faults it in holding our mmap lock for reading, and waits for
	// the READ the server leaves unanswered.
	self, err := os.Open("/proc/self/mem")
	if err != nil {
		fail("open /proc/self/mem", err)
	}
	go func() {
		var b [1]byte
		_, err := syscall.Pread(int(self.Fd()), b[:], int64(addr))
		fmt.Fprintln(os.Stderr, "stuckcmdline: /proc/self/mem read returned:", err)
	}()
	<-stalled
	// Another thread wants the lock for writing: it waits behind the
	// reader, and every later reader (a read of /proc/PID/cmdline, ps, a
	// page fault of ours) waits behind it. That thread sleeps in state D;
	// ready is said before, as this process may not get far after it.
	fmt.Println("ready", conn)
	go func() {
		_, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		fmt.Fprintln(os.Stderr, "stuckcmdline: mmap returned:", err)
	}()
	var b [1]byte
	os.Stdin.Read(b[:])
}
