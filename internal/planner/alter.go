package planner

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"sort"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
)

// alter plans the change from old to next. Each field is compared on its own; the views,
// triggers, policies and grants are rebuilt only when what they depend on changed.
func (b *builder) alter(old, next schemadef.Spec) {
	fieldsChanged := false
	for _, of := range old.Fields {
		if _, ok := next.Field(of.Name); !ok {
			fieldsChanged = true
		}
	}
	for _, nf := range next.Fields {
		if of, ok := old.Field(nf.Name); !ok || !reflect.DeepEqual(of, nf) {
			fieldsChanged = true
		}
	}
	if fieldsChanged {
		// The view names every column, so it goes first and comes back last.
		b.add("the read view is rebuilt after the field changes", "DROP VIEW IF EXISTS %s", b.view)
	}
	// So do the row filter's policies, which Postgres will not let a column change under.
	filterChanged := rowFilterChanged(old, next)
	if filterChanged {
		b.dropRowFilter()
	}

	for _, of := range old.Fields {
		if _, ok := next.Field(of.Name); !ok {
			b.breaking("field %q is dropped with its data", of.Name)
			b.add(fmt.Sprintf("drop field %q", of.Name), "ALTER TABLE %s DROP COLUMN %s", b.table, sqlbuild.Ident(of.Name))
		}
	}
	for _, nf := range next.Fields {
		of, ok := old.Field(nf.Name)
		if !ok {
			b.addField(nf)
			continue
		}
		b.changeField(of, nf)
	}

	b.alterFieldWriter(old, next)
	if fieldsChanged {
		b.addView(next)
	} else if view := b.viewSQL(next, true); view != b.viewSQL(old, true) {
		// Only the field rules changed: the columns stay, so the view is replaced in place.
		b.add("the field rules of the read view change", "%s", view)
	}
	rolesChanged := !reflect.DeepEqual(old.Access.Roles, next.Access.Roles)
	if rolesChanged {
		b.dropPolicies()
		b.addPolicies(next.Access)
	}
	b.alterHistory(old, next)
	if filterChanged {
		b.addRowFilter(next)
	}
	if fieldsChanged || rolesChanged || !slices.Equal(b.grantsOf(old), b.grantsOf(next)) {
		// A rebuilt view has lost its grants; regrant everything for every role.
		b.addGrants(&old, next)
	}
}

// grantsOf is what addGrants grants for s, to tell whether a change of field rules changes the
// columns a role may read.
func (b *builder) grantsOf(s schemadef.Spec) []Step {
	g := &builder{names: b.names, table: b.table, view: b.view}
	g.addGrants(nil, s)
	return g.plan.Steps
}

func (b *builder) addField(f schemadef.Field) {
	if f.Required && defaultExpr(f) == "" {
		b.breaking("field %q is added as required without a default, which fails if the table has rows", f.Name)
	}
	b.add(fmt.Sprintf("add field %q", f.Name), "ALTER TABLE %s ADD COLUMN %s", b.table, columnDef(f))
	b.addFieldObjects(f)
}

// widening lists the type changes that keep every existing value. integer -> number is not
// one: a double keeps 53 bits, so large integers would silently change.
var widening = map[[2]schemadef.FieldType]bool{
	{schemadef.TypeString, schemadef.TypeText}:     true,
	{schemadef.TypeEnum, schemadef.TypeString}:     true,
	{schemadef.TypeEnum, schemadef.TypeText}:       true,
	{schemadef.TypeInteger, schemadef.TypeDecimal}: true,
	{schemadef.TypeNumber, schemadef.TypeDecimal}:  true,
	{schemadef.TypeDate, schemadef.TypeTimestamp}:  true,
}

