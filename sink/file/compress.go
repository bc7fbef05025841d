package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// compressor compresses rotated files to .zst a slice at a time, inside the
// calls of the Sink (no goroutine): a file is read and encoded into
// "<name>.zst.tmp", which is fsynced, closed and renamed to "<name>.zst"
// once complete; the directory is fsynced, then the original is removed.
// A crash at any point leaves either the original (with perhaps a .tmp that
// New removes), or a complete .zst (with perhaps the original, which New
// removes).
type compressor struct {
	queue []string // names of the rotated files waiting, oldest first
	enc   *zstd.Encoder
	buf   []byte

	// The file in progress.
	root    *os.Root // the sink's directory
	src     string   // its name in root
	in, out *os.File
}

const compressChunk = 256 << 10

func (c *compressor) pending() int {
	n := len(c.queue)
	if c.in != nil {
		n++
	}
	return n
}

// compress compresses about budget bytes of rotated files (all of them if
// budget is negative), stopping early when ctx ends.
func (s *Sink) compress(ctx context.Context, budget int64) {
	if budget < 0 {
		budget = math.MaxInt64
	}
	c := &s.cz
	for budget > 0 && c.pending() > 0 && ctx.Err() == nil {
		if c.in == nil {
			src := c.queue[0]
			c.queue = c.queue[1:]
			if err := c.start(s.root, src, s.cfg.FileMode); err != nil {
				s.reportErr(err)
				continue
			}
		}
		n, done, err := c.step()
		budget -= n
		if err == nil && done {
			err = c.finish()
			if err == nil {
				s.st.compressed.Add(1)
			}
		}
		if err != nil {
			src := c.src
			c.abort1()
			s.reportErr(fmt.Errorf("file: compressing %s: %w", filepath.Join(s.cfg.Dir, src), err))
		}
	}
}

// start opens src, a rotated file's name in root, and creates its .zst.tmp.
func (c *compressor) start(root *os.Root, src string, mode os.FileMode) error {
	if c.enc == nil {
		enc, err := newEncoder()
		if err != nil {
			return fmt.Errorf("file: zstd: %w", err)
		}
		c.enc = enc
	}
	if c.buf == nil {
		c.buf = make([]byte, compressChunk)
	}
	in, err := openFile(root, src, os.O_RDONLY, false)
	if err != nil {
		return fmt.Errorf("file: compressing %s: %w", filepath.Join(root.Name(), src), err)
	}
	// A .zst.tmp there was left by a compression whose cleanup failed, or
	// planted: remove the entry (never what it may link to), then create
	// the file anew.
	tmp := src + zstExt + tmpExt
	err = root.Remove(tmp)
	var out *os.File
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		out, err = createFile(root, tmp, os.O_WRONLY, mode)
	}
	if err != nil {
		in.Close()
		return fmt.Errorf("file: compressing %s: %w", filepath.Join(root.Name(), src), err)
	}
	c.root, c.src, c.in, c.out = root, src, in, out
	c.enc.Reset(out)
	return nil
}

// step compresses one chunk; done reports the end of the file.
func (c *compressor) step() (n int64, done bool, err error) {
	m, rerr := c.in.Read(c.buf)
	if m > 0 {
		if _, err := c.enc.Write(c.buf[:m]); err != nil {
			return int64(m), false, err
		}
	}
	if errors.Is(rerr, io.EOF) {
		return int64(m), true, nil
	}
	return int64(m), false, rerr
}

func (c *compressor) finish() error {
	tmp := c.src + zstExt + tmpExt
	if err := c.enc.Close(); err != nil {
		return err
	}
	if err := c.out.Sync(); err != nil {
		return err
	}
	err := c.out.Close()
	c.out = nil
	if err != nil {
		return err
	}
	if err := c.root.Rename(tmp, c.src+zstExt); err != nil {
		return err
	}
	// The .zst is complete: from here on, failing leaves both files, and
	// the next New removes the original.
	c.in.Close()
	c.in = nil
	if err := syncRoot(c.root); err != nil {
		return err
	}
	return c.root.Remove(c.src)
}

// abort1 drops the file in progress, leaving it uncompressed.
func (c *compressor) abort1() {
	if c.in != nil {
		c.in.Close()
		c.in = nil
	}
	if c.out != nil {
		c.out.Close()
		c.out = nil
		c.root.Remove(c.src + zstExt + tmpExt)
	}
	if c.enc != nil {
		c.enc.Reset(io.Discard)
	}
}

// abort drops all compression work; the next New finds the files again.
func (c *compressor) abort() {
	if c.in != nil {
		c.abort1()
	}
	c.queue = nil
}
