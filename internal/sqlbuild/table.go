package sqlbuild

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/velocitydev/velocity/internal/schemadef"
)

// Statement is one SQL statement and its parameters.
type Statement struct {
	SQL  string
	Args []any
}

// Table builds the SQL of one applied schema version. The fixed statements are built once,
// when the table is made, not per request.
type Table struct {
	Spec   schemadef.Spec
	Names  schemadef.Names
	fields map[string]schemadef.Field
	table  string
	view   string

	getSQL string
	// eventImage (HistoryImage("h")) and eventColumns (historyEventColumns) are built once:
	// the image expression names every field, and point-in-time reads, history pages and
	// the event stream use it on every request.
	eventImage, eventColumns string
}

// NewTable prepares the builder of a validated definition.
func NewTable(spec schemadef.Spec) *Table {
	n := schemadef.NamesOf(spec)
	t := &Table{
		Spec:   spec,
		Names:  n,
		fields: map[string]schemadef.Field{},
		table:  Qualified(n.Schema, n.Table),
		view:   Qualified(n.Schema, n.View),
	}
	for _, f := range spec.Fields {
		t.fields[f.Name] = f
	}
	t.getSQL = fmt.Sprintf("SELECT row_to_json(v), v.version FROM %s v WHERE v.id = $1::uuid", t.view)
	t.eventImage = t.HistoryImage("h")
	t.eventColumns = t.historyEventColumns()
	return t
}

// Field returns a user or system field by name; system fields are filterable and sortable.
func (t *Table) Field(name string) (schemadef.Field, bool) { return t.field(name) }

func (t *Table) field(name string) (schemadef.Field, bool) {
	if f, ok := t.fields[name]; ok {
		return f, true
	}
	if typ, ok := systemType[name]; ok {
		return schemadef.Field{Name: name, Type: typ, Filterable: true, Sortable: true}, true
	}
	return schemadef.Field{}, false
}

// Get reads one record through the read view: its JSON and its version.
func (t *Table) Get(id string) Statement {
	return Statement{SQL: t.getSQL, Args: []any{id}}
}

// GetRaw reads one record from the table itself, not the read view: the values before masking,
// for layer 2 rules that decide on them. Row-level security still applies. Its result never
// goes into a response.
func (t *Table) GetRaw(id string) Statement {
	return Statement{SQL: fmt.Sprintf("SELECT row_to_json(r), r.version FROM %s r WHERE r.id = $1::uuid", t.table), Args: []any{id}}
}

// RecordMode says which rules a record body follows.
type RecordMode int

// Record modes.
const (
	ForCreate RecordMode = iota
	ForPatch
)

// Values is a checked record body: column name to text parameter (nil is NULL).
type Values map[string]*string

// CheckRecord checks a JSON object body against the definition. For create it requires the
// required fields that have no default; for patch every given field is set and a null clears
// it. System fields are read-only, except id on create.
func (t *Table) CheckRecord(body map[string]json.RawMessage, mode RecordMode) (Values, Errors) {
	var errs Errors
	vals := Values{}
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		loc := "body." + k
		if _, sys := systemType[k]; sys {
			if k == "id" && mode == ForCreate {
				v, msg := textValue(schemadef.Field{Name: "id", Type: schemadef.TypeUUID}, body[k])
				if msg != "" {
					errs.add(loc, "%s", msg)
				} else if v != nil {
					vals["id"] = v
				}
				continue
			}
			errs.add(loc, "%s is a read-only system field", k)
			continue
		}
		f, ok := t.fields[k]
		if !ok {
			errs.add(loc, "unknown field")
			continue
		}
		v, msg := textValue(f, body[k])
		if msg != "" {
			errs.add(loc, "%s", msg)
			continue
		}
		if v == nil && f.Required {
			errs.add(loc, "is required and cannot be null")
			continue
		}
		vals[k] = v
	}
	if mode == ForCreate {
		for _, f := range t.Spec.Fields {
			if _, given := body[f.Name]; !given && f.Required && len(f.Default) == 0 {
				errs.add("body."+f.Name, "is required")
			}
		}
	}
	return vals, errs
}

// orderedColumns returns the columns of vals in definition order (id first), so the same
// set of fields always gives the same SQL text and reuses one prepared statement.
func (t *Table) orderedColumns(vals Values) []string {
	cols := make([]string, 0, len(vals))
	if _, ok := vals["id"]; ok {
		cols = append(cols, "id")
	}
	for _, f := range t.Spec.Fields {
		if _, ok := vals[f.Name]; ok {
			cols = append(cols, f.Name)
		}
	}
	return cols
}

func (t *Table) typeOf(col string) schemadef.FieldType {
	if f, ok := t.field(col); ok {
		return f.Type
	}
	return schemadef.TypeString
}

// Insert writes a new record with the given id; read it back with Get in the same request.
func (t *Table) Insert(id string, vals Values) Statement {
	v := Values{"id": &id}
	for k, x := range vals {
		if k != "id" {
			v[k] = x
		}
	}
	cols := t.orderedColumns(v)
	names := make([]string, len(cols))
	params := make([]string, len(cols))
	args := make([]any, len(cols))
	for i, c := range cols {
		names[i] = Ident(c)
		params[i] = cast(fmt.Sprintf("$%d", i+1), t.typeOf(c))
		args[i] = v[c]
	}
	return Statement{
		SQL:  fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", t.table, strings.Join(names, ", "), strings.Join(params, ", ")),
		Args: args,
	}
}

// Update sets the given fields of record id. With ifVersion > 0 it changes the row only at
// that version. It returns the new version, or no row when nothing matched. JSON fields are
// merged (RFC 7396), the others replaced.
func (t *Table) Update(id string, vals Values, ifVersion int64) Statement {
	cols := t.orderedColumns(vals)
	args := []any{id}
	sets := make([]string, 0, len(cols))
	for _, c := range cols {
		args = append(args, vals[c])
		p := cast(fmt.Sprintf("$%d", len(args)), t.typeOf(c))
		if t.typeOf(c) == schemadef.TypeJSON && vals[c] != nil {
			p = fmt.Sprintf("velocity.jsonb_merge_patch(%s, %s)", Ident(c), p)
		}
		sets = append(sets, Ident(c)+" = "+p)
	}
	if len(sets) == 0 {
		// An empty patch still honours If-Match and reports the current version.
		sets = append(sets, "id = id")
	}
	where := "id = $1::uuid"
	if ifVersion > 0 {
		args = append(args, ifVersion)
		where += fmt.Sprintf(" AND version = $%d::integer", len(args))
	}
	return Statement{
		SQL:  fmt.Sprintf("UPDATE %s SET %s WHERE %s RETURNING version", t.table, strings.Join(sets, ", "), where),
		Args: args,
	}
}

// Delete removes record id (at version ifVersion when > 0), returning its id when it did.
func (t *Table) Delete(id string, ifVersion int64) Statement {
	if ifVersion > 0 {
		return Statement{SQL: fmt.Sprintf("DELETE FROM %s WHERE id = $1::uuid AND version = $2::integer RETURNING id", t.table), Args: []any{id, ifVersion}}
	}
	return Statement{SQL: fmt.Sprintf("DELETE FROM %s WHERE id = $1::uuid RETURNING id", t.table), Args: []any{id}}
}

// Version reads the current version of record id, for telling 404 from 412.
func (t *Table) Version(id string) Statement {
	return Statement{SQL: fmt.Sprintf("SELECT version FROM %s WHERE id = $1::uuid", t.view), Args: []any{id}}
}
