package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/store"
)

// auditEnv is a database with the orders schema, some audited changes of each source, and a
// worker pool to seal with.
type auditEnv struct {
	*env
	jobs *store.Jobs
}

func newAuditEnv(t *testing.T, records int) *auditEnv {
	t.Helper()
	e := &auditEnv{env: newEnv(t)}
	e.jobs = openJobs(t, e.env)
	e.apply(t, orders(t))
	e.writeRecords(t, records)
	return e
}

func (e *auditEnv) writeRecords(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		err := e.st.InRequest(ctx, admin(), []store.Statement{{SQL: `INSERT INTO acme__shop.sales__orders (customer_email, region) VALUES ($1, 'eu')`,
			Args: []any{fmt.Sprintf("c%d@example.com", i)}}}, drain)
		require.NoError(t, err)
	}
}

// seal seals every entry written so far. The snapshot xmin is the whole cluster's, and
// other tests run transactions in parallel, so it first waits for the horizon to pass this
// database's entries (it only ever moves forward), so block layouts are the same every run.
func (e *auditEnv) seal(t *testing.T, blockSize int) store.SealResult {
	t.Helper()
	require.Eventually(t, func() bool {
		return scalar[bool](t, e.super, `SELECT coalesce(pg_snapshot_xmin(pg_current_snapshot()) > max(xid), true) FROM velocity.audit_entry`)
	}, 30*time.Second, 10*time.Millisecond)
	res, err := store.SealAudit(context.Background(), e.jobs.Pool, store.SealOptions{BlockSize: blockSize})
	require.NoError(t, err)
	return res
}

func (e *auditEnv) verify(t *testing.T, d *store.Digest) store.VerifyReport {
	t.Helper()
	rep, err := store.VerifyAudit(context.Background(), e.st.Owner, d)
	require.NoError(t, err)
	return rep
}

// tamper runs sql as a superuser would: with the append-only triggers off for the transaction.
func (e *auditEnv) tamper(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	tx, err := e.super.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, sql, args...)
	require.NoError(t, err, sql)
	require.NoError(t, tx.Commit(ctx))
}

// blockEntries are the entry ids sealed in block no.
func (e *auditEnv) blockEntries(t *testing.T, no int64) []int64 {
	return scalar[[]int64](t, e.super, "SELECT entry_ids FROM velocity.audit_block WHERE block_no = $1", no)
}

func TestAuditEntriesForEveryChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newAuditEnv(t, 1)
	req := admin()
	req.Reason, req.RequestID = "fix typo", "req-42"
	err := e.st.InRequest(ctx, req, []store.Statement{{SQL: `UPDATE acme__shop.sales__orders SET customer_email = 'new@example.com', region = 'us'`}}, drain)
	require.NoError(t, err)
	// An update that changes nothing is no change: no history, no audit entry.
	err = e.st.InRequest(ctx, req, []store.Statement{{SQL: `UPDATE acme__shop.sales__orders SET region = 'us'`}}, drain)
	require.NoError(t, err)

	type row struct {
		Action, Outcome, Actor, Reason, Request, Record string
		Detail                                          map[string]any
	}
	rows, err := e.super.Query(ctx, `SELECT action, outcome::text, actor, coalesce(reason, ''), coalesce(request_id, ''), coalesce(record_id, ''), detail
		FROM velocity.audit_entry ORDER BY xid, id`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	require.NoError(t, err)
	var actions []string
	for _, r := range got {
		actions = append(actions, r.Action)
	}
	require.Equal(t, []string{"schema.apply", "record.insert", "record.update"}, actions)
	upd := got[2]
	require.Equal(t, "allowed", upd.Outcome)
	require.Equal(t, "user:alice", upd.Actor)
	require.Equal(t, "fix typo", upd.Reason)
	require.Equal(t, "req-42", upd.Request)
	record := upd.Detail["record"].(map[string]any)
	require.Equal(t, "us", record["region"])
	// customer_email is sensitive: its key is there, its value is not, in any entry.
	require.Contains(t, record, "customer_email")
	require.Nil(t, record["customer_email"])
	require.Equal(t, 0, scalar[int](t, e.super, `SELECT count(*)::int FROM velocity.audit_entry WHERE detail::text LIKE '%example.com%'`))
	// The entry shares its id with the history event.
	require.Equal(t, 2, scalar[int](t, e.super, `SELECT count(*)::int FROM velocity.audit_entry a JOIN acme__shop.sales__orders__history h ON h.event_id = a.id`))

	// A rolled-back change leaves no entry.
	before := scalar[int](t, e.super, "SELECT count(*)::int FROM velocity.audit_entry")
	err = e.st.InRequest(ctx, admin(), []store.Statement{
		{SQL: `INSERT INTO acme__shop.sales__orders (customer_email, region) VALUES ('x@example.com', 'eu')`},
		{SQL: `SELECT 1/0`},
	}, drain)
	require.Error(t, err)
	require.Equal(t, before, scalar[int](t, e.super, "SELECT count(*)::int FROM velocity.audit_entry"))

	// A direct SQL write is audited too, as the login that made it.
	_, err = e.super.Exec(ctx, `INSERT INTO acme__shop.sales__orders (customer_email, region) VALUES ('psql@example.com', 'eu')`)
	require.NoError(t, err)
	require.Equal(t, "db:postgres", scalar[string](t, e.super, "SELECT actor FROM velocity.audit_entry ORDER BY id DESC LIMIT 1"))
}

