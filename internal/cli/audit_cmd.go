package cli

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/velocitydev/velocity/internal/audit"
)

// auditEntry is one entry of GET /admin/audit, with the fields the table shows; -o json shows
// them all, detail included.
type auditEntry struct {
	ID        int64   `json:"id"`
	At        string  `json:"at"`
	Action    string  `json:"action"`
	Outcome   string  `json:"outcome"`
	Actor     string  `json:"actor"`
	Layer     *int    `json:"layer"`
	Schema    *string `json:"schema"`
	RecordID  *string `json:"record_id"`
	RequestID *string `json:"request_id"`
}

// auditDigest is the head of the sealed log as GET /admin/audit/digest exports it. Kept
// outside the database, it lets a later verify prove that the log still extends it.
type auditDigest struct {
	Version    int    `json:"version"`
	Block      int64  `json:"block"`
	BlockHash  string `json:"block_hash"`
	MerkleRoot string `json:"merkle_root"`
	Entries    int64  `json:"entries"`
	SealedAt   string `json:"sealed_at"`
}

// auditVerifyReport is the answer of GET /admin/audit/verify.
type auditVerifyReport struct {
	OK      bool `json:"ok"`
	Problem *struct {
		Kind     string `json:"kind"`
		Block    int64  `json:"block"`
		EntryID  int64  `json:"entry_id"`
		Position *int   `json:"position"`
		Detail   string `json:"detail"`
	} `json:"problem"`
	Blocks        int64        `json:"blocks"`
	Entries       int64        `json:"entries"`
	Head          *auditDigest `json:"head"`
	Unsealed      int64        `json:"unsealed"`
	SealingLag    float64      `json:"sealing_lag_seconds"`
	DigestChecked *auditDigest `json:"digest_checked"`
	Proof         *auditProof  `json:"proof"`
}

// auditProof shows that one entry is a leaf of its block's Merkle tree.
type auditProof struct {
	Entry      auditEntry `json:"entry"`
	Block      int64      `json:"block"`
	Index      int        `json:"index"`
	TreeSize   int        `json:"tree_size"`
	LeafHash   string     `json:"leaf_hash"`
	Path       []string   `json:"path"`
	MerkleRoot string     `json:"merkle_root"`
	BlockHash  string     `json:"block_hash"`
	Verified   bool       `json:"verified"`
	Problem    string     `json:"problem"`
}

// auditOutcomes are the values of an entry's outcome.
var auditOutcomes = []string{"allowed", "denied", "failed"}

// blockHash is a block hash as digests carry it: SHA-256 in hex.
var blockHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read, seal and verify the tamper-evident audit log (platform_admin)"}
	cmd.AddCommand(newAuditListCmd(g), newAuditVerifyCmd(g), newAuditDigestCmd(g), newAuditSealCmd(g))
	return cmd
}

