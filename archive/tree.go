package archive

import (
	"crypto/sha256"
	"fmt"
	"hash"

	"golang.org/x/mod/sumdb/tlog"
)

// A Tree is the RFC 6962 Merkle tree of one archive file's records, built
// one record at a time. It keeps only the right edge of the tree: for each
// level, the hash of the latest complete subtree, which are exactly the
// stored hashes (see tlog.StoredHashIndex) that tlog.StoredHashes and
// tlog.TreeHash read. Memory is O(log n); Tree cannot make record proofs.
//
// The zero Tree is empty and ready. A Tree is not safe for concurrent use.
type Tree struct {
	n    int64
	edge [64]tlog.Hash // edge[l]: the latest complete subtree of 2^l records
	leaf hash.Hash     // SHA-256, reused for the leaf hashes
	sum  []byte        // scratch for the leaf hash
	out  []tlog.Hash   // scratch for read
}

// Add appends one record: the bytes of one encoded event as written to the
// file (a JSON line without its newline, or one msgpack value). It returns
// the record's leaf hash (tlog.RecordHash), which a writer may keep beside
// the file so that [VerifyFileLeaves] can name a changed record.
func (t *Tree) Add(record []byte) tlog.Hash {
	// tlog.RecordHash, without its allocation per record.
	if t.leaf == nil {
		t.leaf = sha256.New()
	}
	t.leaf.Reset()
	t.leaf.Write(zero[:])
	t.leaf.Write(record)
	t.sum = t.leaf.Sum(t.sum[:0])
	h := tlog.Hash(t.sum)
	t.AddHash(h)
	return h
}

var zero = [1]byte{0x00}

// AddHash appends a record given its tlog.RecordHash.
func (t *Tree) AddHash(h tlog.Hash) {
	// The stored hashes of record n (tlog.StoredHashesForRecordHash, without
	// its two allocations): its leaf, then one node per trailing 1 bit of n,
	// each the tlog.NodeHash of the edge's subtree on its left and the new
	// subtree on its right.
	l := 0
	for ; t.n>>l&1 == 1; l++ {
		left := t.edge[l]
		t.edge[l] = h
		h = tlog.NodeHash(left, h)
	}
	t.edge[l] = h
	t.n++
}

// Size returns the number of records added.
func (t *Tree) Size() int64 { return t.n }

// Root returns the RFC 6962 tree hash of the records added (the hash of
// the empty string for none).
func (t *Tree) Root() tlog.Hash {
	h, err := tlog.TreeHash(t.n, tlog.HashReaderFunc(t.read))
	if err != nil {
		panic(err) // read serves every index TreeHash asks for
	}
	return h
}

// read serves the stored hashes on the right edge of the tree of t.n
// records: level l, node t.n>>l - 1.
func (t *Tree) read(indexes []int64) ([]tlog.Hash, error) {
	t.out = t.out[:0]
	for _, x := range indexes {
		l, k := tlog.SplitStoredHashIndex(x)
		if l >= len(t.edge) || k != t.n>>l-1 {
			return nil, fmt.Errorf("archive: tree of %d records: stored hash (level %d, node %d) is not on the right edge", t.n, l, k)
		}
		t.out = append(t.out, t.edge[l])
	}
	return t.out, nil
}

// HashRecords returns the tree hash of records, as Tree would.
func HashRecords(records [][]byte) tlog.Hash {
	var t Tree
	for _, r := range records {
		t.Add(r)
	}
	return t.Root()
}
