package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/store"
)

// layeredOrders uses every layer: RBAC verbs (1), ABAC rules (2), a reason policy (3), a row
// filter (4), field read and write rules (5) and masks (6), on a table with forced RLS (7).
const layeredOrders = `apiVersion: velocity.dev/v1alpha1
kind: SchemaDefinition
metadata:
  name: layered-orders
spec:
  org: acme
  app: shop
  domain: sales
  object: orders
  version: 1
  fields:
    - name: customer_email
      type: string
      maxLength: 320
      filterable: true
    - name: region
      type: string
      required: true
      filterable: true
    - name: total
      type: decimal
      filterable: true
      sortable: true
    - name: note
      type: text
    - name: card
      type: string
  access:
    roles:
      viewer: [read, history]
      editor: [read, create, update, history]
      admin: [read, create, update, delete, history, restore]
    abac:
      - verbs: [update, delete]
        rule: "actor.attributes.tenure_years >= 1 || 'admin' in actor.roles"
      - verbs: [create, update]
        rule: "proposed.total <= 1000 || 'admin' in actor.roles"
    rowFilter: "record.region == actor.attributes.region || 'admin' in actor.roles"
    fields:
      customer_email:
        read: [admin, editor]
        write: [admin]
        mask: partial
      note:
        read: [admin]
      card:
        read: [admin]
        mask: full
  policy:
    requireReason: [delete]
`

// layered is the test's world: the schema, four actors and two records.
type layered struct {
	*env
	keys map[string]string // actor name -> API key
	ids  map[string]string // record name -> id
}

func newLayered(t *testing.T) *layered {
	t.Helper()
	e := newEnv(t, api.Config{})
	e.applyYAML(layeredOrders)
	l := &layered{env: e, keys: map[string]string{"admin": e.admin}, ids: map[string]string{}}
	ctx := context.Background()
	boot := store.Request{Actor: store.Actor{ID: "test", Kind: "system", Roles: []string{"platform_admin", "admin"}, Attributes: map[string]any{}}}
	for name, a := range map[string]struct {
		role  string
		scope map[string]any
	}{
		"eu_editor":  {"editor", map[string]any{"region": "eu", "tenure_years": 2}},
		"us_newbie":  {"editor", map[string]any{"region": "us", "tenure_years": 0}},
		"eu_viewer":  {"viewer", map[string]any{"region": "eu"}},
		"nowhere_ed": {"editor", map[string]any{"tenure_years": 5}}, // no region: sees no rows
		"eu_unknown": {"editor", map[string]any{"region": "eu"}},    // no tenure: the rule cannot be evaluated
	} {
		k, err := e.st.CreateAPIKey(ctx, boot, name, []string{a.role}, 0, nil)
		require.NoError(t, err)
		r := e.do("POST", "/admin/role-bindings", e.admin, map[string]any{"role": a.role, "subject_kind": "api_key", "subject": k.ID, "scope": a.scope})
		require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
		l.keys[name] = k.Secret
	}
	for name, rec := range map[string]map[string]any{
		"A": {"customer_email": "alice@example.com", "region": "eu", "total": 100, "note": "note-a", "card": "4111111111111111"},
		"B": {"customer_email": "bob@example.com", "region": "us", "total": 200, "note": "note-b", "card": "5500000000000004"},
	} {
		r := e.do("POST", ordersPath, e.admin, rec)
		require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
		l.ids[name] = r.json(t)["id"].(string)
	}
	return l
}

