package store

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/velocitydev/velocity/internal/audit"
)

// Sealing defaults: a block holds at most DefaultAuditBlockSize entries, and one run seals at
// most DefaultAuditSealBatch entries per transaction (it goes on with the next batch).
const (
	DefaultAuditBlockSize = 1024
	DefaultAuditSealBatch = 50000
)

// ErrSealBusy means another sealer holds the sealing lock; its run seals the same entries.
var ErrSealBusy = errors.New("another sealer is running")

// SealOptions bound one sealing run. Zero values take the defaults.
type SealOptions struct {
	BlockSize int
	Batch     int
	// Now stamps the blocks (tests); zero means the clock.
	Now func() time.Time
}

// SealResult says what one run sealed and where the chain's head is now.
type SealResult struct {
	Blocks  int          `json:"blocks"`
	Entries int          `json:"entries"`
	Head    *audit.Block `json:"head,omitempty"`
}

// The xid columns are read as text (pgx has no xid8 type) under other names: ORDER BY xid
// must mean the column, not its text.
const auditEntryColumns = `id, xid::text AS xid_text, at, action, outcome::text, actor, strategy, fail_mode, layer, schema_key, record_id, reason, request_id, detail::text`

// beginAudit starts a transaction over the audit tables. Their range reads are prepared
// statements with (xid, id) bounds; after five runs Postgres may switch to a generic plan
// that, knowing no bounds, scans the whole log. Custom plans keep each read on the index:
// without this a sealer run every second, and verify's every page, slowed as the log grew.
func beginAudit(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions) (pgx.Tx, error) {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, "SET LOCAL plan_cache_mode = force_custom_plan"); err != nil {
		_ = tx.Rollback(ctx)
		return nil, err
	}
	return tx, nil
}

func scanAuditEntry(row pgx.CollectableRow) (audit.Entry, error) {
	var e audit.Entry
	var xid string
	if err := row.Scan(&e.ID, &xid, &e.At, &e.Action, &e.Outcome, &e.Actor, &e.Strategy, &e.FailMode, &e.Layer,
		&e.SchemaKey, &e.RecordID, &e.Reason, &e.RequestID, &e.Detail); err != nil {
		return e, err
	}
	var err error
	e.XID, err = strconv.ParseUint(xid, 10, 64)
	return e, err
}

const auditBlockColumns = `block_no, first_xid::text AS first_xid_text, first_id, last_xid::text AS last_xid_text, last_id, entry_ids, leaves,
	merkle_root, prev_hash, block_hash, horizon::text AS horizon_text, sealed_at`

func scanAuditBlock(row pgx.CollectableRow) (audit.Block, error) {
	var b audit.Block
	var firstXID, lastXID, horizon string
	var leaves, root, prev, hash []byte
	if err := row.Scan(&b.No, &firstXID, &b.FirstID, &lastXID, &b.LastID, &b.EntryIDs, &leaves, &root, &prev, &hash, &horizon, &b.SealedAt); err != nil {
		return b, err
	}
	var err error
	if b.FirstXID, err = strconv.ParseUint(firstXID, 10, 64); err != nil {
		return b, err
	}
	if b.LastXID, err = strconv.ParseUint(lastXID, 10, 64); err != nil {
		return b, err
	}
	if b.Horizon, err = strconv.ParseUint(horizon, 10, 64); err != nil {
		return b, err
	}
	// A malformed hash column is kept as a zero hash with the error reported by verify.
	b.Leaves, _ = audit.ParseLeaves(leaves)
	b.MerkleRoot, _ = audit.ToHash(root)
	b.PrevHash, _ = audit.ToHash(prev)
	b.BlockHash, _ = audit.ToHash(hash)
	return b, nil
}

