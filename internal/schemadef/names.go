package schemadef

import (
	"fmt"
	"sort"
)

// MaxIdentifierLength is Postgres's limit on an identifier, in bytes (NAMEDATALEN-1).
const MaxIdentifierLength = 63

// Names are the Postgres objects a definition maps to. The rules, documented in
// docs/schema-definition.md#naming, are collision-free because org, app, domain and object may not contain a
// double underscore or end with one, so "__" only ever appears as the separator:
//
//	schema:       {org}__{app}
//	table:        {domain}__{object}
//	history:      {domain}__{object}__history, partitioned by month into
//	              {domain}__{object}__history_YYYY_MM and {domain}__{object}__history_default
//	writer:       {domain}__{object}__history_write (the trigger function that writes history)
//	view:         {domain}__{object}__read
//	history view: {domain}__{object}__history_read (history with the field rules applied)
//	field writer: {domain}__{object}__field_write (the trigger function of field write rules)
//	roles:        velocity_r_{role}
type Names struct {
	Schema  string
	Table   string
	History string
	// HistoryDefault is the default partition of History; monthly partitions have names of
	// the same length ({History}_YYYY_MM).
	HistoryDefault string
	HistoryWriter  string
	View           string
	// HistoryView is the history as the API and BI logins read it: every column of History,
	// with the image masked for the reading actor (layers 5 and 6).
	HistoryView string
	// FieldWriter is the trigger function that enforces the field write rules (layer 5); it
	// exists only while some field has write roles.
	FieldWriter string
}

// NamesOf returns the Postgres names of spec. Call Validate first: NamesOf does not check.
func NamesOf(s Spec) Names {
	table := s.Domain + "__" + s.Object
	return Names{
		Schema:         s.Org + "__" + s.App,
		Table:          table,
		History:        table + "__history",
		HistoryDefault: table + "__history_default",
		HistoryWriter:  table + "__history_write",
		View:           table + "__read",
		HistoryView:    table + "__history_read",
		FieldWriter:    table + "__field_write",
	}
}

// TableObjects lists the names derived from the table name, for the length check. The longest
// is HistoryDefault (monthly partitions are as long), so a table whose HistoryDefault fits has
// every one of them fit.
func (n Names) TableObjects() []string {
	return []string{n.Table, n.History, n.HistoryDefault, n.HistoryWriter, n.View, n.HistoryView, n.FieldWriter}
}

// Key is the unique registry key of a definition: org.app.domain.object.
func (s Spec) Key() string {
	return s.Org + "." + s.App + "." + s.Domain + "." + s.Object
}

// Path is the REST route prefix of a definition, P in SPEC.md.
func (s Spec) Path() string {
	return "/" + s.Org + "/" + s.App + "/" + s.Domain + "/" + s.Object
}

// RoleName is the Postgres group role that a Velocity role maps to.
func RoleName(role string) string { return "velocity_r_" + role }

// checkNameLengths reports the first of names longer than Postgres allows.
func checkNameLengths(names ...string) error {
	for _, name := range names {
		if len(name) > MaxIdentifierLength {
			return fmt.Errorf("derived Postgres name %q is %d bytes, over the limit of %d", name, len(name), MaxIdentifierLength)
		}
	}
	return nil
}

func sortStrings(s []string) { sort.Strings(s) }

// The suffixes of the index and constraint names the planner creates for a field.
const (
	IndexSuffixUnique   = "key"   // unique constraint
	IndexSuffixBtree    = "idx"   // btree index for filter and sort
	IndexSuffixTrigram  = "trgm"  // pg_trgm index, search tier 1
	IndexSuffixCheck    = "check" // check constraint (enum values, maxLength)
	IndexSuffixFullText = "fts"   // full-text index, search tier 2
)

// IndexSuffixes lists every suffix; Validate checks that each one fits with every field.
var IndexSuffixes = []string{IndexSuffixUnique, IndexSuffixBtree, IndexSuffixTrigram,
	IndexSuffixCheck, IndexSuffixFullText}

// IndexName is the name of an index or constraint on a field: {table}__{field}__{suffix}.
// It is unique per table because no part may contain "__" (field names may end with "_", but
// no suffix starts with one).
func IndexName(n Names, field, suffix string) string {
	return n.Table + "__" + field + "__" + suffix
}
