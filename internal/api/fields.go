package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/velocitydev/velocity/internal/authz"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

func actorOf(ctx context.Context) store.Actor {
	actor, _ := ctx.Value(actorKey).(store.Actor)
	return actor
}

// hidden lists the fields the caller may not read (layer 5). The read views already return
// them as NULL; responses leave the keys out.
func (r *records) hidden(ctx context.Context) []string {
	return authz.Hidden(r.t.Spec, actorOf(ctx).Roles)
}

// writable is layer 5 on the way in: a body that sets a field the caller's roles may not
// write is a 403 naming each such field. The field-write trigger refuses the same in
// Postgres, for psql and BI writes too.
func (r *records) writable(ctx context.Context, body map[string]json.RawMessage) error {
	if len(r.t.Spec.Access.Fields) == 0 {
		return nil
	}
	names := make([]string, 0, len(body))
	for k := range body {
		names = append(names, k)
	}
	sort.Strings(names)
	bad := authz.Unwritable(r.t.Spec, actorOf(ctx).Roles, names)
	if len(bad) == 0 {
		return nil
	}
	p := denied(authz.LayerFields, fmt.Sprintf("your roles may not write %s of %s", strings.Join(bad, ", "), r.t.Spec.Key()))
	for _, f := range bad {
		p.Errors = append(p.Errors, &huma.ErrorDetail{Location: "body." + f, Message: "no write access to this field"})
	}
	return p
}

// withoutFields returns the JSON object obj without the keys in drop, keeping the order of
// the others. obj comes from Postgres, so it is one valid object.
func withoutFields(obj []byte, drop []string) ([]byte, error) {
	if len(drop) == 0 {
		return obj, nil
	}
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("record is not a JSON object")
	}
	out := make([]byte, 0, len(obj))
	out = append(out, '{')
	first := true
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, err
		}
		if slices.Contains(drop, key) {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		k, _ := json.Marshal(key)
		out = append(out, k...)
		out = append(out, ':')
		out = append(out, val...)
	}
	return append(out, '}'), nil
}

// readable refuses a query that filters or sorts on a field the caller sees hidden or masked
// (layers 5 and 6): its answers would reveal the values one comparison at a time.
func (r *records) readable(ctx context.Context, q sqlbuild.QueryInput, loc string) error {
	if len(r.t.Spec.Access.Fields) == 0 {
		return nil
	}
	roles := actorOf(ctx).Roles
	closed := map[string]bool{}
	for _, f := range authz.Hidden(r.t.Spec, roles) {
		closed[f] = true
	}
	for f := range authz.Masked(r.t.Spec, roles) {
		closed[f] = true
	}
	if len(closed) == 0 {
		return nil
	}
	var bad []*huma.ErrorDetail
	for _, f := range whereFields(q.Where, loc+".where") {
		if closed[f.name] {
			bad = append(bad, &huma.ErrorDetail{Location: f.loc, Message: "you may not read " + f.name + ", so you may not filter on it"})
		}
	}
	for i, o := range q.OrderBy {
		if closed[o.Field] {
			bad = append(bad, &huma.ErrorDetail{Location: fmt.Sprintf("%s.orderBy[%d].field", loc, i), Message: "you may not read " + o.Field + ", so you may not sort on it"})
		}
	}
	if len(bad) == 0 {
		return nil
	}
	p := denied(authz.LayerFields, "the query uses fields of "+r.t.Spec.Key()+" that your roles may not read")
	p.Errors = bad
	return p
}

type whereField struct{ name, loc string }

// whereFields lists the fields a where clause names, with their locations; and, or and not
// nest. Malformed clauses are left to the query builder to report.
func whereFields(raw json.RawMessage, loc string) []whereField {
	if len(raw) == 0 {
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []whereField
	for _, k := range keys {
		switch k {
		case "and", "or":
			var list []json.RawMessage
			if json.Unmarshal(obj[k], &list) == nil {
				for i, c := range list {
					out = append(out, whereFields(c, fmt.Sprintf("%s.%s[%d]", loc, k, i))...)
				}
			}
		case "not":
			out = append(out, whereFields(obj[k], loc+".not")...)
		default:
			out = append(out, whereField{name: k, loc: loc + "." + k})
		}
	}
	return out
}

// tableFor is the table as the caller may see it: without the fields hidden from its roles
// (layer 5). Reads built from history images (point in time, history, diff, snapshot,
// events) list fields by name, so a hidden field is not even a null key there.
func (r *records) tableFor(ctx context.Context) *sqlbuild.Table {
	hidden := r.hidden(ctx)
	if len(hidden) == 0 {
		return r.t
	}
	key := strings.Join(hidden, ",")
	r.narrowMu.Lock()
	defer r.narrowMu.Unlock()
	if t, ok := r.narrow[key]; ok {
		return t
	}
	spec := r.t.Spec
	spec.Fields = slices.DeleteFunc(slices.Clone(spec.Fields), func(f schemadef.Field) bool { return slices.Contains(hidden, f.Name) })
	t := sqlbuild.NewTable(spec)
	if r.narrow == nil {
		r.narrow = map[string]*sqlbuild.Table{}
	}
	r.narrow[key] = t
	return t
}