// euLogin makes a Postgres login with role, bound through the API with the scope region: eu,
// and connects.
func (l *layered) euLogin(prefix, role string) *pgx.Conn {
	l.t.Helper()
	ctx := context.Background()
	login := prefix + l.db.Name[len(l.db.Name)-6:]
	r := l.do("POST", "/admin/db-logins", l.admin, map[string]any{"role": role, "login": login, "password": "s3cret-pass",
		"scope": map[string]any{"region": "eu"}})
	require.Equal(l.t, http.StatusCreated, r.status, "%s", r.body)
	conn, err := pgx.Connect(ctx, l.db.LoginDSN(login, "s3cret-pass"))
	require.NoError(l.t, err)
	l.t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func (l *layered) name(id string) string {
	for n, v := range l.ids {
		if v == id {
			return n
		}
	}
	return "?" + id
}

// TestLayersRowsAndFieldsPerActor: which rows and which field values each actor sees, through
// every read route and through a direct SQL login bound the same way.
func TestLayersRowsAndFieldsPerActor(t *testing.T) {
	t.Parallel()
	l := newLayered(t)

	type view struct {
		rows  []string          // records listed
		email map[string]string // record -> customer_email as seen (absent: hidden)
		note  bool              // note is a key of the records
		card  string            // card of A as seen
	}
	cases := map[string]view{
		"admin":      {rows: []string{"A", "B"}, email: map[string]string{"A": "alice@example.com", "B": "bob@example.com"}, note: true, card: "4111111111111111"},
		"eu_editor":  {rows: []string{"A"}, email: map[string]string{"A": "alice@example.com"}, card: "****************"},
		"us_newbie":  {rows: []string{"B"}, email: map[string]string{"B": "bob@example.com"}, card: ""},
		"eu_viewer":  {rows: []string{"A"}, email: map[string]string{"A": "*************.com"}, card: "****************"},
		"nowhere_ed": {rows: nil, email: map[string]string{}},
	}
	for actor, want := range cases {
		t.Run(actor, func(t *testing.T) {
			key := l.keys[actor]
			// List and query give the same rows.
			for _, r := range []response{
				l.do("GET", ordersPath+"?limit=10", key, nil),
				l.do("POST", ordersPath+"/query", key, map[string]any{"orderBy": []any{map[string]any{"field": "total"}}}),
			} {
				require.Equal(t, http.StatusOK, r.status, "%s", r.body)
				var page struct{ Items []map[string]any }
				require.NoError(t, json.Unmarshal(r.body, &page))
				var got []string
				for _, it := range page.Items {
					got = append(got, l.name(it["id"].(string)))
					_, hasNote := it["note"]
					require.Equal(t, want.note, hasNote, "note is a key only for who may read it: %v", it)
					require.Equal(t, want.email[l.name(it["id"].(string))], it["customer_email"])
				}
				sort.Strings(got)
				require.Equal(t, want.rows, got)
			}
			for _, rec := range []string{"A", "B"} {
				r := l.do("GET", ordersPath+"/"+l.ids[rec], key, nil)
				if !slices.Contains(want.rows, rec) {
					requireProblem(t, r, http.StatusNotFound) // the row filter hides it: 404, not 403
					continue
				}
				require.Equal(t, http.StatusOK, r.status, "%s", r.body)
				got := r.json(t)
				require.Equal(t, want.email[rec], got["customer_email"])
				if rec == "A" {
					require.Equal(t, want.card, got["card"])
				}
				_, hasNote := got["note"]
				require.Equal(t, want.note, hasNote)

				// The past reads the same: history, point in time, diff, snapshot.
				h := l.do("GET", ordersPath+"/"+l.ids[rec]+"/history", key, nil)
				if actor == "eu_editor" || actor == "us_newbie" || actor == "eu_viewer" || actor == "admin" {
					require.Equal(t, http.StatusOK, h.status, "%s", h.body)
					if !want.note {
						require.NotContains(t, string(h.body), "note-", "hidden fields are not in history")
					} else {
						require.Contains(t, string(h.body), "note-")
					}
					if want.email[rec] != "" {
						require.Contains(t, string(h.body), want.email[rec])
					}
					if actor == "eu_viewer" {
						require.NotContains(t, string(h.body), "alice@", "masked in history too")
					}
				}
			}
			snap := l.do("GET", ordersPath+"/snapshot?format=ndjson", key, nil)
			require.Equal(t, http.StatusOK, snap.status, "%s", snap.body)
			lines := strings.Split(strings.TrimSpace(string(snap.body)), "\n")
			var snapRows []string
			for _, line := range lines {
				if line == "" {
					continue
				}
				var m map[string]any
				require.NoError(t, json.Unmarshal([]byte(line), &m))
				snapRows = append(snapRows, l.name(m["id"].(string)))
				_, hasNote := m["note"]
				require.Equal(t, want.note, hasNote, "snapshot: %s", line)
				require.Equal(t, want.email[l.name(m["id"].(string))], m["customer_email"], "snapshot: %s", line)
			}
			sort.Strings(snapRows)
			require.Equal(t, want.rows, snapRows)
		})
	}

	// A BI login bound to viewer with region eu sees what eu_viewer sees, in SQL.
	ctx := context.Background()
	conn := l.euLogin("bi_eu_", "viewer")
	rows, err := conn.Query(ctx, `SELECT id::text, customer_email, note, card FROM acme__shop.sales__orders__read ORDER BY total`)
	require.NoError(t, err)
	type sqlRow struct {
		id          string
		email, note *string
		card        *string
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sqlRow, error) {
		var x sqlRow
		return x, r.Scan(&x.id, &x.email, &x.note, &x.card)
	})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, l.ids["A"], got[0].id)
	require.Equal(t, "*************.com", *got[0].email)
	require.Nil(t, got[0].note, "a hidden field is NULL in SQL")
	require.Equal(t, "****************", *got[0].card)
}

