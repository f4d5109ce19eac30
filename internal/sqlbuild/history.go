package sqlbuild

import (
	"fmt"
	"strings"
)

// History is the SQL over one table's history. Reads go through the history view
// (schemadef.Names.HistoryView), as the API role: the history table's RLS policy (read and
// history verbs) picks the rows and the view applies the field rules (layers 5 and 6) to each
// image, so a field the actor may not read is missing from it or masked. Only restore reads
// the table itself (History), to write back values rather than their masks.
func (t *Table) History() string { return Qualified(t.Names.Schema, t.Names.History) }

// HistoryView is the view history is read through: the history table's columns, with the
// field rules of the reading actor applied to the image.
func (t *Table) HistoryView() string { return Qualified(t.Names.Schema, t.Names.HistoryView) }

// HistoryImage is the SQL expression that turns the image column of history row alias into
// a record of the current definition (jsonb): system fields and current fields, null for a
// field the image lacks (added since, or hidden from the actor by the history view) and for
// every history.redact field, whose stored value is only a keyed hash.
func (t *Table) HistoryImage(alias string) string { return t.imageRecord(alias) }

// historyEventColumns are the columns of one event as the API shows it, from alias h.
func (t *Table) historyEventColumns() string {
	return strings.Join([]string{
		"h.event_id", "h.at", "h.op", "h.version", "h.actor", "h.reason", "h.request_id", t.eventImage,
	}, ", ")
}

// HistoryAt reads the latest event of record $1 at or before $2 (timestamptz): event id,
// at, op, version, actor, reason, request id and the image as a record. No row means the
// record did not exist at $2; op DELETE means it had been deleted by then.
func (t *Table) HistoryAt(id string, at any) Statement {
	return Statement{
		SQL: fmt.Sprintf("SELECT %s FROM %s h WHERE h.record_id = $1::uuid AND h.at <= $2::timestamptz ORDER BY h.at DESC, h.event_id DESC LIMIT 1",
			t.eventColumns, t.HistoryView()),
		Args: []any{id, at},
	}
}

// HistoryPage lists the events of record $1 newest first, within [since, until] when given,
// after the keyset position (at, event_id) when given, limit+1 rows so the caller can tell
// whether there is a next page.
func (t *Table) HistoryPage(id string, since, until, afterAt any, afterEvent *int64, limit int) Statement {
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT %s FROM %s h WHERE h.record_id = $1::uuid", t.eventColumns, t.HistoryView())
	args := []any{id}
	add := func(cond string, v any) {
		args = append(args, v)
		fmt.Fprintf(&b, " AND "+cond, len(args))
	}
	if since != nil {
		add("h.at >= $%d::timestamptz", since)
	}
	if until != nil {
		add("h.at <= $%d::timestamptz", until)
	}
	if afterAt != nil && afterEvent != nil {
		args = append(args, afterAt, *afterEvent)
		fmt.Fprintf(&b, " AND (h.at, h.event_id) < ($%d::timestamptz, $%d::bigint)", len(args)-1, len(args))
	}
	args = append(args, limit+1)
	fmt.Fprintf(&b, " ORDER BY h.at DESC, h.event_id DESC LIMIT $%d", len(args))
	return Statement{SQL: b.String(), Args: args}
}

// LastVersion reads the highest version record $1 ever had, for recreating a deleted record.
func (t *Table) LastVersion(id string) Statement {
	return Statement{
		SQL:  fmt.Sprintf("SELECT coalesce(max(h.version), 0) FROM %s h WHERE h.record_id = $1::uuid", t.HistoryView()),
		Args: []any{id},
	}
}

// HistoryRawAt reads, beside HistoryAt's event, its image as stored (redacted fields as their
// keyed hashes; the field rules of the history view applied) and the keys of the image that
// are redacted, for diff and restore. The raw image never leaves the server.
func (t *Table) HistoryRawAt(id string, at any) Statement {
	return Statement{
		SQL: fmt.Sprintf(`SELECT %s, h.image, h.redacted
FROM %s h WHERE h.record_id = $1::uuid AND h.at <= $2::timestamptz ORDER BY h.at DESC, h.event_id DESC LIMIT 1`,
			t.eventColumns, t.HistoryView()),
		Args: []any{id, at},
	}
}

