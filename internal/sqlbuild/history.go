package sqlbuild

import (
	"fmt"
	"strings"

	"github.com/velocitydev/velocity/internal/schemadef"
)

// History is the SQL over one table's history (schemadef.Names.History). Every read runs as
// the API role, so the history table's RLS policy (read and history verbs) applies.
func (t *Table) History() string { return Qualified(t.Names.Schema, t.Names.History) }

// HistoryImage is the SQL expression that turns the image column of history row alias into
// a record of the current definition (jsonb): system fields and current fields, null for a
// field the image lacks and for every history.redact field.
func (t *Table) HistoryImage(alias string) string {
	fields := append([]string{}, schemadef.SystemFields...)
	for _, f := range t.Spec.Fields {
		fields = append(fields, f.Name)
	}
	redacted := "'{}'::text[]"
	if len(t.Spec.History.Redact) > 0 {
		redacted = "ARRAY[" + LiteralList(t.Spec.History.Redact) + "]::text[]"
	}
	return fmt.Sprintf("velocity.history_image(%s.image, ARRAY[%s]::text[], %s)", alias, LiteralList(fields), redacted)
}

// historyEventColumns are the columns of one event as the API shows it, from alias h.
func (t *Table) historyEventColumns() string {
	return strings.Join([]string{
		"h.event_id", "h.at", "h.op", "h.version", "h.actor", "h.reason", "h.request_id", t.HistoryImage("h"),
	}, ", ")
}

// HistoryAt reads the latest event of record $1 at or before $2 (timestamptz): event id,
// at, op, version, actor, reason, request id and the image as a record. No row means the
// record did not exist at $2; op DELETE means it had been deleted by then.
func (t *Table) HistoryAt(id string, at any) Statement {
	return Statement{
		SQL: fmt.Sprintf("SELECT %s FROM %s h WHERE h.record_id = $1::uuid AND h.at <= $2::timestamptz ORDER BY h.at DESC, h.event_id DESC LIMIT 1",
			t.historyEventColumns(), t.History()),
		Args: []any{id, at},
	}
}

// HistoryPage lists the events of record $1 newest first, within [since, until] when given,
// after the keyset position (at, event_id) when given, limit+1 rows so the caller can tell
// whether there is a next page.
func (t *Table) HistoryPage(id string, since, until, afterAt any, afterEvent *int64, limit int) Statement {
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT %s FROM %s h WHERE h.record_id = $1::uuid", t.historyEventColumns(), t.History())
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
		SQL:  fmt.Sprintf("SELECT coalesce(max(h.version), 0) FROM %s h WHERE h.record_id = $1::uuid", t.History()),
		Args: []any{id},
	}
}
