-- Why: every change to a user table is kept, by Postgres, in that table's history (created by
-- the planner) and announced in one outbox, in the same transaction as the change, so a write
-- through the API, the CLI or psql is recorded the same way and a rolled-back write leaves
-- nothing behind.

-- One sequence orders every history event and outbox row of the database.
CREATE SEQUENCE velocity.event_seq AS bigint;

-- The key of the keyed hashes that stand in for history.redact fields. Only the owner (and
-- velocity.history_redact, which runs as the owner) can read it.
CREATE TABLE velocity.history_key (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  key bytea NOT NULL
);
INSERT INTO velocity.history_key (key) VALUES (velocity_ext.gen_random_bytes(32));

-- The outbox: one row per change, drained in commit-safe order (xid below the snapshot's
-- xmin, then id) by the CDC job. Written only by the history triggers; id is the history
-- event's, so the row leads to its event ((record_id, at, id) is the history's index).
-- No index: every write pays for each one, every writer would contend for the right edge of
-- an (xid, id) index, and the drain reads a table it keeps small. Measured: the index cost
-- about 7% of a REST write. The CDC issue adds what its drain query needs, measured.
CREATE TABLE velocity.outbox (
  id          bigint NOT NULL,
  xid         xid8 NOT NULL,
  at          timestamptz NOT NULL,
  schema_key  text NOT NULL,
  record_id   uuid NOT NULL,
  op          text NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE', 'RESTORE', 'PURGE')),
  version     integer NOT NULL
);

{{ template "functions/history.sql" . }}

CREATE TRIGGER velocity_history_guard BEFORE UPDATE OR DELETE ON velocity.outbox
  FOR EACH ROW EXECUTE FUNCTION velocity.history_guard();
CREATE TRIGGER velocity_history_guard_truncate BEFORE TRUNCATE ON velocity.outbox
  FOR EACH STATEMENT EXECUTE FUNCTION velocity.history_guard();

REVOKE ALL ON velocity.history_key, velocity.outbox FROM PUBLIC;
GRANT SELECT ON velocity.outbox TO velocity_worker;
REVOKE ALL ON FUNCTION velocity.history_redact(jsonb, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION velocity.history_partitions_ensure(text, text, timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION velocity.history_partitions_ensure_all(timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION velocity.history_tables() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION velocity.history_tables() TO velocity_worker;
GRANT EXECUTE ON FUNCTION velocity.history_partitions_ensure(text, text, timestamptz, integer) TO velocity_worker;
GRANT EXECUTE ON FUNCTION velocity.history_partitions_ensure_all(timestamptz, integer) TO velocity_worker;

-- Restores keep the version, created_at and created_by the API gives the recreated row.
{{ template "functions/system_fields.sql" . }}