func newAuditListCmd(g *globals) *cobra.Command {
	var since, until, actor, action, outcome, schema, record, cursor string
	var limit int
	cmd := &cobra.Command{
		Use:   "list [--since T] [--until T] [--actor A] [--action X] [--outcome O] [--schema KEY] [--record ID] [--limit N] [--cursor C]",
		Short: "List audit entries, newest first",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := auditListQuery(since, until, actor, action, outcome, schema, record, cursor, limit)
			if err != nil {
				return usageError{fmt.Errorf("audit list: %w", err)}
			}
			var page struct {
				Items      []auditEntry `json:"items"`
				NextCursor *string      `json:"next_cursor"`
			}
			raw, err := g.call(cmd, http.MethodGet, "/admin/audit?"+q.Encode(), nil, &page)
			if err != nil {
				return fmt.Errorf("audit list: %w", err)
			}
			err = g.print(cmd, raw, func() [][]string {
				rows := [][]string{{"ID", "AT", "ACTION", "OUTCOME", "ACTOR", "LAYER", "SCHEMA", "RECORD", "REQUEST"}}
				for _, e := range page.Items {
					layer := "-"
					if e.Layer != nil {
						layer = strconv.Itoa(*e.Layer)
					}
					rows = append(rows, []string{strconv.FormatInt(e.ID, 10), e.At, e.Action, e.Outcome, e.Actor, layer,
						orText(e.Schema, "-"), orText(e.RecordID, "-"), orText(e.RequestID, "-")})
				}
				return rows
			})
			if err != nil || g.output == "json" || page.NextCursor == nil || *page.NextCursor == "" {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "\nmore: --cursor %s\n", *page.NextCursor)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "only entries at or after this RFC 3339 time")
	f.StringVar(&until, "until", "", "only entries before this RFC 3339 time")
	f.StringVar(&actor, "actor", "", "only entries of this actor, such as apikey:<id>")
	f.StringVar(&action, "action", "", "only entries of this action, such as record.insert")
	f.StringVar(&outcome, "outcome", "", "only entries with this outcome: allowed, denied or failed")
	f.StringVar(&schema, "schema", "", "only entries about this schema: org.app.domain.object or /org/app/domain/object")
	f.StringVar(&record, "record", "", "only entries about this record id")
	f.IntVar(&limit, "limit", 100, "entries per page (1 to 1000)")
	f.StringVar(&cursor, "cursor", "", "the cursor a previous page printed")
	return cmd
}

// auditListQuery checks the list flags and turns them into the query of GET /admin/audit.
func auditListQuery(since, until, actor, action, outcome, schema, record, cursor string, limit int) (url.Values, error) {
	q := url.Values{}
	for _, t := range []struct{ flag, v string }{{"since", since}, {"until", until}} {
		if t.v == "" {
			continue
		}
		if err := checkTime(t.flag, t.v); err != nil {
			return nil, err
		}
		q.Set(t.flag, t.v)
	}
	if outcome != "" {
		known := false
		for _, o := range auditOutcomes {
			known = known || o == outcome
		}
		if !known {
			return nil, fmt.Errorf("--outcome must be one of %s, not %q", strings.Join(auditOutcomes, ", "), outcome)
		}
		q.Set("outcome", outcome)
	}
	if schema != "" {
		p, err := objectPath(schema)
		if err != nil {
			return nil, fmt.Errorf("--schema: %w", err)
		}
		q.Set("schema", strings.ReplaceAll(strings.TrimPrefix(p, "/"), "/", "."))
	}
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("--limit must be from 1 to 1000, not %d", limit)
	}
	q.Set("limit", strconv.Itoa(limit))
	for name, v := range map[string]string{"actor": actor, "action": action, "record": record, "cursor": cursor} {
		if v != "" {
			q.Set(name, v)
		}
	}
	return q, nil
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var digestFile string
	var entry int64
	cmd := &cobra.Command{
		Use:   "verify [--digest FILE] [--entry ID]",
		Short: "Recompute the sealed log and report the first tampering; exit 1 unless it is intact",
		Long: "Recompute every sealed block and entry of the audit log on the server and report the first\n" +
			"tampering found. --digest checks that the log still extends a digest saved earlier with\n" +
			"`velocity audit digest -o json > FILE`; --entry also proves that entry's inclusion in its block.\n" +
			"Exits 1 when the log fails verification or the proof does not hold.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if cmd.Flags().Changed("entry") {
				if entry < 1 {
					return usageError{fmt.Errorf("audit verify: --entry must be a positive entry id, not %d", entry)}
				}
				q.Set("entry", strconv.FormatInt(entry, 10))
			}
			var digest *auditDigest
			if digestFile != "" {
				d, err := readAuditDigest(digestFile)
				if err != nil {
					return fmt.Errorf("audit verify: %w", err)
				}
				digest = &d
				q.Set("digest_block", strconv.FormatInt(d.Block, 10))
				q.Set("digest_hash", d.BlockHash)
			}
			path := "/admin/audit/verify"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			var rep auditVerifyReport
			raw, err := g.call(cmd, http.MethodGet, path, nil, &rep)
			if err != nil {
				return fmt.Errorf("audit verify: %w", err)
			}
			if err := g.print(cmd, raw, func() [][]string { return verifyLines(rep, digest) }); err != nil {
				return err
			}
			return verifyFailure(rep, digest, q.Has("entry"))
		},
	}
	f := cmd.Flags()
	f.StringVar(&digestFile, "digest", "", "a digest saved with `velocity audit digest -o json`: check that the log still extends it")
	f.Int64Var(&entry, "entry", 0, "also prove that this entry (by id) is sealed in its block unchanged")
	return cmd
}