func TestAuditAdminChangesAndDecisions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newAuditEnv(t, 0)
	key, err := e.st.CreateAPIKey(ctx, admin(), "ci", []string{"viewer"}, 0, nil)
	require.NoError(t, err)
	require.NoError(t, e.st.RevokeAPIKey(ctx, admin(), key.ID))
	_, err = e.st.GrantDBLogin(ctx, admin(), "viewer", "bi_tool", nil, nil)
	require.NoError(t, err)
	require.NoError(t, e.st.RevokeDBLogin(ctx, admin(), "viewer", "bi_tool"))

	actions := scalar[[]string](t, e.super, "SELECT array_agg(action ORDER BY xid, id) FROM velocity.audit_entry")
	require.Equal(t, []string{"schema.apply", "apikey.create", "apikey.revoke", "dblogin.create", "binding.grant", "binding.revoke"}, actions)
	// No key hash, no secret.
	require.Equal(t, 0, scalar[int](t, e.super, "SELECT count(*)::int FROM velocity.audit_entry WHERE detail ? 'key_hash' OR detail::text LIKE '%vk\\_%'"))
	require.Equal(t, key.ID.String(), scalar[string](t, e.super, "SELECT record_id FROM velocity.audit_entry WHERE action = 'apikey.revoke'"))

	// The API appends decisions in batches; nobody else may.
	err = e.st.InRequest(ctx, admin(), []store.Statement{{SQL: `SELECT velocity.audit_append($1)`, Args: []any{
		`[{"action": "authz.read", "outcome": "denied", "actor": "apikey:1", "strategy": "api-key", "layer": 1, "schema_key": "acme.shop.sales.orders", "reason": "role lacks read"},
		  {"action": "authn", "outcome": "failed", "actor": "", "strategy": "jwt", "fail_mode": "closed"}]`}}}, drain)
	require.NoError(t, err)
	require.Equal(t, 2, scalar[int](t, e.super, "SELECT count(*)::int FROM velocity.audit_entry WHERE action IN ('authz.read', 'authn')"))
	require.Equal(t, int16(1), scalar[int16](t, e.super, "SELECT layer FROM velocity.audit_entry WHERE action = 'authz.read'"))
	for _, role := range []string{store.WorkerRole, "velocity_r_viewer"} {
		_, err := e.super.Exec(ctx, "SET ROLE "+role+"; SELECT velocity.audit_append('[]'); RESET ROLE")
		require.ErrorContains(t, err, "permission denied", role)
		_, _ = e.super.Exec(ctx, "RESET ROLE")
	}
}

