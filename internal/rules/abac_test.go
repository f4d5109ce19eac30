package rules_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/rules"
	"github.com/velocitydev/velocity/internal/schemadef"
)

// orders is the SPEC.md example's shape, with one field of every type a rule can read.
func orders(abac ...schemadef.ABACRule) schemadef.Spec {
	return schemadef.Spec{
		Org: "acme", App: "shop", Domain: "sales", Object: "orders", Version: 1,
		Fields: []schemadef.Field{
			{Name: "customer_email", Type: schemadef.TypeString, Sensitive: true},
			{Name: "status", Type: schemadef.TypeEnum, Values: []string{"pending", "paid", "shipped"}},
			{Name: "region", Type: schemadef.TypeString},
			{Name: "total", Type: schemadef.TypeDecimal},
			{Name: "weight", Type: schemadef.TypeNumber},
			{Name: "qty", Type: schemadef.TypeInteger},
			{Name: "gift", Type: schemadef.TypeBoolean},
			{Name: "owner", Type: schemadef.TypeUUID},
			{Name: "due", Type: schemadef.TypeDate},
			{Name: "shipped_at", Type: schemadef.TypeTimestamp},
			{Name: "meta", Type: schemadef.TypeJSON},
		},
		Access: schemadef.Access{
			Roles: map[string][]string{"viewer": {"read", "search"}, "admin": schemadef.Verbs},
			ABAC:  abac,
		},
		History: schemadef.History{Redact: []string{"customer_email"}},
	}
}

func rule(rule string, verbs ...string) schemadef.ABACRule {
	return schemadef.ABACRule{Verbs: verbs, Rule: rule}
}

// specExample is the ABAC rule of SPEC.md.
const specExample = "actor.attributes.tenure_years >= 1 || 'admin' in actor.roles"

func compile(t *testing.T, abac ...schemadef.ABACRule) *rules.Set {
	t.Helper()
	set, errs := rules.Compile(orders(abac...))
	require.Empty(t, errs)
	return set
}

