package store_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/store"
)

func platformAdmin(id, reason string) store.Request {
	return store.Request{
		Actor:     store.Actor{ID: id, Kind: "subject", Roles: []string{"platform_admin"}, Attributes: map[string]any{}},
		Reason:    reason,
		RequestID: "req-" + id,
	}
}

// dropRegion is v1 at the next version without its region field: a breaking change. The row
// filter reads region, so it goes too (a definition whose rules name a dropped field is refused).
func dropRegion(t *testing.T, v1 schemadef.Definition) schemadef.Definition {
	t.Helper()
	return next(t, v1, func(d *schemadef.Definition) {
		d.Spec.Fields = append(d.Spec.Fields[:2:2], d.Spec.Fields[3:]...)
		d.Spec.Access.RowFilter = ""
	})
}

// request applies def for req with the approval flow on.
func (e *env) request(t *testing.T, def schemadef.Definition, req store.Request) store.ApplyResult {
	t.Helper()
	res, err := e.st.ApplySchemaWith(context.Background(), def, store.ApplyOptions{Request: req, RequestApproval: true})
	require.NoError(t, err)
	return res
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (e *env) hasRegion(t *testing.T) bool {
	t.Helper()
	return scalar[bool](t, e.super, `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'acme__shop.sales__orders'::regclass AND attname = 'region' AND NOT attisdropped)`)
}

type auditEntry struct {
	Action, Actor, SchemaKey, RecordID, Reason, RequestID string
}

// auditEntries are the audit entries of action, oldest first.
func (e *env) auditEntries(t *testing.T, action string) []auditEntry {
	t.Helper()
	rows, err := e.super.Query(context.Background(), `
		SELECT action, actor, coalesce(schema_key, ''), coalesce(record_id, ''), coalesce(reason, ''), coalesce(request_id, '')
		  FROM velocity.audit_entry WHERE action = $1 ORDER BY id`, action)
	require.NoError(t, err)
	defer rows.Close()
	var out []auditEntry
	for rows.Next() {
		var a auditEntry
		require.NoError(t, rows.Scan(&a.Action, &a.Actor, &a.SchemaKey, &a.RecordID, &a.Reason, &a.RequestID))
		out = append(out, a)
	}
	require.NoError(t, rows.Err())
	return out
}

func TestApprovalRequestAppliesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	_, err := e.super.Exec(ctx, `INSERT INTO `+ordersTable+` (customer_email, region) VALUES ('a@example.com', 'eu')`)
	require.NoError(t, err)
	v2 := dropRegion(t, v1)

	// A dry run says approval is needed and records nothing.
	res, err := e.st.ApplySchemaWith(ctx, v2, store.ApplyOptions{DryRun: true, Request: platformAdmin("user:alice", ""), RequestApproval: true})
	require.NoError(t, err)
	require.Equal(t, store.StatusDryRun, res.Status)
	require.True(t, res.ApprovalRequired)
	require.Nil(t, res.Approval)
	require.Equal(t, 0, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_approvals`))

	res = e.request(t, v2, platformAdmin("user:alice", "drop the unused region"))
	require.Equal(t, store.StatusPendingApproval, res.Status)
	require.True(t, res.ApprovalRequired)
	a := res.Approval
	require.NotNil(t, a)
	require.Equal(t, store.ApprovalPending, a.Status)
	require.Equal(t, "orders", a.Name)
	require.Equal(t, ordersKey, a.Key)
	require.Equal(t, 1, a.FromVersion)
	require.Equal(t, 2, a.ToVersion)
	require.Equal(t, "user:alice", a.RequestedBy)
	require.Equal(t, []string{`field "region" is dropped with its data`}, a.Breaking)
	require.Equal(t, res.Plan.SQL(), a.Plan)
	require.Contains(t, a.Plan, `DROP COLUMN "region"`)
	require.Equal(t, v2, a.Definition)

	// Nothing was applied: the column and its data, version 1, one version row.
	require.True(t, e.hasRegion(t))
	require.Equal(t, "eu", scalar[string](t, e.super, `SELECT region FROM `+ordersTable))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT current_version FROM velocity.schemas`))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_versions`))

	// Sending the same definition again is the same request, whoever sends it.
	again := e.request(t, dropRegion(t, v1), platformAdmin("user:bob", ""))
	require.Equal(t, store.StatusPendingApproval, again.Status)
	require.Equal(t, a.ID, again.Approval.ID)
	require.Equal(t, "user:alice", again.Approval.RequestedBy)
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_approvals`))

	// The request is an audit entry with its actor, reason and request id.
	require.Equal(t, []auditEntry{{Action: "schema_approval.request", Actor: "user:alice", SchemaKey: ordersKey,
		RecordID: itoa(a.ID), Reason: "drop the unused region", RequestID: "req-user:alice"}}, e.auditEntries(t, "schema_approval.request"))

	// Listed as pending.
	list, err := e.st.SchemaApprovals(ctx, platformAdmin("user:carol", ""), store.ApprovalPending)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, a.ID, list[0].ID)
	list, err = e.st.SchemaApprovals(ctx, platformAdmin("user:carol", ""), store.ApprovalApproved)
	require.NoError(t, err)
	require.Empty(t, list)
}