// Every role is refused UPDATE, DELETE and TRUNCATE on the audit tables, the owner too.
func TestAuditTablesAreAppendOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newAuditEnv(t, 2)
	e.seal(t, 4)
	for _, role := range []string{store.OwnerRole, store.WorkerRole, "velocity_api", "velocity_r_admin", "postgres"} {
		for _, sql := range []string{
			"UPDATE velocity.audit_entry SET actor = 'mallory'",
			"DELETE FROM velocity.audit_entry",
			"TRUNCATE velocity.audit_entry",
			"UPDATE velocity.audit_block SET sealed_at = now()",
			"DELETE FROM velocity.audit_block",
			"TRUNCATE velocity.audit_block",
		} {
			tx, err := e.super.Begin(ctx)
			require.NoError(t, err)
			if role != "postgres" {
				_, err = tx.Exec(ctx, "SET LOCAL ROLE "+role)
				require.NoError(t, err)
			}
			_, err = tx.Exec(ctx, sql)
			require.Error(t, err, "%s: %s", role, sql)
			require.True(t, strings.Contains(err.Error(), "append-only") || strings.Contains(err.Error(), "permission denied"), "%s: %s: %v", role, sql, err)
			_ = tx.Rollback(ctx)
		}
	}
}

func TestAuditSealAndVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newAuditEnv(t, 9) // 10 entries with the schema apply
	res := e.seal(t, 4)
	require.Equal(t, 10, res.Entries)
	require.Equal(t, 3, res.Blocks)
	require.Equal(t, int64(3), res.Head.No)
	// Nothing new, nothing sealed.
	require.Equal(t, 0, e.seal(t, 4).Entries)

	rep := e.verify(t, nil)
	require.True(t, rep.OK, "%+v", rep.Problem)
	require.Equal(t, int64(3), rep.Blocks)
	require.Equal(t, int64(10), rep.Entries)
	require.Equal(t, int64(0), rep.Unsealed)

	e.writeRecords(t, 2)
	rep = e.verify(t, nil)
	require.True(t, rep.OK)
	require.Equal(t, int64(2), rep.Unsealed)
	require.NotNil(t, rep.OldestUnsealed)

	// Proofs of inclusion for each sealed entry.
	for _, id := range e.blockEntries(t, 2) {
		p, err := store.AuditProof(ctx, e.st.Owner, id)
		require.NoError(t, err)
		require.True(t, p.Verified, p.Problem)
		require.Equal(t, int64(2), p.Block)
		require.Equal(t, 4, p.TreeSize)
		require.Len(t, p.Path, 2)
	}
	unsealed := scalar[int64](t, e.super, "SELECT max(id) FROM velocity.audit_entry")
	_, err := store.AuditProof(ctx, e.st.Owner, unsealed)
	require.ErrorIs(t, err, store.ErrNotSealed)
	_, err = store.AuditProof(ctx, e.st.Owner, -1)
	require.ErrorIs(t, err, store.ErrNotFound)
}

// A transaction that wrote its entry first but commits last is never sealed behind a block:
// nothing past its xid is sealed while it runs.
func TestAuditSealWaitsForLateCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newAuditEnv(t, 0)
	e.seal(t, 100)

	slow, err := e.st.API.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = slow.Rollback(ctx) }()
	_, err = slow.Exec(ctx, "SELECT velocity.audit_append('[{\"action\": \"slow\", \"outcome\": \"allowed\"}]')")
	require.NoError(t, err)
	e.writeRecords(t, 3) // later xids, committed first

	res, err := store.SealAudit(ctx, e.jobs.Pool, store.SealOptions{})
	require.NoError(t, err)
	require.Equal(t, 0, res.Entries, "nothing at or past the running transaction's xid is sealed")
	require.NoError(t, slow.Commit(ctx))
	require.Equal(t, 4, e.seal(t, 100).Entries)
	actions := scalar[[]string](t, e.super, `SELECT array_agg(a.action ORDER BY o) FROM velocity.audit_block b,
		unnest(b.entry_ids) WITH ORDINALITY AS u(id, o) JOIN velocity.audit_entry a ON a.id = u.id WHERE b.block_no = 2`)
	require.Equal(t, []string{"slow", "record.insert", "record.insert", "record.insert"}, actions)
	require.True(t, e.verify(t, nil).OK)
}

