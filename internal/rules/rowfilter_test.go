package rules_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/rules"
	"github.com/velocitydev/velocity/internal/schemadef"
)

func rowFilter(filter string) schemadef.Spec {
	s := orders()
	s.Access.RowFilter = filter
	return s
}

func TestRowFilterSQL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		filter, main, history string
	}{
		{"record.region == actor.attributes.region || 'admin' in actor.roles",
			`(("region" = (SELECT velocity.attribute_text(a.v, 'region') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)) OR (SELECT 'admin' = ANY (velocity.current_actor_roles())))`,
			`(((image ->> 'region') = (SELECT velocity.attribute_text(a.v, 'region') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)) OR (SELECT 'admin' = ANY (velocity.current_actor_roles())))`},
		{"actor.attributes['region'] == record.region",
			`((SELECT velocity.attribute_text(a.v, 'region') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a) = "region")`,
			`((SELECT velocity.attribute_text(a.v, 'region') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a) = (image ->> 'region'))`},
		{"record.total >= actor.attributes.min_total && record.qty < 10",
			`(("total" >= (SELECT velocity.attribute_numeric(a.v, 'min_total') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)) AND ("qty" < 10))`,
			`((((image ->> 'total')::numeric) >= (SELECT velocity.attribute_numeric(a.v, 'min_total') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)) AND (((image ->> 'qty')::bigint) < 10))`},
		{"record.weight > 1.5 && record.qty != -2 && record.total <= 100.0",
			`((("weight" > 1.5) AND ("qty" <> -2)) AND ("total" <= 100.0))`,
			`(((((image ->> 'weight')::numeric) > 1.5) AND (((image ->> 'qty')::bigint) <> -2)) AND (((image ->> 'total')::numeric) <= 100.0))`},
		{"record.gift == actor.attributes.gifts_only || record.gift",
			`(("gift" = (SELECT velocity.attribute_bool(a.v, 'gifts_only') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)) OR "gift")`,
			`((((image ->> 'gift')::boolean) = (SELECT velocity.attribute_bool(a.v, 'gifts_only') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)) OR ((image ->> 'gift')::boolean))`},
		{"actor.attributes.can_see_all && true",
			`((SELECT velocity.attribute_bool(a.v, 'can_see_all') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a) AND TRUE)`,
			`((SELECT velocity.attribute_bool(a.v, 'can_see_all') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a) AND TRUE)`},
		{"record.status in ['paid', 'shipped']",
			`("status" = ANY (ARRAY['paid', 'shipped']::text[]))`,
			`((image ->> 'status') = ANY (ARRAY['paid', 'shipped']::text[]))`},
		{"record.qty in [1, 2] || record.qty in [1, 2.5] || record.weight in [1.0, 2.5]",
			`((("qty" = ANY (ARRAY[1, 2]::bigint[])) OR ("qty" = ANY (ARRAY[1, 2.5]::numeric[]))) OR ("weight" = ANY (ARRAY[1.0, 2.5]::double precision[])))`,
			`(((((image ->> 'qty')::bigint) = ANY (ARRAY[1, 2]::bigint[])) OR (((image ->> 'qty')::bigint) = ANY (ARRAY[1, 2.5]::numeric[]))) OR (((image ->> 'weight')::numeric) = ANY (ARRAY[1.0, 2.5]::numeric[])))`},
		{"actor.attributes.level in [1, 2] && actor.kind in ['user'] && record.region in []",
			`((((SELECT velocity.attribute_numeric(a.v, 'level') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a) = ANY (ARRAY[1, 2]::numeric[])) AND ((SELECT velocity.current_actor_kind()) = ANY (ARRAY['user']::text[]))) AND FALSE)`,
			`((((SELECT velocity.attribute_numeric(a.v, 'level') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a) = ANY (ARRAY[1, 2]::numeric[])) AND ((SELECT velocity.current_actor_kind()) = ANY (ARRAY['user']::text[]))) AND FALSE)`},
		{"record.region in actor.attributes.regions",
			`("region" = ANY ((SELECT velocity.attribute_texts(a.v, 'regions') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)::text[]))`,
			`((image ->> 'region') = ANY ((SELECT velocity.attribute_texts(a.v, 'regions') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)::text[]))`},
		{"record.created_by == actor.id || record.region in actor.roles",
			`(("created_by" = (SELECT velocity.current_actor_id())) OR ("region" = ANY ((SELECT velocity.current_actor_roles())::text[])))`,
			`(((image ->> 'created_by') = (SELECT velocity.current_actor_id())) OR ((image ->> 'region') = ANY ((SELECT velocity.current_actor_roles())::text[])))`},
		{"record.owner == actor.id && record.id != '' && record.version > 1",
			`((("owner"::text = (SELECT velocity.current_actor_id())) AND ("id"::text <> '')) AND ("version" > 1))`,
			`((((image ->> 'owner') = (SELECT velocity.current_actor_id())) AND ((image ->> 'id') <> '')) AND (((image ->> 'version')::bigint) > 1))`},
		{"!(record.region == 'eu') && record.region != null",
			`((NOT coalesce(("region" = 'eu'), false)) AND ("region" IS NOT NULL))`,
			`((NOT coalesce(((image ->> 'region') = 'eu'), false)) AND ((image ->> 'region') IS NOT NULL))`},
		{"null == record.total || actor.attributes.region == null",
			`(("total" IS NULL) OR ((SELECT velocity.attribute(a.v, 'region') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a) IS NULL))`,
			`((((image ->> 'total')::numeric) IS NULL) OR ((SELECT velocity.attribute(a.v, 'region') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a) IS NULL))`},
		{"actor.attributes.a == actor.attributes.b",
			`((SELECT velocity.attribute_text(a.v, 'a') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a) = (SELECT velocity.attribute_text(a.v, 'b') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a))`,
			`((SELECT velocity.attribute_text(a.v, 'a') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a) = (SELECT velocity.attribute_text(a.v, 'b') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a))`},
		{"record.region < 'm' && record.status >= actor.attributes.min_status",
			`(("region" COLLATE "C" < 'm') AND ("status" COLLATE "C" >= (SELECT velocity.attribute_text(a.v, 'min_status') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)))`,
			`(((image ->> 'region') COLLATE "C" < 'm') AND ((image ->> 'status') COLLATE "C" >= (SELECT velocity.attribute_text(a.v, 'min_status') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)))`},
		{"(record.region == 'eu') == actor.attributes.eu_only",
			`(("region" = 'eu') = (SELECT velocity.attribute_bool(a.v, 'eu_only') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a))`,
			`(((image ->> 'region') = 'eu') = (SELECT velocity.attribute_bool(a.v, 'eu_only') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a))`},
		{"true", `TRUE`, `TRUE`},
	}
	for _, c := range cases {
		for target, want := range map[rules.Target]string{rules.MainTable: c.main, rules.HistoryImage: c.history} {
			got, errs := rules.RowFilterSQL(rowFilter(c.filter), target)
			require.Empty(t, errs, "RowFilterSQL(%q)", c.filter)
			require.Equal(t, want, got, "RowFilterSQL(%q, %d) got %q, want %q", c.filter, target, got, want)
		}
		require.Empty(t, rules.ValidateRowFilter(rowFilter(c.filter)))
	}
}