func TestCheck(t *testing.T) {
	t.Parallel()
	veteran := rules.Actor{ID: "u1", Kind: "user", Roles: []string{"editor"}, Attributes: map[string]any{"tenure_years": 3.0, "region": "eu"}}
	newcomer := rules.Actor{ID: "u2", Kind: "user", Roles: []string{"editor"}, Attributes: map[string]any{"tenure_years": 0.0}}
	admin := rules.Actor{ID: "u3", Kind: "api_key", Roles: []string{"admin"}}
	record := map[string]any{
		"id": "0193b6f0-0000-7000-8000-000000000001", "version": 3.0, "created_by": "u1", "updated_by": "u1",
		"created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05.123456Z",
		"status": "paid", "region": "eu", "total": 150.5, "qty": 2.0, "gift": true, "shipped_at": nil,
		"meta": map[string]any{"channel": "web", "tags": []any{"a", "b"}}, "unknown_key": "ignored",
	}
	proposed := map[string]any{"status": "shipped", "region": "eu", "total": 150.5, "qty": 3.0}

	cases := []struct {
		name   string
		rule   string
		verb   string
		in     rules.Input
		denied bool
		err    error // the Denial's Err, when denied
	}{
		{name: "spec example: tenure", rule: specExample, verb: "update", in: rules.Input{Actor: veteran}},
		{name: "spec example: admin", rule: specExample, verb: "delete", in: rules.Input{Actor: admin}},
		{name: "spec example: neither", rule: specExample, verb: "update", in: rules.Input{Actor: newcomer}, denied: true},
		{name: "spec example: another verb has no rule", rule: specExample, verb: "restore", in: rules.Input{Actor: newcomer}},
		// A missing attribute is an evaluation error, not false: || still passes when the
		// other side is true, and denies otherwise.
		{name: "spec example: missing attribute, admin", rule: specExample, verb: "update", in: rules.Input{Actor: rules.Actor{Roles: []string{"admin"}}}},
		{name: "spec example: missing attribute", rule: specExample, verb: "update", in: rules.Input{Actor: rules.Actor{Roles: []string{"editor"}}}, denied: true},
		{name: "record and proposed", rule: "record.total >= 100 && proposed.qty > record.qty && record.status != proposed.status", verb: "update",
			in: rules.Input{Actor: veteran, Record: record, Proposed: proposed}},
		{name: "integer field from a JSON number", rule: "record.qty == 2 && record.version == 3", verb: "update", in: rules.Input{Record: record, Proposed: proposed}},
		{name: "timestamps", rule: "record.created_at < record.updated_at && record.updated_at < request.time && record.shipped_at == null", verb: "update",
			in: rules.Input{Record: record, Request: rules.Request{Time: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}}},
		{name: "json field", rule: "record.meta.channel == 'web' && 'b' in record.meta.tags", verb: "delete", in: rules.Input{Record: record}},
		{name: "null field", rule: "proposed.gift == null", verb: "update", in: rules.Input{Record: record, Proposed: proposed}},
		{name: "ownership", rule: "record.created_by == actor.id", verb: "delete", in: rules.Input{Actor: veteran, Record: record}},
		{name: "ownership denied", rule: "record.created_by == actor.id", verb: "delete", in: rules.Input{Actor: newcomer, Record: record}, denied: true},
		{name: "no record on create", rule: "record == null && proposed.region == actor.attributes.region", verb: "create",
			in: rules.Input{Actor: veteran, Proposed: proposed}},
		{name: "request", rule: "request.verb == 'purge' && request.reason != '' && request.ip.startsWith('10.')", verb: "purge",
			in: rules.Input{Request: rules.Request{Reason: "gdpr", IP: "10.0.0.7"}}},
		{name: "comparing null with a number fails closed", rule: "record.total >= 100", verb: "update",
			in: rules.Input{Record: map[string]any{"total": nil}}, denied: true},
		{name: "a record that does not fit its schema fails closed", rule: "record.qty > 1", verb: "update",
			in: rules.Input{Record: map[string]any{"qty": 1.5}}, denied: true},
		// Inputs larger than the size hints of the static estimate: the run stops.
		{name: "runtime cost limit", rule: "actor.id.contains('x')", verb: "create",
			in: rules.Input{Actor: rules.Actor{ID: strings.Repeat("y", 1<<20)}}, denied: true, err: rules.ErrCostLimit},
		{name: "runtime timeout", rule: "actor.roles.all(r, r != 'x')", verb: "create",
			in: rules.Input{Actor: rules.Actor{Roles: manyRoles(200_000)}}, denied: true, err: rules.ErrTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			set := compile(t, rule("true", "read"), rule(c.rule, "create", "update", "delete", "purge"))
			d := set.Check(context.Background(), c.verb, c.in)
			if !c.denied {
				require.Nil(t, d, "Check(%q) got %v, want allowed", c.rule, d)
				return
			}
			require.NotNil(t, d, "Check(%q) allowed, want denied", c.rule)
			require.Equal(t, 1, d.Rule)
			require.Equal(t, c.rule, d.Expr)
			if c.err != nil {
				require.ErrorIs(t, d.Err, c.err)
			}
		})
	}
}

func manyRoles(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("role%d", i)
	}
	return out
}

func TestCheckDenialMessages(t *testing.T) {
	t.Parallel()
	set := compile(t, rule("true", "update"), rule(specExample, "update"))

	d := set.Check(context.Background(), "update", rules.Input{Actor: rules.Actor{Attributes: map[string]any{"tenure_years": 0.0}}})
	require.NotNil(t, d)
	require.NoError(t, d.Err)
	require.Equal(t, "rule spec.access.abac[1] denied update", d.Error())

	d = set.Check(context.Background(), "update", rules.Input{})
	require.NotNil(t, d)
	require.Error(t, d.Err)
	require.Contains(t, d.Error(), "rule spec.access.abac[1] could not be evaluated: ")
	require.Contains(t, d.Error(), "tenure_years")
}

// A rule whose run stops for time fails closed. No rule that passes the static cost limit runs
// near 10 ms, so the deadline is tested with contexts that are already over.
func TestCheckTimeout(t *testing.T) {
	t.Parallel()
	set := compile(t, rule("true", "update"))

	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	d := set.Check(expired, "update", rules.Input{})
	require.NotNil(t, d)
	require.ErrorIs(t, d.Err, rules.ErrTimeout)
	require.Equal(t, "rule spec.access.abac[0] could not be evaluated: timeout", d.Error())

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	d = set.Check(cancelled, "update", rules.Input{})
	require.NotNil(t, d)
	require.ErrorIs(t, d.Err, context.Canceled)
}

