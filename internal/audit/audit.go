// Package audit holds the hashing of the tamper-evident audit log: the canonical encoding of
// an entry, the Merkle tree over a block's entries (RFC 6962/9162: leaf = SHA-256(0x00 ||
// data), node = SHA-256(0x01 || left || right)), inclusion proofs, and the hash that links
// each block to the one before. It does no I/O; internal/store reads and writes the tables.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// HashSize is the size of every hash in the log.
const HashSize = sha256.Size

// Hash is a SHA-256 value.
type Hash = [HashSize]byte

// Entry is one audit entry as stored. Nil pointers are SQL NULLs. Detail is the jsonb
// column's text form, which Postgres prints the same way for the same value.
type Entry struct {
	ID        int64     `json:"id"`
	XID       uint64    `json:"xid,string"`
	At        time.Time `json:"at"`
	Action    string    `json:"action"`
	Outcome   string    `json:"outcome"`
	Actor     string    `json:"actor"`
	Strategy  *string   `json:"strategy,omitempty"`
	FailMode  *string   `json:"fail_mode,omitempty"`
	Layer     *int16    `json:"layer,omitempty"`
	SchemaKey *string   `json:"schema,omitempty"`
	RecordID  *string   `json:"record_id,omitempty"`
	Reason    *string   `json:"reason,omitempty"`
	RequestID *string   `json:"request_id,omitempty"`
	Detail    string    `json:"-"`
}

const entryDomain = "velocity.audit.entry.v1\n"

// Encode is the entry's canonical encoding: a domain tag, then every column in a fixed
// order, each NULL-aware and length-prefixed, times as Unix microseconds (Postgres's
// precision).
func (e Entry) Encode() []byte {
	var b bytes.Buffer
	b.Grow(128 + len(e.Detail))
	b.WriteString(entryDomain)
	putInt(&b, e.ID)
	putInt(&b, int64(e.XID))
	putInt(&b, e.At.UnixMicro())
	putString(&b, &e.Action)
	putString(&b, &e.Outcome)
	putString(&b, &e.Actor)
	putString(&b, e.Strategy)
	putString(&b, e.FailMode)
	if e.Layer == nil {
		b.WriteByte(0)
	} else {
		b.WriteByte(1)
		putInt(&b, int64(*e.Layer))
	}
	putString(&b, e.SchemaKey)
	putString(&b, e.RecordID)
	putString(&b, e.Reason)
	putString(&b, e.RequestID)
	putString(&b, &e.Detail)
	return b.Bytes()
}

// Leaf is the entry's leaf hash in its block's Merkle tree.
func (e Entry) Leaf() Hash { return LeafHash(e.Encode()) }

func putInt(b *bytes.Buffer, v int64) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(v))
	b.Write(n[:])
}

func putString(b *bytes.Buffer, s *string) {
	if s == nil {
		b.WriteByte(0)
		return
	}
	b.WriteByte(1)
	var n [binary.MaxVarintLen64]byte
	b.Write(n[:binary.PutUvarint(n[:], uint64(len(*s)))])
	b.WriteString(*s)
}

// LeafHash is SHA-256(0x00 || data).
func LeafHash(data []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	var out Hash
	h.Sum(out[:0])
	return out
}

// NodeHash is SHA-256(0x01 || left || right).
func NodeHash(left, right Hash) Hash {
	var buf [1 + 2*HashSize]byte
	buf[0] = 1
	copy(buf[1:], left[:])
	copy(buf[1+HashSize:], right[:])
	return sha256.Sum256(buf[:])
}

// split is the largest power of two smaller than n (n > 1).
func split(n int) int { return 1 << (bits.Len(uint(n-1)) - 1) }

// Root is the Merkle tree hash of the leaves (RFC 6962 MTH); the empty tree's is SHA-256("").
func Root(leaves []Hash) Hash {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	}
	k := split(len(leaves))
	return NodeHash(Root(leaves[:k]), Root(leaves[k:]))
}

// InclusionPath is the audit path of leaf index in the tree of leaves (RFC 6962 PATH).
func InclusionPath(leaves []Hash, index int) ([]Hash, error) {
	if index < 0 || index >= len(leaves) {
		return nil, fmt.Errorf("leaf %d is outside a tree of %d", index, len(leaves))
	}
	var path []Hash
	var walk func(ls []Hash, m int)
	walk = func(ls []Hash, m int) {
		if len(ls) <= 1 {
			return
		}
		k := split(len(ls))
		if m < k {
			walk(ls[:k], m)
			path = append(path, Root(ls[k:]))
		} else {
			walk(ls[k:], m-k)
			path = append(path, Root(ls[:k]))
		}
	}
	walk(leaves, index)
	return path, nil
}