func TestApprovalBySecondAdminApplies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	_, err := e.super.Exec(ctx, `INSERT INTO `+ordersTable+` (customer_email, region) VALUES ('a@example.com', 'eu')`)
	require.NoError(t, err)
	requested := e.request(t, dropRegion(t, v1), platformAdmin("user:alice", "")).Approval

	// Four eyes: the requester cannot approve; nothing changes.
	_, _, err = e.st.ApproveSchema(ctx, "orders", platformAdmin("user:alice", "looks fine to me"))
	require.ErrorIs(t, err, store.ErrSelfApproval)
	var ae *store.ApprovalError
	require.ErrorAs(t, err, &ae)
	require.Contains(t, ae.Message, "user:alice requested this change")
	require.True(t, e.hasRegion(t))
	require.Equal(t, "pending", scalar[string](t, e.super, `SELECT status FROM velocity.schema_approvals`))
	require.Empty(t, e.auditEntries(t, "schema_approval.approve"))

	approval, res, err := e.st.ApproveSchema(ctx, "orders", platformAdmin("user:bob", "region moved to the customers schema"))
	require.NoError(t, err)
	require.Equal(t, requested.ID, approval.ID)
	require.Equal(t, store.ApprovalApproved, approval.Status)
	require.Equal(t, "user:bob", approval.DecidedBy)
	require.NotNil(t, approval.DecidedAt)
	require.Equal(t, "region moved to the customers schema", approval.Reason)
	require.Equal(t, store.StatusApplied, res.Status)
	require.Equal(t, requested.Plan, res.Plan.SQL())
	require.False(t, res.ApprovalRequired)

	// Applied: the column is gone, the row stays, version 2 is recorded as breaking, by bob.
	require.False(t, e.hasRegion(t))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM `+ordersTable))
	require.Equal(t, 2, scalar[int](t, e.super, `SELECT current_version FROM velocity.schemas`))
	require.Equal(t, "user:bob", scalar[string](t, e.super, `SELECT applied_by FROM velocity.schema_versions WHERE version = 2`))
	require.Equal(t, requested.Breaking, scalar[[]string](t, e.super, `SELECT breaking FROM velocity.schema_versions WHERE version = 2`))

	// The approval and the apply are audit entries of bob's, with his reason.
	id := itoa(requested.ID)
	require.Equal(t, []auditEntry{{Action: "schema_approval.approve", Actor: "user:bob", SchemaKey: ordersKey, RecordID: id,
		Reason: "region moved to the customers schema", RequestID: "req-user:bob"}}, e.auditEntries(t, "schema_approval.approve"))
	applies := e.auditEntries(t, "schema.apply")
	require.Len(t, applies, 2)
	require.Equal(t, auditEntry{Action: "schema.apply", Actor: "user:bob", SchemaKey: ordersKey, RecordID: "2",
		Reason: "region moved to the customers schema", RequestID: "req-user:bob"}, applies[1])
	require.True(t, scalar[bool](t, e.super, `
		SELECT (SELECT xid FROM velocity.audit_entry WHERE action = 'schema_approval.approve')
		     = (SELECT xid FROM velocity.audit_entry WHERE action = 'schema.apply' AND record_id = '2')`), "one transaction")
	require.False(t, scalar[bool](t, e.super, `SELECT detail ? 'plan' OR detail ? 'definition' FROM velocity.audit_entry WHERE action = 'schema_approval.approve'`))

	// Nothing waits any more.
	_, _, err = e.st.ApproveSchema(ctx, "orders", platformAdmin("user:carol", ""))
	require.ErrorIs(t, err, store.ErrNoPendingApproval)
	_, _, err = e.st.ApproveSchema(ctx, "nope", platformAdmin("user:carol", ""))
	require.ErrorIs(t, err, store.ErrNoPendingApproval)
	require.ErrorAs(t, err, &ae)
	require.Equal(t, `no change of schema 'nope' is waiting for approval`, ae.Message)
}

func TestApprovalFailedApplyStaysPending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	_, err := e.super.Exec(ctx, `INSERT INTO `+ordersTable+` (customer_email, region) VALUES ('a@example.com', NULL)`)
	require.NoError(t, err)

	// Making region required is breaking, and fails on the row without one.
	v2 := next(t, v1, func(d *schemadef.Definition) { field(t, d, "region").Required = true })
	e.request(t, v2, platformAdmin("user:alice", ""))
	_, _, err = e.st.ApproveSchema(ctx, "orders", platformAdmin("user:bob", "ok"))
	require.ErrorIs(t, err, store.ErrInvalid)

	require.Equal(t, "pending", scalar[string](t, e.super, `SELECT status FROM velocity.schema_approvals`))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT current_version FROM velocity.schemas`))
	require.Empty(t, e.auditEntries(t, "schema_approval.approve"))

	// Once the data is fixed, the same request is approved and applied.
	_, err = e.super.Exec(ctx, `UPDATE `+ordersTable+` SET region = 'eu'`)
	require.NoError(t, err)
	_, res, err := e.st.ApproveSchema(ctx, "orders", platformAdmin("user:bob", "ok"))
	require.NoError(t, err)
	require.Equal(t, store.StatusApplied, res.Status)
}

