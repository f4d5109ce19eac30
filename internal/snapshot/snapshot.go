// Package snapshot encodes the records of a point-in-time snapshot as NDJSON or Parquet. The
// encoders are fed one record at a time and write as they go, so memory stays bounded
// whatever the number of records.
package snapshot

import (
	"github.com/velocitydev/velocity/internal/schemadef"
)

// Format is an output format of a snapshot.
type Format string

// The formats of GET P/snapshot?format=.
const (
	NDJSON  Format = "ndjson"
	Parquet Format = "parquet"
)

// Formats lists every format, the default first.
var Formats = []Format{NDJSON, Parquet}

// ContentType is the media type of the format.
func (f Format) ContentType() string {
	if f == Parquet {
		return "application/vnd.apache.parquet"
	}
	return "application/x-ndjson"
}

// Encoder writes the records of one snapshot.
type Encoder interface {
	// Write encodes one record from the raw text of its values (nil is null). The NDJSON
	// encoder takes one value, the record's JSON; the Parquet encoder one per column.
	Write(values [][]byte) error
	// Close writes what is still buffered and the format's trailer. Call it only when every
	// Write succeeded: output cut short by an error must stay visibly incomplete (a Parquet
	// file without its footer), so drop a failed encoder instead.
	Close() error
}

// Kind is how a column is stored in Parquet, through its Arrow type.
type Kind int

// Kinds of columns; docs/snapshot.md holds the table from field types to these.
const (
	KindString    Kind = iota // utf8
	KindInt32                 // int32
	KindInt64                 // int64
	KindFloat64               // float64
	KindBool                  // bool
	KindTimestamp             // timestamp[us, tz=UTC]
	KindDate                  // date32
)

// Column is one column of a snapshot.
type Column struct {
	Name string
	Kind Kind
	// Nullable is false for the system fields, which every record has.
	Nullable bool
}

// systemKinds are the kinds of the system fields.
var systemKinds = map[string]Kind{
	"id": KindString, "version": KindInt32, "created_at": KindTimestamp, "updated_at": KindTimestamp,
	"created_by": KindString, "updated_by": KindString,
}

// Columns are the columns of a snapshot of spec, in the order of sqlbuild's SnapshotColumns:
// the system fields in schemadef.SystemFields order, then the user fields in definition order.
func Columns(spec schemadef.Spec) []Column {
	cols := make([]Column, 0, len(schemadef.SystemFields)+len(spec.Fields))
	for _, name := range schemadef.SystemFields {
		cols = append(cols, Column{Name: name, Kind: systemKinds[name]})
	}
	for _, f := range spec.Fields {
		cols = append(cols, Column{Name: f.Name, Kind: KindOf(f.Type), Nullable: true})
	}
	return cols
}

// KindOf is the kind of a user field type. A decimal is a string: Velocity's decimal is
// Postgres numeric without a declared precision or scale (up to 1000 digits), which no fixed
// decimal128(p, s) holds without rounding or failing, and a snapshot must not alter a value.
// JSON is its text, and a uuid its canonical text form.
func KindOf(t schemadef.FieldType) Kind {
	switch t {
	case schemadef.TypeInteger:
		return KindInt64
	case schemadef.TypeNumber:
		return KindFloat64
	case schemadef.TypeBoolean:
		return KindBool
	case schemadef.TypeTimestamp:
		return KindTimestamp
	case schemadef.TypeDate:
		return KindDate
	}
	return KindString
}
