package planner

import (
	"fmt"
	"strings"

	"github.com/velocitydev/velocity/internal/rules"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
)

// rowFilterPolicy names the restrictive policy of spec.access.rowFilter on the table and on
// its history.
const rowFilterPolicy = "velocity_row_filter"

// rowFilterSQL is the row filter of s for target; s must have been validated
// (rules.ValidateRowFilter), as Build's input always is.
func rowFilterSQL(s schemadef.Spec, target rules.Target) string {
	sql, errs := rules.RowFilterSQL(s, target)
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		panic(fmt.Sprintf("planner: the row filter of %s is not valid (%s): validate the definition with rules.Validate first",
			s.Key(), strings.Join(msgs, "; ")))
	}
	return sql
}

// addRowFilter adds the row filter as a RESTRICTIVE policy: Postgres ANDs it with the
// permissive role policies, so a row must pass both. On the table it covers every command
// (USING for the rows a statement sees, WITH CHECK for the rows it writes); on history it
// covers reads, with the record read from each event's image.
func (b *builder) addRowFilter(s schemadef.Spec) {
	if s.Access.RowFilter == "" {
		return
	}
	main := rowFilterSQL(s, rules.MainTable)
	b.add("layer 4: the row filter, ANDed with every other policy",
		"CREATE POLICY %s ON %s AS RESTRICTIVE FOR ALL USING (%s) WITH CHECK (%s)", rowFilterPolicy, b.table, main, main)
	b.add("layer 4 on history: events of the records the row filter lets the actor see",
		"CREATE POLICY %s ON %s AS RESTRICTIVE FOR SELECT USING (%s)", rowFilterPolicy, b.history(), rowFilterSQL(s, rules.HistoryImage))
}

// dropRowFilter removes the row filter's policies. Postgres refuses to change the type of, or
// drop, a column a policy uses, so when rowFilterChanged reports a change that comes with
// field changes, the policies go before the ALTER TABLE steps and come back after them.
func (b *builder) dropRowFilter() {
	b.add("the row filter is rebuilt", "DROP POLICY IF EXISTS %s ON %s", rowFilterPolicy, b.table)
	b.add("", "DROP POLICY IF EXISTS %s ON %s", rowFilterPolicy, b.history())
}

// alterRowFilter rebuilds the row filter's policies when they change from old to next.
func (b *builder) alterRowFilter(old, next schemadef.Spec) {
	if !rowFilterChanged(old, next) {
		return
	}
	b.dropRowFilter()
	b.addRowFilter(next)
}

// rowFilterChanged reports whether the row filter's policies must be rebuilt: their SQL
// differs (the filter's text, or the type or history redaction of a field it reads), or a
// column of the table is dropped or changes type, which Postgres refuses while a policy uses
// it. The last test does not know which columns the filter reads, so it may rebuild the
// policies when nothing they read changed; that costs two cheap statements.
func rowFilterChanged(old, next schemadef.Spec) bool {
	if old.Access.RowFilter == "" && next.Access.RowFilter == "" {
		return false
	}
	for _, target := range []rules.Target{rules.MainTable, rules.HistoryImage} {
		// The applied version was valid when it was applied; if the rules have since
		// tightened, rebuilding is the safe answer.
		was, errs := rules.RowFilterSQL(old, target)
		if len(errs) > 0 || was != rowFilterSQL(next, target) {
			return true
		}
	}
	if old.Access.RowFilter == "" {
		return false
	}
	for _, of := range old.Fields {
		nf, ok := next.Field(of.Name)
		if !ok || columnType(nf.Type) != columnType(of.Type) {
			return true
		}
	}
	return false
}

// RowFilterSteps returns the steps that install next's row filter on a table that already
// exists: addRowFilter's when old is nil, alterRowFilter's otherwise. It is for tests and tools
// that work on one table's policies; create and alter plan the same steps within a whole plan.
func RowFilterSteps(old *schemadef.Spec, next schemadef.Spec) []Step {
	names := schemadef.NamesOf(next)
	b := &builder{
		names: names,
		table: sqlbuild.Qualified(names.Schema, names.Table),
		view:  sqlbuild.Qualified(names.Schema, names.View),
	}
	if old == nil {
		b.addRowFilter(next)
	} else {
		b.alterRowFilter(*old, next)
	}
	return b.plan.Steps
}
