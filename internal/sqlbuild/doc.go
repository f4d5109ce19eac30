// Package sqlbuild is the one builder of per-schema SQL: identifiers are checked against the
// SchemaDefinition and quoted, and every value travels as a parameter.
package sqlbuild