// restoreSource is the image of history event (record $1, at $2, event $3), cut down to cols
// and typed as a row of the table by jsonb_populate_record, the inverse of the to_jsonb that
// stored it. Only cols are cast, so a redacted field's hash or an old value of a field
// whose type changed since never reaches a column it is not restored to. It reads the history
// table, not the view: a field masked for the actor is restored to its value, not its mask
// (and the field-write trigger still decides whether the actor may write it).
func (t *Table) restoreSource(cols []string) string {
	var parts []string
	for start := 0; start < len(cols); start += maxBuildPairs {
		chunk := cols[start:min(start+maxBuildPairs, len(cols))]
		args := make([]string, 0, 2*len(chunk))
		for _, c := range chunk {
			args = append(args, Literal(c), "h.image -> "+Literal(c))
		}
		parts = append(parts, "jsonb_build_object("+strings.Join(args, ", ")+")")
	}
	subset := "'{}'::jsonb"
	if len(parts) > 0 {
		subset = strings.Join(parts, " || ")
	}
	return fmt.Sprintf("FROM %s h, jsonb_populate_record(NULL::%s, %s) AS r WHERE h.record_id = $1::uuid AND h.at = $2::timestamptz AND h.event_id = $3::bigint",
		t.History(), t.table, subset)
}

// RestoreUpdate writes fields (user fields the caller found restorable: in the image, not
// redacted) of an event's image back over the live record at version currentVersion, through
// the normal write path (policies, triggers; the caller sets velocity.write_op so history
// records a RESTORE). It returns the new version, or no row when the record changed meanwhile.
func (t *Table) RestoreUpdate(id string, at any, eventID, currentVersion int64, fields []string) Statement {
	if len(fields) == 0 {
		return Statement{SQL: fmt.Sprintf("UPDATE %s SET id = id WHERE id = $1::uuid AND version = $4::integer AND $2::timestamptz IS NOT NULL AND $3::bigint IS NOT NULL RETURNING version", t.table),
			Args: []any{id, at, eventID, currentVersion}}
	}
	cols, src := t.restoreTargets(fields)
	return Statement{
		SQL: fmt.Sprintf("UPDATE %s SET (%s) = (SELECT %s %s) WHERE id = $1::uuid AND version = $4::integer RETURNING version",
			t.table, strings.Join(cols, ", "), strings.Join(src, ", "), t.restoreSource(fields)),
		Args: []any{id, at, eventID, currentVersion},
	}
}

// RestoreInsert recreates a deleted record from fields of an event's image, with the version
// after the last it had and its original created_at and created_by.
func (t *Table) RestoreInsert(id string, at any, eventID, version int64, fields []string) Statement {
	all := append([]string{"id", "version", "created_at", "created_by"}, fields...)
	cols, src := t.restoreTargets(all)
	src[1] = "$4::integer"
	return Statement{
		SQL:  fmt.Sprintf("INSERT INTO %s (%s) SELECT %s %s RETURNING version", t.table, strings.Join(cols, ", "), strings.Join(src, ", "), t.restoreSource(all)),
		Args: []any{id, at, eventID, version},
	}
}

// restoreTargets quotes fields as columns and as values of the restore source r.
func (t *Table) restoreTargets(fields []string) (cols, src []string) {
	for _, f := range fields {
		cols = append(cols, Ident(f))
		src = append(src, "r."+Ident(f))
	}
	return cols, src
}

// SetRestore labels the writes of the transaction as restores (velocity.current_write_op()).
func SetRestore() Statement {
	return Statement{SQL: "SELECT set_config('velocity.write_op', 'RESTORE', true)"}
}