// readAuditDigest reads a digest file as `audit digest -o json` writes it.
func readAuditDigest(file string) (auditDigest, error) {
	var d auditDigest
	data, err := os.ReadFile(file)
	if err != nil {
		return d, fmt.Errorf("read digest: %w", err)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return d, fmt.Errorf("digest %s: not a digest as `velocity audit digest -o json` prints it: %w", file, err)
	}
	d.BlockHash = strings.ToLower(d.BlockHash)
	switch {
	case d.Block < 1:
		return d, fmt.Errorf("digest %s: block must be a block number from 1, not %d", file, d.Block)
	case !blockHash.MatchString(d.BlockHash):
		return d, fmt.Errorf("digest %s: block_hash must be 64 hex digits, not %q", file, d.BlockHash)
	}
	return d, nil
}

// verifyLines is the table output of verify: a verdict line, then what was checked.
func verifyLines(rep auditVerifyReport, digest *auditDigest) [][]string {
	var lines []string
	if rep.OK {
		lines = append(lines, fmt.Sprintf("OK: %d blocks, %d entries sealed, %d unsealed, sealing lag %.1fs",
			rep.Blocks, rep.Entries, rep.Unsealed, rep.SealingLag))
		if rep.Head != nil {
			lines = append(lines, fmt.Sprintf("head: block %d, hash %s", rep.Head.Block, rep.Head.BlockHash))
		}
		if rep.DigestChecked != nil {
			lines = append(lines, fmt.Sprintf("log extends digest of block %d (hash %s)", rep.DigestChecked.Block, rep.DigestChecked.BlockHash))
		}
	} else {
		p := rep.Problem
		if p == nil {
			lines = append(lines, "TAMPERED: the API reported a failed verification without saying why")
		} else {
			lines = append(lines, "TAMPERED: "+p.Detail)
			where := "kind " + p.Kind
			if p.Block != 0 {
				where += fmt.Sprintf(", block %d", p.Block)
			}
			if p.EntryID != 0 {
				where += fmt.Sprintf(", entry %d", p.EntryID)
			}
			if p.Position != nil {
				where += fmt.Sprintf(", position %d", *p.Position)
			}
			lines = append(lines, where)
		}
		lines = append(lines, fmt.Sprintf("intact before it: %d blocks, %d entries", rep.Blocks, rep.Entries))
		if digest != nil && rep.DigestChecked == nil {
			lines = append(lines, fmt.Sprintf("digest of block %d: not confirmed", digest.Block))
		}
	}
	if pr := rep.Proof; pr != nil {
		verdict := "verified"
		if !pr.Verified {
			verdict = "NOT verified"
			if pr.Problem != "" {
				verdict += ": " + pr.Problem
			}
		}
		lines = append(lines,
			fmt.Sprintf("proof: entry %d (%s at %s): block %d, index %d of %d leaves: %s", pr.Entry.ID, pr.Entry.Action, pr.Entry.At, pr.Block, pr.Index, pr.TreeSize, verdict),
			"  leaf hash:   "+pr.LeafHash,
			"  path:        "+orDash(strings.Join(pr.Path, " ")),
			"  merkle root: "+pr.MerkleRoot,
			"  block hash:  "+pr.BlockHash)
	}
	rows := make([][]string, len(lines))
	for i, l := range lines {
		rows[i] = []string{l}
	}
	return rows
}

