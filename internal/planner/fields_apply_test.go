package planner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/planner"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

// fieldsFixture is a database with the contacts definition (every kind of field rule) applied
// and one record written by an admin.
type fieldsFixture struct {
	st    *store.Store
	db    *pgtest.DB
	def   schemadef.Definition
	names schemadef.Names
	tbl   *sqlbuild.Table
	table string // qualified
	id    string
}

const contactID = "0193b6f0-0000-7000-8000-00000000c001"

// applied applies def to a fresh database and returns a store on it.
func applied(t *testing.T, def schemadef.Definition) (*store.Store, *pgtest.DB) {
	t.Helper()
	ctx := context.Background()
	db := pgtest.TestDB(t)
	st, err := store.Open(ctx, db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 4)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	res, err := st.ApplySchema(ctx, def, false, "test")
	require.NoError(t, err)
	require.Equal(t, store.StatusApplied, res.Status)
	return st, db
}

func newFieldsFixture(t *testing.T) *fieldsFixture {
	t.Helper()
	def := contacts(t)
	st, db := applied(t, def)
	n := schemadef.NamesOf(def.Spec)
	f := &fieldsFixture{st: st, db: db, def: def, names: n, tbl: sqlbuild.NewTable(def.Spec),
		table: sqlbuild.Qualified(n.Schema, n.Table), id: contactID}
	exec(t, st, as("admin"), `INSERT INTO `+f.table+` (id, customer_email, secret_note, salary, code, tier, region)
		VALUES ($1, 'ada@example.com', 'likes tea', 1234.50, 'AB-1234', 'gold', 'eu')`, f.id)
	return f
}

func as(roles ...string) store.Request {
	return store.Request{Actor: store.Actor{ID: "user:" + fmt.Sprint(roles), Kind: "subject", Roles: roles, Attributes: map[string]any{}}}
}

