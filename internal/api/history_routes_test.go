package api_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
)

// ledgerDefinition keeps history of invoices, redacts iban, and wants a reason to delete or
// restore. auditor reads history; clerk reads but not history; restorer may restore.
const ledgerDefinition = `
apiVersion: velocity.dev/v1alpha1
kind: SchemaDefinition
metadata:
  name: invoices
spec:
  org: tm
  app: books
  domain: ledger
  object: invoices
  version: 1
  fields:
    - name: number
      type: string
      required: true
    - name: amount
      type: decimal
    - name: status
      type: enum
      values: [draft, sent, paid]
      default: draft
    - name: iban
      type: string
      sensitive: true
    - name: meta
      type: json
  access:
    roles:
      admin: [read, create, update, delete, history, restore]
      auditor: [read, history]
      clerk: [read, create, update]
  policy:
    requireReason: [delete, restore]
  history:
    redact: [iban]
`

const invoicesPath = "/tm/books/ledger/invoices"

// stamp is a time strictly between two writes: Postgres's clock has microseconds, so a
// short sleep on each side keeps the writes apart.
func stamp(t *testing.T) string {
	t.Helper()
	time.Sleep(5 * time.Millisecond)
	s := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(5 * time.Millisecond)
	return s
}

func TestTimeMachine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.applyYAML(ledgerDefinition)
	before := stamp(t)

	r := e.do("POST", invoicesPath, e.admin, map[string]any{"number": "INV-1", "amount": "10.00", "iban": "DE89370400440532013000", "meta": map[string]any{"a": 1}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	id := r.json(t)["id"].(string)
	v1 := stamp(t)
	r = e.do("PATCH", invoicesPath+"/"+id, e.admin, map[string]any{"status": "sent", "amount": "12.50"}, "X-Velocity-Reason", "price fixed")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	v2 := stamp(t)
	r = e.do("PATCH", invoicesPath+"/"+id, e.admin, map[string]any{"iban": "FR1420041010050500013M02606", "status": "paid"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	v3 := stamp(t)

	// Point-in-time reads.
	at := func(ts string) response {
		return e.do("GET", invoicesPath+"/"+id+"?at="+url.QueryEscape(ts), e.admin, nil)
	}
	r = at(v1)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	rec := r.json(t)
	require.Equal(t, `"1"`, r.header.Get("ETag"))
	require.Equal(t, "draft", rec["status"])
	require.EqualValues(t, 10, rec["amount"])
	require.Nil(t, rec["iban"], "a redacted field has no past value")
	require.Equal(t, map[string]any{"a": float64(1)}, rec["meta"])
	r = at(v2)
	require.Equal(t, "sent", r.json(t)["status"])
	require.Equal(t, `"2"`, r.header.Get("ETag"))
	p := requireProblem(t, at(before), http.StatusNotFound)
	require.Contains(t, p["detail"], "did not exist at")

	// The record's own updated_at reads that version.
	live := e.do("GET", invoicesPath+"/"+id, e.admin, nil).json(t)
	r = at(live["updated_at"].(string))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.EqualValues(t, 3, r.json(t)["version"])

	// History, newest first, with a cursor.
	r = e.do("GET", invoicesPath+"/"+id+"/history?limit=2", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	page := r.json(t)
	items := page["items"].([]any)
	require.Len(t, items, 2)
	require.Equal(t, "UPDATE", items[0].(map[string]any)["op"])
	require.EqualValues(t, 3, items[0].(map[string]any)["version"])
	require.Equal(t, "price fixed", items[1].(map[string]any)["reason"])
	require.Contains(t, items[1].(map[string]any)["actor"], "apikey:")
	next := page["next_cursor"].(string)
	r = e.do("GET", invoicesPath+"/"+id+"/history?limit=2&cursor="+url.QueryEscape(next), e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	page = r.json(t)
	require.Len(t, page["items"], 1)
	require.Equal(t, "INSERT", page["items"].([]any)[0].(map[string]any)["op"])
	require.Nil(t, page["next_cursor"])
	// A cursor is bound to its record and window.
	requireProblem(t, e.do("GET", invoicesPath+"/"+id+"/history?since="+url.QueryEscape(before)+"&cursor="+url.QueryEscape(next), e.admin, nil), http.StatusBadRequest)

	// Diff, field by field; a redacted field shows as changed without values.
	r = e.do("GET", invoicesPath+"/"+id+"/diff?from="+url.QueryEscape(v1)+"&to="+url.QueryEscape(v3), e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	d := r.json(t)
	require.Equal(t, []any{
		map[string]any{"field": "amount", "from": float64(10), "to": 12.5},
		map[string]any{"field": "status", "from": "draft", "to": "paid"},
		map[string]any{"field": "iban", "redacted": true},
	}, d["changes"])
	require.EqualValues(t, 1, d["from"].(map[string]any)["version"])
	require.EqualValues(t, 3, d["to"].(map[string]any)["version"])

	// Restore needs a reason here (428), then writes v1 back as version 4.
	requireProblem(t, e.do("POST", invoicesPath+"/"+id+"/restore", e.admin, map[string]any{"at": v1}), http.StatusPreconditionRequired)
	r = e.do("POST", invoicesPath+"/"+id+"/restore", e.admin, map[string]any{"at": v1, "reason": "customer dispute"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	rec = r.json(t)
	require.EqualValues(t, 4, rec["version"])
	require.Equal(t, "draft", rec["status"])
	require.EqualValues(t, 10, rec["amount"])
	require.Equal(t, "FR1420041010050500013M02606", rec["iban"], "redacted fields keep their current value")
	var op, reason string
	var n int
	require.NoError(t, e.super.QueryRow(context.Background(),
		`SELECT (array_agg(op ORDER BY event_id DESC))[1], (array_agg(reason ORDER BY event_id DESC))[1], count(*) FROM tm__books.ledger__invoices__history WHERE record_id = $1`, id).Scan(&op, &reason, &n))
	require.Equal(t, "RESTORE", op)
	require.Equal(t, "customer dispute", reason)
	require.Equal(t, 4, n, "history is added to, never edited")

	// Delete (reason required), then the past says it was deleted; restore recreates it.
	requireProblem(t, e.do("DELETE", invoicesPath+"/"+id, e.admin, nil), http.StatusPreconditionRequired)
	r = e.do("DELETE", invoicesPath+"/"+id, e.admin, nil, "X-Velocity-Reason", "duplicate")
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	deleted := stamp(t)
	p = requireProblem(t, at(deleted), http.StatusNotFound)
	require.Contains(t, p["detail"], "had been deleted")
	requireProblem(t, e.do("GET", invoicesPath+"/"+id, e.admin, nil), http.StatusNotFound)
	r = e.do("POST", invoicesPath+"/"+id+"/restore", e.admin, map[string]any{"at": v2}, "X-Velocity-Reason", "deleted by mistake")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	rec = r.json(t)
	require.EqualValues(t, 5, rec["version"], "the version after the last one (the delete was of version 4)")
	require.Equal(t, "sent", rec["status"])
	require.Nil(t, rec["iban"], "a redacted field cannot come back from history")
	require.Equal(t, live["created_at"], rec["created_at"])
	r = e.do("GET", invoicesPath+"/"+id+"/history?limit=1", e.admin, nil)
	require.Equal(t, "RESTORE", r.json(t)["items"].([]any)[0].(map[string]any)["op"])
}

func TestTimeMachineDenialsAndBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.applyYAML(ledgerDefinition)
	r := e.do("POST", invoicesPath, e.admin, map[string]any{"number": "INV-2"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	id := r.json(t)["id"].(string)
	nowText := stamp(t)
	now := url.QueryEscape(nowText)
	clerk, auditor := e.key("clerk"), e.key("auditor")

	// Layer 1: history needs the history verb, restore the restore verb.
	for _, path := range []string{"/" + id + "?at=" + now, "/" + id + "/history", "/" + id + "/diff?from=" + now} {
		p := requireProblem(t, e.do("GET", invoicesPath+path, clerk, nil), http.StatusForbidden)
		require.EqualValues(t, 1, p["layer"], path)
	}
	p := requireProblem(t, e.do("POST", invoicesPath+"/"+id+"/restore", auditor, map[string]any{"at": nowText, "reason": "x"}), http.StatusForbidden)
	require.EqualValues(t, 1, p["layer"])
	// The auditor reads the past.
	r = e.do("GET", invoicesPath+"/"+id+"/history", auditor, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)

	// A record that never existed: 404, the same as one the caller may not read.
	other := "0193b6f0-0000-7000-8000-0000000000ff"
	requireProblem(t, e.do("GET", invoicesPath+"/"+other+"/history", auditor, nil), http.StatusNotFound)
	requireProblem(t, e.do("GET", invoicesPath+"/"+other+"?at="+now, auditor, nil), http.StatusNotFound)
	requireProblem(t, e.do("GET", invoicesPath+"/"+other+"/diff?from="+now, auditor, nil), http.StatusNotFound)
	requireProblem(t, e.do("POST", invoicesPath+"/"+other+"/restore", e.admin, map[string]any{"at": nowText, "reason": "x"}), http.StatusNotFound)

	// Bad input names its parameter.
	for path, loc := range map[string]string{
		"/" + id + "?at=yesterday":                        "query.at",
		"/" + id + "/history?since=1':DROP":               "query.since",
		"/" + id + "/history?cursor=garbage":              "query.cursor",
		"/" + id + "/diff?from=" + now + "&to=2000-01-01": "query.to",
		"/not-a-uuid/history":                             "path.id",
	} {
		p := requireProblem(t, e.do("GET", invoicesPath+path, e.admin, nil), http.StatusBadRequest)
		require.Contains(t, locations(p), loc, path)
	}
	for body, loc := range map[string]string{
		`{"at": 5, "reason": "x"}`:                   "body.at",
		`{"reason": "x"}`:                            "body.at",
		`{"at": "2026-01-01T00:00:00Z", "why": "x"}`: "body.why",
		`{"at": "soon", "reason": "x"}`:              "body.at",
		`[1]`:                                        "body",
	} {
		p := requireProblem(t, e.do("POST", invoicesPath+"/"+id+"/restore", e.admin, body), http.StatusBadRequest)
		require.Contains(t, locations(p), loc, body)
	}
}

// Redaction is recorded per event: a value stored as a keyed hash is never shown, restored
// or cast, whatever the definition says later.
func TestTimeMachineRedactionChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	redactAll := strings.Replace(ledgerDefinition, "redact: [iban]", "redact: [iban, amount, number]", 1)
	e.applyYAML(redactAll)
	r := e.do("POST", invoicesPath, e.admin, map[string]any{"number": "INV-9", "amount": "10.00", "iban": "DE89370400440532013000"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	id := r.json(t)["id"].(string)
	v1 := stamp(t)
	r = e.do("PATCH", invoicesPath+"/"+id, e.admin, map[string]any{"amount": "11.00", "status": "sent"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)

	// A redacted decimal is not cast from its hash: the restore keeps its current value.
	r = e.do("POST", invoicesPath+"/"+id+"/restore", e.admin, map[string]any{"at": v1, "reason": "r"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	rec := r.json(t)
	require.Equal(t, "draft", rec["status"])
	require.EqualValues(t, 11, rec["amount"])

	// Redaction lifted: events written under it still hold hashes, and nothing shows them.
	e.applyYAML(strings.Replace(strings.Replace(redactAll, "version: 1", "version: 2", 1), "redact: [iban, amount, number]", "redact: []", 1))
	r = e.do("GET", invoicesPath+"/"+id+"?at="+url.QueryEscape(v1), e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Nil(t, r.json(t)["iban"])
	require.Nil(t, r.json(t)["amount"])
	require.Equal(t, http.StatusOK, e.do("PATCH", invoicesPath+"/"+id, e.admin, map[string]any{"status": "paid"}).status)
	r = e.do("GET", invoicesPath+"/"+id+"/history?limit=1", e.admin, nil)
	require.Equal(t, "DE89370400440532013000", r.json(t)["items"].([]any)[0].(map[string]any)["record"].(map[string]any)["iban"],
		"events written after the redaction was lifted show the value")
	r = e.do("POST", invoicesPath+"/"+id+"/restore", e.admin, map[string]any{"at": v1, "reason": "r"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	rec = r.json(t)
	require.Equal(t, "draft", rec["status"])
	require.Equal(t, "DE89370400440532013000", rec["iban"], "the hash is never written back")
	require.Equal(t, "INV-9", rec["number"])

	// A deleted record whose required field was redacted cannot be recreated: 422, nothing written.
	other := e.do("POST", invoicesPath, e.admin, map[string]any{"number": "INV-10"})
	require.Equal(t, http.StatusCreated, other.status, "%s", other.body)
	e.applyYAML(strings.Replace(redactAll, "version: 1", "version: 3", 1))
	oid := other.json(t)["id"].(string)
	require.Equal(t, http.StatusOK, e.do("PATCH", invoicesPath+"/"+oid, e.admin, map[string]any{"status": "sent"}).status)
	before := stamp(t)
	require.Equal(t, http.StatusNoContent, e.do("DELETE", invoicesPath+"/"+oid, e.admin, nil, "X-Velocity-Reason", "x").status)
	p := requireProblem(t, e.do("POST", invoicesPath+"/"+oid+"/restore", e.admin, map[string]any{"at": before, "reason": "r"}), http.StatusUnprocessableEntity)
	require.Contains(t, string(toJSON(t, p)), "number cannot be recreated")
	requireProblem(t, e.do("GET", invoicesPath+"/"+oid, e.admin, nil), http.StatusNotFound)
}
