-- Why: a tamper-evident audit log kept by Postgres. Writers only append entries, with no chain
-- hash and no shared chain head, so they never wait for each other; the sealer (a River job)
-- later takes the entries whose transactions are older than the snapshot xmin, in (xid, id)
-- order, and seals them into hash-linked blocks with a Merkle root (docs/audit.md).

CREATE TYPE velocity.audit_outcome AS ENUM ('allowed', 'denied', 'failed');

-- One entry per data change (written by the history writer of the table, in the transaction
-- of the change), per change to the platform's own tables, and per authentication and
-- authorization decision of the API. No CHECK constraints: Postgres re-parses them in every
-- INSERT statement (migration 005); the enum and NOT NULLs hold the shape.
CREATE TABLE velocity.audit_entry (
  id          bigint NOT NULL DEFAULT nextval('velocity.event_seq'),
  xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
  at          timestamptz NOT NULL DEFAULT clock_timestamp(),
  action      text NOT NULL,
  outcome     velocity.audit_outcome NOT NULL,
  actor       text NOT NULL DEFAULT velocity.current_actor_id(),
  strategy    text,
  fail_mode   text,
  layer       smallint,
  schema_key  text,
  record_id   text,
  reason      text,
  request_id  text,
  detail      jsonb NOT NULL DEFAULT '{}'
);
-- The sealer's order, and its way to the first unsealed entry.
CREATE INDEX audit_entry_xid ON velocity.audit_entry (xid, id);
-- Time windows for `audit list`; a BRIN index costs writers next to nothing.
CREATE INDEX audit_entry_at ON velocity.audit_entry USING brin (at);

-- One row per sealed block: the entries it holds, in order, their leaf hashes (32 bytes each,
-- SHA-256 of 0x00 and the entry's canonical encoding), the Merkle root over them (RFC 6962),
-- and the hash that links it to the block before.
CREATE TABLE velocity.audit_block (
  block_no     bigint PRIMARY KEY,
  first_xid    xid8 NOT NULL,
  first_id     bigint NOT NULL,
  last_xid     xid8 NOT NULL,
  last_id      bigint NOT NULL,
  entry_ids    bigint[] NOT NULL,
  leaves       bytea NOT NULL,
  merkle_root  bytea NOT NULL,
  prev_hash    bytea NOT NULL,
  block_hash   bytea NOT NULL,
  horizon      xid8 NOT NULL,
  sealed_at    timestamptz NOT NULL
);

{{ template "functions/audit.sql" . }}

CREATE TRIGGER velocity_audit_guard BEFORE UPDATE OR DELETE ON velocity.audit_entry
  FOR EACH ROW EXECUTE FUNCTION velocity.audit_guard();
CREATE TRIGGER velocity_audit_guard_truncate BEFORE TRUNCATE ON velocity.audit_entry
  FOR EACH STATEMENT EXECUTE FUNCTION velocity.audit_guard();
CREATE TRIGGER velocity_audit_guard BEFORE UPDATE OR DELETE ON velocity.audit_block
  FOR EACH ROW EXECUTE FUNCTION velocity.audit_guard();
CREATE TRIGGER velocity_audit_guard_truncate BEFORE TRUNCATE ON velocity.audit_block
  FOR EACH STATEMENT EXECUTE FUNCTION velocity.audit_guard();

-- Changes to the platform's own tables, whoever makes them.
CREATE TRIGGER velocity_audit AFTER INSERT ON velocity.schema_versions
  FOR EACH ROW EXECUTE FUNCTION velocity.audit_admin_change('schema');
CREATE TRIGGER velocity_audit AFTER INSERT OR UPDATE ON velocity.api_keys
  FOR EACH ROW EXECUTE FUNCTION velocity.audit_admin_change('apikey');
CREATE TRIGGER velocity_audit AFTER INSERT OR UPDATE OR DELETE ON velocity.role_bindings
  FOR EACH ROW EXECUTE FUNCTION velocity.audit_admin_change('binding');
CREATE TRIGGER velocity_audit AFTER INSERT OR UPDATE OR DELETE ON velocity.db_logins
  FOR EACH ROW EXECUTE FUNCTION velocity.audit_admin_change('dblogin');

-- Only the owner writes entries directly (through the triggers' SECURITY DEFINER functions);
-- the API appends its decisions through velocity.audit_append; the worker seals.
REVOKE ALL ON velocity.audit_entry, velocity.audit_block FROM PUBLIC;
REVOKE ALL ON FUNCTION velocity.audit_append(jsonb), velocity.audit_admin_change() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION velocity.audit_append(jsonb) TO velocity_api;
GRANT SELECT ON velocity.audit_entry TO velocity_worker;
GRANT SELECT, INSERT ON velocity.audit_block TO velocity_worker;