// objects runs sql (one jsonb or json column) as req and decodes every row.
func objects(t *testing.T, st *store.Store, req store.Request, sql string, args ...any) []map[string]any {
	t.Helper()
	var out []map[string]any
	require.NoError(t, st.InRequest(context.Background(), req, []store.Statement{{SQL: sql, Args: args}}, func(_ int, rows pgx.Rows) error {
		for rows.Next() {
			var raw []byte
			if err := rows.Scan(&raw); err != nil {
				return err
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return rows.Err()
	}), sql)
	return out
}

// layer5 requires err to be the field-write trigger's refusal of field.
func layer5(t *testing.T, err error, field string) {
	t.Helper()
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "want a Postgres error, got %v", err)
	require.Equal(t, "42501", pgErr.Code, pgErr.Message)
	require.Equal(t, field, pgErr.ColumnName)
	require.Equal(t, "velocity:layer5", pgErr.Hint)
	require.Equal(t, "field "+field+" may not be written by your roles", pgErr.Message)
	require.ErrorIs(t, store.Interpret(err), store.ErrPermission)
}

// The masked value of ada@example.com (15 characters) and of AB-1234.
const (
	maskedEmail = "***********.com"
	maskedCode  = "*******"
)

func TestFieldRulesReadView(t *testing.T) {
	t.Parallel()
	f := newFieldsFixture(t)
	view := sqlbuild.Qualified(f.names.Schema, f.names.View)
	read := func(roles ...string) []map[string]any {
		return objects(t, f.st, as(roles...), `SELECT row_to_json(v) FROM `+view+` v`)
	}

	got := read("admin")
	require.Len(t, got, 1)
	require.Equal(t, "ada@example.com", got[0]["customer_email"])
	require.Equal(t, "likes tea", got[0]["secret_note"])
	require.EqualValues(t, 1234.5, got[0]["salary"])
	require.Equal(t, "AB-1234", got[0]["code"])

	for _, role := range []string{"viewer", "editor"} {
		got := read(role)
		require.Len(t, got, 1, role)
		want := map[string]any{"customer_email": maskedEmail, "secret_note": nil, "salary": nil, "code": maskedCode, "tier": "gold", "region": "eu"}
		for k, v := range want {
			require.Equal(t, v, got[0][k], "%s reads %s", role, k)
		}
		// The columns stay, in order: the API drops hidden keys itself.
		require.Contains(t, got[0], "secret_note")
	}
	require.Empty(t, read(), "no roles, no rows (RLS)")

	// A condition on a masked column compares the mask, not the value.
	n := objects(t, f.st, as("viewer"), `SELECT json_build_object('n', count(*)) FROM `+view+` WHERE customer_email = 'ada@example.com'`)
	require.EqualValues(t, 0, n[0]["n"])
}

func TestFieldRulesHistoryView(t *testing.T) {
	t.Parallel()
	f := newFieldsFixture(t)
	exec(t, f.st, as("admin"), `UPDATE `+f.table+` SET region = 'us' WHERE id = $1`, f.id)
	hv := sqlbuild.Qualified(f.names.Schema, f.names.HistoryView)
	images := func(roles ...string) []map[string]any {
		return objects(t, f.st, as(roles...), `SELECT image FROM `+hv+` WHERE record_id = $1 ORDER BY at, event_id`, f.id)
	}

	admin := images("admin")
	require.Len(t, admin, 2)
	require.Equal(t, "ada@example.com", admin[0]["customer_email"])
	require.Equal(t, "likes tea", admin[1]["secret_note"])
	require.EqualValues(t, 1234.5, admin[1]["salary"])

	viewer := images("viewer")
	require.Len(t, viewer, 2)
	for _, img := range viewer {
		require.Equal(t, maskedEmail, img["customer_email"])
		require.NotContains(t, img, "secret_note", "a hidden field's key is removed")
		require.Contains(t, img, "salary")
		require.Nil(t, img["salary"], "redact is null")
		require.Equal(t, maskedCode, img["code"])
		require.Equal(t, "gold", img["tier"])
	}
	require.Equal(t, "us", viewer[1]["region"])
	require.Empty(t, images("guest"), "no history verb, no rows (RLS on the history table)")

	// The API's reads go through the view: the point-in-time record of a viewer is masked.
	var record []byte
	st := f.tbl.HistoryAt(f.id, time.Now().Add(time.Hour))
	require.NoError(t, f.st.InRequest(context.Background(), as("viewer"), []store.Statement{{SQL: st.SQL, Args: st.Args}}, func(_ int, rows pgx.Rows) error {
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				return err
			}
			record, err = json.Marshal(vals[7])
			if err != nil {
				return err
			}
		}
		return rows.Err()
	}))
	var rec map[string]any
	require.NoError(t, json.Unmarshal(record, &rec))
	require.Equal(t, maskedEmail, rec["customer_email"])
	require.Nil(t, rec["secret_note"])
	require.Equal(t, "us", rec["region"])
}

// A restore by an actor who sees a field masked writes back its value, not the mask: it reads
// the history table, not the view.
func TestFieldRulesRestoreWritesValues(t *testing.T) {
	t.Parallel()
	f := newFieldsFixture(t)
	ctx := context.Background()
	exec(t, f.st, as("admin"), `UPDATE `+f.table+` SET code = 'ZZ-9999' WHERE id = $1`, f.id)

	var at time.Time
	var eventID int64
	var raw map[string]any
	first := f.tbl.HistoryRawAt(f.id, time.Now().Add(time.Hour))
	first.SQL = `SELECT h.at, h.event_id, h.image FROM ` + f.tbl.HistoryView() + ` h WHERE h.record_id = $1::uuid AND h.version = 1`
	first.Args = []any{f.id}
	require.NoError(t, f.st.InRequest(ctx, as("editor"), []store.Statement{{SQL: first.SQL, Args: first.Args}}, func(_ int, rows pgx.Rows) error {
		for rows.Next() {
			if err := rows.Scan(&at, &eventID, &raw); err != nil {
				return err
			}
		}
		return rows.Err()
	}))
	require.Equal(t, maskedCode, raw["code"], "the editor sees the old code masked")

	restore := f.tbl.RestoreUpdate(f.id, at, eventID, 2, []string{"code"})
	require.NoError(t, f.st.InRequest(ctx, as("editor"), []store.Statement{{SQL: sqlbuild.SetRestore().SQL}, {SQL: restore.SQL, Args: restore.Args}},
		func(int, pgx.Rows) error { return nil }))
	var code string
	require.NoError(t, f.db.Super(t).QueryRow(ctx, `SELECT code FROM `+f.table+` WHERE id = $1`, f.id).Scan(&code))
	require.Equal(t, "AB-1234", code)
}

