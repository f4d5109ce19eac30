package sqlbuild_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

// TestHistoryReadsUseTheRecordIndex checks the plans of point-in-time and history reads on a
// record with many events in several partitions: index scans that stop at the first row, no
// sort, so their cost does not grow with the record's history.
func TestHistoryReadsUseTheRecordIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	def := schemadef.Definition{
		APIVersion: schemadef.APIVersion, Kind: schemadef.Kind, Metadata: schemadef.Metadata{Name: "deep"},
		Spec: schemadef.Spec{
			Org: "acme", App: "lab", Domain: "game", Object: "deep", Version: 1,
			Fields: []schemadef.Field{{Name: "n", Type: schemadef.TypeInteger}},
			Access: schemadef.Access{Roles: map[string][]string{"admin": {"read", "create", "history"}},
				// Reads go through the history view, which hides n from all but admin.
				Fields: map[string]schemadef.FieldAccess{"n": {Read: []string{"admin"}, Mask: schemadef.MaskRedact}}},
		},
	}
	def.Normalize()
	require.NoError(t, def.Validate())
	db := pgtest.TestDB(t)
	st, err := store.Open(ctx, db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 2)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.ApplySchema(ctx, def, false, "test")
	require.NoError(t, err)
	tbl := sqlbuild.NewTable(def.Spec)
	super := db.Super(t)

	id := "0193b6f0-0000-7000-8000-00000000abcd"
	// 20,000 events of one record over the last ~4 months (this month's partition, earlier
	// months in the default one), and 20,000 of other records.
	_, err = super.Exec(ctx, `INSERT INTO `+tbl.History()+` (event_id, xid, at, record_id, op, version, actor, image)
		SELECT nextval('velocity.event_seq'), pg_current_xact_id(), now() - (i * interval '10 minutes'), r, 'UPDATE', 20001 - i, 'test',
		       jsonb_build_object('id', r, 'n', i)
		  FROM generate_series(1, 20000) i, unnest(ARRAY[$1::uuid, gen_random_uuid()]) r`, id)
	require.NoError(t, err)
	_, err = super.Exec(ctx, `ANALYZE `+tbl.History())
	require.NoError(t, err)

	for name, s := range map[string]sqlbuild.Statement{
		"at":      tbl.HistoryAt(id, time.Now().Add(-30*24*time.Hour)),
		"raw at":  tbl.HistoryRawAt(id, time.Now().Add(-100*24*time.Hour)),
		"history": tbl.HistoryPage(id, nil, nil, nil, nil, 50),
	} {
		var plan []byte
		require.NoError(t, super.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+s.SQL, s.Args...).Scan(&plan))
		text := string(plan)
		require.NotContains(t, text, `"Node Type": "Sort"`, "%s plan sorts:\n%s", name, text)
		require.NotContains(t, text, `"Seq Scan"`, "%s plan scans:\n%s", name, text)
		require.Contains(t, text, "record_id_at_event_id_idx", "%s plan does not use the record index:\n%s", name, text)
		require.Contains(t, text, `"Node Type": "Limit"`, name)
	}
}