// The most expensive rule the static limit admits still finishes inside EvalTimeout: this is
// what CostLimit is chosen for. The fastest of a few runs counts, so a busy machine does not
// fail the test.
func TestCheckAtTheCostLimit(t *testing.T) {
	t.Parallel()
	// Two nested comprehensions over literal lists, whose sizes the estimate knows exactly:
	// the largest lists the limit admits.
	var set *rules.Set
	largest := 0
	for n := 10; ; n++ {
		list := "[" + strings.TrimSuffix(strings.Repeat("1,", n), ",") + "]"
		next, errs := rules.Compile(orders(rule(fmt.Sprintf("%s.all(a, %s.all(b, a + b > 0))", list, list), "create")))
		if len(errs) > 0 {
			require.Contains(t, errs[0].Message, "may cost up to")
			require.Greater(t, n, 40, "CostLimit admits too little")
			break
		}
		set, largest = next, n
	}
	fastest := time.Hour
	for range 5 {
		start := time.Now()
		d := set.Check(context.Background(), "create", rules.Input{})
		if d == nil {
			fastest = min(fastest, time.Since(start))
		} else {
			require.ErrorIs(t, d.Err, rules.ErrTimeout)
		}
	}
	t.Logf("%d x %d steps at the cost limit: %s", largest, largest, fastest)
	require.Less(t, fastest, rules.EvalTimeout)
}

