package sqlbuild

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/velocitydev/velocity/internal/schemadef"
)

// SnapshotTimeout bounds one snapshot statement. API connections stop statements after 30s;
// a snapshot of millions of records, streamed to a client that reads at its own pace, needs
// minutes, but must not hold a connection and its transaction open without limit.
const SnapshotTimeout = 15 * time.Minute

// SnapshotSettings prepares the rest of the request's transaction (set_config with is_local,
// so nothing outlives it) for one snapshot statement queued after it in the same batch:
//   - statement_timeout becomes d. Postgres arms the timeout afresh for each statement of a
//     pipeline, with the value current when that statement starts.
//   - enable_sort off keeps the planner on the index walk of snapshotLatest even where it
//     guesses that sorting the whole history would be cheaper: that sort would hold back the
//     first byte until all of history is sorted and spill it to temporary files.
//   - jit off: a streaming scan gains little from it, and compiling the expressions of a wide
//     definition delays the first byte by seconds.
func SnapshotSettings(d time.Duration) Statement {
	return Statement{
		SQL:  "SELECT set_config('statement_timeout', $1, true), set_config('enable_sort', 'off', true), set_config('jit', 'off', true)",
		Args: []any{fmt.Sprintf("%dms", d.Milliseconds())},
	}
}

// snapshotLatest is the latest event of every record at or before $1 (timestamptz; NULL means
// no bound: the current state), with its op and raw image.
//
// It walks the (record_id, at, event_id) index backwards, partitions merged on the same order
// (Merge Append) and those after $1 pruned when the statement starts. Every history row at or
// before $1 is read once, in an order in which DISTINCT ON keeps the first row of each record,
// so Postgres streams records out as it reads them and never sorts or hashes the history.
// Records therefore come out in descending id order.
func (t *Table) snapshotLatest() string {
	return fmt.Sprintf("SELECT DISTINCT ON (h.record_id) h.op, h.image, h.redacted FROM %s h"+
		" WHERE h.at <= coalesce($1::timestamptz, 'infinity')"+
		" ORDER BY h.record_id DESC, h.at DESC, h.event_id DESC", t.HistoryView())
}

// snapshotFrom keeps, from snapshotLatest, the records that existed at $1: their latest event
// is not a delete or a purge. The filter stays outside DISTINCT ON; inside, it would bring back
// the version before a delete.
func (t *Table) snapshotFrom() string {
	return fmt.Sprintf("(%s) s WHERE s.op <> 'DELETE' AND s.op <> 'PURGE'", t.snapshotLatest())
}

// snapshotFields are the fields of a snapshot record: the system fields in
// schemadef.SystemFields order, then the user fields in definition order.
func (t *Table) snapshotFields() []schemadef.Field {
	out := make([]schemadef.Field, 0, len(schemadef.SystemFields)+len(t.Spec.Fields))
	for _, name := range schemadef.SystemFields {
		f, _ := t.field(name)
		out = append(out, f)
	}
	return append(out, t.Spec.Fields...)
}

// snapshotValue is the jsonb of field f in history image s.image: SQL NULL where the image
// lacks it and for a history.redact field, as in HistoryImage.
func (t *Table) snapshotValue(f schemadef.Field) string { return t.imageValue("s", f) }

// imageValue is field f of alias.image, or NULL when the field is redacted now or was when the
// event was written (alias.redacted lists the keys that hold a keyed hash, not a value).
func (t *Table) imageValue(alias string, f schemadef.Field) string {
	if t.redacted(f) {
		return "NULL::jsonb"
	}
	if slices.Contains(schemadef.SystemFields, f.Name) {
		return alias + ".image -> " + Literal(f.Name) // never redacted
	}
	return fmt.Sprintf("CASE WHEN %s.redacted = '{}' OR NOT %s.redacted @> ARRAY[%s] THEN %s.image -> %s END",
		alias, alias, Literal(f.Name), alias, Literal(f.Name))
}