func TestFieldRulesWrite(t *testing.T) {
	t.Parallel()
	f := newFieldsFixture(t)
	ctx := context.Background()
	write := func(req store.Request, sql string, args ...any) error {
		return f.st.InRequest(ctx, req, []store.Statement{{SQL: sql, Args: args}}, func(int, pgx.Rows) error { return nil })
	}
	update := `UPDATE ` + f.table + ` SET %s WHERE id = $1`

	layer5(t, write(as("editor"), fmt.Sprintf(update, "customer_email = 'eve@example.com'"), f.id), "customer_email")
	layer5(t, write(as("editor"), fmt.Sprintf(update, "customer_email = NULL"), f.id), "customer_email")
	layer5(t, write(as("editor"), fmt.Sprintf(update, "tier = 'basic'"), f.id), "tier")
	// The field names the first refused field in definition order.
	layer5(t, write(as("editor"), fmt.Sprintf(update, "tier = 'basic', customer_email = 'x@example.com'"), f.id), "customer_email")
	// A restore is a write like any other.
	err := f.st.InRequest(ctx, as("editor"), []store.Statement{{SQL: sqlbuild.SetRestore().SQL}, {SQL: fmt.Sprintf(update, "customer_email = 'r@example.com'"), Args: []any{f.id}}},
		func(int, pgx.Rows) error { return nil })
	layer5(t, err, "customer_email")

	// Other fields, and the restricted ones left as they are, are the editor's to write.
	require.NoError(t, write(as("editor"), fmt.Sprintf(update, "region = 'us', code = 'CD-5678'"), f.id))
	require.NoError(t, write(as("editor"), fmt.Sprintf(update, "customer_email = 'ada@example.com', tier = 'gold', region = 'eu'"), f.id), "setting the same value changes nothing")
	// An insert that leaves them at their defaults (NULL; tier's 'basic') is allowed.
	require.NoError(t, write(as("editor"), `INSERT INTO `+f.table+` (region) VALUES ('eu')`))
	require.NoError(t, write(as("editor"), `INSERT INTO `+f.table+` (region, tier) VALUES ('eu', 'basic')`))
	layer5(t, write(as("editor"), `INSERT INTO `+f.table+` (region, tier) VALUES ('eu', 'gold')`), "tier")
	layer5(t, write(as("editor"), `INSERT INTO `+f.table+` (customer_email) VALUES ('new@example.com')`), "customer_email")

	// Admins may write them.
	require.NoError(t, write(as("admin"), fmt.Sprintf(update, "customer_email = 'eve@example.com', tier = 'basic'"), f.id))
	require.NoError(t, write(as("editor", "admin"), `INSERT INTO `+f.table+` (customer_email, tier) VALUES ('new@example.com', 'gold')`))

	// A session that bypasses RLS (a superuser) bypasses the field rules with it.
	super := f.db.Super(t)
	_, err = super.Exec(ctx, fmt.Sprintf(update, "customer_email = 'root@example.com'"), f.id)
	require.NoError(t, err)

	var email, tier, region, code string
	require.NoError(t, super.QueryRow(ctx, `SELECT customer_email, tier, region, code FROM `+f.table+` WHERE id = $1`, f.id).Scan(&email, &tier, &region, &code))
	require.Equal(t, []string{"root@example.com", "basic", "eu", "CD-5678"}, []string{email, tier, region, code})
}

// Audit entries show what an actor outside the read list would see of a masked field.
func TestFieldRulesAuditEntries(t *testing.T) {
	t.Parallel()
	f := newFieldsFixture(t)
	var detail map[string]any
	require.NoError(t, f.db.Super(t).QueryRow(context.Background(),
		`SELECT detail FROM velocity.audit_entry WHERE record_id = $1 AND action = 'record.insert'`, f.id).Scan(&detail))
	record := detail["record"].(map[string]any)
	require.Equal(t, maskedEmail, record["customer_email"])
	require.Equal(t, maskedCode, record["code"])
	require.Contains(t, record, "salary")
	require.Nil(t, record["salary"], "redact")
	require.Equal(t, "likes tea", record["secret_note"], "a hidden field without a mask is not masked in audit entries")
	require.Equal(t, "gold", record["tier"])

	// History keeps the values.
	var image map[string]any
	require.NoError(t, f.db.Super(t).QueryRow(context.Background(),
		`SELECT image FROM `+sqlbuild.Qualified(f.names.Schema, f.names.History)+` WHERE record_id = $1`, f.id).Scan(&image))
	require.Equal(t, "ada@example.com", image["customer_email"])
}