// SealAudit seals, on pool (the worker's or the owner's), every entry that is safe to seal:
// those whose transactions are older than the snapshot's xmin, so no transaction still
// running can later add an entry before them. They go in (xid, id) order into blocks of at
// most BlockSize entries, each holding the Merkle root of its entries and the hash of the
// block before. One transaction per Batch entries; writers are never blocked (they only
// append). Two sealers never interleave: the second gets ErrSealBusy.
func SealAudit(ctx context.Context, pool *pgxpool.Pool, opt SealOptions) (SealResult, error) {
	if opt.BlockSize <= 0 {
		opt.BlockSize = DefaultAuditBlockSize
	}
	if opt.Batch <= 0 {
		opt.Batch = DefaultAuditSealBatch
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	var res SealResult
	for {
		n, head, err := sealBatch(ctx, pool, opt)
		if err != nil {
			return res, err
		}
		res.Entries += n
		res.Blocks += (n + opt.BlockSize - 1) / opt.BlockSize
		res.Head = head
		if n < opt.Batch {
			return res, nil
		}
	}
}

func sealBatch(ctx context.Context, pool *pgxpool.Pool, opt SealOptions) (int, *audit.Block, error) {
	tx, err := beginAudit(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return 0, nil, fmt.Errorf("seal audit: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var locked bool
	var horizon string
	// The lock and the horizon come from the transaction's one snapshot: every entry with an
	// xid below its xmin is committed and visible in it, or will never be.
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended('velocity.audit_seal', 0)),
		pg_snapshot_xmin(pg_current_snapshot())::text`).Scan(&locked, &horizon); err != nil {
		return 0, nil, fmt.Errorf("seal audit: %w", err)
	}
	if !locked {
		return 0, nil, ErrSealBusy
	}
	head, err := auditHead(ctx, tx)
	if err != nil {
		return 0, nil, err
	}
	afterXID, afterID := "0", int64(0)
	if head != nil {
		afterXID, afterID = strconv.FormatUint(head.LastXID, 10), head.LastID
	}
	rows, err := tx.Query(ctx, `SELECT `+auditEntryColumns+` FROM velocity.audit_entry
		WHERE (xid, id) > ($1::xid8, $2) AND xid < $3::xid8 ORDER BY xid, id LIMIT $4`, afterXID, afterID, horizon, opt.Batch)
	if err != nil {
		return 0, nil, fmt.Errorf("seal audit: read entries: %w", err)
	}
	entries, err := pgx.CollectRows(rows, scanAuditEntry)
	if err != nil {
		return 0, nil, fmt.Errorf("seal audit: read entries: %w", err)
	}
	if len(entries) == 0 {
		return 0, head, nil
	}
	h, err := strconv.ParseUint(horizon, 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("seal audit: horizon %q: %w", horizon, err)
	}
	blocks := audit.Seal(head, entries, opt.BlockSize, h, opt.Now())
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"velocity", "audit_block"},
		[]string{"block_no", "first_xid", "first_id", "last_xid", "last_id", "entry_ids", "leaves", "merkle_root", "prev_hash", "block_hash", "horizon", "sealed_at"},
		pgx.CopyFromSlice(len(blocks), func(i int) ([]any, error) {
			b := blocks[i]
			return []any{b.No, strconv.FormatUint(b.FirstXID, 10), b.FirstID, strconv.FormatUint(b.LastXID, 10), b.LastID, b.EntryIDs,
				audit.LeavesBytes(b.Leaves), b.MerkleRoot[:], b.PrevHash[:], b.BlockHash[:], strconv.FormatUint(b.Horizon, 10), b.SealedAt}, nil
		}))
	if err != nil {
		return 0, nil, fmt.Errorf("seal audit: write blocks: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, nil, fmt.Errorf("seal audit: commit: %w", err)
	}
	return len(entries), &blocks[len(blocks)-1], nil
}

func auditHead(ctx context.Context, q pgx.Tx) (*audit.Block, error) {
	rows, err := q.Query(ctx, `SELECT `+auditBlockColumns+` FROM velocity.audit_block ORDER BY block_no DESC LIMIT 1`)
	if err != nil {
		return nil, fmt.Errorf("audit head: %w", err)
	}
	blocks, err := pgx.CollectRows(rows, scanAuditBlock)
	if err != nil || len(blocks) == 0 {
		return nil, err
	}
	return &blocks[0], nil
}

// Digest is what an operator exports to anchor the log outside the database: the head
// block's number and hash at the time. A later verify given it proves the log still extends
// it: every block up to it recomputes to the same hash.
type Digest struct {
	Version   int       `json:"version"`
	Block     int64     `json:"block"`
	BlockHash string    `json:"block_hash"`
	Root      string    `json:"merkle_root"`
	Entries   int64     `json:"entries"`
	SealedAt  time.Time `json:"sealed_at"`
}

// AuditProblem is the first thing verify found wrong.
type AuditProblem struct {
	Kind    string `json:"kind"`
	Block   int64  `json:"block,omitempty"`
	EntryID int64  `json:"entry_id,omitempty"`
	// Position is the entry's index in its block.
	Position *int   `json:"position,omitempty"`
	Detail   string `json:"detail"`
}

// The kinds of AuditProblem.
const (
	ProblemEntryChanged   = "entry_changed"
	ProblemEntryMissing   = "entry_missing"
	ProblemEntryInserted  = "entry_inserted"
	ProblemReordered      = "entries_reordered"
	ProblemBlockHash      = "block_hash"
	ProblemBlockChain     = "block_chain"
	ProblemBlockGap       = "block_missing"
	ProblemMerkleRoot     = "merkle_root"
	ProblemDigestMismatch = "digest_mismatch"
	ProblemTruncated      = "truncated"
)

// VerifyReport is the outcome of VerifyAudit.
type VerifyReport struct {
	OK      bool          `json:"ok"`
	Problem *AuditProblem `json:"problem,omitempty"`
	Blocks  int64         `json:"blocks"`
	Entries int64         `json:"entries"`
	Head    *Digest       `json:"head,omitempty"`
	// Unsealed counts entries after the head; OldestUnsealed is the time of the first of
	// them in sealing order, and SealingLag how long it has waited.
	Unsealed       int64      `json:"unsealed"`
	OldestUnsealed *time.Time `json:"oldest_unsealed,omitempty"`
	SealingLag     float64    `json:"sealing_lag_seconds"`
	// DigestChecked is set when a digest was given and the log extends it.
	DigestChecked *Digest `json:"digest_checked,omitempty"`
}

func digestOf(b audit.Block, entries int64) *Digest {
	return &Digest{Version: 1, Block: b.No, BlockHash: hex.EncodeToString(b.BlockHash[:]), Root: hex.EncodeToString(b.MerkleRoot[:]),
		Entries: entries, SealedAt: b.SealedAt}
}

// VerifyAudit recomputes the whole log on pool in one snapshot: every block's hash, its link
// to the block before, its Merkle root, and every sealed entry's leaf against the entries as
// they are now. It stops at the first problem and names the block and entry. With a digest
// it also checks that the log still holds that block with that hash.
func VerifyAudit(ctx context.Context, pool *pgxpool.Pool, digest *Digest) (VerifyReport, error) {
	var rep VerifyReport
	tx, err := beginAudit(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return rep, fmt.Errorf("verify audit: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	var prev *audit.Block
	for {
		after := int64(0)
		if prev != nil {
			after = prev.No
		}
		// Blocks a page at a time, with the entries of the whole page in one range read, so
		// memory stays bounded whatever the log's length and a block costs no query of its own.
		rows, err := tx.Query(ctx, `SELECT `+auditBlockColumns+` FROM velocity.audit_block WHERE block_no > $1 ORDER BY block_no LIMIT $2`, after, verifyPage)
		if err != nil {
			return rep, fmt.Errorf("verify audit: read blocks: %w", err)
		}
		blocks, err := pgx.CollectRows(rows, scanAuditBlock)
		if err != nil {
			return rep, fmt.Errorf("verify audit: read blocks: %w", err)
		}
		if len(blocks) == 0 {
			break
		}
		fromXID, fromID := "0", int64(0)
		if prev != nil {
			fromXID, fromID = strconv.FormatUint(prev.LastXID, 10), prev.LastID
		}
		last := blocks[len(blocks)-1]
		rows, err = tx.Query(ctx, `SELECT `+auditEntryColumns+` FROM velocity.audit_entry
			WHERE (xid, id) > ($1::xid8, $2) AND (xid, id) <= ($3::xid8, $4) ORDER BY xid, id`,
			fromXID, fromID, strconv.FormatUint(last.LastXID, 10), last.LastID)
		if err != nil {
			return rep, fmt.Errorf("verify audit: read entries: %w", err)
		}
		entries, err := pgx.CollectRows(rows, scanAuditEntry)
		if err != nil {
			return rep, fmt.Errorf("verify audit: read entries: %w", err)
		}
		for i := range blocks {
			b := &blocks[i]
			// This block's range starts just after the block before it ends: an entry slipped
			// in between two blocks is caught as well as one inside a block.
			n := 0
			for n < len(entries) && !after2(entries[n].XID, entries[n].ID, b.LastXID, b.LastID) {
				n++
			}
			if p := verifyBlock(prev, b, entries[:n]); p != nil {
				rep.Problem = p
				return rep, nil
			}
			entries = entries[n:]
			rep.Blocks++
			rep.Entries += int64(len(b.EntryIDs))
			if digest != nil && b.No == digest.Block {
				if hex.EncodeToString(b.BlockHash[:]) != digest.BlockHash {
					rep.Problem = &AuditProblem{Kind: ProblemDigestMismatch, Block: b.No,
						Detail: fmt.Sprintf("block %d hashes to %x, the digest says %s: the log was rewritten up to it", b.No, b.BlockHash, digest.BlockHash)}
					return rep, nil
				}
				rep.DigestChecked = digest
			}
			prev = b
		}
	}
	if digest != nil && rep.DigestChecked == nil {
		head := int64(0)
		if prev != nil {
			head = prev.No
		}
		rep.Problem = &AuditProblem{Kind: ProblemTruncated, Block: digest.Block,
			Detail: fmt.Sprintf("the digest names block %d but the log ends at block %d: sealed blocks were removed", digest.Block, head)}
		return rep, nil
	}
	afterXID, afterID := "0", int64(0)
	if prev != nil {
		rep.Head = digestOf(*prev, rep.Entries)
		afterXID, afterID = strconv.FormatUint(prev.LastXID, 10), prev.LastID
	}
	var oldest *time.Time
	err = tx.QueryRow(ctx, `SELECT count(*), (SELECT at FROM velocity.audit_entry WHERE (xid, id) > ($1::xid8, $2) ORDER BY xid, id LIMIT 1)
		FROM velocity.audit_entry WHERE (xid, id) > ($1::xid8, $2)`, afterXID, afterID).Scan(&rep.Unsealed, &oldest)
	if err != nil {
		return rep, fmt.Errorf("verify audit: unsealed: %w", err)
	}
	if oldest != nil {
		rep.OldestUnsealed = oldest
		rep.SealingLag = max(0, time.Since(*oldest).Seconds())
	}
	rep.OK = true
	return rep, nil
}

// verifyPage is how many blocks verify reads at a time.
const verifyPage = 16

// after2 reports whether (xid, id) comes after (lastXID, lastID) in sealing order.
func after2(xid uint64, id int64, lastXID uint64, lastID int64) bool {
	return xid > lastXID || xid == lastXID && id > lastID
}

// verifyBlock checks b against the block before it and against got, the entries that are now
// in its range, in (xid, id) order.
func verifyBlock(prev, b *audit.Block, got []audit.Entry) *AuditProblem {
	want, wantPrev := int64(1), audit.Hash{}
	if prev != nil {
		want, wantPrev = prev.No+1, prev.BlockHash
	}
	switch {
	case b.No != want:
		return &AuditProblem{Kind: ProblemBlockGap, Block: want, Detail: fmt.Sprintf("block %d is missing: the next block is %d", want, b.No)}
	case b.PrevHash != wantPrev:
		return &AuditProblem{Kind: ProblemBlockChain, Block: b.No, Detail: fmt.Sprintf("block %d does not link to the hash of block %d", b.No, want-1)}
	case b.ComputeHash() != b.BlockHash:
		return &AuditProblem{Kind: ProblemBlockHash, Block: b.No, Detail: fmt.Sprintf("block %d: its stored hash does not match its contents", b.No)}
	case len(b.Leaves) != len(b.EntryIDs) || audit.Root(b.Leaves) != b.MerkleRoot:
		return &AuditProblem{Kind: ProblemMerkleRoot, Block: b.No, Detail: fmt.Sprintf("block %d: its leaf hashes do not match its Merkle root", b.No)}
	}
	listed := make(map[int64]int, len(b.EntryIDs))
	for i, id := range b.EntryIDs {
		listed[id] = i
	}
	present := make(map[int64]bool, len(got))
	for _, e := range got {
		present[e.ID] = true
	}
	seen := make(map[int64]bool, len(got))
	for i := 0; i < max(len(got), len(b.EntryIDs)); i++ {
		pos := i
		dup := false
		if i < len(got) {
			dup = seen[got[i].ID]
			seen[got[i].ID] = true
		}
		switch {
		case i < len(got) && i < len(b.EntryIDs) && got[i].ID == b.EntryIDs[i] && !dup:
			if got[i].Leaf() != b.Leaves[i] {
				return &AuditProblem{Kind: ProblemEntryChanged, Block: b.No, EntryID: got[i].ID, Position: &pos,
					Detail: fmt.Sprintf("entry %d (block %d, position %d) was changed after it was sealed", got[i].ID, b.No, i)}
			}
		case i < len(got) && (dup || !hasKey(listed, got[i].ID)):
			return &AuditProblem{Kind: ProblemEntryInserted, Block: b.No, EntryID: got[i].ID,
				Detail: fmt.Sprintf("entry %d lies within block %d but was not sealed in it: inserted afterwards", got[i].ID, b.No)}
		case i < len(b.EntryIDs) && !present[b.EntryIDs[i]]:
			return &AuditProblem{Kind: ProblemEntryMissing, Block: b.No, EntryID: b.EntryIDs[i], Position: &pos,
				Detail: fmt.Sprintf("entry %d (block %d, position %d) is gone: deleted after it was sealed", b.EntryIDs[i], b.No, i)}
		default:
			id := int64(0)
			if i < len(got) {
				id = got[i].ID
			}
			return &AuditProblem{Kind: ProblemReordered, Block: b.No, EntryID: id, Position: &pos,
				Detail: fmt.Sprintf("block %d: position %d holds entry %d, but entry %d was sealed there: entries were reordered", b.No, i, id, b.EntryIDs[i])}
		}
	}
	return nil
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}

// AuditDigest is the head of the log now, to export and keep outside the database.
func AuditDigest(ctx context.Context, pool *pgxpool.Pool) (*Digest, error) {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("audit digest: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	head, err := auditHead(ctx, tx)
	if err != nil || head == nil {
		return nil, err
	}
	var entries int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(sum(cardinality(entry_ids)), 0) FROM velocity.audit_block`).Scan(&entries); err != nil {
		return nil, fmt.Errorf("audit digest: %w", err)
	}
	return digestOf(*head, entries), nil
}

// Proof shows that one entry is included in its block: the leaf, the audit path and the
// root it leads to, which the block's hash covers.
type Proof struct {
	Entry     audit.Entry `json:"entry"`
	Block     int64       `json:"block"`
	Index     int         `json:"index"`
	TreeSize  int         `json:"tree_size"`
	Leaf      string      `json:"leaf_hash"`
	Path      []string    `json:"path"`
	Root      string      `json:"merkle_root"`
	BlockHash string      `json:"block_hash"`
	// Verified is true when the entry as stored now hashes to the sealed leaf and the path
	// leads to the block's root.
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
}

// ErrNotSealed means the entry exists but no block holds it yet.
var ErrNotSealed = errors.New("the entry is not sealed yet")

// AuditProof proves entry id's inclusion in its block.
func AuditProof(ctx context.Context, pool *pgxpool.Pool, id int64) (*Proof, error) {
	tx, err := beginAudit(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("audit proof: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, `SELECT `+auditEntryColumns+` FROM velocity.audit_entry WHERE id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("audit proof: %w", err)
	}
	entries, err := pgx.CollectRows(rows, scanAuditEntry)
	if err != nil {
		return nil, fmt.Errorf("audit proof: %w", err)
	}
	if len(entries) == 0 {
		return nil, ErrNotFound
	}
	e := entries[0]
	rows, err = tx.Query(ctx, `SELECT `+auditBlockColumns+` FROM velocity.audit_block
		WHERE (first_xid, first_id) <= ($1::xid8, $2) AND (last_xid, last_id) >= ($1::xid8, $2)`, strconv.FormatUint(e.XID, 10), e.ID)
	if err != nil {
		return nil, fmt.Errorf("audit proof: %w", err)
	}
	blocks, err := pgx.CollectRows(rows, scanAuditBlock)
	if err != nil {
		return nil, fmt.Errorf("audit proof: %w", err)
	}
	if len(blocks) == 0 {
		return nil, ErrNotSealed
	}
	b := blocks[0]
	p := &Proof{Entry: e, Block: b.No, TreeSize: len(b.Leaves), Root: hex.EncodeToString(b.MerkleRoot[:]), BlockHash: hex.EncodeToString(b.BlockHash[:])}
	p.Index = -1
	for i, eid := range b.EntryIDs {
		if eid == e.ID {
			p.Index = i
		}
	}
	if p.Index < 0 || p.Index >= len(b.Leaves) {
		p.Problem = fmt.Sprintf("entry %d lies within block %d but was not sealed in it", e.ID, b.No)
		return p, nil
	}
	path, err := audit.InclusionPath(b.Leaves, p.Index)
	if err != nil {
		return nil, err
	}
	for _, h := range path {
		p.Path = append(p.Path, hex.EncodeToString(h[:]))
	}
	sealed := b.Leaves[p.Index]
	p.Leaf = hex.EncodeToString(sealed[:])
	switch {
	case e.Leaf() != sealed:
		p.Problem = fmt.Sprintf("entry %d no longer hashes to the leaf sealed in block %d: changed after sealing", e.ID, b.No)
	case audit.VerifyInclusion(sealed, p.Index, len(b.Leaves), path, b.MerkleRoot) != nil || b.ComputeHash() != b.BlockHash:
		p.Problem = fmt.Sprintf("block %d does not verify", b.No)
	default:
		p.Verified = true
	}
	return p, nil
}

// AuditFilter selects entries for ListAudit. Empty fields do not filter.
type AuditFilter struct {
	Since, Until *time.Time
	Actor        string
	Action       string
	Outcome      string
	Schema       string
	Record       string
	RequestID    string
	Limit        int
	// Cursor is the next_cursor of the page before.
	Cursor string
}

// AuditItem is an entry as listed, with its detail as JSON.
type AuditItem struct {
	audit.Entry
	Detail json.RawMessage `json:"detail"`
}

// ErrBadCursor means an audit cursor was not one ListAudit made.
var ErrBadCursor = errors.New("invalid cursor")

// ListAudit pages through the entries newest first, in (xid, id) order (the sealing order),
// on pool (the owner's: the API checks platform_admin before it calls this). The cursor is
// "<xid>-<id>" of the last entry of the page before.
func ListAudit(ctx context.Context, pool *pgxpool.Pool, f AuditFilter) ([]AuditItem, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Cursor != "" {
		x, id, ok := strings.Cut(f.Cursor, "-")
		xid, err1 := strconv.ParseUint(x, 10, 64)
		eid, err2 := strconv.ParseInt(id, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, "", ErrBadCursor
		}
		args = append(args, strconv.FormatUint(xid, 10), eid)
		where = append(where, fmt.Sprintf("(xid, id) < ($%d::xid8, $%d)", len(args)-1, len(args)))
	}
	if f.Since != nil {
		add("at >= $%d", *f.Since)
	}
	if f.Until != nil {
		add("at < $%d", *f.Until)
	}
	if f.Actor != "" {
		add("actor = $%d", f.Actor)
	}
	if f.Action != "" {
		add("action = $%d", f.Action)
	}
	if f.Outcome != "" {
		add("outcome = $%d::velocity.audit_outcome", f.Outcome)
	}
	if f.Schema != "" {
		add("schema_key = $%d", f.Schema)
	}
	if f.Record != "" {
		add("record_id = $%d", f.Record)
	}
	if f.RequestID != "" {
		add("request_id = $%d", f.RequestID)
	}
	sql := `SELECT ` + auditEntryColumns + ` FROM velocity.audit_entry`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, f.Limit+1)
	sql += fmt.Sprintf(" ORDER BY xid DESC, id DESC LIMIT $%d", len(args))
	tx, err := beginAudit(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, "", fmt.Errorf("list audit: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list audit: %w", Interpret(err))
	}
	entries, err := pgx.CollectRows(rows, scanAuditEntry)
	if err != nil {
		return nil, "", fmt.Errorf("list audit: %w", Interpret(err))
	}
	next := ""
	if len(entries) > f.Limit {
		entries = entries[:f.Limit]
		last := entries[len(entries)-1]
		next = strconv.FormatUint(last.XID, 10) + "-" + strconv.FormatInt(last.ID, 10)
	}
	items := make([]AuditItem, len(entries))
	for i, e := range entries {
		items[i] = AuditItem{Entry: e, Detail: json.RawMessage(e.Detail)}
	}
	return items, next, nil
}

// AuditLag is the sealing lag now: how many entries wait after the head block, and since
// when the first of them (in sealing order) has waited. It reads two index ranges.
func AuditLag(ctx context.Context, pool *pgxpool.Pool) (unsealed int64, oldest *time.Time, err error) {
	err = pool.QueryRow(ctx, `WITH head AS (
		  SELECT coalesce((SELECT last_xid FROM velocity.audit_block ORDER BY block_no DESC LIMIT 1), '0'::xid8) AS x,
		         coalesce((SELECT last_id FROM velocity.audit_block ORDER BY block_no DESC LIMIT 1), 0) AS i)
		SELECT (SELECT count(*) FROM velocity.audit_entry e, head WHERE (e.xid, e.id) > (head.x, head.i)),
		       (SELECT e.at FROM velocity.audit_entry e, head WHERE (e.xid, e.id) > (head.x, head.i) ORDER BY e.xid, e.id LIMIT 1)`).Scan(&unsealed, &oldest)
	if err != nil {
		return 0, nil, fmt.Errorf("audit lag: %w", err)
	}
	return unsealed, oldest, nil
}
