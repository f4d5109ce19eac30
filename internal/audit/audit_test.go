package audit

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func leaves(n int) []Hash {
	out := make([]Hash, n)
	for i := range out {
		out[i] = LeafHash([]byte(fmt.Sprintf("leaf %d", i)))
	}
	return out
}

// The tree shape of RFC 6962: the left subtree is the largest power of two below n.
func TestRootShape(t *testing.T) {
	l := leaves(5)
	require.Equal(t, sha256.Sum256(nil), Root(nil))
	require.Equal(t, l[0], Root(l[:1]))
	require.Equal(t, NodeHash(l[0], l[1]), Root(l[:2]))
	require.Equal(t, NodeHash(NodeHash(l[0], l[1]), l[2]), Root(l[:3]))
	require.Equal(t, NodeHash(NodeHash(NodeHash(l[0], l[1]), NodeHash(l[2], l[3])), l[4]), Root(l))
	// Leaves and nodes cannot be confused: 0x00 and 0x01 prefixes.
	require.NotEqual(t, LeafHash(append(append([]byte{}, l[0][:]...), l[1][:]...)), NodeHash(l[0], l[1]))
}

func TestInclusionProofs(t *testing.T) {
	for n := 1; n <= 40; n++ {
		l := leaves(n)
		root := Root(l)
		for i := 0; i < n; i++ {
			path, err := InclusionPath(l, i)
			require.NoError(t, err)
			require.NoError(t, VerifyInclusion(l[i], i, n, path, root), "n=%d i=%d", n, i)
			// Another leaf, another index, or another root fails.
			if n > 1 {
				require.ErrorIs(t, VerifyInclusion(l[(i+1)%n], i, n, path, root), ErrProof, "n=%d i=%d", n, i)
				require.ErrorIs(t, VerifyInclusion(l[i], (i+1)%n, n, path, root), ErrProof, "n=%d i=%d", n, i)
			}
			require.ErrorIs(t, VerifyInclusion(l[i], i, n, path, LeafHash([]byte("x"))), ErrProof)
		}
	}
	_, err := InclusionPath(leaves(3), 3)
	require.Error(t, err)
}

func ptr[T any](v T) *T { return &v }

func TestEntryEncodingCoversEveryColumn(t *testing.T) {
	base := Entry{ID: 7, XID: 900, At: time.UnixMicro(1_700_000_000_000_001), Action: "record.insert", Outcome: "allowed",
		Actor: "apikey:1", SchemaKey: ptr("acme.shop.sales.orders"), RecordID: ptr("r1"), Detail: `{"a": 1}`}
	seen := map[Hash]string{base.Leaf(): "base"}
	for name, change := range map[string]func(e *Entry){
		"id":          func(e *Entry) { e.ID++ },
		"xid":         func(e *Entry) { e.XID++ },
		"at":          func(e *Entry) { e.At = e.At.Add(time.Microsecond) },
		"action":      func(e *Entry) { e.Action = "record.update" },
		"outcome":     func(e *Entry) { e.Outcome = "denied" },
		"actor":       func(e *Entry) { e.Actor = "apikey:2" },
		"strategy":    func(e *Entry) { e.Strategy = ptr("") },
		"fail mode":   func(e *Entry) { e.FailMode = ptr("closed") },
		"layer":       func(e *Entry) { e.Layer = ptr(int16(1)) },
		"schema":      func(e *Entry) { e.SchemaKey = nil },
		"record":      func(e *Entry) { e.RecordID = ptr("r2") },
		"reason":      func(e *Entry) { e.Reason = ptr("") },
		"request":     func(e *Entry) { e.RequestID = ptr("q") },
		"detail":      func(e *Entry) { e.Detail = `{"a": 2}` },
		"field shift": func(e *Entry) { e.Action, e.Outcome = "record.insertallowed", "" },
	} {
		e := base
		change(&e)
		h := e.Leaf()
		require.NotContains(t, seen, h, "%s collides with %s", name, seen[h])
		seen[h] = name
	}
}

func TestSealChainsBlocks(t *testing.T) {
	var entries []Entry
	for i := range 25 {
		entries = append(entries, Entry{ID: int64(i + 1), XID: uint64(100 + i/3), At: time.Unix(0, 0), Action: "a", Outcome: "allowed", Detail: "{}"})
	}
	now := time.Now()
	blocks := Seal(nil, entries, 10, 200, now)
	require.Len(t, blocks, 3)
	var prev Hash
	for i, b := range blocks {
		require.Equal(t, int64(i+1), b.No)
		require.Equal(t, prev, b.PrevHash)
		require.Equal(t, b.ComputeHash(), b.BlockHash)
		require.Equal(t, Root(b.Leaves), b.MerkleRoot)
		prev = b.BlockHash
	}
	require.Equal(t, []int64{21, 22, 23, 24, 25}, blocks[2].EntryIDs)
	more := Seal(&blocks[2], entries[:1], 10, 300, now)
	require.Equal(t, int64(4), more[0].No)
	require.Equal(t, blocks[2].BlockHash, more[0].PrevHash)

	raw := LeavesBytes(blocks[0].Leaves)
	back, err := ParseLeaves(raw)
	require.NoError(t, err)
	require.Equal(t, blocks[0].Leaves, back)
	_, err = ParseLeaves(raw[:31])
	require.Error(t, err)
}