func TestCheckConcurrently(t *testing.T) {
	t.Parallel()
	set := compile(t, rule("record.region == actor.attributes.region", "update"))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			region := []string{"eu", "us"}[i%2]
			for range 100 {
				d := set.Check(context.Background(), "update", rules.Input{
					Actor:  rules.Actor{Attributes: map[string]any{"region": region}},
					Record: map[string]any{"region": "eu"},
				})
				if (d == nil) != (region == "eu") {
					t.Errorf("Check(region %s) got %v", region, d)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestSetHasAndNeedsRecord(t *testing.T) {
	t.Parallel()
	set := compile(t,
		rule("'admin' in actor.roles", "read", "update"),
		rule("record.status != 'shipped'", "update"),
		rule("proposed.total < 1000", "create"),
	)
	for verb, want := range map[string][2]bool{
		"read": {true, false}, "update": {true, true}, "create": {true, true}, "delete": {false, false},
	} {
		require.Equal(t, want[0], set.Has(verb), "Has(%q)", verb)
		require.Equal(t, want[1], set.NeedsRecord(verb), "NeedsRecord(%q)", verb)
	}
	var none *rules.Set
	require.False(t, none.Has("read"))
	require.Nil(t, none.Check(context.Background(), "read", rules.Input{}))
}

type fieldErr struct{ path, message string }

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	nested := func(levels int) string {
		// Each "1 + (...)" is one call; the comparison is one more.
		return strings.Repeat("1 + (", levels-2) + "1 + 1" + strings.Repeat(")", levels-2) + " > 0"
	}
	pad := func(n int) string { // a valid rule of exactly n bytes
		return "'" + strings.Repeat("a", n-len("'' != ''")) + "' != ''"
	}
	cases := []struct {
		name  string
		rules []schemadef.ABACRule
		want  []fieldErr // nil: accepted; a message ending in "..." is a prefix
	}{
		{name: "spec example", rules: []schemadef.ABACRule{rule(specExample, "update", "delete")}},
		{name: "depth 10", rules: []schemadef.ABACRule{rule(nested(10), "update")}},
		{name: "depth 11", rules: []schemadef.ABACRule{rule("true", "read"), rule(nested(11), "update")},
			want: []fieldErr{{"spec.access.abac[1].rule", "nests 11 levels deep, over the limit of 10"}}},
		{name: "10 KB", rules: []schemadef.ABACRule{rule(pad(rules.MaxRuleBytes), "update")}},
		{name: "10 KB and one byte", rules: []schemadef.ABACRule{rule(pad(rules.MaxRuleBytes+1), "update")},
			want: []fieldErr{{"spec.access.abac[0].rule", "is 10241 bytes, over the limit of 10240"}}},
		{name: "empty", rules: []schemadef.ABACRule{rule("  ", "update")},
			want: []fieldErr{{"spec.access.abac[0].rule", "required"}}},
		{name: "no verbs", rules: []schemadef.ABACRule{rule("true")},
			want: []fieldErr{{"spec.access.abac[0].verbs", "at least one verb is required"}}},
		{name: "unknown verb", rules: []schemadef.ABACRule{rule("true", "update", "write")},
			want: []fieldErr{{"spec.access.abac[0].verbs[1]", `unknown verb "write"`}}},
		{name: "syntax error", rules: []schemadef.ABACRule{rule("true", "read"), rule("actor.id ==", "update")},
			want: []fieldErr{{"spec.access.abac[1].rule", "1:12: Syntax error: ..."}}},
		{name: "type error", rules: []schemadef.ABACRule{rule("true", "read"), rule("record.total == 'high'", "update")},
			want: []fieldErr{{"spec.access.abac[1].rule", "1:14: found no matching overload for '_==_' applied to ..."}}},
		{name: "unknown field", rules: []schemadef.ABACRule{rule("record.nope == 1", "update")},
			want: []fieldErr{{"spec.access.abac[0].rule", "1:7: undefined field 'nope'"}}},
		{name: "unknown actor field", rules: []schemadef.ABACRule{rule("actor.email == 'a'", "update")},
			want: []fieldErr{{"spec.access.abac[0].rule", "1:6: undefined field 'email'"}}},
		{name: "unknown variable", rules: []schemadef.ABACRule{rule("user.id == 'a'", "update")},
			want: []fieldErr{{"spec.access.abac[0].rule", "1:1: undeclared reference to 'user' ..."}}},
		{name: "not a boolean", rules: []schemadef.ABACRule{rule("actor.id", "update")},
			want: []fieldErr{{"spec.access.abac[0].rule", "must be a boolean expression, not string"}}},
		{name: "record in a read rule", rules: []schemadef.ABACRule{rule("record.region == 'eu'", "update", "read")},
			want: []fieldErr{{"spec.access.abac[0].rule", `a rule for "read" cannot read record or proposed, ` +
				"because read acts on many records at once: use spec.access.rowFilter for per-record read rules"}}},
		{name: "proposed in a search rule", rules: []schemadef.ABACRule{rule("proposed == null", "search")},
			want: []fieldErr{{"spec.access.abac[0].rule", `a rule for "search" cannot read record or proposed, ...`}}},
		{name: "too costly", rules: []schemadef.ABACRule{rule("actor.roles.all(a, actor.roles.all(b, actor.roles.all(c, a + b + c != '')))", "update")},
			want: []fieldErr{{"spec.access.abac[0].rule", "may cost up to ..."}}},
		{name: "every rule is reported", rules: []schemadef.ABACRule{rule("record.nope", "update"), rule("true", "update"), rule("1", "delete")},
			want: []fieldErr{{"spec.access.abac[0].rule", "1:7: undefined field 'nope'"}, {"spec.access.abac[2].rule", "must be a boolean expression, not int"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			set, errs := rules.Compile(orders(c.rules...))
			require.NotNil(t, set)
			require.Len(t, errs, len(c.want), "Compile got %v, want %v", errs, c.want)
			for i, w := range c.want {
				require.Equal(t, w.path, errs[i].Path)
				if prefix, ok := strings.CutSuffix(w.message, "..."); ok {
					require.True(t, strings.HasPrefix(errs[i].Message, prefix), "Compile got %q, want %q", errs[i].Message, w.message)
				} else {
					require.Equal(t, w.message, errs[i].Message)
				}
			}
			// A rule that did not compile denies every request of its verbs.
			for _, e := range errs {
				if !strings.HasSuffix(e.Path, ".rule") {
					continue
				}
				var i int
				_, err := fmt.Sscanf(e.Path, "spec.access.abac[%d].rule", &i)
				require.NoError(t, err)
				for _, verb := range c.rules[i].Verbs {
					d := set.Check(context.Background(), verb, rules.Input{})
					require.NotNil(t, d, "a broken rule for %q must deny", verb)
					require.Error(t, d.Err)
				}
			}
		})
	}
}

func TestValidateCollectsEveryProblem(t *testing.T) {
	t.Parallel()
	spec := orders(rule("record.nope == 1", "update"))
	spec.Access.RowFilter = "size(record.region) > 2"
	errs := rules.Validate(spec)
	require.Len(t, errs, 2)
	require.Equal(t, "spec.access.abac[0].rule", errs[0].Path)
	require.Equal(t, "spec.access.rowFilter", errs[1].Path)

	spec = orders(rule(specExample, "update", "delete"))
	spec.Access.RowFilter = "record.region == actor.attributes.region || 'admin' in actor.roles"
	require.Empty(t, rules.Validate(spec))
}

func BenchmarkCheck(b *testing.B) {
	set, errs := rules.Compile(orders(rule(specExample, "update"), rule("record.region == actor.attributes.region", "update")))
	require.Empty(b, errs)
	in := rules.Input{
		Actor:  rules.Actor{ID: "u1", Kind: "user", Roles: []string{"editor"}, Attributes: map[string]any{"tenure_years": 2.0, "region": "eu"}},
		Record: map[string]any{"region": "eu", "total": 10.0, "qty": 1.0},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := set.Check(ctx, "update", in); d != nil {
			b.Fatal(d)
		}
	}
}