// BI logins read and write under the same field rules: through the views only, and the
// field-write trigger refuses them as it refuses the API.
func TestFieldRulesForDBLogins(t *testing.T) {
	t.Parallel()
	f := newFieldsFixture(t)
	ctx := context.Background()
	suffix := f.db.Name[len(f.db.Name)-6:]
	platform := store.Request{Actor: store.Actor{ID: "user:root", Kind: "subject", Roles: []string{"platform_admin"}, Attributes: map[string]any{}}}
	login := func(role string) *pgx.Conn {
		name := "bi_" + role + "_" + suffix
		pw := "s3cret-pass"
		_, err := f.st.GrantDBLogin(ctx, platform, role, name, &pw, nil)
		require.NoError(t, err)
		conn, err := pgx.Connect(ctx, f.db.LoginDSN(name, pw))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		return conn
	}
	view := sqlbuild.Qualified(f.names.Schema, f.names.View)
	hist := sqlbuild.Qualified(f.names.Schema, f.names.History)
	hv := sqlbuild.Qualified(f.names.Schema, f.names.HistoryView)

	viewer := login("viewer")
	var email string
	var note *string
	require.NoError(t, viewer.QueryRow(ctx, `SELECT customer_email, secret_note FROM `+view).Scan(&email, &note))
	require.Equal(t, maskedEmail, email)
	require.Nil(t, note)
	var image map[string]any
	require.NoError(t, viewer.QueryRow(ctx, `SELECT image FROM `+hv+` WHERE record_id = $1`, f.id).Scan(&image))
	require.Equal(t, maskedEmail, image["customer_email"])
	require.NotContains(t, image, "secret_note")
	for _, sql := range []string{`SELECT image FROM ` + hist, `SELECT customer_email FROM ` + f.table} {
		_, err := viewer.Exec(ctx, sql)
		require.ErrorContains(t, err, "permission denied", sql)
	}

	editor := login("editor")
	require.NoError(t, editor.QueryRow(ctx, `SELECT customer_email FROM `+view).Scan(&email))
	require.Equal(t, maskedEmail, email)
	// The editor may filter its writes on the columns it may read, not on the others.
	_, err := editor.Exec(ctx, `SELECT customer_email FROM `+f.table)
	require.ErrorContains(t, err, "permission denied")
	_, err = editor.Exec(ctx, `UPDATE `+f.table+` SET region = 'us' WHERE secret_note = 'likes tea'`)
	require.ErrorContains(t, err, "permission denied")
	tag, err := editor.Exec(ctx, `UPDATE `+f.table+` SET region = 'us' WHERE id = $1 AND tier = 'gold'`, f.id)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())
	_, err = editor.Exec(ctx, `UPDATE `+f.table+` SET customer_email = 'bi@example.com' WHERE id = $1`, f.id)
	layer5(t, err, "customer_email")
	_, err = editor.Exec(ctx, `INSERT INTO `+f.table+` (region) VALUES ('eu')`)
	require.NoError(t, err, "defaults are no write of a restricted field")
	_, err = editor.Exec(ctx, `INSERT INTO `+f.table+` (tier) VALUES ('gold')`)
	layer5(t, err, "tier")
	// Setting velocity.actor gains a BI login nothing.
	_, err = editor.Exec(ctx, `SELECT set_config('velocity.actor_roles', '{admin}', false)`)
	require.NoError(t, err)
	_, err = editor.Exec(ctx, `UPDATE `+f.table+` SET customer_email = 'bi@example.com' WHERE id = $1`, f.id)
	layer5(t, err, "customer_email")
	require.NoError(t, editor.QueryRow(ctx, `SELECT customer_email FROM `+view+` WHERE id = $1`, f.id).Scan(&email))
	require.Equal(t, maskedEmail, email)
}

