package sqlbuild

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/velocitydev/velocity/internal/schemadef"
)

// Query limits.
const (
	DefaultLimit  = 50
	MaxLimit      = 1000
	maxWhereDepth = 10
	maxConditions = 100
	maxInValues   = 1000
)

// OrderBy is one sort key.
type OrderBy struct {
	Field string `json:"field"`
	Dir   string `json:"dir,omitempty"`
}

// QueryInput is the body of POST P/query (search and facets are served elsewhere).
type QueryInput struct {
	Where   json.RawMessage `json:"where,omitempty"`
	OrderBy []OrderBy       `json:"orderBy,omitempty"`
	Limit   *int            `json:"limit,omitempty"`
	Cursor  string          `json:"cursor,omitempty"`
}

// Page is a built list query. Run Statement; it returns up to Limit+1 rows of JSON, and
// NextCursor turns the last row kept into the cursor of the next page.
type Page struct {
	Statement Statement
	Limit     int
	keys      []sortKey
	signature string
}

type sortKey struct {
	field schemadef.Field
	desc  bool
}

type params struct{ args []any }

func (p *params) add(v any) string {
	p.args = append(p.args, v)
	return fmt.Sprintf("$%d", len(p.args))
}

// BuildQuery compiles a query against the definition. Every field name is checked against
// it; every value becomes a parameter. Problems come back as Errors located under loc
// ("body" for POST P/query, "query" for list parameters).
func (t *Table) BuildQuery(in QueryInput, loc string) (*Page, Errors) {
	var errs Errors
	p := &params{}
	var conds []string
	if len(bytes.TrimSpace(in.Where)) > 0 && string(bytes.TrimSpace(in.Where)) != "null" {
		count := 0
		c := t.where(in.Where, loc+".where", 0, &count, p, &errs)
		if c != "" {
			conds = append(conds, c)
		}
	}

	limit := DefaultLimit
	if in.Limit != nil {
		limit = *in.Limit
		if limit < 1 || limit > MaxLimit {
			errs.add(loc+".limit", "must be between 1 and %d", MaxLimit)
		}
	}

	var keys []sortKey
	seen := map[string]bool{}
	for i, ob := range in.OrderBy {
		l := fmt.Sprintf("%s.orderBy[%d]", loc, i)
		f, ok := t.field(ob.Field)
		switch {
		case !ok:
			errs.add(l+".field", "unknown field %q", ob.Field)
			continue
		case !f.Sortable:
			errs.add(l+".field", "field %q is not sortable", ob.Field)
			continue
		case seen[ob.Field]:
			errs.add(l+".field", "field %q is sorted twice", ob.Field)
			continue
		}
		seen[ob.Field] = true
		switch strings.ToLower(ob.Dir) {
		case "", "asc":
			keys = append(keys, sortKey{field: f})
		case "desc":
			keys = append(keys, sortKey{field: f, desc: true})
		default:
			errs.add(l+".dir", "must be asc or desc, not %q", ob.Dir)
		}
	}
	if !seen["id"] {
		// id breaks ties so the order, and so the cursor, is total.
		keys = append(keys, sortKey{field: schemadef.Field{Name: "id", Type: schemadef.TypeUUID}})
	}
	page := &Page{Limit: limit, keys: keys, signature: signature(in.Where, keys)}
	if in.Cursor != "" {
		c, msg := page.cursorCondition(in.Cursor, p)
		if msg != "" {
			errs.add(loc+".cursor", "%s", msg)
		} else {
			conds = append(conds, c)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}

	order := make([]string, len(keys))
	for i, k := range keys {
		if k.desc {
			order[i] = "v." + Ident(k.field.Name) + " DESC NULLS FIRST"
		} else {
			order[i] = "v." + Ident(k.field.Name) + " ASC NULLS LAST"
		}
	}
	// The page is chosen first, by id, and only its rows are read whole: the view's masked
	// columns and each row's JSON are computed for the page, not for every row the filter
	// matches before the sort keeps a page of them (measured: 20 ms of a 25 ms query that
	// matched 5,000 rows went to JSON and masks for rows the LIMIT then dropped; 21 ms -> 3 ms).
	pick := "SELECT v.id FROM " + t.view + " v"
	if len(conds) > 0 {
		pick += " WHERE " + strings.Join(conds, " AND ")
	}
	orderBy := " ORDER BY " + strings.Join(order, ", ")
	pick += orderBy + " LIMIT " + p.add(limit+1) + "::integer"
	// ARRAY(...) runs the pick once, as an InitPlan, and the page's rows are then fetched by
	// primary key; a join let Postgres read the whole view to hash it.
	sql := "SELECT row_to_json(v) FROM " + t.view + " v WHERE v.id = ANY (ARRAY(" + pick + "))" + orderBy
	page.Statement = Statement{SQL: sql, Args: p.args}
	return page, nil
}

var comparisons = map[string]string{"eq": "=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}

// where compiles one condition object. Keys are sorted so equal inputs give equal SQL.
func (t *Table) where(raw json.RawMessage, loc string, depth int, count *int, p *params, errs *Errors) string {
	if depth > maxWhereDepth {
		errs.add(loc, "nested deeper than %d levels", maxWhereDepth)
		return ""
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		errs.add(loc, "expected an object of conditions")
		return ""
	}
	if len(obj) == 0 && depth > 0 {
		// An empty condition compiles to nothing, which would silently drop the and, or or
		// not around it; only the whole where may be empty.
		errs.add(loc, "expected a non-empty object of conditions")
		return ""
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		*count++
		if *count > maxConditions {
			errs.add(loc, "more than %d conditions", maxConditions)
			return ""
		}
		l := loc + "." + k
		switch k {
		case "and", "or":
			var list []json.RawMessage
			if err := json.Unmarshal(obj[k], &list); err != nil || len(list) == 0 {
				errs.add(l, "expected a non-empty array of conditions")
				continue
			}
			// A list longer than the conditions left is refused before any item is compiled.
			if *count+len(list) > maxConditions {
				errs.add(l, "more than %d conditions", maxConditions)
				return ""
			}
			var sub []string
			for i, item := range list {
				if c := t.where(item, fmt.Sprintf("%s[%d]", l, i), depth+1, count, p, errs); c != "" {
					sub = append(sub, c)
				}
			}
			if len(sub) == len(list) {
				parts = append(parts, "("+strings.Join(sub, " "+strings.ToUpper(k)+" ")+")")
			}
		case "not":
			if c := t.where(obj[k], l, depth+1, count, p, errs); c != "" {
				parts = append(parts, "NOT ("+c+")")
			}
		default:
			if c := t.fieldCondition(k, obj[k], l, p, errs); c != "" {
				parts = append(parts, c)
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "(" + strings.Join(parts, " AND ") + ")"
}

func (t *Table) fieldCondition(name string, raw json.RawMessage, loc string, p *params, errs *Errors) string {
	f, ok := t.field(name)
	if !ok {
		errs.add(loc, "unknown field %q", name)
		return ""
	}
	if !f.Filterable {
		errs.add(loc, "field %q is not filterable", name)
		return ""
	}
	// maxLength limits what may be stored, not what may be compared with.
	f.MaxLength = nil
	var ops map[string]json.RawMessage
	if err := json.Unmarshal(raw, &ops); err != nil || len(ops) == 0 {
		errs.add(loc, `expected an object of operators, e.g. {"eq": ...}`)
		return ""
	}
	col := "v." + Ident(f.Name)
	names := make([]string, 0, len(ops))
	for op := range ops {
		names = append(names, op)
	}
	sort.Strings(names)
	var parts []string
	for _, op := range names {
		l := loc + "." + op
		arg := ops[op]
		switch op {
		case "eq", "lt", "lte", "gt", "gte", "ne":
			v, msg := textValue(f, arg)
			if msg == "" && v == nil {
				msg = "null is not a value to compare; use isNull"
			}
			if msg != "" {
				errs.add(l, "%s", msg)
				continue
			}
			if op == "ne" {
				parts = append(parts, col+" IS DISTINCT FROM "+cast(p.add(*v), f.Type))
			} else {
				parts = append(parts, col+" "+comparisons[op]+" "+cast(p.add(*v), f.Type))
			}
		case "in", "nin":
			var list []json.RawMessage
			if err := json.Unmarshal(arg, &list); err != nil || list == nil {
				errs.add(l, "expected an array")
				continue
			}
			if len(list) > maxInValues {
				errs.add(l, "more than %d values", maxInValues)
				continue
			}
			vals := make([]string, 0, len(list))
			bad := false
			for i, item := range list {
				v, msg := textValue(f, item)
				if msg == "" && v == nil {
					msg = "null is not allowed in a list; use isNull"
				}
				if msg != "" {
					errs.add(fmt.Sprintf("%s[%d]", l, i), "%s", msg)
					bad = true
					continue
				}
				vals = append(vals, *v)
			}
			if bad {
				continue
			}
			arr := p.add(vals) + "::text[]::" + ColumnType(f.Type) + "[]"
			if op == "in" {
				parts = append(parts, col+" = ANY("+arr+")")
			} else {
				// Like ne, nin keeps rows where the field is NULL.
				parts = append(parts, "("+col+" IS NULL OR "+col+" <> ALL("+arr+"))")
			}
		case "contains":
			if f.Type != schemadef.TypeString && f.Type != schemadef.TypeText {
				errs.add(l, "contains works on string and text fields only")
				continue
			}
			var s string
			if err := json.Unmarshal(arg, &s); err != nil || s == "" || strings.ContainsRune(s, 0) {
				errs.add(l, "expected a non-empty string")
				continue
			}
			parts = append(parts, col+" ILIKE "+p.add("%"+likeEscape(s)+"%"))
		case "isNull":
			var b bool
			if err := json.Unmarshal(arg, &b); err != nil {
				errs.add(l, "expected true or false")
				continue
			}
			if b {
				parts = append(parts, col+" IS NULL")
			} else {
				parts = append(parts, col+" IS NOT NULL")
			}
		default:
			errs.add(l, "unknown operator %q (use eq, ne, lt, lte, gt, gte, in, nin, contains, isNull)", op)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, " AND ")
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// cursor is the position after the last row of a page: the sort values of that row and a
// hash of the query, so a cursor cannot be replayed against another filter or order.
type cursor struct {
	Values []json.RawMessage `json:"v"`
	Sig    string            `json:"s"`
}

func signature(where json.RawMessage, keys []sortKey) string {
	h := sha256.New()
	var compact bytes.Buffer
	if json.Compact(&compact, where) == nil {
		h.Write(compact.Bytes())
	}
	for _, k := range keys {
		fmt.Fprintf(h, "|%s:%v", k.field.Name, k.desc)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:9])
}

// NextCursor returns the cursor after lastRow (the JSON of the last record on the page).
func (pg *Page) NextCursor(lastRow []byte) (string, error) {
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(lastRow, &rec); err != nil {
		return "", err
	}
	c := cursor{Sig: pg.signature}
	for _, k := range pg.keys {
		v := rec[k.field.Name]
		if v == nil {
			v = json.RawMessage("null")
		}
		c.Values = append(c.Values, v)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// cursorCondition decodes a cursor into the keyset condition "after that row".
func (pg *Page) cursorCondition(token string, p *params) (string, string) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) > 64*1024 {
		return "", "malformed cursor"
	}
	var c cursor
	if err := json.Unmarshal(raw, &c); err != nil || len(c.Values) != len(pg.keys) {
		return "", "malformed cursor"
	}
	if c.Sig != pg.signature {
		return "", "cursor belongs to a query with another where or orderBy"
	}
	vals := make([]*string, len(pg.keys))
	for i, k := range pg.keys {
		v, msg := textValue(k.field, c.Values[i])
		if msg != "" {
			return "", "malformed cursor"
		}
		vals[i] = v
	}
	// Row r comes after the cursor when, for some key i, r equals the cursor on keys before
	// i and is after it on key i. Ascending keys sort NULLs last, descending first.
	var ors []string
	for i, k := range pg.keys {
		if !k.desc && vals[i] == nil {
			// Nothing sorts after NULL ascending. Checked before the equalities below add
			// their parameters, which would be left unused (and untyped) otherwise.
			continue
		}
		var ands []string
		for j := 0; j < i; j++ {
			col := "v." + Ident(pg.keys[j].field.Name)
			if vals[j] == nil {
				ands = append(ands, col+" IS NULL")
			} else {
				ands = append(ands, col+" = "+cast(p.add(*vals[j]), pg.keys[j].field.Type))
			}
		}
		col := "v." + Ident(k.field.Name)
		var after string
		switch {
		case !k.desc:
			after = "(" + col + " > " + cast(p.add(*vals[i]), k.field.Type) + " OR " + col + " IS NULL)"
		case vals[i] == nil:
			after = col + " IS NOT NULL"
		default:
			after = col + " < " + cast(p.add(*vals[i]), k.field.Type)
		}
		ands = append(ands, after)
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	if len(ors) == 0 {
		return "false", ""
	}
	return "(" + strings.Join(ors, " OR ") + ")", ""
}
