package audit

import "slices"

// arrayMax is the number of members a chunk holds as a sorted array before
// it turns into a bitmap: 4096 uint16 take the bitmap's 8 KiB.
const arrayMax = 4096

// chunk holds the members of one 65536-number range: a sorted array while
// it has few (sparse streams, e.g. most events filtered out), a bitmap once
// it has arrayMax.
type chunk struct {
	arr  []uint16
	bits *[1024]uint64
}

// add adds lo and reports whether it was new.
func (c *chunk) add(lo uint16) bool {
	if c.bits != nil {
		w := &c.bits[lo>>6]
		m := uint64(1) << (lo & 63)
		if *w&m != 0 {
			return false
		}
		*w |= m
		return true
	}
	n := len(c.arr)
	if n == 0 || c.arr[n-1] < lo {
		if n < arrayMax {
			c.arr = append(c.arr, lo)
			return true
		}
		c.toBits()
		return c.add(lo)
	}
	i, found := slices.BinarySearch(c.arr, lo)
	if found {
		return false
	}
	if n >= arrayMax {
		c.toBits()
		return c.add(lo)
	}
	c.arr = slices.Insert(c.arr, i, lo)
	return true
}

func (c *chunk) toBits() {
	c.bits = new([1024]uint64)
	for _, v := range c.arr {
		c.bits[v>>6] |= 1 << (v & 63)
	}
	c.arr = nil
}

// seqSet is a set of stream offsets (int64 in [-2^31, 2^31)), in chunks of
// 65536 keyed by offset>>16. Memory: at most 8 KiB per 65536 numbers of
// span, at most about 2 bytes per member plus a chunk's overhead.
type seqSet struct {
	chunks  map[int64]*chunk
	lastKey int64
	last    *chunk
}

// add adds off and reports whether it was new.
func (s *seqSet) add(off int64) bool {
	k := off >> 16
	c := s.last
	if c == nil || k != s.lastKey {
		if s.chunks == nil {
			s.chunks = make(map[int64]*chunk)
		}
		c = s.chunks[k]
		if c == nil {
			c = new(chunk)
			s.chunks[k] = c
		}
		s.last, s.lastKey = c, k
	}
	return c.add(uint16(off))
}
