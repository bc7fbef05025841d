package spool

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"strings"

	"github.com/cnstream/cnstream/schema"
)

// The head file says how far the log has gone and where every sequence
// stream stands, as of the last Append: it is written (pwrite, 64-byte
// slots with a CRC each) after every batch, so that it is as current as the
// segments after a crash of the process.
//
//	slot 0: "CNSHEAD1", next index u64, spool id [8], events owed a
//	        spool_write_failed record u64, ... CRC-32C u32 at 60
//	stream: 1 u8, 3 zero, boot id [16], idx, val, cpu, sender, epoch,
//	        seq u32, index u64 (of the record that set it), ... CRC at 60
//	cursor: 2 u8, name length u8, 2 zero, name [48], acknowledged index
//	        u64, CRC at 60 (written at every Sync, in place: a full disk
//	        does not keep acknowledged segments from being deleted)
const (
	headMagic = "CNSHEAD1"
	slotLen   = 64
	headName  = "head"
)

type streamKey struct {
	boot                  [16]byte
	idx, val, cpu, sender uint32
}

type streamPos struct {
	slot       int
	epoch, seq uint32
	index      uint64
}

type headFile struct {
	f     *os.File
	img   []byte // the whole file
	lo    int    // lowest dirty slot; -1 none
	hi    int
	free  []int // unused slots
	nslot int
}

// bootKey is the 16 bytes that stand for a boot id in the head file.
func bootKey(id string) [16]byte {
	var k [16]byte
	if b, err := hex.DecodeString(strings.ReplaceAll(id, "-", "")); err == nil && len(b) == 16 {
		copy(k[:], b)
		return k
	}
	sum := sha256.Sum256([]byte(id))
	copy(k[:], sum[:16])
	return k
}

// openHead reads the head file of dir (creating it if missing). It returns
// next (0 if unknown), the spool id (empty if unknown) and the streams it
// holds; slots that fail their CRC are reported in bad.
func openHead(path string) (h *headFile, next uint64, id string, owed uint64, streams map[streamKey]streamPos, cursors map[string]cursorPos, bad int, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, "", 0, nil, nil, 0, err
	}
	img, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, 0, "", 0, nil, nil, 0, err
	}
	cursors = map[string]cursorPos{}
	h = &headFile{f: f, lo: -1}
	img = img[:len(img)/slotLen*slotLen]
	streams = map[streamKey]streamPos{}
	if len(img) >= slotLen && slotOK(img[:slotLen]) && string(img[:8]) == headMagic {
		next = binary.LittleEndian.Uint64(img[8:])
		id = hex.EncodeToString(img[16:24])
		owed = binary.LittleEndian.Uint64(img[24:])
	} else if len(img) > 0 {
		bad++
	}
	if len(img) < slotLen {
		img = make([]byte, slotLen)
	}
	h.img = img
	h.nslot = len(img) / slotLen
	for k := 1; k < h.nslot; k++ {
		s := img[k*slotLen : (k+1)*slotLen]
		if s[0] == 0 {
			h.free = append(h.free, k)
			continue
		}
		if !slotOK(s) {
			bad++
			clear(s)
			h.free = append(h.free, k)
			h.dirty(k)
			continue
		}
		if s[0] == 2 {
			n := min(int(s[1]), 48)
			cursors[string(s[4:4+n])] = cursorPos{slot: k, acked: binary.LittleEndian.Uint64(s[52:])}
			continue
		}
		var key streamKey
		copy(key.boot[:], s[4:20])
		key.idx = binary.LittleEndian.Uint32(s[20:])
		key.val = binary.LittleEndian.Uint32(s[24:])
		key.cpu = binary.LittleEndian.Uint32(s[28:])
		key.sender = binary.LittleEndian.Uint32(s[32:])
		streams[key] = streamPos{slot: k, epoch: binary.LittleEndian.Uint32(s[36:]), seq: binary.LittleEndian.Uint32(s[40:]),
			index: binary.LittleEndian.Uint64(s[44:])}
	}
	return h, next, id, owed, streams, cursors, bad, nil
}

type cursorPos struct {
	slot  int
	acked uint64
}