// ErrProof is returned when an inclusion proof does not lead to the root.
var ErrProof = errors.New("inclusion proof does not match the root")

// VerifyInclusion checks that leaf is at index in a tree of size leaves with the given root
// (RFC 9162 section 2.1.3.2).
func VerifyInclusion(leaf Hash, index, size int, path []Hash, root Hash) error {
	if index < 0 || index >= size {
		return fmt.Errorf("%w: leaf %d is outside a tree of %d", ErrProof, index, size)
	}
	fn, sn := index, size-1
	r := leaf
	for _, p := range path {
		if sn == 0 {
			return fmt.Errorf("%w: the path is too long", ErrProof)
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = NodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 || r != root {
		return ErrProof
	}
	return nil
}

// Block is one sealed block as stored.
type Block struct {
	No         int64     `json:"block"`
	FirstXID   uint64    `json:"first_xid,string"`
	FirstID    int64     `json:"first_id"`
	LastXID    uint64    `json:"last_xid,string"`
	LastID     int64     `json:"last_id"`
	EntryIDs   []int64   `json:"-"`
	Leaves     []Hash    `json:"-"`
	MerkleRoot Hash      `json:"-"`
	PrevHash   Hash      `json:"-"`
	BlockHash  Hash      `json:"-"`
	Horizon    uint64    `json:"horizon,string"`
	SealedAt   time.Time `json:"sealed_at"`
}

const blockDomain = "velocity.audit.block.v1\n"

// ComputeHash is the block's hash: a domain tag, its number, the previous block's hash, its
// Merkle root and entry count, its first and last (xid, id), the horizon it was sealed
// under and when.
func (b Block) ComputeHash() Hash {
	var buf bytes.Buffer
	buf.WriteString(blockDomain)
	putInt(&buf, b.No)
	buf.Write(b.PrevHash[:])
	buf.Write(b.MerkleRoot[:])
	putInt(&buf, int64(len(b.EntryIDs)))
	putInt(&buf, int64(b.FirstXID))
	putInt(&buf, b.FirstID)
	putInt(&buf, int64(b.LastXID))
	putInt(&buf, b.LastID)
	putInt(&buf, int64(b.Horizon))
	putInt(&buf, b.SealedAt.UnixMicro())
	return sha256.Sum256(buf.Bytes())
}

// LeavesBytes packs leaves for the leaves column.
func LeavesBytes(leaves []Hash) []byte {
	out := make([]byte, 0, len(leaves)*HashSize)
	for _, l := range leaves {
		out = append(out, l[:]...)
	}
	return out
}

// ParseLeaves unpacks the leaves column.
func ParseLeaves(raw []byte) ([]Hash, error) {
	if len(raw)%HashSize != 0 {
		return nil, fmt.Errorf("leaves are %d bytes, not a multiple of %d", len(raw), HashSize)
	}
	out := make([]Hash, len(raw)/HashSize)
	for i := range out {
		copy(out[i][:], raw[i*HashSize:])
	}
	return out, nil
}

// ToHash converts a stored hash column.
func ToHash(raw []byte) (Hash, error) {
	var h Hash
	if len(raw) != HashSize {
		return h, fmt.Errorf("a hash is %d bytes, not %d", len(raw), HashSize)
	}
	copy(h[:], raw)
	return h, nil
}

// Seal builds the blocks that seal entries (already in (xid, id) order) after head (nil for
// the first block), at most size entries each.
func Seal(head *Block, entries []Entry, size int, horizon uint64, at time.Time) []Block {
	var out []Block
	prev := head
	for start := 0; start < len(entries); start += size {
		chunk := entries[start:min(start+size, len(entries))]
		b := Block{No: 1, Horizon: horizon, SealedAt: at.Truncate(time.Microsecond)}
		if prev != nil {
			b.No, b.PrevHash = prev.No+1, prev.BlockHash
		}
		b.FirstXID, b.FirstID = chunk[0].XID, chunk[0].ID
		b.LastXID, b.LastID = chunk[len(chunk)-1].XID, chunk[len(chunk)-1].ID
		b.EntryIDs = make([]int64, len(chunk))
		b.Leaves = make([]Hash, len(chunk))
		for i, e := range chunk {
			b.EntryIDs[i], b.Leaves[i] = e.ID, e.Leaf()
		}
		b.MerkleRoot = Root(b.Leaves)
		b.BlockHash = b.ComputeHash()
		out = append(out, b)
		prev = &out[len(out)-1]
	}
	return out
}