func TestApprovalStaleIsSuperseded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	e.request(t, dropRegion(t, v1), platformAdmin("user:alice", ""))

	// Meanwhile another version 2, not breaking, is applied.
	other := next(t, v1, func(d *schemadef.Definition) {
		d.Spec.Fields = append(d.Spec.Fields, schemadef.Field{Name: "notes", Type: schemadef.TypeText})
	})
	e.apply(t, other)

	approval, _, err := e.st.ApproveSchema(ctx, "orders", platformAdmin("user:bob", ""))
	require.ErrorIs(t, err, store.ErrStaleApproval)
	require.Contains(t, err.Error(), "stale: re-apply")
	require.Equal(t, store.ApprovalSuperseded, approval.Status)
	require.Equal(t, "superseded", scalar[string](t, e.super, `SELECT status FROM velocity.schema_approvals`))
	require.True(t, e.hasRegion(t))
	require.Equal(t, 2, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_versions`))
	require.Len(t, e.auditEntries(t, "schema_approval.supersede"), 1)

	_, _, err = e.st.ApproveSchema(ctx, "orders", platformAdmin("user:bob", ""))
	require.ErrorIs(t, err, store.ErrNoPendingApproval)
}

func TestApprovalNewerRequestSupersedes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	first := e.request(t, dropRegion(t, v1), platformAdmin("user:alice", "")).Approval
	second := e.request(t, next(t, v1, func(d *schemadef.Definition) { field(t, d, "total").Type = schemadef.TypeInteger }),
		platformAdmin("user:bob", "")).Approval
	require.NotEqual(t, first.ID, second.ID)

	all, err := e.st.SchemaApprovals(ctx, platformAdmin("user:carol", ""), "")
	require.NoError(t, err)
	require.Len(t, all, 2)
	require.Equal(t, second.ID, all[0].ID, "newest first")
	require.Equal(t, store.ApprovalPending, all[0].Status)
	require.Equal(t, store.ApprovalSuperseded, all[1].Status)
	require.Equal(t, "user:bob", all[1].DecidedBy)
	require.Len(t, e.auditEntries(t, "schema_approval.supersede"), 1)

	// Alice may approve bob's request: it narrows total, and region stays.
	_, res, err := e.st.ApproveSchema(ctx, "orders", platformAdmin("user:alice", ""))
	require.NoError(t, err)
	require.Equal(t, store.StatusApplied, res.Status)
	require.True(t, e.hasRegion(t))
	require.Equal(t, "bigint", scalar[string](t, e.super, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'acme__shop.sales__orders'::regclass AND attname = 'total'`))
}

