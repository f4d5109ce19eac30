package sqlbuild

import "fmt"

// HistoryEvents lists up to limit events of the table after position (afterXID, afterEvent)
// in commit-safe order, (xid, event_id), using the history table's (xid, event_id) index.
// Only events of transactions older than the reading statement's snapshot xmin are
// returned: every transaction with a smaller xid has ended, so no event can later appear
// before the last one returned. An event sequence number alone would not do: a transaction
// that took a lower event_id may commit after one that took a higher one.
//
// Columns: xid (xid8), event_id, op, record_id (text), version, at, actor, reason,
// request_id and the image as a record of the current definition (jsonb). It reads the
// history view as the API role, so the history table's RLS policy (read and history verbs)
// and the field rules apply.
func (t *Table) HistoryEvents(afterXID uint64, afterEvent int64, limit int) Statement {
	return Statement{
		SQL: fmt.Sprintf("SELECT h.xid, h.event_id, h.op, h.record_id::text, h.version, h.at, h.actor, h.reason, h.request_id, %s"+
			" FROM %s h WHERE (h.xid, h.event_id) > ($1::xid8, $2::bigint)"+
			" AND h.xid < (SELECT pg_snapshot_xmin(pg_current_snapshot()))"+
			" ORDER BY h.xid, h.event_id LIMIT $3",
			t.eventImage, t.HistoryView()),
		Args: []any{afterXID, afterEvent, limit},
	}
}

// HistoryHorizon reads the xmin of the reading statement's snapshot (xid8): the oldest
// transaction still running. Reading events from (horizon, 0) gives every event of a
// transaction that had not ended when the horizon was read; nothing before it can change.
func HistoryHorizon() Statement {
	return Statement{SQL: "SELECT pg_snapshot_xmin(pg_current_snapshot())"}
}