// redacted reports whether history keeps only a keyed hash of f, which no read shows.
func (t *Table) redacted(f schemadef.Field) bool {
	return slices.Contains(t.Spec.History.Redact, f.Name)
}

// maxBuildPairs keeps each jsonb_build_object call within Postgres's 100 arguments.
const maxBuildPairs = 50

// imageRecord is HistoryImage: every current field of alias.image, null where the image lacks
// it or the field is redacted. It decides how long a snapshot of a million records takes, so
// it avoids an aggregate over unnest (several times dearer per record):
//   - an image with exactly the current fields (any written since the definition last changed
//     its fields) and no redacted field is the record already: it is taken as it is, with the
//     fields redacted now set to null;
//   - any other image is rebuilt with jsonb_build_object, in one call per 50 fields joined
//     with || for a wide definition.
func (t *Table) imageRecord(alias string) string {
	img := alias + ".image"
	fields := t.snapshotFields()
	names := make([]string, len(fields))
	var redacted []string
	for i, f := range fields {
		names[i] = f.Name
		if t.redacted(f) {
			redacted = append(redacted, Literal(f.Name)+", NULL::jsonb")
		}
	}
	same := img
	if len(redacted) > 0 {
		same = img + " || jsonb_build_object(" + strings.Join(redacted, ", ") + ")"
	}
	keys := "ARRAY[" + LiteralList(names) + "]::text[]"
	var parts []string
	for start := 0; start < len(fields); start += maxBuildPairs {
		chunk := fields[start:min(start+maxBuildPairs, len(fields))]
		args := make([]string, 0, 2*len(chunk))
		for _, f := range chunk {
			args = append(args, Literal(f.Name), t.imageValue(alias, f))
		}
		parts = append(parts, "jsonb_build_object("+strings.Join(args, ", ")+")")
	}
	return fmt.Sprintf("CASE WHEN %s.redacted = '{}' AND %s ?& %s AND %s - %s = '{}'::jsonb THEN %s ELSE %s END",
		alias, img, keys, img, keys, same, strings.Join(parts, " || "))
}

// SnapshotJSON streams every record as it was at `at` (a time.Time, or nil for now): one row
// per record, in one text column its JSON, the same object HistoryImage makes. It reads the
// history view, so the history table's RLS policy applies (a caller without "read" and
// "history" gets no rows) and so do the field rules. Queue SnapshotSettings before it.
func (t *Table) SnapshotJSON(at any) Statement {
	return Statement{SQL: "SELECT (" + t.imageRecord("s") + ")::text FROM " + t.snapshotFrom(), Args: []any{at}}
}

// SnapshotColumns is SnapshotJSON with one text column per field, the system fields
// (schemadef.SystemFields) first, then the user fields in definition order: a json field as
// its JSON text, any other field as the text of its JSON value (a string unquoted), NULL for
// null. Typed encoders convert the text themselves: Postgres is spared the casts, and an image
// written before a type change cannot fail the stream halfway.
func (t *Table) SnapshotColumns(at any) Statement {
	fields := t.snapshotFields()
	cols := make([]string, len(fields))
	for i, f := range fields {
		switch {
		case t.redacted(f):
			cols[i] = "NULL::text"
		case f.Type == schemadef.TypeJSON:
			cols[i] = "nullif(" + t.snapshotValue(f) + ", 'null'::jsonb)::text"
		case slices.Contains(schemadef.SystemFields, f.Name):
			cols[i] = "s.image ->> " + Literal(f.Name)
		default:
			// A value stored as a keyed hash (redacted when it was written) is null.
			cols[i] = fmt.Sprintf("CASE WHEN s.redacted = '{}' OR NOT s.redacted @> ARRAY[%s] THEN s.image ->> %s END", Literal(f.Name), Literal(f.Name))
		}
	}
	return Statement{SQL: "SELECT " + strings.Join(cols, ", ") + " FROM " + t.snapshotFrom(), Args: []any{at}}
}