func TestApprovalReject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	e.request(t, dropRegion(t, v1), platformAdmin("user:alice", ""))

	// Only a platform admin may reject (the function checks the actor's roles).
	_, err := e.st.RejectSchema(ctx, "orders", actor("user:eve", "admin"))
	require.ErrorIs(t, err, store.ErrPermission)

	// The requester may withdraw their own request.
	rejected, err := e.st.RejectSchema(ctx, "orders", platformAdmin("user:alice", "wrong file"))
	require.NoError(t, err)
	require.Equal(t, store.ApprovalRejected, rejected.Status)
	require.Equal(t, "user:alice", rejected.DecidedBy)
	require.Equal(t, "wrong file", rejected.Reason)
	require.True(t, e.hasRegion(t))
	require.Equal(t, []auditEntry{{Action: "schema_approval.reject", Actor: "user:alice", SchemaKey: ordersKey,
		RecordID: itoa(rejected.ID), Reason: "wrong file", RequestID: "req-user:alice"}}, e.auditEntries(t, "schema_approval.reject"))

	_, err = e.st.RejectSchema(ctx, "orders", platformAdmin("user:alice", ""))
	require.ErrorIs(t, err, store.ErrNoPendingApproval)
	_, _, err = e.st.ApproveSchema(ctx, "orders", platformAdmin("user:bob", ""))
	require.ErrorIs(t, err, store.ErrNoPendingApproval)

	// Listing needs a platform admin too.
	_, err = e.st.SchemaApprovals(ctx, actor("user:eve", "admin"), "")
	require.ErrorIs(t, err, store.ErrPermission)
}

func TestApprovalPolicyAllowAppliesDirectly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	v2 := dropRegion(t, v1)
	v2.Spec.Policy.BreakingChanges = schemadef.BreakingAllow

	res := e.request(t, v2, platformAdmin("user:alice", ""))
	require.Equal(t, store.StatusApplied, res.Status)
	require.False(t, res.ApprovalRequired)
	require.False(t, e.hasRegion(t))
	require.Equal(t, 0, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_approvals`))
}

func TestApprovalIdempotentWithJSONDefault(t *testing.T) {
	t.Parallel()
	// The request keeps the definition as jsonb, which reorders object keys: the same file
	// sent again is still the same request, and approving it applies the same change.
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	v2 := dropRegion(t, v1)
	v2.Spec.Fields = append(v2.Spec.Fields, schemadef.Field{Name: "meta", Type: schemadef.TypeJSON,
		Default: []byte(`{"zz":1e3,"a":[true,{"y":2,"b":null}]}`)})
	require.NoError(t, v2.Validate())

	first := e.request(t, v2, platformAdmin("user:alice", "")).Approval
	again := e.request(t, v2, platformAdmin("user:alice", "")).Approval
	require.Equal(t, first.ID, again.ID)
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_approvals`))

	_, res, err := e.st.ApproveSchema(ctx, "orders", platformAdmin("user:bob", ""))
	require.NoError(t, err)
	require.Equal(t, store.StatusApplied, res.Status)
	require.False(t, e.hasRegion(t))
}

func TestApprovalOwnerOnlyFunctions(t *testing.T) {
	t.Parallel()
	// The API role cannot approve in another actor's name, forge a request, or write the
	// table: approvals happen in the owner's apply transaction only.
	ctx := context.Background()
	e := newEnv(t)
	e.apply(t, orders(t))
	e.request(t, dropRegion(t, orders(t)), platformAdmin("user:alice", ""))
	for _, sql := range []string{
		`SELECT velocity.schema_approve('orders', 'ok', 'user:bob')`,
		`SELECT velocity.schema_approval_request('orders', 'k', 1, 2, '{}', 'plan', '{}', 'user:bob')`,
		`UPDATE velocity.schema_approvals SET status = 'approved'`,
		`SELECT count(*) FROM velocity.schema_approvals`,
	} {
		err := e.st.InRequest(ctx, admin(), []store.Statement{{SQL: sql}}, drain)
		require.ErrorIs(t, err, store.ErrPermission, sql)
	}
	require.Equal(t, "pending", scalar[string](t, e.super, `SELECT status FROM velocity.schema_approvals`))
}