func TestRowFilterSQLNone(t *testing.T) {
	t.Parallel()
	got, errs := rules.RowFilterSQL(orders(), rules.MainTable)
	require.Empty(t, errs)
	require.Empty(t, got)
	require.Empty(t, rules.ValidateRowFilter(orders()))
}

// Strings reach SQL only as quoted literals, whatever they hold; identifiers only after the
// type-checker found them in the schema.
func TestRowFilterSQLInjection(t *testing.T) {
	t.Parallel()
	got, errs := rules.RowFilterSQL(rowFilter(`record.region == "eu'); DROP TABLE x; --" || actor.attributes["a'b\"c"] == 'x\\'`), rules.MainTable)
	require.Empty(t, errs)
	require.Equal(t, `(("region" = 'eu''); DROP TABLE x; --') OR ((SELECT velocity.attribute_text(a.v, 'a''b"c') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a) = 'x\'))`, got)

	_, errs = rules.RowFilterSQL(rowFilter(`record["region\"; DROP TABLE x; --"] == 'eu'`), rules.MainTable)
	require.NotEmpty(t, errs)
}

func TestRowFilterErrors(t *testing.T) {
	t.Parallel()
	cases := []struct{ filter, want string }{
		{"size(record.region) > 2", `"size" is not supported in row filters ` + supportedNote},
		{"record.region.startsWith('e')", `"startsWith" is not supported in row filters ` + supportedNote},
		{"record.region.matches('^e')", `"matches" is not supported in row filters ` + supportedNote},
		{"actor.roles.exists(r, r == 'admin')", `"exists" is not supported in row filters ` + supportedNote},
		{"[1, 2].all(x, x > 0)", `"all" is not supported in row filters ` + supportedNote},
		{"has(record.region)", `"has" is not supported in row filters ` + supportedNote},
		{"record.qty + 1 > 2", `the operator "+" is not supported in row filters ` + supportedNote},
		{"(record.qty > 1 ? record.region : 'eu') == 'eu'", `the conditional operator "?:" is not supported in row filters ` + supportedNote},
		{"request.ip == '10.0.0.1'", `request is not supported in row filters ` + supportedNote},
		{"proposed.region == 'eu'", `proposed is not supported in row filters ` + supportedNote},
		{"record.shipped_at < request.time", `record.shipped_at: timestamp fields are not supported in row filters ` + supportedNote},
		{"record.created_at != null", `record.created_at: timestamp fields are not supported in row filters ` + supportedNote},
		{"record.due == '2026-01-01'", `record.due: date fields are not supported in row filters ` + supportedNote},
		{"record.meta.channel == 'web'", `record.meta: json fields are not supported in row filters ` + supportedNote},
		{"record == null", "record can only be used to name a field, as record.<field>"},
		{"actor.attributes == {}", "actor.attributes must name an attribute, as actor.attributes.<name>"},
		{"actor.roles == ['admin']", "actor.roles cannot be compared with ==: use it on the right of in"},
		{"record.region in ['eu', 1]", "the list's elements (text) cannot be compared with an integer (an integer) using in"},
		{"record.region in [record.status]", "a list in a row filter may hold only string, number and boolean literals"},
		{"record.qty in actor.attributes.levels", "record.qty (an integer) cannot be looked up in actor.attributes.levels, which holds text"},
		{"actor.attributes.a.b == 'x'", `selecting a field of actor.attributes.a is not supported in row filters ` + supportedNote},
		{"record.region", "must be a boolean expression, not wrapper(string)"},
		{"actor.attributes.can_see_all", "must be a boolean expression, not dyn"},
		{"record.nope == 1", "1:7: undefined field 'nope'"},
		{"record.region == ", "1:18: Syntax error: ..."},
		{strings.Repeat("x", rules.MaxRuleBytes+1), "is 10241 bytes, over the limit of 10240"},
	}
	for _, c := range cases {
		errs := rules.ValidateRowFilter(rowFilter(c.filter))
		require.Len(t, errs, 1, "ValidateRowFilter(%q) got %v", c.filter, errs)
		require.Equal(t, "spec.access.rowFilter", errs[0].Path)
		if prefix, ok := strings.CutSuffix(c.want, "..."); ok {
			require.True(t, strings.HasPrefix(errs[0].Message, prefix), "ValidateRowFilter(%q) got %q, want %q", c.filter, errs[0].Message, c.want)
		} else {
			require.Equal(t, c.want, errs[0].Message, "ValidateRowFilter(%q)", c.filter)
		}
		_, sqlErrs := rules.RowFilterSQL(rowFilter(c.filter), rules.MainTable)
		require.Equal(t, errs, sqlErrs)
	}
}

const supportedNote = "(supported: comparisons, in, &&, ||, !, record fields, actor.id/kind/roles/attributes)"

// History keeps a redacted field as a keyed hash, so history cannot be filtered by it; the
// table could, but a filter has to serve both.
func TestRowFilterRedactedField(t *testing.T) {
	t.Parallel()
	s := rowFilter("record.customer_email == actor.id")
	got, errs := rules.RowFilterSQL(s, rules.MainTable)
	require.Empty(t, errs)
	require.Equal(t, `("customer_email" = (SELECT velocity.current_actor_id()))`, got)

	want := []schemadef.FieldError{{Path: "spec.access.rowFilter", Message: "record.customer_email is redacted in history (spec.history.redact), " +
		"which stores only a hash of it, so history could not be filtered by it"}}
	_, errs = rules.RowFilterSQL(s, rules.HistoryImage)
	require.Equal(t, want, errs)
	require.Equal(t, want, rules.ValidateRowFilter(s))
	require.Equal(t, want, rules.Validate(s))
}