func TestAuditSealersTakeTurns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newAuditEnv(t, 1)
	tx, err := e.st.Owner.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('velocity.audit_seal', 0))")
	require.NoError(t, err)
	_, err = store.SealAudit(ctx, e.jobs.Pool, store.SealOptions{})
	require.ErrorIs(t, err, store.ErrSealBusy)
	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, 2, e.seal(t, 0).Entries)
}

// Tampering as a superuser would, with the append-only triggers off: each kind is detected
// and located by verify.
func TestAuditVerifyFindsTampering(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		tamper func(t *testing.T, e *auditEnv) (kind string, block, entry int64)
	}{
		{"change a field of an entry", func(t *testing.T, e *auditEnv) (string, int64, int64) {
			id := e.blockEntries(t, 2)[1]
			e.tamper(t, "UPDATE velocity.audit_entry SET actor = 'mallory' WHERE id = $1", id)
			return store.ProblemEntryChanged, 2, id
		}},
		{"change the detail of an entry", func(t *testing.T, e *auditEnv) (string, int64, int64) {
			id := e.blockEntries(t, 1)[3]
			e.tamper(t, `UPDATE velocity.audit_entry SET detail = jsonb_set(detail, '{record,region}', '"us"') WHERE id = $1`, id)
			return store.ProblemEntryChanged, 1, id
		}},
		{"delete an entry", func(t *testing.T, e *auditEnv) (string, int64, int64) {
			id := e.blockEntries(t, 2)[2]
			e.tamper(t, "DELETE FROM velocity.audit_entry WHERE id = $1", id)
			return store.ProblemEntryMissing, 2, id
		}},
		{"insert a forged entry", func(t *testing.T, e *auditEnv) (string, int64, int64) {
			ids := e.blockEntries(t, 2)
			xid := scalar[string](t, e.super, "SELECT xid::text FROM velocity.audit_entry WHERE id = $1", ids[1])
			forged := scalar[int64](t, e.super, "SELECT max(id) + 1000 FROM velocity.audit_entry")
			e.tamper(t, `INSERT INTO velocity.audit_entry (id, xid, action, outcome, actor) VALUES ($1, $2::xid8, 'record.delete', 'allowed', 'user:alice')`, forged, xid)
			return store.ProblemEntryInserted, 2, forged
		}},
		{"insert a copy of a sealed entry", func(t *testing.T, e *auditEnv) (string, int64, int64) {
			id := e.blockEntries(t, 2)[1]
			e.tamper(t, `INSERT INTO velocity.audit_entry SELECT * FROM velocity.audit_entry WHERE id = $1`, id)
			return store.ProblemEntryInserted, 2, id
		}},
		{"reorder entries", func(t *testing.T, e *auditEnv) (string, int64, int64) {
			ids := e.blockEntries(t, 2)
			e.tamper(t, "UPDATE velocity.audit_entry SET id = CASE id WHEN $1 THEN $2 ELSE $1 END WHERE id IN ($1, $2)", ids[0], ids[1])
			return store.ProblemReordered, 2, ids[1]
		}},
		{"reorder a block's entries", func(t *testing.T, e *auditEnv) (string, int64, int64) {
			ids := e.blockEntries(t, 1)
			e.tamper(t, "UPDATE velocity.audit_block SET entry_ids = $1 WHERE block_no = 1", []int64{ids[0], ids[2], ids[1], ids[3]})
			return store.ProblemReordered, 1, ids[1]
		}},
		{"change a block hash", func(t *testing.T, e *auditEnv) (string, int64, int64) {
			e.tamper(t, "UPDATE velocity.audit_block SET block_hash = sha256(block_hash) WHERE block_no = 2")
			return store.ProblemBlockHash, 2, 0
		}},
		{"change a block's leaves", func(t *testing.T, e *auditEnv) (string, int64, int64) {
			e.tamper(t, "UPDATE velocity.audit_block SET leaves = overlay(leaves placing sha256('x') from 33 for 32) WHERE block_no = 1")
			return store.ProblemMerkleRoot, 1, 0
		}},
		{"delete a block", func(t *testing.T, e *auditEnv) (string, int64, int64) {
			e.tamper(t, "DELETE FROM velocity.audit_block WHERE block_no = 2")
			return store.ProblemBlockGap, 2, 0
		}},
		{"truncate the tail of the last block", func(t *testing.T, e *auditEnv) (string, int64, int64) {
			ids := e.blockEntries(t, 3)
			e.tamper(t, "DELETE FROM velocity.audit_entry WHERE id = $1", ids[len(ids)-1])
			return store.ProblemEntryMissing, 3, ids[len(ids)-1]
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newAuditEnv(t, 9)
			e.seal(t, 4)
			before := e.verify(t, nil)
			if !before.OK {
				t.Log(scalar[string](t, e.super, "SELECT string_agg(id::text || '/' || xid::text || '/' || action, ' ' ORDER BY xid, id) FROM velocity.audit_entry"))
				t.Log(scalar[string](t, e.super, "SELECT string_agg(block_no::text || ':' || first_xid::text || '.' || first_id || '-' || last_xid::text || '.' || last_id || ' ' || entry_ids::text, ' | ' ORDER BY block_no) FROM velocity.audit_block"))
			}
			require.True(t, before.OK, "%+v", before.Problem)
			kind, block, entry := c.tamper(t, e)
			rep := e.verify(t, nil)
			require.False(t, rep.OK)
			require.NotNil(t, rep.Problem)
			require.Equal(t, kind, rep.Problem.Kind, rep.Problem.Detail)
			require.Equal(t, block, rep.Problem.Block, rep.Problem.Detail)
			if entry != 0 {
				require.Equal(t, entry, rep.Problem.EntryID, rep.Problem.Detail)
			}
		})
	}
}