func TestMaskFunctions(t *testing.T) {
	t.Parallel()
	db := pgtest.TestDB(t)
	super := db.Super(t)
	tests := []struct {
		in            *string
		partial, full *string
	}{
		{ptr(""), ptr(""), ptr("")},
		{ptr("a"), ptr("*"), ptr("*")},
		{ptr("abcd"), ptr("****"), ptr("****")}, // 4 characters: never shown whole
		{ptr("abcde"), ptr("*bcde"), ptr("*****")},
		{ptr("4111 1111 1111 1234"), ptr("***************1234"), ptr("*******************")},
		{ptr("Zürich"), ptr("**rich"), ptr("******")}, // characters, not bytes
		{ptr("日本語の文字"), ptr("**語の文字"), ptr("******")}, // multibyte kept whole
		{ptr("ab\ncd€"), ptr("**\ncd€"), ptr("******")},
		{nil, nil, nil},
	}
	for _, tt := range tests {
		var partial, full *string
		require.NoError(t, super.QueryRow(context.Background(), `SELECT velocity.mask_partial($1), velocity.mask_full($1)`, tt.in).Scan(&partial, &full))
		require.Equal(t, tt.partial, partial, "mask_partial(%q) got %q, want %q", deref(tt.in), deref(partial), deref(tt.partial))
		require.Equal(t, tt.full, full, "mask_full(%q) got %q, want %q", deref(tt.in), deref(full), deref(tt.full))
	}
	// Every login may call them: the views call them as the reader.
	var ok bool
	require.NoError(t, super.QueryRow(context.Background(), `SELECT has_function_privilege('public', 'velocity.mask_partial(text)', 'EXECUTE')
		AND has_function_privilege('public', 'velocity.mask_full(text)', 'EXECUTE')`).Scan(&ok))
	require.True(t, ok)
}