func (b *builder) changeField(of, nf schemadef.Field) {
	col := sqlbuild.Ident(nf.Name)
	retyped := columnType(of.Type) != columnType(nf.Type)
	oldCheck, newCheck := checkExpr(of), checkExpr(nf)
	if oldCheck != newCheck && oldCheck != "" {
		b.add(fmt.Sprintf("field %q: constraint changes", nf.Name), "ALTER TABLE %s DROP CONSTRAINT %s", b.table, b.constraintName(nf.Name, "check"))
	}
	if of.Type != nf.Type {
		if !widening[[2]schemadef.FieldType{of.Type, nf.Type}] {
			b.breaking("field %q changes type from %s to %s, which can fail or lose data", nf.Name, of.Type, nf.Type)
		}
		if retyped {
			// ALTER TYPE rebuilds the column's indexes and converts its default without USING:
			// a trigram index cannot be rebuilt on a non-text type, nor a text default cast.
			if needsTrigram(of) && !needsTrigram(nf) {
				b.add(fmt.Sprintf("field %q: no trigram index", nf.Name), "DROP INDEX %s", b.indexName(nf.Name, "trgm"))
			}
			if defaultExpr(of) != "" {
				b.add(fmt.Sprintf("field %q: no default while the type changes", nf.Name), "ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT", b.table, col)
			}
			b.add(fmt.Sprintf("field %q: type %s -> %s", nf.Name, of.Type, nf.Type),
				"ALTER TABLE %s ALTER COLUMN %s TYPE %s USING %s::%s", b.table, col, columnType(nf.Type), col, columnType(nf.Type))
		}
	}
	if oldCheck != newCheck && newCheck != "" {
		if reason := narrowing(of, nf); reason != "" {
			b.breaking("field %q: %s", nf.Name, reason)
		}
		b.add("", "ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s)", b.table, b.constraintName(nf.Name, "check"), newCheck)
	}
	if of.Required != nf.Required {
		if nf.Required {
			b.breaking("field %q becomes required, which fails if a row has no value", nf.Name)
			b.add(fmt.Sprintf("field %q becomes required", nf.Name), "ALTER TABLE %s ALTER COLUMN %s SET NOT NULL", b.table, col)
		} else {
			b.add(fmt.Sprintf("field %q becomes optional", nf.Name), "ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL", b.table, col)
		}
	}
	if !bytes.Equal(of.Default, nf.Default) || of.Type != nf.Type {
		if d := defaultExpr(nf); d != "" {
			b.add(fmt.Sprintf("field %q: default", nf.Name), "ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s", b.table, col, d)
		} else if defaultExpr(of) != "" && !retyped {
			b.add(fmt.Sprintf("field %q: no default", nf.Name), "ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT", b.table, col)
		}
	}
	if of.Unique != nf.Unique {
		if nf.Unique {
			b.add(fmt.Sprintf("field %q becomes unique", nf.Name), "ALTER TABLE %s ADD CONSTRAINT %s UNIQUE (%s)", b.table, b.constraintName(nf.Name, "key"), col)
		} else {
			b.add(fmt.Sprintf("field %q is no longer unique", nf.Name), "ALTER TABLE %s DROP CONSTRAINT %s", b.table, b.constraintName(nf.Name, "key"))
		}
	}
	// A type change rebuilds the column's indexes by itself; only their presence is planned.
	if needsBtree(of) != needsBtree(nf) {
		if needsBtree(nf) {
			b.add(fmt.Sprintf("field %q: btree index", nf.Name), "CREATE INDEX %s ON %s (%s)", b.constraintName(nf.Name, "idx"), b.table, col)
		} else {
			b.add(fmt.Sprintf("field %q: no btree index", nf.Name), "DROP INDEX %s", b.indexName(nf.Name, "idx"))
		}
	}
	if needsTrigram(of) != needsTrigram(nf) {
		if needsTrigram(nf) {
			b.add(fmt.Sprintf("field %q: trigram index", nf.Name), "CREATE INDEX %s ON %s USING gin (%s velocity_ext.gin_trgm_ops)", b.constraintName(nf.Name, "trgm"), b.table, col)
		} else if !retyped {
			b.add(fmt.Sprintf("field %q: no trigram index", nf.Name), "DROP INDEX %s", b.indexName(nf.Name, "trgm"))
		}
	}
}

// narrowing explains why a new CHECK can reject existing rows, or returns "" when every
// value the old definition allowed is still allowed.
func narrowing(of, nf schemadef.Field) string {
	if nf.Type == schemadef.TypeEnum {
		if of.Type != schemadef.TypeEnum {
			return fmt.Sprintf("becomes an enum of %v", nf.Values)
		}
		keep := map[string]bool{}
		for _, v := range nf.Values {
			keep[v] = true
		}
		var dropped []string
		for _, v := range of.Values {
			if !keep[v] {
				dropped = append(dropped, v)
			}
		}
		sort.Strings(dropped)
		if len(dropped) > 0 {
			return fmt.Sprintf("enum values %v are dropped", dropped)
		}
		return ""
	}
	if nf.MaxLength == nil {
		return ""
	}
	if of.Type == schemadef.TypeEnum {
		for _, v := range of.Values {
			if len([]rune(v)) > *nf.MaxLength {
				return fmt.Sprintf("maxLength %d is shorter than the old enum value %q", *nf.MaxLength, v)
			}
		}
		return ""
	}
	if of.MaxLength == nil || *nf.MaxLength < *of.MaxLength {
		return fmt.Sprintf("maxLength shrinks to %d", *nf.MaxLength)
	}
	return ""
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