// A digest exported earlier proves that the log still extends it; removing whole blocks at
// the tail, which leaves a shorter chain that is consistent in itself, is caught only by it.
func TestAuditDigest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newAuditEnv(t, 9)
	e.seal(t, 4)
	d, err := store.AuditDigest(ctx, e.st.Owner)
	require.NoError(t, err)
	require.Equal(t, int64(3), d.Block)
	require.Equal(t, int64(10), d.Entries)

	e.writeRecords(t, 5)
	e.seal(t, 4)
	rep := e.verify(t, d)
	require.True(t, rep.OK, "%+v", rep.Problem)
	require.Equal(t, d, rep.DigestChecked)
	require.Equal(t, int64(5), rep.Head.Block)

	// Cut blocks 3 to 5 and their entries: the rest verifies, but not against the digest.
	e.tamper(t, `DELETE FROM velocity.audit_entry WHERE id IN (SELECT unnest(entry_ids) FROM velocity.audit_block WHERE block_no >= 3)`)
	e.tamper(t, `DELETE FROM velocity.audit_block WHERE block_no >= 3`)
	require.True(t, e.verify(t, nil).OK)
	rep = e.verify(t, d)
	require.False(t, rep.OK)
	require.Equal(t, store.ProblemTruncated, rep.Problem.Kind)
	require.Equal(t, int64(3), rep.Problem.Block)

	// A digest from another log (or a rewritten one) does not match.
	other := *d
	other.Block, other.BlockHash = 2, strings.Repeat("ab", 32)
	rep = e.verify(t, &other)
	require.Equal(t, store.ProblemDigestMismatch, rep.Problem.Kind)
	require.Equal(t, int64(2), rep.Problem.Block)
}