// deref shows a nullable string in a message.
func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// The history writer masks audit entries with the mask functions, which the planner inlines
// and so parses with the writer's caller's search_path; the field-write trigger runs as the
// writer too. Shadows of what they call must reach neither.
func TestFieldRulesIgnoreTheCallersSearchPath(t *testing.T) {
	t.Parallel()
	f := newFieldsFixture(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.db.SuperuserDSN())
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, sql := range []string{
		`CREATE SCHEMA evil`,
		`CREATE TABLE evil.calls (fn text)`,
		`GRANT USAGE ON SCHEMA evil TO PUBLIC`,
		`GRANT INSERT ON evil.calls TO PUBLIC`,
		`CREATE FUNCTION evil.spy(fn text) RETURNS boolean LANGUAGE sql AS $$ INSERT INTO evil.calls VALUES (fn) RETURNING true $$`,
		`CREATE FUNCTION evil.repeat(text, integer) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('repeat') THEN 'x' END $$`,
		`CREATE FUNCTION evil.right(text, integer) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('right') THEN 'x' END $$`,
		`CREATE FUNCTION evil.char_length(text) RETURNS integer LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('char_length') THEN 1 END $$`,
		`CREATE FUNCTION evil.row_security_active(oid) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.spy('row_security_active') $$`,
		`CREATE FUNCTION evil.ine(integer, integer) RETURNS integer LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('-') THEN 0 END $$`,
		`CREATE OPERATOR evil.- (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.ine)`,
		`CREATE FUNCTION evil.tne(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.spy('<>') AND false $$`,
		`CREATE OPERATOR evil.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.tne)`,
		`CREATE FUNCTION evil.overlap(text[], text[]) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.spy('&&') $$`,
		`CREATE OPERATOR evil.&& (LEFTARG = text[], RIGHTARG = text[], FUNCTION = evil.overlap)`,
		`CREATE FUNCTION evil.field(jsonb, text) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('->>') THEN 'x' END $$`,
		`CREATE OPERATOR evil.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = evil.field)`,
		`CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (evil.spy('pg_temp.text'))`,
		`SET search_path = evil, pg_catalog`,
	} {
		_, err := conn.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	// The shadows work for an ordinary query in this session...
	var shadowed string
	require.NoError(t, conn.QueryRow(ctx, `SELECT right('abc', 1) || repeat('*', 2)`).Scan(&shadowed))
	var calls int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM evil.calls`).Scan(&calls))
	require.Equal(t, 2, calls, "the session's own query does call the shadows")
	_, err = conn.Exec(ctx, `TRUNCATE evil.calls`)
	require.NoError(t, err)

	// ...but not inside the writer or the trigger.
	var id string
	require.NoError(t, conn.QueryRow(ctx, `INSERT INTO `+f.table+` (customer_email, code, tier) VALUES ('eve@example.com', 'XY-42', 'gold') RETURNING id::pg_catalog.text`).Scan(&id))
	_, err = conn.Exec(ctx, `UPDATE `+f.table+` SET customer_email = 'mallory@example.com' WHERE id = $1`, id)
	require.NoError(t, err)
	var spied []string
	require.NoError(t, conn.QueryRow(ctx, `SELECT coalesce(pg_catalog.array_agg(fn), '{}') FROM evil.calls`).Scan(&spied))
	require.Empty(t, spied, "the writer or the field-write trigger called a shadow")

	var detail map[string]any
	require.NoError(t, f.db.Super(t).QueryRow(ctx, `SELECT detail FROM velocity.audit_entry WHERE record_id = $1 ORDER BY id DESC LIMIT 1`, id).Scan(&detail))
	record := detail["record"].(map[string]any)
	require.Equal(t, "***************.com", record["customer_email"])
	require.Equal(t, "*****", record["code"])
}

// Refresh brings a table applied before the field rules (plain views, history readable by
// group roles and its RLS not forced, no field-write trigger) up to date, and can run again.
func TestRefreshUpgradesAnOlderTable(t *testing.T) {
	t.Parallel()
	f := newFieldsFixture(t)
	ctx := context.Background()
	super := f.db.Super(t)
	hist := sqlbuild.Qualified(f.names.Schema, f.names.History)
	view := sqlbuild.Qualified(f.names.Schema, f.names.View)
	for _, sql := range []string{
		`DROP VIEW ` + sqlbuild.Qualified(f.names.Schema, f.names.HistoryView),
		`ALTER TABLE ` + hist + ` NO FORCE ROW LEVEL SECURITY`,
		`DROP POLICY velocity_history_write ON ` + hist,
		`DROP TRIGGER velocity_history_guard_statement ON ` + hist,
		`DROP TRIGGER velocity_field_write ON ` + f.table,
		`DROP FUNCTION ` + sqlbuild.Qualified(f.names.Schema, f.names.FieldWriter) + `()`,
		`CREATE OR REPLACE VIEW ` + view + ` AS SELECT * FROM ` + f.table,
		`GRANT SELECT ON ` + hist + ` TO velocity_r_viewer`,
		`GRANT SELECT ON ` + f.table + ` TO velocity_r_editor`,
	} {
		_, err := super.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	require.NoError(t, f.st.InRequest(ctx, as("editor"), []store.Statement{{SQL: `UPDATE ` + f.table + ` SET customer_email = 'old@example.com'`}},
		func(int, pgx.Rows) error { return nil }), "the older table has no field-write trigger")

	plan := planner.Refresh(f.def)
	for range 2 {
		require.NoError(t, pgx.BeginFunc(ctx, f.st.Owner, func(tx pgx.Tx) error {
			for _, s := range plan.Steps {
				if _, err := tx.Exec(ctx, s.SQL); err != nil {
					return fmt.Errorf("%s: %w", s.SQL, err)
				}
			}
			return nil
		}))
	}

	got := objects(t, f.st, as("viewer"), `SELECT row_to_json(v) FROM `+view+` v`)
	require.Equal(t, "***********.com", got[0]["customer_email"])
	err := f.st.InRequest(ctx, as("editor"), []store.Statement{{SQL: `UPDATE ` + f.table + ` SET customer_email = 'new@example.com'`}},
		func(int, pgx.Rows) error { return nil })
	layer5(t, err, "customer_email")
	var histGrant, colGrant, forced bool
	require.NoError(t, super.QueryRow(ctx, `SELECT has_table_privilege('velocity_r_viewer', $1, 'SELECT'),
		has_column_privilege('velocity_r_editor', $2, 'customer_email', 'SELECT'),
		(SELECT relforcerowsecurity FROM pg_class WHERE oid = $1::regclass)`, hist, f.table).Scan(&histGrant, &colGrant, &forced))
	require.False(t, histGrant, "group roles read history through the view only")
	require.False(t, colGrant, "the editor may not read customer_email from the table")
	require.True(t, forced)
	images := objects(t, f.st, as("viewer"), `SELECT image FROM `+sqlbuild.Qualified(f.names.Schema, f.names.HistoryView)+` WHERE record_id = $1`, f.id)
	require.NotEmpty(t, images)
	require.NotContains(t, images[0], "secret_note")
	// History is still written, by the writer's own policy.
	exec(t, f.st, as("admin"), `UPDATE `+f.table+` SET region = 'us' WHERE id = $1`, f.id)
	require.Len(t, objects(t, f.st, as("admin"), `SELECT image FROM `+sqlbuild.Qualified(f.names.Schema, f.names.HistoryView)+` WHERE record_id = $1`, f.id), 3)
}

// The field-write trigger compares values of every field type with pg_catalog's operators,
// against the column default on insert. plpgsql compiles a statement when it first runs, so
// each one runs here.
func TestFieldWriteEveryType(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type typed struct {
		typ         schemadef.FieldType
		dflt, other string // JSON default ("" for none), SQL literal of another value
		values      []string
	}
	types := []typed{
		{schemadef.TypeString, `"x"`, `'y'`, nil},
		{schemadef.TypeText, ``, `'y'`, nil},
		{schemadef.TypeInteger, `1e3`, `7`, nil},
		{schemadef.TypeNumber, `1.5`, `2.5`, nil},
		{schemadef.TypeDecimal, `"2.50"`, `2.51`, nil},
		{schemadef.TypeBoolean, `true`, `false`, nil},
		{schemadef.TypeTimestamp, `"2026-01-01T00:00:00Z"`, `'2026-01-02T00:00:00Z'`, nil},
		{schemadef.TypeDate, `"2026-01-01"`, `'2026-01-02'`, nil},
		{schemadef.TypeUUID, `"0193b6f0-0000-7000-8000-000000000001"`, `'0193b6f0-0000-7000-8000-000000000002'`, nil},
		{schemadef.TypeJSON, `{"a": [1, 2]}`, `'{"a": [2, 1]}'`, nil},
		{schemadef.TypeEnum, `"a"`, `'b'`, []string{"a", "b"}},
	}
	def := schemadef.Definition{
		APIVersion: schemadef.APIVersion, Kind: schemadef.Kind, Metadata: schemadef.Metadata{Name: "typed"},
		Spec: schemadef.Spec{
			Org: "acme", App: "lab", Domain: "test", Object: "typed", Version: 1,
			Access: schemadef.Access{
				Roles:  map[string][]string{"admin": {"read", "create", "update"}, "editor": {"read", "create", "update"}},
				Fields: map[string]schemadef.FieldAccess{},
			},
		},
	}
	for _, ty := range types {
		f := schemadef.Field{Name: "f_" + string(ty.typ), Type: ty.typ, Values: ty.values}
		if ty.dflt != "" {
			f.Default = json.RawMessage(ty.dflt)
		}
		def.Spec.Fields = append(def.Spec.Fields, f)
		def.Spec.Access.Fields[f.Name] = schemadef.FieldAccess{Write: []string{"admin"}}
	}
	def.Normalize()
	require.NoError(t, def.Validate())
	st, _ := applied(t, def)
	n := schemadef.NamesOf(def.Spec)
	table := sqlbuild.Qualified(n.Schema, n.Table)
	write := func(req store.Request, sql string) error {
		return st.InRequest(ctx, req, []store.Statement{{SQL: sql}}, func(int, pgx.Rows) error { return nil })
	}

	require.NoError(t, write(as("editor"), `INSERT INTO `+table+` DEFAULT VALUES`), "every field at its default")
	for _, ty := range types {
		col := sqlbuild.Ident("f_" + string(ty.typ))
		layer5(t, write(as("editor"), `INSERT INTO `+table+` (`+col+`) VALUES (`+ty.other+`)`), "f_"+string(ty.typ))
		layer5(t, write(as("editor"), `UPDATE `+table+` SET `+col+` = `+ty.other), "f_"+string(ty.typ))
		require.NoError(t, write(as("editor"), `UPDATE `+table+` SET `+col+` = `+col), "%s: no change", ty.typ)
		require.NoError(t, write(as("admin"), `UPDATE `+table+` SET `+col+` = `+ty.other), ty.typ)
		// From a value to null is a change too.
		layer5(t, write(as("editor"), `UPDATE `+table+` SET `+col+` = NULL`), "f_"+string(ty.typ))
	}
}