// TestLayersDecideInOrder: each request is stopped by the first layer that denies, and says
// which one; the denial is audited with that layer.
func TestLayersDecideInOrder(t *testing.T) {
	t.Parallel()
	l := newLayered(t)
	A, B := ordersPath+"/"+l.ids["A"], ordersPath+"/"+l.ids["B"]
	newRec := func(region string, total int) map[string]any {
		return map[string]any{"region": region, "total": total}
	}
	cases := []struct {
		name, actor, method, path string
		body                      any
		headers                   []string
		status, layer             int
		location                  string
	}{
		{"viewer may not update", "eu_viewer", "PATCH", A, map[string]any{"total": 1}, nil, 403, 1, ""},
		{"editor may not delete", "eu_editor", "DELETE", A, nil, nil, 403, 1, ""},
		{"new editor fails the tenure rule", "us_newbie", "PATCH", B, map[string]any{"total": 5}, nil, 403, 2, ""},
		{"a rule that cannot be evaluated denies", "eu_unknown", "PATCH", A, map[string]any{"total": 5}, nil, 403, 2, ""},
		{"over the total rule", "eu_editor", "PATCH", A, map[string]any{"total": 5000}, nil, 403, 2, ""},
		{"create over the total rule", "eu_editor", "POST", ordersPath, newRec("eu", 5000), nil, 403, 2, ""},
		{"delete without a reason", "admin", "DELETE", A, nil, nil, 428, 3, "header.X-Velocity-Reason"},
		{"create outside the row filter", "eu_editor", "POST", ordersPath, newRec("us", 10), nil, 403, 4, ""},
		{"update moving a record out of the row filter", "eu_editor", "PATCH", A, map[string]any{"region": "us"}, nil, 403, 4, ""},
		{"a row outside the filter is not found", "eu_editor", "PATCH", B, map[string]any{"total": 5}, nil, 404, 0, ""},
		{"editor may not write the email", "eu_editor", "PATCH", A, map[string]any{"customer_email": "x@example.com"}, nil, 403, 5, "body.customer_email"},
		{"a create refused by layers 4 and 5 names 4", "eu_editor", "POST", ordersPath, map[string]any{"customer_email": "n@example.com", "region": "us", "total": 1}, nil, 403, 4, ""},
		{"editor may not create with an email", "eu_editor", "POST", ordersPath, map[string]any{"customer_email": "n@example.com", "region": "eu", "total": 1}, nil, 403, 5, "body.customer_email"},
		{"viewer may not filter on a masked field", "eu_viewer", "POST", ordersPath + "/query", map[string]any{"where": map[string]any{"customer_email": map[string]any{"eq": "alice@example.com"}}}, nil, 403, 5, "body.where.customer_email"},
		{"editor may not sort on a hidden field", "eu_editor", "POST", ordersPath + "/query", map[string]any{"orderBy": []any{map[string]any{"field": "note"}}}, nil, 403, 5, "body.orderBy[0].field"},
		{"allowed: editor changes the total", "eu_editor", "PATCH", A, map[string]any{"total": 150}, nil, 200, 0, ""},
		{"allowed: admin deletes with a reason", "admin", "DELETE", B, nil, []string{"X-Velocity-Reason", "duplicate"}, 204, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := l.do(c.method, c.path, l.keys[c.actor], c.body, append(c.headers, "X-Request-ID", "layers-"+strings.ReplaceAll(c.name, " ", "-"))...)
			if c.status < 400 {
				require.Equal(t, c.status, r.status, "%s", r.body)
				return
			}
			p := requireProblem(t, r, c.status)
			if c.layer == 0 {
				require.Nil(t, p["layer"])
				return
			}
			require.EqualValues(t, c.layer, p["layer"], "%s", r.body)
			if c.location != "" {
				require.Contains(t, locations(p), c.location)
			}
		})
	}

	// Every denial is in the audit log with its layer.
	require.Eventually(t, func() bool {
		var n int
		err := l.super.QueryRow(context.Background(), `SELECT count(*) FROM velocity.audit_entry
			WHERE action = 'authz' AND outcome = 'denied' AND request_id LIKE 'layers-%'`).Scan(&n)
		return err == nil && n >= 12
	}, 10*time.Second, 50*time.Millisecond)
	for _, c := range cases {
		if c.layer == 0 {
			continue
		}
		var layer int
		err := l.super.QueryRow(context.Background(), `SELECT layer FROM velocity.audit_entry
			WHERE action = 'authz' AND outcome = 'denied' AND request_id = $1`, "layers-"+strings.ReplaceAll(c.name, " ", "-")).Scan(&layer)
		require.NoError(t, err, c.name)
		require.Equal(t, c.layer, layer, c.name)
	}

	// A diff shows no change of a field the caller may not read.
	from := time.Now().UTC().Format(time.RFC3339Nano)
	require.Equal(t, http.StatusOK, l.do("PATCH", A, l.admin, map[string]any{"note": "changed", "total": 151}).status)
	changed := func(actor string) []string {
		r := l.do("GET", A+"/diff?from="+from, l.keys[actor], nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var d struct{ Changes []struct{ Field string } }
		require.NoError(t, json.Unmarshal(r.body, &d))
		var out []string
		for _, c := range d.Changes {
			out = append(out, c.Field)
		}
		return out
	}
	require.Equal(t, []string{"total", "note"}, changed("admin"))
	require.Equal(t, []string{"total"}, changed("eu_editor"))

	// Audit entries keep masked fields masked: the create of A by the admin.
	var email string
	require.NoError(t, l.super.QueryRow(context.Background(), `SELECT detail -> 'record' ->> 'customer_email' FROM velocity.audit_entry
		WHERE record_id = $1 AND action = 'record.insert'`, l.ids["A"]).Scan(&email))
	require.Equal(t, "*************.com", email)

	// The reason given is in history and in the audit entry of the delete.
	var reason string
	require.NoError(t, l.super.QueryRow(context.Background(), `SELECT reason FROM acme__shop.sales__orders__history WHERE record_id = $1 AND op = 'DELETE'`, l.ids["B"]).Scan(&reason))
	require.Equal(t, "duplicate", reason)
	require.NoError(t, l.super.QueryRow(context.Background(), `SELECT reason FROM velocity.audit_entry WHERE record_id = $1 AND action = 'record.delete'`, l.ids["B"]).Scan(&reason))
	require.Equal(t, "duplicate", reason)
}