// verifyFailure is the error that makes verify exit 1: a log that failed verification, a
// digest or proof that was asked for and not confirmed.
func verifyFailure(rep auditVerifyReport, digest *auditDigest, wantProof bool) error {
	switch {
	case !rep.OK:
		kind := "unknown problem"
		if rep.Problem != nil {
			kind = rep.Problem.Kind
		}
		return fmt.Errorf("audit verify: the audit log failed verification (%s)", kind)
	case digest != nil && rep.DigestChecked == nil:
		return fmt.Errorf("audit verify: the API did not confirm the digest of block %d", digest.Block)
	case wantProof && rep.Proof == nil:
		return errors.New("audit verify: the API returned no inclusion proof")
	case wantProof && !rep.Proof.Verified:
		msg := fmt.Sprintf("audit verify: entry %d is not proven", rep.Proof.Entry.ID)
		if rep.Proof.Problem != "" {
			msg += ": " + rep.Proof.Problem
		}
		return errors.New(msg)
	case wantProof:
		// Do not take the server's word for it: the path must lead from the leaf to the root.
		if err := checkProof(rep.Proof); err != nil {
			return fmt.Errorf("audit verify: the inclusion proof of entry %d does not hold when checked here: %w", rep.Proof.Entry.ID, err)
		}
	}
	return nil
}

// checkProof recomputes an inclusion proof (RFC 9162) from its leaf, path and root.
func checkProof(pr *auditProof) error {
	parse := func(h string) (audit.Hash, error) {
		raw, err := hex.DecodeString(h)
		if err != nil {
			return audit.Hash{}, fmt.Errorf("hash %q: %w", h, err)
		}
		return audit.ToHash(raw)
	}
	leaf, err := parse(pr.LeafHash)
	if err != nil {
		return err
	}
	root, err := parse(pr.MerkleRoot)
	if err != nil {
		return err
	}
	path := make([]audit.Hash, len(pr.Path))
	for i, h := range pr.Path {
		if path[i], err = parse(h); err != nil {
			return err
		}
	}
	return audit.VerifyInclusion(leaf, pr.Index, pr.TreeSize, path, root)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newAuditDigestCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "digest",
		Short: "Print the head of the sealed log; save it with -o json and check it later with verify --digest",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var d auditDigest
			raw, err := g.call(cmd, http.MethodGet, "/admin/audit/digest", nil, &d)
			if err != nil {
				return fmt.Errorf("audit digest: %w", err)
			}
			return g.print(cmd, raw, func() [][]string {
				return [][]string{
					{"BLOCK", "BLOCK_HASH", "ENTRIES", "SEALED_AT"},
					{strconv.FormatInt(d.Block, 10), d.BlockHash, strconv.FormatInt(d.Entries, 10), d.SealedAt},
				}
			})
		},
	}
}

func newAuditSealCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "seal",
		Short: "Seal the audit entries written so far into hash-linked blocks now",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res struct {
				Blocks  int `json:"blocks"`
				Entries int `json:"entries"`
				Head    *struct {
					Block    int64  `json:"block"`
					SealedAt string `json:"sealed_at"`
				} `json:"head"`
			}
			raw, err := g.call(cmd, http.MethodPost, "/admin/audit/seal", nil, &res)
			if err != nil {
				return fmt.Errorf("audit seal: %w", err)
			}
			return g.print(cmd, raw, func() [][]string {
				head, sealedAt := "-", "-"
				if res.Head != nil {
					head, sealedAt = strconv.FormatInt(res.Head.Block, 10), orDash(res.Head.SealedAt)
				}
				return [][]string{
					{"SEALED_BLOCKS", "SEALED_ENTRIES", "HEAD_BLOCK", "HEAD_SEALED_AT"},
					{strconv.Itoa(res.Blocks), strconv.Itoa(res.Entries), head, sealedAt},
				}
			})
		},
	}
}