// slotName is how a sink's name is kept in a cursor slot: as it is up to
// 48 bytes, else its first 32 bytes and a hash.
func slotName(name string) string {
	if len(name) <= 48 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:32] + hex.EncodeToString(sum[:8])
}

// setCursor writes a cursor's acknowledged index into its slot.
func (h *headFile) setCursor(name string, slot int, acked uint64) {
	s := h.img[slot*slotLen : (slot+1)*slotLen]
	name = slotName(name)
	clear(s)
	s[0], s[1] = 2, byte(len(name))
	copy(s[4:52], name)
	binary.LittleEndian.PutUint64(s[52:], acked)
	sealSlot(s)
	h.dirty(slot)
}

func slotOK(s []byte) bool {
	return crc32.Checksum(s[:60], castagnoli) == binary.LittleEndian.Uint32(s[60:])
}

func sealSlot(s []byte) {
	binary.LittleEndian.PutUint32(s[60:], crc32.Checksum(s[:60], castagnoli))
}

func (h *headFile) dirty(k int) {
	if h.lo < 0 || k < h.lo {
		h.lo = k
	}
	if k > h.hi {
		h.hi = k
	}
}

// setNext records the next index, the spool id and the events owed a
// statement in slot 0.
func (h *headFile) setNext(next uint64, id []byte, owed uint64) {
	s := h.img[:slotLen]
	copy(s, headMagic)
	binary.LittleEndian.PutUint64(s[8:], next)
	copy(s[16:24], id)
	binary.LittleEndian.PutUint64(s[24:], owed)
	sealSlot(s)
	h.dirty(0)
}

// alloc returns a free slot.
func (h *headFile) alloc() int {
	if n := len(h.free); n > 0 {
		k := h.free[n-1]
		h.free = h.free[:n-1]
		return k
	}
	h.img = append(h.img, make([]byte, slotLen)...)
	h.nslot++
	return h.nslot - 1
}

// set writes stream key's position into its slot.
func (h *headFile) set(key streamKey, p streamPos) {
	s := h.img[p.slot*slotLen : (p.slot+1)*slotLen]
	clear(s)
	s[0] = 1
	copy(s[4:20], key.boot[:])
	binary.LittleEndian.PutUint32(s[20:], key.idx)
	binary.LittleEndian.PutUint32(s[24:], key.val)
	binary.LittleEndian.PutUint32(s[28:], key.cpu)
	binary.LittleEndian.PutUint32(s[32:], key.sender)
	binary.LittleEndian.PutUint32(s[36:], p.epoch)
	binary.LittleEndian.PutUint32(s[40:], p.seq)
	binary.LittleEndian.PutUint64(s[44:], p.index)
	sealSlot(s)
	h.dirty(p.slot)
}

// release frees a slot.
func (h *headFile) release(slot int) {
	clear(h.img[slot*slotLen : (slot+1)*slotLen])
	h.free = append(h.free, slot)
	h.dirty(slot)
}

// flush writes the dirty slots (one pwrite for the range).
func (h *headFile) flush() error {
	if h.lo < 0 {
		return nil
	}
	lo, hi := h.lo*slotLen, (h.hi+1)*slotLen
	h.lo, h.hi = -1, 0
	if _, err := h.f.WriteAt(h.img[lo:hi], int64(lo)); err != nil {
		return err
	}
	return nil
}

func (h *headFile) sync() error { return h.f.Sync() }

func (h *headFile) close() error {
	if h == nil || h.f == nil {
		return nil
	}
	return errors.Join(h.flush(), h.f.Close())
}

// streamOf returns the stream an event advances, if any: a connector
// message (its epoch and number) or a filtered record (the last number it
// removed).
func streamOf(e *schema.Event) (idx, val, cpu, sender, epoch, seq uint32, ok bool) {
	s := e.Stream
	if s == nil {
		return
	}
	switch {
	case e.Record == nil:
		return s.Idx, s.Val, s.CPU, s.Sender, s.Epoch, s.Seq, true
	case e.Kind == schema.KindFiltered && e.Filtered != nil:
		return s.Idx, s.Val, s.CPU, s.Sender, s.Epoch, e.Filtered.Last, true
	}
	return
}
