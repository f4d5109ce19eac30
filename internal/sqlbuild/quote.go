package sqlbuild

import (
	"strings"
)

// Ident quotes one identifier. Callers pass only names already checked against a
// SchemaDefinition; quoting is the second line of defence, not the first.
func Ident(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// Qualified quotes schema.name.
func Qualified(schema, name string) string {
	return Ident(schema) + "." + Ident(name)
}

// Literal quotes a string constant for DDL, where parameters are not allowed (defaults,
// CHECK constraints). With standard_conforming_strings on (the default since 9.1), doubling
// the quote is the whole rule; a NUL byte cannot be stored in text at all, so it is dropped.
func Literal(s string) string {
	s = strings.ReplaceAll(s, "\x00", "")
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// LiteralList quotes each string and joins them with ", ".
func LiteralList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = Literal(v)
	}
	return strings.Join(q, ", ")
}