// TestFieldWriteRuleHoldsInSQL: layer 5 is a Postgres trigger too, so a BI login with the
// editor role cannot change a field only admin may write.
func TestFieldWriteRuleHoldsInSQL(t *testing.T) {
	t.Parallel()
	l := newLayered(t)
	ctx := context.Background()
	conn := l.euLogin("bi_ed_", "editor")

	_, err := conn.Exec(ctx, `UPDATE acme__shop.sales__orders SET customer_email = 'evil@example.com' WHERE id = $1`, l.ids["A"])
	require.ErrorContains(t, err, "customer_email")
	tag, err := conn.Exec(ctx, `UPDATE acme__shop.sales__orders SET total = 7 WHERE id = $1`, l.ids["A"])
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())
	tag, err = conn.Exec(ctx, `UPDATE acme__shop.sales__orders SET total = 7 WHERE id = $1`, l.ids["B"])
	require.NoError(t, err)
	require.EqualValues(t, 0, tag.RowsAffected(), "the row filter hides B from an eu login")
	_, err = conn.Exec(ctx, `INSERT INTO acme__shop.sales__orders (customer_email, region) VALUES ('x@example.com', 'us')`)
	require.Error(t, err, "a row outside the filter cannot be written")

	var email string
	require.NoError(t, l.super.QueryRow(ctx, `SELECT customer_email FROM acme__shop.sales__orders WHERE id = $1`, l.ids["A"]).Scan(&email))
	require.Equal(t, "alice@example.com", email, "nothing changed")
}

// TestLayersEventStream: the live event stream shows an actor the events of the rows its row
// filter lets it see, with hidden fields absent and masked ones masked.
func TestLayersEventStream(t *testing.T) {
	t.Parallel()
	l := newLayered(t)
	s := l.openEvents(l.http.URL, l.keys["eu_viewer"], "?since=0")
	defer s.close()
	ev := s.event()
	require.Equal(t, l.ids["A"], ev.RecordID, "B is in region us")
	_, hasNote := ev.Record["note"]
	require.False(t, hasNote, "note is hidden from viewers: %v", ev.Record)
	require.Equal(t, "*************.com", ev.Record["customer_email"])
	require.Equal(t, "****************", ev.Record["card"])
	s.quiet(500 * time.Millisecond)
}
